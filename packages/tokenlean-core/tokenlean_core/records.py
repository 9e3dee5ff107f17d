"""The ledger's record: one flat, serialisable row per call, saving, event or outcome."""

from __future__ import annotations

import contextlib
import contextvars
import json
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from .errors import TokenleanError
from .usage import Usage

__all__ = ["SCOPE_FIELDS", "Record", "Scope", "current_scope", "new_request_id", "scope"]

SCOPE_FIELDS = ("request", "session", "tenant", "task")

CALL = "llm_call"
SAVING = "saving"
EVENT = "event"
OUTCOME = "outcome"
KINDS = (CALL, SAVING, EVENT, OUTCOME)


def _show(value: Any) -> str:
    """``repr`` for error messages: short, and safe for ints too long to print."""
    try:
        text = repr(value)
    except ValueError:  # int beyond sys.get_int_max_str_digits()
        text = f"<{type(value).__name__} too long to show>"
    return text if len(text) <= 80 else text[:77] + "..."


@dataclass(frozen=True, slots=True)
class Scope:
    """Who a record belongs to: a request, a session (conversation), a tenant and a task."""

    request: str | None = None
    session: str | None = None
    tenant: str | None = None
    task: str | None = None

    def merged(self, **fields: str | None) -> Scope:
        changes = {k: v for k, v in fields.items() if v is not None}
        return replace(self, **changes) if changes else self

    def items(self) -> Iterator[tuple[str, str]]:
        for name in SCOPE_FIELDS:
            value = getattr(self, name)
            if value is not None:
                yield name, value


# Scope is a frozen dataclass, so sharing one default instance is safe.
_SCOPE: contextvars.ContextVar[Scope] = contextvars.ContextVar(
    "tokenlean_scope",
    default=Scope(),  # noqa: B039
)


def current_scope() -> Scope:
    """The scope of the current thread or asyncio task."""
    return _SCOPE.get()


def new_request_id() -> str:
    return uuid.uuid4().hex


@contextlib.contextmanager
def scope(
    *,
    request: str | bool | None = None,
    session: str | None = None,
    tenant: str | None = None,
    task: str | None = None,
) -> Iterator[Scope]:
    """Attribute everything recorded inside the block to these scope values.

    Nested scopes merge (inner values win). ``request=True`` makes a fresh request id. Works across
    threads started inside the block only if the context is copied (``contextvars.copy_context``);
    asyncio tasks inherit it automatically::

        with tokenlean_core.scope(tenant="acme", session=chat_id, request=True):
            chain.invoke(...)
    """
    for name, value in (("session", session), ("tenant", tenant), ("task", task)):
        if value is not None and not isinstance(value, str):
            raise TokenleanError(f"scope {name} must be a string, got {type(value).__name__}")
    req: str | None
    if request is True:
        req = new_request_id()
    elif request is False or request is None:
        req = None
    elif isinstance(request, str):
        req = request
    else:
        raise TokenleanError(
            f"scope request must be a string or True, got {type(request).__name__}"
        )
    new = _SCOPE.get().merged(request=req, session=session, tenant=tenant, task=task)
    token = _SCOPE.set(new)
    try:
        yield new
    finally:
        _SCOPE.reset(token)


@dataclass(frozen=True, slots=True)
class Record:
    """One ledger row.

    * ``llm_call``: a model call; ``usage`` is what was billed, ``usd`` its cost, ``latency_s`` its
      wall time (``ttft_s`` time to first token when streamed).
    * ``saving``: what ``component`` avoided against the counterfactual of not having it;
      ``usage`` holds the tokens not sent/generated, ``usd`` the dollars, ``latency_s`` seconds.
    * ``event``: a named measurement (``cache``/``hit``, ``compress``/``time``...), ``value``.
    * ``outcome``: ``name`` is ``success`` or ``failure`` for the request.
    """

    kind: str
    ts: float
    component: str
    scope: Scope = field(default_factory=Scope)
    model: str | None = None
    usage: Usage | None = None
    usd: float | None = None
    latency_s: float | None = None
    ttft_s: float | None = None
    name: str | None = None
    value: float | None = None
    run_id: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "ts": self.ts, "component": self.component}
        for name, value in self.scope.items():
            out[name] = value
        for key in ("model", "usd", "latency_s", "ttft_s", "name", "value", "run_id"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.usage is not None:
            out["usage"] = self.usage.to_dict()
        if self.detail:
            out["detail"] = dict(self.detail)
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, default=str, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Record:
        """Read a row written by :meth:`to_dict`.

        Raises :class:`TokenleanError` naming the field."""
        for key in ("kind", "ts", "component"):
            if key not in data:
                raise TokenleanError(f"ledger record has no {key!r} field")
        kind = data["kind"]
        if kind not in KINDS:
            raise TokenleanError(
                f"ledger record field 'kind' is {_show(kind)}; expected one of {KINDS}"
            )
        raw_ts = data["ts"]
        try:
            if isinstance(raw_ts, bool):
                raise TypeError
            ts = float(raw_ts)
        except (TypeError, ValueError, OverflowError):  # OverflowError: an int beyond float range
            raise TokenleanError(
                f"ledger record field 'ts' is not a number: {_show(raw_ts)}"
            ) from None

        def num(key: str) -> float | None:
            v = data.get(key)
            if v is None:
                return None
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise TokenleanError(f"ledger record field {key!r} is not a number: {_show(v)}")
            try:
                return float(v)
            except OverflowError:
                raise TokenleanError(f"ledger record field {key!r} is out of range") from None

        def text(key: str) -> str | None:
            v = data.get(key)
            if v is not None and not isinstance(v, str):
                raise TokenleanError(f"ledger record field {key!r} is not a string: {_show(v)}")
            return v

        usage = data.get("usage")
        if usage is not None and not isinstance(usage, Mapping):
            raise TokenleanError("ledger record field 'usage' is not an object")
        detail = data.get("detail")
        if detail is None:
            detail = {}
        if not isinstance(detail, Mapping):
            raise TokenleanError("ledger record field 'detail' is not an object")
        return cls(
            kind=str(kind),
            ts=ts,
            component=str(data["component"]),
            scope=Scope(**{k: str(data[k]) for k in SCOPE_FIELDS if data.get(k) is not None}),
            model=text("model"),
            usage=Usage.from_dict(usage) if usage is not None else None,
            usd=num("usd"),
            latency_s=num("latency_s"),
            ttft_s=num("ttft_s"),
            name=text("name"),
            value=num("value"),
            run_id=text("run_id"),
            detail=dict(detail),
        )

    @classmethod
    def from_json(cls, line: str) -> Record:
        try:
            data = json.loads(line)
        except (ValueError, RecursionError) as exc:
            # JSONDecodeError is a ValueError; so is an integer literal past Python's digit limit
            # (sys.get_int_max_str_digits); RecursionError: arrays/objects nested too deep
            raise TokenleanError(f"ledger line is not JSON: {exc}") from None
        if not isinstance(data, Mapping):
            raise TokenleanError("ledger line is not a JSON object")
        return cls.from_dict(data)
