"""The routing flow shared by every adapter, written once without I/O ("sans-IO").

A routed request is a small state machine: call the gate's tier (falling back to other tiers on
errors), and while a cascade applies, score the answer's confidence (token log-probabilities, a
verifier, or self-consistency over extra samples) and escalate to the next tier when it is low.
:func:`route_flow` is that state machine as a generator: it *yields* what it needs done
(:class:`Call` a tier, draw :class:`Sample` answers, :class:`Verify` an answer) and receives the
result - or, for a failed call, the exception is thrown back into it. :func:`drive` and
:func:`adrive` run it with synchronous or asynchronous I/O supplied by the adapter, so the sync and
async twins of every adapter share one body.

Streaming adapters read :attr:`Call.live`: a call whose answer is not going to be checked (no
cascade, or the last tier) can stream straight to the caller; a call that will be checked is
buffered first ("decide, then stream": a cheap answer that passes the check is replayed from the
buffer, one that fails is discarded and the next tier streams live).
"""

from __future__ import annotations

import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from tokenlean_core import Ledger, Usage

from .cascade import CascadePolicy, logprob_confidence, self_consistency
from .errors import AllTiersFailedError
from .router import Decision, Tier, record_route

__all__ = [
    "Action",
    "Call",
    "Outcome",
    "ResultView",
    "Sample",
    "StreamState",
    "Verify",
    "adrive",
    "adrive_stream",
    "attempt_order",
    "dispatch",
    "drive",
    "drive_stream",
    "finish_route",
    "initial_decision",
    "route_flow",
]

R = TypeVar("R")
C = TypeVar("C")
T = TypeVar("T")


@dataclass(frozen=True)
class Call:
    """Call tier ``decision.tier_index`` once; ``live`` = its answer is final (stream it)."""

    decision: Decision
    live: bool

    @property
    def tier_index(self) -> int:
        return self.decision.tier_index


@dataclass(frozen=True)
class Sample:
    """Draw ``n`` more answers from tier ``tier_index`` (self-consistency)."""

    decision: Decision
    n: int


@dataclass(frozen=True)
class Verify:
    """Score ``answer`` to ``prompt`` with the cascade's verifier (a number, higher = better)."""

    prompt: str
    answer: str


Action = Call | Sample | Verify


@dataclass(frozen=True)
class Outcome(Generic[R]):
    """Where the request ended: the final decision, the answer, and what the discarded answers
    (escalated cheap answers and self-consistency samples) cost, in USD."""

    decision: Decision
    result: R
    extra_cost_usd: float
    escalations: int
    failed_checks: int = 0


@dataclass(frozen=True)
class ResultView(Generic[R]):
    """How the flow reads an adapter's result type: its text, its logprobs, its cost."""

    text: Callable[[R], str]
    logprobs: Callable[[R], Any]
    cost: Callable[[int, R], float]


def attempt_order(chosen: int, n: int, fallback: bool, floor: int = 0) -> list[int]:
    """Chosen tier, then larger tiers, then smaller ones down to ``floor`` (nearest first).

    A cascade escalation passes its new tier as the floor, so a failing larger model never sends
    the request back to the small one it was escalated from."""
    if not fallback:
        return [chosen]
    return [chosen, *range(chosen + 1, n), *range(chosen - 1, floor - 1, -1)]


def initial_decision(tiers: Sequence[Tier]) -> Decision:
    """The starting decision of a pure cascade (no gate): the smallest tier."""
    return Decision(0, tiers[0].name, None, (), strategy="cascade")


def route_flow(
    tiers: Sequence[Tier],
    decision: Decision,
    view: ResultView[R],
    *,
    prompt: str,
    cascade: CascadePolicy | None = None,
    fallback: bool = True,
    exceptions: tuple[type[BaseException], ...] = (Exception,),
    reraise: Callable[[BaseException], bool] = lambda exc: False,
) -> Generator[Action, Any, Outcome[R]]:
    """The routing state machine (see the module docstring). ``reraise(exc)`` marks exceptions
    that must propagate instead of triggering the fallback (e.g. LangGraph's interrupts)."""
    n = len(tiers)
    extra = 0.0
    floor = 0
    escalations = 0
    failed_checks = 0
    while True:
        errors: list[BaseException] = []
        for i in attempt_order(decision.tier_index, n, fallback, floor):
            d = (
                decision
                if i == decision.tier_index
                else decision.with_(
                    tier_index=i,
                    tier=tiers[i].name,
                    detail={**decision.detail, "fallback_from": decision.tier},
                )
            )
            checked = cascade is not None and i < n - 1
            try:
                result: R = yield Call(d, live=not checked)
            except exceptions as exc:
                if reraise(exc):
                    raise
                errors.append(exc)
                continue
            decision = d
            break
        else:
            raise AllTiersFailedError(errors)
        if cascade is None or decision.tier_index >= n - 1:
            return Outcome(decision, result, extra, escalations, failed_checks)
        i = decision.tier_index
        conf: float | None = None
        try:
            if cascade.method == "logprobs":
                conf = logprob_confidence(view.logprobs(result), reduce=cascade.logprob_reduce)
            elif cascade.method == "verifier":
                conf = float((yield Verify(prompt, view.text(result))))
            else:
                samples: list[R] = yield Sample(decision, cascade.n_samples - 1)
                extra += sum(view.cost(i, s) for s in samples)
                conf = self_consistency([view.text(result), *(view.text(s) for s in samples)])[1]
        except Exception as exc:
            if reraise(exc):
                raise
            # a failing check degrades to "confidence unknown": the policy's `missing` decides
            warnings.warn(
                f"tokenlean-router: the cascade's {cascade.method} check failed "
                f"({type(exc).__name__}: {exc}); treating the confidence as missing",
                RuntimeWarning,
                stacklevel=2,
            )
            failed_checks += 1
        decision = decision.with_(confidence=conf)
        if not cascade.should_escalate(conf):
            return Outcome(decision, result, extra, escalations, failed_checks)
        extra += view.cost(i, result)
        escalations += 1
        floor = i + 1
        decision = decision.with_(
            tier_index=i + 1,
            tier=tiers[i + 1].name,
            strategy="cascade",
            escalated_from=decision.tier,
            confidence=conf,
        )


class _Stepper(Generic[R]):
    """Advances a flow by one result (or exception); None once it has returned its outcome."""

    def __init__(self, flow: Generator[Action, Any, Outcome[R]]) -> None:
        self.flow = flow
        self.outcome: Outcome[R] | None = None

    def resume(self, value: Any = None, exc: BaseException | None = None) -> Action | None:
        try:
            return self.flow.send(value) if exc is None else self.flow.throw(exc)
        except StopIteration as stop:
            self.outcome = stop.value
            return None

    def result(self) -> Outcome[R]:
        assert self.outcome is not None
        return self.outcome


def _step(st: _Stepper[R], run: Callable[[Action], Any], action: Action) -> Action | None:
    """Perform ``action`` and resume the flow with its value, or throw its exception into it."""
    try:
        value = run(action)
    except Exception as exc:
        return st.resume(exc=exc)
    return st.resume(value)


async def _astep(
    st: _Stepper[R], run: Callable[[Action], Awaitable[Any]], action: Action
) -> Action | None:
    try:
        value = await run(action)
    except Exception as exc:
        return st.resume(exc=exc)
    return st.resume(value)


def dispatch(
    action: Action,
    call: Callable[[Call], T],
    sample: Callable[[Sample], T],
    verify: Callable[[Verify], T],
) -> T:
    """Pick the adapter's I/O for ``action`` (returns what it returns: a value, or an awaitable
    in async code), so an adapter's sync and async runners only name their I/O."""
    if isinstance(action, Call):
        return call(action)
    if isinstance(action, Sample):
        return sample(action)
    return verify(action)


def drive(flow: Generator[Action, Any, Outcome[R]], run: Callable[[Action], Any]) -> Outcome[R]:
    """Run a flow with synchronous I/O: ``run(action)`` performs each action."""
    st = _Stepper(flow)
    action = st.resume()
    while action is not None:
        action = _step(st, run, action)
    return st.result()


async def adrive(
    flow: Generator[Action, Any, Outcome[R]], run: Callable[[Action], Awaitable[Any]]
) -> Outcome[R]:
    """Run a flow with asynchronous I/O: ``await run(action)`` performs each action."""
    st = _Stepper(flow)
    action = st.resume()
    while action is not None:
        action = await _astep(st, run, action)
    return st.result()


@dataclass
class StreamState(Generic[R]):
    """Filled by the streaming drivers: the outcome once the stream is exhausted."""

    outcome: Outcome[R] | None = None


def drive_stream(
    flow: Generator[Action, Any, Outcome[R]],
    stream: Callable[[Call], Iterator[C]],
    join: Callable[[list[C]], R],
    run: Callable[[Action], Any],
    state: StreamState[R],
) -> Iterator[C]:
    """Run a flow, streaming calls with ``stream(call)`` (chunks of type ``C``, joined into a result
    with ``join``) and performing other actions with ``run``. Live calls reach the caller as they
    arrive; a checked call is buffered and replayed only if the flow accepts it. A live stream
    that fails after its first chunk re-raises: the caller already has part of that answer."""
    st = _Stepper(flow)
    action = st.resume()
    chunks: list[C] = []
    replay = False
    while action is not None:
        if not isinstance(action, Call):
            action = _step(st, run, action)
            continue
        chunks = []
        try:
            for chunk in stream(action):
                chunks.append(chunk)
                if action.live:
                    yield chunk
        except Exception as exc:
            if chunks and action.live:
                raise
            action = st.resume(exc=exc)
            continue
        replay = not action.live
        action = st.resume(join(chunks))
    if replay:  # the last call was checked, and the flow ended there: it was accepted
        yield from chunks
    state.outcome = st.result()


async def adrive_stream(
    flow: Generator[Action, Any, Outcome[R]],
    stream: Callable[[Call], AsyncIterator[C]],
    join: Callable[[list[C]], R],
    run: Callable[[Action], Awaitable[Any]],
    state: StreamState[R],
) -> AsyncIterator[C]:
    """Async twin of :func:`drive_stream`."""
    st = _Stepper(flow)
    action = st.resume()
    chunks: list[C] = []
    replay = False
    while action is not None:
        if not isinstance(action, Call):
            action = await _astep(st, run, action)
            continue
        chunks = []
        try:
            async for chunk in stream(action):
                chunks.append(chunk)
                if action.live:
                    yield chunk
        except Exception as exc:
            if chunks and action.live:
                raise
            action = st.resume(exc=exc)
            continue
        replay = not action.live
        action = st.resume(join(chunks))
    if replay:
        for chunk in chunks:
            yield chunk
    state.outcome = st.result()


def finish_route(
    ledger: Ledger,
    tiers: Sequence[Tier],
    outcome: Outcome[Any],
    usage: Usage,
    *,
    component: str = "router",
    run_id: str | None = None,
    record_savings: bool = True,
) -> dict[str, Any]:
    """Record a finished route: the saving vs the largest tier (net of the discarded answers'
    cost) and, when the cascade escalated, an ``escalated`` event; returns the route metadata."""
    d = outcome.decision
    meta = d.as_metadata()
    if outcome.failed_checks:
        meta["failed_checks"] = outcome.failed_checks
        ledger.record_event(
            component, "check_failed", float(outcome.failed_checks), model=d.tier, run_id=run_id
        )
    if outcome.escalations:
        meta["escalations"] = outcome.escalations
        meta["discarded_usd"] = round(outcome.extra_cost_usd, 8)
        ledger.record_event(
            component,
            "escalated",
            float(outcome.escalations),
            model=d.tier,
            run_id=run_id,
            detail=dict(meta),
        )
    if record_savings:
        record_route(
            ledger,
            tiers,
            d,
            usage,
            component=component,
            run_id=run_id,
            extra_cost_usd=outcome.extra_cost_usd,
        )
    return meta
