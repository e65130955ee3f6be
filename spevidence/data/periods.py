"""The study window and registration spells: the periods validation and linkage share."""

from __future__ import annotations

import datetime as dt

import ibis
import ibis.expr.types as ir

from spevidence.errors import DataError

FAR = dt.date(2999, 12, 31)  # the end of an open registration spell (no end date)


def _as_date(value: dt.date | str, what: str) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise DataError(f"{what} {value!r} is not a date. Fix: write it as YYYY-MM-DD.") from None


def study_window(start: dt.date | str, end: dt.date | str) -> tuple[dt.date, dt.date]:
    s, e = _as_date(start, "start"), _as_date(end, "end")
    if e < s:
        raise DataError(f"The study window ends ({e}) before it starts ({s}). Fix: swap them.")
    return s, e


def merged_spells(pop: ir.Table) -> ir.Table:
    """Merge overlapping or touching registration spells per person (gaps and islands)."""
    sp = pop.select(
        person_id=pop.person_id,
        start=pop.registration_start,
        end=ibis.coalesce(pop.registration_end, ibis.literal(FAR)),
    )
    run = ibis.window(
        group_by=sp.person_id, order_by=[sp.start, sp.end], preceding=None, following=0
    )
    sp = sp.mutate(_runmax=sp.end.max().over(run))
    w = ibis.window(group_by=sp.person_id, order_by=[sp.start, sp.end])
    sp = sp.mutate(_prev=sp._runmax.lag().over(w))
    sp = sp.mutate(
        _new=ibis.cases(
            (sp._prev.isnull(), 1), (sp.start.delta(sp._prev, unit="day") > 1, 1), else_=0
        )
    )
    sp = sp.mutate(_island=sp._new.sum().over(run))
    return (
        sp.group_by(["person_id", "_island"])
        .aggregate(start=sp.start.min(), end=sp.end.max())
        .drop("_island")
    )
