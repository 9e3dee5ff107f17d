"""``tokenlean_cache.cli.calibrate_main``: threshold calibration on labelled pairs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cache_helpers import toy_embed

from tokenlean_cache import Guard
from tokenlean_cache.cli import calibrate, calibrate_main, read_pairs
from tokenlean_core import TokenleanError

PAIRS = [
    ("how do i reset my password", "how can i reset my password", 1),
    ("how do i reset my password", "how do i reset the password", 1),
    ("what is the refund window", "what is the refund period", 1),
    ("what is the refund window", "what is the shipping window", 0),
    ("how do i close my account", "how do i open my account", 0),
    ("where is my order", "where is my parcel order", 1),
    ("can i pay by card", "can i pay by bank card", 1),
    ("can i pay by card", "can i get a new card", 0),
]


def test_calibrate_reaches_target_on_toy_pairs() -> None:
    res = calibrate(PAIRS, embedder=toy_embed, target_precision=0.9, guard=Guard(verifier=None))
    assert res["pairs"] == 8 and res["positives"] == 5
    assert res["without_guard"]["precision"] >= 0.9
    assert 0.0 <= res["without_guard"]["max_distance"] <= 2.0
    assert res["with_guard"]["learned_verifier"] is False


def test_read_pairs_csv_and_jsonl(tmp_path: Path) -> None:
    csv_path = tmp_path / "p.csv"
    csv_path.write_text("question1,question2,is_duplicate\nA?,B?,1\nC?,D?,0\n")
    assert read_pairs(csv_path) == [("A?", "B?", 1), ("C?", "D?", 0)]
    jl = tmp_path / "p.jsonl"
    jl.write_text(json.dumps({"a": "x", "b": "y", "duplicate": True}) + "\n")
    assert read_pairs(jl) == [("x", "y", 1)]
    bad = tmp_path / "bad.csv"
    bad.write_text("left,right,label\nx,y,1\n")
    with pytest.raises(TokenleanError, match="no column"):
        read_pairs(bad)


def test_calibrate_main_errors_cleanly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert calibrate_main([str(tmp_path / "missing.csv")]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.models
def test_calibrate_main_with_minilm(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "pairs.jsonl"
    path.write_text(
        "".join(json.dumps({"a": a, "b": b, "duplicate": y}) + "\n" for a, b, y in PAIRS)
    )
    out = tmp_path / "res.json"
    assert calibrate_main([str(path), "--target-precision", "0.8", "--json", str(out)]) == 0
    captured = capsys.readouterr()
    assert "embedding [" in captured.err  # the progress bar
    res = json.loads(out.read_text())
    assert res["with_guard"]["learned_verifier"] is True
    assert res["without_guard"]["precision"] >= 0.8
