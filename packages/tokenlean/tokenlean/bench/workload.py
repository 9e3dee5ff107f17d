"""The benchmark's workload: support questions (repeated and paraphrased), multi-turn
conversations and RAG questions over retrieved passages, in one interleaved request stream.

Sources, in order of preference: ``--data DIR`` (a folder laid out like ``../shared/data``:
``cache/banking77_test.csv``, ``cache/qqp_pairs.jsonl.gz``, ``memory/sgd_dev.jsonl.gz``,
``compression/nq_open_oracle.jsonl.gz``), ``$TOKENLEAN_DATA``, the repository's ``../shared/data``
when it exists, else the small workload that ships in this package
(``tokenlean/bench/data/builtin.json``, written for tokenlean).
"""

from __future__ import annotations

import csv
import gzip
import json
import os
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from .errors import DataMissingError

__all__ = ["FILES", "SESSION_HEADER", "Request", "Workload", "default_data_dir", "load_workload"]

Kind = Literal["support", "conversation", "rag"]

FILES = {
    "support": Path("cache") / "banking77_test.csv",
    "paraphrases": Path("cache") / "qqp_pairs.jsonl.gz",
    "conversation": Path("memory") / "sgd_dev.jsonl.gz",
    "rag": Path("compression") / "nq_open_oracle.jsonl.gz",
}

#: what a typical application appends to its system prompt (different on every request)
SESSION_HEADER = "\n\nSession started {timestamp}, request id {request_id}."
BANK_SYSTEM = (
    "You are the support assistant of a retail bank. Answer in one or two sentences; never ask "
    "for a full card number or a password."
)
SGD_SYSTEM = "You are a helpful assistant for reservations, bookings and everyday services."
RAG_SYSTEM = "Answer the question in a few words, using only the passages."


@dataclass(frozen=True)
class Request:
    """One request of the stream (a conversation contributes one per user turn)."""

    index: int
    kind: Kind
    item_id: str
    question: str
    group: str | None = None  # support: same group = same intent (a correct cache hit)
    history: tuple[tuple[str, str], ...] = ()  # conversation: (role, text) up to this user turn
    state: dict[str, list[str]] = field(default_factory=dict)  # conversation: slots now
    answers: tuple[str, ...] = ()  # rag: gold answers
    passages: tuple[tuple[str, str, bool], ...] = ()  # rag: (title, text, is_gold)


@dataclass
class Workload:
    source: str
    support_system: str
    conversation_system: str
    rag_system: str
    requests: list[Request]
    #: the conversations' slot schema (slot -> its values when categorical), as an application
    #: would declare it: built from the annotations of dialogues NOT in the workload
    conversation_slots: dict[str, tuple[str, ...]] | None = None

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for r in self.requests:
            out[r.kind] += 1
        out["conversations"] = len({r.item_id for r in self.requests if r.kind == "conversation"})
        return dict(out)


@dataclass(frozen=True)
class Sizes:
    support_groups: int
    support_per_group: int
    qqp_pairs: int
    conversations: int
    max_user_turns: int
    rag: int
    distractors: int
    #: Banking77 questions asked again, verbatim, later in the stream by another customer (the
    #: "repeated" part of support traffic; every repeat's system prompt still differs in its
    #: session header, so only a canonicalising cache sees the repeat)
    repeats: int = 0


#: a slot with at most this many distinct values in the schema's dialogues is categorical (its
#: values are part of the schema), as in ``benchmarks/memory.py``
CATEGORICAL_MAX_VALUES = 12

#: QQP pairs held out from everything tokenlean fits on QQP (the cache guards' weights and
#: thresholds): ``[0, QQP_HELDOUT)`` of a seed-0 numpy permutation of the file's pairs. It is the
#: TEST split of ``benchmarks/cache.py``; ``benchmarks/train_guard.py`` and
#: ``train_cross_guard.py`` drop every pair that shares a question with it.
QQP_HELDOUT = 3000


def qqp_heldout_indices(n_pairs: int, n: int | None = None) -> list[int]:
    """Indices (in permutation order) of the held-out QQP pairs of a file of ``n_pairs``: the
    first ``n`` (default ``QQP_HELDOUT``)."""
    import numpy as np

    count = QQP_HELDOUT if n is None else n
    return [int(i) for i in np.random.default_rng(0).permutation(n_pairs)[:count]]


QUICK = Sizes(4, 2, 4, 1, 10, 3, 3, repeats=4)
FULL = Sizes(12, 3, 16, 4, 12, 12, 3, repeats=12)


def default_data_dir() -> Path | None:
    """``$TOKENLEAN_DATA`` or the repository's ``../shared/data`` if it exists, else None."""
    env = os.environ.get("TOKENLEAN_DATA")
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    if len(here.parents) > 5:
        repo_data = here.parents[5] / "shared" / "data"
        if all((repo_data / f).is_file() for f in FILES.values()):
            return repo_data
    return None


def load_workload(data: Path | str | None, *, quick: bool, seed: int) -> Workload:
    """The workload from ``data`` (a folder, or ``"builtin"``/None for the packaged one)."""
    if data is None or str(data) == "builtin":
        return _builtin(quick, seed)
    path = Path(data)
    if not path.is_dir():
        raise DataMissingError(f"--data {path}: no such folder")
    missing = [str(f) for f in FILES.values() if not (path / f).is_file()]
    if missing:
        raise DataMissingError(
            f"--data {path}: missing {', '.join(missing)} (the layout of ../shared/data; "
            "use --data builtin for the packaged workload)"
        )
    return _shared(path, QUICK if quick else FULL, seed)


# ---------------------------------------------------------------------------------- interleave


def _interleave(streams: Sequence[list[dict[str, Any]]], seed: int) -> list[Request]:
    """Merge the streams in a seeded random order, keeping each stream's own order."""
    rng = random.Random(seed)
    queues = [list(s) for s in streams if s]
    out: list[Request] = []
    while queues:
        weights = [len(q) for q in queues]
        q = rng.choices(queues, weights=weights)[0]
        out.append(Request(index=len(out), **q.pop(0)))
        queues = [x for x in queues if x]
    return out


def _conversation_requests(
    conv_id: str, turns: Sequence[dict[str, Any]], max_user_turns: int
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    hist: list[tuple[str, str]] = []
    for t in turns:
        role = "user" if t["speaker"] == "USER" else "assistant"
        hist.append((role, t["utterance"]))
        if role == "user":
            out.append(
                {
                    "kind": "conversation",
                    "item_id": conv_id,
                    "question": t["utterance"],
                    "history": tuple(hist),
                    "state": {k: list(v) for k, v in (t.get("state") or {}).items()},
                }
            )
            if len(out) >= max_user_turns:
                break
    return out


# ---------------------------------------------------------------------------------- builtin


def _builtin(quick: bool, seed: int) -> Workload:
    raw = json.loads(
        (resources.files("tokenlean.bench") / "data" / "builtin.json").read_text("utf-8")
    )
    support = raw["support"][:20] if quick else raw["support"]
    convs = raw["conversations"][:2] if quick else raw["conversations"]
    rag = raw["rag"][:4] if quick else raw["rag"]
    s_stream = [
        {"kind": "support", "item_id": f"s{i}", "question": s["text"], "group": s["group"]}
        for i, s in enumerate(support)
    ]
    c_streams = [_conversation_requests(c["id"], c["turns"], 99) for c in convs]
    r_stream = [
        {
            "kind": "rag",
            "item_id": f"r{i}",
            "question": r["question"],
            "answers": tuple(r["answers"]),
            "passages": tuple((c["title"], c["text"], bool(c["isgold"])) for c in r["ctxs"]),
        }
        for i, r in enumerate(rag)
    ]
    system = raw["support_intro"] + "\n\nHANDBOOK\n" + "\n".join(f"- {h}" for h in raw["handbook"])
    return Workload(
        source="builtin",
        support_system=system,
        conversation_system=raw["conversation_system"],
        rag_system=raw["rag_system"],
        requests=_interleave([s_stream, *c_streams, r_stream], seed),
    )


# ---------------------------------------------------------------------------------- shared data


def _shared(path: Path, sizes: Sizes, seed: int) -> Workload:
    # one random stream per part of the workload: changing how one part is drawn (or its data)
    # never redraws another part
    rng = random.Random(f"tokenlean-bench:{seed}:support")
    rng_qqp = random.Random(f"tokenlean-bench:{seed}:qqp")
    rng_rag = random.Random(f"tokenlean-bench:{seed}:rag")
    by_cat: dict[str, list[str]] = defaultdict(list)
    with open(path / FILES["support"], encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            by_cat[row["category"]].append(row["text"].strip())
    cats = rng.sample(sorted(by_cat), sizes.support_groups)
    support: list[dict[str, Any]] = []
    for c in cats:
        for text in rng.sample(by_cat[c], min(sizes.support_per_group, len(by_cat[c]))):
            support.append({"kind": "support", "question": text, "group": c})
    # Quora question pairs: half duplicates (the second is a paraphrase: a hit is right), half
    # not (a hit would be wrong); the second of a pair comes after the first
    # taken from the held-out pairs: the shipped guards never trained on these questions
    with gzip.open(path / FILES["paraphrases"], "rt", encoding="utf-8") as fh:
        qqp = [json.loads(line) for line in fh]
    dup: list[dict[str, Any]] = []
    non: list[dict[str, Any]] = []
    for i in qqp_heldout_indices(len(qqp)):
        (dup if qqp[i]["duplicate"] else non).append(qqp[i])
    n_dup = sizes.qqp_pairs // 2
    pairs = rng_qqp.sample(dup, n_dup) + rng_qqp.sample(non, sizes.qqp_pairs - n_dup)
    rng.shuffle(support)
    for original in rng.sample(support, min(sizes.repeats, len(support))):
        i = support.index(original)
        support.insert(rng.randrange(i + 1, len(support) + 1), dict(original))
    for k, p in enumerate(pairs):
        first = {"kind": "support", "question": p["a"].strip(), "group": f"qqp{k}a"}
        second = {
            "kind": "support",
            "question": p["b"].strip(),
            "group": f"qqp{k}a" if p["duplicate"] else f"qqp{k}b",
        }
        i = rng_qqp.randrange(len(support) + 1)
        support.insert(i, first)
        support.insert(rng_qqp.randrange(i + 1, len(support) + 1), second)
    for i, s in enumerate(support):
        s["item_id"] = f"s{i}"

    convs: list[list[dict[str, Any]]] = []
    slot_values: dict[str, set[str]] = {}
    with gzip.open(path / FILES["conversation"], "rt", encoding="utf-8") as fh:
        for line in fh:
            d = json.loads(line)
            long = sum(t["speaker"] == "USER" for t in d["turns"]) >= sizes.max_user_turns
            if long and len(convs) < sizes.conversations:
                convs.append(
                    _conversation_requests(d["dialogue_id"], d["turns"], sizes.max_user_turns)
                )
                continue
            for t in d["turns"]:  # every other dialogue: the application's slot schema
                for slot, vals in (t.get("state") or {}).items():
                    slot_values.setdefault(slot, set()).update(vals)

    rows: list[dict[str, Any]] = []
    with gzip.open(path / FILES["rag"], "rt", encoding="utf-8") as fh:
        for line, _ in zip(fh, range(400), strict=False):
            rows.append(json.loads(line))
    picked = rng_rag.sample(range(len(rows)), sizes.rag)
    rag: list[dict[str, Any]] = []
    for n, i in enumerate(picked):
        row = rows[i]
        gold = [(c["title"], c["text"], True) for c in row["ctxs"] if c.get("isgold")][:1]
        others = [j for j in range(len(rows)) if j != i]
        distract = [
            (c["title"], c["text"], False)
            for j in rng_rag.sample(others, sizes.distractors)
            for c in rows[j]["ctxs"][:1]
        ]
        passages = distract + gold
        rng_rag.shuffle(passages)
        rag.append(
            {
                "kind": "rag",
                "item_id": f"r{n}",
                "question": row["question"],
                "answers": tuple(row["answers"]),
                "passages": tuple(passages),
            }
        )
    return Workload(
        source=str(path),
        support_system=BANK_SYSTEM,
        conversation_system=SGD_SYSTEM,
        rag_system=RAG_SYSTEM,
        requests=_interleave([support, *convs, rag], seed),
        conversation_slots={
            k: tuple(sorted(v)) if len(v) <= CATEGORICAL_MAX_VALUES else ()
            for k, v in sorted(slot_values.items())
        },
    )
