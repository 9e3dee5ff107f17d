"""VLLMServer's command line, and the lifecycle on real stand-in processes."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest
from vllm_support import standin_argv

from tokenlean_vllm import (
    ServerError,
    ServerProcess,
    ServerStartError,
    ServerUnavailableError,
    SpeculativeConfig,
    SpeculativeConfigError,
    VLLMServer,
    free_port,
)


def test_command_has_prefix_caching_usage_details_and_the_config() -> None:
    spec = SpeculativeConfig.ngram(num_speculative_tokens=4)
    server = VLLMServer("Qwen/Qwen3-8B", speculative=spec, port=8001, api_key="secret")
    argv = server.command()
    assert argv[:3] == ["vllm", "serve", "Qwen/Qwen3-8B"]
    assert argv[argv.index("--port") + 1] == "8001"
    assert argv[argv.index("--host") + 1] == "127.0.0.1"
    assert "--enable-prefix-caching" in argv
    assert "--enable-prompt-tokens-details" in argv
    assert argv[argv.index("--api-key") + 1] == "secret"
    assert json.loads(argv[argv.index("--speculative-config") + 1]) == spec.to_vllm()
    assert server.openai_base_url == "http://127.0.0.1:8001/v1"
    assert server.metrics_url == "http://127.0.0.1:8001/metrics"
    assert server.headers == {"Authorization": "Bearer secret"}


def test_command_options() -> None:
    server = VLLMServer(
        "m",
        port=9,
        served_model_name="alias",
        tensor_parallel_size=2,
        enable_prefix_caching=False,
        enable_prompt_tokens_details=False,
        extra_args=["--max-model-len", "4096"],
        executable="/opt/vllm/bin/vllm",
    )
    argv = server.command()
    assert argv[0] == "/opt/vllm/bin/vllm"
    assert argv[argv.index("--served-model-name") + 1] == "alias"
    assert argv[argv.index("--tensor-parallel-size") + 1] == "2"
    assert "--no-enable-prefix-caching" in argv
    assert "--enable-prompt-tokens-details" not in argv
    assert "--speculative-config" not in argv
    assert argv[-2:] == ["--max-model-len", "4096"]


def test_port_zero_picks_a_free_port() -> None:
    assert VLLMServer("m").port > 0


def test_bad_setups_fail_before_starting() -> None:
    with pytest.raises(SpeculativeConfigError, match="must be 1 or the target"):
        VLLMServer(
            "m",
            speculative=SpeculativeConfig.draft_model("d", draft_tensor_parallel_size=2),
            tensor_parallel_size=4,
        )
    with pytest.raises(ServerError, match="speculative=SpeculativeConfig"):
        VLLMServer("m", extra_args=["--speculative-config", "{}"])
    with pytest.raises(ServerError, match="needs a model"):
        VLLMServer("")
    with pytest.raises(ServerError, match="tensor_parallel_size"):
        VLLMServer("m", tensor_parallel_size=0)


def test_missing_executable_is_a_clear_error() -> None:
    server = VLLMServer("m", executable="vllm-not-installed-here")
    with pytest.raises(ServerStartError, match="not on PATH"):
        server.start()


def _standin_server(mode: str, delay: float = 0.0, timeout: float = 10.0) -> VLLMServer:
    """A VLLMServer whose executable is the stand-in (it ignores vLLM's flags)."""
    port = free_port()
    server = VLLMServer("m", port=port, startup_timeout_s=timeout)
    argv = standin_argv(port, mode, delay)
    server.command = lambda: argv  # type: ignore[method-assign]
    return server


def test_start_wait_health_and_stop() -> None:
    server = _standin_server("ok", delay=0.5)
    with server:
        assert server.running and server.health()
        server.check()
        assert server.list_models() == ["standin"]
        proc = server.process
        assert proc is not None and proc.pid is not None
    assert not server.running
    assert proc.returncode is not None


async def test_async_start_and_health() -> None:
    server = _standin_server("ok")
    await server.astart()
    try:
        assert await server.ahealth()
    finally:
        server.stop()
    assert not await server.ahealth()


def test_crash_before_healthy_reports_exit_code_and_log() -> None:
    server = _standin_server("crash", delay=0.3)
    t0 = time.perf_counter()
    with pytest.raises(ServerStartError, match="exited with code 3") as info:
        server.start()
    assert "could not load model" in str(info.value)
    assert time.perf_counter() - t0 < 8


def test_health_timeout_stops_the_process() -> None:
    server = _standin_server("never_healthy", timeout=1.5)
    with pytest.raises(ServerStartError, match="not healthy"):
        server.start()
    assert server.process is not None and not server.process.running


def test_sigkill_after_ignored_sigterm(standin: Callable[..., ServerProcess]) -> None:
    proc = standin(mode="ignore_term")
    proc.wait_healthy(10)
    t0 = time.perf_counter()
    code = proc.stop(timeout_s=0.5)
    assert code == -9  # SIGKILL
    assert time.perf_counter() - t0 < 5


def test_crash_after_start_is_noticed(standin: Callable[..., ServerProcess]) -> None:
    proc = standin(mode="crash", delay=0.0)
    with pytest.raises(ServerStartError, match="exited"):
        proc.wait_healthy(10)


def test_attach(standin: Callable[..., ServerProcess]) -> None:
    proc = standin()
    proc.wait_healthy(10)
    server = VLLMServer.attach(proc.base_url + "/v1")
    assert server.attached and server.model == "standin"
    assert server.base_url == proc.base_url
    assert server.running
    with pytest.raises(ServerError, match="attached"):
        server.start()
    with pytest.raises(ServerError, match="attached"):
        server.restart(None)
    assert server.stop() is None  # not ours to stop
    assert proc.running


def test_attach_to_nothing_fails_fast() -> None:
    t0 = time.perf_counter()
    with pytest.raises(ServerUnavailableError, match="no healthy server"):
        VLLMServer.attach(f"http://127.0.0.1:{free_port()}")
    assert time.perf_counter() - t0 < 3


def test_restart_with_another_config() -> None:
    server = _standin_server("ok")
    with server:
        first = server.process
        server.restart(SpeculativeConfig.ngram())
        assert server.speculative == SpeculativeConfig.ngram()
        assert server.process is not first and server.health()
        assert first is not None and not first.running


def test_process_errors() -> None:
    with pytest.raises(ServerError, match="empty"):
        ServerProcess([], "http://x")
    proc = ServerProcess(["/nonexistent/binary"], "http://127.0.0.1:1")
    with pytest.raises(ServerStartError, match="cannot start"):
        proc.start()
    assert ServerProcess(["x"], "http://y").stop() is None
