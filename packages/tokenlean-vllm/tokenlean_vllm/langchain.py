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

Per-request cost: a plain ``invoke``/``ainvoke`` (no streaming, no structured output, no per-call
headers or timeout) is sent by the *lean path*: ``ChatOpenAI``'s own request payload, posted with
the OpenAI SDK's own HTTP client, the JSON answer turned into a ``ChatResult`` by ``ChatOpenAI``'s
own converter, skipping the SDK's typed request/response layer (the largest client-side cost of a
short request). LangChain's callbacks, tracing and caching are untouched (they sit above
``_generate``). Anything else, and any answer that is not a 200, goes through ``ChatOpenAI`` as is
(its retries and error types); ``lean_transport=False`` turns the lean path off. The ``/metrics``
window costs one scrape per request (the previous request's closing scrape opens the next window
when at most ``metrics_max_age_s`` old), none on a server without ``/metrics``.

Example::

    from tokenlean_vllm import SpeculativeConfig, VLLMServer
    from tokenlean_vllm.langchain import ChatVLLM

    with VLLMServer("Qwen/Qwen3-8B", speculative=SpeculativeConfig.ngram()) as server:
        llm = ChatVLLM(server=server, max_tokens=256)
        print(llm.invoke("Summarise: ...").response_metadata["tokenlean_vllm"])
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from tokenlean_core import Ledger, MissingDependencyError, Usage

from .errors import ServerUnavailableError
from .inprocess import InProcessVLLM
from .metrics import MetricsClient, VLLMMetrics
from .policy import Endpoint, LoadAwarePolicy, PolicyDecision
from .reporting import METADATA_KEY, CallWindow, StreamTail, counted_usage, report_call
from .server import VLLMServer
from .transport import lean_errors, lean_request, ok_json

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

RunManager = CallbackManagerForLLMRun | AsyncCallbackManagerForLLMRun


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
    """Scrape ``/metrics`` around each call for speculation figures."""
    metrics_max_age_s: float = Field(default=1.0, ge=0)
    """A window-start scrape this recent (the previous call's closing one) is reused (0: never)."""
    lean_transport: bool = True
    """Send plain requests without the OpenAI SDK's typed layer (see the module docstring)."""
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
    _lean: tuple[str, dict[str, str]] | None = PrivateAttr(default=None)

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

    # -- metrics window (request-building and recording; the I/O is in the twins below) -----
    @property
    def resolved_metrics_url(self) -> str | None:
        if self.metrics_url:
            return self.metrics_url
        if self.openai_api_base:
            return self.openai_api_base.rstrip("/").removesuffix("/v1") + "/metrics"
        return None

    def _metrics_client(self) -> MetricsClient | None:
        """The metrics client, None when there is nothing to scrape (off, or no /metrics)."""
        client = self._metrics
        if client is None:
            if not self.collect_speculation or (url := self.resolved_metrics_url) is None:
                return None
            client = self._metrics = MetricsClient(url, model_name=self.model_name)
        return None if client.available is False else client

    def _window(self, decision: PolicyDecision | None, before: VLLMMetrics | None) -> CallWindow:
        return CallWindow(
            model=self.model_name,
            endpoint=self.openai_api_base or "",
            metrics=self._metrics,
            before=before,
            decision=decision,
            ledger=self.ledger,
            record_calls=self.record_calls,
        )

    def _open(self, decision: PolicyDecision | None) -> CallWindow:
        client = self._metrics_client()
        try:
            before = client.window_start(self.metrics_max_age_s) if client else None
        except ServerUnavailableError as exc:
            raise self._unavailable(exc) from exc
        return self._window(decision, before)

    async def _aopen(self, decision: PolicyDecision | None) -> CallWindow:
        client = self._metrics_client()
        try:
            before = await client.awindow_start(self.metrics_max_age_s) if client else None
        except ServerUnavailableError as exc:
            raise self._unavailable(exc) from exc
        return self._window(decision, before)

    @staticmethod
    def _record(
        w: CallWindow,
        after: VLLMMetrics | None,
        usage: Usage | None,
        run_manager: RunManager | None,
    ) -> dict[str, Any]:
        run_id = str(run_manager.run_id) if run_manager is not None else None
        figures = w.finish(after, usage, run_id)
        if run_manager is not None:
            # the same dict the tracers store: LangSmith shows the figures on the run
            run_manager.metadata[METADATA_KEY] = figures
        return figures

    def _finish_result(
        self,
        result: ChatResult,
        w: CallWindow,
        after: VLLMMetrics | None,
        run_manager: RunManager | None,
    ) -> ChatResult:
        msg = result.generations[0].message if result.generations else None
        usage_md = msg.usage_metadata if isinstance(msg, AIMessage) else None
        usage = Usage.from_langchain(usage_md) if usage_md else None
        figures = self._record(w, after, usage, run_manager)
        if msg is not None:
            msg.response_metadata[METADATA_KEY] = figures
        result.llm_output = {**(result.llm_output or {}), METADATA_KEY: figures}
        return result

    def _stream_tail(self, w: CallWindow) -> StreamTail[ChatGenerationChunk]:
        return StreamTail(w, _usage_of, lambda c: bool(c.message.content))

    def _finish_stream(
        self,
        tail: StreamTail[ChatGenerationChunk],
        messages: list[BaseMessage],
        text: list[str],
        after: VLLMMetrics | None,
        run_manager: RunManager | None,
    ) -> ChatGenerationChunk:
        usage_md = _usage_of(tail.held)
        if usage_md:
            usage = Usage.from_langchain(usage_md)
        else:  # a server that streams without usage: count it
            usage = counted_usage(messages, "".join(text), self.model_name)
        return _with_figures(tail.held, self._record(tail.window, after, usage, run_manager))

    def _unavailable(self, exc: BaseException) -> ServerUnavailableError:
        return ServerUnavailableError(
            f"no vLLM server answers at {self.openai_api_base}: {exc} ({exc.__cause__!r}). "
            "Start one (VLLMServer(...).start()) or check base_url."
        )

    # -- lean path (request-building and result-making; the I/O is in the twins below) --------
    def _lean_request(
        self,
        root: openai.OpenAI | openai.AsyncOpenAI | None,
        messages: list[BaseMessage],
        stop: list[str] | None,
        kwargs: dict[str, Any],
    ) -> dict[str, Any] | None:
        """``httpx`` ``post`` arguments for the lean path, or None to take the SDK path."""
        if not self.lean_transport or self.include_response_headers or root is None:
            return None
        payload = self._get_request_payload(messages, stop=stop, **kwargs)
        if self._use_responses_api(payload):
            return None
        return lean_request(root, payload)

    def _lean_result(self, data: dict[str, Any] | None) -> ChatResult | None:
        """``ChatOpenAI``'s own ``ChatResult`` from the answer's JSON body."""
        if data is None:
            return None
        result = self._create_chat_result(data, {})
        first = data["choices"][0].get("message") or {}
        # the SDK path puts the (usually null) refusal on the first message; so does this one
        result.generations[0].message.additional_kwargs.setdefault("refusal", first.get("refusal"))
        return result

    def _lean_generate(
        self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]
    ) -> ChatResult | None:
        request = self._lean_request(self.root_client, messages, stop, kwargs)
        if request is None:
            return None
        with lean_errors():
            return self._lean_result(ok_json(self.root_client._client.post(**request)))
        return None  # a transport error: the SDK path retries and raises its own error

    async def _alean_generate(
        self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]
    ) -> ChatResult | None:
        request = self._lean_request(self.root_async_client, messages, stop, kwargs)
        if request is None:
            return None
        with lean_errors():
            response = await self.root_async_client._client.post(**request)
            return self._lean_result(ok_json(response))
        return None

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

    # -- generation: the I/O twins -------------------------------------------------------------
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
        w = self._open(decision)
        try:
            result = self._lean_generate(messages, stop, kwargs) or super()._generate(
                messages, stop=stop, run_manager=run_manager, **kwargs
            )
        except openai.APIConnectionError as exc:
            raise self._unavailable(exc) from exc
        return self._finish_result(result, w, w.end_scrape(), run_manager)

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
        w = await self._aopen(decision)
        try:
            result = await self._alean_generate(messages, stop, kwargs) or await super()._agenerate(
                messages, stop=stop, run_manager=run_manager, **kwargs
            )
        except openai.APIConnectionError as exc:
            raise self._unavailable(exc) from exc
        return self._finish_result(result, w, await w.aend_scrape(), run_manager)

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
        tail = self._stream_tail(self._open(decision))
        text: list[str] = []
        try:
            for chunk in super()._stream(messages, stop=stop, run_manager=run_manager, **kwargs):
                text.append(chunk.text)
                yield from tail.feed(chunk)
        except openai.APIConnectionError as exc:
            raise self._unavailable(exc) from exc
        after = tail.window.end_scrape()
        yield self._finish_stream(tail, messages, text, after, run_manager)

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
        tail = self._stream_tail(await self._aopen(decision))
        text: list[str] = []
        try:
            async for chunk in super()._astream(
                messages, stop=stop, run_manager=run_manager, **kwargs
            ):
                text.append(chunk.text)
                for out in tail.feed(chunk):
                    yield out
        except openai.APIConnectionError as exc:
            raise self._unavailable(exc) from exc
        after = await tail.window.aend_scrape()
        yield self._finish_stream(tail, messages, text, after, run_manager)


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
