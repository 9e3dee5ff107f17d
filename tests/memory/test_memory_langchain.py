"""LangChain adapters on LangChain's own testing models: RunnableWithMessageHistory + chat history,
create_agent + middleware, persistence through real stores (file, Redis)."""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from langchain_core.chat_history import BaseChatMessageHistory, InMemoryChatMessageHistory
from langchain_core.language_models.fake_chat_models import (
    FakeMessagesListChatModel,
    GenericFakeChatModel,
)
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
    messages_from_dict,
    messages_to_dict,
)
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
from langchain_core.runnables.history import RunnableWithMessageHistory
from langchain_core.tools import tool

from tokenlean_core import Ledger, count_tokens
from tokenlean_memory import (
    FileRecordStore,
    MemoryConfig,
    MemoryEngine,
    RecordStore,
    RedisRecordStore,
)
from tokenlean_memory.langchain import (
    LangChainTextModel,
    TokenleanChatMessageHistory,
    TokenleanMemoryMiddleware,
)

MODEL = "gpt-4o"
# LangChain 1.x marks these as deprecated in favour of LangGraph persistence; they are still what
# RunnableWithMessageHistory users run, so the adapter is tested against them.
pytestmark = pytest.mark.filterwarnings("ignore::langchain_core._api.LangChainDeprecationWarning")


def _summariser() -> LangChainTextModel:
    return LangChainTextModel(
        FakeMessagesListChatModel(
            responses=[AIMessage(f"Every parcel must be insured ({i}).") for i in range(200)]
        )
    )


def _engine(budget: int = 160, ledger: Ledger | None = None, **kw: Any) -> MemoryEngine:
    cfg = MemoryConfig(
        budget_tokens=budget, model=MODEL, summary_max_tokens=30, state_max_tokens=40, **kw
    )
    return MemoryEngine(cfg, summarizer=_summariser(), ledger=ledger or Ledger())


def _chain(get_history: Any) -> RunnableWithMessageHistory:
    replies = iter([AIMessage(f"Order B{i}42 ships on Monday from Oslo.") for i in range(200)])
    model = GenericFakeChatModel(messages=replies)
    prompt = ChatPromptTemplate.from_messages(
        [("system", "You are support."), MessagesPlaceholder("history"), ("human", "{q}")]
    )
    return RunnableWithMessageHistory(
        prompt | model, get_history, input_messages_key="q", history_messages_key="history"
    )


def _ask(i: int) -> str:
    return f"Question {i}: where is parcel P{i}77 going to Lisbon, it cost $ {i}9?"


def test_runnable_with_message_history_keeps_full_history(ledger: Ledger) -> None:
    engine = _engine(ledger=ledger)
    sessions: dict[str, TokenleanChatMessageHistory] = {}

    def get(sid: str) -> TokenleanChatMessageHistory:
        if sid not in sessions:
            sessions[sid] = TokenleanChatMessageHistory(
                InMemoryChatMessageHistory(),
                engine,
                session_id=sid,
                prefix=[SystemMessage("You are support.")],
            )
        return sessions[sid]

    chain = _chain(get)
    for i in range(14):
        out = chain.invoke({"q": _ask(i)}, config={"configurable": {"session_id": "s1"}})
        assert isinstance(out, AIMessage)
    hist = sessions["s1"]
    assert isinstance(hist, BaseChatMessageHistory)
    assert len(hist.full_messages) == 28  # nothing pruned from the user's store
    ctx_msgs = hist.messages
    ctx = hist.last_context
    assert ctx is not None and ctx.uses_memory
    assert ctx.tokens <= 160
    # the budget counts the prompt's own system message, passed as prefix
    counted = int(count_tokens([SystemMessage("You are support."), *ctx_msgs], MODEL))
    assert counted == ctx.tokens
    assert isinstance(ctx_msgs[0], SystemMessage)
    assert ctx_msgs[-1] is hist.full_messages[-1] or ctx_msgs[-1] == hist.full_messages[-1]
    rec = hist.record()
    assert rec.summary and rec.summary[0].text == "Every parcel must be insured (0)."
    assert any(e.value == "Lisbon" for e in rec.state.entities)
    assert [r for r in ledger.records() if r.kind == "saving" and r.component == "memory"]


async def test_runnable_async_background_update() -> None:
    engine = _engine()
    store: dict[str, TokenleanChatMessageHistory] = {}

    def get(sid: str) -> TokenleanChatMessageHistory:
        if sid not in store:
            store[sid] = TokenleanChatMessageHistory(
                InMemoryChatMessageHistory(), engine, session_id=sid, background=True
            )
        return store[sid]

    chain = _chain(get)
    for i in range(10):
        await chain.ainvoke({"q": _ask(i)}, config={"configurable": {"session_id": "a"}})
    hist = store["a"]
    msgs = await hist.aget_messages()  # waits for the pending background update
    assert hist.last_context is not None and hist.last_context.tokens <= 160
    assert len(await hist.history.aget_messages()) == 20
    rec = await hist.arecord()
    assert rec.extracted_upto == 20
    assert msgs
    await hist.aclear()
    assert await hist.history.aget_messages() == []
    assert (await hist.arecord()).extracted_upto == 0


def test_sync_background_update_and_close() -> None:
    hist = TokenleanChatMessageHistory(
        InMemoryChatMessageHistory(), _engine(), session_id="bg", background=True
    )
    for i in range(8):
        hist.add_messages([HumanMessage(_ask(i)), AIMessage(f"answer {i} from Oslo")])
    assert hist.record().extracted_upto == 16
    hist.close()


def _round_trip(store: RecordStore, history_factory: Any) -> None:
    engine = _engine()
    h1 = TokenleanChatMessageHistory(history_factory(), engine, session_id="rt", store=store)
    for i in range(12):
        h1.add_messages([HumanMessage(_ask(i)), AIMessage(f"answer {i} from Oslo")])
    before = h1.record()
    ctx_before = h1.messages
    # a new process: new wrapper, same stores
    h2 = TokenleanChatMessageHistory(history_factory(), _engine(), session_id="rt", store=store)
    assert h2.record() == before
    assert [m.content for m in h2.messages] == [m.content for m in ctx_before]
    assert len(h2.full_messages) == 24


def test_persistence_round_trip_file_store(tmp_path: Path) -> None:
    backing = InMemoryChatMessageHistory()
    _round_trip(FileRecordStore(tmp_path), lambda: backing)
    assert list(tmp_path.glob("*.memory.json"))


class RedisListHistory(BaseChatMessageHistory):
    """A LangChain chat history kept in a Redis list (LangChain's own message serialisation)."""

    def __init__(self, client: Any, key: str) -> None:
        self.client = client
        self.key = key

    @property
    def messages(self) -> list[BaseMessage]:  # type: ignore[override]
        raw = self.client.lrange(self.key, 0, -1)
        return messages_from_dict([json.loads(r) for r in raw])

    def add_messages(self, messages: Sequence[BaseMessage]) -> None:
        if messages:
            self.client.rpush(self.key, *(json.dumps(d) for d in messages_to_dict(messages)))

    def clear(self) -> None:
        self.client.delete(self.key)


@pytest.mark.redis
def test_persistence_round_trip_redis(redis_url: str) -> None:
    import redis

    store = RedisRecordStore(redis_url, prefix="tl-test:lc:")
    client = redis.Redis.from_url(redis_url)

    def history() -> RedisListHistory:
        return RedisListHistory(client, "tl-chat:rt-session")

    history().clear()
    try:
        _round_trip(store, history)
    finally:
        history().clear()
        store.delete("rt")
        store.close()
        client.close()


# ------------------------------------------------------------------ agent middleware


class _ToolFake(FakeMessagesListChatModel):
    """LangChain's fake list model, recording what it was sent; tools are accepted as-is."""

    seen: list[list[BaseMessage]] = []  # noqa: RUF012

    def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
        return self

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> Any:
        type(self).seen.append(list(messages))
        return super()._generate(messages, *args, **kwargs)


@tool
def lookup(order: str) -> str:
    """Look up an order and return its shipping status."""
    return f"order {order}: shipped from Oslo on 2026-03-0{len(order) % 9}"


def _agent_responses(n: int) -> list[BaseMessage]:
    out: list[BaseMessage] = []
    for i in range(n):
        out.append(
            AIMessage(
                "", tool_calls=[{"name": "lookup", "args": {"order": f"O{i}"}, "id": f"c{i}"}]
            )
        )
        out.append(AIMessage(f"Order O{i} shipped."))
    return out


@pytest.fixture
def agent_parts() -> tuple[Any, TokenleanMemoryMiddleware]:
    from langchain.agents import create_agent
    from langgraph.checkpoint.memory import InMemorySaver

    _ToolFake.seen = []
    model = _ToolFake(responses=_agent_responses(12))
    mw = TokenleanMemoryMiddleware(_engine(budget=260))
    agent = create_agent(
        model,
        tools=[lookup],
        system_prompt="You track orders.",
        middleware=[mw],
        checkpointer=InMemorySaver(),
    )
    return agent, mw


def _check_agent_calls(mw: TokenleanMemoryMiddleware) -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "lookup",
                "description": "Look up an order and return its shipping status.",
                "parameters": {
                    "properties": {"order": {"type": "string"}},
                    "required": ["order"],
                    "type": "object",
                },
            },
        }
    ]
    for sent in _ToolFake.seen:
        # budget respected, counting the system prompt and the tool schema
        assert int(count_tokens(sent, MODEL, tools=tools)) <= 260
        # no orphan tool results in what the model got
        for k, m in enumerate(sent):
            if isinstance(m, ToolMessage):
                prev = sent[k - 1]
                assert isinstance(prev, (AIMessage, ToolMessage))
        humans = [m for m in sent if isinstance(m, HumanMessage)]
        assert humans  # the latest user message is always there
    assert mw.last_context is not None


def test_create_agent_middleware(agent_parts: tuple[Any, TokenleanMemoryMiddleware]) -> None:
    agent, mw = agent_parts
    cfg = {"configurable": {"thread_id": "t1"}}
    for i in range(6):
        q = f"Check order O{i} for the Bergen office please, due March {i + 3}rd."
        out = agent.invoke({"messages": [{"role": "user", "content": q}]}, config=cfg)
    assert len(out["messages"]) == 24  # the agent state keeps every message
    assert out["messages"][-1].content == "Order O5 shipped."
    _check_agent_calls(mw)
    last = _ToolFake.seen[-1]
    assert isinstance(last[0], SystemMessage) and "You track orders." in last[0].text
    assert len(last) < 24
    assert mw.last_context is not None and mw.last_context.uses_memory
    rec = mw.store.get("t1")
    assert rec is not None and rec.extracted_upto == 24
    assert any(t.name == "lookup" for t in rec.state.tool_results)


async def test_create_agent_middleware_async(
    agent_parts: tuple[Any, TokenleanMemoryMiddleware],
) -> None:
    agent, mw = agent_parts
    cfg = {"configurable": {"thread_id": "t2"}}
    for i in range(6):
        q = f"Check order O{i} for the Bergen office please."
        out = await agent.ainvoke({"messages": [{"role": "user", "content": q}]}, config=cfg)
    assert len(out["messages"]) == 24
    _check_agent_calls(mw)
    rec = await mw.store.aget("t2")
    assert rec is not None and rec.summary


def test_text_model_over_chat_model() -> None:
    tm = LangChainTextModel(GenericFakeChatModel(messages=iter(["hello there"])), system="S")
    assert tm.complete("hi") == "hello there"


def test_no_deprecation_in_our_code() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        TokenleanMemoryMiddleware(_engine())
