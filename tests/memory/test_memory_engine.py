"""The framework-agnostic engine: budgets, safe cuts, summary merge, fallback, recall, ledger."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from tokenlean_core import Ledger, Message, ToolCall, count_tokens
from tokenlean_memory import (
    FunctionTextModel,
    LexicalExtractor,
    LLMStateExtractor,
    MemoryConfig,
    MemoryEngine,
    MemoryRecord,
    MemoryWarning,
    Summarizer,
    split_blocks,
)

MODEL = "gpt-4o"
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "lookup_order",
            "description": "Look up an order by its id and return its status.",
            "parameters": {
                "type": "object",
                "properties": {"order_id": {"type": "string"}},
                "required": ["order_id"],
            },
        },
    }
]


def conversation(n_turns: int, tool_every: int = 3) -> list[dict[str, Any]]:
    msgs: list[dict[str, Any]] = []
    for i in range(n_turns):
        msgs.append(
            {"role": "user", "content": f"Turn {i}: please check order A{i:03d} for Berlin."}
        )
        if tool_every and i % tool_every == 0:
            msgs.append(
                {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [
                        {
                            "id": f"call{i}",
                            "type": "function",
                            "function": {
                                "name": "lookup_order",
                                "arguments": json.dumps({"order_id": f"A{i:03d}"}),
                            },
                        }
                    ],
                }
            )
            msgs.append({"role": "tool", "tool_call_id": f"call{i}", "content": f"shipped {i}"})
        msgs.append({"role": "assistant", "content": f"Order A{i:03d} is on its way ({i})."})
    return msgs


def _assert_no_orphans(messages: list[Message]) -> None:
    open_ids: set[str | None] = set()
    prev_role = None
    for m in messages:
        if m.role == "tool":
            assert prev_role in ("assistant", "tool"), "tool result without its call"
            assert m.tool_call_id in open_ids, "tool result whose call is not right before it"
        elif m.role == "assistant" and m.tool_calls:
            open_ids = {c.id for c in m.tool_calls}
        else:
            open_ids = set()
        prev_role = m.role


# ------------------------------------------------------------------ property test

ROLES = st.sampled_from(["user", "assistant", "tool_block", "orphan_tool", "user"])
TEXT = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=0, max_size=60
)


@st.composite
def tool_conversations(draw: st.DrawFn) -> list[Message]:
    kinds = draw(st.lists(ROLES, min_size=1, max_size=30))
    msgs: list[Message] = []
    for n, kind in enumerate(kinds):
        text = draw(TEXT)
        if kind == "tool_block":
            k = draw(st.integers(1, 3))
            calls = tuple(
                ToolCall(name="lookup_order", arguments=json.dumps({"i": j}), id=f"c{n}_{j}")
                for j in range(k)
            )
            msgs.append(Message(role="assistant", content=text, tool_calls=calls))
            for c in calls:
                msgs.append(Message(role="tool", content=draw(TEXT), tool_call_id=c.id))
        elif kind == "orphan_tool":
            msgs.append(Message(role="tool", content=text, tool_call_id=f"lost{n}"))
        else:
            msgs.append(Message(role=kind, content=text))
    if draw(st.booleans()):
        msgs.append(Message(role="user", content=draw(TEXT)))
    return msgs


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    msgs=tool_conversations(),
    budget=st.integers(60, 700),
    with_tools=st.booleans(),
    system=st.sampled_from([None, "You are a careful support agent. Be brief."]),
    summarize=st.booleans(),
)
def test_property_no_orphans_budget_latest_user(
    msgs: list[Message], budget: int, with_tools: bool, system: str | None, summarize: bool
) -> None:
    engine = MemoryEngine(
        MemoryConfig(budget_tokens=budget, model=MODEL, summary_max_tokens=20, state_max_tokens=30),
        summarizer=FunctionTextModel(lambda p: "notes: " + p[-40:]) if summarize else None,
        ledger=Ledger(),
    )
    tools = TOOLS if with_tools else None
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MemoryWarning)
        record = engine.update(msgs[: len(msgs) // 2], MemoryRecord())
        record = engine.update(msgs, record)
        ctx = engine.build(msgs, record, system=system, tools=tools)
    out = ctx.messages
    body = out[1:] if out and ctx.system_text is not None else out
    # 1. never an orphan tool result
    _assert_no_orphans(body)
    # 2. the count is the exact count of what is returned, and within budget unless the
    #    irreducible part (system + tools + latest user message + last block) alone exceeds it
    assert ctx.tokens == int(count_tokens(out, MODEL, tools=tools))
    if ctx.over_budget:
        assert not ctx.recalled
        assert not ctx.memory_text
        blocks, _ = split_blocks(msgs)
        irreducible = {i for b in blocks[-1:] for i in range(*b)}
        users = [i for i, m in enumerate(msgs) if m.role == "user"]
        if users:
            blk = next(b for b in blocks if b[0] <= users[-1] < b[1])
            irreducible |= set(range(*blk))
        assert set(ctx.indices) == irreducible
    else:
        assert ctx.tokens <= budget
    # 3. the latest user message is always there, verbatim
    users = [i for i, m in enumerate(msgs) if m.role == "user"]
    if users:
        assert users[-1] in ctx.indices
    # indices are ascending, real, and map to the caller's messages
    assert ctx.indices == sorted(ctx.indices)
    assert [msgs[i] for i in ctx.indices] == body


# ------------------------------------------------------------------ budgets and layers


def test_full_history_returned_verbatim_when_it_fits(ledger: Ledger) -> None:
    msgs = conversation(2)
    engine = MemoryEngine(MemoryConfig(budget_tokens=2000, model=MODEL))
    ctx = engine.build(msgs, system="Be brief.")
    assert ctx.memory_text == ""
    assert len(ctx.indices) == len(msgs)
    assert ctx.saved_tokens == 0


def test_system_prompt_and_tool_schemas_are_counted() -> None:
    msgs = conversation(12)
    engine = MemoryEngine(
        MemoryConfig(budget_tokens=300, model=MODEL, summary_max_tokens=0, state_max_tokens=0),
        ledger=Ledger(),
    )
    bare = engine.build(msgs)
    heavy = engine.build(msgs, system="Policy: " + "be precise and kind. " * 20, tools=TOOLS)
    assert heavy.tokens <= 300 and bare.tokens <= 300
    assert len(heavy.indices) < len(bare.indices)
    assert heavy.tokens == int(count_tokens(heavy.messages, MODEL, tools=TOOLS))


def test_tool_call_and_results_travel_together() -> None:
    msgs = conversation(20, tool_every=1)
    engine = MemoryEngine(MemoryConfig(budget_tokens=220, model=MODEL), ledger=Ledger())
    ctx = engine.build(msgs)
    _assert_no_orphans(ctx.messages[1:] if ctx.system_text is not None else ctx.messages)
    kept = set(ctx.indices)
    for begin, end in split_blocks(engine_msgs := [*map(_msg, msgs)])[0]:
        assert all(i in kept for i in range(begin, end)) or not any(
            i in kept for i in range(begin, end)
        ), engine_msgs[begin]


def _msg(d: dict[str, Any]) -> Message:
    from tokenlean_core import normalize_messages

    return normalize_messages([d])[0]


def test_memory_layers_appear_when_history_is_long(ledger: Ledger) -> None:
    msgs = conversation(30)
    engine = MemoryEngine(
        MemoryConfig(budget_tokens=260, model=MODEL, summary_max_tokens=40, state_max_tokens=60),
        summarizer=FunctionTextModel(lambda p: "User tracks several orders to Berlin."),
    )
    record = engine.update(msgs, MemoryRecord())
    assert record.summary and record.summarized_upto > 0
    assert any(e.value == "Berlin" for e in record.state.entities)
    assert any(tr.name == "lookup_order" for tr in record.state.tool_results)
    ctx = engine.build(msgs, record)
    assert ctx.uses_memory
    assert "User tracks several orders to Berlin." in ctx.memory_text
    assert ctx.tokens <= 260
    # 3. the ledger got the saving against the full history
    savings = [r for r in ledger.records() if r.kind == "saving" and r.component == "memory"]
    usage = savings[-1].usage
    assert usage is not None and usage.input_tokens == ctx.full_tokens - ctx.tokens > 0


def test_max_recent_messages_caps_the_window() -> None:
    msgs = conversation(10, tool_every=0)
    cfg = MemoryConfig(budget_tokens=200, model=MODEL, max_recent_messages=2)
    ctx = MemoryEngine(cfg, ledger=Ledger()).build([*msgs, {"role": "user", "content": "and?"}])
    assert len(ctx.indices) == 2


def test_config_is_validated() -> None:
    with pytest.raises(ValidationError):
        MemoryConfig(budget_tokens=100, recall_min_similarity=2.0)
    with pytest.raises(ValidationError):
        MemoryConfig(budget_tokens=5)
    with pytest.raises(ValidationError):
        MemoryConfig(budget_tokens=500, unknown=1)  # type: ignore[call-arg]


def test_lean_profile_is_the_fitted_settings_and_takes_overrides() -> None:
    cfg = MemoryConfig.lean()
    assert (cfg.budget_tokens, cfg.max_recent_messages, cfg.memory_header) == (100, 2, "Memory:")
    assert cfg.compact_under_budget and cfg.summary_max_tokens == 20
    big = MemoryConfig.lean(400, model=MODEL, memory_header="Notes:")
    assert (big.summary_max_tokens, big.state_max_tokens, big.model) == (80, 400, MODEL)
    assert big.memory_header == "Notes:"
    with pytest.raises(ValidationError):
        MemoryConfig.lean(100, max_recent_messages=None)  # compact_under_budget needs the cap
    # a long conversation: the lean memory keeps the latest turn and stays inside the budget
    msgs = [*conversation(12, tool_every=0), {"role": "user", "content": "and the Berlin order?"}]
    ctx = MemoryEngine(MemoryConfig.lean(120, model=MODEL), ledger=Ledger()).build(msgs)
    assert ctx.tokens <= 120 < ctx.full_tokens
    assert ctx.messages[-1].content == "and the Berlin order?"
    assert ctx.memory_text.startswith("Memory:")


# ------------------------------------------------------------------ summary merge and fallback


def test_summary_is_extended_never_rewritten() -> None:
    prompts: list[str] = []

    notes = [
        "The user wants the Berlin orders shipped together.",
        "Refund the Berlin shipping fee.",
    ]

    def fake(prompt: str) -> str:
        prompts.append(prompt)
        return notes[len(prompts) - 1]

    engine = MemoryEngine(
        MemoryConfig(budget_tokens=200, model=MODEL, summary_max_tokens=60, state_max_tokens=40),
        summarizer=FunctionTextModel(fake),
        ledger=Ledger(),
    )
    msgs = conversation(12, tool_every=0)
    rec = engine.update(msgs, MemoryRecord())
    first = rec.summary_text
    assert first == notes[0]
    msgs2 = msgs + conversation(20, tool_every=0)[24:]
    rec2 = engine.update(msgs2, rec)
    # old + new: the old segment is still there, the new one covers only newly evicted turns
    assert [s.text for s in rec2.summary] == notes
    assert rec2.summary[1].start == rec.summarized_upto
    assert notes[0] in prompts[1]  # the model saw the previous summary as context
    assert "Turn 0:" not in prompts[1]  # ...and never the already-summarised turns again
    assert rec.summary_text == notes[0]  # the input record was not mutated


def test_summariser_failure_falls_back_and_warns() -> None:
    def boom(prompt: str) -> str:
        raise RuntimeError("model unavailable")

    engine = MemoryEngine(
        MemoryConfig(budget_tokens=200, model=MODEL, summary_max_tokens=40, state_max_tokens=40),
        summarizer=FunctionTextModel(boom),
        ledger=Ledger(),
    )
    msgs = conversation(15, tool_every=0)
    with pytest.warns(MemoryWarning, match="summarising evicted turns failed"):
        rec = engine.update(msgs, MemoryRecord())
    assert rec.summary == [] and rec.summary_failures == 1 and rec.summarized_upto == 0
    assert rec.state.entities  # extraction still happened
    ctx = engine.build(msgs, rec)
    assert ctx.tokens <= 200
    assert len(msgs) - 1 in ctx.indices
    # a later success summarises what failed before (nothing skipped)
    engine.summarizer = Summarizer(FunctionTextModel(lambda p: "The Berlin orders recovered."))
    rec2 = engine.update(msgs, rec)
    assert rec2.summary[0].start == 0 and rec2.summary_text == "The Berlin orders recovered."


async def test_async_update_and_build() -> None:
    async def afake(prompt: str) -> str:
        return "Berlin orders go by express (async)."

    engine = MemoryEngine(
        MemoryConfig(budget_tokens=200, model=MODEL, summary_max_tokens=40, state_max_tokens=40),
        summarizer=FunctionTextModel(lambda p: "sync", afake),
        ledger=Ledger(),
    )
    msgs = conversation(15, tool_every=2)
    rec = await engine.aupdate(msgs, MemoryRecord())
    assert rec.summary_text == "Berlin orders go by express (async)."
    ctx = await engine.abuild(msgs, rec)
    assert ctx.tokens <= 200 and "express (async)" in ctx.memory_text


# ------------------------------------------------------------------ recall and extraction


def test_recall_brings_back_the_turn_the_user_refers_to() -> None:
    msgs: list[dict[str, Any]] = [
        {"role": "user", "content": "Our API hits the rate limit of 600 requests per minute."},
        {"role": "assistant", "content": "Noted: 600 requests per minute."},
    ]
    for i in range(25):
        msgs.append({"role": "user", "content": f"Unrelated question {i} about invoices."})
        msgs.append({"role": "assistant", "content": f"Answer {i} about invoices."})
    msgs.append({"role": "user", "content": "Going back to what I said about the rate limit..."})
    engine = MemoryEngine(
        MemoryConfig(budget_tokens=220, model=MODEL, summary_max_tokens=0, state_max_tokens=30),
        ledger=Ledger(),
    )
    ctx = engine.build(msgs)
    assert 0 in ctx.recalled
    assert "rate limit of 600 requests per minute" in ctx.memory_text
    assert ctx.tokens <= 220


def test_recall_by_embedding_similarity() -> None:
    concepts = {"cancel": 0, "terminate": 0, "subscription": 1, "membership": 1, "weather": 2}

    def embed(texts: Any) -> list[list[float]]:
        out = []
        for t in texts:
            v = [0.0, 0.0, 0.0]
            for word, dim in concepts.items():
                if word in t.lower():
                    v[dim] = 1.0
            out.append(v)
        return out

    msgs: list[dict[str, Any]] = [
        {"role": "user", "content": "i may cancel my subscription"},
        {"role": "assistant", "content": "ok"},
    ]
    msgs += [{"role": "user", "content": f"weather {i}?"} for i in range(30)]
    msgs.append({"role": "user", "content": "how do i terminate membership"})
    cfg = MemoryConfig(budget_tokens=120, model=MODEL, summary_max_tokens=0, state_max_tokens=20)
    assert 0 not in MemoryEngine(cfg, ledger=Ledger()).build(msgs).recalled  # no shared words
    ctx = MemoryEngine(cfg, embedder=embed, ledger=Ledger()).build(msgs)
    assert 0 in ctx.recalled
    assert ctx.tokens <= 120


def test_lexical_extractor_finds_the_facts() -> None:
    ex = LexicalExtractor()
    text = (
        "Book a table for 4 at Sakana Sushi in San Jose on March 13th at 7:30 pm, "
        'budget $120, email ana@example.com, call 408-247-8880, code "BLUE-42". city: Paris'
    )
    got = {(e.kind, e.value) for e in ex.entities(text)}
    for want in [
        ("number", "4"),
        ("name", "Sakana Sushi"),
        ("name", "San Jose"),
        ("date", "March 13th"),
        ("time", "7:30 pm"),
        ("money", "$120"),
        ("email", "ana@example.com"),
        ("phone", "408-247-8880"),
        ("quoted", "BLUE-42"),
    ]:
        assert want in got, want
    assert ("city", "Paris") in ex.slots(text)


def test_accepted_offer_is_confirmed() -> None:
    ex = LexicalExtractor()
    msgs = [
        Message(role="assistant", content="I found Delta Airlines leaving at 6 am."),
        Message(role="user", content="Yes, that works."),
    ]
    state = ex.extract(msgs)
    assert {e.value for e in state.entities if e.confirmed} >= {"Delta Airlines", "6 am"}


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=300))
def test_extractor_never_fails_on_any_text(text: str) -> None:
    ex = LexicalExtractor()
    state = ex.extract([Message(role="user", content=text)])
    for e in state.entities:
        assert e.value and e.value == " ".join(e.value.split())
    assert isinstance(ex.slots(text), list)


def test_llm_extractor_merges_into_the_validated_state() -> None:
    reply = "destination: Lisbon\nparty size: 3\ndecision: take the 9am flight\ntask: send visa\nnonsense"
    engine = MemoryEngine(
        MemoryConfig(budget_tokens=300, model=MODEL),
        llm_extractor=FunctionTextModel(lambda p: reply),
        ledger=Ledger(),
    )
    rec = engine.update([{"role": "user", "content": "Three of us fly to Lisbon."}])
    assert rec.state.slots["destination"] == "Lisbon"
    assert rec.state.slots["party_size"] == "3"
    assert rec.state.decisions == ["take the 9am flight"]
    assert rec.state.open_tasks == ["send visa"]
    assert any(e.value == "Lisbon" for e in rec.state.entities)  # the lexical one merged too
    assert isinstance(engine.llm_extractor, LLMStateExtractor)


def test_history_replaced_resets_the_record() -> None:
    engine = MemoryEngine(MemoryConfig(budget_tokens=300, model=MODEL), ledger=Ledger())
    rec = engine.update(conversation(5))
    rec2 = engine.update(conversation(1), rec)
    assert rec2.extracted_upto == len(conversation(1))


def test_record_json_round_trip() -> None:
    engine = MemoryEngine(
        MemoryConfig(budget_tokens=200, model=MODEL, summary_max_tokens=40, state_max_tokens=40),
        summarizer=FunctionTextModel(lambda p: "s"),
        ledger=Ledger(),
    )
    rec = engine.update(conversation(15))
    again = MemoryRecord.from_json(rec.to_json())
    assert again == rec


@pytest.mark.models
def test_recall_with_the_shipped_minilm() -> None:
    from tokenlean_memory import MiniLMEmbedder

    msgs: list[dict[str, Any]] = [
        {"role": "user", "content": "We keep getting HTTP 429 errors from your API."},
        {"role": "assistant", "content": "That means you are being throttled."},
    ]
    for i in range(20):
        msgs.append({"role": "user", "content": f"Invoice {i} shows the wrong VAT number."})
        msgs.append({"role": "assistant", "content": f"Fixed invoice {i}."})
    msgs.append({"role": "user", "content": "Back to the too-many-requests problem: any fix?"})
    cfg = MemoryConfig(
        budget_tokens=150,
        model=MODEL,
        summary_max_tokens=0,
        state_max_tokens=20,
        recall_min_similarity=0.3,
    )
    assert 0 not in MemoryEngine(cfg, ledger=Ledger()).build(msgs).recalled
    ctx = MemoryEngine(cfg, embedder=MiniLMEmbedder(), ledger=Ledger()).build(msgs)
    assert 0 in ctx.recalled
    assert "429" in ctx.memory_text


def test_long_summary_is_clipped_not_dropped() -> None:
    long_note = "The customer wants a refund for order A123 and a replacement router. " * 5
    engine = MemoryEngine(
        MemoryConfig(budget_tokens=200, model=MODEL, summary_max_tokens=20, state_max_tokens=30),
        summarizer=FunctionTextModel(lambda p: long_note),
        ledger=Ledger(),
    )
    msgs = conversation(15, tool_every=0)
    rec = engine.update(msgs, MemoryRecord())
    ctx = engine.build(msgs, rec)
    assert "The customer wants a refund" in ctx.memory_text
    summary_line = next(x for x in ctx.memory_text.splitlines() if x.startswith("Summary: "))
    assert int(count_tokens(summary_line.removeprefix("Summary: "), MODEL)) <= 20
    assert ctx.tokens <= 200
