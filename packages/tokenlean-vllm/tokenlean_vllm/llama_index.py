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

import time
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from tokenlean_core import Ledger, MissingDependencyError, Usage, UsageParseError

from .errors import ServerUnavailableError
from .metrics import MetricsClient, SpeculationStats, VLLMMetrics
from .policy import LoadAwarePolicy, PolicyDecision
from .reporting import METADATA_KEY, counted_usage, report_call
from .server import VLLMServer

try:
    import openai
    from llama_index.core.base.llms.types import ChatMessage, ChatResponse
    from llama_index.llms.openai_like import OpenAILike  # type: ignore[import-untyped]
    from pydantic import Field, PrivateAttr
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

    # -- plumbing ----------------------------------------------------------------------------
    def _metrics_for(self, api_base: str, metrics_url: str | None) -> MetricsClient | None:
        if not self.collect_speculation:
            return None
        url = metrics_url or api_base.rstrip("/").removesuffix("/v1") + "/metrics"
        client = self._metrics_clients.get(url)
        if client is None:
            client = self._metrics_clients[url] = MetricsClient(url, model_name=self.model)
        return client

    def _route(self, decision: PolicyDecision | None) -> tuple[str, MetricsClient | None]:
        if decision is None:
            return self.api_base, self._metrics_for(self.api_base, self.metrics_url)
        ep = decision.endpoint
        return ep.base_url, self._metrics_for(ep.base_url, ep.resolved_metrics_url())

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

    def _figures(
        self,
        api_base: str,
        before: VLLMMetrics | None,
        after: VLLMMetrics | None,
        t0: float,
        raw: Any,
        decision: PolicyDecision | None,
        ttft: float | None = None,
        counted: Usage | None = None,
    ) -> dict[str, Any]:
        latency = time.perf_counter() - t0
        spec = None
        if before is not None and after is not None and after.has_spec_decode:
            spec = SpeculationStats.between(before, after, latency)
        return report_call(
            model=self.model,
            usage=self._usage(raw) or counted,
            latency_s=latency,
            ttft_s=ttft,
            speculation=spec,
            endpoint=api_base,
            ledger=self.ledger,
            record_calls=self.record_calls,
            policy=decision.as_dict() if decision else None,
        )

    @staticmethod
    def _scrape(client: MetricsClient | None) -> VLLMMetrics | None:
        if client is None:
            return None
        return client.scrape()

    @staticmethod
    async def _ascrape(client: MetricsClient | None) -> VLLMMetrics | None:
        if client is None:
            return None
        return await client.ascrape()

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

    # -- chat --------------------------------------------------------------------------------
    def _chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        if self.policy is None:
            return self._chat_on(None, messages, **kwargs)
        with self.policy.route() as decision:
            return self._chat_on(decision, messages, **kwargs)

    def _chat_on(
        self, decision: PolicyDecision | None, messages: Sequence[ChatMessage], **kwargs: Any
    ) -> ChatResponse:
        api_base, mclient = self._route(decision)
        target = self._with_base(api_base)
        try:
            before = self._scrape(mclient)
            t0 = time.perf_counter()
            resp: ChatResponse = OpenAILike._chat(target, messages, **kwargs)
        except (openai.APIConnectionError, ServerUnavailableError) as exc:
            raise self._unavailable(api_base, exc) from exc
        after = self._safe_after(mclient, before)
        figures = self._figures(api_base, before, after, t0, resp.raw, decision)
        resp.additional_kwargs[METADATA_KEY] = figures
        return resp

    def _safe_after(
        self, client: MetricsClient | None, before: VLLMMetrics | None
    ) -> VLLMMetrics | None:
        if before is None:
            return None
        try:
            return self._scrape(client)
        except ServerUnavailableError:
            return None

    async def _asafe_after(
        self, client: MetricsClient | None, before: VLLMMetrics | None
    ) -> VLLMMetrics | None:
        if before is None:
            return None
        try:
            return await self._ascrape(client)
        except ServerUnavailableError:
            return None

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
        api_base, mclient = self._route(decision)
        target = self._with_base(api_base)
        held: ChatResponse | None = None
        last: ChatResponse | None = None
        ttft: float | None = None
        try:
            before = self._scrape(mclient)
            t0 = time.perf_counter()
            for chunk in OpenAILike._stream_chat(target, messages, **kwargs):
                if ttft is None and chunk.delta:
                    ttft = time.perf_counter() - t0
                if held is not None:
                    yield held
                    held = None
                last = chunk
                if self._usage(chunk.raw) is not None:
                    held = chunk
                else:
                    yield chunk
        except (openai.APIConnectionError, ServerUnavailableError) as exc:
            raise self._unavailable(api_base, exc) from exc
        after = self._safe_after(mclient, before)
        raw = held.raw if held is not None else None
        counted = None
        if held is None:
            answer = (last.message.content or "") if last is not None else ""
            counted = counted_usage(list(messages), answer, self.model)
        figures = self._figures(api_base, before, after, t0, raw, decision, ttft, counted)
        if held is None:
            content = last.message.content if last is not None else ""
            held = ChatResponse(message=ChatMessage(role="assistant", content=content), delta="")
        held.additional_kwargs[METADATA_KEY] = figures
        yield held

    async def _achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        if self.policy is None:
            return await self._achat_on(None, messages, **kwargs)
        async with self.policy.aroute() as decision:
            return await self._achat_on(decision, messages, **kwargs)

    async def _achat_on(
        self, decision: PolicyDecision | None, messages: Sequence[ChatMessage], **kwargs: Any
    ) -> ChatResponse:
        api_base, mclient = self._route(decision)
        target = self._with_base(api_base)
        try:
            before = await self._ascrape(mclient)
            t0 = time.perf_counter()
            resp: ChatResponse = await OpenAILike._achat(target, messages, **kwargs)
        except (openai.APIConnectionError, ServerUnavailableError) as exc:
            raise self._unavailable(api_base, exc) from exc
        after = await self._asafe_after(mclient, before)
        figures = self._figures(api_base, before, after, t0, resp.raw, decision)
        resp.additional_kwargs[METADATA_KEY] = figures
        return resp

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
        api_base, mclient = self._route(decision)
        target = self._with_base(api_base)
        held: ChatResponse | None = None
        last: ChatResponse | None = None
        ttft: float | None = None
        try:
            before = await self._ascrape(mclient)
            t0 = time.perf_counter()
            stream = await OpenAILike._astream_chat(target, messages, **kwargs)
            async for chunk in stream:
                if ttft is None and chunk.delta:
                    ttft = time.perf_counter() - t0
                if held is not None:
                    yield held
                    held = None
                last = chunk
                if self._usage(chunk.raw) is not None:
                    held = chunk
                else:
                    yield chunk
        except (openai.APIConnectionError, ServerUnavailableError) as exc:
            raise self._unavailable(api_base, exc) from exc
        after = await self._asafe_after(mclient, before)
        raw = held.raw if held is not None else None
        counted = None
        if held is None:
            answer = (last.message.content or "") if last is not None else ""
            counted = counted_usage(list(messages), answer, self.model)
        figures = self._figures(api_base, before, after, t0, raw, decision, ttft, counted)
        if held is None:
            content = last.message.content if last is not None else ""
            held = ChatResponse(message=ChatMessage(role="assistant", content=content), delta="")
        held.additional_kwargs[METADATA_KEY] = figures
        yield held
