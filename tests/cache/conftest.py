"""Fixtures of the tokenlean-cache tests (the real Redis comes from the root conftest): a deterministic
small embedder for unit tests, and the real MiniLM embedder (loaded once per session)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tokenlean_core import Ledger, MemorySink


@pytest.fixture
def ledger() -> Ledger:
    return Ledger(sinks=[MemorySink()])


@pytest.fixture(scope="session")
def minilm() -> object:
    from tokenlean_cache import MiniLMEmbedder

    emb = MiniLMEmbedder()
    emb(["warm up"])
    return emb


_NS = iter(range(1_000_000))


@pytest.fixture(params=["embedded", pytest.param("redis", marks=pytest.mark.redis)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[object]:
    """An empty store of each kind: the embedded store on a temporary SQLite file, and a fresh
    namespace on the session's real Redis."""
    from tokenlean_cache import EmbeddedStore, RedisStore

    if request.param == "embedded":
        s: object = EmbeddedStore(tmp_path / "cache.sqlite3", max_entries=1000)
    else:
        url = request.getfixturevalue("redis_url")
        s = RedisStore(url, namespace=f"t{os.getpid()}x{next(_NS)}", max_entries=1000)
    yield s
    try:
        s.clear()  # type: ignore[attr-defined]
    finally:
        await s.aclose()  # type: ignore[attr-defined]
        s.close()  # type: ignore[attr-defined]
