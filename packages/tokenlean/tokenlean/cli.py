"""The ``tokenlean`` command.

Exit codes: 0 success; 1 bad data (an unreadable ledger file, say), with a message naming the
problem; 2 bad usage (unknown option, missing argument).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from tokenlean_core import TokenleanError, build_report, read_jsonl

from . import __version__


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
