"""vLLM's Prometheus metrics: parse ``/metrics``, diff two scrapes, derive speculation figures.

The metric names are vLLM's own (``vllm/v1/metrics/loggers.py`` and
``vllm/v1/spec_decode/metrics.py``, vLLM 0.33.0; counters get prometheus_client's ``_total``
suffix on the wire):

* load: ``vllm:num_requests_running``, ``vllm:num_requests_waiting`` (gauges);
* speculation: ``vllm:spec_decode_num_drafts_total``, ``vllm:spec_decode_num_draft_tokens_total``,
  ``vllm:spec_decode_num_accepted_tokens_total``,
  ``vllm:spec_decode_num_accepted_tokens_per_pos_total{position="i"}``;
* prefix cache: ``vllm:prefix_cache_queries_total``, ``vllm:prefix_cache_hits_total`` (tokens);
* throughput: ``vllm:prompt_tokens_total``, ``vllm:generation_tokens_total``.

A *request window* is the span between a scrape before and one after a request (the previous
request's closing scrape opens the next window when recent: :meth:`MetricsClient.window_start`;
between them only other clients' traffic can move the counters). With concurrent
requests the counters also move for the others in flight, so window figures describe the server
during the request, not the request alone; acceptance *rates* stay meaningful, absolute counts do
not. vLLM publishes the same derived figures (its ``SpecDecodingProm`` docstring):
acceptance rate = accepted / draft tokens; mean acceptance length = 1 + accepted / drafts.
"""

from __future__ import annotations

import functools
import logging
import math
import re
import ssl
import time
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx

from .errors import MetricsParseError, ServerUnavailableError

__all__ = [
    "METRIC_NAMES",
    "MetricsClient",
    "Sample",
    "SpeculationStats",
    "VLLMMetrics",
    "parse_prometheus",
]

logger = logging.getLogger("tokenlean.vllm")

RUNNING = "vllm:num_requests_running"
WAITING = "vllm:num_requests_waiting"
SPEC_DRAFTS = "vllm:spec_decode_num_drafts_total"
SPEC_DRAFT_TOKENS = "vllm:spec_decode_num_draft_tokens_total"
SPEC_ACCEPTED = "vllm:spec_decode_num_accepted_tokens_total"
SPEC_ACCEPTED_PER_POS = "vllm:spec_decode_num_accepted_tokens_per_pos_total"
PREFIX_QUERIES = "vllm:prefix_cache_queries_total"
PREFIX_HITS = "vllm:prefix_cache_hits_total"
PROMPT_TOKENS = "vllm:prompt_tokens_total"
GENERATION_TOKENS = "vllm:generation_tokens_total"

#: every vLLM metric this module reads (as exposed on ``/metrics``)
METRIC_NAMES: tuple[str, ...] = (
    RUNNING,
    WAITING,
    SPEC_DRAFTS,
    SPEC_DRAFT_TOKENS,
    SPEC_ACCEPTED,
    SPEC_ACCEPTED_PER_POS,
    PREFIX_QUERIES,
    PREFIX_HITS,
    PROMPT_TOKENS,
    GENERATION_TOKENS,
)

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_LINE = re.compile(
    rf"^(?P<name>{_NAME})(?:\{{(?P<labels>.*)\}})?\s+(?P<value>\S+)(?:\s+-?\d+)?\s*$"
)
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(?:,|$)')
_NAME_AT = re.compile(_NAME)
_READ = frozenset(METRIC_NAMES)
_UNESCAPE = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}


@dataclass(frozen=True)
class Sample:
    """One sample line: ``name{labels} value``."""

    name: str
    labels: Mapping[str, str]
    value: float


def _float(text: str, lineno: int) -> float:
    special = {"+Inf": math.inf, "Inf": math.inf, "-Inf": -math.inf, "NaN": math.nan}
    if text in special:
        return special[text]
    try:
        return float(text)
    except ValueError:
        raise MetricsParseError(f"line {lineno}: value {text!r} is not a number") from None


def _labels(text: str, lineno: int) -> dict[str, str]:
    out: dict[str, str] = {}
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _LABEL.match(text, pos)
        if not m:
            raise MetricsParseError(f"line {lineno}: malformed labels {text!r}")
        out[m.group(1)] = re.sub(r"\\[\\\"n]", lambda e: _UNESCAPE[e.group(0)], m.group(2))
        pos = m.end()
    return out


def _sample(line: str, lineno: int) -> Sample:
    m = _LINE.match(line)
    if not m:
        raise MetricsParseError(f"line {lineno}: not a metric sample: {line[:80]!r}")
    labels = _labels(m.group("labels") or "", lineno)
    return Sample(m.group("name"), labels, _float(m.group("value"), lineno))


def parse_prometheus(text: str) -> list[Sample]:
    """Parse Prometheus text exposition format (0.0.4) into samples; comments are skipped.

    Raises:
        MetricsParseError: a line that is neither a comment nor a valid sample.
    """
    samples: list[Sample] = []
    for lineno, raw in enumerate(text.split("\n"), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        samples.append(_sample(line, lineno))
    return samples


@dataclass(frozen=True)
class VLLMMetrics:
    """The vLLM figures tokenlean reads from one ``/metrics`` scrape (summed over engines).

    ``has_spec_decode`` is False when the server exposes no speculation counters (speculation
    off, or not a vLLM server); ``has_vllm_metrics`` when it exposes none of vLLM's metrics.
    """

    requests_running: float = 0.0
    requests_waiting: float = 0.0
    spec_drafts: float = 0.0
    spec_draft_tokens: float = 0.0
    spec_accepted_tokens: float = 0.0
    accepted_per_position: tuple[float, ...] = ()
    prefix_cache_queries: float = 0.0
    prefix_cache_hits: float = 0.0
    prompt_tokens: float = 0.0
    generation_tokens: float = 0.0
    has_spec_decode: bool = False
    has_vllm_metrics: bool = False
    taken_at: float = field(default_factory=time.monotonic)

    @property
    def load(self) -> float:
        """Requests running plus waiting: the server's own measure of how busy it is."""
        return self.requests_running + self.requests_waiting

    @classmethod
    def from_samples(
        cls,
        samples: Iterable[Sample],
        model_name: str | None = None,
        *,
        seen_vllm: bool = False,
    ) -> VLLMMetrics:
        """Sum the samples this module reads; ``model_name`` keeps one served model's series.

        ``seen_vllm``: the caller already saw vLLM samples (``has_vllm_metrics`` even when none
        of ``samples`` is one).
        """
        totals: dict[str, float] = {}
        per_pos: dict[int, float] = {}
        for s in samples:
            if not s.name.startswith("vllm:"):
                continue
            seen_vllm = True
            if model_name is not None and s.labels.get("model_name", model_name) != model_name:
                continue
            if s.name == SPEC_ACCEPTED_PER_POS:
                try:
                    pos = int(s.labels.get("position", ""))
                except ValueError:
                    continue
                per_pos[pos] = per_pos.get(pos, 0.0) + s.value
            elif s.name in METRIC_NAMES:
                totals[s.name] = totals.get(s.name, 0.0) + s.value
        positions = tuple(per_pos.get(i, 0.0) for i in range(max(per_pos) + 1)) if per_pos else ()
        return cls(
            requests_running=totals.get(RUNNING, 0.0),
            requests_waiting=totals.get(WAITING, 0.0),
            spec_drafts=totals.get(SPEC_DRAFTS, 0.0),
            spec_draft_tokens=totals.get(SPEC_DRAFT_TOKENS, 0.0),
            spec_accepted_tokens=totals.get(SPEC_ACCEPTED, 0.0),
            accepted_per_position=positions,
            prefix_cache_queries=totals.get(PREFIX_QUERIES, 0.0),
            prefix_cache_hits=totals.get(PREFIX_HITS, 0.0),
            prompt_tokens=totals.get(PROMPT_TOKENS, 0.0),
            generation_tokens=totals.get(GENERATION_TOKENS, 0.0),
            has_spec_decode=SPEC_DRAFTS in totals,
            has_vllm_metrics=seen_vllm,
        )

    @classmethod
    def parse(cls, text: str, model_name: str | None = None) -> VLLMMetrics:
        """Parse a ``/metrics`` body, reading only the lines of :data:`METRIC_NAMES`.

        A vLLM body holds hundreds of histogram-bucket lines this module never reads; they are
        skipped on a prefix test instead of being parsed (the same figures as
        ``from_samples(parse_prometheus(text))`` at a fraction of the cost). The lines read are
        validated as :func:`parse_prometheus` does.

        Raises:
            MetricsParseError: a malformed line among those read.
        """
        samples: list[Sample] = []
        seen_vllm = False
        for lineno, raw in enumerate(text.split("\n"), 1):
            line = raw.lstrip() if raw[:1].isspace() else raw
            if not line.startswith("vllm:"):
                continue
            seen_vllm = True
            m = _NAME_AT.match(line)
            if m is None or m.group(0) not in _READ:
                continue
            samples.append(_sample(line.rstrip(), lineno))
        return cls.from_samples(samples, model_name, seen_vllm=seen_vllm)


def _delta(after: float, before: float) -> float:
    # a counter that went down means the server restarted: count from zero
    return after - before if after >= before else after


@dataclass(frozen=True)
class SpeculationStats:
    """Speculation and prefix-cache figures over one window (between two scrapes).

    ``est_time_saved_s`` is an upper-bound estimate: with a mean acceptance length L, the window's
    tokens took 1/L of the decode steps plain decoding would have needed; assuming a verify step
    costs what a plain step does, plain decoding would have taken ``latency * L``, so the saving is
    ``latency * (L - 1)``. Drafting and verification overhead (large for draft models at high
    load) make the real saving smaller, sometimes negative: measure with the benchmark.
    """

    drafts: float = 0.0
    draft_tokens: float = 0.0
    accepted_tokens: float = 0.0
    accepted_per_position: tuple[float, ...] = ()
    generation_tokens: float = 0.0
    prefix_cache_queries: float = 0.0
    prefix_cache_hits: float = 0.0
    window_s: float = 0.0
    latency_s: float | None = None

    @classmethod
    def between(
        cls, before: VLLMMetrics, after: VLLMMetrics, latency_s: float | None = None
    ) -> SpeculationStats:
        """Figures for the window from ``before`` to ``after``."""
        n = max(len(before.accepted_per_position), len(after.accepted_per_position))
        b = before.accepted_per_position + (0.0,) * (n - len(before.accepted_per_position))
        a = after.accepted_per_position + (0.0,) * (n - len(after.accepted_per_position))
        return cls(
            drafts=_delta(after.spec_drafts, before.spec_drafts),
            draft_tokens=_delta(after.spec_draft_tokens, before.spec_draft_tokens),
            accepted_tokens=_delta(after.spec_accepted_tokens, before.spec_accepted_tokens),
            accepted_per_position=tuple(_delta(x, y) for x, y in zip(a, b, strict=True)),
            generation_tokens=_delta(after.generation_tokens, before.generation_tokens),
            prefix_cache_queries=_delta(after.prefix_cache_queries, before.prefix_cache_queries),
            prefix_cache_hits=_delta(after.prefix_cache_hits, before.prefix_cache_hits),
            window_s=max(0.0, after.taken_at - before.taken_at),
            latency_s=latency_s,
        )

    @property
    def acceptance_rate(self) -> float | None:
        """Accepted / proposed draft tokens (None when nothing was drafted)."""
        return self.accepted_tokens / self.draft_tokens if self.draft_tokens else None

    @property
    def mean_acceptance_length(self) -> float | None:
        """Tokens produced per verification step, bonus token included: 1 + accepted / drafts."""
        return 1.0 + self.accepted_tokens / self.drafts if self.drafts else None

    @property
    def per_position_acceptance(self) -> tuple[float, ...]:
        """Acceptance rate at each draft position (accepted at position i / drafts)."""
        if not self.drafts:
            return ()
        return tuple(x / self.drafts for x in self.accepted_per_position)

    @property
    def prefix_cache_hit_rate(self) -> float | None:
        """Prefix-cache hits / queries (tokens) in the window."""
        if not self.prefix_cache_queries:
            return None
        return self.prefix_cache_hits / self.prefix_cache_queries

    @property
    def est_time_saved_s(self) -> float | None:
        """Upper-bound time saved by speculation in the window (see the class docstring)."""
        mal = self.mean_acceptance_length
        if mal is None or self.latency_s is None:
            return None
        return self.latency_s * (mal - 1.0)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready figures, derived ones included (for run metadata and ledger details)."""
        d = asdict(self)
        d["accepted_per_position"] = list(self.accepted_per_position)
        d.update(
            acceptance_rate=self.acceptance_rate,
            mean_acceptance_length=self.mean_acceptance_length,
            per_position_acceptance=list(self.per_position_acceptance),
            prefix_cache_hit_rate=self.prefix_cache_hit_rate,
            est_time_saved_s=self.est_time_saved_s,
        )
        return d


@functools.lru_cache(maxsize=1)
def _ssl_context() -> ssl.SSLContext:
    # built once: loading the CA bundle costs milliseconds per client otherwise
    import certifi

    return ssl.create_default_context(cafile=certifi.where())


class MetricsClient:
    """Scrapes a server's ``/metrics`` with short timeouts, sync and async.

    A server that has no ``/metrics`` (404: llama.cpp's Python server, a proxy) yields ``None``
    and is not asked again; a server that does not answer raises
    :class:`~tokenlean_vllm.ServerUnavailableError` quickly.
    """

    def __init__(
        self,
        url: str,
        *,
        model_name: str | None = None,
        timeout_s: float = 2.0,
        connect_timeout_s: float = 0.5,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.url = url
        self.model_name = model_name
        self.timeout = httpx.Timeout(timeout_s, connect=connect_timeout_s)
        self.headers = dict(headers or {})
        self.available: bool | None = None
        self.last: VLLMMetrics | None = None
        """The latest scrape (the start of the next request window when recent enough)."""
        self._client: httpx.Client | None = None

    def _handle(self, response: httpx.Response) -> VLLMMetrics | None:
        if response.status_code == 404:
            if self.available is not False:
                logger.info("no /metrics at %s: speculation figures unavailable", self.url)
            self.available = False
            return None
        response.raise_for_status()
        self.available = True
        self.last = VLLMMetrics.parse(response.text, self.model_name)
        return self.last

    def _recent(self, max_age_s: float) -> VLLMMetrics | None:
        last = self.last
        if last is not None and time.monotonic() - last.taken_at <= max_age_s:
            return last
        return None

    def window_start(self, max_age_s: float = 0.0) -> VLLMMetrics | None:
        """The scrape that opens a request window: the latest one if at most ``max_age_s`` old
        (back-to-back requests share a scrape: one per request instead of two), else a new one.

        Raises:
            ServerUnavailableError: the server does not answer.
        """
        if self.available is False:
            return None
        return self._recent(max_age_s) or self.scrape()

    async def awindow_start(self, max_age_s: float = 0.0) -> VLLMMetrics | None:
        """Async twin of :meth:`window_start`."""
        if self.available is False:
            return None
        return self._recent(max_age_s) or await self.ascrape()

    def window_end(self) -> VLLMMetrics | None:
        """The scrape that closes a window; None (not an error) if the server stopped answering:
        the answer is in hand, only the figures are lost."""
        try:
            return self.scrape()
        except ServerUnavailableError:
            return None

    async def awindow_end(self) -> VLLMMetrics | None:
        """Async twin of :meth:`window_end`."""
        try:
            return await self.ascrape()
        except ServerUnavailableError:
            return None

    def scrape(self) -> VLLMMetrics | None:
        """One scrape; None when the server has no metrics endpoint."""
        if self.available is False:
            return None
        if self._client is None:
            self._client = httpx.Client(
                timeout=self.timeout, headers=self.headers, verify=_ssl_context()
            )
            # close the pooled connection when this object goes away (no leaked sockets)
            weakref.finalize(self, self._client.close)
        try:
            return self._handle(self._client.get(self.url))
        except httpx.TransportError as exc:
            raise ServerUnavailableError(f"cannot scrape {self.url}: {exc!r}") from exc

    async def ascrape(self) -> VLLMMetrics | None:
        """Async twin of :meth:`scrape` (httpx.AsyncClient)."""
        if self.available is False:
            return None
        try:
            # one short-lived client per scrape: an AsyncClient is bound to the event loop it
            # first ran on, and LangChain/LlamaIndex callers may use several loops
            async with httpx.AsyncClient(
                timeout=self.timeout, headers=self.headers, verify=_ssl_context()
            ) as client:
                return self._handle(await client.get(self.url))
        except httpx.TransportError as exc:
            raise ServerUnavailableError(f"cannot scrape {self.url}: {exc!r}") from exc

    def close(self) -> None:
        """Close the pooled sync connection (also done when the object is collected)."""
        if self._client is not None:
            self._client.close()
            self._client = None

    async def aclose(self) -> None:
        """Async twin of :meth:`close` (async scrapes hold no connection between calls)."""
        self.close()
