"""LangChain chat model for vLLM: ``ChatVLLM`` (a ``langchain_openai.ChatOpenAI`` on vLLM's /v1).

Everything ``ChatOpenAI`` does (invoke, stream, batch, async, tool calling when the served model
and server support it, structured output) plus, per call:

* ``usage_metadata`` with ``input_token_details.cache_read`` from vLLM's
  ``usage.prompt_tokens_details.cached_tokens`` (the server needs
  ``--enable-prompt-tokens-details``; :class:`~tokenlean_vllm.VLLMServer` sets it), streaming
  included (``stream_usage=True`` by default);
* speculation figures (acceptance rate, mean acceptance length, estimated time saved) from the
  server's ``/metrics`` around the request, on the message's ``response_metadata``, the result's
  ``llm_output`` and the run's metadata (so LangSmith shows them) under ``"tokenlean_vllm"``;
* the call, the cached-prompt saving and the speculation figures in tokenlean's ledger;
* optionally a :class:`~tokenlean_vllm.LoadAwarePolicy` choosing per request between a
  speculative and a plain server.

Example::

    from tokenlean_vllm import SpeculativeConfig, VLLMServer
    from tokenlean_vllm.langchain import ChatVLLM

    with VLLMServer("Qwen/Qwen3-8B", speculative=SpeculativeConfig.ngram()) as server:
        llm = ChatVLLM(server=server, max_tokens=256)
        print(llm.invoke("Summarise: ...").response_metadata["tokenlean_vllm"])
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from tokenlean_core import Ledger, MissingDependencyError, Usage

from .errors import ServerUnavailableError
from .inprocess import InProcessVLLM
from .metrics import MetricsClient, SpeculationStats, VLLMMetrics
from .policy import Endpoint, LoadAwarePolicy, PolicyDecision
from .reporting import METADATA_KEY, counted_usage, report_call
from .server import VLLMServer

try:
    import openai
    from langchain_core.callbacks import (
        AsyncCallbackManagerForLLMRun,
        CallbackManagerForLLMRun,
    )
    from langchain_core.language_models.chat_models import BaseChatModel
    from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
    from langchain_core.messages.ai import UsageMetadata
    from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
    from langchain_openai import ChatOpenAI
    from langchain_openai.chat_models.base import _convert_message_to_dict
    from pydantic import ConfigDict, Field, PrivateAttr, model_validator
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise MissingDependencyError("langchain-openai", "langchain", "tokenlean-vllm") from exc

__all__ = ["ChatVLLM", "ChatVLLMInProcess"]

_CLIENT_FIELDS = frozenset(
    {
        "client",
        "async_client",
        "root_client",
        "root_async_client",
        "http_client",
        "http_async_client",
        "policy",
        "server",
    }
)


class _Window:
    __slots__ = ("before", "decision", "metrics", "t0", "ttft")

    def __init__(self, metrics: MetricsClient | None, before: VLLMMetrics | None) -> None:
        self.metrics = metrics
        self.before = before
        self.t0 = time.perf_counter()
        self.ttft: float | None = None
        self.decision: PolicyDecision | None = None


class ChatVLLM(ChatOpenAI):
    """``ChatOpenAI`` against a vLLM server, reporting usage, cache and speculation figures.

    Point it at a server with ``server=VLLMServer(...)`` (started or attached) or
    ``base_url="http://host:8000/v1"`` + ``model=...``. The API key defaults to ``"EMPTY"``
    (vLLM without ``--api-key``).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, populate_by_name=True)

    server: VLLMServer | None = Field(default=None, exclude=True)
    """A :class:`VLLMServer` to talk to (sets ``base_url`` and ``model``)."""
    metrics_url: str | None = None
    """The server's Prometheus endpoint (default: ``base_url`` without ``/v1`` + ``/metrics``)."""
    collect_speculation: bool = True
    """Scrape ``/metrics`` before and after each call for speculation figures."""
    record_calls: bool = True
    """Record each call in the ledger (off when tokenlean's callback handler already does)."""
    ledger: Ledger | None = Field(default=None, exclude=True)
    """The ledger to report to (default: ``tokenlean_core.get_ledger()``)."""
    policy: LoadAwarePolicy | None = Field(default=None, exclude=True)
    """Choose per request between a speculative and a plain endpoint."""
    stream_usage: bool | None = True
    max_retries: int | None = 1

    _metrics: MetricsClient | None = PrivateAttr(default=None)
    _delegates: dict[str, ChatVLLM] = PrivateAttr(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _from_server(cls, values: Any) -> Any:
        if not isinstance(values, dict):
            return values
        server = values.get("server")
        if isinstance(server, VLLMServer):
            values.setdefault("base_url", server.openai_base_url)
            values.setdefault("metrics_url", server.metrics_url)
            if "model" not in values and "model_name" not in values:
                values["model"] = server.served_model_name
            if server.api_key and "api_key" not in values:
                values["api_key"] = server.api_key
        if not any(k in values for k in ("api_key", "openai_api_key")):
            values["api_key"] = "EMPTY"
        if not any(k in values for k in ("timeout", "request_timeout")):
            # a float, not an httpx.Timeout: ChatOpenAI caches its HTTP clients only for
            # hashable timeouts (an unhashable one costs ~0.3 s of TLS setup per instance)
            values["timeout"] = 120.0
        return values

    @property
    def _llm_type(self) -> str:
        return "vllm-chat"

    @classmethod
    def is_lc_serializable(cls) -> bool:
        return False

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> Any:
        params = super()._get_ls_params(stop=stop, **kwargs)
        params["ls_provider"] = "vllm"
        return params

    def _get_request_payload(
        self, input_: Any, *, stop: list[str] | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        payload: dict[str, Any] = super()._get_request_payload(input_, stop=stop, **kwargs)
        # ChatOpenAI renames max_tokens to OpenAI's max_completion_tokens; vLLM takes both, other
        # OpenAI-compatible servers (llama.cpp's) only max_tokens
        if "max_completion_tokens" in payload:
            payload["max_tokens"] = payload.pop("max_completion_tokens")
        return payload

    # -- metrics window ----------------------------------------------------------------------
    @property
    def resolved_metrics_url(self) -> str | None:
        if self.metrics_url:
            return self.metrics_url
        if self.openai_api_base:
            return self.openai_api_base.rstrip("/").removesuffix("/v1") + "/metrics"
        return None

    def _metrics_client(self) -> MetricsClient | None:
        if not self.collect_speculation:
            return None
        if self._metrics is None:
            url = self.resolved_metrics_url
            if url is None:
                return None
            self._metrics = MetricsClient(url, model_name=self.model_name)
        return self._metrics

    def _open(self) -> _Window:
        client = self._metrics_client()
        before = None
        if client is not None:
            try:
                before = client.scrape()
            except ServerUnavailableError as exc:
                raise self._unavailable(exc) from exc
        return _Window(client, before)

    async def _aopen(self) -> _Window:
        client = self._metrics_client()
        before = None
        if client is not None:
            try:
                before = await client.ascrape()
            except ServerUnavailableError as exc:
                raise self._unavailable(exc) from exc
        return _Window(client, before)

    @staticmethod
    def _spec(w: _Window, after: VLLMMetrics | None, latency: float) -> SpeculationStats | None:
        if w.before is None or after is None or not after.has_spec_decode:
            return None
        return SpeculationStats.between(w.before, after, latency)

    def _after(self, w: _Window) -> VLLMMetrics | None:
        if w.metrics is None or w.before is None:
            return None
        try:
            return w.metrics.scrape()
        except ServerUnavailableError:
            return None

    async def _aafter(self, w: _Window) -> VLLMMetrics | None:
        if w.metrics is None or w.before is None:
            return None
        try:
            return await w.metrics.ascrape()
        except ServerUnavailableError:
            return None

    def _close(
        self,
        w: _Window,
        after: VLLMMetrics | None,
        latency: float,
        usage_metadata: UsageMetadata | None,
        run_manager: CallbackManagerForLLMRun | AsyncCallbackManagerForLLMRun | None,
        counted: Usage | None = None,
    ) -> dict[str, Any]:
        usage = Usage.from_langchain(usage_metadata) if usage_metadata else counted
        figures = report_call(
            model=self.model_name,
            usage=usage,
            latency_s=latency,
            ttft_s=w.ttft,
            speculation=self._spec(w, after, latency),
            endpoint=self.openai_api_base or "",
            ledger=self.ledger,
            record_calls=self.record_calls,
            policy=w.decision.as_dict() if w.decision else None,
            run_id=str(run_manager.run_id) if run_manager is not None else None,
        )
        if run_manager is not None:
            # the same dict the tracers store: LangSmith shows the figures on the run
            run_manager.metadata[METADATA_KEY] = figures
        return figures

    def _unavailable(self, exc: BaseException) -> ServerUnavailableError:
        return ServerUnavailableError(
            f"no vLLM server answers at {self.openai_api_base}: {exc} ({exc.__cause__!r}). "
            "Start one (VLLMServer(...).start()) or check base_url."
        )

    # -- policy ------------------------------------------------------------------------------
    def _delegate(self, endpoint: Endpoint) -> ChatVLLM:
        model = self._delegates.get(endpoint.name)
        if model is None:
            data = {
                name: getattr(self, name)
                for name in type(self).model_fields
                if name not in _CLIENT_FIELDS
            }
            data.update(
                openai_api_base=endpoint.base_url,
                metrics_url=endpoint.resolved_metrics_url(),
            )
            model = type(self).model_validate(data)
            self._delegates[endpoint.name] = model
        return model

    # -- generation --------------------------------------------------------------------------
    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if self.policy is not None:
            with self.policy.route() as decision:
                return self._delegate(decision.endpoint)._generate_in(
                    messages, stop, run_manager, decision, **kwargs
                )
        return self._generate_in(messages, stop, run_manager, None, **kwargs)

    def _generate_in(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None,
        run_manager: CallbackManagerForLLMRun | None,
        decision: PolicyDecision | None,
        **kwargs: Any,
    ) -> ChatResult:
        w = self._open()
        w.decision = decision
        try:
            result = super()._generate(messages, stop=stop, run_manager=run_manager, **kwargs)
        except openai.APIConnectionError as exc:
            raise self._unavailable(exc) from exc
        latency = time.perf_counter() - w.t0
        return self._finish_result(result, w, self._after(w), latency, run_manager)

    def _finish_result(
        self,
        result: ChatResult,
        w: _Window,
        after: VLLMMetrics | None,
        latency: float,
        run_manager: CallbackManagerForLLMRun | AsyncCallbackManagerForLLMRun | None,
    ) -> ChatResult:
        msg = result.generations[0].message if result.generations else None
        usage = msg.usage_metadata if isinstance(msg, AIMessage) else None
        figures = self._close(w, after, latency, usage, run_manager)
        if msg is not None:
            msg.response_metadata[METADATA_KEY] = figures
        result.llm_output = {**(result.llm_output or {}), METADATA_KEY: figures}
        return result

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if self.policy is not None:
            async with self.policy.aroute() as decision:
                return await self._delegate(decision.endpoint)._agenerate_in(
                    messages, stop, run_manager, decision, **kwargs
                )
        return await self._agenerate_in(messages, stop, run_manager, None, **kwargs)

    async def _agenerate_in(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None,
        run_manager: AsyncCallbackManagerForLLMRun | None,
        decision: PolicyDecision | None,
        **kwargs: Any,
    ) -> ChatResult:
        w = await self._aopen()
        w.decision = decision
        try:
            result = await super()._agenerate(
                messages, stop=stop, run_manager=run_manager, **kwargs
            )
        except openai.APIConnectionError as exc:
            raise self._unavailable(exc) from exc
        latency = time.perf_counter() - w.t0
        return self._finish_result(result, w, await self._aafter(w), latency, run_manager)

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        if self.policy is not None:
            with self.policy.route() as decision:
                yield from self._delegate(decision.endpoint)._stream_in(
                    messages, stop, run_manager, decision, **kwargs
                )
            return
        yield from self._stream_in(messages, stop, run_manager, None, **kwargs)

    def _stream_in(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None,
        run_manager: CallbackManagerForLLMRun | None,
        decision: PolicyDecision | None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        w = self._open()
        w.decision = decision
        held: ChatGenerationChunk | None = None
        text: list[str] = []
        try:
            for chunk in super()._stream(messages, stop=stop, run_manager=run_manager, **kwargs):
                text.append(chunk.text)
                if w.ttft is None and chunk.message.content:
                    w.ttft = time.perf_counter() - w.t0
                if held is not None:
                    yield held
                    held = None
                if _usage_of(chunk) is not None:
                    held = chunk  # the usage chunk comes last; it will carry the figures
                else:
                    yield chunk
        except openai.APIConnectionError as exc:
            raise self._unavailable(exc) from exc
        latency = time.perf_counter() - w.t0
        usage = _usage_of(held)
        counted = None if usage else counted_usage(messages, "".join(text), self.model_name)
        figures = self._close(w, self._after(w), latency, usage, run_manager, counted)
        yield _with_figures(held, figures)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        if self.policy is not None:
            async with self.policy.aroute() as decision:
                target = self._delegate(decision.endpoint)
                async for chunk in target._astream_in(
                    messages, stop, run_manager, decision, **kwargs
                ):
                    yield chunk
            return
        async for chunk in self._astream_in(messages, stop, run_manager, None, **kwargs):
            yield chunk

    async def _astream_in(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None,
        run_manager: AsyncCallbackManagerForLLMRun | None,
        decision: PolicyDecision | None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        w = await self._aopen()
        w.decision = decision
        held: ChatGenerationChunk | None = None
        text: list[str] = []
        try:
            async for chunk in super()._astream(
                messages, stop=stop, run_manager=run_manager, **kwargs
            ):
                text.append(chunk.text)
                if w.ttft is None and chunk.message.content:
                    w.ttft = time.perf_counter() - w.t0
                if held is not None:
                    yield held
                    held = None
                if _usage_of(chunk) is not None:
                    held = chunk
                else:
                    yield chunk
        except openai.APIConnectionError as exc:
            raise self._unavailable(exc) from exc
        latency = time.perf_counter() - w.t0
        after = await self._aafter(w)
        usage = _usage_of(held)
        counted = None if usage else counted_usage(messages, "".join(text), self.model_name)
        figures = self._close(w, after, latency, usage, run_manager, counted)
        yield _with_figures(held, figures)


def _usage_of(chunk: ChatGenerationChunk | None) -> UsageMetadata | None:
    if chunk is None or not isinstance(chunk.message, AIMessageChunk):
        return None
    return chunk.message.usage_metadata


def _with_figures(
    chunk: ChatGenerationChunk | None, figures: dict[str, Any]
) -> ChatGenerationChunk:
    if chunk is None:
        chunk = ChatGenerationChunk(message=AIMessageChunk(content=""))
    chunk.message.response_metadata[METADATA_KEY] = figures
    if isinstance(chunk.message, AIMessageChunk):
        chunk.message.chunk_position = "last"  # the figures close the stream
    return chunk


class ChatVLLMInProcess(BaseChatModel):
    """The same interface on ``vllm.LLM`` in this process (GPU machines with vLLM installed).

    ``vllm.LLM`` has no token streaming: ``stream`` yields the whole answer as one chunk. Tool
    calling is not wired in this mode (use :class:`ChatVLLM` against ``vllm serve``).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    engine: InProcessVLLM = Field(exclude=True)
    max_tokens: int | None = 256
    temperature: float = 0.0
    ledger: Ledger | None = Field(default=None, exclude=True)
    record_calls: bool = True

    @property
    def _llm_type(self) -> str:
        return "vllm-inprocess"

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        sampling: dict[str, Any] = {"max_tokens": self.max_tokens, "temperature": self.temperature}
        if stop:
            sampling["stop"] = stop
        sampling.update(kwargs)
        res = self.engine.chat(_to_dicts(messages), **sampling)
        figures = report_call(
            model=self.engine.model,
            usage=res.usage,
            latency_s=res.latency_s,
            speculation=res.speculation,
            endpoint="in-process",
            ledger=self.ledger,
            record_calls=self.record_calls,
            run_id=str(run_manager.run_id) if run_manager is not None else None,
        )
        if run_manager is not None:
            run_manager.metadata[METADATA_KEY] = figures
        u = res.usage
        msg = AIMessage(
            content=res.text,
            usage_metadata={
                "input_tokens": u.input_tokens,
                "output_tokens": u.output_tokens,
                "total_tokens": u.input_tokens + u.output_tokens,
                "input_token_details": {"cache_read": u.cache_read_tokens},
            },
            response_metadata={"finish_reason": res.finish_reason, METADATA_KEY: figures},
        )
        return ChatResult(
            generations=[ChatGeneration(message=msg)], llm_output={METADATA_KEY: figures}
        )


def _to_dicts(messages: Sequence[BaseMessage]) -> list[dict[str, Any]]:
    return [_convert_message_to_dict(m) for m in messages]
