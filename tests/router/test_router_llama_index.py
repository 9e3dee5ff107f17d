"""RouterLLM inside real LlamaIndex components, routing between LlamaIndex MockLLMs."""

from __future__ import annotations

from typing import Any

import pytest
from llama_index.core.base.llms.types import ChatMessage, MessageRole
from llama_index.core.chat_engine import SimpleChatEngine
from llama_index.core.llms import MockLLM
from llama_index.core.memory import ChatMemoryBuffer
from llama_index.core.prompts import PromptTemplate

from tokenlean_core import Ledger
from tokenlean_router import AllTiersFailedError, Router, RouterConfigError
from tokenlean_router.llama_index import RouterLLM

HARD = "Calculate 482 * 17 + 95 and show each step of the computation."
EASY = "What is the capital of France?"


class Broken(MockLLM):
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
        raise ConnectionError("provider unavailable")

    def chat(self, messages: Any, **kwargs: Any) -> Any:
        raise ConnectionError("provider unavailable")


def llms() -> tuple[MockLLM, MockLLM]:
    # small answers with 2 words, large with 5: the route is visible in the answer
    return MockLLM(max_tokens=2), MockLLM(max_tokens=5)


def test_complete_and_chat_route_by_gate(router: Router, ledger: Ledger) -> None:
    llm = RouterLLM(router, list(llms()))
    easy = llm.complete(EASY)
    assert easy.text == "text text"
    assert easy.additional_kwargs["tokenlean_route"]["tier"] == "small-model"
    hard = llm.complete(HARD)
    assert hard.text.split() == ["text"] * 5
    resp = llm.chat([ChatMessage(role=MessageRole.USER, content=HARD)])
    assert resp.additional_kwargs["tokenlean_route"]["tier"] == "large-model"
    savings = [r for r in ledger.records() if r.kind == "saving"]
    assert [s.model for s in savings] == ["small-model", "large-model", "large-model"]
    assert savings[0].usd is not None and savings[0].usd > 0


async def test_async_and_streaming(router: Router, ledger: Ledger) -> None:
    llm = RouterLLM(router, list(llms()))
    assert (await llm.acomplete(EASY)).text == "text text"
    deltas = [r.delta for r in llm.stream_complete(HARD)]
    assert "".join(d or "" for d in deltas).split() == ["text"] * 5
    adeltas = [r.delta async for r in await llm.astream_complete(EASY)]
    assert "".join(d or "" for d in adeltas).split() == ["text"] * 2
    msgs = [ChatMessage(role=MessageRole.USER, content=EASY)]
    chunks = list(llm.stream_chat(msgs))
    assert chunks[-1].additional_kwargs["tokenlean_route"]["tier"] == "small-model"
    achunks = [c async for c in await llm.astream_chat(msgs)]
    assert achunks and (await llm.achat(msgs)).message.content
    assert len([r for r in ledger.records() if r.kind == "saving"]) == 6


def test_inside_a_chat_engine_and_prompt(router: Router) -> None:
    small, large = MockLLM(max_tokens=2, is_chat_model=True), MockLLM(max_tokens=6)
    llm = RouterLLM(router, [small, large])
    # an explicit in-process buffer: the default Memory opens an aiosqlite database
    engine = SimpleChatEngine.from_defaults(llm=llm, memory=ChatMemoryBuffer.from_defaults())
    reply = engine.chat(EASY)
    assert str(reply).split() == ["text", "text"]
    prompt = PromptTemplate("Question: {q}")
    out = llm.predict(prompt, q=HARD)
    assert out.split() == ["text"] * 6
    assert llm.metadata.model_name == "router[small-model,large-model]"


def test_fallback_and_errors(router: Router) -> None:
    llm = RouterLLM(router, [Broken(max_tokens=2), MockLLM(max_tokens=3)])
    out = llm.complete(EASY)
    assert out.text.split() == ["text"] * 3
    assert out.additional_kwargs["tokenlean_route"]["fallback_from"] == "small-model"
    strict = RouterLLM(router, [Broken(), MockLLM()], fallback=False)
    with pytest.raises(AllTiersFailedError):
        strict.complete(EASY)
    with pytest.raises(RouterConfigError, match="one LLM per tier"):
        RouterLLM(router, [MockLLM()])
