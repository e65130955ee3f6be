"""The ``spevidence`` command.

Exit codes: 0 success; 1 a user error (one-paragraph message, no traceback);
2 bad usage (unknown option, missing argument); 3 an unexpected error, a bug (its type
only, no traceback unless SPEVIDENCE_DEBUG=1).
"""

from __future__ import annotations

import errno
import os
import sys
import warnings
from importlib.resources import files
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from spevidence._atomic import atomic_file, disk_errno, disk_error
from spevidence._version import __version__
from spevidence.errors import SpevidenceError

# Each command imports the stages it runs inside its body, not here: measured with
# `python -X importtime -c "import spevidence.cli"`, this module takes about 0.2 s, while
# the stages take seconds (pandas alone 1.4 s, spevidence.pipeline 4.2 s, spevidence.sroi
# 5.5 s on the shared test machine), which `spevidence --help`, `--version` and every
# usage error would otherwise wait for. spevidence._cite is lazy too (0.04 s of YAML).

app = typer.Typer(
    name="spevidence",
    help="Evaluate NHS social prescribing: link, match, difference-in-differences, SROI, reports.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
# user text (paths, names, messages) is printed literally, never read as rich markup:
# styled labels go through _say, which builds a Text instead of parsing markup
err = Console(stderr=True, markup=False)
out = Console(markup=False)


def _say(label: str, style: str, rest: object = "", *, console: Console = out) -> None:
    """Print ``label`` in ``style`` (e.g. "bold green"), then ``rest`` as it is."""
    text = Text.assemble((label, style), f" {rest}" if str(rest) else "")
    console.print(text, highlight=False, soft_wrap=True)


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
    _say("Demo finished.", "bold green")
    for label, path in result.items():
        out.print(f"  {label}: {path}")


# --memory-limit of `link` and `run`
MemoryLimit = Annotated[
    str | None,
    typer.Option(
        "--memory-limit",
        help="Memory limit of the whole run, e.g. 4GB: a run that cannot fit stops with a "
        "clear error naming the stage; DuckDB spills to disk beyond it. Default: none "
        "(DuckDB takes 80% of RAM). Also $SPEVIDENCE_MEMORY_LIMIT.",
    ),
]
MaxRowLoss = Annotated[
    float | None,
    typer.Option(
        "--max-row-loss",
        help="Largest share of a table's usable rows validation may exclude before it stops "
        "(default 0.05; a protocol's qa.max_row_loss).",
    ),
]


def _memory_limit(limit: str | None) -> int | None:
    """--memory-limit (else $SPEVIDENCE_MEMORY_LIMIT) in bytes, checked: the run's limit
    (spevidence.memory) and every DuckDB connection's (which reads the same variable)."""
    from spevidence.memory import LIMIT_ENV, parse_size, run_limit

    if limit is not None:
        parse_size(limit)  # a bad size is a clear error before anything runs
        os.environ[LIMIT_ENV] = limit
    return run_limit()


@app.command()
def synth(
    scenario: Annotated[
        str, typer.Option("--scenario", help="Scenario name (synthetic/NAME.yaml) or YAML path.")
    ] = "demo",
    persons: Annotated[
        int | None, typer.Option(help="People in the population (default: the scenario's).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed (same arguments => same files).")] = 1,
    out_dir: Annotated[Path, typer.Option("--out", help="Output folder.")] = Path("out/synth"),
    fmt: Annotated[
        str, typer.Option("--format", help="parquet or csv.", case_sensitive=False)
    ] = "parquet",
    start: Annotated[
        str | None, typer.Option(help="Override the window start (YYYY-MM-DD).")
    ] = None,
    end: Annotated[str | None, typer.Option(help="Override the window end (YYYY-MM-DD).")] = None,
    identifiers: Annotated[
        str | None, typer.Option(help="Override identifiers: nhs_number or pseudonym.")
    ] = None,
    list_only: Annotated[
        bool, typer.Option("--list", help="List the shipped scenarios and exit.")
    ] = False,
    progress: Annotated[
        bool, typer.Option(help="Show progress: a bar on a terminal, else plain lines.")
    ] = True,
) -> None:
    """Generate a synthetic ICB (extracts + truth.json) from a scenario."""
    from spevidence.synthetic import generate, list_scenarios

    if list_only:
        for name in list_scenarios():
            out.print(name)
        return
    if fmt.lower() not in ("parquet", "csv"):
        raise SpevidenceError(f"--format must be parquet or csv, not {fmt!r}.")
    if identifiers is not None and identifiers not in ("nhs_number", "pseudonym"):
        raise SpevidenceError(
            f"--identifiers must be nhs_number or pseudonym, not {identifiers!r}."
        )
    res = generate(
        scenario,
        persons=persons,
        seed=seed,
        out=out_dir,
        format=fmt.lower(),  # type: ignore[arg-type]
        start=start,
        end=end,
        identifiers=identifiers,  # type: ignore[arg-type]
        progress=progress,
    )
    out.print(res.summary(), highlight=False)


@app.command()
def report(
    bundle: Annotated[Path, typer.Argument(help="Results bundle folder (from 'spevidence run').")],
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Output folder (default: BUNDLE_report).")
    ] = None,
    fmt: Annotated[
        str, typer.Option("--format", help="Comma-separated formats: html, pdf, docx.")
    ] = "html,pdf",
    engine: Annotated[
        str, typer.Option(help="auto (Quarto if installed), quarto, or builtin.")
    ] = "auto",
    template: Annotated[
        str, typer.Option(help="report (full evaluation) or summary (one page).")
    ] = "report",
) -> None:
    """Render the evaluation report (HTML, PDF, Word) from a results bundle."""
    from spevidence.report import render

    target = out_dir if out_dir is not None else bundle.parent / (bundle.name + "_report")
    paths = render(bundle, target, formats=fmt, engine=engine, template=template)  # type: ignore[arg-type]
    _say("Report rendered.", "bold green")
    for label, path in paths.items():
        out.print(f"  {label}: {path}")


@app.command()
def reproduce(
    bundle: Annotated[Path, typer.Argument(help="Results bundle folder to check.")],
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Output folder (default: BUNDLE_reproduced).")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="Formats to re-render.")] = "html",
    engine: Annotated[str, typer.Option(help="auto, quarto or builtin.")] = "auto",
    data: Annotated[
        Path | None, typer.Option(help="Extracts folder: re-run the protocol and compare results.")
    ] = None,
    key_file: Annotated[
        Path | None, typer.Option("--key-file", help="Pseudonymisation key file (with --data).")
    ] = None,
) -> None:
    """Check every hash in a bundle and re-render its report; with --data, re-run it too."""
    from spevidence.reproduce import reproduce as _reproduce

    res = _reproduce(
        bundle, out_dir=out_dir, formats=fmt, engine=engine, data=data, key_file=key_file
    )
    _say("Bundle verified:", "bold green", f"{res.files_checked} files match manifest.json.")
    for label, path in res.outputs.items():
        out.print(f"  re-rendered {label}: {path}")
    if res.results_compared and res.results_identical:
        _say("Re-run from data gives identical results.", "bold green")
    elif res.results_compared:
        _say(
            "Re-run from data gives the same results",
            "bold green",
            "(within floating-point noise from row order: every number within one "
            "millionth of its column's scale).",
        )


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
        typer.Option(
            help="Date the registered population is counted and the case-finding score "
            "taken (default: --start for the count; --start + the score's one-year GP "
            "look-back for the score, so that the look-back lies inside the extract)."
        ),
    ] = None,
    period: Annotated[str, typer.Option(help="month or quarter.")] = "month",
    wellby: Annotated[
        bool, typer.Option("--wellby", help="Add the WELLBY valuation (no comparator).")
    ] = False,
    no_disclosure: Annotated[
        bool,
        typer.Option(
            "--no-disclosure", help="Skip disclosure control (secure environment use only)."
        ),
    ] = False,
    wte: Annotated[
        float | None,
        typer.Option(help="Whole-time equivalent of every link worker (default 1.0)."),
    ] = None,
    progress: Annotated[
        bool, typer.Option(help="Show progress: a bar on a terminal, else plain lines.")
    ] = True,
) -> None:
    """Service activity, equity of access, case finding and wellbeing: tables and figures."""
    from spevidence.activity.outputs import activity_outputs, read_activity_extracts, write_outputs
    from spevidence.activity.release import release_tables
    from spevidence.progress import Steps

    if period not in ("month", "quarter"):
        raise SpevidenceError(f"--period must be 'month' or 'quarter', got {period!r}.")
    _out_outside_data(out_dir, data)
    logs: list = []

    def _control(t: dict) -> dict:
        safe, log = release_tables(t)
        logs.append(log)
        return safe

    steps = Steps(progress, ("Reading the extracts", "Counting activity", "Writing"))
    with steps.run():
        ex = read_activity_extracts(data)
        steps.step(1, size=f"{len(ex['referrals']):,} referrals")
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
            control=None if no_disclosure else _control,
        )
        steps.step(2)
        folder = write_outputs(
            out_dir, tables, figures, disclosure_log=None if no_disclosure else logs[0]
        )
        steps.step(3)
    _say(
        "Activity outputs written:",
        "bold green",
        f"{len(tables)} tables, {len(figures)} figures in {folder}",
    )
    if no_disclosure:
        _say(
            "Note:",
            "yellow",
            "--no-disclosure: tables are aggregate but NOT disclosure-controlled; do not "
            "release them outside the secure environment.",
            console=err,
        )


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


def _row_loss(value: float | None) -> float:
    from spevidence.data.coverage import MAX_ROW_LOSS

    return MAX_ROW_LOSS if value is None else value


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
    max_row_loss: MaxRowLoss = None,
) -> None:
    """Check the extracts against their contracts: QA findings and the row attrition."""
    from spevidence.data import read_extracts
    from spevidence.data import validate as _validate
    from spevidence.identity import load_key

    if out_dir is not None:
        _out_outside_data(out_dir, data)
    key = load_key(key_file) if ids == "nhs_number" else None
    ex = read_extracts(data, date_format=date_format)
    loss = _row_loss(max_row_loss)
    _, qa, attrition = _validate(ex, start=start, end=end, ids=ids, key=key, max_row_loss=loss)  # type: ignore[arg-type]
    out.print(qa.summary(), highlight=False)
    out.print(attrition.summary(), highlight=False)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        for name, table in (("qa.csv", qa.table()), ("attrition.csv", attrition.table())):
            with atomic_file(out_dir / name, stage="writing the QA findings") as tmp:
                table.to_csv(tmp, index=False)
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
    progress: Annotated[
        bool, typer.Option(help="Show progress: a bar on a terminal, else plain lines.")
    ] = True,
    memory_limit: MemoryLimit = None,
    max_row_loss: MaxRowLoss = None,
) -> None:
    """Validate the extracts and build the person x period panel (Parquet)."""
    from spevidence.data import read_extracts
    from spevidence.data import validate as _validate
    from spevidence.identity import load_key
    from spevidence.link import build_panel
    from spevidence.memory import guard
    from spevidence.progress import Steps

    limit = _memory_limit(memory_limit)
    _out_outside_data(panel_out.parent, data)
    key = load_key(key_file) if ids == "nhs_number" else None
    steps = Steps(progress, ("Reading and validating the extracts", "Linking", "Writing"))
    with steps.run(), guard(limit, lambda: steps.current):
        ex = read_extracts(data, date_format=date_format)
        loss = _row_loss(max_row_loss)
        clean, qa, attrition = _validate(
            ex,
            start=start,
            end=end,
            ids=ids,  # type: ignore[arg-type]
            key=key,
            max_row_loss=loss,
        )
        steps.step(1, size=f"{int(clean['population'].count().execute()):,} people")
        panel = build_panel(
            clean,
            start=start,
            end=end,
            period=period,  # type: ignore[arg-type]
            backend=engine,
            cache=False,  # written once: nothing to keep
        )
        steps.step(2)
        panel_out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(panel_out, stage="writing the panel") as tmp:
            panel.to_parquet(tmp)
        steps.step(3)
    out.print(qa.summary(), highlight=False)
    out.print((attrition + panel.attrition).summary(), highlight=False)
    out.print(f"Written: {panel_out}", highlight=False)


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

    from spevidence.protocol.constants import MAX_SIMS
    from spevidence.sroi import evaluate, from_did, link_worker_inputs

    if not effects.is_file():
        raise SpevidenceError(f"{effects}: no such file; give the CSV of DiD estimates.")
    if n_sims > MAX_SIMS:
        raise SpevidenceError(
            f"--n-sims {n_sims:,} is more than the {MAX_SIMS:,} Monte Carlo draws allowed "
            "(each holds a value per outcome and year in memory); 5,000 is plenty."
        )
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


def _out_outside_data(out_dir: Path, data: Path) -> None:
    """Refuse an output folder equal to or inside the extracts folder: the run cache and
    the panel (pseudonyms) and the outputs would be written among the extracts."""
    o, d = out_dir.resolve(), data.resolve()
    if o == d or d in o.parents:
        raise SpevidenceError(
            f"--out {out_dir} is the data folder {data} or inside it: outputs (and for run "
            "and link, files that hold pseudonyms) would be written among the extracts. Give "
            "an output folder outside the data folder, e.g. --out out/run."
        )


@app.command()
def run(
    protocol: Annotated[Path, typer.Argument(help="Protocol YAML (see 'spevidence init').")],
    data: Annotated[Path, typer.Option("--data", help="Folder of extracts (Parquet or CSV).")],
    out_dir: Annotated[Path, typer.Option("--out", help="Output folder.")] = Path("out/run"),
    engine: Annotated[
        str, typer.Option(help="duckdb (embedded, default) or spark (PySpark local mode).")
    ] = "duckdb",
    key_file: Annotated[
        Path | None,
        typer.Option("--key-file", help="Pseudonymisation key file (protocol ids: nhs_number)."),
    ] = None,
    fmt: Annotated[
        str | None, typer.Option("--format", help="Report formats, e.g. html,pdf,docx.")
    ] = None,
    progress: Annotated[
        bool, typer.Option(help="Show progress: a bar on a terminal, else a line per stage.")
    ] = True,
    no_cache: Annotated[
        bool,
        typer.Option(
            "--no-cache",
            help="Recompute every stage; do not read or write OUT/.spevidence-cache "
            "(the stage cache, which holds pseudonyms and never enters the bundle).",
        ),
    ] = False,
    memory_limit: MemoryLimit = None,
) -> None:
    """Run an evaluation protocol end to end: bundle and report.

    Re-running with unchanged inputs reuses the finished panel, matching and
    estimates from OUT/.spevidence-cache (use --no-cache to recompute them)."""
    from spevidence.pipeline import run as _run

    _memory_limit(memory_limit)
    if engine not in ("duckdb", "spark"):
        raise SpevidenceError(f"--engine must be duckdb or spark, not {engine!r}.")
    _out_outside_data(out_dir, data)
    formats = tuple(f.strip() for f in fmt.split(",") if f.strip()) if fmt else None
    res = _run(
        protocol,
        data,
        out_dir,
        engine=engine,  # type: ignore[arg-type]
        key_file=key_file,
        formats=formats,
        progress=progress,
        cache=not no_cache,
    )
    if res.reused:
        out.print(f"Reused from the run cache: {', '.join(res.reused)}")
    _say("Evaluation finished.", "bold green")
    out.print(f"  bundle: {res.bundle}")
    for label, path in res.reports.items():
        out.print(f"  report ({label}): {path}")


@app.command()
def check(
    protocol: Annotated[Path, typer.Argument(help="Protocol YAML to validate.")],
) -> None:
    """Validate a protocol file and print its hash."""
    from spevidence.protocol import load_protocol, protocol_hash

    p = load_protocol(protocol)
    _say("Protocol is valid:", "bold green", f"{p.name} ({p.start} to {p.end}, {p.period})")
    out.print(f"  sha256: {protocol_hash(p)}")


@app.command()
def init(
    path: Annotated[Path, typer.Argument(help="Where to write the protocol.")] = Path(
        "protocol.yaml"
    ),
    force: Annotated[bool, typer.Option(help="Overwrite an existing file.")] = False,
) -> None:
    """Write a fully commented protocol to edit."""
    if path.exists() and not force:
        raise SpevidenceError(f"{path} already exists; choose another path or pass --force.")
    text = files("spevidence.protocol").joinpath("template.yaml").read_text(encoding="utf-8")
    path.write_text(text, encoding="utf-8")
    out.print(f"Wrote {path}. Edit it, then check it with: spevidence check {path}")


@app.command()
def cite(
    fmt: Annotated[
        str, typer.Option("--format", help="text (one line) or bibtex.", case_sensitive=False)
    ] = "text",
) -> None:
    """Print how to cite spevidence (from CITATION.cff)."""
    from spevidence._cite import cite as _cite

    fmt = fmt.lower()
    if fmt not in ("text", "bibtex"):
        raise SpevidenceError(f"--format must be text or bibtex, not {fmt!r}.")
    out.print(_cite(format=fmt), highlight=False, soft_wrap=True, markup=False)  # type: ignore[arg-type]


def _os_message(exc: OSError) -> str:
    """An operating-system error (disk full, permission denied) as one paragraph."""
    what = exc.strerror or "input/output error"
    where = f" on {exc.filename}" if exc.filename else ""
    return (
        f"{what}{where}. Check the path, its permissions and the free disk space, then "
        "run the command again."
    )


def _warning_line(message: Warning | str, *_: object, **__: object) -> None:
    """A warning as one line on stderr (no source path, line or code)."""
    err.print(f"Warning: {message}", markup=False, highlight=False, soft_wrap=True)


def main() -> None:
    """Entry point: user errors exit 1 with a message, never a traceback; usage errors exit 2;
    an unexpected error (a bug) exits 3 naming only its type (its message could hold a
    value from the data); SPEVIDENCE_DEBUG=1 shows the traceback instead. Warnings are
    one line each."""
    warnings.showwarning = _warning_line
    try:
        app()
    except SpevidenceError as exc:
        _say("Error:", "bold red", exc, console=err)
        sys.exit(1)
    except Exception as exc:
        if (code := disk_errno(exc)) not in (None, errno.EACCES, errno.EPERM):
            # a full or read-only disk anywhere: one clear paragraph
            name = getattr(exc, "filename", None)
            shown = Path(name) if isinstance(name, str) else None
            cmd = " ".join(["spevidence", *sys.argv[1:2]])
            msg = disk_error(code, stage=f"running '{cmd}'", shown=shown, atomic=False)
            _say("Error:", "bold red", msg, console=err)
            sys.exit(1)
        if isinstance(exc, OSError):
            _say("Error:", "bold red", _os_message(exc), console=err)
            sys.exit(1)
        if os.environ.get("SPEVIDENCE_DEBUG"):
            raise
        _say(
            "Internal error:",
            "bold red",
            f"an unexpected {type(exc).__name__} stopped spevidence. This is a bug: please "
            "report it with the command you ran; SPEVIDENCE_DEBUG=1 shows the traceback "
            "(it may hold values from your data: do not share it outside the secure "
            "environment).",
            console=err,
        )
        sys.exit(3)
