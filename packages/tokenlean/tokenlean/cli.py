"""The ``tokenlean`` command.

Exit codes: 0 success; 1 failure (bad data such as an unreadable ledger file, a model that cannot
be loaded), with a message naming the problem; 2 bad usage (unknown option, missing argument, a
value out of range); 3 (``bench``) the data folder given with ``--data`` is missing or incomplete.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from tokenlean_core import TokenleanError, build_report, read_jsonl

from . import __version__
from .bench.config import VARIANTS


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tokenlean")
def cli() -> None:
    """tokenlean: cut what LLM applications spend on tokens, money and milliseconds."""


@cli.command()
@click.argument("ledger", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--html",
    "html_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write a self-contained HTML page with the table and the chart.",
)
@click.option(
    "--png",
    "png_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the chart of cost and savings over time as a PNG.",
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print the report as JSON instead of a table."
)
@click.option("--tenant", help="Only records of this tenant.")
@click.option("--session", help="Only records of this session.")
@click.option("--task", help="Only records of this task.")
def report(
    ledger: Path,
    html_path: Path | None,
    png_path: Path | None,
    as_json: bool,
    tenant: str | None,
    session: str | None,
    task: str | None,
) -> None:
    """Summarise a ledger file (JSONL written by tokenlean_core.JSONLSink).

    Shows tokens, cost, cost per successful outcome, cache hit rate, savings by component and
    latency P50/P95 by prompt size.
    """
    where = {k: v for k, v in (("tenant", tenant), ("session", session), ("task", task)) if v}
    try:
        rep = build_report(read_jsonl(ledger), where=where or None)
    except TokenleanError as exc:
        raise click.ClickException(str(exc)) from exc
    except UnicodeDecodeError as exc:
        raise click.ClickException(f"{ledger} is not a UTF-8 text file ({exc.reason})") from exc
    if as_json:
        click.echo(json.dumps(rep.to_dict(), indent=2))
    else:
        click.echo(rep.table())
    if png_path:
        rep.plot(str(png_path))
        click.echo(f"chart written to {png_path}", err=True)
    if html_path:
        rep.html(str(html_path))
        click.echo(f"HTML report written to {html_path}", err=True)


@cli.command()
@click.option(
    "--ledger",
    "ledger_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the ledger to this JSONL file.",
)
def demo(ledger_path: Path | None) -> None:
    """Run a LangChain chain and a LlamaIndex query pipeline on their frameworks' testing models
    and print the ledger's report (no server, no key)."""
    from .demo import run_demo

    click.echo(run_demo(ledger_path))


EXIT_DATA_MISSING = 3


class _DataMissing(click.ClickException):
    exit_code = EXIT_DATA_MISSING


@cli.command(context_settings={"max_content_width": 100})
@click.option("--quick", is_flag=True, help="A small sample and short answers (a few minutes).")
@click.option(
    "--data",
    metavar="DIR|builtin",
    help="Workload folder laid out like ../shared/data (cache/banking77_test.csv, "
    "cache/qqp_pairs.jsonl.gz, memory/sgd_dev.jsonl.gz, compression/nq_open_oracle.jsonl.gz), "
    "or 'builtin' for the "
    "workload shipped in the package. Default: $TOKENLEAN_DATA, the repository's "
    "../shared/data if present, else builtin.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("tokenlean-bench"),
    show_default=True,
    help="Folder for bench.json and bench.html.",
)
@click.option(
    "--target-model",
    default="gpt-4o-mini",
    show_default=True,
    help="Model whose tokenizer counts the tokens and whose prices price them.",
)
@click.option(
    "--model",
    metavar="SPEC",
    help="Run on this LangChain model (init_chat_model spec, e.g. openai:gpt-4o-mini) instead "
    "of the local SmolLM2-135M (llama.cpp, in process).",
)
@click.option("--vllm-url", metavar="URL", help="Run on a vLLM (OpenAI-compatible) server.")
@click.option(
    "--small-model",
    default="gpt-4.1-nano",
    show_default=True,
    help="The router's small tier: priced as this model (served by the local model with a "
    "short context unless it is a LangChain spec like openai:gpt-4.1-nano).",
)
@click.option(
    "--judge",
    metavar="SPEC|local",
    help="Judge model for answer agreement with the baseline (LangChain spec, or 'local').",
)
@click.option(
    "--variants",
    default=",".join(VARIANTS),
    show_default=True,
    help="Comma-separated subset of the variants to run.",
)
@click.option(
    "--max-tokens",
    type=click.IntRange(1, 4096),
    help="Answer length cap (default 48, 16 with --quick).",
)
@click.option(
    "--memory-budget",
    type=click.IntRange(32, None),
    default=100,
    show_default=True,
    help=(
        "Token budget of a conversation's prompt in the full variant (100: the budget "
        "benchmarks/memory.py fitted on SGD dialogues outside the workload)."
    ),
)
@click.option(
    "--compress-rate",
    type=click.FloatRange(0.05, 1.0),
    default=0.25,
    show_default=True,
    help=(
        "Target share of retrieved-passage tokens kept by tokenlean-compress (0.25 = 4x; "
        "the distilled scorer kept the answer in 30/30 held-out NQ examples at 4x)."
    ),
)
@click.option(
    "--compress-scorer",
    type=click.Choice(["distilled", "smollm2", "lexical"]),
    default="distilled",
    show_default=True,
    help="tokenlean-compress scorer: MiniLM token classifier, SmolLM2 perplexity, or lexical.",
)
@click.option(
    "--limit", type=click.IntRange(1, None), help="Only the first N requests of the workload."
)
@click.option("--seed", type=int, default=0, show_default=True, help="Sampling seed.")
@click.option("--json", "as_json", is_flag=True, help="Print bench.json instead of the table.")
def bench(
    quick: bool,
    data: str | None,
    out: Path,
    target_model: str,
    model: str | None,
    vllm_url: str | None,
    small_model: str,
    judge: str | None,
    variants: str,
    max_tokens: int | None,
    memory_budget: int,
    compress_rate: float,
    compress_scorer: str,
    limit: int | None,
    seed: int,
    as_json: bool,
) -> None:
    """Run one workload through three variants side by side and report what each costs.

    \b
    Variants:
      baseline  full context, full history, one model
      cached    core canonicaliser + tokenlean-cache (embedded semantic cache)
      full      + tokenlean-memory, tokenlean-compress (when installed),
                tokenlean-router (small/large), the vLLM adapter with --vllm-url

    The workload mixes repeated and paraphrased support questions, multi-turn conversations
    and RAG questions over retrieved passages. Tokens are counted with the target model's
    tokenizer on what each model call was really sent; quality is measured (cache hit
    precision, state recall, answer retention, judge agreement). Writes bench.json and
    bench.html (plots) to --out.

    Exit codes: 0 ok, 1 failure, 2 bad usage, 3 --data folder missing or incomplete.
    """
    from .bench import BenchConfig, BenchError, DataMissingError, run_bench

    chosen = tuple(v.strip() for v in variants.split(",") if v.strip())
    unknown = [v for v in chosen if v not in VARIANTS]
    if unknown or not chosen:
        raise click.BadParameter(
            f"unknown variant(s) {', '.join(unknown) or '(none)'}; choose from "
            f"{', '.join(VARIANTS)}",
            param_hint="--variants",
        )
    if data is None:
        from .bench import default_data_dir

        found = default_data_dir()
        data = str(found) if found is not None else "builtin"
    try:
        cfg = BenchConfig(
            target_model=target_model,
            small_model=small_model,
            model=model,
            vllm_url=vllm_url,
            judge=judge,
            max_tokens=max_tokens or (16 if quick else 48),
            memory_budget=memory_budget,
            compress_rate=compress_rate,
            compress_scorer=compress_scorer,
            seed=seed,
            variants=chosen,
        )

        def progress(label: str, n: int) -> Any:
            return click.progressbar(
                length=n, label=f"  {label}", file=sys.stderr, show_pos=True, show_eta=True
            )

        click.echo(f"tokenlean bench: workload {data}; variants {', '.join(chosen)}", err=True)
        result = run_bench(cfg, data=data, quick=quick, limit=limit, out=out, progress=progress)
    except DataMissingError as exc:
        raise _DataMissing(str(exc)) from exc
    except (BenchError, TokenleanError) as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps({k: v for k, v in result.items() if k != "table"}, indent=2))
    else:
        click.echo(result["table"])
    click.echo(
        f"wrote {out / 'bench.json'} and {out / 'bench.html'} in {result['seconds']:.0f}s",
        err=True,
    )


_PASSTHROUGH = {
    "context_settings": {"ignore_unknown_options": True, "allow_extra_args": True},
    "add_help_option": False,
}


def _run_component(module: str, func: str, package: str, args: tuple[str, ...]) -> None:
    """Hand the remaining arguments to a component's own command-line entry point."""
    import importlib

    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        raise click.ClickException(
            f"{package} is not installed ({exc}); install it with `pip install '{package}[all]'`"
        ) from exc
    try:
        code = getattr(mod, func)(list(args))
    except TokenleanError as exc:
        raise click.ClickException(str(exc)) from exc
    if code:
        raise SystemExit(code)


@cli.group()
def cache() -> None:
    """The semantic cache (tokenlean-cache)."""


@cache.command("calibrate", **_PASSTHROUGH)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def cache_calibrate(args: tuple[str, ...]) -> None:
    """Pick the similarity threshold that reaches a target hit precision on labelled query pairs.

    Run `tokenlean cache calibrate --help` for its options.
    """
    _run_component("tokenlean_cache.cli", "calibrate_main", "tokenlean-cache", args)


@cli.group()
def router() -> None:
    """The model router (tokenlean-router)."""


@router.command("train", **_PASSTHROUGH)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def router_train(args: tuple[str, ...]) -> None:
    """Train a routing gate from labelled data (which model answered correctly) and calibrate
    its threshold. Run `tokenlean router train --help` for its options."""
    _run_component("tokenlean_router.cli", "train_main", "tokenlean-router", args)


def main() -> None:
    """Console-script entry point."""
    sys.exit(cli.main(standalone_mode=True))


if __name__ == "__main__":
    main()
