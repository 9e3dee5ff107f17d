"""LlamaIndex adapter: :class:`TokenleanMemory`, a ``BaseMemory`` for chat engines and agents.

The full history lives in a LlamaIndex chat store (``SimpleChatStore`` by default, persisted with
``chat_store.persist(path)``; any ``BaseChatStore`` works). The summary and state are persisted in
the same chat store under ``"{chat_store_key}::tokenlean-memory"`` (or in a :class:`RecordStore`
you pass, e.g. :class:`~tokenlean_memory.stores.RedisRecordStore`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tokenlean_core import MissingDependencyError

try:
    from llama_index.core.base.llms.types import ChatMessage, MessageRole
    from llama_index.core.llms import LLM
    from llama_index.core.memory.types import BaseChatStoreMemory
    from llama_index.core.storage.chat_store import BaseChatStore, SimpleChatStore
    from pydantic import Field, PrivateAttr
    from pydantic_core import PydanticSerializationError
except ImportError as exc:  # pragma: no cover - extra not installed
    raise MissingDependencyError("llama-index-core", "llama-index", "tokenlean-memory") from exc

from .engine import MemoryContext, MemoryEngine
from .schema import MemoryConfig, MemoryRecord
from .stores import RecordStore

__all__ = [
    "ChatStoreRecordStore",
    "LlamaIndexTextModel",
    "TokenleanMemory",
    "persist_simple_chat_store",
]

RECORD_SUFFIX = "::tokenlean-memory"


class LlamaIndexTextModel:
    """A :class:`~tokenlean_memory.models.TextModel` over a LlamaIndex LLM (``complete``)."""

    def __init__(self, llm: LLM) -> None:
        self.llm = llm

    def complete(self, prompt: str) -> str:
        return self.llm.complete(prompt).text

    async def acomplete(self, prompt: str) -> str:
        return (await self.llm.acomplete(prompt)).text


class ChatStoreRecordStore:
    """Keeps the :class:`MemoryRecord` in a LlamaIndex chat store, beside the history, as one
    message under ``"{session_id}::tokenlean-memory"``, so ``SimpleChatStore.persist`` (or a
    Redis/Postgres chat store) persists summary and state together with the messages."""

    def __init__(self, chat_store: BaseChatStore) -> None:
        self.chat_store = chat_store

    @staticmethod
    def key(session_id: str) -> str:
        return session_id + RECORD_SUFFIX

    @staticmethod
    def _decode(msgs: Sequence[ChatMessage]) -> MemoryRecord | None:
        if not msgs:
            return None
        return MemoryRecord.from_json(msgs[-1].content or "")

    @staticmethod
    def _encode(record: MemoryRecord) -> list[ChatMessage]:
        return [ChatMessage(role=MessageRole.SYSTEM, content=record.to_json())]

    def get(self, session_id: str) -> MemoryRecord | None:
        return self._decode(self.chat_store.get_messages(self.key(session_id)))

    def put(self, record: MemoryRecord) -> None:
        self.chat_store.set_messages(self.key(record.session_id), self._encode(record))

    def delete(self, session_id: str) -> None:
        self.chat_store.delete_messages(self.key(session_id))

    async def aget(self, session_id: str) -> MemoryRecord | None:
        return self._decode(await self.chat_store.aget_messages(self.key(session_id)))

    async def aput(self, record: MemoryRecord) -> None:
        await self.chat_store.aset_messages(self.key(record.session_id), self._encode(record))

    async def adelete(self, session_id: str) -> None:
        await self.chat_store.adelete_messages(self.key(session_id))


def persist_simple_chat_store(store: SimpleChatStore, path: str | os.PathLike[str]) -> None:
    """``store.persist(path)``, with a fallback for llama-index-core/pydantic pairs where
    ``SimpleChatStore.persist`` fails to serialise messages (``PydanticSerializationError``
    from its ``chat_message_serialization`` wrapper). The file is what ``persist`` writes, so
    ``SimpleChatStore.from_persist_path`` reads it either way."""
    try:
        store.persist(str(path))
        return
    except PydanticSerializationError:
        pass
    data = {
        "store": {
            key: [m.model_dump(mode="json") for m in msgs] for key, msgs in store.store.items()
        },
        "class_name": store.class_name(),
    }
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(target.suffix + ".tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, target)


class TokenleanMemory(BaseChatStoreMemory):
    """A LlamaIndex memory that returns the budgeted context from ``get``.

    ``get_all`` returns the full history, which is never pruned. ``put`` of an assistant message
    (i.e. after the reply) reads the new turns into the state and extends the summary. Pass the
    chat engine's system prompt as ``prefix_messages`` so the budget counts it.
    """

    prefix_messages: list[ChatMessage] = Field(default_factory=list)
    tools: list[dict[str, Any]] | None = None
    update_on_roles: list[str] = Field(default_factory=lambda: ["assistant"])
    _engine: MemoryEngine = PrivateAttr()
    _records: RecordStore = PrivateAttr()
    _last: MemoryContext | None = PrivateAttr(default=None)

    def __init__(
        self,
        *,
        engine: MemoryEngine | None = None,
        record_store: RecordStore | None = None,
        **data: Any,
    ) -> None:
        super().__init__(**data)
        self._engine = engine or MemoryEngine()
        self._records = record_store or ChatStoreRecordStore(self.chat_store)
        self._last = None

    @classmethod
    def class_name(cls) -> str:
        return "TokenleanMemory"

    @classmethod
    def from_defaults(
        cls,
        chat_history: list[ChatMessage] | None = None,
        llm: LLM | None = None,
        *,
        config: MemoryConfig | None = None,
        engine: MemoryEngine | None = None,
        chat_store: BaseChatStore | None = None,
        chat_store_key: str = "chat_history",
        record_store: RecordStore | None = None,
        prefix_messages: list[ChatMessage] | None = None,
        tools: list[dict[str, Any]] | None = None,
        **kwargs: Any,
    ) -> TokenleanMemory:
        """Build a memory; ``llm`` (if given and no ``engine``) becomes the summariser."""
        if engine is None:
            engine = MemoryEngine(
                config, summarizer=LlamaIndexTextModel(llm) if llm is not None else None, **kwargs
            )
        elif config is not None or kwargs:
            raise ValueError("pass either engine= or config=/engine options, not both")
        mem = cls(
            engine=engine,
            record_store=record_store,
            chat_store=chat_store or SimpleChatStore(),
            chat_store_key=chat_store_key,
            prefix_messages=prefix_messages or [],
            tools=tools,
        )
        if chat_history is not None:
            mem.set(chat_history)
        return mem

    # -- properties ------------------------------------------------------------------------
    @property
    def engine(self) -> MemoryEngine:
        return self._engine

    @property
    def record_store(self) -> RecordStore:
        return self._records

    @property
    def last_context(self) -> MemoryContext | None:
        return self._last

    def record(self) -> MemoryRecord:
        rec = self._records.get(self.chat_store_key)
        return rec if rec is not None else MemoryRecord(session_id=self.chat_store_key)

    async def arecord(self) -> MemoryRecord:
        rec = await self._records.aget(self.chat_store_key)
        return rec if rec is not None else MemoryRecord(session_id=self.chat_store_key)

    # -- reads ------------------------------------------------------------------------------
    def _out(self, full: Sequence[ChatMessage], ctx: MemoryContext) -> list[ChatMessage]:
        self._last = ctx
        out: list[ChatMessage] = []
        if ctx.system_text is not None:
            out.append(ChatMessage(role=MessageRole.SYSTEM, content=ctx.system_text))
        out.extend(full[i] for i in ctx.indices)
        return out

    def get(self, input: str | None = None, **kwargs: Any) -> list[ChatMessage]:
        """The budgeted context. ``input`` (if given) is what recall looks for."""
        full = self.chat_store.get_messages(self.chat_store_key)
        ctx = self._engine.build(
            full, self.record(), tools=self.tools, query=input, prefix=self.prefix_messages
        )
        return self._out(full, ctx)

    async def aget(self, input: str | None = None, **kwargs: Any) -> list[ChatMessage]:
        full = await self.chat_store.aget_messages(self.chat_store_key)
        ctx = await self._engine.abuild(
            full, await self.arecord(), tools=self.tools, query=input, prefix=self.prefix_messages
        )
        return self._out(full, ctx)

    # -- writes -----------------------------------------------------------------------------
    def _should_update(self, message: ChatMessage) -> bool:
        role = getattr(message.role, "value", message.role)
        return str(role) in self.update_on_roles

    def update(self) -> MemoryRecord:
        """Read new messages into the state and summarise evicted turns now."""
        full = self.chat_store.get_messages(self.chat_store_key)
        rec = self._engine.update(full, self.record())
        self._records.put(rec)
        return rec

    async def aupdate(self) -> MemoryRecord:
        full = await self.chat_store.aget_messages(self.chat_store_key)
        rec = await self._engine.aupdate(full, await self.arecord())
        await self._records.aput(rec)
        return rec

    def put(self, message: ChatMessage) -> None:
        self.chat_store.add_message(self.chat_store_key, message)
        if self._should_update(message):
            self.update()

    async def aput(self, message: ChatMessage) -> None:
        await self.chat_store.async_add_message(self.chat_store_key, message)
        if self._should_update(message):
            await self.aupdate()

    def set(self, messages: list[ChatMessage]) -> None:
        self.chat_store.set_messages(self.chat_store_key, messages)
        self.update()

    async def aset(self, messages: list[ChatMessage]) -> None:
        await self.chat_store.aset_messages(self.chat_store_key, messages)
        await self.aupdate()

    def reset(self) -> None:
        self.chat_store.delete_messages(self.chat_store_key)
        self._records.delete(self.chat_store_key)

    async def areset(self) -> None:
        await self.chat_store.adelete_messages(self.chat_store_key)
        await self._records.adelete(self.chat_store_key)
