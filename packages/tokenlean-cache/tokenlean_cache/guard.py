"""The false-hit guard: a lexical check plus a small learned verifier, run on candidate hits.

Nearest-neighbour search alone cannot tell "how do I open an account" from "how do I close an
account", or "flights from Paris to London" from "flights from London to Paris": their embeddings
are close. The guard looks at both texts and both vectors of a candidate pair:

* :func:`lexical_conflict` rejects pairs that differ in negation, numbers, dates or times, named
  entities (different or swapped) or the kind of question (who/when/where vs the rest);
* :class:`LearnedVerifier` scores the pair with a small MLP over the MiniLM vectors of both sides
  (``|u-v|``, ``u*v``, cosine) and lexical features, trained on a train split of the Quora
  Question Pairs (``benchmarks/train_guard.py`` reproduces the shipped weights;
  ``tokenlean_cache/data/guard_minilm.npz``). It is only valid with the vectors of the model it was
  trained on (all-MiniLM-L6-v2); with another embedder the guard keeps the lexical check only.
"""

from __future__ import annotations

import functools
import importlib.resources
import io
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from tokenlean_core import TokenleanError
from tokenlean_core.lexical import (
    MONTHS,
    RELATIVE_DAYS,
    WEEKDAYS,
    WH_WORDS,
    WORD,
    count_negations,
    numbers,
    wordset,
)

__all__ = [
    "Guard",
    "GuardDecision",
    "LearnedVerifier",
    "lexical_conflict",
    "lexical_features",
    "pair_features",
]

_DAYS = WEEKDAYS | RELATIVE_DAYS | {"weekend"}
# Question kinds that ask for a different sort of answer: a person, a time, a place.
_WH_STRICT = {"who": "person", "whom": "person", "whose": "person", "when": "time"}
_WH_STRICT["where"] = "place"
# Capitalised words that are not entities: interrogatives, auxiliaries, function words.
_STOP_CAPS = frozenset(WH_WORDS) | wordset(
    "i is are was were do does did can could should would will the a an in on at of for to "
    "and or if my me we you your it its this that these those there here best good"
)


def _words(text: str) -> list[str]:
    return WORD.findall(text)


def _entities(words: list[str]) -> list[str]:
    """Capitalised or mixed-case words not at the start of the text, lowercased, in order."""
    out: list[str] = []
    for i, w in enumerate(words):
        low = w.lower()
        if low in _STOP_CAPS:
            continue
        capitalised = i > 0 and w[:1].isupper()
        mixed = any(c.isupper() for c in w[1:]) and not w.isupper()
        acronym = w.isupper() and len(w) >= 2 and w.isalpha()  # USA, SQL
        if capitalised or mixed or acronym:
            out.append(low)
    return out


def _wh(words: list[str]) -> str | None:
    for w in words[:6]:
        low = w.lower()
        if low in WH_WORDS:
            return low
    return None


@dataclass(frozen=True)
class _Parsed:
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
    words = _words(text)
    lower = [w.lower() for w in words]
    return _Parsed(
        words=frozenset(lower),
        numbers=numbers(text, words),
        negations=count_negations(words),
        entities=tuple(_entities(words)),
        months=frozenset(w for w in lower if w in MONTHS and w != "may"),
        days=frozenset(w for w in lower if w in _DAYS),
        wh=_wh(words),
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
        h = (np.atleast_2d(x) - self.mean) / self.scale
        for i, (w, b) in enumerate(self.layers):
            h = h @ w + b
            if i < len(self.layers) - 1:
                h = np.maximum(h, 0.0)
        z = np.clip(h[:, 0], -40.0, 40.0)
        out: npt.NDArray[np.float32] = (1.0 / (1.0 + np.exp(-z))).astype(np.float32)
        return out

    def score(
        self, u: npt.NDArray[np.float32], v: npt.NDArray[np.float32], a: str, b: str
    ) -> float:
        """P(``a`` and ``b`` ask the same thing)."""
        return float(self.score_features(pair_features(u, v, a, b))[0])


@dataclass(frozen=True)
class GuardDecision:
    """The guard's verdict on a candidate: ``accepted``, the learned ``score`` (or ``None``) and
    the ``reason`` for a rejection."""

    accepted: bool
    score: float | None = None
    reason: str | None = None


class Guard:
    """Verifies candidate hits. Both checks must pass.

    Args:
        lexical: Run :func:`lexical_conflict`.
        verifier: A :class:`LearnedVerifier`; ``"default"`` loads the shipped MiniLM weights;
            ``None`` turns the learned check off.
        min_score: Minimum verifier score; defaults to the verifier's calibrated threshold.
        accept_distance: Candidates at most this cosine distance away skip the learned check
            (the lexical check still runs): near-verbatim rephrasings (case, punctuation) are
            not what the verifier is for, and on QQP pairs this close are duplicates.
    """

    def __init__(
        self,
        *,
        lexical: bool = True,
        verifier: LearnedVerifier | str | None = "default",
        min_score: float | None = None,
        accept_distance: float = 0.02,
    ) -> None:
        if isinstance(verifier, str):
            if verifier != "default":
                raise TokenleanError("verifier must be 'default', None or a LearnedVerifier")
            verifier = LearnedVerifier.load()
        if min_score is not None and not 0.0 <= min_score <= 1.0:
            raise TokenleanError(f"min_score must be in [0, 1], got {min_score}")
        if not 0.0 <= accept_distance <= 2.0:
            raise TokenleanError(f"accept_distance must be in [0, 2], got {accept_distance}")
        self.lexical = lexical
        self.accept_distance = accept_distance
        self.verifier = verifier
        self.min_score = (
            min_score if min_score is not None else (verifier.threshold if verifier else 0.5)
        )

    def usable_with(self, embedder_name: str, dim: int | None) -> bool:
        """Whether the learned verifier matches the embedder's vectors."""
        if self.verifier is None:
            return False
        return self.verifier.embedder in embedder_name and (dim is None or dim == self.verifier.dim)

    def check(
        self,
        query: str,
        candidate: str,
        qv: npt.NDArray[np.float32] | None = None,
        cv: npt.NDArray[np.float32] | None = None,
        distance: float | None = None,
    ) -> GuardDecision:
        """Verify one candidate. Vectors are needed for the learned check (skipped without)."""
        pq, pc = _parse(query), _parse(candidate)
        if self.lexical:
            reason = _conflict(pq, pc)
            if reason is not None:
                return GuardDecision(False, None, reason)
        if distance is not None and distance <= self.accept_distance:
            return GuardDecision(True, None, None)
        if self.verifier is not None and qv is not None and cv is not None:
            if qv.shape[0] != self.verifier.dim:
                return GuardDecision(True, None, None)
            s = self.verifier.score(qv, cv, query, candidate)
            if s < self.min_score:
                return GuardDecision(False, s, "verifier")
            return GuardDecision(True, s, None)
        return GuardDecision(True, None, None)
