"""LangChain adapter: a callback handler that feeds the ledger from every LLM call.

Usage comes from the provider when it reports it (``AIMessage.usage_metadata``, or the legacy
``llm_output["token_usage"]``), streaming included; otherwise tokenlean counts the prompt and the
answer itself with the model's tokenizer and marks the usage as counted (``source="counted"``).
Each call's figures are put under ``"tokenlean"`` on the run's metadata (in-process tracers, run
collectors, ``astream_events``) and in the response's ``llm_output``, which LangSmith's tracer
serialises into the run's outputs. Budgets are checked before each call; exceeding one raises
:class:`~tokenlean_core.BudgetExceededError` out of ``invoke``/``stream``.

Example::

    from tokenlean_core.langchain import TokenleanCallbackHandler

    handler = TokenleanCallbackHandler()
    chain.invoke(inputs, config={"callbacks": [handler]})
    print(handler.ledger.report())
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar
from uuid import UUID

from ._tiktoken_offline import seed_tiktoken_cache
from .errors import BudgetExceededError, MissingDependencyError, TokenleanError
from .ledger import Ledger, get_ledger
from .records import Record
from .tokenizers import count_tokens, get_tokenizer
from .usage import Usage

try:
    from langchain_core.callbacks import BaseCallbackHandler
    from langchain_core.messages import BaseMessage
    from langchain_core.outputs import ChatGeneration, LLMResult
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise MissingDependencyError("langchain-core", "langchain") from exc

__all__ = ["METADATA_KEY", "TokenleanCallbackHandler"]

METADATA_KEY = "tokenlean"

logger = logging.getLogger("tokenlean.core")

_F = TypeVar("_F", bound=Callable[..., None])


def _never_breaks_the_chain(method: _F) -> _F:
    """Let budget errors through (they are meant to stop the call); log anything else."""

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            method(*args, **kwargs)
        except BudgetExceededError:
            raise
        except Exception:
            logger.warning("tokenlean handler failed in %s", method.__name__, exc_info=True)

    return wrapper  # type: ignore[return-value]


class _Run:
    __slots__ = ("first_token", "messages", "metadata", "model", "prompts", "provider", "start")

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.first_token: float | None = None
        self.model: str | None = None
        self.provider: str | None = None
        self.messages: list[BaseMessage] | None = None
        self.prompts: list[str] | None = None
        self.metadata: dict[str, Any] | None = None


def _model_from(metadata: dict[str, Any] | None, params: dict[str, Any] | None) -> str | None:
    if metadata:
        name = metadata.get("ls_model_name")
        if isinstance(name, str) and name:
            return name
    for source in (metadata or {}, params or {}):
        for key in ("ls_model_name", "model_name", "model", "model_id", "deployment_name"):
            value = source.get(key)
            if isinstance(value, str) and value:
                return value
    return None


class TokenleanCallbackHandler(BaseCallbackHandler):
    """Records every LLM/chat-model call of a LangChain run in a tokenlean :class:`Ledger`.

    Args:
        ledger: where to record (default: the process-wide ledger).
        component: the ledger component name for these calls (``"llm"``).
        default_model: the model to count and price calls as when neither the model nor its
            response names one (fake and some self-hosted models).
        annotate_runs: put each call's figures on the run's metadata (LangSmith shows them).
    """

    raise_error = True  # a BudgetExceededError must stop the call, not be logged away
    run_inline = True  # keep the caller's contextvars (tokenlean scopes) in async chains

    def __init__(
        self,
        ledger: Ledger | None = None,
        *,
        component: str = "llm",
        default_model: str | None = None,
        annotate_runs: bool = True,
    ) -> None:
        super().__init__()
        self._ledger = ledger
        self.component = component
        self.default_model = default_model
        self.annotate_runs = annotate_runs
        self._runs: dict[UUID, _Run] = {}  # single get/set/pop operations: atomic under the GIL
        # tiktoken-based token counts in LangChain itself (get_num_tokens) then work offline too
        seed_tiktoken_cache()

    @property
    def ledger(self) -> Ledger:
        return self._ledger or get_ledger()

    # ------------------------------------------------------------------ start

    def _start(
        self,
        run_id: UUID,
        metadata: dict[str, Any] | None,
        kwargs: dict[str, Any],
    ) -> _Run:
        run = _Run()
        params = kwargs.get("invocation_params")
        run.model = _model_from(metadata, params) or self.default_model
        run.provider = (metadata or {}).get("ls_provider")
        run.metadata = metadata
        self._runs[run_id] = run
        return run

    @_never_breaks_the_chain
    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        run = self._start(run_id, metadata, kwargs)
        run.messages = messages[0] if messages else []
        ledger = self.ledger
        if ledger.budgets:
            try:
                prompt = int(count_tokens(run.messages, run.model))
            except TokenleanError:
                prompt = 0
            try:
                ledger.check_budget(tokens=int(prompt))
            except Exception:
                self._runs.pop(run_id, None)
                raise

    @_never_breaks_the_chain
    def on_llm_start(
        self,
        serialized: dict[str, Any],
        prompts: list[str],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        run = self._start(run_id, metadata, kwargs)
        run.prompts = prompts
        ledger = self.ledger
        if ledger.budgets:
            tok = get_tokenizer(run.model)
            try:
                ledger.check_budget(tokens=sum(tok.count(p) for p in prompts))
            except Exception:
                self._runs.pop(run_id, None)
                raise

    @_never_breaks_the_chain
    def on_llm_new_token(
        self, token: str | list[str | dict[str, Any]], *, run_id: UUID, **kwargs: Any
    ) -> None:
        run = self._runs.get(run_id)
        if run is not None and run.first_token is None:
            run.first_token = time.perf_counter()

    # ------------------------------------------------------------------ end

    @_never_breaks_the_chain
    def on_llm_end(
        self,
        response: LLMResult,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        run = self._runs.pop(run_id, None)
        if run is None:
            run = _Run()
        end = time.perf_counter()
        usage, model = self._usage(response, run)
        record = self.ledger.record_call(
            model or run.model,
            usage,
            latency_s=end - run.start,
            ttft_s=(run.first_token - run.start) if run.first_token is not None else None,
            provider=run.provider,
            component=self.component,
            run_id=str(run_id),
        )
        if self.annotate_runs:
            figures = _figures(record)
            if run.metadata is not None:  # the dict in-process tracers keep for this run
                run.metadata[METADATA_KEY] = figures
            # LangSmith's tracer copies metadata when the run starts, but serialises the response
            # when it ends: figures in llm_output reach the trace (the env-configured tracer is
            # always called after the handlers passed in config)
            if response.llm_output is None:
                response.llm_output = {}
            response.llm_output[METADATA_KEY] = figures

    @_never_breaks_the_chain
    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        run = self._runs.pop(run_id, None)
        self.ledger.record_event(
            self.component,
            "error",
            model=run.model if run else None,
            run_id=str(run_id),
            detail={"error": type(error).__name__},
        )

    def _usage(self, response: LLMResult, run: _Run) -> tuple[Usage, str | None]:
        model: str | None = None
        llm_output = response.llm_output or {}
        gens = response.generations[0] if response.generations else []
        for gen in gens:
            if isinstance(gen, ChatGeneration):
                meta = gen.message.response_metadata or {}
                model = model or meta.get("model_name") or meta.get("model")
                usage_metadata = getattr(gen.message, "usage_metadata", None)
                if usage_metadata:
                    return Usage.from_langchain(usage_metadata), model
        model = model or llm_output.get("model_name") or llm_output.get("model")
        token_usage = llm_output.get("token_usage") or llm_output.get("usage")
        if token_usage:
            try:
                return Usage.parse(token_usage), model
            except TokenleanError:
                pass
        return self._count(gens, run, model), model

    def _count(self, gens: Sequence[Any], run: _Run, model: str | None) -> Usage:
        tok_model = model or run.model
        tok = get_tokenizer(tok_model)
        if run.messages is not None:
            prompt = int(count_tokens(run.messages, tok_model))
        else:
            prompt = sum(tok.count(p) for p in run.prompts or ())
        output = sum(tok.count(g.text or "") for g in gens)
        return Usage(prompt, output, exact=tok.exact, source="counted")


def _figures(record: Record) -> dict[str, Any]:
    u = record.usage
    out: dict[str, Any] = {"model": record.model, "usd": record.usd, "latency_s": record.latency_s}
    if u is not None:
        out.update(
            input_tokens=u.input_tokens,
            output_tokens=u.output_tokens,
            cache_read_tokens=u.cache_read_tokens,
            cache_write_tokens=u.cache_write_tokens,
            reasoning_tokens=u.reasoning_tokens,
            usage_source=u.source,
        )
    return out
