"""tokenlean-core: exact token counting, normalised usage, prices, one ledger for every saved token,
budgets and prompt canonicalisation. Framework adapters live in ``tokenlean_core.langchain`` and
``tokenlean_core.llama_index`` (imported only when used)."""

from __future__ import annotations

from ._tiktoken_offline import seed_tiktoken_cache
from .canonical import (
    CanonicalConfig,
    LaidOutPrompt,
    canonical_key,
    canonicalize,
    layout_prompt,
)
from .errors import (
    BudgetExceededError,
    MissingDependencyError,
    PriceNotFoundError,
    TokenleanError,
    UsageParseError,
)
from .ledger import Budget, Ledger, LedgerWarning, get_ledger, set_ledger
from .messages import Message, ToolCall, normalize_messages
from .prices import Price, PriceTable, SelfHostedPrice, default_prices
from .records import Record, Scope, current_scope, new_request_id, scope
from .report import Report, build_report
from .sinks import JSONLSink, MemorySink, OpenTelemetrySink, PrometheusSink, Sink, read_jsonl
from .tokenizers import TokenCount, Tokenizer, count_tokens, get_tokenizer, register_tokenizer
from .usage import Usage

__version__ = "0.1.0"

__all__ = [
    "Budget",
    "BudgetExceededError",
    "CanonicalConfig",
    "JSONLSink",
    "LaidOutPrompt",
    "Ledger",
    "LedgerWarning",
    "MemorySink",
    "Message",
    "MissingDependencyError",
    "OpenTelemetrySink",
    "Price",
    "PriceNotFoundError",
    "PriceTable",
    "PrometheusSink",
    "Record",
    "Report",
    "Scope",
    "SelfHostedPrice",
    "Sink",
    "TokenCount",
    "Tokenizer",
    "TokenleanError",
    "ToolCall",
    "Usage",
    "UsageParseError",
    "__version__",
    "build_report",
    "canonical_key",
    "canonicalize",
    "count_tokens",
    "current_scope",
    "default_prices",
    "get_ledger",
    "get_tokenizer",
    "layout_prompt",
    "new_request_id",
    "normalize_messages",
    "read_jsonl",
    "register_tokenizer",
    "scope",
    "seed_tiktoken_cache",
    "set_ledger",
]
