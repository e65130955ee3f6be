"""Orchestration: chunks -> defects -> Arrow tables -> Parquet/CSV files + truth.json."""

from __future__ import annotations

import datetime as dt
import json
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from spevidence._version import __version__
from spevidence.data.schema import TABLES, UNPLANNED_METHODS_DEFAULT, Table
from spevidence.progress import Lines, on_terminal
from spevidence.synthetic._engine import (
    DAYS_PER_MONTH,
    DEPT,
    ELECTIVE,
    MODE,
    NEVER,
    REF_OUTCOMES,
    ROLE,
    SNOMED_DECLINED,
    SNOMED_REFERRAL,
    SOURCES,
    STATUS,
    UNPLANNED,
    Chunk,
    Truth,
    simulate_chunk,
)
from spevidence.synthetic._ids import IdSpace
from spevidence.synthetic._scenario import (
    OUTCOMES,
    Defects,
    Scenario,
    ScenarioError,
    Window,
    load_scenario,
)
from spevidence.synthetic._structure import (
    ETHNICITY,
    build_structure,
    date_of,
    days,
    months_of,
    outcome_norms,
)

CHUNK_PERSONS = 100_000  # fixed: output must not depend on the machine
EXTRACTS = ("population", "referrals", "gp_appointments", "ae_attendances", "admissions")
METHODS = (*UNPLANNED, *ELECTIVE, "2B")
FRAILTY = ("fit", "mild", "moderate", "severe")
EVENT_TABLES = ("gp_appointments", "ae_attendances", "admissions")

_KIND_TYPE = {
    "id": pa.string(),
    "str": pa.string(),
    "int": pa.int64(),
    "date": pa.date32(),
    "float": pa.float64(),
    "bool": pa.bool_(),
}


def arrow_schema(table: Table, *, string_dates: bool = False) -> pa.Schema:
    """The Arrow schema of an extract (all columns of ``schema.py``, in order)."""
    fields = []
    for c in table.columns:
        t = _KIND_TYPE[c.kind]
        if string_dates and c.name == table.date_column:
            t = pa.string()
        fields.append(pa.field(c.name, t, nullable=c.nullable or not c.required))
    return pa.schema(fields)


def _dates(day: np.ndarray) -> pa.Array:
    null = day >= NEVER
    vals = np.where(null, 0, day).astype(np.int32)
    return pa.array(vals, type=pa.int32(), mask=null if null.any() else None).cast(pa.date32())


def _cat(labels: tuple[str, ...] | list[str] | pa.Array, codes: np.ndarray) -> pa.Array:
    """A dictionary-encoded string column (written to Parquet as plain strings)."""
    null = codes < 0
    idx = pa.array(np.where(null, 0, codes).astype(np.int32), mask=null if null.any() else None)
    dictionary = labels if isinstance(labels, pa.Array) else pa.array(list(labels), pa.string())
    return pa.DictionaryArray.from_arrays(idx, dictionary)


def _plain(schema: pa.Schema) -> pa.Schema:
    """The schema with dictionary columns replaced by their value type."""
    return pa.schema(
        [
            pa.field(f.name, f.type.value_type if pa.types.is_dictionary(f.type) else f.type)
            for f in schema
        ]
    )


def _bool(x: np.ndarray, null: np.ndarray | None = None) -> pa.Array:
    return pa.array(x.astype(bool), type=pa.bool_(), mask=null)


@dataclass(frozen=True)
class SyntheticICB:
    """Result of :func:`generate`: where the extracts are, their row counts and the truth.

    Attributes
    ----------
    out : Path
        The output folder.
    files : dict[str, Path]
        Table name (and ``"truth"``) -> file written.
    truth : dict
        The contents of ``truth.json``: every parameter, the true effects (nominal rate
        ratios and the realised ATT among accepted referrals), cohort sizes and the
        defects injected.
    rows : dict[str, int]
        Rows written per table.
    scenario, seed, persons, format
        The arguments that produced it.
    """

    out: Path
    files: dict[str, Path]
    truth: dict[str, Any]
    rows: dict[str, int]
    scenario: str
    seed: int
    persons: int
    format: str

    def tidy(self) -> Any:
        """One row per file written: table, path, rows."""
        import pandas as pd

        return pd.DataFrame(
            {
                "table": list(self.files),
                "path": [str(p) for p in self.files.values()],
                "rows": [self.rows.get(k, 0) for k in self.files],
            }
        )

    def glance(self) -> Any:
        """One row: scenario, seed, persons, referrals and the true rate ratios."""
        import pandas as pd

        c = self.truth["cohort"]
        row: dict[str, Any] = {
            "scenario": self.scenario,
            "seed": self.seed,
            "persons": self.persons,
            "referred": c["referred"],
            "accepted": c["accepted"],
        }
        for o in OUTCOMES:
            row[f"rr_{o}"] = self.truth["effects"]["rate_ratio"][o]
        return pd.DataFrame([row])

    def summary(self) -> str:
        """A few lines describing the generated ICB and its true effects."""
        t = self.truth
        lines = [
            f"Synthetic ICB '{self.scenario}' (seed {self.seed}): {self.persons:,} people, "
            f"{t['window']['start']} to {t['window']['end']}, {self.format} in {self.out}",
            f"  referred {t['cohort']['referred']:,}, accepted {t['cohort']['accepted']:,}",
        ]
        for o in OUTCOMES:
            a = t["att"][o]
            lines.append(
                f"  {o}: true rate ratio {t['effects']['rate_ratio'][o]:.3f} "
                f"(realised {a['rate_ratio']:.3f}), ATT {a['att_per_person_month']:+.4f} "
                "per person-month"
            )
        lines += [f"  {k}: {v:,} rows" for k, v in self.rows.items()]
        return "\n".join(lines)

    def plot(self) -> Any:
        """GP use by month around referral, referred vs not (see :func:`plot_around_referral`)."""
        from spevidence.synthetic._plot import plot_around_referral

        return plot_around_referral(self.out, fmt=self.format)  # type: ignore[arg-type]


@dataclass
class _Sink:
    """One output file, opened at the first chunk. Parquet is written without the Arrow
    schema blob, so dictionary-encoded columns read back as plain strings."""

    path: Path
    fmt: str
    drop: str | None = None
    rows: int = 0
    schema: pa.Schema | None = None
    _writer: Any = field(default=None, repr=False)

    def write(self, table: pa.Table) -> None:
        if self.drop is not None:
            table = table.drop_columns([self.drop])
        if self.fmt == "csv":
            table = table.cast(_plain(table.schema))
        if self._writer is None:
            self.schema = table.schema
            if self.fmt == "parquet":
                self._writer = pq.ParquetWriter(
                    str(self.path),
                    table.schema,
                    compression="zstd",
                    compression_level=1,
                    store_schema=False,
                )
            else:
                opts = pacsv.WriteOptions(include_header=True, quoting_style="needed")
                self._writer = pacsv.CSVWriter(str(self.path), table.schema, write_options=opts)
        elif table.schema != self.schema:
            table = table.cast(self.schema)
        if table.num_rows:
            self._writer.write_table(table)
        self.rows += table.num_rows

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def _as_date(x: str | dt.date | None) -> dt.date | None:
    if x is None or isinstance(x, dt.date):
        return x
    try:
        return dt.date.fromisoformat(str(x))
    except ValueError:
        raise ScenarioError(f"Date {x!r} is not YYYY-MM-DD; give e.g. 2021-04-01.") from None


def generate(
    scenario: str | Path | Scenario,
    *,
    persons: int | None = None,
    seed: int = 1,
    out: str | Path,
    format: Literal["parquet", "csv"] = "parquet",
    start: str | dt.date | None = None,
    end: str | dt.date | None = None,
    identifiers: Literal["nhs_number", "pseudonym"] | None = None,
    progress: bool = False,
) -> SyntheticICB:
    """Generate a synthetic ICB: the five extracts (plus wellbeing) and ``truth.json``.

    People are simulated month by month in fixed chunks of 100,000 and streamed to disk,
    so memory stays bounded at any scale. Each person has a gamma frailty shared by GP,
    A&E and emergency-admission rates (a correlated gamma-Poisson model, Lawless 1987),
    with age, sex and deprivation gradients, seasonality, transient episodes of high
    use, registration churn and deaths. Referral hazards rise with *observed* recent GP
    counts (as the GP sees them in the record), which are often transient, so referred
    people regress to the mean afterwards (Barnett, van der Pols &
    Dobson 2005, Int J Epidemiol 34:215) even when link workers change nothing; the true
    effect multiplies the rates of accepted referrals from the referral date, with a
    linear ramp-up.

    Parameters
    ----------
    scenario
        Scenario name (``synthetic/NAME.yaml``), path to a YAML file, or a Scenario.
    persons
        People in the registered population (default: the scenario's).
    seed
        Random seed; same arguments give byte-identical files.
    out
        Output folder (created). Extract files and ``truth.json`` of an earlier run in it
        are replaced; other files are left alone.
    format
        ``"parquet"`` (dates as date32) or ``"csv"`` (ISO dates unless a defect says not).
    start, end
        Override the scenario's window (``YYYY-MM-DD``).
    identifiers
        Override the scenario's identifier kind (NHS numbers hold at most 909,091 people).
    progress
        Show progress on stderr: a bar on a terminal, else a line per chunk of people.

    Returns
    -------
    SyntheticICB
        ``.out``, ``.files`` (name -> path), ``.truth`` (as in truth.json), ``.rows``.
    """
    sc, n_persons = _checked_scenario(scenario, persons, start, end, identifiers, format)
    ids = _id_space(sc, seed, n_persons)
    out_dir = Path(out)
    sinks = _open_sinks(out_dir, sc, format)
    st = build_structure(sc, n_persons, seed, sc.window.start)
    truth, realised, injected = _write_chunks(
        sc, st, ids, sinks, seed=seed, n_persons=n_persons, format=format, progress=progress
    )
    files = {name: s.path for name, s in sinks.items()}
    rows = {name: s.rows for name, s in sinks.items()}
    truth_doc = _truth_doc(sc, st, seed, n_persons, format, truth, realised, injected, rows)
    truth_path = out_dir / "truth.json"
    truth_path.write_text(json.dumps(truth_doc, indent=2, sort_keys=True) + "\n", "utf-8")
    files["truth"] = truth_path
    return SyntheticICB(
        out=out_dir,
        files=files,
        truth=truth_doc,
        rows=rows,
        scenario=sc.name,
        seed=seed,
        persons=n_persons,
        format=format,
    )


def _checked_scenario(
    scenario: str | Path | Scenario,
    persons: int | None,
    start: str | dt.date | None,
    end: str | dt.date | None,
    identifiers: Literal["nhs_number", "pseudonym"] | None,
    format: str,
) -> tuple[Scenario, int]:
    """The scenario with the call's overrides, and the number of people; ScenarioError
    for a window, format, size or defect that cannot be generated."""
    sc = load_scenario(scenario)
    s0, e0 = _as_date(start) or sc.window.start, _as_date(end) or sc.window.end
    if e0 <= s0:
        raise ScenarioError(f"The window end ({e0}) must be after its start ({s0}).")
    upd: dict[str, Any] = {"window": Window(start=s0, end=e0)}
    if identifiers is not None:
        upd["identifiers"] = identifiers
    sc = sc.model_copy(update=upd)
    if sc.identifiers == "pseudonym" and sc.defects.invalid_nhs_number > 0:
        raise ScenarioError("The invalid_nhs_number defect needs identifiers: nhs_number.")
    if format not in ("parquet", "csv"):
        raise ScenarioError(f"format must be 'parquet' or 'csv', not {format!r}.")
    n_persons = sc.persons if persons is None else int(persons)
    if n_persons < 1:
        raise ScenarioError(f"persons must be at least 1 (got {n_persons}).")
    date_defects = sc.defects.mixed_date_formats > 0 or sc.defects.unparseable_dates > 0
    if date_defects and format != "csv":
        raise ScenarioError(
            f"Scenario '{sc.name}' injects date-format defects, which only CSV can hold; "
            "use format='csv' (--format csv)."
        )
    mc = sc.defects.missing_column
    if mc is not None:
        if mc.table == "wellbeing" and sc.wellbeing is None:
            raise ScenarioError("defects.missing_column names wellbeing, but there is none.")
        if mc.column not in TABLES[mc.table].names:
            raise ScenarioError(
                f"defects.missing_column: table {mc.table} has no column {mc.column!r}; "
                f"choose one of {', '.join(TABLES[mc.table].names)}."
            )
    return sc, n_persons


def _id_space(sc: Scenario, seed: int, n_persons: int) -> IdSpace:
    """The identifiers of the run; ScenarioError when NHS numbers cannot hold them."""
    ids = IdSpace(sc.identifiers, seed)
    n_chunks = -(-n_persons // CHUNK_PERSONS)
    if n_persons + CHUNK_PERSONS * n_chunks > ids.capacity and sc.identifiers == "nhs_number":
        raise ScenarioError(
            f"{n_persons:,} people is more than the 999 test range of NHS numbers can hold "
            f"(about {ids.capacity - CHUNK_PERSONS * n_chunks:,} here); use identifiers "
            "'pseudonym' (--identifiers pseudonym) or fewer persons."
        )
    return ids


def _open_sinks(out_dir: Path, sc: Scenario, format: str) -> dict[str, _Sink]:
    """One sink per table in a fresh output folder (our own files of an earlier run, in
    either format, are removed so no stale table remains; other files stay)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in [*EXTRACTS, "wellbeing"]:
        for suffix in ("parquet", "csv"):
            (out_dir / f"{stale}.{suffix}").unlink(missing_ok=True)
    (out_dir / "truth.json").unlink(missing_ok=True)
    names = list(EXTRACTS) + (["wellbeing"] if sc.wellbeing is not None else [])
    ext = "parquet" if format == "parquet" else "csv"
    mc = sc.defects.missing_column
    return {
        name: _Sink(
            out_dir / f"{name}.{ext}",
            format,
            drop=mc.column if mc is not None and mc.table == name else None,
        )
        for name in names
    }


def _write_chunks(
    sc: Scenario,
    st: Any,
    ids: IdSpace,
    sinks: dict[str, _Sink],
    *,
    seed: int,
    n_persons: int,
    format: str,
    progress: bool,
) -> tuple[Truth, dict[str, int], dict[str, dict[str, int]]]:
    """Simulate the people chunk by chunk and write each chunk's tables; returns the
    truth's accumulators, the realised outcome counts and the injected defects."""
    window = (sc.window.start, sc.window.end)
    norms = outcome_norms(sc, st)
    months = months_of(*window)
    truth = Truth.empty()
    realised = {o: 0 for o in OUTCOMES}
    injected: dict[str, dict[str, int]] = {}

    bar = _Progress(f"synth {sc.name}", n_persons) if progress else None

    def emit(chunk: Chunk, ci: int, first: int) -> None:
        # runs on the writer thread, one chunk at a time and in order
        _count_realised(chunk, realised)
        drng = np.random.default_rng([seed, 3, ci])
        tables = _to_tables(
            chunk, sc, st, ids, first, n_persons, ci, window, drng, injected, format
        )
        for name, tbl in tables.items():
            sinks[name].write(tbl)
        if bar is not None:
            bar.advance(chunk.n)

    # Simulation of chunk k+1 overlaps with writing chunk k (numpy and Arrow release the
    # GIL); at most two chunks are in memory, and files are written in chunk order.
    pending: Future[None] | None = None
    try:
        with ThreadPoolExecutor(max_workers=1) as writer:
            for ci in range(-(-n_persons // CHUNK_PERSONS)):
                first = ci * CHUNK_PERSONS
                n = min(CHUNK_PERSONS, n_persons - first)
                rng = np.random.default_rng([seed, 1, ci])
                chunk = simulate_chunk(
                    sc, st, norms, months, window, n, rng, np.random.default_rng([seed, 4, ci])
                )
                truth.merge(chunk.truth)
                if pending is not None:
                    pending.result()
                pending = writer.submit(emit, chunk, ci, first)
                del chunk
            if pending is not None:
                pending.result()
    finally:
        for s in sinks.values():
            s.close()
        if bar is not None:
            bar.stop()

    return truth, realised, injected


class _Progress:
    """People written so far, on standard error: a bar on a terminal, else a plain line
    per chunk (spevidence.progress)."""

    def __init__(self, label: str, total: int) -> None:
        self.label, self.total, self.n = label, total, 0
        self.lines = None if on_terminal() else Lines()
        self.bar: Any = None
        if self.lines is not None:
            self.lines.say(f"start {label}: {total:,} people")
        else:
            from rich.console import Console
            from rich.progress import Progress

            self.bar = Progress(transient=True, console=Console(stderr=True))
            self.bar.start()
            self.task = self.bar.add_task(label, total=total)

    def advance(self, n: int) -> None:
        self.n += n
        if self.lines is not None:
            self.lines.say(f"{self.label}: {self.n:,} of {self.total:,} people written")
        else:
            self.bar.update(self.task, advance=n)

    def stop(self) -> None:
        if self.lines is not None:
            word = "done " if self.n >= self.total else "stopped"
            self.lines.say(f"{word} {self.label}: {self.n:,} people")
        else:
            self.bar.stop()


def _count_realised(chunk: Chunk, realised: dict[str, int]) -> None:
    g = chunk.gp
    realised["gp"] += int(((g["status"] == 0) & (g["role"] == 0)).sum())
    realised["ae"] += len(chunk.ae["person"])
    unplanned = np.isin(np.array(METHODS)[chunk.adm["method"]], UNPLANNED_METHODS_DEFAULT)
    realised["admissions"] += int(unplanned.sum())


def _bump(injected: dict[str, dict[str, int]], key: str, **counts: int) -> None:
    d = injected.setdefault(key, {})
    for k, v in counts.items():
        d[k] = d.get(k, 0) + int(v)


def _to_tables(
    chunk: Chunk,
    sc: Scenario,
    st: Any,
    ids: IdSpace,
    first: int,
    n_persons: int,
    ci: int,
    window: tuple[dt.date, dt.date],
    drng: np.random.Generator,
    injected: dict[str, dict[str, int]],
    fmt: str,
) -> dict[str, pa.Table]:
    dfx = sc.defects
    w0, w1 = days(window[0]), days(window[1])
    pid = _person_ids(chunk.n, first, ids, dfx, drng, injected)
    gp, ae, adm = dict(chunk.gp), dict(chunk.ae), dict(chunk.adm)
    if dfx.duplicate_events > 0:
        gp, ae, adm = _duplicate_event_rows(gp, ae, adm, dfx.duplicate_events, drng, injected)
    gp = _extra_gp_rows(gp, chunk.pop, w0, w1, dfx, drng, injected)
    if dfx.negative_length_of_stay > 0:
        adm = _negative_stays(adm, dfx.negative_length_of_stay, drng, injected)
    out = {
        "population": _population_table(chunk.pop, chunk.n, pid, st),
        "referrals": _referral_table(
            chunk, pid, ids, first, n_persons, dfx.referrals_not_in_population, drng, injected
        ),
        **_event_tables(gp, ae, adm, pid),
    }
    if chunk.wb is not None:
        out["wellbeing"] = _wellbeing_table(chunk.wb, sc, pid)
    if dfx.mixed_date_formats > 0 or dfx.unparseable_dates > 0:
        out = _date_defects(out, dfx.mixed_date_formats, dfx.unparseable_dates, drng, injected)
    return out


def _person_ids(
    n: int,
    first: int,
    ids: IdSpace,
    dfx: Defects,
    drng: np.random.Generator,
    injected: dict[str, dict[str, int]],
) -> pa.Array:
    """Identifiers of the chunk's people (invalid NHS numbers are consistent across
    all tables)."""
    invalid = None
    if dfx.invalid_nhs_number > 0:
        invalid = drng.random(n) < dfx.invalid_nhs_number
        _bump(injected, "invalid_nhs_number", persons=int(invalid.sum()), eligible=n)
    return ids.ids(np.arange(first, first + n), invalid=invalid)


def _duplicate_event_rows(
    gp: dict[str, np.ndarray],
    ae: dict[str, np.ndarray],
    adm: dict[str, np.ndarray],
    share: float,
    drng: np.random.Generator,
    injected: dict[str, dict[str, int]],
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Duplicate a share of the (clean) event rows of each event table."""
    out = []
    for name, tab in (("gp_appointments", gp), ("ae_attendances", ae), ("admissions", adm)):
        m = len(tab["person"])
        dup = drng.random(m) < share
        reps = 1 + dup.astype(np.int64)
        out.append({key: np.repeat(v, reps) for key, v in tab.items()})
        _bump(
            injected,
            "duplicate_events",
            **{f"{name}_rows": int(dup.sum())},
            **{f"{name}_eligible": m},
        )
    return out[0], out[1], out[2]


def _extra_gp_rows(
    gp: dict[str, np.ndarray],
    p: dict[str, np.ndarray],
    w0: int,
    w1: int,
    dfx: Defects,
    drng: np.random.Generator,
    injected: dict[str, dict[str, int]],
) -> dict[str, np.ndarray]:
    """GP rows with the extra rows after death / outside registration, in (person,
    day) order (unchanged without those defects)."""
    extra_p: list[np.ndarray] = []
    extra_d: list[np.ndarray] = []
    if dfx.events_after_death > 0:
        elig = np.flatnonzero(p["death"] < w1)
        sel = elig[drng.random(len(elig)) < dfx.events_after_death]
        dd = p["death"][sel]
        extra_p.append(sel)
        extra_d.append(dd + 1 + (drng.random(len(sel)) * (w1 - dd)).astype(np.int64))
        _bump(injected, "events_after_death", persons=len(sel), rows=len(sel), eligible=len(elig))
    if dfx.events_outside_registration > 0:
        sel, d, n_elig = _days_outside_registration(
            p, w0, w1, dfx.events_outside_registration, drng
        )
        extra_p.append(sel)
        extra_d.append(d)
        _bump(
            injected,
            "events_outside_registration",
            persons=len(sel),
            rows=len(sel),
            eligible=n_elig,
        )
    if not extra_p:
        return gp
    ep = np.concatenate(extra_p)
    ed = np.concatenate(extra_d)
    k = len(ep)
    zeros = np.zeros(k, np.int64)
    for key, val in (
        ("person", ep),
        ("day", ed),
        ("status", zeros),
        ("role", zeros),
        ("mode", zeros),
    ):
        gp[key] = np.concatenate([gp[key], val])
    order = np.lexsort((gp["day"], gp["person"]))
    return {k2: v[order] for k2, v in gp.items()}


def _days_outside_registration(
    p: dict[str, np.ndarray], w0: int, w1: int, share: float, drng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, int]:
    """People (a share of those registered for part of the window) and a day of theirs
    in the window outside registration; and how many were eligible."""
    before = p["reg_start"] > w0
    after = (p["reg_end"] < w1) & (p["death"] == NEVER)
    gap = p["g0"] < NEVER
    elig = np.flatnonzero(before | after | gap)
    sel = elig[drng.random(len(elig)) < share]
    u = drng.random(len(sel))
    rs, re_ = p["reg_start"][sel], p["reg_end"][sel]
    g0, g1 = p["g0"][sel], p["g1"][sel]
    d = np.where(
        gap[sel],
        g0 + (u * (np.minimum(g1, w1) - g0 + 1)).astype(np.int64),
        np.where(
            before[sel],
            w0 + (u * (rs - w0)).astype(np.int64),
            re_ + 1 + (u * (w1 - np.minimum(re_, w1))).astype(np.int64),
        ),
    )
    return sel, d, len(elig)


def _negative_stays(
    adm: dict[str, np.ndarray],
    share: float,
    drng: np.random.Generator,
    injected: dict[str, dict[str, int]],
) -> dict[str, np.ndarray]:
    """Admissions with a share of discharges moved before admission."""
    has = adm["discharge"] < NEVER
    neg = has & (drng.random(len(has)) < share)
    adm["discharge"] = np.where(neg, adm["day"] - drng.integers(1, 6, len(has)), adm["discharge"])
    _bump(injected, "negative_length_of_stay", rows=int(neg.sum()), eligible=int(has.sum()))
    return adm


def _population_table(p: dict[str, np.ndarray], n: int, pid: pa.Array, st: Any) -> pa.Table:
    """One population row per registration spell (a re-registration adds a row)."""
    lsoa_dict = pa.array(st.lsoa_codes, type=pa.string())
    sex = np.where(p["male"], 1, 0)
    two = p["g0"] < NEVER
    row = np.repeat(np.arange(n), 1 + two.astype(np.int64))
    second = np.zeros(len(row), dtype=bool)
    second[1:] = row[1:] == row[:-1]
    first_of_two = two[row] & ~second
    practice = np.where(second, p["practice2"][row], p["practice"][row])
    reg_start = np.where(second, p["g1"][row] + 1, p["reg_start"][row])
    reg_end = np.where(first_of_two, p["g0"][row] - 1, p["reg_end"][row])
    return pa.table(
        {
            "person_id": pid.take(pa.array(row)) if two.any() else pid,
            "practice_code": _cat(tuple(st.practice_codes), practice),
            "pcn_code": _cat(tuple(st.pcn_codes), st.practice_pcn[practice]),
            "sex": _cat(("F", "M"), sex[row]),
            "year_of_birth": pa.array(p["yob"][row].astype(np.int64)),
            "registration_start": _dates(reg_start),
            "registration_end": _dates(reg_end),
            "death_date": _dates(p["death"][row]),
            "imd_decile": pa.array(p["imd"][row].astype(np.int64)),
            "lsoa": _cat(lsoa_dict, p["lsoa"][row]),
            "ethnicity_group": _cat(ETHNICITY, p["eth"][row]),
            "living_alone": _bool(p["living_alone"][row]),
            "widowed": _bool(p["widowed"][row]),
            "frailty": _cat(FRAILTY, p["efi"][row]),
            "falls": _bool(p["falls"][row]),
            "stroke": _bool(p["stroke"][row]),
            "copd": _bool(p["copd"][row]),
            "heart_failure": _bool(p["hf"][row]),
        }
    )


def _referral_table(
    chunk: Chunk,
    pid: pa.Array,
    ids: IdSpace,
    first: int,
    n_persons: int,
    ghost_share: float,
    drng: np.random.Generator,
    injected: dict[str, dict[str, int]],
) -> pa.Table:
    """Referral rows, with a share copied to people not in the population (a defect)."""
    r = chunk.ref
    nr = len(r["person"])
    ref_pid = _cat(pid, r["person"])
    if ghost_share > 0 and nr:
        k = int(drng.binomial(nr, ghost_share))
        src = drng.integers(0, nr, k)
        ghost = ids.ids(n_persons + first + np.arange(k))
        ref_pid = _cat(
            pa.concat_arrays([pid, ghost]), np.concatenate([r["person"], chunk.n + np.arange(k)])
        )
        r = {key: np.concatenate([v, v[src]]) for key, v in r.items()}
        _bump(injected, "referrals_not_in_population", rows=k, eligible=nr)
    lw_codes = r["link_worker"]
    lw_labels = (
        tuple(f"LW{i // 10:04d}{i % 10}" for i in range(int(lw_codes.max()) + 1))
        if len(lw_codes)
        else ("",)
    )
    return pa.table(
        {
            "person_id": ref_pid,
            "referral_date": _dates(r["referral_date"]),
            "referral_source": _cat(SOURCES, r["referral_source"]),
            "outcome": _cat(REF_OUTCOMES, r["outcome"]),
            "first_contact_date": _dates(r["first_contact_date"]),
            "contacts": pa.array(r["contacts"].astype(np.int64), mask=r["contacts"] < 0),
            "discharge_date": _dates(r["discharge_date"]),
            "snomed_code": _cat((SNOMED_REFERRAL, SNOMED_DECLINED), r["snomed"]),
            "link_worker_id": _cat(lw_labels, r["link_worker"]),
        }
    )


def _event_tables(
    gp: dict[str, np.ndarray],
    ae: dict[str, np.ndarray],
    adm: dict[str, np.ndarray],
    pid: pa.Array,
) -> dict[str, pa.Table]:
    """The GP appointment, A&E attendance and admission tables."""
    gpt = pa.table(
        {
            "person_id": _cat(pid, gp["person"]),
            "appointment_date": _dates(gp["day"]),
            "status": _cat(STATUS, gp["status"]),
            "staff_role": _cat(ROLE, gp["role"]),
            "mode": _cat(MODE, gp["mode"]),
        }
    )
    aet = pa.table(
        {
            "person_id": _cat(pid, ae["person"]),
            "arrival_date": _dates(ae["day"]),
            "department_type": _cat(DEPT, ae["dept"]),
        }
    )
    admt = pa.table(
        {
            "person_id": _cat(pid, adm["person"]),
            "admission_date": _dates(adm["day"]),
            "discharge_date": _dates(adm["discharge"]),
            "admission_method": _cat(METHODS, adm["method"]),
        }
    )
    return {"gp_appointments": gpt, "ae_attendances": aet, "admissions": admt}


def _wellbeing_table(wb: dict[str, np.ndarray], sc: Scenario, pid: pa.Array) -> pa.Table:
    """Wellbeing scores, one row per person and measurement."""
    instrument = sc.wellbeing.instrument if sc.wellbeing is not None else "swemwbs"
    return pa.table(
        {
            "person_id": _cat(pid, wb["person"]),
            "measured_date": _dates(wb["day"]),
            "instrument": _cat((instrument,), np.zeros(len(wb["person"]), np.int64)),
            "score": pa.array(wb["score"], type=pa.float64()),
        }
    )


def _date_defects(
    out: dict[str, pa.Table],
    mixed_share: float,
    unparseable_share: float,
    drng: np.random.Generator,
    injected: dict[str, dict[str, int]],
) -> dict[str, pa.Table]:
    """Date-format defects (CSV only): the date column of the referrals and the event
    tables becomes text, a share of it d/m/Y and a share of it unparseable."""
    bad_values = np.array(["31/02/2023", "not recorded", "2023-13-45", "00/00/0000", "?"])
    for name in ("referrals", *EVENT_TABLES):
        tbl = out[name]
        col = TABLES[name].date_column
        assert col is not None
        dcol = tbl[col].combine_chunks()
        m = len(dcol)
        iso = np.asarray(
            pc.strftime(dcol, format="%Y-%m-%d").to_numpy(zero_copy_only=False), dtype=object
        )
        u = drng.random(m)
        unp = u < unparseable_share
        mixed = (~unp) & (u < unparseable_share + mixed_share)
        if mixed.any():
            iso[mixed] = np.asarray(
                pc.strftime(dcol.filter(pa.array(mixed)), format="%d/%m/%Y").to_numpy(
                    zero_copy_only=False
                ),
                dtype=object,
            )
        if unp.any():
            iso[unp] = bad_values[drng.integers(0, len(bad_values), int(unp.sum()))]
        out[name] = tbl.set_column(
            tbl.schema.get_field_index(col), col, pa.array(iso, type=pa.string())
        )
        _bump(
            injected,
            "mixed_date_formats",
            **{f"{name}_rows": int(mixed.sum())},
            **{f"{name}_eligible": m},
        )
        _bump(
            injected,
            "unparseable_dates",
            **{f"{name}_rows": int(unp.sum())},
            **{f"{name}_eligible": m},
        )
    return out


def _truth_doc(
    sc: Scenario,
    st: Any,
    seed: int,
    persons: int,
    fmt: str,
    t: Truth,
    realised: dict[str, int],
    injected: dict[str, dict[str, int]],
    rows: dict[str, int],
) -> dict[str, Any]:
    pm = t.exposure_days / DAYS_PER_MONTH
    years = t.exposure_all / 365.25
    referred = sum(t.referred.values())
    return {
        "generator": {"module": "spevidence.synthetic", "version": __version__},
        "scenario": sc.name,
        "seed": seed,
        "persons": persons,
        "format": fmt,
        "window": {"start": sc.window.start.isoformat(), "end": sc.window.end.isoformat()},
        "parameters": sc.model_dump(mode="json"),
        "effects": _effects_doc(sc),
        "att": _att_doc(t, pm),
        "att_by_event_month": _att_by_event_month(t),
        "att_by_cohort": _att_by_cohort(sc, t),
        "outcome_definitions": {
            "gp": "gp_appointments rows with status 'attended' and staff_role 'gp'",
            "ae": "ae_attendances rows, all department types",
            "admissions": "admissions with admission_method in "
            + ", ".join(UNPLANNED_METHODS_DEFAULT)
            + " (2B transfers and elective/other methods excluded)",
        },
        "cohort": {
            "referred": t.referred_persons,
            "referral_rows": referred,
            "accepted": t.referred["accepted"],
            "declined": t.referred["declined"],
            "did_not_engage": t.referred["did_not_engage"],
            "post_referral_person_months_accepted": pm,
        },
        "population": {
            "persons": persons,
            "deaths": t.deaths,
            "joiners": t.joiners,
            "leavers": t.leavers,
            "rejoiners": t.rejoiners,
            "population_rows": rows.get("population", 0),
            "person_years": years,
            "pcns": len(st.pcn_codes),
            "practices": len(st.practice_codes),
        },
        "service_start_by_pcn": {
            code: date_of(int(d)).isoformat()
            for code, d in sorted(zip(st.pcn_codes, st.pcn_service_start, strict=True))
        },
        "marginal_rates_per_person_year": {
            o: {
                "expected": t.expected_all[o] / years if years else None,
                "realised": realised[o] / years if years else None,
            }
            for o in OUTCOMES
        },
        "defects": _defects_doc(sc, injected),
        "rows": dict(rows),
    }


def _effects_doc(sc: Scenario) -> dict[str, Any]:
    """The true effect as the scenario states it."""
    return {
        "rate_ratio": {o: sc.effects.rate_ratio.get(o) for o in OUTCOMES},
        "ramp_up_months": sc.effects.ramp_up_months,
        "applies_to": "accepted referrals, from the referral date, while registered",
        "ramp": "rate ratio moves linearly from 1 at the referral date to its full value "
        "after ramp_up_months (evaluated at the middle of each month's exposure)",
        "cohort_scale": dict(sc.effects.cohort_scale),
        "wellbeing_effect": sc.wellbeing.effect if sc.wellbeing is not None else None,
    }


def _att_doc(t: Truth, pm: float) -> dict[str, Any]:
    """The true effect among accepted referrals after referral, by outcome."""
    att: dict[str, Any] = {}
    for o in OUTCOMES:
        att[o] = {
            "rate_ratio": t.mu1[o] / t.mu0[o] if t.mu0[o] > 0 else None,
            "att_per_person_month": (t.mu1[o] - t.mu0[o]) / pm if pm > 0 else None,
            "expected_treated_per_person_month": t.mu1[o] / pm if pm > 0 else None,
            "expected_untreated_per_person_month": t.mu0[o] / pm if pm > 0 else None,
        }
    return att


def _att_by_event_month(t: Truth) -> list[dict[str, Any]]:
    """The true effect by month since referral (up to the last month with exposure)."""
    last = int(np.flatnonzero(t.by_month_days > 0).max()) + 1 if (t.by_month_days > 0).any() else 0
    by_month = []
    for k in range(last):
        pmk = t.by_month_days[k] / DAYS_PER_MONTH
        row: dict[str, Any] = {"event_month": k, "person_months": pmk}
        for o in OUTCOMES:
            row[f"att_{o}"] = (
                (t.by_month_mu1[o][k] - t.by_month_mu0[o][k]) / pmk if pmk > 0 else None
            )
            row[f"rate_ratio_{o}"] = (
                t.by_month_mu1[o][k] / t.by_month_mu0[o][k] if t.by_month_mu0[o][k] > 0 else None
            )
        by_month.append(row)
    return by_month


def _att_by_cohort(sc: Scenario, t: Truth) -> dict[str, Any]:
    """The true effect by cohort of PCNs (empty without cohort scaling)."""
    by_cohort = {}
    for c, d in sorted(t.by_cohort.items()):
        pmc = d["exposure_days"] / DAYS_PER_MONTH
        by_cohort[c] = {
            "person_months": pmc,
            **{
                f"rate_ratio_{o}": d[f"mu1_{o}"] / d[f"mu0_{o}"] if d[f"mu0_{o}"] > 0 else None
                for o in OUTCOMES
            },
            **{
                f"att_{o}": (d[f"mu1_{o}"] - d[f"mu0_{o}"]) / pmc if pmc > 0 else None
                for o in OUTCOMES
            },
            "nominal_rate_ratio": {
                o: sc.effects.rate_ratio.get(o) ** sc.effects.cohort_scale.get(c, 1.0)
                for o in OUTCOMES
            },
        }
    return by_cohort


def _defects_doc(sc: Scenario, injected: dict[str, dict[str, int]]) -> dict[str, Any]:
    """Each defect's rate and what was injected."""
    defects = {}
    for key, val in sc.defects.model_dump(mode="json").items():
        if key == "missing_column":
            defects[key] = {"injected": val}
        else:
            defects[key] = {"rate": val, **injected.get(key, {})}
    return defects
