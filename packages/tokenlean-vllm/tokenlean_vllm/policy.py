"""Turn speculation down when the server is busy, from the server's own metrics.

vLLM fixes the speculation method when the server starts (``--speculative-config``); it cannot be
switched per request. Published figures: a draft model gives ~1.5x at low load and is 1.4-1.8x
*slower* at high load (verification competes with other requests for the batch); n-gram and
EAGLE degrade less but still lose their edge when the batch is full. So the policy works one level
up, per request, between two endpoints:

* ``speculative``: a server started with a :class:`~tokenlean_vllm.SpeculativeConfig`;
* ``plain``: one without (another replica, or the same GPU split in two with
  ``--gpu-memory-utilization``).

Before each request :meth:`LoadAwarePolicy.choose` reads the speculative server's
``vllm:num_requests_running + vllm:num_requests_waiting`` (scraped at most every
``refresh_s``) and the acceptance rate over the last scrape window. Speculation is used while the
load is below ``busy_at`` *and* the acceptance rate (when there were at least ``min_drafts`` drafts
in the window) is at least ``min_acceptance_rate``; once off it comes back only when the load falls
to ``idle_at`` (hysteresis, so a load hovering at the threshold does not flap).

Servers that expose no vLLM metrics (llama.cpp's, in tests and benchmarks) are judged by the
requests this policy itself has in flight on them; that is exact for a single client process and an
underestimate with several, which is why vLLM's own gauges come first.

With a single server, :meth:`LoadAwarePolicy.should_restart` tells a maintenance loop when the
server has been idle long enough to restart it with another config
(:meth:`~tokenlean_vllm.VLLMServer.restart`); restarts drop in-flight requests and take the model
load time, so the policy never does it by itself.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .errors import ServerUnavailableError, VLLMError
from .metrics import MetricsClient, SpeculationStats, VLLMMetrics

__all__ = ["Endpoint", "LoadAwarePolicy", "PolicyConfig", "PolicyDecision"]

logger = logging.getLogger("tokenlean.vllm")


@dataclass(frozen=True)
class Endpoint:
    """An OpenAI-compatible server the policy can send a request to."""

    name: str
    base_url: str
    """``http://host:port/v1``."""
    speculative: bool
    metrics_url: str | None = None
    """``http://host:port/metrics`` (derived from ``base_url`` when None)."""

    def resolved_metrics_url(self) -> str:
        return self.metrics_url or self.base_url.rstrip("/").removesuffix("/v1") + "/metrics"


class PolicyConfig(BaseModel):
    """Thresholds of :class:`LoadAwarePolicy`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    busy_at: float = Field(default=4.0, gt=0)
    """Load (running + waiting requests) at or above which speculation is turned off."""
    idle_at: float | None = Field(default=None, ge=0)
    """Load at or below which it is turned back on (default: ``busy_at / 2``)."""
    min_acceptance_rate: float = Field(default=0.2, ge=0, le=1)
    """Below this window acceptance rate, speculation is not worth its verification cost."""
    min_drafts: int = Field(default=20, ge=1)
    """Drafts a window needs before its acceptance rate is trusted."""
    refresh_s: float = Field(default=0.25, ge=0)
    """Scrape the metrics at most this often."""

    @model_validator(mode="after")
    def _check(self) -> PolicyConfig:
        if self.idle_at is not None and self.idle_at >= self.busy_at:
            raise ValueError(f"idle_at={self.idle_at} must be below busy_at={self.busy_at}")
        return self

    @property
    def resolved_idle_at(self) -> float:
        return self.idle_at if self.idle_at is not None else self.busy_at / 2


@dataclass(frozen=True)
class PolicyDecision:
    """Which endpoint a request goes to, and why (for run metadata)."""

    endpoint: Endpoint
    reason: str
    load: float
    load_source: str
    """``"vllm_metrics"`` or ``"in_flight"`` (the policy's own count)."""
    acceptance_rate: float | None

    def as_dict(self) -> dict[str, object]:
        return {
            "endpoint": self.endpoint.name,
            "speculative": self.endpoint.speculative,
            "reason": self.reason,
            "load": self.load,
            "load_source": self.load_source,
            "acceptance_rate": self.acceptance_rate,
        }


class LoadAwarePolicy:
    """Per-request choice between a speculative and a plain endpoint (see the module docstring).

    Use it as a context manager around each request so in-flight counts stay right::

        with policy.route() as decision:
            client = clients[decision.endpoint.name]
            ...
    """

    def __init__(
        self,
        speculative: Endpoint,
        plain: Endpoint,
        config: PolicyConfig | None = None,
        *,
        enabled: bool = True,
    ) -> None:
        if not speculative.speculative or plain.speculative:
            raise VLLMError("LoadAwarePolicy needs (speculative endpoint, plain endpoint)")
        self.speculative = speculative
        self.plain = plain
        self.config = config or PolicyConfig()
        self.enabled = enabled
        self._metrics = MetricsClient(speculative.resolved_metrics_url(), timeout_s=1.0)
        self._lock = threading.Lock()
        self._in_flight: dict[str, int] = {speculative.name: 0, plain.name: 0}
        self._last: VLLMMetrics | None = None
        self._prev: VLLMMetrics | None = None
        self._last_scrape = -float("inf")
        self._spec_on = True
        self._idle_since: float | None = time.monotonic()
        self.decisions: dict[str, int] = {speculative.name: 0, plain.name: 0}

    # -- load signal -------------------------------------------------------------------------
    def _accept(self, m: VLLMMetrics | None) -> None:
        if m is None or not m.has_vllm_metrics:
            return
        self._prev, self._last = self._last, m

    def _due(self) -> bool:
        return (
            self._metrics.available is not False
            and time.monotonic() - self._last_scrape >= self.config.refresh_s
        )

    def refresh(self) -> None:
        """Scrape the speculative server's metrics if the last scrape is older than refresh_s."""
        if not self._due():
            return
        self._last_scrape = time.monotonic()
        try:
            self._accept(self._metrics.scrape())
        except ServerUnavailableError:
            logger.warning("policy: cannot scrape %s", self._metrics.url)

    async def arefresh(self) -> None:
        """Async twin of :meth:`refresh`."""
        if not self._due():
            return
        self._last_scrape = time.monotonic()
        try:
            self._accept(await self._metrics.ascrape())
        except ServerUnavailableError:
            logger.warning("policy: cannot scrape %s", self._metrics.url)

    def _window_acceptance(self) -> float | None:
        if self._prev is None or self._last is None:
            return None
        w = SpeculationStats.between(self._prev, self._last)
        if w.drafts < self.config.min_drafts:
            return None
        return w.acceptance_rate

    def _decide(self) -> PolicyDecision:
        with self._lock:
            if self._last is not None:
                load, source = self._last.load, "vllm_metrics"
            else:
                load = float(sum(self._in_flight.values()))
                source = "in_flight"
            acc = self._window_acceptance()
            if not self.enabled:
                ep, reason = self.speculative, "policy disabled"
            else:
                cfg = self.config
                if self._spec_on and load >= cfg.busy_at:
                    self._spec_on = False
                elif not self._spec_on and load <= cfg.resolved_idle_at:
                    self._spec_on = True
                low_acceptance = acc is not None and acc < cfg.min_acceptance_rate
                if low_acceptance:
                    ep, reason = self.plain, f"acceptance {acc:.2f} < {cfg.min_acceptance_rate}"
                elif self._spec_on:
                    ep, reason = self.speculative, f"load {load:g} < busy_at {cfg.busy_at:g}"
                else:
                    ep, reason = (
                        self.plain,
                        f"busy: load {load:g} (on again at {cfg.resolved_idle_at:g})",
                    )
            self._in_flight[ep.name] += 1
            self.decisions[ep.name] += 1
            self._idle_since = None
            return PolicyDecision(ep, reason, load, source, acc)

    def _release(self, decision: PolicyDecision) -> None:
        with self._lock:
            self._in_flight[decision.endpoint.name] -= 1
            if not any(self._in_flight.values()):
                self._idle_since = time.monotonic()

    # -- public ------------------------------------------------------------------------------
    def choose(self) -> PolicyDecision:
        """Decide for one request and count it in flight; pair with :meth:`release`."""
        self.refresh()
        return self._decide()

    async def achoose(self) -> PolicyDecision:
        """Async twin of :meth:`choose`."""
        await self.arefresh()
        return self._decide()

    def release(self, decision: PolicyDecision) -> None:
        """The request routed by ``decision`` is finished."""
        self._release(decision)

    @contextmanager
    def route(self) -> Iterator[PolicyDecision]:
        """``with policy.route() as d:`` choose, then release when the block ends."""
        d = self.choose()
        try:
            yield d
        finally:
            self._release(d)

    @asynccontextmanager
    async def aroute(self) -> AsyncIterator[PolicyDecision]:
        """Async twin of :meth:`route`."""
        d = await self.achoose()
        try:
            yield d
        finally:
            self._release(d)

    @property
    def in_flight(self) -> dict[str, int]:
        with self._lock:
            return dict(self._in_flight)

    def should_restart(self, idle_for_s: float = 30.0) -> bool:
        """True when nothing has been in flight for ``idle_for_s`` (single-server setups)."""
        with self._lock:
            since = self._idle_since
        return since is not None and time.monotonic() - since >= idle_for_s

    def close(self) -> None:
        self._metrics.close()
