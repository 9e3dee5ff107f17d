"""Benchmark of tokenlean-core against its anchors, in one run, on the same data.

1. Counting: ``count_tokens`` against raw tiktoken (``len(enc.encode_ordinary(text))``)
   - on long unique texts (NaturalQuestions passages joined into ~1-4k-token contexts; our
     memo is cleared before every round, so this is the cold path), target ratio >= 0.95;
   - on repeated prefixes: a chat app re-counting the whole conversation every turn (Schema-Guided
     Dialogue dialogues, OpenAI message framing on both sides), target: faster than raw.
2. Handler overhead per LLM call, on the frameworks' own testing models:
   - our LangChain handler against LangChain's ``UsageMetadataCallbackHandler``;
   - our LlamaIndex event handler against LlamaIndex's ``TokenCountingHandler``.
   Overhead = time with the handler minus time without, per call; rounds are interleaved and
   medians reported, since this machine is noisy. Ratios, not absolute times, are the result.

Reads ``../shared/data`` in place (``--data DIR`` to point elsewhere) and skips the counting part
with a clear message when the data is absent. Writes ``benchmarks/results/core.json``.

    python benchmarks/core.py --quick     # under 60 s
"""

from __future__ import annotations

import argparse
import gzip
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parent.parent / "shared" / "data"
MODEL = "gpt-4o"


def _timeit(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _rounds(fns: dict[str, Callable[[], object]], rounds: int) -> dict[str, list[float]]:
    """Run each function ``rounds`` times, interleaved, and return the timings."""
    out: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            out[name].append(_timeit(fn))
    return out


# ------------------------------------------------------------------------------------ counting


def load_long_texts(data: Path, n: int) -> list[str]:
    texts: list[str] = []
    with gzip.open(data / "compression" / "nq_open_oracle.jsonl.gz", "rt", encoding="utf-8") as fh:
        passages: list[str] = []
        for line in fh:
            ex = json.loads(line)
            passages.extend(f"{c['title']}\n{c['text']}" for c in ex["ctxs"])
            if len(passages) >= 12:
                texts.append("\n\n".join(passages))
                passages = []
            if len(texts) >= n:
                break
    return texts


def load_dialogues(data: Path, n: int) -> list[list[dict[str, str]]]:
    dialogues: list[list[dict[str, str]]] = []
    with gzip.open(data / "memory" / "sgd_dev.jsonl.gz", "rt", encoding="utf-8") as fh:
        for line in fh:
            d = json.loads(line)
            msgs = [{"role": "system", "content": "You are a helpful booking assistant."}]
            for t in d["turns"]:
                role = "user" if t["speaker"].upper() == "USER" else "assistant"
                msgs.append({"role": role, "content": t["utterance"]})
            dialogues.append(msgs)
            if len(dialogues) >= n:
                break
    return dialogues


def bench_counting(data: Path, quick: bool) -> dict[str, Any]:
    import tiktoken

    from tokenlean_core import count_tokens, get_tokenizer

    texts = load_long_texts(data, 40 if quick else 200)
    dialogues = load_dialogues(data, 30 if quick else 200)
    tok = get_tokenizer(MODEL)
    enc = tiktoken.get_encoding("o200k_base")
    cache = tok._cache  # type: ignore[attr-defined]

    def raw_long() -> None:
        for t in texts:
            len(enc.encode_ordinary(t))

    def ours_long() -> None:
        cache.clear()  # the cold path: every text is new
        for t in texts:
            count_tokens(t, MODEL)

    # sanity: same numbers
    cache.clear()
    assert all(count_tokens(t, MODEL) == len(enc.encode_ordinary(t)) for t in texts[:5])

    def raw_messages(
        msgs: list[dict[str, str]],
    ) -> int:  # OpenAI cookbook's num_tokens_from_messages
        n = 0
        for m in msgs:
            n += 3
            for v in m.values():
                n += len(enc.encode(v))
        return n + 3

    def raw_prefix() -> None:
        for d in dialogues:
            for turn in range(1, len(d) + 1):
                raw_messages(d[:turn])

    def ours_prefix() -> None:
        cache.clear()  # each round starts cold; re-counted turns hit the memo as in a real chat
        for d in dialogues:
            for turn in range(1, len(d) + 1):
                count_tokens(d[:turn], MODEL)

    assert all(count_tokens(d, MODEL) == raw_messages(d) for d in dialogues[:5])
    rounds = 5 if quick else 15
    long = _rounds({"raw": raw_long, "ours": ours_long}, rounds)
    prefix = _rounds({"raw": raw_prefix, "ours": ours_prefix}, rounds)
    n_tokens = sum(len(enc.encode_ordinary(t)) for t in texts)
    turns = sum(len(d) for d in dialogues)
    med = statistics.median
    return {
        "data": {
            "long_texts": len(texts),
            "long_tokens_total": n_tokens,
            "long_mean_tokens": n_tokens // max(1, len(texts)),
            "dialogues": len(dialogues),
            "recounted_turns": turns,
            "rounds": rounds,
        },
        "anchor": {
            "raw_tiktoken_long_s": med(long["raw"]),
            "raw_tiktoken_prefix_s": med(prefix["raw"]),
            "raw_tiktoken_long_tokens_per_s": n_tokens / med(long["raw"]),
        },
        "ours": {
            "count_tokens_long_s": med(long["ours"]),
            "count_tokens_prefix_s": med(prefix["ours"]),
            "count_tokens_long_tokens_per_s": n_tokens / med(long["ours"]),
        },
        "ratios": {
            # throughput ratio, ours / raw: >= 0.95 is the target
            "long_text_throughput": med(long["raw"]) / med(long["ours"]),
            # > 1 means faster than raw tiktoken
            "repeated_prefix_speedup": med(prefix["raw"]) / med(prefix["ours"]),
        },
    }


# ------------------------------------------------------------------------------------ handlers


def bench_langchain(quick: bool) -> dict[str, Any]:
    from langchain_core.callbacks import UsageMetadataCallbackHandler
    from langchain_core.language_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage

    from tokenlean_core import Ledger
    from tokenlean_core.langchain import TokenleanCallbackHandler

    n = 500 if quick else 2000
    usage = {"input_tokens": 120, "output_tokens": 12, "total_tokens": 132}

    def model() -> Any:
        msgs = (
            AIMessage(
                content="an answer", usage_metadata=usage, response_metadata={"model_name": MODEL}
            )
            for _ in iter(int, 1)
        )
        return GenericFakeChatModel(messages=msgs)

    llm = model()
    ours = TokenleanCallbackHandler(Ledger())
    anchor = UsageMetadataCallbackHandler()
    prompt = [("user", "What is the refund policy for annual plans?")]

    def run(callbacks: list[Any]) -> Callable[[], None]:
        cfg: Any = {"callbacks": callbacks}

        def go() -> None:
            for _ in range(n):
                llm.invoke(prompt, config=cfg)

        return go

    run([])()  # warm up
    rounds = 7 if quick else 15
    t = _rounds({"none": run([]), "anchor": run([anchor]), "ours": run([ours])}, rounds)
    return _overheads(t, n, "UsageMetadataCallbackHandler")


def bench_llama_index(quick: bool) -> dict[str, Any]:
    import tiktoken
    from llama_index.core.callbacks import CallbackManager, TokenCountingHandler
    from llama_index.core.llms import MockLLM
    from llama_index_instrumentation import get_dispatcher

    from tokenlean_core import Ledger
    from tokenlean_core.llama_index import TokenleanEventHandler

    n = 500 if quick else 2000
    prompt = "What is the refund policy for annual plans? Answer from the handbook. " * 4
    llm = MockLLM(max_tokens=12)  # one LLM for all variants: only the handler differs
    counting = TokenCountingHandler(tokenizer=tiktoken.get_encoding("o200k_base").encode)
    with_anchor, without = CallbackManager([counting]), CallbackManager([])
    ours = TokenleanEventHandler(Ledger(), default_model=MODEL)
    root = get_dispatcher()

    def run(anchor: bool, attach: bool) -> Callable[[], None]:
        def go() -> None:
            llm.callback_manager = with_anchor if anchor else without
            if attach:
                root.add_event_handler(ours)
            try:
                for _ in range(n):
                    llm.complete(prompt)
            finally:
                if attach:
                    ours.detach()

        return go

    run(False, False)()
    rounds = 7 if quick else 15
    t = _rounds(
        {"none": run(False, False), "anchor": run(True, False), "ours": run(False, True)}, rounds
    )
    out = _overheads(t, n, "TokenCountingHandler")
    out["anchor"]["token_counting_handler_counted_calls"] = len(counting.llm_token_counts)
    return out


def _overheads(t: dict[str, list[float]], n: int, anchor_name: str) -> dict[str, Any]:
    base = statistics.median(t["none"])
    # per-round overhead against the same round's baseline, then the median
    anchor = statistics.median(a - b for a, b in zip(t["anchor"], t["none"], strict=True)) / n
    ours = statistics.median(o - b for o, b in zip(t["ours"], t["none"], strict=True)) / n
    return {
        "data": {"calls_per_round": n, "rounds": len(t["none"])},
        "anchor": {"name": anchor_name, "overhead_us_per_call": anchor * 1e6},
        "ours": {"overhead_us_per_call": ours * 1e6, "baseline_us_per_call": base / n * 1e6},
        "ratios": {"overhead_ours_over_anchor": (ours / anchor) if anchor > 0 else None},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small run, under 60 s")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="evaluation data folder")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "core.json")
    args = ap.parse_args(argv)
    started = time.time()
    result: dict[str, Any] = {
        "benchmark": "core",
        "quick": args.quick,
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
    }
    needed = [
        args.data / "compression" / "nq_open_oracle.jsonl.gz",
        args.data / "memory" / "sgd_dev.jsonl.gz",
    ]
    missing = [str(p) for p in needed if not p.exists()]
    if missing:
        msg = f"skipped counting: evaluation data not found ({', '.join(missing)}); pass --data DIR"
        print(msg, file=sys.stderr)
        result["counting"] = {"skipped": msg}
    else:
        result["counting"] = bench_counting(args.data, args.quick)
    result["langchain_handler"] = bench_langchain(args.quick)
    result["llama_index_handler"] = bench_llama_index(args.quick)
    result["seconds"] = round(time.time() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    _print(result)
    print(f"wrote {args.out} in {result['seconds']} s")
    return 0


def _print(result: dict[str, Any]) -> None:
    c = result["counting"]
    if "ratios" in c:
        r = c["ratios"]
        print(
            "count_tokens / raw tiktoken, long texts (throughput ratio, target >= 0.95): "
            f"{r['long_text_throughput']:.3f}"
        )
        print(
            "count_tokens vs raw, re-counting conversations (speed-up, target > 1): "
            f"{r['repeated_prefix_speedup']:.2f}x"
        )
    for key in ("langchain_handler", "llama_index_handler"):
        h = result[key]
        print(
            f"{key}: ours {h['ours']['overhead_us_per_call']:.1f} us/call, "
            f"{h['anchor']['name']} {h['anchor']['overhead_us_per_call']:.1f} us/call "
            f"(ratio {h['ratios']['overhead_ours_over_anchor']:.2f})"
        )


if __name__ == "__main__":
    raise SystemExit(main())
