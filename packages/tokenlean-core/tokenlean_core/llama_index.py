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
implements through ``complete`` or vice versa (nested calls in the same span are deduplicated).

LlamaIndex swallows exceptions raised by event handlers, so a budget cannot stop a LlamaIndex
call from here: when one is exceeded the handler records a ``budget_exceeded`` event and warns.
Call :meth:`~tokenlean_core.Ledger.check_budget` where a hard stop is needed.
"""

from __future__ import annotations

import logging
import threading
import time
import warnings
from typing import Any

from pydantic import PrivateAttr

from .errors import BudgetExceededError, MissingDependencyError, TokenleanError
from .ledger import Ledger, get_ledger
from .tokenizers import count_tokens, get_tokenizer
from .usage import Usage

try:
    from llama_index.core.instrumentation import get_dispatcher
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
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise MissingDependencyError("llama-index-core", "llama-index") from exc

__all__ = ["TokenleanEventHandler"]

logger = logging.getLogger("tokenlean.core")


class _Call:
    __slots__ = ("depth", "first_token", "model", "start")

    def __init__(self, model: str | None) -> None:
        self.start = time.perf_counter()
        self.first_token: float | None = None
        self.model = model
        self.depth = 1


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


class TokenleanEventHandler(BaseEventHandler):
    """Records LlamaIndex LLM calls (chat and completion, sync, async, streaming) in a ledger.

    Attributes:
        ledger: where to record; ``None`` means the process-wide ledger.
        component: the ledger component name for these calls.
        default_model: the model to count and price calls as when the LLM does not name its model.
    """

    component: str = "llm"
    default_model: str | None = None

    _ledger: Ledger | None = PrivateAttr(default=None)
    _calls: dict[str, _Call] = PrivateAttr(default_factory=dict)
    _lock: Any = PrivateAttr(default_factory=threading.Lock)

    def __init__(self, ledger: Ledger | None = None, **data: Any) -> None:
        super().__init__(**data)
        self._ledger = ledger

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
        return self._ledger or get_ledger()

    def handle(self, event: BaseEvent, **kwargs: Any) -> None:
        try:
            self._handle(event)
        except Exception:
            logger.warning("tokenlean event handler failed on %s", event.class_name(), exc_info=True)

    def _key(self, event: BaseEvent) -> str:
        return str(event.span_id or "")

    def _handle(self, event: BaseEvent) -> None:
        if isinstance(event, (LLMChatStartEvent, LLMCompletionStartEvent)):
            key = self._key(event)
            with self._lock:
                call = self._calls.get(key)
                if call is not None:  # chat implemented through complete (or vice versa)
                    call.depth += 1
                    return
                call = _Call(_model_of(event.model_dict) or self.default_model)
                self._calls[key] = call
            ledger = self.ledger
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
        elif isinstance(event, (LLMChatInProgressEvent, LLMCompletionInProgressEvent)):
            call = self._calls.get(self._key(event))
            if call is not None and call.first_token is None:
                call.first_token = time.perf_counter()
        elif isinstance(event, (LLMChatEndEvent, LLMCompletionEndEvent)):
            key = self._key(event)
            with self._lock:
                call = self._calls.get(key)
                if call is not None:
                    call.depth -= 1
                    if call.depth > 0:
                        return
                    del self._calls[key]
            self._record(event, call)

    def _record(self, event: LLMChatEndEvent | LLMCompletionEndEvent, call: _Call | None) -> None:
        end = time.perf_counter()
        model = (call.model if call else None) or self.default_model
        response = event.response
        usage = _usage_from_response(response)
        if usage is None:
            tok_model = model
            tok = get_tokenizer(tok_model)
            if isinstance(event, LLMChatEndEvent):
                prompt = int(count_tokens(event.messages, tok_model))
                answer = (response.message.content or "") if response is not None else ""
            else:
                prompt = tok.count(event.prompt)
                answer = response.text if response is not None else ""
            usage = Usage(prompt, tok.count(answer or ""), exact=tok.exact, source="counted")
        self.ledger.record_call(
            model,
            usage,
            latency_s=(end - call.start) if call else None,
            ttft_s=(call.first_token - call.start) if call and call.first_token else None,
            component=self.component,
            run_id=str(event.span_id) if event.span_id else None,
        )
