"""Our figures are on the runs LangChain's tracer machinery records (what LangSmith shows).

A chain built from tokenlean components (canonicaliser, semantic cache, compressor, router, the
core callback handler) runs under an in-memory ``BaseTracer`` (no network, no LangSmith client);
the test reads tokens, cache hits, the route and the compression ratio back from the runs.
The chat models are LangChain's ``GenericFakeChatModel`` (stand-ins for a paid API); everything
else is real: MiniLM embeddings, the SQLite store, the compressor, the gate.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.documents import Document
from langchain_core.language_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda
from langchain_core.tracers.base import BaseTracer
from langchain_core.tracers.schemas import Run

from tokenlean.bench.runner import _canonical_messages
from tokenlean_core import Ledger, MemorySink, count_tokens
from tokenlean_core.langchain import TokenleanCallbackHandler

MODEL = "gpt-4o-mini"


class MemoryTracer(BaseTracer):
    """Keeps every finished run (with its children) in memory, as LangSmith would receive it."""

    def __init__(self) -> None:
        super().__init__()
        self.roots: list[Run] = []

    def _persist_run(self, run: Run) -> None:
        self.roots.append(run)

    def all_runs(self) -> Iterator[Run]:
        stack = list(self.roots)
        while stack:
            run = stack.pop()
            yield run
            stack.extend(run.child_runs)


def _answers(texts: list[str]) -> Iterator[AIMessage]:
    for t in texts:
        n_out = int(count_tokens(t, MODEL))
        yield AIMessage(
            content=t,
            usage_metadata={
                "input_tokens": 120,
                "output_tokens": n_out,
                "total_tokens": 120 + n_out,
            },
            response_metadata={"model_name": MODEL},
        )


def _meta(run: Run) -> dict[str, Any]:
    return dict((run.extra or {}).get("metadata") or {})


@pytest.mark.models
def test_cache_hit_and_tokens_are_on_the_runs(tmp_path: Path) -> None:
    from tokenlean_cache import EmbeddedStore, SemanticCache
    from tokenlean_cache.langchain import CachedChatModel, TokenleanCache

    ledger = Ledger([MemorySink()])
    engine = SemanticCache(EmbeddedStore(str(tmp_path / "cache.sqlite")), ledger=ledger)
    model = CachedChatModel(
        model=GenericFakeChatModel(messages=_answers(["Settings > Security > Reset password."])),
        tokenlean_cache=TokenleanCache(engine),
    )
    prompt = ChatPromptTemplate.from_messages(
        [("system", "Support bot. Request at {ts}."), ("human", "{question}")]
    )
    chain = prompt | RunnableLambda(_canonical_messages) | model
    tracer = MemoryTracer()
    handler = TokenleanCallbackHandler(ledger, default_model=MODEL)
    # LangSmith's tracer (configured from the environment) runs after the handlers in config
    config: Any = {"callbacks": [handler, tracer]}
    first = chain.invoke(
        {"ts": "2026-11-22T10:00:00Z", "question": "How do I reset my password?"}, config
    )
    # another timestamp and different spacing: canonicalised to the same prompt, so a hit
    second = chain.invoke(
        {"ts": "2026-11-23T18:30:12Z", "question": "How do I  reset my password? "}, config
    )
    engine.close()
    assert second.text == first.text

    # one CachedChatModel run per request (on a miss the wrapped model's own run may nest
    # under it; the figures that matter are on the outer run, which LangSmith shows)
    llm_runs = [r for r in tracer.all_runs() if r.name == "CachedChatModel"]
    assert len(llm_runs) == 2
    by_hit = {bool(_meta(r).get("cache_hit")): r for r in llm_runs}
    assert set(by_hit) == {True, False}
    miss, hit = by_hit[False], by_hit[True]
    # the handler's figures: tokens and dollars of the call, on the run's metadata and outputs
    figures = _meta(miss)["tokenlean"]
    assert figures["input_tokens"] == 120 and figures["model"] == MODEL and figures["usd"] > 0
    assert (miss.outputs or {})["llm_output"]["tokenlean"]["input_tokens"] == 120
    assert "cache_distance" in _meta(hit)
    # the answer served from cache says so on the run's output message
    gen = (hit.outputs or {})["generations"][0][0]
    message = gen["message"]  # serialised as LangSmith receives it
    if not isinstance(message, dict):
        message = message.model_dump()
    meta = message.get("kwargs", message)["response_metadata"]
    assert meta["tokenlean"]["cache_hit"] is True
    # and the ledger credits the cache with the tokens the hit did not send
    saving = ledger.report().to_dict()["savings"]["cache"]
    # (in tokens: the fake model names no model in its parameters, so the cache cannot price it)
    assert saving["tokens_in"] == 120 and saving["count"] == 1


def test_route_and_compression_ratio_are_on_the_runs() -> None:
    from tokenlean_compress.langchain import LLMLinguaCompressor
    from tokenlean_router import HashingEmbedder, Router, Tier, train_gate
    from tokenlean_router.langchain import RouterChain

    ledger = Ledger([MemorySink()])
    short = [f"What is {w}?" for w in ("a cat", "rain", "a bus", "salt", "tea", "snow")]
    long_ = [
        "Compare these three contracts clause by clause and list every liability difference, "
        f"then draft a memo ({i}): " + "clause text " * 40
        for i in range(6)
    ]
    embedder = HashingEmbedder()
    gate = train_gate(
        short + long_, [1.0] * 6 + [0.0] * 6, [1.0] * 12, embedder=embedder, tokenizer_model=MODEL
    )
    router = Router(
        [Tier.per_million("gpt-4.1-nano", 0.1, 0.4), Tier.per_million(MODEL, 0.15, 0.6)],
        gate,
        embedder,
        thresholds=0.5,
        ledger=ledger,
    )
    small = GenericFakeChatModel(messages=_answers(["small answer"] * 4))
    large = GenericFakeChatModel(messages=_answers(["large answer"] * 4))
    compressor = LLMLinguaCompressor(rate=0.4, scorer="lexical", count_model=MODEL, ledger=ledger)
    passages = [
        Document(
            page_content="The Marlow tunnel runs under the harbour. It has four lanes, two "
            "in each direction, and a separate service gallery for maintenance crews."
        ),
        Document(
            page_content="Marlow is a port city with a long harbour front whose old town "
            "was rebuilt in brick after a storm destroyed many houses long ago."
        ),
        Document(
            page_content="Tunnel boring machines cut through rock and soil while lining "
            "the tunnel with concrete segments placed behind the cutting head."
        ),
    ]

    def retrieve_and_compress(question: str) -> list[Document]:
        return compressor.compress_documents(passages, question)

    prompt = ChatPromptTemplate.from_messages(
        [("system", "Answer from the passages.\n{context}"), ("human", "{question}")]
    )
    chain = (
        {
            "context": RunnableLambda(retrieve_and_compress, name="compress")
            | RunnableLambda(lambda docs: "\n".join(d.page_content for d in docs)),
            "question": RunnableLambda(lambda q: q),
        }
        | prompt
        | RouterChain(routes=[small, large], router=router, ledger=ledger)
    )
    tracer = MemoryTracer()
    config: Any = {"callbacks": [TokenleanCallbackHandler(ledger, default_model=MODEL), tracer]}
    out = chain.invoke("How many lanes does the Marlow tunnel have?", config)
    assert out.text in ("small answer", "large answer")

    runs = list(tracer.all_runs())
    route_runs = [r for r in runs if r.name == "RouterChain"]
    assert len(route_runs) == 1
    route = _meta(route_runs[0])["tokenlean_route"]
    assert route["tier"] in ("gpt-4.1-nano", MODEL) and route["strategy"] == "gate"
    assert 0.0 <= route["score"] <= 1.0
    assert out.response_metadata["tokenlean_route"]["tier"] == route["tier"]
    # the routed model's run carries the decision and the handler's token figures
    (llm_run,) = [r for r in runs if r.run_type == "llm"]
    assert _meta(llm_run)["tokenlean_route"]["tier"] == route["tier"]
    assert _meta(llm_run)["tokenlean"]["input_tokens"] == 120

    (compress_run,) = [r for r in runs if r.name == "compress"]
    docs = (compress_run.outputs or {})["output"]
    figures = [d.metadata["tokenlean_compression"] for d in docs]
    before = sum(f["original_tokens"] for f in figures)
    after = sum(f["compressed_tokens"] for f in figures)
    assert after < before  # the ratio the run shows is a real compression
    assert before / after > 1.2

    # the ledger has the same story: the compressor's saving and the route's
    savings = ledger.report().to_dict()["savings"]
    assert savings["compress"]["tokens_in"] > 0
    assert "router" in savings
