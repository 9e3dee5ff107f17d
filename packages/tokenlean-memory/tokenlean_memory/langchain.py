"""LangChain adapters: a chat message history for ``RunnableWithMessageHistory`` and an agent
middleware for LangChain 1.x ``create_agent``.

The full history stays in the LangChain chat history you pass (``InMemoryChatMessageHistory``,
``RedisChatMessageHistory``, ...); the summary and state go to a :class:`RecordStore` beside it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from tokenlean_core import MissingDependencyError

try:
    from langchain_core.chat_history import BaseChatMessageHistory
    from langchain_core.language_models import BaseChatModel
    from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
    from langchain_core.utils.function_calling import convert_to_openai_tool
except ImportError as exc:  # pragma: no cover - extra not installed
    raise MissingDependencyError("langchain-core", "langchain", "tokenlean-memory") from exc

from .engine import MemoryContext, MemoryEngine
from .schema import MemoryRecord
from .stores import InMemoryRecordStore, RecordStore

__all__ = [
    "LangChainTextModel",
    "TokenleanChatMessageHistory",
    "TokenleanMemoryMiddleware",
    "openai_tools",
]

logger = logging.getLogger("tokenlean.memory")


class LangChainTextModel:
    """A :class:`~tokenlean_memory.models.TextModel` over any LangChain chat model (or runnable
    that takes messages and returns a message). Used as summariser or state extractor."""

    def __init__(self, model: BaseChatModel | Any, *, system: str | None = None) -> None:
        self.model = model
        self.system = system

    def _input(self, prompt: str) -> list[BaseMessage]:
        msgs: list[BaseMessage] = [SystemMessage(self.system)] if self.system else []
        msgs.append(HumanMessage(prompt))
        return msgs

    @staticmethod
    def _text(out: Any) -> str:
        if isinstance(out, BaseMessage):
            return out.text
        return str(out)

    def complete(self, prompt: str) -> str:
        return self._text(self.model.invoke(self._input(prompt)))

    async def acomplete(self, prompt: str) -> str:
        return self._text(await self.model.ainvoke(self._input(prompt)))


def openai_tools(tools: Sequence[Any] | None) -> list[dict[str, Any]]:
    """LangChain tools (or dicts / functions / pydantic models) as OpenAI tool schemas."""
    out: list[dict[str, Any]] = []
    for t in tools or ():
        if isinstance(t, Mapping) and "type" in t and t.get("type") != "function":
            out.append(dict(t))  # provider built-in tool: counted as given
        else:
            out.append(convert_to_openai_tool(t))
    return out


class TokenleanChatMessageHistory(BaseChatMessageHistory):
    """A chat history whose ``messages`` are the budgeted context, not the whole history.

    Wraps ``history`` (any ``BaseChatMessageHistory``, which keeps every message); ``add_messages``
    writes there and then updates the summary/state in ``store``. Fits
    ``RunnableWithMessageHistory``: its ``get_session_history`` returns one of these per session.

    Args:
        history: the full history (never pruned by this class).
        engine: the :class:`MemoryEngine` (budget, summariser, extractors).
        session_id: the key of the summary/state record in ``store``.
        store: where the record is persisted (default: in memory).
        prefix: messages the prompt sends ahead of the history (e.g. the template's system
            prompt), counted in the budget but not returned.
        tools: tool schemas bound to the model, counted in the budget.
        background: run ``update`` after ``add_messages`` returns (a worker thread, or an asyncio
            task for ``aadd_messages``); the next read waits for it.
    """

    def __init__(
        self,
        history: BaseChatMessageHistory,
        engine: MemoryEngine,
        *,
        session_id: str = "default",
        store: RecordStore | None = None,
        prefix: Sequence[Any] | None = None,
        tools: Sequence[Any] | None = None,
        background: bool = False,
    ) -> None:
        self.history = history
        self.engine = engine
        self.session_id = session_id
        self.store: RecordStore = store if store is not None else InMemoryRecordStore()
        self.prefix = list(prefix or [])
        self.tools = openai_tools(tools) if tools else None
        self.background = background
        self._lock = threading.Lock()
        self._future: Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self.last_context: MemoryContext | None = None

    # -- record -----------------------------------------------------------------------------
    def record(self) -> MemoryRecord:
        """The persisted summary/state (waits for a pending background update)."""
        self._wait()
        rec = self.store.get(self.session_id)
        return rec if rec is not None else MemoryRecord(session_id=self.session_id)

    async def arecord(self) -> MemoryRecord:
        await self._await()
        rec = await self.store.aget(self.session_id)
        return rec if rec is not None else MemoryRecord(session_id=self.session_id)

    def _wait(self) -> None:
        fut = self._future
        if fut is not None:
            fut.result()
            self._future = None

    async def _await(self) -> None:
        task = self._task
        if task is not None:
            self._task = None
            await task
        if self._future is not None:
            await asyncio.wrap_future(self._future)
            self._future = None

    # -- reads --------------------------------------------------------------------------------
    @property
    def full_messages(self) -> list[BaseMessage]:
        """Every message of the session, from the wrapped history."""
        return list(self.history.messages)

    def _to_messages(self, full: Sequence[BaseMessage], ctx: MemoryContext) -> list[BaseMessage]:
        out: list[BaseMessage] = []
        if ctx.system_text is not None:
            out.append(SystemMessage(ctx.system_text))
        out.extend(full[i] for i in ctx.indices)
        self.last_context = ctx
        return out

    def context(self, query: str | None = None) -> MemoryContext:
        """The :class:`MemoryContext` for the current history."""
        return self.engine.build(
            self.full_messages, self.record(), tools=self.tools, query=query, prefix=self.prefix
        )

    @property
    def messages(self) -> list[BaseMessage]:  # type: ignore[override]
        """The budgeted context: a memory system message (if needed) and the recent turns."""
        full = self.full_messages
        ctx = self.engine.build(full, self.record(), tools=self.tools, prefix=self.prefix)
        return self._to_messages(full, ctx)

    async def aget_messages(self) -> list[BaseMessage]:
        full = await self.history.aget_messages()
        record = await self.arecord()
        ctx = await self.engine.abuild(full, record, tools=self.tools, prefix=self.prefix)
        return self._to_messages(full, ctx)

    # -- writes -------------------------------------------------------------------------------
    def _update(self) -> None:
        with self._lock:
            rec = self.store.get(self.session_id) or MemoryRecord(session_id=self.session_id)
            new = self.engine.update(self.history.messages, rec)
            self.store.put(new)

    async def _aupdate(self) -> None:
        rec = await self.store.aget(self.session_id) or MemoryRecord(session_id=self.session_id)
        new = await self.engine.aupdate(await self.history.aget_messages(), rec)
        await self.store.aput(new)

    def add_messages(self, messages: Sequence[BaseMessage]) -> None:
        self._wait()
        self.history.add_messages(messages)
        if self.background:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(1, thread_name_prefix="tokenlean-memory")
            self._future = self._executor.submit(self._update)
        else:
            self._update()

    async def aadd_messages(self, messages: Sequence[BaseMessage]) -> None:
        await self._await()
        await self.history.aadd_messages(messages)
        if self.background:
            self._task = asyncio.create_task(self._aupdate())
        else:
            await self._aupdate()

    def clear(self) -> None:
        """Clear the wrapped history and the record (the caller asked to forget the session)."""
        self._wait()
        self.history.clear()
        self.store.delete(self.session_id)

    async def aclear(self) -> None:
        await self._await()
        await self.history.aclear()
        await self.store.adelete(self.session_id)

    def close(self) -> None:
        """Finish a pending background update and stop the worker thread."""
        self._wait()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None


def _agent_middleware_base() -> type[Any]:
    try:
        from langchain.agents.middleware import AgentMiddleware
    except ImportError as exc:  # pragma: no cover - extra not installed
        raise MissingDependencyError("langchain", "langchain", "tokenlean-memory") from exc
    return AgentMiddleware


_AgentMiddleware: Any = _agent_middleware_base()


def _thread_id(default: str) -> str:
    try:
        from langgraph.config import get_config

        cfg = get_config()
    except (ImportError, RuntimeError):
        return default
    value = (cfg.get("configurable") or {}).get("thread_id")
    return str(value) if value is not None else default


class TokenleanMemoryMiddleware(_AgentMiddleware):  # type: ignore[misc]
    """Agent middleware for LangChain 1.x ``create_agent``: each model call gets the budgeted
    context; the agent's state keeps every message (nothing is removed, unlike
    ``SummarizationMiddleware``, which replaces the state's messages).

    The system prompt and the tool schemas of the request are counted in the budget. After the
    agent finishes a run (``after_agent``), new messages are read into the state and evicted turns
    are summarised, so the summariser never delays a model call. The record is keyed by the
    run's ``thread_id`` (``config={"configurable": {"thread_id": ...}}``), else ``session_id``.
    """

    def __init__(
        self,
        engine: MemoryEngine,
        *,
        store: RecordStore | None = None,
        session_id: str = "default",
    ) -> None:
        super().__init__()
        self.engine = engine
        self.store: RecordStore = store if store is not None else InMemoryRecordStore()
        self.session_id = session_id
        self.last_context: MemoryContext | None = None

    def _request(self, request: Any, record: MemoryRecord) -> Any:
        msgs = list(request.messages)
        system = request.system_message.text if request.system_message is not None else None
        ctx = self.engine.build(msgs, record, system=system, tools=openai_tools(request.tools))
        self.last_context = ctx
        if not ctx.uses_memory and len(ctx.indices) == len(msgs):
            return request
        new_system = SystemMessage(ctx.system_text) if ctx.system_text is not None else None
        return request.override(messages=[msgs[i] for i in ctx.indices], system_message=new_system)

    def _record(self, session: str, rec: MemoryRecord | None) -> MemoryRecord:
        return rec if rec is not None else MemoryRecord(session_id=session)

    def wrap_model_call(self, request: Any, handler: Callable[[Any], Any]) -> Any:
        session = _thread_id(self.session_id)
        record = self._record(session, self.store.get(session))
        return handler(self._request(request, record))

    async def awrap_model_call(self, request: Any, handler: Callable[[Any], Awaitable[Any]]) -> Any:
        session = _thread_id(self.session_id)
        record = self._record(session, await self.store.aget(session))
        return await handler(self._request(request, record))

    def after_agent(self, state: Any, runtime: Any) -> dict[str, Any] | None:
        session = _thread_id(self.session_id)
        record = self._record(session, self.store.get(session))
        self.store.put(self.engine.update(state["messages"], record))
        return None

    async def aafter_agent(self, state: Any, runtime: Any) -> dict[str, Any] | None:
        session = _thread_id(self.session_id)
        record = self._record(session, await self.store.aget(session))
        await self.store.aput(await self.engine.aupdate(state["messages"], record))
        return None
