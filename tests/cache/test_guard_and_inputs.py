"""The lexical guard, the learned verifier, and hypothesis tests for keys and inputs."""

from __future__ import annotations

import numpy as np
import pytest
from cache_helpers import toy_embed
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tokenlean_cache import EmbeddedStore, Guard, LearnedVerifier, SemanticCache, lexical_conflict
from tokenlean_cache.guard import _DAYS, _STOP_CAPS, _parse, _Parsed, _wh, _words, pair_features
from tokenlean_core import Ledger, MemorySink
from tokenlean_core.lexical import MONTHS, count_negations, numbers


@pytest.mark.parametrize(
    ("a", "b", "reason"),
    [
        ("How do I open an account?", "How do I not open an account?", "negation"),
        ("Is it safe to drink coffee?", "Isn't it safe to drink coffee?", "negation"),
        ("Can I return it within 30 days?", "Can I return it within 60 days?", "numbers"),
        ("Is 3 days enough?", "Is 5 days enough?", "numbers"),
        ("What happened on 2026-11-22?", "What happened on 2026-11-23?", "numbers"),
        ("Best restaurants in March?", "Best restaurants in June?", "dates"),
        ("Flights from Paris to London", "Flights from London to Paris", "swapped entities"),
        ("How do I learn Python quickly?", "How do I learn Java quickly?", "entities"),
        ("Who founded Google?", "When was Google founded?", "question kind"),
    ],
)
def test_lexical_conflicts(a: str, b: str, reason: str) -> None:
    assert lexical_conflict(a, b) == reason


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("How do I learn Python?", "What is the best way to learn Python?"),
        ("Can I return it within 3 days?", "Is returning it within three days possible?"),
        ("What are some good tips for self study?", "What are the smart tips for self studying?"),
        ("Why is Donald Trump so popular?", "Why do people like Trump?"),
    ],
)
def test_lexical_allows_paraphrases(a: str, b: str) -> None:
    assert lexical_conflict(a, b) is None


def test_shipped_verifier_loads_and_scores() -> None:
    v = LearnedVerifier.load()
    assert v.dim == 384 and 0.0 < v.threshold < 1.0
    rng = np.random.default_rng(0)
    u = rng.normal(size=384).astype(np.float32)
    u /= np.linalg.norm(u)
    s_same = v.score(u, u, "How do I learn Python?", "How do I learn Python?")
    w = rng.normal(size=384).astype(np.float32)
    w /= np.linalg.norm(w)
    s_diff = v.score(u, w, "How do I learn Python?", "Where is the nearest bakery?")
    assert 0.0 <= s_diff < s_same <= 1.0


def test_verifier_fast_path_matches_the_plain_network() -> None:
    """``score`` (standardisation folded into the first layer, no feature concatenation) and the
    batch ``score_features`` both equal the network as stored: standardise, layers, logistic."""
    v = LearnedVerifier.load()
    rng = np.random.default_rng(1)
    pairs = [
        ("How do I learn Python?", "What is the best way to learn Python?"),
        ("Flights from Paris to London on 3 May", "Flights from London to Paris on May 3"),
        ("Why don't cats like water?", "Why do cats like water?"),
    ]
    rows, fast = [], []
    for a, b in pairs:
        u, w = (rng.normal(size=384).astype(np.float32) for _ in range(2))
        u /= np.linalg.norm(u)
        w = 0.7 * u + 0.3 * w / np.linalg.norm(w)
        w /= np.linalg.norm(w)
        x = pair_features(u, w, a, b)
        h = (x[None, :] - v.mean) / v.scale
        for i, (wi, bi) in enumerate(v.layers):
            h = h @ wi + bi
            if i < len(v.layers) - 1:
                h = np.maximum(h, 0.0)
        rows.append(x)
        fast.append(v.score(u, w, a, b))
        assert fast[-1] == pytest.approx(float(1.0 / (1.0 + np.exp(-h[0, 0]))), abs=1e-5)
    assert np.allclose(v.score_features(np.stack(rows)), fast, atol=1e-5)


def _parse_reference(text: str) -> _Parsed:
    """The parser spelled out word by word with core's helpers (the fast one must agree)."""
    words = _words(text)
    lower = [w.lower() for w in words]
    entities = []
    for i, w in enumerate(words):
        if w.lower() in _STOP_CAPS:
            continue
        capitalised = i > 0 and w[:1].isupper()
        mixed = any(c.isupper() for c in w[1:]) and not w.isupper()
        acronym = w.isupper() and len(w) >= 2 and w.isalpha()
        if capitalised or mixed or acronym:
            entities.append(w.lower())
    return _Parsed(
        words=frozenset(lower),
        numbers=numbers(text, words),
        negations=count_negations(words),
        entities=tuple(entities),
        months=frozenset(w for w in lower if w in MONTHS and w != "may"),
        days=frozenset(w for w in lower if w in _DAYS),
        wh=_wh(words),
        length=len(words),
    )


_words_alphabet = st.sampled_from(
    [
        "How",
        "Why",
        "When",
        "who",
        "Paris",
        "london",
        "USA",
        "iPhone",
        "don't",
        "can’t",
        "never",
        "not",
        "three",
        "3",
        "1,000",
        "2nd",
        "10%",
        "May",
        "may",
        "june",
        "Tuesday",
        "weekend",
        "tomorrow",
        "İstanbul",
        "ǅemal",
        "STRASSE",
        "straße",
        "ϒ",
        "٣",
        "I",
        "the",
    ]
)


@given(st.lists(_words_alphabet, max_size=14).map(" ".join) | st.text(max_size=80))
@settings(max_examples=300, deadline=None)
def test_fast_parse_agrees_with_the_word_by_word_reference(text: str) -> None:
    assert _parse.__wrapped__(text) == _parse_reference(text)


def test_guard_without_matching_embedder_keeps_lexical_only() -> None:
    c = SemanticCache(
        ":memory:", embedder=toy_embed, guard="default", ledger=Ledger(sinks=[MemorySink()])
    )
    assert c.guard is not None and c.guard.verifier is None and c.guard.lexical


def test_storing_an_entry_parses_its_question_so_a_hit_parses_only_the_query() -> None:
    c = SemanticCache(
        ":memory:", embedder=toy_embed, guard="default", ledger=Ledger(sinks=[MemorySink()])
    )
    stored, query = "How do I reset my online banking password?", "how do I reset my password?"
    _parse.cache_clear()
    c.update(stored, "Use the reset link.", model="m")
    assert _parse.cache_info().currsize == 1
    hit = c.lookup(query, model="m", max_distance=0.5)
    assert hit is not None and not hit.exact and hit.payload == "Use the reset link."
    info = _parse.cache_info()
    assert (info.misses, info.hits) == (2, 1)  # stored question (at update), query; then a hit


_text = st.one_of(
    st.text(max_size=200),
    st.text(
        alphabet=st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=("Cs",)),
        max_size=50,
    ),
    st.binary(max_size=100).map(lambda b: b.decode("latin-1")),
    st.just(""),
    st.just("x" * 20_000),
    st.just("日本語の質問ですか？ 🤖 ünïcödé"),
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(question=_text, answer=_text, tenant=st.one_of(st.none(), st.text(max_size=30)))
def test_any_input_round_trips_and_keys_are_hashes(
    question: str, answer: str, tenant: str | None
) -> None:
    c = SemanticCache(
        EmbeddedStore(":memory:"),
        embedder=toy_embed,
        guard=Guard(verifier=None),
        ledger=Ledger(sinks=[MemorySink()]),
    )
    q = c.prepare(question, model="m", tenant=tenant)
    for h in (q.key, q.partition, q.tenant):
        assert len(h) == 64 and int(h, 16) >= 0
    assert c.update(question, answer, model="m", tenant=tenant)
    hit = c.lookup(question, model="m", tenant=tenant)
    assert hit is not None and hit.payload == answer and hit.exact
    other = "other tenant" if tenant != "other tenant" else "third"
    assert c.lookup(question, model="m", tenant=other) is None
    c.close()


@settings(max_examples=60, deadline=None)
@given(a=_text, b=_text)
def test_lexical_guard_total_and_symmetric_on_negation(a: str, b: str) -> None:
    r1 = lexical_conflict(a, b)
    r2 = lexical_conflict(b, a)
    assert (r1 is None) == (r2 is None) or {r1, r2} <= {"swapped entities", "question kind", None}
    assert lexical_conflict(a, a) is None
