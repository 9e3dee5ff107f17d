"""Errors of ``tokenlean bench``; each maps to an exit code of the command."""

from __future__ import annotations

from tokenlean_core import TokenleanError

__all__ = ["BenchError", "DataMissingError"]


class BenchError(TokenleanError):
    """The benchmark cannot run as configured (exit code 1)."""


class DataMissingError(BenchError):
    """A data folder given with ``--data`` is missing or lacks the files it needs (exit code 3)."""
