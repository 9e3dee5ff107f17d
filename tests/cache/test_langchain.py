"""LangChain adapters: the standard cache suites on both stores, set_llm_cache, a model's cache=,
cached streaming through CachedChatModel, run metadata and the ledger."""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from cache_helpers import toy_embed
from langchain_core.caches import BaseCache
from langchain_core.globals import set_llm_cache
from langchain_core.language_models import FakeListChatModel, GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_tests.integration_tests import AsyncCacheTestSuite, SyncCacheTestSuite

from tokenlean_cache import EmbeddedStore, Guard, RedisStore, SemanticCache, no_cache
from tokenlean_cache.langchain import (
    CachedChatModel,
    TokenleanCache,
    parse_llm_string,
    parse_prompt,
)
from tokenlean_core import Ledger, MemorySink

_NS = itertools.count()


def _engine(store: object) -> SemanticCache:
    return SemanticCache(
        store, embedder=toy_embed, guard=Guard(verifier=None), ledger=Ledger(sinks=[MemorySink()])
    )  # type: ignore[arg-type]


class TestEmbeddedSync(SyncCacheTestSuite):
    @pytest.fixture
    def cache(self, tmp_path: Path) -> Iterator[BaseCache]:
        c = TokenleanCache(_engine(EmbeddedStore(tmp_path / "c.sqlite3")))
        yield c
        c.engine.close()


class TestEmbeddedAsync(AsyncCacheTestSuite):
    @pytest.fixture
    async def cache(self, tmp_path: Path) -> AsyncIterator[BaseCache]:
        c = TokenleanCache(_engine(EmbeddedStore(tmp_path / "c.sqlite3")))
        yield c
        c.engine.close()


@pytest.mark.redis
class TestRedisSync(SyncCacheTestSuite):
    @pytest.fixture
    def cache(self, redis_url: str) -> Iterator[BaseCache]:
        store = RedisStore(redis_url, namespace=f"lcs{os.getpid()}x{next(_NS)}")
        c = TokenleanCache(_engine(store))
        yield c
        store.clear()
        store.close()


@pytest.mark.redis
class TestRedisAsync(AsyncCacheTestSuite):
    @pytest.fixture
    async def cache(self, redis_url: str) -> AsyncIterator[BaseCache]:
        store = RedisStore(redis_url, namespace=f"lca{os.getpid()}x{next(_NS)}")
        c = TokenleanCache(_engine(store))
        yield c
        await store.aclear()
        await store.aclose()
        store.close()


def test_parse_prompt_and_llm_string() -> None:
    from langchain_core.load import dumps

    prompt = dumps(
        [
            SystemMessage("be brief"),
            HumanMessage("hi"),
            AIMessage("hello"),
            HumanMessage("What is RAG?"),
        ]
    )
    msgs = parse_prompt(prompt)
    assert isinstance(msgs, list)
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user"]
    assert msgs[-1]["content"] == "What is RAG?"
    assert parse_prompt("plain completion prompt") == "plain completion prompt"
    assert parse_prompt("[not json") == "[not json"
    assert (
        parse_llm_string("[('model_name', 'gpt-4o-mini'), ('temperature', 0.2)]") == "gpt-4o-mini"
    )
    assert parse_llm_string('{"kwargs": {"model": "claude-x"}}---[]') == "claude-x"


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[SemanticCache]:
    e = _engine(EmbeddedStore(tmp_path / "c.sqlite3"))
    yield e
    e.close()


def test_set_llm_cache_with_generic_fake_chat_model(engine: SemanticCache) -> None:
    usage = {"input_tokens": 120, "output_tokens": 30, "total_tokens": 150}
    model = GenericFakeChatModel(
        messages=iter([AIMessage("Paris.", usage_metadata=usage), AIMessage("Berlin.")])
    )
    set_llm_cache(TokenleanCache(engine))
    try:
        assert model.invoke("What is the capital of France?").content == "Paris."
        hit = model.invoke("what is the capital of France")
        assert hit.content == "Paris."
        assert hit.response_metadata["tokenlean"]["cache_hit"] is True
        assert model.invoke("What is the capital of Germany?").content == "Berlin."
    finally:
        set_llm_cache(None)
    report = engine.ledger.report()
    assert report.saved_tokens == 150
    assert report.cache_hit_rate == pytest.approx(1 / 3)


def test_model_cache_param_and_param_changes_miss(engine: SemanticCache) -> None:
    tc = TokenleanCache(engine)
    a = FakeListChatModel(responses=["one", "two", "three"], cache=tc)
    assert a.invoke("Tell me a joke").content == "one"
    assert a.invoke("Tell me a joke").content == "one"
    assert a.invoke("Tell me a joke", stop=["\n"]).content == "two"  # other params: miss
    b = FakeListChatModel(responses=["other model"], cache=tc, sleep=0.0)
    assert b.invoke("Tell me a joke").content == "other model"  # other model config: miss
    with no_cache():
        assert a.invoke("Tell me a joke").content == "three"


async def test_async_invoke(engine: SemanticCache) -> None:
    model = FakeListChatModel(responses=["first", "second"], cache=TokenleanCache(engine))
    assert (await model.ainvoke("async question")).content == "first"
    assert (await model.ainvoke("async question")).content == "first"


def test_tenant_isolation_through_langchain(engine: SemanticCache) -> None:
    from tokenlean_core import scope

    model = FakeListChatModel(
        responses=["acme answer", "globex answer"], cache=TokenleanCache(engine)
    )
    with scope(tenant="acme"):
        assert model.invoke("What is our policy?").content == "acme answer"
    with scope(tenant="globex"):
        assert model.invoke("What is our policy?").content == "globex answer"
    with scope(tenant="acme"):
        assert model.invoke("What is our policy?").content == "acme answer"


def test_cached_streaming_replays_chunks_and_stores_streams(engine: SemanticCache) -> None:
    inner = GenericFakeChatModel(
        messages=iter([AIMessage("The answer is forty two."), AIMessage("unused")])
    )
    model = CachedChatModel(model=inner, tokenlean_cache=TokenleanCache(engine))
    first = list(model.stream("What is the answer?"))
    assert "".join(str(c.content) for c in first) == "The answer is forty two."
    replay = list(model.stream("What is the answer?"))
    assert len(replay) > 1  # replayed as chunks, not one blob
    assert "".join(str(c.content) for c in replay) == "The answer is forty two."
    assert model.invoke("What is the answer?").content == "The answer is forty two."
    events = [r.name for r in engine.ledger.records() if r.component == "cache"]
    assert events == ["miss", "hit", "hit"]


async def test_cached_astream(engine: SemanticCache) -> None:
    inner = GenericFakeChatModel(messages=iter([AIMessage("streamed async answer")]))
    model = CachedChatModel(model=inner, tokenlean_cache=TokenleanCache(engine))
    first = [c async for c in model.astream("async stream question")]
    again = [c async for c in model.astream("async stream question")]
    assert "".join(str(c.content) for c in first) == "".join(str(c.content) for c in again)
    assert (await model.ainvoke("async stream question")).content == "streamed async answer"


def test_run_metadata_gets_cache_hit(engine: SemanticCache) -> None:
    from langchain_core.callbacks import BaseCallbackHandler

    seen: list[dict[str, object]] = []

    class Spy(BaseCallbackHandler):
        def on_chat_model_start(self, serialized, messages, *, metadata=None, **kw):  # type: ignore[no-untyped-def]
            if metadata is not None:
                seen.append(metadata)

    inner = FakeListChatModel(responses=["x"])
    model = CachedChatModel(model=inner, tokenlean_cache=TokenleanCache(engine))
    model.invoke("metadata question", config={"callbacks": [Spy()], "metadata": {"app": "t"}})
    model.invoke("metadata question", config={"callbacks": [Spy()], "metadata": {"app": "t"}})
    outer = [m for m in seen if m.get("app") == "t" and "cache_hit" in m]
    assert [m["cache_hit"] for m in outer][-1] is True


@pytest.mark.parametrize("mode", ["invoke", "stream"])
def test_a_miss_inside_a_chain_is_one_model_run(engine: SemanticCache, mode: str) -> None:
    """The wrapped model must not show up as a second, nested chat-model run (which would make
    every handler, the ledger's included, count the call twice)."""
    from langchain_core.callbacks import BaseCallbackHandler
    from langchain_core.prompts import ChatPromptTemplate

    starts: list[object] = []

    class Spy(BaseCallbackHandler):
        def on_chat_model_start(self, serialized, messages, **kw):  # type: ignore[no-untyped-def]
            starts.append(kw.get("run_id"))

    inner = GenericFakeChatModel(messages=iter([AIMessage("one answer")]))
    chain = ChatPromptTemplate.from_messages([("user", "{q}")]) | CachedChatModel(
        model=inner, tokenlean_cache=TokenleanCache(engine)
    )
    config = {"callbacks": [Spy()]}
    if mode == "invoke":
        assert (
            chain.invoke({"q": f"nested run question {mode}"}, config=config).content
            == "one answer"
        )  # type: ignore[arg-type]
    else:
        chunks = list(chain.stream({"q": f"nested run question {mode}"}, config=config))  # type: ignore[arg-type]
        assert "".join(str(c.content) for c in chunks) == "one answer"
    assert len(starts) == 1
