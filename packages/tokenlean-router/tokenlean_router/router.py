"""The framework-agnostic router: tiers, the gate decision, calibration and ledger records."""

from __future__ import annotations

import asyncio
import bisect
import itertools
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from tokenlean_core import Ledger, Price, Usage, get_ledger
from tokenlean_core.prices import PriceLike

from .calibrate import threshold_for_cost, thresholds_for_shares
from .embedders import as_embedding_function
from .errors import RouterConfigError
from .gate import GateModel

__all__ = ["Decision", "Router", "Tier"]

logger = logging.getLogger("tokenlean.router")


@dataclass(frozen=True)
class Tier:
    """One model tier: a name and its price (a core ``Price``, USD per million tokens, or any
    object with ``cost(usage)``). Tiers are listed from the smallest (cheapest) to the largest."""

    name: str
    price: PriceLike | None = None

    def __post_init__(self) -> None:
        if not self.name:
            raise RouterConfigError("a tier needs a name")

    @classmethod
    def per_million(cls, name: str, input_usd: float, output_usd: float) -> Tier:
        """A tier priced in USD per million input and output tokens."""
        return cls(name, Price(input_usd, output_usd))

    def cost(self, usage: Usage) -> float | None:
        return None if self.price is None else float(self.price.cost(usage))


@dataclass(frozen=True)
class Decision:
    """Where a request went and why: tier index/name, the gate's score and the thresholds."""

    tier_index: int
    tier: str
    score: float | None
    thresholds: tuple[float, ...]
    strategy: str = "gate"
    escalated_from: str | None = None
    confidence: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def threshold(self) -> float | None:
        """The threshold of the boundary this decision was closest to (two tiers: the threshold)."""
        if not self.thresholds:
            return None
        if len(self.thresholds) == 1:
            return self.thresholds[0]
        i = min(self.tier_index, len(self.thresholds) - 1)
        return self.thresholds[i]

    def as_metadata(self) -> dict[str, Any]:
        """JSON-safe summary for run metadata and ledger details."""
        out: dict[str, Any] = {
            "tier": self.tier,
            "tier_index": self.tier_index,
            "score": None if self.score is None else round(float(self.score), 6),
            "threshold": _json_float(self.threshold),
            "strategy": self.strategy,
        }
        if self.escalated_from is not None:
            out["escalated_from"] = self.escalated_from
        if self.confidence is not None:
            out["confidence"] = round(float(self.confidence), 6)
        out.update(self.detail)
        return out

    def with_(self, **changes: Any) -> Decision:
        data: dict[str, Any] = {
            "tier_index": self.tier_index,
            "tier": self.tier,
            "score": self.score,
            "thresholds": self.thresholds,
            "strategy": self.strategy,
            "escalated_from": self.escalated_from,
            "confidence": self.confidence,
            "detail": dict(self.detail),
        }
        data.update(changes)
        return Decision(**data)


def _json_float(v: float | None) -> float | str | None:
    if v is None:
        return None
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return round(float(v), 6)


class Router:
    """Routes each request to a tier with a gate (learned score vs calibrated thresholds).

    Args:
        tiers: from the smallest to the largest model (at least two).
        gate: a fitted :class:`GateModel`, or a path to one saved with ``GateModel.save``.
        embedder: ``Callable[[list[str]], np.ndarray]`` or a LangChain ``Embeddings``; the kind the
            gate was trained with.
        thresholds: ascending, one per tier boundary (``len(tiers) - 1``); a request goes to tier
            ``i`` where ``i`` is the number of thresholds ``<= score``. Use :meth:`calibrate` to set
            them from held-out requests instead.
        ledger: where savings are recorded (default: the process-wide ledger).

    Decisions are deterministic: same gate, thresholds, embedder and text -> same tier.
    """

    def __init__(
        self,
        tiers: Sequence[Tier | str],
        gate: GateModel | str | Path,
        embedder: Any,
        thresholds: Sequence[float] | float | None = None,
        *,
        ledger: Ledger | None = None,
        component: str = "router",
    ) -> None:
        self.tiers = tuple(t if isinstance(t, Tier) else Tier(t) for t in tiers)
        if len(self.tiers) < 2:
            raise RouterConfigError("a router needs at least two tiers (smallest first)")
        if len({t.name for t in self.tiers}) != len(self.tiers):
            raise RouterConfigError("tier names must be unique")
        self.gate = gate if isinstance(gate, GateModel) else GateModel.load(gate)
        self._embed = as_embedding_function(embedder)
        ename = getattr(embedder, "name", None)
        if self.gate.embedder_name and ename and ename != self.gate.embedder_name:
            raise RouterConfigError(
                f"the gate was trained with embedder {self.gate.embedder_name!r}, "
                f"got {ename!r}; pass the same embedder"
            )
        self._ledger = ledger
        self.component = component
        self.thresholds: tuple[float, ...] = ()
        if thresholds is not None:
            self.set_thresholds(thresholds)
        else:
            self.set_thresholds([float("inf")] * (len(self.tiers) - 1))

    @property
    def ledger(self) -> Ledger:
        return self._ledger if self._ledger is not None else get_ledger()

    def set_thresholds(self, thresholds: Sequence[float] | float) -> None:
        ts = (
            (float(thresholds),)
            if isinstance(thresholds, (int, float))
            else tuple(float(t) for t in thresholds)
        )
        if len(ts) != len(self.tiers) - 1:
            raise RouterConfigError(
                f"{len(self.tiers)} tiers need {len(self.tiers) - 1} thresholds, got {len(ts)}"
            )
        if any(math.isnan(t) for t in ts) or any(b < a for a, b in itertools.pairwise(ts)):
            raise RouterConfigError("thresholds must be ascending numbers")
        self.thresholds = ts

    # -- scoring -----------------------------------------------------------------------------------
    def scores(
        self, texts: Sequence[str], groups: Sequence[str | None] | None = None
    ) -> NDArray[np.float64]:
        """The gate's scores for ``texts`` (higher = needs a larger model); ``groups`` are the
        requests' group labels for a gate trained with a group prior (None = unknown)."""
        texts = _check_texts(texts)
        if not texts:
            return np.zeros(0)
        return self.gate.score(texts, self._embed(list(texts)), groups=groups)

    def tier_for_score(self, score: float) -> int:
        return bisect.bisect_right(self.thresholds, score)

    def decide(self, text: str, group: str | None = None) -> Decision:
        """Route one request (its text: the prompt, or the conversation rendered as text;
        ``group``: its task/subject label when the gate was trained with groups)."""
        return self.decide_many([text], None if group is None else [group])[0]

    def decide_many(
        self, texts: Sequence[str], groups: Sequence[str | None] | None = None
    ) -> list[Decision]:
        scores = self.scores(texts, groups)
        return [self._decision(float(s)) for s in scores]

    async def adecide(self, text: str, group: str | None = None) -> Decision:
        """Async twin of :meth:`decide`: the (CPU-bound) embedding runs in a worker thread."""
        return (await self.adecide_many([text], None if group is None else [group]))[0]

    async def adecide_many(
        self, texts: Sequence[str], groups: Sequence[str | None] | None = None
    ) -> list[Decision]:
        return await asyncio.to_thread(self.decide_many, list(texts), groups)

    def _decision(self, score: float) -> Decision:
        i = self.tier_for_score(score)
        return Decision(i, self.tiers[i].name, score, self.thresholds)

    # -- calibration -------------------------------------------------------------------------------
    def calibrate(
        self,
        held_out_texts: Sequence[str],
        strong_share: float | Sequence[float] | None = None,
        *,
        target_cost: float | None = None,
        tokens_in: ArrayLike | int | None = None,
        tokens_out: ArrayLike | int = 0,
        groups: Sequence[str | None] | None = None,
    ) -> tuple[float, ...]:
        """Set the thresholds from held-out requests and return them.

        Either ``strong_share`` (two tiers: the share of requests for the large tier; more tiers: a
        sequence, share at tier ``i + 1`` or above, non-increasing) or ``target_cost`` (mean USD per
        request, two tiers, priced via the tiers' prices from ``tokens_in``/``tokens_out`` per
        request; ``tokens_in`` defaults to each text's token count). ``groups``: the held-out
        requests' group labels, for a gate with a group prior.
        """
        scores = self.scores(held_out_texts, groups)
        return self.calibrate_scores(
            scores,
            strong_share,
            target_cost=target_cost,
            tokens_in=tokens_in,
            tokens_out=tokens_out,
            texts=held_out_texts,
        )

    def calibrate_scores(
        self,
        scores: ArrayLike,
        strong_share: float | Sequence[float] | None = None,
        *,
        target_cost: float | None = None,
        tokens_in: ArrayLike | int | None = None,
        tokens_out: ArrayLike | int = 0,
        texts: Sequence[str] | None = None,
    ) -> tuple[float, ...]:
        """:meth:`calibrate` from precomputed held-out scores."""
        s = np.asarray(scores, dtype=np.float64)
        if (strong_share is None) == (target_cost is None):
            raise RouterConfigError("give exactly one of strong_share and target_cost")
        if strong_share is not None:
            shares = [strong_share] if isinstance(strong_share, (int, float)) else strong_share
            self.set_thresholds(thresholds_for_shares(s, [float(x) for x in shares]))
            return self.thresholds
        assert target_cost is not None
        if len(self.tiers) != 2:
            raise RouterConfigError("cost calibration supports two tiers; use shares for more")
        if tokens_in is None:
            if texts is None:
                raise RouterConfigError("cost calibration needs tokens_in or the texts")
            from tokenlean_core import count_tokens

            tokens_in = [int(count_tokens(t, self.gate.tokenizer_model)) for t in texts]
        n = len(s)
        tin = np.broadcast_to(np.asarray(tokens_in, np.int64), (n,))
        tout = np.broadcast_to(np.asarray(tokens_out, np.int64), (n,))
        costs = []
        for tier in self.tiers:
            if tier.price is None:
                raise RouterConfigError(f"cost calibration needs a price on tier {tier.name!r}")
            costs.append(
                np.array(
                    [
                        tier.cost(Usage(int(a), int(b))) or 0.0
                        for a, b in zip(tin, tout, strict=True)
                    ]
                )
            )
        self.set_thresholds([threshold_for_cost(s, costs[0], costs[1], target_cost)])
        return self.thresholds

    # -- ledger ------------------------------------------------------------------------------------
    def record(
        self,
        decision: Decision,
        usage: Usage,
        *,
        latency_s: float | None = None,
        run_id: str | None = None,
        extra_cost_usd: float = 0.0,
    ) -> float | None:
        """Record the saving of the routed call against always calling the largest tier.

        ``usage`` is the routed call's usage; ``extra_cost_usd`` adds what else the route spent (a
        cascade's first, discarded small-model call). Returns the USD saved (None without prices).
        """
        return record_route(
            self.ledger,
            self.tiers,
            decision,
            usage,
            component=self.component,
            latency_s=latency_s,
            run_id=run_id,
            extra_cost_usd=extra_cost_usd,
        )


def record_route(
    ledger: Ledger,
    tiers: Sequence[Tier],
    decision: Decision,
    usage: Usage,
    *,
    component: str = "router",
    latency_s: float | None = None,
    run_id: str | None = None,
    extra_cost_usd: float = 0.0,
) -> float | None:
    """Record a routed call's saving vs the largest tier in ``ledger`` (see :meth:`Router.record`).

    The saving is priced (USD), so the record carries it as ``usd`` with zero saved tokens; the
    routed call's tokens go in ``detail`` with the decision.
    """
    chosen = tiers[decision.tier_index]
    largest = tiers[-1]
    routed_cost = chosen.cost(usage)
    largest_cost = largest.cost(usage)
    saved: float | None = None
    if routed_cost is not None and largest_cost is not None:
        saved = largest_cost - routed_cost - extra_cost_usd
    detail = {
        **decision.as_metadata(),
        "largest_tier": largest.name,
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
    }
    if routed_cost is not None:
        detail["routed_usd"] = routed_cost + extra_cost_usd
    if largest_cost is not None:
        detail["largest_usd"] = largest_cost
    ledger.record_saving(
        component,
        0,
        0,
        usd=saved,
        model=chosen.name,
        latency_s=latency_s,
        run_id=run_id,
        detail=detail,
    )
    return saved


def _check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise RouterConfigError("pass a list of texts (decide() takes one text)")
    out = list(texts)
    for t in out:
        if not isinstance(t, str):
            raise RouterConfigError(f"request texts must be str, got {type(t).__name__}")
    return out


Embed = Callable[[list[str]], NDArray[np.float32]]
