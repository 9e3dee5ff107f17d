"""Prometheus parsing and speculation figures, on /metrics bodies recorded with vLLM 0.33.0's names."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenlean_vllm import (
    MetricsClient,
    MetricsParseError,
    ServerProcess,
    ServerUnavailableError,
    SpeculationStats,
    VLLMMetrics,
    free_port,
    parse_prometheus,
)


def test_parse_recorded_vllm_metrics(metrics_fixtures: tuple[Path, Path]) -> None:
    before_text, after_text = (p.read_text() for p in metrics_fixtures)
    before = VLLMMetrics.parse(before_text)
    after = VLLMMetrics.parse(after_text)
    assert before.has_vllm_metrics and before.has_spec_decode
    assert (after.requests_running, after.requests_waiting, after.load) == (6, 3, 9)
    assert (before.spec_drafts, before.spec_draft_tokens, before.spec_accepted_tokens) == (
        150,
        450,
        250,
    )
    assert after.accepted_per_position == (155, 105, 70)
    assert (after.prefix_cache_queries, after.prefix_cache_hits) == (2400, 1100)
    assert after.generation_tokens == 520


def test_window_figures(metrics_fixtures: tuple[Path, Path]) -> None:
    before, after = (VLLMMetrics.parse(p.read_text()) for p in metrics_fixtures)
    w = SpeculationStats.between(before, after, latency_s=2.0)
    assert (w.drafts, w.draft_tokens, w.accepted_tokens) == (40, 120, 80)
    assert w.acceptance_rate == pytest.approx(80 / 120)
    assert w.mean_acceptance_length == pytest.approx(1 + 80 / 40)
    assert w.per_position_acceptance == pytest.approx((35 / 40, 25 / 40, 20 / 40))
    assert w.prefix_cache_hit_rate == pytest.approx(800 / 1200)
    assert w.est_time_saved_s == pytest.approx(2.0 * (3.0 - 1.0))
    d = w.as_dict()
    assert d["acceptance_rate"] == pytest.approx(2 / 3)
    assert d["accepted_per_position"] == [35, 25, 20]


def test_counter_reset_counts_from_zero(metrics_fixtures: tuple[Path, Path]) -> None:
    before, after = (VLLMMetrics.parse(p.read_text()) for p in metrics_fixtures)
    w = SpeculationStats.between(after, before)  # "after" is lower: the server restarted
    assert w.drafts == before.spec_drafts
    assert w.est_time_saved_s is None  # no latency given


def test_no_drafts_means_no_rates() -> None:
    w = SpeculationStats.between(VLLMMetrics(), VLLMMetrics(), latency_s=1.0)
    assert w.acceptance_rate is None and w.mean_acceptance_length is None
    assert w.per_position_acceptance == () and w.est_time_saved_s is None


def test_model_name_filter_and_engines_sum() -> None:
    text = (
        'vllm:num_requests_running{engine="0",model_name="a"} 2\n'
        'vllm:num_requests_running{engine="1",model_name="a"} 3\n'
        'vllm:num_requests_running{engine="0",model_name="b"} 7\n'
    )
    assert VLLMMetrics.parse(text).requests_running == 12
    assert VLLMMetrics.parse(text, model_name="a").requests_running == 5


def test_non_vllm_metrics_are_not_vllm() -> None:
    m = VLLMMetrics.parse("# HELP x y\nprocess_cpu_seconds_total 1.5\n")
    assert not m.has_vllm_metrics and not m.has_spec_decode


def test_parser_details() -> None:
    text = (
        "# HELP a doc\n# TYPE a gauge\n"
        'a{x="q\\"uote",y="back\\\\slash",z="new\\nline"} +Inf 1700000000000\n'
        "b NaN\n"
        "c{} -2.5e3\n"
        'd{le="+Inf",} 4\n'
    )
    s = parse_prometheus(text)
    assert s[0].labels == {"x": 'q"uote', "y": "back\\slash", "z": "new\nline"}
    assert s[0].value == math.inf
    assert math.isnan(s[1].value)
    assert s[2].value == -2500.0
    assert s[3].labels == {"le": "+Inf"}


@pytest.mark.parametrize("bad", ["a b c d", "a{x=1} 2", 'a{x="1"', "a 1x", "1a 2"])
def test_parser_rejects_garbage(bad: str) -> None:
    with pytest.raises(MetricsParseError):
        parse_prometheus(bad)


_label_values = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)


@settings(max_examples=200, deadline=None)
@given(
    name=st.from_regex(r"[a-zA-Z_:][a-zA-Z0-9_:]{0,20}", fullmatch=True),
    labels=st.dictionaries(
        st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,8}", fullmatch=True), _label_values, max_size=3
    ),
    value=st.floats(allow_nan=False),
)
def test_parser_round_trips_any_sample(name: str, labels: dict[str, str], value: float) -> None:
    def esc(v: str) -> str:
        return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

    body = ",".join(f'{k}="{esc(v)}"' for k, v in labels.items())
    line = f"{name}{{{body}}} {value!r}" if labels else f"{name} {value!r}"
    (s,) = parse_prometheus(line)
    assert s.name == name and dict(s.labels) == labels
    assert s.value == value


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_parser_never_raises_anything_else(text: str) -> None:
    with contextlib.suppress(MetricsParseError):
        parse_prometheus(text)


def test_client_scrapes_a_real_endpoint(
    standin: Callable[..., ServerProcess], metrics_fixtures: tuple[Path, Path]
) -> None:
    proc = standin(metrics=list(metrics_fixtures))
    proc.wait_healthy(10)
    client = MetricsClient(proc.base_url + "/metrics", model_name="Qwen/Qwen3-8B")
    first, second = client.scrape(), client.scrape()
    assert first is not None and second is not None
    assert (first.spec_drafts, second.spec_drafts) == (150, 190)
    assert client.available is True
    client.close()


async def test_async_client_and_missing_endpoint(standin: Callable[..., ServerProcess]) -> None:
    proc = standin()  # no --metrics: /metrics is 404 (like llama.cpp's Python server)
    await proc.await_healthy(10)
    client = MetricsClient(proc.base_url + "/metrics")
    assert await client.ascrape() is None
    assert client.available is False
    assert client.scrape() is None  # not asked again
    await client.aclose()


def test_client_fails_fast_when_down() -> None:
    client = MetricsClient(f"http://127.0.0.1:{free_port()}/metrics")
    t0 = time.perf_counter()
    with pytest.raises(ServerUnavailableError, match="cannot scrape"):
        client.scrape()
    assert time.perf_counter() - t0 < 2.0


def test_window_start_reuses_a_recent_scrape(
    standin: Callable[..., ServerProcess], metrics_fixtures: tuple[Path, Path]
) -> None:
    """Back-to-back requests share a scrape: the previous window's end opens the next one."""
    proc = standin(metrics=list(metrics_fixtures))
    proc.wait_healthy(10)
    client = MetricsClient(proc.base_url + "/metrics", model_name="Qwen/Qwen3-8B")
    first = client.window_start(max_age_s=60)  # nothing cached yet: scrapes
    assert first is not None and first.spec_drafts == 150 and client.last is first
    assert client.window_start(max_age_s=60) is first  # recent: no request
    fresh = client.window_start(max_age_s=0)  # too old for 0 s: scrapes (the "after" body)
    assert fresh is not None and fresh.spec_drafts == 190 and client.last is fresh
    assert client.window_end() is not None
    client.close()
    down = MetricsClient(f"http://127.0.0.1:{free_port()}/metrics")
    assert down.window_end() is None  # the answer is in hand: a lost scrape is not an error
    with pytest.raises(ServerUnavailableError):
        down.window_start()


NOISY = """# HELP vllm:time_to_first_token_seconds Histogram
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{le="0.001",model_name="m"} 0.0
vllm:time_to_first_token_seconds_bucket{le="+Inf",model_name="m"} 12.0
python_gc_objects_collected_total{generation="0"} 1234.0
  vllm:num_requests_running{model_name="m"} 2.0
vllm:spec_decode_num_drafts_total{model_name="m"} 10.0 1700000000000
vllm:spec_decode_num_accepted_tokens_per_pos_total{model_name="m",position="1"} 4.0
vllm:spec_decode_num_accepted_tokens_per_pos_total{model_name="m",position="0"} 7.0
vllm:num_requests_waiting{model_name="other"} 5.0
"""


@pytest.mark.parametrize("model", [None, "m", "other", "Qwen/Qwen3-8B"])
def test_fast_parse_equals_the_full_parser(
    model: str | None, metrics_fixtures: tuple[Path, Path]
) -> None:
    """VLLMMetrics.parse skips the lines it does not read; the figures are the full parser's."""
    for text in (NOISY, *(p.read_text() for p in metrics_fixtures)):
        fast = VLLMMetrics.parse(text, model)
        full = VLLMMetrics.from_samples(parse_prometheus(text), model)
        assert replace(fast, taken_at=0) == replace(full, taken_at=0)
    assert VLLMMetrics.parse(NOISY, "m").accepted_per_position == (7.0, 4.0)


def test_fast_parse_validates_what_it_reads() -> None:
    with pytest.raises(MetricsParseError):
        VLLMMetrics.parse('vllm:num_requests_running{model_name="m"} lots\n')
    # a malformed line it does not read does not stop it
    assert VLLMMetrics.parse("vllm:some_histogram_bucket{le= 1\n").has_vllm_metrics
