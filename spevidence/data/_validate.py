"""Validation of the extracts against their contracts (DESIGN.md section 4).

Every row that fails a check is excluded with exactly one reason (the first check it
fails, in the order below), so rows in = rows kept + Σ rows excluded by reason. Messages
name the table, the column, the count, the first row numbers and the fix — never an
identifier, and no data value except the unknown values of coded columns.

Order of checks for every table: missing identifier; invalid NHS number (when ids are
raw NHS numbers); unreadable values (dates, numbers); missing required values; unknown
codes (counted, then they stop validation with one paragraph per column naming each
unknown value: :mod:`spevidence.data._codes`); values too long for a code column; table
rules (registration ends before it starts, registered after death, negative length of
stay); exact duplicate rows. Then, for event tables: person not in the population; event
after death; event before the year of birth; event outside every registration spell;
event outside the study window (referrals are kept whatever their date: a referral
before the window marks someone already referred). Last, tables emptied by their
identifiers are named (:func:`spevidence.data._ids.identifier_errors`), and the checks
of :mod:`spevidence.data.coverage` stop validation when an extract is empty, a table
loses more than ``max_row_loss`` of its rows, or an event extract does not cover the
study window.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Literal

import ibis
import ibis.expr.types as ir
import pyarrow as pa

from spevidence.data._codes import codes_norm, unknown_values_error
from spevidence.data._ids import identifier_errors
from spevidence.data._read import ROW, Extracts
from spevidence.data._results import Action, Attrition, AttritionEntry, QAIssue, QAReport
from spevidence.data._types import (
    clean_str,
    date_formats,
    date_from_parts,
    date_parts,
    describe_format,
    nhs_number_valid,
    normalise_id,
    parse_bool,
    parse_float,
    parse_int,
)
from spevidence.data.coverage import (
    MAX_ROW_LOSS,
    check_accepted,
    check_coverage,
    check_empty,
    check_row_loss,
    row_losses,
)
from spevidence.data.engine import upload_arrow
from spevidence.data.periods import merged_spells, study_window
from spevidence.data.schema import POPULATION, TABLES, Column, Table
from spevidence.errors import DataError
from spevidence.identity import load_key, pseudonymise

Ids = Literal["nhs_number", "pseudonym"]
FIRST_ROWS = 5
ROW_NOTE = "row numbers count data rows from 1"

_IBIS_TYPE = {
    "id": "string",
    "str": "string",
    "int": "int64",
    "date": "date",
    "float": "float64",
    "bool": "boolean",
}


@dataclass(frozen=True)
class _Rule:
    key: str  # unique per table: "rule:column"
    rule: str
    column: str
    cond: ir.BooleanValue
    action: Action
    message: Callable[[int, str], str]  # (rows, first-rows text) -> message


def _rows_text(rows: list[int]) -> str:
    return "first rows: " + ", ".join(str(r) for r in rows)


def _typed(
    name: str, raw: ir.Table, spec: Table, ids: Ids, date_format: str | None
) -> tuple[ir.Table, dict[str, tuple[str, ...]]]:
    """Coerce columns; return the table with typed columns + helper flags.

    Built in three projections so that no expression is repeated inside another
    (Ibis inlines a single projection; staged ones stay compact SQL).
    """
    formats = date_formats(date_format)
    t1, fmt_cols = _parsed_text(raw, spec, ids, formats)
    t2 = _dates_from_parts(t1, fmt_cols, formats, date_format)
    return _typed_columns(t2, raw, spec, fmt_cols, formats), fmt_cols


def _parsed_text(
    raw: ir.Table, spec: Table, ids: Ids, formats: tuple[str, ...]
) -> tuple[ir.Table, dict[str, tuple[str, ...]]]:
    """Stage 1: trimmed text, date parts, numbers, "was there a value?"."""
    fmt_cols: dict[str, tuple[str, ...]] = {}
    s1: dict[str, ir.Value] = {ROW: raw[ROW]}
    for c in spec.columns:
        if c.name not in raw.columns:
            s1[c.name] = ibis.null(_IBIS_TYPE[c.kind])
            continue
        r = raw[c.name]
        if c.kind == "id":
            s1[c.name] = normalise_id(r, nhs=ids == "nhs_number")
        elif c.kind == "str":
            v = clean_str(r)
            s1[c.name] = codes_norm(v, c) if c.allowed is not None else v
        elif c.kind == "date" and not (r.type().is_date() or r.type().is_timestamp()):
            txt = clean_str(r)
            s1[f"_ne_{c.name}"] = txt.notnull()
            for i, fmt in enumerate(formats):
                for part, expr in zip("ymd", date_parts(txt, fmt), strict=True):
                    s1[f"_{part}{i}_{c.name}"] = expr
            fmt_cols[c.name] = formats
        else:
            s1[f"_ne_{c.name}"] = clean_str(r).notnull() if r.type().is_string() else r.notnull()
            if c.kind == "date":
                s1[c.name] = r if r.type().is_date() else r.date()
            elif c.kind == "int":
                s1[c.name] = parse_int(r)
            elif c.kind == "float":
                s1[c.name] = parse_float(r)
            else:
                s1[c.name] = parse_bool(r)
    return raw.select(**s1), fmt_cols


def _dates_from_parts(
    t1: ir.Table,
    fmt_cols: dict[str, tuple[str, ...]],
    formats: tuple[str, ...],
    date_format: str | None,
) -> ir.Table:
    """Stage 2: dates from parts; which format matched."""
    s2: dict[str, ir.Value] = {k: t1[k] for k in t1.columns}
    for col in fmt_cols:
        parsed = [
            date_from_parts(t1[f"_y{i}_{col}"], t1[f"_m{i}_{col}"], t1[f"_d{i}_{col}"])
            for i in range(len(formats))
        ]
        for i, p in enumerate(parsed):
            s2[f"_p{i}_{col}"] = p
        if date_format is None and len(formats) == 2:
            # DD/MM/YYYY assumed: a "month" over 12 with a "day" up to 12 reads as US order
            s2[f"_us_{col}"] = ((t1[f"_m1_{col}"] > 12) & (t1[f"_d1_{col}"] <= 12)).fill_null(False)
        for i in range(len(formats)):
            for part in "ymd":
                s2.pop(f"_{part}{i}_{col}")
    return t1.select(**s2)


def _typed_columns(
    t2: ir.Table,
    raw: ir.Table,
    spec: Table,
    fmt_cols: dict[str, tuple[str, ...]],
    formats: tuple[str, ...],
) -> ir.Table:
    """Stage 3: final typed columns and flags."""
    out: dict[str, ir.Value] = {ROW: t2[ROW]}
    flags: dict[str, ir.Value] = {}
    for c in spec.columns:
        if c.name in fmt_cols:
            ps = [t2[f"_p{i}_{c.name}"] for i in range(len(formats))]
            v = ibis.coalesce(*ps) if len(ps) > 1 else ps[0]
            flags[f"_fmt_{c.name}"] = ibis.cases(
                *[(p.notnull(), i) for i, p in enumerate(ps)], else_=ibis.null("int8")
            )
            flags[f"_unread_{c.name}"] = t2[f"_ne_{c.name}"] & v.isnull()
            if f"_us_{c.name}" in t2.columns:
                flags[f"_us_{c.name}"] = t2[f"_us_{c.name}"]
            out[c.name] = v
            continue
        v = t2[c.name]
        if f"_ne_{c.name}" in t2.columns:
            flags[f"_unread_{c.name}"] = t2[f"_ne_{c.name}"] & v.isnull()
        if c.name in raw.columns:
            v = _checked_value(v, c, flags)
        out[c.name] = v
    return t2.select(**out, **flags)


def _checked_value(v: ir.Value, c: Column, flags: dict[str, ir.Value]) -> ir.Value:
    """Flag unknown codes, over-long text and IMD deciles outside 1-10 in column ``c``
    (into ``flags``); the value, set to missing where the column allows it."""
    if c.kind == "str" and c.allowed is not None:
        bad = v.notnull() & ~v.isin(list(c.allowed))
        flags[f"_bad_code_{c.name}"] = bad
        if not c.required:
            v = ibis.cases((bad, ibis.null("string")), else_=v)
    if c.max_length is not None:
        long = v.length() > c.max_length
        flags[f"_too_long_{c.name}"] = long.fill_null(False)
        if not c.required:
            v = ibis.cases((long, ibis.null("string")), else_=v)
    if c.name == "imd_decile":
        flags["_bad_range_imd_decile"] = v.notnull() & ~v.between(1, 10)
        v = ibis.cases((v.between(1, 10), v), else_=ibis.null("int64"))
    return v


def _base_rules(
    name: str, typed: ir.Table, spec: Table, ids: Ids, date_format: str | None
) -> list[_Rule]:
    """Identifier, readability, missing-value and code rules (on the typed columns)."""
    return (
        _id_rules(name, typed, ids)
        + _unreadable_rules(name, typed, spec, date_format)
        + _missing_rules(name, typed, spec)
        + _code_rules(name, typed, spec)
        + _too_long_rules(name, typed, spec)
        + _range_rules(name, typed)
    )


def _id_rules(t: str, typed: ir.Table, ids: Ids) -> list[_Rule]:
    """Rows without a person_id; with NHS numbers, rows whose number fails the check."""
    pid = typed.person_id
    rules = [
        _Rule(
            "missing_id:person_id",
            "missing_id",
            "person_id",
            pid.isnull(),
            "excluded",
            lambda n, rows: (
                f"{t}.person_id: {n} rows have no person_id ({rows}). They were "
                "excluded. Fix: supply the identifier on every row."
            ),
        )
    ]
    if ids == "nhs_number":
        rules.append(
            _Rule(
                "invalid_nhs_number:person_id",
                "invalid_nhs_number",
                "person_id",
                ~nhs_number_valid(pid),
                "excluded",
                lambda n, rows: (
                    f"{t}.person_id: {n} rows have an invalid NHS number (not 10 "
                    f"digits, or a wrong modulus-11 check digit) ({rows}). They were excluded. "
                    "Fix: correct them at source; if person_id is already a pseudonym, use "
                    "ids='pseudonym'."
                ),
            )
        )
    return rules


_UNREADABLE = {
    "date": "a date that cannot be read",
    "int": "a value that is not a whole number",
    "float": "a value that is not a number",
    "bool": "a value that is not true/false",
}


def _unreadable_rules(t: str, typed: ir.Table, spec: Table, date_format: str | None) -> list[_Rule]:
    """Values that cannot be read as their type: the row is excluded when the column is
    required, else the value is set to missing."""
    rules: list[_Rule] = []
    for c in spec.columns:
        flag = f"_unread_{c.name}"
        if flag not in typed.columns:
            continue
        what = _UNREADABLE[c.kind]
        if c.kind == "date":
            fmts = " or ".join(describe_format(f) for f in date_formats(date_format))
            fix = (
                f"Fix: write these dates as {fmts} (or pass date_format=, e.g. '%m/%d/%Y', if "
                "the extract uses another order)."
            )
        else:
            fix = "Fix: correct the values at source."
        if c.required:
            rules.append(
                _Rule(
                    f"unreadable:{c.name}",
                    "unreadable_value",
                    c.name,
                    typed[flag],
                    "excluded",
                    lambda n, rows, c=c, what=what, fix=fix: (  # type: ignore[misc]
                        f"{t}.{c.name}: {n} rows have {what} ({rows}). They were excluded. {fix}"
                    ),
                )
            )
        else:
            rules.append(
                _Rule(
                    f"unreadable:{c.name}",
                    "unreadable_value",
                    c.name,
                    typed[flag],
                    "set_missing",
                    lambda n, rows, c=c, what=what, fix=fix: (  # type: ignore[misc]
                        f"{t}.{c.name}: {n} rows have "
                        f"{what} ({rows}). The value was set to missing (rows kept). {fix}"
                    ),
                )
            )
    return rules


def _missing_rules(t: str, typed: ir.Table, spec: Table) -> list[_Rule]:
    """Rows empty in a required column that may not be empty (unreadable ones aside)."""
    rules: list[_Rule] = []
    for c in spec.columns:
        if c.required and not c.nullable and c.kind != "id":
            v = typed[c.name]
            cond = v.isnull()
            if f"_unread_{c.name}" in typed.columns:
                cond = cond & ~typed[f"_unread_{c.name}"]
            rules.append(
                _Rule(
                    f"missing_value:{c.name}",
                    "missing_value",
                    c.name,
                    cond,
                    "excluded",
                    lambda n, rows, c=c: (  # type: ignore[misc]
                        f"{t}.{c.name}: {n} rows are empty in this required "
                        f"column ({rows}). They were excluded. Fix: fill in {c.name} at source."
                    ),
                )
            )
    return rules


def _code_rules(t: str, typed: ir.Table, spec: Table) -> list[_Rule]:
    """Codes outside a column's allowed values: excluded when required, else set missing."""
    rules: list[_Rule] = []
    for c in spec.columns:
        flag = f"_bad_code_{c.name}"
        if flag not in typed.columns:
            continue
        allowed = ", ".join(c.allowed or ())
        if c.required:
            rules.append(
                _Rule(
                    f"unknown_code:{c.name}",
                    "unknown_code",
                    c.name,
                    typed[flag],
                    "excluded",
                    lambda n, rows, c=c, allowed=allowed: (  # type: ignore[misc]
                        f"{t}.{c.name}: {n} rows have a "
                        f"code outside the allowed values ({allowed}) ({rows}). They were "
                        "excluded. Fix: recode them to the allowed values."
                    ),
                )
            )
        else:
            rules.append(
                _Rule(
                    f"unknown_code:{c.name}",
                    "unknown_code",
                    c.name,
                    typed[flag],
                    "set_missing",
                    lambda n, rows, c=c, allowed=allowed: (  # type: ignore[misc]
                        f"{t}.{c.name}: {n} rows have a "
                        f"code outside the allowed values ({allowed}) ({rows}). The value was set "
                        "to missing (rows kept). Fix: recode them to the allowed values."
                    ),
                )
            )
    return rules


def _range_rules(t: str, typed: ir.Table) -> list[_Rule]:
    """IMD deciles outside 1-10 are set to missing."""
    if "_bad_range_imd_decile" not in typed.columns:
        return []
    return [
        _Rule(
            "out_of_range:imd_decile",
            "out_of_range",
            "imd_decile",
            typed["_bad_range_imd_decile"],
            "set_missing",
            lambda n, rows: (
                f"{t}.imd_decile: {n} rows have an IMD decile outside 1-10 "
                f"({rows}). The value was set to missing (rows kept). Fix: use deciles 1-10."
            ),
        )
    ]


def _too_long_rules(t: str, typed: ir.Table, spec: Table) -> list[_Rule]:
    """Text columns hold codes: a value longer than the schema's maximum is not one."""
    rules = []
    for c in spec.columns:
        if f"_too_long_{c.name}" not in typed.columns:
            continue
        done = "They were excluded." if c.required else "The value was set to missing (rows kept)."
        rules.append(
            _Rule(
                f"too_long:{c.name}",
                "too_long",
                c.name,
                typed[f"_too_long_{c.name}"],
                "excluded" if c.required else "set_missing",
                lambda n, rows, c=c, done=done: (  # type: ignore[misc]
                    f"{t}.{c.name}: {n} rows have a value longer than {c.max_length} "
                    f"characters, which is not a code ({rows}). {done} Fix: correct them at "
                    "source (the column holds a code, not free text)."
                ),
            )
        )
    return rules


def _table_rules(name: str, typed: ir.Table, end: dt.date) -> list[_Rule]:
    t = name
    rules: list[_Rule] = []
    if name == "population":
        yob = typed.year_of_birth
        rules.append(
            _Rule(
                "implausible:year_of_birth",
                "implausible_value",
                "year_of_birth",
                ~yob.between(1880, end.year),
                "excluded",
                lambda n, rows: (
                    f"{t}.year_of_birth: {n} rows have a year of birth before "
                    f"1880 or after the study end ({rows}). They were excluded. Fix: correct it."
                ),
            )
        )
        rules.append(
            _Rule(
                "end_before_start:registration_end",
                "registration_ends_before_start",
                "registration_end",
                typed.registration_end < typed.registration_start,
                "excluded",
                lambda n, rows: (
                    f"{t}.registration_end: {n} registration spells end before "
                    f"they start ({rows}). They were excluded. Fix: check the two dates."
                ),
            )
        )
        rules.append(
            _Rule(
                "registered_after_death:death_date",
                "registered_after_death",
                "death_date",
                typed.death_date < typed.registration_start,
                "excluded",
                lambda n, rows: (
                    f"{t}.death_date: {n} registration spells start after the "
                    f"recorded death ({rows}). They were excluded. Fix: check the dates."
                ),
            )
        )
    if name == "admissions":
        rules.append(
            _Rule(
                "negative_length_of_stay:discharge_date",
                "negative_length_of_stay",
                "discharge_date",
                typed.discharge_date < typed.admission_date,
                "excluded",
                lambda n, rows: (
                    f"{t}.discharge_date: {n} spells have a negative length of "
                    f"stay (discharge_date before admission_date) ({rows}). They were excluded. "
                    "Fix: check the two dates (swapped columns or a typing error)."
                ),
            )
        )
    return rules


def _duplicate_rule(name: str, typed: ir.Table, spec: Table, *, keep: bool = False) -> _Rule:
    w = ibis.window(group_by=[typed[c] for c in spec.names], order_by=typed[ROW])
    dup = ibis.row_number().over(w) > 0
    if keep:
        return _Rule(
            "duplicate:*",
            "duplicate_row",
            "*",
            dup,
            "warning",
            lambda n, rows: (
                f"{name}: {n} rows repeat an earlier row exactly ({rows}). They were kept "
                "(duplicates='keep'). Fix: if they are extraction duplicates, use "
                "duplicates='exclude'."
            ),
        )
    return _Rule(
        "duplicate:*",
        "duplicate_row",
        "*",
        dup,
        "excluded",
        lambda n, rows: (
            f"{name}: {n} rows repeat an earlier row exactly ({rows}). The repeats "
            "were excluded and the first copy kept. Fix: none needed if they are extraction "
            "duplicates; if identical rows can be genuine (two appointments on one day), use "
            "duplicates='keep'."
        ),
    )


def _event_rules(
    name: str,
    typed: ir.Table,
    spec: Table,
    persons: ir.Table,
    spells: ir.Table,
    start: dt.date,
    end: dt.date,
) -> tuple[ir.Table, list[_Rule]]:
    """Rules of an event table against the population: the table joined to the persons
    (and, except referrals, the registration spells) and the rules on it."""
    date_col = spec.date_column
    if date_col is None:  # schema invariant: every event table declares its date column
        raise DataError(f"{name}: the schema declares no event date column.")
    p = persons.select(
        _p_id=persons.person_id,
        _p_death=persons.death_date,
        _p_yob=persons._yob,
        _p_in=ibis.literal(True),
    )
    x = typed.left_join(p, typed.person_id == p._p_id).drop("_p_id")
    rules = _person_rules(name, x, date_col)
    if name != "referrals":
        x, spell_rules = _registration_rules(name, x, spells, date_col, start, end)
        rules += spell_rules
    return x, rules


def _person_rules(t: str, x: ir.Table, date_col: str) -> list[_Rule]:
    """Events of people not in the population, after their death or before their birth."""
    d = x[date_col]
    return [
        _Rule(
            "not_in_population:person_id",
            "not_in_population",
            "person_id",
            x._p_in.isnull(),
            "excluded",
            lambda n, rows: (
                f"{t}.person_id: {n} rows are for people not in the population "
                f"extract ({rows}). They were excluded. Fix: check that both extracts cover the "
                "same practices and dates, and use the same identifiers (same key)."
            ),
        ),
        _Rule(
            f"after_death:{date_col}",
            "after_death",
            date_col,
            d > x._p_death,
            "excluded",
            lambda n, rows: (
                f"{t}.{date_col}: {n} rows are dated after the person's death "
                f"({rows}). They were excluded. Fix: check the dates and the death records."
            ),
        ),
        _Rule(
            f"born_after_event:{date_col}",
            "born_after_event",
            date_col,
            d.year() < x._p_yob,
            "excluded",
            lambda n, rows: (
                f"{t}.{date_col}: {n} rows are dated before the year the person was born "
                f"(population.year_of_birth) ({rows}). They were excluded. Fix: check the "
                "years of birth and the event dates at source (a mistyped or swapped year)."
            ),
        ),
    ]


def _registration_rules(
    t: str, x: ir.Table, spells: ir.Table, date_col: str, start: dt.date, end: dt.date
) -> tuple[ir.Table, list[_Rule]]:
    """Events outside the person's registration spells or the study window: ``x`` with
    the flag ``_covered`` and the two rules."""
    s = spells.select(_s_id=spells.person_id, _s_start=spells.start, _s_end=spells.end)
    x = x.left_join(s, [x.person_id == s._s_id, x[date_col] >= s._s_start, x[date_col] <= s._s_end])
    x = x.mutate(_covered=x._s_id.notnull()).drop("_s_id", "_s_start", "_s_end")
    rules = [
        _Rule(
            f"outside_registration:{date_col}",
            "outside_registration",
            date_col,
            ~x._covered,
            "excluded",
            lambda n, rows: (
                f"{t}.{date_col}: {n} rows fall outside the person's "
                f"registration spells ({rows}). They were excluded. Fix: none needed if the "
                "person was registered elsewhere then; otherwise check registration dates."
            ),
        ),
        _Rule(
            f"outside_window:{date_col}",
            "outside_study_window",
            date_col,
            ~x[date_col].between(start, end),
            "excluded",
            lambda n, rows: (
                f"{t}.{date_col}: {n} rows fall outside the study window "
                f"{start} to {end} ({rows}). They were excluded (expected; not an error)."
            ),
        ),
    ]
    return x, rules


def _annotate(x: ir.Table, rules: list[_Rule], spec: Table) -> ir.Table:
    """Schema columns + row number + exclusion reason + flags (only what is read later)."""
    excl = [r for r in rules if r.action == "excluded"]
    reason = ibis.cases(
        *[(r.cond.fill_null(False), r.key) for r in excl], else_=ibis.null("string")
    )
    flags = {
        f"_sm_{i}": r.cond.fill_null(False) for i, r in enumerate(rules) if r.action != "excluded"
    }
    fmts = [c for c in x.columns if c.startswith(("_fmt_", "_us_"))]
    return x.select(ROW, *spec.names, *fmts, _reason=reason, **flags)


def _summarise(
    name: str, annot: ir.Table, rules: list[_Rule], fmt_cols: dict[str, tuple[str, ...]]
) -> tuple[
    dict[str | None, int],
    dict[str, list[int]],
    dict[int, int],
    dict[int, list[int]],
    list[QAIssue],
    dict[str, tuple[int, list[int]]],
]:
    """Counts by reason, flag and date format in one query; first row numbers in one more."""
    sm_idx = [i for i, r in enumerate(rules) if r.action != "excluded"]
    sums: dict[str, ir.Value] = {f"n{i}": annot[f"_sm_{i}"].cast("int64").sum() for i in sm_idx}
    for col, fmts in fmt_cols.items():
        for j in range(len(fmts)):
            sums[f"f{j}_{col}"] = (annot[f"_fmt_{col}"] == j).cast("int64").sum()
        if f"_us_{col}" in annot.columns:
            sums[f"us_{col}"] = annot[f"_us_{col}"].cast("int64").sum()
    recs = annot.group_by("_reason").aggregate(n=annot.count(), **sums).to_pyarrow().to_pylist()
    counts: dict[str | None, int] = {r["_reason"]: int(r["n"]) for r in recs}
    totals = {k: sum(int(r[k] or 0) for r in recs) for k in sums}

    first_rows: dict[str, list[int]] = {}
    if any(k is not None for k in counts):
        bad = annot.filter(annot._reason.notnull())
        rn = ibis.row_number().over(ibis.window(group_by=bad._reason, order_by=bad[ROW]))
        firsts = bad.mutate(_rn=rn).filter(lambda b: b._rn < FIRST_ROWS).select("_reason", ROW)
        for rec in firsts.to_pyarrow().to_pylist():
            first_rows.setdefault(rec["_reason"], []).append(int(rec[ROW]))
        for v in first_rows.values():
            v.sort()
    sm_counts: dict[int, int] = {}
    sm_rows: dict[int, list[int]] = {}
    for i in sm_idx:
        n = totals[f"n{i}"]
        if n:
            sm_counts[i] = n
            q = annot.filter(annot[f"_sm_{i}"]).order_by(ROW).limit(FIRST_ROWS)[ROW]
            sm_rows[i] = [int(v) for v in q.to_pyarrow().to_pylist()]

    us: dict[str, tuple[int, list[int]]] = {}
    for col in fmt_cols:
        n_us = totals.get(f"us_{col}", 0)
        if n_us:
            q = annot.filter(annot[f"_us_{col}"]).order_by(ROW).limit(FIRST_ROWS)[ROW]
            us[col] = (n_us, [int(v) for v in q.to_pyarrow().to_pylist()])

    warnings: list[QAIssue] = []
    for col, fmts in fmt_cols.items():
        per_fmt = [totals[f"f{j}_{col}"] for j in range(len(fmts))]
        if sum(1 for k in per_fmt if k > 0) > 1:
            parts = " and ".join(
                f"{k} rows as {describe_format(f)}" for k, f in zip(per_fmt, fmts, strict=True)
            )
            warnings.append(
                QAIssue(
                    name,
                    col,
                    "mixed_date_formats",
                    min(k for k in per_fmt if k > 0),
                    "warning",
                    f"{name}.{col}: dates come in more than one format ({parts}); all were "
                    "read. Fix: export one date format to avoid day/month mix-ups.",
                )
            )
    return counts, first_rows, sm_counts, sm_rows, warnings, us


def _unreadable_errors(
    name: str,
    spec: Table,
    counts: dict[str | None, int],
    first_rows: dict[str, list[int]],
    annot: ir.Table,
    date_format: str | None,
) -> list[str]:
    """A date column that is mostly unreadable is a format problem: stop, don't drop."""
    errors = []
    for c in spec.columns:
        key = f"unreadable:{c.name}"
        n = counts.get(key, 0)
        if c.kind != "date" or not c.required or n == 0:
            continue
        if f"_fmt_{c.name}" not in annot.columns:
            continue
        total_rows = sum(counts.values())
        if n * 2 > total_rows:
            fmts = " or ".join(describe_format(f) for f in date_formats(date_format))
            errors.append(
                f"{name}.{c.name}: {n} of {total_rows} rows have dates that cannot be read as "
                f"{fmts} ({_rows_text(first_rows.get(key, []))}). Fix: pass the format, e.g. "
                "date_format='%m/%d/%Y' (US order) or date_format='%Y%m%d'."
            )
    return errors


def _process(
    name: str,
    x: ir.Table,
    rules: list[_Rule],
    fmt_cols: dict[str, tuple[str, ...]],
    spec: Table,
    date_format: str | None,
) -> tuple[ir.Table, list[QAIssue], list[AttritionEntry], list[str]]:
    annot = _annotate(x, rules, spec).cache()
    counts, first_rows, sm_counts, sm_rows, fmt_warnings, us = _summarise(
        name, annot, rules, fmt_cols
    )
    errors = _unreadable_errors(name, spec, counts, first_rows, annot, date_format)
    for col, (n, rows) in us.items():
        errors.append(
            f"{name}.{col}: {n} rows have dates that only make sense as month/day/year "
            f"(US order) ({_rows_text(rows)}), so the day/month order of this column is "
            "ambiguous. Fix: pass date_format='%m/%d/%Y' if the extract uses US order, or "
            "date_format='%d/%m/%Y' to read it as UK order (those rows are then excluded)."
        )
    issues: list[QAIssue] = []
    for i, r in enumerate(rules):
        if r.action == "excluded":
            n = counts.get(r.key, 0)
            rows = first_rows.get(r.key, [])
        else:
            n = sm_counts.get(i, 0)
            rows = sm_rows.get(i, [])
        if n:
            issues.append(
                QAIssue(
                    name, r.column, r.rule, n, r.action, r.message(n, _rows_text(rows)), tuple(rows)
                )
            )
    issues += fmt_warnings
    total = sum(counts.values())
    kept = counts.get(None, 0)
    entries = [AttritionEntry(name, "input", "rows in the extract", total)]
    entries += [
        AttritionEntry(
            name, "excluded", r.rule if r.column == "*" else f"{r.rule} ({r.column})", counts[r.key]
        )
        for r in rules
        if r.action == "excluded" and counts.get(r.key, 0)
    ]
    entries.append(AttritionEntry(name, "kept", "rows kept", kept))
    clean = annot.filter(annot._reason.isnull()).select(*spec.names)
    return clean, issues, entries, errors


def _pseudonym_map(con: Any, pop_clean: ir.Table, key: Any) -> ir.Table:
    ids = pop_clean.select("person_id").distinct().to_pyarrow().column(0).to_pylist()
    tokens = pseudonymise(ids, key)  # valid NHS numbers without separators: none missing
    tab = pa.table({"_raw_id": pa.array(ids, pa.string()), "_token": pa.array(tokens, pa.string())})
    del ids, tokens
    return upload_arrow(con, tab)


def _apply_map(t: ir.Table, m: ir.Table, spec: Table) -> ir.Table:
    j = t.inner_join(m, t.person_id == m._raw_id)
    return j.select(*[j._token.name("person_id") if c == "person_id" else j[c] for c in spec.names])


def validate(
    extracts: Extracts,
    *,
    start: dt.date | str,
    end: dt.date | str,
    ids: Ids = "pseudonym",
    key: Any = None,
    duplicates: Literal["exclude", "keep"] = "exclude",
    max_row_loss: float = MAX_ROW_LOSS,
    completeness: Literal["stop", "warn"] = "stop",
) -> tuple[Extracts, QAReport, Attrition]:
    """Check the extracts against their contracts; exclude and count bad rows.

    Parameters
    ----------
    extracts
        From :func:`read_extracts`.
    start, end
        Study window (inclusive). Events outside it are excluded and counted.
    ids
        ``"pseudonym"`` (default): person_id is already a pseudonym token.
        ``"nhs_number"``: person_id holds raw NHS numbers; they are checked
        (modulus 11; invalid ones excluded and counted) and replaced by HMAC-SHA256
        pseudonyms before anything leaves this function.
    key
        The pseudonymisation key (:func:`spevidence.identity.load_key`), needed when
        ``ids="nhs_number"``; when ``None`` it is read from ``SPEVIDENCE_KEY``.
    duplicates
        Event rows identical in every column: ``"exclude"`` (default) drops the
        repeats and counts them; ``"keep"`` keeps them (two appointments on one day
        with no appointment id are indistinguishable from a repeated row) and
        reports a warning. Repeated population rows are always merged.
    max_row_loss
        The largest share of a table's usable rows that validation may exclude before
        it stops (default 0.05; the protocol's ``qa.max_row_loss``). Exact repeats,
        events outside the study window and events outside registration are expected
        and do not count. A raised bar that a table needed gives a warning.
    completeness
        ``"stop"`` (default): an extract with no rows, an event extract with months of
        the study window missing, or referrals with none accepted stop validation.
        ``"warn"``: they are reported as QA warnings instead (to look at extracts that
        are known to be partial; an evaluation run always stops).

    Returns
    -------
    clean : Extracts
        Typed tables with the canonical columns only, bad rows removed, person_id a
        pseudonym.
    qa : QAReport
        One row per finding: table, column, rule, rows, action, message.
    attrition : Attrition
        Rows in, excluded by reason and kept, per table (reconciles).

    Raises
    ------
    DataError
        Problems that make the extracts unusable or a run silently wrong (a date column
        in an unknown format, an extract with no rows, a table losing more than
        ``max_row_loss`` of its rows, an event extract not covering the study window,
        no accepted referral; see :mod:`spevidence.data.coverage`). Messages name
        table, column, counts, first row numbers and the fix, never an identifier.
    """
    _check_options(extracts, ids, duplicates, completeness, max_row_loss)
    s, e = study_window(start, end)
    if ids == "nhs_number":
        key = load_key() if key is None else key
    found = _Found()
    # population first: the other tables are checked against it
    pop, persons, spells = _population(extracts, ids, e, found)
    clean = _events(extracts, persons, spells, ids, duplicates == "keep", (s, e), found)
    _stop_if_unusable(clean, found, ids, (s, e), max_row_loss, completeness)
    clean = {"population": pop, **clean}
    if ids == "nhs_number":
        m = _pseudonym_map(extracts.con, pop, key)
        clean = {n: _apply_map(t, m, TABLES[n]) for n, t in clean.items()}
    attrition = Attrition(tuple(found.entries)).check()
    tables = MappingProxyType(clean)
    out = replace(extracts, tables=tables, stage="clean", ids="pseudonym", study_window=(s, e))
    return out, QAReport(tuple(found.issues)), attrition


def _check_options(
    extracts: Extracts, ids: str, duplicates: str, completeness: str, max_row_loss: float
) -> None:
    if extracts.stage != "raw":
        raise DataError(
            "These extracts are already validated. Fix: pass read_extracts(...) output."
        )
    if duplicates not in ("exclude", "keep"):
        raise DataError(f"duplicates must be 'exclude' or 'keep', not {duplicates!r}.")
    if ids not in ("nhs_number", "pseudonym"):
        raise DataError(f"ids must be 'nhs_number' or 'pseudonym', not {ids!r}.")
    if completeness not in ("stop", "warn"):
        raise DataError(f"completeness must be 'stop' or 'warn', not {completeness!r}.")
    if not 0 <= max_row_loss <= 1:
        raise DataError(f"max_row_loss must be a share from 0 to 1, not {max_row_loss!r}.")


@dataclass
class _Found:
    """What validation has found so far, table by table: QA findings, attrition entries
    and the errors that will stop it."""

    issues: list[QAIssue] = field(default_factory=list)
    entries: list[AttritionEntry] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def add(self, iss: list[QAIssue], ent: list[AttritionEntry], err: list[str]) -> None:
        self.issues += iss
        self.entries += ent
        self.errors += err


def _population(
    extracts: Extracts, ids: Ids, end: dt.date, found: _Found
) -> tuple[ir.Table, ir.Table, ir.Table]:
    """The clean population rows, one row per person (death, year of birth and counts of
    what the rows disagree on) and the merged registration spells."""
    fmt = extracts.date_format
    typed, fmt_cols = _typed("population", extracts["population"], POPULATION, ids, fmt)
    rules = _base_rules("population", typed, POPULATION, ids, fmt)
    rules += _table_rules("population", typed, end)
    rules.append(_duplicate_rule("population", typed, POPULATION))
    pop, iss, ent, err = _process("population", typed, rules, fmt_cols, POPULATION, fmt)
    found.add(iss, ent, err + _unknown_values("population", extracts, iss))
    persons = (
        pop.group_by("person_id")
        .aggregate(
            death_date=pop.death_date.min(),
            _n_rows=pop.count(),
            _n_death=pop.death_date.nunique(),
            _n_sex=pop.sex.nunique(),
            _n_yob=pop.year_of_birth.nunique(),
            _yob=pop.year_of_birth.min(),
        )
        .cache()
    )
    spells = merged_spells(pop).cache()
    found.issues += _population_warnings(pop, persons, spells, ids)
    return pop, persons, spells


def _events(
    extracts: Extracts,
    persons: ir.Table,
    spells: ir.Table,
    ids: Ids,
    keep_duplicates: bool,
    window: tuple[dt.date, dt.date],
    found: _Found,
) -> dict[str, ir.Table]:
    """The clean rows of every other table, checked against the population."""
    fmt = extracts.date_format
    s, e = window
    clean: dict[str, ir.Table] = {}
    for name, spec in TABLES.items():
        if name == "population" or name not in extracts:
            continue
        typed, fmt_cols = _typed(name, extracts[name], spec, ids, fmt)
        x, ev_rules = _event_rules(name, typed, spec, persons, spells, s, e)
        rules = _base_rules(name, x, spec, ids, fmt)
        rules += _table_rules(name, x, e)
        rules.append(_duplicate_rule(name, x, spec, keep=keep_duplicates))
        rules += ev_rules
        tab, iss, ent, err = _process(name, x, rules, fmt_cols, spec, fmt)
        clean[name] = tab
        found.add(iss, ent, err + _unknown_values(name, extracts, iss))
    return clean


def _unknown_values(name: str, extracts: Extracts, issues: list[QAIssue]) -> list[str]:
    """The stop of each column of ``name`` that holds values outside its allowed list.
    Rows are counted under their first failed check only, so once one column is found
    wanting every coded column is looked at (the stop names them all)."""
    if not any(i.rule == "unknown_code" for i in issues):
        return []
    coded = [c for c in TABLES[name].columns if c.allowed is not None]
    found = [
        unknown_values_error(name, extracts[name], c)
        for c in coded
        if c.name in extracts[name].columns
    ]
    return [f for f in found if f is not None]


def _stop_if_unusable(
    clean: dict[str, ir.Table],
    found: _Found,
    ids: Ids,
    window: tuple[dt.date, dt.date],
    max_row_loss: float,
    completeness: Literal["stop", "warn"],
) -> None:
    """Raise the errors found, else those of the identifier and stop checks; the stop
    checks' warnings join the findings."""
    errors = found.errors or identifier_errors(
        Attrition(tuple(found.entries)), found.issues, ids, whole_tables_may_go=max_row_loss >= 1.0
    )
    if not errors:
        stops = _stop_checks(
            clean, Attrition(tuple(found.entries)), *window, max_row_loss, completeness
        )
        errors += [i.message for i in stops if i.action == "error"]
        found.issues += [i for i in stops if i.action != "error"]
    if errors:
        raise DataError(" ".join(errors))


def _stop_checks(
    clean: dict[str, ir.Table],
    attrition: Attrition,
    start: dt.date,
    end: dt.date,
    max_row_loss: float,
    completeness: Literal["stop", "warn"],
) -> list[QAIssue]:
    """Findings that make a run silently wrong (:mod:`spevidence.data.coverage`): a table
    losing too many rows; and, unless ``completeness="warn"`` turns them into warnings,
    an empty extract, an event extract not covering the window, no accepted referral."""
    found = check_empty(attrition)
    loss = check_row_loss(attrition, max_row_loss)
    # not also checked for coverage: empty extracts, and tables stopped for losing more
    # rows than they set aside as expected (the loss is the story there, not the dates)
    empty = {i.table for i in found}
    over = {i.table for i in loss if i.action == "error"}
    lost = {x.table for x in row_losses(attrition) if x.table in over and x.lost >= x.expected}
    cover = {n: t for n, t in clean.items() if n not in empty | lost}
    found += check_coverage(cover, {n: str(TABLES[n].date_column) for n in cover}, start, end)
    if "referrals" in clean:
        found += check_accepted(clean["referrals"], attrition.kept("referrals"))
    if completeness == "warn":
        found = [replace(i, action="warning") for i in found]
    return loss + found


def _population_warnings(
    pop: ir.Table, persons: ir.Table, spells: ir.Table, ids: Ids
) -> list[QAIssue]:
    out: list[QAIssue] = []
    res = (
        persons.aggregate(
            death=(persons._n_death > 1).cast("int64").sum(),
            sex=(persons._n_sex > 1).cast("int64").sum(),
            yob=(persons._n_yob > 1).cast("int64").sum(),
            rows=persons._n_rows.sum(),
            people=persons.count(),
        )
        .to_pyarrow()
        .to_pylist()[0]
    )
    texts = {
        "death": ("death_date", "different death dates; the earliest is used"),
        "sex": ("sex", "different sex codes; the latest registration's is used"),
        "yob": ("year_of_birth", "different years of birth; the latest registration's is used"),
    }
    for k, (col, text) in texts.items():
        n = int(res[k] or 0)
        if n:
            out.append(
                QAIssue(
                    "population",
                    col,
                    "inconsistent_person",
                    n,
                    "warning",
                    f"population.{col}: {n} people have registration spells with {text}. "
                    "Fix: reconcile the records at source.",
                )
            )
    n_rows = int(res["rows"] or 0)
    n_people = int(res["people"] or 0)
    n_spells = int(spells.count().execute())
    if n_rows > n_spells:
        out.append(
            QAIssue(
                "population",
                "registration_start",
                "overlapping_spells",
                n_rows - n_spells,
                "warning",
                f"population.registration_start: {n_rows - n_spells} registration spells "
                "overlap or touch another spell of the same person; they were merged so no "
                "day is counted twice. Fix: none needed.",
            )
        )
    if ids == "pseudonym" and n_people >= 20:
        looks = int(
            pop.aggregate(n=nhs_number_valid(pop.person_id).cast("int64").sum())
            .to_pyarrow()
            .to_pylist()[0]["n"]
            or 0
        )
        if looks * 10 >= n_rows * 9:
            out.append(
                QAIssue(
                    "population",
                    "person_id",
                    "looks_like_nhs_number",
                    looks,
                    "warning",
                    f"population.person_id: {looks} of {n_rows} identifiers look like valid "
                    "NHS numbers, but ids='pseudonym' was given. Fix: if they are NHS numbers, "
                    "use ids='nhs_number' with a key so they are pseudonymised.",
                )
            )
    return out
