"""Runs the workload through the three variants, one after the other, on the same model.

* ``baseline``: full context, full history, one model; the system prompt carries what apps
  usually put there (a session timestamp and a request id, different on every request).
* ``cached``: the core canonicaliser (volatile values and whitespace normalised) in front of
  tokenlean-cache's embedded semantic cache (SQLite + MiniLM, false-hit guard).
* ``full``: canonicaliser + cache + tokenlean-memory (a token-budgeted context instead of the full
  history) + tokenlean-compress on retrieved passages (when the package is installed) +
  tokenlean-router between a small and a large configuration (+ the vLLM adapter with
  ``--vllm-url``).

Support questions and conversations run through LangChain pipelines (``RunnableLambda | model``,
the tokenlean LangChain callback feeding one ledger per variant); RAG questions run through a
LlamaIndex ``RetrieverQueryEngine`` (the tokenlean LlamaIndex event handler feeding the same
ledger).
"""

from __future__ import annotations

import datetime as _dt
import importlib.util
import logging
import statistics
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.runnables import Runnable, RunnableLambda

from tokenlean_core import Ledger, MemorySink, PriceTable, Usage, canonicalize, scope, set_ledger
from tokenlean_core.langchain import TokenleanCallbackHandler

from .config import VARIANTS, BenchConfig
from .errors import BenchError
from .models import Call, LlamaBackend, LocalChatModel, Probe, digest
from .quality import answer_retention, judge_agreement, state_recall
from .workload import SESSION_HEADER, Request, Workload

__all__ = ["VARIANTS", "BenchConfig", "RequestResult", "VariantResult", "run_variants"]

logger = logging.getLogger("tokenlean.bench")


@dataclass
class RequestResult:
    index: int
    kind: str
    item_id: str
    variant: str
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    usd: float = 0.0
    latency_s: float = 0.0
    calls: int = 0
    cache_hit: bool = False
    hit_correct: bool | None = None
    route: str | None = None
    answer: str = ""
    recall: tuple[int, int, int, int] | None = None
    retained: bool | None = None
    compressed_from: int | None = None
    agreement: bool | None = None
    error: str | None = None


@dataclass
class VariantResult:
    name: str
    description: str
    requests: list[RequestResult] = field(default_factory=list)
    ledger: Ledger | None = None
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


# ----------------------------------------------------------------------------------- helpers


def _now_header() -> str:
    return SESSION_HEADER.format(
        timestamp=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        request_id=uuid.uuid4(),
    )


def _history_messages(history: Sequence[tuple[str, str]]) -> list[BaseMessage]:
    return [HumanMessage(t) if r == "user" else AIMessage(t) for r, t in history]


def _canonical_messages(messages: Any) -> list[BaseMessage]:
    """The core canonicaliser applied to the system prompt (volatile values such as timestamps
    and request ids become placeholders, whitespace is normalised); what users said is sent as
    they said it (a date in a question is information)."""
    msgs = messages.to_messages() if hasattr(messages, "to_messages") else list(messages)
    return [
        m.model_copy(update={"content": canonicalize(m.text)}) if m.type == "system" else m
        for m in msgs
    ]


def _render(messages: Sequence[BaseMessage]) -> str:
    return "\n".join(f"{m.type}: {m.text}" for m in messages)


def compress_available() -> bool:
    return importlib.util.find_spec("tokenlean_compress") is not None


# ----------------------------------------------------------------------------------- models


class Models:
    """Builds the chat models of a run: the local SmolLM2 by default, ``--model`` or
    ``--vllm-url`` otherwise; ``large`` is served as the target model, ``small`` as the small
    one (a short-context configuration of the same local model by default)."""

    def __init__(self, cfg: BenchConfig) -> None:
        self.cfg = cfg
        self.backend: LlamaBackend | None = None
        self._embedder: Any = None
        self._external: BaseChatModel | None = None
        if cfg.vllm_url:
            from tokenlean_vllm.langchain import ChatVLLM

            self._external = ChatVLLM(
                base_url=cfg.vllm_url,
                model=cfg.model or "default",
                max_completion_tokens=cfg.max_tokens,
                temperature=0,
            )
            self.description = f"vLLM server at {cfg.vllm_url} (tokenlean_vllm.ChatVLLM)"
        elif cfg.model:
            from langchain.chat_models import init_chat_model

            try:
                self._external = init_chat_model(
                    cfg.model, max_tokens=cfg.max_tokens, temperature=0
                )
            except Exception as exc:
                raise BenchError(f"--model {cfg.model}: {exc}") from exc
            self.description = f"{cfg.model} (langchain init_chat_model)"
        else:
            self.backend = LlamaBackend(threads=cfg.threads, seed=cfg.seed)
            self.description = (
                "SmolLM2-135M-Instruct Q4_1 via llama.cpp in process (greedy, "
                f"max_tokens={cfg.max_tokens})"
            )

    def cache_embedder(self) -> Any:
        """One MiniLM for every variant's cache (loaded once)."""
        if self._embedder is None:
            from tokenlean_cache import MiniLMEmbedder

            self._embedder = MiniLMEmbedder()
        return self._embedder

    def fresh_start(self) -> None:
        """Forget the local model's KV states, so no variant starts from another's prompts."""
        if self.backend is not None:
            self.backend.reset()

    def large(self) -> BaseChatModel:
        if self._external is not None:
            return self._external
        return LocalChatModel(
            backend=self.backend, served_as=self.cfg.target_model, max_tokens=self.cfg.max_tokens
        )

    def small(self) -> BaseChatModel:
        if self._external is not None:
            if ":" in self.cfg.small_model:
                from langchain.chat_models import init_chat_model

                return init_chat_model(
                    self.cfg.small_model, max_tokens=self.cfg.max_tokens, temperature=0
                )
            return self._external
        return LocalChatModel(
            backend=self.backend,
            served_as=self.cfg.small_model,
            max_tokens=self.cfg.max_tokens,
            max_context=self.cfg.small_context,
        )

    @property
    def route_meaning(self) -> str:
        if self._external is None:
            return (
                f"small = the local model limited to a {self.cfg.small_context}-token prompt, "
                f"priced as {self.cfg.small_model}; large = the same local model with its full "
                f"context, priced as {self.cfg.target_model}. With one local model the route "
                "changes price and context window, not answer quality."
            )
        return f"small = {self.cfg.small_model}; large = {self.description}"


# ----------------------------------------------------------------------------------- llama-index


def _llama_index_parts(lc_model: BaseChatModel, probe: Probe, served_as: str) -> tuple[Any, Any]:
    """A LlamaIndex LLM that delegates to a LangChain chat model, and a retriever that returns
    the current request's retrieved passages."""
    from llama_index.core.base.llms.types import (
        ChatMessage,
        ChatResponse,
        CompletionResponse,
        CompletionResponseGen,
        LLMMetadata,
        MessageRole,
    )
    from llama_index.core.llms import CustomLLM
    from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
    from llama_index.core.retrievers import BaseRetriever
    from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
    from pydantic import PrivateAttr

    class LangChainBackedLLM(CustomLLM):
        """LlamaIndex LLM over a LangChain chat model (the probe sees each call)."""

        _model: Any = PrivateAttr()
        _probe: Any = PrivateAttr()
        _name: str = PrivateAttr()

        def __init__(self, model: BaseChatModel, probe: Probe, name: str) -> None:
            super().__init__()
            self._model, self._probe, self._name = model, probe, name

        @property
        def metadata(self) -> LLMMetadata:
            return LLMMetadata(model_name=self._name, is_chat_model=True, context_window=2048)

        def _ask(self, messages: list[BaseMessage]) -> str:
            return str(self._model.invoke(messages, config={"callbacks": [self._probe]}).text)

        @llm_chat_callback()
        def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
            lc: list[BaseMessage] = [
                SystemMessage(m.content or "")
                if m.role == MessageRole.SYSTEM
                else AIMessage(m.content or "")
                if m.role == MessageRole.ASSISTANT
                else HumanMessage(m.content or "")
                for m in messages
            ]
            text = self._ask(lc)
            return ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=text))

        @llm_completion_callback()
        def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
            return CompletionResponse(text=self._ask([HumanMessage(prompt)]))

        @llm_completion_callback()
        def stream_complete(
            self, prompt: str, formatted: bool = False, **kwargs: Any
        ) -> CompletionResponseGen:
            text = self._ask([HumanMessage(prompt)])

            def gen() -> CompletionResponseGen:
                yield CompletionResponse(text=text, delta=text)

            return gen()

    class PassageRetriever(BaseRetriever):
        """Returns the passages retrieved for the current question (set before each query)."""

        def __init__(self) -> None:
            super().__init__()
            self.passages: Sequence[tuple[str, str, bool]] = ()

        def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
            return [
                NodeWithScore(node=TextNode(text=f"{title}\n{text}"), score=1.0 - i / 100)
                for i, (title, text, _) in enumerate(self.passages)
            ]

    return LangChainBackedLLM(lc_model, probe, served_as), PassageRetriever()


# ----------------------------------------------------------------------------------- variants


class Variant:
    """One pipeline configuration; :meth:`run` answers one request."""

    def __init__(self, name: str, cfg: BenchConfig, models: Models, wl: Workload) -> None:
        self.name = name
        self.cfg = cfg
        self.models = models
        self.wl = wl
        self.notes: list[str] = []
        self.prices = PriceTable()
        self.ledger = Ledger([MemorySink()], prices=self.prices)
        self.probe = Probe(cfg.target_model)
        self.handler = TokenleanCallbackHandler(self.ledger, default_model=cfg.target_model)
        self._tmp = tempfile.TemporaryDirectory(prefix=f"tokenlean-bench-{name}-")
        self.cache_on = name in ("cached", "full")
        self.full = name == "full"
        self._cache_engine: Any = None
        if self.cache_on:
            from tokenlean_cache import EmbeddedStore, SemanticCache

            self._cache_engine = SemanticCache(
                EmbeddedStore(str(Path(self._tmp.name) / "cache.sqlite")),
                embedder=models.cache_embedder(),
                ledger=self.ledger,
            )
        self.memory: Any = None
        self._records: dict[str, Any] = {}
        self._upto: dict[str, int] = {}
        if self.full:
            from tokenlean_memory import MemoryConfig, MemoryEngine, StateSchema

            # the lean profile: the settings benchmarks/memory.py fitted on its fit split of SGD
            # (none of the workload's dialogues), at --memory-budget (default 100, the fit's)
            self.memory = MemoryEngine(
                MemoryConfig.lean(cfg.memory_budget, model=cfg.target_model),
                ledger=self.ledger,
                schema=(
                    StateSchema(slots={k: list(v) for k, v in wl.conversation_slots.items()})
                    if wl.conversation_slots
                    else None
                ),
            )
        self.lc_chain = self._lc_chain()
        self.compressor: Any = None
        self.query_engine, self.retriever = self._rag_engine()

    # -- LangChain ---------------------------------------------------------------------------
    def _cached(self, model: BaseChatModel) -> BaseChatModel:
        from tokenlean_cache.langchain import CachedChatModel, TokenleanCache

        return CachedChatModel(model=model, tokenlean_cache=TokenleanCache(self._cache_engine))

    def _lc_chain(self) -> Runnable[Any, Any]:
        build: Runnable[Any, Any] = RunnableLambda(self._messages, name="tokenlean-bench-prompt")
        if not self.cache_on:
            return build | self.models.large()
        canon = RunnableLambda(_canonical_messages, name="tokenlean-canonicalize")
        if not self.full:
            return build | canon | self._cached(self.models.large())
        return build | canon | self._router_chain()

    def _router_chain(self) -> Runnable[Any, Any]:
        from tokenlean_router import HashingEmbedder, Router, Tier, train_gate
        from tokenlean_router.langchain import RouterChain

        small, large = self.cfg.small_model, self.cfg.target_model
        prices = self.ledger.prices
        tiers = [Tier(small, prices.lookup(small)), Tier(large, prices.lookup(large))]
        texts, weak = self._gate_training_set()
        embedder = HashingEmbedder()
        gate = train_gate(
            texts,
            weak,
            [1.0] * len(texts),
            embedder=embedder,
            tokenizer_model=self.cfg.target_model,
        )
        router = Router(tiers, gate, embedder, thresholds=0.5, ledger=self.ledger)
        share = sum(1 for w in weak if not w) / len(weak)
        self.notes.append(
            f"router gate: trained on {len(texts)} prompts rendered from the workload "
            f"(label: fits the small configuration's {self.cfg.small_context}-token window; "
            f"{share:.0%} do not); threshold 0.5; {self.models.route_meaning}"
        )
        return RouterChain(
            routes=[self._cached(self.models.small()), self._cached(self.models.large())],
            router=router,
            text_of=_render,
            ledger=self.ledger,
        )

    def _gate_training_set(self) -> tuple[list[str], list[float]]:
        """Prompts of the workload as a plain LangChain app would send them, labelled by whether
        they fit the small configuration (counted with the local model's tokenizer when it runs
        here, else with the target's)."""
        texts: list[str] = []
        weak: list[float] = []
        backend = self.models.backend
        for r in self.wl.requests:
            msgs = self._plain_messages(r)
            text = _render(msgs)
            if backend is not None:
                n = backend.count([{"role": m.type, "content": m.text} for m in msgs])
            else:
                from tokenlean_core import count_tokens

                n = int(count_tokens(text, self.cfg.target_model))
            texts.append(text)
            weak.append(1.0 if n + self.cfg.max_tokens <= self.cfg.small_context else 0.0)
        if len(texts) < 10 or len(set(weak)) < 2:
            # too few prompts, or all on one side: add short and long synthetic ones
            texts += [f"user: question {i}?" for i in range(6)]
            weak += [1.0] * 6
            long = "system: " + "long context " * 400
            texts += [f"{long}\nuser: question {i}?" for i in range(6)]
            weak += [0.0] * 6
        return texts, weak

    def _plain_messages(self, r: Request) -> list[BaseMessage]:
        if r.kind == "support":
            return [SystemMessage(self.wl.support_system), HumanMessage(r.question)]
        if r.kind == "conversation":
            return [SystemMessage(self.wl.conversation_system), *_history_messages(r.history)]
        passages = "\n\n".join(f"{t}\n{x}" for t, x, _ in r.passages)
        return [
            SystemMessage(self.wl.rag_system),
            HumanMessage(f"Passages:\n{passages}\n\nQuestion: {r.question}"),
        ]

    def _messages(self, r: Request) -> list[BaseMessage]:
        if r.kind == "support":
            return [SystemMessage(self.wl.support_system + _now_header()), HumanMessage(r.question)]
        assert r.kind == "conversation"
        system = self.wl.conversation_system
        if self.memory is None:
            return [SystemMessage(system), *_history_messages(r.history)]
        from tokenlean_memory import MemoryRecord

        hist = [{"role": role, "content": text} for role, text in r.history]
        rec = self._records.get(r.item_id) or MemoryRecord()
        done = self._upto.get(r.item_id, 0)
        if len(hist) - 1 > done:  # read the turns since the last request into the state
            rec = self.memory.update(hist[:-1], rec)
            self._upto[r.item_id] = len(hist) - 1
        self._records[r.item_id] = rec
        ctx = self.memory.build(hist, rec, system=system)
        out: list[BaseMessage] = []
        for m in ctx.messages:
            if m.role == "system":
                out.append(SystemMessage(m.content))
            elif m.role == "assistant":
                out.append(AIMessage(m.content))
            else:
                out.append(HumanMessage(m.content))
        return out

    # -- LlamaIndex --------------------------------------------------------------------------
    def _rag_engine(self) -> tuple[Any, Any]:
        from llama_index.core import PromptTemplate
        from llama_index.core.query_engine import RetrieverQueryEngine
        from llama_index.core.response_synthesizers import ResponseMode

        llm, retriever = _llama_index_parts(self.models.large(), self.probe, self.cfg.target_model)
        if self.cache_on:
            from tokenlean_cache.llama_index import CachedLLM

            llm = CachedLLM(llm, cache=self._cache_engine)
        post: list[Any] = []
        if self.full:
            pp = self._compress_postprocessor()
            if pp is not None:
                post.append(pp)
        template = PromptTemplate(
            self.wl.rag_system + "\n\nPassages:\n{context_str}\n\nQuestion: {query_str}\nAnswer:"
        )
        engine = RetrieverQueryEngine.from_args(
            retriever,
            llm=llm,
            node_postprocessors=post,
            response_mode=ResponseMode.COMPACT,
            text_qa_template=template,
        )
        return engine, retriever

    def _compress_postprocessor(self) -> Any:
        if not compress_available():
            self.notes.append(
                "compression: tokenlean-compress is not installed; RAG contexts are sent whole"
            )
            return None
        try:
            from . import compress_adapter

            pp = compress_adapter.postprocessor(self.cfg, self.ledger)
        except Exception as exc:  # the optional part degrades to the plain path
            warnings.warn(
                f"tokenlean-compress could not be set up ({exc!r}); RAG contexts are sent whole",
                RuntimeWarning,
                stacklevel=2,
            )
            self.ledger.record_event("compress", "unavailable", detail={"error": repr(exc)})
            self.notes.append(f"compression: unavailable ({type(exc).__name__}: {exc})")
            return None
        self.notes.append(f"compression: {compress_adapter.describe(self.cfg)}")
        return pp

    # -- one request -------------------------------------------------------------------------
    def run(self, r: Request) -> RequestResult:
        res = RequestResult(r.index, r.kind, r.item_id, self.name)
        self.probe.reset()
        t0 = time.perf_counter()
        with scope(session=f"{self.name}:{r.item_id}", task=r.kind, request=True):
            try:
                if r.kind == "rag":
                    self.retriever.passages = r.passages
                    res.answer = str(self.query_engine.query(r.question)).strip()
                else:
                    msg = self.lc_chain.invoke(r, config={"callbacks": [self.probe, self.handler]})
                    res.answer = str(msg.text).strip()
                    route = (msg.response_metadata or {}).get("tokenlean_route") or {}
                    res.route = route.get("tier") if isinstance(route, dict) else None
                self.ledger.record_outcome(True)
            except Exception as exc:
                logger.warning("request %s failed in %s: %r", r.index, self.name, exc)
                res.error = f"{type(exc).__name__}: {exc}"
                self.ledger.record_outcome(False)
        res.latency_s = time.perf_counter() - t0
        self._account(r, res, self.probe.reset())
        return res

    def _account(self, r: Request, res: RequestResult, calls: list[Call]) -> None:
        res.calls = sum(1 for c in calls if not c.cache_hit)
        for c in calls:
            if c.cache_hit:
                res.cache_hit = True
                res.cached_tokens += c.input_tokens
                continue
            res.input_tokens += c.input_tokens
            res.output_tokens += c.output_tokens
            priced_as = self.cfg.small_model if c.model == self.cfg.small_model else None
            usd = self.prices.cost(
                Usage(c.input_tokens, c.output_tokens), priced_as or self.cfg.target_model
            )
            res.usd += usd or 0.0
        if r.kind == "rag" and self.cache_on and not calls and res.error is None:
            res.cache_hit = True  # the LlamaIndex cache answered: no model call was made
        last = calls[-1] if calls else None
        if r.kind == "support" and res.cache_hit and last is not None:
            origin = last.origin_digest
            res.hit_correct = None if origin is None else self._group_of.get(origin) == r.group
        if r.kind == "support" and last is not None and not last.cache_hit:
            self._group_of[digest(r.question)] = r.group
        if r.kind == "conversation" and last is not None:
            history = "\n".join(t for _, t in r.history)
            res.recall = state_recall(r.state, last.prompt, history)
        if r.kind == "rag" and last is not None:
            res.retained = answer_retention(r.answers, last.prompt)
            if self.full and compress_available():
                res.compressed_from = self._full_rag_tokens(r)

    def _full_rag_tokens(self, r: Request) -> int:
        from tokenlean_core import count_tokens

        passages = "\n\n".join(f"{t}\n{x}" for t, x, _ in r.passages)
        return int(count_tokens(passages, self.cfg.target_model))

    _group_of: dict[str, str | None]

    def close(self) -> None:
        if self._cache_engine is not None:
            self._cache_engine.close()
        self._tmp.cleanup()


DESCRIPTIONS = {
    "baseline": "full context, full history, one model",
    "cached": "canonicaliser + semantic cache (embedded store)",
    "full": "canonicaliser + cache + memory + compression + router",
}


def run_variants(
    wl: Workload,
    cfg: BenchConfig,
    *,
    progress: Callable[[str, int], Any] | None = None,
) -> tuple[list[VariantResult], Models]:
    """Run every configured variant over the workload; ``progress(label, n)`` returns a context
    manager whose ``update(1)`` is called per request (``click.progressbar``-like)."""
    models = Models(cfg)
    results: list[VariantResult] = []
    for name in cfg.variants:
        models.fresh_start()
        v = Variant(name, cfg, models, wl)
        v._group_of = {}
        desc = DESCRIPTIONS[name]
        if name == "full" and cfg.vllm_url:
            desc += " + vLLM adapter"
        vr = VariantResult(name, desc, ledger=v.ledger, notes=v.notes)
        t0 = time.perf_counter()
        set_ledger(v.ledger)  # components that use the process-wide ledger report here too
        handler = _attach_llama_index(v.ledger, cfg.target_model)
        try:
            bar = progress(f"{name:<8}", len(wl.requests)) if progress else None
            if bar is not None:
                with bar as b:
                    for r in wl.requests:
                        vr.requests.append(v.run(r))
                        b.update(1)
            else:
                for r in wl.requests:
                    vr.requests.append(v.run(r))
        finally:
            if handler is not None:
                handler.detach()
            set_ledger(None)
            v.close()
        vr.seconds = time.perf_counter() - t0
        results.append(vr)
    if cfg.judge:
        _judge(results, wl, cfg)
    return results, models


def _attach_llama_index(ledger: Ledger, model: str) -> Any:
    try:
        from tokenlean_core.llama_index import TokenleanEventHandler
    except ImportError:
        return None
    return TokenleanEventHandler.attach(ledger, default_model=model)


def _judge(results: list[VariantResult], wl: Workload, cfg: BenchConfig) -> None:
    base = next((v for v in results if v.name == "baseline"), None)
    if base is None:
        return
    if cfg.judge == "local":
        backend = LlamaBackend(threads=cfg.threads, seed=cfg.seed)
        judge: Any = LocalChatModel(backend=backend, served_as="judge", max_tokens=3)
    else:
        from langchain.chat_models import init_chat_model

        judge = init_chat_model(cfg.judge, max_tokens=3, temperature=0)
    for v in results:
        if v.name == "baseline":
            continue
        for r, b, req in zip(v.requests, base.requests, wl.requests, strict=True):
            if r.answer and b.answer:
                r.agreement = judge_agreement(judge, req.question, b.answer, r.answer)


def summarise(v: VariantResult, small_model: str) -> dict[str, Any]:
    """Per-variant figures (the rows of the table and of bench.json)."""
    reqs = v.requests
    lat = sorted(r.latency_s for r in reqs)
    support = [r for r in reqs if r.kind == "support"]
    hits = [r for r in support if r.cache_hit]
    judged = [r for r in hits if r.hit_correct is not None]
    recall = [r.recall for r in reqs if r.recall is not None]
    rag = [r for r in reqs if r.kind == "rag" and r.retained is not None]
    agreed = [r.agreement for r in reqs if r.agreement is not None]
    routed = [r.route for r in reqs if r.route]

    def pct(q: int) -> float | None:
        if len(lat) < 2:
            return lat[0] if lat else None
        return float(statistics.quantiles(lat, n=100, method="inclusive")[q - 1])

    return {
        "variant": v.name,
        "description": v.description,
        "requests": len(reqs),
        "model_calls": sum(r.calls for r in reqs),
        "errors": sum(1 for r in reqs if r.error),
        "input_tokens": sum(r.input_tokens for r in reqs),
        "output_tokens": sum(r.output_tokens for r in reqs),
        "cached_tokens": sum(r.cached_tokens for r in reqs),
        "usd": round(sum(r.usd for r in reqs), 8),
        "latency_p50_s": _r(pct(50)),
        "latency_p95_s": _r(pct(95)),
        "cache_hit_rate": _ratio(sum(r.cache_hit for r in reqs), len(reqs)),
        "support_hit_rate": _ratio(len(hits), len(support)),
        "cache_hit_precision": _ratio(sum(bool(r.hit_correct) for r in judged), len(judged)),
        "state_recall": _ratio(sum(x[0] for x in recall), sum(x[1] for x in recall)),
        "state_recall_recoverable": _ratio(sum(x[2] for x in recall), sum(x[3] for x in recall)),
        "answer_retention": _ratio(sum(bool(r.retained) for r in rag), len(rag)),
        "judge_agreement": _ratio(sum(bool(a) for a in agreed), len(agreed)),
        "routed_small_share": _ratio(sum(1 for t in routed if t == small_model), len(routed)),
        "seconds": round(v.seconds, 2),
    }


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 4) if b else None


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


def request_rows(v: VariantResult) -> list[dict[str, Any]]:
    return [asdict(r) for r in v.requests]
