"""``backend="llmlingua"``: microsoft llmlingua's own ``PromptCompressor`` (LongLLMLingua settings,
SmolLM2-135M on CPU, patched for transformers 5 by ``tokenlean_compress.llmlingua_compat``) run per
document, so every output still maps to one input (provenance), with LongLLMLingua's document
ranking across the documents and dynamic per-document rates. For comparison and provenance with
the reference implementation; the default backend is several times faster."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np

from tokenlean_core import MissingDependencyError

if TYPE_CHECKING:
    from .engine import CompressionResult, Compressor


def _prompt_compressor() -> Any:
    try:
        from .llmlingua_compat import prompt_compressor
    except ImportError as exc:  # pragma: no cover - extra not installed
        raise MissingDependencyError("llmlingua", "transformers", "tokenlean-compress") from exc
    return prompt_compressor()


def compress_with_llmlingua(
    comp: Compressor,
    texts: list[str],
    question: str | None,
    rate: float | None,
    target_tokens: int | None,
    start: float,
) -> CompressionResult:
    from .engine import CompressedItem, CompressionResult

    pc = _prompt_compressor()
    counts = [comp._count(t) for t in texts]
    total = sum(counts)
    if target_tokens is not None:
        rate = min(1.0, target_tokens / total) if total else 1.0
    rate = rate if rate is not None else 0.5
    live = [i for i, t in enumerate(texts) if t.strip()]
    order = list(live)
    scores = {i: 0.0 for i in live}
    if question and len(live) > 1:
        lengths = [len(pc.tokenizer.encode(texts[i])) for i in live]
        ranked = pc.get_rank_results(
            [texts[i] for i in live], question, "longllmlingua", "after", lengths
        )
        order = [live[j] for j, _ in ranked]
        scores = {live[j]: -float(s) for j, s in ranked}  # llmlingua ranks by perplexity
    k = len(order)
    d = comp.config.dynamic_ratio
    weights = np.ones(k) if k <= 1 else 1.0 + d * (1.0 - 2.0 * np.arange(k) / (k - 1))
    items: list[CompressedItem] = []
    for rank, i in enumerate(order):
        doc_rate = float(min(1.0, max(0.01, rate * weights[rank])))
        if doc_rate >= 1.0:
            text = texts[i]
        else:
            res = pc.compress_prompt(
                [texts[i]],
                question=question or "",
                rate=doc_rate,
                condition_in_question="after_condition" if question else "none",
                condition_compare=bool(question),
                reorder_context="original",
                dynamic_context_compression_ratio=0.0,
                context_budget="+100",
                use_context_level_filter=False,
                rank_method="longllmlingua",
                concate_question=False,
            )
            text = str(res["compressed_prompt"])
        items.append(CompressedItem(i, text, counts[i], comp._count(text), rank, scores[i], False))
    for i, t in enumerate(texts):
        if i not in scores:
            items.append(CompressedItem(i, t, counts[i], counts[i], len(items), 0.0, False))
    if not (question and comp.config.reorder):
        items.sort(key=lambda it: it.index)
    compressed = sum(it.compressed_tokens for it in items)
    return CompressionResult(
        items=items,
        original_tokens=total,
        compressed_tokens=compressed,
        ratio=total / compressed if compressed else 1.0,
        seconds=time.perf_counter() - start,
        method="llmlingua",
        scorer="smollm2 (llmlingua PromptCompressor)",
    )
