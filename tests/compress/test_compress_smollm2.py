"""The SmolLM2 scorer itself: both backends agree, the contrastive path works, memo and ranking."""

from __future__ import annotations

import numpy as np
import pytest
from compress_corpus import CORPUS, QUESTION

from tokenlean_compress import SmolLM2Scorer, WordScorer, split_units
from tokenlean_compress.scoring import _load_lm
from tokenlean_core import TokenleanError

DOC = CORPUS[0]


@pytest.mark.models
def test_rank_and_unit_scores(smollm2_scorer: SmolLM2Scorer) -> None:
    assert isinstance(smollm2_scorer, WordScorer)
    relevance = smollm2_scorer.rank_documents(CORPUS, QUESTION)
    assert relevance.shape == (4,) and int(np.argmax(relevance)) == 0
    units = [u.text for u in split_units(DOC)]
    (scores,) = smollm2_scorer.score_units([units], QUESTION)
    assert scores.shape == (len(units),) and np.isfinite(scores).all()
    # the process shares one model: a second scorer reuses it
    assert SmolLM2Scorer().lm is smollm2_scorer.lm


@pytest.mark.models
@pytest.mark.slow
def test_backends_agree_and_contrastive_runs() -> None:
    short = "The tower was built in 1889 in Paris."
    units = [u.text for u in split_units(short)]
    cpp = SmolLM2Scorer(backend="llama-cpp", question_boost=0.0, n_threads=1)
    hf = SmolLM2Scorer(backend="transformers", question_boost=0.0, n_threads=1)
    (a,) = cpp.score_units([units], None)
    (b,) = hf.score_units([units], None)
    # the same model (Q4_1 GGUF vs its float32 conversion): strongly correlated self-information
    assert np.corrcoef(a, b)[0, 1] > 0.8
    assert _load_lm("llama-cpp", 2048, 1) is not _load_lm("transformers", 2048, 1)
    contrastive = SmolLM2Scorer(backend="transformers", contrastive=True, n_threads=1)
    (c,) = contrastive.score_units([units], "When was the tower built?")
    assert c.shape == (len(units),) and np.isfinite(c).all()
    assert contrastive.name == "smollm2-contrastive"


def test_scorer_validation() -> None:
    with pytest.raises(TokenleanError, match="backend"):
        SmolLM2Scorer(backend="onnx")  # type: ignore[arg-type]
    with pytest.raises(TokenleanError, match="aggregate"):
        SmolLM2Scorer(aggregate="sum")  # type: ignore[arg-type]
    with pytest.raises(TokenleanError, match="n_ctx"):
        SmolLM2Scorer(n_ctx=16)


@pytest.mark.models
@pytest.mark.slow
def test_llmlingua_backend_keeps_provenance() -> None:
    """backend="llmlingua": microsoft llmlingua's PromptCompressor per document (patched for
    transformers 5), still one output per input."""
    import tokenlean_core as tl
    from tokenlean_compress import Compressor

    docs = [
        " ".join(
            [
                "The Eiffel Tower in Paris was built from 1887 to 1889 by Gustave Eiffel's company for "
                "the World Fair, and it was the tallest structure in the world for a long time."
            ]
            * 3
        ),
        " ".join(
            [
                "Bananas are yellow tropical fruits that are rich in potassium and easy to peel for "
                "breakfast, and many people eat them every day."
            ]
            * 3
        ),
    ]
    result = Compressor(backend="llmlingua", rate=0.5, ledger=tl.Ledger()).compress(docs, QUESTION)
    assert result.error is None and result.method == "llmlingua"
    assert sorted(it.index for it in result.items) == [0, 1]
    assert result.items[0].index == 0  # reordered: the answer document first
    for item in result.items:  # llmlingua drops sub-word tokens: compare sizes, not words
        assert item.compressed_tokens <= item.original_tokens
    assert result.compressed_tokens < result.original_tokens
