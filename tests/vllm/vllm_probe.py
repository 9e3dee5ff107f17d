"""Run by a Python that has vLLM's own code installed (``pip install --no-deps vllm==0.33.0`` plus
the few pure-Python packages its config modules import; never its CUDA torch). Reads a JSON job on
stdin, answers JSON on stdout. Not a test module: ``test_conformance.py`` runs it in a subprocess.

Job: ``{"valid": [cfg, ...], "invalid": [cfg, ...], "serve_argv": [[arg, ...], ...]}``.

* every valid ``cfg`` is built with vLLM's ``vllm.config.speculative.SpeculativeConfig``. ngram and
  suffix run vLLM's full ``__post_init__``; the model-based methods (draft_model, eagle, eagle3,
  mtp) need the *target* and *draft* Hugging Face configs (``ModelConfig`` downloads them), which no
  offline machine has: for those, field names, types, ranges and vLLM's ``_verify_args`` are checked
  with ``__post_init__`` skipped. Each result says which.
* every invalid ``cfg`` must be rejected by vLLM too;
* every ``serve_argv`` (``vllm serve`` arguments after ``serve``) is parsed by vLLM's own
  ``vllm serve`` parser (``vllm.entrypoints.common.cli_args.make_arg_parser``);
* ``metrics``: the exposition text vLLM's ``SpecDecodingProm`` produces after observing a step, and
  every metric name declared in ``vllm/v1/metrics/loggers.py``.
"""

from __future__ import annotations

import ast
import json
import os
import sys
from typing import Any

os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")  # no GPU: let vLLM's device probing succeed


def build(cfg: dict[str, Any]) -> dict[str, Any]:
    import vllm.config.speculative as spec_mod

    cls = spec_mod.SpeculativeConfig
    if cfg.get("method") in ("ngram", "suffix"):
        spec_mod.has_arctic_inference = lambda: True  # suffix: the server-side package check
        obj = cls(**cfg)
        mode = "full"
    else:
        original = cls.__post_init__
        cls.__post_init__ = lambda self: None  # needs the target/draft HF configs (network)
        try:
            obj = cls(**cfg)
        finally:
            cls.__post_init__ = original
        mode = "fields+verify_args"
    return {"ok": True, "mode": mode, "method": obj.method, "n": obj.num_speculative_tokens}


def main() -> None:
    job = json.load(sys.stdin)
    out: dict[str, Any] = {"valid": [], "invalid": [], "serve": [], "metrics": {}}
    import vllm

    out["vllm_version"] = vllm.__version__
    for cfg in job.get("valid", []):
        try:
            out["valid"].append(build(cfg))
        except Exception as exc:
            out["valid"].append({"ok": False, "error": f"{type(exc).__name__}: {exc}"[:500]})
    for cfg in job.get("invalid", []):
        try:
            build(cfg)
            out["invalid"].append({"rejected": False})
        except Exception as exc:
            out["invalid"].append({"rejected": True, "error": f"{type(exc).__name__}"})

    from vllm.entrypoints.common.cli_args import make_arg_parser
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    for argv in job.get("serve_argv", []):
        parser = make_arg_parser(FlexibleArgumentParser())
        try:
            ns = parser.parse_args(argv)
            out["serve"].append(
                {
                    "ok": True,
                    "model_tag": ns.model_tag,
                    "speculative_config": ns.speculative_config,
                    "enable_prefix_caching": ns.enable_prefix_caching,
                    "enable_prompt_tokens_details": ns.enable_prompt_tokens_details,
                    "port": ns.port,
                    "host": ns.host,
                }
            )
        except BaseException as exc:  # argparse exits with SystemExit
            out["serve"].append({"ok": False, "error": f"{type(exc).__name__}: {exc}"})

    import prometheus_client
    from vllm.v1.spec_decode.metrics import SpecDecodingProm, SpecDecodingStats

    class _Spec:
        num_speculative_tokens = 3

    prom = SpecDecodingProm(_Spec(), ["model_name", "engine"], {0: ["probe-model", "0"]})  # type: ignore[arg-type]
    stats = SpecDecodingStats.new(3)
    stats.observe_draft(num_draft_tokens=3, num_accepted_tokens=2)
    stats.observe_draft(num_draft_tokens=3, num_accepted_tokens=1)
    prom.observe(stats)
    out["metrics"]["spec_decode_text"] = prometheus_client.generate_latest().decode()

    import vllm.v1.metrics.loggers as loggers

    with open(loggers.__file__) as f:
        tree = ast.parse(f.read())
    names: list[dict[str, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            kind = getattr(node.func, "attr", getattr(node.func, "id", ""))
            for kw in node.keywords:
                if (
                    kw.arg == "name"
                    and isinstance(kw.value, ast.Constant)
                    and isinstance(kw.value.value, str)
                    and kw.value.value.startswith("vllm:")
                ):
                    names.append({"name": kw.value.value, "kind": str(kind)})
    out["metrics"]["logger_names"] = names
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
