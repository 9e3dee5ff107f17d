"""Schema-aware extraction, the lower-case fallback and the compact state rendering."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from tokenlean_core import Ledger, Message, count_tokens
from tokenlean_memory import (
    Entity,
    LexicalExtractor,
    MemoryConfig,
    MemoryEngine,
    MemoryRecord,
    MemoryState,
    StateSchema,
)

MODEL = "gpt-4o"
SCHEMA = StateSchema(
    slots={
        "flight_class": ["Economy", "Premium Economy", "Business", "dontcare"],
        "account_type": ["checking", "savings"],
        "recipient_account_type": ["checking", "savings"],
        "car_type": ["Standard", "Compact", "Full-size"],
        "passengers": ["1", "2", "3"],
        "refundable": ["True", "False"],
        "destination": [],
    }
)


def _values(ents: list[Entity]) -> dict[str, str | None]:
    return {e.value: e.slot for e in ents if e.kind == "value"}


# ------------------------------------------------------------------ schema


def test_schema_is_validated_and_normalised() -> None:
    s = StateSchema(slots={" flight  class ": ["Economy", "economy ", "  ", "-"]})
    assert s.slots == {"flight class": ("Economy",)}
    with pytest.raises(ValidationError, match="not a string"):
        StateSchema(slots={"city": "Paris"})
    with pytest.raises(ValidationError, match="empty slot name"):
        StateSchema(slots={" ": ["x"]})
    with pytest.raises(ValidationError):
        StateSchema(slots={"a": ["x"]}, extra=1)  # type: ignore[call-arg]


def test_schema_from_sgd_keeps_values_of_categorical_slots_only() -> None:
    sgd = [
        {
            "service_name": "Flights_1",
            "slots": [
                {"name": "seating_class", "is_categorical": True, "possible_values": ["Economy"]},
                {"name": "origin_city", "is_categorical": False, "possible_values": []},
            ],
        }
    ]
    assert StateSchema.from_sgd(sgd).slots == {"seating_class": ("Economy",), "origin_city": ()}
    prefixed = StateSchema.from_sgd(sgd, prefix_service=True)
    assert set(prefixed.slots) == {"Flights_1.seating_class", "Flights_1.origin_city"}


def test_schema_values_are_found_in_any_casing_under_their_slot() -> None:
    ex = LexicalExtractor(schema=SCHEMA)
    found = _values(ex.entities("I'd like premium economy, and a full-size car please."))
    # the longest value wins over the one it contains; canonical casing; unique slot
    assert found == {"Premium Economy": "flight_class", "Full-size": "car_type"}
    assert _values(ex.entities("Just ECONOMY.")) == {"Economy": "flight_class"}


def test_ambiguous_digit_and_sentinel_values() -> None:
    ex = LexicalExtractor(schema=SCHEMA)
    # a value two slots share gets no slot; digits are left to the number pattern; sentinels
    # such as True/dontcare are never matched in text
    assert _values(ex.entities("From my checking account.")) == {"checking": None}
    ents = ex.entities("2 passengers, true, dontcare")
    assert not _values(ents)
    assert any(e.kind == "number" and e.value == "2" for e in ents)


def test_schema_value_inside_a_longer_entity_still_counts() -> None:
    ex = LexicalExtractor(schema=StateSchema(slots={"category": ["Park"]}))
    ents = ex.entities("Meet me at 45 Park Lane.")
    assert ("address", "45 Park Lane") in {(e.kind, e.value) for e in ents}
    assert _values(ents) == {"Park": "category"}


def test_without_schema_no_value_is_filed_under_a_slot() -> None:
    assert all(e.slot is None for e in LexicalExtractor().entities("premium economy, checking"))


# ------------------------------------------------------------------ lower-case fallback


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("Find me a place in long beach.", "long beach"),
        ("I'm going to san francisco on the 3rd", "san francisco"),
        ("Some italian food would be nice", "italian"),
        ("I like comedy movies", "comedy"),
        ("At five pm please", "five pm"),
        ("afternoon 3:30 works", "afternoon 3:30"),
        ("I like blues or jazz", "blues"),
        ("tickets for mets vs braves", "mets vs braves"),
        ("Look around Toronto, Canada.", "Toronto, Canada"),
        ("from anaheim, ca to there", "anaheim, ca"),
        ("I am in New york.", "New york"),
    ],
)
def test_lowercase_fallback_finds_typed_values(text: str, value: str) -> None:
    found = [e.value for e in LexicalExtractor().entities(text, "user")]
    assert any(value in v for v in found), found  # "comedy movies" says "comedy" too


def test_lowercase_fallback_skips_function_words() -> None:
    ex = LexicalExtractor()
    text = "Thanks. I want to go there in the morning, ok, so in that area. Good food! Yes, please."
    got = {e.value.lower() for e in ex.entities(text, "user")}
    assert not got & {"go", "there", "the morning", "morning", "good", "area", "thanks", "ok, so"}
    assert not got & {"yes, please", "thanks.", "please"}
    # the assistant's values count as offered, the user's as stated
    offered = [e for e in ex.entities("We are in long beach.", "assistant") if e.kind == "value"]
    assert [(e.value, e.role) for e in offered] == [("long beach", "assistant")]
    off = LexicalExtractor(lowercase_values=False)
    assert not [e for e in off.entities("in long beach.", "user") if e.kind == "value"]


# ------------------------------------------------------------------ engine


def _dialogue(n_filler: int, turns: list[tuple[str, str]]) -> list[dict[str, Any]]:
    msgs: list[dict[str, Any]] = []
    for u, a in turns:
        msgs += [{"role": "user", "content": u}, {"role": "assistant", "content": a}]
    for i in range(n_filler):
        msgs += [
            {"role": "user", "content": f"Question {i} about the general terms and conditions?"},
            {"role": "assistant", "content": f"Answer {i}: the general terms apply as written."},
        ]
    msgs.append({"role": "user", "content": "So what did we settle?"})
    return msgs


def _memory(
    msgs: list[dict[str, Any]], *, schema: StateSchema | None = None, **cfg: Any
) -> tuple[MemoryEngine, MemoryRecord, str]:
    config = MemoryConfig(budget_tokens=cfg.pop("budget_tokens", 140), model=MODEL, **cfg)
    engine = MemoryEngine(config, ledger=Ledger(), schema=schema)
    record = engine.update(msgs[:-1], MemoryRecord())
    ctx = engine.build(msgs, record)
    assert ctx.tokens <= config.budget_tokens
    return engine, record, ctx.memory_text


def test_schema_makes_lowercase_categorical_values_survive_eviction() -> None:
    msgs = _dialogue(
        8,
        [("I want economy class, paid from savings.", "Booked, paid from savings.")],
    )
    _, _, with_schema = _memory(msgs, schema=SCHEMA)
    assert "Economy" in with_schema and "savings" in with_schema
    _, _, without = _memory(msgs, schema=None)
    assert "economy" not in without.lower()  # nothing generic recognises a bare class name


def test_compact_state_is_one_line_without_kind_labels() -> None:
    msgs = _dialogue(6, [("Table for 4 on March 3rd at 7 pm, at Sino in San Jose.", "Booked.")])
    _, _, text = _memory(msgs, max_recent_messages=2)
    header, *rest = text.splitlines()
    assert header.startswith("Memory of earlier turns: ")
    for v in ("4", "March 3rd", "7 pm", "Sino", "San Jose"):
        assert v in header
    assert "date:" not in text and "name:" not in text and not rest
    _, _, grouped = _memory(msgs, max_recent_messages=2, state_style="grouped")
    assert "date: March 3rd" in grouped
    # the compact rendering is the cheaper of the two
    assert count_tokens(text, MODEL) < count_tokens(grouped, MODEL)


def test_compact_state_drops_values_a_longer_one_contains() -> None:
    state = MemoryState()
    for i, value in enumerate(["Sacramento", "Sacramento, CA"]):
        state.add_entity(Entity(kind="name", value=value, confirmed=True, last_index=i), 10)
    engine = MemoryEngine(MemoryConfig(model=MODEL), ledger=Ledger())
    assert [v for _, v in engine._fit_state(state, "", 100)] == ["Sacramento, CA"]
    state.entities.reverse()  # whichever comes first
    state.entities[0].last_index, state.entities[1].last_index = 5, 0
    assert [v for _, v in engine._fit_state(state, "", 100)] == ["Sacramento, CA"]


def test_a_newer_confirmed_value_supersedes_the_old_one_of_its_slot() -> None:
    msgs = _dialogue(
        8,
        [
            ("Economy please.", "Economy it is."),
            ("Actually make it business.", "Business class then."),
        ],
    )
    _, record, text = _memory(msgs, schema=SCHEMA)
    assert "Business" in text and "Economy" not in text
    # the old value is still in the persisted state (nothing is destroyed)
    assert any(e.value == "Economy" for e in record.state.entities)


def test_offered_values_age_out_but_confirmed_ones_stay() -> None:
    msgs = _dialogue(
        6,
        [
            ("I need a hotel in Boston.", "The Lenox Hotel has rooms."),
            ("Any other options?", "The Verb Hotel also has rooms."),
        ],
    )
    _, _, kept = _memory(msgs, budget_tokens=200)
    assert "Lenox Hotel" in kept and "Boston" in kept
    _, _, aged = _memory(msgs, budget_tokens=200, offered_max_age=6)
    assert "Lenox Hotel" not in aged and "Boston" in aged
    _, _, none = _memory(msgs, budget_tokens=200, unconfirmed_entities=False)
    assert "Verb Hotel" not in none and "Boston" in none


def test_compact_under_budget_sends_the_memory_when_it_is_smaller() -> None:
    msgs = _dialogue(
        2, [("Table for 4 at Sino in San Jose on March 3rd, please, somewhere quiet.", "Booked.")]
    )
    base: dict[str, Any] = {"budget_tokens": 2000, "max_recent_messages": 2}
    engine, record, text = _memory(msgs, compact_under_budget=True, **base)
    ctx = engine.build(msgs, record)
    assert ctx.uses_memory and ctx.tokens < ctx.full_tokens <= 2000
    assert "Sino" in text and len(ctx.indices) == 2
    # without the flag, a history within budget goes whole
    plain = MemoryEngine(MemoryConfig(model=MODEL, **base), ledger=Ledger()).build(msgs, record)
    assert not plain.uses_memory and plain.tokens == plain.full_tokens
    # a short history is sent whole: the memory would not be smaller
    short = msgs[:1]
    assert not engine.build(short, MemoryRecord()).uses_memory
    with pytest.raises(ValidationError, match="max_recent_messages"):
        MemoryConfig(compact_under_budget=True)


def test_schema_and_custom_extractor_are_exclusive() -> None:
    with pytest.raises(ValueError, match="schema"):
        MemoryEngine(schema=SCHEMA, extractor=LexicalExtractor())


def test_record_with_slots_round_trips_and_old_records_load() -> None:
    ex = LexicalExtractor(schema=SCHEMA)
    state = ex.extract([Message(role="user", content="economy class")])
    rec = MemoryRecord(state=state)
    back = MemoryRecord.from_json(rec.to_json())
    assert back == rec and back.state.entities[0].slot == "flight_class"
    old = '{"version": 1, "state": {"entities": [{"kind": "date", "value": "today"}]}}'
    assert MemoryRecord.from_json(old).state.entities[0].slot is None
