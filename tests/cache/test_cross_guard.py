"""The cross-encoder guard on its real shipped weights, and its fallback when they cannot load."""

from __future__ import annotations

import importlib.resources
from pathlib import Path

import numpy as np
import pytest
from cache_helpers import toy_embed

from tokenlean_cache import (
    CrossEncoderVerifier,
    EmbeddedStore,
    Guard,
    LearnedVerifier,
    MiniLMEmbedder,
    SemanticCache,
)
from tokenlean_core import Ledger, MemorySink, TokenleanError

# true duplicates (QQP style)
DUPLICATES = [
    ("How do I learn Python?", "What is the best way to learn Python?"),
    ("How do I reset my password?", "How can I reset my password?"),
]
# near-duplicates the lexical check lets through: only the cross-encoder can tell them apart
DIFFERENT_MEANING = [
    ("How do I open a bank account?", "How do I close a bank account?"),
    ("What is the capital of Australia?", "What is the currency of Australia?"),
]
# near-duplicates the guard as a whole must reject (negated, number swapped)
TRAPS = [
    ("How can I lose weight fast?", "Why can't I lose weight fast?"),
    ("Can I get a refund within 30 days?", "Can I get a refund within 60 days?"),
]


def test_shipped_weights_are_small_and_float16() -> None:
    raw = importlib.resources.files("tokenlean_cache") / "data" / "guard_cross_minilm.npz"
    data = np.load(Path(str(raw)), allow_pickle=False)
    params = [k for k in data.files if k.startswith("param:")]
    assert params and all(data[k].dtype == np.float16 for k in params)
    assert 0.0 < float(data["threshold"]) < 1.0
    assert Path(str(raw)).stat().st_size < 8_000_000


@pytest.mark.models
def test_cross_encoder_ranks_duplicates_above_different_questions() -> None:
    v = CrossEncoderVerifier()
    dups = v.score_pairs(DUPLICATES)
    others = v.score_pairs([*DIFFERENT_MEANING, *TRAPS])
    assert min(dups) > max(others), (dups, others)
    # batched and single scoring agree
    assert v.score_text(*DUPLICATES[0]) == pytest.approx(dups[0], abs=1e-4)


@pytest.mark.models
def test_loaded_once_per_process() -> None:
    a, b = CrossEncoderVerifier(), CrossEncoderVerifier()
    assert a.load()[0] is b.load()[0]


@pytest.mark.models
def test_cross_guard_rejects_traps_and_different_meaning() -> None:
    g = Guard(verifier="cross")  # lexical check + the shipped cross-encoder
    assert isinstance(g.verifier, CrossEncoderVerifier) and g.runs_model
    assert 0.0 < g.min_score < 1.0
    for a, b in TRAPS:
        assert not g.check(a, b, distance=0.1).accepted, (a, b)
    for a, b in DIFFERENT_MEANING:
        dec = g.check(a, b, distance=0.1)
        assert not dec.accepted and dec.reason == "verifier" and dec.score is not None, (a, b)
    # near-verbatim repeats skip the model
    near = g.check("How do I reset my password?", "how do I reset my password", distance=0.01)
    assert near.accepted and near.score is None


@pytest.mark.models
async def test_engine_with_minilm_and_cross_encoder(minilm: MiniLMEmbedder) -> None:
    engine = SemanticCache(
        EmbeddedStore(":memory:"),
        embedder=minilm,
        guard=Guard(verifier="cross"),
        ledger=Ledger(sinks=[MemorySink()]),
    )
    assert engine.guard is not None and engine.guard.use_similarity  # MiniLM: blend applies
    engine.update(DIFFERENT_MEANING[0][1], "Visit a branch.", model="m")
    assert engine.lookup(DIFFERENT_MEANING[0][0], model="m") is None
    assert await engine.alookup(DIFFERENT_MEANING[0][0], model="m") is None  # off the loop
    hit = engine.lookup(DIFFERENT_MEANING[0][1], model="m")
    assert hit is not None and hit.exact
    engine.close()


def test_cross_encoder_works_with_any_embedder_mlp_does_not() -> None:
    led = Ledger(sinks=[MemorySink()])
    c = SemanticCache(":memory:", embedder=toy_embed, guard=Guard(verifier="cross"), ledger=led)
    assert c.guard is not None and isinstance(c.guard.verifier, CrossEncoderVerifier)
    # the cosine blend was fitted on MiniLM's scale: another embedder's similarity is not used,
    # and the caller's guard object is left as it was
    user_guard = Guard(verifier="cross")
    c2 = SemanticCache(":memory:", embedder=toy_embed, guard=user_guard, ledger=led)
    assert c2.guard is not None and not c2.guard.use_similarity and user_guard.use_similarity
    m = SemanticCache(":memory:", embedder=toy_embed, guard=Guard(verifier="mlp"), ledger=led)
    assert m.guard is not None and m.guard.verifier is None and m.guard.lexical


def test_bad_verifier_argument() -> None:
    with pytest.raises(TokenleanError, match="verifier must be"):
        Guard(verifier="bert")


def test_missing_weights_fall_back_to_mlp_with_a_warning(tmp_path: Path) -> None:
    g = Guard(verifier=CrossEncoderVerifier(str(tmp_path / "missing.npz")))
    rng = np.random.default_rng(0)
    u = rng.normal(size=384).astype(np.float32)
    u /= np.linalg.norm(u)
    with pytest.warns(RuntimeWarning, match="cross-encoder guard unavailable"):
        dec = g.check("How do I learn Python?", "How do I learn Python fast?", u, u, 0.1)
    assert isinstance(g.verifier, LearnedVerifier)
    assert dec.score is not None  # the MLP verifier scored it
    # the lexical check still runs, and the fallback is not re-announced
    assert not g.check("Is 3 days enough?", "Is 5 days enough?", u, u, 0.1).accepted


@pytest.mark.models
def test_malformed_weights_fall_back(tmp_path: Path) -> None:
    bad = tmp_path / "bad.npz"
    np.savez(bad, **{"param:head.weight": np.zeros((3, 3), np.float16), "threshold": 0.5})
    g = Guard(verifier=CrossEncoderVerifier(str(bad)))
    with pytest.warns(RuntimeWarning, match="malformed"):
        assert g.min_score == LearnedVerifier.load().threshold
    assert isinstance(g.verifier, LearnedVerifier)


def _with_blend(tmp_path: Path, blend: list[float]) -> str:
    raw = importlib.resources.files("tokenlean_cache") / "data" / "guard_cross_minilm.npz"
    data = np.load(Path(str(raw)), allow_pickle=False)
    arrays = {k: data[k] for k in data.files if k != "blend"}
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "blend.npz"
    np.savez(path, **arrays, blend=np.asarray(blend, np.float32))
    return str(path)


@pytest.mark.models
def test_blend_weighs_the_similarity_only_when_given(tmp_path: Path) -> None:
    plain = CrossEncoderVerifier(_with_blend(tmp_path, [1.0, 0.0, 0.0]))
    q, c = DUPLICATES[0]
    base = plain.score_text(q, c)
    assert plain.blends_similarity
    assert plain.score_text(q, c, 0.9) == pytest.approx(base, abs=1e-6)  # w_sim 0: unchanged
    tilted = CrossEncoderVerifier(_with_blend(tmp_path / "t", [1.0, 8.0, -4.0]))
    high, low = tilted.score_text(q, c, 0.95), tilted.score_text(q, c, 0.40)
    assert high > base > low  # logit + 8 * 0.95 - 4 > logit > logit + 8 * 0.40 - 4
    assert tilted.score_text(q, c) == pytest.approx(base, abs=1e-6)  # no similarity: no blend
    with pytest.raises(TokenleanError, match="similarities"):
        tilted.score_pairs([(q, c)], similarities=[0.5, 0.5])
    # the guard hands over the similarity from the distance it is given
    g = Guard(verifier=tilted)
    assert g.score(q, c, distance=0.05) == pytest.approx(high, abs=1e-6)


@pytest.mark.models
def test_malformed_blend_is_rejected(tmp_path: Path) -> None:
    v = CrossEncoderVerifier(_with_blend(tmp_path, [1.0, 2.0]))
    with pytest.raises(TokenleanError, match="blend"):
        v.load()
