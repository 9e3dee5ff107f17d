"""RouterChain and RouterMiddleware inside real LangChain chains, on LangChain's fake chat models."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from uuid import UUID

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from router_helpers import TIERS

from tokenlean_core import Ledger, MemorySink
from tokenlean_router import AllTiersFailedError, CascadePolicy, Router, RouterConfigError
from tokenlean_router.langchain import RouterChain, RouterMiddleware

HARD = "Calculate 482 * 17 + 95 and show each step of the computation."
EASY = "What is the capital of France?"


def fake(*answers: str | AIMessage) -> GenericFakeChatModel:
    return GenericFakeChatModel(messages=iter(list(answers)))


class Broken(GenericFakeChatModel):
    """A chat model whose provider is down."""

    def _generate(self, *args: Any, **kwargs: Any) -> Any:
        raise ConnectionError("provider unavailable")

    def _stream(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
        raise ConnectionError("provider unavailable")


class MetadataSpy(BaseCallbackHandler):
    def __init__(self) -> None:
        self.chat_metadata: list[dict[str, Any]] = []
        self.chain_metadata: list[dict[str, Any]] = []

    def on_chat_model_start(
        self, serialized: Any, messages: Any, *, run_id: UUID, **kwargs: Any
    ) -> None:
        self.chat_metadata.append(kwargs.get("metadata") or {})

    def on_chain_start(self, serialized: Any, inputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self.chain_metadata.append(kwargs.get("metadata") or {})


def test_routes_by_gate_inside_a_real_chain(router: Router, ledger: Ledger) -> None:
    assert router.decide(HARD).tier == "large-model"
    assert router.decide(EASY).tier == "small-model"
    chain = (
        ChatPromptTemplate.from_messages([("human", "{q}")])
        | RouterChain(routes=[fake("small says", "small again"), fake("large says")], router=router)
        | StrOutputParser()
    )
    spy = MetadataSpy()
    assert chain.invoke({"q": EASY}, {"callbacks": [spy]}) == "small says"
    assert chain.invoke({"q": HARD}) == "large says"
    route = spy.chat_metadata[0]["tokenlean_route"]
    assert route["tier"] == "small-model" and route["strategy"] == "gate"
    assert route["threshold"] == 0.2 and isinstance(route["score"], float)
    assert any("tokenlean_route" in m for m in spy.chain_metadata)
    savings = [r for r in ledger.records() if r.kind == "saving"]
    assert [s.model for s in savings] == ["small-model", "large-model"]
    assert savings[0].usd is not None and savings[0].usd > 0
    assert savings[1].usd == pytest.approx(0.0)
    assert savings[0].detail["tier"] == "small-model"
    assert savings[0].detail["input_tokens"] > 0


def test_answer_carries_the_decision(router: Router) -> None:
    chain = RouterChain(routes=[fake("a"), fake("b")], router=router)
    out = chain.invoke([HumanMessage(HARD)])
    assert out.response_metadata["tokenlean_route"]["tier"] == "large-model"


async def test_async_stream_and_batch(router: Router) -> None:
    chain = RouterChain(
        routes=[fake("small one", "small two", "small three"), fake("large one two", "large b")],
        router=router,
    )
    assert (await chain.ainvoke(EASY)).text == "small one"
    chunks = [c.text for c in chain.stream(HARD)]
    assert "".join(chunks) == "large one two" and len(chunks) > 1
    achunks = [c.text async for c in chain.astream(EASY)]
    assert "".join(achunks) == "small two"
    outs = chain.batch([EASY, HARD])
    assert sorted(o.text for o in outs) == ["large b", "small three"]


async def test_abatch(router: Router) -> None:
    chain = RouterChain(routes=[fake("s1", "s2"), fake("l1")], router=router)
    outs = await chain.abatch([EASY, HARD, EASY])
    assert [o.text[0] for o in outs].count("s") == 2
    assert [o.text for o in outs][1] == "l1"


def test_error_falls_back_to_the_next_tier(router: Router, ledger: Ledger) -> None:
    chain = RouterChain(routes=[Broken(messages=iter([])), fake("large rescued")], router=router)
    out = chain.invoke(EASY)
    assert out.text == "large rescued"
    route = out.response_metadata["tokenlean_route"]
    assert route["tier"] == "large-model" and route["fallback_from"] == "small-model"
    # streaming falls back too when nothing was sent yet
    chain2 = RouterChain(routes=[Broken(messages=iter([])), fake("x y")], router=router)
    assert "".join(c.text for c in chain2.stream(EASY)) == "x y"


async def test_all_tiers_failing_raises_with_every_error(router: Router) -> None:
    chain = RouterChain(
        routes=[Broken(messages=iter([])), Broken(messages=iter([]))], router=router
    )
    with pytest.raises(AllTiersFailedError) as info:
        chain.invoke(EASY)
    assert len(info.value.errors) == 2
    with pytest.raises(AllTiersFailedError):
        await chain.ainvoke(EASY)
    no_fallback = RouterChain(
        routes=[Broken(messages=iter([])), fake("unused")], router=router, fallback=False
    )
    with pytest.raises(AllTiersFailedError) as info2:
        no_fallback.invoke(EASY)
    assert len(info2.value.errors) == 1


def test_configuration_errors(router: Router) -> None:
    with pytest.raises(RouterConfigError, match="one chat model per tier"):
        RouterChain(routes=[fake("a")], router=router)
    with pytest.raises(RouterConfigError, match="router"):
        RouterChain(routes=[fake("a"), fake("b")])


def _logprobs(p: float, n: int = 4) -> dict[str, Any]:
    import math

    return {
        "content": [
            {"token": f"t{i}", "logprob": math.log(p), "top_logprobs": []} for i in range(n)
        ]
    }


def test_cascade_escalates_on_low_logprobs(ledger: Ledger) -> None:
    small = fake(
        AIMessage("sure answer", response_metadata={"logprobs": _logprobs(0.95)}),
        AIMessage("shaky answer", response_metadata={"logprobs": _logprobs(0.3)}),
        AIMessage("no logprobs at all"),
    )
    large = fake("large answer", "large again")
    chain = RouterChain(
        routes=[small, large],
        tiers=TIERS,
        cascade=CascadePolicy(threshold=0.7, method="logprobs"),
        ledger=ledger,
    )
    first = chain.invoke(EASY)
    assert first.text == "sure answer"
    assert first.response_metadata["tokenlean_route"]["confidence"] == pytest.approx(0.95)
    second = chain.invoke(EASY)
    assert second.text == "large answer"
    route = second.response_metadata["tokenlean_route"]
    assert route["escalated_from"] == "small-model" and route["strategy"] == "cascade"
    assert route["confidence"] == pytest.approx(0.3)
    assert chain.invoke(EASY).text == "large again"  # missing logprobs escalate by default
    savings = [r for r in ledger.records() if r.kind == "saving"]
    # an escalated request paid for the discarded small answer: its saving is negative
    assert savings[0].usd is not None and savings[0].usd > 0
    assert savings[1].usd is not None and savings[1].usd < 0
    assert savings[1].detail["routed_usd"] > savings[1].detail["largest_usd"]


async def test_cascade_with_a_verifier_sync_async_and_stream(router: Router) -> None:
    def verifier(prompt: str, answer: str) -> float:
        return 0.0 if "unsure" in answer else 1.0

    policy = CascadePolicy(threshold=0.5, method="verifier", verifier=verifier)
    chain = RouterChain(
        routes=[
            fake("fine answer", "unsure answer", "unsure again", "ok then"),
            fake("big one", "big two"),
        ],
        router=router,
        cascade=policy,
    )
    assert chain.invoke(EASY).text == "fine answer"
    assert (await chain.ainvoke(EASY)).text == "big one"
    # streaming: the small answer is buffered, scored, then replaced by the large model's stream
    assert "".join(c.text for c in chain.stream(EASY)) == "big two"
    assert "".join([c.text async for c in chain.astream(EASY)]) == "ok then"
    # the gate sends hard requests straight to the large tier: no cascade there
    chain2 = RouterChain(routes=[fake("never"), fake("direct")], router=router, cascade=policy)
    assert chain2.invoke(HARD).response_metadata["tokenlean_route"]["strategy"] == "gate"


def test_cascade_with_self_consistency() -> None:
    small = fake("#### 42", "#### 42", "#### 42", "#### 7", "#### 8", "#### 9")
    chain = RouterChain(
        routes=[small, fake("#### 41")],
        tiers=TIERS,
        cascade=CascadePolicy(threshold=0.6, method="self_consistency", n_samples=3),
    )
    assert chain.invoke("q").text == "#### 42"  # 3/3 agree
    out = chain.invoke("q")
    assert out.text == "#### 41"  # 1/3 agree: escalated
    assert out.response_metadata["tokenlean_route"]["confidence"] == pytest.approx(1 / 3)


def test_agent_middleware_swaps_the_model(router: Router, ledger: Ledger) -> None:
    from langchain.agents import create_agent

    small, large = fake("small reply"), fake("large reply")
    agent = create_agent(
        model=fake("agent default"), middleware=[RouterMiddleware(router, [small, large])]
    )
    out = agent.invoke({"messages": [HumanMessage(EASY)]})
    last: BaseMessage = out["messages"][-1]
    assert last.text == "small reply"
    assert last.response_metadata["tokenlean_route"]["tier"] == "small-model"
    out2 = agent.invoke({"messages": [HumanMessage(HARD)]})
    assert out2["messages"][-1].text == "large reply"
    assert [r.model for r in ledger.records() if r.kind == "saving"] == [
        "small-model",
        "large-model",
    ]


async def test_agent_middleware_async_and_fallback(router: Router) -> None:
    from langchain.agents import create_agent

    mw = RouterMiddleware(router, [Broken(messages=iter([])), fake("rescued")])
    agent = create_agent(model=fake("default"), middleware=[mw])
    out = await agent.ainvoke({"messages": [HumanMessage(EASY)]})
    assert out["messages"][-1].text == "rescued"
    with pytest.raises(RouterConfigError):
        RouterMiddleware(router, [fake("only one")])


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=st.text(max_size=300))
def test_any_user_text_is_routed_and_answered(router: Router, text: str) -> None:
    chain = RouterChain(
        routes=[fake("small"), fake("large")], router=router, ledger=Ledger([MemorySink()])
    )
    out = chain.invoke([HumanMessage(text)])
    route = out.response_metadata["tokenlean_route"]
    assert out.text == route["tier"].split("-")[0]
    assert route == {**route, "strategy": "gate", "threshold": 0.2}


async def test_escalation_never_falls_back_to_the_tier_it_left() -> None:
    policy = CascadePolicy(threshold=0.5, method="verifier", verifier=lambda p, a: 0.0)
    small = fake("weak 1", "weak 2", "weak 3", "weak 4")
    chain = RouterChain(routes=[small, Broken(messages=iter([]))], tiers=TIERS, cascade=policy)
    with pytest.raises(AllTiersFailedError) as info:
        chain.invoke(EASY)
    assert len(info.value.errors) == 1  # only the large tier was retried, no loop back
    with pytest.raises(AllTiersFailedError):
        await chain.ainvoke(EASY)
    with pytest.raises(AllTiersFailedError):
        list(chain.stream(EASY))
    with pytest.raises(AllTiersFailedError):
        _ = [c async for c in chain.astream(EASY)]
