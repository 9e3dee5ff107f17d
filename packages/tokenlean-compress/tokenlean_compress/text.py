"""Split a document into droppable units and protected spans.

A *unit* is a word plus its trailing whitespace: the smallest piece the compressor keeps or drops.
Structure that must survive verbatim (fenced and inline code, JSON objects/arrays, URLs and markdown
links, numbers/dates/versions, and the caller's ``force_tokens``) becomes one *protected* unit that
is always kept. Joining every unit's text gives back the input exactly::

    "".join(u.text for u in split_units(text)) == text

CJK characters (which have no spaces between words) are units of one character each, so
non-English text can be compressed too.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from tokenlean_core import TokenleanError

__all__ = ["ProtectConfig", "Unit", "protected_spans", "split_units"]


@dataclass(frozen=True)
class Unit:
    """One droppable (or protected) piece of a document: ``text == source[start:end]``."""

    text: str
    start: int
    end: int
    protected: bool


@dataclass(frozen=True)
class ProtectConfig:
    """Which kinds of structure are kept verbatim.

    ``patterns`` are extra regular expressions whose matches are protected too.
    """

    code: bool = True
    json: bool = True
    urls: bool = True
    numbers: bool = True
    patterns: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        for pattern in self.patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise TokenleanError(
                    f"ProtectConfig.patterns: invalid regex {pattern!r}: {exc}"
                ) from exc


_DEFAULT_PROTECT = ProtectConfig()

_FENCE = re.compile(r"(```|~~~).*?(?:\1|\Z)", re.DOTALL)
_INLINE_CODE = re.compile(r"`[^`\n]+`")
_MD_LINK = re.compile(r"!?\[[^\[\]\n]*\]\([^()\s]*(?:\([^()\s]*\)[^()\s]*)*\)")
_URL = re.compile(r"(?:(?:https?|ftp)://|www\.)[^\s<>\"'`]+", re.IGNORECASE)
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
# A number with what is glued to it: 3.14, 1,000, -2, 10%, $5, v1.2.3, 2024-01-05, 12:30, 5kg, 3rd.
_NUMBER = re.compile(
    r"(?<![A-Za-z0-9_])[$€£¥+\-]?[vV]?\d(?:[A-Za-z0-9_.,:/\-]*[A-Za-z0-9_])?%?",
)
_CJK = (
    "\u2e80-\u2fdf\u3000-\u303f\u3040-\u30ff\u3100-\u312f\u3130-\u318f\u3400-\u4dbf"
    "\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef"
)
# A word: one CJK character, or a run of non-space, non-CJK characters; then trailing whitespace.
_WORD = re.compile(rf"(?:[{_CJK}]|[^\s{_CJK}]+)\s*")
_TRAILING_URL_PUNCT = ".,;:!?'\")]}>"
_JSON_DECODER = json.JSONDecoder()
_MAX_JSON_SCAN = 200_000


def _trim_url(text: str, start: int, end: int) -> int:
    """Drop trailing punctuation from a URL match (keeping balanced parentheses)."""
    while end > start and text[end - 1] in _TRAILING_URL_PUNCT:
        ch = text[end - 1]
        if ch == ")" and text.count("(", start, end) >= text.count(")", start, end):
            break
        end -= 1
    return end


def _json_spans(text: str, taken: list[tuple[int, int]]) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    pos = 0
    n = len(text)
    while True:
        starts = [i for i in (text.find("{", pos), text.find("[", pos)) if i >= 0]
        if not starts:
            break
        i = min(starts)
        if i >= _MAX_JSON_SCAN:
            break
        if _inside(i, taken):
            pos = i + 1
            continue
        try:
            value, end = _JSON_DECODER.raw_decode(text, i)
        except (ValueError, RecursionError):
            pos = i + 1
            continue
        if isinstance(value, (dict, list)) and end <= n:
            spans.append((i, end))
            pos = end
        else:  # pragma: no cover - raw_decode at '{'/'[' yields containers only
            pos = i + 1
    return spans


def _inside(i: int, spans: list[tuple[int, int]]) -> bool:
    return any(s <= i < e for s, e in spans)


def protected_spans(
    text: str, *, force_tokens: Sequence[str] = (), protect: ProtectConfig | None = None
) -> list[tuple[int, int]]:
    """Sorted, non-overlapping ``(start, end)`` character spans of ``text`` to keep verbatim."""
    cfg = protect or _DEFAULT_PROTECT
    spans: list[tuple[int, int]] = []
    if not text:
        return spans
    if cfg.code and ("`" in text or "~~~" in text):
        fences = [m.span() for m in _FENCE.finditer(text)]
        spans.extend(fences)
        spans.extend(
            m.span() for m in _INLINE_CODE.finditer(text) if not _inside(m.start(), fences)
        )
    if cfg.urls:
        links = [m.span() for m in _MD_LINK.finditer(text)]
        spans.extend(links)
        for m in _URL.finditer(text):
            end = _trim_url(text, m.start(), m.end())
            if end > m.start():
                spans.append((m.start(), end))
        spans.extend(m.span() for m in _EMAIL.finditer(text))
    if cfg.json and ("{" in text or "[" in text):
        spans.extend(_json_spans(text, list(spans)))
    if cfg.numbers:
        for m in _NUMBER.finditer(text):
            start, end = m.span()
            while end > start + 1 and text[end - 1] in ".,:/-":
                end -= 1
            spans.append((start, end))
    for pattern in cfg.patterns:
        spans.extend(m.span() for m in re.finditer(pattern, text) if m.end() > m.start())
    for token in force_tokens:
        if token:
            spans.extend(m.span() for m in re.finditer(re.escape(token), text))
    return _merge(spans)


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(s for s in spans if s[1] > s[0]):
        if merged and start < merged[-1][1]:
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


def _words(text: str, start: int, end: int, out: list[Unit]) -> None:
    """Append the unprotected words of ``text[start:end]`` to ``out``."""
    pos = start
    for m in _WORD.finditer(text, start, end):
        if m.start() > pos:  # leading whitespace: glue it to the previous unit (or its own unit)
            _glue(text, pos, m.start(), out)
        out.append(Unit(m.group(), m.start(), m.end(), False))
        pos = m.end()
    if pos < end:
        _glue(text, pos, end, out)


def _glue(text: str, start: int, end: int, out: list[Unit]) -> None:
    if out and out[-1].end == start:
        last = out[-1]
        out[-1] = Unit(text[last.start : end], last.start, end, last.protected)
    else:
        out.append(Unit(text[start:end], start, end, False))


def split_units(
    text: str, *, force_tokens: Sequence[str] = (), protect: ProtectConfig | None = None
) -> list[Unit]:
    """Split ``text`` into units (word + trailing whitespace); protected spans are single units.

    A protected unit carries its own trailing whitespace too. ``"".join(u.text for u in units)``
    equals ``text`` exactly.
    """
    units: list[Unit] = []
    pos = 0
    for start, end in protected_spans(text, force_tokens=force_tokens, protect=protect):
        if end <= pos:  # inside the whitespace already glued to the previous protected unit
            continue
        stop = end
        while stop < len(text) and text[stop].isspace():
            stop += 1
        if start < pos:  # starts in that whitespace: extend the previous protected unit
            last = units[-1]
            units[-1] = Unit(text[last.start : stop], last.start, stop, True)
        else:
            if start > pos:
                _words(text, pos, start, units)
            units.append(Unit(text[start:stop], start, stop, True))
        pos = stop
    if pos < len(text):
        _words(text, pos, len(text), units)
    return units
