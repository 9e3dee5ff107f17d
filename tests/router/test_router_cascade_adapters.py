"""The cascade wired into the LlamaIndex ``RouterLLM`` and the LangChain ``RouterMiddleware``:
escalation on a failed check (logprobs, verifier, self-consistency), sync/async/streaming, the
ledger's saving and ``escalated`` event, the decision on the answer's metadata."""

from __future__ import annotations

import math
from typing import Any

import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage
from llama_index.core.base.llms.types import (
    ChatMessage,
    CompletionResponse,
    CompletionResponseGen,
    LLMMetadata,
    LogProb,
    MessageRole,
)
from llama_index.core.llms import CustomLLM, MockLLM
from pydantic import PrivateAttr
from router_helpers import TIERS

from tokenlean_core import Ledger
from tokenlean_router import CascadePolicy, Router
from tokenlean_router.flow import Call, Verify, drive, initial_decision, route_flow
from tokenlean_router.langchain import RouterChain, RouterMiddleware
from tokenlean_router.llama_index import RouterLLM

EASY = "What is the capital of France?"
HARD = "Calculate 482 * 17 + 95 and show each step of the computation."


def two_words_is_unsure(prompt: str, answer: str) -> float:
    """A verifier: the small MockLLM's 2-word answers fail, longer ones pass."""
    return 0.0 if len(answer.split()) <= 2 else 1.0


class Scripted(CustomLLM):
    """A LlamaIndex LLM answering from a script of (text, token probability) pairs, with the
    token logprobs in LlamaIndex's format (the paid-API stand-in for a logprob-returning model)."""

    _script: list[tuple[str, float]] = PrivateAttr(default_factory=list)

    def __init__(self, script: list[tuple[str, float]]) -> None:
        super().__init__()
        self._script = list(script)

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name="scripted")

    def _next(self) -> CompletionResponse:
        text, p = self._script.pop(0)
        lps = [[LogProb(token=w, logprob=math.log(p), bytes=[])] for w in text.split()]
        return CompletionResponse(text=text, logprobs=lps)

    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return self._next()

    def stream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseGen:
        resp = self._next()
        words = resp.text.split()

        def gen() -> CompletionResponseGen:
            for i, w in enumerate(words):
                yield CompletionResponse(
                    text=" ".join(words[: i + 1]),
                    delta=(" " if i else "") + w,
                    logprobs=[resp.logprobs[i]] if resp.logprobs else None,
                )

        return gen()


def savings(ledger: Ledger) -> list[Any]:
    return [r for r in ledger.records() if r.kind == "saving"]


def escalations(ledger: Ledger) -> list[Any]:
    return [r for r in ledger.records() if r.kind != "saving" and r.name == "escalated"]


# -- the flow itself -------------------------------------------------------------------------------
def test_flow_escalates_and_falls_back_without_io() -> None:
    from tokenlean_router import Tier

    tiers = [Tier("a"), Tier("b"), Tier("c")]
    policy = CascadePolicy(threshold=0.5, method="verifier", verifier=two_words_is_unsure)
    from tokenlean_router.flow import ResultView

    view: ResultView[str] = ResultView(text=str, logprobs=lambda r: None, cost=lambda i, r: 1.0)
    seen: list[str] = []

    def run(action: Any) -> Any:
        if isinstance(action, Call):
            seen.append(action.decision.tier)
            if action.decision.tier == "b":
                raise ConnectionError("b is down")
            return {"a": "short one", "c": "a long good answer"}[action.decision.tier]
        assert isinstance(action, Verify)
        return two_words_is_unsure(action.prompt, action.answer)

    out = drive(route_flow(tiers, initial_decision(tiers), view, prompt="q", cascade=policy), run)
    # a's answer fails the check -> b (escalation) fails -> c (fallback upwards, never back to a)
    assert seen == ["a", "b", "c"]
    assert out.result == "a long good answer" and out.escalations == 1
    assert out.extra_cost_usd == 1.0
    assert out.decision.escalated_from == "a" and out.decision.detail["fallback_from"] == "b"


# -- LlamaIndex ------------------------------------------------------------------------------------
async def test_llama_index_verifier_cascade_sync_async_and_stream(ledger: Ledger) -> None:
    policy = CascadePolicy(threshold=0.5, method="verifier", verifier=two_words_is_unsure)
    llm = RouterLLM(
        None, [MockLLM(max_tokens=2), MockLLM(max_tokens=5)], cascade=policy, tiers=TIERS
    )
    llm.ledger = ledger
    out = llm.complete(EASY)
    assert out.text.split() == ["text"] * 5
    route = out.additional_kwargs["tokenlean_route"]
    assert route["tier"] == "large-model" and route["escalated_from"] == "small-model"
    assert route["strategy"] == "cascade" and route["confidence"] == 0.0
    assert route["escalations"] == 1 and route["discarded_usd"] > 0
    # the discarded small answer is paid on top: the saving vs always-large is negative
    s = savings(ledger)[0]
    assert s.usd is not None and s.usd < 0 and s.detail["escalated_from"] == "small-model"
    assert len(escalations(ledger)) == 1
    chat = await llm.achat([ChatMessage(role=MessageRole.USER, content=EASY)])
    assert chat.additional_kwargs["tokenlean_route"]["tier"] == "large-model"
    # decide-then-stream: the small answer is buffered and dropped, only the large one streams
    deltas = [r.delta or "" for r in llm.stream_complete(EASY)]
    assert "".join(deltas).split() == ["text"] * 5
    achunks = [r async for r in await llm.astream_complete(EASY)]
    assert "".join(r.delta or "" for r in achunks).split() == ["text"] * 5
    assert achunks[-1].additional_kwargs["tokenlean_route"]["escalated_from"] == "small-model"
    assert len(escalations(ledger)) == 4


def test_llama_index_logprob_cascade_accepts_confident_answers(
    router: Router, ledger: Ledger
) -> None:
    small = Scripted([("sure answer", 0.95), ("shaky answer", 0.2), ("steady stream", 0.9)])
    llm = RouterLLM(
        router,
        [small, MockLLM(max_tokens=4)],
        cascade=CascadePolicy(threshold=0.7, method="logprobs"),
    )
    first = llm.complete(EASY)
    assert first.text == "sure answer"
    assert first.additional_kwargs["tokenlean_route"]["confidence"] == pytest.approx(0.95)
    second = llm.complete(EASY)
    assert second.text.split() == ["text"] * 4
    assert second.additional_kwargs["tokenlean_route"]["confidence"] == pytest.approx(0.2)
    # accepted after buffering: the small model's stream is replayed whole
    streamed = list(llm.stream_complete(EASY))
    assert [r.delta for r in streamed] == ["steady", " stream"]
    assert streamed[-1].additional_kwargs["tokenlean_route"]["confidence"] == pytest.approx(0.9)
    # the gate sends hard requests straight to the large tier: no check there
    direct = llm.complete(HARD)
    assert direct.additional_kwargs["tokenlean_route"]["strategy"] == "gate"
    assert [s.model for s in savings(ledger)] == [
        "small-model",
        "large-model",
        "small-model",
        "large-model",
    ]
    assert len(escalations(ledger)) == 1


def test_llama_index_self_consistency() -> None:
    agree = Scripted([("answer is 42", 0.5)] * 3)
    llm = RouterLLM(
        None,
        [agree, MockLLM(max_tokens=3)],
        cascade=CascadePolicy(threshold=0.6, method="self_consistency", n_samples=3),
        tiers=TIERS,
    )
    out = llm.complete("q")
    assert out.text == "answer is 42"
    assert out.additional_kwargs["tokenlean_route"]["confidence"] == 1.0
    disagree = Scripted([("answer is 1", 0.5), ("answer is 2", 0.5), ("answer is 3", 0.5)])
    llm2 = RouterLLM(
        None,
        [disagree, MockLLM(max_tokens=3)],
        cascade=CascadePolicy(threshold=0.6, method="self_consistency", n_samples=3),
        tiers=TIERS,
    )
    out2 = llm2.complete("q")
    assert out2.text.split() == ["text"] * 3
    assert out2.additional_kwargs["tokenlean_route"]["confidence"] == pytest.approx(1 / 3)


# -- LangChain agent middleware ----------------------------------------------------------------
def fake(*answers: str | AIMessage) -> GenericFakeChatModel:
    return GenericFakeChatModel(messages=iter(list(answers)))


def _lp(p: float) -> dict[str, Any]:
    return {"content": [{"token": "t", "logprob": math.log(p)}] * 3}


async def test_middleware_cascade_in_a_real_agent(ledger: Ledger) -> None:
    from langchain.agents import create_agent

    small = fake(
        AIMessage("confident small", response_metadata={"logprobs": _lp(0.9)}),
        AIMessage("unsure small", response_metadata={"logprobs": _lp(0.3)}),
        AIMessage("unsure again", response_metadata={"logprobs": _lp(0.1)}),
    )
    large = fake("large reply", "large async")
    mw = RouterMiddleware(
        None,
        [small, large],
        tiers=TIERS,
        cascade=CascadePolicy(threshold=0.7, method="logprobs"),
        ledger=ledger,
    )
    agent = create_agent(model=fake("agent default"), middleware=[mw])
    out = agent.invoke({"messages": [HumanMessage(EASY)]})
    assert out["messages"][-1].text == "confident small"
    out2 = agent.invoke({"messages": [HumanMessage(EASY)]})
    last = out2["messages"][-1]
    assert last.text == "large reply"
    # only the accepted answer is in the agent's state
    assert [m.text for m in out2["messages"]] == [EASY, "large reply"]
    route = last.response_metadata["tokenlean_route"]
    assert route["escalated_from"] == "small-model" and route["confidence"] == pytest.approx(0.3)
    out3 = await agent.ainvoke({"messages": [HumanMessage(EASY)]})
    assert out3["messages"][-1].text == "large async"
    assert [s.model for s in savings(ledger)] == ["small-model", "large-model", "large-model"]
    assert savings(ledger)[1].usd is not None and savings(ledger)[1].usd < 0
    assert len(escalations(ledger)) == 2


def test_middleware_gate_plus_verifier_and_self_consistency(router: Router) -> None:
    from langchain.agents import create_agent

    policy = CascadePolicy(threshold=0.5, method="verifier", verifier=two_words_is_unsure)
    mw = RouterMiddleware(router, [fake("too short", "a long enough answer"), fake("big")])
    mw_c = RouterMiddleware(
        router, [fake("too short", "a long enough answer"), fake("big")], cascade=policy
    )
    assert (
        create_agent(model=fake("x"), middleware=[mw])
        .invoke({"messages": [HumanMessage(EASY)]})["messages"][-1]
        .text
        == "too short"
    )
    agent = create_agent(model=fake("x"), middleware=[mw_c])
    assert agent.invoke({"messages": [HumanMessage(EASY)]})["messages"][-1].text == "big"
    sc = RouterMiddleware(
        None,
        [fake("#### 7", "#### 7", "#### 7"), fake("never")],
        tiers=TIERS,
        cascade=CascadePolicy(threshold=0.6, method="self_consistency", n_samples=3),
    )
    out = create_agent(model=fake("x"), middleware=[sc]).invoke({"messages": [HumanMessage("q")]})
    assert out["messages"][-1].text == "#### 7"
    assert out["messages"][-1].response_metadata["tokenlean_route"]["confidence"] == 1.0


def test_router_chain_records_the_escalation_event(ledger: Ledger) -> None:
    policy = CascadePolicy(threshold=0.5, method="verifier", verifier=two_words_is_unsure)
    chain = RouterChain(
        routes=[fake("too short"), fake("the large answer")],
        tiers=TIERS,
        cascade=policy,
        ledger=ledger,
    )
    out = chain.invoke(EASY)
    assert out.text == "the large answer"
    assert out.response_metadata["tokenlean_route"]["escalations"] == 1
    (event,) = escalations(ledger)
    assert event.model == "large-model" and event.detail["escalated_from"] == "small-model"


async def test_a_failing_check_degrades_with_a_warning(ledger: Ledger) -> None:
    def broken_verifier(prompt: str, answer: str) -> float:
        raise TimeoutError("judge model timed out")

    escalate = CascadePolicy(threshold=0.5, method="verifier", verifier=broken_verifier)
    chain = RouterChain(
        routes=[fake("small", "small 2", "small 3"), fake("large", "large 2")],
        tiers=TIERS,
        cascade=escalate,
        ledger=ledger,
    )
    with pytest.warns(RuntimeWarning, match="verifier check failed"):
        out = chain.invoke(EASY)
    assert out.text == "large"  # missing confidence escalates by default
    assert out.response_metadata["tokenlean_route"]["failed_checks"] == 1
    assert [r.name for r in ledger.records() if r.kind != "saving"] == [
        "check_failed",
        "escalated",
    ]
    with pytest.warns(RuntimeWarning, match="verifier check failed"):
        streamed = [c.text async for c in chain.astream(EASY)]
    assert "".join(streamed) == "large 2"
    accept = CascadePolicy(
        threshold=0.5, method="verifier", verifier=broken_verifier, missing="accept"
    )
    llm = RouterLLM(None, [MockLLM(max_tokens=2), MockLLM(max_tokens=5)], cascade=accept)
    with pytest.warns(RuntimeWarning):
        assert llm.complete(EASY).text == "text text"


def test_llama_index_passes_the_group_to_the_gate(dataset: dict[str, Any], ledger: Ledger) -> None:
    from tokenlean_router import HashingEmbedder, train_gate

    texts = dataset["texts"][:300]
    groups = ["exam" if i % 2 else "chat" for i in range(300)]
    # the large model is needed exactly for the "exam" group
    weak = [g == "chat" for g in groups]
    gate = train_gate(texts, weak, [True] * 300, embedder=HashingEmbedder(dim=64), groups=groups)
    router = Router(TIERS, gate, HashingEmbedder(dim=64), ledger=ledger)
    hi, lo = router.decide(EASY, "exam").score, router.decide(EASY, "chat").score
    assert hi is not None and lo is not None and hi > lo
    router.set_thresholds([(hi + lo) / 2])
    small, large = MockLLM(max_tokens=2), MockLLM(max_tokens=5)
    exam = RouterLLM(router, [small, large], group_of=lambda text: "exam")
    chat = RouterLLM(router, [small, large], group_of=lambda text: "chat")
    assert exam.complete(EASY).additional_kwargs["tokenlean_route"]["tier"] == "large-model"
    assert chat.complete(EASY).additional_kwargs["tokenlean_route"]["tier"] == "small-model"
