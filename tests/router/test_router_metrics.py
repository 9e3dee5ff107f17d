"""RouteLLM's metrics: synthetic properties and, when the data is present, the anchors."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from tokenlean_router import apgr, oracle_scores, random_curve, routellm_curve

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "router"


def test_curve_endpoints_and_random_line() -> None:
    rng = np.random.default_rng(0)
    weak = rng.random(1000) < 0.6
    strong = rng.random(1000) < 0.8
    curve = routellm_curve(rng.random(1000), weak, strong, 10)
    assert len(curve.points) == 11
    assert curve.points[0].strong_pct == 100.0  # lowest threshold: everything strong
    assert curve.points[-1].strong_pct == 0.0  # last threshold uses '>': everything weak
    assert curve.points[-1].accuracy == pytest.approx(weak.mean() * 100)
    line = random_curve(weak, strong, 10)
    assert line.apgr == pytest.approx(0.5)
    w, s = weak.mean() * 100, strong.mean() * 100
    assert line.s95() == pytest.approx((0.95 * s - w) / (s - w) * 100)
    oracle = routellm_curve(oracle_scores(weak, strong), weak, strong, 100)
    assert oracle.apgr > 1.0 and oracle.s95() < line.s95()
    with pytest.raises(ValueError, match="undefined"):
        apgr([0, 100], [50, 60], 55, 55)
    with pytest.raises(ValueError, match="equal-length"):
        routellm_curve([1.0], [True, False], [True])


def _load(task: str) -> tuple[np.ndarray, np.ndarray]:
    csv.field_size_limit(1 << 30)
    bad = {
        json.loads(line)["eval_prompt"]
        for line in (DATA / task / "contaminated_prompts.jsonl").read_text().splitlines()
        if line.strip()
    }
    files = (
        sorted((DATA / "mmlu").glob("mmlu_*.csv"))
        if task == "mmlu"
        else [DATA / "gsm8k" / "gsm8k_responses.csv"]
    )
    weak, strong = [], []
    for f in files:
        with f.open(newline="") as fh:
            reader = csv.reader(fh)
            next(reader)
            for row in reader:
                if row[0] not in bad:
                    weak.append(row[1] == "True")
                    strong.append(row[2] == "True")
    return np.array(weak), np.array(strong)


@pytest.mark.skipif(not DATA.is_dir(), reason="RouteLLM data not present (../shared/data/router)")
@pytest.mark.parametrize(
    ("task", "n", "random_s95", "oracle_s95", "oracle_apgr"),
    [("mmlu", 14037, 67.8, 8.5, 1.285), ("gsm8k", 1307, 80.5, 17.7, 1.121)],
)
def test_random_and_oracle_reproduce_the_anchors(
    task: str, n: int, random_s95: float, oracle_s95: float, oracle_apgr: float
) -> None:
    weak, strong = _load(task)
    assert len(weak) == n
    rnd = random_curve(weak, strong, 100)
    assert round(rnd.s95(), 1) == random_s95 and round(rnd.apgr, 3) == 0.5
    orc = routellm_curve(oracle_scores(weak, strong), weak, strong, 100)
    assert round(orc.s95(), 1) == oracle_s95
    assert round(orc.apgr, 3) == oracle_apgr
