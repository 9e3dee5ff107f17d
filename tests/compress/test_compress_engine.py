"""The engine with the model-free LexicalScorer (fast): budgets, protection, provenance of items,
coarse-to-fine behaviour, ledger accounting, failure fallback, async twin, validation."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tokenlean_core as tl
from tokenlean_compress import (
    CompressConfig,
    Compressor,
    CompressWarning,
    LexicalScorer,
    WordScorer,
    split_units,
)
from tokenlean_core import TokenleanError

QUESTION = "When was the Eiffel Tower built and how tall is it?"
DOCS = [
    "Bananas are yellow fruits rich in potassium. They grow in tropical places around the world "
    "and are eaten raw, cooked or dried by many people every single day of the year.",
    "The Eiffel Tower is a wrought-iron lattice tower in Paris, France. It was built between 1887 "
    "and 1889 by the company of Gustave Eiffel as the entrance to the World Fair, and it is 330 "
    "metres tall. See https://www.toureiffel.paris/en for tickets.",
    "Berlin is the capital of Germany and its largest city. It has many museums, parks and "
    "famous buildings, and millions of tourists visit the city every year.",
    "Python code to count words:\n```python\ndef count(text):\n    return len(text.split())\n```\n"
    'Its config is {"lang": "en", "max": 512} and it needs version 3.10 or later.',
]


def _compressor(**kw: object) -> Compressor:
    kw.setdefault("scorer", LexicalScorer())
    kw.setdefault("ledger", tl.Ledger())
    return Compressor(CompressConfig(**kw))  # type: ignore[arg-type]


def _count(texts: Sequence[str]) -> int:
    return sum(int(tl.count_tokens(t, "gpt-4o-mini")) for t in texts)


@pytest.mark.parametrize("rate", [0.25, 0.5, 0.75])
@pytest.mark.parametrize("method", ["longllmlingua", "llmlingua2"])
def test_rate_is_met_on_the_returned_texts(rate: float, method: str) -> None:
    result = _compressor(method=method).compress(DOCS, QUESTION, rate=rate)
    total = _count(DOCS)
    assert result.original_tokens == total
    assert result.compressed_tokens == _count(result.texts)
    protected = sum(
        int(tl.count_tokens(u.text, "gpt-4o-mini"))
        for d in DOCS
        for u in split_units(d)
        if u.protected
    )
    # met, unless the protected spans alone exceed it (llmlingua2 never drops whole documents)
    assert result.compressed_tokens <= max(rate * total, protected + len(DOCS))
    # close to the target (the greedy fill leaves little slack), unless protected spans dominate
    assert result.compressed_tokens >= min(rate * total * 0.85, protected * 0.5)
    assert result.ratio == pytest.approx(total / result.compressed_tokens)


@pytest.mark.parametrize("target", [40, 80, 120])
def test_target_tokens_budget_for_the_whole_context(target: int) -> None:
    result = _compressor().compress(DOCS, QUESTION, target_tokens=target)
    assert result.compressed_tokens == _count(result.texts) <= target


def test_protected_spans_and_force_tokens_survive_verbatim() -> None:
    result = _compressor(force_tokens=("lattice", "Gustave Eiffel")).compress(
        DOCS, QUESTION, rate=0.4
    )
    out = "\n".join(result.texts)
    for span in [
        "1887",
        "1889",
        "330",
        "https://www.toureiffel.paris/en",
        "lattice",
        "Gustave Eiffel",
    ]:
        assert span in out
    code_doc = [it for it in result.items if it.index == 3]
    if code_doc:  # kept: the code block and the JSON are intact
        assert "```python\ndef count(text):\n    return len(text.split())\n```" in code_doc[0].text
        assert '{"lang": "en", "max": 512}' in code_doc[0].text


def test_coarse_to_fine_ranks_reorders_and_drops() -> None:
    result = _compressor().compress(DOCS, QUESTION, rate=0.25)
    assert result.items[0].index == 1 and result.items[0].rank == 0  # the answer document first
    assert [it.rank for it in result.items] == sorted(it.rank for it in result.items)
    assert result.dropped and all(d.dropped and d.text == "" for d in result.dropped)
    assert {it.index for it in result.items} | {d.index for d in result.dropped} == set(range(4))
    # dynamic ratio: the top document keeps a larger share than the lower-ranked kept ones
    kept = {it.index: it.compressed_tokens / it.original_tokens for it in result.items}
    assert kept[1] == max(kept.values())


def test_no_reorder_keeps_input_order_and_llmlingua2_ignores_the_question() -> None:
    ordered = _compressor(reorder=False).compress(DOCS, QUESTION, rate=0.5)
    assert [it.index for it in ordered.items] == sorted(it.index for it in ordered.items)
    agnostic = _compressor(method="llmlingua2").compress(DOCS, QUESTION, rate=0.5)
    assert [it.index for it in agnostic.items] == [0, 1, 2, 3] and not agnostic.dropped
    assert agnostic.texts == _compressor(method="llmlingua2").compress(DOCS, None, rate=0.5).texts


def test_no_question_means_uniform_compression_without_dropping() -> None:
    result = _compressor().compress(DOCS, None, rate=0.5)
    assert [it.index for it in result.items] == [0, 1, 2, 3]
    assert result.compressed_tokens <= 0.5 * result.original_tokens


def test_compressed_text_is_a_subsequence_of_the_words() -> None:
    result = _compressor().compress(DOCS, QUESTION, rate=0.5)
    for item in result.items:
        source = DOCS[item.index].split()
        it = iter(source)
        assert all(any(w == s for s in it) for w in item.text.split()), item.text


@given(
    st.lists(
        st.sampled_from(["1956", "2007,", "$225", "(1963", "of", "Bardeen", "and", "\n", ";"]),
        min_size=1,
        max_size=30,
    ),
    st.lists(st.booleans(), min_size=30, max_size=30),
)
def test_dropped_units_never_fuse_their_neighbours(words: list[str], keep: list[bool]) -> None:
    from tokenlean_compress.engine import _assemble

    text = " ".join(words)
    units = split_units(text)
    mask = np.array([keep[i % len(keep)] or u.protected for i, u in enumerate(units)])
    out = _assemble(units, mask)
    for word in out.split():  # every output word occurs in the source: nothing glued
        assert word in text, (word, text, out)
    assert "1956of" not in out and "2007Bardeen" not in out


def test_ledger_records_the_saving_and_the_time() -> None:
    ledger = tl.Ledger()
    result = _compressor(ledger=ledger).compress(DOCS, QUESTION, rate=0.5)
    (rec,) = [r for r in ledger.records() if r.component == "compress"]
    assert rec.kind == "saving"
    assert (
        rec.usage is not None
        and rec.usage.input_tokens == result.original_tokens - result.compressed_tokens
    )
    assert rec.latency_s is not None and rec.latency_s < 0  # compression cost time
    assert rec.usd is not None and rec.usd > 0  # priced as gpt-4o-mini input tokens
    assert rec.detail["compressed_tokens"] == result.compressed_tokens


class _Broken:
    name = "broken"

    def score_units(self, docs: Sequence[Sequence[str]], question: str | None) -> list[np.ndarray]:
        raise RuntimeError("scorer exploded")

    def rank_documents(self, docs: Sequence[str], question: str) -> np.ndarray:
        raise RuntimeError("scorer exploded")


def test_failure_returns_the_originals_with_a_warning_and_an_event() -> None:
    ledger = tl.Ledger()
    comp = _compressor(scorer=_Broken(), ledger=ledger)
    with pytest.warns(CompressWarning, match="scorer exploded"):
        result = comp.compress(DOCS, QUESTION, rate=0.5)
    assert result.error and "RuntimeError" in result.error
    assert result.texts == DOCS and result.ratio == 1.0
    (event,) = ledger.records()
    assert event.kind == "event" and event.name == "failure" and event.component == "compress"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.one_of(
            st.just(""),
            st.text(max_size=200),
            st.sampled_from(DOCS),
            st.just("東京は日本の首都です。人口は約1400万人で、世界最大の都市圏の一つです。" * 3),
            st.just("Ceci est un texte français avec des accents: été, garçon, où. " * 4),
        ),
        max_size=6,
    ),
    st.floats(0.1, 1.0),
)
def test_arbitrary_documents_never_break_and_meet_the_budget(docs: list[str], rate: float) -> None:
    result = _compressor().compress(docs, QUESTION, rate=rate)
    assert result.error is None
    assert {it.index for it in result.items} | {d.index for d in result.dropped} == set(
        range(len(docs))
    )
    protected = sum(
        int(tl.count_tokens(u.text, "gpt-4o-mini"))
        for d in docs
        for u in split_units(d)
        if u.protected
    )
    assert result.compressed_tokens <= max(rate * result.original_tokens, protected) + 2 * len(docs)
    for item in result.items:
        if not docs[item.index].strip():
            assert item.text == docs[item.index]


def test_one_huge_document() -> None:
    topics = ["apples", "rivers", "engines", "poems", "stars", "bridges", "clouds"]
    huge = " ".join(
        f"This sentence talks about {topics[i % 7]} in some detail." for i in range(1500)
    )
    result = _compressor().compress([huge], "What about rivers?", target_tokens=1000)
    assert 900 <= result.compressed_tokens <= 1000 and result.original_tokens > 10 * 1000
    assert result.items[0].text.count("rivers") > 100  # the question's word ranks high


async def test_async_twin_matches_sync() -> None:
    comp = _compressor()
    sync = comp.compress(DOCS, QUESTION, rate=0.5)
    results = await asyncio.gather(*(comp.acompress(DOCS, QUESTION, rate=0.5) for _ in range(3)))
    assert all(r.texts == sync.texts for r in results)


def test_validation_errors_are_clear() -> None:
    with pytest.raises(TokenleanError, match="either rate or target_tokens"):
        CompressConfig(rate=0.5, target_tokens=100)
    with pytest.raises(TokenleanError, match="fraction of tokens kept"):
        CompressConfig(rate=1.5)
    with pytest.raises(TokenleanError, match="method"):
        CompressConfig(method="llmlingua3")  # type: ignore[arg-type]
    with pytest.raises(TokenleanError, match="unknown scorer"):
        CompressConfig(scorer="gpt-7")
    with pytest.raises(TokenleanError, match="not a WordScorer"):
        CompressConfig(scorer=object())  # type: ignore[arg-type]
    with pytest.raises(TokenleanError, match="force_tokens"):
        CompressConfig(force_tokens="abc")  # type: ignore[arg-type]
    with pytest.raises(TokenleanError, match="target_tokens"):
        _compressor().compress(DOCS, QUESTION, target_tokens=-1)
    assert isinstance(LexicalScorer(), WordScorer)


def test_public_api_is_pinned() -> None:
    import tokenlean_compress

    assert set(tokenlean_compress.__all__) == {
        "RESTRICTIVE_PROMPT",
        "CompressConfig",
        "CompressWarning",
        "CompressedItem",
        "CompressionResult",
        "Compressor",
        "LexicalScorer",
        "ProtectConfig",
        "SmolLM2Scorer",
        "Unit",
        "WordScorer",
        "__version__",
        "protected_spans",
        "resolve_scorer",
        "split_units",
    }
    assert all(hasattr(tokenlean_compress, name) for name in tokenlean_compress.__all__)


def test_a_name_in_brackets_is_kept_or_dropped_whole() -> None:
    from tokenlean_compress.engine import _name_groups

    units = split_units('Steve marries Barbara Harper (Beverly Garland), and "Dodie Lyn" too.')
    texts = [[units[i].text.strip() for i in g] for g in _name_groups(units)]
    assert ["(Beverly", "Garland),"] in texts  # one group, not "(Beverly" alone
    assert ["Barbara", "Harper"] in texts and ['"Dodie', 'Lyn"'] in texts
    assert ["Steve"] in texts  # a bracket opens a new name: not joined to the word before

    # through the engine: whatever the scores, the bracketed name is never split
    class FavoursFirstName:  # a WordScorer that loves "(Beverly" and ignores "Garland)"
        name = "first-name"

        def score_units(
            self, docs: Sequence[Sequence[str]], question: str | None
        ) -> list[np.ndarray]:
            return [np.asarray([5.0 if "Beverly" in u else 0.0 for u in d]) for d in docs]

        def rank_documents(self, docs: Sequence[str], question: str) -> np.ndarray:
            return np.ones(len(docs))

    doc = "Barbara Harper (Beverly Garland) was his wife. " + "Filler words follow here. " * 12
    out = _compressor(scorer=FavoursFirstName(), rate=0.3).compress([doc], question="wife?")
    text = out.items[0].text
    assert ("Beverly" in text) == ("Garland" in text), text
