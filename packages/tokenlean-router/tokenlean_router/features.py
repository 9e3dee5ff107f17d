"""Task signals computed from the request text alone (no network, no model).

Each signal is a cheap, deterministic number: how much arithmetic, code or multi-step reasoning the
request asks for, and how long it is. The gate appends them to the request's embedding.
"""

from __future__ import annotations

import importlib
import itertools
import math
import re
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tokenlean_core import MissingDependencyError, count_tokens

__all__ = ["SIGNAL_NAMES", "lexical_counts", "task_signals"]

_NUMBER = re.compile(r"(?<![A-Za-z])[-+]?\$?\d[\d,]*(?:\.\d+)?%?")
_MATH_OP = re.compile(r"(?:\d\s*[-+*/^=×÷]\s*\d)|[√∑∫π≤≥≠]|\\frac|\\sqrt|\^\d")
_MATH_WORDS = re.compile(
    r"\b(?:calculate|compute|solve|equation|integral|derivative|probability|percent(?:age)?|"
    r"how many|how much|total|average|sum|product|ratio|remainder|divided|multipl\w*|"
    r"times|each|per|fraction|prove|theorem|matrix|polynomial|log|sqrt)\b",
    re.IGNORECASE,
)
_CODE = re.compile(
    r"```|\bdef |\bclass |\breturn\b|\bfunction\b|\bimport\b|#include|;\s*$|\{\s*$|=>|\bSELECT\b|"
    r"\b(?:python|javascript|java|c\+\+|sql|regex|compile|bug|stack trace|code)\b",
    re.IGNORECASE | re.MULTILINE,
)
_MULTI_STEP = re.compile(
    r"\b(?:step[- ]by[- ]step|first|then|after that|finally|next|explain|why|compare|"
    r"analy[sz]e|justify|derive|plan|design|suppose|assume)\b",
    re.IGNORECASE,
)
_CHOICE = re.compile(r"^\s*\(?[A-Ea-e][.)]\s", re.MULTILINE)
_NEGATION = re.compile(r"\b(?:not|except|least|never|false|incorrect)\b", re.IGNORECASE)

SIGNAL_NAMES: tuple[str, ...] = (
    "log_tokens",
    "numbers",
    "math_ops",
    "math_words",
    "code",
    "multi_step",
    "choices",
    "negations",
    "questions",
    "lines",
)


def _signals(text: str, model: str | None) -> list[float]:
    tokens = int(count_tokens(text, model))
    return [
        math.log1p(tokens),
        math.log1p(len(_NUMBER.findall(text))),
        math.log1p(len(_MATH_OP.findall(text))),
        math.log1p(len(_MATH_WORDS.findall(text))),
        math.log1p(len(_CODE.findall(text))),
        math.log1p(len(_MULTI_STEP.findall(text))),
        math.log1p(len(_CHOICE.findall(text))),
        math.log1p(len(_NEGATION.findall(text))),
        math.log1p(text.count("?")),
        math.log1p(text.count("\n")),
    ]


def task_signals(texts: Sequence[str], model: str | None = None) -> NDArray[np.float64]:
    """One row of :data:`SIGNAL_NAMES` per text; ``model`` picks the tokenizer for the count."""
    if isinstance(texts, str):
        raise TypeError("task_signals takes a sequence of texts, not one string")
    if not texts:
        return np.zeros((0, len(SIGNAL_NAMES)), dtype=np.float64)
    return np.array([_signals(t, model) for t in texts], dtype=np.float64)


_WORD = re.compile(r"[a-z0-9]+")


def lexical_counts(texts: Sequence[str], dim: int) -> Any:
    """Hashed word unigram + bigram counts (sublinear: ``1 + log(tf)``) as a scipy CSR matrix of
    shape ``(len(texts), dim)``. Buckets are ``crc32(term) % dim``: no vocabulary to ship."""
    try:
        sparse = importlib.import_module("scipy.sparse")
    except ImportError as exc:  # pragma: no cover - scipy is a dependency
        raise MissingDependencyError("scipy", "all", "tokenlean-router") from exc
    indptr = [0]
    indices: list[int] = []
    data: list[float] = []
    for text in texts:
        words = _WORD.findall(text.lower())
        terms = words + [f"{a} {b}" for a, b in itertools.pairwise(words)]
        counts: dict[int, int] = {}
        for t in terms:
            h = zlib.crc32(t.encode()) % dim
            counts[h] = counts.get(h, 0) + 1
        for h in sorted(counts):
            indices.append(h)
            data.append(1.0 + math.log(counts[h]))
        indptr.append(len(indices))
    return sparse.csr_matrix(
        (np.array(data, np.float64), np.array(indices, np.int64), np.array(indptr, np.int64)),
        shape=(len(texts), dim),
    )
