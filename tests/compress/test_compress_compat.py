"""llmlingua 0.2.2 on transformers 5, offline, on CPU, with the SmolLM2 folder (tokenlean_compress.llmlingua_compat)."""

from __future__ import annotations

import pytest

pytest.importorskip("llmlingua")
torch = pytest.importorskip("torch")

from tokenlean_compress import llmlingua_compat  # noqa: E402
from tokenlean_compress.models import model_cache_dir, smollm2_hf_folder  # noqa: E402

CONTEXT = (
    "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris, France. "
    "It is named after the engineer Gustave Eiffel, whose company designed and built the tower "
    "from 1887 to 1889. Locally nicknamed the Iron Lady, it was constructed as the centrepiece of "
    "the 1889 World's Fair, and to crown the centennial anniversary of the French Revolution."
)


def test_cache_conversion_round_trips() -> None:
    """llmlingua's [key, value] lists <-> transformers DynamicCache, tensors untouched."""
    from transformers import DynamicCache

    legacy = [[torch.randn(1, 2, 3, 4), torch.randn(1, 2, 3, 4)] for _ in range(3)]
    cache = llmlingua_compat._to_cache(legacy)
    assert isinstance(cache, DynamicCache)
    back = llmlingua_compat._to_legacy(cache)
    assert len(back) == 3
    for (k0, v0), (k1, v1) in zip(legacy, back, strict=True):
        assert torch.equal(k0, k1) and torch.equal(v0, v1)
    assert llmlingua_compat._to_cache(None) is None
    assert llmlingua_compat._past_length(back) == 3


@pytest.mark.models
def test_patched_prompt_compressor_runs_on_smollm2_offline() -> None:
    import llmlingua

    folder = smollm2_hf_folder()
    assert folder.is_relative_to(model_cache_dir())
    assert (folder / "config.json").is_file()
    pc = llmlingua_compat.prompt_compressor()
    assert llmlingua_compat.prompt_compressor() is pc  # loaded once per process
    assert llmlingua.PromptCompressor.get_ppl is llmlingua_compat._get_ppl
    assert pc.device == "cpu"
    # iterative_size=16 forces several passes that reuse the KV cache: the path transformers 5 broke
    res = pc.compress_prompt([CONTEXT], rate=0.5, iterative_size=16, use_context_level_filter=False)
    assert 0 < res["compressed_tokens"] < res["origin_tokens"]
    kept = res["compressed_prompt"].split()
    assert kept
    original_words = set(CONTEXT.split())
    assert sum(w in original_words for w in kept) >= len(kept) // 2  # mostly whole original words
