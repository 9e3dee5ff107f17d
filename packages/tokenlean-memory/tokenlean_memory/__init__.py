"""tokenlean-memory: conversation memory inside a token budget.

Four layers per turn (rolling summary, structured state, recent turns, recall of older turns),
counted with ``tokenlean_core.count_tokens`` including the system prompt and tool schemas. The full
history stays in the caller's store. Framework adapters: ``tokenlean_memory.langchain`` and
``tokenlean_memory.llama_index`` (imported only when used).
"""

from __future__ import annotations

from .embeddings import MiniLMEmbedder
from .engine import Embedder, MemoryContext, MemoryEngine, MemoryWarning, split_blocks
from .extract import LexicalExtractor, LLMStateExtractor, StateExtractor, key_terms
from .models import FunctionTextModel, TextModel
from .schema import (
    Entity,
    MemoryConfig,
    MemoryRecord,
    MemoryState,
    StateSchema,
    SummarySegment,
    ToolResult,
)
from .stores import FileRecordStore, InMemoryRecordStore, RecordStore, RedisRecordStore
from .summarize import DEFAULT_SUMMARY_PROMPT, Summarizer, render_transcript

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_SUMMARY_PROMPT",
    "Embedder",
    "Entity",
    "FileRecordStore",
    "FunctionTextModel",
    "InMemoryRecordStore",
    "LLMStateExtractor",
    "LexicalExtractor",
    "MemoryConfig",
    "MemoryContext",
    "MemoryEngine",
    "MemoryRecord",
    "MemoryState",
    "MemoryWarning",
    "MiniLMEmbedder",
    "RecordStore",
    "RedisRecordStore",
    "StateExtractor",
    "StateSchema",
    "Summarizer",
    "SummarySegment",
    "TextModel",
    "ToolResult",
    "__version__",
    "key_terms",
    "render_transcript",
    "split_blocks",
]
