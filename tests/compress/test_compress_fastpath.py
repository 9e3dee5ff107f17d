"""The SmolLM2 scorer's fast path: a cheap coarse ranker (MiniLM / BM25) so the LM only reads the
documents the coarse level keeps, and batched forward passes that equal the unbatched ones."""

from __future__ import annotations

import numpy as np
import pytest
from compress_corpus import CORPUS, QUESTION

import tokenlean_core as tl
from tokenlean_compress import Compressor, SmolLM2Scorer, split_units
from tokenlean_compress.scoring import _load_lm
from tokenlean_core import TokenleanError

# eight passages of different lengths, one answering the question
PASSAGES = [
    "Bananas are yellow tropical fruits that are rich in potassium and easy to peel. " * 3,
    "Berlin is the capital of Germany; its famous Brandenburg Gate was finished in 1791. " * 2,
    "The Eiffel Tower in Paris was built from 1887 to 1889 by Gustave Eiffel's company for the "
    "World Fair, and it was the tallest structure in the world for four decades. " * 2,
    "Photosynthesis turns light, water and carbon dioxide into sugar and oxygen in plants.",
    "The Pacific is the largest and deepest ocean on Earth, covering a third of its surface. " * 3,
    "Mozart wrote more than six hundred works, among them operas, symphonies and concertos. " * 2,
    "Honey bees live in colonies with one queen, thousands of workers and a few drones. " * 4,
    "The Great Wall of China was built over many centuries by several dynasties. " * 2,
]
GOLD = 2


@pytest.mark.models
def test_batched_logprobs_equal_unbatched() -> None:
    lm = _load_lm("transformers", 2048, None)
    seqs = [lm.tokenize(p)[0] for p in PASSAGES]
    assert len({len(s) for s in seqs}) > 3  # padding really happens
    one = lm.logprobs(seqs, batch_tokens=0)  # one sequence per forward pass
    batched = lm.logprobs(seqs, batch_tokens=4096)  # all eight in one padded batch
    small = lm.logprobs(seqs, batch_tokens=300)  # a few batches
    for a, b, c, s in zip(one, batched, small, seqs, strict=True):
        assert a.shape == b.shape == c.shape == (len(s),)
        assert np.isnan(a[0]) and np.isnan(b[0])
        np.testing.assert_allclose(b[1:], a[1:], atol=1e-4, rtol=0)
        np.testing.assert_allclose(c[1:], a[1:], atol=1e-4, rtol=0)
        assert np.all(a[1:] <= 0)


@pytest.mark.models
def test_minilm_ranker_ranks_without_the_lm() -> None:
    fast = SmolLM2Scorer(ranker="minilm")
    relevance = fast.rank_documents([*CORPUS, "   "], QUESTION)
    assert fast.ranker_used == "minilm"
    assert int(np.argmax(relevance)) == 0 and relevance[-1] == -np.inf
    assert not fast._info and not fast._rank  # the LM did not run
    assert len(fast._sim) == len(CORPUS)  # memoised per (document, question)
    again = fast.rank_documents(CORPUS, QUESTION)
    np.testing.assert_array_equal(again, relevance[:-1])
    bm25 = SmolLM2Scorer(ranker="bm25")
    assert int(np.argmax(bm25.rank_documents(CORPUS, QUESTION))) == 0
    assert bm25.ranker_used == "bm25"


@pytest.mark.models
@pytest.mark.slow
def test_fast_path_scores_only_kept_documents() -> None:
    """At 4x the coarse level keeps few documents: the fast path runs the LM on those only, the
    LM-ranked path on all; the kept documents' token scores are the same either way."""
    fast = SmolLM2Scorer(ranker="minilm")
    full = SmolLM2Scorer(ranker="lm")
    res_fast = Compressor(scorer=fast, rate=0.25, ledger=tl.Ledger()).compress(PASSAGES, QUESTION)
    ledger = tl.Ledger()
    res_full = Compressor(scorer=full, rate=0.25, ledger=ledger).compress(PASSAGES, QUESTION)
    for res, ranker in ((res_fast, "minilm"), (res_full, "lm")):
        assert res.error is None and res.ranker == ranker
        assert res.items[0].index == GOLD  # the answer passage ranked first
        assert "1889" in res.items[0].text
        assert res.dropped  # the coarse level dropped documents
    assert ledger.records()[-1].detail["ranker"] == "lm"
    kept_fast = {PASSAGES[it.index] for it in res_fast.items}
    scored_fast = {doc for doc, _ in fast._info}
    assert scored_fast == kept_fast  # the LM read the kept documents only
    assert {doc for doc, _ in full._info} == set(PASSAGES)  # LM ranking: every document
    assert len(full._rank) == len(PASSAGES)
    # token importances do not depend on how documents were ranked (causal LM: the question
    # suffix of the ranking pass does not change a document token's -log p)
    units = [u.text for u in split_units(PASSAGES[GOLD])]
    (a,) = fast.score_units([units], QUESTION)
    (b,) = full.score_units([units], QUESTION)
    np.testing.assert_allclose(a, b, atol=1e-4)


def test_ranker_validation() -> None:
    with pytest.raises(TokenleanError, match="ranker"):
        SmolLM2Scorer(ranker="sentbert")  # type: ignore[arg-type]
