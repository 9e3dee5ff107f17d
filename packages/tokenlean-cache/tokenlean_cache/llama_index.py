"""LlamaIndex adapter: :class:`CachedLLM` adds the semantic cache to any LlamaIndex LLM.

LlamaIndex has no LLM response cache of its own. Wrap the LLM once and use the wrapper wherever
an LLM goes (``Settings.llm``, a query engine, a chat engine)::

    from tokenlean_cache.llama_index import CachedLLM
    llm = CachedLLM(llm=OpenAI(model="gpt-4o-mini"))

``chat``, ``complete``, their streaming and async variants all look the prompt up first; a hit is
returned (or replayed as word-sized deltas when streaming); a miss calls the wrapped LLM and stores
the full answer. The pre-filter holds the wrapped LLM's class, model and configuration, the call's
keyword arguments and the call kind (chat or completion).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from tokenlean_core import MissingDependencyError, Usage

from .engine import CacheHit, SemanticCache

try:
    from llama_index.core.base.llms.types import (
        ChatMessage,
        ChatResponse,
        ChatResponseAsyncGen,
        ChatResponseGen,
        CompletionResponse,
        CompletionResponseAsyncGen,
        CompletionResponseGen,
        LLMMetadata,
        MessageRole,
    )
    from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
    from llama_index.core.llms.llm import LLM
    from pydantic import Field, PrivateAttr
except ImportError:  # pragma: no cover - exercised only without the extra
    raise MissingDependencyError("llama-index-core", "llama-index", "tokenlean-cache") from None

__all__ = ["CachedLLM"]

_PIECE = re.compile(r"\S+\s*|\s+")


def _pieces(text: str) -> list[str]:
    return _PIECE.findall(text) or [""]


def _usage(resp: Any) -> Usage | None:
    raw = getattr(resp, "raw", None)
    if raw is not None:
        try:
            return Usage.parse(raw)
        except Exception:  # unknown provider payload: no usage rather than a failure
            pass
    extra = getattr(resp, "additional_kwargs", None) or {}
    pt, ct = extra.get("prompt_tokens"), extra.get("completion_tokens")
    if isinstance(pt, int) and isinstance(ct, int) and pt >= 0 and ct >= 0:
        return Usage(pt, ct, source="llama_index")
    return None


def _hit_kwargs(hit: CacheHit) -> dict[str, Any]:
    return {
        "tokenlean": {"cache_hit": True, "distance": round(hit.distance, 6), "exact": hit.exact}
    }


class CachedLLM(LLM):
    """Any LlamaIndex LLM behind a :class:`~tokenlean_cache.SemanticCache`.

    Args:
        llm: The LLM to wrap.
        cache: The engine (default: a new embedded :class:`SemanticCache`).
        tenant: Fixed tenant; by default the current ``tokenlean_core.scope`` tenant.
    """

    llm: LLM = Field(description="The wrapped LLM.")
    tenant: str | None = Field(default=None, description="Fixed tenant of the cache entries.")
    _cache: SemanticCache = PrivateAttr()

    def __init__(self, llm: LLM, cache: SemanticCache | None = None, **kwargs: Any) -> None:
        super().__init__(llm=llm, callback_manager=llm.callback_manager, **kwargs)  # type: ignore[call-arg]
        self._cache = cache if cache is not None else SemanticCache()

    @classmethod
    def class_name(cls) -> str:
        return "TokenleanCachedLLM"

    @property
    def cache(self) -> SemanticCache:
        return self._cache

    @property
    def metadata(self) -> LLMMetadata:
        return self.llm.metadata

    def _config(self) -> str:
        try:
            data = self.llm.to_dict()
        except Exception:  # some LLMs hold unserialisable fields
            data = {"class": type(self.llm).__qualname__}
        data.pop("callback_manager", None)
        return json.dumps(data, sort_keys=True, default=str)

    def _kw(self, kind: str, kwargs: dict[str, Any]) -> dict[str, Any]:
        params = {
            "kind": kind,
            "llm": self._config(),
            "kwargs": json.dumps(kwargs, sort_keys=True, default=str),
        }
        return {"model": self.llm.metadata.model_name, "params": params, "tenant": self.tenant}

    @staticmethod
    def _prompt(messages: Sequence[ChatMessage]) -> list[Any]:
        return list(messages)

    # -- chat -----------------------------------------------------------------------------------
    def _chat_hit(self, hit: CacheHit) -> ChatResponse:
        data = json.loads(hit.payload)
        msg = ChatMessage(role=MessageRole(data.get("role", "assistant")), content=data["text"])
        return ChatResponse(message=msg, additional_kwargs=_hit_kwargs(hit))

    @staticmethod
    def _chat_payload(resp: ChatResponse) -> str:
        return json.dumps({"role": resp.message.role.value, "text": resp.message.content or ""})

    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        kw = self._kw("chat", kwargs)
        hit = self._cache.lookup(self._prompt(messages), **kw)
        if hit is not None:
            return self._chat_hit(hit)
        resp = self.llm.chat(messages, **kwargs)
        self._cache.update(
            self._prompt(messages), self._chat_payload(resp), usage=_usage(resp), **kw
        )
        return resp

    @llm_chat_callback()
    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        kw = self._kw("chat", kwargs)
        hit = await self._cache.alookup(self._prompt(messages), **kw)
        if hit is not None:
            return self._chat_hit(hit)
        resp = await self.llm.achat(messages, **kwargs)
        await self._cache.aupdate(
            self._prompt(messages), self._chat_payload(resp), usage=_usage(resp), **kw
        )
        return resp

    @llm_chat_callback()
    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        kw = self._kw("chat", kwargs)
        prompt = self._prompt(messages)
        hit = self._cache.lookup(prompt, **kw)

        def replay(h: CacheHit) -> ChatResponseGen:
            full = self._chat_hit(h)
            text = ""
            for piece in _pieces(full.message.content or ""):
                text += piece
                msg = ChatMessage(role=full.message.role, content=text)
                yield ChatResponse(message=msg, delta=piece, additional_kwargs=_hit_kwargs(h))

        def live() -> ChatResponseGen:
            last: ChatResponse | None = None
            for resp in self.llm.stream_chat(messages, **kwargs):
                last = resp
                yield resp
            if last is not None:
                self._cache.update(prompt, self._chat_payload(last), usage=_usage(last), **kw)

        return replay(hit) if hit is not None else live()

    @llm_chat_callback()
    async def astream_chat(
        self, messages: Sequence[ChatMessage], **kwargs: Any
    ) -> ChatResponseAsyncGen:
        kw = self._kw("chat", kwargs)
        prompt = self._prompt(messages)
        hit = await self._cache.alookup(prompt, **kw)

        async def replay(h: CacheHit) -> ChatResponseAsyncGen:
            full = self._chat_hit(h)
            text = ""
            for piece in _pieces(full.message.content or ""):
                text += piece
                msg = ChatMessage(role=full.message.role, content=text)
                yield ChatResponse(message=msg, delta=piece, additional_kwargs=_hit_kwargs(h))

        async def live() -> ChatResponseAsyncGen:
            last: ChatResponse | None = None
            async for resp in await self.llm.astream_chat(messages, **kwargs):
                last = resp
                yield resp
            if last is not None:
                await self._cache.aupdate(
                    prompt, self._chat_payload(last), usage=_usage(last), **kw
                )

        return replay(hit) if hit is not None else live()

    # -- completion -----------------------------------------------------------------------------
    @staticmethod
    def _completion_hit(hit: CacheHit) -> CompletionResponse:
        return CompletionResponse(
            text=json.loads(hit.payload)["text"], additional_kwargs=_hit_kwargs(hit)
        )

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        kw = self._kw("complete", {**kwargs, "formatted": formatted})
        hit = self._cache.lookup(prompt, **kw)
        if hit is not None:
            return self._completion_hit(hit)
        resp = self.llm.complete(prompt, formatted=formatted, **kwargs)
        self._cache.update(prompt, json.dumps({"text": resp.text}), usage=_usage(resp), **kw)
        return resp

    @llm_completion_callback()
    async def acomplete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponse:
        kw = self._kw("complete", {**kwargs, "formatted": formatted})
        hit = await self._cache.alookup(prompt, **kw)
        if hit is not None:
            return self._completion_hit(hit)
        resp = await self.llm.acomplete(prompt, formatted=formatted, **kwargs)
        await self._cache.aupdate(prompt, json.dumps({"text": resp.text}), usage=_usage(resp), **kw)
        return resp

    @llm_completion_callback()
    def stream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseGen:
        kw = self._kw("complete", {**kwargs, "formatted": formatted})
        hit = self._cache.lookup(prompt, **kw)

        def replay(h: CacheHit) -> CompletionResponseGen:
            text = ""
            for piece in _pieces(json.loads(h.payload)["text"]):
                text += piece
                yield CompletionResponse(text=text, delta=piece, additional_kwargs=_hit_kwargs(h))

        def live() -> CompletionResponseGen:
            last: CompletionResponse | None = None
            for resp in self.llm.stream_complete(prompt, formatted=formatted, **kwargs):
                last = resp
                yield resp
            if last is not None:
                self._cache.update(
                    prompt, json.dumps({"text": last.text}), usage=_usage(last), **kw
                )

        return replay(hit) if hit is not None else live()

    @llm_completion_callback()
    async def astream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseAsyncGen:
        kw = self._kw("complete", {**kwargs, "formatted": formatted})
        hit = await self._cache.alookup(prompt, **kw)

        async def replay(h: CacheHit) -> CompletionResponseAsyncGen:
            text = ""
            for piece in _pieces(json.loads(h.payload)["text"]):
                text += piece
                yield CompletionResponse(text=text, delta=piece, additional_kwargs=_hit_kwargs(h))

        async def live() -> CompletionResponseAsyncGen:
            last: CompletionResponse | None = None
            async for resp in await self.llm.astream_complete(
                prompt, formatted=formatted, **kwargs
            ):
                last = resp
                yield resp
            if last is not None:
                await self._cache.aupdate(
                    prompt, json.dumps({"text": last.text}), usage=_usage(last), **kw
                )

        return replay(hit) if hit is not None else live()
