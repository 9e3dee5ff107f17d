"""The cascade: call the small model first, score its answer's confidence, escalate when low.

Confidence scorers (all return a number in [0, 1]; higher = more confident):

* :func:`logprob_confidence` - from token log-probabilities in OpenAI's format, as LangChain puts
  them in ``AIMessage.response_metadata["logprobs"]``
  (``{"content": [{"token", "logprob"}, ...]}``).
* :func:`self_consistency` - agreement among ``n`` sampled answers (share of the majority answer).
* a verifier: any ``Callable[[prompt, answer], float]``, e.g. a trained
  :class:`~tokenlean_router.verifier.ResponseVerifier` or a call to a judge model.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from .errors import RouterConfigError

__all__ = [
    "CascadePolicy",
    "Verifier",
    "extract_final_answer",
    "logprob_confidence",
    "self_consistency",
]

Verifier = Callable[[str, str], float]
AsyncVerifier = Callable[[str, str], Awaitable[float]]

_FINAL = re.compile(r"####\s*([^\n]+)")
_ANSWER_IS = re.compile(r"answer\s*(?:is|:)\s*\(?([^\n.]+)", re.IGNORECASE)
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def _token_logprobs(logprobs: Any) -> list[float]:
    if logprobs is None:
        return []
    if isinstance(logprobs, Mapping):
        content = logprobs.get("content")
        if content is None:
            # legacy completions format: {"token_logprobs": [...]}
            legacy = logprobs.get("token_logprobs")
            return [float(x) for x in legacy or [] if x is not None]
        logprobs = content
    out: list[float] = []
    if isinstance(logprobs, Iterable):
        for item in logprobs:
            if isinstance(item, Mapping) and item.get("logprob") is not None:
                out.append(float(item["logprob"]))
            elif isinstance(item, (int, float)):
                out.append(float(item))
    return out


def logprob_confidence(
    logprobs: Any, reduce: Literal["mean_prob", "geo_mean", "min_prob"] = "geo_mean"
) -> float | None:
    """Confidence from token log-probabilities (OpenAI/LangChain format); None when absent.

    ``geo_mean`` = exp(mean logprob) (per-token perplexity inverse), ``mean_prob`` = mean token
    probability, ``min_prob`` = probability of the least likely token.
    """
    lps = _token_logprobs(logprobs)
    if not lps:
        return None
    if reduce == "geo_mean":
        return math.exp(sum(lps) / len(lps))
    if reduce == "mean_prob":
        return sum(math.exp(x) for x in lps) / len(lps)
    if reduce == "min_prob":
        return math.exp(min(lps))
    raise RouterConfigError(f"unknown logprob reduction {reduce!r}")


def extract_final_answer(text: str) -> str:
    """A normalised final answer: after ``####``, after "answer is", else the last number, else
    the stripped lower-cased text."""
    m = _FINAL.search(text)
    cand = m.group(1) if m else None
    if cand is None:
        m2 = _ANSWER_IS.search(text)
        cand = m2.group(1) if m2 else None
    if cand is None:
        nums = _NUMBER.findall(text)
        cand = nums[-1] if nums else text
    cand = " ".join(cand.strip().strip(".").lower().replace("$", "").replace(",", "").split())
    try:
        f = float(cand)
    except ValueError:
        return cand
    if math.isfinite(f) and f.is_integer():
        return str(int(f))
    return repr(f)


def self_consistency(
    answers: Sequence[str], normalize: Callable[[str], str] = extract_final_answer
) -> tuple[str, float]:
    """The majority answer among samples and its share (the confidence)."""
    if not answers:
        raise RouterConfigError("self_consistency needs at least one answer")
    counts = Counter(normalize(a) for a in answers)
    best, n = max(counts.items(), key=lambda kv: (kv[1], -list(counts).index(kv[0])))
    return best, n / len(answers)


@dataclass(frozen=True)
class CascadePolicy:
    """When to escalate: confidence below ``threshold`` goes to the next tier.

    ``method``: ``"logprobs"`` (needs the provider's logprobs; with none, ``missing`` decides),
    ``"verifier"`` (calls ``verifier(prompt, answer)``) or ``"self_consistency"`` (samples
    ``n_samples`` answers from the small model and uses the majority's share).
    ``missing``: what to do when the confidence cannot be computed: ``"escalate"`` or ``"accept"``.
    """

    threshold: float
    method: Literal["logprobs", "verifier", "self_consistency"] = "logprobs"
    verifier: Verifier | None = None
    averifier: AsyncVerifier | None = None
    n_samples: int = 3
    logprob_reduce: Literal["mean_prob", "geo_mean", "min_prob"] = "geo_mean"
    missing: Literal["escalate", "accept"] = "escalate"

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold <= 1.0 and self.method != "verifier":
            raise RouterConfigError("a cascade threshold on a confidence must be in [0, 1]")
        if self.method == "verifier" and self.verifier is None and self.averifier is None:
            raise RouterConfigError("method='verifier' needs a verifier callable")
        if self.method == "self_consistency" and self.n_samples < 2:
            raise RouterConfigError("self-consistency needs n_samples >= 2")
        if self.missing not in ("escalate", "accept"):
            raise RouterConfigError("missing must be 'escalate' or 'accept'")

    def should_escalate(self, confidence: float | None) -> bool:
        if confidence is None or math.isnan(confidence):
            return self.missing == "escalate"
        return confidence < self.threshold

    def verify(self, prompt: str, answer: str) -> float:
        if self.verifier is None:
            raise RouterConfigError("this cascade has only an async verifier; use the async API")
        return float(self.verifier(prompt, answer))

    async def averify(self, prompt: str, answer: str) -> float:
        if self.averifier is not None:
            return float(await self.averifier(prompt, answer))
        import asyncio

        return await asyncio.to_thread(self.verify, prompt, answer)
