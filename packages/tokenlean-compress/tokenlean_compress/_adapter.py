"""What both framework adapters share: building the engine from arguments, and the per-item
figures put on each output node/document."""

from __future__ import annotations

from typing import Any

from .engine import CompressConfig, CompressedItem, CompressionResult, Compressor

METADATA_KEY = "tokenlean_compression"


def make_compressor(
    compressor: Compressor | None, config: CompressConfig | None, options: dict[str, Any]
) -> Compressor:
    """One :class:`Compressor` from ``compressor=``, ``config=`` or config keyword arguments."""
    if compressor is not None:
        if config is not None or options:
            raise TypeError("pass either compressor= or config/config options, not both")
        return compressor
    return Compressor(config, **options)


def item_figures(item: CompressedItem, result: CompressionResult) -> dict[str, Any]:
    """The compression figures of one output item (JSON-friendly)."""
    return {
        "original_tokens": item.original_tokens,
        "compressed_tokens": item.compressed_tokens,
        "rank": item.rank,
        "relevance": round(item.relevance, 6),
        "original_index": item.index,
        "method": result.method,
        "scorer": result.scorer,
        "ranker": result.ranker,
    }
