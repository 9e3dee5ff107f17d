"""Gate training, scoring, persistence, deterministic decisions and calibration."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from router_helpers import TIERS

from tokenlean_core import Price
from tokenlean_router import (
    SIGNAL_NAMES,
    GateFormatError,
    GateModel,
    HashingEmbedder,
    Router,
    RouterConfigError,
    Tier,
    task_signals,
    threshold_for_cost,
    threshold_for_share,
    train_gate,
)
from tokenlean_router.metrics import routellm_curve


def test_gate_learns_which_requests_need_the_large_model(
    gate: GateModel, dataset: dict[str, Any], embedder: HashingEmbedder
) -> None:
    texts = dataset["texts"][500:]
    scores = gate.score(texts, embedder(texts))
    curve = routellm_curve(scores, dataset["weak"][500:], dataset["strong"][500:], 20)
    assert curve.apgr > 0.75  # random is 0.5
    hard = gate.score(["Calculate 17 * 23 + 5 and show each step."], embedder(["x"]))
    easy = gate.score(["What is the capital of Peru?"], embedder(["x"]))
    assert hard[0] > easy[0]


def test_decisions_are_deterministic_for_a_fixed_model_and_threshold(
    router: Router, dataset: dict[str, Any], tmp_path: Path, embedder: HashingEmbedder
) -> None:
    texts = dataset["texts"][500:700]
    first = [(d.tier, d.score) for d in router.decide_many(texts)]
    second = [(router.decide(t).tier, router.decide(t).score) for t in texts]
    assert [t for t, _ in first] == [t for t, _ in second]
    assert np.allclose([s for _, s in first], [s for _, s in second])
    # a reloaded gate (same file) with the same threshold decides the same
    path = router.gate.save(tmp_path / "gate")
    again = Router(TIERS, path, embedder, thresholds=router.thresholds)
    assert [d.tier for d in again.decide_many(texts)] == [t for t, _ in first]
    assert {t for t, _ in first} == {"small-model", "large-model"}


def test_save_load_roundtrip_is_exact(gate: GateModel, tmp_path: Path) -> None:
    path = gate.save(tmp_path / "g.npz")
    loaded = GateModel.load(path)
    x = np.random.default_rng(0).normal(size=(5, gate.n_features))
    assert np.array_equal(gate.score_features(x), loaded.score_features(x))
    assert loaded.embedder_name == gate.embedder_name == "hashing-128-3"


def test_load_rejects_foreign_and_pickled_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.npz"
    np.savez(bad, header=np.frombuffer(b'{"format": "other"}', dtype=np.uint8))
    with pytest.raises(GateFormatError, match="not a tokenlean-router gate"):
        GateModel.load(bad)
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, header=np.array([{"format": "x"}], dtype=object))
    with pytest.raises(GateFormatError):
        GateModel.load(pickled)
    with pytest.raises(GateFormatError):
        GateModel.load(tmp_path / "missing.npz")


def test_router_rejects_a_different_embedder(gate: GateModel) -> None:
    with pytest.raises(RouterConfigError, match="trained with embedder"):
        Router(TIERS, gate, HashingEmbedder(dim=64))
    other = Router(TIERS, gate, lambda texts: np.zeros((len(texts), 64)))
    with pytest.raises(RouterConfigError, match="128-d embeddings"):
        other.decide("hello")


def test_router_validates_configuration(gate: GateModel, embedder: HashingEmbedder) -> None:
    with pytest.raises(RouterConfigError, match="at least two"):
        Router(["only"], gate, embedder)
    with pytest.raises(RouterConfigError, match="unique"):
        Router(["a", "a"], gate, embedder)
    r = Router(["a", "b", "c"], gate, embedder)
    with pytest.raises(RouterConfigError, match="need 2 thresholds"):
        r.set_thresholds([0.1])
    with pytest.raises(RouterConfigError, match="ascending"):
        r.set_thresholds([0.5, 0.1])
    with pytest.raises(RouterConfigError):
        r.decide_many("not a list")  # type: ignore[arg-type]


def test_three_tiers_follow_thresholds(gate: GateModel, embedder: HashingEmbedder) -> None:
    r = Router(["s", "m", "l"], gate, embedder, thresholds=[-0.1, 0.3])
    assert r.tier_for_score(-0.5) == 0
    assert r.tier_for_score(-0.1) == 1  # score >= threshold goes up
    assert r.tier_for_score(0.29) == 1
    assert r.tier_for_score(0.3) == 2


def test_calibration_reaches_target_share_on_held_out_data(
    router: Router, dataset: dict[str, Any]
) -> None:
    calib, test = dataset["texts"][500:700], dataset["texts"][700:900]
    for target in (0.2, 0.4, 0.6):
        router.calibrate(calib, target)
        share = np.mean([d.tier == "large-model" for d in router.decide_many(test)])
        assert abs(share - target) <= 0.08, (target, share)


def test_cost_calibration_respects_the_budget(router: Router, dataset: dict[str, Any]) -> None:
    calib, test = dataset["texts"][500:700], dataset["texts"][700:900]
    small = Price(0.5, 1.5)
    large = Price(10.0, 30.0)
    from tokenlean_core import Usage, count_tokens

    def mean_cost(texts: list[str]) -> float:
        total = 0.0
        for d, t in zip(router.decide_many(texts), texts, strict=True):
            u = Usage(int(count_tokens(t)), 100)
            total += (large if d.tier == "large-model" else small).cost(u)
        return total / len(texts)

    all_small = np.mean([small.cost(Usage(int(count_tokens(t)), 100)) for t in calib])
    all_large = np.mean([large.cost(Usage(int(count_tokens(t)), 100)) for t in calib])
    target = all_small + 0.3 * (all_large - all_small)
    router.calibrate(calib, target_cost=float(target), tokens_out=100)
    assert mean_cost(calib) <= target + 1e-12
    assert abs(mean_cost(test) - target) / target < 0.25
    with pytest.raises(RouterConfigError, match="below the all-weak cost"):
        router.calibrate(calib, target_cost=float(all_small) / 2, tokens_out=100)
    with pytest.raises(RouterConfigError, match="exactly one"):
        router.calibrate(calib)


def test_threshold_for_share_edges() -> None:
    s = np.array([0.1, 0.2, 0.2, 0.3, 0.9])
    assert math.isinf(threshold_for_share(s, 0.0))
    assert threshold_for_share(s, 1.0) == 0.1
    th = threshold_for_share(s, 0.4)
    assert np.mean(s >= th) == pytest.approx(0.4)
    with pytest.raises(RouterConfigError):
        threshold_for_share(s, 1.5)
    with pytest.raises(RouterConfigError):
        threshold_for_share([], 0.5)
    th_c = threshold_for_cost(s, 1.0, 11.0, 1.0 + 10.0 * 0.2)
    assert np.mean(s >= th_c) == pytest.approx(0.2)


def test_train_gate_validates_inputs(embedder: HashingEmbedder) -> None:
    with pytest.raises(RouterConfigError, match="differ in length"):
        train_gate(["a"] * 20, [True] * 19, [True] * 20, embedder=embedder)
    with pytest.raises(RouterConfigError, match="at least 10"):
        train_gate(["a"] * 3, [True] * 3, [True] * 3, embedder=embedder)
    with pytest.raises(RouterConfigError, match="embeddings or an embedder"):
        train_gate(["a"] * 20, [True] * 20, [False] * 20)


def test_objectives_and_progress(dataset: dict[str, Any], embedder: HashingEmbedder) -> None:
    seen: list[tuple[str, float]] = []
    for objective in ("weak_wrong", "strong_only"):
        g = train_gate(
            dataset["texts"][:300],
            dataset["weak"][:300],
            dataset["strong"][:300],
            embedder=embedder,
            objective=objective,
            progress=lambda stage, frac: seen.append((stage, frac)),
        )
        texts = dataset["texts"][500:]
        curve = routellm_curve(
            g.score(texts, embedder(texts)), dataset["weak"][500:], dataset["strong"][500:], 20
        )
        assert curve.apgr > 0.7
    assert ("fit", 1.0) in seen and any(s == "embed" for s, _ in seen)


def test_task_signals_shape_and_markers() -> None:
    sig = task_signals(["Calculate 3 * 4 = 12 step by step", "hello"])
    assert sig.shape == (2, len(SIGNAL_NAMES))
    i = SIGNAL_NAMES.index("math_ops")
    assert sig[0, i] > sig[1, i]
    with pytest.raises(TypeError):
        task_signals("one string")  # type: ignore[arg-type]
    assert task_signals([]).shape == (0, len(SIGNAL_NAMES))


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=st.text(max_size=400))
def test_any_text_routes_to_a_valid_tier_deterministically(router: Router, text: str) -> None:
    d1, d2 = router.decide(text), router.decide(text)
    assert d1.tier in ("small-model", "large-model")
    assert d1 == d2
    assert d1.score is not None and math.isfinite(d1.score)
    sig = task_signals([text])
    assert np.isfinite(sig).all()


async def test_async_decision_matches_sync(router: Router) -> None:
    text = "Solve 3x + 4 = 19 for x and explain why."
    assert (await router.adecide(text)) == router.decide(text)
    assert Tier.per_million("x", 1, 2).price == Price(1, 2)


def test_lexical_features_train_save_and_load(
    dataset: dict[str, Any], embedder: HashingEmbedder, tmp_path: Path
) -> None:
    texts = dataset["texts"]
    g = train_gate(
        texts[:300],
        dataset["weak"][:300],
        dataset["strong"][:300],
        embedder=embedder,
        lexical_dim=1024,
    )
    assert g.lexical_dim == 1024 and g.n_features == g.n_dense + 1024
    held = texts[500:]
    scores = g.score(held, embedder(held))
    assert routellm_curve(scores, dataset["weak"][500:], dataset["strong"][500:], 20).apgr > 0.7
    loaded = GateModel.load(g.save(tmp_path / "lex"))
    assert np.allclose(loaded.score(held, embedder(held)), scores)
    with pytest.raises(RouterConfigError, match="lexical_dim"):
        train_gate(
            texts[:50],
            dataset["weak"][:50],
            dataset["strong"][:50],
            embedder=embedder,
            lexical_dim=3,
        )


def test_neighbour_and_group_priors_blend_save_and_load(
    dataset: dict[str, Any], embedder: HashingEmbedder, tmp_path: Path
) -> None:
    texts, weak, strong = dataset["texts"], dataset["weak"], dataset["strong"]
    # a group label the gate can only learn from the labels: "g-hard" requests need the large
    # model, whatever their text says
    need_large = np.asarray(strong, bool) & ~np.asarray(weak, bool)
    groups = ["g-hard" if x else "g-easy" for x in need_large]
    emb = embedder(texts)
    plain = train_gate(texts[:500], weak[:500], strong[:500], embeddings=emb[:500])
    blended = train_gate(
        texts[:500],
        weak[:500],
        strong[:500],
        embeddings=emb[:500],
        neighbours=15,
        groups=groups[:500],
    )
    assert set(blended.blend) == {"logistic", "neighbours", "groups"}
    held = texts[500:]
    curve_plain = routellm_curve(plain.score(held, emb[500:]), weak[500:], strong[500:], 20)
    with_groups = blended.score(held, emb[500:], groups=groups[500:])
    curve_groups = routellm_curve(with_groups, weak[500:], strong[500:], 20)
    assert curve_groups.apgr > curve_plain.apgr
    # unknown/missing groups fall back to the global rates (no error, a constant prior)
    no_groups = blended.score(held, emb[500:])
    assert np.all(np.isfinite(no_groups))
    assert not np.allclose(no_groups, with_groups)
    # the kNN prior uses the training embeddings: a training text's neighbours include itself
    nb = blended.neighbours
    assert nb is not None and nb.k == 15 and nb.embeddings.shape == (500, emb.shape[1])
    path = blended.save(tmp_path / "blended")
    loaded = GateModel.load(path)
    assert np.allclose(loaded.score(held, emb[500:], groups=groups[500:]), with_groups)
    assert loaded.groups is not None and loaded.groups.rates == blended.groups.rates  # type: ignore[union-attr]
    with pytest.raises(RouterConfigError, match="differ in length"):
        blended.score(held, emb[500:], groups=["g-easy"])
    with pytest.raises(RouterConfigError, match="unknown blend"):
        train_gate(
            texts[:50],
            weak[:50],
            strong[:50],
            embeddings=emb[:50],
            neighbours=5,
            blend_weights={"nope": 1.0},
        )


def test_router_passes_the_group_to_the_gate(
    dataset: dict[str, Any], embedder: HashingEmbedder
) -> None:
    texts, weak, strong = dataset["texts"][:400], dataset["weak"][:400], dataset["strong"][:400]
    groups = ["a" if i % 2 else "b" for i in range(400)]
    strong_b = [s if g == "a" else True for s, g in zip(strong, groups, strict=True)]
    weak_b = [w if g == "a" else False for w, g in zip(weak, groups, strict=True)]
    gate = train_gate(texts, weak_b, strong_b, embedder=embedder, groups=groups)
    router = Router(TIERS, gate, embedder)
    router.calibrate(texts[:200], 0.5, groups=groups[:200])
    text = "What is the capital of Peru?"
    assert router.decide(text, group="b").score > router.decide(text, group="a").score  # type: ignore[operator]
