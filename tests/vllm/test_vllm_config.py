"""SpeculativeConfig: construction, rejection of bad combinations, rendering."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from vllm_conformance_cases import INVALID_DICTS, valid_configs

from tokenlean_core import TokenleanError
from tokenlean_vllm import SpeculativeConfig, SpeculativeConfigError


def test_ngram_renders_vllm_json() -> None:
    cfg = SpeculativeConfig.ngram(
        num_speculative_tokens=4, prompt_lookup_min=2, prompt_lookup_max=5
    )
    assert cfg.to_vllm() == {
        "method": "ngram",
        "num_speculative_tokens": 4,
        "prompt_lookup_min": 2,
        "prompt_lookup_max": 5,
    }
    assert json.loads(cfg.to_json()) == cfg.to_vllm()
    flag, payload = cfg.cli_args()
    assert flag == "--speculative-config"
    assert json.loads(payload)["method"] == "ngram"


def test_constructors_cover_every_method() -> None:
    methods = {c.method for c in valid_configs()}
    assert methods == {"ngram", "suffix", "draft_model", "eagle", "eagle3", "mtp"}


def test_draft_model_defaults() -> None:
    cfg = SpeculativeConfig.draft_model("Qwen/Qwen3-0.6B")
    assert cfg.to_vllm() == {
        "method": "draft_model",
        "model": "Qwen/Qwen3-0.6B",
        "num_speculative_tokens": 5,
        "draft_tensor_parallel_size": 1,
    }
    assert cfg.uses_draft_weights


def test_unset_fields_are_left_to_vllm() -> None:
    assert SpeculativeConfig.suffix().to_vllm() == {"method": "suffix"}
    assert SpeculativeConfig.mtp(None).to_vllm() == {"method": "mtp"}


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (
            {"method": "ngram", "num_speculative_tokens": 3, "model": "x/y"},
            "drafts without weights",
        ),
        ({"method": "suffix", "model": "x/y"}, "drafts without weights"),
        ({"method": "eagle3", "num_speculative_tokens": 3}, "needs model="),
        ({"method": "draft_model", "model": "", "num_speculative_tokens": 3}, "needs model="),
        ({"method": "ngram"}, "needs num_speculative_tokens"),
        ({"method": "eagle", "model": "x"}, "needs num_speculative_tokens"),
        (
            {
                "method": "ngram",
                "num_speculative_tokens": 3,
                "prompt_lookup_min": 6,
                "prompt_lookup_max": 5,
            },
            "prompt_lookup_min=6 must be <= prompt_lookup_max=5",
        ),
        (
            {"method": "eagle3", "model": "x", "num_speculative_tokens": 3, "prompt_lookup_max": 4},
            "only apply to method='ngram'",
        ),
        (
            {"method": "ngram", "num_speculative_tokens": 3, "draft_tensor_parallel_size": 2},
            "does not apply",
        ),
        (
            {"method": "ngram", "num_speculative_tokens": 3, "suffix_decoding_max_tree_depth": 4},
            "only apply to method='suffix'",
        ),
        (
            {"method": "ngram", "num_speculative_tokens": 3, "quantization": "fp8"},
            "describe a draft model",
        ),
        ({"method": "ngram", "num_speculative_tokens": 0}, "num_speculative_tokens"),
        ({"method": "medusa", "model": "x", "num_speculative_tokens": 3}, "method"),
        (
            {
                "method": "eagle3",
                "model": "x",
                "num_speculative_tokens": 3,
                "tensor_parallel_size": 2,
            },
            "tensor_parallel_size",
        ),
        (
            {"method": "suffix", "suffix_decoding_min_token_prob": 1.5},
            "suffix_decoding_min_token_prob",
        ),
    ],
)
def test_bad_combinations_are_rejected_clearly(data: dict[str, Any], needle: str) -> None:
    with pytest.raises(SpeculativeConfigError) as info:
        SpeculativeConfig(**data)
    assert needle in str(info.value)
    assert isinstance(info.value, TokenleanError)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("data", INVALID_DICTS)
def test_the_conformance_invalid_cases_are_rejected_here(data: dict[str, Any]) -> None:
    with pytest.raises(SpeculativeConfigError):
        SpeculativeConfig(**data)


def test_draft_tensor_parallel_must_be_one_or_the_targets() -> None:
    cfg = SpeculativeConfig.draft_model("x/y", draft_tensor_parallel_size=2)
    cfg.check_tensor_parallel(2)
    with pytest.raises(SpeculativeConfigError, match="must be 1 or the target"):
        cfg.check_tensor_parallel(4)


def test_frozen_and_round_trip() -> None:
    cfg = SpeculativeConfig.eagle3("yuhuili/EAGLE3-LLaMA3.1-Instruct-8B", num_speculative_tokens=4)
    assert SpeculativeConfig.from_vllm(cfg.to_json()) == cfg
    assert SpeculativeConfig.from_vllm(cfg.to_vllm()) == cfg
    with pytest.raises(Exception):  # noqa: B017, PT011 - pydantic's frozen-instance error
        cfg.method = "ngram"  # type: ignore[misc]
    with pytest.raises(SpeculativeConfigError, match="not JSON"):
        SpeculativeConfig.from_vllm("{method: ngram")
    with pytest.raises(SpeculativeConfigError, match="JSON object"):
        SpeculativeConfig.from_vllm("[1, 2]")


_values = st.one_of(st.none(), st.integers(-3, 70), st.text(max_size=8), st.floats(-1, 3))


@settings(max_examples=150, deadline=None)
@given(
    method=st.sampled_from(["ngram", "suffix", "draft_model", "eagle", "eagle3", "mtp", "x"]),
    fields=st.dictionaries(
        st.sampled_from(
            [
                "num_speculative_tokens",
                "model",
                "draft_tensor_parallel_size",
                "prompt_lookup_min",
                "prompt_lookup_max",
                "suffix_decoding_max_tree_depth",
                "suffix_decoding_min_token_prob",
                "max_model_len",
                "bogus",
            ]
        ),
        _values,
        max_size=4,
    ),
)
def test_any_input_builds_or_raises_our_error(method: str, fields: dict[str, Any]) -> None:
    try:
        cfg = SpeculativeConfig(method=method, **fields)
    except SpeculativeConfigError:
        return
    rendered = cfg.to_vllm()
    assert rendered["method"] == method
    assert SpeculativeConfig.from_vllm(cfg.to_json()) == cfg
    lo, hi = rendered.get("prompt_lookup_min"), rendered.get("prompt_lookup_max")
    if lo is not None and hi is not None:
        assert lo <= hi
