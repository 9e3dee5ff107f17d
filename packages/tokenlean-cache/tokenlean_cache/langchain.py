"""LangChain adapters: :class:`TokenleanCache` (a ``BaseCache`` for ``set_llm_cache`` or a model's
``cache=``) and :class:`CachedChatModel` (wraps a chat model so streaming is cached too: a hit is
replayed as chunks, a streamed answer is stored).

LangChain hands a cache ``prompt`` (the serialised messages, or the prompt text of a completion
model) and ``llm_string`` (the model's serialised configuration and call parameters). The cache
parses the messages back, keys the vector search on the *last user turn*, and puts the system
prompt, earlier turns and the whole ``llm_string`` into the hard pre-filter, so another model, a
changed temperature or another conversation never shares an answer.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from tokenlean_core import MissingDependencyError, Usage

from .engine import CacheHit, SemanticCache

try:
    from langchain_core.caches import RETURN_VAL_TYPE, BaseCache
    from langchain_core.callbacks import (
        AsyncCallbackManagerForLLMRun,
        CallbackManagerForLLMRun,
    )
    from langchain_core.language_models.chat_models import BaseChatModel
    from langchain_core.load import dumps
    from langchain_core.messages import (
        AIMessage,
        AIMessageChunk,
        BaseMessage,
        message_to_dict,
        messages_from_dict,
    )
    from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult, Generation
    from langchain_core.runnables import RunnableConfig
    from pydantic import ConfigDict
except ImportError:  # pragma: no cover - exercised only without the extra
    raise MissingDependencyError("langchain-core", "langchain", "tokenlean-cache") from None

__all__ = ["CachedChatModel", "TokenleanCache", "parse_llm_string", "parse_prompt"]

_ROLES = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool"}
_ROLES.update({"function": "tool", "chat": "user", "developer": "developer"})
_MODEL_RE = re.compile(
    r"""['"](?:model_name|model|model_id|deployment_name)['"]\s*[:,]\s*['"]([^'"]+)['"]"""
)


def parse_prompt(prompt: str) -> str | list[dict[str, Any]]:
    """LangChain's cache ``prompt`` as chat messages (``{"role", "content"}`` dicts), or the text
    itself when it is not serialised messages (completion models)."""
    if not prompt.startswith("["):
        return prompt
    try:
        data = json.loads(prompt)
    except ValueError:
        return prompt
    if not isinstance(data, list):
        return prompt
    out: list[dict[str, Any]] = []
    for item in data:
        if not isinstance(item, dict) or item.get("type") != "constructor":
            return prompt
        kwargs = item.get("kwargs") or {}
        ident = item.get("id") or []
        kind = kwargs.get("type") or (
            str(ident[-1]).lower().replace("message", "") if ident else ""
        )
        role = _ROLES.get(str(kind), "user")
        if kind == "chat" and isinstance(kwargs.get("role"), str):
            role = kwargs["role"]
        content = kwargs.get("content", "")
        if not isinstance(content, str):
            content = json.dumps(content, sort_keys=True, ensure_ascii=False)
        msg: dict[str, Any] = {"role": role, "content": content}
        if kwargs.get("tool_calls"):
            msg["content"] += "\n" + json.dumps(kwargs["tool_calls"], sort_keys=True, default=str)
        out.append(msg)
    return out


def parse_llm_string(llm_string: str) -> str | None:
    """The model name inside LangChain's ``llm_string``, when it names one."""
    m = _MODEL_RE.search(llm_string)
    return m.group(1) if m else None


def _usage_of(generations: Sequence[Generation]) -> Usage | None:
    total: Usage | None = None
    for gen in generations:
        msg = getattr(gen, "message", None)
        meta = getattr(msg, "usage_metadata", None)
        if meta:
            try:
                u = Usage.from_langchain(meta)
            except Exception:  # malformed provider usage: no credit rather than a failure
                continue
            total = u if total is None else total + u
    return total


def _dump(generations: Sequence[Generation]) -> str:
    """Generations as plain JSON (messages through ``message_to_dict``; nothing executable)."""
    out: list[dict[str, Any]] = []
    for g in generations:
        item: dict[str, Any] = {"text": g.text, "info": g.generation_info}
        if isinstance(g, ChatGeneration):
            item["message"] = message_to_dict(g.message)
        out.append(item)
    return json.dumps(out, default=str)


def _load(payload: str, hit: CacheHit) -> list[Generation]:
    gens: list[Generation] = []
    for item in json.loads(payload):
        if "message" in item:
            msg = messages_from_dict([item["message"]])[0]
            gens.append(ChatGeneration(message=msg, generation_info=item.get("info")))
        else:
            gens.append(Generation(text=item["text"], generation_info=item.get("info")))
    for g in gens:
        ai = getattr(g, "message", None)
        if isinstance(ai, AIMessage):
            ai.response_metadata = {**ai.response_metadata, "tokenlean": _hit_meta(hit)}
    return gens


def _hit_meta(hit: CacheHit) -> dict[str, Any]:
    return {"cache_hit": True, "distance": round(hit.distance, 6), "exact": hit.exact}


class TokenleanCache(BaseCache):
    """A LangChain ``BaseCache`` over a :class:`~tokenlean_cache.SemanticCache`.

    Args:
        cache: The engine; by default a new :class:`SemanticCache` built from ``**kwargs``
            (``store``, ``embedder``, ``guard``, ``config``, ``max_distance``, ``ledger``).
        tenant: Fixed tenant; by default the current ``tokenlean_core.scope`` tenant.

    ``set_llm_cache(TokenleanCache())`` or ``ChatOpenAI(..., cache=TokenleanCache())``.
    Per call, ``with tokenlean_cache.no_cache(): ...`` bypasses it.
    """

    def __init__(
        self, cache: SemanticCache | None = None, *, tenant: str | None = None, **kwargs: Any
    ) -> None:
        self.engine = cache if cache is not None else SemanticCache(**kwargs)
        self.tenant = tenant

    def _args(self, prompt: str, llm_string: str) -> tuple[Any, dict[str, Any]]:
        return parse_prompt(prompt), {
            "model": parse_llm_string(llm_string),
            "params": {"llm_string": llm_string},
            "tenant": self.tenant,
        }

    def lookup(self, prompt: str, llm_string: str) -> RETURN_VAL_TYPE | None:
        question, kw = self._args(prompt, llm_string)
        hit = self.engine.lookup(question, **kw)
        return _load(hit.payload, hit) if hit is not None else None

    def update(self, prompt: str, llm_string: str, return_val: RETURN_VAL_TYPE) -> None:
        question, kw = self._args(prompt, llm_string)
        self.engine.update(question, _dump(return_val), usage=_usage_of(return_val), **kw)

    def clear(self, **kwargs: Any) -> None:
        """Delete every entry (``tenant=...`` deletes only that tenant's)."""
        if "tenant" in kwargs:
            self.engine.delete_tenant(kwargs["tenant"])
        else:
            self.engine.clear()

    async def alookup(self, prompt: str, llm_string: str) -> RETURN_VAL_TYPE | None:
        question, kw = self._args(prompt, llm_string)
        hit = await self.engine.alookup(question, **kw)
        return _load(hit.payload, hit) if hit is not None else None

    async def aupdate(self, prompt: str, llm_string: str, return_val: RETURN_VAL_TYPE) -> None:
        question, kw = self._args(prompt, llm_string)
        await self.engine.aupdate(question, _dump(return_val), usage=_usage_of(return_val), **kw)

    async def aclear(self, **kwargs: Any) -> None:
        if "tenant" in kwargs:
            await self.engine.adelete_tenant(kwargs["tenant"])
        else:
            await self.engine.aclear()


_PIECE = re.compile(r"\S+\s*|\s+")


def _pieces(text: str) -> list[str]:
    return _PIECE.findall(text) or [""]


def _mark_run(run_manager: Any, hit: CacheHit | None) -> None:
    meta = getattr(run_manager, "metadata", None)
    if isinstance(meta, dict):
        meta["cache_hit"] = hit is not None
        if hit is not None:
            meta["cache_distance"] = round(hit.distance, 6)


class CachedChatModel(BaseChatModel):
    """Wraps a LangChain chat model with a :class:`TokenleanCache`, streaming included.

    ``invoke`` and ``stream`` (and their async twins) first look the prompt up: a hit is returned
    (or replayed as word-sized chunks, through ``on_llm_new_token``, so streaming UIs work the
    same); a miss calls the wrapped model (streaming if you stream) and stores the full answer.
    The run's metadata gets ``cache_hit``.
    """

    model: BaseChatModel
    tokenlean_cache: Any
    cache: bool | BaseCache | None = False

    model_config = ConfigDict(arbitrary_types_allowed=True)

    @property
    def _llm_type(self) -> str:
        return f"tokenlean-cached-{self.model._llm_type}"

    def _tc(self) -> TokenleanCache:
        tc = self.tokenlean_cache
        if not isinstance(tc, TokenleanCache):
            raise TypeError("tokenlean_cache must be a TokenleanCache")
        return tc

    def _key(
        self, messages: list[BaseMessage], stop: list[str] | None, **kwargs: Any
    ) -> tuple[str, str]:
        normalized = [
            m.model_copy(update={"id": None}) if m.id is not None else m for m in messages
        ]
        return dumps(normalized), self.model._get_llm_string(stop=stop, **kwargs)

    @staticmethod
    def _child(run_manager: Any) -> RunnableConfig:
        # The wrapped model runs without the outer callbacks: the outer run already reports the
        # answer (and its usage) once; passing them down would count every call twice. An empty
        # config is not enough: inside a chain, LangChain hands the parent's callbacks down through
        # its context, so they are replaced by an explicit empty list.
        return RunnableConfig(callbacks=[])

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        prompt, llm_string = self._key(messages, stop, **kwargs)
        tc = self._tc()
        cached = tc.lookup(prompt, llm_string)
        _mark_run(run_manager, _last_hit(cached))
        if cached is not None:
            return ChatResult(generations=[_as_chat(g) for g in cached])
        result = self.model.invoke(messages, stop=stop, config=self._child(run_manager), **kwargs)
        gen = ChatGeneration(message=result)
        tc.update(prompt, llm_string, [gen])
        return ChatResult(generations=[gen])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        prompt, llm_string = self._key(messages, stop, **kwargs)
        tc = self._tc()
        cached = await tc.alookup(prompt, llm_string)
        _mark_run(run_manager, _last_hit(cached))
        if cached is not None:
            return ChatResult(generations=[_as_chat(g) for g in cached])
        result = await self.model.ainvoke(
            messages, stop=stop, config=self._child(run_manager), **kwargs
        )
        gen = ChatGeneration(message=result)
        await tc.aupdate(prompt, llm_string, [gen])
        return ChatResult(generations=[gen])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        prompt, llm_string = self._key(messages, stop, **kwargs)
        tc = self._tc()
        cached = tc.lookup(prompt, llm_string)
        _mark_run(run_manager, _last_hit(cached))
        if cached is not None:
            for chunk in _replay(cached):
                if run_manager is not None:
                    run_manager.on_llm_new_token(str(chunk.message.content), chunk=chunk)
                yield chunk
            return
        acc: AIMessageChunk | None = None
        for piece in self.model.stream(
            messages, stop=stop, config=self._child(run_manager), **kwargs
        ):
            chunk = ChatGenerationChunk(message=_as_chunk(piece))
            acc = chunk.message if acc is None else acc + chunk.message  # type: ignore[assignment]
            if run_manager is not None:
                run_manager.on_llm_new_token(str(chunk.message.content), chunk=chunk)
            yield chunk
        if acc is not None:
            tc.update(prompt, llm_string, [_final(acc)])

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        prompt, llm_string = self._key(messages, stop, **kwargs)
        tc = self._tc()
        cached = await tc.alookup(prompt, llm_string)
        _mark_run(run_manager, _last_hit(cached))
        if cached is not None:
            for chunk in _replay(cached):
                if run_manager is not None:
                    await run_manager.on_llm_new_token(str(chunk.message.content), chunk=chunk)
                yield chunk
            return
        acc: AIMessageChunk | None = None
        async for piece in self.model.astream(
            messages, stop=stop, config=self._child(run_manager), **kwargs
        ):
            chunk = ChatGenerationChunk(message=_as_chunk(piece))
            acc = chunk.message if acc is None else acc + chunk.message  # type: ignore[assignment]
            if run_manager is not None:
                await run_manager.on_llm_new_token(str(chunk.message.content), chunk=chunk)
            yield chunk
        if acc is not None:
            await tc.aupdate(prompt, llm_string, [_final(acc)])


def _last_hit(cached: Sequence[Generation] | None) -> CacheHit | None:
    if not cached:
        return None
    msg = getattr(cached[0], "message", None)
    meta = getattr(msg, "response_metadata", {}) or {}
    info = meta.get("tokenlean") or {}
    return CacheHit(
        payload="",
        distance=float(info.get("distance", 0.0)),
        exact=bool(info.get("exact", False)),
        key="",
    )


def _as_chat(gen: Generation) -> ChatGeneration:
    if isinstance(gen, ChatGeneration):
        msg = gen.message
        if isinstance(msg, AIMessage) and msg.usage_metadata:
            msg = msg.model_copy(update={"usage_metadata": None})  # a hit costs no tokens
        return ChatGeneration(message=msg, generation_info=gen.generation_info)
    return ChatGeneration(message=AIMessage(content=gen.text), generation_info=gen.generation_info)


def _as_chunk(piece: BaseMessage) -> AIMessageChunk:
    if isinstance(piece, AIMessageChunk):
        return piece
    return AIMessageChunk(content=piece.content, response_metadata=piece.response_metadata)


def _final(acc: AIMessageChunk) -> ChatGeneration:
    msg = AIMessage(
        content=acc.content,
        response_metadata=acc.response_metadata,
        usage_metadata=acc.usage_metadata,
        tool_calls=acc.tool_calls,
    )
    return ChatGeneration(message=msg)


def _replay(cached: Sequence[Generation]) -> Iterator[ChatGenerationChunk]:
    gen = _as_chat(cached[0])
    text = gen.message.content if isinstance(gen.message.content, str) else gen.text
    parts = _pieces(text)
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        yield ChatGenerationChunk(
            message=AIMessageChunk(
                content=part,
                response_metadata=dict(gen.message.response_metadata) if last else {},
                chunk_position="last" if last else None,
            )
        )
