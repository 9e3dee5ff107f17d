"""LlamaIndex LLM for vLLM: ``VLLM`` (an ``OpenAILike`` on vLLM's /v1).

Chat, stream, complete and their async twins as ``OpenAILike`` does, plus per call: usage with
cached prompt tokens (``usage.prompt_tokens_details.cached_tokens``, streaming included: the
stream asks for ``stream_options.include_usage``), speculation figures from the server's
``/metrics`` around the request, both in the response's ``additional_kwargs["tokenlean_vllm"]``
and in tokenlean's ledger; optionally a :class:`~tokenlean_vllm.LoadAwarePolicy` choosing per
request between a speculative and a plain server.

Example::

    from tokenlean_vllm import VLLMServer
    from tokenlean_vllm.llama_index import VLLM

    llm = VLLM(server=VLLMServer.attach("http://gpu-box:8000"), max_tokens=256)
    resp = llm.chat([ChatMessage(role="user", content="...")])
    print(resp.additional_kwargs["tokenlean_vllm"]["speculation"])
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from tokenlean_core import Ledger, MissingDependencyError, Usage, UsageParseError

from .errors import ServerUnavailableError
from .metrics import MetricsClient, VLLMMetrics
from .policy import LoadAwarePolicy, PolicyDecision
from .reporting import METADATA_KEY, CallWindow, StreamTail, counted_usage
from .server import VLLMServer
from .transport import lean_errors, lean_request, ok_json

try:
    import openai
    from llama_index.core.base.llms.types import ChatMessage, ChatResponse
    from llama_index.llms.openai.utils import (
        from_openai_message,
        from_openai_token_logprobs,
        to_openai_message_dicts,
    )
    from llama_index.llms.openai_like import OpenAILike  # type: ignore[import-untyped]
    from openai.types.chat import ChatCompletion
    from pydantic import Field, PrivateAttr, ValidationError
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise MissingDependencyError(
        "llama-index-llms-openai-like", "llama-index", "tokenlean-vllm"
    ) from exc

__all__ = ["VLLM"]


class VLLM(OpenAILike):  # type: ignore[misc]
    """``OpenAILike`` against a vLLM server, reporting usage, cache and speculation figures.

    Give ``server=VLLMServer(...)`` or ``api_base="http://host:8000/v1"`` + ``model``.
    ``max_retries`` defaults to 0 so a server that is down fails at once with
    :class:`~tokenlean_vllm.ServerUnavailableError`.
    """

    server: VLLMServer | None = Field(default=None, exclude=True)
    metrics_url: str | None = Field(default=None, description="the server's /metrics URL")
    collect_speculation: bool = Field(default=True)
    lean_transport: bool = Field(
        default=True,
        description="send plain chat requests without the OpenAI SDK's typed layer",
    )
    metrics_max_age_s: float = Field(
        default=1.0,
        ge=0,
        description="reuse a window-start scrape this recent (the previous call's closing one)",
    )
    record_calls: bool = Field(
        default=True, description="record each call (off when tokenlean's handler does)"
    )
    ledger: Ledger | None = Field(default=None, exclude=True)
    policy: LoadAwarePolicy | None = Field(default=None, exclude=True)

    _metrics_clients: dict[str, MetricsClient] = PrivateAttr(default_factory=dict)
    _siblings: dict[str, VLLM] = PrivateAttr(default_factory=dict)

    def __init__(
        self,
        *,
        server: VLLMServer | None = None,
        api_base: str | None = None,
        model: str | None = None,
        api_key: str | None = None,
        metrics_url: str | None = None,
        is_chat_model: bool = True,
        max_retries: int = 0,
        timeout: float = 120.0,
        **kwargs: Any,
    ) -> None:
        if server is not None:
            api_base = api_base or server.openai_base_url
            model = model or server.served_model_name
            api_key = api_key or server.api_key
            metrics_url = metrics_url or server.metrics_url
        if model is not None:
            kwargs["model"] = model
        super().__init__(
            server=server,
            api_base=api_base,
            api_key=api_key or "EMPTY",
            metrics_url=metrics_url,
            is_chat_model=is_chat_model,
            max_retries=max_retries,
            timeout=timeout,
            **kwargs,
        )

    @classmethod
    def class_name(cls) -> str:
        return "tokenlean_vllm_llm"

    # -- plumbing (request-building and recording; the I/O is in the twins below) -------------
    def _metrics_for(self, api_base: str, metrics_url: str | None) -> MetricsClient | None:
        """The metrics client for an endpoint; None when there is nothing to scrape."""
        if not self.collect_speculation:
            return None
        url = metrics_url or api_base.rstrip("/").removesuffix("/v1") + "/metrics"
        client = self._metrics_clients.get(url)
        if client is None:
            client = self._metrics_clients[url] = MetricsClient(url, model_name=self.model)
        return None if client.available is False else client

    def _route(self, decision: PolicyDecision | None) -> tuple[VLLM, MetricsClient | None]:
        """The LLM that sends the request (self, or a sibling on the policy's endpoint)."""
        if decision is None:
            return self, self._metrics_for(self.api_base, self.metrics_url)
        ep = decision.endpoint
        return self._with_base(ep.base_url), self._metrics_for(
            ep.base_url, ep.resolved_metrics_url()
        )

    def _window(
        self,
        api_base: str,
        metrics: MetricsClient | None,
        before: VLLMMetrics | None,
        decision: PolicyDecision | None,
    ) -> CallWindow:
        return CallWindow(
            model=self.model,
            endpoint=api_base,
            metrics=metrics,
            before=before,
            decision=decision,
            ledger=self.ledger,
            record_calls=self.record_calls,
        )

    def _unavailable(self, api_base: str, exc: BaseException) -> ServerUnavailableError:
        return ServerUnavailableError(
            f"no vLLM server answers at {api_base}: {exc} ({exc.__cause__!r}). Start one "
            "(VLLMServer(...).start()) or check api_base."
        )

    @staticmethod
    def _usage(raw: Any) -> Usage | None:
        if raw is None or getattr(raw, "usage", None) is None:
            return None
        try:
            return Usage.from_vllm(raw)
        except UsageParseError:
            return None

    def _finish_chat(
        self, w: CallWindow, resp: ChatResponse, after: VLLMMetrics | None
    ) -> ChatResponse:
        resp.additional_kwargs[METADATA_KEY] = w.finish(after, self._usage(resp.raw))
        return resp

    def _stream_tail(self, w: CallWindow) -> StreamTail[ChatResponse]:
        return StreamTail(w, lambda c: self._usage(c.raw), lambda c: bool(c.delta))

    def _finish_stream(
        self,
        tail: StreamTail[ChatResponse],
        messages: Sequence[ChatMessage],
        after: VLLMMetrics | None,
    ) -> ChatResponse:
        held, last = tail.held, tail.last
        content = (last.message.content or "") if last is not None else ""
        if held is not None:
            usage = self._usage(held.raw)
        else:  # a server that streams without usage: count it, close with an empty delta
            usage = counted_usage(list(messages), content, self.model)
            held = ChatResponse(message=ChatMessage(role="assistant", content=content), delta="")
        held.additional_kwargs[METADATA_KEY] = tail.window.finish(after, usage)
        return held

    # -- lean path (request-building and result-making; the I/O is in the twins below) --------
    def _lean_request(
        self,
        target: VLLM,
        root: openai.OpenAI | openai.AsyncOpenAI,
        messages: Sequence[ChatMessage],
        kwargs: dict[str, Any],
    ) -> dict[str, Any] | None:
        """``httpx`` ``post`` arguments for the lean path, or None to take the SDK path."""
        if not self.lean_transport or not target.reuse_client:
            return None
        payload = {
            "messages": to_openai_message_dicts(messages, model=target.model),
            "stream": False,
            **target._get_model_kwargs(**kwargs),
        }
        return lean_request(root, payload)

    @staticmethod
    def _lean_response(target: VLLM, data: dict[str, Any] | None) -> ChatResponse | None:
        """The ``ChatResponse`` ``OpenAI._chat`` makes, from the answer's JSON body."""
        if data is None:
            return None
        try:  # validating is ~15x faster than the SDK's lenient construct; that is the fallback
            completion = ChatCompletion.model_validate(data)
        except ValidationError:
            completion = ChatCompletion.construct(**data)
        choice = completion.choices[0]
        logprobs = None
        if choice.logprobs and choice.logprobs.content:
            logprobs = from_openai_token_logprobs(choice.logprobs.content)
        return ChatResponse(
            message=from_openai_message(choice.message, modalities=target.modalities or ["text"]),
            raw=completion,
            logprobs=logprobs,
            additional_kwargs=target._get_response_token_counts(completion),
        )

    def _lean_chat(
        self, target: VLLM, messages: Sequence[ChatMessage], kwargs: dict[str, Any]
    ) -> ChatResponse | None:
        root = target._get_client()
        request = self._lean_request(target, root, messages, kwargs)
        if request is None:
            return None
        with lean_errors():
            return self._lean_response(target, ok_json(root._client.post(**request)))
        return None  # a transport error: the SDK path retries and raises its own error

    async def _alean_chat(
        self, target: VLLM, messages: Sequence[ChatMessage], kwargs: dict[str, Any]
    ) -> ChatResponse | None:
        root = target._get_aclient()
        request = self._lean_request(target, root, messages, kwargs)
        if request is None:
            return None
        with lean_errors():
            response = await root._client.post(**request)
            return self._lean_response(target, ok_json(response))
        return None

    def _with_base(self, api_base: str) -> VLLM:
        """Self, or a sibling on another endpoint (policy routing)."""
        if api_base == self.api_base:
            return self
        sibling = self._siblings.get(api_base)
        if sibling is None:
            skip = ("policy", "server")
            data = {k: getattr(self, k) for k in type(self).model_fields if k not in skip}
            data["api_base"] = api_base
            sibling = self._siblings[api_base] = type(self).model_validate(data)
        return sibling

    # -- the I/O twins -------------------------------------------------------------------------
    def _open(self, decision: PolicyDecision | None) -> tuple[VLLM, CallWindow]:
        target, mclient = self._route(decision)
        try:
            before = mclient.window_start(self.metrics_max_age_s) if mclient else None
        except ServerUnavailableError as exc:
            raise self._unavailable(target.api_base, exc) from exc
        return target, self._window(target.api_base, mclient, before, decision)

    async def _aopen(self, decision: PolicyDecision | None) -> tuple[VLLM, CallWindow]:
        target, mclient = self._route(decision)
        try:
            before = await mclient.awindow_start(self.metrics_max_age_s) if mclient else None
        except ServerUnavailableError as exc:
            raise self._unavailable(target.api_base, exc) from exc
        return target, self._window(target.api_base, mclient, before, decision)

    def _chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        if self.policy is None:
            return self._chat_on(None, messages, **kwargs)
        with self.policy.route() as decision:
            return self._chat_on(decision, messages, **kwargs)

    def _chat_on(
        self, decision: PolicyDecision | None, messages: Sequence[ChatMessage], **kwargs: Any
    ) -> ChatResponse:
        target, w = self._open(decision)
        try:
            resp: ChatResponse = self._lean_chat(target, messages, kwargs) or OpenAILike._chat(
                target, messages, **kwargs
            )
        except openai.APIConnectionError as exc:
            raise self._unavailable(target.api_base, exc) from exc
        return self._finish_chat(w, resp, w.end_scrape())

    async def _achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        if self.policy is None:
            return await self._achat_on(None, messages, **kwargs)
        async with self.policy.aroute() as decision:
            return await self._achat_on(decision, messages, **kwargs)

    async def _achat_on(
        self, decision: PolicyDecision | None, messages: Sequence[ChatMessage], **kwargs: Any
    ) -> ChatResponse:
        target, w = await self._aopen(decision)
        try:
            resp: ChatResponse = await self._alean_chat(
                target, messages, kwargs
            ) or await OpenAILike._achat(target, messages, **kwargs)
        except openai.APIConnectionError as exc:
            raise self._unavailable(target.api_base, exc) from exc
        return self._finish_chat(w, resp, await w.aend_scrape())

    def _stream_chat(
        self, messages: Sequence[ChatMessage], **kwargs: Any
    ) -> Iterator[ChatResponse]:
        kwargs.setdefault("stream_options", {"include_usage": True})

        def gen() -> Iterator[ChatResponse]:
            if self.policy is None:
                yield from self._stream_on(None, messages, **kwargs)
                return
            with self.policy.route() as decision:
                yield from self._stream_on(decision, messages, **kwargs)

        return gen()

    def _stream_on(
        self, decision: PolicyDecision | None, messages: Sequence[ChatMessage], **kwargs: Any
    ) -> Iterator[ChatResponse]:
        target, w = self._open(decision)
        tail = self._stream_tail(w)
        try:
            for chunk in OpenAILike._stream_chat(target, messages, **kwargs):
                yield from tail.feed(chunk)
        except openai.APIConnectionError as exc:
            raise self._unavailable(target.api_base, exc) from exc
        yield self._finish_stream(tail, messages, w.end_scrape())

    async def _astream_chat(
        self, messages: Sequence[ChatMessage], **kwargs: Any
    ) -> AsyncIterator[ChatResponse]:
        kwargs.setdefault("stream_options", {"include_usage": True})

        async def gen() -> AsyncIterator[ChatResponse]:
            if self.policy is None:
                async for c in self._astream_on(None, messages, **kwargs):
                    yield c
                return
            async with self.policy.aroute() as decision:
                async for c in self._astream_on(decision, messages, **kwargs):
                    yield c

        return gen()

    async def _astream_on(
        self, decision: PolicyDecision | None, messages: Sequence[ChatMessage], **kwargs: Any
    ) -> AsyncIterator[ChatResponse]:
        target, w = await self._aopen(decision)
        tail = self._stream_tail(w)
        try:
            stream = await OpenAILike._astream_chat(target, messages, **kwargs)
            async for chunk in stream:
                for out in tail.feed(chunk):
                    yield out
        except openai.APIConnectionError as exc:
            raise self._unavailable(target.api_base, exc) from exc
        yield self._finish_stream(tail, messages, await w.aend_scrape())
