"""Redis killed in the middle of a run: every LLM call still succeeds (pass-through with one
warning) and the cache resumes when Redis is back."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
import warnings
from collections.abc import Iterator

import pytest
from cache_helpers import toy_embed
from redis_stack import REDIS_WRAPPER, RedisServer, _free_port

from tokenlean_cache import CacheConfig, CacheUnavailableWarning, Guard, RedisStore, SemanticCache
from tokenlean_core import Ledger

pytestmark = pytest.mark.redis


@pytest.fixture
def own_server(redis_server: RedisServer | None) -> Iterator[RedisServer]:
    """A Redis server only this test uses (so it can be killed), on its own port."""
    if not REDIS_WRAPPER.exists():
        pytest.skip("no .redis/redis-server to start and kill")
    workdir = tempfile.mkdtemp(prefix="tokenlean-redis-kill-")
    server = RedisServer(_free_port(), workdir)
    server.start()
    yield server
    server.stop()
    shutil.rmtree(workdir, ignore_errors=True)


def test_redis_killed_mid_run_passes_through_then_resumes(
    own_server: RedisServer, ledger: Ledger
) -> None:
    from langchain_core.language_models import FakeListChatModel

    from tokenlean_cache.langchain import TokenleanCache

    store = RedisStore(own_server.url, namespace="kill", socket_timeout=0.3)
    engine = SemanticCache(
        store,
        embedder=toy_embed,
        guard=Guard(verifier=None),
        ledger=ledger,
        config=CacheConfig(retry_after_s=0.2),
    )
    llm = FakeListChatModel(
        responses=[f"answer {i}" for i in range(100)], cache=TokenleanCache(engine)
    )
    first = llm.invoke("What is the capital of France?")
    assert llm.invoke("What is the capital of France?").content == first.content  # cached

    own_server.stop()

    def while_down() -> list[str]:
        out = [str(llm.invoke(f"Question {i} while Redis is down?").content) for i in range(5)]
        time.sleep(0.3)  # past retry_after_s: the cache retries, fails again, stays quiet
        out.append(str(llm.invoke("One more while down").content))
        return out

    with pytest.warns(CacheUnavailableWarning) as caught:
        answers = while_down()
    assert all(a.startswith("answer") for a in answers)
    assert len(caught) == 1  # one warning per outage, not one per call
    assert engine.degraded

    own_server.start()
    time.sleep(0.3)  # past retry_after_s
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fresh = llm.invoke("A question after Redis came back").content
        again = llm.invoke("A question after Redis came back").content
    assert fresh == again  # the cache works again (index recreated on the empty server)
    assert not engine.degraded
    misses = [r for r in ledger.records() if r.name == "miss"]
    assert any(r.detail.get("reason") == "unavailable" for r in misses)
    store.close()


async def test_redis_killed_async(own_server: RedisServer, ledger: Ledger) -> None:
    store = RedisStore(own_server.url, namespace="akill", socket_timeout=0.3)
    engine = SemanticCache(
        store,
        embedder=toy_embed,
        guard=Guard(verifier=None),
        ledger=ledger,
        config=CacheConfig(retry_after_s=0.1),
    )
    assert await engine.aupdate("hello there", "A", model="m")
    assert await engine.alookup("hello there", model="m") is not None
    own_server.stop()

    async def while_down() -> tuple[object, bool]:
        return await engine.alookup("hello there", model="m"), await engine.aupdate("x", "y")

    with pytest.warns(CacheUnavailableWarning):
        looked, stored = await while_down()
    assert looked is None and not stored
    own_server.start()
    await asyncio.sleep(0.2)
    assert await engine.aupdate("hello again", "B", model="m")
    hit = await engine.alookup("hello again", model="m")
    assert hit is not None and hit.payload == "B"
    await store.aclose()
    store.close()
