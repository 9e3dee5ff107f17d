"""The pure text layer: units, protected spans, join identity (hypothesis on arbitrary text)."""

from __future__ import annotations

import json
from itertools import pairwise

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tokenlean_compress import ProtectConfig, protected_spans, split_units
from tokenlean_core import TokenleanError

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_pieces = st.sampled_from(
    [
        "word ",
        "the ",
        "Paris, ",
        "3.14 ",
        "v1.2.3",
        "2024-01-05 ",
        "$5.99 ",
        "10%",
        "https://example.com/a?b=1 ",
        "(see http://x.org/y). ",
        '{"k": [1, 2]} ',
        "[1, 2] ",
        "`code()` ",
        "```py\nx = 1\n```\n",
        "[link](http://a.b/c) ",
        "日本語の文章です。",
        "Привет мир ",
        "مرحبا بالعالم ",
        "\n\n",
        "\t",
        "{",
        "]",
        "`",
        "~~~",
    ]
)
_texts = st.one_of(st.text(max_size=300), st.lists(_pieces, max_size=40).map("".join))


@SETTINGS
@given(_texts, st.lists(st.text(min_size=1, max_size=5), max_size=3))
def test_units_join_back_to_the_text(text: str, force: list[str]) -> None:
    units = split_units(text, force_tokens=force)
    assert "".join(u.text for u in units) == text
    pos = 0
    for u in units:
        assert u.start == pos and u.end == u.start + len(u.text) and text[u.start : u.end] == u.text
        assert u.text  # no empty units
        pos = u.end
    assert pos == len(text)


@SETTINGS
@given(_texts, st.lists(st.sampled_from(["Paris", "word", "日本", "\n", "x"]), max_size=2))
def test_every_protected_span_lies_inside_one_protected_unit(text: str, force: list[str]) -> None:
    units = split_units(text, force_tokens=force)
    for start, end in protected_spans(text, force_tokens=force):
        holders = [u for u in units if u.start <= start and end <= u.end]
        assert len(holders) == 1 and holders[0].protected, (text, start, end, units)


@SETTINGS
@given(_texts)
def test_spans_are_sorted_and_disjoint(text: str) -> None:
    spans = protected_spans(text)
    for (s1, e1), (s2, _e2) in pairwise(spans):
        assert s1 < e1 <= s2


def test_structure_is_protected() -> None:
    text = (
        "Install with `pip install foo==1.2.3` then see https://example.com/docs (the guide). "
        'Config: {"a": [1, 2], "b": "x y"} released 2024-01-05 costs $5.99 or 10%.\n'
        "```python\ndef f(x):\n    return x + 1\n```\n"
        "Read [the manual](http://a.b/c?d=1) for v2.0 or mail ops@example.org."
    )
    protected = {u.text.strip() for u in split_units(text, force_tokens=["guide"]) if u.protected}
    for span in [
        "`pip install foo==1.2.3`",
        "https://example.com/docs",
        '{"a": [1, 2], "b": "x y"}',
        "2024-01-05",
        "$5.99",
        "10%",
        "```python\ndef f(x):\n    return x + 1\n```",
        "[the manual](http://a.b/c?d=1)",
        "v2.0",
        "ops@example.org",
        "guide",
    ]:
        assert span in protected, span
    # trailing sentence punctuation is not part of the URL
    assert "https://example.com/docs" in protected and "https://example.com/docs)." not in protected


def test_json_must_parse_to_be_protected() -> None:
    assert not [u for u in split_units("a {not json} b [also not") if u.protected]
    obj = json.dumps({"nested": {"list": [1, {"x": "y z"}]}, "n": None})
    units = split_units(f"before {obj} after")
    assert [u.text.strip() for u in units if u.protected] == [obj]


def test_cjk_is_split_per_character_and_words_elsewhere() -> None:
    units = split_units("東京は日本の首都です。 Tokyo is big.")
    assert [u.text for u in units][:3] == ["東", "京", "は"]
    assert [u.text for u in units][-3:] == ["Tokyo ", "is ", "big."]


def test_protection_can_be_switched_off_and_extended() -> None:
    text = "call 555-1234 at https://x.org now"
    off = ProtectConfig(numbers=False, urls=False)
    assert not [u for u in split_units(text, protect=off) if u.protected]
    extra = ProtectConfig(numbers=False, urls=False, patterns=(r"\bcall\b",))
    assert [u.text for u in split_units(text, protect=extra) if u.protected] == ["call "]
    with pytest.raises(TokenleanError, match="invalid regex"):
        ProtectConfig(patterns=("(",))


def test_empty_and_whitespace_only() -> None:
    assert split_units("") == []
    units = split_units("  \n ")
    assert "".join(u.text for u in units) == "  \n " and not any(u.protected for u in units)


def test_one_huge_document_is_linear_enough() -> None:
    text = ("lorem ipsum 42 dolor https://a.b/c {x [y " * 5000) + "end"
    units = split_units(text)
    assert "".join(u.text for u in units) == text
    assert sum(u.protected for u in units) >= 10000
