"""Person x period outcome panel, one Ibis expression for DuckDB and Spark (DESIGN.md §5)."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal
from uuid import uuid4

import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd
import pyarrow as pa
from ibis.backends import BaseBackend

from spevidence.data import Attrition, AttritionEntry, Extracts
from spevidence.data.engine import duckdb_connect, upload_arrow
from spevidence.data.periods import FAR, merged_spells, study_window
from spevidence.data.schema import UNPLANNED_METHODS_DEFAULT
from spevidence.errors import DataError
from spevidence.link._dense import ATTRS, MAX_CELLS, OUTCOMES, Dense, Parts, dict_schema

Period = Literal["month", "quarter"]
PANEL_COLUMNS: tuple[str, ...] = (
    "person_id",
    "period",
    "t",
    "gp",
    "ae",
    "admissions",
    "exposure_days",
    "practice_code",
    "pcn_code",
    "sex",
    "year_of_birth",
    "imd_decile",
    "referral_date",
    "referral_t",
)

# the panel's string columns (categoricals in ``Panel.to_pandas(categorical=True)``)
STRING_COLUMNS: tuple[str, ...] = ("person_id", "practice_code", "pcn_code", "sex")


def _sorted_categorical(col: pd.Series) -> pd.Series:
    """A string column as a categorical whose categories are its values in sorted order
    (codes then sort as the strings do); a column of strings is encoded first."""
    if not isinstance(col.dtype, pd.CategoricalDtype):
        return col.astype("str").astype("category")  # categories inferred sorted
    col = col.cat.remove_unused_categories()
    cats = col.cat.categories.astype("str")
    return col.cat.rename_categories(cats.tolist()).cat.reorder_categories(cats.sort_values())


@dataclass(frozen=True)
class Definitions:
    """Outcome definitions used to build the panel (recorded with the result)."""

    gp_staff_roles: tuple[str, ...] = ("gp",)
    gp_statuses: tuple[str, ...] = ("attended",)
    ae_department_types: tuple[str, ...] | None = None  # None = all types
    admission_methods: tuple[str, ...] = UNPLANNED_METHODS_DEFAULT


@dataclass(frozen=True)
class Panel:
    """The person x period panel (``table``: an Ibis table on the chosen engine).

    Columns as in ``docs/contracts.md``: person_id (pseudonym), period (first day),
    t, gp, ae, admissions, exposure_days, practice_code, pcn_code, sex,
    year_of_birth, imd_decile, referral_date, referral_t. One row per person and
    period with at least one day registered and alive inside the study window.
    """

    table: ir.Table
    attrition: Attrition
    start: dt.date
    end: dt.date
    period: Period
    n_periods: int
    engine: str
    definitions: Definitions = field(default_factory=Definitions)
    # the same rows with ``_sk``, an integer key numbered in person_id order: sorting on
    # it is sorting by person_id (millions of rows sort slower on the pseudonym strings)
    keyed: ir.Table | None = field(default=None, repr=False, compare=False)
    # DuckDB: the counts on a persons x periods grid, read without the engine's joins
    dense: Dense | None = field(default=None, repr=False, compare=False)

    def _ordered(self) -> ir.Table:
        if self.keyed is not None:
            return self.keyed.order_by(["_sk", "t"]).drop("_sk")
        return self.table.order_by(["person_id", "t"])

    def _arrow_schema(self) -> pa.Schema:
        return self.table.schema().to_pyarrow()

    def to_pandas(self, *, categorical: bool = False) -> pd.DataFrame:
        """The panel as a pandas frame, sorted by person_id then t (deterministic).

        ``categorical=True`` gives the string columns (person_id, practice_code, pcn_code,
        sex) as pandas categoricals with their categories in sorted order: integer codes
        per row instead of one string object per row (a quarter of the frame's memory).
        """
        if self.dense is not None:
            schema = self._arrow_schema()
            tab = pa.Table.from_batches(self.dense.batches(schema), dict_schema(schema))
            df = (tab if categorical else tab.cast(schema)).to_pandas()
        else:
            df = self._ordered().to_pyarrow().to_pandas()
        for c in ("period", "referral_date"):
            df[c] = pd.to_datetime(df[c]).astype("datetime64[s]")
        for c in ("t", "gp", "ae", "admissions", "exposure_days"):
            df[c] = df[c].astype("int64")
        for c in ("year_of_birth", "imd_decile", "referral_t"):
            df[c] = df[c].astype("Int64")
        for c in STRING_COLUMNS:
            df[c] = _sorted_categorical(df[c]) if categorical else df[c].astype("str")
        return df[list(PANEL_COLUMNS)]

    def to_parquet(self, path: str | os.PathLike[str]) -> None:
        """Write the panel, sorted by person_id then t, to a Parquet file.

        No round trip through pandas. On DuckDB the rows are streamed from the persons x
        periods count arrays, a block of people at a time (panels above
        ``MAX_CELLS`` person-periods: DuckDB writes its sorted query); other engines
        collect the panel as Arrow first. Dates are Parquet dates, counts 64-bit
        integers.
        """
        if self.dense is not None:
            import pyarrow.parquet as pq

            schema = self._arrow_schema()
            # strings are written dictionary-encoded; without the stored Arrow schema
            # readers see plain strings, as in the file the engine writes
            with pq.ParquetWriter(path, dict_schema(schema), store_schema=False) as w:
                for b in self.dense.batches(schema):
                    w.write_batch(b)
            return
        con = self.table._find_backend()
        if con.name == "duckdb" and self.keyed is not None:
            # the query sorts explicitly, so DuckDB need not keep insertion order as well
            # (which makes it buffer the whole result: 1 M people ran out of memory)
            was = con.raw_sql("SELECT current_setting('preserve_insertion_order')").fetchone()
            con.raw_sql("SET preserve_insertion_order = false")
            # counts summed by DuckDB are 128-bit (COPY would write doubles): cast back
            cols = ", ".join(
                f'CAST("{c}" AS BIGINT) AS "{c}"'
                if c in ("gp", "ae", "admissions", "exposure_days")
                else f'"{c}"'
                for c in PANEL_COLUMNS
            )
            target = str(path).replace("'", "''")
            try:
                con.raw_sql(
                    f"COPY (SELECT {cols} FROM ({ibis.to_sql(self.keyed, dialect='duckdb')}) "
                    f"ORDER BY _sk, t) TO '{target}' (FORMAT parquet)"
                )
            finally:
                con.raw_sql(f"SET preserve_insertion_order = {bool(was and was[0])}")
        else:
            import pyarrow.parquet as pq

            pq.write_table(self._ordered().to_pyarrow(), path)

    def summary(self) -> str:
        g = self.glance().iloc[0]
        return (
            f"Panel: {int(g['persons'])} people x {self.n_periods} {self.period}s "
            f"({self.start} to {self.end}), {int(g['rows'])} person-periods on {self.engine}; "
            f"GP {int(g['gp'])}, A&E {int(g['ae'])}, unplanned admissions "
            f"{int(g['admissions'])}."
        )

    def glance(self) -> pd.DataFrame:
        agg = (
            self.table.aggregate(
                rows=self.table.count(),
                persons=self.table.person_id.nunique(),
                gp=self.table.gp.sum(),
                ae=self.table.ae.sum(),
                admissions=self.table.admissions.sum(),
            )
            .to_pyarrow()
            .to_pylist()[0]
        )
        return pd.DataFrame(
            [{**agg, "periods": self.n_periods, "period": self.period, "engine": self.engine}]
        )


def _periods(start: dt.date, end: dt.date, period: Period) -> list[tuple[dt.date, dt.date, int]]:
    step = 1 if period == "month" else 3
    m0 = (start.year * 12 + start.month - 1) // step * step
    m1 = (end.year * 12 + end.month - 1) // step * step
    out = []
    for t, m in enumerate(range(m0, m1 + 1, step)):
        p0 = dt.date(m // 12, m % 12 + 1, 1)
        n = m + step
        p1 = dt.date(n // 12, n % 12 + 1, 1) - dt.timedelta(days=1)
        out.append((p0, p1, t))
    return out


def _period_index(d: ir.DateValue, start: dt.date, period: Period) -> ir.IntegerValue:
    step = 1 if period == "month" else 3
    base = (start.year * 12 + start.month - 1) // step
    months = d.year().cast("int64") * 12 + d.month().cast("int64") - 1
    if step == 1:
        return months - base
    # months >= 0 for any real date, so integer floor division is safe on both engines
    q = ((months - months % 3) / 3).cast("int64")
    return q - base


def _connect(backend: str | BaseBackend, clean: Extracts) -> tuple[BaseBackend, str]:
    if isinstance(backend, BaseBackend):
        return backend, backend.name
    if backend == "duckdb":
        if clean.con.name == "duckdb":
            return clean.con, "duckdb"
        return duckdb_connect(), "duckdb"
    if backend == "spark":
        try:
            from pyspark.sql import SparkSession
        except ImportError:
            raise DataError(
                "backend='spark' needs PySpark. Fix: pip install 'spevidence[spark]'."
            ) from None
        session = SparkSession.getActiveSession() or (
            SparkSession.builder.appName("spevidence")
            .config("spark.sql.session.timeZone", "UTC")
            .getOrCreate()
        )
        return ibis.pyspark.connect(session), "pyspark"
    raise DataError(f"backend must be 'duckdb', 'spark' or an Ibis connection, not {backend!r}.")


def _register(con: BaseBackend, data: pa.Table) -> ir.Table:
    """An Arrow table as a DuckDB view (no copy; the view keeps ``data`` alive)."""
    name = f"spe_{uuid4().hex}"
    con.con.register(name, data)
    return con.table(name)


def _move(t: ir.Table, con: BaseBackend, src: BaseBackend) -> ir.Table:
    if con is src:
        return t
    return upload_arrow(con, t.to_pyarrow())


def build_panel(
    clean: Extracts,
    *,
    start: dt.date | str,
    end: dt.date | str,
    period: Period = "month",
    backend: Literal["duckdb", "spark"] | BaseBackend = "duckdb",
    gp_staff_roles: Sequence[str] = ("gp",),
    ae_department_types: Sequence[str] | None = None,
    admission_methods: Sequence[str] = UNPLANNED_METHODS_DEFAULT,
    cache: bool = True,
) -> Panel:
    """Build the person x period outcome panel from validated extracts.

    Parameters
    ----------
    clean
        Validated extracts (``validate(...)[0]``); person_id is a pseudonym.
    start, end
        Study window, inclusive. Periods are calendar months (or quarters) from the
        one holding ``start`` to the one holding ``end``; exposure is clipped to the
        window.
    period
        ``"month"`` (default) or ``"quarter"``.
    backend
        ``"duckdb"`` (default, embedded), ``"spark"`` (the active SparkSession, else a
        new local one) or any Ibis connection. The same Ibis expression runs on each.
    gp_staff_roles
        Staff roles counted as GP appointments (attended only). Default ``("gp",)``.
    ae_department_types
        A&E department types counted (``None`` = all; ``("1",)`` = major A&E only).
    admission_methods
        Admission methods counted as unplanned admissions (default: emergency
        methods without 2B transfers, DOMAIN.md).
    cache
        Materialise the per-person-period counts once (default), so later reads do
        not recompute the linkage. Only the narrow integer table is kept (person
        key, t, counts, exposure); attributes are joined when read. ``False`` for a
        single write (``spevidence link``). On DuckDB the counts are made on a
        persons x periods grid in memory (``numpy.bincount``, no hash aggregation)
        whatever ``cache`` says; ``cache`` then puts that table in front of DuckDB.

    Returns
    -------
    Panel
        ``.table`` (Ibis), ``.to_pandas()``, ``.attrition`` (people with no day
        registered and alive in the window are counted out).

    References
    ----------
    Wilding et al. (2025), BJGP: person x quarter panel of GP appointments for a
    staggered difference-in-differences evaluation of social prescribing.
    """
    _check_clean(clean, period)
    s, e = study_window(start, end)
    con, engine = _connect(backend, clean)
    tables = tuple(_move(clean[n], con, clean.con) for n in _LINKED)
    defs = Definitions(
        gp_staff_roles=tuple(gp_staff_roles),
        ae_department_types=None if ae_department_types is None else tuple(ae_department_types),
        admission_methods=tuple(admission_methods),
    )
    n_pop = int(clean["population"].person_id.nunique().execute())  # on the source engine
    return _link(con, engine, tables, defs, (s, e, period), n_pop, cache=cache)


_LINKED = ("population", "gp_appointments", "ae_attendances", "admissions", "referrals")


def _check_clean(clean: Extracts, period: str) -> None:
    if clean.stage != "clean":
        raise DataError(
            "build_panel needs validated extracts. Fix: clean, qa, attrition = "
            "validate(read_extracts(...), start=..., end=...), then build_panel(clean, ...)."
        )
    if period not in ("month", "quarter"):
        raise DataError(f"period must be 'month' or 'quarter', not {period!r}.")


def _link(
    con: BaseBackend,
    engine: str,
    tables: tuple[ir.Table, ...],
    defs: Definitions,
    study: tuple[dt.date, dt.date, Period],
    n_pop: int,
    *,
    cache: bool,
) -> Panel:
    """The panel from the population and event tables (``_LINKED``) on ``con`` over the
    ``study`` window (start, end, period); ``n_pop`` people in the population extract."""
    pop, gp, ae, adm, ref = tables
    s, e, period = study
    plist = _periods(s, e, period)
    periods = _period_table(con, plist)
    # one integer key per person, numbered in person_id order: every join, the single
    # aggregation and the final sort work on integers; the pseudonym is joined back once
    keys = pop.select("person_id").distinct()
    keys = keys.mutate(_k=ibis.row_number().over(order_by=keys.person_id))
    persons, deaths = _person_attributes(pop, keys)
    expo = _exposure(pop, deaths, keys, periods, s, e)
    window = _Window(keys, s, e, period)
    ev = (
        ("gp", _event_periods(_gp_counted(gp, defs), "appointment_date", window)),
        ("ae", _event_periods(_ae_counted(ae, defs), "arrival_date", window)),
        ("admissions", _event_periods(_adm_counted(adm, defs), "admission_date", window)),
    )
    core = _aggregate_counts(expo.rows, ev)
    first_ref = _first_referrals(ref, window)
    dense = None
    if engine == "duckdb" and n_pop * len(plist) <= MAX_CELLS:
        # count in numpy on a persons x periods grid instead of a hash aggregation
        dense = _dense_counts(keys, expo, ev, persons, first_ref, plist)
        if cache:
            core = _register(con, dense.long())
    elif cache:
        core = core.cache()
    keyed = _join_attributes(core, persons, periods, first_ref)
    # people with at least one day registered and alive in the window = people in the
    # panel (cheap: no events; the panel test checks the two agree)
    n_in = (
        int(np.count_nonzero(dense.exposure.any(axis=1)))
        if dense is not None
        else int(expo.spells.person_id.nunique().execute())
    )
    return Panel(
        table=keyed.drop("_sk"),
        attrition=_panel_attrition(n_pop, n_in),
        start=s,
        end=e,
        period=period,
        n_periods=len(plist),
        engine=engine,
        definitions=defs,
        keyed=keyed,
        dense=dense,
    )


def _period_table(con: BaseBackend, plist: list[tuple[dt.date, dt.date, int]]) -> ir.Table:
    """The periods (first day, last day, t) as a table on the engine."""
    ptab = pa.table(
        {
            "period": pa.array([p[0] for p in plist], pa.date32()),
            "period_end": pa.array([p[1] for p in plist], pa.date32()),
            "t": pa.array([p[2] for p in plist], pa.int64()),
        }
    )
    return upload_arrow(con, ptab)


def _person_attributes(pop: ir.Table, keys: ir.Table) -> tuple[ir.Table, ir.Table]:
    """Person-level attributes from the latest registration spell (with the person
    key), and each person's earliest recorded death."""
    w = ibis.window(
        group_by=pop.person_id,
        order_by=[
            pop.registration_start.desc(),
            pop.registration_end.desc(nulls_first=True),
            pop.practice_code,
            pop.pcn_code,
        ],
    )
    latest = pop.mutate(_rn=ibis.row_number().over(w)).filter(lambda x: x._rn == 0)
    deaths = pop.group_by("person_id").aggregate(_death=pop.death_date.min())
    persons = latest.select("person_id", *ATTRS)
    persons = persons.inner_join(keys, "person_id")
    return persons, deaths


@dataclass(frozen=True)
class _Exposure:
    """Registered-and-alive spells in the window, and their days by period."""

    spells: ir.Table  # person_id, s, e
    keyed_spells: ir.Table  # _k, s, e
    rows: ir.Table  # _k, t, exposure_days and zero counts (stacked with the events)


def _exposure(
    pop: ir.Table,
    deaths: ir.Table,
    keys: ir.Table,
    periods: ir.Table,
    s: dt.date,
    e: dt.date,
) -> _Exposure:
    """Merged spells, ended by death, clipped to the window, split by period."""
    sp = merged_spells(pop)
    sp = sp.inner_join(deaths, "person_id")
    sp = sp.select(
        person_id=sp.person_id,
        s=ibis.greatest(sp.start, ibis.literal(s)),
        e=ibis.least(sp.end, ibis.coalesce(sp._death, ibis.literal(FAR)), ibis.literal(e)),
    )
    sp = sp.filter(sp.e >= sp.s)
    spk = sp.inner_join(keys, "person_id").select("_k", "s", "e")
    x = spk.inner_join(periods, [spk.s <= periods.period_end, spk.e >= periods.period])
    zero = ibis.literal(0, "int64")
    expo = x.select(
        _k=x._k,
        t=x.t,
        exposure_days=(
            ibis.least(x.e, x.period_end).delta(ibis.greatest(x.s, x.period), unit="day") + 1
        ).cast("int64"),
        gp=zero,
        ae=zero,
        admissions=zero,
    )
    return _Exposure(sp, spk, expo)


@dataclass(frozen=True)
class _Window:
    """What places an event in the panel: the person keys and the periods."""

    keys: ir.Table
    start: dt.date
    end: dt.date
    period: Period


def _gp_counted(gp: ir.Table, defs: Definitions) -> ir.Table:
    """GP appointments that count (attended, with a counted staff role)."""
    return gp.filter(
        gp.status.isin(list(defs.gp_statuses))
        & gp.staff_role.lower().isin([r.lower() for r in defs.gp_staff_roles])
    )


def _ae_counted(ae: ir.Table, defs: Definitions) -> ir.Table:
    """A&E attendances that count (all, or the chosen department types)."""
    if defs.ae_department_types is None:
        return ae
    return ae.filter(ae.department_type.isin(list(defs.ae_department_types)))


def _adm_counted(adm: ir.Table, defs: Definitions) -> ir.Table:
    """Admissions that count (the unplanned admission methods)."""
    return adm.filter(adm.admission_method.isin(list(defs.admission_methods)))


def _event_periods(tab: ir.Table, date_col: str, window: _Window) -> ir.Table:
    """Events in the window as (person key, period index)."""
    d = tab[date_col]
    tab = tab.filter(d.between(window.start, window.end)).inner_join(window.keys, "person_id")
    return tab.select(_k=tab._k, t=_period_index(tab[date_col], window.start, window.period))


def _aggregate_counts(expo: ir.Table, ev: tuple[tuple[str, ir.Table], ...]) -> ir.Table:
    """Exposure rows and event rows stacked, then one aggregation per person and
    period (events fall in periods with exposure once validated; others are dropped)."""
    zero = ibis.literal(0, "int64")

    def stack(ev: ir.Table, name: str) -> ir.Table:
        return ev.select(
            _k=ev._k,
            t=ev.t,
            exposure_days=zero,
            **{o: ibis.literal(1 if o == name else 0, "int64") for o in OUTCOMES},
        )

    stacked = ibis.union(expo, *(stack(tab, name) for name, tab in ev), distinct=False)
    core = stacked.group_by(["_k", "t"]).aggregate(
        **{c: stacked[c].sum() for c in (*OUTCOMES, "exposure_days")}
    )
    return core.filter(core.exposure_days > 0)


def _first_referrals(ref: ir.Table, window: _Window) -> ir.Table:
    """Each person's first accepted referral: date and period index, by person key."""
    acc = ref.filter(ref.outcome == "accepted")
    first_ref = acc.group_by("person_id").aggregate(referral_date=acc.referral_date.min())
    first_ref = first_ref.mutate(
        referral_t=_period_index(first_ref.referral_date, window.start, window.period)
    )
    return first_ref.inner_join(window.keys, "person_id").select(
        _rk="_k", referral_date="referral_date", referral_t="referral_t"
    )


def _dense_counts(
    keys: ir.Table,
    expo: _Exposure,
    ev: tuple[tuple[str, ir.Table], ...],
    persons: ir.Table,
    first_ref: ir.Table,
    plist: list[tuple[dt.date, dt.date, int]],
) -> Dense:
    """The counts on a persons x periods grid in numpy (DuckDB, panels that fit)."""
    return Dense(
        Parts(
            keys=keys,
            spells=expo.keyed_spells,
            events=ev,
            persons=persons,
            first_ref=first_ref,
            period_start=tuple(p[0] for p in plist),
            period_end=tuple(p[1] for p in plist),
        )
    )


def _join_attributes(
    core: ir.Table, persons: ir.Table, periods: ir.Table, first_ref: ir.Table
) -> ir.Table:
    """The panel's columns with the person key kept as ``_sk`` (for sorting)."""
    pj = persons.rename(_pk="_k")
    pt = periods.select(_pt="t", period="period")
    panel = core.inner_join(pj, core._k == pj._pk)
    panel = panel.inner_join(pt, panel.t == pt._pt)
    panel = panel.left_join(first_ref, panel._k == first_ref._rk)
    return panel.select(*PANEL_COLUMNS, _sk=panel._k)


def _panel_attrition(n_pop: int, n_in: int) -> Attrition:
    """People in the clean population, those with no day in the window, the rest."""
    entries = (
        AttritionEntry("panel_persons", "input", "people in the clean population", n_pop),
        AttritionEntry(
            "panel_persons",
            "excluded",
            "no day registered and alive in the study window",
            n_pop - n_in,
        ),
        AttritionEntry("panel_persons", "kept", "people in the panel", n_in),
    )
    return Attrition(entries)
