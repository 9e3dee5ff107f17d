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
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from tokenlean_core import Ledger, Usage, count_tokens, get_ledger

from .metrics import MetricsClient, SpeculationStats, VLLMMetrics
from .policy import PolicyDecision

__all__ = ["METADATA_KEY", "CallWindow", "StreamTail", "counted_usage", "report_call"]

C = TypeVar("C")

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


class CallWindow:
    """One request's bookkeeping, shared by the sync and async paths of both adapters (no I/O
    here: the adapters scrape, this diffs and records).

    Opened after the window-start scrape (``before``; None when speculation figures are off or
    the server has no ``/metrics``), closed with the window-end scrape by :meth:`finish`.
    """

    __slots__ = (
        "before",
        "decision",
        "endpoint",
        "ledger",
        "metrics",
        "model",
        "record_calls",
        "t0",
        "ttft",
    )

    def __init__(
        self,
        *,
        model: str | None,
        endpoint: str,
        metrics: MetricsClient | None,
        before: VLLMMetrics | None,
        decision: PolicyDecision | None,
        ledger: Ledger | None,
        record_calls: bool,
    ) -> None:
        self.model = model
        self.endpoint = endpoint
        self.metrics = metrics
        self.before = before
        self.decision = decision
        self.ledger = ledger
        self.record_calls = record_calls
        self.ttft: float | None = None
        self.t0 = time.perf_counter()

    def end_scrape(self) -> VLLMMetrics | None:
        """The window-end scrape (None when not worth making or the server stopped answering)."""
        return self.metrics.window_end() if self.metrics and self.before is not None else None

    async def aend_scrape(self) -> VLLMMetrics | None:
        """Async twin of :meth:`end_scrape`."""
        if self.metrics is None or self.before is None:
            return None
        return await self.metrics.awindow_end()

    def first_token(self) -> None:
        """Note the time to first token (the first call counts)."""
        if self.ttft is None:
            self.ttft = time.perf_counter() - self.t0

    def finish(
        self, after: VLLMMetrics | None, usage: Usage | None, run_id: str | None = None
    ) -> dict[str, Any]:
        """Close the window: figures to the ledger, returned for the response and run metadata."""
        latency = time.perf_counter() - self.t0
        spec = None
        if self.before is not None and after is not None and after.has_spec_decode:
            spec = SpeculationStats.between(self.before, after, latency)
        return report_call(
            model=self.model,
            usage=usage,
            latency_s=latency,
            ttft_s=self.ttft,
            speculation=spec,
            endpoint=self.endpoint,
            ledger=self.ledger,
            record_calls=self.record_calls,
            policy=self.decision.as_dict() if self.decision is not None else None,
            run_id=run_id,
        )


class StreamTail(Generic[C]):
    """Pass a stream's chunks through, holding back the one that carries usage (the last, when
    the server sends usage) so the call's figures can go on it; note the time to first token.

    ``for out in tail.feed(chunk): yield out`` per chunk, then ``tail.held`` (the usage chunk, or
    None) and ``tail.last`` at the end; the same in sync and async loops.
    """

    __slots__ = ("_has_content", "_usage_of", "held", "last", "window")

    def __init__(
        self,
        window: CallWindow,
        usage_of: Callable[[C], Any],
        has_content: Callable[[C], bool],
    ) -> None:
        self.window = window
        self._usage_of = usage_of
        self._has_content = has_content
        self.held: C | None = None
        self.last: C | None = None

    def feed(self, chunk: C) -> list[C]:
        """The chunks to yield now."""
        if self.window.ttft is None and self._has_content(chunk):
            self.window.first_token()
        out: list[C] = []
        if self.held is not None:
            out.append(self.held)
            self.held = None
        self.last = chunk
        if self._usage_of(chunk) is not None:
            self.held = chunk
        else:
            out.append(chunk)
        return out
