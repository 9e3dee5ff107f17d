"""Typed, validated speculative-decoding configuration rendered to vLLM's own format.

vLLM takes speculative decoding as one JSON object: ``vllm serve MODEL --speculative-config
'{"method": "ngram", ...}'`` or ``vllm.LLM(model, speculative_config={...})``. The field names and
rules here follow ``vllm/config/speculative.py`` (vLLM 0.33.0): unknown keys, a draft model for a
model-free method, a lookup window for anything but n-gram, ``prompt_lookup_min >
prompt_lookup_max``, a draft tensor-parallel size other than 1 or the target's... are all rejected
here, with a :class:`SpeculativeConfigError` naming the field, before any server starts (vLLM would
fail minutes later, after loading the target model).

Picking a method (see ``docs/vllm/langchain.md``):

* ``ngram`` (prompt lookup): no extra weights; drafts by copying n-grams from the prompt. Best when
  answers copy from the context (RAG, summaries, code edits). Published: up to 2.8x.
* ``suffix``: like n-gram but also matches earlier *responses* (agents, repeated tool loops); needs
  ``arctic-inference`` on the server.
* ``draft_model``: a small model with the target's tokenizer. ~1.5x at low load, *slower* at
  high load: pair it with :class:`~tokenlean_vllm.LoadAwarePolicy`.
* ``eagle`` / ``eagle3``: a trained head for the target (e.g.
  ``yuhuili/EAGLE3-LLaMA3.1-Instruct-8B``); EAGLE-3 up to 2.5x.
* ``mtp``: the target's own multi-token-prediction layers (DeepSeek-V3, Qwen3-Next, GLM-4.5 ...).
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import SpeculativeConfigError

__all__ = ["MODEL_FREE_METHODS", "SpeculativeConfig", "SpeculativeMethod"]

SpeculativeMethod = Literal["ngram", "suffix", "draft_model", "eagle", "eagle3", "mtp"]

#: methods that draft without weights of their own (vLLM sets ``model`` itself)
MODEL_FREE_METHODS: frozenset[str] = frozenset({"ngram", "suffix"})
#: methods that need a draft checkpoint in ``model``
_NEEDS_MODEL = frozenset({"draft_model", "eagle", "eagle3"})
#: methods that run a separate drafter whose tensor parallelism can be set
_HAS_DRAFT_TP = frozenset({"draft_model", "eagle", "eagle3", "mtp"})
_SUFFIX_FIELDS = (
    "suffix_decoding_max_tree_depth",
    "suffix_decoding_max_cached_requests",
    "suffix_decoding_max_spec_factor",
    "suffix_decoding_min_token_prob",
)


def _explain(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ())) or "config"
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}")
    return "; ".join(parts)


class SpeculativeConfig(BaseModel):
    """One speculative-decoding method and its knobs, as vLLM's ``--speculative-config`` takes them.

    Build it with the constructors (:meth:`ngram`, :meth:`draft_model`, :meth:`eagle`,
    :meth:`eagle3`, :meth:`mtp`, :meth:`suffix`) or directly; render with :meth:`to_vllm`
    (a dict for ``LLM(speculative_config=...)``), :meth:`to_json` or :meth:`cli_args`.

    Raises:
        SpeculativeConfigError: an unknown method or field, a missing or forbidden draft
            ``model``, a bad lookup window, or a value out of range.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    method: SpeculativeMethod
    num_speculative_tokens: int | None = Field(default=None, gt=0, le=64)
    """Tokens proposed per step. Required for ngram, draft_model, eagle and eagle3; mtp takes
    the checkpoint's own depth and suffix its tree depth when omitted."""
    model: str | None = None
    """Draft model / EAGLE head (a Hugging Face id or a path); forbidden for ngram and suffix;
    for mtp it defaults to the target model itself."""
    draft_tensor_parallel_size: int | None = Field(default=None, ge=1)
    """Tensor parallelism of the drafter: 1 or the target's ``tensor_parallel_size``."""
    prompt_lookup_min: int | None = Field(default=None, ge=1)
    """ngram only: shortest n-gram matched in the prompt (vLLM defaults both ends to 5)."""
    prompt_lookup_max: int | None = Field(default=None, ge=1)
    """ngram only: longest n-gram matched in the prompt."""
    suffix_decoding_max_tree_depth: int | None = Field(default=None, ge=1)
    suffix_decoding_max_cached_requests: int | None = Field(default=None, ge=0)
    suffix_decoding_max_spec_factor: float | None = Field(default=None, ge=0)
    suffix_decoding_min_token_prob: float | None = Field(default=None, ge=0, le=1)
    max_model_len: int | None = Field(default=None, ge=1)
    """Context length of the drafter, when it must be shorter than the target's."""
    quantization: str | None = None
    """Quantization of the draft model (e.g. ``"fp8"``)."""
    revision: str | None = None
    """Revision of the draft model on the Hub."""

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise SpeculativeConfigError(
                f"invalid speculative config: {_explain(exc)}. See "
                "https://docs.vllm.ai/en/latest/features/spec_decode.html for each method's fields."
            ) from exc

    @model_validator(mode="after")
    def _check_combination(self) -> SpeculativeConfig:
        m = self.method
        if m in MODEL_FREE_METHODS and self.model is not None:
            raise ValueError(
                f"method {m!r} drafts without weights; remove model={self.model!r} "
                "(or use method='draft_model' for a draft checkpoint)"
            )
        if m in _NEEDS_MODEL and not self.model:
            raise ValueError(
                f"method {m!r} needs model= (the draft model or {m.upper()} head checkpoint)"
            )
        if m in {"ngram", "draft_model", "eagle", "eagle3"} and self.num_speculative_tokens is None:
            raise ValueError(
                f"method {m!r} needs num_speculative_tokens (tokens proposed per step, e.g. 3-5)"
            )
        lookup = (self.prompt_lookup_min, self.prompt_lookup_max)
        if m != "ngram" and any(v is not None for v in lookup):
            raise ValueError(
                f"prompt_lookup_min/prompt_lookup_max only apply to method='ngram', not {m!r}"
            )
        lo, hi = lookup
        if lo is not None and hi is not None and lo > hi:
            raise ValueError(f"prompt_lookup_min={lo} must be <= prompt_lookup_max={hi}")
        if m != "suffix" and any(getattr(self, f) is not None for f in _SUFFIX_FIELDS):
            raise ValueError(f"suffix_decoding_* fields only apply to method='suffix', not {m!r}")
        if m not in _HAS_DRAFT_TP and self.draft_tensor_parallel_size is not None:
            raise ValueError(
                f"draft_tensor_parallel_size does not apply to method {m!r} (no draft model)"
            )
        if m in MODEL_FREE_METHODS and (self.quantization or self.revision or self.max_model_len):
            raise ValueError(
                f"quantization/revision/max_model_len describe a draft model; method {m!r} has none"
            )
        return self

    # -- constructors -----------------------------------------------------------------------
    @classmethod
    def ngram(
        cls,
        num_speculative_tokens: int = 3,
        prompt_lookup_min: int | None = 2,
        prompt_lookup_max: int | None = 5,
    ) -> SpeculativeConfig:
        """Prompt-lookup (n-gram) speculation: no extra weights; best for RAG and edits."""
        return cls(
            method="ngram",
            num_speculative_tokens=num_speculative_tokens,
            prompt_lookup_min=prompt_lookup_min,
            prompt_lookup_max=prompt_lookup_max,
        )

    @classmethod
    def suffix(
        cls,
        num_speculative_tokens: int | None = None,
        max_tree_depth: int | None = None,
        max_cached_requests: int | None = None,
        max_spec_factor: float | None = None,
        min_token_prob: float | None = None,
    ) -> SpeculativeConfig:
        """Suffix decoding (Arctic Inference): matches prompts *and* earlier responses."""
        return cls(
            method="suffix",
            num_speculative_tokens=num_speculative_tokens,
            suffix_decoding_max_tree_depth=max_tree_depth,
            suffix_decoding_max_cached_requests=max_cached_requests,
            suffix_decoding_max_spec_factor=max_spec_factor,
            suffix_decoding_min_token_prob=min_token_prob,
        )

    @classmethod
    def draft_model(
        cls,
        model: str,
        num_speculative_tokens: int = 5,
        draft_tensor_parallel_size: int | None = 1,
        **fields: Any,
    ) -> SpeculativeConfig:
        """A small draft model that shares the target's tokenizer."""
        return cls(
            method="draft_model",
            model=model,
            num_speculative_tokens=num_speculative_tokens,
            draft_tensor_parallel_size=draft_tensor_parallel_size,
            **fields,
        )

    @classmethod
    def eagle(cls, model: str, num_speculative_tokens: int = 3, **fields: Any) -> SpeculativeConfig:
        """An EAGLE head trained for the target model."""
        return cls(
            method="eagle", model=model, num_speculative_tokens=num_speculative_tokens, **fields
        )

    @classmethod
    def eagle3(
        cls, model: str, num_speculative_tokens: int = 3, **fields: Any
    ) -> SpeculativeConfig:
        """An EAGLE-3 head trained for the target model."""
        return cls(
            method="eagle3", model=model, num_speculative_tokens=num_speculative_tokens, **fields
        )

    @classmethod
    def mtp(cls, num_speculative_tokens: int | None = 1, **fields: Any) -> SpeculativeConfig:
        """The target's own multi-token-prediction layers (DeepSeek-V3, Qwen3-Next, GLM-4.5...)."""
        return cls(method="mtp", num_speculative_tokens=num_speculative_tokens, **fields)

    # -- rendering --------------------------------------------------------------------------
    @property
    def uses_draft_weights(self) -> bool:
        """Whether the method loads weights besides the target's (draft model, EAGLE head)."""
        return self.method in _NEEDS_MODEL

    def check_tensor_parallel(self, tensor_parallel_size: int) -> None:
        """Check ``draft_tensor_parallel_size`` against the target's (vLLM: 1 or equal)."""
        tp = self.draft_tensor_parallel_size
        if tp is not None and tp not in (1, tensor_parallel_size):
            raise SpeculativeConfigError(
                f"draft_tensor_parallel_size={tp} must be 1 or the target's "
                f"tensor_parallel_size={tensor_parallel_size}"
            )

    def to_vllm(self) -> dict[str, Any]:
        """The dict vLLM takes as ``speculative_config`` (unset fields left to vLLM's defaults)."""
        return self.model_dump(exclude_none=True)

    def to_json(self) -> str:
        """The JSON for ``vllm serve --speculative-config``."""
        return json.dumps(self.to_vllm(), separators=(",", ":"), sort_keys=True)

    def cli_args(self) -> list[str]:
        """``["--speculative-config", "<json>"]`` for a ``vllm serve`` command line."""
        return ["--speculative-config", self.to_json()]

    @classmethod
    def from_vllm(cls, data: dict[str, Any] | str) -> SpeculativeConfig:
        """Read a ``--speculative-config`` JSON string or dict back."""
        if isinstance(data, str):
            try:
                data = json.loads(data)
            except json.JSONDecodeError as exc:
                raise SpeculativeConfigError(f"speculative config is not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise SpeculativeConfigError("speculative config must be a JSON object")
        return cls(**data)
