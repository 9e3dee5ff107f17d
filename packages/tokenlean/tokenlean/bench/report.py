"""What ``tokenlean bench`` writes: the terminal table, ``bench.json`` and ``bench.html`` (one
self-contained page, the plots embedded as base64 PNGs)."""

from __future__ import annotations

import base64
import html
import io
import json
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .config import BenchConfig
from .runner import VariantResult, request_rows, summarise
from .workload import Workload

__all__ = ["SCHEMA_VERSION", "build_result", "render_table", "write_html", "write_json"]

SCHEMA_VERSION = 1

#: quality figures compared with the baseline's (target: within 2 points)
QUALITY = ("state_recall_recoverable", "answer_retention", "cache_hit_precision", "judge_agreement")


def _savings(v: VariantResult) -> list[dict[str, Any]]:
    if v.ledger is None:
        return []
    savings = v.ledger.report().to_dict().get("savings") or {}
    return [{"component": c, **fig} for c, fig in savings.items()]


def build_result(
    wl: Workload,
    cfg: BenchConfig,
    results: Sequence[VariantResult],
    *,
    model_description: str,
    route_meaning: str,
    quick: bool,
    seconds: float,
) -> dict[str, Any]:
    """The content of ``bench.json``."""
    rows = [summarise(v, cfg.small_model) for v in results]
    base = next((r for r in rows if r["variant"] == "baseline"), None)
    ratios: dict[str, dict[str, float | None]] = {}
    quality_gap: dict[str, dict[str, float | None]] = {}
    if base is not None:
        for r in rows:
            ratios[r["variant"]] = {
                "input_tokens": _div(r["input_tokens"], base["input_tokens"]),
                "output_tokens": _div(r["output_tokens"], base["output_tokens"]),
                "usd": _div(r["usd"], base["usd"]),
                "latency_p50": _div(r["latency_p50_s"], base["latency_p50_s"]),
            }
            quality_gap[r["variant"]] = {
                q: None
                if r[q] is None
                else round(r[q] - (base[q] if base[q] is not None else 1.0), 4)
                for q in QUALITY
            }
    full = next((r for r in rows if r["variant"] == "full"), None)
    targets: dict[str, Any] = {}
    if base is not None and full is not None:
        ratio = ratios["full"]["input_tokens"]
        gaps = [g for g in quality_gap["full"].values() if g is not None]
        targets = {
            "full_input_tokens_at_most_40pct_of_baseline": ratio is not None and ratio <= 0.40,
            "full_quality_within_2pts_of_baseline": all(g >= -0.02 for g in gaps),
        }
    return {
        "schema_version": SCHEMA_VERSION,
        "command": "tokenlean bench" + (" --quick" if quick else ""),
        "config": {
            "target_model": cfg.target_model,
            "small_model": cfg.small_model,
            "model": model_description,
            "judge": cfg.judge,
            "max_tokens": cfg.max_tokens,
            "small_context": cfg.small_context,
            "memory_budget": cfg.memory_budget,
            "compress_rate": cfg.compress_rate,
            "seed": cfg.seed,
            "quick": quick,
        },
        "workload": {"source": wl.source, **wl.counts()},
        "route_meaning": route_meaning,
        "counting": (
            f"input/output tokens are counted with {cfg.target_model}'s tokenizer on what each "
            "model call was really sent and answered; cached_tokens are the prompt tokens of "
            "requests the semantic cache answered (not sent); usd prices calls at "
            f"{cfg.target_model} (large route) or {cfg.small_model} (small route)"
        ),
        "variants": rows,
        "ratios_vs_baseline": ratios,
        "quality_vs_baseline": quality_gap,
        "targets": targets,
        "savings_by_component": {v.name: _savings(v) for v in results},
        "notes": {v.name: list(v.notes) for v in results},
        "requests": {v.name: request_rows(v) for v in results},
        "seconds": round(seconds, 2),
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
    }


def _div(a: float | None, b: float | None) -> float | None:
    if a is None or not b:
        return None
    return round(a / b, 4)


def write_json(result: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")


# ----------------------------------------------------------------------------------- table


def _fmt(v: Any, kind: str = "") -> str:
    if v is None:
        return "-"
    if kind == "pct":
        return f"{100 * v:.1f}%"
    if kind == "usd":
        return f"${v:.5f}"
    if kind == "s":
        return f"{v:.2f}s"
    if isinstance(v, float):
        return f"{v:.3f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


ROWS: list[tuple[str, str, str]] = [
    ("input tokens", "input_tokens", ""),
    ("  vs baseline", "_ratio_in", "pct"),
    ("output tokens", "output_tokens", ""),
    ("cached tokens (cache hits)", "cached_tokens", ""),
    ("cost (target prices)", "usd", "usd"),
    ("  vs baseline", "_ratio_usd", "pct"),
    ("model calls", "model_calls", ""),
    ("latency P50", "latency_p50_s", "s"),
    ("latency P95", "latency_p95_s", "s"),
    ("cache hit rate", "cache_hit_rate", "pct"),
    ("cache hit precision", "cache_hit_precision", "pct"),
    ("state recall (recoverable)", "state_recall_recoverable", "pct"),
    ("answer retention (RAG)", "answer_retention", "pct"),
    ("judge agreement w/ baseline", "judge_agreement", "pct"),
    ("routed to small", "routed_small_share", "pct"),
    ("errors", "errors", ""),
]


def render_table(result: dict[str, Any]) -> str:
    """The terminal table (rich when available, plain text otherwise)."""
    rows = result["variants"]
    ratios = result["ratios_vs_baseline"]
    header = ["", *[r["variant"] for r in rows]]
    body: list[list[str]] = []
    for label, key, kind in ROWS:
        line = [label]
        for r in rows:
            if key == "_ratio_in":
                v = ratios.get(r["variant"], {}).get("input_tokens")
            elif key == "_ratio_usd":
                v = ratios.get(r["variant"], {}).get("usd")
            else:
                v = r.get(key)
            line.append(_fmt(v, kind))
        if any(c != "-" for c in line[1:]):
            body.append(line)
    wl = result["workload"]
    title = (
        f"tokenlean bench: {wl.get('support', 0)} support questions, "
        f"{wl.get('conversation', 0)} conversation turns ({wl.get('conversations', 0)} "
        f"conversations), {wl.get('rag', 0)} RAG questions from {wl['source']}; "
        f"tokens counted and priced as {result['config']['target_model']}"
    )
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # pragma: no cover - rich ships with tokenlean-core[report]
        widths = [max(len(x[i]) for x in [header, *body]) for i in range(len(header))]
        lines = [title, "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
        lines += ["  ".join(c.ljust(w) for c, w in zip(b, widths, strict=True)) for b in body]
        return "\n".join(lines)
    table = Table()
    table.add_column("")
    for h in header[1:]:
        table.add_column(h, justify="right")
    for b in body:
        table.add_row(*b)
    buf = io.StringIO()
    Console(file=buf, width=110, force_terminal=False, color_system=None).print(table)
    lines = [title, buf.getvalue().rstrip()]
    for name, savings in result["savings_by_component"].items():
        parts = [
            f"{s['component']}: {s.get('tokens_in', s.get('input_tokens', 0)):,} tok"
            + (f", ${s['usd']:.5f}" if s.get("usd") else "")
            for s in savings
        ]
        if parts:
            lines.append(f"savings by component ({name}, from its ledger): " + "; ".join(parts))
    t = result.get("targets") or {}
    if t:
        lines.append(
            "targets: full <= 40% of baseline input tokens: "
            f"{'met' if t['full_input_tokens_at_most_40pct_of_baseline'] else 'MISSED'}; "
            "quality within 2 points of baseline: "
            f"{'met' if t['full_quality_within_2pts_of_baseline'] else 'MISSED'}"
        )
    return "\n".join(lines)


# ----------------------------------------------------------------------------------- html


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode()


def plots(result: dict[str, Any]) -> dict[str, str]:
    """The three plots as base64 PNGs: tokens per turn, cost per variant, savings by component."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out: dict[str, str] = {}
    fig, ax = plt.subplots(figsize=(8, 3.2))
    for name, reqs in result["requests"].items():
        ax.plot(
            [r["index"] for r in reqs],
            [r["input_tokens"] for r in reqs],
            marker=".",
            linewidth=1,
            label=name,
        )
    ax.set_xlabel("request (turn) of the workload")
    ax.set_ylabel("input tokens sent")
    ax.set_title("Tokens per turn")
    ax.legend()
    out["tokens_per_turn"] = _png(fig)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 3.2))
    names = [r["variant"] for r in result["variants"]]
    colors = ["#888888", "#4a90d9", "#2a9d5c"][: len(names)]
    ax.bar(names, [r["usd"] for r in result["variants"]], color=colors)
    ax.set_ylabel(f"USD at {result['config']['target_model']} prices")
    ax.set_title("Cost per variant")
    out["cost_per_variant"] = _png(fig)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 3.2))
    comps: dict[str, dict[str, int]] = {}
    for name, savings in result["savings_by_component"].items():
        for s in savings:
            comps.setdefault(s["component"], {})[name] = int(
                s.get("tokens_in", s.get("input_tokens", 0)) or 0
            )
    width = 0.8 / max(1, len(names))
    for i, name in enumerate(names):
        ax.bar(
            [j + i * width for j in range(len(comps))],
            [comps[c].get(name, 0) for c in comps],
            width=width,
            label=name,
        )
    ax.set_xticks([j + width * (len(names) - 1) / 2 for j in range(len(comps))], list(comps))
    ax.set_ylabel("input tokens saved")
    ax.set_title("Savings by component (ledger)")
    if comps:
        ax.legend()
    out["savings_by_component"] = _png(fig)
    plt.close(fig)
    return out


def write_html(result: dict[str, Any], path: Path, table: str) -> None:
    imgs = plots(result)
    notes = "".join(
        f"<li><b>{html.escape(k)}</b>: {html.escape(n)}</li>"
        for k, ns in result["notes"].items()
        for n in ns
    )
    body = "".join(
        f"<h2>{html.escape(k.replace('_', ' ').capitalize())}</h2>"
        f'<img alt="{k}" src="data:image/png;base64,{v}">'
        for k, v in imgs.items()
    )
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>tokenlean bench</title>
<style>body{{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}}
pre{{background:#f6f6f6;padding:1rem;overflow-x:auto}}img{{max-width:100%}}</style></head>
<body><h1>tokenlean bench</h1>
<pre>{html.escape(table)}</pre>
<p>{html.escape(result["counting"])}.</p>
<p>Route: {html.escape(result["route_meaning"])}</p>
<ul>{notes}</ul>
{body}
<p>Raw figures: <code>bench.json</code> (same folder).</p>
</body></html>
"""
    path.write_text(page, encoding="utf-8")
