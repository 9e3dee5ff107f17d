"""In-process vLLM (``vllm.LLM``) with the same speculation config and figures as the server.

Only on a machine where vLLM is installed with its GPU torch build; everywhere else
:func:`require_vllm` raises a :class:`~tokenlean_core.MissingDependencyError` naming the extra
(``tokenlean-vllm[inprocess]``), or a :class:`~tokenlean_vllm.VLLMError` when vLLM is importable
but no GPU is visible. The import is lazy: importing this module never imports vLLM.

Speculation figures come from ``LLM.get_metrics()`` (vLLM's in-process reader of the same
Prometheus registry the server exposes), diffed around each call like the server's ``/metrics``.
``vllm.LLM`` has no token streaming: the LangChain/LlamaIndex adapters stream the finished answer
as one chunk in this mode.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tokenlean_core import MissingDependencyError, Usage

from .config import SpeculativeConfig
from .errors import VLLMError
from .metrics import METRIC_NAMES, Sample, SpeculationStats, VLLMMetrics

__all__ = ["InProcessResult", "InProcessVLLM", "require_vllm", "vllm_available"]


def vllm_available(
    importer: Callable[[str], Any] = importlib.import_module,
) -> tuple[bool, str]:
    """Whether in-process vLLM can run here, and why not. ``importer`` is for tests."""
    try:
        importer("vllm")
    except ImportError as exc:
        return False, f"vllm is not importable ({exc})"
    try:
        torch = importer("torch")
    except ImportError as exc:  # pragma: no cover - vllm imports torch itself
        return False, f"torch is not importable ({exc})"
    if not torch.cuda.is_available():
        return False, "vllm is installed but no CUDA GPU is visible (torch.cuda.is_available())"
    return True, "ok"


def require_vllm(importer: Callable[[str], Any] = importlib.import_module) -> Any:
    """Import and return the ``vllm`` module, or raise a clear error."""
    try:
        module = importer("vllm")
    except ImportError as exc:
        raise MissingDependencyError("vllm", "inprocess", "tokenlean-vllm") from exc
    ok, why = vllm_available(importer)
    if not ok:
        raise VLLMError(
            f"in-process vLLM needs a GPU: {why}. Use a vLLM server (VLLMServer / ChatVLLM "
            "with base_url) from this machine instead."
        )
    return module


def metrics_from_reader(metrics: Sequence[Any]) -> VLLMMetrics:
    """Convert ``LLM.get_metrics()`` items (vllm.v1.metrics.reader) into :class:`VLLMMetrics`."""
    samples: list[Sample] = []
    for m in metrics:
        name = str(m.name)
        if name + "_total" in METRIC_NAMES:
            name += "_total"
        labels = dict(getattr(m, "labels", {}) or {})
        if hasattr(m, "values"):  # Vector: per-position counters
            for pos, v in enumerate(m.values):
                samples.append(Sample(name, {**labels, "position": str(pos)}, float(v)))
        elif hasattr(m, "value"):
            samples.append(Sample(name, labels, float(m.value)))
    return VLLMMetrics.from_samples(samples)


@dataclass(frozen=True)
class InProcessResult:
    """One in-process chat completion."""

    text: str
    usage: Usage
    finish_reason: str | None
    latency_s: float
    speculation: SpeculationStats | None


class InProcessVLLM:
    """``vllm.LLM`` with a :class:`SpeculativeConfig`, prefix caching on, figures per call.

    Args:
        model: the target model.
        speculative: the speculation method (None: plain decoding).
        importer: how to import vllm (tests pass a fake to check the guard).
        **llm_kwargs: more ``vllm.LLM`` arguments (``tensor_parallel_size``, ``max_model_len``...).
    """

    def __init__(
        self,
        model: str,
        *,
        speculative: SpeculativeConfig | None = None,
        importer: Callable[[str], Any] = importlib.import_module,
        **llm_kwargs: Any,
    ) -> None:
        vllm = require_vllm(importer)
        tp = int(llm_kwargs.get("tensor_parallel_size", 1))
        if speculative is not None:
            speculative.check_tensor_parallel(tp)
        self.model = model
        self.speculative = speculative
        self._vllm = vllm
        kwargs = {"enable_prefix_caching": True, "disable_log_stats": False, **llm_kwargs}
        if speculative is not None:
            kwargs["speculative_config"] = speculative.to_vllm()
        self.llm = vllm.LLM(model=model, **kwargs)

    def _metrics(self) -> VLLMMetrics | None:
        try:
            return metrics_from_reader(self.llm.get_metrics())
        except Exception:  # metrics are best-effort: never fail an answer for them
            return None

    def chat(self, messages: Sequence[Mapping[str, Any]], **sampling: Any) -> InProcessResult:
        """One chat completion (``sampling``: vLLM ``SamplingParams`` fields, e.g. max_tokens)."""
        params = self._vllm.SamplingParams(**sampling)
        before = self._metrics()
        t0 = time.perf_counter()
        out = self.llm.chat([dict(m) for m in messages], params, use_tqdm=False)[0]
        latency = time.perf_counter() - t0
        after = self._metrics()
        completion = out.outputs[0]
        cached = int(getattr(out, "num_cached_tokens", 0) or 0)
        usage = Usage(
            input_tokens=len(out.prompt_token_ids or ()),
            output_tokens=len(completion.token_ids or ()),
            cache_read_tokens=cached,
            source="vllm",
        )
        spec = None
        if before is not None and after is not None and after.has_spec_decode:
            spec = SpeculationStats.between(before, after, latency)
        return InProcessResult(completion.text, usage, completion.finish_reason, latency, spec)
