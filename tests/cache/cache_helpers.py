"""Helpers shared by the tokenlean-cache tests."""

from __future__ import annotations

import hashlib
import re

import numpy as np
import numpy.typing as npt

_TOKEN = re.compile(r"\w+")


def toy_embed(texts: list[str]) -> npt.NDArray[np.float32]:
    """A deterministic bag-of-words embedder (hashed words, 64 dims) for unit tests."""
    out = np.full((len(texts), 64), 1e-3, dtype=np.float32)
    for i, t in enumerate(texts):
        for w in _TOKEN.findall(t.lower()):
            out[i, int(hashlib.md5(w.encode()).hexdigest(), 16) % 64] += 1.0
    return out
