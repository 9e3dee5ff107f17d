"""LangChain adapter: :class:`LLMLinguaCompressor`, a ``BaseDocumentCompressor`` for
``ContextualCompressionRetriever`` (or any pipeline that compresses retrieved documents).

Every output ``Document`` is one input document, compressed, with its own ``id`` and metadata plus
``metadata["tokenlean_compression"]`` (tokens before/after, rank, relevance). Only the documents
are compressed, never the query. Dropped (low-ranked) documents are left out; with
``reorder=True`` (default) the most relevant comes first.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

from tokenlean_core import MissingDependencyError

try:
    from langchain_core.callbacks import Callbacks
    from langchain_core.documents import Document
    from langchain_core.documents.compressor import BaseDocumentCompressor
    from pydantic import ConfigDict, PrivateAttr
except ImportError as exc:  # pragma: no cover - extra not installed
    raise MissingDependencyError("langchain-core", "langchain", "tokenlean-compress") from exc

from ._adapter import METADATA_KEY, item_figures, make_compressor
from .engine import CompressConfig, CompressionResult, Compressor, CompressWarning

__all__ = ["LLMLinguaCompressor"]


class LLMLinguaCompressor(BaseDocumentCompressor):
    """Compress retrieved documents with LongLLMLingua (default) or LLMLingua-2 style scoring.

    ``LLMLinguaCompressor(rate=0.5)``, ``LLMLinguaCompressor(target_tokens=800)``,
    ``LLMLinguaCompressor(config=CompressConfig(...))`` or
    ``LLMLinguaCompressor(compressor=shared_compressor)``. Keyword arguments are
    :class:`~tokenlean_compress.engine.CompressConfig` fields.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)
    _compressor: Compressor = PrivateAttr()

    def __init__(
        self,
        compressor: Compressor | None = None,
        *,
        config: CompressConfig | None = None,
        **options: Any,
    ) -> None:
        super().__init__()
        self._compressor = make_compressor(compressor, config, options)

    @property
    def compressor(self) -> Compressor:
        return self._compressor

    @staticmethod
    def _outputs(documents: Sequence[Document], result: CompressionResult) -> list[Document]:
        if result.error is not None:
            return list(documents)
        out: list[Document] = []
        for item in result.items:
            doc = documents[item.index]
            out.append(
                Document(
                    page_content=item.text,
                    metadata={**doc.metadata, METADATA_KEY: item_figures(item, result)},
                    id=doc.id,
                )
            )
        return out

    def compress_documents(
        self, documents: Sequence[Document], query: str, callbacks: Callbacks | None = None
    ) -> Sequence[Document]:
        """Compress ``documents`` for ``query``; on failure they come back unchanged (warning)."""
        if not documents:
            return []
        result = self._compressor.compress([d.page_content for d in documents], query)
        return _safe_outputs(documents, result)

    async def acompress_documents(
        self, documents: Sequence[Document], query: str, callbacks: Callbacks | None = None
    ) -> Sequence[Document]:
        """Async twin: scoring is CPU-bound and runs in a worker thread."""
        if not documents:
            return []
        result = await self._compressor.acompress([d.page_content for d in documents], query)
        return _safe_outputs(documents, result)


def _safe_outputs(documents: Sequence[Document], result: CompressionResult) -> list[Document]:
    try:
        return LLMLinguaCompressor._outputs(documents, result)
    except Exception as exc:
        warnings.warn(
            f"tokenlean-compress could not rebuild the documents ({type(exc).__name__}: {exc}); "
            "returning them uncompressed",
            CompressWarning,
            stacklevel=3,
        )
        return list(documents)
