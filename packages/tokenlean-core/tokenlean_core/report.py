"""The ledger's report: tokens, cost, cost per successful outcome, cache hit rate, savings by
component and latency percentiles by prompt size. Renders as a terminal table, a dict (JSON), a
PNG chart of cost and savings over time, and a self-contained HTML page."""

from __future__ import annotations

import base64
import html
import io
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import MissingDependencyError
from .records import CALL, EVENT, OUTCOME, SAVING, Record

__all__ = ["PROMPT_BUCKETS", "Report", "build_report", "percentile"]

PROMPT_BUCKETS: tuple[tuple[str, int, float], ...] = (
    ("<1k", 0, 1_000),
    ("1k-4k", 1_000, 4_000),
    ("4k-16k", 4_000, 16_000),
    ("16k-64k", 16_000, 64_000),
    (">=64k", 64_000, math.inf),
)


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile (q in 0..100); None for no values."""
    if not values:
        return None
    s = sorted(values)
    if len(s) == 1:
        return s[0]
    pos = (len(s) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


@dataclass
class Totals:
    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    usd: float = 0.0
    unpriced_calls: int = 0
    estimated_calls: int = 0

    def add(self, r: Record) -> None:
        self.calls += 1
        if r.usage is not None:
            self.input_tokens += r.usage.input_tokens
            self.output_tokens += r.usage.output_tokens
            self.cache_read_tokens += r.usage.cache_read_tokens
            self.cache_write_tokens += r.usage.cache_write_tokens
            self.reasoning_tokens += r.usage.reasoning_tokens
            if not r.usage.exact:
                self.estimated_calls += 1
        if r.usd is None:
            self.unpriced_calls += 1
        else:
            self.usd += r.usd


@dataclass
class Saving:
    count: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    usd: float = 0.0
    seconds: float = 0.0


@dataclass
class Report:
    """Aggregates over a set of ledger records. ``to_dict()`` is the JSON form."""

    totals: Totals = field(default_factory=Totals)
    by_model: dict[str, Totals] = field(default_factory=dict)
    savings: dict[str, Saving] = field(default_factory=dict)
    events: dict[str, dict[str, float]] = field(default_factory=dict)
    successes: int = 0
    failures: int = 0
    latency_by_bucket: dict[str, dict[str, float | int | None]] = field(default_factory=dict)
    timeline: list[tuple[float, float, float]] = field(default_factory=list)  # ts, cost, saved

    @property
    def saved_tokens(self) -> int:
        return sum(s.tokens_in + s.tokens_out for s in self.savings.values())

    @property
    def saved_usd(self) -> float:
        return sum(s.usd for s in self.savings.values())

    @property
    def cache_hit_rate(self) -> float | None:
        ev = self.events.get("cache", {})
        hits, misses = ev.get("hit", 0.0), ev.get("miss", 0.0)
        return hits / (hits + misses) if hits + misses else None

    @property
    def cost_per_success(self) -> float | None:
        return self.totals.usd / self.successes if self.successes else None

    @property
    def savings_share(self) -> float | None:
        """Saved tokens as a share of what would have been spent without tokenlean."""
        spent = self.totals.input_tokens + self.totals.output_tokens
        saved = self.saved_tokens
        return saved / (spent + saved) if spent + saved else None

    def to_dict(self) -> dict[str, Any]:
        def totals(t: Totals) -> dict[str, Any]:
            return dict(vars(t))

        return {
            "totals": totals(self.totals),
            "by_model": {k: totals(v) for k, v in self.by_model.items()},
            "savings": {k: dict(vars(v)) for k, v in self.savings.items()},
            "saved_tokens": self.saved_tokens,
            "saved_usd": self.saved_usd,
            "savings_share": self.savings_share,
            "cache_hit_rate": self.cache_hit_rate,
            "outcomes": {"success": self.successes, "failure": self.failures},
            "cost_per_success_usd": self.cost_per_success,
            "latency_by_prompt_size": self.latency_by_bucket,
            "events": self.events,
        }

    # ------------------------------------------------------------------ rendering

    def table(self) -> str:
        """A plain-text report for the terminal."""
        t = self.totals
        lines = ["tokenlean ledger report", "=" * 23]
        rows = [
            (
                "LLM calls",
                f"{t.calls}" + (f" ({t.estimated_calls} estimated)" if t.estimated_calls else ""),
            ),
            ("input tokens", f"{t.input_tokens:,}"),
            ("  cache reads / writes", f"{t.cache_read_tokens:,} / {t.cache_write_tokens:,}"),
            (
                "output tokens",
                f"{t.output_tokens:,}"
                + (f" ({t.reasoning_tokens:,} reasoning)" if t.reasoning_tokens else ""),
            ),
            (
                "cost",
                f"${t.usd:.6f}"
                + (f" ({t.unpriced_calls} calls unpriced)" if t.unpriced_calls else ""),
            ),
            (
                "tokens saved",
                f"{self.saved_tokens:,}"
                + (
                    f" ({self.savings_share:.1%} of the counterfactual)"
                    if self.savings_share
                    else ""
                ),
            ),
            ("dollars saved", f"${self.saved_usd:.6f}"),
            (
                "cache hit rate",
                "-" if self.cache_hit_rate is None else f"{self.cache_hit_rate:.1%}",
            ),
            ("outcomes (ok / failed)", f"{self.successes} / {self.failures}"),
            (
                "cost per success",
                "-" if self.cost_per_success is None else f"${self.cost_per_success:.6f}",
            ),
        ]
        width = max(len(k) for k, _ in rows)
        lines += [f"{k:<{width}}  {v}" for k, v in rows]
        if self.savings:
            lines += ["", "savings by component"]
            lines.append(
                f"  {'component':<14} {'count':>6} {'tokens in':>11} {'tokens out':>11} "
                f"{'usd':>11} {'seconds':>9}"
            )
            for name, s in sorted(
                self.savings.items(), key=lambda kv: -(kv[1].tokens_in + kv[1].tokens_out)
            ):
                lines.append(
                    f"  {name:<14} {s.count:>6} {s.tokens_in:>11,} {s.tokens_out:>11,} "
                    f"{s.usd:>11.6f} {s.seconds:>9.3f}"
                )
        if self.by_model:
            lines += ["", "by model"]
            lines.append(f"  {'model':<28} {'calls':>6} {'input':>10} {'output':>10} {'usd':>11}")
            for name, m in sorted(self.by_model.items()):
                lines.append(
                    f"  {name[:28]:<28} {m.calls:>6} {m.input_tokens:>10,} "
                    f"{m.output_tokens:>10,} {m.usd:>11.6f}"
                )
        if self.latency_by_bucket:
            lines += ["", "latency by prompt size (seconds)"]
            lines.append(f"  {'prompt':<8} {'calls':>6} {'p50':>9} {'p95':>9}")
            for name, b in self.latency_by_bucket.items():
                p50, p95 = b["p50"], b["p95"]
                lines.append(
                    f"  {name:<8} {b['calls']:>6} {'-' if p50 is None else f'{p50:.4f}':>9} "
                    f"{'-' if p95 is None else f'{p95:.4f}':>9}"
                )
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()

    def plot(self, path: str | None = None) -> bytes:
        """A PNG: cumulative cost and savings over time, and savings by component."""
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError as exc:
            raise MissingDependencyError("matplotlib", "report") from exc
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
        if self.timeline:
            t0 = self.timeline[0][0]
            xs = [(ts - t0) for ts, _, _ in self.timeline]
            cost, saved, c, s = [], [], 0.0, 0.0
            for _, dc, ds in self.timeline:
                c += dc
                s += ds
                cost.append(c)
                saved.append(s)
            ax1.plot(xs, cost, label="spent (USD)")
            ax1.plot(xs, saved, label="saved (USD)")
            ax1.set_xlabel("seconds since first record")
            ax1.legend()
        ax1.set_title("cost and savings over time")
        names = sorted(self.savings)
        ax2.bar(names, [self.savings[n].tokens_in + self.savings[n].tokens_out for n in names])
        ax2.set_title("tokens saved by component")
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100)
        plt.close(fig)
        data = buf.getvalue()
        if path:
            with open(path, "wb") as fh:
                fh.write(data)
        return data

    def html(self, path: str | None = None) -> str:
        """A self-contained HTML page: the table and the chart."""
        png = base64.b64encode(self.plot()).decode()
        page = (
            "<!doctype html><html><head><meta charset='utf-8'><title>tokenlean report</title>"
            "<style>body{font-family:system-ui,sans-serif;margin:2em}pre{background:#f6f8fa;"
            "padding:1em}</style></head><body><h1>tokenlean report</h1>"
            f"<img alt='cost and savings' src='data:image/png;base64,{png}'>"
            f"<pre>{html.escape(self.table())}</pre></body></html>"
        )
        if path:
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(page)
        return page


def build_report(records: Iterable[Record], *, where: dict[str, str] | None = None) -> Report:
    """Aggregate ``records``; ``where={"tenant": "acme"}`` keeps only matching scopes."""
    rep = Report()
    latencies: dict[str, list[float]] = defaultdict(list)
    for r in records:
        if where and any(getattr(r.scope, k, None) != v for k, v in where.items()):
            continue
        if r.kind == CALL:
            rep.totals.add(r)
            rep.by_model.setdefault(r.model or "unknown", Totals()).add(r)
            if r.latency_s is not None:
                size = r.usage.input_tokens if r.usage else 0
                for name, lo, hi in PROMPT_BUCKETS:
                    if lo <= size < hi:
                        latencies[name].append(r.latency_s)
                        break
            rep.timeline.append((r.ts, r.usd or 0.0, 0.0))
        elif r.kind == SAVING:
            s = rep.savings.setdefault(r.component, Saving())
            s.count += 1
            if r.usage is not None:
                s.tokens_in += r.usage.input_tokens
                s.tokens_out += r.usage.output_tokens
            s.usd += r.usd or 0.0
            s.seconds += r.latency_s or 0.0
            rep.timeline.append((r.ts, 0.0, r.usd or 0.0))
        elif r.kind == EVENT and r.name:
            comp = rep.events.setdefault(r.component, {})
            comp[r.name] = comp.get(r.name, 0.0) + (r.value if r.value is not None else 1.0)
        elif r.kind == OUTCOME:
            if r.name == "success":
                rep.successes += 1
            else:
                rep.failures += 1
    rep.timeline.sort()
    for name, _, _ in PROMPT_BUCKETS:
        vals = latencies.get(name)
        if vals:
            rep.latency_by_bucket[name] = {
                "calls": len(vals),
                "p50": percentile(vals, 50),
                "p95": percentile(vals, 95),
            }
    return rep
