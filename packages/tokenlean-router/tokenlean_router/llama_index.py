"""LlamaIndex adapter: :class:`RouterLLM`, an ``LLM`` that routes between LlamaIndex LLMs.

Each chat/complete call (sync, async, streaming) is scored by the gate and sent to the chosen
tier's LLM; on an exception it falls back to the next larger tiers, then smaller ones. The decision
is put on the response's ``additional_kwargs["tokenlean_route"]`` and the saving vs the largest tier
is recorded in core's ledger. Use it anywhere an ``LLM`` goes (query engines, chat engines, agents).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar, cast

from tokenlean_core import MissingDependencyError, Usage, count_tokens

try:
    from llama_index.core.base.llms.types import (
        ChatMessage,
        ChatResponse,
        ChatResponseAsyncGen,
        ChatResponseGen,
        CompletionResponse,
        CompletionResponseAsyncGen,
        CompletionResponseGen,
        LLMMetadata,
        MessageRole,
    )
    from llama_index.core.llms import LLM
    from pydantic import ConfigDict, Field, PrivateAttr
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise MissingDependencyError(
        exc.name or "llama_index.core", "llama-index", "tokenlean-router"
    ) from exc

from .errors import AllTiersFailedError, RouterConfigError
from .router import Decision, Router, record_route

__all__ = ["RouterLLM"]

logger = logging.getLogger("tokenlean.router")
METADATA_KEY = "tokenlean_route"
T = TypeVar("T")


def _last_user_text(messages: Sequence[ChatMessage]) -> str:
    for m in reversed(messages):
        if m.role == MessageRole.USER:
            return m.content or ""
    return (messages[-1].content or "") if messages else ""


class RouterLLM(LLM):
    """A LlamaIndex ``LLM`` routing each call to one of ``llms`` (smallest first, one per tier).

    Args:
        router: the gate (:class:`~tokenlean_router.Router`).
        llms: LlamaIndex LLMs aligned with ``router.tiers``.
        fallback: on an exception try the next larger tiers, then smaller ones.
        ledger: where savings are recorded (default: process-wide).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    router: Any = Field(description="tokenlean_router.Router")
    llms: list[Any] = Field(description="LlamaIndex LLMs, smallest first")
    fallback: bool = True
    ledger: Any = None
    _router: Router = PrivateAttr()

    def __init__(self, router: Router, llms: Sequence[LLM], **kwargs: Any) -> None:
        if not isinstance(router, Router):
            raise RouterConfigError("router must be a tokenlean_router.Router")
        if len(llms) != len(router.tiers):
            raise RouterConfigError(
                f"{len(llms)} LLMs for {len(router.tiers)} tiers: give one LLM per tier"
            )
        for llm in llms:
            if not isinstance(llm, LLM):
                raise RouterConfigError(f"routes must be LlamaIndex LLMs, got {type(llm).__name__}")
        fields: dict[str, Any] = {"router": router, "llms": list(llms), **kwargs}
        super().__init__(**fields)
        self._router = router

    @classmethod
    def class_name(cls) -> str:
        return "TokenleanRouterLLM"

    @property
    def metadata(self) -> LLMMetadata:
        """The metadata of the largest tier (the tightest guarantee a caller can plan with),
        with the smallest context window among the tiers."""
        metas = [llm.metadata for llm in self.llms]
        big = metas[-1]
        return LLMMetadata(
            context_window=min(m.context_window for m in metas),
            num_output=big.num_output,
            is_chat_model=big.is_chat_model,
            is_function_calling_model=all(m.is_function_calling_model for m in metas),
            model_name=f"router[{','.join(t.name for t in self._router.tiers)}]",
        )

    # -- helpers -----------------------------------------------------------------------------------
    def _attempts(self, decision: Decision) -> list[Decision]:
        n = len(self.llms)
        c = decision.tier_index
        order = [c, *range(c + 1, n), *range(c - 1, -1, -1)] if self.fallback else [c]
        return [
            decision
            if i == c
            else decision.with_(
                tier_index=i,
                tier=self._router.tiers[i].name,
                detail={"fallback_from": decision.tier},
            )
            for i in order
        ]

    def _record(self, d: Decision, prompt_text: str, response_text: str, raw: Any) -> None:
        usage = None
        if isinstance(raw, dict) and raw.get("usage"):
            try:
                usage = Usage.parse(raw)
            except Exception:
                usage = None
        if usage is None:
            model = d.tier
            usage = Usage(
                int(count_tokens(prompt_text, model)),
                int(count_tokens(response_text, model)),
                exact=False,
                source="estimate",
            )
        record_route(
            self.ledger if self.ledger is not None else self._router.ledger,
            self._router.tiers,
            d,
            usage,
        )

    def _run(self, text: str, call: Callable[[Any], T]) -> tuple[Decision, T]:
        decision = self._router.decide(text)
        errors: list[BaseException] = []
        for d in self._attempts(decision):
            try:
                return d, call(self.llms[d.tier_index])
            except Exception as exc:
                logger.warning("tier %s failed (%s); falling back", d.tier, type(exc).__name__)
                errors.append(exc)
        raise AllTiersFailedError(errors)

    async def _arun(self, text: str, call: Callable[[Any], Awaitable[T]]) -> tuple[Decision, T]:
        decision = await self._router.adecide(text)
        errors: list[BaseException] = []
        for d in self._attempts(decision):
            try:
                return d, await call(self.llms[d.tier_index])
            except Exception as exc:
                logger.warning("tier %s failed (%s); falling back", d.tier, type(exc).__name__)
                errors.append(exc)
        raise AllTiersFailedError(errors)

    @staticmethod
    def _chat_text(messages: Sequence[ChatMessage]) -> str:
        return "\n".join(m.content or "" for m in messages)

    # -- chat --------------------------------------------------------------------------------------
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        d, resp = self._run(_last_user_text(messages), lambda llm: llm.chat(messages, **kwargs))
        resp.additional_kwargs[METADATA_KEY] = d.as_metadata()
        self._record(d, self._chat_text(messages), resp.message.content or "", resp.raw)
        return cast("ChatResponse", resp)

    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        d, resp = await self._arun(
            _last_user_text(messages), lambda llm: llm.achat(messages, **kwargs)
        )
        resp.additional_kwargs[METADATA_KEY] = d.as_metadata()
        self._record(d, self._chat_text(messages), resp.message.content or "", resp.raw)
        return cast("ChatResponse", resp)

    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        d, gen = self._run(
            _last_user_text(messages), lambda llm: llm.stream_chat(messages, **kwargs)
        )

        def wrapped() -> ChatResponseGen:
            last: ChatResponse | None = None
            for r in gen:
                r.additional_kwargs[METADATA_KEY] = d.as_metadata()
                last = r
                yield r
            text = (last.message.content or "") if last is not None else ""
            self._record(d, self._chat_text(messages), text, last.raw if last else None)

        return wrapped()

    async def astream_chat(
        self, messages: Sequence[ChatMessage], **kwargs: Any
    ) -> ChatResponseAsyncGen:
        d, agen = await self._arun(
            _last_user_text(messages), lambda llm: llm.astream_chat(messages, **kwargs)
        )

        async def wrapped() -> ChatResponseAsyncGen:
            last: ChatResponse | None = None
            async for r in agen:
                r.additional_kwargs[METADATA_KEY] = d.as_metadata()
                last = r
                yield r
            text = (last.message.content or "") if last is not None else ""
            self._record(d, self._chat_text(messages), text, last.raw if last else None)

        return wrapped()

    # -- completion --------------------------------------------------------------------------------
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        d, resp = self._run(prompt, lambda llm: llm.complete(prompt, formatted=formatted, **kwargs))
        resp.additional_kwargs[METADATA_KEY] = d.as_metadata()
        self._record(d, prompt, resp.text, resp.raw)
        return cast("CompletionResponse", resp)

    async def acomplete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponse:
        d, resp = await self._arun(
            prompt, lambda llm: llm.acomplete(prompt, formatted=formatted, **kwargs)
        )
        resp.additional_kwargs[METADATA_KEY] = d.as_metadata()
        self._record(d, prompt, resp.text, resp.raw)
        return cast("CompletionResponse", resp)

    def stream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseGen:
        d, gen = self._run(
            prompt, lambda llm: llm.stream_complete(prompt, formatted=formatted, **kwargs)
        )

        def wrapped() -> CompletionResponseGen:
            last: CompletionResponse | None = None
            for r in gen:
                r.additional_kwargs[METADATA_KEY] = d.as_metadata()
                last = r
                yield r
            self._record(d, prompt, last.text if last else "", last.raw if last else None)

        return wrapped()

    async def astream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseAsyncGen:
        d, agen = await self._arun(
            prompt, lambda llm: llm.astream_complete(prompt, formatted=formatted, **kwargs)
        )

        async def wrapped() -> CompletionResponseAsyncGen:
            last: CompletionResponse | None = None
            async for r in agen:
                r.additional_kwargs[METADATA_KEY] = d.as_metadata()
                last = r
                yield r
            self._record(d, prompt, last.text if last else "", last.raw if last else None)

        return wrapped()
