"""The one interface the memory needs from a language model: text in, text out (sync and async).

The framework adapters wrap a LangChain chat model
(:class:`tokenlean_memory.langchain.LangChainTextModel`) or a LlamaIndex LLM
(:class:`tokenlean_memory.llama_index.LlamaIndexTextModel`); a plain function
works through :class:`FunctionTextModel`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Protocol, runtime_checkable

__all__ = ["FunctionTextModel", "TextModel"]


@runtime_checkable
class TextModel(Protocol):
    """A model that completes a prompt."""

    def complete(self, prompt: str) -> str: ...

    async def acomplete(self, prompt: str) -> str: ...


class FunctionTextModel:
    """A :class:`TextModel` from a function (and optionally its async twin).

    Without ``afn`` the async path runs ``fn`` in a worker thread, so the event loop is not blocked.
    """

    def __init__(
        self,
        fn: Callable[[str], str],
        afn: Callable[[str], Awaitable[str]] | None = None,
    ) -> None:
        self.fn = fn
        self.afn = afn

    def complete(self, prompt: str) -> str:
        return self.fn(prompt)

    async def acomplete(self, prompt: str) -> str:
        if self.afn is not None:
            return await self.afn(prompt)
        return await asyncio.to_thread(self.fn, prompt)
