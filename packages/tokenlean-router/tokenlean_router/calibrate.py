"""Threshold calibration on held-out scores: to a target share of strong calls, or a target cost."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

from .errors import RouterConfigError

__all__ = ["threshold_for_cost", "threshold_for_share", "thresholds_for_shares"]


def threshold_for_share(scores: ArrayLike, strong_share: float) -> float:
    """The threshold sending ``strong_share`` of these (held-out) requests to the strong tier.

    A request goes strong when ``score >= threshold``. ``strong_share`` 0 gives ``+inf`` (never
    strong) and 1 gives the minimum score (always strong). Ties at the threshold all go strong, so
    the realised share can exceed the target by the size of the tie.
    """
    s = np.sort(np.asarray(scores, dtype=np.float64))
    if s.ndim != 1 or len(s) == 0:
        raise RouterConfigError("calibration needs a non-empty 1-D array of held-out scores")
    if not 0.0 <= strong_share <= 1.0 or strong_share != strong_share:
        raise RouterConfigError(f"strong_share must be in [0, 1], got {strong_share!r}")
    k = round(strong_share * len(s))
    if k <= 0:
        return float("inf")
    if k >= len(s):
        return float(s[0])
    # k requests strong: threshold strictly above the (n-k)-th score and at most the next one.
    lo, hi = float(s[len(s) - k - 1]), float(s[len(s) - k])
    return hi if lo == hi else (lo + hi) / 2


def thresholds_for_shares(scores: ArrayLike, shares: Sequence[float]) -> list[float]:
    """Thresholds for a multi-tier router: ``shares[i]`` = share of requests at tier ``i + 1`` or
    above (non-increasing). Returns ascending thresholds, one per tier boundary."""
    if any(b > a for a, b in itertools.pairwise(shares)):
        raise RouterConfigError("tier shares must be non-increasing (share at tier i+1 or above)")
    return [threshold_for_share(scores, f) for f in shares]


def threshold_for_cost(
    scores: ArrayLike,
    weak_cost: ArrayLike | float,
    strong_cost: ArrayLike | float,
    target_cost: float,
) -> float:
    """The lowest threshold whose mean cost per request on these held-out requests is at most
    ``target_cost`` (same unit as the per-request costs; USD for tier prices).

    ``weak_cost``/``strong_cost`` are per-request costs (arrays) or one cost each.
    """
    s = np.asarray(scores, dtype=np.float64)
    n = len(s)
    if s.ndim != 1 or n == 0:
        raise RouterConfigError("calibration needs a non-empty 1-D array of held-out scores")
    wc = np.broadcast_to(np.asarray(weak_cost, np.float64), (n,))
    sc = np.broadcast_to(np.asarray(strong_cost, np.float64), (n,))
    if float(wc.mean()) > target_cost:
        raise RouterConfigError(
            f"target cost {target_cost:g} is below the all-weak cost {float(wc.mean()):g}"
        )
    order = np.argsort(-s, kind="stable")
    # cost after sending the top-k scores strong, for k = 0..n
    extra = np.concatenate([[0.0], np.cumsum((sc - wc)[order])])
    total = (float(wc.sum()) + extra) / n
    ok = np.nonzero(total <= target_cost + 1e-15)[0]
    k = int(ok.max())
    # ties: only thresholds that separate distinct scores are realisable
    sorted_desc = s[order]
    while 0 < k < n and sorted_desc[k - 1] == sorted_desc[k]:
        k -= 1
    return (
        threshold_for_share(s, k / n) if 0 < k < n else (float("inf") if k == 0 else float(s.min()))
    )
