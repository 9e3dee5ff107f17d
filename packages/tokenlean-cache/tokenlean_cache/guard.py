"""The false-hit guard: a lexical check plus a learned verifier, run on candidate hits.

Nearest-neighbour search alone cannot tell "how do I open an account" from "how do I close an
account", or "flights from Paris to London" from "flights from London to Paris": their embeddings
are close. The guard looks at both texts of a candidate pair:

* :func:`lexical_conflict` rejects pairs that differ in negation, numbers, dates or times, named
  entities (different or swapped) or the kind of question (who/when/where vs the rest);
* :class:`LearnedVerifier`, the default learned verifier: a small MLP over the MiniLM vectors
  of both sides (``|u-v|``, ``u*v``, cosine) and lexical features (``benchmarks/train_guard.py``;
  ``tokenlean_cache/data/guard_minilm.npz``). It is only valid with all-MiniLM-L6-v2 vectors;
* ``Guard(verifier="cross")`` uses a cross-encoder instead
  (:class:`~tokenlean_cache.cross.CrossEncoderVerifier`): the MiniLM the embeddings use, reading
  ``[CLS] query [SEP] candidate [SEP]``, its top layers and a binary head fine-tuned on a train
  split of the Quora Question Pairs (``benchmarks/train_cross_guard.py``). It reads texts, so it
  works whatever embedder the cache uses; when its weights or torch cannot load, the guard warns
  once and falls back to :class:`LearnedVerifier`. The shipped weights come from a short CPU run
  and, with the pair's cosine blended in, rank held-out QQP candidates only a little better than
  the cosine alone (DEV AUC 0.840 against 0.832) at about one query embedding's cost per
  candidate, so it is opt-in.

Every lookup that finds a candidate runs the lexical check, so :func:`_parse` is kept to set
operations and one regular-expression pass per text, and the MLP is one matrix product per
pair (its input standardisation is folded into the first layer).
"""

from __future__ import annotations

import copy
import functools
import importlib.resources
import io
import logging
import math
import re
import threading
import warnings
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from tokenlean_core import TokenleanError
from tokenlean_core.lexical import (
    MONTHS,
    NEGATIONS,
    NUMBER,
    NUMBER_WORDS,
    RELATIVE_DAYS,
    WEEKDAYS,
    WH_WORDS,
    WORD,
    wordset,
)

from .cross import CrossEncoderVerifier

__all__ = [
    "CrossEncoderVerifier",
    "Guard",
    "GuardDecision",
    "LearnedVerifier",
    "lexical_conflict",
    "lexical_features",
    "pair_features",
]

logger = logging.getLogger("tokenlean.cache")
_DAYS = WEEKDAYS | RELATIVE_DAYS | {"weekend"}
# Question kinds that ask for a different sort of answer: a person, a time, a place.
_WH_STRICT = {"who": "person", "whom": "person", "whose": "person", "when": "time"}
_WH_STRICT["where"] = "place"
_WH_SET = frozenset(WH_WORDS)
_DIGIT = re.compile(r"\d")
_NUMBER_WORD_SET = frozenset(NUMBER_WORDS)
_MAY = frozenset({"may"})
# Capitalised words that are not entities: interrogatives, auxiliaries, function words.
_STOP_CAPS = frozenset(WH_WORDS) | wordset(
    "i is are was were do does did can could should would will the a an in on at of for to "
    "and or if my me we you your it its this that these those there here best good"
)


def _words(text: str) -> list[str]:
    return WORD.findall(text)


def _is_entity(w: str, i: int) -> bool:
    """Capitalised (not first), mixed-case (iPhone) or an acronym (USA, SQL)."""
    capitalised = i > 0 and w[:1].isupper()
    mixed = any(c.isupper() for c in w[1:]) and not w.isupper()
    acronym = w.isupper() and len(w) >= 2 and w.isalpha()
    return capitalised or mixed or acronym


def _wh(words: list[str]) -> str | None:
    for w in words[:6]:
        low = w.lower()
        if low in WH_WORDS:
            return low
    return None


class _Parsed(NamedTuple):
    words: frozenset[str]
    numbers: frozenset[str]
    negations: int
    entities: tuple[str, ...]
    months: frozenset[str]
    days: frozenset[str]
    wh: str | None
    length: int


@functools.lru_cache(maxsize=65_536)
def _parse(text: str) -> _Parsed:
    """Everything the lexical check and features need from one text (this runs on every lookup
    that reaches the guard: set operations in C rather than a Python pass per word)."""
    words = _words(text)
    lower = [w.lower() for w in words]
    vocab = frozenset(lower)
    found = (
        {m.group(0).lower().rstrip("%").replace(",", "") for m in NUMBER.finditer(text)}
        if _DIGIT.search(text)
        else set()
    )
    found.update(str(NUMBER_WORDS[w]) for w in vocab & _NUMBER_WORD_SET)
    negations = 0
    if vocab & NEGATIONS or "n't" in text or "n\u2019t" in text:
        for low in lower:
            neg = low.replace("\u2019", "'") if "\u2019" in low else low
            if neg in NEGATIONS or neg.endswith("n't"):
                negations += 1
    wh = next((low for low in lower[:6] if low in _WH_SET), None)
    entities = [
        low
        for i, (w, low) in enumerate(zip(words, lower, strict=True))
        if not w.islower()
        and low not in _STOP_CAPS
        and ((i > 0 and w[:1].isupper()) or _is_entity(w, i))
    ]
    return _Parsed(
        words=vocab,
        numbers=frozenset(found),
        negations=negations,
        entities=tuple(entities),
        months=(vocab & MONTHS) - _MAY,
        days=vocab & _DAYS,
        wh=wh,
        length=len(words),
    )


def lexical_conflict(a: str, b: str) -> str | None:
    """Why ``a`` and ``b`` cannot be asking the same thing, or ``None`` when no rule fires.

    Rules: one side negated and the other not (parity of negations differs); the numbers differ
    (digits or number words, so "3 days" vs "three days" agree); the months or days named differ;
    named entities differ (each side names one the other does not) or two shared entities appear in
    the opposite order ("Paris to London" vs "London to Paris"); one asks who/when/where and the
    other asks something else.
    """
    pa, pb = _parse(a), _parse(b)
    return _conflict(pa, pb)


def _conflict(pa: _Parsed, pb: _Parsed) -> str | None:
    if (pa.negations % 2) != (pb.negations % 2):
        return "negation"
    if pa.numbers != pb.numbers:
        return "numbers"
    if pa.months != pb.months or pa.days != pb.days:
        return "dates"
    ea, eb = set(pa.entities), set(pb.entities)
    if ea - eb and eb - ea:
        return "entities"
    shared = [e for e in pa.entities if e in eb]
    if len(set(shared)) >= 2:
        order_b = [e for e in pb.entities if e in ea]
        dedup_a = list(dict.fromkeys(shared))
        dedup_b = list(dict.fromkeys(order_b))
        if dedup_a != dedup_b:
            return "swapped entities"
    ka = _WH_STRICT.get(pa.wh or "")
    kb = _WH_STRICT.get(pb.wh or "")
    if (ka or kb) and ka != kb and pa.wh is not None and pb.wh is not None:
        return "question kind"
    return None


N_LEXICAL = 10


def _lex_vector(pa: _Parsed, pb: _Parsed) -> list[float]:
    union = pa.words | pb.words
    inter = pa.words & pb.words
    jacc = len(inter) / len(union) if union else 1.0
    la, lb = max(pa.length, 1), max(pb.length, 1)
    ea, eb = set(pa.entities), set(pb.entities)
    eunion = ea | eb
    return [
        jacc,
        min(la, lb) / max(la, lb),
        float((pa.negations % 2) != (pb.negations % 2)),
        float(pa.numbers != pb.numbers),
        float(pa.months != pb.months or pa.days != pb.days),
        len(ea ^ eb) / len(eunion) if eunion else 0.0,
        float(pa.wh != pb.wh),
        float(_conflict(pa, pb) is not None),
        float(np.log1p(abs(la - lb))),
        float(len(pa.words ^ pb.words)) / 10.0,
    ]


def lexical_features(a: str, b: str) -> list[float]:
    """The lexical features the learned verifier uses (see the module docs)."""
    return _lex_vector(_parse(a), _parse(b))


def pair_features(
    u: npt.NDArray[np.float32], v: npt.NDArray[np.float32], a: str, b: str
) -> npt.NDArray[np.float32]:
    """Features of one pair: ``|u-v|``, ``u*v``, cosine and :func:`lexical_features`."""
    cos = float(np.dot(u, v))
    lex = np.asarray([cos, *lexical_features(a, b)], dtype=np.float32)
    return np.concatenate([np.abs(u - v), u * v, lex]).astype(np.float32)


class LearnedVerifier:
    """A small MLP (numpy inference) scoring P(same question) for a candidate pair.

    Args:
        weights: A mapping with ``mean``, ``scale`` (feature standardisation), ``W0``, ``b0``, ...
            (layers, ReLU between them, logistic output), ``threshold`` (the score at which the
            shipped calibration reached the target precision on the train split) and ``embedder``.
    """

    def __init__(self, weights: dict[str, Any]) -> None:
        try:
            self.mean = np.asarray(weights["mean"], dtype=np.float32)
            self.scale = np.asarray(weights["scale"], dtype=np.float32)
            self.layers: list[tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]] = []
            i = 0
            while f"W{i}" in weights:
                self.layers.append(
                    (
                        np.asarray(weights[f"W{i}"], dtype=np.float32),
                        np.asarray(weights[f"b{i}"], dtype=np.float32),
                    )
                )
                i += 1
            self.threshold = float(weights["threshold"])
            self.embedder = str(weights.get("embedder", "all-MiniLM-L6-v2"))
        except (KeyError, ValueError) as exc:
            raise TokenleanError(f"malformed guard weights: {exc}") from None
        if not self.layers:
            raise TokenleanError("malformed guard weights: no layers")
        self.dim = (self.mean.shape[0] - 1 - N_LEXICAL) // 2
        if self.layers[0][0].shape[0] != self.mean.shape[0] or self.scale.shape != self.mean.shape:
            raise TokenleanError("malformed guard weights: feature sizes disagree")
        # the standardisation folded into the first layer: (x - mean) / scale @ W0 + b0
        # == x @ (W0 / scale) + (b0 - (mean / scale) @ W0); one matrix product per pair
        w0, b0 = self.layers[0]
        scale = np.where(self.scale == 0.0, 1.0, self.scale).astype(np.float32)
        self._w0 = np.ascontiguousarray(w0 / scale[:, None], dtype=np.float32)
        self._b0 = (b0 - (self.mean / scale) @ w0).astype(np.float32)

    @classmethod
    def load(cls, path: str | None = None) -> LearnedVerifier:
        """Load weights from ``path`` (an ``.npz``), or the shipped MiniLM weights."""
        if path is None:
            raw = importlib.resources.files("tokenlean_cache") / "data" / "guard_minilm.npz"
            data = np.load(io.BytesIO(raw.read_bytes()), allow_pickle=False)
        else:
            data = np.load(path, allow_pickle=False)
        weights = {k: data[k] for k in data.files}
        weights["embedder"] = str(weights.get("embedder", "all-MiniLM-L6-v2"))
        return cls(weights)

    def score_features(self, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Scores for a batch of :func:`pair_features` rows."""
        h = np.atleast_2d(x).astype(np.float32, copy=False) @ self._w0 + self._b0
        for w, b in self.layers[1:]:
            h = np.maximum(h, 0.0) @ w + b
        z = np.clip(h[:, 0], -40.0, 40.0)
        out: npt.NDArray[np.float32] = (1.0 / (1.0 + np.exp(-z))).astype(np.float32)
        return out

    def score(
        self, u: npt.NDArray[np.float32], v: npt.NDArray[np.float32], a: str, b: str
    ) -> float:
        """P(``a`` and ``b`` ask the same thing)."""
        d = self.dim
        x = np.empty(2 * d + 1 + N_LEXICAL, dtype=np.float32)
        np.subtract(u, v, out=x[:d])
        np.abs(x[:d], out=x[:d])
        np.multiply(u, v, out=x[d : 2 * d])
        x[2 * d] = float(np.dot(u, v))
        x[2 * d + 1 :] = lexical_features(a, b)
        h = x @ self._w0 + self._b0
        for w, bias in self.layers[1:]:
            h = np.maximum(h, 0.0) @ w + bias
        z = min(40.0, max(-40.0, float(h[0])))
        return 1.0 / (1.0 + math.exp(-z))


@dataclass(frozen=True)
class GuardDecision:
    """The guard's verdict on a candidate: ``accepted``, the learned ``score`` (or ``None``) and
    the ``reason`` for a rejection."""

    accepted: bool
    score: float | None = None
    reason: str | None = None


Verifier = LearnedVerifier | CrossEncoderVerifier


class Guard:
    """Verifies candidate hits. Both checks must pass.

    Args:
        lexical: Run :func:`lexical_conflict`.
        verifier: ``"default"`` or ``"mlp"`` (the shipped :class:`LearnedVerifier`),
            ``"cross"`` (the shipped cross-encoder), a
            :class:`~tokenlean_cache.cross.CrossEncoderVerifier` or :class:`LearnedVerifier`,
            or ``None`` to turn the learned check off. The cross-encoder loads on the first
            candidate it scores; if it cannot load (weights missing or malformed,
            torch/transformers absent), the guard warns once and uses the MLP verifier instead.
        min_score: Minimum verifier score; defaults to the verifier's calibrated threshold.
        accept_distance: Candidates at most this cosine distance away skip the learned check
            (the lexical check still runs): near-verbatim rephrasings (case, punctuation) are
            not what the verifier is for, and on QQP pairs this close are duplicates.
    """

    def __init__(
        self,
        *,
        lexical: bool = True,
        verifier: Verifier | str | None = "default",
        min_score: float | None = None,
        accept_distance: float = 0.02,
    ) -> None:
        if isinstance(verifier, str):
            if verifier in ("default", "mlp"):
                verifier = LearnedVerifier.load()
            elif verifier == "cross":
                verifier = CrossEncoderVerifier()
            else:
                raise TokenleanError(
                    "verifier must be 'default', 'mlp', 'cross', None, a CrossEncoderVerifier "
                    "or a LearnedVerifier"
                )
        if verifier is not None and not isinstance(
            verifier, (LearnedVerifier, CrossEncoderVerifier)
        ):
            raise TokenleanError(
                f"verifier must be a CrossEncoderVerifier or LearnedVerifier, got "
                f"{type(verifier).__name__}"
            )
        if min_score is not None and not 0.0 <= min_score <= 1.0:
            raise TokenleanError(f"min_score must be in [0, 1], got {min_score}")
        if not 0.0 <= accept_distance <= 2.0:
            raise TokenleanError(f"accept_distance must be in [0, 2], got {accept_distance}")
        self.lexical = lexical
        self.accept_distance = accept_distance
        self.verifier: Verifier | None = verifier
        #: give the cross-encoder the pair's vector similarity (its blend weights were fitted
        #: on MiniLM cosines: the cache turns this off for any other embedder)
        self.use_similarity = True
        self._min_score = min_score
        self._fallback_lock = threading.Lock()

    @property
    def min_score(self) -> float:
        """The verifier score a candidate needs (the calibrated threshold unless overridden)."""
        if self._min_score is not None:
            return self._min_score
        if self.verifier is None:
            return 0.5
        try:
            return self.verifier.threshold
        except Exception as exc:  # the cross-encoder could not load
            self._fall_back(exc)
            return self.min_score

    def _fall_back(self, exc: BaseException) -> None:
        """The cross-encoder failed to load: warn once and continue with the MLP verifier."""
        with self._fallback_lock:
            if not isinstance(self.verifier, CrossEncoderVerifier):
                return
            try:
                fallback: LearnedVerifier | None = LearnedVerifier.load()
            except Exception:  # pragma: no cover - the MLP weights ship with the package
                fallback = None
            what = "the MLP verifier" if fallback is not None else "the lexical check only"
            warnings.warn(
                f"cross-encoder guard unavailable ({type(exc).__name__}: {exc}); using {what}",
                RuntimeWarning,
                stacklevel=3,
            )
            logger.warning("cross-encoder guard unavailable (%s); using %s", exc, what)
            self.verifier = fallback

    @property
    def runs_model(self) -> bool:
        """Whether checking a candidate may run a model forward pass (the cross-encoder)."""
        return isinstance(self.verifier, CrossEncoderVerifier)

    def usable_with(self, embedder_name: str, dim: int | None) -> bool:
        """Whether the learned verifier can run with this embedder (the cross-encoder reads
        texts, so always; the MLP verifier needs all-MiniLM-L6-v2 vectors)."""
        if self.verifier is None:
            return False
        if isinstance(self.verifier, CrossEncoderVerifier):
            return True
        return self.verifier.embedder in embedder_name and (dim is None or dim == self.verifier.dim)

    def for_embedder(self, embedder_name: str, dim: int | None) -> Guard:
        """This guard as it can run beside this embedder: itself when it fits; otherwise a copy
        (the caller's object is never changed) with the lexical check only (the MLP verifier
        needs all-MiniLM-L6-v2 vectors), or with the cross-encoder not given similarities (its
        blend weights were fitted on MiniLM cosines)."""
        if self.verifier is None:
            return self
        if not self.usable_with(embedder_name, dim):
            logger.info(
                "the learned guard was trained on %s vectors; with embedder %s only the "
                "lexical check runs",
                self.verifier.embedder,
                embedder_name,
            )
            return Guard(lexical=self.lexical, verifier=None, accept_distance=self.accept_distance)
        if self.use_similarity and self.verifier.embedder not in embedder_name:
            other = copy.copy(self)
            other.use_similarity = False
            return other
        return self

    def score(
        self,
        query: str,
        candidate: str,
        qv: npt.NDArray[np.float32] | None = None,
        cv: npt.NDArray[np.float32] | None = None,
        distance: float | None = None,
    ) -> float | None:
        """The learned verifier's score for one pair, or ``None`` when it cannot run.

        ``distance`` (cosine distance, 0 = same direction) or the vectors give the cross-encoder
        the pair's similarity when its shipped weights blend it in."""
        verifier = self.verifier
        if isinstance(verifier, CrossEncoderVerifier):
            sim = None
            if not self.use_similarity:
                pass
            elif qv is not None and cv is not None:
                sim = float(np.dot(qv, cv))
            elif distance is not None:
                sim = 1.0 - float(distance)
            try:
                return verifier.score_text(query, candidate, sim)
            except Exception as exc:
                self._fall_back(exc)
                return self.score(query, candidate, qv, cv, distance)
        if verifier is not None and qv is not None and cv is not None:
            if qv.shape[0] != verifier.dim:
                return None
            return verifier.score(qv, cv, query, candidate)
        return None

    def prime(self, text: str) -> None:
        """Parse ``text`` ahead of its first check (the engine does this when it stores an
        entry, so a later hit on that entry parses only the query)."""
        _parse(text)

    def check(
        self,
        query: str,
        candidate: str,
        qv: npt.NDArray[np.float32] | None = None,
        cv: npt.NDArray[np.float32] | None = None,
        distance: float | None = None,
    ) -> GuardDecision:
        """Verify one candidate. The MLP verifier needs the vectors (skipped without)."""
        pq, pc = _parse(query), _parse(candidate)
        if self.lexical:
            reason = _conflict(pq, pc)
            if reason is not None:
                return GuardDecision(False, None, reason)
        if distance is not None and distance <= self.accept_distance:
            return GuardDecision(True, None, None)
        s = self.score(query, candidate, qv, cv, distance)
        if s is None:
            return GuardDecision(True, None, None)
        if s < self.min_score:
            return GuardDecision(False, s, "verifier")
        return GuardDecision(True, s, None)
