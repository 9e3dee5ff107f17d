"""The real MiniLM embedder with the shipped guard, end to end (loaded once per session)."""

from __future__ import annotations

import numpy as np
import pytest

from tokenlean_cache import EmbeddedStore, MiniLMEmbedder, SemanticCache
from tokenlean_core import Ledger, MemorySink, TokenleanError

pytestmark = pytest.mark.models


@pytest.fixture
def engine(minilm: MiniLMEmbedder) -> SemanticCache:
    return SemanticCache(
        EmbeddedStore(":memory:"), embedder=minilm, ledger=Ledger(sinks=[MemorySink()])
    )


def test_minilm_paraphrase_hits_and_traps_miss(engine: SemanticCache) -> None:
    assert engine.guard is not None and engine.guard.verifier is not None  # learned guard active
    engine.update("How do I reset my password?", "Use 'Forgot password'.", model="m")
    assert engine.lookup("How can I reset my password?", model="m") is not None
    assert engine.lookup("how do I reset my password", model="m") is not None
    assert engine.lookup("How do I not reset my password?", model="m") is None
    engine.update("Can I get a refund within 30 days?", "Yes.", model="m")
    assert engine.lookup("Can I get a refund within 60 days?", model="m") is None
    engine.update("Who founded Google?", "Larry Page and Sergey Brin.", model="m")
    assert engine.lookup("When was Google founded?", model="m") is None


def test_embeddings_are_memoised(engine: SemanticCache, minilm: MiniLMEmbedder) -> None:
    before = minilm.calls
    engine.lookup("A question never seen before about invoices?", model="m")
    engine.update("A question never seen before about invoices?", "answer", model="m")
    assert minilm.calls - before == 1  # the update reused the lookup's vector
    engine.lookup("A question never seen before about invoices?", model="m")  # exact: no embedding
    assert minilm.calls - before == 1


async def test_async_lookup_with_minilm(engine: SemanticCache) -> None:
    await engine.aupdate("How do I reset my password?", "Use 'Forgot password'.", model="m")
    hit = await engine.alookup("How can I reset my password?", model="m")
    assert hit is not None and hit.payload == "Use 'Forgot password'."
    sync = engine.lookup("How can I reset my password?", model="m")
    assert sync is not None and sync.distance == pytest.approx(hit.distance, abs=1e-6)


def test_single_thread_query_path_gives_the_batch_vectors(minilm: MiniLMEmbedder) -> None:
    import torch

    before = torch.get_num_threads()
    texts = [f"How do I close account number {i} online?" for i in range(10)]
    batch = minilm._encode(texts)  # > 8 texts: torch's own threads
    assert torch.get_num_threads() == before
    for text, vec in zip(texts[:3], batch[:3], strict=True):
        one = minilm._encode([text])  # the per-query path: one intra-op thread
        assert np.abs(one[0] - vec).max() < 1e-5
    assert torch.get_num_threads() == before
    with pytest.raises(TokenleanError, match="query_threads"):
        MiniLMEmbedder(query_threads=0)
