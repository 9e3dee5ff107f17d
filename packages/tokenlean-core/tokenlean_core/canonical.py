"""Prompt canonicalisation, cache keys and cache-friendly prompt layout.

Three tools for getting more out of caches:

* :func:`canonicalize` reduces a text or a conversation to a stable text: two prompts that mean the
  same thing (differing whitespace, JSON key order, timestamps, UUIDs, or LangChain messages
  versus OpenAI dicts for the same conversation) canonicalise to the same string.
* :func:`canonical_key` hashes that text together with the model, the generation parameters and
  the tenant into a key for an exact-match response cache. The key is a SHA-256 digest, so it
  reveals nothing of the prompt.
* :func:`layout_prompt` orders a prompt "stable prefix first" (system prompt, stable documents and
  tools, then the history, then retrieved documents and the question) so the prompt caches of
  OpenAI and Anthropic hit, and returns what each provider needs: OpenAI's ``prompt_cache_key`` and
  an Anthropic request with ``cache_control`` breakpoints.

The module is framework-free: LangChain is imported only inside :meth:`LaidOutPrompt.to_langchain`.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, is_dataclass, replace
from enum import Enum
from typing import Any

from .errors import MissingDependencyError, TokenleanError
from .messages import Message, normalize_messages
from .tokenizers import TokenCount, count_tokens

__all__ = [
    "DEFAULT_VOLATILE_PATTERNS",
    "CanonicalConfig",
    "LaidOutPrompt",
    "canonical_key",
    "canonicalize",
    "layout_prompt",
]

# --------------------------------------------------------------------------------------------------
# Volatile patterns
# --------------------------------------------------------------------------------------------------

# Each default pattern starts with a plain character class and checks the character before the
# match with a two-character lookbehind placed after it (``[0-9](?<!\w.)`` rather than
# ``(?<!\w)[0-9]``): the regex engine then jumps straight to candidate characters instead of trying
# every position, which makes the patterns markedly faster on long texts.
_H = "[0-9a-fA-F]"
_YMD_REST = r"[0-9]{3}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])"  # after the first digit
_HM = r"(?:[01][0-9]|2[0-3]):[0-5][0-9]"
_SEC = r"(?:[0-5][0-9]|60)"
_MONTH = r"(?i:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)"
_RFC_REST = (  # after the day of the month
    rf"[ \t]+{_MONTH}[ \t]+[0-9]{{4}}[ \t]+{_HM}(?::{_SEC})?"
    r"(?:[ \t]+(?i:gmt|utc|ut|z|[ecmp][sd]t)|[ \t]+[+-][0-9]{4})?(?![\w:])"
)

#: The default ``(regex, placeholder)`` pairs, applied in this order (so a full timestamp is
#: replaced before its date part). Each matches only a token standing alone: not glued to a letter,
#: digit or ``_`` (nor, for UUIDs, a ``-``) on either side.
DEFAULT_VOLATILE_PATTERNS: tuple[tuple[str, str], ...] = (
    # UUIDs, any case: 123e4567-e89b-12d3-a456-426614174000
    (rf"{_H}(?<![\w-].){_H}{{7}}-{_H}{{4}}-{_H}{{4}}-{_H}{{4}}-{_H}{{12}}(?![\w-])", "<UUID>"),
    # ISO-8601 date-times: 2026-11-22T11:29:30Z, 2026-11-22 11:29:30.123+01:00, 2026-11-22T11:29
    (
        rf"[0-9](?<!\w.){_YMD_REST}[Tt ]{_HM}(?::{_SEC}(?:[.,][0-9]+)?)?"
        r"(?:[Zz]|[+-](?:[01][0-9]|2[0-3]):?[0-5][0-9])?(?![\w:])",
        "<TIMESTAMP>",
    ),
    # RFC 2822-style (HTTP, e-mail) date-times: Sun, 22 Nov 2026 11:29:30 GMT
    (
        r"[FMSTWfmstw](?<!\w.)(?i:(?<=m)on|(?<=t)ue|(?<=w)ed|(?<=t)hu|(?<=f)ri|(?<=s)at|(?<=s)un)"
        rf",?[ \t]+[0-9]{{1,2}}{_RFC_REST}",
        "<TIMESTAMP>",
    ),
    # ... and without the day of the week: 22 Nov 2026 11:29:30 +0100
    (rf"[0-9](?<!\w.)[0-9]?{_RFC_REST}", "<TIMESTAMP>"),
    # ISO-8601 dates: 2026-11-22
    (rf"[0-9](?<!\w.){_YMD_REST}(?!\w)", "<DATE>"),
    # clock times with seconds: 11:29:30, 9:05:00.250 (a bare HH:MM is kept: often not a time)
    (
        rf"[0-9](?<![\w:.].)(?:(?<=[01])[0-9]|(?<=2)[0-3])?:[0-5][0-9]:{_SEC}(?:[.,][0-9]+)?"
        r"(?![\w:])",
        "<TIME>",
    ),
    # long hex ids (object ids, hashes, trace ids): 24+ hex digits with at least one digit and
    # one letter, so long decimal numbers and words are left alone
    (
        rf"{_H}(?<!\w.)(?:(?<=[a-fA-F])(?={_H}*[0-9])|(?<=[0-9])(?={_H}*[a-fA-F])){_H}{{23,}}"
        r"(?!\w)",
        "<HEX>",
    ),
    # unix epoch seconds or milliseconds of 2001-2033 (10 or 13 digits starting with 1, optionally
    # with a fraction), so 10-digit phone numbers are left alone
    (r"1(?<![\w.].)[0-9]{9}(?:[0-9]{3})?(?:\.[0-9]+)?(?!\w|\.[0-9])", "<EPOCH>"),
)
_DEFAULTS = frozenset(p for p, _ in DEFAULT_VOLATILE_PATTERNS)
_DIGITS = "0123456789"
# A necessary condition for every default pattern: 8 hex digits in a row (UUIDs, hex ids, epochs)
# or "dd-d" / "dd:d" (dates, times). One search for it spares running the patterns on most texts.
_DEFAULTS_GATE = re.compile(r"[0-9a-fA-F](?:(?<=[0-9])[0-9][-:][0-9]|[0-9a-fA-F]{7})")


def _compile_pattern(pattern: str, placeholder: str, kind: str) -> re.Pattern[str]:
    if not isinstance(pattern, str) or not isinstance(placeholder, str):
        raise TokenleanError(
            f"{kind} entries must be (regex, placeholder) pairs of strings, got "
            f"({pattern!r}, {placeholder!r})"
        )
    try:
        compiled = re.compile(pattern)
    except (re.error, OverflowError, RecursionError) as exc:
        raise TokenleanError(f"invalid regex in {kind}: {pattern!r}: {exc}") from None
    if compiled.match("") is not None:
        raise TokenleanError(
            f"regex {pattern!r} in {kind} matches the empty string; it would insert "
            f"{placeholder!r} everywhere"
        )
    return compiled


def _pairs(value: Any, kind: str) -> tuple[tuple[str, str], ...]:
    if isinstance(value, Mapping):
        value = tuple(value.items())
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise TokenleanError(f"{kind} must be a tuple of (regex, placeholder) pairs")
    out: list[tuple[str, str]] = []
    for item in value:
        if (
            isinstance(item, (str, bytes))
            or not isinstance(item, Sequence)
            or len(item) != 2
            or not all(isinstance(x, str) for x in item)
        ):
            raise TokenleanError(
                f"{kind} entries must be (regex, placeholder) pairs of strings, got {item!r}"
            )
        out.append((item[0], item[1]))
    return tuple(out)


def _build_substitutions(
    pairs: Sequence[tuple[str, str, str]],
) -> tuple[tuple[re.Pattern[str], str, bool], ...]:
    """Compile ``(pattern, placeholder, kind)`` triples into ``(regex, template, is_default)``.

    Placeholders are literal text (backslashes are escaped for :meth:`re.Pattern.sub`).
    """
    compiled = [(_compile_pattern(p, ph, kind), ph) for p, ph, kind in pairs]
    for rx, ph in compiled:
        for other, _ in compiled:
            if other.search(ph):
                raise TokenleanError(
                    f"placeholder {ph!r} (for {rx.pattern!r}) is itself matched by "
                    f"{other.pattern!r}; canonicalisation would not be stable"
                )
    return tuple((rx, ph.replace("\\", "\\\\"), rx.pattern in _DEFAULTS) for rx, ph in compiled)


# --------------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CanonicalConfig:
    """What :func:`canonicalize` normalises. Validated (and its regexes compiled) at construction.

    Text goes through these steps, in order: lowercasing, Unicode NFC, whitespace collapsing, JSON
    re-dumping (the whole text, or each fenced json block, that parses as a JSON object or array),
    then volatile-pattern replacement. Inside re-dumped JSON the same steps apply to every key and
    string value, and numbers that look volatile (e.g. epoch seconds) become placeholders.

    Attributes:
        collapse_whitespace: Turn runs of spaces, tabs and other non-newline whitespace into one
            space, strip trailing spaces on each line, reduce 3+ newlines to 2 (after turning
            ``\\r\\n`` and ``\\r`` into ``\\n``) and strip both ends.
        unicode_nfc: Apply Unicode NFC normalisation.
        sort_json_keys: Re-dump JSON objects and arrays (the whole text, or fenced json blocks)
            with sorted keys and compact separators. Invalid JSON is left as it is.
        lowercase: Lowercase the text (off by default: case often carries meaning).
        volatile_patterns: ``(regex, placeholder)`` pairs replacing values that change between
            otherwise identical prompts (timestamps, ids). Defaults to
            :data:`DEFAULT_VOLATILE_PATTERNS`; pass ``()`` to keep every value.
            Placeholders are literal text. Patterns run after lowercasing (and with
            ``lowercase=True`` placeholders are lowercased too: ``<date>``).
        extra_patterns: More ``(regex, placeholder)`` pairs, applied after ``volatile_patterns``.
        volatile_roles: In a conversation, the roles whose messages get the volatile and extra
            patterns (default: ``system`` and ``developer``, where "Today is ..." and request ids
            live). Other messages keep their values: a user asking about 2026-11-22 and one
            asking about 2026-11-23 must not share a cache key. ``None`` applies the patterns to
            every message. Plain text (not messages) always gets them.

    Raises:
        TokenleanError: A regex does not compile (the message names it), matches the empty
            string, or a placeholder would itself be matched by a pattern.
    """

    collapse_whitespace: bool = True
    unicode_nfc: bool = True
    sort_json_keys: bool = True
    lowercase: bool = False
    volatile_patterns: tuple[tuple[str, str], ...] = DEFAULT_VOLATILE_PATTERNS
    extra_patterns: tuple[tuple[str, str], ...] = ()
    volatile_roles: tuple[str, ...] | None = ("system", "developer")
    _subs: tuple[tuple[re.Pattern[str], str, bool], ...] = field(
        init=False, repr=False, compare=False, default=()
    )
    _only_defaults: bool = field(init=False, repr=False, compare=False, default=True)

    def __post_init__(self) -> None:
        for name in ("collapse_whitespace", "unicode_nfc", "sort_json_keys", "lowercase"):
            if not isinstance(getattr(self, name), bool):
                raise TokenleanError(
                    f"CanonicalConfig.{name} must be a bool, got {getattr(self, name)!r}"
                )
        volatile = _pairs(self.volatile_patterns, "volatile_patterns")
        extra = _pairs(self.extra_patterns, "extra_patterns")
        object.__setattr__(self, "volatile_patterns", volatile)
        object.__setattr__(self, "extra_patterns", extra)
        # with lowercase=True placeholders are lowercased too, so the output stays lowercase
        fold = str.lower if self.lowercase else str
        triples = [(p, fold(ph), "volatile_patterns") for p, ph in volatile]
        triples += [(p, fold(ph), "extra_patterns") for p, ph in extra]
        subs = _build_substitutions(triples)
        object.__setattr__(self, "_subs", subs)
        object.__setattr__(self, "_only_defaults", all(is_default for _, _, is_default in subs))
        if self.volatile_roles is not None:
            if isinstance(self.volatile_roles, str) or not all(
                isinstance(r, str) for r in self.volatile_roles
            ):
                raise TokenleanError(
                    f"CanonicalConfig.volatile_roles must be a tuple of role names or None, "
                    f"got {self.volatile_roles!r}"
                )
            roles = tuple(r.strip().lower() for r in self.volatile_roles)
            object.__setattr__(self, "volatile_roles", roles)

    @classmethod
    def with_extra_patterns(
        cls,
        patterns: Mapping[str, str] | Iterable[tuple[str, str]],
        *,
        collapse_whitespace: bool = True,
        unicode_nfc: bool = True,
        sort_json_keys: bool = True,
        lowercase: bool = False,
    ) -> CanonicalConfig:
        """Build a config with the default volatile patterns plus ``patterns``.

        Args:
            patterns: ``{regex: placeholder}`` or ``(regex, placeholder)`` pairs, applied after the
                defaults, e.g. ``{r"req_[A-Za-z0-9]{16}": "<REQUEST_ID>"}``.
            collapse_whitespace: See :class:`CanonicalConfig`.
            unicode_nfc: See :class:`CanonicalConfig`.
            sort_json_keys: See :class:`CanonicalConfig`.
            lowercase: See :class:`CanonicalConfig`.

        Returns:
            A validated :class:`CanonicalConfig`.
        """
        return cls(
            collapse_whitespace=collapse_whitespace,
            unicode_nfc=unicode_nfc,
            sort_json_keys=sort_json_keys,
            lowercase=lowercase,
            extra_patterns=_pairs(patterns, "extra_patterns"),
        )


_DEFAULT_CONFIG = CanonicalConfig()

# --------------------------------------------------------------------------------------------------
# Text canonicalisation
# --------------------------------------------------------------------------------------------------

# a run of non-newline whitespace other than a lone space (lone spaces are left alone: faster)
_WS_RUN = re.compile(r"[^\S\n](?:(?<! )|[^\S\n])[^\S\n]*")
_MANY_NEWLINES = re.compile(r"\n{3,}")
_JSON_FENCE = re.compile(r"```json(.*?)```", re.IGNORECASE | re.DOTALL)
_JSON_DECODER = json.JSONDecoder(strict=False)


def _collapse_ws(text: str) -> str:
    if text.isprintable() and "  " not in text:  # the only whitespace is lone spaces
        return text.strip()
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _WS_RUN.sub(" ", text)
    if " \n" in text:
        text = text.replace(" \n", "\n")
    if "\n\n\n" in text:
        text = _MANY_NEWLINES.sub("\n\n", text)
    return text.strip()


def _prepare(text: str, cfg: CanonicalConfig) -> str:
    """NFC, lowercase and whitespace: the steps that run before JSON detection."""
    if cfg.lowercase:
        text = text.lower()
    if cfg.unicode_nfc and not text.isascii():
        text = unicodedata.normalize("NFC", text)
    if cfg.collapse_whitespace:
        text = _collapse_ws(text)
    return text


def _scrub(text: str, cfg: CanonicalConfig) -> str:
    """Replace volatile values."""
    candidate: bool | None = None  # could a default pattern match? (decided once, lazily)
    for rx, repl, is_default in cfg._subs:
        if is_default:
            if candidate is None:
                candidate = _could_be_volatile(text)
            if not candidate:
                continue
        text = rx.sub(repl, text)
    return text


def _could_be_volatile(text: str) -> bool:
    if len(text) > 256 and not any(d in text for d in _DIGITS):  # str.find is faster than re
        return False
    return _DEFAULTS_GATE.search(text) is not None


def _string(text: str, cfg: CanonicalConfig) -> str:
    """Canonicalise a JSON key or string value (no JSON detection inside)."""
    text = _scrub(_prepare(text, cfg), cfg)
    if cfg.extra_patterns and cfg.collapse_whitespace:
        text = _collapse_ws(text)
    return text


def _json_value(value: Any, cfg: CanonicalConfig, memo: dict[str, str]) -> Any:
    """Canonicalise a decoded JSON value (exact types: the decoder makes no subclasses)."""
    kind = type(value)
    if kind is str:
        done = memo.get(value)
        if done is None:
            done = memo[value] = _string(value, cfg)
        return done
    if kind is dict:
        return {_json_value(k, cfg, memo): _json_value(v, cfg, memo) for k, v in value.items()}
    if kind is list:
        return [_json_value(v, cfg, memo) for v in value]
    if kind is int or kind is float:
        if kind is float and not math.isfinite(value):
            # NaN / Infinity are not JSON; keep them as (stable) strings
            text = json.dumps(value)
            return text.lower() if cfg.lowercase else text
        text = repr(value)  # what json.dumps writes for a finite number
        if len(text) < 8 and cfg._only_defaults:
            return value  # too short for any default pattern (see _DEFAULTS_GATE)
        scrubbed = _scrub(text, cfg)
        return value if scrubbed == text else scrubbed
    return value  # True, False, None


def _json_dump(value: Any, cfg: CanonicalConfig) -> str:
    return json.dumps(
        _json_value(value, cfg, {}), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )


def _try_json(text: str, cfg: CanonicalConfig) -> str | None:
    """The canonical dump of ``text`` if it is a JSON object or array, else ``None``."""
    stripped = text.strip()
    if not stripped or stripped[0] not in "{[":
        return None
    try:
        value = _JSON_DECODER.decode(stripped)
        if not isinstance(value, (dict, list)):
            return None
        return _json_dump(value, cfg)
    except (ValueError, RecursionError):  # invalid JSON, huge ints, absurd nesting
        return None


def _canonical_text(text: str, cfg: CanonicalConfig) -> str:
    text = _prepare(text, cfg)
    if cfg.sort_json_keys:
        whole = _try_json(text, cfg)
        if whole is not None:
            return whole
        if "```" in text:
            pieces: list[str] = []
            last = 0
            for match in _JSON_FENCE.finditer(text):
                dumped = _try_json(match.group(1), cfg)
                if dumped is None:
                    continue
                pieces.append(_scrub(text[last : match.start()], cfg))
                pieces.append(f"```json\n{dumped}\n```")
                last = match.end()
            if pieces:
                pieces.append(_scrub(text[last:], cfg))
                text = "".join(pieces)
            else:
                text = _scrub(text, cfg)
        else:
            text = _scrub(text, cfg)
    else:
        text = _scrub(text, cfg)
    if cfg.extra_patterns and cfg.collapse_whitespace:
        text = _collapse_ws(text)  # user placeholders may contain whitespace
    return text


# --------------------------------------------------------------------------------------------------
# Message canonicalisation
# --------------------------------------------------------------------------------------------------

_ROLE_ALIASES = {"human": "user", "ai": "assistant", "model": "assistant", "chatbot": "assistant"}
_LABEL_UNSAFE = re.compile(r"[^\w.-]+")
_TEXT_KINDS = frozenset({"text", "input_text", "output_text"})
_IMAGE_KINDS = frozenset({"image_url", "image", "input_image"})
# parts that duplicate what ``Message.tool_calls`` already holds
_TOOL_KINDS = frozenset({"tool_use", "tool_call", "function_call", "ToolCallBlock"})


def _label(value: str) -> str:
    """A role or name as one safe token (no spaces, colons, newlines)."""
    return _LABEL_UNSAFE.sub("_", value.strip())


def _role(role: str) -> str:
    role = role.strip().lower()
    return _ROLE_ALIASES.get(role, role)


def _digest(text: str, size: int = 16) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:size]


def _stable_dump(value: Any) -> str:
    if hasattr(value, "model_dump"):
        try:
            value = value.model_dump(mode="json")
        except Exception:  # any pydantic serialisation failure: fall back to repr
            return repr(value)
    try:
        return json.dumps(value, sort_keys=True, default=str, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):
        return repr(value)


def _image_source(part: Any) -> str | None:
    """The URL or base64 payload of an image part, whichever framework it comes from."""
    src: Any = None
    if isinstance(part, Mapping):
        url = part.get("image_url")
        if isinstance(url, Mapping):
            src = url.get("url")
        elif isinstance(url, str):
            src = url
        source = part.get("source")
        if src is None and isinstance(source, Mapping):
            src = source.get("data") or source.get("url")
        for key in ("url", "data", "base64", "file_id"):
            if src is None:
                src = part.get(key)
    else:  # LlamaIndex ImageBlock: url / image (base64 bytes) / path
        for attr in ("url", "image", "path"):
            got = getattr(part, attr, None)
            if got:
                src = got
                break
    if isinstance(src, bytes):
        src = src.decode("ascii", "replace")
    if src is None:
        return None
    text = str(src)
    if text.startswith("data:") and ";base64," in text:
        text = text.split(";base64,", 1)[1]
    return text


def _raw_parts(raw: Any) -> Sequence[Any]:
    if isinstance(raw, Mapping):
        content = raw.get("content")
    elif hasattr(raw, "additional_kwargs") and hasattr(raw, "type"):  # LangChain
        content = getattr(raw, "content", None)
    else:  # LlamaIndex
        content = getattr(raw, "blocks", None)
    if isinstance(content, (str, bytes)) or not isinstance(content, Sequence):
        return ()
    return content


def _part_markers(raw: Any, msg: Message) -> list[str]:
    """Markers for a message's non-text parts, each with a digest of the part's payload, so
    prompts that differ only in an image never canonicalise to the same text."""
    if isinstance(raw, Message):  # payloads are not kept on a Message: mark them without digest
        return ["+ image"] * msg.images + [f"+ {_label(kind)}" for kind in msg.extra_parts]
    markers: list[str] = []
    for part in _raw_parts(raw):
        if isinstance(part, str):
            continue
        if isinstance(part, Mapping):
            kind = str(part.get("type", ""))
            if kind in _TEXT_KINDS or (not kind and "text" in part):
                continue
            is_image = kind in _IMAGE_KINDS
        else:
            kind = type(part).__name__
            if isinstance(getattr(part, "text", None), str):
                continue
            is_image = "Image" in kind
        if kind in _TOOL_KINDS:
            continue
        source = _image_source(part) if is_image else None
        payload = source if source is not None else _stable_dump(part)
        markers.append(f"+ {'image' if is_image else _label(kind or 'unknown')} {_digest(payload)}")
    return markers


def _tool_arguments(arguments: str, cfg: CanonicalConfig) -> str:
    if not arguments.strip():
        return "{}"
    try:
        return _json_dump(_JSON_DECODER.decode(arguments.strip()), cfg)
    except (ValueError, RecursionError):
        return _canonical_text(arguments, cfg).replace("\n", "\\n")


def _literal(cfg: CanonicalConfig) -> CanonicalConfig:
    """``cfg`` without volatile/extra patterns, for messages whose values carry meaning."""
    found: CanonicalConfig | None = cfg.__dict__.get("_literal_cfg")
    if found is None:
        found = replace(cfg, volatile_patterns=(), extra_patterns=(), volatile_roles=None)
        object.__setattr__(cfg, "_literal_cfg", found)  # memo on the frozen config
    return found


def _render_message(msg: Message, raw: Any, cfg: CanonicalConfig) -> str:
    role = _label(_role(msg.role)) or "_"
    header = role
    if msg.name and role != "tool":
        header = f"{role}:{_label(msg.name)}"
    lines = [header]
    if (
        cfg.volatile_roles is not None
        and cfg._subs
        and role not in {_role(r) for r in cfg.volatile_roles}
    ):
        cfg = _literal(cfg)
    content = _canonical_text(msg.content, cfg) if msg.content else ""
    if content:
        lines.extend(f"| {line}" if line else "|" for line in content.split("\n"))
    for call in msg.tool_calls:
        lines.append(f"-> {_label(call.name)} {_tool_arguments(call.arguments, cfg)}")
    if msg.images or msg.extra_parts:
        lines.extend(_part_markers(raw, msg))
    return "\n".join(lines)


def _as_message_list(value: Any, what: str) -> list[Any]:
    if hasattr(value, "to_messages") and callable(value.to_messages):  # LangChain PromptValue
        value = value.to_messages()
    if isinstance(value, (bytes, bytearray)):
        raise TokenleanError(f"{what} takes text or messages, not bytes; decode it first")
    if isinstance(value, Mapping) or hasattr(value, "content") or hasattr(value, "role"):
        raise TokenleanError(
            f"{what} got a single message ({type(value).__name__}); pass a list of messages"
        )
    if not isinstance(value, Iterable):
        raise TokenleanError(
            f"{what} takes a str or a sequence of chat messages, got {type(value).__name__}"
        )
    return list(value)


def canonicalize(value: str | Iterable[Any], config: CanonicalConfig | None = None) -> str:
    """Reduce a text or a conversation to a stable canonical text.

    Texts that mean the same thing give the same string: whitespace differences, JSON key order,
    timestamps, dates, clock times, UUIDs, long hex ids and epoch times are normalised (see
    :class:`CanonicalConfig`). A conversation (LangChain messages, LlamaIndex ``ChatMessage``s,
    OpenAI-style dicts, or a mix) renders one block per message: a header line ``role`` or
    ``role:name`` ("human"/"ai" become "user"/"assistant"), the canonical content with each line
    prefixed by ``"| "``, tool calls as ``-> name arguments`` (arguments re-dumped with sorted
    keys) and ``+ image <digest>`` markers for non-text parts::

        user:alice
        | What is the weather in Paris?
        assistant
        -> get_weather {"city":"Paris"}
        tool
        | {"temp_c":21}

    Tool call ids are dropped (they carry no meaning), so the same conversation from LangChain,
    LlamaIndex or OpenAI dicts canonicalises identically. The line prefixes keep the rendering
    unambiguous: no message content can pass for a header.

    Canonicalising text is idempotent: ``canonicalize(canonicalize(t)) == canonicalize(t)``
    (for the default patterns, and for extra patterns whose placeholders they do not match).

    Args:
        value: A ``str``, or a sequence of chat messages (a LangChain ``PromptValue`` works too).
        config: What to normalise; defaults to ``CanonicalConfig()``.

    Returns:
        The canonical text.

    Raises:
        TokenleanError: ``value`` is neither text nor messages, or a message cannot be read.
    """
    cfg = _DEFAULT_CONFIG if config is None else config
    if not isinstance(cfg, CanonicalConfig):
        raise TokenleanError(f"config must be a CanonicalConfig, got {type(cfg).__name__}")
    if isinstance(value, str):
        return _canonical_text(value, cfg)
    raw = _as_message_list(value, "canonicalize")
    messages = normalize_messages(raw)
    return "\n".join(_render_message(m, r, cfg) for m, r in zip(messages, raw, strict=True))


# --------------------------------------------------------------------------------------------------
# Cache keys
# --------------------------------------------------------------------------------------------------

_KEY_VERSION = "tokenlean.canonical_key/1"


def _param_value(value: Any, path: str) -> Any:
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, Enum):
        return _param_value(value.value, path)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        number = float(value)
        if not math.isfinite(number):
            return f"float:{number}"
        number = float(f"{number:.12g}")  # 0.7 == 0.70 == 0.7000000000000001
        return int(number) if number.is_integer() else number
    if isinstance(value, Mapping):
        return {str(k): _param_value(v, f"{path}.{k}") for k, v in value.items()}
    if isinstance(value, (set, frozenset)):
        items = [_param_value(v, f"{path}[]") for v in value]
        return sorted(items, key=lambda v: json.dumps(v, sort_keys=True))
    if isinstance(value, (list, tuple)):
        return [_param_value(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, type):  # e.g. response_format=SomePydanticModel
        schema: Any = None
        if hasattr(value, "model_json_schema"):
            schema = _param_value(value.model_json_schema(), path)
        return {"type": f"{value.__module__}.{value.__qualname__}", "schema": schema}
    if hasattr(value, "model_dump"):  # pydantic instance
        return _param_value(value.model_dump(mode="json"), path)
    if is_dataclass(value):
        return _param_value({f.name: getattr(value, f.name) for f in fields(value)}, path)
    raise TokenleanError(
        f"params[{path}] has type {type(value).__name__}; cache-key parameters must be JSON-like "
        "(str, number, bool, None, lists, mappings) or pydantic models"
    )


def _normalize_params(params: Mapping[str, Any] | None) -> dict[str, Any]:
    if params is None:
        return {}
    if not isinstance(params, Mapping):
        raise TokenleanError(f"params must be a mapping, got {type(params).__name__}")
    return {
        str(k): _param_value(v, str(k))
        for k, v in sorted(params.items(), key=lambda kv: str(kv[0]))
        if v is not None
    }


def canonical_key(
    value: str | Iterable[Any],
    *,
    model: str | None = None,
    params: Mapping[str, Any] | None = None,
    tenant: str | None = None,
    config: CanonicalConfig | None = None,
) -> str:
    """A cache key for a prompt: SHA-256 of its canonical text, the model, params and tenant.

    The four parts are encoded unambiguously (as a versioned JSON array), so no two different
    combinations share a key. Parameters are normalised: keys sorted, ``None`` values dropped,
    floats rounded to 12 significant digits (``0.7``, ``0.70`` and ``0.7000000000000001`` match)
    and integral floats made ints (``temperature=1`` matches ``1.0``).

    Args:
        value: A text or a sequence of chat messages, as for :func:`canonicalize`.
        model: The model name; part of the key.
        params: Generation parameters (``temperature``, ``max_tokens``, ``response_format`` ...).
        tenant: Isolates tenants: the same prompt of two tenants gets two keys.
        config: Canonicalisation settings; defaults to ``CanonicalConfig()``.

    Returns:
        64 lowercase hex characters. It reveals nothing about the prompt.

    Raises:
        TokenleanError: A part has the wrong type, or a parameter value is not JSON-like.
    """
    for name, part in (("model", model), ("tenant", tenant)):
        if part is not None and not isinstance(part, str):
            raise TokenleanError(f"{name} must be a str or None, got {type(part).__name__}")
    text = canonicalize(value, config)
    payload = json.dumps(
        [_KEY_VERSION, text, model, _normalize_params(params), tenant],
        ensure_ascii=False,
        sort_keys=True,
        separators=(",", ":"),
        allow_nan=False,
    )
    return hashlib.sha256(payload.encode("utf-8", "surrogatepass")).hexdigest()


# --------------------------------------------------------------------------------------------------
# Cache-friendly layout
# --------------------------------------------------------------------------------------------------

_PROVIDERS = ("openai", "anthropic")
_EPHEMERAL: dict[str, str] = {"type": "ephemeral"}
_MAX_BREAKPOINTS = 4  # Anthropic's limit of cache_control blocks per request


def _doc_text(doc: Any, where: str, index: int) -> str:
    if isinstance(doc, str):
        return doc
    text = getattr(doc, "page_content", None)  # LangChain Document
    if isinstance(text, str):
        return text
    get_content = getattr(doc, "get_content", None)  # LlamaIndex node / NodeWithScore
    if callable(get_content):
        got = get_content()
        if isinstance(got, str):
            return got
    text = getattr(doc, "text", None)
    if isinstance(text, str):
        return text
    raise TokenleanError(
        f"{where}[{index}] is a {type(doc).__name__}; expected a str, a LangChain Document or a "
        "LlamaIndex node"
    )


def _doc_texts(docs: Any, where: str) -> list[str]:
    if docs is None:
        return []
    if isinstance(docs, str):
        raise TokenleanError(f"{where} must be a sequence of documents, not a str; wrap it: [text]")
    if not isinstance(docs, Iterable):
        raise TokenleanError(f"{where} must be a sequence of documents, got {type(docs).__name__}")
    return [_doc_text(d, where, i) for i, d in enumerate(docs)]


def _render_docs(texts: Sequence[str]) -> str:
    body = "\n".join(
        f'<document index="{i}">\n{text}\n</document>' for i, text in enumerate(texts, 1)
    )
    return f"<documents>\n{body}\n</documents>"


def _json_copy(value: Any) -> dict[str, Any]:
    """A deep copy holding only JSON types (so later edits of the input cannot leak in)."""
    copied: dict[str, Any] = json.loads(json.dumps(value))
    return copied


def _to_openai_tool(tool: Any, index: int) -> dict[str, Any]:
    if isinstance(tool, Mapping):
        if tool.get("type") == "function" and isinstance(tool.get("function"), Mapping):
            return _json_copy(tool)
        if isinstance(tool.get("name"), str):
            fn: dict[str, Any] = {"name": tool["name"]}
            if tool.get("description"):
                fn["description"] = tool["description"]
            schema = tool.get("parameters", tool.get("input_schema"))  # OpenAI / Anthropic
            fn["parameters"] = schema if schema is not None else {"type": "object"}
            return _json_copy({"type": "function", "function": fn})
        raise TokenleanError(
            f"tools[{index}] is a mapping without a function name; expected an OpenAI tool "
            '({"type": "function", "function": {...}}) or a {"name", "parameters"} spec'
        )
    metadata = getattr(tool, "metadata", None)  # LlamaIndex BaseTool
    if metadata is not None and callable(getattr(metadata, "to_openai_tool", None)):
        return _json_copy(metadata.to_openai_tool())
    if hasattr(tool, "name") and hasattr(tool, "args_schema"):  # LangChain BaseTool
        try:
            from langchain_core.utils.function_calling import convert_to_openai_tool
        except ImportError:
            raise MissingDependencyError("langchain-core", "langchain") from None
        return _json_copy(convert_to_openai_tool(tool))
    raise TokenleanError(
        f"tools[{index}] is a {type(tool).__name__}; expected an OpenAI tool dict, a LangChain "
        "tool or a LlamaIndex tool"
    )


def _history_dicts(history: Any) -> list[dict[str, Any]]:
    if history is None:
        return []
    raw = _as_message_list(history, "history")
    out: list[dict[str, Any]] = []
    pending: list[str] = []  # ids of tool calls not answered yet
    for i, msg in enumerate(normalize_messages(raw)):
        if msg.images or msg.extra_parts:
            raise TokenleanError(
                f"history[{i}] has non-text parts ({msg.images} images, "
                f"{list(msg.extra_parts)}); layout_prompt lays out text conversations only"
            )
        role = _role(msg.role)
        item: dict[str, Any] = {"role": role}
        if role == "tool":
            call_id = msg.tool_call_id
            if call_id is None:
                if not pending:
                    raise TokenleanError(
                        f"history[{i}] is a tool result without tool_call_id and there is no "
                        "earlier tool call to pair it with"
                    )
                call_id = pending.pop(0)
            elif call_id in pending:
                pending.remove(call_id)
            item["tool_call_id"] = call_id
            item["content"] = msg.content
        else:
            if msg.tool_calls:
                calls = []
                for j, call in enumerate(msg.tool_calls):
                    call_id = call.id or f"call_{i}_{j}"
                    pending.append(call_id)
                    calls.append(
                        {
                            "id": call_id,
                            "type": "function",
                            "function": {"name": call.name, "arguments": call.arguments or "{}"},
                        }
                    )
                item["content"] = msg.content or None
                item["tool_calls"] = calls
            else:
                item["content"] = msg.content
            if msg.name:
                item["name"] = msg.name
        out.append(item)
    return out


def _tool_input(arguments: str, where: str) -> dict[str, Any]:
    if not arguments.strip():
        return {}
    try:
        parsed = json.loads(arguments)
    except ValueError:
        raise TokenleanError(
            f"{where} has tool arguments that are not JSON: {arguments!r}"
        ) from None
    if not isinstance(parsed, dict):
        raise TokenleanError(f"{where} has tool arguments that are not a JSON object")
    return parsed


def _with_cache_control(block: Mapping[str, Any]) -> dict[str, Any]:
    return {**block, "cache_control": dict(_EPHEMERAL)}


@dataclass(frozen=True)
class LaidOutPrompt:
    """A prompt laid out stable-prefix-first, ready for OpenAI, Anthropic or LangChain.

    Attributes:
        messages: The messages in the OpenAI chat format: the system message (if any), the
            history, then the final user message (if any).
        tools: Tool definitions in the OpenAI format, sorted by name.
        stable_prefix: Canonical text of the system prompt, stable documents and tools: the part
            of the prompt that should be identical from call to call.
        prefix_hash: The first 32 hex characters of the SHA-256 of ``stable_prefix``.
        provider: The provider the prompt was laid out for (``"openai"`` or ``"anthropic"``).
        system_count: How many leading ``messages`` are the system message (0 or 1).
        history_count: How many ``messages`` after the system message come from the history.
    """

    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]]
    stable_prefix: str
    prefix_hash: str
    provider: str = "openai"
    system_count: int = 0
    history_count: int = 0

    def openai_kwargs(self) -> dict[str, Any]:
        """Extra OpenAI request arguments: ``{"prompt_cache_key": prefix_hash}``.

        OpenAI routes requests with the same ``prompt_cache_key`` to the same cache, which raises
        the hit rate of prompts sharing a long prefix.
        """
        return {"prompt_cache_key": self.prefix_hash}

    def request_kwargs(self) -> dict[str, Any]:
        """Request arguments for ``provider``: ``messages`` and ``tools`` plus the cache hints.

        For ``"openai"``: ``{"messages", "tools" (if any), "prompt_cache_key"}``; for
        ``"anthropic"``: :meth:`anthropic_request`.
        """
        if self.provider == "anthropic":
            return self.anthropic_request()
        kwargs: dict[str, Any] = {"messages": [dict(m) for m in self.messages]}
        if self.tools:
            kwargs["tools"] = [dict(t) for t in self.tools]
        kwargs.update(self.openai_kwargs())
        return kwargs

    def anthropic_request(self) -> dict[str, Any]:
        """The prompt as Anthropic Messages API arguments, with prompt-cache breakpoints.

        Returns ``{"system": [...], "messages": [...], "tools": [...]}`` (``system`` and
        ``tools`` only when present). ``cache_control: {"type": "ephemeral"}`` marks the end of
        the cacheable prefixes: the system block (tools + system prompt + stable documents), the
        last tool, and the last content block of the history (so the conversation so far is
        cached too) - at most 3 of Anthropic's 4 allowed breakpoints. History system messages
        become extra system blocks, tool calls ``tool_use`` blocks and tool results
        ``tool_result`` blocks in user turns; consecutive turns of one role are merged.

        Raises:
            TokenleanError: A history message cannot be expressed in the Anthropic format.
        """
        request: dict[str, Any] = {}
        system_blocks: list[dict[str, Any]] = []
        for msg in self.messages[: self.system_count]:
            if msg.get("content"):
                system_blocks.append(
                    _with_cache_control({"type": "text", "text": str(msg["content"])})
                )
        turns: list[dict[str, Any]] = []
        last_history_block: tuple[int, int] | None = None

        def add(role: str, blocks: list[dict[str, Any]]) -> tuple[int, int] | None:
            if not blocks:
                return None
            if turns and turns[-1]["role"] == role:
                turns[-1]["content"].extend(blocks)
            else:
                turns.append({"role": role, "content": blocks})
            return len(turns) - 1, len(turns[-1]["content"]) - 1

        start = self.system_count
        for i, msg in enumerate(self.messages[start : start + self.history_count]):
            where = f"history[{i}]"
            role = msg["role"]
            content = msg.get("content") or ""
            if role in ("system", "developer"):
                if content:
                    system_blocks.append({"type": "text", "text": content})
                continue
            blocks: list[dict[str, Any]] = []
            if role == "user":
                blocks = [{"type": "text", "text": content}] if content else []
                pos = add("user", blocks)
            elif role == "assistant":
                if content:
                    blocks.append({"type": "text", "text": content})
                for call in msg.get("tool_calls") or ():
                    fn = call["function"]
                    blocks.append(
                        {
                            "type": "tool_use",
                            "id": call["id"],
                            "name": fn["name"],
                            "input": _tool_input(fn.get("arguments") or "", where),
                        }
                    )
                pos = add("assistant", blocks)
            elif role == "tool":
                block: dict[str, Any] = {"type": "tool_result", "tool_use_id": msg["tool_call_id"]}
                if content:
                    block["content"] = content
                pos = add("user", [block])
            else:
                raise TokenleanError(
                    f"{where} has role {role!r}, which the Anthropic Messages API does not have"
                )
            if pos is not None:
                last_history_block = pos
        if last_history_block is not None:
            t, b = last_history_block
            turns[t]["content"][b] = _with_cache_control(turns[t]["content"][b])
        for msg in self.messages[start + self.history_count :]:
            if msg.get("content"):
                add("user", [{"type": "text", "text": str(msg["content"])}])
        if system_blocks:
            request["system"] = system_blocks
        request["messages"] = turns
        if self.tools:
            tools = []
            for tool in self.tools:
                fn = tool["function"]
                converted: dict[str, Any] = {"name": fn["name"]}
                if fn.get("description"):
                    converted["description"] = fn["description"]
                converted["input_schema"] = fn.get("parameters") or {"type": "object"}
                tools.append(converted)
            tools[-1] = _with_cache_control(tools[-1])
            request["tools"] = tools
        if _count_breakpoints(request) > _MAX_BREAKPOINTS:  # pragma: no cover - by construction
            raise TokenleanError("internal error: more than 4 cache_control breakpoints")
        return request

    def to_langchain(self) -> list[Any]:
        """The messages as LangChain messages (``SystemMessage``, ``HumanMessage``, ...).

        Raises:
            MissingDependencyError: ``langchain-core`` is not installed.
        """
        try:
            from langchain_core.messages import (
                AIMessage,
                BaseMessage,
                HumanMessage,
                SystemMessage,
                ToolMessage,
            )
        except ImportError:
            raise MissingDependencyError("langchain-core", "langchain") from None
        out: list[BaseMessage] = []
        for msg in self.messages:
            role = msg["role"]
            content = msg.get("content") or ""
            extra: dict[str, Any] = {"name": msg["name"]} if msg.get("name") else {}
            if role == "system":
                out.append(SystemMessage(content=content, **extra))
            elif role == "developer":
                out.append(
                    SystemMessage(
                        content=content, additional_kwargs={"__openai_role__": "developer"}, **extra
                    )
                )
            elif role == "user":
                out.append(HumanMessage(content=content, **extra))
            elif role == "assistant":
                calls = [
                    {
                        "name": c["function"]["name"],
                        "args": _tool_input(c["function"].get("arguments") or "", "message"),
                        "id": c["id"],
                        "type": "tool_call",
                    }
                    for c in msg.get("tool_calls") or ()
                ]
                out.append(AIMessage(content=content, tool_calls=calls, **extra))
            elif role == "tool":
                out.append(ToolMessage(content=content, tool_call_id=msg["tool_call_id"]))
            else:
                raise TokenleanError(f"cannot convert role {role!r} to a LangChain message")
        return out

    def prefix_tokens(self, model: str | None = None) -> TokenCount:
        """Tokens of the cacheable prefix (system message and tools) for ``model``.

        Provider prompt caches only apply from a minimum prefix length (1024 tokens for OpenAI and
        most Anthropic models), so this tells whether caching can help at all.
        """
        return count_tokens(self.messages[: self.system_count], model, tools=self.tools or None)


def _count_breakpoints(value: Any) -> int:
    if isinstance(value, Mapping):
        own = 1 if "cache_control" in value else 0
        return own + sum(_count_breakpoints(v) for k, v in value.items() if k != "cache_control")
    if isinstance(value, list):
        return sum(_count_breakpoints(v) for v in value)
    return 0


def layout_prompt(
    *,
    system: str | None = None,
    tools: Sequence[Any] | None = None,
    stable_context: Sequence[Any] = (),
    history: Sequence[Any] | None = (),
    dynamic_context: Sequence[Any] = (),
    question: str | None = None,
    provider: str = "openai",
) -> LaidOutPrompt:
    """Lay a prompt out stable-prefix-first, so provider prompt caches hit.

    Providers cache prompts by exact prefix. The layout puts what rarely changes first and what
    changes every call last::

        system:    system prompt + stable_context documents     <- cached across calls
        history:   earlier turns (any message kind)             <- cached within a conversation
        user:      dynamic_context documents + question         <- new every call

    Tools are sorted by name (their order does not matter to the model, but it does to a cache).
    Texts are sent as given; canonicalisation only feeds ``stable_prefix`` and ``prefix_hash``.
    Documents are wrapped as ``<documents><document index="1">...</document></documents>``.

    Args:
        system: The system prompt.
        tools: Tool definitions: OpenAI tool dicts, ``{"name", "description", "parameters"}`` or
            Anthropic ``input_schema`` specs, LangChain tools or LlamaIndex tools.
        stable_context: Documents that are the same on every call (instructions, a knowledge
            base); appended to the system message. Strings, LangChain ``Document``s or
            LlamaIndex nodes.
        history: Earlier messages: LangChain, LlamaIndex or OpenAI dicts (text only).
        dynamic_context: Documents retrieved for this call; put in the final user message, before
            the question.
        question: The user's question, last.
        provider: ``"openai"`` or ``"anthropic"``; selects :meth:`LaidOutPrompt.request_kwargs`.

    Returns:
        A :class:`LaidOutPrompt`.

    Raises:
        TokenleanError: An argument has the wrong type (the message names it), tools share a
            name, or a history message cannot be read.
    """
    if provider not in _PROVIDERS:
        raise TokenleanError(f"provider must be one of {list(_PROVIDERS)}, got {provider!r}")
    if system is not None and not isinstance(system, str):
        raise TokenleanError(f"system must be a str or None, got {type(system).__name__}")
    if question is not None and not isinstance(question, str):
        raise TokenleanError(f"question must be a str or None, got {type(question).__name__}")
    stable_docs = _doc_texts(stable_context, "stable_context")
    dynamic_docs = _doc_texts(dynamic_context, "dynamic_context")

    tool_dicts: list[dict[str, Any]] = []
    if tools is not None:
        if isinstance(tools, (str, Mapping)) or not isinstance(tools, Iterable):
            raise TokenleanError("tools must be a sequence of tool definitions")
        tool_dicts = [_to_openai_tool(t, i) for i, t in enumerate(tools)]
        names = [t["function"]["name"] for t in tool_dicts]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise TokenleanError(f"tools share a name: {dupes}")
        tool_dicts.sort(key=lambda t: str(t["function"]["name"]))

    messages: list[dict[str, Any]] = []
    system_parts = [p for p in (system, _render_docs(stable_docs) if stable_docs else None) if p]
    if system_parts:
        messages.append({"role": "system", "content": "\n\n".join(system_parts)})
    system_count = len(messages)
    history_dicts = _history_dicts(history)
    messages.extend(history_dicts)
    final_parts = [p for p in (_render_docs(dynamic_docs) if dynamic_docs else None, question) if p]
    if final_parts:
        messages.append({"role": "user", "content": "\n\n".join(final_parts)})

    prefix_parts: list[str] = []
    if system_count:
        prefix_parts.append(canonicalize(messages[:system_count]))
    if tool_dicts:
        prefix_parts.append("tools")
        prefix_parts.extend(f"| {canonicalize(json.dumps(t))}" for t in tool_dicts)
    stable_prefix = "\n".join(prefix_parts)
    prefix_hash = hashlib.sha256(
        f"tokenlean.prefix/1\n{stable_prefix}".encode("utf-8", "surrogatepass")
    ).hexdigest()[:32]
    return LaidOutPrompt(
        messages=messages,
        tools=tool_dicts,
        stable_prefix=stable_prefix,
        prefix_hash=prefix_hash,
        provider=provider,
        system_count=system_count,
        history_count=len(history_dicts),
    )
