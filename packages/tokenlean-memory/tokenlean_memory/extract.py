"""State extractors: a lexical one that needs no model, and one that asks an LLM.

Both return a :class:`~tokenlean_memory.schema.MemoryState` that the engine merges into the
session's validated state.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from pydantic import ValidationError

from tokenlean_core import Message

from .models import TextModel
from .schema import Entity, MemoryState, ToolResult

__all__ = [
    "LLMStateExtractor",
    "LexicalExtractor",
    "StateExtractor",
    "key_terms",
]

logger = logging.getLogger("tokenlean.memory")

_MONTHS = (
    r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|"
    r"sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)"
)
_DAYS = r"(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday)"
_ORD = r"\d{1,2}(?:st|nd|rd|th)"
_PART_OF_DAY = r"(?:\s+(?:in\s+the\s+(?:morning|afternoon|evening)|at\s+night|tonight))"

_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("email", re.compile(r"\b[\w.+-]+@[\w-]+\.[\w.-]+\b")),
    ("url", re.compile(r"\bhttps?://[^\s<>\"')]+", re.I)),
    (
        "money",
        re.compile(
            r"(?:[$€£¥]\s?\d[\d,]*(?:\.\d+)?(?:\s?(?:k|m|bn|million|billion))?)|"
            r"\b\d[\d,]*(?:\.\d+)?\s?(?:dollars|usd|eur|euros|gbp|pounds|bucks)\b",
            re.I,
        ),
    ),
    ("phone", re.compile(r"(?<!\w)(?:\+?\d{1,3}[\s.-])?\(?\d{3}\)?[\s.-]\d{3}[\s.-]\d{4}\b")),
    (
        "time",
        re.compile(
            r"\b(?:(?:half|quarter)\s+(?:past|to)\s+\d{1,2}|\d{1,2}(?::\d{2})?\s?"
            r"(?:a\.?m\.?|p\.?m\.?)|\d{1,2}:\d{2}|\d{1,2}\s+o'?clock)" + _PART_OF_DAY + r"?|"
            r"\b\d{1,2}" + _PART_OF_DAY + r"|\b(?:noon|midnight)\b",
            re.I,
        ),
    ),
    (
        "date",
        re.compile(
            r"\b\d{4}-\d{2}-\d{2}\b|\b\d{1,2}/\d{1,2}(?:/\d{2,4})?\b|"
            r"\b(?:day\s+after\s+)?(?:today|tonight|tomorrow|yesterday)\b|"
            r"\b(?:"
            + _DAYS
            + r"\s+)?(?:this|next|last)\s+(?:week(?:end)?|month|year|"
            + _DAYS
            + r")\b|"
            r"\b" + _MONTHS + r"\.?\s+(?:" + _ORD + r"|\d{1,2})\b(?:,?\s+\d{4})?|"
            r"\b(?:the\s+)?"
            + _ORD
            + r"(?:\s+of\s+(?:"
            + _MONTHS
            + r"|(?:this|next|the)\s+month))?\b|"
            r"\b" + _DAYS + r"\b",
            re.I,
        ),
    ),
    (
        "quoted",
        re.compile(r"\"([^\"\n]{1,80})\"|“([^”\n]{1,80})”|(?<![\w])'([^'\n]{2,60})'(?![\w])"),
    ),
    ("id", re.compile(r"\b(?=[A-Z0-9#-]*\d)(?=[A-Z0-9#-]*[A-Z])[A-Z0-9][A-Z0-9#-]{3,}\b")),
    (
        "address",
        re.compile(r"\b\d{1,6}\s+(?:[A-Z][\w'-]*[ \t]+){1,4}[A-Z]\w*\.?(?:[ \t]+#\s?\w+)?"),
    ),
    ("id", re.compile(r"(?<![\w.])v?\d+(?:\.\d+){2,}(?![\w.]\w)")),  # versions: 2.4.1
    ("number", re.compile(r"(?<![\w.:/$-])\d+(?:\.\d+)?(?![\w:/])")),
]

_ACCEPT = re.compile(
    r"\s*(?:yes|yeah|yep|yup|sure|ok(?:ay)?|alright|correct|right|perfect|great|sounds good|"
    r"that (?:works|is fine|'s fine|sounds (?:good|great))|please do|go ahead|book it|do it|"
    r"i(?:'ll| will) take it|that one|works for me)\b",
    re.I,
)
_SLOT = re.compile(
    r"(?:^|[\n;,(.!?])\s*([A-Za-z][A-Za-z0-9_ ]{0,30}?)\s*[:=]\s*([^,;\n)]{1,60})", re.MULTILINE
)
_SLOT_BAD_VALUE = re.compile(r"^(?:i|we|you|it|they|he|she|please|this|that|there)\b", re.I)

# Words that are capitalised only because they start a sentence or are too common to be names.
_NOT_NAMES = frozenset(
    [
        "a",
        "an",
        "the",
        "i",
        "i'm",
        "i'd",
        "i'll",
        "i've",
        "we",
        "you",
        "he",
        "she",
        "it",
        "they",
        "me",
        "my",
        "our",
        "your",
        "their",
        "his",
        "her",
        "its",
        "this",
        "that",
        "these",
        "those",
        "there",
        "here",
        "what",
        "which",
        "who",
        "whom",
        "whose",
        "when",
        "where",
        "why",
        "how",
        "yes",
        "no",
        "ok",
        "okay",
        "sure",
        "thanks",
        "thank",
        "please",
        "hi",
        "hello",
        "hey",
        "great",
        "good",
        "fine",
        "perfect",
        "alright",
        "also",
        "and",
        "but",
        "or",
        "so",
        "if",
        "then",
        "can",
        "could",
        "would",
        "should",
        "will",
        "shall",
        "may",
        "might",
        "must",
        "do",
        "does",
        "did",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "am",
        "have",
        "has",
        "had",
        "let",
        "let's",
        "is",
        "there",
        "any",
        "anything",
        "else",
        "nothing",
        "sounds",
        "how's",
        "what's",
        "that's",
        "it's",
        "sorry",
        "well",
        "actually",
        "just",
        "really",
        "confirming",
        "okay,",
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
        "ten",
        "find",
        "book",
        "get",
        "make",
        "search",
        "look",
        "show",
        "tell",
        "give",
        "check",
        "see",
        "want",
        "need",
        "like",
        "reserve",
        "buy",
        "play",
        "add",
        "set",
        "call",
        "send",
        "go",
        "try",
        "use",
        "pick",
        "choose",
        "cancel",
        "change",
        "move",
        "schedule",
        "today",
        "tomorrow",
        "tonight",
        "yesterday",
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
        "january",
        "february",
        "march",
        "april",
        "may",
        "june",
        "july",
        "august",
        "september",
        "october",
        "november",
        "december",
        "am",
        "pm",
        "mr",
        "mrs",
        "ms",
        "dr",
        "none",
        "not",
        "no,",
    ]
)
_CAP_SEQ = re.compile(
    r"\b[A-Z][\w'&.-]*(?:\s+(?:(?:of|de|la|le|the|and|&|van|von|del|da|di|du)\s+)?"
    r"[A-Z0-9][\w'&.-]*)*(?:,\s[A-Z]{2}\b)?"
)
_SENT_START = re.compile(r"(?:^|[.!?:;\n]\s*|[\"“(]\s*)$")
_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9'_-]*")
_STOP = _NOT_NAMES | frozenset(
    [
        "about",
        "after",
        "again",
        "all",
        "also",
        "another",
        "around",
        "because",
        "before",
        "being",
        "between",
        "both",
        "each",
        "for",
        "from",
        "into",
        "more",
        "most",
        "much",
        "only",
        "other",
        "over",
        "same",
        "some",
        "such",
        "than",
        "them",
        "too",
        "under",
        "until",
        "very",
        "with",
        "without",
        "going",
        "back",
        "said",
        "told",
        "earlier",
        "mentioned",
        "again",
        "want",
        "wanted",
        "need",
        "needed",
        "like",
        "liked",
    ]
)


@runtime_checkable
class StateExtractor(Protocol):
    """Reads new messages and returns the state they add."""

    def extract(self, messages: Sequence[Message], start_index: int) -> MemoryState: ...

    async def aextract(self, messages: Sequence[Message], start_index: int) -> MemoryState: ...


def _clean(value: str) -> str:
    return " ".join(value.strip(" \t\n.,;:!?").split())


def _names(text: str) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    for m in _CAP_SEQ.finditer(text):
        words = m.group(0).rstrip(".'").split()
        at_start = bool(_SENT_START.search(text[: m.start()]))
        # drop leading words that are capitalised only as sentence openers or common words
        while words and words[0].lower().strip(",") in _NOT_NAMES:
            words = words[1:]
            at_start = False
        while words and words[-1].lower() in _NOT_NAMES:
            words = words[:-1]
        if not words:
            continue
        if len(words) == 1 and at_start and m.start() == 0 and words[0].lower() in _STOP:
            continue
        name = " ".join(words).strip(",")
        pos = text.find(words[0], m.start())
        if len(name) >= 2:
            out.append((pos if pos >= 0 else m.start(), name))
    return out


class LexicalExtractor:
    """A no-model extractor: numbers, dates, times, money, quoted values, capitalised names,
    ids, addresses and ``slot: value`` pairs; tool results from tool messages.

    Deterministic and fast (regular expressions), so the memory keeps the facts a conversation
    turns on with no model at all. An LLM extractor, when given, merges into the same state.
    """

    def __init__(self, *, roles: Sequence[str] = ("user", "assistant", "tool")) -> None:
        self.roles = frozenset(roles)

    def entities(self, text: str, role: str = "user", index: int = 0) -> list[Entity]:
        found: list[Entity] = []
        taken: list[tuple[int, int]] = []

        def free(a: int, b: int) -> bool:
            return all(b <= s or a >= e for s, e in taken)

        for kind, pattern in _PATTERNS:
            for m in pattern.finditer(text):
                if not free(m.start(), m.end()):
                    continue
                raw = next((g for g in m.groups() if g), m.group(0)) if m.groups() else m.group(0)
                value = _clean(raw)
                if not value:
                    continue
                taken.append((m.start(), m.end()))
                found.append(
                    Entity(
                        kind=kind,  # type: ignore[arg-type]
                        value=value[:200],
                        role=role,
                        first_index=index,
                        last_index=index,
                    )
                )
        for start, name in _names(text):
            if not free(start, start + len(name)):
                continue
            if role != "user" and " " not in name and _SENT_START.search(text[:start]):
                continue  # a lone capitalised sentence opener from the assistant: rarely a name
            found.append(
                Entity(
                    kind="name", value=name[:200], role=role, first_index=index, last_index=index
                )
            )
        return found

    def slots(self, text: str) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        for m in _SLOT.finditer(text):
            key, value = _clean(m.group(1)), _clean(m.group(2))
            if not key or not value or len(key.split()) > 3 or len(value.split()) > 6:
                continue
            if _SLOT_BAD_VALUE.match(value) or key.lower() in ("http", "https"):
                continue
            out.append((key, value))
        return out

    def extract(self, messages: Sequence[Message], start_index: int = 0) -> MemoryState:
        state = MemoryState()
        call_names: dict[str, str] = {}
        offered: list[Entity] = []  # the assistant's values awaiting the user's answer
        for offset, msg in enumerate(messages):
            if msg.role == "user" and offered and _ACCEPT.match(msg.content or ""):
                for e in offered:
                    state.add_entity(e.model_copy(update={"confirmed": True}), 10_000)
            if msg.role in ("user", "assistant"):
                offered = []
            index = start_index + offset
            for call in msg.tool_calls:
                if call.id:
                    call_names[call.id] = call.name
            if msg.role not in self.roles or not msg.content:
                continue
            if msg.role == "tool":
                name = call_names.get(msg.tool_call_id or "", msg.name or "tool")
                state.tool_results.append(_tool_result(name, msg.tool_call_id, msg.content, index))
            for entity in self.entities(msg.content, msg.role, index):
                if msg.role == "user":
                    entity.confirmed = True
                elif msg.role == "assistant":
                    offered.append(entity)
                state.add_entity(entity, max_entities=10_000)
            for key, value in self.slots(msg.content):
                state.set_slot(key, value)
        return state

    async def aextract(self, messages: Sequence[Message], start_index: int = 0) -> MemoryState:
        return self.extract(messages, start_index)


def _tool_result(name: str, call_id: str | None, content: str, index: int) -> ToolResult:
    return ToolResult(name=name or "tool", call_id=call_id, content=content, index=index)


_LLM_PROMPT = """Extract the facts from these chat messages as lines of the form
slot: value
(one per line; slots are short snake_case names such as date, city, party_size, budget).
Use "decision: ..." for decisions made and "task: ..." for open tasks. Output nothing else.

Messages:
{messages}

Facts:
"""

_LINE = re.compile(r"^\s*[-*]?\s*([A-Za-z][\w ]{0,40}?)\s*[:=]\s*(.+?)\s*$")


class LLMStateExtractor:
    """Ask a chat model (through :class:`~tokenlean_memory.models.TextModel`) for ``slot: value``
    lines; parse and validate them. Malformed lines are skipped, never trusted."""

    def __init__(self, model: TextModel, *, prompt: str = _LLM_PROMPT, max_chars: int = 4000):
        if "{messages}" not in prompt:
            raise ValueError("the extractor prompt must contain '{messages}'")
        self.model = model
        self.prompt = prompt
        self.max_chars = max_chars

    def _prompt(self, messages: Sequence[Message]) -> str:
        lines = [f"{m.role}: {m.content}" for m in messages if m.content]
        return self.prompt.format(messages="\n".join(lines)[-self.max_chars :])

    def parse(self, text: str) -> MemoryState:
        state = MemoryState()
        for line in text.splitlines():
            m = _LINE.match(line)
            if not m:
                continue
            key, value = m.group(1).strip().lower(), _clean(m.group(2))
            if not value or value.lower() in ("none", "n/a", "unknown"):
                continue
            try:
                if key in ("decision", "decisions"):
                    state.add_unique("decisions", value)
                elif key in ("task", "open task", "todo", "open_task"):
                    state.add_unique("open_tasks", value)
                else:
                    state.set_slot(key.replace(" ", "_"), value[:200])
            except ValidationError:  # pragma: no cover - defensive, values are plain strings
                logger.debug("dropped an invalid extracted line")
        return state

    def extract(self, messages: Sequence[Message], start_index: int = 0) -> MemoryState:
        if not any(m.content for m in messages):
            return MemoryState()
        return self.parse(self.model.complete(self._prompt(messages)))

    async def aextract(self, messages: Sequence[Message], start_index: int = 0) -> MemoryState:
        if not any(m.content for m in messages):
            return MemoryState()
        return self.parse(await self.model.acomplete(self._prompt(messages)))


def key_terms(text: str, extractor: LexicalExtractor | None = None) -> set[str]:
    """Lower-cased entity values and content words of ``text``, for recall by overlap."""
    ex = extractor or LexicalExtractor()
    terms = {e.value.lower() for e in ex.entities(text)}
    for w in _WORD.findall(text):
        lw = w.lower()
        if len(lw) > 3 and lw not in _STOP:
            terms.add(lw)
    return terms
