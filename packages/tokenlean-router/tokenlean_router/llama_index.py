"""LlamaIndex adapter: :class:`RouterLLM`, an ``LLM`` that routes between LlamaIndex LLMs.

Each chat/complete call (sync, async, streaming) is scored by the gate and sent to the chosen
tier's LLM; with a ``cascade``, a small tier's answer whose confidence is low (token logprobs, a
verifier, or self-consistency) is escalated to the next tier. On an exception the call falls back
to the next larger tiers, then smaller ones. The decision is put on the response's
``additional_kwargs["tokenlean_route"]`` and the saving vs the largest tier (net of discarded
cheap answers) is recorded in core's ledger, with an ``escalated`` event when the cascade
escalated. Use it anywhere an ``LLM`` goes (query engines, chat engines, agents).

Streaming with a cascade is "decide, then stream": the small model's stream is buffered until its
confidence is known; accepted, the buffered responses are replayed; rejected, the next tier
streams live. Without a cascade (or on the largest tier) responses stream as they arrive.
"""

from __future__ import annotations

import logging
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Generator,
    Iterator,
    Sequence,
)
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

from .cascade import CascadePolicy
from .errors import RouterConfigError
from .flow import (
    Action,
    Call,
    Outcome,
    ResultView,
    Sample,
    StreamState,
    adrive,
    adrive_stream,
    dispatch,
    drive,
    drive_stream,
    finish_route,
    initial_decision,
    route_flow,
)
from .router import Decision, Router, Tier

__all__ = ["RouterLLM"]

logger = logging.getLogger("tokenlean.router")
METADATA_KEY = "tokenlean_route"
Resp = TypeVar("Resp", ChatResponse, CompletionResponse)


def _last_user_text(messages: Sequence[ChatMessage]) -> str:
    for m in reversed(messages):
        if m.role == MessageRole.USER:
            return m.content or ""
    return (messages[-1].content or "") if messages else ""


def _text(resp: ChatResponse | CompletionResponse) -> str:
    if isinstance(resp, ChatResponse):
        return resp.message.content or ""
    return resp.text or ""


def _logprobs(resp: ChatResponse | CompletionResponse) -> list[float] | None:
    """Per-token logprobs: LlamaIndex keeps, per token, the top alternatives; the chosen token's is
    taken as the most likely of them (exact for greedy decoding)."""
    rows = resp.logprobs
    if not rows:
        return None
    return [max(lp.logprob for lp in row) for row in rows if row]


def _join(chunks: list[Resp]) -> Resp:
    """The whole answer of a stream: the last response, with the text rebuilt from the deltas
    when the stream has them (some LLMs' cumulative text lags one delta behind) and the
    per-delta logprobs concatenated."""
    if not chunks:
        raise RouterConfigError("the routed LLM streamed no response")
    last = chunks[-1]
    update: dict[str, Any] = {}
    if any(c.logprobs for c in chunks):  # streamed logprobs come per delta: concatenate
        update["logprobs"] = [row for c in chunks for row in c.logprobs or []]
    if any(c.delta is not None for c in chunks):
        text = "".join(c.delta or "" for c in chunks)
        if isinstance(last, ChatResponse):
            update["message"] = last.message.model_copy(update={"content": text})
        else:
            update["text"] = text
    return last.model_copy(update=update) if update else last


class RouterLLM(LLM):
    """A LlamaIndex ``LLM`` routing each call to one of ``llms`` (smallest first, one per tier).

    Args:
        router: the gate (:class:`~tokenlean_router.Router`); None = a pure cascade starting at
            the smallest tier (give ``tiers`` then).
        llms: LlamaIndex LLMs aligned with the tiers.
        cascade: escalate from a small tier to the next when the answer's confidence is low.
        tiers: tier names/prices when there is no ``router``.
        fallback: on an exception try the next larger tiers, then smaller ones.
        ledger: where savings are recorded (default: the router's, else process-wide).
        group_of: the scored text -> its group label, for a gate trained with groups.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    router: Any = Field(default=None, description="tokenlean_router.Router or None")
    llms: list[Any] = Field(description="LlamaIndex LLMs, smallest first")
    cascade: Any = Field(default=None, description="tokenlean_router.CascadePolicy or None")
    fallback: bool = True
    group_of: Any = Field(default=None, description="Callable[[str], str | None] or None")
    ledger: Any = None
    _tiers: tuple[Tier, ...] = PrivateAttr(default=())

    def __init__(
        self,
        router: Router | None,
        llms: Sequence[LLM],
        *,
        cascade: CascadePolicy | None = None,
        tiers: Sequence[Tier | str] | None = None,
        **kwargs: Any,
    ) -> None:
        if router is not None and not isinstance(router, Router):
            raise RouterConfigError("router must be a tokenlean_router.Router (or None)")
        if cascade is not None and not isinstance(cascade, CascadePolicy):
            raise RouterConfigError("cascade must be a tokenlean_router.CascadePolicy")
        if router is None and cascade is None:
            raise RouterConfigError("give a router (gate), a cascade, or both")
        names = (
            router.tiers
            if router is not None
            else tuple(t if isinstance(t, Tier) else Tier(t) for t in tiers or ())
        )
        if not names:
            names = tuple(Tier(f"tier{i}") for i in range(len(llms)))
        if len(llms) != len(names):
            raise RouterConfigError(
                f"{len(llms)} LLMs for {len(names)} tiers: give one LLM per tier"
            )
        if len(names) < 2:
            raise RouterConfigError("a router LLM needs at least two tiers")
        for llm in llms:
            if not isinstance(llm, LLM):
                raise RouterConfigError(f"routes must be LlamaIndex LLMs, got {type(llm).__name__}")
        fields: dict[str, Any] = {"router": router, "llms": list(llms), "cascade": cascade}
        super().__init__(**fields, **kwargs)
        self._tiers = tuple(names)

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
            model_name=f"router[{','.join(t.name for t in self._tiers)}]",
        )

    # -- I/O-free parts shared by every call flavour -----------------------------------------------
    def _usage(
        self, tier: Tier, prompt_text: str, resp: ChatResponse | CompletionResponse
    ) -> Usage:
        raw = resp.raw
        if isinstance(raw, dict) and raw.get("usage"):
            try:
                return Usage.parse(raw)
            except Exception:
                logger.debug("unreadable usage in the response; estimating")
        return Usage(
            int(count_tokens(prompt_text, tier.name)),
            int(count_tokens(_text(resp), tier.name)),
            exact=False,
            source="estimate",
        )

    def _flow(
        self, decision: Decision | None, prompt: str, prompt_text: str
    ) -> Generator[Action, Any, Outcome[Any]]:
        view: ResultView[Any] = ResultView(
            text=_text,
            logprobs=_logprobs,
            cost=lambda i, r: (
                self._tiers[i].cost(self._usage(self._tiers[i], prompt_text, r)) or 0.0
            ),
        )
        return route_flow(
            self._tiers,
            decision if decision is not None else initial_decision(self._tiers),
            view,
            prompt=prompt,
            cascade=self.cascade,
            fallback=self.fallback,
        )

    def _group(self, prompt: str) -> str | None:
        return None if self.group_of is None else self.group_of(prompt)

    def _finish(self, outcome: Outcome[Any], prompt_text: str) -> dict[str, Any]:
        tier = self._tiers[outcome.decision.tier_index]
        ledger = self.ledger
        if ledger is None:
            from tokenlean_core import get_ledger

            ledger = self.router.ledger if self.router is not None else get_ledger()
        return finish_route(
            ledger, self._tiers, outcome, self._usage(tier, prompt_text, outcome.result)
        )

    def _tag(self, resp: Resp, meta: dict[str, Any]) -> Resp:
        resp.additional_kwargs[METADATA_KEY] = meta
        return resp

    def _runner(self, call: Callable[[Any], Any]) -> Callable[[Action], Any]:
        return lambda a: dispatch(
            a,
            lambda c: call(self.llms[c.tier_index]),
            lambda s: [call(self.llms[s.decision.tier_index]) for _ in range(s.n)],
            lambda v: self.cascade.verify(v.prompt, v.answer),
        )

    def _arunner(self, call: Callable[[Any], Awaitable[Any]]) -> Callable[[Action], Awaitable[Any]]:
        async def samples(s: Sample) -> list[Any]:
            return [await call(self.llms[s.decision.tier_index]) for _ in range(s.n)]

        return lambda a: dispatch(
            a,
            lambda c: call(self.llms[c.tier_index]),
            samples,
            lambda v: self.cascade.averify(v.prompt, v.answer),
        )

    def _route(self, prompt: str, prompt_text: str, call: Callable[[Any], Resp]) -> Resp:
        d = self.router.decide(prompt, self._group(prompt)) if self.router else None
        outcome = drive(self._flow(d, prompt, prompt_text), self._runner(call))
        return self._tag(cast("Resp", outcome.result), self._finish(outcome, prompt_text))

    async def _aroute(
        self, prompt: str, prompt_text: str, call: Callable[[Any], Awaitable[Resp]]
    ) -> Resp:
        d = await self.router.adecide(prompt, self._group(prompt)) if self.router else None
        outcome = await adrive(self._flow(d, prompt, prompt_text), self._arunner(call))
        return self._tag(cast("Resp", outcome.result), self._finish(outcome, prompt_text))

    def _route_stream(
        self,
        prompt: str,
        prompt_text: str,
        stream: Callable[[Any], Iterator[Resp]],
        call: Callable[[Any], Resp],
    ) -> Generator[Resp, None, None]:
        d = self.router.decide(prompt, self._group(prompt)) if self.router else None
        state: StreamState[Resp] = StreamState()
        live: dict[str, Any] = {}
        yield from drive_stream(
            self._flow(d, prompt, prompt_text),
            lambda c: self._tagged(stream(self.llms[c.tier_index]), c, live),
            _join,
            self._runner(call),
            state,
        )
        assert state.outcome is not None
        live.clear()
        live.update(self._finish(state.outcome, prompt_text))

    async def _aroute_stream(
        self,
        prompt: str,
        prompt_text: str,
        stream: Callable[[Any], Awaitable[AsyncIterator[Resp]]],
        call: Callable[[Any], Awaitable[Resp]],
    ) -> AsyncGenerator[Resp, None]:
        d = await self.router.adecide(prompt, self._group(prompt)) if self.router else None
        state: StreamState[Resp] = StreamState()
        live: dict[str, Any] = {}

        async def open_stream(c: Call) -> AsyncIterator[Resp]:
            async for r in await stream(self.llms[c.tier_index]):
                yield self._tag(r, live)
            live.clear()
            live.update(c.decision.as_metadata())

        async for r in adrive_stream(
            self._flow(d, prompt, prompt_text), open_stream, _join, self._arunner(call), state
        ):
            yield r
        assert state.outcome is not None
        live.clear()
        live.update(self._finish(state.outcome, prompt_text))

    def _tagged(self, it: Iterator[Resp], c: Call, live: dict[str, Any]) -> Iterator[Resp]:
        # every streamed response shares one metadata dict: the call's decision while streaming,
        # completed with the final route (confidence, escalation) when the stream ends
        live.clear()
        live.update(c.decision.as_metadata())
        for r in it:
            yield self._tag(r, live)

    @staticmethod
    def _chat_text(messages: Sequence[ChatMessage]) -> str:
        return "\n".join(m.content or "" for m in messages)

    # -- chat -------------------------------------------------------------------------------------
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        resp: ChatResponse = self._route(
            _last_user_text(messages),
            self._chat_text(messages),
            lambda llm: llm.chat(messages, **kwargs),
        )
        return resp

    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        return await self._aroute(
            _last_user_text(messages),
            self._chat_text(messages),
            lambda llm: llm.achat(messages, **kwargs),
        )

    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        return self._route_stream(
            _last_user_text(messages),
            self._chat_text(messages),
            lambda llm: llm.stream_chat(messages, **kwargs),
            lambda llm: llm.chat(messages, **kwargs),
        )

    async def astream_chat(
        self, messages: Sequence[ChatMessage], **kwargs: Any
    ) -> ChatResponseAsyncGen:
        return self._aroute_stream(
            _last_user_text(messages),
            self._chat_text(messages),
            lambda llm: llm.astream_chat(messages, **kwargs),
            lambda llm: llm.achat(messages, **kwargs),
        )

    # -- completion -------------------------------------------------------------------------------
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        resp: CompletionResponse = self._route(
            prompt, prompt, lambda llm: llm.complete(prompt, formatted=formatted, **kwargs)
        )
        return resp

    async def acomplete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponse:
        return await self._aroute(
            prompt, prompt, lambda llm: llm.acomplete(prompt, formatted=formatted, **kwargs)
        )

    def stream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseGen:
        return self._route_stream(
            prompt,
            prompt,
            lambda llm: llm.stream_complete(prompt, formatted=formatted, **kwargs),
            lambda llm: llm.complete(prompt, formatted=formatted, **kwargs),
        )

    async def astream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseAsyncGen:
        return self._aroute_stream(
            prompt,
            prompt,
            lambda llm: llm.astream_complete(prompt, formatted=formatted, **kwargs),
            lambda llm: llm.acomplete(prompt, formatted=formatted, **kwargs),
        )
