"""``tokenlean router train``: fit a gate from labelled data (the ``tokenlean`` CLI calls
:func:`train_main`).

Input: a CSV with a prompt column and two boolean columns saying whether the small (weak) and the
large (strong) model answered correctly - RouteLLM's release format
``prompt,<weak model>,<strong model>`` works as is - or a JSONL file with the same fields. A share
of the rows (``--holdout``) is kept aside to calibrate the threshold to ``--strong-share`` (or
``--target-cost`` USD per request with ``--prices``) and to report the curve; the gate is then saved
as ``.npz`` and the calibration as JSON next to it.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from .calibrate import threshold_for_cost, threshold_for_share
from .errors import RouterConfigError
from .gate import train_gate
from .metrics import routellm_curve

__all__ = ["build_parser", "load_labelled", "train_main"]

_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f", ""}


def _bool(v: Any, where: str) -> bool:
    if isinstance(v, bool):
        return v
    s = str(v).strip().lower()
    if s in _TRUE:
        return True
    if s in _FALSE:
        return False
    raise RouterConfigError(f"{where}: expected a boolean, got {v!r}")


def load_labelled(
    path: Path,
    prompt_col: str,
    weak_col: str | None,
    strong_col: str | None,
    group_col: str | None = None,
) -> tuple[list[str], list[bool], list[bool], str, str, list[str | None] | None]:
    """Read (prompt, weak right, strong right[, group]) rows from CSV or JSONL.

    Without explicit columns, the first two columns other than the prompt (and group) columns are
    the weak and strong ones. Empty group cells are unknown groups (None).
    """
    rows: list[dict[str, Any]] = []
    if path.suffix == ".jsonl":
        with path.open(encoding="utf-8") as fh:
            rows = [json.loads(line) for line in fh if line.strip()]
        cols = list(rows[0]) if rows else []
    else:
        csv.field_size_limit(1 << 30)
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            cols = list(reader.fieldnames or [])
            rows = list(reader)
    if not rows:
        raise RouterConfigError(f"{path} has no rows")
    if group_col is not None and group_col not in cols:
        raise RouterConfigError(f"column {group_col!r} not found in {path} (columns: {cols})")
    others = [c for c in cols if c not in (prompt_col, group_col)]
    weak_col = weak_col or (others[0] if others else None)
    strong_col = strong_col or (others[1] if len(others) > 1 else None)
    for c in (prompt_col, weak_col, strong_col):
        if c is None or c not in cols:
            raise RouterConfigError(f"column {c!r} not found in {path} (columns: {cols})")
    assert weak_col is not None and strong_col is not None
    texts = [str(r[prompt_col]) for r in rows]
    weak = [_bool(r[weak_col], f"{path} {weak_col}") for r in rows]
    strong = [_bool(r[strong_col], f"{path} {strong_col}") for r in rows]
    groups = (
        None
        if group_col is None
        else [None if r.get(group_col) in (None, "") else str(r[group_col]) for r in rows]
    )
    return texts, weak, strong, weak_col, strong_col, groups


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tokenlean router train",
        description="Train a router gate on labelled data and calibrate its threshold.",
    )
    p.add_argument("data", type=Path, help="CSV or JSONL: prompt, weak correct, strong correct")
    p.add_argument("-o", "--output", type=Path, required=True, help="gate file to write (.npz)")
    p.add_argument("--prompt-column", default="prompt")
    p.add_argument("--weak-column", default=None, help="default: the 2nd CSV column")
    p.add_argument("--strong-column", default=None, help="default: the 3rd CSV column")
    p.add_argument("--holdout", type=float, default=0.2, help="share kept for calibration")
    p.add_argument("--strong-share", type=float, default=None, help="target share of strong calls")
    p.add_argument("--target-cost", type=float, default=None, help="target mean USD per request")
    p.add_argument(
        "--prices",
        type=float,
        nargs=4,
        metavar=("WEAK_IN", "WEAK_OUT", "STRONG_IN", "STRONG_OUT"),
        help="USD per million tokens, for --target-cost",
    )
    p.add_argument("--output-tokens", type=int, default=300, help="assumed answer length (cost)")
    p.add_argument("--objective", choices=["gain", "weak_wrong", "strong_only"], default="gain")
    p.add_argument("--l2", type=float, default=3.0, help="L2 regularisation strength")
    p.add_argument(
        "--lexical-dim",
        type=int,
        default=0,
        help="hashed word n-gram TF-IDF buckets (0 = off; 65536 helps on exam-like data)",
    )
    p.add_argument(
        "--neighbours", type=int, default=0, help="blend in a kNN prior over K neighbours (0 = off)"
    )
    p.add_argument(
        "--group-column",
        default=None,
        help="column with each request's group (task/subject/template): blend in a group prior",
    )
    p.add_argument("--embedder", choices=["minilm", "hashing"], default="minilm")
    p.add_argument("--tokenizer-model", default=None, help="model whose tokenizer counts tokens")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _bar(stream: TextIO) -> Callable[[str, float], None]:
    def show(stage: str, frac: float) -> None:
        n = int(frac * 30)
        stream.write(f"\r{stage:>9} [{'#' * n}{'.' * (30 - n)}] {frac * 100:5.1f}%")
        if frac >= 1.0:
            stream.write("\n")
        stream.flush()

    return show


def train_main(
    argv: Sequence[str] | None = None,
    *,
    progress: Callable[[str, float], None] | None = None,
    embedder: Any = None,
    stdout: TextIO | None = None,
) -> int:
    """Entry point of ``tokenlean router train``; returns the exit status.

    ``progress(stage, fraction)`` replaces the default text progress bar; ``embedder`` overrides
    ``--embedder`` (any callable texts -> array or LangChain ``Embeddings``).
    """
    out = stdout or sys.stdout
    args = build_parser().parse_args(argv)
    if (args.strong_share is None) == (args.target_cost is None):
        args.strong_share = 0.5 if args.target_cost is None else None
    if args.target_cost is not None and args.prices is None:
        out.write("error: --target-cost needs --prices\n")
        return 2
    if not 0.0 < args.holdout < 1.0:
        out.write("error: --holdout must be in (0, 1)\n")
        return 2
    try:
        texts, weak, strong, wcol, scol, groups = load_labelled(
            args.data, args.prompt_column, args.weak_column, args.strong_column, args.group_column
        )
    except (OSError, RouterConfigError, json.JSONDecodeError) as exc:
        out.write(f"error: {exc}\n")
        return 2
    if embedder is None:
        from .embedders import HashingEmbedder, MiniLMEmbedder

        embedder = MiniLMEmbedder() if args.embedder == "minilm" else HashingEmbedder()
    bar = progress or (None if args.quiet else _bar(out))
    rng = np.random.default_rng(args.seed)
    perm = rng.permutation(len(texts))
    n_hold = max(1, round(args.holdout * len(texts)))
    hold, train = np.sort(perm[:n_hold]), np.sort(perm[n_hold:])
    w = np.asarray(weak)
    s = np.asarray(strong)
    try:
        gate = train_gate(
            [texts[i] for i in train],
            w[train],
            s[train],
            embedder=embedder,
            objective=args.objective,
            l2=args.l2,
            lexical_dim=args.lexical_dim,
            neighbours=args.neighbours,
            groups=None if groups is None else [groups[i] for i in train],
            tokenizer_model=args.tokenizer_model,
            progress=bar,
        )
    except RouterConfigError as exc:
        out.write(f"error: {exc}\n")
        return 2
    from .embedders import as_embedding_function

    hold_texts = [texts[i] for i in hold]
    scores = gate.score(
        hold_texts,
        as_embedding_function(embedder)(hold_texts),
        groups=None if groups is None else [groups[i] for i in hold],
    )
    if args.strong_share is not None:
        threshold = threshold_for_share(scores, args.strong_share)
    else:
        from tokenlean_core import Price, Usage, count_tokens

        wp = Price(args.prices[0], args.prices[1])
        sp = Price(args.prices[2], args.prices[3])
        toks = [int(count_tokens(t, args.tokenizer_model)) for t in hold_texts]
        wc = [wp.cost(Usage(t, args.output_tokens)) for t in toks]
        sc = [sp.cost(Usage(t, args.output_tokens)) for t in toks]
        try:
            threshold = threshold_for_cost(scores, wc, sc, args.target_cost)
        except RouterConfigError as exc:
            out.write(f"error: {exc}\n")
            return 2
    share = float(np.mean(scores >= threshold))
    curve = routellm_curve(scores, w[hold], s[hold], num_results=min(100, len(hold)))
    path = gate.save(args.output)
    calib = {
        "gate": path.name,
        "threshold": threshold if np.isfinite(threshold) else "inf",
        "strong_share_heldout": share,
        "weak_column": wcol,
        "strong_column": scol,
        "heldout": {"n": len(hold), "apgr": curve.apgr, "s95_pct": curve.s95()},
    }
    cpath = path.with_suffix(".calibration.json")
    cpath.write_text(json.dumps(calib, indent=2) + "\n", encoding="utf-8")
    out.write(
        f"trained on {len(train)} rows, calibrated on {len(hold)}: threshold {threshold:.4f} "
        f"sends {share * 100:.1f}% to {scol}; held-out APGR {curve.apgr:.3f}, "
        f"S95 {curve.s95():.1f}%\nwrote {path} and {cpath}\n"
    )
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(train_main())
