"""The lexical guard, the learned verifier, and hypothesis tests for keys and inputs."""

from __future__ import annotations

import numpy as np
import pytest
from cache_helpers import toy_embed
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tokenlean_cache import EmbeddedStore, Guard, LearnedVerifier, SemanticCache, lexical_conflict
from tokenlean_core import Ledger, MemorySink


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


def test_guard_without_matching_embedder_keeps_lexical_only() -> None:
    c = SemanticCache(
        ":memory:", embedder=toy_embed, guard="default", ledger=Ledger(sinks=[MemorySink()])
    )
    assert c.guard is not None and c.guard.verifier is None and c.guard.lexical


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
