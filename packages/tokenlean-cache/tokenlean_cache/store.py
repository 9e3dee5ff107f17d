"""Cache stores: the interface, the stored entry, and the embedded (SQLite + numpy) store.

Distances everywhere are **cosine distances**, ``1 - cos(u, v)`` in ``[0, 2]``: 0 is the same
direction (an exact match has distance 0), 2 the opposite. Redis reports the same scale for a
``COSINE`` vector field, so a threshold means the same thing on every store, sync or async.
"""

from __future__ import annotations

import abc
import asyncio
import json
import os
import sqlite3
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from tokenlean_core import TokenleanError

__all__ = ["CacheStore", "EmbeddedStore", "Entry", "StoreUnavailableError"]

Vector = npt.NDArray[np.float32]


class StoreUnavailableError(TokenleanError):
    """The store's backend (e.g. the Redis server) cannot be reached."""


@dataclass
class Entry:
    """One cached answer.

    ``key`` (the exact-match key), ``partition`` (the hard pre-filter: model, parameters,
    tenant, context and key-policy version) and ``tenant`` are SHA-256 hex digests: they reveal
    nothing of the prompt. ``question`` is kept (the guard compares it with a new question).
    ``payload`` is the answer as the adapter serialised it; ``usage`` the original call's usage
    (``Usage.to_dict()``), so a hit can be credited with the tokens it saved.
    """

    key: str
    partition: str
    tenant: str
    question: str
    payload: str
    vector: Vector
    model: str | None = None
    usage: dict[str, Any] | None = None
    created: float = field(default_factory=time.time)
    expires: float | None = None
    ttl: float | None = None

    def expired(self, now: float) -> bool:
        return self.expires is not None and self.expires <= now


class CacheStore(abc.ABC):
    """What the engine needs from a store. Every method has an ``a``-prefixed async twin."""

    max_entries: int | None

    @abc.abstractmethod
    def get_exact(self, key: str) -> Entry | None:
        """The live entry stored under ``key``, or ``None``."""

    @abc.abstractmethod
    def search(
        self, partition: str, vector: Vector, max_distance: float, k: int
    ) -> list[tuple[Entry, float]]:
        """Up to ``k`` live entries of ``partition`` within ``max_distance``, nearest first.

        The partition is a pre-filter applied inside the search: entries of other partitions are
        never candidates.
        """

    def get_or_search(
        self, key: str, partition: str, vector: Vector, max_distance: float, k: int
    ) -> tuple[Entry | None, list[tuple[Entry, float]]]:
        """The exact entry, else the search result, in as few round trips as the store allows
        (used when the question's vector is already at hand)."""
        entry = self.get_exact(key)
        if entry is not None:
            return entry, []
        return None, self.search(partition, vector, max_distance, k)

    async def aget_or_search(
        self, key: str, partition: str, vector: Vector, max_distance: float, k: int
    ) -> tuple[Entry | None, list[tuple[Entry, float]]]:
        entry = await self.aget_exact(key)
        if entry is not None:
            return entry, []
        return None, await self.asearch(partition, vector, max_distance, k)

    @abc.abstractmethod
    def put(self, entry: Entry) -> None:
        """Store ``entry`` (replacing one with the same key); evict LRU entries over the bound."""

    @abc.abstractmethod
    def touch(self, entry: Entry, *, sliding: bool) -> None:
        """Mark ``entry`` used (LRU) and, if ``sliding``, push its expiry back by its TTL."""

    @abc.abstractmethod
    def delete(self, key: str) -> bool:
        """Delete one entry; whether it existed."""

    @abc.abstractmethod
    def delete_tenant(self, tenant: str) -> int:
        """Delete every entry of the (hashed) tenant; how many."""

    @abc.abstractmethod
    def clear(self) -> None:
        """Delete every entry."""

    @abc.abstractmethod
    def count(self) -> int:
        """Number of stored (possibly expired but not yet purged) entries."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources."""

    @abc.abstractmethod
    async def aget_exact(self, key: str) -> Entry | None: ...

    @abc.abstractmethod
    async def asearch(
        self, partition: str, vector: Vector, max_distance: float, k: int
    ) -> list[tuple[Entry, float]]: ...

    @abc.abstractmethod
    async def aput(self, entry: Entry) -> None: ...

    @abc.abstractmethod
    async def atouch(self, entry: Entry, *, sliding: bool) -> None: ...

    @abc.abstractmethod
    async def adelete(self, key: str) -> bool: ...

    @abc.abstractmethod
    async def adelete_tenant(self, tenant: str) -> int: ...

    @abc.abstractmethod
    async def aclear(self) -> None: ...

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release async resources (e.g. a redis.asyncio connection pool)."""


class _Partition:
    """A normalised float32 matrix of one partition's vectors, grown by doubling."""

    __slots__ = ("keys", "n", "rows", "vecs")

    def __init__(self, dim: int) -> None:
        self.vecs = np.zeros((16, dim), dtype=np.float32)
        self.n = 0
        self.keys: list[str] = []
        self.rows: dict[str, int] = {}

    def add(self, key: str, vec: Vector) -> None:
        row = self.rows.get(key)
        if row is None:
            if self.n == self.vecs.shape[0]:
                grown = np.zeros((self.n * 2, self.vecs.shape[1]), dtype=np.float32)
                grown[: self.n] = self.vecs[: self.n]
                self.vecs = grown
            row = self.n
            self.n += 1
            self.keys.append(key)
            self.rows[key] = row
        self.vecs[row] = vec

    def remove(self, key: str) -> None:
        row = self.rows.pop(key, None)
        if row is None:
            return
        last = self.n - 1
        if row != last:
            moved = self.keys[last]
            self.vecs[row] = self.vecs[last]
            self.keys[row] = moved
            self.rows[moved] = row
        self.keys.pop()
        self.n -= 1

    def nearest(self, q: Vector, k: int) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.float32]]:
        sims = self.vecs[: self.n] @ q
        if self.n <= k:
            idx = np.argsort(-sims)
        else:
            part = np.argpartition(-sims, k - 1)[:k]
            idx = part[np.argsort(-sims[part])]
        return idx, sims[idx]


_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    key TEXT PRIMARY KEY,
    partition TEXT NOT NULL,
    tenant TEXT NOT NULL,
    question TEXT NOT NULL,
    payload TEXT NOT NULL,
    model TEXT,
    usage TEXT,
    created REAL NOT NULL,
    expires REAL,
    ttl REAL,
    last_used REAL NOT NULL,
    vector BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_tenant ON entries(tenant);
"""


@dataclass
class _Meta:
    partition: str
    tenant: str
    question: str
    expires: float | None
    ttl: float | None


def default_path() -> Path:
    """``$TOKENLEAN_CACHE_PATH``, else ``~/.cache/tokenlean/cache.sqlite3``."""
    env = os.environ.get("TOKENLEAN_CACHE_PATH")
    if env:
        return Path(env)
    return Path.home() / ".cache" / "tokenlean" / "cache.sqlite3"


class EmbeddedStore(CacheStore):
    """No server: entries persist in SQLite (WAL) and vectors live in memory, one normalised
    float32 matrix per partition, so a search is one matrix-vector product over the
    partition's rows only (the pre-filter is the choice of matrix, not a post-filter).

    Args:
        path: The SQLite file (created with its directories); ``":memory:"`` for a process-local
            cache; ``None`` for :func:`default_path`.
        max_entries: Bound on stored entries; the least recently used are evicted beyond it
            (``None``: unbounded).

    SQLite has no async driver, so the async twins run the (microsecond) in-memory search and
    exact reads inline and hand writes to a worker thread.
    """

    def __init__(
        self, path: str | Path | None = None, *, max_entries: int | None = 100_000
    ) -> None:
        if max_entries is not None and max_entries < 1:
            raise TokenleanError(f"max_entries must be >= 1 or None, got {max_entries}")
        self.max_entries = max_entries
        if path is None:
            path = default_path()
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        if self.path != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._parts: dict[str, _Partition] = {}
        self._meta: dict[str, _Meta] = {}
        self._lru: OrderedDict[str, None] = OrderedDict()
        self._dirty_used: dict[str, float] = {}
        self._load()

    # -- internal ----------------------------------------------------------------------------
    def _load(self) -> None:
        now = time.time()
        with self._lock:
            self._db.execute(
                "DELETE FROM entries WHERE expires IS NOT NULL AND expires <= ?", (now,)
            )
            rows = self._db.execute(
                "SELECT key, partition, tenant, question, expires, ttl, vector FROM entries "
                "ORDER BY last_used"
            )
            for key, part, tenant, question, expires, ttl, blob in rows:
                vec = np.frombuffer(blob, dtype=np.float32)
                self._index(key, _Meta(part, tenant, question, expires, ttl), vec)

    def _index(self, key: str, meta: _Meta, vec: Vector) -> None:
        old = self._meta.get(key)
        if old is not None and old.partition != meta.partition:
            self._parts[old.partition].remove(key)
        p = self._parts.get(meta.partition)
        if p is None:
            p = self._parts[meta.partition] = _Partition(vec.shape[0])
        elif p.vecs.shape[1] != vec.shape[0]:
            raise TokenleanError(
                f"vector of dimension {vec.shape[0]} in a partition of dimension "
                f"{p.vecs.shape[1]}: use one embedder per cache"
            )
        p.add(key, vec)
        self._meta[key] = meta
        self._lru[key] = None
        self._lru.move_to_end(key)

    def _unindex(self, key: str) -> None:
        meta = self._meta.pop(key, None)
        if meta is None:
            return
        part = self._parts.get(meta.partition)
        if part is not None:
            part.remove(key)
            if part.n == 0:
                del self._parts[meta.partition]
        self._lru.pop(key, None)
        self._dirty_used.pop(key, None)

    def _drop(self, key: str) -> None:
        self._unindex(key)
        self._db.execute("DELETE FROM entries WHERE key = ?", (key,))

    def _row_entry(self, row: tuple[Any, ...]) -> Entry:
        key, part, tenant, question, payload, model, usage, created, expires, ttl, blob = row
        return Entry(
            key=key,
            partition=part,
            tenant=tenant,
            question=question,
            payload=payload,
            vector=np.frombuffer(blob, dtype=np.float32),
            model=model,
            usage=json.loads(usage) if usage else None,
            created=created,
            expires=expires,
            ttl=ttl,
        )

    def _fetch(self, key: str) -> Entry | None:
        row = self._db.execute(
            "SELECT key, partition, tenant, question, payload, model, usage, created, expires, "
            "ttl, vector FROM entries WHERE key = ?",
            (key,),
        ).fetchone()
        return self._row_entry(row) if row else None

    # -- sync API ----------------------------------------------------------------------------
    def get_exact(self, key: str) -> Entry | None:
        with self._lock:
            meta = self._meta.get(key)
            if meta is None:
                return None
            if meta.expires is not None and meta.expires <= time.time():
                self._drop(key)
                return None
            return self._fetch(key)

    def search(
        self, partition: str, vector: Vector, max_distance: float, k: int
    ) -> list[tuple[Entry, float]]:
        with self._lock:
            part = self._parts.get(partition)
            if part is None or part.n == 0:
                return []
            q = np.asarray(vector, dtype=np.float32)
            idx, sims = part.nearest(q, k)
            now = time.time()
            found: list[tuple[str, float]] = []
            expired: list[str] = []
            for i, s in zip(idx.tolist(), sims.tolist(), strict=True):
                dist = max(0.0, 1.0 - float(s))
                if dist > max_distance:
                    break
                key = part.keys[i]
                meta = self._meta[key]
                if meta.expires is not None and meta.expires <= now:
                    expired.append(key)
                    continue
                found.append((key, dist))
            for key in expired:
                self._drop(key)
            out: list[tuple[Entry, float]] = []
            for key, dist in found:
                entry = self._fetch(key)
                if entry is not None:
                    out.append((entry, dist))
            return out

    def put(self, entry: Entry) -> None:
        vec = np.ascontiguousarray(entry.vector, dtype=np.float32)
        usage = json.dumps(entry.usage) if entry.usage is not None else None
        with self._lock:
            now = time.time()
            self._db.execute(
                "INSERT OR REPLACE INTO entries (key, partition, tenant, question, payload, model, "
                "usage, created, expires, ttl, last_used, vector) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    entry.key,
                    entry.partition,
                    entry.tenant,
                    entry.question,
                    entry.payload,
                    entry.model,
                    usage,
                    entry.created,
                    entry.expires,
                    entry.ttl,
                    now,
                    vec.tobytes(),
                ),
            )
            self._index(
                entry.key,
                _Meta(entry.partition, entry.tenant, entry.question, entry.expires, entry.ttl),
                vec,
            )
            if self.max_entries is not None:
                while len(self._lru) > self.max_entries:
                    oldest = next(iter(self._lru))
                    self._drop(oldest)

    def touch(self, entry: Entry, *, sliding: bool) -> None:
        with self._lock:
            if entry.key not in self._meta:
                return
            self._lru.move_to_end(entry.key)
            now = time.time()
            if sliding and entry.ttl is not None:
                entry.expires = now + entry.ttl
                self._meta[entry.key].expires = entry.expires
                self._db.execute(
                    "UPDATE entries SET expires = ?, last_used = ? WHERE key = ?",
                    (entry.expires, now, entry.key),
                )
            else:
                self._dirty_used[entry.key] = now
                if len(self._dirty_used) >= 256:
                    self._flush_used()

    def _flush_used(self) -> None:
        if self._dirty_used:
            self._db.executemany(
                "UPDATE entries SET last_used = ? WHERE key = ?",
                [(t, k) for k, t in self._dirty_used.items()],
            )
            self._dirty_used.clear()

    def delete(self, key: str) -> bool:
        with self._lock:
            existed = key in self._meta
            self._drop(key)
            return existed

    def delete_tenant(self, tenant: str) -> int:
        with self._lock:
            keys = [k for k, m in self._meta.items() if m.tenant == tenant]
            for k in keys:
                self._unindex(k)
            self._db.execute("DELETE FROM entries WHERE tenant = ?", (tenant,))
            return len(keys)

    def clear(self) -> None:
        with self._lock:
            self._db.execute("DELETE FROM entries")
            self._parts.clear()
            self._meta.clear()
            self._lru.clear()
            self._dirty_used.clear()

    def count(self) -> int:
        with self._lock:
            return len(self._meta)

    def close(self) -> None:
        with self._lock:
            try:
                self._flush_used()
                self._db.close()
            except sqlite3.ProgrammingError:  # already closed
                pass

    # -- async twins ---------------------------------------------------------------------------
    async def aget_exact(self, key: str) -> Entry | None:
        return self.get_exact(key)

    async def asearch(
        self, partition: str, vector: Vector, max_distance: float, k: int
    ) -> list[tuple[Entry, float]]:
        return self.search(partition, vector, max_distance, k)

    async def aput(self, entry: Entry) -> None:
        await asyncio.to_thread(self.put, entry)

    async def atouch(self, entry: Entry, *, sliding: bool) -> None:
        self.touch(entry, sliding=sliding)

    async def adelete(self, key: str) -> bool:
        return await asyncio.to_thread(self.delete, key)

    async def adelete_tenant(self, tenant: str) -> int:
        return await asyncio.to_thread(self.delete_tenant, tenant)

    async def aclear(self) -> None:
        await asyncio.to_thread(self.clear)
