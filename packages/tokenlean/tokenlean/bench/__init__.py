"""``tokenlean bench``: an end-to-end token-cost benchmark of a real workload, three variants side
by side (baseline, cached + canonicalised, everything), on a real local chat model by default.

Programmatic use::

    from tokenlean.bench import BenchConfig, run_bench

    result = run_bench(BenchConfig(), data="builtin", quick=True, out="tokenlean-bench")
    print(result["ratios_vs_baseline"]["full"]["input_tokens"])
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .config import VARIANTS, BenchConfig
from .errors import BenchError, DataMissingError
from .quality import answer_retention, judge_agreement, normalize_answer, state_recall
from .workload import Workload, default_data_dir, load_workload

__all__ = [
    "VARIANTS",
    "BenchConfig",
    "BenchError",
    "DataMissingError",
    "Workload",
    "answer_retention",
    "default_data_dir",
    "judge_agreement",
    "load_workload",
    "normalize_answer",
    "run_bench",
    "state_recall",
]


def run_bench(
    cfg: BenchConfig,
    *,
    data: Path | str | None = None,
    quick: bool = False,
    limit: int | None = None,
    out: Path | str | None = "tokenlean-bench",
    progress: Callable[[str, int], Any] | None = None,
) -> dict[str, Any]:
    """Run the benchmark and return ``bench.json``'s content; with ``out``, write
    ``bench.json`` and ``bench.html`` there (the table is under ``"table"``)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    from .report import build_result, render_table, write_html, write_json
    from .runner import run_variants

    t0 = time.perf_counter()
    wl = load_workload(data, quick=quick, seed=cfg.seed)
    if limit is not None:
        if limit < 1:
            raise BenchError("limit must be at least 1")
        wl.requests = wl.requests[:limit]
    results, models = run_variants(wl, cfg, progress=progress)
    result = build_result(
        wl,
        cfg,
        results,
        model_description=models.description,
        route_meaning=models.route_meaning,
        quick=quick,
        seconds=time.perf_counter() - t0,
    )
    table = render_table(result)
    result["table"] = table
    if out is not None:
        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        write_json(result, folder / "bench.json")
        write_html(result, folder / "bench.html", table)
    return result
