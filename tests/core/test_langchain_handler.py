"""The LangChain callback handler inside real LangChain chains on LangChain's own testing models."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models import FakeListLLM, GenericFakeChatModel
from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.tracers.run_collector import RunCollectorCallbackHandler

from tokenlean_core import (
    Budget,
    BudgetExceededError,
    Ledger,
    Price,
    PriceTable,
    count_tokens,
    scope,
)
from tokenlean_core.langchain import METADATA_KEY, TokenleanCallbackHandler

PROMPT = ChatPromptTemplate.from_messages([("system", "Be brief."), ("user", "{q}")])
PRICES = PriceTable({"gpt-4o-mini": Price(input=0.15, output=0.6, cache_read=0.075)})


def answers(n: int, **kw: Any) -> Iterator[AIMessage]:
    return iter([AIMessage(content=f"answer number {i}", **kw) for i in range(n)])


def reported(n: int) -> Iterator[AIMessage]:
    return answers(
        n,
        usage_metadata={
            "input_tokens": 120,
            "output_tokens": 7,
            "total_tokens": 127,
            "input_token_details": {"cache_read": 100},
            "output_token_details": {"reasoning": 2},
        },
        response_metadata={"model_name": "gpt-4o-mini"},
    )


def make(
    ledger: Ledger, messages: Iterator[AIMessage], **kw: Any
) -> tuple[Any, TokenleanCallbackHandler]:
    handler = TokenleanCallbackHandler(ledger, **kw)
    chain = PROMPT | GenericFakeChatModel(messages=messages) | StrOutputParser()
    return chain, handler


def test_provider_usage_is_recorded_and_priced() -> None:
    led = Ledger(prices=PRICES)
    chain, handler = make(led, reported(1))
    assert chain.invoke({"q": "hi"}, config={"callbacks": [handler]}) == "answer number 0"
    (rec,) = led.records()
    assert rec.model == "gpt-4o-mini"
    assert rec.usage is not None
    assert (rec.usage.input_tokens, rec.usage.cache_read_tokens, rec.usage.reasoning_tokens) == (
        120,
        100,
        2,
    )
    assert rec.usage.source == "langchain"
    assert rec.usd == pytest.approx((20 * 0.15 + 100 * 0.075 + 7 * 0.6) / 1e6)
    assert rec.latency_s is not None and rec.latency_s >= 0


def test_counted_when_the_provider_reports_nothing() -> None:
    led = Ledger(prices=PRICES)
    chain, handler = make(led, answers(1), default_model="gpt-4o-mini")
    chain.invoke({"q": "What is the capital of France?"}, config={"callbacks": [handler]})
    (rec,) = led.records()
    assert rec.usage is not None
    expected_in = count_tokens(
        PROMPT.format_messages(q="What is the capital of France?"), "gpt-4o-mini"
    )
    assert rec.usage.input_tokens == expected_in
    assert rec.usage.output_tokens == count_tokens("answer number 0", "gpt-4o-mini")
    assert rec.usage.source == "counted"
    assert rec.usage.exact


def test_streaming_counts_the_whole_answer_once_and_times_first_token() -> None:
    led = Ledger(prices=PRICES)
    chain, handler = make(led, answers(1), default_model="gpt-4o-mini")
    chunks = list(chain.stream({"q": "hi"}, config={"callbacks": [handler]}))
    assert len(chunks) > 1
    (rec,) = led.records()
    assert rec.usage is not None
    assert rec.usage.output_tokens == count_tokens("answer number 0", "gpt-4o-mini")
    assert rec.ttft_s is not None and rec.latency_s is not None and rec.ttft_s <= rec.latency_s


def test_streamed_usage_chunks_are_used() -> None:
    class UsageStreamingModel(GenericFakeChatModel):
        def _stream(self, *args: Any, **kwargs: Any) -> Any:
            yield from super()._stream(*args, **kwargs)
            from langchain_core.outputs import ChatGenerationChunk

            yield ChatGenerationChunk(
                message=AIMessageChunk(
                    content="",
                    usage_metadata={"input_tokens": 50, "output_tokens": 4, "total_tokens": 54},
                    response_metadata={"model_name": "gpt-4o-mini"},
                )
            )

    led = Ledger(prices=PRICES)
    handler = TokenleanCallbackHandler(led)
    chain = PROMPT | UsageStreamingModel(messages=answers(1))
    list(chain.stream({"q": "hi"}, config={"callbacks": [handler]}))
    (rec,) = led.records()
    assert rec.usage is not None
    assert (rec.usage.input_tokens, rec.usage.output_tokens, rec.usage.source) == (
        50,
        4,
        "langchain",
    )
    assert rec.model == "gpt-4o-mini"


async def test_async_invoke_stream_and_batch_keep_scopes() -> None:
    led = Ledger(prices=PRICES)
    chain, handler = make(led, reported(6))
    cfg = {"callbacks": [handler]}
    with scope(tenant="acme", session="s1"):
        await chain.ainvoke({"q": "a"}, config=cfg)
        [c async for c in chain.astream({"q": "b"}, config=cfg)]
        await chain.abatch([{"q": "c"}, {"q": "d"}], config=cfg)
    chain.batch([{"q": "e"}, {"q": "f"}], config=cfg)
    recs = led.records()
    assert len(recs) == 6
    assert [r.scope.tenant for r in recs[:4]] == ["acme"] * 4
    assert recs[4].scope.tenant is None


def test_figures_land_on_the_traced_run_metadata() -> None:
    led = Ledger(prices=PRICES)
    chain, handler = make(led, reported(2))
    for order in ([handler], []):
        collector = RunCollectorCallbackHandler()
        callbacks = [collector, handler] if order else [handler, collector]
        chain.invoke({"q": "hi"}, config={"callbacks": callbacks})
        (root,) = collector.traced_runs
        llm_run = next(r for r in root.child_runs if r.run_type == "llm")
        figures = llm_run.extra["metadata"][METADATA_KEY]
        assert figures["input_tokens"] == 120
        assert figures["cache_read_tokens"] == 100
        assert figures["usd"] == pytest.approx(led.records()[-1].usd)


def test_budget_stops_the_call_before_it_is_made() -> None:
    led = Ledger(prices=PRICES, budgets=[Budget("session", max_tokens=200)])
    chain, handler = make(led, reported(3))
    cfg = {"callbacks": [handler]}
    with scope(session="s1"):
        chain.invoke({"q": "one"}, config=cfg)  # 127 tokens
        with pytest.raises(BudgetExceededError, match="session budget exceeded"):
            chain.invoke({"q": "two " * 100}, config=cfg)
    assert len(led.records()) == 1


def test_a_broken_ledger_never_breaks_the_chain(caplog: pytest.LogCaptureFixture) -> None:
    class Boom(Ledger):
        def record_call(self, *a: Any, **k: Any) -> Any:
            raise RuntimeError("ledger exploded")

    chain, handler = make(Boom(prices=PRICES), reported(1))
    assert chain.invoke({"q": "hi"}, config={"callbacks": [handler]}) == "answer number 0"
    assert "tokenlean handler failed" in caplog.text


def test_llm_errors_are_recorded_as_events() -> None:
    led = Ledger(prices=PRICES)

    class Failing(GenericFakeChatModel):
        def _generate(self, *a: Any, **k: Any) -> Any:
            raise ValueError("provider down")

    handler = TokenleanCallbackHandler(led)
    with pytest.raises(ValueError, match="provider down"):
        (PROMPT | Failing(messages=answers(1))).invoke({"q": "x"}, config={"callbacks": [handler]})
    (rec,) = led.records()
    assert (rec.kind, rec.name, rec.detail["error"]) == ("event", "error", "ValueError")
    assert handler._runs == {}


def test_completion_llms_are_counted() -> None:
    led = Ledger(prices=PRICES)
    handler = TokenleanCallbackHandler(led, default_model="gpt-4o-mini")
    FakeListLLM(responses=["forty two"]).invoke(
        "What is six times seven?", config={"callbacks": [handler]}
    )
    (rec,) = led.records()
    assert rec.usage is not None
    assert rec.usage.input_tokens == count_tokens("What is six times seven?", "gpt-4o-mini")
    assert rec.usage.output_tokens == count_tokens("forty two", "gpt-4o-mini")


def test_is_a_langchain_callback_handler() -> None:
    assert issubclass(TokenleanCallbackHandler, BaseCallbackHandler)


def test_figures_reach_a_langsmith_trace() -> None:
    """LangSmith's own tracer, with a client that keeps the runs it would post (no network)."""
    from langchain_core.tracers.langchain import LangChainTracer
    from langsmith import Client

    class KeepRuns(Client):
        def __init__(self) -> None:
            super().__init__(api_key="test", api_url="http://127.0.0.1:9", auto_batch_tracing=False)
            self.updates: list[dict[str, Any]] = []

        def create_run(self, *args: Any, **kwargs: Any) -> None:
            return None

        def update_run(self, run_id: Any, **kwargs: Any) -> None:
            self.updates.append(kwargs)

    client = KeepRuns()
    tracer = LangChainTracer(client=client, project_name="tokenlean-tests")
    led = Ledger(prices=PRICES)
    chain, handler = make(led, reported(1))
    chain.invoke({"q": "hi"}, config={"callbacks": [handler, tracer]})
    tracer.wait_for_futures()
    llm_updates = [u for u in client.updates if (u.get("outputs") or {}).get("llm_output")]
    assert len(llm_updates) == 1
    figures = llm_updates[0]["outputs"]["llm_output"][METADATA_KEY]
    assert figures["input_tokens"] == 120
    assert figures["cache_read_tokens"] == 100
    assert figures["usd"] == pytest.approx(led.records()[0].usd)
