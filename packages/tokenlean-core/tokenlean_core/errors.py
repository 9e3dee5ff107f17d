"""Errors raised by tokenlean. Every error derives from :class:`TokenleanError`."""

from __future__ import annotations

__all__ = [
    "BudgetExceededError",
    "MissingDependencyError",
    "PriceNotFoundError",
    "TokenleanError",
    "UsageParseError",
]


class TokenleanError(Exception):
    """Base class of every error tokenlean raises."""


class MissingDependencyError(TokenleanError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""

    def __init__(self, module: str, extra: str, package: str = "tokenlean-core") -> None:
        self.module = module
        self.extra = extra
        super().__init__(
            f"{module!r} is not installed; install it with `pip install '{package}[{extra}]'`"
        )


class UsageParseError(TokenleanError, ValueError):
    """A usage payload could not be read. ``field`` names the offending field."""

    def __init__(self, field: str, problem: str, source: str = "usage") -> None:
        self.field = field
        self.problem = problem
        self.source = source
        super().__init__(f"malformed {source} payload: field {field!r} {problem}")


class PriceNotFoundError(TokenleanError, LookupError):
    """No price is known for a model; pass ``prices=`` overrides or a self-hosted price."""


class BudgetExceededError(TokenleanError):
    """A token or dollar budget was exceeded.

    Attributes name the scope (``request``, ``session``, ``tenant`` or ``task``), its key, the
    metric (``tokens`` or ``usd``), the limit and what has been spent (including the call that
    was about to be made, when the check happens before a call).
    """

    def __init__(self, scope: str, key: str, metric: str, limit: float, spent: float) -> None:
        self.scope = scope
        self.key = key
        self.metric = metric
        self.limit = limit
        self.spent = spent
        unit = "$" if metric == "usd" else ""
        amount = f"{unit}{spent:.6g}" if metric == "usd" else f"{int(spent)} tokens"
        cap = f"{unit}{limit:.6g}" if metric == "usd" else f"{int(limit)} tokens"
        super().__init__(
            f"{scope} budget exceeded for {scope}={key!r}: {amount} spent or requested, "
            f"limit {cap}. Raise the budget or start a new {scope} scope."
        )
