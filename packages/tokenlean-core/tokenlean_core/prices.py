"""Prices: the maintained offline table of ``genai-prices``, user overrides and self-hosted models.

Look-ups are resolved once per model into per-token rates and cached, so pricing a call costs a few
multiplications (genai-prices' own matcher is ~1 ms a call). Calls whose prompt exceeds
``TIERED_ABOVE`` tokens are priced through genai-prices directly, which knows long-context tiers.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from .errors import PriceNotFoundError, TokenleanError
from .usage import Usage

__all__ = ["Price", "PriceLike", "PriceTable", "SelfHostedPrice", "default_prices"]

logger = logging.getLogger("tokenlean.core")

TIERED_ABOVE = 128_000
_PREFIX = re.compile(r"^(?P<provider>[\w.-]+)[:/](?P<model>.+)$")


@runtime_checkable
class PriceLike(Protocol):
    def cost(self, usage: Usage) -> float: ...


@dataclass(frozen=True, slots=True)
class Price:
    """USD per million tokens. Cache rates default to the input rate when unknown."""

    input: float
    output: float
    cache_read: float | None = None
    cache_write: float | None = None

    def __post_init__(self) -> None:
        for name in ("input", "output", "cache_read", "cache_write"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, (int, float)) or v < 0):
                raise TokenleanError(f"Price.{name} must be a non-negative number, got {v!r}")

    def cost(self, usage: Usage) -> float:
        read = self.input if self.cache_read is None else self.cache_read
        write = self.input if self.cache_write is None else self.cache_write
        return (
            usage.uncached_input_tokens * self.input
            + usage.cache_read_tokens * read
            + usage.cache_write_tokens * write
            + usage.output_tokens * self.output
        ) / 1e6


@dataclass(frozen=True, slots=True)
class SelfHostedPrice:
    """The cost of tokens on hardware you run.

    ``usd_per_gpu_hour`` x ``gpus`` buys ``output_tokens_per_second`` of decoding throughput at
    the deployment's usual load (measure it, e.g. from vLLM's metrics). Prefill is
    much cheaper than decoding; an input token costs ``input_weight`` of an output token and a
    prefix-cache hit ``cache_read_weight`` of an input token.
    """

    usd_per_gpu_hour: float
    output_tokens_per_second: float
    gpus: int = 1
    input_weight: float = 0.1
    cache_read_weight: float = 0.0

    def __post_init__(self) -> None:
        if self.usd_per_gpu_hour < 0:
            raise TokenleanError("usd_per_gpu_hour must not be negative")
        if self.output_tokens_per_second <= 0:
            raise TokenleanError("output_tokens_per_second must be positive")
        if self.gpus < 1:
            raise TokenleanError("gpus must be at least 1")

    @property
    def usd_per_output_token(self) -> float:
        return self.usd_per_gpu_hour * self.gpus / 3600.0 / self.output_tokens_per_second

    def cost(self, usage: Usage) -> float:
        per = self.usd_per_output_token
        inp = per * self.input_weight
        return (
            usage.output_tokens * per
            + (usage.uncached_input_tokens + usage.cache_write_tokens) * inp
            + usage.cache_read_tokens * inp * self.cache_read_weight
        )


class _GenaiPrice:
    """Per-token rates resolved from genai-prices, with the tiered path for long prompts."""

    __slots__ = ("linear", "model", "provider")

    def __init__(self, model: str, provider: str | None, linear: Price) -> None:
        self.model = model
        self.provider = provider
        self.linear = linear

    def cost(self, usage: Usage) -> float:
        if usage.input_tokens > TIERED_ABOVE:
            return _genai_cost(usage, self.model, self.provider)
        return self.linear.cost(usage)


def _genai_usage(usage: Usage) -> Any:
    from genai_prices import Usage as GUsage

    return GUsage(
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cache_read_tokens=usage.cache_read_tokens,
        cache_write_tokens=usage.cache_write_tokens,
    )


def _genai_cost(usage: Usage, model: str, provider: str | None) -> float:
    from genai_prices import calc_price

    return float(calc_price(_genai_usage(usage), model, provider_id=provider).total_price)


def _resolve_genai(model: str, provider: str | None) -> _GenaiPrice | None:
    try:
        from genai_prices import calc_price
    except ImportError:  # pragma: no cover - genai-prices is a dependency
        return None
    mtok = 1_000_000

    def rate(**kw: int) -> float:
        from genai_prices import Usage as GUsage

        return float(calc_price(GUsage(**kw), model, provider_id=provider).total_price)

    try:
        inp = rate(input_tokens=mtok)
    except LookupError:
        return None
    out = rate(output_tokens=mtok)
    read = rate(input_tokens=mtok, cache_read_tokens=mtok)
    write = rate(input_tokens=mtok, cache_write_tokens=mtok)
    return _GenaiPrice(model, provider, Price(inp, out, read, write))


class PriceTable:
    """Resolves a model name to a price.

    Order: user overrides (exact name, then regex patterns given with ``re:``), then genai-prices.
    ``model`` may carry a provider prefix (``anthropic:claude-sonnet-4-5``, ``openai/gpt-4o``).
    """

    def __init__(
        self,
        overrides: Mapping[str, PriceLike] | None = None,
        *,
        use_genai_prices: bool = True,
    ) -> None:
        self._exact: dict[str, PriceLike] = {}
        self._patterns: list[tuple[re.Pattern[str], PriceLike]] = []
        self._cache: dict[tuple[str, str | None], PriceLike | None] = {}
        self._use_genai = use_genai_prices
        self._lock = threading.Lock()
        self._warned: set[str] = set()
        for name, price in (overrides or {}).items():
            self.set(name, price)

    def set(self, model: str, price: PriceLike) -> None:
        """Price ``model`` (or every model matching ``re:<regex>``) at ``price``."""
        if not isinstance(price, PriceLike):
            raise TokenleanError(
                f"price for {model!r} must be a Price or SelfHostedPrice, "
                f"got {type(price).__name__}"
            )
        with self._lock:
            if model.startswith("re:"):
                self._patterns.insert(0, (re.compile(model[3:], re.I), price))
            else:
                self._exact[model] = price
            self._cache.clear()

    def lookup(self, model: str, provider: str | None = None) -> PriceLike | None:
        """The price for ``model``, or None when nobody knows it."""
        key = (model, provider)
        if key in self._cache:
            return self._cache[key]
        found = self._lookup(model, provider)
        with self._lock:
            self._cache[key] = found
        return found

    def _lookup(self, model: str, provider: str | None) -> PriceLike | None:
        if model in self._exact:
            return self._exact[model]
        for pattern, price in self._patterns:
            if pattern.search(model):
                return price
        if not self._use_genai:
            return None
        bare, prov = model, provider
        m = _PREFIX.match(model)
        if m and prov is None:
            prov, bare = m.group("provider").lower(), m.group("model")
            if bare in self._exact:
                return self._exact[bare]
        resolved = _resolve_genai(bare, prov)
        if resolved is None and prov is not None:
            resolved = _resolve_genai(bare, None)
        return resolved

    def cost(self, usage: Usage, model: str | None, provider: str | None = None) -> float | None:
        """USD for ``usage`` on ``model``; None (and one warning per model) when unpriced."""
        if not model:
            return None
        price = self._cache.get((model, provider), _MISSING)
        if price is _MISSING:
            price = self.lookup(model, provider)
        if price is None:
            if model not in self._warned:
                self._warned.add(model)
                logger.warning(
                    "no price known for model %r; costs are left out. Add one with "
                    "PriceTable.set(%r, Price(input=..., output=...))",
                    model,
                    model,
                )
            return None
        if type(price) is _GenaiPrice and usage.input_tokens <= TIERED_ABOVE:
            return price.linear.cost(usage)  # skip a call layer on the hot path
        cost: float = price.cost(usage)
        return cost

    def require(self, model: str, provider: str | None = None) -> PriceLike:
        """Like :meth:`lookup` but raises :class:`PriceNotFoundError`."""
        price = self.lookup(model, provider)
        if price is None:
            raise PriceNotFoundError(
                f"no price known for model {model!r}; pass overrides={{{model!r}: Price(...)}}"
            )
        return price


_MISSING: Any = object()
_default: PriceTable | None = None


def default_prices() -> PriceTable:
    """The process-wide price table (genai-prices, no overrides)."""
    global _default
    if _default is None:
        _default = PriceTable()
    return _default
