"""Errors raised by tokenlean-vllm; all derive from :class:`tokenlean_core.TokenleanError`."""

from __future__ import annotations

from tokenlean_core import TokenleanError

__all__ = [
    "MetricsParseError",
    "ServerError",
    "ServerStartError",
    "ServerUnavailableError",
    "SpeculativeConfigError",
    "VLLMError",
]


class VLLMError(TokenleanError):
    """Base class of tokenlean-vllm's errors."""


class SpeculativeConfigError(VLLMError, ValueError):
    """A speculative-decoding configuration vLLM would reject; the message names the field."""


class ServerError(VLLMError):
    """A model server could not be started, reached or stopped."""


class ServerStartError(ServerError):
    """The server process exited or did not become healthy in time; the message has its log tail."""


class ServerUnavailableError(ServerError, ConnectionError):
    """Nothing answers at the server's URL (refused, timed out, or unhealthy)."""


class MetricsParseError(VLLMError, ValueError):
    """A Prometheus exposition text could not be parsed."""
