"""``tokenlean cache calibrate``: pick thresholds that reach a target precision on a labelled
sample of your own query pairs.

Input: a CSV (header row) or JSONL file of pairs. Column names are matched case-insensitively:
the two questions as ``a``/``b`` (or ``question1``/``question2``, ``query``/``cached``) and the
label as ``duplicate`` (or ``label``, ``is_duplicate``, ``same``): 1/true when the cached answer of
one would be right for the other.

Output: the loosest cosine-distance threshold (``max_distance``) that reaches the target precision
without the guard, and the guard's ``min_score`` that reaches it with the guard at a given
``max_distance``, with the hit rates they give (printed, and with ``--json`` written to a file).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO, TypeVar

import numpy as np

from tokenlean_core import TokenleanError

from .embeddings import as_embedder
from .guard import Guard

__all__ = ["calibrate", "calibrate_main", "read_pairs"]

_A = ("a", "question1", "query", "q1", "text1")
_B = ("b", "question2", "cached", "q2", "text2")
_LABEL = ("duplicate", "label", "is_duplicate", "same")
T = TypeVar("T")


def _pick(row: dict[str, Any], names: Sequence[str], path: Path) -> Any:
    lower = {str(k).lower(): v for k, v in row.items()}
    for n in names:
        if n in lower:
            return lower[n]
    raise TokenleanError(f"{path}: no column named any of {list(names)} (found {list(row)})")


def _label(value: Any) -> int:
    if isinstance(value, bool):
        return int(value)
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "y", "1.0"):
        return 1
    if text in ("0", "false", "no", "n", "0.0"):
        return 0
    raise TokenleanError(f"label {value!r} is not 0/1 or true/false")


def read_pairs(path: Path) -> list[tuple[str, str, int]]:
    """``(a, b, label)`` rows of a CSV or JSONL file (see the module docs for column names)."""
    if not path.exists():
        raise TokenleanError(f"{path} does not exist")
    rows: list[dict[str, Any]]
    with path.open(encoding="utf-8") as fh:
        if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
            rows = [json.loads(line) for line in fh if line.strip()]
        else:
            rows = list(csv.DictReader(fh))
    if not rows:
        raise TokenleanError(f"{path} holds no pairs")
    return [
        (str(_pick(r, _A, path)), str(_pick(r, _B, path)), _label(_pick(r, _LABEL, path)))
        for r in rows
    ]


def _progress(items: Sequence[T], label: str, out: TextIO, enabled: bool) -> Iterator[T]:
    n = len(items)
    width = 30
    for i, item in enumerate(items, 1):
        yield item
        if enabled and (i == n or i % max(1, n // 50) == 0):
            done = int(width * i / n)
            out.write(f"\r{label} [{'#' * done}{'.' * (width - done)}] {i}/{n}")
            out.flush()
    if enabled:
        out.write("\n")


def _best(scores: np.ndarray, labels: np.ndarray, target: float) -> tuple[float, float, float]:
    """(threshold, precision, recall) of the loosest cut on ``scores`` reaching ``target``."""
    order = np.argsort(-scores, kind="stable")
    tp = np.cumsum(labels[order])
    prec = tp / np.arange(1, len(order) + 1)
    ok = np.nonzero(prec >= target)[0]
    pos = max(1, int(labels.sum()))
    if len(ok) == 0:
        return float("inf"), float("nan"), 0.0
    k = int(ok.max())
    return float(scores[order][k]), float(prec[k]), float(tp[k] / pos)


def calibrate(
    pairs: Sequence[tuple[str, str, int]],
    *,
    embedder: Any = None,
    target_precision: float = 0.95,
    max_distance: float = 0.5,
    guard: Guard | None = None,
    progress: TextIO | None = None,
    batch_size: int = 64,
) -> dict[str, Any]:
    """Thresholds reaching ``target_precision`` on labelled ``pairs`` (see the module docs)."""
    if not 0.0 < target_precision <= 1.0:
        raise TokenleanError(f"target precision must be in (0, 1], got {target_precision}")
    emb = as_embedder(embedder)
    texts = list(dict.fromkeys([p[0] for p in pairs] + [p[1] for p in pairs]))
    batches = [texts[i : i + batch_size] for i in range(0, len(texts), batch_size)]
    vecs: dict[str, np.ndarray] = {}
    for batch in _progress(batches, "embedding", progress or sys.stderr, progress is not None):
        for t, v in zip(batch, emb(batch), strict=True):
            vecs[t] = v
    labels = np.asarray([p[2] for p in pairs], dtype=np.int64)
    cos = np.asarray([float(np.dot(vecs[a], vecs[b])) for a, b, _ in pairs])
    dist_t, dist_p, dist_r = _best(cos, labels, target_precision)
    result: dict[str, Any] = {
        "pairs": len(pairs),
        "positives": int(labels.sum()),
        "target_precision": target_precision,
        "without_guard": {
            "max_distance": max(0.0, 1.0 - dist_t) if np.isfinite(dist_t) else 0.0,
            "precision": dist_p,
            "hit_rate": dist_r,
        },
    }
    if guard is None:
        guard = Guard(verifier="default")
    guard = guard.for_embedder(emb.name, emb.dim)
    scores = []
    for a, b, _ in _progress(list(pairs), "guard", progress or sys.stderr, progress is not None):
        d = 1.0 - float(np.dot(vecs[a], vecs[b]))
        if d > max_distance:
            scores.append(-1.0)
            continue
        dec = Guard(lexical=guard.lexical, verifier=None).check(a, b)
        if not dec.accepted:
            scores.append(-1.0)
        elif guard.verifier is not None:
            scores.append(float(guard.score(a, b, vecs[a], vecs[b], d) or 0.0))
        else:
            scores.append(1.0 - d)  # lexical only: rank by similarity
    s = np.asarray(scores)
    g_t, g_p, g_r = _best(s, labels, target_precision)
    result["with_guard"] = {
        "max_distance": max_distance,
        "learned_verifier": guard.verifier is not None,
        ("min_score" if guard.verifier is not None else "min_cosine"): g_t
        if np.isfinite(g_t)
        else None,
        "precision": g_p,
        "hit_rate": g_r,
    }
    return result


def calibrate_main(argv: Iterable[str] | None = None) -> int:
    """Entry point of ``tokenlean cache calibrate``; returns the exit code."""
    ap = argparse.ArgumentParser(
        prog="tokenlean cache calibrate",
        description="Pick cache thresholds reaching a target precision on labelled query pairs.",
    )
    ap.add_argument("pairs", type=Path, help="CSV or JSONL of pairs: a, b, duplicate (0/1)")
    ap.add_argument("--target-precision", type=float, default=0.95)
    ap.add_argument("--max-distance", type=float, default=0.5, help="candidate cut with the guard")
    ap.add_argument("--no-guard", action="store_true", help="calibrate the lexical check only")
    ap.add_argument("--json", type=Path, help="also write the result as JSON here")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    args = ap.parse_args(list(argv) if argv is not None else None)
    try:
        pairs = read_pairs(args.pairs)
        guard = Guard(verifier=None) if args.no_guard else Guard(verifier="default")
        result = calibrate(
            pairs,
            target_precision=args.target_precision,
            max_distance=args.max_distance,
            guard=guard,
            progress=None if args.quiet else sys.stderr,
        )
    except TokenleanError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0
