"""Conformance with vLLM's own code, without a GPU.

Live: a Python with vLLM 0.33.0's own package, built by ``scripts/vllm-conformance-env.sh DIR``
(``make`` builds ``.cache/vllm-venv`` before the unit tests): ``pip install --no-deps vllm==0.33.0``
plus exactly the packages the probe's imports reach (cbor2, openai-harmony, msgspec, pybase64,
uvloop, partial-json-parser, xgrammar, apache-tvm-ffi, llguidance, and transformers/fastapi in
vLLM's own ranges), seeing this venv's site-packages (its CPU torch; never vLLM's CUDA torch), runs
``vllm_probe.py``: every SpeculativeConfig we render is built by vLLM's
``vllm.config.speculative.SpeculativeConfig``, every config we reject is rejected by it too, every
``vllm serve`` command VLLMServer builds is parsed by vLLM's own serve parser, and the metric names
we read are the ones vLLM's metrics modules define. The Python is ``TOKENLEAN_VLLM_PYTHON`` or
``.cache/vllm-venv/bin/python`` once the script stamped ``.cache/vllm-venv/.ok``; importing vLLM
takes ~17 s of CPU, so it is ``slow``. With ``CI`` set, a missing env FAILS the live test.

Recorded: ``fixtures/vllm-0.33.0-probe.json`` holds the job and vLLM 0.33.0's answers from a live
run; the same assertions run on it, after checking that what we render today is still exactly what
was recorded (otherwise refresh it with ``TOKENLEAN_REFRESH_VLLM_PROBE=1``, see below), so a
developer without the env still checks against vLLM's recorded answers.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from vllm_conformance_cases import INVALID_DICTS, VLLM_VERSION, serve_argvs, valid_configs

from tokenlean_vllm import METRIC_NAMES, VLLMMetrics, parse_prometheus

HERE = Path(__file__).resolve().parent
RECORDED = HERE / "fixtures" / f"vllm-{VLLM_VERSION}-probe.json"
ROOT = HERE.parent.parent
ENV_SCRIPT = ROOT / "scripts" / "vllm-conformance-env.sh"
ENV_DIR = ROOT / ".cache" / "vllm-venv"


def _job() -> dict[str, Any]:
    return {
        "valid": [c.to_vllm() for c in valid_configs()],
        "invalid": INVALID_DICTS,
        "serve_argv": serve_argvs(),
    }


def _vllm_python() -> Path | None:
    env = os.environ.get("TOKENLEAN_VLLM_PYTHON")
    if env:
        return Path(env)
    # the stamp is written last: a half-built env is not used
    return ENV_DIR / "bin" / "python" if (ENV_DIR / ".ok").exists() else None


def _run_probe(python: Path, job: dict[str, Any]) -> dict[str, Any]:
    proc = subprocess.run(
        [str(python), str(HERE / "vllm_probe.py")],
        input=json.dumps(job),
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "VLLM_TARGET_DEVICE": "cpu"},
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


@pytest.fixture(scope="module")
def live() -> dict[str, Any]:
    python = _vllm_python()
    if python is None:
        why = (
            f"no Python with vLLM's code: `bash scripts/vllm-conformance-env.sh {ENV_DIR}` "
            "(or `make .cache/vllm-venv/.ok`) builds it, or set TOKENLEAN_VLLM_PYTHON"
        )
        if os.environ.get("CI"):
            pytest.fail(f"CI checks vLLM's own code: {why}")
        pytest.skip(f"{why}; the recorded run is checked instead")
    job = _job()
    result = _run_probe(python, job)
    if os.environ.get("TOKENLEAN_REFRESH_VLLM_PROBE"):
        RECORDED.write_text(
            json.dumps({"job": job, "result": result}, indent=1, sort_keys=True) + "\n"
        )
    return result


@pytest.fixture(scope="module")
def recorded() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(RECORDED.read_text())
    assert data["job"] == json.loads(json.dumps(_job())), (
        "what tokenlean renders changed since the recorded vLLM run: refresh it with "
        "TOKENLEAN_REFRESH_VLLM_PROBE=1 pytest tests/vllm/test_vllm_conformance.py -m slow"
    )
    result: dict[str, Any] = data["result"]
    return result


def _check(result: dict[str, Any]) -> None:
    assert result["vllm_version"] == VLLM_VERSION
    configs = valid_configs()
    assert len(result["valid"]) == len(configs)
    for cfg, got in zip(configs, result["valid"], strict=True):
        assert got["ok"], f"vLLM rejected {cfg.to_vllm()}: {got.get('error')}"
        assert got["method"] == cfg.method
        if cfg.num_speculative_tokens is not None:
            assert got["n"] == cfg.num_speculative_tokens
        # ngram and suffix run vLLM's complete __post_init__; model-based methods need the HF
        # configs of target and draft (a download) and are checked on fields + _verify_args
        assert got["mode"] == (
            "full" if cfg.method in ("ngram", "suffix") else "fields+verify_args"
        )
    assert [r["rejected"] for r in result["invalid"]] == [True] * len(INVALID_DICTS)

    specs = [None, valid_configs()[0].to_vllm(), None]
    for argv, got in zip(serve_argvs(), result["serve"], strict=True):
        assert got["ok"], got.get("error")
        assert got["model_tag"] == "Qwen/Qwen3-8B"
        assert got["enable_prefix_caching"] is True
        assert got["enable_prompt_tokens_details"] is True
        assert got["port"] == 8123
        if "--speculative-config" in argv:
            assert got["speculative_config"] == json.loads(
                argv[argv.index("--speculative-config") + 1]
            )
        else:
            assert got["speculative_config"] is None
    assert result["serve"][1]["speculative_config"] == specs[1]

    # metric names: counters are declared without "_total" and exposed with it
    declared = {m["name"]: m["kind"] for m in result["metrics"]["logger_names"]}
    spec_samples = parse_prometheus(result["metrics"]["spec_decode_text"])
    exposed = {s.name for s in spec_samples}
    for name in METRIC_NAMES:
        if name.startswith("vllm:spec_decode"):
            assert name in exposed, name
        elif name.endswith("_total"):
            assert declared.get(name.removesuffix("_total")) == "_counter_cls", name
        else:
            assert declared.get(name) == "_gauge_cls", name
    # and our reader reads vLLM's own exposition: 2 drafts of 3 tokens, 2 + 1 accepted
    m = VLLMMetrics.parse(result["metrics"]["spec_decode_text"], model_name="probe-model")
    assert (m.spec_drafts, m.spec_draft_tokens, m.spec_accepted_tokens) == (2, 6, 3)
    assert m.accepted_per_position == (2, 1, 0)


def test_env_script_pins_the_tested_vllm() -> None:
    pins = re.findall(r"^\s*vllm==(\S+)", ENV_SCRIPT.read_text(), flags=re.M)
    assert pins == [VLLM_VERSION], pins


def test_recorded_vllm_run(recorded: dict[str, Any]) -> None:
    _check(recorded)


@pytest.mark.slow
def test_live_vllm_code(live: dict[str, Any]) -> None:
    _check(live)
