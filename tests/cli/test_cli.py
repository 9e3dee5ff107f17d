"""The ``tokenlean`` command: report and demo."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from tokenlean.cli import cli
from tokenlean_core import JSONLSink, Ledger, Price, PriceTable, Usage, scope


def write_ledger(path: Path) -> None:
    led = Ledger([JSONLSink(path)], prices=PriceTable({"m": Price(1.0, 2.0)}))
    with scope(tenant="acme", request="r1"):
        led.record_call("m", Usage(1000, 100), latency_s=0.4)
        led.record_saving("cache", 1000, 100, model="m")
        led.record_event("cache", "hit")
        led.record_outcome(True)
    with scope(tenant="other", request="r2"):
        led.record_call("m", Usage(2000, 10), latency_s=0.2)
        led.record_event("cache", "miss")
    led.close()


def test_report_table_json_png_html(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    write_ledger(path)
    runner = CliRunner()
    res = runner.invoke(cli, ["report", str(path)])
    assert res.exit_code == 0, res.output
    assert "tokens saved" in res.output and "cache" in res.output
    assert "50.0%" in res.output  # cache hit rate
    res = runner.invoke(cli, ["report", str(path), "--json", "--tenant", "acme"])
    assert res.exit_code == 0
    data = json.loads(res.output)
    assert data["totals"]["calls"] == 1
    assert data["savings"]["cache"]["tokens_in"] == 1000
    png, page = tmp_path / "r.png", tmp_path / "r.html"
    res = runner.invoke(cli, ["report", str(path), "--png", str(png), "--html", str(page)])
    assert res.exit_code == 0
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert "<img" in page.read_text()


def test_report_bad_file_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(
        '{"kind":"llm_call","ts":1,"component":"llm"}\n{"kind":"nope","ts":1,"component":"x"}\n'
    )
    res = CliRunner().invoke(cli, ["report", str(path)])
    assert res.exit_code == 1
    assert "bad.jsonl:2" in res.output and "'kind'" in res.output
    path.write_bytes(b"\xff\xfe\x00garbage")
    res = CliRunner().invoke(cli, ["report", str(path)])
    assert res.exit_code == 1
    assert "not a UTF-8 text file" in res.output


def test_report_usage_errors() -> None:
    res = CliRunner().invoke(cli, ["report", "/nonexistent/ledger.jsonl"])
    assert res.exit_code == 2
    assert "does not exist" in res.output


def test_help_reads_well() -> None:
    res = CliRunner().invoke(cli, ["--help"])
    assert res.exit_code == 0
    assert "report" in res.output and "demo" in res.output


def test_demo_runs_offline_and_writes_a_ledger(tmp_path: Path) -> None:
    path = tmp_path / "demo.jsonl"
    res = CliRunner().invoke(cli, ["demo", "--ledger", str(path)])
    assert res.exit_code == 0, res.output
    assert "LLM calls               6" in res.output
    assert "gpt-4o-mini" in res.output
    assert len(path.read_text().splitlines()) == 12  # 6 calls + 6 outcomes


def test_component_commands_pass_their_arguments_through(tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(cli, ["cache", "calibrate", "--help"])
    assert res.exit_code == 0
    assert "--target-precision" in res.output
    res = runner.invoke(cli, ["cache", "calibrate", str(tmp_path / "missing.csv")])
    assert res.exit_code == 2
    res = runner.invoke(cli, ["cache", "--help"])
    assert "calibrate" in res.output
    res = runner.invoke(cli, ["router", "train", "--help"])
    assert res.exit_code == 0
    assert "--strong-share" in res.output
