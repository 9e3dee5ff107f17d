"""LlamaIndex adapter: a BaseMemory in SimpleChatEngine on MockLLM, persisted through
SimpleChatStore files and Redis; the record stores on their own."""

from __future__ import annotations

from pathlib import Path

import pytest
from llama_index.core.base.llms.types import ChatMessage, MessageRole
from llama_index.core.chat_engine import SimpleChatEngine
from llama_index.core.llms import MockLLM
from llama_index.core.memory.types import BaseMemory
from llama_index.core.storage.chat_store import SimpleChatStore

from tokenlean_core import Ledger, count_tokens
from tokenlean_memory import (
    FileRecordStore,
    FunctionTextModel,
    InMemoryRecordStore,
    MemoryConfig,
    MemoryEngine,
    MemoryRecord,
    RedisRecordStore,
    Summarizer,
)
from tokenlean_memory.llama_index import (
    ChatStoreRecordStore,
    LlamaIndexTextModel,
    TokenleanMemory,
    persist_simple_chat_store,
)

MODEL = "gpt-4o"
SYSTEM = "You are a travel desk."


def _config(budget: int = 170) -> MemoryConfig:
    return MemoryConfig(
        budget_tokens=budget, model=MODEL, summary_max_tokens=30, state_max_tokens=40
    )


def _memory(store: SimpleChatStore | None = None, ledger: Ledger | None = None) -> TokenleanMemory:
    # MockLLM echoes the head of the prompt: keep it unfiltered, so the test sees the summariser's
    # output travel through the LlamaIndex LLM into the record
    summariser = Summarizer(
        LlamaIndexTextModel(MockLLM(max_tokens=6)), novel_only=False, grounded=False
    )
    engine = MemoryEngine(_config(), summarizer=summariser, ledger=ledger or Ledger())
    return TokenleanMemory.from_defaults(
        engine=engine,
        chat_store=store or SimpleChatStore(),
        chat_store_key="user-1",
        prefix_messages=[ChatMessage(role=MessageRole.SYSTEM, content=SYSTEM)],
    )


def _chat(mem: TokenleanMemory, turns: int, start: int = 0) -> SimpleChatEngine:
    engine = SimpleChatEngine.from_defaults(
        llm=MockLLM(max_tokens=12),
        memory=mem,
        prefix_messages=[ChatMessage(role=MessageRole.SYSTEM, content=SYSTEM)],
    )
    for i in range(start, start + turns):
        engine.chat(f"Trip {i}: fly to Rome on March {i % 27 + 1}th for $ {i}40, ref R{i}X9.")
    return engine


def test_is_a_llama_index_memory(ledger: Ledger) -> None:
    mem = _memory(ledger=ledger)
    assert isinstance(mem, BaseMemory)
    _chat(mem, 10)
    assert len(mem.get_all()) == 20  # the full history, never pruned
    ctx = mem.get()
    last = mem.last_context
    assert last is not None and last.uses_memory
    # exact budget, counting the chat engine's own system prompt
    sent = [ChatMessage(role=MessageRole.SYSTEM, content=SYSTEM), *ctx]
    assert int(count_tokens(sent, MODEL)) == last.tokens <= 170
    assert ctx[-1].content == mem.get_all()[-1].content
    rec = mem.record()
    assert rec.summary and rec.summary[0].text  # MockLLM echoes part of the prompt
    assert any(e.value == "Rome" for e in rec.state.entities)
    assert [r for r in ledger.records() if r.component == "memory"]


async def test_async_chat_engine() -> None:
    mem = _memory()
    engine = SimpleChatEngine.from_defaults(llm=MockLLM(max_tokens=12), memory=mem)
    for i in range(10):
        await engine.achat(f"Trip {i}: fly to Oslo on the {i % 27 + 1}th.")
    assert len(await mem.aget_all()) == 20
    ctx = await mem.aget(input="Oslo")
    assert mem.last_context is not None and mem.last_context.tokens <= 170
    assert ctx
    rec = await mem.arecord()
    assert rec.extracted_upto == 20
    await mem.areset()
    assert await mem.aget_all() == []
    assert (await mem.arecord()).extracted_upto == 0


def test_simple_chat_store_file_round_trip(tmp_path: Path) -> None:
    store = SimpleChatStore()
    mem = _memory(store)
    _chat(mem, 10)
    before_ctx = [m.content for m in mem.get()]
    before = mem.record()
    path = tmp_path / "chat_store.json"
    persist_simple_chat_store(store, path)
    # a new process: load the store from disk; the summary/state came with it
    loaded = SimpleChatStore.from_persist_path(str(path))
    mem2 = _memory(loaded)
    assert mem2.record() == before
    assert [m.content for m in mem2.get()] == before_ctx
    assert "user-1" in loaded.get_keys()
    _chat(mem2, 2, start=10)  # and it carries on
    assert len(mem2.get_all()) == 24


def test_from_defaults_with_llm_and_history() -> None:
    history = [
        ChatMessage(role=MessageRole.USER, content=f"message {i} about Paris") for i in range(30)
    ]
    mem = TokenleanMemory.from_defaults(
        chat_history=history, llm=MockLLM(max_tokens=4), config=_config(120)
    )
    assert len(mem.get_all()) == 30
    assert mem.record().extracted_upto == 30
    assert mem.get()
    with pytest.raises(ValueError, match="either engine"):
        TokenleanMemory.from_defaults(engine=MemoryEngine(_config()), config=_config())


def _record() -> MemoryRecord:
    engine = MemoryEngine(
        _config(),
        summarizer=FunctionTextModel(lambda p: "The crates must be insured."),
        ledger=Ledger(),
    )
    msgs = [
        {"role": "user", "content": f"Ship {i} crates to Hamburg by Friday."} for i in range(25)
    ]
    rec = engine.update(msgs, MemoryRecord(session_id="s-1"))
    assert rec.summary
    return rec


def test_record_stores_round_trip(tmp_path: Path) -> None:
    rec = _record()
    for store in (
        InMemoryRecordStore(),
        FileRecordStore(tmp_path),
        ChatStoreRecordStore(SimpleChatStore()),
    ):
        assert store.get("s-1") is None
        store.put(rec)
        assert store.get("s-1") == rec
        store.delete("s-1")
        assert store.get("s-1") is None


@pytest.mark.redis
def test_redis_record_store_sync_and_async(redis_url: str) -> None:
    import asyncio

    rec = _record()
    store = RedisRecordStore(redis_url, prefix="tl-test:rec:", ttl_s=60)
    try:
        store.put(rec)
        assert store.get("s-1") == rec
        assert 0 < store.client.ttl(store.key("s-1")) <= 60

        async def run() -> None:
            assert await store.aget("s-1") == rec
            await store.adelete("s-1")
            assert await store.aget("s-1") is None
            await store.aput(rec)
            await store.aclose()

        asyncio.run(run())
        assert store.get("s-1") == rec
    finally:
        store.delete("s-1")
        store.close()


@pytest.mark.redis
def test_llama_index_memory_with_redis_records(redis_url: str) -> None:
    records = RedisRecordStore(redis_url, prefix="tl-test:li:")
    chat_store = SimpleChatStore()
    engine = MemoryEngine(
        _config(), summarizer=FunctionTextModel(lambda p: "Pack it all."), ledger=Ledger()
    )
    mem = TokenleanMemory.from_defaults(
        engine=engine, chat_store=chat_store, chat_store_key="k", record_store=records
    )
    try:
        _chat(mem, 10)
        again = TokenleanMemory.from_defaults(
            engine=engine, chat_store=chat_store, chat_store_key="k", record_store=records
        )
        assert again.record() == mem.record()
        assert again.record().summary
    finally:
        records.delete("k")
        records.close()


# llama-index's workflow agents touch pydantic's deprecated ``__fields__`` internally
@pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecatedSince20")
@pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecatedSince211")
async def test_function_agent_uses_the_memory() -> None:
    from llama_index.core.agent.workflow import FunctionAgent
    from llama_index.core.llms.mock import MockFunctionCallingLLM

    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    mem = TokenleanMemory.from_defaults(
        engine=MemoryEngine(MemoryConfig(budget_tokens=150, model=MODEL), ledger=Ledger())
    )
    agent = FunctionAgent(
        tools=[add], llm=MockFunctionCallingLLM(max_tokens=10), system_prompt="You add."
    )
    for i in range(8):
        await agent.run(f"Question {i}: add {i} and 7 for the Oslo office", memory=mem)
    full = await mem.aget_all()
    assert sum(1 for m in full if m.role == MessageRole.USER) == 8  # the agent's full history
    last = mem.last_context
    assert last is not None and last.tokens <= 150 < last.full_tokens
    assert (await mem.arecord()).extracted_upto == len(full)
