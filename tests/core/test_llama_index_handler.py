"""The LlamaIndex event handler inside real LlamaIndex pipelines on LlamaIndex's testing models."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from llama_index.core import Document, VectorStoreIndex
from llama_index.core.base.llms.types import ChatMessage, ChatResponse, CompletionResponse
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.llms import MockLLM
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback

from tokenlean_core import Budget, Ledger, Price, PriceTable, count_tokens, scope
from tokenlean_core.llama_index import TokenleanEventHandler

PRICES = PriceTable({"gpt-4o-mini": Price(input=0.15, output=0.6)})

# an OpenAI chat-completions response as the API documents it (usage with cached tokens)
OPENAI_RAW = {
    "id": "chatcmpl-123",
    "object": "chat.completion",
    "model": "gpt-4o-mini-2024-07-18",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "Hi"}, "finish_reason": "stop"}
    ],
    "usage": {
        "prompt_tokens": 1200,
        "completion_tokens": 9,
        "total_tokens": 1209,
        "prompt_tokens_details": {"cached_tokens": 1024},
        "completion_tokens_details": {"reasoning_tokens": 0},
    },
}


class RecordedLLM(MockLLM):
    """MockLLM that returns a recorded OpenAI response as its raw payload."""

    model: str = "gpt-4o-mini"

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return CompletionResponse(text="Hi", raw=OPENAI_RAW)


@pytest.fixture
def handler() -> Iterator[tuple[TokenleanEventHandler, Ledger]]:
    led = Ledger(prices=PRICES)
    h = TokenleanEventHandler.attach(led, default_model="gpt-4o-mini")
    try:
        yield h, led
    finally:
        h.detach()


def test_is_a_llama_index_event_handler() -> None:
    assert issubclass(TokenleanEventHandler, BaseEventHandler)
    assert TokenleanEventHandler.class_name() == "TokenleanEventHandler"


def test_query_engine_calls_are_counted(handler: tuple[TokenleanEventHandler, Ledger]) -> None:
    _, led = handler
    docs = [Document(text=f"Fact {i}: the sky is blue on day {i}.") for i in range(5)]
    index = VectorStoreIndex.from_documents(docs, embed_model=MockEmbedding(embed_dim=8))
    engine = index.as_query_engine(llm=MockLLM(max_tokens=20), similarity_top_k=2)
    with scope(tenant="acme"):
        engine.query("What colour is the sky?")
    recs = led.records()
    assert len(recs) == 1
    rec = recs[0]
    assert rec.model == "gpt-4o-mini"
    assert rec.scope.tenant == "acme"
    assert rec.usage is not None and rec.usage.source == "counted"
    assert rec.usage.input_tokens > count_tokens("What colour is the sky?", "gpt-4o-mini")
    assert rec.usage.output_tokens > 0
    assert rec.usd is not None and rec.usd > 0


def test_chat_is_recorded_once(handler: tuple[TokenleanEventHandler, Ledger]) -> None:
    _, led = handler
    llm = MockLLM(max_tokens=10)  # MockLLM implements chat through complete: nested events
    msgs = [ChatMessage(role="user", content="hello there")]
    resp = llm.chat(msgs)
    (rec,) = led.records()
    assert rec.usage is not None
    assert rec.usage.output_tokens == count_tokens(resp.message.content or "", "gpt-4o-mini")


def test_streaming_counts_the_final_answer_once(
    handler: tuple[TokenleanEventHandler, Ledger],
) -> None:
    _, led = handler
    llm = MockLLM(max_tokens=12)
    text = "".join(r.delta or "" for r in llm.stream_complete("stream me a story " * 3))
    (rec,) = led.records()
    assert rec.usage is not None
    assert rec.usage.output_tokens == count_tokens(text, "gpt-4o-mini")
    assert rec.ttft_s is not None


async def test_async_and_async_streaming(handler: tuple[TokenleanEventHandler, Ledger]) -> None:
    _, led = handler
    llm = MockLLM(max_tokens=8)
    await llm.acomplete("first question")
    gen = await llm.astream_complete("second question")
    text = ""
    async for r in gen:
        text += r.delta or ""  # what the caller received (MockLLM's .text lags one chunk)
    recs = led.records()
    assert len(recs) == 2
    assert recs[1].usage is not None
    assert recs[1].usage.output_tokens == count_tokens(text, "gpt-4o-mini")


def test_provider_usage_from_raw(handler: tuple[TokenleanEventHandler, Ledger]) -> None:
    _, led = handler
    RecordedLLM().complete("hello")
    (rec,) = led.records()
    assert rec.usage is not None
    assert (rec.usage.input_tokens, rec.usage.cache_read_tokens, rec.usage.source) == (
        1200,
        1024,
        "openai",
    )


def test_usage_from_additional_kwargs(handler: tuple[TokenleanEventHandler, Ledger]) -> None:
    _, led = handler

    class KwargsLLM(MockLLM):
        @llm_chat_callback()
        def chat(self, messages: Any, **kwargs: Any) -> ChatResponse:
            return ChatResponse(
                message=ChatMessage(role="assistant", content="ok"),
                additional_kwargs={"prompt_tokens": 33, "completion_tokens": 2, "total_tokens": 35},
            )

    KwargsLLM().chat([ChatMessage(role="user", content="hi")])
    (rec,) = led.records()
    assert rec.usage is not None
    assert (rec.usage.input_tokens, rec.usage.output_tokens) == (33, 2)


def test_budget_warns_and_records(handler: tuple[TokenleanEventHandler, Ledger]) -> None:
    _, led = handler
    led.add_budget(Budget("request", max_tokens=5))
    with scope(request="r1"), pytest.warns(RuntimeWarning, match="request budget exceeded"):
        MockLLM(max_tokens=3).complete("a prompt that is clearly longer than five tokens")
    kinds = [(r.kind, r.name) for r in led.records()]
    assert ("event", "budget_exceeded") in kinds


def test_handler_failure_is_contained(
    handler: tuple[TokenleanEventHandler, Ledger], caplog: pytest.LogCaptureFixture
) -> None:
    _, led = handler

    def boom(*a: Any, **k: Any) -> Any:
        raise RuntimeError("ledger exploded")

    led.record_call = boom  # type: ignore[method-assign]
    assert MockLLM(max_tokens=3).complete("hi").text
    assert "tokenlean event handler failed" in caplog.text
