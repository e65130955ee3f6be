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
def pseudonymise(
    src: Annotated[Path, typer.Argument(help="Extract file with raw NHS numbers (.csv/.parquet).")],
    dst: Annotated[Path, typer.Argument(help="Output file (.csv/.parquet), same rows and order.")],
    key_file: Annotated[
        Path | None,
        typer.Option("--key-file", help="File holding the key (else $SPEVIDENCE_KEY)."),
    ] = None,
    column: Annotated[
        list[str] | None, typer.Option("--column", help="Identifier column(s).")
    ] = None,
) -> None:
    """Pseudonymise NHS numbers at source with HMAC-SHA256 (streaming; the key is never shown)."""
    from spevidence.identity import load_key, pseudonymise_file

    key = load_key(key_file)
    report = pseudonymise_file(src, dst, key, columns=tuple(column or ["person_id"]))
    out.print(report.summary(), highlight=False)
    out.print(f"Written: {dst}", highlight=False)


@app.command()
def validate(
    data: Annotated[Path, typer.Option("--data", help="Folder of extracts or a .duckdb file.")],
    start: Annotated[str, typer.Option(help="Study window start, YYYY-MM-DD.")],
    end: Annotated[str, typer.Option(help="Study window end, YYYY-MM-DD.")],
    ids: Annotated[
        str, typer.Option(help="person_id holds 'pseudonym' tokens or raw 'nhs_number's.")
    ] = "pseudonym",
    key_file: Annotated[
        Path | None,
        typer.Option("--key-file", help="Key for ids=nhs_number (else $SPEVIDENCE_KEY)."),
    ] = None,
    date_format: Annotated[
        str | None, typer.Option("--date-format", help="e.g. %d/%m/%Y for text dates.")
    ] = None,
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Folder for qa.csv and attrition.csv.")
    ] = None,
) -> None:
    """Check the extracts against their contracts: QA findings and the row attrition."""
    from spevidence.data import read_extracts
    from spevidence.data import validate as _validate

    key = None
    if ids == "nhs_number":
        from spevidence.identity import load_key

        key = load_key(key_file)
    ex = read_extracts(data, date_format=date_format)
    _, qa, attrition = _validate(ex, start=start, end=end, ids=ids, key=key)  # type: ignore[arg-type]
    out.print(qa.summary(), highlight=False)
    out.print(attrition.summary(), highlight=False)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        qa.table().to_csv(out_dir / "qa.csv", index=False)
        attrition.table().to_csv(out_dir / "attrition.csv", index=False)
        out.print(f"Written: {out_dir / 'qa.csv'}, {out_dir / 'attrition.csv'}", highlight=False)


@app.command()
def link(
    data: Annotated[Path, typer.Option("--data", help="Folder of extracts or a .duckdb file.")],
    start: Annotated[str, typer.Option(help="Study window start, YYYY-MM-DD.")],
    end: Annotated[str, typer.Option(help="Study window end, YYYY-MM-DD.")],
    panel_out: Annotated[Path, typer.Option("--out", help="Panel file (.parquet).")],
    period: Annotated[str, typer.Option(help="month or quarter.")] = "month",
    engine: Annotated[str, typer.Option(help="duckdb or spark.")] = "duckdb",
    ids: Annotated[str, typer.Option(help="'pseudonym' or 'nhs_number'.")] = "pseudonym",
    key_file: Annotated[
        Path | None,
        typer.Option("--key-file", help="Key for ids=nhs_number (else $SPEVIDENCE_KEY)."),
    ] = None,
    date_format: Annotated[str | None, typer.Option("--date-format")] = None,
) -> None:
    """Validate the extracts and build the person x period panel (Parquet)."""
    from spevidence.data import read_extracts
    from spevidence.data import validate as _validate
    from spevidence.link import build_panel

    key = None
    if ids == "nhs_number":
        from spevidence.identity import load_key

        key = load_key(key_file)
    ex = read_extracts(data, date_format=date_format)
    clean, qa, attrition = _validate(ex, start=start, end=end, ids=ids, key=key)  # type: ignore[arg-type]
    panel = build_panel(clean, start=start, end=end, period=period, backend=engine)  # type: ignore[arg-type]
    panel_out.parent.mkdir(parents=True, exist_ok=True)
    panel.to_parquet(panel_out)
    out.print(qa.summary(), highlight=False)
    out.print((attrition + panel.attrition).summary(), highlight=False)
    out.print(f"Written: {panel_out}", highlight=False)


def main() -> None:
    """Entry point: user errors exit 1 with a message, never a traceback; usage errors exit 2."""
    try:
        app()
    except SpevidenceError as exc:
        err.print(f"[bold red]Error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(1)
