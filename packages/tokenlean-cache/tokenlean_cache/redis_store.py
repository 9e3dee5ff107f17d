"""The Redis store: entries as hashes, a redisvl-managed HNSW index with tag fields for the
pre-filter, native TTL (``PEXPIRE``), a sorted set for LRU eviction, sync and redis.asyncio twins.

Searches are one ``FT.SEARCH`` with the pre-filter inside the KNN clause::

    (@part:{<partition>})=>[KNN k @vec $vec HYBRID_POLICY BATCHES AS d]

so RediSearch only ranks vectors of the partition (never a post-filter on the nearest hit). The
``COSINE`` metric returns ``1 - cos``: the same distance scale as the embedded store.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

import numpy as np

from tokenlean_core import MissingDependencyError, TokenleanError

from .store import CacheStore, Entry, StoreUnavailableError, Vector

__all__ = ["RedisStore"]

logger = logging.getLogger("tokenlean.cache")

_FIELDS: tuple[bytes, ...] = (b"part", b"tenant", b"question", b"payload", b"model", b"usage")
_FIELDS += (b"created", b"expires", b"ttl", b"vec")
_RETURN = ["d", *[f.decode() for f in _FIELDS]]


def _redis() -> Any:
    try:
        import redis
    except ImportError:
        raise MissingDependencyError("redis", "redis", "tokenlean-cache") from None
    return redis


def _float(v: bytes | None) -> float | None:
    if v is None or v == b"":
        return None
    return float(v)


def _entry(key: str, f: dict[bytes, bytes]) -> Entry:
    usage = f.get(b"usage") or b""
    model = f.get(b"model") or b""
    return Entry(
        key=key,
        partition=f[b"part"].decode(),
        tenant=f[b"tenant"].decode(),
        question=f[b"question"].decode("utf-8", "surrogatepass"),
        payload=f[b"payload"].decode("utf-8", "surrogatepass"),
        vector=np.frombuffer(f[b"vec"], dtype=np.float32),
        model=model.decode() or None,
        usage=json.loads(usage) if usage else None,
        created=_float(f.get(b"created")) or 0.0,
        expires=_float(f.get(b"expires")),
        ttl=_float(f.get(b"ttl")),
    )


class RedisStore(CacheStore):
    """Cache entries in Redis with the search module (Redis Stack, Redis 8, managed Redis).

    Args:
        url: ``redis://host:port/db``.
        namespace: Separates caches sharing one Redis (index ``tokenlean-cache-<ns>``, keys
            ``tokenlean:cache:<ns>:<sha256>``).
        max_entries: LRU bound (``None``: unbounded; Redis' own ``maxmemory`` policy still
            applies).
        socket_timeout: Seconds before a Redis call counts as failed (the engine then passes
            calls through to the LLM).
        hnsw_m: HNSW graph degree.
        hnsw_ef_construction: HNSW build-time candidate list size.
        hnsw_ef_runtime: HNSW query-time candidate list size.
        algorithm: ``"hnsw"`` (default) or ``"flat"`` (exact; redisvl's ``SemanticCache``
            default, fine up to some 10k entries per index).
        hybrid_policy: How RediSearch runs the partition filter with an HNSW search:
            ``"BATCHES"`` (default: walk the graph, filter batches of neighbours; fast when a
            partition is a sizeable share of the index), ``"ADHOC_BF"`` (brute force over the
            partition's rows; best for many tiny partitions) or ``None`` (RediSearch's own
            estimate, which picked brute force on a single 20k-entry partition, 6x slower).
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        namespace: str = "default",
        max_entries: int | None = 100_000,
        socket_timeout: float = 0.5,
        hnsw_m: int = 16,
        hnsw_ef_construction: int = 200,
        hnsw_ef_runtime: int = 64,
        algorithm: str = "hnsw",
        hybrid_policy: str | None = "BATCHES",
    ) -> None:
        if not namespace or not namespace.replace("-", "").replace("_", "").isalnum():
            raise TokenleanError(
                f"namespace must be non-empty letters, digits, '-' or '_', got {namespace!r}"
            )
        if max_entries is not None and max_entries < 1:
            raise TokenleanError(f"max_entries must be >= 1 or None, got {max_entries}")
        if algorithm not in ("hnsw", "flat"):
            raise TokenleanError(f"algorithm must be 'hnsw' or 'flat', got {algorithm!r}")
        self.algorithm = algorithm
        if hybrid_policy not in ("BATCHES", "ADHOC_BF", None):
            raise TokenleanError(
                f"hybrid_policy must be 'BATCHES', 'ADHOC_BF' or None, got {hybrid_policy!r}"
            )
        self._policy = (
            f" HYBRID_POLICY {hybrid_policy}" if hybrid_policy and algorithm == "hnsw" else ""
        )
        redis = _redis()
        self._errors: tuple[type[BaseException], ...] = (
            redis.exceptions.ConnectionError,
            redis.exceptions.TimeoutError,
            OSError,
        )
        self._response_error: type[BaseException] = redis.exceptions.ResponseError
        self.url = url
        self.namespace = namespace
        self.max_entries = max_entries
        self.index_name = f"tokenlean-cache-{namespace}"
        self._index_b = self.index_name.encode()
        self._tails: dict[int, tuple[bytes, ...]] = {}
        self.prefix = f"tokenlean:cache:{namespace}:"
        self._lru_key = f"tokenlean:cache-lru:{namespace}"
        self.hnsw = (hnsw_m, hnsw_ef_construction, hnsw_ef_runtime)
        opts: dict[str, Any] = {
            "protocol": 2,
            "decode_responses": False,
            "socket_timeout": socket_timeout,
            "socket_connect_timeout": socket_timeout,
        }
        self._opts = opts
        self._client = redis.Redis.from_url(url, **opts)
        self._aclient_obj: Any = None
        self._touched: dict[str, float] = {}  # LRU recency updates, flushed in batches
        self._dim: int | None = None
        self._create_lock = threading.Lock()
        self._index_ready = False
        self._aindex_ready = False

    @property
    def _aclient(self) -> Any:
        """The redis.asyncio client, created on first async use (one per store)."""
        if self._aclient_obj is None:
            self._aclient_obj = _redis().asyncio.Redis.from_url(self.url, **self._opts)
        return self._aclient_obj

    # -- schema --------------------------------------------------------------------------------
    def _schema(self, dim: int) -> dict[str, Any]:
        m, efc, efr = self.hnsw
        attrs: dict[str, Any] = {
            "dims": dim,
            "distance_metric": "cosine",
            "algorithm": self.algorithm,
            "datatype": "float32",
        }
        if self.algorithm == "hnsw":
            attrs.update(m=m, ef_construction=efc, ef_runtime=efr)
        return {
            "index": {"name": self.index_name, "prefix": self.prefix, "storage_type": "hash"},
            "fields": [
                {"name": "part", "type": "tag"},
                {"name": "tenant", "type": "tag"},
                {"name": "vec", "type": "vector", "attrs": attrs},
            ],
        }

    def _ensure_index(self, dim: int) -> None:
        if self._index_ready and self._dim == dim:
            return
        try:
            from redisvl.index import SearchIndex
        except ImportError:
            raise MissingDependencyError("redisvl", "redis", "tokenlean-cache") from None
        index = SearchIndex.from_dict(self._schema(dim), redis_client=self._client)
        try:
            with self._create_lock:
                if not index.exists():
                    index.create(overwrite=False)
        except self._errors as exc:
            raise StoreUnavailableError(f"Redis unavailable at {self.url}: {exc}") from exc
        except Exception as exc:  # redisvl wraps Redis errors; a concurrent create is fine
            if isinstance(exc.__cause__, self._errors):
                raise self._wrap(exc) from exc
            if "already exists" not in str(exc):
                raise
        self._dim = dim
        self._index_ready = True

    async def _aensure_index(self, dim: int) -> None:
        if self._aindex_ready and self._dim == dim:
            return
        try:
            from redisvl.index import AsyncSearchIndex
        except ImportError:
            raise MissingDependencyError("redisvl", "redis", "tokenlean-cache") from None
        index = AsyncSearchIndex.from_dict(self._schema(dim), redis_client=self._aclient)
        try:
            if not await index.exists():
                await index.create(overwrite=False)
        except self._errors as exc:
            raise StoreUnavailableError(f"Redis unavailable at {self.url}: {exc}") from exc
        except Exception as exc:  # redisvl wraps Redis errors; a concurrent create is fine
            if isinstance(exc.__cause__, self._errors):
                raise self._wrap(exc) from exc
            if "already exists" not in str(exc):
                raise
        self._dim = dim
        self._aindex_ready = True

    def _wrap(self, exc: BaseException) -> StoreUnavailableError:
        self._index_ready = False
        self._aindex_ready = False
        return StoreUnavailableError(f"Redis unavailable at {self.url}: {exc}")

    # -- helpers ---------------------------------------------------------------------------------
    def _search_args(self, partition: str, vector: Vector, k: int) -> tuple[Any, ...]:
        blob = np.ascontiguousarray(vector, dtype=np.float32).tobytes()
        k = int(k)
        tail = self._tails.get(k)
        if tail is None:  # the constant part of the command, encoded once
            tail = self._tails[k] = (
                b"SORTBY",
                b"d",
                b"RETURN",
                str(len(_RETURN)).encode(),
                *[f.encode() for f in _RETURN],
                b"LIMIT",
                b"0",
                str(k).encode(),
                b"DIALECT",
                b"2",
            )
        q = f"(@part:{{{partition}}})=>[KNN {k} @vec $vec{self._policy} AS d]".encode()
        return (b"FT.SEARCH", self._index_b, q, b"PARAMS", b"2", b"vec", blob, *tail)

    def _exact(self, key: str, f: dict[bytes, bytes]) -> Entry | None:
        """The entry from an ``HGETALL`` reply (empty on a miss)."""
        if not f or b"vec" not in f or b"payload" not in f:
            return None
        entry = _entry(key, f)
        return None if entry.expired(time.time()) else entry

    def _parse_search(self, reply: list[Any], max_distance: float) -> list[tuple[Entry, float]]:
        out: list[tuple[Entry, float]] = []
        now = time.time()
        for i in range(1, len(reply), 2):
            key = reply[i].decode()
            raw = reply[i + 1]
            f = {raw[j]: raw[j + 1] for j in range(0, len(raw), 2)}
            if b"vec" not in f or b"d" not in f:
                continue
            dist = max(0.0, float(f[b"d"]))
            if dist > max_distance:
                continue
            entry = _entry(key[len(self.prefix) :], f)
            if entry.expired(now):
                continue
            out.append((entry, dist))
        out.sort(key=lambda t: t[1])
        return out

    def _put_commands(self, pipe: Any, entry: Entry) -> None:
        rkey = self.prefix + entry.key
        mapping: dict[str, Any] = {
            "part": entry.partition,
            "tenant": entry.tenant,
            "question": entry.question.encode("utf-8", "surrogatepass"),
            "payload": entry.payload.encode("utf-8", "surrogatepass"),
            "model": entry.model or "",
            "usage": json.dumps(entry.usage) if entry.usage is not None else "",
            "created": repr(entry.created),
            "expires": repr(entry.expires) if entry.expires is not None else "",
            "ttl": repr(entry.ttl) if entry.ttl is not None else "",
            "vec": np.ascontiguousarray(entry.vector, dtype=np.float32).tobytes(),
        }
        self._flush_touches(pipe)
        pipe.delete(rkey)
        pipe.hset(rkey, mapping=mapping)
        if entry.expires is not None:
            pipe.pexpireat(rkey, max(1, int(entry.expires * 1000)))
        pipe.zadd(self._lru_key, {entry.key: time.time()})

    def _overflow(self, size: int) -> int:
        if self.max_entries is None:
            return 0
        return max(0, size - self.max_entries)

    # -- sync API ----------------------------------------------------------------------------------
    def get_exact(self, key: str) -> Entry | None:
        try:
            fields = self._client.hgetall(self.prefix + key)
        except self._errors as exc:
            raise self._wrap(exc) from exc
        return self._exact(key, fields)

    def search(
        self, partition: str, vector: Vector, max_distance: float, k: int
    ) -> list[tuple[Entry, float]]:
        try:
            self._ensure_index(int(vector.shape[0]))
            try:
                reply = self._client.execute_command(*self._search_args(partition, vector, k))
            except self._response_error as exc:
                if (
                    "no such index" not in str(exc).lower()
                    and "unknown index" not in str(exc).lower()
                ):
                    raise
                self._index_ready = False
                self._ensure_index(int(vector.shape[0]))
                reply = self._client.execute_command(*self._search_args(partition, vector, k))
        except self._errors as exc:
            raise self._wrap(exc) from exc
        return self._parse_search(reply, max_distance)

    def _combined(
        self, key: str, results: list[Any], max_distance: float
    ) -> tuple[Entry | None, list[tuple[Entry, float]]]:
        fields, reply = results
        entry = self._exact(key, fields)
        if entry is not None:
            return entry, []
        if isinstance(reply, Exception):
            raise reply
        return None, self._parse_search(reply, max_distance)

    def get_or_search(
        self, key: str, partition: str, vector: Vector, max_distance: float, k: int
    ) -> tuple[Entry | None, list[tuple[Entry, float]]]:
        """One round trip: ``HGETALL`` of the exact key and the filtered KNN ``FT.SEARCH``."""
        try:
            self._ensure_index(int(vector.shape[0]))
            pipe = self._client.pipeline(transaction=False)
            pipe.hgetall(self.prefix + key)
            pipe.execute_command(*self._search_args(partition, vector, k))
            results = pipe.execute(raise_on_error=False)
            if isinstance(results[0], Exception):
                raise results[0]
            try:
                return self._combined(key, results, max_distance)
            except self._response_error:
                self._index_ready = False
                return super().get_or_search(key, partition, vector, max_distance, k)
        except self._errors as exc:
            raise self._wrap(exc) from exc

    async def aget_or_search(
        self, key: str, partition: str, vector: Vector, max_distance: float, k: int
    ) -> tuple[Entry | None, list[tuple[Entry, float]]]:
        """Async twin of :meth:`get_or_search` (one round trip)."""
        try:
            await self._aensure_index(int(vector.shape[0]))
            pipe = self._aclient.pipeline(transaction=False)
            pipe.hgetall(self.prefix + key)
            pipe.execute_command(*self._search_args(partition, vector, k))
            results = await pipe.execute(raise_on_error=False)
            if isinstance(results[0], Exception):
                raise results[0]
            try:
                return self._combined(key, results, max_distance)
            except self._response_error:
                self._aindex_ready = False
                return await super().aget_or_search(key, partition, vector, max_distance, k)
        except self._errors as exc:
            raise self._wrap(exc) from exc

    def put(self, entry: Entry) -> None:
        try:
            self._ensure_index(int(entry.vector.shape[0]))
            pipe = self._client.pipeline(transaction=False)
            self._put_commands(pipe, entry)
            pipe.zcard(self._lru_key)
            size = pipe.execute()[-1]
            extra = self._overflow(int(size))
            if extra:
                popped = self._client.zpopmin(self._lru_key, extra)
                if popped:
                    self._client.delete(*[self.prefix + k.decode() for k, _ in popped])
        except self._errors as exc:
            raise self._wrap(exc) from exc

    def _flush_touches(self, pipe: Any) -> None:
        if self._touched:
            touched, self._touched = self._touched, {}
            pipe.zadd(self._lru_key, touched, xx=True)

    def touch(self, entry: Entry, *, sliding: bool) -> None:
        # LRU recency is batched: sent with the next write or every 64 hits, so a hit costs no
        # extra round trip (the LRU order can lag by up to 64 hits).
        self._touched[entry.key] = time.time()
        if not (sliding and entry.ttl is not None) and len(self._touched) < 64:
            return
        try:
            pipe = self._client.pipeline(transaction=False)
            self._flush_touches(pipe)
            if sliding and entry.ttl is not None:
                entry.expires = time.time() + entry.ttl
                rkey = self.prefix + entry.key
                pipe.hset(rkey, "expires", repr(entry.expires))
                pipe.pexpire(rkey, max(1, int(entry.ttl * 1000)))
            pipe.execute()
        except self._errors as exc:
            raise self._wrap(exc) from exc

    def delete(self, key: str) -> bool:
        try:
            pipe = self._client.pipeline(transaction=False)
            pipe.delete(self.prefix + key)
            pipe.zrem(self._lru_key, key)
            return bool(pipe.execute()[0])
        except self._errors as exc:
            raise self._wrap(exc) from exc

    def _tenant_query(self, tenant: str) -> tuple[Any, ...]:
        return ("FT.SEARCH", self.index_name, f"@tenant:{{{tenant}}}", "NOCONTENT")

    def delete_tenant(self, tenant: str) -> int:
        if self._dim is None and not self._index_exists():
            return 0
        total = 0
        try:
            while True:
                reply = self._client.execute_command(
                    *self._tenant_query(tenant), "LIMIT", 0, 1000, "DIALECT", 2
                )
                keys = [k.decode() for k in reply[1:]]
                if not keys:
                    return total
                pipe = self._client.pipeline(transaction=False)
                pipe.delete(*keys)
                pipe.zrem(self._lru_key, *[k[len(self.prefix) :] for k in keys])
                pipe.execute()
                total += len(keys)
        except self._errors as exc:
            raise self._wrap(exc) from exc

    def _index_exists(self) -> bool:
        try:
            names = self._client.execute_command("FT._LIST")
        except self._errors as exc:
            raise self._wrap(exc) from exc
        return self.index_name.encode() in names

    def clear(self) -> None:
        try:
            if self._index_exists():
                self._client.execute_command("FT.DROPINDEX", self.index_name, "DD")
            self._client.delete(self._lru_key)
        except self._errors as exc:
            raise self._wrap(exc) from exc
        self._index_ready = False
        self._aindex_ready = False

    def count(self) -> int:
        try:
            if not self._index_exists():
                return 0
            info = self._client.execute_command("FT.INFO", self.index_name)
        except self._errors as exc:
            raise self._wrap(exc) from exc
        fields = {info[i]: info[i + 1] for i in range(0, len(info) - 1, 2)}
        return int(fields.get(b"num_docs", 0))

    def close(self) -> None:
        self._client.close()

    # -- async twins (redis.asyncio) ----------------------------------------------------------
    async def aget_exact(self, key: str) -> Entry | None:
        try:
            fields = await self._aclient.hgetall(self.prefix + key)
        except self._errors as exc:
            raise self._wrap(exc) from exc
        return self._exact(key, fields)

    async def asearch(
        self, partition: str, vector: Vector, max_distance: float, k: int
    ) -> list[tuple[Entry, float]]:
        args = self._search_args(partition, vector, k)
        try:
            await self._aensure_index(int(vector.shape[0]))
            try:
                reply = await self._aclient.execute_command(*args)
            except self._response_error as exc:
                low = str(exc).lower()
                if "no such index" not in low and "unknown index" not in low:
                    raise
                self._aindex_ready = False
                await self._aensure_index(int(vector.shape[0]))
                reply = await self._aclient.execute_command(*args)
        except self._errors as exc:
            raise self._wrap(exc) from exc
        return self._parse_search(reply, max_distance)

    async def aput(self, entry: Entry) -> None:
        try:
            await self._aensure_index(int(entry.vector.shape[0]))
            pipe = self._aclient.pipeline(transaction=False)
            self._put_commands(pipe, entry)
            pipe.zcard(self._lru_key)
            size = (await pipe.execute())[-1]
            extra = self._overflow(int(size))
            if extra:
                popped = await self._aclient.zpopmin(self._lru_key, extra)
                if popped:
                    await self._aclient.delete(*[self.prefix + k.decode() for k, _ in popped])
        except self._errors as exc:
            raise self._wrap(exc) from exc

    async def atouch(self, entry: Entry, *, sliding: bool) -> None:
        self._touched[entry.key] = time.time()
        if not (sliding and entry.ttl is not None) and len(self._touched) < 64:
            return
        try:
            pipe = self._aclient.pipeline(transaction=False)
            self._flush_touches(pipe)
            if sliding and entry.ttl is not None:
                entry.expires = time.time() + entry.ttl
                rkey = self.prefix + entry.key
                pipe.hset(rkey, "expires", repr(entry.expires))
                pipe.pexpire(rkey, max(1, int(entry.ttl * 1000)))
            await pipe.execute()
        except self._errors as exc:
            raise self._wrap(exc) from exc

    async def adelete(self, key: str) -> bool:
        try:
            pipe = self._aclient.pipeline(transaction=False)
            pipe.delete(self.prefix + key)
            pipe.zrem(self._lru_key, key)
            return bool((await pipe.execute())[0])
        except self._errors as exc:
            raise self._wrap(exc) from exc

    async def adelete_tenant(self, tenant: str) -> int:
        total = 0
        try:
            names = await self._aclient.execute_command("FT._LIST")
            if self.index_name.encode() not in names:
                return 0
            while True:
                reply = await self._aclient.execute_command(
                    *self._tenant_query(tenant), "LIMIT", 0, 1000, "DIALECT", 2
                )
                keys = [k.decode() for k in reply[1:]]
                if not keys:
                    return total
                pipe = self._aclient.pipeline(transaction=False)
                pipe.delete(*keys)
                pipe.zrem(self._lru_key, *[k[len(self.prefix) :] for k in keys])
                await pipe.execute()
                total += len(keys)
        except self._errors as exc:
            raise self._wrap(exc) from exc

    async def aclear(self) -> None:
        try:
            names = await self._aclient.execute_command("FT._LIST")
            if self.index_name.encode() in names:
                await self._aclient.execute_command("FT.DROPINDEX", self.index_name, "DD")
            await self._aclient.delete(self._lru_key)
        except self._errors as exc:
            raise self._wrap(exc) from exc
        self._index_ready = False
        self._aindex_ready = False

    async def aclose(self) -> None:
        """Close the async client (call it on the event loop that used it). The store stays
        usable: a later async call opens a new client."""
        if self._aclient_obj is not None:
            client, self._aclient_obj = self._aclient_obj, None
            self._aindex_ready = False
            await client.aclose()
