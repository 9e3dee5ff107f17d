"""The ledger: one place that sees every call, every saved token and every budget.

Thread- and asyncio-safe: recording takes one short lock; scopes are contextvars, so each asyncio
task and each thread carries its own request/session/tenant/task. A sink that fails (disk full, an
unwritable path, a collector that is down) never breaks the caller: the ledger warns once, keeps the
records in memory and writes them when the sink works again.
"""

from __future__ import annotations

import logging
import threading
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import BudgetExceededError, TokenleanError
from .prices import PriceTable, default_prices
from .records import CALL, EVENT, OUTCOME, SAVING, SCOPE_FIELDS, Record, Scope, current_scope
from .report import Report, build_report
from .sinks import MemorySink, Sink
from .usage import Usage

__all__ = ["Budget", "Ledger", "LedgerWarning", "get_ledger", "set_ledger"]

logger = logging.getLogger("tokenlean.core")


class LedgerWarning(RuntimeWarning):
    """A ledger sink failed; records are kept in memory and retried."""


@dataclass(frozen=True, slots=True)
class Budget:
    """A cap on tokens and/or dollars per ``scope`` (request, session, tenant or task).

    Budgets are checked before each call (the handlers pass the prompt's size): a call that would
    exceed one raises :class:`BudgetExceededError` and is not made. ``key`` limits the budget
    to one scope value (one tenant, say); by default every value gets its own allowance.
    """

    scope: str
    max_tokens: int | None = None
    max_usd: float | None = None
    key: str | None = None

    def __post_init__(self) -> None:
        if self.scope not in SCOPE_FIELDS:
            raise TokenleanError(f"Budget scope must be one of {SCOPE_FIELDS}, got {self.scope!r}")
        if self.max_tokens is None and self.max_usd is None:
            raise TokenleanError("Budget needs max_tokens, max_usd or both")
        if self.max_tokens is not None and self.max_tokens < 0:
            raise TokenleanError("Budget.max_tokens must not be negative")
        if self.max_usd is not None and self.max_usd < 0:
            raise TokenleanError("Budget.max_usd must not be negative")


class _PendingSink:
    __slots__ = ("failing", "pending", "sink")

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.pending: list[Record] = []
        self.failing = False


class Ledger:
    """Records calls, savings, events and outcomes, and enforces budgets.

    ``sinks`` default to one :class:`MemorySink`; pass a :class:`JSONLSink` to keep a file,
    :class:`PrometheusSink` / :class:`OpenTelemetrySink` to export. ``prices`` prices calls and
    savings given in tokens (default: genai-prices' table).
    """

    def __init__(
        self,
        sinks: Iterable[Sink] | None = None,
        *,
        prices: PriceTable | None = None,
        budgets: Iterable[Budget] = (),
        max_pending: int = 100_000,
    ) -> None:
        sink_list = list(sinks) if sinks is not None else [MemorySink()]
        for s in sink_list:
            if not isinstance(s, Sink):
                raise TokenleanError(f"{type(s).__name__} is not a sink (needs write/flush/close)")
        self._sinks = [_PendingSink(s) for s in sink_list]
        self.prices = prices or default_prices()
        self._budgets: list[Budget] = list(budgets)
        self._spent: dict[tuple[str, str], list[float]] = {}
        self._lock = threading.Lock()
        self._max_pending = max_pending

    # ------------------------------------------------------------------ sinks

    @property
    def sinks(self) -> list[Sink]:
        return [p.sink for p in self._sinks]

    @property
    def memory(self) -> MemorySink | None:
        """The first in-memory sink, if any."""
        for p in self._sinks:
            if isinstance(p.sink, MemorySink):
                return p.sink
        return None

    def records(self) -> list[Record]:
        """Records held in memory (the memory sink plus anything pending for a failed sink)."""
        mem = self.memory
        out = mem.records if mem is not None else []
        if mem is None:
            for p in self._sinks:
                out.extend(p.pending)
        return out

    def add_sink(self, sink: Sink) -> None:
        with self._lock:
            self._sinks.append(_PendingSink(sink))

    def _emit(self, records: Sequence[Record]) -> None:
        for p in self._sinks:
            batch = [*p.pending, *records] if p.pending else records
            try:
                p.sink.write(batch)
            except Exception as exc:
                if not p.failing:
                    warnings.warn(
                        f"tokenlean ledger sink {type(p.sink).__name__} failed ({exc!r}); "
                        "keeping its records in memory and retrying on the next write",
                        LedgerWarning,
                        stacklevel=4,
                    )
                    logger.warning("ledger sink %s failed: %r", type(p.sink).__name__, exc)
                p.failing = True
                p.pending = list(batch)[-self._max_pending :]
            else:
                if p.failing:
                    logger.info("ledger sink %s recovered", type(p.sink).__name__)
                p.failing = False
                p.pending = []

    def flush(self) -> None:
        """Retry pending records and flush every sink (failures warn, never raise)."""
        with self._lock:
            self._emit([])
            for p in self._sinks:
                try:
                    p.sink.flush()
                except Exception as exc:  # pragma: no cover - sink specific
                    logger.warning("ledger sink %s flush failed: %r", type(p.sink).__name__, exc)

    def close(self) -> None:
        self.flush()
        for p in self._sinks:
            try:
                p.sink.close()
            except Exception as exc:  # pragma: no cover - sink specific
                logger.warning("ledger sink %s close failed: %r", type(p.sink).__name__, exc)

    @property
    def pending(self) -> int:
        """Records waiting for a failed sink."""
        return sum(len(p.pending) for p in self._sinks)

    # ------------------------------------------------------------------ recording

    def record(self, record: Record) -> Record:
        """Store a ready-made record (``llm_call`` records count against budgets).

        Recording never raises for a budget: the call already happened and its answer must not be
        lost. The next :meth:`check_budget` (which the handlers run before every call) raises.
        """
        with self._lock:
            if record.kind == CALL:
                self._charge(record)
            self._emit((record,))
        return record

    def record_call(
        self,
        model: str | None,
        usage: Usage,
        *,
        latency_s: float | None = None,
        ttft_s: float | None = None,
        provider: str | None = None,
        component: str = "llm",
        usd: float | None = None,
        run_id: str | None = None,
        scope: Scope | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> Record:
        """Record one model call; ``usd`` is priced from ``usage`` when not given."""
        if not isinstance(usage, Usage):
            raise TokenleanError(
                f"usage must be a tokenlean_core.Usage, got {type(usage).__name__}"
            )
        if usd is None:
            usd = self.prices.cost(usage, model, provider)
        return self.record(
            Record(
                kind=CALL,
                ts=time.time(),
                component=component,
                scope=scope or current_scope(),
                model=model,
                usage=usage,
                usd=usd,
                latency_s=latency_s,
                ttft_s=ttft_s,
                run_id=run_id,
                detail=dict(detail or {}),
            )
        )

    def record_saving(
        self,
        component: str,
        tokens_in: int = 0,
        tokens_out: int = 0,
        usd: float | None = None,
        *,
        model: str | None = None,
        cache_read_tokens: int = 0,
        latency_s: float | None = None,
        run_id: str | None = None,
        scope: Scope | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> Record:
        """Record what ``component`` saved against not having it.

        ``tokens_in``/``tokens_out`` are the prompt and completion tokens that were not sent or
        generated; ``usd`` is priced from them on ``model`` when not given; ``latency_s`` is time
        saved (negative when the component cost time, e.g. compression).
        """
        if not component:
            raise TokenleanError("record_saving needs a component name")
        if tokens_in < 0 or tokens_out < 0:
            raise TokenleanError(
                f"saved tokens must not be negative (tokens_in={tokens_in}, "
                f"tokens_out={tokens_out}); record a cost as an llm_call instead"
            )
        usage = Usage(tokens_in + cache_read_tokens, tokens_out, cache_read_tokens, source="saving")
        if usd is None and model:
            usd = self.prices.cost(usage, model)
        return self.record(
            Record(
                kind=SAVING,
                ts=time.time(),
                component=component,
                scope=scope or current_scope(),
                model=model,
                usage=usage,
                usd=usd,
                latency_s=latency_s,
                run_id=run_id,
                detail=dict(detail or {}),
            )
        )

    def record_event(
        self,
        component: str,
        name: str,
        value: float = 1.0,
        *,
        latency_s: float | None = None,
        model: str | None = None,
        run_id: str | None = None,
        scope: Scope | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> Record:
        """Record a named measurement, e.g. ``("cache", "hit")`` or ``("compress", "ratio", 2.4)``.

        Cache components record ``hit``/``miss`` events; the report's cache hit rate reads them.
        """
        return self.record(
            Record(
                kind=EVENT,
                ts=time.time(),
                component=component,
                scope=scope or current_scope(),
                model=model,
                name=name,
                value=float(value),
                latency_s=latency_s,
                run_id=run_id,
                detail=dict(detail or {}),
            )
        )

    def record_outcome(
        self,
        success: bool,
        *,
        scope: Scope | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> Record:
        """Mark the current request (or ``scope``) as a success or failure, for cost per outcome."""
        return self.record(
            Record(
                kind=OUTCOME,
                ts=time.time(),
                component="app",
                scope=scope or current_scope(),
                name="success" if success else "failure",
                value=1.0 if success else 0.0,
                detail=dict(detail or {}),
            )
        )

    # ------------------------------------------------------------------ budgets

    def add_budget(self, budget: Budget) -> None:
        with self._lock:
            self._budgets.append(budget)

    @property
    def budgets(self) -> list[Budget]:
        return list(self._budgets)

    def spent(self, scope_field: str, key: str) -> tuple[int, float]:
        """(tokens, usd) recorded so far for ``scope_field=key``."""
        got = self._spent.get((scope_field, key))
        return (int(got[0]), got[1]) if got else (0, 0.0)

    def _charge(self, record: Record) -> None:
        tokens = record.usage.total_tokens if record.usage else 0
        usd = record.usd or 0.0
        for name, value in record.scope.items():
            slot = self._spent.setdefault((name, value), [0.0, 0.0])
            slot[0] += tokens
            slot[1] += usd

    def check_budget(self, tokens: int = 0, usd: float = 0.0, scope: Scope | None = None) -> None:
        """Raise :class:`BudgetExceededError` if spending ``tokens``/``usd`` more in ``scope``
        (default: the current one) would exceed a budget."""
        if self._budgets:
            self._check(scope or current_scope(), tokens, usd)

    def _check(self, scope: Scope, tokens: int, usd: float) -> None:
        for b in self._budgets:
            key = getattr(scope, b.scope)
            if key is None or (b.key is not None and key != b.key):
                continue
            spent_tokens, spent_usd = self.spent(b.scope, key)
            if b.max_tokens is not None and spent_tokens + tokens > b.max_tokens:
                raise BudgetExceededError(
                    b.scope, key, "tokens", b.max_tokens, spent_tokens + tokens
                )
            if b.max_usd is not None and spent_usd + usd > b.max_usd:
                raise BudgetExceededError(b.scope, key, "usd", b.max_usd, spent_usd + usd)

    # ------------------------------------------------------------------ reporting

    def report(self, *, where: dict[str, str] | None = None) -> Report:
        """A :class:`~tokenlean_core.report.Report` over the records held in memory."""
        return build_report(self.records(), where=where)


_global: Ledger | None = None
_global_lock = threading.Lock()


def get_ledger() -> Ledger:
    """The process-wide ledger that handlers and components use unless given one."""
    global _global
    if _global is None:
        with _global_lock:
            if _global is None:
                _global = Ledger()
    return _global


def set_ledger(ledger: Ledger | None) -> None:
    """Replace the process-wide ledger (None resets it to a fresh in-memory one on next use)."""
    global _global
    with _global_lock:
        _global = ledger
