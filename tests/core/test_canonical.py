"""Tests of tokenlean_core.canonical: canonicalize, canonical_key and layout_prompt."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tokenlean_core import (
    CanonicalConfig,
    LaidOutPrompt,
    MissingDependencyError,
    TokenleanError,
    canonical_key,
    canonicalize,
    layout_prompt,
    normalize_messages,
)
from tokenlean_core.canonical import DEFAULT_VOLATILE_PATTERNS

# --------------------------------------------------------------------------------------------------
# Volatile patterns
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # ISO-8601 date-times, in full, as one placeholder
        ("at 2026-11-22T11:29:30Z now", "at <TIMESTAMP> now"),
        ("at 2026-11-22 11:29:30.123+01:00 now", "at <TIMESTAMP> now"),
        ("at 2026-11-22T11:29:30-0500.", "at <TIMESTAMP>."),
        ("at 2026-11-22T11:29 now", "at <TIMESTAMP> now"),
        ("at 2026-11-22t11:29:30z", "at <TIMESTAMP>"),
        ("at 2026-11-22T11:29:30,5Z", "at <TIMESTAMP>"),
        # RFC 2822-ish
        ("Date: Sun, 22 Nov 2026 11:29:30 GMT", "Date: <TIMESTAMP>"),
        ("Date: sun, 22 nov 2026 11:29:30 gmt", "Date: <TIMESTAMP>"),
        ("sent 2 Nov 2026 09:05 +0100 ok", "sent <TIMESTAMP> ok"),
        ("sent Mon 2 Nov 2026 09:05:01 EST", "sent <TIMESTAMP>"),
        # dates and clock times on their own
        ("due 2026-11-22.", "due <DATE>."),
        ("(2026-01-05)", "(<DATE>)"),
        ("at 11:29:30 sharp", "at <TIME> sharp"),
        ("at 9:05:00.250", "at <TIME>"),
        ("at 23:59:60", "at <TIME>"),
        # UUIDs, any case
        ("id 123e4567-e89b-12d3-a456-426614174000", "id <UUID>"),
        ("id 123E4567-E89B-12D3-A456-426614174000.", "id <UUID>."),
        ("{123e4567-e89b-12d3-a456-426614174000}", "{<UUID>}"),
        # long hex ids
        ("oid 507f1f77bcf86cd799439011", "oid <HEX>"),
        ("sha 9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08", "sha <HEX>"),
        # epoch seconds and millis
        ("ts=1700000000", "ts=<EPOCH>"),
        ("ts 1700000000123 ms", "ts <EPOCH> ms"),
        ("ts 1700000000.25.", "ts <EPOCH>."),
    ],
)
def test_volatile_patterns(text: str, expected: str) -> None:
    assert canonicalize(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "call 5551234567",  # a 10-digit phone number, not an epoch (does not start with 1)
        "n = 17000000001",  # 11 digits
        "ratio 12:30",  # no seconds: not surely a time
        "2026-13-01",  # no month 13
        "2026-11-32",
        "v2026-11-22",  # glued to a letter
        "file_2026-11-22",
        "x 1.11:29:30",
        "abcdefabcdefabcdefabcdefab",  # letters only: a word, not an id
        "123456789012345678901234567890",  # digits only: a number, not an id
        "507f1f77bcf86cd79943901",  # 23 hex digits
        "123e4567-e89b-12d3-a456-42661417400",  # UUID one digit short
        "version 1.2.3",
        "24:00:00",
    ],
)
def test_values_that_are_not_volatile_are_kept(text: str) -> None:
    assert canonicalize(text) == text


def test_full_timestamp_is_replaced_before_its_date_and_time_parts() -> None:
    out = canonicalize("2026-11-22T11:29:30Z and 2026-11-22 and 11:29:30")
    assert out == "<TIMESTAMP> and <DATE> and <TIME>"
    assert "<DATE>T" not in out


def test_same_prompt_at_different_times_canonicalises_the_same() -> None:
    a = "Now is 2026-11-22T11:29:30Z (epoch 1700000000). Request 3f2b1c4e-0000-4000-8000-000000000001."
    b = "Now is 2027-01-02T00:00:01Z (epoch 1800000000). Request 9a8b7c6d-1111-4111-9111-111111111111."
    assert canonicalize(a) == canonicalize(b)


def test_volatile_patterns_can_be_disabled() -> None:
    cfg = CanonicalConfig(volatile_patterns=())
    assert canonicalize("at 2026-11-22T11:29:30Z", cfg) == "at 2026-11-22T11:29:30Z"


def test_extra_patterns_run_after_the_defaults() -> None:
    cfg = CanonicalConfig.with_extra_patterns({r"req_[A-Za-z0-9]{8}": "<REQ>"})
    assert cfg.volatile_patterns == DEFAULT_VOLATILE_PATTERNS
    assert cfg.extra_patterns == ((r"req_[A-Za-z0-9]{8}", "<REQ>"),)
    assert canonicalize("req_AbCd1234 at 2026-11-22", cfg) == "<REQ> at <DATE>"
    # a pair sequence works too, and placeholders are literal (no backreferences)
    cfg2 = CanonicalConfig(extra_patterns=((r"(k)ey-\d+", r"\1<KEY>"),))
    assert canonicalize("key-12", cfg2) == r"\1<KEY>"


def test_extra_pattern_with_whitespace_placeholder_stays_idempotent() -> None:
    cfg = CanonicalConfig.with_extra_patterns([("SECRET", "  [redacted]  ")])
    once = canonicalize("a SECRET b", cfg)
    assert once == "a [redacted] b"
    assert canonicalize(once, cfg) == once


# --------------------------------------------------------------------------------------------------
# Configuration validation
# --------------------------------------------------------------------------------------------------


def test_bad_regex_is_reported_with_the_pattern() -> None:
    with pytest.raises(TokenleanError, match=re.escape("'(unclosed'")):
        CanonicalConfig(extra_patterns=(("(unclosed", "<X>"),))
    with pytest.raises(TokenleanError, match=re.escape("'[z-a]'")):
        CanonicalConfig.with_extra_patterns({"[z-a]": "<X>"})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"extra_patterns": (("x*", "<X>"),)}, "empty string"),
        ({"extra_patterns": (("X", "<X>"),)}, "itself matched"),
        ({"extra_patterns": (("a", "b", "c"),)}, "pairs"),
        ({"extra_patterns": ((1, "<X>"),)}, "pairs"),
        ({"extra_patterns": "abc"}, "pairs"),
        ({"lowercase": "yes"}, "lowercase must be a bool"),
        ({"collapse_whitespace": 1}, "collapse_whitespace must be a bool"),
    ],
)
def test_config_validation(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(TokenleanError, match=message):
        CanonicalConfig(**kwargs)


def test_config_is_frozen_hashable_and_compares_by_settings() -> None:
    cfg = CanonicalConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.lowercase = True  # type: ignore[misc]
    assert cfg == CanonicalConfig()
    assert hash(cfg) == hash(CanonicalConfig())
    assert cfg != CanonicalConfig(lowercase=True)
    # lists are accepted and stored as tuples
    listed = CanonicalConfig(extra_patterns=[["abc", "<ABC>"]])  # type: ignore[arg-type]
    assert listed.extra_patterns == (("abc", "<ABC>"),)
    assert dataclasses.replace(cfg, lowercase=True).lowercase is True


def test_config_must_be_a_canonical_config() -> None:
    with pytest.raises(TokenleanError, match="CanonicalConfig"):
        canonicalize("x", {"lowercase": True})  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------
# Whitespace, Unicode, case
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a    b", "a b"),
        ("a\t\tb", "a b"),
        ("a \t b", "a b"),
        ("a\u00a0\u2003b", "a b"),  # other horizontal whitespace too
        ("a   \nb", "a\nb"),  # trailing spaces per line
        ("a\n\n\n\n\nb", "a\n\nb"),  # 3+ newlines -> 2
        ("a\n\nb", "a\n\nb"),  # 2 newlines are kept
        ("a\r\nb\rc", "a\nb\nc"),
        ("   a b   \n\n  ", "a b"),  # both ends stripped
        ("a\n \n \n \nb", "a\n\nb"),  # blank lines holding spaces count as blank
        ("  indented\n    more", "indented\n more"),
    ],
)
def test_whitespace_rules(text: str, expected: str) -> None:
    assert canonicalize(text) == expected


def test_whitespace_collapsing_can_be_disabled() -> None:
    cfg = CanonicalConfig(collapse_whitespace=False)
    assert canonicalize("  a    b  \n\n\n\n", cfg) == "  a    b  \n\n\n\n"


def test_unicode_nfc() -> None:
    decomposed = "cafe\u0301"
    assert canonicalize(decomposed) == "caf\u00e9"
    assert canonicalize(decomposed, CanonicalConfig(unicode_nfc=False)) == decomposed


def test_lowercase_is_off_by_default() -> None:
    assert canonicalize("Hello World") == "Hello World"
    cfg = CanonicalConfig(lowercase=True)
    assert canonicalize("Hello World at 2026-11-22", cfg) == "hello world at <date>"
    assert canonicalize('{"B": "X", "a": 1}', cfg) == '{"a":1,"b":"x"}'


# --------------------------------------------------------------------------------------------------
# JSON
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"b": 1, "a": 2}', '{"a":2,"b":1}'),
        (
            '  {\n  "b": {"d": 1, "c": [3, 2]},\n  "a": null\n}  ',
            '{"a":null,"b":{"c":[3,2],"d":1}}',
        ),
        ('[{"y": 1, "x": 2}, "s"]', '[{"x":2,"y":1},"s"]'),
        ('{"price": 1.50, "n": 1e2}', '{"n":100.0,"price":1.5}'),
        ('{"name": "caf\\u00e9"}', '{"name":"café"}'),  # not re-escaped
        ('{"at": "2026-11-22T11:29:30Z", "id": 1700000000}', '{"at":"<TIMESTAMP>","id":"<EPOCH>"}'),
        ('{"text": "a   b  "}', '{"text":"a b"}'),  # strings are canonicalised too
        ('{"x": 1e999}', '{"x":"Infinity"}'),  # not JSON any more: kept as a stable string
    ],
)
def test_json_is_redumped_with_sorted_keys(text: str, expected: str) -> None:
    assert canonicalize(text) == expected


def test_json_key_order_does_not_matter() -> None:
    a = {"model": "x", "messages": [{"role": "user", "content": "hi"}], "n": 1}
    b = {"n": 1, "messages": [{"content": "hi", "role": "user"}], "model": "x"}
    assert canonicalize(json.dumps(a, indent=2)) == canonicalize(json.dumps(b))


@pytest.mark.parametrize(
    "text",
    [
        '{"a": 1,}',  # trailing comma
        "{not json}",
        '{"a": 1} trailing',
        "[1, 2",
        '"just a string"',  # a JSON scalar is left as text
        "42",
    ],
)
def test_invalid_or_scalar_json_is_left_alone(text: str) -> None:
    assert canonicalize(text) == text


def test_fenced_json_blocks_are_redumped() -> None:
    text = 'Result:\n```json\n{\n  "b": 1,\n  "a": [1, 2]\n}\n```\nThanks.'
    assert canonicalize(text) == 'Result:\n```json\n{"a":[1,2],"b":1}\n```\nThanks.'
    # a block that is not valid JSON stays as it is; other blocks are still handled
    mixed = '```json\n{bad}\n```\n\n```JSON {"z": 0, "y": 1}```'
    assert canonicalize(mixed) == '```json\n{bad}\n```\n\n```json\n{"y":1,"z":0}\n```'


def test_json_sorting_can_be_disabled() -> None:
    cfg = CanonicalConfig(sort_json_keys=False)
    assert canonicalize('{"b": 1, "a": 2}', cfg) == '{"b": 1, "a": 2}'


def test_deeply_nested_or_huge_json_does_not_raise() -> None:
    deep = "[" * 100_000 + "]" * 100_000
    assert canonicalize(deep) == deep
    huge = "[" + "9" * 5000 + "]"  # beyond Python's int-string conversion limit
    assert canonicalize(huge) == huge


# --------------------------------------------------------------------------------------------------
# Conversations
# --------------------------------------------------------------------------------------------------


def _openai_conversation(now: str = "2026-11-22T11:29:30Z", call_id: str = "call_1") -> list[Any]:
    return [
        {"role": "system", "content": f"You are   helpful.\n\n\n\nNow: {now}"},
        {"role": "user", "content": "Weather in Paris?", "name": "alice"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": call_id,
                    "type": "function",
                    "function": {
                        "name": "get_weather",
                        "arguments": json.dumps({"unit": "c", "city": "Paris"}),
                    },
                }
            ],
        },
        {"role": "tool", "tool_call_id": call_id, "content": '{"temp": 21, "unit": "c"}'},
        {"role": "assistant", "content": "It is 21C."},
    ]


def _langchain_conversation() -> list[Any]:
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage

    return [
        SystemMessage("You are helpful.\n\nNow: 2027-01-01T00:00:00Z"),
        HumanMessage("Weather in Paris?", name="alice"),
        AIMessage(
            "",
            tool_calls=[
                {"name": "get_weather", "args": {"city": "Paris", "unit": "c"}, "id": "z9"}
            ],
        ),
        ToolMessage('{"unit":"c","temp":21}', tool_call_id="z9"),
        AIMessage("It is 21C.  "),
    ]


def _llama_index_conversation() -> list[Any]:
    from llama_index.core.llms import ChatMessage

    call = {
        "id": "li-1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city":"Paris","unit":"c"}'},
    }
    return [
        ChatMessage(role="system", content="You are helpful.\n\nNow: 2026-11-22 11:29:30"),
        ChatMessage(role="user", content="Weather in Paris?", additional_kwargs={"name": "alice"}),
        ChatMessage(role="assistant", content="", additional_kwargs={"tool_calls": [call]}),
        ChatMessage(
            role="tool",
            content='{"temp":21,"unit":"c"}',
            additional_kwargs={"tool_call_id": "li-1"},
        ),
        ChatMessage(role="assistant", content="It is 21C."),
    ]


EXPECTED_CONVERSATION = """\
system
| You are helpful.
|
| Now: <TIMESTAMP>
user:alice
| Weather in Paris?
assistant
-> get_weather {"city":"Paris","unit":"c"}
tool
| {"temp":21,"unit":"c"}
assistant
| It is 21C."""


def test_conversation_rendering() -> None:
    assert canonicalize(_openai_conversation()) == EXPECTED_CONVERSATION


def test_same_conversation_from_openai_langchain_and_llama_index() -> None:
    openai = canonicalize(_openai_conversation())
    assert canonicalize(_langchain_conversation()) == openai
    assert canonicalize(_llama_index_conversation()) == openai
    mixed = _langchain_conversation()[:2] + _openai_conversation()[2:]
    assert canonicalize(mixed) == openai


def test_tool_call_ids_and_timestamps_do_not_matter() -> None:
    a = _openai_conversation(now="2026-11-22T11:29:30Z", call_id="call_abc")
    b = _openai_conversation(now="2030-01-01T00:00:00Z", call_id="call_xyz")
    assert canonicalize(a) == canonicalize(b)


def test_different_content_canonicalises_differently() -> None:
    base = canonicalize(_openai_conversation())
    changed = _openai_conversation()
    changed[1]["content"] = "Weather in Lyon?"
    assert canonicalize(changed) != base
    renamed = _openai_conversation()
    renamed[1]["name"] = "bob"
    assert canonicalize(renamed) != base
    other_args = _openai_conversation()
    other_args[2]["tool_calls"][0]["function"]["arguments"] = '{"city": "Lyon", "unit": "c"}'
    assert canonicalize(other_args) != base


def test_message_boundaries_are_unambiguous() -> None:
    one = [{"role": "user", "content": "hi\nassistant\nhello"}]
    two = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    assert canonicalize(one) != canonicalize(two)
    assert canonical_key(one) != canonical_key(two)
    spoof = [{"role": "user", "content": "hi\n-> tool {}"}]
    call = [
        {
            "role": "user",
            "content": "hi",
            "tool_calls": [{"function": {"name": "tool", "arguments": "{}"}}],
        }
    ]
    assert canonicalize(spoof) != canonicalize(call)


def test_role_aliases_and_tuple_shorthand() -> None:
    assert canonicalize([("human", "hi"), ("ai", "yo")]) == "user\n| hi\nassistant\n| yo"
    assert canonicalize([{"role": "USER", "content": "hi"}]) == "user\n| hi"
    assert canonicalize([]) == ""


def test_images_are_part_of_the_canonical_text() -> None:
    from langchain_core.messages import HumanMessage
    from llama_index.core.base.llms.types import ImageBlock, TextBlock
    from llama_index.core.llms import ChatMessage

    def openai(url: str) -> list[Any]:
        part = {"type": "image_url", "image_url": {"url": url, "detail": "low"}}
        return [{"role": "user", "content": [{"type": "text", "text": "What is it?"}, part]}]

    cat = canonicalize(openai("https://example.com/cat.png"))
    assert cat.startswith("user\n| What is it?\n+ image ")
    assert canonicalize(openai("https://example.com/dog.png")) != cat
    parts: list[str | dict[Any, Any]] = [
        {"type": "text", "text": "What is it?"},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
    ]
    assert canonicalize([HumanMessage(content=parts)]) == cat
    blocks = [TextBlock(text="What is it?"), ImageBlock(url="https://example.com/cat.png")]
    assert canonicalize([ChatMessage(role="user", blocks=blocks)]) == cat


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"role": "user", "content": "hi"}, "single message"),
        (b"bytes", "bytes"),
        (42, "str or a sequence"),
        ([{"content": "no role"}], "no 'role'"),
        ([object()], "message 0"),
    ],
)
def test_bad_values_raise_tokenlean_error(value: Any, message: str) -> None:
    with pytest.raises(TokenleanError, match=message):
        canonicalize(value)


def test_single_langchain_message_is_rejected() -> None:
    from langchain_core.messages import HumanMessage

    with pytest.raises(TokenleanError, match="single message"):
        canonicalize(HumanMessage("hi"))


def test_langchain_prompt_value_is_accepted() -> None:
    from langchain_core.prompts import ChatPromptTemplate

    prompt = ChatPromptTemplate.from_messages([("system", "Be brief."), ("human", "{q}")])
    value = prompt.invoke({"q": "Hi  there"})
    assert canonicalize(value) == "system\n| Be brief.\nuser\n| Hi there"


# --------------------------------------------------------------------------------------------------
# Cache keys
# --------------------------------------------------------------------------------------------------


def test_key_shape_and_privacy() -> None:
    key = canonical_key("my secret prompt", model="gpt-4o")
    assert re.fullmatch(r"[0-9a-f]{64}", key)
    assert "secret" not in key


def test_key_is_insensitive_to_formatting_of_the_same_prompt() -> None:
    a = canonical_key("Hello   world\n\n\n at 2026-11-22", model="m")
    b = canonical_key("Hello world\n\n at 2030-01-01 ", model="m")
    assert a == b
    assert canonical_key(_openai_conversation(), model="m") == canonical_key(
        _langchain_conversation(), model="m"
    )


def test_key_is_sensitive_to_text_model_params_and_tenant() -> None:
    base = canonical_key("q", model="gpt-4o", params={"temperature": 0.2}, tenant="acme")
    others = [
        canonical_key("q2", model="gpt-4o", params={"temperature": 0.2}, tenant="acme"),
        canonical_key("q", model="gpt-4o-mini", params={"temperature": 0.2}, tenant="acme"),
        canonical_key("q", model=None, params={"temperature": 0.2}, tenant="acme"),
        canonical_key("q", model="gpt-4o", params={"temperature": 0.3}, tenant="acme"),
        canonical_key("q", model="gpt-4o", params={"temperature": 0.2, "seed": 1}, tenant="acme"),
        canonical_key("q", model="gpt-4o", params={"temperature": 0.2}, tenant="globex"),
        canonical_key("q", model="gpt-4o", params={"temperature": 0.2}),
    ]
    assert len({base, *others}) == len(others) + 1


def test_key_parts_cannot_be_shifted_into_each_other() -> None:
    assert canonical_key("ab", model="c") != canonical_key("a", model="bc")
    assert canonical_key("a", model="b", tenant=None) != canonical_key("a", model=None, tenant="b")
    assert canonical_key("a", model="") != canonical_key("a", model=None)


def test_key_is_insensitive_to_param_order_float_formatting_and_none() -> None:
    a = canonical_key(
        "q", model="m", params={"temperature": 0.7, "max_tokens": 100, "top_p": 1, "stop": None}
    )
    b = canonical_key(
        "q", model="m", params={"top_p": 1.0, "max_tokens": 100.0, "temperature": float("0.70")}
    )
    c = canonical_key(
        "q", model="m", params={"max_tokens": 100, "temperature": 0.7000000000000001, "top_p": 1}
    )
    assert a == b == c
    assert canonical_key("q", params={"t": 0.1 + 0.2}) == canonical_key("q", params={"t": 0.3})
    assert canonical_key("q", params={}) == canonical_key("q", params=None)
    assert canonical_key("q", params={"x": True}) != canonical_key("q", params={"x": 1})


def test_key_params_accept_nested_json_and_pydantic_models() -> None:
    from pydantic import BaseModel

    class Answer(BaseModel):
        text: str

    nested = {"response_format": {"type": "json_object"}, "stop": ["\n", "END"]}
    assert canonical_key("q", params=nested) == canonical_key(
        "q", params={"stop": ("\n", "END"), "response_format": {"type": "json_object"}}
    )
    assert canonical_key("q", params={"response_format": Answer}) == canonical_key(
        "q", params={"response_format": Answer}
    )
    assert canonical_key("q", params={"tags": {"b", "a"}}) == canonical_key(
        "q", params={"tags": {"a", "b"}}
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"params": {"fn": object()}}, r"params\[fn\]"),
        ({"params": [("temperature", 0.1)]}, "params must be a mapping"),
        ({"model": 4}, "model must be a str"),
        ({"tenant": 7}, "tenant must be a str"),
    ],
)
def test_key_validation(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(TokenleanError, match=message):
        canonical_key("q", **kwargs)


def test_key_depends_on_the_config_only_through_the_text() -> None:
    lower = CanonicalConfig(lowercase=True)
    assert canonical_key("Hello", config=lower) == canonical_key("hello")
    assert canonical_key("Hello") != canonical_key("hello")


# --------------------------------------------------------------------------------------------------
# Layout
# --------------------------------------------------------------------------------------------------

WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
CLOCK_TOOL: dict[str, Any] = {
    "name": "clock",
    "description": "Time",
    "input_schema": {"type": "object"},
}


def _layout(**overrides: Any) -> LaidOutPrompt:
    kwargs: dict[str, Any] = {
        "system": "You are a helpful assistant.",
        "tools": [WEATHER_TOOL, CLOCK_TOOL],
        "stable_context": ["Policy: be polite."],
        "history": _langchain_conversation()[1:],
        "dynamic_context": ["Retrieved: Paris is in France."],
        "question": "And tomorrow?",
    }
    kwargs.update(overrides)
    return layout_prompt(**kwargs)


def test_layout_order() -> None:
    lp = _layout()
    roles = [m["role"] for m in lp.messages]
    assert roles == ["system", "user", "assistant", "tool", "assistant", "user"]
    system = lp.messages[0]["content"]
    assert system.startswith("You are a helpful assistant.\n\n<documents>")
    assert "Policy: be polite." in system
    final = lp.messages[-1]["content"]
    assert final.index("Retrieved: Paris is in France.") < final.index("And tomorrow?")
    assert final.endswith("And tomorrow?")
    assert lp.system_count == 1
    assert lp.history_count == 4
    # history converted back to OpenAI dicts, with tool calls and tool call ids
    assistant, tool = lp.messages[2], lp.messages[3]
    assert assistant["content"] is None
    assert assistant["tool_calls"][0]["id"] == "z9"
    assert assistant["tool_calls"][0]["function"]["name"] == "get_weather"
    assert json.loads(assistant["tool_calls"][0]["function"]["arguments"]) == {
        "city": "Paris",
        "unit": "c",
    }
    assert tool == {"role": "tool", "tool_call_id": "z9", "content": '{"unit":"c","temp":21}'}
    assert lp.messages[1]["name"] == "alice"


def test_layout_tools_are_openai_format_sorted_by_name() -> None:
    lp = _layout()
    assert [t["function"]["name"] for t in lp.tools] == ["clock", "get_weather"]
    assert lp.tools[0] == {
        "type": "function",
        "function": {"name": "clock", "description": "Time", "parameters": {"type": "object"}},
    }
    assert lp.tools[1] == WEATHER_TOOL
    assert lp.tools[1] is not WEATHER_TOOL  # a copy


def test_layout_texts_are_sent_as_given() -> None:
    lp = _layout(system="Now:  2026-11-22T11:29:30Z", question="Why  so?")
    assert lp.messages[0]["content"].startswith("Now:  2026-11-22T11:29:30Z")
    assert lp.messages[-1]["content"].endswith("Why  so?")


def test_stable_prefix_and_hash() -> None:
    lp = _layout()
    assert lp.stable_prefix.startswith("system\n| You are a helpful assistant.")
    assert "Policy: be polite." in lp.stable_prefix
    assert "\ntools\n" in lp.stable_prefix
    assert "Retrieved" not in lp.stable_prefix
    assert "tomorrow" not in lp.stable_prefix
    assert re.fullmatch(r"[0-9a-f]{32}", lp.prefix_hash)
    assert lp.openai_kwargs() == {"prompt_cache_key": lp.prefix_hash}
    # the hash follows the stable part only
    same = _layout(history=[], dynamic_context=["other"], question="other?")
    assert same.prefix_hash == lp.prefix_hash
    assert _layout(tools=[CLOCK_TOOL, WEATHER_TOOL]).prefix_hash == lp.prefix_hash
    assert _layout(system="Different.").prefix_hash != lp.prefix_hash
    assert _layout(stable_context=["Other policy."]).prefix_hash != lp.prefix_hash
    assert _layout(tools=[WEATHER_TOOL]).prefix_hash != lp.prefix_hash


def test_layout_without_system_or_question() -> None:
    lp = layout_prompt(history=[{"role": "user", "content": "hi"}])
    assert lp.messages == [{"role": "user", "content": "hi"}]
    assert lp.system_count == 0
    assert lp.stable_prefix == ""
    assert lp.tools == []
    only_docs = layout_prompt(stable_context=["doc"], dynamic_context=["ctx"])
    assert only_docs.messages[0]["role"] == "system"
    assert only_docs.messages[0]["content"].startswith("<documents>")
    assert only_docs.messages[-1]["content"].startswith("<documents>")
    assert layout_prompt().messages == []


def test_layout_accepts_framework_documents() -> None:
    from langchain_core.documents import Document
    from llama_index.core.schema import TextNode

    lp = layout_prompt(
        stable_context=[Document(page_content="lc doc")],
        dynamic_context=[TextNode(text="li node")],
        question="q",
    )
    assert "lc doc" in lp.messages[0]["content"]
    assert "li node" in lp.messages[1]["content"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"question": 42}, "question must be a str"),
        ({"question": ["a"]}, "question must be a str"),
        ({"system": {"text": "x"}}, "system must be a str"),
        ({"provider": "gemini"}, "provider must be one of"),
        ({"stable_context": "one doc"}, "stable_context must be a sequence"),
        ({"dynamic_context": [1]}, r"dynamic_context\[0\]"),
        ({"tools": [{"description": "no name"}]}, r"tools\[0\]"),
        ({"tools": [42]}, r"tools\[0\]"),
        ({"tools": [CLOCK_TOOL, CLOCK_TOOL]}, "share a name"),
        ({"tools": WEATHER_TOOL}, "tools must be a sequence"),
        ({"history": {"role": "user", "content": "x"}}, "single message"),
        ({"history": [{"role": "tool", "content": "x"}]}, "without tool_call_id"),
        (
            {
                "history": [
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": "http://x/y.png"}}],
                    }
                ]
            },
            "non-text parts",
        ),
    ],
)
def test_layout_validation(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(TokenleanError, match=message):
        layout_prompt(**kwargs)


def test_layout_pairs_tool_results_without_ids_and_fills_missing_call_ids() -> None:
    history = [
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"function": {"name": "a", "arguments": "{}"}},
                {"function": {"name": "b", "arguments": ""}},
            ],
        },
        {"role": "tool", "content": "ra"},
        {"role": "tool", "content": "rb"},
    ]
    lp = layout_prompt(history=history)
    ids = [c["id"] for c in lp.messages[0]["tool_calls"]]
    assert ids == ["call_0_0", "call_0_1"]
    assert [m["tool_call_id"] for m in lp.messages[1:]] == ids
    assert lp.messages[0]["tool_calls"][1]["function"]["arguments"] == "{}"


def _breakpoints(value: Any) -> list[Any]:
    found: list[Any] = []
    if isinstance(value, dict):
        if "cache_control" in value:
            found.append(value)
        for k, v in value.items():
            if k != "cache_control":
                found.extend(_breakpoints(v))
    elif isinstance(value, list):
        for v in value:
            found.extend(_breakpoints(v))
    return found


def test_anthropic_request_breakpoints() -> None:
    lp = _layout(provider="anthropic")
    req = lp.anthropic_request()
    assert set(req) == {"system", "messages", "tools"}
    marks = _breakpoints(req)
    assert len(marks) == 3 <= 4
    for mark in marks:
        assert mark["cache_control"] == {"type": "ephemeral"}
    # 1: the system block, which ends the stable prefix
    assert req["system"] == [
        {
            "type": "text",
            "text": lp.messages[0]["content"],
            "cache_control": {"type": "ephemeral"},
        }
    ]
    # 2: the last tool, in Anthropic's format
    assert [t["name"] for t in req["tools"]] == ["clock", "get_weather"]
    assert "cache_control" not in req["tools"][0]
    assert req["tools"][-1]["cache_control"] == {"type": "ephemeral"}
    assert req["tools"][1]["input_schema"] == WEATHER_TOOL["function"]["parameters"]
    # 3: the last content block of the history (the assistant's "It is 21C.")
    msgs = req["messages"]
    assert [m["role"] for m in msgs] == ["user", "assistant", "user", "assistant", "user"]
    assert msgs[3]["content"] == [
        {"type": "text", "text": "It is 21C.  ", "cache_control": {"type": "ephemeral"}}
    ]
    assert "cache_control" not in msgs[-1]["content"][-1]  # the question is not cached
    assert msgs[1]["content"] == [
        {
            "type": "tool_use",
            "id": "z9",
            "name": "get_weather",
            "input": {"city": "Paris", "unit": "c"},
        }
    ]
    assert msgs[2]["content"] == [
        {"type": "tool_result", "tool_use_id": "z9", "content": '{"unit":"c","temp":21}'}
    ]
    assert msgs[-1]["content"][-1]["text"].endswith("And tomorrow?")
    assert lp.request_kwargs() == req


def test_anthropic_request_without_tools_or_history() -> None:
    req = layout_prompt(system="S", question="Q").anthropic_request()
    assert "tools" not in req
    assert len(_breakpoints(req)) == 1
    assert req["messages"] == [{"role": "user", "content": [{"type": "text", "text": "Q"}]}]
    bare = layout_prompt(question="Q").anthropic_request()
    assert "system" not in bare
    assert _breakpoints(bare) == []


def test_anthropic_request_merges_turns_and_moves_history_system_messages() -> None:
    history = [
        {"role": "system", "content": "Extra rule."},
        {"role": "user", "content": "Run both."},
        {
            "role": "assistant",
            "content": "On it.",
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "a", "arguments": "{}"}},
                {"id": "c2", "type": "function", "function": {"name": "b", "arguments": "{}"}},
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "A"},
        {"role": "tool", "tool_call_id": "c2", "content": "B"},
    ]
    req = layout_prompt(system="Main.", history=history, question="Summarise.").anthropic_request()
    assert [b["text"] for b in req["system"]] == ["Main.", "Extra rule."]
    assert "cache_control" in req["system"][0]
    assert "cache_control" not in req["system"][1]
    msgs = req["messages"]
    assert [m["role"] for m in msgs] == ["user", "assistant", "user"]
    assert [b["type"] for b in msgs[1]["content"]] == ["text", "tool_use", "tool_use"]
    # both tool results and the question share one user turn, tool results first; the
    # breakpoint sits on the last history block (the second tool result), not on the question
    last = msgs[2]["content"]
    assert [b["type"] for b in last] == ["tool_result", "tool_result", "text"]
    assert "cache_control" in last[1]
    assert "cache_control" not in last[2]
    assert len(_breakpoints(req)) == 2


def test_anthropic_request_rejects_non_json_tool_arguments() -> None:
    history = [
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "not json"}}],
        }
    ]
    with pytest.raises(TokenleanError, match="not JSON"):
        layout_prompt(history=history).anthropic_request()


def test_openai_request_kwargs() -> None:
    lp = _layout()
    kwargs = lp.request_kwargs()
    assert kwargs["messages"] == lp.messages
    assert kwargs["tools"] == lp.tools
    assert kwargs["prompt_cache_key"] == lp.prefix_hash


def test_to_langchain_round_trip() -> None:
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage

    lp = _layout()
    lc = lp.to_langchain()
    assert [type(m) for m in lc] == [
        SystemMessage,
        HumanMessage,
        AIMessage,
        ToolMessage,
        AIMessage,
        HumanMessage,
    ]
    assert normalize_messages(lc) == normalize_messages(lp.messages)
    assert canonicalize(lc) == canonicalize(lp.messages)
    ai = lc[2]
    assert isinstance(ai, AIMessage)
    assert ai.tool_calls[0]["args"] == {"city": "Paris", "unit": "c"}
    assert ai.tool_calls[0]["id"] == "z9"
    # and back through layout_prompt: the same messages
    again = layout_prompt(history=lc)
    assert again.messages == lp.messages


def test_to_langchain_without_langchain(monkeypatch: pytest.MonkeyPatch) -> None:
    lp = layout_prompt(system="S", question="Q")
    monkeypatch.setitem(sys.modules, "langchain_core.messages", None)
    with pytest.raises(MissingDependencyError, match="langchain-core"):
        lp.to_langchain()


def test_prefix_tokens() -> None:
    lp = _layout()
    assert lp.prefix_tokens("gpt-4o") > layout_prompt(system="S").prefix_tokens("gpt-4o") > 0


def test_module_imports_no_framework() -> None:
    code = (
        "import sys, tokenlean_core.canonical\n"
        "bad = [m for m in sys.modules if m.startswith(('langchain', 'llama_index'))]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --------------------------------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------------------------------

_FRAGMENTS = [
    "2026-11-22", "T", " ", "  ", "11:29:30", "9:05:00", "Z", "+01:00", ".123", "1700000000",
    "1700000000123", "123", "deadbeef" * 3, "123e4567-e89b-12d3-a456-426614174000", "-", ":",
    ".", "```json", "```", "{", "}", '"a"', '"B"', ",", "[", "]", "Sun, ", "22 Nov 2026", " GMT",
    "\n", "\n\n\n", "\t", "\r\n", "é", "e\u0301", "İ", "ß", "\u00a0", "\u2028", "\x85", "\x00",
    "NaN", "TRUE", "\\u0041", "\\", "<DATE>", "x", "_",
]  # fmt: skip
_texts = st.one_of(
    st.text(),
    st.lists(st.sampled_from(_FRAGMENTS), max_size=20).map("".join),
    st.text(alphabet=st.sampled_from(list('0123456789-:T .+Zabcdef{}[]",`\n\t<>')), max_size=60),
)
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=12,
)
_json_texts = st.builds(
    lambda value, indent, fenced: (
        f"```json\n{json.dumps(value, indent=indent)}\n```"
        if fenced
        else json.dumps(value, indent=indent)
    ),
    _json_values,
    st.sampled_from([None, 1, "\t"]),
    st.booleans(),
)
_configs = st.sampled_from(
    [
        CanonicalConfig(),
        CanonicalConfig(lowercase=True),
        CanonicalConfig(collapse_whitespace=False),
        CanonicalConfig(unicode_nfc=False, sort_json_keys=False),
    ]
)
_any_text = st.text(alphabet=st.characters(codec=None, exclude_categories=()))  # with surrogates
_settings = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_settings
@given(st.one_of(_texts, _json_texts), _configs)
def test_canonicalize_is_idempotent(text: str, config: CanonicalConfig) -> None:
    once = canonicalize(text, config)
    assert canonicalize(once, config) == once


@_settings
@given(_any_text)
def test_canonicalize_never_raises_on_any_text(text: str) -> None:
    out = canonicalize(text)
    assert isinstance(out, str)
    assert canonicalize(out) == out
    assert re.fullmatch(r"[0-9a-f]{64}", canonical_key(text, model="m", tenant=text))


@_settings
@given(
    _texts,
    st.dictionaries(
        st.text(max_size=8), st.one_of(st.none(), st.floats(), st.integers(), st.text()), max_size=4
    ),
    st.one_of(st.none(), st.text(max_size=8)),
)
def test_canonical_key_is_deterministic(
    text: str, params: dict[str, Any], tenant: str | None
) -> None:
    key = canonical_key(text, model="m", params=params, tenant=tenant)
    reordered = dict(reversed(list(params.items())))
    assert canonical_key(text, model="m", params=reordered, tenant=tenant) == key
    assert canonical_key(canonicalize(text), model="m", params=params, tenant=tenant) == key


@_settings
@given(
    st.lists(
        st.fixed_dictionaries(
            {"role": st.sampled_from(["user", "assistant", "system"]), "content": _texts}
        ),
        max_size=5,
    )
)
def test_conversation_keys_are_stable_across_representations(messages: list[Any]) -> None:
    from langchain_core.messages import convert_to_messages

    lc = convert_to_messages(messages)
    assert canonicalize(lc) == canonicalize(messages)
    assert canonical_key(lc) == canonical_key(messages)


def test_volatile_values_are_stripped_only_where_they_are_noise() -> None:
    def convo(today: str, asked: str) -> list[dict[str, str]]:
        return [
            {
                "role": "system",
                "content": f"Today is {today}. Request id 3f2b6a1e-9c4d-4e8f-a1b2-c3d4e5f60718.",
            },
            {"role": "user", "content": f"What happened on {asked}?"},
        ]

    # the system prompt's date and id are noise: same key
    assert canonical_key(convo("2026-11-22", "2020-01-01")) == canonical_key(
        convo("2026-11-23", "2020-01-01")
    )
    # the user's date is the question: different keys
    assert canonical_key(convo("2026-11-22", "2020-01-01")) != canonical_key(
        convo("2026-11-22", "2020-01-02")
    )
    everywhere = CanonicalConfig(volatile_roles=None)
    assert canonicalize(convo("2026-11-22", "2020-01-01"), everywhere) == canonicalize(
        convo("2026-11-22", "2020-01-02"), everywhere
    )
    # "human" is an alias of "user", and roles are case-insensitive
    assert "2020-01-01" in canonicalize(
        [{"role": "Human", "content": "on 2020-01-01"}], CanonicalConfig(volatile_roles=("SYSTEM",))
    )


def test_volatile_roles_validation() -> None:
    with pytest.raises(TokenleanError, match="volatile_roles"):
        CanonicalConfig(volatile_roles="system")  # type: ignore[arg-type]
