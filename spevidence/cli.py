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
def sroi(
    effects: Annotated[
        Path, typer.Argument(help="CSV of DiD estimates: outcome, estimate, std_error.")
    ],
    persons: Annotated[int, typer.Option(help="People supported (the referred cohort).")],
    wte: Annotated[float, typer.Option(help="Whole-time-equivalent link workers.")] = 1.0,
    price_year: Annotated[
        str, typer.Option(help="Price year of the link-worker cost.")
    ] = "2022/23",
    salary: Annotated[
        float | None, typer.Option(help="£ per WTE a year incl. on-costs (default ARRS max).")
    ] = None,
    salary_source: Annotated[str | None, typer.Option(help="Source of --salary.")] = None,
    management_rate: Annotated[float, typer.Option(help="Management/overheads x pay.")] = 0.15,
    vcse_funding: Annotated[float, typer.Option(help="VCSE activity funding, £ a year.")] = 0.0,
    years: Annotated[int, typer.Option(help="Years the service is funded.")] = 1,
    duration: Annotated[int, typer.Option(help="Years the effect lasts.")] = 1,
    drop_off: Annotated[float, typer.Option(help="Yearly drop-off of the effect.")] = 0.0,
    attribution: Annotated[float, typer.Option(help="Share due to others.")] = 0.0,
    effect_period: Annotated[
        str, typer.Option(help="Unit of the estimates: year, quarter or month.")
    ] = "year",
    model: Annotated[str | None, typer.Option(help="Keep rows with this 'model'.")] = None,
    term: Annotated[str | None, typer.Option(help="Keep rows with this 'term'.")] = None,
    discount: Annotated[float, typer.Option(help="Annual discount rate.")] = 0.035,
    n_sims: Annotated[int, typer.Option(help="Monte Carlo draws (0 = none).")] = 5000,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    out_dir: Annotated[Path, typer.Option("--out", help="Output folder.")] = Path("out/sroi"),
) -> None:
    """Value DiD estimates: SROI ratio, NPV, sensitivity and Monte Carlo, with figures."""
    import pandas as pd

    from spevidence.sroi import evaluate, from_did, link_worker_inputs

    if not effects.is_file():
        raise SpevidenceError(f"{effects}: no such file; give the CSV of DiD estimates.")
    eff = pd.read_csv(effects)
    for col, value in (("model", model), ("term", term)):
        if value is not None:
            if col not in eff.columns:
                raise SpevidenceError(f"{effects.name} has no column {col!r} to filter on.")
            eff = eff[eff[col].astype(str) == value]
    outcomes = from_did(
        eff,
        persons=persons,
        duration_years=duration,
        drop_off=drop_off,
        attribution=attribution,
        effect_period=effect_period,  # type: ignore[arg-type]
    )
    inputs = link_worker_inputs(
        wte=wte,
        years=years,
        price_year=price_year,
        salary_with_oncosts=salary,
        management_rate=management_rate,
        vcse_activity_funding=vcse_funding,
        source=salary_source,
    )
    res = evaluate(outcomes, inputs, discount=discount, n_sims=n_sims, seed=seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, table in res.tables().items():
        table.to_csv(out_dir / f"{name}.csv", index=False)
    kinds = ["waterfall", "tornado"] + (["simulation"] if n_sims else [])
    for kind in kinds:
        res.plot(kind=kind).savefig(out_dir / f"sroi_{kind}.png", dpi=150)  # type: ignore[arg-type]
    out.print(res.summary(), highlight=False)
    out.print(f"Tables and figures written to {out_dir}")


def main() -> None:
    """Entry point: user errors exit 1 with a message, never a traceback; usage errors exit 2."""
    try:
        app()
    except SpevidenceError as exc:
        err.print(f"[bold red]Error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(1)
