"""Behavioural tests of the engine, run against the embedded store and a real Redis."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from cache_helpers import toy_embed

from tokenlean_cache import (
    CacheConfig,
    EmbeddedStore,
    Guard,
    KeyPolicy,
    SemanticCache,
    no_cache,
)
from tokenlean_core import Ledger, TokenleanError, Usage, scope


def make(store: object, ledger: Ledger, **kw: object) -> SemanticCache:
    return SemanticCache(store, embedder=toy_embed, guard=Guard(verifier=None), ledger=ledger, **kw)  # type: ignore[arg-type]


def test_exact_then_semantic_hit(store: object, ledger: Ledger) -> None:
    c = make(store, ledger)
    assert c.lookup("How do I reset my password?", model="m") is None
    assert c.update("How do I reset my password?", "A", model="m", usage=Usage(100, 20))
    hit = c.lookup("How do I reset my password?", model="m")
    assert hit is not None and hit.exact and hit.distance == 0.0 and hit.payload == "A"
    hit = c.lookup("how do i reset my password", model="m")  # same words, different text
    assert hit is not None and not hit.exact and hit.payload == "A"
    assert hit.distance < 1e-5
    report = ledger.report()
    assert report.saved_tokens == 240  # two hits credited with the original 100 + 20
    events = [r.name for r in ledger.records() if r.component == "cache"]
    assert events.count("hit") == 2 and events.count("miss") == 1


def test_model_params_and_context_are_hard_prefilters(store: object, ledger: Ledger) -> None:
    c = make(store, ledger)
    c.update("What is RAG?", "A", model="gpt-a", params={"temperature": 0})
    assert c.lookup("What is RAG?", model="gpt-b", params={"temperature": 0}) is None
    assert c.lookup("What is RAG?", model="gpt-a", params={"temperature": 0.7}) is None
    assert c.lookup("What is RAG?", model="gpt-a", params={"temperature": 0.0}) is not None
    sys_a = [
        {"role": "system", "content": "Answer in French."},
        {"role": "user", "content": "What is RAG?"},
    ]
    sys_b = [
        {"role": "system", "content": "Answer in German."},
        {"role": "user", "content": "What is RAG?"},
    ]
    c.update(sys_a, "B", model="gpt-a")
    assert c.lookup(sys_a, model="gpt-a") is not None
    assert c.lookup(sys_b, model="gpt-a") is None


def test_threshold_zero_means_exact_only(store: object, ledger: Ledger) -> None:
    c = make(store, ledger, max_distance=0.0)
    c.update("How do I reset my password?", "A", model="m")
    assert c.lookup("How do I reset my password?", model="m") is not None
    assert c.lookup("how do i reset my password", model="m") is None
    # and a per-call 0 overrides a lenient default
    c2 = make(store, ledger, max_distance=1.0)
    assert c2.lookup("how do i reset my password", model="m", max_distance=0) is None
    assert c2.lookup("how do i reset my password", model="m") is not None


async def test_same_scale_sync_and_async(store: object, ledger: Ledger) -> None:
    c = make(store, ledger)
    c.update("the cat sat on the mat", "A", model="m")
    sync = c.lookup("the cat sat on a mat", model="m", max_distance=2.0)
    asy = await c.alookup("the cat sat on a mat", model="m", max_distance=2.0)
    assert sync is not None and asy is not None
    assert sync.distance == pytest.approx(asy.distance, abs=1e-5)
    assert 0.0 < sync.distance < 1.0


def test_tenant_isolation(store: object, ledger: Ledger) -> None:
    c = make(store, ledger)
    c.update("What is our refund policy?", "acme policy", model="m", tenant="acme")
    assert c.lookup("What is our refund policy?", model="m", tenant="globex") is None
    assert c.lookup("what is our refund policy", model="m", tenant="globex") is None
    with scope(tenant="acme"):
        hit = c.lookup("What is our refund policy?", model="m")
        assert hit is not None and hit.payload == "acme policy"
    with scope(tenant="globex"):
        assert c.lookup("What is our refund policy?", model="m") is None


def test_tenant_isolation_under_concurrency(store: object, ledger: Ledger) -> None:
    c = make(store, ledger)
    tenants = [f"t{i}" for i in range(6)]
    questions = [f"What is the status of ticket number {n}?" for n in range(5)]

    def work(t: str) -> list[str]:
        seen = []
        for q in questions:
            hit = c.lookup(q, model="m", tenant=t)
            if hit is not None:
                seen.append(hit.payload)
            c.update(q, f"{t}:{q}", model="m", tenant=t)
            hit = c.lookup(q, model="m", tenant=t)
            assert hit is not None
            seen.append(hit.payload)
        return seen

    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(work, tenants * 2))
    for t, payloads in zip(tenants * 2, results, strict=True):
        assert payloads and all(p.startswith(f"{t}:") for p in payloads)


async def test_tenant_isolation_async_concurrency(store: object, ledger: Ledger) -> None:
    c = make(store, ledger)

    async def work(t: str) -> list[str]:
        out = []
        for n in range(4):
            q = f"How many seats are left on flight {n}?"
            await c.aupdate(q, f"{t}:{n}", model="m", tenant=t)
            hit = await c.alookup(q, model="m", tenant=t)
            assert hit is not None
            out.append(hit.payload)
        return out

    results = await asyncio.gather(*(work(f"tenant{i}") for i in range(8)))
    for i, payloads in enumerate(results):
        assert all(p.startswith(f"tenant{i}:") for p in payloads)


def test_delete_tenant(store: object, ledger: Ledger) -> None:
    c = make(store, ledger)
    c.update("q one", "1", model="m", tenant="a")
    c.update("q two", "2", model="m", tenant="a")
    c.update("q one", "3", model="m", tenant="b")
    assert c.delete_tenant("a") == 2
    assert c.lookup("q one", model="m", tenant="a") is None
    hit = c.lookup("q one", model="m", tenant="b")
    assert hit is not None and hit.payload == "3"


def test_ttl_default_and_per_entry(store: object, ledger: Ledger) -> None:
    # generous margins: a loaded CI machine can take a good part of a second between calls
    c = make(store, ledger, config=CacheConfig(ttl_s=2.0))
    c.update("short lived question", "A", model="m")
    c.update("long lived question", "B", model="m", ttl_s=60)
    assert c.lookup("short lived question", model="m") is not None
    time.sleep(2.5)
    assert c.lookup("short lived question", model="m") is None
    assert c.lookup("long lived question", model="m") is not None


def test_sliding_ttl_is_off_by_default_and_optional(store: object, ledger: Ledger) -> None:
    fixed = make(store, ledger, config=CacheConfig(ttl_s=0.8))
    fixed.update("fixed ttl question", "A", model="m")
    time.sleep(0.5)
    assert fixed.lookup("fixed ttl question", model="m") is not None  # no extension
    time.sleep(0.5)
    assert fixed.lookup("fixed ttl question", model="m") is None
    sliding = make(store, ledger, config=CacheConfig(ttl_s=0.8, sliding_ttl=True))
    sliding.update("sliding ttl question", "B", model="m")
    for _ in range(3):
        time.sleep(0.45)
        assert sliding.lookup("sliding ttl question", model="m") is not None


def test_lru_eviction(ledger: Ledger, tmp_path: object, request: pytest.FixtureRequest) -> None:
    s = EmbeddedStore(":memory:", max_entries=3)
    c = make(s, ledger)
    for i in range(3):
        c.update(f"question number {i} alpha", str(i), model="m")
    assert c.lookup("question number 0 alpha", model="m") is not None  # 0 is now most recent
    c.update("question number 3 alpha", "3", model="m")
    assert s.count() == 3
    assert c.lookup("question number 1 alpha", model="m", max_distance=0) is None  # evicted
    assert c.lookup("question number 0 alpha", model="m", max_distance=0) is not None


@pytest.mark.redis
def test_lru_eviction_redis(redis_url: str, ledger: Ledger) -> None:
    from tokenlean_cache import RedisStore

    s = RedisStore(redis_url, namespace="lru", max_entries=3)
    s.clear()
    c = make(s, ledger)
    try:
        for i in range(3):
            c.update(f"question number {i} alpha", str(i), model="m")
            time.sleep(0.01)
        assert c.lookup("question number 0 alpha", model="m", max_distance=0) is not None
        c.update("question number 3 alpha", "3", model="m")
        assert s.count() == 3
        assert c.lookup("question number 1 alpha", model="m", max_distance=0) is None
        assert c.lookup("question number 0 alpha", model="m", max_distance=0) is not None
    finally:
        s.clear()
        s.close()


def test_bypass_per_call_and_context(store: object, ledger: Ledger) -> None:
    c = make(store, ledger)
    assert not c.update("what is on my calendar", "private", model="m", bypass=True)
    assert c.lookup("what is on my calendar", model="m") is None
    c.update("what is the weather", "sunny", model="m")
    assert c.lookup("what is the weather", model="m", bypass=True) is None
    with no_cache():
        assert c.lookup("what is the weather", model="m") is None
        assert not c.update("another private thing", "x", model="m")
    assert c.lookup("what is the weather", model="m") is not None


def test_keys_are_hashed(store: object, ledger: Ledger) -> None:
    c = make(store, ledger)
    c.update("my secret project codename", "A", model="m", tenant="acme")
    q = c.prepare("my secret project codename", model="m", tenant="acme")
    for value in (q.key, q.partition, q.tenant):
        assert len(value) == 64 and all(ch in "0123456789abcdef" for ch in value)
        assert "secret" not in value and "acme" not in value


def test_last_user_turn_is_the_question(store: object, ledger: Ledger) -> None:
    c = make(store, ledger, config=CacheConfig(key_policy=KeyPolicy(history_turns=0)))
    conv1 = [
        {"role": "system", "content": "You are helpful."},
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "Hi!"},
        {"role": "user", "content": "How do I reset my password?"},
    ]
    conv2 = [
        {"role": "system", "content": "You are helpful."},
        {"role": "user", "content": "How do I reset my password?"},
    ]
    c.update(conv1, "A", model="m")
    q = c.prepare(conv1, model="m")
    assert q.question == "How do I reset my password?"
    assert c.lookup(conv2, model="m") is not None  # history ignored by this policy
    strict = make(store, ledger)  # default: the whole history is part of the pre-filter
    strict.update(conv1, "B", model="m2")
    assert strict.lookup(conv2, model="m2") is None


def test_guard_rejects_negation_and_numbers(store: object, ledger: Ledger) -> None:
    c = SemanticCache(
        store, embedder=toy_embed, guard=Guard(verifier=None), ledger=ledger, max_distance=1.0
    )  # type: ignore[arg-type]
    c.update("Can I cancel my order within 30 days?", "yes", model="m")
    assert c.lookup("Can I cancel my order within 60 days?", model="m") is None
    assert c.lookup("Can I not cancel my order within 30 days?", model="m") is None
    assert c.lookup("can I cancel my order within 30 days", model="m") is not None
    unguarded = SemanticCache(
        store, embedder=toy_embed, guard=None, ledger=ledger, max_distance=1.0
    )  # type: ignore[arg-type]
    assert unguarded.lookup("Can I cancel my order within 60 days?", model="m") is not None


def test_config_validation() -> None:
    with pytest.raises(TokenleanError):
        CacheConfig(max_distance=-0.1)
    with pytest.raises(TokenleanError):
        CacheConfig(max_distance=2.5)
    with pytest.raises(TokenleanError):
        CacheConfig(ttl_s=0)
    with pytest.raises(TokenleanError):
        KeyPolicy(history_turns=-1)
    with pytest.raises(TokenleanError):
        SemanticCache(":memory:", embedder=object(), guard=None)


def test_embedded_store_persists(tmp_path: object, ledger: Ledger) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "p.sqlite3"
    c = make(EmbeddedStore(path), ledger)
    c.update("persist me please", "A", model="m", usage=Usage(5, 5))
    c.close()
    c2 = make(EmbeddedStore(path), ledger)
    hit = c2.lookup("persist me please now", model="m", max_distance=1.0)
    assert hit is not None and hit.payload == "A" and hit.usage == Usage(5, 5)
    c2.close()
