"""Make microsoft/llmlingua 0.2.2 run offline, on CPU, with transformers 5 and the SmolLM2 folder.

llmlingua 0.2.2 predates transformers 5 and has three problems here:

* ``PromptCompressor.get_ppl`` hands the model a list of ``[key, value]`` pairs as
  ``past_key_values`` and slices the returned cache as tuples; transformers 5 models take and return
  ``DynamicCache`` objects ("too many values to unpack" in ``iterative_compress_prompt``).
  :func:`patch_llmlingua` replaces ``get_ppl`` on the class with a version that converts the cache
  in both directions around ``model.forward``; everything else in llmlingua is unchanged.
* ``PromptCompressor()`` calls ``tiktoken.encoding_for_model("gpt-3.5-turbo")``, which downloads
  cl100k_base; :func:`patch_llmlingua` seeds tiktoken's cache from the offline copy first
  (:func:`tokenlean_core.seed_tiktoken_cache`).
* the default model is a 7B Llama on CUDA; :func:`prompt_compressor` loads SmolLM2-135M-Instruct
  from :func:`tokenlean_compress.models.smollm2_hf_folder` on CPU, once per process.

nltk (a llmlingua dependency) is only used by ``use_sentence_level_filter=True``
(``nltk.sent_tokenize`` needs the ``punkt_tab`` data, which nothing here downloads; nltk raises
``LookupError`` rather than fetching it). The LongLLMLingua settings used by tokenlean and by the
LlamaIndex/LangChain integrations leave that filter off, so nltk never touches the network. To use
the sentence filter offline, put ``punkt_tab`` under one of ``nltk.data.path`` (e.g.
``~/nltk_data``).

The patch is applied to the class, so LlamaIndex's ``LongLLMLinguaPostprocessor`` and
langchain-community's ``LLMLinguaCompressor`` work too when given
``model_name=str(smollm2_hf_folder()), device_map="cpu"``.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from tokenlean_core import MissingDependencyError, seed_tiktoken_cache

from .models import smollm2_hf_folder

__all__ = ["patch_llmlingua", "prompt_compressor"]

_lock = threading.Lock()
_compressors: dict[str, Any] = {}
_PATCHED_FLAG = "_tokenlean_patched"


def _import_llmlingua() -> Any:
    try:
        import llmlingua
    except ImportError as exc:
        raise MissingDependencyError("llmlingua", "llmlingua", "tokenlean-compress") from exc
    return llmlingua


def _to_cache(past_key_values: Any) -> Any:
    """llmlingua's list of ``[key, value]`` -> a transformers ``DynamicCache`` (None stays None)."""
    if past_key_values is None:
        return None
    from transformers import DynamicCache

    if isinstance(past_key_values, DynamicCache):
        return past_key_values
    return DynamicCache([(k, v) for k, v in past_key_values])


def _to_legacy(cache: Any) -> Any:
    """A transformers cache -> the list of ``[key, value]`` pairs llmlingua slices."""
    if cache is None or isinstance(cache, (list, tuple)):
        return cache
    layers = getattr(cache, "layers", None)
    if layers is not None:
        return [[layer.keys, layer.values] for layer in layers]
    return [[k, v] for k, v in cache]  # older Cache objects iterate as (key, value)


def _past_length(past_key_values: Any) -> int:
    if past_key_values is None:
        return 0
    return int(past_key_values[0][0].shape[2])


def _get_ppl(
    self: Any,
    text: str,
    granularity: str = "sentence",
    input_ids: Any = None,
    attention_mask: Any = None,
    past_key_values: Any = None,
    return_kv: bool = False,
    end: int | None = None,
    condition_mode: str = "none",
    condition_pos_id: int = 0,
) -> Any:
    """llmlingua 0.2.2's ``PromptCompressor.get_ppl``, KV cache converted for transformers 5."""
    import torch

    if input_ids is None:
        tokenized_text = self.tokenizer(text, return_tensors="pt")
        input_ids = tokenized_text["input_ids"].to(self.device)
        attention_mask = tokenized_text["attention_mask"].to(self.device)
    past_length = _past_length(past_key_values)
    if end is None:
        end = input_ids.shape[1]
    end = min(end, past_length + self.max_position_embeddings)
    with torch.no_grad():
        response = self.model(
            input_ids[:, past_length:end],
            attention_mask=attention_mask[:, :end],
            past_key_values=_to_cache(past_key_values),
            use_cache=True,
        )
        past_key_values = _to_legacy(response.past_key_values)

    shift_logits = response.logits[..., :-1, :].contiguous()
    shift_labels = input_ids[..., past_length + 1 : end].contiguous()
    active = (attention_mask[:, past_length:end] == 1)[..., :-1].view(-1)
    active_logits = shift_logits.view(-1, shift_logits.size(-1))[active]
    active_labels = shift_labels.view(-1)[active]
    loss_fct = torch.nn.CrossEntropyLoss(reduction="none")
    loss = loss_fct(active_logits, active_labels)
    if condition_mode == "before":
        loss = loss[:condition_pos_id]
    elif condition_mode == "after":
        loss = loss[condition_pos_id:]
    res = loss.mean() if granularity == "sentence" else loss
    return (res, past_key_values) if return_kv else res


def patch_llmlingua() -> None:
    """Patch ``llmlingua.PromptCompressor`` in place (idempotent): transformers-5 KV cache, offline
    tiktoken.

    After this, any code that builds a ``PromptCompressor`` (including LlamaIndex's
    ``LongLLMLinguaPostprocessor`` and langchain-community's ``LLMLinguaCompressor``) runs with a
    local model folder on CPU without network access.
    """
    llmlingua = _import_llmlingua()
    cls = llmlingua.PromptCompressor
    seed_tiktoken_cache(("cl100k_base",))
    with _lock:
        if getattr(cls, _PATCHED_FLAG, False):
            return
        cls.get_ppl = _get_ppl
        original_init = cls.__init__

        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            seed_tiktoken_cache(("cl100k_base",))  # gpt-3.5-turbo -> cl100k_base, offline
            original_init(self, *args, **kwargs)

        cls.__init__ = __init__
        setattr(cls, _PATCHED_FLAG, True)


def prompt_compressor(model_dir: str | Path | None = None) -> Any:
    """A patched ``llmlingua.PromptCompressor`` on CPU, loaded once per process per model folder.

    ``model_dir`` defaults to the converted SmolLM2-135M-Instruct folder
    (:func:`tokenlean_compress.models.smollm2_hf_folder`).
    """
    patch_llmlingua()
    folder = str(model_dir) if model_dir is not None else str(smollm2_hf_folder())
    with _lock:
        compressor = _compressors.get(folder)
        if compressor is None:
            llmlingua = _import_llmlingua()
            # fresh dicts: llmlingua mutates its (shared, mutable default) model_config argument
            compressor = llmlingua.PromptCompressor(
                model_name=folder, device_map="cpu", model_config={}, open_api_config={}
            )
            _compressors[folder] = compressor
    return compressor
