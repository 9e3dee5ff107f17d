"""Lexical vocabularies and patterns shared by the components (English).

The cache's false-hit guard and memory's state extractor both look for the same surface cues:
negation, numbers (digits or words), dates (months, weekdays, relative days, ordinals) and
words that are capitalised without being names. They live here once, as plain data and compiled
regular expressions (no framework, no third-party dependency).

* Sets (``NEGATIONS``, ``MONTHS``, ``WEEKDAYS``, ``RELATIVE_DAYS``, ``WH_WORDS``,
  ``FUNCTION_WORDS``, ``STOPWORDS``) hold lowercase words; ``NUMBER_WORDS`` maps a number word
  to its value.
* ``*_RE`` strings are regular-expression fragments (non-capturing groups, no flags) meant to be
  embedded in larger patterns compiled with ``re.I``; ``WORD`` and ``NUMBER`` are compiled.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from types import MappingProxyType

__all__ = [
    "FUNCTION_WORDS",
    "MONTHS",
    "MONTHS_RE",
    "NEGATIONS",
    "NUMBER",
    "NUMBER_WORDS",
    "ORDINAL_RE",
    "RELATIVE_DAYS",
    "RELATIVE_DAYS_RE",
    "STOPWORDS",
    "WEEKDAYS",
    "WEEKDAYS_RE",
    "WH_WORDS",
    "WORD",
    "alternation",
    "count_negations",
    "numbers",
    "wordset",
]


def wordset(text: str) -> frozenset[str]:
    """The whitespace-separated words of ``text`` as a set (for writing vocabularies compactly)."""
    return frozenset(text.split())


def alternation(words: Iterable[str]) -> str:
    """A non-capturing regex group matching any of ``words`` (longest first, escaped)."""
    return (
        "(?:" + "|".join(re.escape(w) for w in sorted(set(words), key=lambda w: (-len(w), w))) + ")"
    )


#: Words that negate a statement or question (contracted forms with and without apostrophe).
NEGATIONS: frozenset[str] = wordset(
    "not no never none nobody nothing neither nor cannot cant can't won't wont dont don't "
    "doesn't doesnt didn't didnt isn't isnt aren't arent wasn't wasnt weren't werent "
    "shouldn't shouldnt couldn't couldnt wouldn't wouldnt haven't havent hasn't hasnt "
    "hadn't hadnt without n't"
)

_UNITS = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen twenty"
)
#: Number words (cardinals up to twenty, tens, scales, a few ordinals and multiplicatives) to
#: their value; "half" maps to 0 (a fraction, not a count).
NUMBER_WORDS: Mapping[str, int] = MappingProxyType(
    {
        **{w: i for i, w in enumerate(_UNITS.split())},
        "thirty": 30,
        "forty": 40,
        "fifty": 50,
        "hundred": 100,
        "thousand": 1000,
        "million": 10**6,
        "billion": 10**9,
        "first": 1,
        "second": 2,
        "third": 3,
        "fourth": 4,
        "fifth": 5,
        "once": 1,
        "twice": 2,
        "half": 0,
    }
)

#: Month names and their usual abbreviations ("may" is also a verb: callers decide).
MONTHS: frozenset[str] = wordset(
    "january february march april may june july august september october november december "
    "jan feb mar apr jun jul aug sep sept oct nov dec"
)
#: The seven weekday names.
WEEKDAYS: frozenset[str] = wordset("monday tuesday wednesday thursday friday saturday sunday")
#: Days named relative to now.
RELATIVE_DAYS: frozenset[str] = wordset("today tonight tomorrow yesterday")
#: Interrogative words.
WH_WORDS: tuple[str, ...] = ("what", "why", "how", "when", "where", "who", "whom", "whose", "which")
#: Pronouns, determiners and auxiliaries: capitalised only at a sentence start, never names.
FUNCTION_WORDS: frozenset[str] = wordset(
    "a an the i i'm i'd i'll i've we you he she it they me my our your their his her its "
    "this that these those"
)

#: English stop words: articles, pronouns, auxiliaries, prepositions, conjunctions and question
#: words, i.e. what carries no content when matching a question's words against a text.
STOPWORDS: frozenset[str] = wordset(
    "a an the i me my we our you your he she it its they them their his her this that these "
    "those and or but if so than then there as at by for from in into of on over to under "
    "with about is are was were be been being do does did have has had can could may might "
    "must shall should will would no not yes what when where which who whom whose why how"
)

MONTHS_RE = alternation(MONTHS)
WEEKDAYS_RE = alternation(WEEKDAYS)
RELATIVE_DAYS_RE = alternation(RELATIVE_DAYS)
#: A day-of-month ordinal: 1st, 22nd, 3rd, 14th.
ORDINAL_RE = r"\d{1,2}(?:st|nd|rd|th)"

#: A word: letters and digits, with inner apostrophes (Unicode-aware, no underscores).
WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*", re.UNICODE)
#: A number written with digits: signs, decimal/thousand separators, times, fractions, dates
#: (``3.5``, ``1,000``, ``10:30``, ``1/2``), optional ordinal, percent or magnitude suffix.
NUMBER = re.compile(r"(?<![\w.])[-+]?\d+(?:[.,:/]\d+)*(?:st|nd|rd|th|%|k|m|s)?(?!\w)", re.I)


def numbers(text: str, words: Iterable[str] | None = None) -> frozenset[str]:
    """The numbers ``text`` mentions, normalised to strings: digits as written (lowercased,
    ``%`` and thousands commas dropped) and number words as their value, so "3 days" and
    "three days" agree. ``words`` are the text's words if already split."""
    found = {m.group(0).lower().rstrip("%").replace(",", "") for m in NUMBER.finditer(text)}
    for w in WORD.findall(text) if words is None else words:
        value = NUMBER_WORDS.get(w.lower())
        if value is not None:
            found.add(str(value))
    return frozenset(found)


def count_negations(words: Iterable[str]) -> int:
    """How many negations ``words`` contain (listed negations and any ``…n't`` contraction)."""
    total = 0
    for w in words:
        low = w.lower().replace("’", "'")
        if low in NEGATIONS or low.endswith("n't"):
            total += 1
    return total
