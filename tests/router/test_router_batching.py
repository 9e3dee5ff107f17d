"""MicroBatcher: flush on max items, max tokens and max wait; grouping; ordering; errors."""

from __future__ import annotations

import asyncio
import time

import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel

from tokenlean_router import BatchKey, BatchLimits, MicroBatcher, RouterConfigError, RouterError
from tokenlean_router.langchain import chat_model_batch_runner


class Recorder:
    def __init__(self, delay: float = 0.0) -> None:
        self.batches: list[tuple[BatchKey, list[str]]] = []
        self.delay = delay

    async def __call__(self, key: BatchKey, items: list[str]) -> list[str]:
        self.batches.append((key, list(items)))
        await asyncio.sleep(self.delay)
        return [f"{key.model}:{i}" for i in items]


async def test_flushes_on_max_items_and_keeps_order() -> None:
    rec = Recorder()
    b: MicroBatcher[str, str] = MicroBatcher(rec, BatchLimits(max_items=3, max_wait_s=10.0))
    t = time.perf_counter()
    out = await asyncio.gather(*(b.submit(f"q{i}", model="m") for i in range(6)))
    assert time.perf_counter() - t < 1.0  # did not wait for max_wait
    assert out == [f"m:q{i}" for i in range(6)]
    assert [items for _, items in rec.batches] == [["q0", "q1", "q2"], ["q3", "q4", "q5"]]


async def test_flushes_on_max_tokens() -> None:
    rec = Recorder()
    b: MicroBatcher[str, str] = MicroBatcher(
        rec, BatchLimits(max_items=100, max_tokens=10, max_wait_s=10.0), count_tokens=len
    )
    # 4 + 4 fit (8); the third (4) would pass 10, so the first two leave together
    tasks = [asyncio.ensure_future(b.submit(s, model="m")) for s in ("aaaa", "bbbb", "cccc")]
    await asyncio.sleep(0.05)
    assert [items for _, items in rec.batches] == [["aaaa", "bbbb"]]
    # reaching the limit exactly flushes at once
    tasks.append(asyncio.ensure_future(b.submit("dddddd", model="m")))
    out = await asyncio.gather(*tasks)
    assert out == ["m:aaaa", "m:bbbb", "m:cccc", "m:dddddd"]
    assert [items for _, items in rec.batches] == [["aaaa", "bbbb"], ["cccc", "dddddd"]]
    # an item larger than the limit goes alone
    assert await b.submit("x" * 50, model="m") == "m:" + "x" * 50
    assert rec.batches[-1][1] == ["x" * 50]


async def test_flushes_on_max_wait() -> None:
    rec = Recorder()
    b: MicroBatcher[str, str] = MicroBatcher(rec, BatchLimits(max_items=100, max_wait_s=0.05))
    t = time.perf_counter()
    out = await asyncio.gather(b.submit("a", model="m"), b.submit("b", model="m"))
    waited = time.perf_counter() - t
    assert out == ["m:a", "m:b"]
    assert 0.04 <= waited < 1.0
    assert len(rec.batches) == 1


async def test_groups_by_model_settings_and_latency_class() -> None:
    rec = Recorder()
    limits = {
        "default": BatchLimits(max_items=100, max_wait_s=0.03),
        "interactive": BatchLimits(max_items=100, max_wait_s=0.0),
    }
    b: MicroBatcher[str, str] = MicroBatcher(rec, limits)
    out = await asyncio.gather(
        b.submit("1", model="a", settings={"temperature": 0}),
        b.submit("2", model="a", settings={"temperature": 0.7}),
        b.submit("3", model="b", settings={"temperature": 0}),
        b.submit("4", model="a", settings={"temperature": 0}),
        b.submit("5", model="a", settings={"temperature": 0}, latency_class="interactive"),
    )
    assert out == ["a:1", "a:2", "b:3", "a:4", "a:5"]
    groups = sorted(items for _, items in rec.batches)
    assert groups == [["1", "4"], ["2"], ["3"], ["5"]]
    first = next(k for k, items in rec.batches if items == ["5"])
    assert first.latency_class == "interactive"
    # settings are canonical: key order does not split groups
    assert BatchKey.of("m", {"a": 1, "b": 2}) == BatchKey.of("m", {"b": 2, "a": 1})


async def test_errors_reach_every_waiter_and_bad_results_are_caught() -> None:
    async def boom(key: BatchKey, items: list[str]) -> list[str]:
        raise ConnectionError("batch API down")

    b: MicroBatcher[str, str] = MicroBatcher(boom, BatchLimits(max_items=2))
    results = await asyncio.gather(
        b.submit("a", model="m"), b.submit("b", model="m"), return_exceptions=True
    )
    assert all(isinstance(r, ConnectionError) for r in results)

    async def short(key: BatchKey, items: list[str]) -> list[str]:
        return items[:1]

    b2: MicroBatcher[str, str] = MicroBatcher(short, BatchLimits(max_items=2))
    with pytest.raises(RouterError, match="1 results for 2 items"):
        await asyncio.gather(b2.submit("a", model="m"), b2.submit("b", model="m"))


async def test_close_flushes_and_rejects_new_work() -> None:
    rec = Recorder()
    async with MicroBatcher(rec, BatchLimits(max_items=100, max_wait_s=30.0)) as b:
        task = asyncio.ensure_future(b.submit("late", model="m"))
        await asyncio.sleep(0.01)
        assert b.pending == 1
    assert await task == "m:late"
    with pytest.raises(RouterError, match="closed"):
        await b.submit("x", model="m")


def test_limits_validate() -> None:
    with pytest.raises(RouterConfigError):
        BatchLimits(max_items=0)
    with pytest.raises(RouterConfigError):
        BatchLimits(max_tokens=0)
    with pytest.raises(RouterConfigError):
        BatchLimits(max_wait_s=-1)
    with pytest.raises(RouterConfigError, match="default"):
        MicroBatcher(Recorder(), {"fast": BatchLimits()})


async def test_in_front_of_a_langchain_chat_model_abatch() -> None:
    small = GenericFakeChatModel(messages=iter(["one", "two", "three"]))
    calls: list[int] = []
    runner = chat_model_batch_runner({"small": small})

    async def counting(key: BatchKey, items: list[object]) -> list[object]:
        calls.append(len(items))
        return list(await runner(key, items))  # type: ignore[arg-type]

    b: MicroBatcher[object, object] = MicroBatcher(counting, BatchLimits(max_items=3, max_wait_s=1))
    outs = await asyncio.gather(*(b.submit(f"q{i}", model="small") for i in range(3)))
    assert calls == [3]
    assert sorted(o.text for o in outs) == ["one", "three", "two"]  # type: ignore[attr-defined]
    with pytest.raises(RouterConfigError, match="no chat model named"):
        await runner(BatchKey.of("missing"), ["q"])
