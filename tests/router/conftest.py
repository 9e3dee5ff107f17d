"""Fixtures of the tokenlean-router tests: a synthetic labelled dataset where the large model is
needed for arithmetic and code requests, a gate trained on it with the deterministic hashing
embedder, a memory ledger, and the real MiniLM embedder (loaded once per session)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from router_helpers import TIERS, make_dataset

from tokenlean_core import Ledger, MemorySink
from tokenlean_router import GateModel, HashingEmbedder, Router, train_gate


@pytest.fixture(scope="session")
def dataset() -> dict[str, Any]:
    texts, weak, strong = make_dataset(900, seed=7)
    return {"texts": texts, "weak": weak, "strong": strong}


@pytest.fixture(scope="session")
def embedder() -> HashingEmbedder:
    return HashingEmbedder(dim=128)


@pytest.fixture(scope="session")
def gate(dataset: dict[str, Any], embedder: HashingEmbedder) -> GateModel:
    return train_gate(
        dataset["texts"][:500],
        dataset["weak"][:500],
        dataset["strong"][:500],
        embedder=embedder,
    )


@pytest.fixture
def ledger() -> Ledger:
    return Ledger([MemorySink()])


@pytest.fixture
def router(gate: GateModel, embedder: HashingEmbedder, ledger: Ledger) -> Router:
    r = Router(TIERS, gate, embedder, ledger=ledger)
    r.set_thresholds([0.2])
    return r


@pytest.fixture(scope="session")
def minilm() -> Iterator[Any]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from tokenlean_router import MiniLMEmbedder

    emb = MiniLMEmbedder()
    emb(["warm up"])
    return emb
