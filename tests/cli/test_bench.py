"""``tokenlean bench``: usage, exit codes, the workload, the quality measures, and an end-to-end
run on the built-in workload with the real local model (SmolLM2 via llama.cpp, MiniLM)."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from tokenlean.bench import (
    BenchConfig,
    BenchError,
    DataMissingError,
    answer_retention,
    load_workload,
    state_recall,
)
from tokenlean.bench import workload as workload_module
from tokenlean.cli import cli


def test_help_names_the_variants_and_exit_codes() -> None:
    res = CliRunner().invoke(cli, ["bench", "--help"])
    assert res.exit_code == 0
    for word in ("baseline", "cached", "full", "--quick", "--data", "--target-model", "Exit codes"):
        assert word in res.output


@pytest.mark.parametrize(
    "args",
    [
        ["--variants", "baseline,turbo"],
        ["--variants", ","],
        ["--max-tokens", "0"],
        ["--compress-rate", "2"],
        ["--limit", "0"],
        ["--no-such-option"],
    ],
)
def test_bad_usage_exits_2(args: list[str], tmp_path: Path) -> None:
    res = CliRunner().invoke(cli, ["bench", "--data", "builtin", "--out", str(tmp_path), *args])
    assert res.exit_code == 2, res.output
    assert not (tmp_path / "bench.json").exists()


def test_missing_data_folder_exits_3(tmp_path: Path) -> None:
    res = CliRunner().invoke(cli, ["bench", "--data", str(tmp_path / "nope")])
    assert res.exit_code == 3
    assert "no such folder" in res.output and "nope" in res.output


def test_incomplete_data_folder_names_the_missing_files(tmp_path: Path) -> None:
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "banking77_test.csv").write_text("text,category\n")
    res = CliRunner().invoke(cli, ["bench", "--data", str(tmp_path)])
    assert res.exit_code == 3
    assert "memory/sgd_dev.jsonl.gz" in res.output
    assert "compression/nq_open_oracle.jsonl.gz" in res.output
    assert "banking77" not in res.output.split("missing", 1)[1]


def test_builtin_workload_mixes_the_three_kinds_deterministically() -> None:
    a = load_workload("builtin", quick=True, seed=3)
    b = load_workload("builtin", quick=True, seed=3)
    assert [r.question for r in a.requests] == [r.question for r in b.requests]
    counts = a.counts()
    assert counts["support"] == 20 and counts["rag"] == 4 and counts["conversations"] == 2
    full = load_workload("builtin", quick=False, seed=3).counts()
    assert full["support"] == 40 and full["rag"] == 10 and full["conversations"] == 3
    # each conversation keeps its own order; each turn's history ends with its question
    for conv in {r.item_id for r in a.requests if r.kind == "conversation"}:
        turns = [r for r in a.requests if r.item_id == conv]
        assert [len(t.history) for t in turns] == sorted(len(t.history) for t in turns)
        assert all(t.history[-1] == ("user", t.question) for t in turns)
    # every RAG question has exactly one gold passage, which holds a gold answer
    for r in a.requests:
        if r.kind == "rag":
            gold = [text for _, text, g in r.passages if g]
            assert len(gold) == 1 and answer_retention(r.answers, gold[0])


def test_config_is_validated() -> None:
    with pytest.raises(BenchError, match="unknown variant"):
        BenchConfig(variants=("fast",))
    with pytest.raises(BenchError, match="memory_budget"):
        BenchConfig(memory_budget=8)
    with pytest.raises(DataMissingError):
        load_workload("/definitely/not/here", quick=True, seed=0)


def test_state_recall_counts_recoverable_slots() -> None:
    state = {"city": ["Lyon"], "size": ["four", "4"], "flag": ["True"]}
    history = "A table in Lyon for four people"
    assert state_recall(state, "booking in LYON", history) == (1, 3, 1, 2)
    assert state_recall(state, history, history) == (2, 3, 2, 2)


def test_answer_retention_normalises_but_matches_whole_words() -> None:
    assert answer_retention(["Wilhelm Conrad Röntgen"], "won by wilhelm conrad rontgen in 1901")
    assert answer_retention(["4", "four"], "It has four lanes.")
    assert not answer_retention(["212"], "it flows 2120 kilometres")
    assert not answer_retention(["the"], "the river")  # an article alone is no answer


@pytest.mark.models
@pytest.mark.slow
def test_bench_end_to_end_on_the_builtin_workload(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    res = CliRunner().invoke(
        cli,
        [
            "bench",
            "--quick",
            "--data",
            "builtin",
            "--seed",
            "2",
            "--limit",
            "10",
            "--max-tokens",
            "8",
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "input tokens" in res.output and "cache hit precision" in res.output
    data = json.loads((out / "bench.json").read_text())
    assert data["schema_version"] == 1
    assert data["workload"]["source"] == "builtin"
    assert [v["variant"] for v in data["variants"]] == ["baseline", "cached", "full"]
    for v in data["variants"]:
        for key in (
            "input_tokens",
            "output_tokens",
            "cached_tokens",
            "usd",
            "latency_p50_s",
            "latency_p95_s",
            "cache_hit_rate",
            "cache_hit_precision",
            "state_recall",
            "answer_retention",
            "model_calls",
            "errors",
        ):
            assert key in v
        assert v["errors"] == 0
        assert len(data["requests"][v["variant"]]) == 10
    base, cached, full = data["variants"]
    # the baseline sends everything, every time; the repeated password question is a cache
    # hit once the volatile header is canonicalised away
    assert base["cache_hit_rate"] == 0 and base["model_calls"] == 10
    assert cached["cache_hit_rate"] > 0 and cached["cached_tokens"] > 0
    assert cached["input_tokens"] < base["input_tokens"]
    assert full["input_tokens"] < base["input_tokens"]
    assert cached["cache_hit_precision"] == 1.0
    assert base["answer_retention"] == 1.0 and base["state_recall_recoverable"] == 1.0
    assert data["ratios_vs_baseline"]["baseline"]["input_tokens"] == 1.0
    assert {s["component"] for s in data["savings_by_component"]["cached"]} >= {"cache"}
    assert "memory" in {s["component"] for s in data["savings_by_component"]["full"]}
    assert data["route_meaning"]
    page = (out / "bench.html").read_text()
    assert page.count("data:image/png;base64,") == 3
    png = page.split("data:image/png;base64,", 1)[1].split('"', 1)[0]
    assert base64.b64decode(png).startswith(b"\x89PNG")


def _data_folder(root: Path) -> Path:
    """A tiny folder laid out like ../shared/data: enough rows for the quick workload."""
    import csv
    import gzip

    (root / "cache").mkdir(parents=True)
    (root / "memory").mkdir()
    (root / "compression").mkdir()
    with open(root / "cache" / "banking77_test.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "category"])
        for c in range(6):
            for i in range(3):
                w.writerow([f"question {i} about topic {c}?", f"topic_{c}"])
    with gzip.open(root / "cache" / "qqp_pairs.jsonl.gz", "wt", encoding="utf-8") as fh:
        for i in range(12):
            fh.write(json.dumps({"a": f"q{i} a?", "b": f"q{i} b?", "duplicate": i % 2 == 0}))
            fh.write("\n")

    def dialogue(n: int, user_turns: int, city: str) -> dict[str, object]:
        turns: list[dict[str, object]] = []
        for t in range(user_turns):
            turns.append(
                {"speaker": "USER", "utterance": f"turn {t} in {city}", "state": {"city": [city]}}
            )
            turns.append({"speaker": "SYSTEM", "utterance": f"reply {t}"})
        return {"dialogue_id": f"d{n}", "services": ["x"], "turns": turns}

    with gzip.open(root / "memory" / "sgd_dev.jsonl.gz", "wt", encoding="utf-8") as fh:
        # d0 is long enough for the quick workload (10 user turns); d1, d2 are the "other" ones
        fh.write(json.dumps(dialogue(0, 10, "Workloadville")) + "\n")
        fh.write(json.dumps(dialogue(1, 3, "Lyon")) + "\n")
        fh.write(json.dumps(dialogue(2, 3, "Oslo")) + "\n")
    with gzip.open(root / "compression" / "nq_open_oracle.jsonl.gz", "wt", encoding="utf-8") as fh:
        for i in range(8):
            ctx = {
                "title": f"T{i}",
                "text": f"answer{i} is here",
                "hasanswer": True,
                "isgold": True,
            }
            fh.write(json.dumps({"question": f"q{i}?", "answers": [f"answer{i}"], "ctxs": [ctx]}))
            fh.write("\n")
    return root


def test_conversation_schema_comes_from_dialogues_outside_the_workload(tmp_path: Path) -> None:
    wl = load_workload(_data_folder(tmp_path / "data"), quick=True, seed=0)
    convs = {r.item_id for r in wl.requests if r.kind == "conversation"}
    assert convs == {"d0"}
    # the application's schema: slots and categorical values seen in d1 and d2 only
    assert wl.conversation_slots == {"city": ("Lyon", "Oslo")}


def test_paraphrase_pairs_come_from_the_pairs_the_guards_never_trained_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a file larger than the held-out count: the workload must draw only held-out pairs
    monkeypatch.setattr(workload_module, "QQP_HELDOUT", 10)
    data = _data_folder(tmp_path / "data")
    import gzip

    with gzip.open(data / "cache" / "qqp_pairs.jsonl.gz", "wt", encoding="utf-8") as fh:
        for i in range(40):
            fh.write(json.dumps({"a": f"q{i} a?", "b": f"q{i} b?", "duplicate": i % 2 == 0}))
            fh.write("\n")
    held = workload_module.qqp_heldout_indices(40)
    assert len(set(held)) == 10 and held == workload_module.qqp_heldout_indices(40, 10)
    wl = load_workload(data, quick=True, seed=0)
    asked = {r.question for r in wl.requests if re.fullmatch(r"q\d+ [ab]\?", r.question)}
    allowed = {f"q{i} {side}?" for i in held for side in "ab"}
    assert asked and asked <= allowed


def test_each_part_of_the_workload_is_drawn_from_its_own_random_stream(tmp_path: Path) -> None:
    import gzip

    data = _data_folder(tmp_path / "data")

    def parts() -> tuple[list[str], list[str]]:
        wl = load_workload(data, quick=True, seed=0)
        rag = [r.question for r in wl.requests if r.kind == "rag"]
        bank = [r.question for r in wl.requests if r.kind == "support" and "topic" in r.question]
        return rag, bank

    before = parts()
    with gzip.open(data / "cache" / "qqp_pairs.jsonl.gz", "wt", encoding="utf-8") as fh:
        for i in range(30):  # other paraphrase data: only the paraphrase part may change
            fh.write(json.dumps({"a": f"x{i} a?", "b": f"x{i} b?", "duplicate": i % 3 == 0}))
            fh.write("\n")
    rag, bank = parts()
    assert rag == before[0] and sorted(bank) == sorted(before[1])
