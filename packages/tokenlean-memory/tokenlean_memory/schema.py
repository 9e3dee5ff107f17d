"""Validated data kept by the memory: configuration, structured state and the persisted record."""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "Entity",
    "MemoryConfig",
    "MemoryRecord",
    "MemoryState",
    "StateSchema",
    "SummarySegment",
    "ToolResult",
]

EntityKind = Literal[
    "money",
    "time",
    "date",
    "number",
    "email",
    "phone",
    "url",
    "quoted",
    "name",
    "id",
    "address",
    "value",
]


class MemoryConfig(BaseModel):
    """How the memory builds each turn's context. Validated at construction.

    ``budget_tokens`` bounds the whole prompt the model gets: the system prompt, the tool schemas,
    the memory block and the recent turns, counted with ``tokenlean_core.count_tokens`` for
    ``model``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    budget_tokens: int = Field(default=2000, ge=16, description="token budget of the whole prompt")
    model: str | None = Field(default=None, description="model whose tokenizer counts the budget")
    max_recent_messages: int | None = Field(
        default=None,
        ge=1,
        description="cap on verbatim recent messages (older ones live on in summary/state/recall);"
        " None fills the budget",
    )
    min_recent_messages: int = Field(
        default=2,
        ge=1,
        description="latest messages kept verbatim before the memory layers get room",
    )
    summary_max_tokens: int = Field(default=256, ge=0, description="cap of the rendered summary")
    state_max_tokens: int = Field(
        default=256, ge=0, description="cap of the rendered structured state"
    )
    recall_k: int = Field(
        default=2, ge=0, description="older turns recalled for the current message"
    )
    recall_max_tokens: int = Field(default=120, ge=0, description="cap of each recalled turn")
    recall_min_overlap: int = Field(
        default=2,
        ge=1,
        description="overlap score to recall a turn (shared word 1, shared entity 2)",
    )
    recall_min_similarity: float = Field(default=0.55, ge=-1.0, le=1.0)
    summarize_min_messages: int = Field(
        default=4,
        ge=1,
        description="evicted, unsummarised messages that trigger a summary extension",
    )
    summary_segment_max_chars: int = Field(default=1200, ge=32)
    max_entities: int = Field(
        default=200, ge=0, description="entities kept in the state (oldest go)"
    )
    max_tool_results: int = Field(default=8, ge=0)
    tool_result_max_chars: int = Field(default=400, ge=16)
    memory_header: str = "Memory of earlier turns:"
    state_style: Literal["compact", "grouped"] = Field(
        default="compact",
        description="'compact': one line of values (slots as key=value), no kind labels, values "
        "contained in another rendered value dropped; 'grouped': one labelled line per kind",
    )
    unconfirmed_entities: bool = Field(
        default=True,
        description="render entities the assistant offered but the user never stated or accepted"
        " (after every confirmed one, budget permitting)",
    )
    compact_under_budget: bool = Field(
        default=False,
        description="use the memory (state + capped recent turns) even when the whole history"
        " fits the budget, whenever it is smaller; needs max_recent_messages",
    )
    offered_max_age: int | None = Field(
        default=None,
        ge=0,
        description="render an entity offered once and never confirmed only while it is at most"
        " this many messages old (None: no age limit)",
    )
    record_savings: bool = True

    @classmethod
    def lean(cls, budget_tokens: int = 100, **overrides: Any) -> MemoryConfig:
        """The lean profile: the settings ``benchmarks/memory.py`` fitted on Schema-Guided
        Dialogue (its fit split) for the largest saving at high state recall.

        Two verbatim recent messages, the structured state rendered compactly and used even when
        the whole history would fit (``compact_under_budget``), summary extensions capped at a
        fifth of the budget, state capped by the room left, and the short header ``"Memory:"``.
        At 100 tokens it sent 62% fewer tokens than the full history with state recall 0.96 on
        the report split. ``overrides`` replace any field (``model=...`` for the tokenizer).
        """
        settings: dict[str, Any] = {
            "budget_tokens": budget_tokens,
            "max_recent_messages": 2,
            "summarize_min_messages": 4,
            "summary_max_tokens": max(16, budget_tokens // 5),
            "state_max_tokens": budget_tokens,
            "compact_under_budget": True,
            "memory_header": "Memory:",
        }
        return cls(**{**settings, **overrides})

    @model_validator(mode="after")
    def _compact_needs_cap(self) -> MemoryConfig:
        if self.compact_under_budget and self.max_recent_messages is None:
            raise ValueError("compact_under_budget needs max_recent_messages (the window cap)")
        return self


class Entity(BaseModel):
    """A value mentioned in the conversation (a date, an amount, a name, ...)."""

    model_config = ConfigDict(extra="forbid")

    kind: EntityKind
    value: str = Field(min_length=1, max_length=200)
    role: str = "user"
    first_index: int = Field(default=0, ge=0)
    last_index: int = Field(default=0, ge=0)
    mentions: int = Field(default=1, ge=1)
    confirmed: bool = Field(default=False, description="the user stated, repeated or accepted it")
    slot: str | None = Field(default=None, description="schema slot the value belongs to, if known")

    @field_validator("value")
    @classmethod
    def _strip(cls, v: str) -> str:
        v = " ".join(v.split())
        if not v:
            raise ValueError("empty entity value")
        return v


_VALUE_WORD = re.compile(r"\w")


class StateSchema(BaseModel):
    """What the application knows of its state: slot names and, for categorical slots, their
    possible values (e.g. ``{"flight_class": ["Economy", "Premium Economy", "Business"]}``).

    With a schema the lexical extractor finds those values in any casing ("economy", "ECONOMY")
    as whole words and files them under their slot; without one it relies on generic patterns.
    Free-form slots are listed with no values. Values with no letters or digits are dropped.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    slots: dict[str, Sequence[str]] = Field(default_factory=dict)

    @field_validator("slots", mode="before")
    @classmethod
    def _normalise(cls, v: Any) -> dict[str, tuple[str, ...]]:
        if not isinstance(v, Mapping):
            raise ValueError("slots must map slot names to lists of possible values")
        out: dict[str, tuple[str, ...]] = {}
        for name, values in v.items():
            key = " ".join(str(name).split())
            if not key:
                raise ValueError("empty slot name")
            if isinstance(values, str):
                raise ValueError(f"slot {key!r}: possible values must be a list, not a string")
            seen: dict[str, str] = {}
            for val in values or ():
                text = " ".join(str(val).split())
                if text and _VALUE_WORD.search(text):
                    seen.setdefault(text.lower(), text)
            out[key] = tuple(seen.values())
        return out

    @classmethod
    def from_sgd(
        cls, services: Iterable[Mapping[str, Any]], *, prefix_service: bool = False
    ) -> StateSchema:
        """Build from Schema-Guided Dialogue ``schema.json`` entries (``service_name``,
        ``slots[{name, is_categorical, possible_values}]``); non-categorical slots get no values."""
        slots: dict[str, list[str]] = {}
        for svc in services:
            for sl in svc.get("slots", ()):
                name = str(sl["name"])
                if prefix_service:
                    name = f"{svc['service_name']}.{name}"
                vals = list(sl.get("possible_values", ())) if sl.get("is_categorical") else []
                slots.setdefault(name, []).extend(vals)
        return cls(slots=dict(slots))

    def value_index(self) -> dict[str, list[tuple[str, str]]]:
        """Lower-cased value -> [(slot, canonical value)], for matching."""
        idx: dict[str, list[tuple[str, str]]] = {}
        for slot, values in self.slots.items():
            for v in values:
                idx.setdefault(v.lower(), []).append((slot, v))
        return idx


class ToolResult(BaseModel):
    """The (truncated) result of a tool call, kept so the model knows what tools returned."""

    model_config = ConfigDict(extra="forbid")

    name: str
    call_id: str | None = None
    content: str
    index: int = Field(default=0, ge=0)


class MemoryState(BaseModel):
    """Structured state: slots, entities, decisions, open tasks and tool results.

    Slots are ``name -> value`` (the latest value wins; ``slot_history`` keeps earlier ones).
    """

    model_config = ConfigDict(extra="forbid")

    slots: dict[str, str] = Field(default_factory=dict)
    slot_history: dict[str, list[str]] = Field(default_factory=dict)
    entities: list[Entity] = Field(default_factory=list)
    decisions: list[str] = Field(default_factory=list)
    open_tasks: list[str] = Field(default_factory=list)
    tool_results: list[ToolResult] = Field(default_factory=list)

    def set_slot(self, name: str, value: str) -> None:
        name = " ".join(name.split()).lower()
        value = " ".join(value.split())
        if not name or not value:
            return
        old = self.slots.get(name)
        if old is not None and old != value:
            hist = self.slot_history.setdefault(name, [])
            if old not in hist:
                hist.append(old)
        self.slots[name] = value

    def add_entity(self, entity: Entity, max_entities: int) -> None:
        key = (entity.kind, entity.value.lower())
        for e in self.entities:
            if (e.kind, e.value.lower()) == key:
                e.mentions += 1
                e.last_index = max(e.last_index, entity.last_index)
                if entity.role == "user":
                    e.role = "user"
                    e.confirmed = True
                e.confirmed = e.confirmed or entity.confirmed
                return
        self.entities.append(entity)
        if len(self.entities) > max_entities:
            # forget the least recently mentioned first
            self.entities.sort(key=lambda e: e.last_index)
            del self.entities[: len(self.entities) - max_entities]

    def add_unique(self, field: Literal["decisions", "open_tasks"], text: str) -> None:
        text = " ".join(text.split())
        items = getattr(self, field)
        if text and text.lower() not in {t.lower() for t in items}:
            items.append(text)

    def merge(self, other: MemoryState, max_entities: int = 200) -> None:
        """Merge ``other`` into this state (other's slot values win)."""
        for k, v in other.slots.items():
            self.set_slot(k, v)
        for e in other.entities:
            self.add_entity(e.model_copy(), max_entities)
        for d in other.decisions:
            self.add_unique("decisions", d)
        for task in other.open_tasks:
            self.add_unique("open_tasks", task)
        known = {(r.call_id, r.index) for r in self.tool_results}
        for r in other.tool_results:
            if (r.call_id, r.index) not in known:
                self.tool_results.append(r)

    def is_empty(self) -> bool:
        return not (
            self.slots or self.entities or self.decisions or self.open_tasks or self.tool_results
        )


class SummarySegment(BaseModel):
    """One incremental extension of the rolling summary, covering messages ``[start, end)``."""

    model_config = ConfigDict(extra="forbid")

    start: int = Field(ge=0)
    end: int = Field(ge=0)
    text: str

    @model_validator(mode="after")
    def _ordered(self) -> SummarySegment:
        if self.end < self.start:
            raise ValueError(f"segment end {self.end} before start {self.start}")
        return self


class MemoryRecord(BaseModel):
    """What the memory persists beside the full history of one session.

    The history itself stays in the user's chat store; this record never replaces it.
    """

    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = 1
    session_id: str = "default"
    summary: list[SummarySegment] = Field(default_factory=list)
    state: MemoryState = Field(default_factory=MemoryState)
    summarized_upto: int = Field(
        default=0, ge=0, description="history messages folded into the summary"
    )
    extracted_upto: int = Field(
        default=0, ge=0, description="history messages read by the extractors"
    )
    summary_failures: int = Field(default=0, ge=0)
    updated_at: float = Field(default_factory=time.time)

    @property
    def summary_text(self) -> str:
        return "\n".join(s.text for s in self.summary if s.text)

    def to_json(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_json(cls, data: str | bytes) -> MemoryRecord:
        return cls.model_validate_json(data)
