"""Fixtures of the tokenlean-memory tests: a private ledger per test (the real Redis comes from
the root conftest)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tokenlean_core import Ledger, MemorySink, set_ledger


@pytest.fixture
def ledger() -> Iterator[Ledger]:
    """A private ledger installed as the process default for the test."""
    led = Ledger(sinks=[MemorySink()])
    set_ledger(led)
    try:
        yield led
    finally:
        set_ledger(None)
