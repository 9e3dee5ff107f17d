"""RouteLLM's evaluation metrics, computed exactly as ``routellm/evals`` does.

A router gives every prompt a score (RouteLLM's "strong win rate"). RouteLLM sweeps thresholds at
the quantiles of the scores (``pd.qcut(scores, num_results, retbins=True)``), routes a prompt to the
strong model when ``score >= threshold`` (``>`` for the last, maximal threshold, so that point is
all-weak), and records the share of strong calls and the accuracy at each threshold.

* **APGR** (average performance gap recovered): the area under that accuracy curve over the strong
  share (trapezoid rule, share in [0, 1]) minus the weak model's area, divided by the strong
  model's area minus the weak model's (``apgr_metric`` in ``routellm/evals/evaluate.py``).
* **S95**: the share of strong calls at which the curve reaches 95% of the strong model's accuracy,
  read by linear interpolation exactly like RouteLLM's ``pct_call_metric``
  (``np.interp(target, accuracy, strong_percentage)``).

The oracle router scores ``strong_correct - weak_correct``; the random router's expected curve is
the straight line from the weak to the strong accuracy (APGR 0.5).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "CurvePoint",
    "RouterCurve",
    "apgr",
    "oracle_scores",
    "random_curve",
    "routellm_curve",
    "strong_share_at",
]


@dataclass(frozen=True, slots=True)
class CurvePoint:
    """One point of a cost-quality curve: threshold, strong share (%) and accuracy (%)."""

    threshold: float
    strong_pct: float
    accuracy: float


@dataclass(frozen=True, slots=True)
class RouterCurve:
    """A router's cost-quality curve with RouteLLM's summary metrics."""

    points: tuple[CurvePoint, ...]
    weak_accuracy: float
    strong_accuracy: float

    @property
    def strong_pct(self) -> NDArray[np.float64]:
        return np.array([p.strong_pct for p in self.points], dtype=np.float64)

    @property
    def accuracy(self) -> NDArray[np.float64]:
        return np.array([p.accuracy for p in self.points], dtype=np.float64)

    @property
    def apgr(self) -> float:
        """Average performance gap recovered (RouteLLM's ``apgr_metric``)."""
        return apgr(self.strong_pct, self.accuracy, self.weak_accuracy, self.strong_accuracy)

    @property
    def auc(self) -> float:
        pct, acc = _sorted(self.strong_pct, self.accuracy)
        return float(np.trapezoid(acc, pct / 100))

    def s95(self) -> float:
        """Strong-call share (%) needed to reach 95% of the strong model's accuracy."""
        return strong_share_at(self.strong_pct, self.accuracy, 0.95 * self.strong_accuracy)

    def pct_calls(self, gap_fraction: float) -> float:
        """RouteLLM's ``pct_call_metric``: strong share (%) reaching ``weak + f*(strong-weak)``."""
        target = self.weak_accuracy + gap_fraction * (self.strong_accuracy - self.weak_accuracy)
        return strong_share_at(self.strong_pct, self.accuracy, target)

    def as_dict(self) -> dict[str, object]:
        return {
            "s95_pct": round(self.s95(), 2),
            "apgr": round(self.apgr, 4),
            "auc": round(self.auc, 4),
            "pct_calls_50": round(self.pct_calls(0.5), 2),
            "pct_calls_80": round(self.pct_calls(0.8), 2),
            "curve": [
                {
                    "threshold": round(p.threshold, 6),
                    "strong_pct": round(p.strong_pct, 3),
                    "accuracy": round(p.accuracy, 3),
                }
                for p in self.points
            ],
        }


def _sorted(
    pct: NDArray[np.float64], acc: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    # RouteLLM sorts with pandas' default quicksort, which is not stable; ties in strong_percentage
    # only arise for duplicate thresholds, which produce identical points, so the order is moot.
    order = np.argsort(pct, kind="stable")
    return pct[order], acc[order]


def apgr(
    strong_pct: ArrayLike, accuracy: ArrayLike, weak_accuracy: float, strong_accuracy: float
) -> float:
    """APGR of a curve given as strong shares (%) and accuracies (%)."""
    pct, acc = _sorted(np.asarray(strong_pct, np.float64), np.asarray(accuracy, np.float64))
    x = pct / 100
    auc = float(np.trapezoid(acc, x))
    weak_auc = float(np.trapezoid(np.full(len(x), weak_accuracy), x))
    strong_auc = float(np.trapezoid(np.full(len(x), strong_accuracy), x))
    if strong_auc == weak_auc:
        raise ValueError("APGR is undefined when the strong and weak accuracies are equal")
    return (auc - weak_auc) / (strong_auc - weak_auc)


def strong_share_at(strong_pct: ArrayLike, accuracy: ArrayLike, target: float) -> float:
    """Strong share (%) where the curve reaches ``target`` accuracy (RouteLLM's ``np.interp``)."""
    pct, acc = _sorted(np.asarray(strong_pct, np.float64), np.asarray(accuracy, np.float64))
    return float(np.interp(target, acc, pct))


def _qcut_edges(scores: NDArray[np.float64], num_results: int) -> NDArray[np.float64]:
    # pd.qcut(x, q, retbins=True) returns the bin edges np.quantile(x, linspace(0, 1, q + 1))
    # (linear interpolation); duplicated edges raise in pandas unless scores are tie-broken.
    return np.quantile(scores, np.linspace(0.0, 1.0, num_results + 1))


def routellm_curve(
    scores: ArrayLike,
    weak_correct: ArrayLike,
    strong_correct: ArrayLike,
    num_results: int = 10,
) -> RouterCurve:
    """Sweep thresholds like ``routellm/evals/benchmarks.py`` and return the curve.

    ``weak_correct``/``strong_correct`` are booleans (or scores) per prompt; accuracies are in %.
    """
    s = np.asarray(scores, dtype=np.float64)
    weak = np.asarray(weak_correct, dtype=np.float64)
    strong = np.asarray(strong_correct, dtype=np.float64)
    if not (s.shape == weak.shape == strong.shape) or s.ndim != 1 or len(s) == 0:
        raise ValueError("scores, weak_correct and strong_correct must be equal-length 1-D arrays")
    if num_results < 1:
        raise ValueError("num_results must be >= 1")
    edges = _qcut_edges(s, num_results)
    points = []
    for i, threshold in enumerate(edges):
        selection = s >= threshold if i != len(edges) - 1 else s > threshold
        results = np.where(selection, strong, weak)
        points.append(
            CurvePoint(
                float(threshold),
                float(selection.sum() / len(s) * 100),
                float(results.sum() / len(results) * 100),
            )
        )
    return RouterCurve(tuple(points), float(weak.mean() * 100), float(strong.mean() * 100))


def oracle_scores(
    weak_correct: ArrayLike, strong_correct: ArrayLike, *, tie_break_seed: int | None = 0
) -> NDArray[np.float64]:
    """The oracle's scores: ``strong_correct - weak_correct`` (1 where only the strong is right).

    The raw scores take three values, so quantile thresholds would collapse onto them; a uniform
    jitter below 1e-6 (seeded, ``tie_break_seed=None`` to skip it) orders ties at random, so the
    curve visits every strong share like a router with continuous scores.
    """
    d = np.asarray(strong_correct, dtype=np.float64) - np.asarray(weak_correct, dtype=np.float64)
    if tie_break_seed is None:
        return d
    return d + np.random.default_rng(tie_break_seed).uniform(0.0, 1e-6, len(d))


def random_curve(
    weak_correct: Sequence[bool] | ArrayLike,
    strong_correct: Sequence[bool] | ArrayLike,
    num_results: int = 10,
) -> RouterCurve:
    """The random router's expected curve: accuracy linear in the strong share."""
    w = float(np.asarray(weak_correct, dtype=np.float64).mean() * 100)
    st = float(np.asarray(strong_correct, dtype=np.float64).mean() * 100)
    pts = tuple(
        CurvePoint(1 - f, f * 100, w + (st - w) * f) for f in np.linspace(0, 1, num_results + 1)
    )
    return RouterCurve(pts, w, st)
