"""LlamaIndex adapter: :class:`LLMLinguaPostprocessor`, a node postprocessor that compresses the
retrieved nodes for the query.

Unlike ``LongLLMLinguaPostprocessor`` it never joins nodes: every output ``NodeWithScore`` is a
compressed copy of one input node with that node's own id, metadata and score (figures in
``metadata["tokenlean_compression"]``, excluded from what the LLM and the embedder see). Only the
node texts are compressed, never the query or the prompt template. Dropped (low-ranked) nodes are
left out; with ``reorder=True`` (default) the most relevant node comes first.
"""

from __future__ import annotations

import warnings
from typing import Any

from tokenlean_core import MissingDependencyError

try:
    from llama_index.core.bridge.pydantic import PrivateAttr
    from llama_index.core.postprocessor.types import BaseNodePostprocessor
    from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle, TextNode
except ImportError as exc:  # pragma: no cover - extra not installed
    raise MissingDependencyError("llama-index-core", "llama-index", "tokenlean-compress") from exc

from ._adapter import METADATA_KEY, item_figures, make_compressor
from .engine import CompressConfig, CompressionResult, Compressor, CompressWarning

__all__ = ["LLMLinguaPostprocessor"]


class LLMLinguaPostprocessor(BaseNodePostprocessor):
    """Compress retrieved nodes with LongLLMLingua (default) or LLMLingua-2 style scoring.

    ``LLMLinguaPostprocessor(rate=0.5)``, ``LLMLinguaPostprocessor(target_tokens=800,
    scorer="distilled")``, ``LLMLinguaPostprocessor(config=CompressConfig(...))`` or
    ``LLMLinguaPostprocessor(compressor=shared_compressor)``. Keyword arguments are
    :class:`~tokenlean_compress.engine.CompressConfig` fields.
    """

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

    @classmethod
    def class_name(cls) -> str:
        return "TokenleanLLMLinguaPostprocessor"

    @property
    def compressor(self) -> Compressor:
        return self._compressor

    # -- shared by the sync and async paths ---------------------------------------------------
    @staticmethod
    def _inputs(
        nodes: list[NodeWithScore], query_bundle: QueryBundle | None
    ) -> tuple[list[str], str | None]:
        # non-text nodes (images, ...) pass through untouched: sent as "" so nothing is counted
        texts = [
            n.node.get_content(metadata_mode=MetadataMode.NONE)
            if isinstance(n.node, TextNode)
            else ""
            for n in nodes
        ]
        return texts, (query_bundle.query_str if query_bundle is not None else None)

    @staticmethod
    def _outputs(nodes: list[NodeWithScore], result: CompressionResult) -> list[NodeWithScore]:
        if result.error is not None:
            return list(nodes)
        out: list[NodeWithScore] = []
        for item in result.items:
            original = nodes[item.index]
            node = original.node
            if isinstance(node, TextNode):  # other node kinds carry no text to compress
                node = _with_figures(node, item.text, item_figures(item, result))
            out.append(NodeWithScore(node=node, score=original.score))
        return out

    def _postprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        if not nodes:
            return []
        texts, question = self._inputs(nodes, query_bundle)
        result = self._compressor.compress(texts, question)
        return _safe_outputs(nodes, result)

    async def _apostprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        if not nodes:
            return []
        texts, question = self._inputs(nodes, query_bundle)
        result = await self._compressor.acompress(texts, question)
        return _safe_outputs(nodes, result)


def _with_figures(node: TextNode, text: str, figures: dict[str, Any]) -> TextNode:
    """A copy of ``node`` (same id, relationships, own metadata dict) with ``text``."""
    copy = node.model_copy()
    copy.text = text
    copy.metadata = {**node.metadata, METADATA_KEY: figures}
    copy.excluded_llm_metadata_keys = [*node.excluded_llm_metadata_keys, METADATA_KEY]
    copy.excluded_embed_metadata_keys = [*node.excluded_embed_metadata_keys, METADATA_KEY]
    return copy


def _safe_outputs(nodes: list[NodeWithScore], result: CompressionResult) -> list[NodeWithScore]:
    try:
        return LLMLinguaPostprocessor._outputs(nodes, result)
    except Exception as exc:
        warnings.warn(
            f"tokenlean-compress could not rebuild the nodes ({type(exc).__name__}: {exc}); "
            "returning them uncompressed",
            CompressWarning,
            stacklevel=3,
        )
        return list(nodes)
