"""LlamaIndex adapter: an instrumentation event handler that feeds the ledger from every LLM call.

Register it on the root dispatcher (or any module's)::

    from tokenlean_core.llama_index import TokenleanEventHandler

    handler = TokenleanEventHandler.attach()  # root dispatcher
    query_engine.query("...")
    print(handler.ledger.report())

Usage comes from the provider's raw response when it has one (OpenAI-style ``usage``, Anthropic,
Gemini, vLLM) or from ``additional_kwargs`` (``prompt_tokens``/``completion_tokens``, as
LlamaIndex's OpenAI LLM reports it); otherwise tokenlean counts the prompt and the *final* answer
with the model's tokenizer. Streaming is counted once, at the end, from the last response (which
holds the whole answer) - never chunk by chunk, and never twice for a chat call that LlamaIndex
implements through ``complete`` or vice versa (a call that starts inside an open call of the same
LLM, in the same context, is the same call).

LlamaIndex swallows exceptions raised by event handlers, so a budget cannot stop a LlamaIndex
call from here: when one is exceeded the handler records a ``budget_exceeded`` event and warns.
Call :meth:`~tokenlean_core.Ledger.check_budget` where a hard stop is needed.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
import warnings
from typing import Any

from pydantic import PrivateAttr

from ._tiktoken_offline import seed_tiktoken_cache
from .errors import BudgetExceededError, MissingDependencyError, TokenleanError
from .ledger import Ledger, get_ledger
from .tokenizers import count_tokens, get_tokenizer
from .usage import Usage

try:
    from llama_index.core.instrumentation.event_handlers import BaseEventHandler
    from llama_index.core.instrumentation.events import BaseEvent
    from llama_index.core.instrumentation.events.llm import (
        LLMChatEndEvent,
        LLMChatInProgressEvent,
        LLMChatStartEvent,
        LLMCompletionEndEvent,
        LLMCompletionInProgressEvent,
        LLMCompletionStartEvent,
    )
    from llama_index_instrumentation import get_dispatcher
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise MissingDependencyError("llama-index-core", "llama-index") from exc

__all__ = ["TokenleanEventHandler"]

logger = logging.getLogger("tokenlean.core")


class _Call:
    __slots__ = ("deltas", "first_token", "model", "model_dict", "start")

    def __init__(self, model: str | None, model_dict: dict[str, Any]) -> None:
        self.start = time.perf_counter()
        self.first_token: float | None = None
        self.model = model
        self.model_dict = model_dict
        self.deltas: list[str] = []  # what a stream actually delivered


# the LLM call open in this context, to recognise a chat implemented through complete
_ACTIVE: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "tokenlean_li_call", default=None
)


def _model_of(model_dict: dict[str, Any]) -> str | None:
    for key in ("model", "model_name", "model_id", "engine", "deployment_name"):
        value = model_dict.get(key)
        if isinstance(value, str) and value and value != "unknown":
            return value
    return None


def _usage_from_response(response: Any) -> Usage | None:
    if response is None:
        return None
    raw = getattr(response, "raw", None)
    if raw is not None:
        try:
            return Usage.parse(raw)
        except TokenleanError:
            pass
    kwargs = getattr(response, "additional_kwargs", None) or {}
    if "prompt_tokens" in kwargs or "completion_tokens" in kwargs:
        try:
            return Usage.from_openai(kwargs)
        except TokenleanError:
            return None
    return None


class _Recorder:
    """The handler's state and logic, kept off pydantic (private-attribute access there is slow)."""

    def __init__(self, ledger: Ledger | None, component: str, default_model: str | None) -> None:
        self.ledger = ledger
        self.component = component
        self.default_model = default_model
        self.calls: dict[str, _Call] = {}
        self.nested: set[str] = set()
        self.lock = threading.Lock()
        self.dispatch = {
            LLMChatStartEvent: self.start,
            LLMCompletionStartEvent: self.start,
            LLMChatInProgressEvent: self.progress,
            LLMCompletionInProgressEvent: self.progress,
            LLMChatEndEvent: self.end,
            LLMCompletionEndEvent: self.end,
        }

    def start(self, event: Any) -> None:
        key = str(event.span_id or "")
        parent = _ACTIVE.get()
        with self.lock:
            outer = self.calls.get(parent) if parent else None
            if outer is not None and outer.model_dict == event.model_dict:
                # the same LLM implementing chat through complete (or vice versa): one call
                self.nested.add(key)
                return
            call = _Call(_model_of(event.model_dict) or self.default_model, event.model_dict)
            self.calls[key] = call
        _ACTIVE.set(key)
        ledger = self.ledger or get_ledger()
        if ledger.budgets:
            if isinstance(event, LLMChatStartEvent):
                prompt = int(count_tokens(event.messages, call.model))
            else:
                prompt = get_tokenizer(call.model).count(event.prompt)
            try:
                ledger.check_budget(tokens=prompt)
            except BudgetExceededError as exc:
                ledger.record_event(self.component, "budget_exceeded", detail={"error": str(exc)})
                warnings.warn(str(exc), RuntimeWarning, stacklevel=2)

    def progress(self, event: Any) -> None:
        call = self.calls.get(str(event.span_id or ""))
        if call is not None:
            if call.first_token is None:
                call.first_token = time.perf_counter()
            delta = getattr(event.response, "delta", None)
            if isinstance(delta, str):
                call.deltas.append(delta)

    def end(self, event: Any) -> None:
        key = str(event.span_id or "")
        with self.lock:
            if key in self.nested:
                self.nested.discard(key)
                return
            call = self.calls.pop(key, None)
        if _ACTIVE.get() == key:
            _ACTIVE.set(None)
        self.record(event, call)

    def record(self, event: LLMChatEndEvent | LLMCompletionEndEvent, call: _Call | None) -> None:
        end = time.perf_counter()
        model = (call.model if call else None) or self.default_model
        response = event.response
        usage = _usage_from_response(response)
        if usage is None:
            tok = get_tokenizer(model)
            answer: str | None
            if isinstance(event, LLMChatEndEvent):
                prompt = int(count_tokens(event.messages, model))
                answer = event.response.message.content if event.response is not None else ""
            else:
                prompt = tok.count(event.prompt)
                answer = event.response.text if event.response is not None else ""
            if call is not None and call.deltas:
                answer = "".join(call.deltas)
            usage = Usage(prompt, tok.count(answer or ""), exact=tok.exact, source="counted")
        (self.ledger or get_ledger()).record_call(
            model,
            usage,
            latency_s=(end - call.start) if call else None,
            ttft_s=(call.first_token - call.start) if call and call.first_token else None,
            component=self.component,
            run_id=str(event.span_id) if event.span_id else None,
        )


class TokenleanEventHandler(BaseEventHandler):
    """Records LlamaIndex LLM calls (chat and completion, sync, async, streaming) in a ledger.

    Args:
        ledger: where to record; ``None`` means the process-wide ledger.
        component: the ledger component name for these calls (set at construction).
        default_model: the model to count and price calls as when the LLM does not name its model
            (set at construction).
    """

    component: str = "llm"
    default_model: str | None = None

    _rec: _Recorder = PrivateAttr()

    def __init__(self, ledger: Ledger | None = None, **data: Any) -> None:
        super().__init__(**data)
        self._rec = _Recorder(ledger, self.component, self.default_model)
        # LlamaIndex's own default tokenizer is tiktoken's cl100k_base: make it load offline too
        seed_tiktoken_cache()

    @classmethod
    def class_name(cls) -> str:
        return "TokenleanEventHandler"

    @classmethod
    def attach(
        cls, ledger: Ledger | None = None, dispatcher_name: str = "root", **kwargs: Any
    ) -> TokenleanEventHandler:
        """Create a handler and add it to a dispatcher (the root one by default)."""
        handler = cls(ledger, **kwargs)
        get_dispatcher(dispatcher_name).add_event_handler(handler)
        return handler

    def detach(self, dispatcher_name: str = "root") -> None:
        """Remove this handler from a dispatcher it was attached to."""
        dispatcher = get_dispatcher(dispatcher_name)
        dispatcher.event_handlers = [h for h in dispatcher.event_handlers if h is not self]

    @property
    def ledger(self) -> Ledger:
        """The ledger calls are recorded in."""
        return self._rec.ledger or get_ledger()

    def handle(self, event: BaseEvent, **kwargs: Any) -> None:
        """Record LLM start, progress and end events; ignore every other event."""
        rec = self._rec
        fn = rec.dispatch.get(type(event))
        if fn is None:
            return
        try:
            fn(event)
        except Exception:
            logger.warning(
                "tokenlean event handler failed on %s", event.class_name(), exc_info=True
            )
