"""The ``spevidence`` command.

Exit codes: 0 success; 1 a user error (one-paragraph message, no traceback);
2 bad usage (unknown option, missing argument).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from spevidence._version import __version__
from spevidence.errors import SpevidenceError

app = typer.Typer(
    name="spevidence",
    help="Evaluate NHS social prescribing: link, match, difference-in-differences, SROI, reports.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
err = Console(stderr=True)
out = Console()


def _version(value: bool) -> None:
    if value:
        out.print(f"spevidence {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, is_flag=True, help="Show the version."
        ),
    ] = False,
) -> None:
    """Evaluate NHS social prescribing with matched difference-in-differences and SROI."""


@app.command()
def demo(
    out_dir: Annotated[Path, typer.Option("--out", help="Output folder.")] = Path("out/demo"),
    persons: Annotated[int, typer.Option(help="People in the synthetic ICB.")] = 5000,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 20260101,
) -> None:
    """Generate a small synthetic ICB and run the example evaluation end to end."""
    from spevidence.pipeline import run_demo

    result = run_demo(out_dir, persons=persons, seed=seed)
    out.print("[bold green]Demo finished.[/]")
    for label, path in result.items():
        out.print(f"  {label}: {path}")


@app.command()
def activity(
    data: Annotated[Path, typer.Option("--data", help="Folder of extracts (Parquet or CSV).")],
    out_dir: Annotated[Path, typer.Option("--out", help="Output folder.")] = Path("out/activity"),
    start: Annotated[
        str | None, typer.Option(help="First referral date counted (default: earliest).")
    ] = None,
    end: Annotated[
        str | None, typer.Option(help="Last referral date counted (default: latest).")
    ] = None,
    at: Annotated[
        str | None,
        typer.Option(help="Date the registered population is counted (default: --start)."),
    ] = None,
    period: Annotated[str, typer.Option(help="month or quarter.")] = "month",
    wellby: Annotated[
        bool, typer.Option("--wellby", help="Add the WELLBY valuation (no comparator).")
    ] = False,
    wte: Annotated[
        float | None,
        typer.Option(help="Whole-time equivalent of every link worker (default 1.0)."),
    ] = None,
) -> None:
    """Service activity, equity of access, case finding and wellbeing: tables and figures."""
    from spevidence.activity.outputs import activity_outputs, read_extracts, write_outputs

    if period not in ("month", "quarter"):
        raise SpevidenceError(f"--period must be 'month' or 'quarter', got {period!r}.")
    ex = read_extracts(data)
    tables, figures = activity_outputs(
        ex["population"],
        ex["referrals"],
        gp_appointments=ex.get("gp_appointments"),
        wellbeing=ex.get("wellbeing"),
        start=start,
        end=end,
        at=at,
        period=period,
        wellby=wellby,
        link_worker_wte=wte,
    )
    folder = write_outputs(out_dir, tables, figures)
    out.print(
        f"[bold green]Activity outputs written:[/] {len(tables)} tables, "
        f"{len(figures)} figures in {folder}"
    )
    err.print(
        "[yellow]Note:[/] tables are aggregate but not yet disclosure-controlled; "
        "apply disclosure control before release."
    )


def main() -> None:
    """Entry point: user errors exit 1 with a message, never a traceback; usage errors exit 2."""
    try:
        app()
    except SpevidenceError as exc:
        err.print(f"[bold red]Error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(1)
