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

import asyncio
import logging
import time
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
from .cascade import CascadePolicy, logprob_confidence, self_consistency
from .errors import AllTiersFailedError, RouterConfigError
from .router import Decision, Router, Tier, record_route

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


def _fallback_order(chosen: int, n: int, floor: int = 0) -> list[int]:
    """Chosen tier, then larger tiers, then smaller ones down to ``floor`` (nearest first).

    A cascade escalation passes its new tier as the floor, so a failing larger model never sends
    the request back to the small one it was escalated from."""
    return [chosen, *range(chosen + 1, n), *range(chosen - 1, floor - 1, -1)]


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
        ledger: where the saving vs the largest tier is recorded (default: the router's
            ledger, else the process-wide one).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    routes: list[BaseChatModel]
    router: Router | None = None
    tiers: list[Tier] = Field(default_factory=list)
    cascade: CascadePolicy | None = None
    fallback: bool = True
    exceptions_to_handle: tuple[type[BaseException], ...] = (Exception,)
    text_of: Callable[[Sequence[BaseMessage]], str] = last_human_text
    ledger: Ledger | None = None
    record_savings: bool = True
    _tiers: tuple[Tier, ...] = PrivateAttr(default=())

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # validated here, not in a pydantic validator, so the error stays a RouterConfigError
        tiers = self.router.tiers if self.router is not None else tuple(self.tiers)
        if not tiers:
            tiers = tuple(Tier(f"tier{i}") for i in range(len(self.routes)))
        if len(tiers) != len(self.routes):
            raise RouterConfigError(
                f"{len(self.routes)} routes for {len(tiers)} tiers: give one chat model per tier"
            )
        if len(tiers) < 2:
            raise RouterConfigError("a router chain needs at least two routes")
        if self.router is None and self.cascade is None:
            raise RouterConfigError("give a router (gate), a cascade, or both")
        self._tiers = tuple(tiers)

    @property
    def InputType(self) -> Any:
        return LanguageModelInput

    @property
    def OutputType(self) -> Any:
        return BaseMessage

    # -- decisions --------------------------------------------------------------------------------
    def _initial(self, text: str) -> Decision:
        if self.router is not None:
            return self.router.decide(text)
        return Decision(0, self._tiers[0].name, None, (), strategy="cascade")

    async def _ainitial(self, text: str) -> Decision:
        if self.router is not None:
            return await self.router.adecide(text)
        return Decision(0, self._tiers[0].name, None, (), strategy="cascade")

    def _cascading(self, decision: Decision) -> bool:
        return self.cascade is not None and decision.tier_index < len(self._tiers) - 1

    def _child_config(self, config: RunnableConfig, run_manager: Any, route: dict[str, Any]) -> Any:
        md = dict(config.get("metadata") or {})
        md[METADATA_KEY] = route
        child = patch_config(config, callbacks=run_manager.get_child())
        child["metadata"] = md
        return child

    def _confidence(self, msg: BaseMessage, prompt: str, samples: Sequence[str]) -> float | None:
        policy = self.cascade
        assert policy is not None
        if policy.method == "logprobs":
            return logprob_confidence(
                msg.response_metadata.get("logprobs"), reduce=policy.logprob_reduce
            )
        if policy.method == "verifier":
            return policy.verify(prompt, msg.text)
        return self_consistency([msg.text, *samples])[1]

    async def _aconfidence(
        self, msg: BaseMessage, prompt: str, samples: Sequence[str]
    ) -> float | None:
        policy = self.cascade
        assert policy is not None
        if policy.method == "verifier":
            return await policy.averify(prompt, msg.text)
        return self._confidence(msg, prompt, samples)

    def _finish(
        self,
        decision: Decision,
        msg: BaseMessage,
        messages: Sequence[BaseMessage],
        route: dict[str, Any],
        extra_cost: float,
        started: float,
        run_id: Any,
    ) -> BaseMessage:
        route.clear()
        route.update(decision.as_metadata())
        if isinstance(msg, AIMessage):
            msg.response_metadata[METADATA_KEY] = dict(route)
        if self.record_savings:
            tier = self._tiers[decision.tier_index]
            usage = _usage_of(msg, messages, tier.name)
            record_route(
                self._ledger(),
                self._tiers,
                decision,
                usage,
                latency_s=None,
                run_id=str(run_id) if run_id else None,
                extra_cost_usd=extra_cost,
            )
        logger.debug(
            "routed to %s (score=%s) in %.1f ms",
            decision.tier,
            decision.score,
            (time.perf_counter() - started) * 1e3,
        )
        return msg

    def _ledger(self) -> Ledger:
        if self.ledger is not None:
            return self.ledger
        return self.router.ledger if self.router is not None else get_ledger()

    def _cost(self, tier_index: int, msg: BaseMessage, messages: Sequence[BaseMessage]) -> float:
        tier = self._tiers[tier_index]
        return tier.cost(_usage_of(msg, messages, tier.name)) or 0.0

    # -- sync --------------------------------------------------------------------------------------
    def _call_tier(
        self,
        decision: Decision,
        messages: list[BaseMessage],
        config: RunnableConfig,
        rm: Any,
        route: dict[str, Any],
        floor: int = 0,
    ) -> tuple[Decision, BaseMessage]:
        errors: list[BaseException] = []
        order = (
            _fallback_order(decision.tier_index, len(self._tiers), floor)
            if self.fallback
            else [decision.tier_index]
        )
        for i in order:
            d = (
                decision
                if i == decision.tier_index
                else decision.with_(
                    tier_index=i,
                    tier=self._tiers[i].name,
                    detail={**decision.detail, "fallback_from": decision.tier},
                )
            )
            route.clear()
            route.update(d.as_metadata())
            try:
                return d, self.routes[i].invoke(messages, self._child_config(config, rm, route))
            except self.exceptions_to_handle as exc:
                logger.warning("tier %s failed (%s); falling back", d.tier, type(exc).__name__)
                errors.append(exc)
        raise AllTiersFailedError(errors)

    def invoke(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> BaseMessage:
        config = ensure_config(config)
        messages = messages_of(input)
        route: dict[str, Any] = {}
        cm = CallbackManager.configure(
            config.get("callbacks"),
            None,
            False,
            config.get("tags"),
            None,
            config.get("metadata"),
            None,
        )
        cm.add_metadata({METADATA_KEY: route}, inherit=False)
        rm = cm.on_chain_start(
            None,
            {"input": input},
            run_id=config.pop("run_id", None),
            name=config.get("run_name") or self.get_name(),
        )
        started = time.perf_counter()
        try:
            text = self.text_of(messages)
            decision = self._initial(text)
            extra = 0.0
            decision, msg = self._call_tier(decision, messages, config, rm, route)
            while self._cascading(decision):
                assert self.cascade is not None
                samples: list[str] = []
                if self.cascade.method == "self_consistency":
                    outs = self.routes[decision.tier_index].batch(
                        [messages] * (self.cascade.n_samples - 1),
                        self._child_config(config, rm, route),
                    )
                    samples = [o.text for o in outs]
                    extra += sum(self._cost(decision.tier_index, o, messages) for o in outs)
                conf = self._confidence(msg, text, samples)
                decision = decision.with_(confidence=conf)
                if not self.cascade.should_escalate(conf):
                    break
                extra += self._cost(decision.tier_index, msg, messages)
                nxt = decision.tier_index + 1
                decision = decision.with_(
                    tier_index=nxt,
                    tier=self._tiers[nxt].name,
                    strategy="cascade",
                    escalated_from=decision.tier,
                    confidence=conf,
                )
                decision, msg = self._call_tier(decision, messages, config, rm, route, nxt)
            out = self._finish(decision, msg, messages, route, extra, started, rm.run_id)
        except BaseException as exc:
            rm.on_chain_error(exc)
            raise
        rm.on_chain_end(out)
        return out

    def stream(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[BaseMessage]:
        config = ensure_config(config)
        messages = messages_of(input)
        route: dict[str, Any] = {}
        cm = CallbackManager.configure(
            config.get("callbacks"),
            None,
            False,
            config.get("tags"),
            None,
            config.get("metadata"),
            None,
        )
        cm.add_metadata({METADATA_KEY: route}, inherit=False)
        rm = cm.on_chain_start(
            None,
            {"input": input},
            run_id=config.pop("run_id", None),
            name=config.get("run_name") or self.get_name(),
        )
        started = time.perf_counter()
        final: BaseMessage | None = None
        try:
            text = self.text_of(messages)
            decision = self._initial(text)
            extra = 0.0
            floor = 0
            while True:
                cascading = self._cascading(decision)
                decision, chunks, _ = yield from self._stream_tier(
                    decision, messages, config, rm, route, buffer=cascading, floor=floor
                )
                msg = _join(chunks)
                if not cascading:
                    final = msg
                    break
                assert self.cascade is not None
                samples: list[str] = []
                if self.cascade.method == "self_consistency":
                    outs = self.routes[decision.tier_index].batch(
                        [messages] * (self.cascade.n_samples - 1),
                        self._child_config(config, rm, route),
                    )
                    samples = [o.text for o in outs]
                    extra += sum(self._cost(decision.tier_index, o, messages) for o in outs)
                conf = self._confidence(msg, text, samples)
                decision = decision.with_(confidence=conf)
                if not self.cascade.should_escalate(conf):
                    yield from chunks  # accepted: release the buffered small-model answer
                    final = msg
                    break
                extra += self._cost(decision.tier_index, msg, messages)
                nxt = floor = decision.tier_index + 1
                decision = decision.with_(
                    tier_index=nxt,
                    tier=self._tiers[nxt].name,
                    strategy="cascade",
                    escalated_from=decision.tier,
                    confidence=conf,
                )
            self._finish(decision, final, messages, route, extra, started, rm.run_id)
        except BaseException as exc:
            rm.on_chain_error(exc)
            raise
        rm.on_chain_end(final)

    def _stream_tier(
        self,
        decision: Decision,
        messages: list[BaseMessage],
        config: RunnableConfig,
        rm: Any,
        route: dict[str, Any],
        *,
        buffer: bool,
        floor: int = 0,
    ) -> Generator[BaseMessage, None, tuple[Decision, list[BaseMessage], bool]]:
        errors: list[BaseException] = []
        order = (
            _fallback_order(decision.tier_index, len(self._tiers), floor)
            if self.fallback
            else [decision.tier_index]
        )
        for i in order:
            d = (
                decision
                if i == decision.tier_index
                else decision.with_(
                    tier_index=i,
                    tier=self._tiers[i].name,
                    detail={**decision.detail, "fallback_from": decision.tier},
                )
            )
            route.clear()
            route.update(d.as_metadata())
            chunks: list[BaseMessage] = []
            try:
                for chunk in self.routes[i].stream(messages, self._child_config(config, rm, route)):
                    chunks.append(chunk)
                    if not buffer:
                        yield chunk
                return d, chunks, not buffer
            except self.exceptions_to_handle as exc:
                if chunks and not buffer:
                    raise  # part of the answer already reached the caller: cannot switch models
                logger.warning("tier %s failed (%s); falling back", d.tier, type(exc).__name__)
                errors.append(exc)
        raise AllTiersFailedError(errors)

    # -- async -------------------------------------------------------------------------------------
    async def _acall_tier(
        self,
        decision: Decision,
        messages: list[BaseMessage],
        config: RunnableConfig,
        rm: Any,
        route: dict[str, Any],
        floor: int = 0,
    ) -> tuple[Decision, BaseMessage]:
        errors: list[BaseException] = []
        order = (
            _fallback_order(decision.tier_index, len(self._tiers), floor)
            if self.fallback
            else [decision.tier_index]
        )
        for i in order:
            d = (
                decision
                if i == decision.tier_index
                else decision.with_(
                    tier_index=i,
                    tier=self._tiers[i].name,
                    detail={**decision.detail, "fallback_from": decision.tier},
                )
            )
            route.clear()
            route.update(d.as_metadata())
            try:
                out = await self.routes[i].ainvoke(messages, self._child_config(config, rm, route))
                return d, out
            except self.exceptions_to_handle as exc:
                logger.warning("tier %s failed (%s); falling back", d.tier, type(exc).__name__)
                errors.append(exc)
        raise AllTiersFailedError(errors)

    async def ainvoke(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> BaseMessage:
        config = ensure_config(config)
        messages = messages_of(input)
        route: dict[str, Any] = {}
        cm = AsyncCallbackManager.configure(
            config.get("callbacks"),
            None,
            False,
            config.get("tags"),
            None,
            config.get("metadata"),
            None,
        )
        cm.add_metadata({METADATA_KEY: route}, inherit=False)
        rm = await cm.on_chain_start(
            None,
            {"input": input},
            run_id=config.pop("run_id", None),
            name=config.get("run_name") or self.get_name(),
        )
        started = time.perf_counter()
        try:
            text = self.text_of(messages)
            decision = await self._ainitial(text)
            extra = 0.0
            decision, msg = await self._acall_tier(decision, messages, config, rm, route)
            while self._cascading(decision):
                assert self.cascade is not None
                samples: list[str] = []
                if self.cascade.method == "self_consistency":
                    outs = await self.routes[decision.tier_index].abatch(
                        [messages] * (self.cascade.n_samples - 1),
                        self._child_config(config, rm, route),
                    )
                    samples = [o.text for o in outs]
                    extra += sum(self._cost(decision.tier_index, o, messages) for o in outs)
                conf = await self._aconfidence(msg, text, samples)
                decision = decision.with_(confidence=conf)
                if not self.cascade.should_escalate(conf):
                    break
                extra += self._cost(decision.tier_index, msg, messages)
                nxt = decision.tier_index + 1
                decision = decision.with_(
                    tier_index=nxt,
                    tier=self._tiers[nxt].name,
                    strategy="cascade",
                    escalated_from=decision.tier,
                    confidence=conf,
                )
                decision, msg = await self._acall_tier(decision, messages, config, rm, route, nxt)
            out = self._finish(decision, msg, messages, route, extra, started, rm.run_id)
        except BaseException as exc:
            await rm.on_chain_error(exc)
            raise
        await rm.on_chain_end(out)
        return out

    async def astream(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[BaseMessage]:
        config = ensure_config(config)
        messages = messages_of(input)
        route: dict[str, Any] = {}
        cm = AsyncCallbackManager.configure(
            config.get("callbacks"),
            None,
            False,
            config.get("tags"),
            None,
            config.get("metadata"),
            None,
        )
        cm.add_metadata({METADATA_KEY: route}, inherit=False)
        rm = await cm.on_chain_start(
            None,
            {"input": input},
            run_id=config.pop("run_id", None),
            name=config.get("run_name") or self.get_name(),
        )
        started = time.perf_counter()
        final: BaseMessage | None = None
        try:
            text = self.text_of(messages)
            decision = await self._ainitial(text)
            extra = 0.0
            floor = 0
            while True:
                cascading = self._cascading(decision)
                errors: list[BaseException] = []
                order = (
                    _fallback_order(decision.tier_index, len(self._tiers), floor)
                    if (self.fallback)
                    else [decision.tier_index]
                )
                chunks: list[BaseMessage] = []
                for i in order:
                    d = (
                        decision
                        if i == decision.tier_index
                        else decision.with_(
                            tier_index=i,
                            tier=self._tiers[i].name,
                            detail={**decision.detail, "fallback_from": decision.tier},
                        )
                    )
                    route.clear()
                    route.update(d.as_metadata())
                    chunks = []
                    try:
                        async for chunk in self.routes[i].astream(
                            messages, self._child_config(config, rm, route)
                        ):
                            chunks.append(chunk)
                            if not cascading:
                                yield chunk
                        decision = d
                        break
                    except self.exceptions_to_handle as exc:
                        if chunks and not cascading:
                            raise
                        logger.warning(
                            "tier %s failed (%s); falling back", d.tier, type(exc).__name__
                        )
                        errors.append(exc)
                else:
                    raise AllTiersFailedError(errors)
                msg = _join(chunks)
                if not cascading:
                    final = msg
                    break
                assert self.cascade is not None
                samples: list[str] = []
                if self.cascade.method == "self_consistency":
                    outs = await self.routes[decision.tier_index].abatch(
                        [messages] * (self.cascade.n_samples - 1),
                        self._child_config(config, rm, route),
                    )
                    samples = [o.text for o in outs]
                    extra += sum(self._cost(decision.tier_index, o, messages) for o in outs)
                conf = await self._aconfidence(msg, text, samples)
                decision = decision.with_(confidence=conf)
                if not self.cascade.should_escalate(conf):
                    for c in chunks:
                        yield c
                    final = msg
                    break
                extra += self._cost(decision.tier_index, msg, messages)
                nxt = floor = decision.tier_index + 1
                decision = decision.with_(
                    tier_index=nxt,
                    tier=self._tiers[nxt].name,
                    strategy="cascade",
                    escalated_from=decision.tier,
                    confidence=conf,
                )
            assert final is not None
            self._finish(decision, final, messages, route, extra, started, rm.run_id)
        except BaseException as exc:
            await rm.on_chain_error(exc)
            raise
        await rm.on_chain_end(final)


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
    """LangChain 1.x agent middleware: each model call goes to the gate's tier.

    ``models`` are chat models aligned with ``router.tiers`` (smallest first). On an exception the
    call falls back to the next larger tiers, then smaller ones. The decision is written to the
    answer's ``response_metadata["tokenlean_route"]`` and the saving to the ledger.

    Example::

        agent = create_agent(model=large, tools=[...],
                             middleware=[RouterMiddleware(router, [small, large])])
    """

    def __init__(
        self,
        router: Router,
        models: Sequence[BaseChatModel],
        *,
        fallback: bool = True,
        text_of: Callable[[Sequence[BaseMessage]], str] = last_human_text,
        ledger: Ledger | None = None,
    ) -> None:
        if not _HAVE_AGENTS:
            raise MissingDependencyError("langchain", "langchain", "tokenlean-router")
        super().__init__()
        if len(models) != len(router.tiers):
            raise RouterConfigError(
                f"{len(models)} models for {len(router.tiers)} tiers: one chat model per tier"
            )
        self.router = router
        self.models = list(models)
        self.fallback = fallback
        self.text_of = text_of
        self.ledger = ledger

    def _record(self, d: Decision, response: Any, messages: Sequence[BaseMessage]) -> None:
        msgs = getattr(response, "result", None) or (
            [response] if isinstance(response, BaseMessage) else []
        )
        ai = next((m for m in reversed(msgs) if isinstance(m, AIMessage)), None)
        if ai is None:
            return
        ai.response_metadata[METADATA_KEY] = d.as_metadata()
        record_route(
            self.ledger if self.ledger is not None else self.router.ledger,
            self.router.tiers,
            d,
            _usage_of(ai, messages, d.tier),
        )

    def _attempts(self, decision: Decision) -> list[Decision]:
        n = len(self.models)
        order = _fallback_order(decision.tier_index, n) if self.fallback else [decision.tier_index]
        return [
            decision
            if i == decision.tier_index
            else decision.with_(
                tier_index=i,
                tier=self.router.tiers[i].name,
                detail={"fallback_from": decision.tier},
            )
            for i in order
        ]

    def wrap_model_call(
        self, request: ModelRequest, handler: Callable[[ModelRequest], ModelResponse]
    ) -> Any:
        decision = self.router.decide(self.text_of(request.messages))
        errors: list[BaseException] = []
        for d in self._attempts(decision):
            try:
                response = handler(request.override(model=self.models[d.tier_index]))
            except Exception as exc:
                if type(exc).__name__ == "GraphBubbleUp" or _is_bubble_up(exc):
                    raise
                errors.append(exc)
                continue
            self._record(d, response, request.messages)
            return response
        raise AllTiersFailedError(errors)

    async def awrap_model_call(
        self, request: ModelRequest, handler: Callable[[ModelRequest], Awaitable[ModelResponse]]
    ) -> Any:
        decision = await self.router.adecide(self.text_of(request.messages))
        errors: list[BaseException] = []
        for d in self._attempts(decision):
            try:
                response = await handler(request.override(model=self.models[d.tier_index]))
            except Exception as exc:
                if _is_bubble_up(exc):
                    raise
                errors.append(exc)
                continue
            self._record(d, response, request.messages)
            return response
        raise AllTiersFailedError(errors)


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


_ = asyncio  # asyncio is used by the async paths' type context
