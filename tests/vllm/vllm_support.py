"""Helpers shared by tokenlean-vllm's test modules and session fixtures (conftest.py): the
stand-in server's command and ledgers; the llama.cpp server's come from tests/llama_server.py."""

from __future__ import annotations

import sys
from pathlib import Path

from llama_server import MODEL_ALIAS

from tokenlean_core import Ledger, MemorySink, Record

__all__ = ["FIXTURES", "MODEL_ALIAS", "llm_calls", "new_ledger", "standin_argv"]

HERE = Path(__file__).resolve().parent
FIXTURES = HERE / "fixtures"


def standin_argv(
    port: int, mode: str = "ok", delay: float = 0.0, metrics: list[Path] | None = None
) -> list[str]:
    """The stand-in server's command (see standin_server.py)."""
    argv = [sys.executable, str(HERE / "standin_server.py"), "--port", str(port)]
    argv += ["--mode", mode, "--delay", str(delay)]
    if metrics:
        argv += ["--metrics", *map(str, metrics)]
    return argv


def new_ledger() -> Ledger:
    """A ledger that keeps its records in memory (``ledger.records()``)."""
    return Ledger(sinks=[MemorySink()])


def llm_calls(ledger: Ledger) -> list[Record]:
    """The ``llm_call`` records of a ledger."""
    return [r for r in ledger.records() if r.kind == "llm_call"]
