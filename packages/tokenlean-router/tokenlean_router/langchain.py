"""LangChain adapters: a router ``Runnable`` over any chat models, an agent middleware, and a
micro-batching runner for ``abatch``.

* :class:`RouterChain` - a ``Runnable`` whose routes are chat models, one per tier. The gate picks
  the tier; an optional cascade calls the chosen small model first and escalates on low confidence;
  errors fall back to the next tier (``with_fallbacks``-style). Sync, async, streaming (from the
  chosen model) and batch. The decision lands on the run's metadata (``tokenlean_route``), on the
  answer's ``response_metadata["tokenlean_route"]``, and the saving vs the largest tier in the
  ledger.
* :class:`RouterMiddleware` - a LangChain 1.x agent middleware that swaps each model request's
  model for the gate's tier (with error fallback to the next tiers).
* :func:`chat_model_batch_runner` - runs :class:`~tokenlean_router.MicroBatcher` batches through
  chat models' ``abatch``.
"""

from __future__ import annotations

import logging
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Generator,
    Iterator,
    Mapping,
    Sequence,
)
from typing import Any, cast

from tokenlean_core import Ledger, MissingDependencyError, Usage, count_tokens, get_ledger

try:
    from langchain_core.callbacks.manager import (
        AsyncCallbackManager,
        CallbackManager,
    )
    from langchain_core.language_models import BaseChatModel, LanguageModelInput
    from langchain_core.messages import (
        AIMessage,
        AIMessageChunk,
        BaseMessage,
        HumanMessage,
        convert_to_messages,
    )
    from langchain_core.prompt_values import PromptValue
    from langchain_core.runnables import RunnableConfig, RunnableSerializable
    from langchain_core.runnables.config import ensure_config, patch_config
    from pydantic import ConfigDict, Field, PrivateAttr
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise MissingDependencyError(
        exc.name or "langchain_core", "langchain", "tokenlean-router"
    ) from exc

from .batching import BatchKey
from .cascade import CascadePolicy
from .errors import RouterConfigError
from .flow import (
    Action,
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

__all__ = [
    "RouterChain",
    "RouterMiddleware",
    "chat_model_batch_runner",
    "last_human_text",
    "messages_of",
]

logger = logging.getLogger("tokenlean.router")

METADATA_KEY = "tokenlean_route"


def messages_of(value: LanguageModelInput) -> list[BaseMessage]:
    """The chat messages of a chat-model input (text, prompt value or message list)."""
    if isinstance(value, str):
        return [HumanMessage(value)]
    if isinstance(value, PromptValue):
        return value.to_messages()
    return convert_to_messages(cast("Sequence[Any]", value))


def last_human_text(messages: Sequence[BaseMessage]) -> str:
    """The text the gate scores by default: the last human message (else the last message)."""
    for m in reversed(messages):
        if m.type == "human":
            return m.text
    return messages[-1].text if messages else ""


def _usage_of(message: BaseMessage, messages: Sequence[BaseMessage], model: str) -> Usage:
    meta = getattr(message, "usage_metadata", None)
    if meta:
        return Usage.from_langchain(meta)
    # no usage from the provider (e.g. fake models): estimate with core's tokenizer
    return Usage(
        int(count_tokens(list(messages), model)),
        int(count_tokens(message.text, model)),
        exact=False,
        source="estimate",
    )


class RouterChain(RunnableSerializable[LanguageModelInput, BaseMessage]):
    """Route each request to one of ``routes`` (chat models, smallest first, one per tier).

    Args:
        routes: chat models, aligned with ``router.tiers`` (or with ``tiers`` when no gate).
        router: the gate (:class:`~tokenlean_router.Router`); None = always start at tier 0
            (a pure cascade).
        tiers: tier names/prices when there is no ``router``.
        cascade: escalate from a small tier to the next when the answer's confidence is low.
        fallback: on an exception, try the next larger tiers then the smaller ones.
        exceptions_to_handle: which exceptions trigger the fallback.
        text_of: messages -> the text the gate scores (default: the last human message).
        group_of: messages -> the request's group label for a gate trained with groups.
        ledger: where the saving vs the largest tier is recorded (default: the router's
            ledger, else the process-wide one).

    Streaming with a cascade is "decide, then stream": the small model's answer is buffered until
    its confidence is known; accepted, it is replayed; rejected, the next tier streams live.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    routes: list[BaseChatModel]
    router: Router | None = None
    tiers: list[Tier] = Field(default_factory=list)
    cascade: CascadePolicy | None = None
    fallback: bool = True
    exceptions_to_handle: tuple[type[BaseException], ...] = (Exception,)
    text_of: Callable[[Sequence[BaseMessage]], str] = last_human_text
    group_of: Callable[[Sequence[BaseMessage]], str | None] | None = None
    ledger: Ledger | None = None
    record_savings: bool = True
    _tiers: tuple[Tier, ...] = PrivateAttr(default=())

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # validated here, not in a pydantic validator, so the error stays a RouterConfigError
        self._tiers = _check_tiers(self.router, self.tiers, len(self.routes), self.cascade)

    @property
    def InputType(self) -> Any:
        return LanguageModelInput

    @property
    def OutputType(self) -> Any:
        return BaseMessage

    # -- I/O-free parts shared by the sync and async paths ---------------------------------------
    def _ledger(self) -> Ledger:
        if self.ledger is not None:
            return self.ledger
        return self.router.ledger if self.router is not None else get_ledger()

    def _group(self, messages: Sequence[BaseMessage]) -> str | None:
        return None if self.group_of is None else self.group_of(messages)

    def _start(
        self, input: LanguageModelInput, config: RunnableConfig | None, asynchronous: bool
    ) -> tuple[RunnableConfig, list[BaseMessage], dict[str, Any], Any, dict[str, Any]]:
        """Messages, the route dict (shared with the run's metadata), the callback manager and
        the ``on_chain_start`` arguments."""
        config = ensure_config(config)
        messages = messages_of(input)
        route: dict[str, Any] = {}
        cls = AsyncCallbackManager if asynchronous else CallbackManager
        cm = cls.configure(
            config.get("callbacks"),
            None,
            False,
            config.get("tags"),
            None,
            config.get("metadata"),
            None,
        )
        cm.add_metadata({METADATA_KEY: route}, inherit=False)
        start_kwargs = {
            "run_id": config.pop("run_id", None),
            "name": config.get("run_name") or self.get_name(),
        }
        return config, messages, route, cm, start_kwargs

    def _flow(
        self, decision: Decision | None, messages: list[BaseMessage], text: str
    ) -> Generator[Action, Any, Outcome[BaseMessage]]:
        view: ResultView[BaseMessage] = ResultView(
            text=lambda m: m.text,
            logprobs=lambda m: m.response_metadata.get("logprobs"),
            cost=lambda i, m: (
                self._tiers[i].cost(_usage_of(m, messages, self._tiers[i].name)) or 0.0
            ),
        )
        return route_flow(
            self._tiers,
            decision if decision is not None else initial_decision(self._tiers),
            view,
            prompt=text,
            cascade=self.cascade,
            fallback=self.fallback,
            exceptions=self.exceptions_to_handle,
        )

    def _child(
        self, config: RunnableConfig, rm: Any, route: dict[str, Any], d: Decision
    ) -> RunnableConfig:
        route.clear()
        route.update(d.as_metadata())
        md = dict(config.get("metadata") or {})
        md[METADATA_KEY] = route
        child = patch_config(config, callbacks=rm.get_child())
        child["metadata"] = md
        return child

    def _finish(
        self,
        outcome: Outcome[BaseMessage],
        messages: Sequence[BaseMessage],
        route: dict[str, Any],
        run_id: Any,
    ) -> BaseMessage:
        msg = outcome.result
        tier = self._tiers[outcome.decision.tier_index]
        meta = finish_route(
            self._ledger(),
            self._tiers,
            outcome,
            _usage_of(msg, messages, tier.name),
            run_id=str(run_id) if run_id else None,
            record_savings=self.record_savings,
        )
        route.clear()
        route.update(meta)
        if isinstance(msg, AIMessage):
            msg.response_metadata[METADATA_KEY] = dict(meta)
        logger.debug("routed to %s (score=%s)", tier.name, outcome.decision.score)
        return msg

    # -- the I/O: one small dispatcher per flavour ------------------------------------------------
    def _run(self, a: Action, msgs: list[BaseMessage], cfg: Any, rm: Any, route: Any) -> Any:
        return dispatch(
            a,
            lambda c: self.routes[c.tier_index].invoke(
                msgs, self._child(cfg, rm, route, c.decision)
            ),
            lambda s: self.routes[s.decision.tier_index].batch(
                [msgs] * s.n, self._child(cfg, rm, route, s.decision)
            ),
            lambda v: self._policy().verify(v.prompt, v.answer),
        )

    async def _arun(self, a: Action, msgs: list[BaseMessage], cfg: Any, rm: Any, route: Any) -> Any:
        return await dispatch(
            a,
            lambda c: self.routes[c.tier_index].ainvoke(
                msgs, self._child(cfg, rm, route, c.decision)
            ),
            lambda s: self.routes[s.decision.tier_index].abatch(
                [msgs] * s.n, self._child(cfg, rm, route, s.decision)
            ),
            lambda v: self._policy().averify(v.prompt, v.answer),
        )

    def _policy(self) -> CascadePolicy:
        assert self.cascade is not None  # the flow only verifies under a cascade
        return self.cascade

    # -- public API -------------------------------------------------------------------------------
    def invoke(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> BaseMessage:
        config, messages, route, cm, start = self._start(input, config, False)
        rm = cm.on_chain_start(None, {"input": input}, **start)
        try:
            text = self.text_of(messages)
            d = self.router.decide(text, self._group(messages)) if self.router else None
            outcome = drive(
                self._flow(d, messages, text),
                lambda a: self._run(a, messages, config, rm, route),
            )
            out = self._finish(outcome, messages, route, rm.run_id)
        except BaseException as exc:
            rm.on_chain_error(exc)
            raise
        rm.on_chain_end(out)
        return out

    async def ainvoke(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> BaseMessage:
        config, messages, route, cm, start = self._start(input, config, True)
        rm = await cm.on_chain_start(None, {"input": input}, **start)
        try:
            text = self.text_of(messages)
            d = await self.router.adecide(text, self._group(messages)) if self.router else None
            outcome = await adrive(
                self._flow(d, messages, text),
                lambda a: self._arun(a, messages, config, rm, route),
            )
            out = self._finish(outcome, messages, route, rm.run_id)
        except BaseException as exc:
            await rm.on_chain_error(exc)
            raise
        await rm.on_chain_end(out)
        return out

    def stream(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[BaseMessage]:
        config, messages, route, cm, start = self._start(input, config, False)
        rm = cm.on_chain_start(None, {"input": input}, **start)
        state: StreamState[BaseMessage] = StreamState()
        try:
            text = self.text_of(messages)
            d = self.router.decide(text, self._group(messages)) if self.router else None
            yield from drive_stream(
                self._flow(d, messages, text),
                lambda c: self.routes[c.tier_index].stream(
                    messages, self._child(config, rm, route, c.decision)
                ),
                _join,
                lambda a: self._run(a, messages, config, rm, route),
                state,
            )
            assert state.outcome is not None
            out = self._finish(state.outcome, messages, route, rm.run_id)
        except BaseException as exc:
            rm.on_chain_error(exc)
            raise
        rm.on_chain_end(out)

    async def astream(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[BaseMessage]:
        config, messages, route, cm, start = self._start(input, config, True)
        rm = await cm.on_chain_start(None, {"input": input}, **start)
        state: StreamState[BaseMessage] = StreamState()
        try:
            text = self.text_of(messages)
            d = await self.router.adecide(text, self._group(messages)) if self.router else None
            async for chunk in adrive_stream(
                self._flow(d, messages, text),
                lambda c: self.routes[c.tier_index].astream(
                    messages, self._child(config, rm, route, c.decision)
                ),
                _join,
                lambda a: self._arun(a, messages, config, rm, route),
                state,
            ):
                yield chunk
            assert state.outcome is not None
            out = self._finish(state.outcome, messages, route, rm.run_id)
        except BaseException as exc:
            await rm.on_chain_error(exc)
            raise
        await rm.on_chain_end(out)


def _check_tiers(
    router: Router | None, tiers: Sequence[Tier], n_models: int, cascade: CascadePolicy | None
) -> tuple[Tier, ...]:
    out = router.tiers if router is not None else tuple(tiers)
    if not out:
        out = tuple(Tier(f"tier{i}") for i in range(n_models))
    if len(out) != n_models:
        raise RouterConfigError(
            f"{n_models} routes for {len(out)} tiers: give one chat model per tier"
        )
    if len(out) < 2:
        raise RouterConfigError("a router chain needs at least two routes")
    if router is None and cascade is None:
        raise RouterConfigError("give a router (gate), a cascade, or both")
    return tuple(out)


def _join(chunks: Sequence[BaseMessage]) -> BaseMessage:
    if not chunks:
        return AIMessage("")
    first = chunks[0]
    if isinstance(first, AIMessageChunk):
        total: AIMessageChunk = first
        for c in chunks[1:]:
            total = total + cast("AIMessageChunk", c)
        return total
    return first


# -- agent middleware ------------------------------------------------------------------------------
try:
    from langchain.agents.middleware import AgentMiddleware
    from langchain.agents.middleware.types import ModelRequest, ModelResponse

    _HAVE_AGENTS = True
except ImportError:  # pragma: no cover - langchain (not only langchain-core) is optional
    _HAVE_AGENTS = False
    AgentMiddleware = object  # type: ignore[assignment,misc]


class RouterMiddleware(AgentMiddleware):
    """LangChain 1.x agent middleware: each model call goes to the gate's tier, and with a
    ``cascade`` a small tier's answer whose confidence is low is escalated to the next tier.

    ``models`` are chat models aligned with ``router.tiers`` (or ``tiers`` when ``router`` is
    None: a pure cascade starting at the smallest). On an exception the call falls back to the
    next larger tiers, then smaller ones. The decision (tier, score, threshold, confidence,
    escalation) is written to the answer's ``response_metadata["tokenlean_route"]``, the saving
    (net of discarded cheap answers) to the ledger, plus an ``escalated`` ledger event.

    Streaming: the middleware wraps the agent's model call, so in an agent streamed with
    ``stream_mode="messages"`` the tokens of a cheap answer that the cascade then rejects are
    still emitted (tagged with that call's model); the agent's state keeps only the accepted
    answer. Use :class:`RouterChain` for decide-then-stream.

    Example::

        agent = create_agent(model=large, tools=[...],
                             middleware=[RouterMiddleware(router, [small, large])])
    """

    def __init__(
        self,
        router: Router | None,
        models: Sequence[BaseChatModel],
        *,
        cascade: CascadePolicy | None = None,
        tiers: Sequence[Tier | str] | None = None,
        fallback: bool = True,
        text_of: Callable[[Sequence[BaseMessage]], str] = last_human_text,
        group_of: Callable[[Sequence[BaseMessage]], str | None] | None = None,
        ledger: Ledger | None = None,
    ) -> None:
        if not _HAVE_AGENTS:
            raise MissingDependencyError("langchain", "langchain", "tokenlean-router")
        super().__init__()
        named = [t if isinstance(t, Tier) else Tier(t) for t in tiers or ()]
        self.tiers = _check_tiers(router, named, len(models), cascade)
        self.router = router
        self.models = list(models)
        self.cascade = cascade
        self.fallback = fallback
        self.text_of = text_of
        self.group_of = group_of
        self.ledger = ledger

    def _flow(
        self, decision: Decision | None, messages: Sequence[BaseMessage], text: str
    ) -> Generator[Action, Any, Outcome[Any]]:
        def cost(i: int, response: Any) -> float:
            ai = _ai_of(response)
            if ai is None:
                return 0.0
            return self.tiers[i].cost(_usage_of(ai, messages, self.tiers[i].name)) or 0.0

        view: ResultView[Any] = ResultView(
            text=lambda r: ai.text if (ai := _ai_of(r)) is not None else "",
            logprobs=lambda r: (
                ai.response_metadata.get("logprobs") if (ai := _ai_of(r)) is not None else None
            ),
            cost=cost,
        )
        return route_flow(
            self.tiers,
            decision if decision is not None else initial_decision(self.tiers),
            view,
            prompt=text,
            cascade=self.cascade,
            fallback=self.fallback,
            reraise=_is_bubble_up,
        )

    def _record(self, outcome: Outcome[Any], messages: Sequence[BaseMessage]) -> None:
        ai = _ai_of(outcome.result)
        if ai is None:
            return
        tier = self.tiers[outcome.decision.tier_index]
        ledger = self.ledger if self.ledger is not None else self._router_ledger()
        meta = finish_route(ledger, self.tiers, outcome, _usage_of(ai, messages, tier.name))
        ai.response_metadata[METADATA_KEY] = meta

    def _policy(self) -> CascadePolicy:
        assert self.cascade is not None  # the flow only verifies under a cascade
        return self.cascade

    def _router_ledger(self) -> Ledger:
        return self.router.ledger if self.router is not None else get_ledger()

    def _text_group(self, request: ModelRequest) -> tuple[str, str | None]:
        msgs = request.messages
        return self.text_of(msgs), None if self.group_of is None else self.group_of(msgs)

    def wrap_model_call(
        self, request: ModelRequest, handler: Callable[[ModelRequest], ModelResponse]
    ) -> Any:
        text, group = self._text_group(request)
        decision = self.router.decide(text, group) if self.router is not None else None

        def run(action: Action) -> Any:
            return dispatch(
                action,
                lambda c: handler(request.override(model=self.models[c.tier_index])),
                lambda s: [
                    handler(request.override(model=self.models[s.decision.tier_index]))
                    for _ in range(s.n)
                ],
                lambda v: self._policy().verify(v.prompt, v.answer),
            )

        outcome = drive(self._flow(decision, request.messages, text), run)
        self._record(outcome, request.messages)
        return outcome.result

    async def awrap_model_call(
        self, request: ModelRequest, handler: Callable[[ModelRequest], Awaitable[ModelResponse]]
    ) -> Any:
        text, group = self._text_group(request)
        decision = await self.router.adecide(text, group) if self.router is not None else None

        async def samples(s: Sample) -> list[Any]:
            model = self.models[s.decision.tier_index]
            return [await handler(request.override(model=model)) for _ in range(s.n)]

        async def run(action: Action) -> Any:
            return await dispatch(
                action,
                lambda c: handler(request.override(model=self.models[c.tier_index])),
                samples,
                lambda v: self._policy().averify(v.prompt, v.answer),
            )

        outcome = await adrive(self._flow(decision, request.messages, text), run)
        self._record(outcome, request.messages)
        return outcome.result


def _ai_of(response: Any) -> AIMessage | None:
    """The last AI message of a model response (``ModelResponse.result`` or a message)."""
    msgs = getattr(response, "result", None) or (
        [response] if isinstance(response, BaseMessage) else []
    )
    return next((m for m in reversed(msgs) if isinstance(m, AIMessage)), None)


def _is_bubble_up(exc: BaseException) -> bool:
    try:
        from langgraph.errors import GraphBubbleUp
    except ImportError:  # pragma: no cover
        return False
    return isinstance(exc, GraphBubbleUp)


# -- micro-batching runner ------------------------------------------------------------------------
def chat_model_batch_runner(
    models: BaseChatModel | Mapping[str, BaseChatModel],
) -> Callable[[BatchKey, list[LanguageModelInput]], Awaitable[list[BaseMessage]]]:
    """A ``run_batch`` for :class:`~tokenlean_router.MicroBatcher` calling ``abatch`` on the chat
    model named by the batch key (decoding settings are bound with ``.bind(**settings)``)."""

    def pick(name: str) -> BaseChatModel:
        if isinstance(models, BaseChatModel):
            return models
        try:
            return models[name]
        except KeyError:
            raise RouterConfigError(f"no chat model named {name!r} in the batch runner") from None

    async def run(key: BatchKey, items: list[LanguageModelInput]) -> list[BaseMessage]:
        model = pick(key.model)
        settings = key.settings_dict
        runnable: Any = model.bind(**settings) if settings else model
        return list(await runnable.abatch(items))

    return run
