"""The benchmark's configuration (no heavy imports: the CLI reads it at start-up)."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import BenchError

__all__ = ["VARIANTS", "BenchConfig"]

VARIANTS = ("baseline", "cached", "full")


@dataclass(frozen=True)
class BenchConfig:
    """What ``tokenlean bench`` runs (the CLI options, validated here)."""

    target_model: str = "gpt-4o-mini"
    small_model: str = "gpt-4.1-nano"
    model: str | None = None
    vllm_url: str | None = None
    judge: str | None = None
    max_tokens: int = 48
    small_context: int = 512
    memory_budget: int = 100
    compress_rate: float = 0.25  # 4x: answer kept in 30/30 held-out NQ examples (compress.json)
    compress_scorer: str = "distilled"
    seed: int = 0
    variants: tuple[str, ...] = VARIANTS
    threads: int = 0  # llama.cpp threads; 0 = the idle cores now (at least 1, at most 4)

    def __post_init__(self) -> None:
        bad = [v for v in self.variants if v not in VARIANTS]
        if bad or not self.variants:
            raise BenchError(f"unknown variant(s) {bad}; choose from {', '.join(VARIANTS)}")
        if self.max_tokens < 1:
            raise BenchError("max_tokens must be at least 1")
        if not 0.0 < self.compress_rate <= 1.0:
            raise BenchError("compress_rate must be in (0, 1]")
        if self.memory_budget < 32:
            raise BenchError("memory_budget must be at least 32 tokens")
