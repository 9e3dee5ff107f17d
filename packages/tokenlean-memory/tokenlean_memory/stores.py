"""Where the summary and state are persisted, beside the full history (which stays in the user's
chat store). In memory, as JSON files, or in Redis (redis-py, sync and truly async)."""

from __future__ import annotations

import asyncio
import os
import re
import threading
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from tokenlean_core import MissingDependencyError, TokenleanError

from .schema import MemoryRecord

__all__ = ["FileRecordStore", "InMemoryRecordStore", "RecordStore", "RedisRecordStore"]


@runtime_checkable
class RecordStore(Protocol):
    """Persists one :class:`MemoryRecord` per session."""

    def get(self, session_id: str) -> MemoryRecord | None: ...

    def put(self, record: MemoryRecord) -> None: ...

    def delete(self, session_id: str) -> None: ...

    async def aget(self, session_id: str) -> MemoryRecord | None: ...

    async def aput(self, record: MemoryRecord) -> None: ...

    async def adelete(self, session_id: str) -> None: ...


class InMemoryRecordStore:
    """Records in a dict (copies, so callers cannot mutate what is stored)."""

    def __init__(self) -> None:
        self._data: dict[str, str] = {}
        self._lock = threading.Lock()

    def get(self, session_id: str) -> MemoryRecord | None:
        raw = self._data.get(session_id)
        return MemoryRecord.from_json(raw) if raw is not None else None

    def put(self, record: MemoryRecord) -> None:
        with self._lock:
            self._data[record.session_id] = record.to_json()

    def delete(self, session_id: str) -> None:
        with self._lock:
            self._data.pop(session_id, None)

    async def aget(self, session_id: str) -> MemoryRecord | None:
        return self.get(session_id)

    async def aput(self, record: MemoryRecord) -> None:
        self.put(record)

    async def adelete(self, session_id: str) -> None:
        self.delete(session_id)


_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


class FileRecordStore:
    """One JSON file per session under ``directory`` (written atomically)."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def _path(self, session_id: str) -> Path:
        if not session_id:
            raise TokenleanError("session_id must not be empty")
        return self.directory / f"{_SAFE.sub('_', session_id)}.memory.json"

    def get(self, session_id: str) -> MemoryRecord | None:
        path = self._path(session_id)
        if not path.exists():
            return None
        return MemoryRecord.from_json(path.read_bytes())

    def put(self, record: MemoryRecord) -> None:
        path = self._path(record.session_id)
        tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(record.to_json(), encoding="utf-8")
        os.replace(tmp, path)

    def delete(self, session_id: str) -> None:
        self._path(session_id).unlink(missing_ok=True)

    async def aget(self, session_id: str) -> MemoryRecord | None:
        return await asyncio.to_thread(self.get, session_id)

    async def aput(self, record: MemoryRecord) -> None:
        await asyncio.to_thread(self.put, record)

    async def adelete(self, session_id: str) -> None:
        await asyncio.to_thread(self.delete, session_id)


class RedisRecordStore:
    """Records as JSON strings under ``{prefix}{session_id}`` in Redis.

    Pass ``url`` (clients are created lazily: ``redis.Redis`` for sync calls,
    ``redis.asyncio.Redis`` for async ones) or ready ``client`` / ``async_client`` objects.
    ``ttl_s`` expires idle sessions.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Any | None = None,
        async_client: Any | None = None,
        prefix: str = "tokenlean:memory:",
        ttl_s: int | None = None,
    ) -> None:
        if url is None and client is None and async_client is None:
            raise TokenleanError("RedisRecordStore needs a url, a client or an async_client")
        if ttl_s is not None and ttl_s <= 0:
            raise TokenleanError(f"ttl_s must be positive, got {ttl_s}")
        self.url = url
        self.prefix = prefix
        self.ttl_s = ttl_s
        self._client = client
        self._aclient = async_client

    @property
    def client(self) -> Any:
        if self._client is None:
            if self.url is None:
                raise TokenleanError("no sync Redis client: pass url= or client=")
            try:
                import redis
            except ImportError as exc:  # pragma: no cover - extra not installed
                raise MissingDependencyError("redis", "redis", "tokenlean-memory") from exc
            self._client = redis.Redis.from_url(self.url)
        return self._client

    @property
    def async_client(self) -> Any:
        if self._aclient is None:
            if self.url is None:
                raise TokenleanError("no async Redis client: pass url= or async_client=")
            try:
                import redis.asyncio as aredis
            except ImportError as exc:  # pragma: no cover - extra not installed
                raise MissingDependencyError("redis", "redis", "tokenlean-memory") from exc
            self._aclient = aredis.Redis.from_url(self.url)
        return self._aclient

    def key(self, session_id: str) -> str:
        return f"{self.prefix}{session_id}"

    def get(self, session_id: str) -> MemoryRecord | None:
        raw = self.client.get(self.key(session_id))
        return MemoryRecord.from_json(raw) if raw is not None else None

    def put(self, record: MemoryRecord) -> None:
        self.client.set(self.key(record.session_id), record.to_json(), ex=self.ttl_s)

    def delete(self, session_id: str) -> None:
        self.client.delete(self.key(session_id))

    async def aget(self, session_id: str) -> MemoryRecord | None:
        raw = await self.async_client.get(self.key(session_id))
        return MemoryRecord.from_json(raw) if raw is not None else None

    async def aput(self, record: MemoryRecord) -> None:
        await self.async_client.set(self.key(record.session_id), record.to_json(), ex=self.ttl_s)

    async def adelete(self, session_id: str) -> None:
        await self.async_client.delete(self.key(session_id))

    async def aclose(self) -> None:
        if self._aclient is not None:
            await self._aclient.aclose()
            self._aclient = None

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
