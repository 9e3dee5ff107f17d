"""LoadAwarePolicy: decisions from vLLM's own gauges (served by a real stand-in) and from in-flight counts."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import ValidationError

from tokenlean_vllm import Endpoint, LoadAwarePolicy, PolicyConfig, ServerProcess, VLLMError

SPEC = Endpoint("spec", "http://127.0.0.1:9/v1", speculative=True)
PLAIN = Endpoint("plain", "http://127.0.0.1:10/v1", speculative=False)


def _metrics(
    tmp: Path, name: str, running: int, waiting: int, drafts: int, draft_tokens: int, accepted: int
) -> Path:
    p = tmp / name
    p.write_text(
        f'vllm:num_requests_running{{engine="0",model_name="m"}} {running}\n'
        f'vllm:num_requests_waiting{{engine="0",model_name="m"}} {waiting}\n'
        f'vllm:spec_decode_num_drafts_total{{engine="0",model_name="m"}} {drafts}\n'
        f'vllm:spec_decode_num_draft_tokens_total{{engine="0",model_name="m"}} {draft_tokens}\n'
        f'vllm:spec_decode_num_accepted_tokens_total{{engine="0",model_name="m"}} {accepted}\n'
    )
    return p


def _endpoint(proc: ServerProcess) -> Endpoint:
    return Endpoint("spec", proc.base_url + "/v1", speculative=True)


def test_busy_server_turns_speculation_off_then_on_again(
    standin: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    files = [
        _metrics(tmp_path, "a", 1, 0, 0, 0, 0),  # quiet
        _metrics(tmp_path, "b", 4, 3, 10, 30, 20),  # busy: load 7 >= busy_at 4
        _metrics(tmp_path, "c", 3, 0, 20, 60, 40),  # load 3: still above idle_at 1 (hysteresis)
        _metrics(tmp_path, "d", 1, 0, 30, 90, 60),  # load 1: back on
    ]
    proc = standin(metrics=files)
    proc.wait_healthy(10)
    policy = LoadAwarePolicy(
        _endpoint(proc), PLAIN, PolicyConfig(busy_at=4, idle_at=1, refresh_s=0)
    )
    got = []
    for _ in range(4):
        with policy.route() as d:
            got.append((d.endpoint.name, d.load, d.load_source))
    assert got == [
        ("spec", 1, "vllm_metrics"),
        ("plain", 7, "vllm_metrics"),
        ("plain", 3, "vllm_metrics"),
        ("spec", 1, "vllm_metrics"),
    ]
    assert policy.decisions == {"spec": 2, "plain": 2}
    assert policy.in_flight == {"spec": 0, "plain": 0}
    policy.close()


def test_low_acceptance_turns_speculation_off(
    standin: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    files = [
        _metrics(tmp_path, "a", 0, 0, 0, 0, 0),
        _metrics(tmp_path, "b", 0, 0, 100, 300, 15),  # window: 15/300 = 5% accepted
    ]
    proc = standin(metrics=files)
    proc.wait_healthy(10)
    policy = LoadAwarePolicy(
        _endpoint(proc), PLAIN, PolicyConfig(min_acceptance_rate=0.2, min_drafts=20, refresh_s=0)
    )
    first, second = policy.choose(), policy.choose()
    assert first.endpoint is not PLAIN and first.acceptance_rate is None
    assert second.endpoint is PLAIN and second.acceptance_rate == pytest.approx(0.05)
    assert "acceptance" in second.reason
    assert second.as_dict()["speculative"] is False


async def test_without_vllm_metrics_it_counts_its_own_in_flight(
    standin: Callable[..., ServerProcess],
) -> None:
    proc = standin()  # /metrics is 404, as on llama.cpp's server
    await proc.await_healthy(10)
    policy = LoadAwarePolicy(
        _endpoint(proc), PLAIN, PolicyConfig(busy_at=2, idle_at=0, refresh_s=0)
    )
    a = await policy.achoose()
    b = await policy.achoose()
    c = await policy.achoose()
    assert [x.endpoint.name for x in (a, b, c)] == ["spec", "spec", "plain"]
    assert c.load_source == "in_flight" and c.load == 2
    for d in (a, b, c):
        policy.release(d)
    async with policy.aroute() as d:
        assert d.endpoint.name == "spec"  # load 0 <= idle_at: on again


def test_disabled_policy_always_speculates() -> None:
    policy = LoadAwarePolicy(SPEC, PLAIN, PolicyConfig(busy_at=1, refresh_s=60), enabled=False)
    policy._last_scrape = float("inf")  # never scrape (nothing listens there)
    decisions = [policy.choose() for _ in range(3)]
    assert all(d.endpoint is SPEC and d.reason == "policy disabled" for d in decisions)


def test_should_restart_after_idle() -> None:
    policy = LoadAwarePolicy(SPEC, PLAIN, PolicyConfig(refresh_s=3600))
    policy._last_scrape = float("inf")
    assert policy.should_restart(idle_for_s=0)
    d = policy.choose()
    assert not policy.should_restart(idle_for_s=0)
    policy.release(d)
    assert policy.should_restart(idle_for_s=0)
    assert not policy.should_restart(idle_for_s=3600)


def test_bad_setups() -> None:
    with pytest.raises(VLLMError, match="speculative endpoint, plain endpoint"):
        LoadAwarePolicy(PLAIN, SPEC)
    with pytest.raises(ValidationError):
        PolicyConfig(busy_at=2, idle_at=3)
    assert PolicyConfig(busy_at=8).resolved_idle_at == 4
    assert SPEC.resolved_metrics_url() == "http://127.0.0.1:9/metrics"
