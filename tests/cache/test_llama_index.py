"""The LlamaIndex wrapper LLM over MockLLM: chat, complete, streaming and async."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cache_helpers import toy_embed
from llama_index.core.llms import LLM, ChatMessage, MockLLM
from pydantic import PrivateAttr

from tokenlean_cache import EmbeddedStore, Guard, SemanticCache
from tokenlean_cache.llama_index import CachedLLM
from tokenlean_core import Ledger, MemorySink


class CountingLLM(MockLLM):
    """MockLLM that counts the calls reaching it."""

    _n: int = PrivateAttr(default=0)

    @property
    def calls(self) -> int:
        return self._n

    def complete(self, prompt: str, formatted: bool = False, **kwargs):  # type: ignore[no-untyped-def]
        self._n += 1
        return super().complete(prompt, formatted=formatted, **kwargs)

    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs):  # type: ignore[no-untyped-def]
        self._n += 1
        return super().stream_complete(prompt, formatted=formatted, **kwargs)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[SemanticCache]:
    e = SemanticCache(
        EmbeddedStore(tmp_path / "c.sqlite3"),
        embedder=toy_embed,
        guard=Guard(verifier=None),
        ledger=Ledger(sinks=[MemorySink()]),
    )
    yield e
    e.close()


def test_is_a_llama_index_llm(engine: SemanticCache) -> None:
    llm = CachedLLM(MockLLM(), cache=engine)
    assert isinstance(llm, LLM)
    assert llm.metadata == MockLLM().metadata


def test_complete_and_stream_complete(engine: SemanticCache) -> None:
    inner = CountingLLM()
    llm = CachedLLM(inner, cache=engine)
    first = llm.complete("What is a vector index?")
    second = llm.complete("what is a vector index")
    assert second.text == first.text and inner.calls == 1
    assert second.additional_kwargs["tokenlean"]["cache_hit"] is True
    streamed = list(llm.stream_complete("Explain HNSW graphs"))
    replay = list(llm.stream_complete("Explain HNSW graphs"))
    assert inner.calls == 2  # the replay did not call the LLM
    assert replay[-1].text == streamed[-1].text
    assert "".join(r.delta or "" for r in replay) == streamed[-1].text
    assert len(replay) > 1


def test_chat_and_stream_chat(engine: SemanticCache) -> None:
    llm = CachedLLM(MockLLM(), cache=engine)
    msgs = [
        ChatMessage(role="system", content="be brief"),
        ChatMessage(role="user", content="hi there"),
    ]
    first = llm.chat(msgs)
    hit = llm.chat(msgs)
    assert hit.message.content == first.message.content
    assert hit.additional_kwargs["tokenlean"]["cache_hit"] is True
    other_system = [
        ChatMessage(role="system", content="be verbose"),
        ChatMessage(role="user", content="hi there"),
    ]
    assert "tokenlean" not in llm.chat(other_system).additional_kwargs
    s1 = list(llm.stream_chat([ChatMessage(role="user", content="stream this please")]))
    s2 = list(llm.stream_chat([ChatMessage(role="user", content="stream this please")]))
    assert s2[-1].message.content == s1[-1].message.content
    assert "tokenlean" in s2[-1].additional_kwargs


async def test_async_variants(engine: SemanticCache) -> None:
    inner = CountingLLM()
    llm = CachedLLM(inner, cache=engine)
    a = await llm.acomplete("async completion")
    b = await llm.acomplete("async completion")
    assert a.text == b.text and inner.calls == 1
    c1 = await llm.achat([ChatMessage(role="user", content="async chat")])
    c2 = await llm.achat([ChatMessage(role="user", content="async chat")])
    assert c1.message.content == c2.message.content and "tokenlean" in c2.additional_kwargs
    g1 = [r async for r in await llm.astream_complete("async stream")]
    g2 = [r async for r in await llm.astream_complete("async stream")]
    assert g1[-1].text == g2[-1].text
    h1 = [
        r
        async for r in await llm.astream_chat(
            [ChatMessage(role="user", content="async chat stream")]
        )
    ]
    h2 = [
        r
        async for r in await llm.astream_chat(
            [ChatMessage(role="user", content="async chat stream")]
        )
    ]
    assert h1[-1].message.content == h2[-1].message.content


def test_llm_kwargs_are_prefilter(engine: SemanticCache) -> None:
    inner = CountingLLM()
    llm = CachedLLM(inner, cache=engine)
    llm.complete("same prompt")
    llm.complete("same prompt", temperature=0.9)
    assert inner.calls == 2
