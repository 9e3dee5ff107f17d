"""One normalised usage record for every provider.

Conventions differ and are normalised once, here:

* ``input_tokens`` is *all* prompt tokens, cache reads and writes included (OpenAI's and LangChain's
  convention). Anthropic reports ``input_tokens`` *without* cache tokens; Gemini's
  ``promptTokenCount`` includes cached content like OpenAI's.
* ``output_tokens`` includes reasoning tokens (OpenAI's convention; Gemini reports thoughts apart
  and they are added here).
* ``cache_read_tokens`` / ``cache_write_tokens`` are the parts of ``input_tokens`` read from or
  written to the provider's prompt cache; ``reasoning_tokens`` the part of ``output_tokens`` spent
  thinking.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from .errors import UsageParseError

__all__ = ["Usage"]

# Field names that mark a bare Gemini ``usageMetadata`` (camelCase REST, snake_case SDK).
_GEMINI_KEYS = (
    "promptTokenCount",
    "candidatesTokenCount",
    "totalTokenCount",
    "cachedContentTokenCount",
    "thoughtsTokenCount",
    "prompt_token_count",
    "candidates_token_count",
    "total_token_count",
    "cached_content_token_count",
    "thoughts_token_count",
)


def _show(value: Any) -> str:
    """``repr`` for error messages: short, and safe for ints too long to print."""
    try:
        text = repr(value)
    except ValueError:  # int beyond sys.get_int_max_str_digits()
        text = f"<{type(value).__name__} too long to show>"
    return text if len(text) <= 80 else text[:77] + "..."


def _as_mapping(obj: Any) -> Mapping[str, Any] | None:
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return obj
    dump = getattr(obj, "model_dump", None)  # pydantic objects (openai, anthropic SDKs)
    if callable(dump):
        out = dump()
        if isinstance(out, Mapping):
            return out
    to_dict = getattr(obj, "to_dict", None)
    if callable(to_dict):
        out = to_dict()
        if isinstance(out, Mapping):
            return out
    if hasattr(obj, "__dict__"):
        return {k: v for k, v in vars(obj).items() if not k.startswith("_")}
    return None


def _int(data: Mapping[str, Any], key: str, source: str, path: str = "") -> int:
    value = data.get(key)
    if type(value) is int and value >= 0:  # the common case, first
        return value
    name = f"{path}{key}"
    if value is None:
        return 0
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    # bool is an int subclass but never a count; strings are rejected too (a provider that sends
    # "12" is broken, and int() of arbitrary digit strings can raise ValueError: "²", 5000 digits)
    if isinstance(value, bool) or not isinstance(value, int):
        raise UsageParseError(name, f"must be an integer, got {_show(value)}", source)
    if value < 0:
        raise UsageParseError(name, f"must not be negative, got {_show(value)}", source)
    return value


def _sub(data: Mapping[str, Any], key: str, source: str) -> Mapping[str, Any]:
    value = data.get(key)
    if value is None:
        return {}
    mapped = _as_mapping(value)
    if mapped is None:
        raise UsageParseError(key, f"must be an object, got {type(value).__name__}", source)
    return mapped


@dataclass(frozen=True, slots=True)
class Usage:
    """Normalised token usage of one LLM call (see the module docs for the conventions)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    exact: bool = True  # False when tokenlean counted the tokens itself with an estimate
    source: str = "unknown"  # which parser built it

    def __post_init__(self) -> None:
        i, o, r, w, t = (
            self.input_tokens,
            self.output_tokens,
            self.cache_read_tokens,
            self.cache_write_tokens,
            self.reasoning_tokens,
        )
        if (
            type(i) is int
            and type(o) is int
            and type(r) is int
            and type(w) is int
            and type(t) is int
            and min(i, o, r, w, t) >= 0
            and r + w <= i
        ):
            return
        for name in (
            "input_tokens",
            "output_tokens",
            "cache_read_tokens",
            "cache_write_tokens",
            "reasoning_tokens",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise UsageParseError(
                    name, f"must be a non-negative integer, got {_show(value)}", self.source
                )
        if self.cache_read_tokens + self.cache_write_tokens > self.input_tokens:
            raise UsageParseError(
                "cache_read_tokens",
                f"cache reads ({_show(self.cache_read_tokens)}) plus writes "
                f"({_show(self.cache_write_tokens)}) exceed input_tokens "
                f"({_show(self.input_tokens)})",
                self.source,
            )

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @property
    def uncached_input_tokens(self) -> int:
        """Prompt tokens billed at the full input rate."""
        return self.input_tokens - self.cache_read_tokens - self.cache_write_tokens

    def __add__(self, other: Usage) -> Usage:
        if not isinstance(other, Usage):
            return NotImplemented
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cache_read_tokens + other.cache_read_tokens,
            self.cache_write_tokens + other.cache_write_tokens,
            self.reasoning_tokens + other.reasoning_tokens,
            self.exact and other.exact,
            self.source if self.source == other.source else "mixed",
        )

    def with_exact(self, exact: bool) -> Usage:
        return replace(self, exact=exact)

    def to_dict(self) -> dict[str, Any]:
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cache_read_tokens": self.cache_read_tokens,
            "cache_write_tokens": self.cache_write_tokens,
            "reasoning_tokens": self.reasoning_tokens,
            "exact": self.exact,
            "source": self.source,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Usage:
        """Inverse of :meth:`to_dict`."""
        src = "ledger"
        return cls(
            _int(data, "input_tokens", src),
            _int(data, "output_tokens", src),
            _int(data, "cache_read_tokens", src),
            _int(data, "cache_write_tokens", src),
            _int(data, "reasoning_tokens", src),
            bool(data.get("exact", True)),
            str(data.get("source", "unknown")),
        )

    # ------------------------------------------------------------------ provider parsers

    @classmethod
    def from_langchain(cls, usage_metadata: Any) -> Usage:
        """From LangChain's ``UsageMetadata`` (or an ``AIMessage`` carrying one).

        LangChain already follows the OpenAI convention (``input_tokens`` includes cache tokens;
        every partner package normalises to it).
        """
        src = "langchain"
        meta = (
            usage_metadata
            if isinstance(usage_metadata, dict)
            else getattr(usage_metadata, "usage_metadata", usage_metadata)
        )
        data = meta if isinstance(meta, dict) else _as_mapping(meta)
        if (
            type(data) is dict
            and "input_token_details" not in data
            and "output_token_details" not in data
        ):
            i, o = data.get("input_tokens"), data.get("output_tokens")
            if type(i) is int and type(o) is int and i >= 0 and o >= 0:  # the common case
                return cls(i, o, 0, 0, 0, True, src)
        if data is None:
            raise UsageParseError("usage_metadata", "is missing", src)
        if "input_tokens" not in data and "output_tokens" not in data:
            raise UsageParseError("input_tokens", "is missing", src)
        ind = _sub(data, "input_token_details", src)
        outd = _sub(data, "output_token_details", src)
        return cls(
            _int(data, "input_tokens", src),
            _int(data, "output_tokens", src),
            _int(ind, "cache_read", src, "input_token_details."),
            _int(ind, "cache_creation", src, "input_token_details."),
            _int(outd, "reasoning", src, "output_token_details."),
            True,
            src,
        )

    @classmethod
    def from_openai(cls, response: Any, source: str = "openai") -> Usage:
        """From an OpenAI chat-completions or Responses API response, or its ``usage`` object.

        Also reads OpenAI-compatible servers (vLLM, llama.cpp, Azure): ``prompt_tokens_details.
        cached_tokens`` is the prompt-cache read, ``cache_write_tokens`` (same object; in
        ``input_tokens_details`` for the Responses API) the prompt-cache write.
        """
        data = _as_mapping(response)
        if data is None:
            raise UsageParseError("usage", f"is not an object ({type(response).__name__})", source)
        nested = "usage" in data
        usage = _sub(data, "usage", source) if nested else data
        if not usage:
            raise UsageParseError("usage", "is missing or empty", source)
        if "prompt_tokens" in usage or "completion_tokens" in usage:  # chat completions
            pd = _sub(usage, "prompt_tokens_details", source)
            cd = _sub(usage, "completion_tokens_details", source)
            return cls(
                _int(usage, "prompt_tokens", source),
                _int(usage, "completion_tokens", source),
                _int(pd, "cached_tokens", source, "prompt_tokens_details."),
                _int(pd, "cache_write_tokens", source, "prompt_tokens_details."),
                _int(cd, "reasoning_tokens", source, "completion_tokens_details."),
                True,
                source,
            )
        if "input_tokens" in usage or "output_tokens" in usage:  # Responses API
            ind = _sub(usage, "input_tokens_details", source)
            outd = _sub(usage, "output_tokens_details", source)
            return cls(
                _int(usage, "input_tokens", source),
                _int(usage, "output_tokens", source),
                _int(ind, "cached_tokens", source, "input_tokens_details."),
                _int(ind, "cache_write_tokens", source, "input_tokens_details."),
                _int(outd, "reasoning_tokens", source, "output_tokens_details."),
                True,
                source,
            )
        if not nested:  # a response without any usage (e.g. stream_options.include_usage unset)
            raise UsageParseError("usage", "is missing", source)
        raise UsageParseError(
            "prompt_tokens", "is missing (neither chat-completions nor Responses usage)", source
        )

    @classmethod
    def from_vllm(cls, response: Any) -> Usage:
        """From a vLLM OpenAI-compatible response (cached tokens need
        ``--enable-prompt-tokens-details``)."""
        return cls.from_openai(response, source="vllm")

    @classmethod
    def from_anthropic(cls, response: Any) -> Usage:
        """From an Anthropic Messages response (or its ``usage``; streaming ``message_start`` /
        ``message_delta`` events too). Anthropic's ``input_tokens`` excludes cache reads and
        writes; they are added back so ``input_tokens`` means all prompt tokens."""
        src = "anthropic"
        data = _as_mapping(response)
        if data is None:
            raise UsageParseError("usage", f"is not an object ({type(response).__name__})", src)
        if "message" in data and "usage" not in data:  # streaming message_start event
            data = _sub(data, "message", src)
        nested = "usage" in data
        usage = _sub(data, "usage", src) if nested else data
        if "input_tokens" not in usage and "output_tokens" not in usage:
            if not nested or not usage:  # a response or event without any usage
                raise UsageParseError("usage", "is missing or empty", src)
            raise UsageParseError("input_tokens", "is missing", src)
        read = _int(usage, "cache_read_input_tokens", src)
        write = _int(usage, "cache_creation_input_tokens", src)
        if not write:
            cc = _sub(usage, "cache_creation", src)
            write = sum(_int(cc, k, src, "cache_creation.") for k in cc)
        return cls(
            _int(usage, "input_tokens", src) + read + write,
            _int(usage, "output_tokens", src),
            read,
            write,
            0,
            True,
            src,
        )

    @classmethod
    def from_gemini(cls, response: Any) -> Usage:
        """From a Gemini ``usageMetadata`` (camelCase REST or snake_case SDK)."""
        src = "gemini"
        data = _as_mapping(response)
        if data is None:
            raise UsageParseError("usageMetadata", "is not an object", src)
        for key in ("usageMetadata", "usage_metadata"):
            if key in data:
                data = _sub(data, key, src)
                break

        if not any(k in data for k in _GEMINI_KEYS):  # no usage at all: not "zero tokens"
            raise UsageParseError("usageMetadata", "is missing or has no token counts", src)

        def get(camel: str, snake: str) -> int:
            return _int(data, camel, src) if camel in data else _int(data, snake, src)

        prompt = get("promptTokenCount", "prompt_token_count")
        thoughts = get("thoughtsTokenCount", "thoughts_token_count")
        return cls(
            prompt,
            get("candidatesTokenCount", "candidates_token_count") + thoughts,
            get("cachedContentTokenCount", "cached_content_token_count"),
            0,
            thoughts,
            True,
            src,
        )

    @classmethod
    def parse(cls, payload: Any, provider: str | None = None) -> Usage:
        """Read ``payload`` from any supported provider.

        Detects which from its fields when ``provider`` (``openai``, ``anthropic``, ``vllm``,
        ``gemini``, ``langchain``) is not given."""
        parsers = {
            "openai": cls.from_openai,
            "azure": cls.from_openai,
            "anthropic": cls.from_anthropic,
            "vllm": cls.from_vllm,
            "gemini": cls.from_gemini,
            "google": cls.from_gemini,
            "langchain": cls.from_langchain,
        }
        if provider is not None:
            try:
                parser = parsers[provider.lower()]
            except KeyError:
                raise UsageParseError(
                    "provider", f"{provider!r} is not one of {sorted(parsers)}"
                ) from None
            return parser(payload)
        if hasattr(payload, "usage_metadata") and not isinstance(payload, Mapping):
            # a LangChain AIMessage, or a google-genai GenerateContentResponse (same attribute name)
            meta = _as_mapping(payload.usage_metadata)
            if (
                meta is not None
                and any(k in meta for k in _GEMINI_KEYS)
                and not ("input_tokens" in meta or "output_tokens" in meta)
            ):
                return cls.from_gemini(payload)
            return cls.from_langchain(payload)
        data = _as_mapping(payload)
        if data is None:
            raise UsageParseError("usage", f"cannot read a {type(payload).__name__}")
        usage = data.get("usage", data)
        usage_map = _as_mapping(usage) or {}
        for key in ("usage_metadata", "usageMetadata"):
            if key in data:
                meta_map = _as_mapping(data[key]) or {}
                if "input_tokens" in meta_map or "output_tokens" in meta_map:
                    return cls.from_langchain(meta_map)  # a dumped LangChain message
                return cls.from_gemini(data)
        if any(k in data for k in _GEMINI_KEYS):
            return cls.from_gemini(data)
        if "input_token_details" in usage_map or "output_token_details" in usage_map:
            return cls.from_langchain(usage_map)
        if "cache_read_input_tokens" in usage_map or "cache_creation_input_tokens" in usage_map:
            return cls.from_anthropic(data)
        if data.get("type") in ("message", "message_start", "message_delta"):
            return cls.from_anthropic(data)
        if (
            "total_tokens" not in usage_map
            and "input_tokens" in usage_map
            and ("input_tokens_details" not in usage_map)
        ):
            # LangChain's UsageMetadata always has total_tokens; Anthropic's usage never does
            return cls.from_anthropic(data)
        if (
            "input_tokens" in usage_map
            and "input_tokens_details" not in usage_map
            and ("output_tokens_details" not in usage_map)
        ):
            return cls.from_langchain(usage_map)
        return cls.from_openai(data)
