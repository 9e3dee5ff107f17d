"""Micro-batching of compatible requests (asyncio).

Requests are grouped by a :class:`BatchKey` - the model, the decoding settings and a latency class -
and a group is flushed as one batch when it holds ``max_items`` requests, when adding the next
request would pass ``max_tokens``, or ``max_wait_s`` after its first request arrived, whichever
comes first. Each caller awaits its own result; results come back in submission order within a
batch.
Any ``async (key, items) -> results`` function can run the batches: a LangChain chat model's
``abatch`` (see :func:`tokenlean_router.langchain.chat_model_batch_runner`) or a provider batch API.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from .errors import RouterConfigError, RouterError

__all__ = ["BatchKey", "BatchLimits", "MicroBatcher"]

logger = logging.getLogger("tokenlean.router")

In = TypeVar("In")
Out = TypeVar("Out")


@dataclass(frozen=True)
class BatchLimits:
    """Flush limits of one latency class."""

    max_items: int = 16
    max_tokens: int | None = 16_000
    max_wait_s: float = 0.02

    def __post_init__(self) -> None:
        if self.max_items < 1:
            raise RouterConfigError("max_items must be >= 1")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise RouterConfigError("max_tokens must be >= 1 or None")
        if not self.max_wait_s >= 0:
            raise RouterConfigError("max_wait_s must be >= 0")


@dataclass(frozen=True)
class BatchKey:
    """What makes requests compatible: same model, same decoding settings, same latency class."""

    model: str
    settings: str = "{}"
    latency_class: str = "default"

    @classmethod
    def of(
        cls, model: str, settings: Mapping[str, Any] | None = None, latency_class: str = "default"
    ) -> BatchKey:
        try:
            canon = json.dumps(dict(settings or {}), sort_keys=True, default=repr)
        except TypeError as exc:
            raise RouterConfigError(f"decoding settings must be JSON-like: {exc}") from exc
        return cls(model, canon, latency_class)

    @property
    def settings_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = json.loads(self.settings)
        return out


@dataclass
class _Pending(Generic[In, Out]):
    items: list[In] = field(default_factory=list)
    futures: list[asyncio.Future[Out]] = field(default_factory=list)
    tokens: int = 0
    timer: asyncio.TimerHandle | None = None
    opened: float = 0.0


class MicroBatcher(Generic[In, Out]):
    """Group compatible requests into batches for ``run_batch``.

    Args:
        run_batch: ``async (key, items) -> results`` with one result per item, in order.
        limits: one :class:`BatchLimits` for all, or a mapping latency class -> limits (key
            ``"default"`` for classes not listed).
        count_tokens: tokens of one item (for ``max_tokens``); default: none counted.

    Use as an async context manager, or call :meth:`aclose` to flush and wait for what is left.
    """

    def __init__(
        self,
        run_batch: Callable[[BatchKey, list[In]], Awaitable[Sequence[Out]]],
        limits: BatchLimits | Mapping[str, BatchLimits] | None = None,
        *,
        count_tokens: Callable[[In], int] | None = None,
    ) -> None:
        self._run = run_batch
        if limits is None:
            limits = BatchLimits()
        self._limits: Mapping[str, BatchLimits] = (
            {"default": limits} if isinstance(limits, BatchLimits) else dict(limits)
        )
        if "default" not in self._limits:
            raise RouterConfigError("limits per latency class need a 'default' entry")
        self._count = count_tokens
        self._groups: dict[BatchKey, _Pending[In, Out]] = {}
        self._inflight: set[asyncio.Task[None]] = set()
        self._closed = False
        self.batches_sent = 0

    def limits_for(self, latency_class: str) -> BatchLimits:
        return self._limits.get(latency_class, self._limits["default"])

    async def submit(
        self,
        item: In,
        *,
        model: str,
        settings: Mapping[str, Any] | None = None,
        latency_class: str = "default",
        tokens: int | None = None,
    ) -> Out:
        """Queue ``item`` and wait for its result."""
        return await self.submit_key(
            item, BatchKey.of(model, settings, latency_class), tokens=tokens
        )

    async def submit_key(self, item: In, key: BatchKey, *, tokens: int | None = None) -> Out:
        if self._closed:
            raise RouterError("this MicroBatcher is closed")
        loop = asyncio.get_running_loop()
        lim = self.limits_for(key.latency_class)
        n_tok = int(tokens if tokens is not None else (self._count(item) if self._count else 0))
        if n_tok < 0:
            raise RouterConfigError("token counts must be >= 0")
        group = self._groups.get(key)
        if (
            group is not None
            and lim.max_tokens is not None
            and group.items
            and group.tokens + n_tok > lim.max_tokens
        ):
            self._flush(key)  # the newcomer would overflow the batch: send what is there first
            group = None
        if group is None:
            group = _Pending(opened=time.monotonic())
            self._groups[key] = group
            group.timer = loop.call_later(lim.max_wait_s, self._flush, key)
        fut: asyncio.Future[Out] = loop.create_future()
        group.items.append(item)
        group.futures.append(fut)
        group.tokens += n_tok
        if len(group.items) >= lim.max_items or (
            lim.max_tokens is not None and group.tokens >= lim.max_tokens
        ):
            self._flush(key)
        return await fut

    def _flush(self, key: BatchKey) -> None:
        group = self._groups.pop(key, None)
        if group is None or not group.items:
            return
        if group.timer is not None:
            group.timer.cancel()
        task = asyncio.ensure_future(self._send(key, group))
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    async def _send(self, key: BatchKey, group: _Pending[In, Out]) -> None:
        self.batches_sent += 1
        try:
            results = list(await self._run(key, list(group.items)))
            if len(results) != len(group.items):
                raise RouterError(
                    f"run_batch returned {len(results)} results for {len(group.items)} items"
                )
        except BaseException as exc:
            for fut in group.futures:
                if not fut.done():
                    fut.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for fut, res in zip(group.futures, results, strict=True):
            if not fut.done():
                fut.set_result(res)

    async def flush(self) -> None:
        """Send every pending group now and wait until all batches finished."""
        for key in list(self._groups):
            self._flush(key)
        if self._inflight:
            await asyncio.gather(*list(self._inflight), return_exceptions=True)

    async def aclose(self) -> None:
        self._closed = True
        await self.flush()

    async def __aenter__(self) -> MicroBatcher[In, Out]:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @property
    def pending(self) -> int:
        """Requests waiting for their batch to be sent."""
        return sum(len(g.items) for g in self._groups.values())
