"""Ledger: scopes, concurrency, sinks that fail, budgets, prices, the report."""

from __future__ import annotations

import asyncio
import contextvars
import errno
import json
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest

from tokenlean_core import (
    Budget,
    BudgetExceededError,
    JSONLSink,
    Ledger,
    LedgerWarning,
    MemorySink,
    Price,
    PriceTable,
    PrometheusSink,
    Record,
    SelfHostedPrice,
    TokenleanError,
    Usage,
    current_scope,
    read_jsonl,
    scope,
)

PRICES = PriceTable({"m-small": Price(input=1.0, output=2.0, cache_read=0.1)})


def ledger(*sinks: object, **kw: object) -> Ledger:
    return Ledger(list(sinks) if sinks else None, prices=PRICES, **kw)  # type: ignore[arg-type]


def test_scopes_nest_and_reset() -> None:
    assert current_scope().tenant is None
    with scope(tenant="acme", task="support") as outer:
        assert outer.tenant == "acme"
        with scope(session="s1", request=True) as inner:
            assert inner.tenant == "acme"
            assert inner.session == "s1"
            assert inner.request and len(inner.request) == 32
        assert current_scope().session is None
    assert current_scope().tenant is None


def test_scope_rejects_non_strings() -> None:
    with pytest.raises(TokenleanError, match="tenant must be a string"), scope(tenant=5):  # type: ignore[arg-type]
        pass


def test_records_carry_scope_and_price() -> None:
    led = ledger()
    with scope(tenant="acme", request="r1"):
        rec = led.record_call("m-small", Usage(1000, 500, cache_read_tokens=400), latency_s=0.2)
    assert rec.scope.tenant == "acme"
    assert rec.scope.request == "r1"
    # 600 uncached * 1 + 400 cached * 0.1 + 500 out * 2, per million
    assert rec.usd == pytest.approx((600 * 1 + 400 * 0.1 + 500 * 2) / 1e6)


def test_unknown_model_is_unpriced_not_an_error(caplog: pytest.LogCaptureFixture) -> None:
    led = Ledger(prices=PriceTable(use_genai_prices=False))
    rec = led.record_call("mystery", Usage(10, 10))
    assert rec.usd is None
    assert "no price known" in caplog.text
    assert led.report().totals.unpriced_calls == 1


def test_genai_prices_offline() -> None:
    table = PriceTable()
    cost = table.cost(Usage(1_000_000, 0), "gpt-4o-mini")
    assert cost == pytest.approx(0.15)
    cached = table.cost(Usage(1_000_000, 0, cache_read_tokens=1_000_000), "gpt-4o-mini")
    assert cached == pytest.approx(0.075)
    # Anthropic-normalised usage: cache writes priced at the write rate
    write = table.cost(
        Usage(1_000_000, 0, cache_write_tokens=1_000_000), "anthropic:claude-sonnet-4-5"
    )
    plain = table.cost(Usage(1_000_000, 0), "claude-sonnet-4-5")
    assert write is not None and plain is not None and write > plain
    # long prompts go through genai-prices' tiered path and agree below the tier
    assert table.cost(Usage(200_000, 0), "gpt-4o-mini") == pytest.approx(0.03)


def test_self_hosted_price() -> None:
    price = SelfHostedPrice(usd_per_gpu_hour=3.6, output_tokens_per_second=1000, input_weight=0.1)
    assert price.usd_per_output_token == pytest.approx(1e-6)
    assert price.cost(Usage(1000, 1000)) == pytest.approx(1000e-6 + 1000 * 0.1e-6)
    table = PriceTable({"re:^llama": price})
    assert table.cost(Usage(0, 1000), "llama-3.1-8b") == pytest.approx(1e-3)
    with pytest.raises(TokenleanError):
        SelfHostedPrice(1.0, 0)
    with pytest.raises(TokenleanError):
        Price(input=-1, output=1)


def test_record_saving_prices_tokens() -> None:
    led = ledger()
    rec = led.record_saving("cache", tokens_in=1000, tokens_out=100, model="m-small")
    assert rec.usd == pytest.approx((1000 + 200) / 1e6)
    with pytest.raises(TokenleanError, match="must not be negative"):
        led.record_saving("cache", tokens_in=-1)
    with pytest.raises(TokenleanError, match="component"):
        led.record_saving("")


def test_report_aggregates() -> None:
    led = ledger()
    with scope(tenant="a", request="r1"):
        led.record_call("m-small", Usage(100, 10), latency_s=0.1)
        led.record_call("m-small", Usage(5000, 10), latency_s=0.5)
        led.record_event("cache", "hit")
        led.record_saving("cache", 100, 10, model="m-small")
        led.record_outcome(True)
    with scope(tenant="b", request="r2"):
        led.record_call("m-small", Usage(100, 10), latency_s=0.3)
        led.record_event("cache", "miss")
        led.record_event("cache", "miss")
        led.record_outcome(False)
    rep = led.report()
    assert rep.totals.calls == 3
    assert rep.totals.input_tokens == 5200
    assert rep.cache_hit_rate == pytest.approx(1 / 3)
    assert rep.savings["cache"].tokens_in == 100
    assert rep.saved_tokens == 110
    assert rep.successes == 1 and rep.failures == 1
    assert rep.cost_per_success == pytest.approx(rep.totals.usd)
    assert rep.latency_by_bucket["<1k"]["calls"] == 2
    assert rep.latency_by_bucket["<1k"]["p50"] == pytest.approx(0.2)
    assert rep.latency_by_bucket["4k-16k"]["calls"] == 1
    only_a = led.report(where={"tenant": "a"})
    assert only_a.totals.calls == 2
    text = rep.table()
    assert "savings by component" in text and "cache" in text
    json.dumps(rep.to_dict())


def test_threads_and_tasks_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    led = ledger(MemorySink(), JSONLSink(path))
    n_threads, per_thread = 8, 250

    def worker(i: int) -> None:
        with scope(tenant=f"t{i}"):
            for _ in range(per_thread):
                led.record_call("m-small", Usage(10, 1))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n_threads)]
    for t in threads:
        t.start()

    async def task(i: int) -> None:
        with scope(session=f"s{i}"):
            for _ in range(per_thread):
                led.record_saving("cache", 5, 1)
                await asyncio.sleep(0)
            assert current_scope().session == f"s{i}"

    async def main() -> None:
        await asyncio.gather(*(task(i) for i in range(n_threads)))

    asyncio.run(main())
    for t in threads:
        t.join()
    led.close()
    total = 2 * n_threads * per_thread
    assert len(led.records()) == total
    from_file = list(read_jsonl(path))
    assert len(from_file) == total
    per_tenant = {f"t{i}": 0 for i in range(n_threads)}
    for r in from_file:
        if r.kind == "llm_call":
            assert r.scope.tenant is not None
            per_tenant[r.scope.tenant] += 1
    assert set(per_tenant.values()) == {per_thread}
    assert led.spent("tenant", "t3") == (
        per_thread * 11,
        pytest.approx(led.spent("tenant", "t3")[1]),
    )


class FlakySink:
    """A sink that fails like a full disk until ``healthy`` is set."""

    def __init__(self) -> None:
        self.healthy = False
        self.written: list[Record] = []

    def write(self, records: Sequence[Record]) -> None:
        if not self.healthy:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.written.extend(records)

    def flush(self) -> None:
        return None

    def close(self) -> None:
        return None


def test_failing_sink_never_breaks_and_keeps_records() -> None:
    flaky = FlakySink()
    led = ledger(MemorySink(), flaky)
    with pytest.warns(LedgerWarning, match="No space left"):
        led.record_call("m-small", Usage(1, 1))
    led.record_call("m-small", Usage(2, 2))  # warned once only (filterwarnings=error would fail)
    assert led.pending == 2
    assert len(led.records()) == 2
    flaky.healthy = True
    led.record_call("m-small", Usage(3, 3))
    assert led.pending == 0
    assert [r.usage.input_tokens for r in flaky.written if r.usage] == [1, 2, 3]


def test_unwritable_jsonl_path_keeps_records_in_memory(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    led = Ledger([JSONLSink(blocker / "ledger.jsonl")], prices=PRICES)  # parent is a file
    with pytest.warns(LedgerWarning):
        led.record_call("m-small", Usage(1, 1))
    assert len(led.records()) == 1  # no memory sink: pending records are what we have
    assert led.report().totals.calls == 1


def test_budgets() -> None:
    led = ledger(budgets=[Budget("request", max_tokens=100)])
    with scope(request="r1"):
        led.check_budget(tokens=90)
        led.record_call("m-small", Usage(80, 10))
        with pytest.raises(BudgetExceededError) as err:
            led.check_budget(tokens=20)
        assert err.value.scope == "request"
        assert err.value.key == "r1"
        assert "request budget exceeded" in str(err.value)
        led.record_call("m-small", Usage(20, 0))  # made already: recorded, never lost
        with pytest.raises(BudgetExceededError):
            led.check_budget()  # the next call is refused
    assert led.spent("request", "r1")[0] == 110
    with scope(request="r2"):
        led.check_budget(tokens=90)  # each request has its own allowance


def test_dollar_budget_for_one_tenant() -> None:
    led = ledger(budgets=[Budget("tenant", max_usd=0.001, key="acme")])
    with scope(tenant="other"):
        led.record_call("m-small", Usage(10_000, 0))
    with scope(tenant="acme"):
        led.record_call("m-small", Usage(900, 0))
        led.check_budget(usd=0.00005)
        with pytest.raises(BudgetExceededError, match=r"tenant budget exceeded for tenant='acme'"):
            led.check_budget(usd=0.0002)


def test_budget_validation() -> None:
    with pytest.raises(TokenleanError, match="scope must be one of"):
        Budget("day", max_tokens=1)
    with pytest.raises(TokenleanError, match="needs max_tokens"):
        Budget("request")


def test_prometheus_render() -> None:
    prom = PrometheusSink()
    led = ledger(prom)
    led.record_call("m-small", Usage(100, 10, cache_read_tokens=40), latency_s=0.5)
    led.record_saving("cache", 100, 10, model="m-small")
    led.record_event("cache", "hit")
    text = prom.render()
    assert 'tokenlean_tokens_total{component="llm",model="m-small",type="input"} 100' in text
    assert 'type="cache_read"} 40' in text
    assert "# TYPE tokenlean_llm_latency_seconds summary" in text
    assert (
        'tokenlean_saved_tokens_total{component="cache",model="m-small",type="input"} 100' in text
    )
    assert 'tokenlean_events_total{component="cache",event="hit"} 1' in text


def test_opentelemetry_sink_records_metrics() -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from tokenlean_core import OpenTelemetrySink

    reader = InMemoryMetricReader()
    led = ledger(OpenTelemetrySink(MeterProvider(metric_readers=[reader])))
    with scope(tenant="acme"):
        led.record_call("m-small", Usage(100, 7), latency_s=0.1)
        led.record_saving("cache", 40, 5, model="m-small")
    data = reader.get_metrics_data()
    assert data is not None
    points: dict[tuple[str, str], float] = {}
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                for p in metric.data.data_points:
                    kind = str(p.attributes.get("gen_ai.token.type", ""))
                    assert p.attributes.get("tenant") == "acme"
                    points[(metric.name, kind)] = getattr(p, "value", getattr(p, "sum", 0))
    assert points[("tokenlean.tokens", "input")] == 100
    assert points[("tokenlean.tokens", "output")] == 7
    assert points[("tokenlean.saved_tokens", "")] == 45
    assert points[("tokenlean.llm.duration", "")] == pytest.approx(0.1)


def test_context_copies_into_threads() -> None:
    led = ledger()
    with scope(tenant="acme"):
        ctx = contextvars.copy_context()
    t = threading.Thread(target=ctx.run, args=(led.record_call, "m-small", Usage(1, 1)))
    t.start()
    t.join()
    assert led.records()[0].scope.tenant == "acme"


def test_report_html_and_png(tmp_path: Path) -> None:
    led = ledger()
    led.record_call("m-small", Usage(100, 10), latency_s=0.1)
    led.record_saving("memory", 300, 0, model="m-small")
    rep = led.report()
    png = rep.plot(str(tmp_path / "r.png"))
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    page = rep.html(str(tmp_path / "r.html"))
    assert page.startswith("<!doctype html>") and "data:image/png;base64," in page


def test_record_requires_usage_type() -> None:
    with pytest.raises(TokenleanError, match="usage must be"):
        ledger().record_call("m", {"input_tokens": 1})  # type: ignore[arg-type]
