"""Tests for tokenlean_core.usage: provider parsers against recorded provider responses.

Every fixture under ``fixtures/usage/`` mirrors a provider's documented example (its ``_source`` key
says which; it is dropped before parsing). The expected numbers below are written out by hand from
the fixture and the convention in the module docstring:

* ``input_tokens`` is every prompt token, cache reads and writes included (Anthropic's
  ``input_tokens`` excludes them, so the parser adds them back);
* ``output_tokens`` includes reasoning (Gemini's ``thoughtsTokenCount`` is added to candidates).
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langchain_core.messages import AIMessage
from pydantic import BaseModel

from tokenlean_core.errors import TokenleanError, UsageParseError
from tokenlean_core.usage import Usage

FIXTURES = Path(__file__).parent / "fixtures" / "usage"

Parser = Callable[[Any], Usage]


def load(name: str) -> dict[str, Any]:
    """A fixture without its ``_source`` note, exactly as the provider sends it."""
    data = json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    assert data.pop("_source"), f"{name}.json must say which documented example it mirrors"
    return data


def numbers(u: Usage) -> tuple[int, int, int, int, int]:
    """(input, output, cache_read, cache_write, reasoning)."""
    return (
        u.input_tokens,
        u.output_tokens,
        u.cache_read_tokens,
        u.cache_write_tokens,
        u.reasoning_tokens,
    )


# ------------------------------------------------------------------ recorded fixtures

# (fixture, specific parser, expected (input, output, cache_read, cache_write, reasoning), source)
CASES: list[tuple[str, Parser, tuple[int, int, int, int, int], str]] = [
    # prompt_tokens already includes the 1920 cached; completion 300 includes reasoning 192
    ("openai_chat_completion", Usage.from_openai, (2006, 300, 1920, 0, 192), "openai"),
    ("openai_chat_stream_final_chunk", Usage.from_openai, (75, 1186, 0, 0, 1024), "openai"),
    ("openai_responses", Usage.from_openai, (1280, 612, 1024, 0, 448), "openai"),
    # Anthropic: 50 uncached + 100000 read + 556 written (= 456 5m + 100 1h) = 100606
    ("anthropic_message_cache", Usage.from_anthropic, (100606, 503, 100000, 556, 0), "anthropic"),
    ("anthropic_stream_message_start", Usage.from_anthropic, (25, 1, 0, 0, 0), "anthropic"),
    ("anthropic_stream_message_delta", Usage.from_anthropic, (0, 15, 0, 0, 0), "anthropic"),
    ("vllm_chat_completion_cached", Usage.from_vllm, (1152, 64, 1024, 0, 0), "vllm"),
    ("vllm_chat_completion_no_details", Usage.from_vllm, (28, 120, 0, 0, 0), "vllm"),
    # Gemini: output = 412 candidates + 1024 thoughts = 1436; prompt 2193 includes 2048 cached
    ("gemini_generate_content", Usage.from_gemini, (2193, 1436, 2048, 0, 1024), "gemini"),
    ("langchain_usage_metadata", Usage.from_langchain, (350, 240, 100, 200, 200), "langchain"),
    ("llamacpp_chat_completion", Usage.from_openai, (44, 48, 0, 0, 0), "openai"),
]


@pytest.mark.parametrize(("name", "parser", "expected", "source"), CASES, ids=[c[0] for c in CASES])
def test_fixture_specific_parser(
    name: str, parser: Parser, expected: tuple[int, int, int, int, int], source: str
) -> None:
    u = parser(load(name))
    assert numbers(u) == expected
    assert u.source == source
    assert u.exact is True
    assert u.total_tokens == expected[0] + expected[1]


@pytest.mark.parametrize(("name", "parser", "expected", "source"), CASES, ids=[c[0] for c in CASES])
def test_fixture_parse_without_hint_agrees(
    name: str, parser: Parser, expected: tuple[int, int, int, int, int], source: str
) -> None:
    payload = load(name)
    detected = Usage.parse(payload)
    assert numbers(detected) == expected
    assert numbers(detected) == numbers(parser(load(name)))
    assert payload == load(name), "parsing must not mutate the payload"


@pytest.mark.parametrize(
    ("name", "provider", "source"),
    [
        ("openai_chat_completion", "openai", "openai"),
        ("openai_responses", "azure", "openai"),
        ("anthropic_message_cache", "ANTHROPIC", "anthropic"),
        ("vllm_chat_completion_cached", "vllm", "vllm"),
        ("gemini_generate_content", "google", "gemini"),
        ("gemini_generate_content", "Gemini", "gemini"),
        ("langchain_usage_metadata", "langchain", "langchain"),
    ],
)
def test_parse_with_provider_hint(name: str, provider: str, source: str) -> None:
    u = Usage.parse(load(name), provider=provider)
    assert u.source == source
    expected = next(c[2] for c in CASES if c[0] == name)
    assert numbers(u) == expected


def test_parse_unknown_provider_names_the_field() -> None:
    with pytest.raises(UsageParseError) as info:
        Usage.parse(load("openai_chat_completion"), provider="cohere")
    assert info.value.field == "provider"


def test_provider_conventions_hold_on_the_fixtures() -> None:
    raw = load("anthropic_message_cache")["usage"]
    u = Usage.from_anthropic(load("anthropic_message_cache"))
    assert u.input_tokens == (
        raw["input_tokens"] + raw["cache_read_input_tokens"] + raw["cache_creation_input_tokens"]
    )
    assert u.uncached_input_tokens == raw["input_tokens"]

    meta = load("gemini_generate_content")["usageMetadata"]
    g = Usage.from_gemini(load("gemini_generate_content"))
    assert g.output_tokens == meta["candidatesTokenCount"] + meta["thoughtsTokenCount"]
    assert g.total_tokens == meta["totalTokenCount"]
    assert g.uncached_input_tokens == meta["promptTokenCount"] - meta["cachedContentTokenCount"]

    for name in ("openai_chat_completion", "openai_chat_stream_final_chunk", "openai_responses"):
        usage = load(name)["usage"]
        assert Usage.from_openai(load(name)).total_tokens == usage["total_tokens"]


def test_bare_usage_objects_parse_like_whole_responses() -> None:
    for name, parser, expected, _ in CASES:
        payload = load(name)
        if "usage" in payload and name != "anthropic_stream_message_delta":
            assert numbers(parser(payload["usage"])) == expected, name
            assert numbers(Usage.parse(payload["usage"])) == expected, name
    gemini = load("gemini_generate_content")["usageMetadata"]
    assert numbers(Usage.parse(gemini)) == (2193, 1436, 2048, 0, 1024)


def test_openai_cache_writes() -> None:
    """OpenAI reports prompt-cache writes as ``cache_write_tokens`` next to ``cached_tokens``
    (chat: prompt_tokens_details; Responses: input_tokens_details); they are part of the prompt."""
    chat = _with(OAI, "usage.prompt_tokens_details.cache_write_tokens", 64)
    assert numbers(Usage.from_openai(chat)) == (2006, 300, 1920, 64, 192)
    assert numbers(Usage.parse(chat)) == (2006, 300, 1920, 64, 192)
    assert Usage.from_openai(chat).uncached_input_tokens == 2006 - 1920 - 64
    resp = _with(RESP, "usage.input_tokens_details.cache_write_tokens", 200)
    assert numbers(Usage.from_openai(resp)) == (1280, 612, 1024, 200, 448)
    assert numbers(Usage.parse(resp)) == (1280, 612, 1024, 200, 448)


def test_anthropic_nested_cache_creation_only() -> None:
    """Without the flat ``cache_creation_input_tokens`` the nested 5m + 1h split is summed."""
    payload = load("anthropic_message_cache")
    del payload["usage"]["cache_creation_input_tokens"]
    u = Usage.from_anthropic(payload)
    assert numbers(u) == (100606, 503, 100000, 556, 0)
    assert numbers(Usage.parse(payload)) == numbers(u)


def test_anthropic_without_cache_fields_is_still_detected() -> None:
    payload = {"input_tokens": 12, "output_tokens": 3}  # Anthropic usage: never has total_tokens
    assert Usage.parse(payload).source == "anthropic"
    assert numbers(Usage.parse(payload)) == (12, 3, 0, 0, 0)


def test_gemini_snake_case_sdk_dict() -> None:
    snake = {
        "prompt_token_count": 2193,
        "candidates_token_count": 412,
        "cached_content_token_count": 2048,
        "thoughts_token_count": 1024,
        "total_token_count": 3629,
    }
    expected = (2193, 1436, 2048, 0, 1024)
    assert numbers(Usage.from_gemini({"usage_metadata": snake})) == expected
    assert numbers(Usage.parse({"usage_metadata": snake})) == expected
    assert numbers(Usage.from_gemini(snake)) == expected
    # regression: a bare snake_case usage_metadata was routed to the OpenAI parser and failed
    assert numbers(Usage.parse(snake)) == expected


# ------------------------------------------------------------------ real objects


LC_META: dict[str, Any] = {
    "input_tokens": 350,
    "output_tokens": 240,
    "total_tokens": 590,
    "input_token_details": {"audio": 10, "cache_creation": 200, "cache_read": 100},
    "output_token_details": {"audio": 10, "reasoning": 200},
}


def test_langchain_aimessage_itself() -> None:
    msg = AIMessage(content="x", usage_metadata=copy.deepcopy(LC_META))
    assert numbers(Usage.from_langchain(msg)) == (350, 240, 100, 200, 200)
    assert numbers(Usage.parse(msg)) == (350, 240, 100, 200, 200)
    assert Usage.parse(msg).source == "langchain"
    assert numbers(Usage.parse(msg, provider="langchain")) == (350, 240, 100, 200, 200)


def test_langchain_aimessage_dumped_to_a_dict() -> None:
    """Regression: ``AIMessage.model_dump()`` has a ``usage_metadata`` key, which was taken for
    Gemini's and silently parsed as zero tokens."""
    msg = AIMessage(content="x", usage_metadata=copy.deepcopy(LC_META))
    u = Usage.parse(msg.model_dump())
    assert numbers(u) == (350, 240, 100, 200, 200)
    assert u.source == "langchain"


def test_langchain_aimessage_without_usage() -> None:
    msg = AIMessage(content="x")
    for parse in (Usage.from_langchain, Usage.parse):
        with pytest.raises(UsageParseError) as info:
            parse(msg)
        assert info.value.field == "usage_metadata"


class _GeminiUsageMetadata(BaseModel):
    """Stand-in for google.genai.types.GenerateContentResponseUsageMetadata (snake_case fields)."""

    prompt_token_count: int | None = None
    candidates_token_count: int | None = None
    cached_content_token_count: int | None = None
    thoughts_token_count: int | None = None
    total_token_count: int | None = None


class _GeminiResponse(BaseModel):
    """Stand-in for google.genai.types.GenerateContentResponse: it has a ``usage_metadata``
    attribute, like LangChain's AIMessage."""

    usage_metadata: _GeminiUsageMetadata | None = None


def test_gemini_sdk_shaped_object_is_not_taken_for_langchain() -> None:
    """Regression: any object with a ``usage_metadata`` attribute went to the LangChain parser,
    which failed on a google-genai response."""
    resp = _GeminiResponse(
        usage_metadata=_GeminiUsageMetadata(
            prompt_token_count=2193,
            candidates_token_count=412,
            cached_content_token_count=2048,
            thoughts_token_count=1024,
            total_token_count=3629,
        )
    )
    assert numbers(Usage.parse(resp)) == (2193, 1436, 2048, 0, 1024)
    assert Usage.parse(resp).source == "gemini"
    assert numbers(Usage.from_gemini(resp)) == (2193, 1436, 2048, 0, 1024)


def test_google_genai_sdk_types() -> None:
    types = pytest.importorskip("google.genai.types")
    resp = types.GenerateContentResponse.model_validate(load("gemini_generate_content"))
    assert numbers(Usage.parse(resp)) == (2193, 1436, 2048, 0, 1024)
    assert numbers(Usage.from_gemini(resp)) == (2193, 1436, 2048, 0, 1024)
    assert numbers(Usage.from_gemini(resp.usage_metadata)) == (2193, 1436, 2048, 0, 1024)


def test_openai_sdk_completion_usage() -> None:
    types = pytest.importorskip("openai.types")
    from openai.types.completion_usage import CompletionTokensDetails, PromptTokensDetails

    usage = types.CompletionUsage(
        prompt_tokens=2006,
        completion_tokens=300,
        total_tokens=2306,
        prompt_tokens_details=PromptTokensDetails(cached_tokens=1920, cache_write_tokens=64),
        completion_tokens_details=CompletionTokensDetails(reasoning_tokens=192),
    )
    assert numbers(Usage.from_openai(usage)) == (2006, 300, 1920, 64, 192)
    assert numbers(Usage.parse(usage)) == (2006, 300, 1920, 64, 192)
    bare = types.CompletionUsage(prompt_tokens=5, completion_tokens=2, total_tokens=7)
    assert numbers(Usage.parse(bare)) == (5, 2, 0, 0, 0)


def test_openai_sdk_chat_completion_and_chunk() -> None:
    pytest.importorskip("openai")
    from openai.types.chat import ChatCompletion, ChatCompletionChunk

    completion = ChatCompletion.model_validate(load("openai_chat_completion"))
    assert numbers(Usage.from_openai(completion)) == (2006, 300, 1920, 0, 192)
    assert numbers(Usage.parse(completion)) == (2006, 300, 1920, 0, 192)
    chunk = ChatCompletionChunk.model_validate(load("openai_chat_stream_final_chunk"))
    assert numbers(Usage.parse(chunk)) == (75, 1186, 0, 0, 1024)


def test_openai_sdk_responses() -> None:
    pytest.importorskip("openai")
    from openai.types.responses import Response, ResponseUsage

    resp = Response.model_validate(load("openai_responses"))
    assert numbers(Usage.from_openai(resp)) == (1280, 612, 1024, 0, 448)
    assert numbers(Usage.parse(resp)) == (1280, 612, 1024, 0, 448)
    usage = ResponseUsage.model_validate(load("openai_responses")["usage"])
    assert numbers(Usage.parse(usage)) == (1280, 612, 1024, 0, 448)


def test_anthropic_sdk_types() -> None:
    pytest.importorskip("anthropic")
    from anthropic.types import Message, RawMessageDeltaEvent, RawMessageStartEvent
    from anthropic.types import Usage as AnthropicUsage

    msg = Message.model_validate(load("anthropic_message_cache"))
    assert numbers(Usage.from_anthropic(msg)) == (100606, 503, 100000, 556, 0)
    assert numbers(Usage.parse(msg)) == (100606, 503, 100000, 556, 0)
    usage = AnthropicUsage(
        input_tokens=50,
        output_tokens=503,
        cache_creation_input_tokens=556,
        cache_read_input_tokens=100000,
    )
    assert numbers(Usage.parse(usage)) == (100606, 503, 100000, 556, 0)
    start = RawMessageStartEvent.model_validate(load("anthropic_stream_message_start"))
    assert numbers(Usage.parse(start)) == (25, 1, 0, 0, 0)
    delta = RawMessageDeltaEvent.model_validate(load("anthropic_stream_message_delta"))
    assert numbers(Usage.parse(delta)) == (0, 15, 0, 0, 0)


# ------------------------------------------------------------------ malformed payloads


def _with(name: str, path: str, value: Any) -> dict[str, Any]:
    """Fixture ``name`` with the dotted ``path`` set to ``value``."""
    data = load(name)
    *parents, last = path.split(".")
    node: Any = data
    for key in parents:
        node = node[key]
    node[last] = value
    return data


def _without(name: str, key: str) -> dict[str, Any]:
    data = load(name)
    del data[key]
    return data


def _nested_cache_creation(value: Any) -> dict[str, Any]:
    """The Anthropic fixture with only the nested ``cache_creation`` split (no flat total, so the
    parser has to read the nested one), its 5m entry set to ``value``."""
    data = load("anthropic_message_cache")
    del data["usage"]["cache_creation_input_tokens"]
    data["usage"]["cache_creation"]["ephemeral_5m_input_tokens"] = value
    return data


OAI = "openai_chat_completion"
RESP = "openai_responses"
ANT = "anthropic_message_cache"
GEM = "gemini_generate_content"
LC = "langchain_usage_metadata"
VLLM = "vllm_chat_completion_cached"

# (id, specific parser, payload, field the error must name)
MALFORMED: list[tuple[str, Parser, Any, str]] = [
    # a string where a count should be (even an all-digit one)
    ("openai-str", Usage.from_openai, _with(OAI, "usage.prompt_tokens", "2006"), "prompt_tokens"),
    (
        "openai-str-word",
        Usage.from_openai,
        _with(OAI, "usage.prompt_tokens", "many"),
        "prompt_tokens",
    ),
    ("openai-str-sup", Usage.from_openai, _with(OAI, "usage.prompt_tokens", "²"), "prompt_tokens"),
    (
        "openai-cached-str",
        Usage.from_openai,
        _with(OAI, "usage.prompt_tokens_details.cached_tokens", "1920"),
        "prompt_tokens_details.cached_tokens",
    ),
    # a negative count
    (
        "openai-neg",
        Usage.from_openai,
        _with(OAI, "usage.completion_tokens", -1),
        "completion_tokens",
    ),
    (
        "openai-reasoning-neg",
        Usage.from_openai,
        _with(OAI, "usage.completion_tokens_details.reasoning_tokens", -5),
        "completion_tokens_details.reasoning_tokens",
    ),
    # a bool
    ("openai-bool", Usage.from_openai, _with(OAI, "usage.prompt_tokens", True), "prompt_tokens"),
    # a float with a fraction (and non-finite floats)
    ("openai-float", Usage.from_openai, _with(OAI, "usage.prompt_tokens", 2006.5), "prompt_tokens"),
    (
        "openai-inf",
        Usage.from_openai,
        _with(OAI, "usage.prompt_tokens", float("inf")),
        "prompt_tokens",
    ),
    (
        "openai-nan",
        Usage.from_openai,
        _with(OAI, "usage.prompt_tokens", float("nan")),
        "prompt_tokens",
    ),
    # wrong container types
    ("openai-usage-list", Usage.from_openai, _with(OAI, "usage", [2006, 300]), "usage"),
    ("openai-usage-str", Usage.from_openai, _with(OAI, "usage", "2306"), "usage"),
    (
        "openai-details-list",
        Usage.from_openai,
        _with(OAI, "usage.prompt_tokens_details", [1920]),
        "prompt_tokens_details",
    ),
    # missing usage
    ("openai-no-usage", Usage.from_openai, _without(OAI, "usage"), "usage"),
    ("openai-usage-null", Usage.from_openai, _with(OAI, "usage", None), "usage"),
    ("openai-usage-empty", Usage.from_openai, _with(OAI, "usage", {}), "usage"),
    ("openai-usage-no-counts", Usage.from_openai, _with(OAI, "usage", {"x": 1}), "prompt_tokens"),
    # Responses API
    (
        "responses-write-str",
        Usage.from_openai,
        _with(RESP, "usage.input_tokens_details.cache_write_tokens", "0"),
        "input_tokens_details.cache_write_tokens",
    ),
    (
        "openai-write-neg",
        Usage.from_openai,
        _with(OAI, "usage.prompt_tokens_details.cache_write_tokens", -64),
        "prompt_tokens_details.cache_write_tokens",
    ),
    (
        "responses-cached-float",
        Usage.from_openai,
        _with(RESP, "usage.input_tokens_details.cached_tokens", 1.5),
        "input_tokens_details.cached_tokens",
    ),
    (
        "responses-output-bool",
        Usage.from_openai,
        _with(RESP, "usage.output_tokens", False),
        "output_tokens",
    ),
    # vLLM
    (
        "vllm-cached-str",
        Usage.from_vllm,
        _with(VLLM, "usage.prompt_tokens_details.cached_tokens", "1024"),
        "prompt_tokens_details.cached_tokens",
    ),
    ("vllm-no-usage", Usage.from_vllm, _without(VLLM, "usage"), "usage"),
    # Anthropic
    ("anthropic-str", Usage.from_anthropic, _with(ANT, "usage.input_tokens", "50"), "input_tokens"),
    (
        "anthropic-read-neg",
        Usage.from_anthropic,
        _with(ANT, "usage.cache_read_input_tokens", -1),
        "cache_read_input_tokens",
    ),
    (
        "anthropic-write-float",
        Usage.from_anthropic,
        _with(ANT, "usage.cache_creation_input_tokens", 0.5),
        "cache_creation_input_tokens",
    ),
    (
        "anthropic-nested-bool",
        Usage.from_anthropic,
        _nested_cache_creation(True),
        "cache_creation.ephemeral_5m_input_tokens",
    ),
    (
        "anthropic-nested-str",
        Usage.from_anthropic,
        _nested_cache_creation("456"),
        "cache_creation.ephemeral_5m_input_tokens",
    ),
    (
        "anthropic-nested-list",
        Usage.from_anthropic,
        _with(ANT, "usage", {"input_tokens": 50, "output_tokens": 503, "cache_creation": [456]}),
        "cache_creation",
    ),
    ("anthropic-usage-list", Usage.from_anthropic, _with(ANT, "usage", [50, 503]), "usage"),
    ("anthropic-no-usage", Usage.from_anthropic, _without(ANT, "usage"), "usage"),
    ("anthropic-usage-null", Usage.from_anthropic, _with(ANT, "usage", None), "usage"),
    (
        "anthropic-usage-no-counts",
        Usage.from_anthropic,
        _with(ANT, "usage", {"service_tier": "standard"}),
        "input_tokens",
    ),
    (
        "anthropic-start-message-str",
        Usage.from_anthropic,
        _with("anthropic_stream_message_start", "message", "msg"),
        "message",
    ),
    (
        "anthropic-start-no-usage",
        Usage.from_anthropic,
        _without("anthropic_stream_message_start", "message"),
        "usage",
    ),
    (
        "anthropic-delta-str",
        Usage.from_anthropic,
        _with("anthropic_stream_message_delta", "usage.output_tokens", "15"),
        "output_tokens",
    ),
    # Gemini
    (
        "gemini-str",
        Usage.from_gemini,
        _with(GEM, "usageMetadata.promptTokenCount", "2193"),
        "promptTokenCount",
    ),
    (
        "gemini-thoughts-float",
        Usage.from_gemini,
        _with(GEM, "usageMetadata.thoughtsTokenCount", 1.25),
        "thoughtsTokenCount",
    ),
    (
        "gemini-cached-neg",
        Usage.from_gemini,
        _with(GEM, "usageMetadata.cachedContentTokenCount", -2048),
        "cachedContentTokenCount",
    ),
    (
        "gemini-candidates-bool",
        Usage.from_gemini,
        _with(GEM, "usageMetadata.candidatesTokenCount", True),
        "candidatesTokenCount",
    ),
    ("gemini-meta-list", Usage.from_gemini, _with(GEM, "usageMetadata", [2193]), "usageMetadata"),
    ("gemini-no-usage", Usage.from_gemini, _without(GEM, "usageMetadata"), "usageMetadata"),
    ("gemini-meta-null", Usage.from_gemini, _with(GEM, "usageMetadata", None), "usageMetadata"),
    # LangChain
    ("langchain-str", Usage.from_langchain, _with(LC, "input_tokens", "350"), "input_tokens"),
    (
        "langchain-read-neg",
        Usage.from_langchain,
        _with(LC, "input_token_details.cache_read", -1),
        "input_token_details.cache_read",
    ),
    (
        "langchain-reasoning-bool",
        Usage.from_langchain,
        _with(LC, "output_token_details.reasoning", True),
        "output_token_details.reasoning",
    ),
    (
        "langchain-write-float",
        Usage.from_langchain,
        _with(LC, "input_token_details.cache_creation", 199.5),
        "input_token_details.cache_creation",
    ),
    (
        "langchain-details-list",
        Usage.from_langchain,
        _with(LC, "input_token_details", [100]),
        "input_token_details",
    ),
    ("langchain-empty", Usage.from_langchain, {}, "input_tokens"),
    ("langchain-list", Usage.from_langchain, [350, 240], "usage_metadata"),
]


@pytest.mark.parametrize(
    ("parser", "payload", "field"),
    [c[1:] for c in MALFORMED],
    ids=[c[0] for c in MALFORMED],
)
def test_malformed_payload_names_the_field(parser: Parser, payload: Any, field: str) -> None:
    with pytest.raises(UsageParseError) as info:
        parser(payload)
    assert info.value.field == field
    assert field in str(info.value)
    assert isinstance(info.value, TokenleanError)
    assert isinstance(info.value, ValueError)


# Usage.parse without a hint names the same field, except where nothing is left to tell which
# provider sent the payload: then it can only say that the usage is missing.
PARSE_UNRECOGNISABLE = {"gemini-no-usage", "langchain-empty", "langchain-list"}
PARSE_MALFORMED = [c for c in MALFORMED if c[0] not in PARSE_UNRECOGNISABLE]


@pytest.mark.parametrize(
    ("parser", "payload", "field"),
    [c[1:] for c in PARSE_MALFORMED],
    ids=[c[0] for c in PARSE_MALFORMED],
)
def test_malformed_payload_through_parse(parser: Parser, payload: Any, field: str) -> None:
    with pytest.raises(UsageParseError) as info:
        Usage.parse(payload)
    assert info.value.field == field


def test_unrecognisable_payloads_through_parse_name_usage() -> None:
    cases = [c for c in MALFORMED if c[0] in PARSE_UNRECOGNISABLE]
    assert len(cases) == len(PARSE_UNRECOGNISABLE)
    for _, _, payload, _ in cases:
        with pytest.raises(UsageParseError) as info:
            Usage.parse(payload)
        assert info.value.field == "usage"


@pytest.mark.parametrize("payload", [None, [], [1, 2], "usage", 12, 1.5, True, {}])
def test_parse_rejects_non_payloads(payload: Any) -> None:
    with pytest.raises(UsageParseError) as info:
        Usage.parse(payload)
    assert info.value.field == "usage"


def test_stream_chunk_without_usage() -> None:
    """Intermediate chunks (and every chunk without stream_options.include_usage) carry
    ``"usage": null``."""
    chunk = load("openai_chat_stream_final_chunk")
    chunk["usage"] = None
    chunk["choices"] = [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": None}]
    for parse in (Usage.from_openai, Usage.parse):
        with pytest.raises(UsageParseError) as info:
            parse(chunk)
        assert info.value.field == "usage"


def test_integral_floats_are_accepted() -> None:
    payload = _with(OAI, "usage.prompt_tokens", 2006.0)
    assert Usage.from_openai(payload).input_tokens == 2006
    assert type(Usage.from_openai(payload).input_tokens) is int


def test_huge_values_do_not_escape_as_other_errors() -> None:
    """Ints too long to print (sys.get_int_max_str_digits) must still give a UsageParseError."""
    with pytest.raises(UsageParseError) as info:
        Usage.from_openai({"usage": {"prompt_tokens": -(10**5000)}})
    assert info.value.field == "prompt_tokens"
    with pytest.raises(UsageParseError) as info:
        Usage.from_openai({"usage": {"prompt_tokens": "9" * 5000}})
    assert info.value.field == "prompt_tokens"
    with pytest.raises(UsageParseError):
        Usage(10**5000, 0, 10**5000, 1)


# ------------------------------------------------------------------ the Usage value


def test_total_and_uncached() -> None:
    u = Usage(1000, 200, 600, 100, 50)
    assert u.total_tokens == 1200
    assert u.uncached_input_tokens == 300
    assert Usage().total_tokens == 0
    assert Usage().uncached_input_tokens == 0


def test_add() -> None:
    a = Usage(100, 20, 50, 10, 5, exact=True, source="openai")
    b = Usage(7, 3, 1, 2, 1, exact=True, source="openai")
    s = a + b
    assert numbers(s) == (107, 23, 51, 12, 6)
    assert s.exact is True
    assert s.source == "openai"
    c = Usage(1, 1, exact=False, source="counted")
    mixed = a + c
    assert mixed.exact is False
    assert mixed.source == "mixed"
    assert numbers(sum([a, b, c], Usage(source="openai"))) == (108, 24, 51, 12, 6)
    assert cast(Any, a).__add__(5) is NotImplemented
    with pytest.raises(TypeError):
        _ = a + 5  # type: ignore[operator]


def test_cache_exceeding_input_is_rejected() -> None:
    with pytest.raises(UsageParseError) as info:
        Usage(10, 0, 6, 5)
    assert info.value.field == "cache_read_tokens"
    Usage(11, 0, 6, 5)  # exactly equal is fine
    with pytest.raises(UsageParseError) as info:
        Usage.from_openai(_with(OAI, "usage.prompt_tokens_details.cached_tokens", 2007))
    assert info.value.source == "openai"
    with pytest.raises(UsageParseError):
        Usage.from_gemini(_with(GEM, "usageMetadata.cachedContentTokenCount", 2194))
    with pytest.raises(UsageParseError):
        Usage.from_langchain(_with(LC, "input_token_details.cache_read", 151))


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"input_tokens": -1}, "input_tokens"),
        ({"output_tokens": True}, "output_tokens"),
        ({"cache_read_tokens": 1.0}, "cache_read_tokens"),
        ({"cache_write_tokens": "1"}, "cache_write_tokens"),
        ({"reasoning_tokens": None}, "reasoning_tokens"),
    ],
)
def test_constructor_validates(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(UsageParseError) as info:
        Usage(**{"input_tokens": 10, **kwargs})
    assert info.value.field == field


def test_with_exact() -> None:
    u = Usage(3, 4, source="openai")
    v = u.with_exact(False)
    assert v.exact is False
    assert numbers(v) == numbers(u)
    assert v.source == "openai"
    assert u.exact is True


def test_to_dict_from_dict_round_trip() -> None:
    u = Usage(100606, 503, 100000, 556, 0, exact=False, source="anthropic")
    d = u.to_dict()
    assert d == {
        "input_tokens": 100606,
        "output_tokens": 503,
        "cache_read_tokens": 100000,
        "cache_write_tokens": 556,
        "reasoning_tokens": 0,
        "exact": False,
        "source": "anthropic",
    }
    assert Usage.from_dict(d) == u
    assert Usage.from_dict(json.loads(json.dumps(d))) == u
    assert Usage.from_dict({}) == Usage()
    for parsed in (Usage.from_openai(load(OAI)), Usage.from_gemini(load(GEM))):
        assert Usage.from_dict(parsed.to_dict()) == parsed


def test_from_dict_rejects_bad_counts() -> None:
    with pytest.raises(UsageParseError) as info:
        Usage.from_dict({"input_tokens": "3"})
    assert info.value.field == "input_tokens"
    with pytest.raises(UsageParseError) as info:
        Usage.from_dict({"input_tokens": 3, "cache_read_tokens": 4})
    assert info.value.field == "cache_read_tokens"


# ------------------------------------------------------------------ property tests

FAST = settings(
    max_examples=75,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# keys the parsers look at, so random payloads reach the interesting branches
KNOWN_KEYS = [
    "usage",
    "usageMetadata",
    "usage_metadata",
    "message",
    "type",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "prompt_tokens_details",
    "completion_tokens_details",
    "cached_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "input_tokens",
    "output_tokens",
    "input_tokens_details",
    "output_tokens_details",
    "input_token_details",
    "output_token_details",
    "cache_read",
    "cache_creation",
    "reasoning",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
    "ephemeral_5m_input_tokens",
    "ephemeral_1h_input_tokens",
    "promptTokenCount",
    "candidatesTokenCount",
    "cachedContentTokenCount",
    "thoughtsTokenCount",
    "totalTokenCount",
    "prompt_token_count",
    "candidates_token_count",
    "thoughts_token_count",
]

# the fields the parsers read as token counts
COUNT_KEYS = frozenset(
    k
    for k in KNOWN_KEYS
    if k.endswith(("tokens", "TokenCount", "token_count", "cache_read", "cache_creation"))
    or k == "reasoning"
)

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=0, max_value=5000)
    | st.floats()
    | st.text(max_size=6)
    | st.sampled_from(["message", "message_start", "message_delta", "12", "²", "-1"])
)
json_keys = st.sampled_from(KNOWN_KEYS) | st.text(max_size=6)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(json_keys, children, max_size=6)
    ),
    max_leaves=24,
)

FIXTURE_NAMES = sorted(p.stem for p in FIXTURES.glob("*.json"))


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


# values that break naive int parsing: digit strings int() rejects ("²", 5000 digits), strings
# that look numeric, bools, non-integral and non-finite floats, huge ints, containers
hostile: st.SearchStrategy[Any] = st.sampled_from(
    [
        "12",
        "²",
        "٣",
        " 7 ",
        "1e3",
        "-1",
        "9" * 5000,
        True,
        False,
        -1,
        1.5,
        -0.0,
        float("nan"),
        float("inf"),
        10**5000,
        -(10**5000),
        None,
        [],
        {},
        [1],
    ]
)


@st.composite
def mutated_fixtures(draw: st.DrawFn) -> Any:
    """A recorded fixture with one field replaced by a hostile or arbitrary value (or deleted);
    mostly a count field, sometimes any field at all."""
    data: Any = load(draw(st.sampled_from(FIXTURE_NAMES)))
    paths = _paths(data)
    counts_only = [p for p in paths if p[-1] in COUNT_KEYS]  # every fixture has some
    path = draw(
        st.sampled_from(paths) if draw(st.integers(0, 3)) == 0 else st.sampled_from(counts_only)
    )
    parent = _get(data, path[:-1])
    if isinstance(parent, dict) and draw(st.integers(0, 9)) == 0:
        del parent[path[-1]]
    else:
        parent[path[-1]] = draw(hostile if draw(st.booleans()) else json_values)
    return data


def _get(node: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        node = node[key]
    return node


PARSERS: list[Parser] = [
    Usage.parse,
    Usage.from_openai,
    Usage.from_vllm,
    Usage.from_anthropic,
    Usage.from_gemini,
    Usage.from_langchain,
]


def _outcome(parser: Parser, payload: Any) -> Usage | UsageParseError:
    """What ``parser`` makes of ``payload``; any other exception propagates and fails the test."""
    try:
        return parser(payload)
    except UsageParseError as exc:
        return exc


def _check_valid(u: Usage) -> None:
    for n in numbers(u):
        assert type(n) is int
        assert n >= 0
    assert u.cache_read_tokens + u.cache_write_tokens <= u.input_tokens
    assert u.uncached_input_tokens >= 0


FUZZ = settings(FAST, max_examples=150)


@FUZZ
@given(payload=mutated_fixtures())
def test_mutated_fixtures_parse_or_raise_usage_parse_error(payload: Any) -> None:
    for parser in PARSERS:
        result = _outcome(parser, payload)
        if isinstance(result, UsageParseError):
            assert isinstance(result.field, str)
            assert result.field
        else:
            _check_valid(result)


@settings(FAST, max_examples=100)
@given(payload=json_values)
def test_any_payload_parses_or_raises_usage_parse_error(payload: Any) -> None:
    for parser in PARSERS:
        result = _outcome(parser, payload)
        if isinstance(result, UsageParseError):
            assert result.field
        else:
            _check_valid(result)
    for provider in ("openai", "anthropic", "gemini", "langchain", "x"):
        result = _outcome(functools.partial(Usage.parse, provider=provider), payload)
        if isinstance(result, Usage):
            _check_valid(result)


counts = st.integers(min_value=0)


@FAST
@given(cached=counts, written=counts, uncached=counts, output=counts, reasoning=counts)
def test_openai_chat_builder_round_trips(
    cached: int, written: int, uncached: int, output: int, reasoning: int
) -> None:
    prompt = cached + written + uncached
    completion = output + reasoning
    payload = {
        "object": "chat.completion",
        "choices": [],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached, "cache_write_tokens": written},
            "completion_tokens_details": {"reasoning_tokens": reasoning},
        },
    }
    expected = (prompt, completion, cached, written, reasoning)
    assert numbers(Usage.from_openai(payload)) == expected
    assert numbers(Usage.parse(payload)) == expected
    assert numbers(Usage.from_vllm(payload)) == expected


@FAST
@given(cached=counts, written=counts, uncached=counts, output=counts, reasoning=counts)
def test_openai_responses_builder_round_trips(
    cached: int, written: int, uncached: int, output: int, reasoning: int
) -> None:
    inp = cached + written + uncached
    out = output + reasoning
    payload = {
        "object": "response",
        "usage": {
            "input_tokens": inp,
            "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": written},
            "output_tokens": out,
            "output_tokens_details": {"reasoning_tokens": reasoning},
            "total_tokens": inp + out,
        },
    }
    expected = (inp, out, cached, written, reasoning)
    assert numbers(Usage.from_openai(payload)) == expected
    assert numbers(Usage.parse(payload)) == expected


@FAST
@given(
    inp=counts,
    read=counts,
    w5m=counts,
    w1h=counts,
    output=counts,
    flat=st.booleans(),
    wrapped=st.booleans(),
)
def test_anthropic_builder_round_trips(
    inp: int, read: int, w5m: int, w1h: int, output: int, flat: bool, wrapped: bool
) -> None:
    usage: dict[str, Any] = {
        "input_tokens": inp,
        "cache_read_input_tokens": read,
        "cache_creation": {"ephemeral_5m_input_tokens": w5m, "ephemeral_1h_input_tokens": w1h},
        "output_tokens": output,
    }
    if flat:
        usage["cache_creation_input_tokens"] = w5m + w1h
    payload: dict[str, Any] = (
        {"type": "message", "role": "assistant", "content": [], "usage": usage}
        if wrapped
        else usage
    )
    write = w5m + w1h
    expected = (inp + read + write, output, read, write, 0)
    assert numbers(Usage.from_anthropic(payload)) == expected
    assert numbers(Usage.parse(payload)) == expected
    start = {"type": "message_start", "message": {"type": "message", "usage": usage}}
    assert numbers(Usage.parse(start)) == expected


@FAST
@given(
    cached=counts,
    uncached=counts,
    candidates=counts,
    thoughts=counts,
    snake=st.booleans(),
    wrapped=st.booleans(),
)
def test_gemini_builder_round_trips(
    cached: int, uncached: int, candidates: int, thoughts: int, snake: bool, wrapped: bool
) -> None:
    prompt = cached + uncached
    if snake:
        meta: dict[str, Any] = {
            "prompt_token_count": prompt,
            "candidates_token_count": candidates,
            "cached_content_token_count": cached,
            "thoughts_token_count": thoughts,
            "total_token_count": prompt + candidates + thoughts,
        }
        payload: dict[str, Any] = {"usage_metadata": meta} if wrapped else meta
    else:
        meta = {
            "promptTokenCount": prompt,
            "candidatesTokenCount": candidates,
            "cachedContentTokenCount": cached,
            "thoughtsTokenCount": thoughts,
            "totalTokenCount": prompt + candidates + thoughts,
        }
        payload = {"candidates": [], "usageMetadata": meta} if wrapped else meta
    expected = (prompt, candidates + thoughts, cached, 0, thoughts)
    assert numbers(Usage.from_gemini(payload)) == expected
    assert numbers(Usage.parse(payload)) == expected
    assert Usage.parse(payload).total_tokens == prompt + candidates + thoughts


@FAST
@given(read=counts, write=counts, rest=counts, output=counts, reasoning=counts)
def test_langchain_builder_round_trips(
    read: int, write: int, rest: int, output: int, reasoning: int
) -> None:
    inp = read + write + rest
    out = output + reasoning
    meta = {
        "input_tokens": inp,
        "output_tokens": out,
        "total_tokens": inp + out,
        "input_token_details": {"cache_read": read, "cache_creation": write},
        "output_token_details": {"reasoning": reasoning},
    }
    expected = (inp, out, read, write, reasoning)
    assert numbers(Usage.from_langchain(meta)) == expected
    assert numbers(Usage.parse(meta)) == expected


@FAST
@given(
    inp=counts,
    output=counts,
    read=counts,
    write=counts,
    reasoning=counts,
    exact=st.booleans(),
    source=st.text(max_size=12),
)
def test_usage_dict_round_trip(
    inp: int, output: int, read: int, write: int, reasoning: int, exact: bool, source: str
) -> None:
    u = Usage(inp + read + write, output, read, write, reasoning, exact, source)
    assert Usage.from_dict(u.to_dict()) == u
    assert Usage.from_dict(json.loads(json.dumps(u.to_dict()))) == u
    assert (u + u).to_dict()["input_tokens"] == 2 * u.input_tokens


def test_fixture_files_are_all_covered() -> None:
    assert set(FIXTURE_NAMES) == {c[0] for c in CASES}
    for name in FIXTURE_NAMES:
        raw = json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))
        assert isinstance(raw, Mapping)
        assert isinstance(raw.get("_source"), str)
