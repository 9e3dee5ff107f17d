"""The configs and command lines whose acceptance by vLLM's own code the conformance test checks."""

from __future__ import annotations

from typing import Any

from tokenlean_vllm import SpeculativeConfig, VLLMServer

VLLM_VERSION = "0.33.0"


def valid_configs() -> list[SpeculativeConfig]:
    """One or more of every method tokenlean renders."""
    return [
        SpeculativeConfig.ngram(),
        SpeculativeConfig.ngram(num_speculative_tokens=5, prompt_lookup_min=3, prompt_lookup_max=3),
        SpeculativeConfig(method="ngram", num_speculative_tokens=4, prompt_lookup_max=4),
        SpeculativeConfig.suffix(),
        SpeculativeConfig.suffix(
            num_speculative_tokens=16,
            max_tree_depth=16,
            max_cached_requests=1000,
            max_spec_factor=2.0,
            min_token_prob=0.2,
        ),
        SpeculativeConfig.draft_model("Qwen/Qwen3-0.6B", num_speculative_tokens=5),
        SpeculativeConfig.draft_model(
            "meta-llama/Llama-3.2-1B-Instruct",
            num_speculative_tokens=4,
            draft_tensor_parallel_size=2,
            max_model_len=4096,
            quantization="fp8",
            revision="main",
        ),
        SpeculativeConfig.eagle("yuhuili/EAGLE-LLaMA3.1-Instruct-8B", num_speculative_tokens=3),
        SpeculativeConfig.eagle3("yuhuili/EAGLE3-LLaMA3.1-Instruct-8B", num_speculative_tokens=3),
        SpeculativeConfig.mtp(num_speculative_tokens=1),
        SpeculativeConfig.mtp(num_speculative_tokens=2, model="deepseek-ai/DeepSeek-V3"),
    ]


#: dicts tokenlean rejects (test_config.py checks that); vLLM must reject them too
INVALID_DICTS: list[dict[str, Any]] = [
    {
        "method": "ngram",
        "num_speculative_tokens": 3,
        "prompt_lookup_min": 6,
        "prompt_lookup_max": 5,
    },
    {"method": "ngram", "num_speculative_tokens": 0},
    {"method": "eagle3", "model": "x/y", "num_speculative_tokens": 3, "tensor_parallel_size": 2},
    {"method": "eagle3", "model": "x/y", "num_speculative_tokens": 3, "draft_tp": 1},
    {"method": "medusa-ish", "model": "x/y", "num_speculative_tokens": 3},
    {
        "method": "draft_model",
        "model": "x/y",
        "num_speculative_tokens": 3,
        "draft_tensor_parallel_size": 0,
    },
    {"method": "suffix", "suffix_decoding_min_token_prob": 1.5},
]


def serve_argvs() -> list[list[str]]:
    """``vllm serve`` argument lists (after ``serve``) that VLLMServer builds."""
    out = []
    for spec in (None, SpeculativeConfig.ngram(), SpeculativeConfig.eagle3("a/b")):
        server = VLLMServer(
            "Qwen/Qwen3-8B",
            speculative=spec,
            port=8123,
            served_model_name="qwen",
            tensor_parallel_size=2,
            api_key="k",
        )
        argv = server.command()
        assert argv[:2] == ["vllm", "serve"]
        out.append(argv[2:])
    return out
