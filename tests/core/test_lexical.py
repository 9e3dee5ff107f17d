"""The shared lexical vocabularies and patterns (tokenlean_core.lexical)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tokenlean_core import lexical as lx


def test_number_normalisation_agrees_on_digits_and_words() -> None:
    assert lx.numbers("a 3 day trip") == lx.numbers("a three day trip") == frozenset({"3"})
    assert lx.numbers("1,000 users at 50%") == frozenset({"1000", "50"})
    assert lx.numbers("meet at 10:30 on the 2nd") == frozenset({"10:30", "2nd"})
    assert lx.numbers("no numbers here") == frozenset()
    assert lx.numbers("v1.2") == frozenset()  # part of a word, not a number


@pytest.mark.parametrize(
    ("text", "count"),
    [
        ("I do not like it", 1),
        ("I don't like it", 1),
        ("I don’t like it", 1),  # typographic apostrophe counts once
        ("it isn't not true", 2),
        ("I like it", 0),
        ("never without you", 2),
    ],
)
def test_count_negations(text: str, count: int) -> None:
    assert lx.count_negations(lx.WORD.findall(text)) == count


def test_month_and_day_patterns_match_every_listed_form() -> None:
    months = re.compile(r"\b" + lx.MONTHS_RE + r"\b", re.I)
    for m in lx.MONTHS:
        assert months.fullmatch(m) and months.fullmatch(m.title())
    assert not months.search("marching orders")
    days = re.compile(r"\b" + lx.WEEKDAYS_RE + r"\b", re.I)
    assert {days.fullmatch(d) is not None for d in lx.WEEKDAYS} == {True}
    assert not days.search("today")
    rel = re.compile(lx.RELATIVE_DAYS_RE)
    assert all(rel.fullmatch(d) for d in lx.RELATIVE_DAYS)
    date = re.compile(r"\b" + lx.MONTHS_RE + r"\.?\s+(?:" + lx.ORDINAL_RE + r"|\d{1,2})\b", re.I)
    assert date.search("due Sept. 3rd").group(0) == "Sept. 3rd"  # type: ignore[union-attr]
    assert date.search("on march 14").group(0) == "march 14"  # type: ignore[union-attr]


def test_alternation_prefers_the_longest_word_and_escapes() -> None:
    pat = re.compile(lx.alternation(["jan", "january", "a.b"]))
    assert pat.match("january").group(0) == "january"  # type: ignore[union-attr]
    assert pat.fullmatch("a.b") and not pat.fullmatch("axb")


def test_vocabularies_are_lowercase_and_immutable() -> None:
    for vocab in (lx.NEGATIONS, lx.MONTHS, lx.WEEKDAYS, lx.RELATIVE_DAYS, lx.FUNCTION_WORDS):
        assert isinstance(vocab, frozenset) and all(w == w.lower() for w in vocab)
    assert lx.NUMBER_WORDS["twelve"] == 12 and lx.NUMBER_WORDS["twice"] == 2
    with pytest.raises(TypeError):
        lx.NUMBER_WORDS["dozen"] = 12  # type: ignore[index]
    assert lx.wordset(" a  b\nc ") == frozenset({"a", "b", "c"})


def test_core_stays_framework_free() -> None:
    src = Path(lx.__file__).read_text(encoding="utf-8")
    imports = {m.group(1) for m in re.finditer(r"^(?:from|import) ([\w.]+)", src, re.M)}
    assert imports <= {"__future__", "re", "collections.abc", "types"}
