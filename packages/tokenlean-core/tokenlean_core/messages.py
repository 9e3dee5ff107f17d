"""One neutral view of chat messages from LangChain, LlamaIndex and OpenAI-style dicts.

Core depends on no framework, so messages are read by duck typing: a LangChain ``BaseMessage`` has
``type`` and ``content``; a LlamaIndex ``ChatMessage`` has ``role`` and ``blocks``; anything else
must be a mapping in the OpenAI chat format (``role``, ``content``, ``name``, ``tool_calls``,
``tool_call_id``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import TokenleanError

__all__ = ["Message", "ToolCall", "normalize_messages"]

_LC_ROLES = {
    "human": "user",
    "ai": "assistant",
    "system": "system",
    "tool": "tool",
    "function": "function",
    "developer": "developer",
}


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A tool (function) call made by an assistant message."""

    name: str
    arguments: str  # JSON text, as providers send it
    id: str | None = None


@dataclass(frozen=True, slots=True)
class Message:
    """A chat message reduced to what token counting, canonicalisation and memory need."""

    role: str
    content: str
    name: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    images: int = 0  # image parts, counted as an estimate
    extra_parts: tuple[str, ...] = field(default=())  # other non-text parts (kinds), for the record


def _text_of_parts(parts: Sequence[Any]) -> tuple[str, int, tuple[str, ...]]:
    texts: list[str] = []
    images = 0
    other: list[str] = []
    for part in parts:
        if isinstance(part, str):
            texts.append(part)
            continue
        if isinstance(part, Mapping):
            kind = str(part.get("type", ""))
            if kind in ("text", "input_text", "output_text") or (not kind and "text" in part):
                texts.append(str(part.get("text", "")))
            elif kind in ("image_url", "image", "input_image"):
                images += 1
            else:
                other.append(kind or "unknown")
            continue
        # LlamaIndex content blocks: TextBlock(text=...), ImageBlock(...)
        kind = type(part).__name__
        text = getattr(part, "text", None)
        if isinstance(text, str):
            texts.append(text)
        elif "Image" in kind:
            images += 1
        else:
            other.append(kind)
    return "".join(texts), images, tuple(other)


def _tool_calls_from_openai(raw: Any) -> tuple[ToolCall, ...]:
    calls: list[ToolCall] = []
    for call in raw or ():
        if not isinstance(call, Mapping):
            continue
        fn = call.get("function") or {}
        if isinstance(fn, Mapping):
            args = fn.get("arguments", "")
            calls.append(
                ToolCall(
                    name=str(fn.get("name", "")),
                    arguments=args if isinstance(args, str) else json.dumps(args),
                    id=call.get("id"),
                )
            )
    return tuple(calls)


def _from_dict(msg: Mapping[str, Any], index: int) -> Message:
    if "role" not in msg:
        raise TokenleanError(f"message {index} has no 'role' field: {sorted(msg)!r}")
    content = msg.get("content")
    images = 0
    other: tuple[str, ...] = ()
    if content is None:
        text = ""
    elif isinstance(content, str):
        text = content
    elif isinstance(content, Sequence):
        text, images, other = _text_of_parts(content)
    else:
        raise TokenleanError(
            f"message {index} has content of type {type(content).__name__}; expected str or a list"
        )
    name = msg.get("name")
    return Message(
        role=str(msg["role"]),
        content=text,
        name=str(name) if name else None,
        tool_calls=_tool_calls_from_openai(msg.get("tool_calls")),
        tool_call_id=msg.get("tool_call_id"),
        images=images,
        extra_parts=other,
    )


def _from_langchain(msg: Any) -> Message:
    content = msg.content
    images = 0
    other: tuple[str, ...] = ()
    if isinstance(content, str):
        text = content
    else:
        text, images, other = _text_of_parts(content)
    role = _LC_ROLES.get(msg.type, getattr(msg, "role", msg.type))
    calls: list[ToolCall] = []
    for call in getattr(msg, "tool_calls", None) or ():
        calls.append(
            ToolCall(
                name=str(call.get("name", "")),
                arguments=json.dumps(call.get("args", {}), ensure_ascii=False),
                id=call.get("id"),
            )
        )
    if not calls:
        calls = list(_tool_calls_from_openai(msg.additional_kwargs.get("tool_calls")))
    name = getattr(msg, "name", None)
    return Message(
        role=str(role),
        content=text,
        name=str(name) if name and role not in ("tool",) else None,
        tool_calls=tuple(calls),
        tool_call_id=getattr(msg, "tool_call_id", None),
        images=images,
        extra_parts=other,
    )


def _from_llama_index(msg: Any) -> Message:
    role = getattr(msg.role, "value", msg.role)
    blocks = getattr(msg, "blocks", None)
    if blocks:
        text, images, other = _text_of_parts(blocks)
        other = tuple(k for k in other if k != "ToolCallBlock")
    else:
        text, images, other = (msg.content or ""), 0, ()
    kwargs = getattr(msg, "additional_kwargs", None) or {}
    calls = list(_tool_calls_from_openai(kwargs.get("tool_calls")))
    for block in blocks or ():
        if type(block).__name__ == "ToolCallBlock":
            args = getattr(block, "tool_kwargs", {})
            calls.append(
                ToolCall(
                    name=str(getattr(block, "tool_name", "")),
                    arguments=args if isinstance(args, str) else json.dumps(args),
                    id=getattr(block, "tool_call_id", None),
                )
            )
    name = kwargs.get("name")
    return Message(
        role=str(role),
        content=text,
        name=str(name) if name else None,
        tool_calls=tuple(calls),
        tool_call_id=kwargs.get("tool_call_id"),
        images=images,
        extra_parts=other,
    )


def normalize_messages(messages: Iterable[Any]) -> list[Message]:
    """Read LangChain messages, LlamaIndex ``ChatMessage``s, OpenAI dicts or :class:`Message`s.

    Raises :class:`TokenleanError` naming the message index when one cannot be read.
    """
    if isinstance(messages, (str, bytes, Mapping)):
        raise TokenleanError("expected a sequence of messages, got a single value")
    out: list[Message] = []
    for i, msg in enumerate(messages):
        if isinstance(msg, Message):
            out.append(msg)
        elif isinstance(msg, Mapping):
            out.append(_from_dict(msg, i))
        elif hasattr(msg, "type") and hasattr(msg, "content") and hasattr(msg, "additional_kwargs"):
            out.append(_from_langchain(msg))
        elif hasattr(msg, "role") and (hasattr(msg, "blocks") or hasattr(msg, "content")):
            out.append(_from_llama_index(msg))
        elif isinstance(msg, tuple) and len(msg) == 2:  # LangChain's ("user", "hi") shorthand
            role, content = msg
            out.append(Message(role=_LC_ROLES.get(str(role), str(role)), content=str(content)))
        else:
            raise TokenleanError(
                f"message {i} is a {type(msg).__name__}; expected a LangChain BaseMessage, a "
                "LlamaIndex ChatMessage or an OpenAI-style dict"
            )
    return out
