"""Incremental summariser: extends the rolling summary with newly evicted turns.

The model sees the previous summary and the structured state only as context and writes the
*extension* for the new turns, so an earlier summary is never rewritten or lost (the langmem#118
failure), and the whole history is never re-summarised.

The summary is the layer for what the structured state cannot hold: durable intent, constraints
and open tasks. The model is told which facts the state already records and asked only for what is
missing, and its output is post-processed (:meth:`Summarizer.postprocess`): an echo of the prompt
is cut off, and a sentence is dropped when its content words are all already known (the state's
values, the previous summary) or, with ``grounded=True``, when none of its content words occurs in
the turns it summarises (boilerplate such as "I'm here to help", which small models write).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from tokenlean_core import Message

from .extract import key_terms
from .models import TextModel
from .schema import MemoryState

__all__ = [
    "DEFAULT_SUMMARY_PROMPT",
    "Summarizer",
    "drop_covered",
    "render_transcript",
    "split_sentences",
    "state_facts",
]

DEFAULT_SUMMARY_PROMPT = """You keep notes on a conversation between a user and an assistant.
Facts already recorded (do not repeat them):
{state}

Notes so far:
{summary}

New messages:
{messages}

Write one or two short sentences with only what the new messages add and the facts and notes
above lack: the user's goals, constraints, decisions and open tasks. Keep names, numbers, dates
and times exactly. If nothing is missing, write NONE.
New notes:"""

# a heading of the prompt, or a transcript line ("user: ..."), echoed by the model: everything
# from it on is a copy of the input, not notes
_ECHO = re.compile(
    r"(?im)^[ \t]*(?:(?:facts already recorded|notes so far|new messages|new notes)\b"
    r"|(?:user|assistant|system|tool)(?:[ \t]+\w+)?[ \t]*:)"
)
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+|\n+")
_NOTHING = re.compile(r"^\W*(?:none|nothing(?: new)?|n/?a)\W*$", re.I)


def render_transcript(messages: Sequence[Message], max_chars: int = 4000) -> str:
    """Messages as ``role: text`` lines (tool calls and results included), clipped from the left."""
    lines: list[str] = []
    for m in messages:
        if m.tool_calls:
            calls = ", ".join(f"{c.name}({c.arguments})" for c in m.tool_calls)
            lines.append(f"{m.role}: {m.content} [calls {calls}]".replace(":  [", ": ["))
        elif m.content:
            who = f"tool {m.name}" if m.role == "tool" and m.name else m.role
            lines.append(f"{who}: {m.content}")
    text = "\n".join(lines)
    return text[-max_chars:]


def split_sentences(text: str) -> list[str]:
    """``text`` cut into sentences (at ``.``, ``!``, ``?`` followed by space, and at newlines)."""
    return [s for s in (" ".join(p.split()) for p in _SENTENCE_END.split(text)) if s]


def state_facts(state: MemoryState | None) -> list[str]:
    """The state's facts as short strings: ``slot=value``, entity values, decisions, open tasks,
    tool results (what the summary must not repeat)."""
    if state is None:
        return []
    facts = [f"{k}={v}" for k, v in state.slots.items()]
    ents = sorted(state.entities, key=lambda e: (e.confirmed, e.last_index), reverse=True)
    facts.extend(e.value for e in ents)
    facts.extend(state.decisions)
    facts.extend(state.open_tasks)
    facts.extend(f"{r.name} -> {r.content}" for r in state.tool_results)
    return facts


def _terms_of(texts: Iterable[str]) -> set[str]:
    out: set[str] = set()
    for t in texts:
        if t:
            out |= key_terms(t.replace("_", " ").replace("=", " "))
    return out


_TERM_WORD = re.compile(r"[a-z0-9][a-z0-9'_-]*")


def _is_covered(terms: set[str], known: set[str] | frozenset[str]) -> bool:
    """Whether every term is known, as such or word by word (``"olive garden, sacramento"`` is
    known when ``"olive garden"`` and ``"sacramento"`` are)."""
    words: set[str] | None = None
    for t in terms:
        if t in known:
            continue
        if words is None:
            words = {w for k in known for w in _TERM_WORD.findall(k)}
        if not set(_TERM_WORD.findall(t)) <= words:
            return False
    return True


def _source_texts(messages: Sequence[Message]) -> list[str]:
    """What the summarised turns say (contents, tool names and arguments; no role labels, so a
    note is not "grounded" by the word "user")."""
    out: list[str] = []
    for m in messages:
        out.append(m.content)
        out.extend(f"{c.name} {c.arguments}" for c in m.tool_calls)
    return out


def drop_covered(text: str, covered: set[str] | frozenset[str]) -> str:
    """``text`` without the sentences whose content words (:func:`key_terms`) are all in
    ``covered``; a sentence without any content word counts as covered."""
    kept = [s for s in split_sentences(text) if not _is_covered(key_terms(s), covered)]
    return " ".join(kept)


class Summarizer:
    """Writes summary extensions with a :class:`TextModel`.

    Args:
        model: the summariser (any :class:`TextModel`; the adapters wrap LangChain chat models and
            LlamaIndex LLMs).
        prompt: a template with ``{summary}`` and ``{messages}`` and, optionally, ``{state}`` (the
            facts the structured state already holds).
        max_input_chars: the transcript of evicted turns is clipped (from the left) to this.
        max_output_chars: the extension is clipped to this.
        max_state_chars: the state facts given to the model are clipped to this.
        novel_only: drop sentences whose content words are all in the state or the notes so far.
        grounded: drop sentences none of whose content words occur in the summarised turns.
    """

    def __init__(
        self,
        model: TextModel,
        *,
        prompt: str = DEFAULT_SUMMARY_PROMPT,
        max_input_chars: int = 4000,
        max_output_chars: int = 1200,
        max_state_chars: int = 600,
        novel_only: bool = True,
        grounded: bool = True,
    ) -> None:
        if "{summary}" not in prompt or "{messages}" not in prompt:
            raise ValueError("the summary prompt must contain '{summary}' and '{messages}'")
        self.model = model
        self.prompt = prompt
        self.max_input_chars = max_input_chars
        self.max_output_chars = max_output_chars
        self.max_state_chars = max_state_chars
        self.novel_only = novel_only
        self.grounded = grounded

    def build_prompt(
        self, summary: str, messages: Sequence[Message], state: MemoryState | None = None
    ) -> str:
        facts = "; ".join(state_facts(state))
        if len(facts) > self.max_state_chars:
            facts = facts[: self.max_state_chars].rsplit(";", 1)[0]
        return self.prompt.format(
            summary=summary.strip() or "(none yet)",
            messages=render_transcript(messages, self.max_input_chars),
            state=facts or "(none yet)",
        )

    def postprocess(
        self,
        text: str,
        *,
        summary: str = "",
        messages: Sequence[Message] = (),
        state: MemoryState | None = None,
    ) -> str:
        """The model's output reduced to what it adds (may be ``""``).

        Cuts an echo of the prompt, then keeps a sentence only if it says something the state and
        ``summary`` do not (``novel_only``) and shares a content word with ``messages``
        (``grounded``); repeated sentences are kept once.
        """
        echo = _ECHO.search(text)
        if echo is not None:
            text = text[: echo.start()]
        known = _terms_of([*state_facts(state), summary]) if self.novel_only else set()
        source = _terms_of(_source_texts(messages))
        seen = {s.lower() for s in split_sentences(summary)}
        kept: list[str] = []
        for sent in split_sentences(text):
            terms = key_terms(sent)
            low = sent.lower()
            if _NOTHING.match(sent) or low in seen:
                continue
            if self.novel_only and _is_covered(terms, known):
                continue
            if self.grounded and messages and not terms & source:
                continue
            seen.add(low)
            kept.append(sent)
        return " ".join(kept)[: self.max_output_chars]

    def extend(
        self, summary: str, messages: Sequence[Message], state: MemoryState | None = None
    ) -> str:
        """The extension for ``messages`` (raises what the model raises)."""
        raw = self.model.complete(self.build_prompt(summary, messages, state))
        return self.postprocess(raw, summary=summary, messages=messages, state=state)

    async def aextend(
        self, summary: str, messages: Sequence[Message], state: MemoryState | None = None
    ) -> str:
        raw = await self.model.acomplete(self.build_prompt(summary, messages, state))
        return self.postprocess(raw, summary=summary, messages=messages, state=state)
