"""``tokenlean_router.cli.train_main``: the ``tokenlean router train`` entry point."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
from router_helpers import make_dataset

from tokenlean_router import GateModel, HashingEmbedder, Router
from tokenlean_router.cli import train_main


def _write_csv(path: Path, n: int = 300) -> None:
    texts, weak, strong = make_dataset(n, seed=3)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["prompt", "small/model", "large/model"])
        for t, a, b in zip(texts, weak, strong, strict=True):
            w.writerow([t, str(bool(a)), str(bool(b))])


def test_train_main_writes_a_gate_and_its_calibration(tmp_path: Path) -> None:
    data = tmp_path / "labels.csv"
    _write_csv(data)
    out = io.StringIO()
    seen: list[tuple[str, float]] = []
    code = train_main(
        [str(data), "-o", str(tmp_path / "gate.npz"), "--strong-share", "0.3", "--holdout", "0.3"],
        embedder=HashingEmbedder(dim=64),
        progress=lambda stage, frac: seen.append((stage, frac)),
        stdout=out,
    )
    assert code == 0, out.getvalue()
    assert seen and seen[-1] == ("fit", 1.0)
    calib = json.loads((tmp_path / "gate.calibration.json").read_text())
    assert calib["strong_column"] == "large/model"
    assert abs(calib["strong_share_heldout"] - 0.3) < 0.05
    assert calib["heldout"]["apgr"] > 0.6
    gate = GateModel.load(tmp_path / "gate.npz")
    router = Router(["small", "large"], gate, HashingEmbedder(dim=64), calib["threshold"])
    assert router.decide("Calculate 12 * 13 + 7 step by step").tier == "large"
    assert "threshold" in out.getvalue()


def test_train_main_cost_target_and_errors(tmp_path: Path) -> None:
    data = tmp_path / "labels.jsonl"
    texts, weak, strong = make_dataset(200, seed=5)
    data.write_text(
        "\n".join(
            json.dumps({"prompt": t, "weak": bool(a), "strong": bool(b)})
            for t, a, b in zip(texts, weak, strong, strict=True)
        )
    )
    out = io.StringIO()
    args = [
        str(data),
        "-o",
        str(tmp_path / "g"),
        "--weak-column",
        "weak",
        "--strong-column",
        "strong",
        "--quiet",
    ]
    code = train_main(
        [*args, "--target-cost", "0.003", "--prices", "0.5", "1.5", "10", "30"],
        embedder=HashingEmbedder(dim=64),
        stdout=out,
    )
    assert code == 0, out.getvalue()
    share = json.loads((tmp_path / "g.calibration.json").read_text())["strong_share_heldout"]
    assert 0.0 < share < 1.0
    bad = io.StringIO()
    assert (
        train_main([*args, "--target-cost", "1"], embedder=HashingEmbedder(dim=64), stdout=bad) == 2
    )
    assert "--prices" in bad.getvalue()
    missing = io.StringIO()
    assert (
        train_main(
            [str(data), "-o", str(tmp_path / "x"), "--weak-column", "nope"],
            embedder=HashingEmbedder(dim=64),
            stdout=missing,
        )
        == 2
    )
    assert "not found" in missing.getvalue()
    assert np.isfinite(GateModel.load(tmp_path / "g.npz").mean).all()


def test_train_main_with_a_group_column_and_neighbours(tmp_path: Path) -> None:
    texts, weak, strong = make_dataset(300, seed=4)
    data = tmp_path / "grouped.csv"
    with data.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["prompt", "task", "small", "large"])
        for i, (t, a, b) in enumerate(zip(texts, weak, strong, strict=True)):
            w.writerow([t, "" if i % 10 == 0 else f"task{i % 3}", str(bool(a)), str(bool(b))])
    out = io.StringIO()
    code = train_main(
        [str(data), "-o", str(tmp_path / "g.npz"), "--group-column", "task", "--neighbours", "10"],
        embedder=HashingEmbedder(dim=64),
        stdout=out,
    )
    assert code == 0, out.getvalue()
    gate = GateModel.load(tmp_path / "g.npz")
    assert gate.groups is not None and set(gate.groups.rates) == {"task0", "task1", "task2"}
    assert gate.neighbours is not None and gate.neighbours.k == 10
    calib = json.loads((tmp_path / "g.calibration.json").read_text())
    assert calib["weak_column"] == "small" and calib["strong_column"] == "large"
    bad = train_main(
        [str(data), "-o", str(tmp_path / "x.npz"), "--group-column", "nope"],
        embedder=HashingEmbedder(dim=64),
        stdout=io.StringIO(),
    )
    assert bad == 2
