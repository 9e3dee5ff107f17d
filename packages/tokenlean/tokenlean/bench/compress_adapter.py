"""tokenlean-compress in the benchmark's LlamaIndex RAG path (used only when it is installed):
its ``LLMLinguaPostprocessor`` compresses the retrieved passages for the question before the
response synthesiser sees them, and records the tokens it removed in the variant's ledger."""

from __future__ import annotations

from typing import Any

from tokenlean_core import Ledger

from .config import BenchConfig

__all__ = ["describe", "postprocessor"]


def describe(cfg: BenchConfig) -> str:
    return (
        "tokenlean-compress LLMLinguaPostprocessor (LongLLMLingua, "
        f"scorer {cfg.compress_scorer!r}) on the retrieved passages, rate {cfg.compress_rate}"
    )


def postprocessor(cfg: BenchConfig, ledger: Ledger) -> Any:
    from tokenlean_compress import CompressConfig
    from tokenlean_compress.llama_index import LLMLinguaPostprocessor

    return LLMLinguaPostprocessor(
        config=CompressConfig(
            rate=cfg.compress_rate,
            scorer=cfg.compress_scorer,
            count_model=cfg.target_model,
            ledger=ledger,
        )
    )
