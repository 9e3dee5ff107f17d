"""Where ledger records go: memory, a JSONL file, Prometheus text, OpenTelemetry metrics."""

from __future__ import annotations

import os
import threading
from collections import defaultdict, deque
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from .errors import MissingDependencyError, TokenleanError
from .records import CALL, EVENT, OUTCOME, SAVING, Record

__all__ = [
    "JSONLSink",
    "MemorySink",
    "OpenTelemetrySink",
    "PrometheusSink",
    "Sink",
    "read_jsonl",
]


@runtime_checkable
class Sink(Protocol):
    """Receives records. ``write`` may raise; the ledger then keeps the records and retries."""

    def write(self, records: Sequence[Record]) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


class MemorySink:
    """Keeps records in memory (the last ``maxlen`` if given)."""

    def __init__(self, maxlen: int | None = None) -> None:
        self._records: deque[Record] = deque(maxlen=maxlen)
        self._lock = threading.Lock()

    def write(self, records: Sequence[Record]) -> None:
        with self._lock:
            self._records.extend(records)

    def flush(self) -> None:
        return None

    def close(self) -> None:
        return None

    @property
    def records(self) -> list[Record]:
        with self._lock:
            return list(self._records)

    def clear(self) -> None:
        with self._lock:
            self._records.clear()

    def __len__(self) -> int:
        return len(self._records)


class JSONLSink:
    """Appends one JSON object per line. Opened lazily; safe to share across threads."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._fh: Any = None
        self._lock = threading.Lock()

    def write(self, records: Sequence[Record]) -> None:
        data = "".join(r.to_json() + "\n" for r in records)
        with self._lock:
            if self._fh is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
            self._fh.write(data)
            self._fh.flush()

    def flush(self) -> None:
        with self._lock:
            if self._fh is not None:
                self._fh.flush()

    def close(self) -> None:
        with self._lock:
            if self._fh is not None:
                self._fh.close()
                self._fh = None


def read_jsonl(path: str | os.PathLike[str]) -> Iterator[Record]:
    """Read a ledger file; a bad line raises :class:`TokenleanError` naming the line number."""
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                yield Record.from_json(line)
            except TokenleanError as exc:
                raise TokenleanError(f"{path}:{lineno}: {exc}") from None


def _labels(pairs: Iterable[tuple[str, str]]) -> str:
    body = ",".join(
        f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
        for k, v in pairs
        if v
    )
    return "{" + body + "}" if body else ""


class PrometheusSink:
    """Aggregates records into Prometheus counters; :meth:`render` gives the text exposition
    format (serve it from your metrics endpoint, or :meth:`write_textfile` for node_exporter).

    Labels: model and component, plus tenant when ``tenant_label`` is set (mind cardinality).
    """

    def __init__(self, namespace: str = "tokenlean", tenant_label: bool = False) -> None:
        self.ns = namespace
        self.tenant_label = tenant_label
        self._lock = threading.Lock()
        self._counters: dict[tuple[str, tuple[tuple[str, str], ...]], float] = defaultdict(float)

    def _add(self, metric: str, labels: tuple[tuple[str, str], ...], value: float) -> None:
        self._counters[(metric, labels)] += value

    def write(self, records: Sequence[Record]) -> None:
        with self._lock:
            for r in records:
                base: list[tuple[str, str]] = [("component", r.component)]
                if r.model:
                    base.append(("model", r.model))
                if self.tenant_label and r.scope.tenant:
                    base.append(("tenant", r.scope.tenant))
                labels = tuple(base)
                if r.kind == CALL:
                    self._add("llm_calls_total", labels, 1)
                    if r.usage is not None:
                        u = r.usage
                        for kind, n in (
                            ("input", u.input_tokens),
                            ("output", u.output_tokens),
                            ("cache_read", u.cache_read_tokens),
                            ("cache_write", u.cache_write_tokens),
                            ("reasoning", u.reasoning_tokens),
                        ):
                            if n:
                                self._add("tokens_total", (*labels, ("type", kind)), n)
                    if r.usd:
                        self._add("cost_usd_total", labels, r.usd)
                    if r.latency_s is not None:
                        self._add("llm_latency_seconds_sum", labels, r.latency_s)
                        self._add("llm_latency_seconds_count", labels, 1)
                elif r.kind == SAVING:
                    if r.usage is not None:
                        self._add(
                            "saved_tokens_total", (*labels, ("type", "input")), r.usage.input_tokens
                        )
                        self._add(
                            "saved_tokens_total",
                            (*labels, ("type", "output")),
                            r.usage.output_tokens,
                        )
                    if r.usd:
                        self._add("saved_usd_total", labels, r.usd)
                elif r.kind == EVENT and r.name:
                    self._add("events_total", (*labels, ("event", r.name)), 1)
                elif r.kind == OUTCOME and r.name:
                    self._add("outcomes_total", (("outcome", r.name),), 1)

    def render(self) -> str:
        with self._lock:
            items = sorted(self._counters.items())
        lines: list[str] = []
        seen: set[str] = set()
        for (metric, labels), value in items:
            name = f"{self.ns}_{metric}"
            family = name.removesuffix("_sum").removesuffix("_count")
            if family not in seen:
                seen.add(family)
                kind = "summary" if metric.startswith("llm_latency") else "counter"
                lines.append(f"# TYPE {family} {kind}")
            lines.append(f"{name}{_labels(labels)} {value:.10g}")
        return "\n".join(lines) + "\n"

    def write_textfile(self, path: str | os.PathLike[str]) -> None:
        tmp = Path(f"{path}.tmp")
        tmp.write_text(self.render(), encoding="utf-8")
        os.replace(tmp, path)

    def flush(self) -> None:
        return None

    def close(self) -> None:
        return None


class OpenTelemetrySink:
    """Records as OpenTelemetry metrics (``gen_ai.client.token.usage``-style counters).

    Uses the global MeterProvider unless ``meter_provider`` is given; without an SDK configured
    the API is a no-op, as OpenTelemetry intends.
    """

    def __init__(self, meter_provider: Any = None, name: str = "tokenlean") -> None:
        try:
            from opentelemetry import metrics
        except ImportError as exc:
            raise MissingDependencyError("opentelemetry-api", "otel") from exc
        meter = (meter_provider or metrics.get_meter_provider()).get_meter(name)
        self._tokens = meter.create_counter("tokenlean.tokens", unit="{token}")
        self._saved = meter.create_counter("tokenlean.saved_tokens", unit="{token}")
        self._cost = meter.create_counter("tokenlean.cost", unit="USD")
        self._saved_cost = meter.create_counter("tokenlean.saved_cost", unit="USD")
        self._latency = meter.create_histogram("tokenlean.llm.duration", unit="s")
        self._events = meter.create_counter("tokenlean.events")

    def write(self, records: Sequence[Record]) -> None:
        for r in records:
            attrs: dict[str, str] = {"component": r.component}
            if r.model:
                attrs["gen_ai.request.model"] = r.model
            if r.scope.tenant:
                attrs["tenant"] = r.scope.tenant
            if r.kind == CALL and r.usage is not None:
                self._tokens.add(r.usage.input_tokens, {**attrs, "gen_ai.token.type": "input"})
                self._tokens.add(r.usage.output_tokens, {**attrs, "gen_ai.token.type": "output"})
                if r.usd:
                    self._cost.add(r.usd, attrs)
                if r.latency_s is not None:
                    self._latency.record(r.latency_s, attrs)
            elif r.kind == SAVING and r.usage is not None:
                self._saved.add(r.usage.total_tokens, attrs)
                if r.usd:
                    self._saved_cost.add(r.usd, attrs)
            elif r.kind == EVENT and r.name:
                self._events.add(1, {**attrs, "event": r.name})

    def flush(self) -> None:
        return None

    def close(self) -> None:
        return None
