"""Errors raised by tokenlean-router (all derive from :class:`tokenlean_core.TokenleanError`)."""

from __future__ import annotations

from tokenlean_core import TokenleanError


class RouterError(TokenleanError):
    """Base class of the router's errors."""


class RouterConfigError(RouterError, ValueError):
    """A router, gate, cascade or batcher was configured with invalid values."""


class GateFormatError(RouterError, ValueError):
    """A saved gate or verifier file could not be read (wrong format, version or shape)."""


class AllTiersFailedError(RouterError, RuntimeError):
    """Every tier (the chosen one and all its fallbacks) raised; ``errors`` holds each exception."""

    def __init__(self, errors: list[BaseException]) -> None:
        self.errors = errors
        names = ", ".join(type(e).__name__ for e in errors)
        super().__init__(f"every tier failed ({names}); see .errors for the exceptions")
