"""Incremental summariser: extends the rolling summary with newly evicted turns.

The model sees the previous summary only as context and writes the *extension* for the new turns,
so an earlier summary is never rewritten or lost (the langmem#118 failure), and the whole history is
never re-summarised.
"""

from __future__ import annotations

from collections.abc import Sequence

from tokenlean_core import Message

from .models import TextModel

__all__ = ["DEFAULT_SUMMARY_PROMPT", "Summarizer", "render_transcript"]

DEFAULT_SUMMARY_PROMPT = """You keep notes on a conversation between a user and an assistant.
Notes so far:
{summary}

New messages:
{messages}

Write one or two short sentences with what the new messages add: the user's goals, constraints,
chosen options, decisions and open tasks. Keep names, numbers, dates and times exactly.
New notes:"""


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


class Summarizer:
    """Writes summary extensions with a :class:`TextModel`."""

    def __init__(
        self,
        model: TextModel,
        *,
        prompt: str = DEFAULT_SUMMARY_PROMPT,
        max_input_chars: int = 4000,
        max_output_chars: int = 1200,
    ) -> None:
        if "{summary}" not in prompt or "{messages}" not in prompt:
            raise ValueError("the summary prompt must contain '{summary}' and '{messages}'")
        self.model = model
        self.prompt = prompt
        self.max_input_chars = max_input_chars
        self.max_output_chars = max_output_chars

    def build_prompt(self, summary: str, messages: Sequence[Message]) -> str:
        return self.prompt.format(
            summary=summary.strip() or "(none yet)",
            messages=render_transcript(messages, self.max_input_chars),
        )

    def _clean(self, text: str) -> str:
        text = " ".join(text.strip().split())
        return text[: self.max_output_chars]

    def extend(self, summary: str, messages: Sequence[Message]) -> str:
        """The extension for ``messages`` (raises what the model raises)."""
        return self._clean(self.model.complete(self.build_prompt(summary, messages)))

    async def aextend(self, summary: str, messages: Sequence[Message]) -> str:
        return self._clean(await self.model.acomplete(self.build_prompt(summary, messages)))
