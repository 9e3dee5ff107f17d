"""What one vLLM call reports to tokenlean's ledger (shared by the LangChain and LlamaIndex
adapters).

Per call:

* ``record_call(model, usage, component="vllm", provider="vllm")`` unless ``record_calls`` is
  off (turn it off when ``TokenleanCallbackHandler`` / the LlamaIndex handler already records the
  call, or it is counted twice);
* cached prompt tokens (``usage.prompt_tokens_details.cached_tokens``; vLLM sends them with
  ``--enable-prompt-tokens-details``) as a saving: ``record_saving("vllm", cache_read_tokens=n)``
  - the prefill those tokens did not need;
* speculation over the request window (see :class:`~tokenlean_vllm.SpeculationStats`): an event
  ``("vllm", "spec_acceptance_rate", rate)`` with the figures in ``detail``, and the estimated
  time saved as a saving with ``latency_s`` (an upper bound; see the class docstring).

The same figures go on the run's metadata under ``"tokenlean_vllm"``.
"""

from __future__ import annotations

import logging
from typing import Any

from tokenlean_core import Ledger, Usage, count_tokens, get_ledger

from .metrics import SpeculationStats

__all__ = ["METADATA_KEY", "counted_usage", "report_call"]

METADATA_KEY = "tokenlean_vllm"

logger = logging.getLogger("tokenlean.vllm")


def report_call(
    *,
    model: str | None,
    usage: Usage | None,
    latency_s: float,
    speculation: SpeculationStats | None,
    endpoint: str,
    ledger: Ledger | None = None,
    record_calls: bool = True,
    ttft_s: float | None = None,
    policy: dict[str, Any] | None = None,
    run_id: str | None = None,
) -> dict[str, Any]:
    """Record one call's figures in the ledger; return them (JSON-ready) for run metadata."""
    led = ledger or get_ledger()
    cached = usage.cache_read_tokens if usage is not None else 0
    figures: dict[str, Any] = {
        "endpoint": endpoint,
        "model": model,
        "latency_s": latency_s,
        "ttft_s": ttft_s,
        "input_tokens": usage.input_tokens if usage else None,
        "output_tokens": usage.output_tokens if usage else None,
        "cache_read_tokens": cached,
        "speculation": speculation.as_dict() if speculation is not None else None,
    }
    if policy is not None:
        figures["policy"] = policy
    detail = {k: v for k, v in figures.items() if k not in ("speculation",)}
    try:
        if record_calls and usage is not None:
            led.record_call(
                model,
                usage,
                latency_s=latency_s,
                ttft_s=ttft_s,
                provider="vllm",
                component="vllm",
                run_id=run_id,
                detail=detail,
            )
        if cached > 0:
            led.record_saving(
                "vllm",
                cache_read_tokens=cached,
                model=model,
                run_id=run_id,
                detail={"kind": "prefix_cache", "endpoint": endpoint},
            )
        if speculation is not None and speculation.acceptance_rate is not None:
            spec = speculation.as_dict()
            led.record_event(
                "vllm",
                "spec_acceptance_rate",
                speculation.acceptance_rate,
                model=model,
                run_id=run_id,
                detail=spec,
            )
            saved = speculation.est_time_saved_s
            if saved is not None and saved > 0:
                led.record_saving(
                    "vllm",
                    latency_s=saved,
                    model=model,
                    usd=0.0,
                    run_id=run_id,
                    detail={"kind": "speculation", "estimate": "upper_bound", **spec},
                )
    except Exception:  # the answer must not be lost because bookkeeping failed
        logger.warning("tokenlean-vllm: recording to the ledger failed", exc_info=True)
    return figures


def counted_usage(messages: Any, completion: str, model: str | None) -> Usage:
    """Usage counted by tokenlean (``exact`` only with a known tokenizer) for servers that stream
    without usage (OpenAI-compatible servers that ignore ``stream_options.include_usage``)."""
    prompt = count_tokens(messages, model)
    answer = count_tokens(completion, model)
    return Usage(int(prompt), int(answer), exact=prompt.exact and answer.exact, source="counted")
