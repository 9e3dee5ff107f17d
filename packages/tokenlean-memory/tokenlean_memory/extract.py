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
from tokenlean_core.lexical import MONTHS_RE, ORDINAL_RE, WEEKDAYS_RE

from .models import TextModel
from .schema import Entity, MemoryState, StateSchema, ToolResult

__all__ = [
    "LLMStateExtractor",
    "LexicalExtractor",
    "StateExtractor",
    "key_terms",
]

logger = logging.getLogger("tokenlean.memory")

_MONTHS, _DAYS, _ORD = MONTHS_RE, WEEKDAYS_RE, ORDINAL_RE  # shared: tokenlean_core.lexical
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


# Capitalised only because they open a sentence (checked there only: "In-N-Out" stays a name).
_OPENERS = frozenset(
    [
        "on",
        "in",
        "at",
        "for",
        "from",
        "to",
        "with",
        "by",
        "about",
        "after",
        "before",
        "around",
        "near",
        "into",
        "of",
        "off",
        "over",
        "under",
        "yup",
        "yeah",
        "yep",
        "nope",
        "nah",
        "cool",
        "awesome",
        "wonderful",
        "excellent",
        "nice",
        "thanks",
        "thank",
        "bye",
        "goodbye",
        "oh",
        "um",
        "uh",
        "hmm",
        "wow",
    ]
)


def _names(text: str) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    for m in _CAP_SEQ.finditer(text):
        words = m.group(0).rstrip(".'").split()
        at_start = bool(_SENT_START.search(text[: m.start()]))
        # drop leading words that are capitalised only as sentence openers or common words
        while words and (
            words[0].lower().strip(",.!?") in _NOT_NAMES
            or (at_start and words[0].lower().strip(",.!?") in _OPENERS)
        ):
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


# Generic fallback for values typed in lower case with no schema to recognise them (user turns
# only): a place after a preposition ending the clause ("in long beach."), the word before a
# category noun ("italian food", "comedy movies"), and times in words ("five pm").
_NUM_WORD = r"(?:one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve)"
_CLAUSE_END = (
    r"(?=\s*(?:[.,!?;]|$|\s(?:and|or|on|for|from|to|with|please|instead|tomorrow|today|"
    r"next|this|at)\b))"
)
# lower-case region codes that are not also common words ("or", "in", "me", "hi", "ok" are)
_REGION_CODES = (
    r"(?:al|ak|az|ar|ca|ct|de|dc|fl|ga|ia|id|il|ks|ky|md|mi|mn|ms|mo|mt|nc|nd|ne|nh|nj|nm|nv|"
    r"ny|oh|pa|ri|sc|sd|tn|tx|ut|va|vt|wa|wi|wv|wy|uk|bc|qc)"
)
_LOW_WORD = r"[A-Za-z][a-z'&-]*"
_LOWER_VALUES: list[re.Pattern[str]] = [
    re.compile(
        r"\b(?:in|to|from|near|around)\s+("
        + _LOW_WORD
        + r"(?:\s+"
        + _LOW_WORD
        + r")?)"
        + _CLAUSE_END
    ),
    re.compile(
        r"\b(?:like|love|enjoy|prefer|preferably|into|fan\s+of)\s+("
        + _LOW_WORD
        + r"(?:\s+"
        + _LOW_WORD
        + r")?)"
        + _CLAUSE_END
    ),
    # a match-up typed in lower case: "mets vs braves"
    re.compile(r"\b([A-Za-z][\w'-]*\s+vs\.?\s+[A-Za-z][\w'-]*)\b"),
    # a place with its region: "Toronto, Canada", "anaheim, CA", "fresno, ca"
    re.compile(
        r"\b((?:[A-Za-z][a-z]+\s+)?[A-Za-z][a-z]+,\s*(?:[A-Z][a-z]+|[A-Z]{2}|"
        + _REGION_CODES
        + r"))(?=\s*(?:[.,!?;]|$|\s))"
    ),
    re.compile(
        r"\b(" + _LOW_WORD + r"(?:\s+" + _LOW_WORD + r")?)\s+(?:food|cuisine|music|songs?|"
        r"movies?|films?|restaurants?|shows?|concerts?|games?|events?|dishes|meals?)\b"
    ),
    re.compile(
        r"\b(" + _NUM_WORD + r"(?:\s+(?:fifteen|thirty|forty[- ]five))?\s*(?:pm|am|"
        r"o'?clock(?:\s+in\s+the\s+(?:morning|afternoon|evening))?|"
        r"in\s+the\s+(?:morning|afternoon|evening)))\b"
        r"|\b((?:morning|afternoon|evening)\s+\d{1,2}(?::\d{2})?)(?!\w)",
        re.I,
    ),
]
_LOWER_STOP = frozenset(
    [
        "night",
        "morning",
        "afternoon",
        "evening",
        "home",
        "work",
        "least",
        "most",
        "first",
        "last",
        "nice",
        "good",
        "best",
        "different",
        "other",
        "same",
        "favorite",
        "favourite",
        "live",
        "local",
        "time",
        "watch",
        "hear",
        "eat",
        "listen",
        "play",
        "attend",
        "visit",
        "see",
        "stay",
        "fly",
        "travel",
        "leave",
        "return",
        "there",
        "here",
        "area",
        "place",
        "city",
        "town",
        "hotel",
        "restaurant",
        "one",
        "ones",
        "thing",
        "things",
        "something",
        "anything",
        "it",
        "them",
        "mind",
        "general",
        "kind",
        "type",
        "sort",
    ]
)


# Schema values that name a state rather than a phrase anyone types: never matched in text.
_SENTINEL_VALUES = frozenset(["true", "false", "none", "dontcare", "null", "n/a", "unknown"])
# "one", "two": too common in text to be matched as a slot's value (digits likewise).
_NUMBER_WORDS = frozenset(
    [
        "zero",
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
        "eleven",
        "twelve",
    ]
)


class LexicalExtractor:
    """A no-model extractor: numbers, dates, times, money, quoted values, capitalised names,
    ids, addresses and ``slot: value`` pairs; tool results from tool messages. Given a
    :class:`~tokenlean_memory.schema.StateSchema`, also the possible values of its categorical
    slots in any casing (kind ``"value"``, filed under their slot when only one slot has them).

    Deterministic and fast (regular expressions), so the memory keeps the facts a conversation
    turns on with no model at all. An LLM extractor, when given, merges into the same state.
    """

    def __init__(
        self,
        *,
        roles: Sequence[str] = ("user", "assistant", "tool"),
        schema: StateSchema | None = None,
        lowercase_values: bool = True,
    ) -> None:
        self.roles = frozenset(roles)
        self.schema = schema
        self.lowercase_values = lowercase_values
        self._schema_index: dict[str, list[tuple[str, str]]] = {}
        self._schema_re: re.Pattern[str] | None = None
        if schema is not None:
            self._schema_index = {
                k: v
                for k, v in schema.value_index().items()
                if not k.isdigit() and k not in _SENTINEL_VALUES and k not in _NUMBER_WORDS
            }
            if self._schema_index:
                alts = sorted(self._schema_index, key=len, reverse=True)
                self._schema_re = re.compile(
                    r"(?<!\w)(?:" + "|".join(re.escape(a) for a in alts) + r")(?!\w)", re.I
                )

    def _lowercase_values(self, text: str, role: str, index: int) -> list[Entity]:
        """The generic fallback for lower-case values (see ``_LOWER_VALUES``)."""
        out: list[Entity] = []
        for n, pattern in enumerate(_LOWER_VALUES):
            for m in pattern.finditer(text):
                raw = next((g for g in m.groups() if g), "")
                words = raw.split()
                if n == len(_LOWER_VALUES) - 1:  # a time in words: kept whole
                    out.append(
                        Entity(
                            kind="time", value=raw, role=role, first_index=index, last_index=index
                        )
                    )
                    continue
                while words and (
                    words[0].lower() in _STOP
                    or words[0].lower() in _LOWER_STOP
                    or words[0].lower() in _OPENERS
                ):
                    words = words[1:]
                if not words or words[-1].lower() in _STOP or words[-1].lower() in _LOWER_STOP:
                    continue
                value = " ".join(words)
                if len(value) >= 3:
                    out.append(
                        Entity(
                            kind="value",
                            value=value,
                            role=role,
                            first_index=index,
                            last_index=index,
                        )
                    )
        return out

    def _schema_entities(self, text: str, role: str, index: int) -> list[Entity]:
        """Possible values of the schema's categorical slots, in any casing, as whole words."""
        if self._schema_re is None:
            return []
        out: list[Entity] = []
        for m in self._schema_re.finditer(text):
            owners = self._schema_index.get(m.group(0).lower(), [])
            if not owners:
                continue
            slot = owners[0][0] if len({o[0] for o in owners}) == 1 else None
            out.append(
                Entity(
                    kind="value",
                    value=owners[0][1],
                    role=role,
                    first_index=index,
                    last_index=index,
                    slot=slot,
                )
            )
        return out

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
        # schema values are matched on their own (a value inside an address still counts) and
        # replace a plain entity with the same text
        values = self._schema_entities(text, role, index)
        if role in ("user", "assistant") and self.lowercase_values:
            have = {e.value.lower() for e in found + values}
            for e in self._lowercase_values(text, role, index):
                if e.value.lower() not in have and not any(e.value.lower() in h for h in have):
                    values.append(e)
                    have.add(e.value.lower())
        if values:
            known = {e.value.lower() for e in values}
            found = [e for e in found if e.value.lower() not in known] + values
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
