"""The compression engine, framework-agnostic: documents and a question in, compressed texts out.

``method="longllmlingua"`` (default) is LongLLMLingua's question-aware coarse-to-fine compression:

1. **coarse**: rank the documents by the question (with the ``smollm2`` scorer: MiniLM
   sentence-embedding similarity by default, or LongLLMLingua's log-likelihood of the question
   given each document after its restrictive prompt with ``scorer_options={"ranker": "lm"}``)
   and, when the budget is tight, drop the lowest-ranked documents (the kept ones hold at most
   ``coarse_keep`` x the budget), so the fine level's model only reads the kept documents;
2. **dynamic ratios**: every kept document gets its own keep ratio, higher for higher-ranked
   documents (linear in rank, spread ``dynamic_ratio``);
3. **fine**: inside each document, drop the least important unprotected units (word + trailing
   whitespace) until the document fits its share; protected spans (code, JSON, URLs, numbers,
   ``force_tokens``) are always kept verbatim;
4. **reorder** (optional): output the documents by relevance, most relevant first.

``method="llmlingua2"`` is question-agnostic: per-unit keep scores from the scorer without the
question, the same ratio for every document, no ranking, no reordering, no dropping.

Budgets are counted with ``tokenlean_core.count_tokens(..., count_model)`` on the texts that are
returned, so a ``rate`` or ``target_tokens`` holds for what the LLM will actually be sent (protected
spans permitting). Every call records the tokens removed in the ledger as a saving of component
``"compress"`` with the time spent (``latency_s`` negative: compression costs time).

If scoring fails, :meth:`Compressor.compress` warns (:class:`CompressWarning`), records a
``("compress", "failure")`` event and returns the documents unchanged: compression is an
optimisation and never breaks the chain. Invalid configuration raises at construction.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

import tokenlean_core as tl
from tokenlean_core import TokenleanError

from .scoring import WordScorer, resolve_scorer
from .text import ProtectConfig, Unit, split_units

__all__ = [
    "CompressConfig",
    "CompressWarning",
    "CompressedItem",
    "CompressionResult",
    "Compressor",
]

logger = logging.getLogger("tokenlean.compress")

COMPONENT = "compress"
Method = Literal["longllmlingua", "llmlingua2"]
Backend = Literal["tokenlean", "llmlingua"]


class CompressWarning(RuntimeWarning):
    """Compression failed and the documents were passed through unchanged."""


@dataclass(frozen=True)
class CompressConfig:
    """How to compress. Validated at construction (:class:`tokenlean_core.TokenleanError`).

    Args:
        method: ``"longllmlingua"`` (question-aware coarse-to-fine) or ``"llmlingua2"``
            (question-agnostic token classification).
        scorer: ``"smollm2"`` (SmolLM2-135M on CPU), ``"distilled"`` (MiniLM token classifier),
            ``"lexical"`` (model-free IDF/BM25) or a
            :class:`~tokenlean_compress.scoring.WordScorer`.
        rate: fraction of the context's tokens to keep (0.5 = 2x compression). Used when
            ``target_tokens`` is None; defaults to 0.5 when both are None.
        target_tokens: token budget for the whole compressed context (all documents together).
        force_tokens: strings always kept verbatim wherever they occur.
        protect: which structure is kept verbatim (code, JSON, URLs, numbers, extra patterns).
        count_model: the tokenizer budgets are counted with (the model the context is sent to).
        price_model: model whose input price values the saved tokens (default ``count_model``).
        reorder: output documents by relevance to the question (LongLLMLingua's reorder).
        drop_documents: allow the coarse level to drop low-ranked documents.
        coarse_keep: kept documents hold at most this multiple of the budget before the fine
            level (LongLLMLingua's ``context_budget``: the coarse level does most of the work, so
            the top-ranked documents reach the LLM nearly intact; raise it to keep more documents,
            each compressed harder).
        dynamic_ratio: spread of the per-document keep ratios across ranks (0 = uniform).
        tolerance: the fine level aims at ``budget * (1 - tolerance)`` .. ``budget``.
        keep_names: keep runs of capitalised words ("Gustave Eiffel") whole or drop them whole.
        ledger: where savings are recorded (default: ``tokenlean_core.get_ledger()`` per call).
        backend: ``"tokenlean"`` (this engine) or ``"llmlingua"`` (microsoft llmlingua's
            PromptCompressor run per document, for comparison; needs the ``transformers`` extra).
        scorer_options: keyword arguments for a scorer given by name.
    """

    method: Method = "longllmlingua"
    scorer: str | WordScorer = "smollm2"
    rate: float | None = None
    target_tokens: int | None = None
    force_tokens: tuple[str, ...] = ()
    protect: ProtectConfig = field(default_factory=ProtectConfig)
    count_model: str = "gpt-4o-mini"
    price_model: str | None = None
    reorder: bool = True
    drop_documents: bool = True
    coarse_keep: float = 1.2
    dynamic_ratio: float = 0.3
    tolerance: float = 0.03
    keep_names: bool = True
    ledger: tl.Ledger | None = field(default=None, compare=False, repr=False)
    backend: Backend = "tokenlean"
    scorer_options: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if self.method not in ("longllmlingua", "llmlingua2"):
            raise TokenleanError(
                f"method must be 'longllmlingua' or 'llmlingua2', not {self.method!r}"
            )
        if self.backend not in ("tokenlean", "llmlingua"):
            raise TokenleanError(
                f"backend must be 'tokenlean' or 'llmlingua', not {self.backend!r}"
            )
        if isinstance(self.force_tokens, str) or not all(
            isinstance(t, str) for t in self.force_tokens
        ):
            raise TokenleanError(
                "force_tokens must be a sequence of strings, e.g. ('\\n', 'IMPORTANT')"
            )
        object.__setattr__(self, "force_tokens", tuple(self.force_tokens))
        if self.rate is not None and self.target_tokens is not None:
            raise TokenleanError("give either rate or target_tokens, not both")
        _check_target(self.rate, self.target_tokens)
        if not isinstance(self.scorer, str):
            resolve_scorer(self.scorer)  # checks the protocol
        elif self.scorer not in ("smollm2", "distilled", "lexical"):
            raise TokenleanError(
                f"unknown scorer {self.scorer!r}: 'smollm2', 'distilled', 'lexical' or a WordScorer"
            )
        if self.coarse_keep < 1.0:
            raise TokenleanError(f"coarse_keep must be >= 1, not {self.coarse_keep}")
        if not 0.0 <= self.dynamic_ratio < 1.0:
            raise TokenleanError(f"dynamic_ratio must be in [0, 1), not {self.dynamic_ratio}")
        if not 0.0 <= self.tolerance < 0.5:
            raise TokenleanError(f"tolerance must be in [0, 0.5), not {self.tolerance}")
        if not self.count_model:
            raise TokenleanError("count_model must name a model or tokenizer, e.g. 'gpt-4o-mini'")


def _check_target(rate: float | None, target_tokens: int | None) -> None:
    if rate is not None and not (isinstance(rate, (int, float)) and 0.0 < rate <= 1.0):
        raise TokenleanError(f"rate is the fraction of tokens kept, in (0, 1]; got {rate!r}")
    if target_tokens is not None and (not isinstance(target_tokens, int) or target_tokens < 0):
        raise TokenleanError(f"target_tokens must be a non-negative int; got {target_tokens!r}")


@dataclass
class CompressedItem:
    """One input document after compression. ``index`` is its position in the input."""

    index: int
    text: str
    original_tokens: int
    compressed_tokens: int
    rank: int
    relevance: float
    dropped: bool


@dataclass
class CompressionResult:
    """The compressed context. ``items`` are in output order (by relevance when reordered) and
    exclude dropped documents; ``dropped`` lists those. ``ratio`` is original / compressed tokens.
    ``error`` is set (and the texts are the originals) when compression failed. ``ranker`` names
    what ranked the documents at the coarse level (``"minilm"``, ``"bm25"``, ``"lm"``; None when
    nothing was ranked)."""

    items: list[CompressedItem]
    original_tokens: int
    compressed_tokens: int
    ratio: float
    seconds: float
    method: str
    scorer: str
    dropped: list[CompressedItem] = field(default_factory=list)
    error: str | None = None
    ranker: str | None = None

    @property
    def texts(self) -> list[str]:
        return [item.text for item in self.items]


@dataclass
class _Doc:
    index: int
    text: str
    units: list[Unit]
    costs: np.ndarray  # tokens per unit (count_model)
    tokens: int  # exact tokens of the whole text
    protected_cost: int
    scores: np.ndarray | None = None
    relevance: float = 0.0
    rank: int = 0


_NAME_BREAK = ".,;:!?)]}\"'"
_NAME_OPEN = "([{\"'\u201c\u2018"


def _name_groups(units: Sequence[Unit]) -> list[list[int]]:
    """Indices of units, runs of capitalised words on one line grouped together."""
    groups: list[list[int]] = []
    prev_open = False  # the previous unit is a capitalised word that may continue a name
    for i, unit in enumerate(units):
        word = unit.text.strip()
        # "(Beverly" opens a name as "Beverly" does: the name inside brackets or quotes is one
        # group ("(Beverly Garland)"), never split into a kept and a dropped half
        capital = not unit.protected and word.lstrip(_NAME_OPEN)[:1].isupper()
        if capital and prev_open and groups and word[:1] not in _NAME_OPEN:
            groups[-1].append(i)
        else:
            groups.append([i])
        tail = unit.text[len(unit.text.rstrip()) :]
        prev_open = capital and "\n" not in tail and word[-1:] not in _NAME_BREAK
    return groups


def _assemble(units: Sequence[Unit], keep: np.ndarray) -> str:
    """Kept units in order; a dropped run that held a line break keeps one line break, and one
    that held any other whitespace keeps a space, so two kept words never fuse into one
    (``"2007, Bardeen"`` with ``", "`` dropped gives ``"2007 Bardeen"``, not ``"2007Bardeen"``)."""
    parts: list[str] = []
    pending_break = ""
    for unit, k in zip(units, keep, strict=True):
        if k:
            if pending_break and parts and not parts[-1].endswith("\n"):
                if pending_break == " ":
                    if not parts[-1][-1:].isspace() and not unit.text[:1].isspace():
                        parts[-1] += " "
                else:
                    parts[-1] = parts[-1].rstrip(" \t") + pending_break
            parts.append(unit.text)
            pending_break = ""
        elif "\n" in unit.text:
            pending_break = "\n\n" if "\n\n" in unit.text or pending_break == "\n\n" else "\n"
        elif not pending_break and any(c.isspace() for c in unit.text):
            pending_break = " "
    return "".join(parts)


class Compressor:
    """LongLLMLingua / LLMLingua-2 style compression of retrieved documents (see module docs).

    ``Compressor(CompressConfig(rate=0.5))`` or ``Compressor(rate=0.5, scorer="distilled")``.
    The scorer is resolved lazily, on first use, and its model is shared by the whole process.
    """

    def __init__(self, config: CompressConfig | None = None, **overrides: Any) -> None:
        if config is None:
            config = CompressConfig(**overrides)
        elif overrides:
            from dataclasses import replace

            config = replace(config, **overrides)
        self.config = config
        self._scorer: WordScorer | None = None if isinstance(config.scorer, str) else config.scorer
        self._tokenizer = tl.get_tokenizer(config.count_model)

    @property
    def scorer(self) -> WordScorer:
        if self._scorer is None:
            self._scorer = resolve_scorer(self.config.scorer, **self.config.scorer_options)
        return self._scorer

    @property
    def scorer_name(self) -> str:
        if self._scorer is not None:
            return str(getattr(self._scorer, "name", type(self._scorer).__name__))
        return str(self.config.scorer)

    # -- public API ----------------------------------------------------------------------------
    def compress(
        self,
        texts: Sequence[str],
        question: str | None = None,
        *,
        rate: float | None = None,
        target_tokens: int | None = None,
    ) -> CompressionResult:
        """Compress ``texts`` (the retrieved context only) for ``question``.

        ``rate``/``target_tokens`` override the configured target for this call. On a scoring
        failure the texts come back unchanged with ``result.error`` set and a warning.
        """
        texts = list(texts)
        if not all(isinstance(t, str) for t in texts):
            raise TokenleanError("compress takes a sequence of strings")
        _check_target(rate, target_tokens)
        if rate is not None and target_tokens is not None:
            raise TokenleanError("give either rate or target_tokens, not both")
        start = time.perf_counter()
        try:
            result = self._compress(texts, question, rate, target_tokens, start)
        except Exception as exc:
            result = self._passthrough(texts, start, exc)
            self._record_failure(result, exc)
            return result
        self._record(result)
        return result

    async def acompress(
        self,
        texts: Sequence[str],
        question: str | None = None,
        *,
        rate: float | None = None,
        target_tokens: int | None = None,
    ) -> CompressionResult:
        """Async twin of :meth:`compress`. Scoring is CPU-bound model inference, so it runs in a
        worker thread (``asyncio.to_thread``) and the event loop stays free."""
        return await asyncio.to_thread(
            self.compress, texts, question, rate=rate, target_tokens=target_tokens
        )

    # -- the work ------------------------------------------------------------------------------
    def _count(self, text: str) -> int:
        return int(tl.count_tokens(text, self.config.count_model)) if text else 0

    def _prepare(self, index: int, text: str) -> _Doc:
        units = (
            split_units(text, force_tokens=self.config.force_tokens, protect=self.config.protect)
            if text.strip()
            else []  # nothing to compress: passed through verbatim
        )
        costs = np.asarray([self._count(u.text) for u in units], dtype=np.float64)
        protected = int(sum(c for u, c in zip(units, costs, strict=True) if u.protected))
        return _Doc(index, text, units, costs, self._count(text), protected)

    def _compress(
        self,
        texts: list[str],
        question: str | None,
        rate: float | None,
        target_tokens: int | None,
        start: float,
    ) -> CompressionResult:
        cfg = self.config
        if rate is None and target_tokens is None:
            rate, target_tokens = cfg.rate, cfg.target_tokens
        if rate is None and target_tokens is None:
            rate = 0.5
        if cfg.backend == "llmlingua":
            from .llmlingua_backend import compress_with_llmlingua

            return compress_with_llmlingua(self, texts, question, rate, target_tokens, start)
        docs = [self._prepare(i, t) for i, t in enumerate(texts)]
        total = sum(d.tokens for d in docs)
        budget = (
            int(target_tokens) if target_tokens is not None else math.floor(total * (rate or 1.0))
        )
        question = question.strip() if question else None
        ranker: str | None = None
        aware = cfg.method == "longllmlingua" and bool(question)
        live = [d for d in docs if d.units]
        if budget >= total or not live:
            keep_all = {d.index: np.ones(len(d.units), dtype=bool) for d in docs}
            return self._result(docs, keep_all, set(), start, reorder=False)

        # coarse: rank documents by the question
        if aware and question is not None and len(live) > 1:
            relevance = np.asarray(
                self.scorer.rank_documents([d.text for d in live], question), dtype=float
            )
            if relevance.shape != (len(live),):
                raise TokenleanError(
                    f"scorer returned {relevance.shape} relevances for {len(live)} documents"
                )
            relevance = np.where(np.isfinite(relevance), relevance, -1e9)
            ranker = str(getattr(self.scorer, "ranker_used", None) or self.scorer_name)
        else:
            relevance = np.zeros(len(live))
        order = sorted(range(len(live)), key=lambda i: (-relevance[i], live[i].index))
        for rank, i in enumerate(order):
            live[i].relevance = float(relevance[i])
            live[i].rank = rank
        ranked = [live[i] for i in order]
        dropped: set[int] = set()
        if aware and cfg.drop_documents:
            cap = budget * cfg.coarse_keep
            acc = 0
            for pos, d in enumerate(ranked):
                if pos > 0 and acc + d.tokens > cap and acc + d.protected_cost > 0:
                    dropped.add(d.index)
                else:
                    acc += d.tokens
        kept = [d for d in ranked if d.index not in dropped]

        # fine: unit importances for the kept documents
        scores = self.scorer.score_units(
            [[u.text for u in d.units] for d in kept], question if aware else None
        )
        if len(scores) != len(kept):
            raise TokenleanError(
                f"scorer returned {len(scores)} score arrays for {len(kept)} documents"
            )
        for d, s in zip(kept, scores, strict=True):
            s = np.asarray(s, dtype=float)
            if s.shape != (len(d.units),):
                raise TokenleanError(
                    f"scorer returned {s.shape} scores for a document of {len(d.units)} units"
                )
            d.scores = np.where(np.isfinite(s), s, 0.0)

        weights = self._dynamic_weights(len(kept)) if aware else np.ones(len(kept))
        keep = self._fit(kept, weights, budget)
        keeps = {d.index: keep[d.index] for d in kept}
        for d in docs:
            if d.index not in keeps and d.index not in dropped:
                keeps[d.index] = np.ones(len(d.units), dtype=bool)  # empty documents
        return self._result(
            docs, keeps, dropped, start, reorder=aware and cfg.reorder, ranker=ranker
        )

    def _dynamic_weights(self, k: int) -> np.ndarray:
        """Per-rank multipliers of the keep ratio: 1 + d .. 1 - d, linear in rank."""
        if k <= 1:
            return np.ones(k)
        d = self.config.dynamic_ratio
        return np.asarray(1.0 + d * (1.0 - 2.0 * np.arange(k) / (k - 1)), dtype=np.float64)

    def _select(self, doc: _Doc, share: float) -> np.ndarray:
        """Keep protected units, then the most important groups that fit in ``share`` tokens.

        A group is one unit, or with ``keep_names`` a run of capitalised words ("Gustave Eiffel",
        "World Fair"): kept or dropped whole, scored by its best unit, so names are not torn.
        """
        assert doc.scores is not None
        keep = np.asarray([u.protected for u in doc.units], dtype=bool)
        used = float(doc.costs[keep].sum())
        if share >= doc.costs.sum():
            return np.ones(len(doc.units), dtype=bool)
        groups = (
            _name_groups(doc.units)
            if self.config.keep_names
            else [[i] for i in range(len(doc.units))]
        )
        best = [max(doc.scores[i] for i in g) for g in groups]
        for gi in np.argsort(-np.asarray(best), kind="stable"):
            members = [i for i in groups[gi] if not keep[i]]
            if not members:
                continue
            cost = float(doc.costs[members].sum())
            if used + cost <= share:
                keep[members] = True
                used += cost
        return keep

    def _fit(self, kept: list[_Doc], weights: np.ndarray, budget: int) -> dict[int, np.ndarray]:
        """Choose per-document shares (ratio x rank weight) so the exact total meets ``budget``."""
        sizes = np.asarray([d.costs.sum() for d in kept])
        floors = np.asarray([d.protected_cost for d in kept], dtype=float)

        def shares(base: float) -> np.ndarray:
            return np.asarray(np.maximum(floors, np.minimum(sizes, base * weights * sizes)))

        def total_for(goal: float) -> float:
            lo, hi = 0.0, 1.0 / max(1e-9, float(weights.min()))
            for _ in range(40):
                mid = (lo + hi) / 2
                if shares(mid).sum() > goal:
                    hi = mid
                else:
                    lo = mid
            return lo

        goal = float(budget)
        chosen: dict[int, np.ndarray] = {}
        under: dict[int, np.ndarray] | None = None  # the fullest selection within the budget
        under_tokens = -1
        for _ in range(8):
            alloc = shares(total_for(goal))
            chosen = {d.index: self._select(d, a) for d, a in zip(kept, alloc, strict=True)}
            actual = sum(self._count(_assemble(d.units, chosen[d.index])) for d in kept)
            if actual <= budget and actual > under_tokens:
                under, under_tokens = chosen, actual
            if budget * (1 - self.config.tolerance) <= actual <= budget or actual <= 0:
                break
            if actual > budget:
                goal *= budget / actual
            else:
                goal *= min(1.5, budget / max(actual, 1))
                if goal >= sizes.sum():
                    break
        # over budget only when the protected spans alone exceed it
        return under if under is not None else chosen

    def _result(
        self,
        docs: list[_Doc],
        keeps: dict[int, np.ndarray],
        dropped: set[int],
        start: float,
        *,
        reorder: bool,
        ranker: str | None = None,
    ) -> CompressionResult:
        items: list[CompressedItem] = []
        gone: list[CompressedItem] = []
        for d in docs:
            if d.index in dropped:
                gone.append(CompressedItem(d.index, "", d.tokens, 0, d.rank, d.relevance, True))
                continue
            keep = keeps[d.index]
            text = d.text if keep.all() else _assemble(d.units, keep)
            tokens = d.tokens if keep.all() else self._count(text)
            items.append(
                CompressedItem(d.index, text, d.tokens, tokens, d.rank, d.relevance, False)
            )
        if reorder:
            items.sort(key=lambda it: (it.rank, it.index))
        original = sum(d.tokens for d in docs)
        compressed = sum(it.compressed_tokens for it in items)
        return CompressionResult(
            items=items,
            original_tokens=original,
            compressed_tokens=compressed,
            ratio=original / compressed if compressed else (1.0 if not original else float("inf")),
            seconds=time.perf_counter() - start,
            method=self.config.method if self.config.backend == "tokenlean" else "llmlingua",
            scorer=self.scorer_name,
            dropped=gone,
            ranker=ranker,
        )

    def _passthrough(self, texts: list[str], start: float, exc: BaseException) -> CompressionResult:
        items = []
        for i, t in enumerate(texts):
            try:
                n = self._count(t)
            except Exception:
                n = 0
            items.append(CompressedItem(i, t, n, n, i, 0.0, False))
        total = sum(it.original_tokens for it in items)
        return CompressionResult(
            items=items,
            original_tokens=total,
            compressed_tokens=total,
            ratio=1.0,
            seconds=time.perf_counter() - start,
            method=self.config.method,
            scorer=self.scorer_name,
            error=f"{type(exc).__name__}: {exc}",
        )

    # -- ledger --------------------------------------------------------------------------------
    def _ledger(self) -> tl.Ledger:
        return self.config.ledger or tl.get_ledger()

    def _record(self, result: CompressionResult) -> None:
        cfg = self.config
        saved = max(0, result.original_tokens - result.compressed_tokens)
        try:
            self._ledger().record_saving(
                COMPONENT,
                tokens_in=saved,
                model=cfg.price_model or cfg.count_model,
                latency_s=-result.seconds,
                detail={
                    "method": result.method,
                    "scorer": result.scorer,
                    "ranker": result.ranker,
                    "count_model": cfg.count_model,
                    "original_tokens": result.original_tokens,
                    "compressed_tokens": result.compressed_tokens,
                    "ratio": round(result.ratio, 4) if math.isfinite(result.ratio) else None,
                    "seconds": round(result.seconds, 4),
                    "documents": len(result.items) + len(result.dropped),
                    "dropped_documents": len(result.dropped),
                },
            )
        except Exception as exc:
            logger.warning("could not record the compression saving: %s", exc)

    def _record_failure(self, result: CompressionResult, exc: BaseException) -> None:
        message = (
            f"tokenlean-compress failed ({type(exc).__name__}: {exc}); "
            "the context is passed through uncompressed"
        )
        warnings.warn(message, CompressWarning, stacklevel=3)
        logger.warning("compression failed: %s", type(exc).__name__)
        try:
            self._ledger().record_event(
                COMPONENT,
                "failure",
                latency_s=result.seconds,
                detail={
                    "error": type(exc).__name__,
                    "method": self.config.method,
                    "scorer": result.scorer,
                },
            )
        except Exception as err:
            logger.warning("could not record the compression failure: %s", err)
