"""Confidence scorers and the learned response verifier."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenlean_router import (
    CascadePolicy,
    GateFormatError,
    ResponseVerifier,
    RouterConfigError,
    extract_final_answer,
    logprob_confidence,
    response_features,
    self_consistency,
    train_verifier,
)
from tokenlean_router.verifier import VERIFIER_FEATURES


def test_logprob_confidence_formats() -> None:
    lp = {"content": [{"token": "a", "logprob": math.log(0.5)}, {"token": "b", "logprob": 0.0}]}
    assert logprob_confidence(lp) == pytest.approx(math.sqrt(0.5))
    assert logprob_confidence(lp, "mean_prob") == pytest.approx(0.75)
    assert logprob_confidence(lp, "min_prob") == pytest.approx(0.5)
    assert logprob_confidence({"token_logprobs": [0.0, None]}) == pytest.approx(1.0)
    assert logprob_confidence([math.log(0.25)]) == pytest.approx(0.25)
    assert logprob_confidence(None) is None
    assert logprob_confidence({"content": []}) is None
    with pytest.raises(RouterConfigError):
        logprob_confidence(lp, "median")  # type: ignore[arg-type]


def test_final_answers_and_self_consistency() -> None:
    assert extract_final_answer("so 3 + 4 = 7\n#### 7") == "7"
    assert extract_final_answer("The answer is $1,200.") == "1200"
    assert extract_final_answer("she pays 12.50 dollars") == "12.5"
    assert extract_final_answer("Paris") == "paris"
    best, share = self_consistency(["#### 5", "x = 5", "#### 6"])
    assert (best, share) == ("5", pytest.approx(2 / 3))
    with pytest.raises(RouterConfigError):
        self_consistency([])


def test_policy_validation_and_decisions() -> None:
    p = CascadePolicy(0.6)
    assert p.should_escalate(0.5) and not p.should_escalate(0.7)
    assert p.should_escalate(None)
    assert not CascadePolicy(0.6, missing="accept").should_escalate(None)
    with pytest.raises(RouterConfigError):
        CascadePolicy(1.5)
    with pytest.raises(RouterConfigError, match="verifier callable"):
        CascadePolicy(0.5, method="verifier")
    with pytest.raises(RouterConfigError, match="n_samples"):
        CascadePolicy(0.5, method="self_consistency", n_samples=1)


def test_response_features_check_the_arithmetic() -> None:
    q = "Tom has 3 bags with 4 apples each. How many apples?"
    good = "3 * 4 = 12 apples. <<3*4=12>>\n#### 12"
    bad = "3 * 4 = 11 apples. <<3*4=11>>\n#### 11.5"
    fg, fb = response_features(q, good), response_features(q, bad)
    i = VERIFIER_FEATURES.index
    assert fg[i("equations_wrong")] == 0 and fb[i("equations_wrong")] > 0
    assert fg[i("annotations_wrong")] == 0 and fb[i("annotations_wrong")] > 0
    assert fg[i("final_is_integer")] == 1 and fb[i("final_is_integer")] == 0
    assert fg[i("question_numbers_used")] == 1.0


def test_trained_verifier_separates_right_from_wrong(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    prompts, answers, ok = [], [], []
    for _ in range(200):
        a, b = int(rng.integers(2, 50)), int(rng.integers(2, 50))
        right = bool(rng.random() < 0.6)
        c = a * b if right else a * b + int(rng.integers(1, 9))
        prompts.append(f"What is {a} times {b}?")
        answers.append(f"{a} * {b} = {c}\n#### {c}")
        ok.append(right)
    v = train_verifier(prompts[:150], answers[:150], ok[:150])
    p = v.predict(prompts[150:], answers[150:])
    y = np.array(ok[150:])
    assert p[y].min() > p[~y].max()
    path = v.save(tmp_path / "verifier")
    v2 = ResponseVerifier.load(path)
    assert v2(prompts[0], answers[0]) == pytest.approx(v(prompts[0], answers[0]))
    policy = CascadePolicy(0.5, method="verifier", verifier=v2)
    assert policy.verify(prompts[0], answers[0]) == pytest.approx(v(prompts[0], answers[0]))
    np.savez(tmp_path / "x.npz", header=np.frombuffer(b'{"format": "nope"}', dtype=np.uint8))
    with pytest.raises(GateFormatError):
        ResponseVerifier.load(tmp_path / "x.npz")
    with pytest.raises(RouterConfigError):
        train_verifier(["a"], ["b", "c"], [True])


@settings(max_examples=80, deadline=None)
@given(prompt=st.text(max_size=300), answer=st.text(max_size=300))
def test_verifier_features_never_fail_on_any_text(prompt: str, answer: str) -> None:
    f = response_features(prompt, answer)
    assert len(f) == len(VERIFIER_FEATURES) and all(math.isfinite(x) for x in f)
    assert isinstance(extract_final_answer(answer), str)
    _, share = self_consistency([answer, prompt])
    assert 0.0 < share <= 1.0
