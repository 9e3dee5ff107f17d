"""The distilled MiniLM keep/drop scorer (tokenlean_compress.distilled), with the shipped head, offline."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("transformers")

from tokenlean_compress.distilled import DistilledScorer
from tokenlean_compress.text import split_units

pytestmark = pytest.mark.models

FILLER = (
    "The weather in the valley is usually mild in spring and people enjoy walking along the river. "
    "Many shops close early on Sundays and the market square becomes quiet in the evening. "
)
ANSWER = "The Eiffel Tower was completed in March 1889 for the World's Fair in Paris. "
MORE_FILLER = (
    "Local bakeries are known for bread, and the town library opens at nine every weekday."
)
QUESTION = "when was the eiffel tower completed"


@pytest.fixture(scope="module")
def scorer() -> DistilledScorer:
    return DistilledScorer()


def _units(text: str) -> list[str]:
    return [u.text for u in split_units(text)]


def test_shipped_head_has_a_card_with_its_split(scorer: DistilledScorer) -> None:
    assert scorer.head_path.name == "distilled_head.npz"
    card = json.loads(scorer.head_path.with_suffix(".json").read_text())
    assert "train split only" in card["split"]
    assert card["metrics_held_out"]["held_out_examples"] > 0


def test_scores_are_per_unit_and_in_range(scorer: DistilledScorer) -> None:
    docs = [_units(FILLER + ANSWER), _units("Ein kurzer deutscher Satz über Häuser."), []]
    scores = scorer.score_units(docs, QUESTION)
    assert [len(s) for s in scores] == [len(d) for d in docs]
    for s in scores[:2]:
        assert np.all((s >= 0.0) & (s <= 1.0))
        assert np.all(np.isfinite(s))
    # without a question (LLMLingua-2 style) it still scores every unit
    plain = scorer.score_units(docs[:1], None)
    assert len(plain[0]) == len(docs[0])


def test_answer_sentence_outscores_filler(scorer: DistilledScorer) -> None:
    text = FILLER + ANSWER + MORE_FILLER
    units = split_units(text)
    (scores,) = scorer.score_units([[u.text for u in units]], QUESTION)
    a0 = text.index(ANSWER)
    a1 = a0 + len(ANSWER)
    in_answer = np.array([a0 <= u.start < a1 for u in units])
    assert scores[in_answer].mean() > scores[~in_answer].mean()
    # at a 2x budget, the answer ("1889") survives a plain top-k by score
    k = len(units) // 2
    keep = np.argsort(-scores, kind="stable")[:k]
    assert any("1889" in units[i].text for i in keep)


def test_rank_documents_puts_the_relevant_passage_first(scorer: DistilledScorer) -> None:
    docs = [FILLER, MORE_FILLER, ANSWER]
    rel = scorer.rank_documents(docs, QUESTION)
    assert rel.shape == (3,)
    assert int(np.argmax(rel)) == 2


def test_long_document_is_scored_across_windows(scorer: DistilledScorer) -> None:
    text = (FILLER * 12) + ANSWER  # > 256 encoder tokens: several windows
    units = _units(text)
    (scores,) = scorer.score_units([units], QUESTION)
    assert len(scores) == len(units)
    assert scores[-len(_units(ANSWER)) :].mean() > scores[: len(_units(FILLER))].mean()
