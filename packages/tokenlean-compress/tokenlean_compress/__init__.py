"""tokenlean-compress: LongLLMLingua / LLMLingua-2 style compression of retrieved context on CPU.

One engine (:class:`Compressor`) under two thin adapters: ``tokenlean_compress.llama_index``
(``LLMLinguaPostprocessor``, a node postprocessor) and ``tokenlean_compress.langchain``
(``LLMLinguaCompressor``, a document compressor), imported only when used. Every output node or
document keeps its own id, metadata and score; code, JSON, URLs, numbers and ``force_tokens``
survive verbatim; each call records the tokens removed in the tokenlean ledger.
"""

from __future__ import annotations

from .engine import (
    CompressConfig,
    CompressedItem,
    CompressionResult,
    Compressor,
    CompressWarning,
)
from .scoring import RESTRICTIVE_PROMPT, LexicalScorer, SmolLM2Scorer, WordScorer, resolve_scorer
from .text import ProtectConfig, Unit, protected_spans, split_units

__version__ = "0.1.0"

__all__ = [
    "RESTRICTIVE_PROMPT",
    "CompressConfig",
    "CompressWarning",
    "CompressedItem",
    "CompressionResult",
    "Compressor",
    "LexicalScorer",
    "ProtectConfig",
    "SmolLM2Scorer",
    "Unit",
    "WordScorer",
    "__version__",
    "protected_spans",
    "resolve_scorer",
    "split_units",
]
