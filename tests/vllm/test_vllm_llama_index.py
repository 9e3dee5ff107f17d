"""The LlamaIndex LLM (on OpenAILike) against llama.cpp's server, with and without speculation."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from llama_index.core.base.llms.types import ChatMessage, ChatResponse
from llama_index.core.llms import LLM
from llama_index.llms.openai_like import OpenAILike
from vllm_support import MODEL_ALIAS as MODEL
from vllm_support import llm_calls, new_ledger

from tokenlean_core import Ledger
from tokenlean_vllm import (
    METADATA_KEY,
    Endpoint,
    LoadAwarePolicy,
    PolicyConfig,
    ServerProcess,
    ServerUnavailableError,
    VLLMServer,
    free_port,
)
from tokenlean_vllm.llama_index import VLLM

MSGS = [
    ChatMessage(role="system", content="Answer by copying from the context."),
    ChatMessage(
        role="user",
        content="Context: Paris is the capital of France.\nQuestion: What is the capital of France?",
    ),
]


def test_base_classes() -> None:
    assert issubclass(VLLM, OpenAILike) and issubclass(VLLM, LLM)
    llm = VLLM(api_base="http://127.0.0.1:1/v1", model=MODEL)
    assert llm.metadata.is_chat_model and llm.max_retries == 0
    assert VLLM.class_name() == "tokenlean_vllm_llm"


@pytest.mark.parametrize("fixture", ["llama_url", "llama_spec_url"])
def test_chat_reports_usage(
    fixture: str, request: pytest.FixtureRequest, ledger: Ledger, li_vllm: Callable[..., VLLM]
) -> None:
    url = request.getfixturevalue(fixture)
    resp = li_vllm(url, ledger=ledger).chat(MSGS)
    assert resp.message.content
    figures = resp.additional_kwargs[METADATA_KEY]
    assert figures["input_tokens"] > 10 and figures["output_tokens"] > 0
    calls = llm_calls(ledger)
    assert (
        len(calls) == 1
        and calls[0].usage is not None
        and calls[0].usage.input_tokens == figures["input_tokens"]
    )


def test_stream_chat_and_complete(
    llama_spec_url: str, ledger: Ledger, li_vllm: Callable[..., VLLM]
) -> None:
    llm = li_vllm(llama_spec_url, ledger=ledger)
    chunks: list[ChatResponse] = list(llm.stream_chat(MSGS))
    assert len(chunks) > 2
    last = chunks[-1]
    assert last.message.content and last.message.content.startswith(chunks[0].message.content or "")
    figures = last.additional_kwargs[METADATA_KEY]
    assert figures["output_tokens"] > 0 and figures["ttft_s"] is not None
    done = llm.complete("Say hi.")
    assert done.text
    assert len(llm_calls(ledger)) == 2


async def test_async(llama_url: str, ledger: Ledger, li_vllm: Callable[..., VLLM]) -> None:
    llm = li_vllm(llama_url, ledger=ledger)
    resp = await llm.achat(MSGS)
    assert resp.additional_kwargs[METADATA_KEY]["output_tokens"] > 0
    gen = await llm.astream_chat(MSGS)
    chunks = [c async for c in gen]
    assert chunks[-1].additional_kwargs[METADATA_KEY]["output_tokens"] > 0
    done = await llm.acomplete("Say hi.")
    assert done.text
    assert len(llm_calls(ledger)) == 3


def test_speculation_window(
    llama_url: str, standin: Callable[..., ServerProcess], metrics_fixtures: tuple[Path, Path]
) -> None:
    metrics = standin(metrics=list(metrics_fixtures))
    metrics.wait_healthy(10)
    llm = VLLM(
        api_base=llama_url + "/v1",
        model="Qwen/Qwen3-8B",
        metrics_url=metrics.base_url + "/metrics",
        max_tokens=8,
        ledger=new_ledger(),
    )
    spec = llm.chat(MSGS).additional_kwargs[METADATA_KEY]["speculation"]
    assert spec["acceptance_rate"] == pytest.approx(2 / 3)
    assert spec["mean_acceptance_length"] == pytest.approx(3.0)


def test_policy_and_server_object(llama_url: str, llama_spec_url: str) -> None:
    policy = LoadAwarePolicy(
        Endpoint("spec", llama_spec_url + "/v1", speculative=True),
        Endpoint("plain", llama_url + "/v1", speculative=False),
        PolicyConfig(busy_at=1, idle_at=0, refresh_s=0),
    )
    llm = VLLM(
        server=VLLMServer.attach(llama_url, health_path="/v1/models"),
        max_tokens=6,
        policy=policy,
        ledger=new_ledger(),
    )
    assert llm.api_base == llama_url + "/v1"
    first = llm.chat(MSGS).additional_kwargs[METADATA_KEY]
    assert first["policy"]["endpoint"] == "spec" and first["endpoint"] == llama_spec_url + "/v1"
    held = policy.choose()
    try:
        second = llm.chat(MSGS).additional_kwargs[METADATA_KEY]
    finally:
        policy.release(held)
    assert second["policy"]["endpoint"] == "plain" and second["endpoint"] == llama_url + "/v1"


def test_server_down_fails_fast() -> None:
    llm = VLLM(api_base=f"http://127.0.0.1:{free_port()}/v1", model=MODEL)
    t0 = time.perf_counter()
    with pytest.raises(ServerUnavailableError, match="no vLLM server answers"):
        llm.chat(MSGS)
    with pytest.raises(ServerUnavailableError):
        list(llm.stream_chat(MSGS))
    assert time.perf_counter() - t0 < 3


async def test_server_down_async(async_http: httpx.AsyncClient) -> None:
    llm = VLLM(
        api_base=f"http://127.0.0.1:{free_port()}/v1",
        model=MODEL,
        collect_speculation=False,
        async_http_client=async_http,
    )
    with pytest.raises(ServerUnavailableError):
        await llm.achat(MSGS)


async def test_lean_path_gives_what_the_sdk_path_gives(
    llama_url: str, li_vllm: Callable[..., VLLM], ledger: Ledger, seen_http: Any
) -> None:
    """A plain chat skips the SDK's typed layer (no x-stainless-retry-count header); the response
    is the one OpenAILike makes (message, raw ChatCompletion, token counts), sync and async."""
    sent, sync_http, async_http = seen_http
    hooks = {"http_client": sync_http, "async_http_client": async_http, "ledger": ledger}
    lean, sdk = li_vllm(llama_url, **hooks), li_vllm(llama_url, lean_transport=False, **hooks)
    a, b, c = lean.chat(MSGS), sdk.chat(MSGS), await lean.achat(MSGS)
    assert a.message.content and a.message.content == b.message.content
    assert a.message.role == b.message.role and a.raw.usage == b.raw.usage
    token_counts = ("prompt_tokens", "completion_tokens", "total_tokens")
    assert all(a.additional_kwargs[k] == b.additional_kwargs[k] > 0 for k in token_counts)
    assert type(a.raw) is type(b.raw) is type(c.raw)
    assert c.additional_kwargs[METADATA_KEY]["input_tokens"] > 10
    chat = [r for r in sent if r.url.path.endswith("/chat/completions")]
    assert ["x-stainless-retry-count" in r.headers for r in chat] == [False, True, False]
    assert len(llm_calls(ledger)) == 3
