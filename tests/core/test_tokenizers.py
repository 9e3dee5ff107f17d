"""Token counting against OpenAI's published figures and against tiktoken/tokenizers directly."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
import tiktoken
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenlean_core import (
    TokenCount,
    TokenleanError,
    count_tokens,
    get_tokenizer,
    register_tokenizer,
)
from tokenlean_core._tiktoken_offline import (
    OFFLINE_ENCODINGS,
    seed_tiktoken_cache,
    tiktoken_cache_dir,
)

# OpenAI cookbook, "How to count tokens with tiktoken", section 6: 129 prompt tokens for
# gpt-3.5-turbo / gpt-4-0613 / gpt-4 and 124 for gpt-4o / gpt-4o-mini, as counted by the API.
COOKBOOK_MESSAGES = [
    {
        "role": "system",
        "content": "You are a helpful, pattern-following assistant that translates corporate jargon "
        "into plain English.",
    },
    {
        "role": "system",
        "name": "example_user",
        "content": "New synergies will help drive top-line growth.",
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Things working well together will increase revenue.",
    },
    {
        "role": "system",
        "name": "example_user",
        "content": "Let's circle back when we have more bandwidth to touch base on opportunities for "
        "increased leverage.",
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Let's talk later when we're less busy about how to do better.",
    },
    {
        "role": "user",
        "content": "This late pivot means we don't have time to boil the ocean for the client "
        "deliverable.",
    },
]

# Same notebook, section 7: 105 (gpt-3.5-turbo, gpt-4) and 101 (gpt-4o, gpt-4o-mini) with tools.
COOKBOOK_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_current_weather",
            "description": "Get the current weather in a given location",
            "parameters": {
                "type": "object",
                "properties": {
                    "location": {
                        "type": "string",
                        "description": "The city and state, e.g. San Francisco, CA",
                    },
                    "unit": {
                        "type": "string",
                        "description": "The unit of temperature to return",
                        "enum": ["celsius", "fahrenheit"],
                    },
                },
                "required": ["location"],
            },
        },
    }
]
COOKBOOK_TOOL_MESSAGES = [
    {
        "role": "system",
        "content": "You are a helpful assistant that can answer to questions about the weather.",
    },
    {"role": "user", "content": "What's the weather like in San Francisco?"},
]


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("gpt-3.5-turbo", 129),
        ("gpt-4-0613", 129),
        ("gpt-4", 129),
        ("gpt-4o", 124),
        ("gpt-4o-mini", 124),
    ],
)
def test_cookbook_message_counts(model: str, expected: int) -> None:
    n = count_tokens(COOKBOOK_MESSAGES, model)
    assert n == expected
    assert n.exact


@pytest.mark.parametrize(
    ("model", "expected"),
    [("gpt-3.5-turbo", 105), ("gpt-4", 105), ("gpt-4o", 101), ("gpt-4o-mini", 101)],
)
def test_cookbook_tool_counts(model: str, expected: int) -> None:
    n = count_tokens(COOKBOOK_TOOL_MESSAGES, model, tools=COOKBOOK_TOOLS)
    assert n == expected
    assert n.exact


def test_published_token_ids() -> None:
    # tiktoken's own test vectors
    assert get_tokenizer("gpt-4o").encode("hello world") == [24912, 2375]
    assert get_tokenizer("gpt-4").encode("hello world") == [15339, 1917]


def test_offline_files_are_byte_identical_to_openais() -> None:
    paths = seed_tiktoken_cache()
    assert set(paths) == set(OFFLINE_ENCODINGS)
    for name, path in paths.items():
        assert Path(path).parent == Path(tiktoken_cache_dir())
        digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        assert digest == OFFLINE_ENCODINGS[name].sha256


def test_seeding_rewrites_a_corrupted_cache_file() -> None:
    path = seed_tiktoken_cache(("cl100k_base",))["cl100k_base"]
    Path(path).write_bytes(b"garbage")
    from tokenlean_core import _tiktoken_offline

    _tiktoken_offline._seeded.discard("cl100k_base")
    seed_tiktoken_cache(("cl100k_base",))
    assert (
        hashlib.sha256(Path(path).read_bytes()).hexdigest()
        == OFFLINE_ENCODINGS["cl100k_base"].sha256
    )


TEXTS = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=300)


@settings(max_examples=150, deadline=None)
@given(TEXTS)
def test_counts_equal_raw_tiktoken(text: str) -> None:
    for model, enc in (("gpt-4o", "o200k_base"), ("gpt-4", "cl100k_base")):
        assert count_tokens(text, model) == len(tiktoken.get_encoding(enc).encode_ordinary(text))


def test_special_token_text_is_counted_as_text() -> None:
    n = count_tokens("<|endoftext|> is just text", "gpt-4o")
    assert n == len(
        tiktoken.get_encoding("o200k_base").encode_ordinary("<|endoftext|> is just text")
    )


def test_unknown_model_is_an_estimate_not_a_crash() -> None:
    n = count_tokens("hello there", "some-future-model-9000")
    assert isinstance(n, TokenCount)
    assert not n.exact
    assert n > 0
    assert "estimate" in repr(n)


def test_provider_prefixes() -> None:
    a = count_tokens(COOKBOOK_MESSAGES, "openai:gpt-4o")
    b = count_tokens(COOKBOOK_MESSAGES, "openai/gpt-4o")
    assert a == b == 124
    assert a.exact


def test_langchain_and_llama_index_messages_count_like_dicts() -> None:
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
    from llama_index.core.llms import ChatMessage

    dicts = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "4"},
    ]
    lc = [SystemMessage("Be brief."), HumanMessage("What is 2+2?"), AIMessage("4")]
    li = [
        ChatMessage(role="system", content="Be brief."),
        ChatMessage(role="user", content="What is 2+2?"),
        ChatMessage(role="assistant", content="4"),
    ]
    expected = count_tokens(dicts, "gpt-4o")
    assert count_tokens(lc, "gpt-4o") == expected
    assert count_tokens(li, "gpt-4o") == expected


def test_tool_calls_are_counted_and_flagged() -> None:
    from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

    msgs = [
        HumanMessage("weather in Paris?"),
        AIMessage("", tool_calls=[{"name": "weather", "args": {"city": "Paris"}, "id": "call_1"}]),
        ToolMessage("18C and sunny", tool_call_id="call_1"),
    ]
    plain = count_tokens([HumanMessage("weather in Paris?")], "gpt-4o")
    n = count_tokens(msgs, "gpt-4o")
    assert n > plain + count_tokens('{"city": "Paris"}', "gpt-4o")
    assert not n.exact  # OpenAI documents no formula for tool calls in messages

    openai_style = [
        {"role": "user", "content": "weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "weather", "arguments": json.dumps({"city": "Paris"})},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "18C and sunny"},
    ]
    assert count_tokens(openai_style, "gpt-4o") == n


def test_multimodal_parts() -> None:
    msgs = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in this image?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
            ],
        }
    ]
    n = count_tokens(msgs, "gpt-4o")
    text_only = count_tokens([{"role": "user", "content": "What is in this image?"}], "gpt-4o")
    assert n > text_only
    assert not n.exact


def test_bad_messages_name_the_problem() -> None:
    with pytest.raises(TokenleanError, match="message 1 has no 'role'"):
        count_tokens([{"role": "user", "content": "a"}, {"content": "b"}], "gpt-4o")
    with pytest.raises(TokenleanError, match="message 0 is a int"):
        count_tokens([42], "gpt-4o")
    with pytest.raises(TokenleanError, match="not bytes"):
        count_tokens(b"abc", "gpt-4o")  # type: ignore[arg-type]


def test_hf_tokenizer_from_a_tokenizer_json(tmp_path: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"[UNK]": 0, "hello": 1, "world": 2, "!": 3}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    path = tmp_path / "tokenizer.json"
    tok.save(str(path))
    assert count_tokens("hello world !", str(path)) == 3
    assert count_tokens("hello world !", str(tmp_path)) == 3  # a model folder
    register_tokenizer(r"^my-open-model", str(path))
    n = count_tokens("hello hello", "my-open-model-7b")
    assert n == 2
    assert n.exact
    assert n.tokenizer.startswith("hf:")
    msgs = count_tokens([{"role": "user", "content": "hello"}], "my-open-model-7b")
    assert not msgs.exact  # chat template not rendered: flagged


def test_missing_tokenizer_file(tmp_path: Path) -> None:
    with pytest.raises(TokenleanError, match=r"no tokenizer\.json"):
        get_tokenizer(str(tmp_path))


def test_repeated_prefix_is_memoised() -> None:
    tok = get_tokenizer("gpt-4o")
    history = [{"role": "user", "content": f"turn {i} " + "lorem ipsum " * 200} for i in range(20)]
    first = count_tokens(history, "gpt-4o")
    calls = 0
    real = tok._len  # type: ignore[attr-defined]

    def spy(text: str) -> int:
        nonlocal calls
        calls += 1
        return int(real(text))

    tok._len = spy  # type: ignore[attr-defined]
    try:
        again = count_tokens([*history, {"role": "user", "content": "one more"}], "gpt-4o")
    finally:
        tok._len = real  # type: ignore[attr-defined]
    assert again > first
    assert calls == 1  # only the new message was tokenised


def test_env_cache_dir_is_respected() -> None:
    assert tiktoken_cache_dir() == os.environ["TIKTOKEN_CACHE_DIR"]


MESSAGE = st.fixed_dictionaries(
    {"role": st.sampled_from(["system", "user", "assistant"]), "content": TEXTS},
    optional={"name": st.from_regex(r"[a-z_]{1,12}", fullmatch=True)},
)


@settings(max_examples=100, deadline=None)
@given(st.lists(MESSAGE, max_size=6))
def test_plain_dict_fast_path_equals_the_general_path(messages: list[dict[str, str]]) -> None:
    from tokenlean_core import Message

    general = [Message(role=m["role"], content=m["content"], name=m.get("name")) for m in messages]
    for model in ("gpt-4o", "gpt-4", "gpt-3.5-turbo-0301"):
        fast = count_tokens(messages, model)
        slow = count_tokens(general, model)
        assert fast == slow
        assert fast.exact == slow.exact
