"""Descriptive tables for the report: cohort flow, cohort characteristics (Table 1),
trends by event time, and the naive before/after comparison the matched design corrects.

Inputs are matched data (docs/contracts.md, "Matched data") or the panel; outputs are
aggregate tables only, with their counts in columns named ``n*`` so that disclosure
control (``spevidence.disclosure.control``) can round and redact them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

OUTCOME_LABELS = {
    "gp": "GP appointments",
    "ae": "A&E attendances",
    "admissions": "Unplanned admissions",
}


def _int(x: object) -> int:
    """A groupby key as a Python int (pandas-stubs types keys as Hashable)."""
    return int(x)  # type: ignore[call-overload]


def _group(treated: object) -> str:
    return "referred" if _int(treated) == 1 else "comparators"


def cohort_characteristics(
    matched: pd.DataFrame, pool: pd.DataFrame | None, *, outcomes: tuple[str, ...]
) -> pd.DataFrame:
    """Table 1 (long form): one row per characteristic, level and group.

    ``matched`` holds the matched units; rows at ``event_time == 0`` describe them at
    the index month. ``pool`` (optional) holds one row per eligible comparator at a
    sampled index month, to show who the comparators were chosen from. Columns:
    ``characteristic, level, group, n_group, n, value`` where ``value`` is a mean
    (``n`` empty) or a percentage of ``n_group`` (``n`` people in the level).
    """
    at_index = matched.loc[matched["event_time"] == 0].copy()
    at_index["group"] = [_group(v) for v in at_index["treated"]]
    frames = [at_index]
    if pool is not None and len(pool):
        p = pool.copy()
        p["group"] = "comparator_pool"
        frames.append(p)
    data = pd.concat(frames, ignore_index=True)
    data["age"] = pd.to_datetime(data["period"]).dt.year - data["year_of_birth"].astype(float)
    rows: list[dict[str, object]] = []
    for group, g in data.groupby("group", sort=False):
        n_group = len(g)
        rows.append(_row("People", "", group, n_group, n_group, float("nan")))
        rows.append(
            _row("Age at index (years), mean", "", group, n_group, None, float(g["age"].mean()))
        )
        female = int((g["sex"] == "F").sum())
        rows.append(_row("Female (%)", "", group, n_group, female, 100.0 * female / n_group))
        if "imd_decile" in g and g["imd_decile"].notna().any():
            deprived = int((g["imd_decile"].astype(float) <= 2).sum())
            rows.append(
                _row(
                    "IMD decile 1-2, most deprived (%)",
                    "",
                    group,
                    n_group,
                    deprived,
                    100.0 * deprived / n_group,
                )
            )
        for o in outcomes:
            col = f"prior_{o}"
            if col in g:
                rows.append(
                    _row(
                        f"{OUTCOME_LABELS[o]}, prior 12 months (mean)",
                        "",
                        group,
                        n_group,
                        None,
                        g[col].astype(float).mean(),
                    )
                )
    return pd.DataFrame(rows)


def _row(
    characteristic: str, level: str, group: object, n_group: int, n: int | None, value: float
) -> dict[str, object]:
    return {
        "characteristic": characteristic,
        "level": level,
        "group": str(group),
        "n_group": n_group,
        "n": pd.NA if n is None else n,
        "value": float(value),
    }


def characteristics_wide(long: pd.DataFrame) -> pd.DataFrame:
    """Table 1 as the report shows it: a row per characteristic, a column per group.

    Takes the *disclosure-controlled* long table (:func:`spevidence.disclosure.release`).
    The "People" row shows the (rounded) group sizes; percentages are recomputed from the
    rounded counts (missing where the count is redacted) and means, already rounded to the
    step of their released group size (``spevidence.disclosure.step``), are given to at
    most one decimal, so that no exact count can be worked back from a released number
    (e.g. 59.46 % female is 88 of 148 people, when the released group size is 150).
    """
    t = long.copy()
    n = pd.to_numeric(t["n"], errors="coerce").astype("float64")
    n_group = pd.to_numeric(t["n_group"], errors="coerce").astype("float64")
    is_people = t["characteristic"] == "People"
    is_share = t["characteristic"].str.endswith("(%)")
    value = pd.to_numeric(t["value"], errors="coerce").astype("float64").round(1)
    share = (100.0 * n / n_group.where(n_group > 0)).round(1)
    value = value.where(~is_share, share)
    t["value"] = value.where(~is_people, n)
    wide = t.pivot_table(
        index="characteristic",
        columns="group",
        values="value",
        aggfunc="first",
        sort=False,
        dropna=False,
    )
    wide = wide.reindex(
        columns=[c for c in ("referred", "comparators", "comparator_pool") if c in wide.columns]
    )
    order = list(dict.fromkeys(t["characteristic"]))
    wide = wide.reindex(order).reset_index()
    wide.columns.name = None
    return wide


def trends(matched: pd.DataFrame, *, outcomes: tuple[str, ...], months: int = 1) -> pd.DataFrame:
    """Mean events per person-month by event time and group (weighted by the matching
    weights): ``outcome, group, event_time, months, n, n_events, n_weight, mean``.

    ``mean = n_events / n_weight`` (weighted events over the sum of weights, each
    rounded to a whole number), so that disclosure control can round both and release
    the mean recomputed from the rounded counts (the disclosure catalogue's ``ratios``).

    ``months = 3`` pools event time into quarters from the index month (months 0-2,
    3-5, ..., -3 to -1, ...; ``months = 6``: half-years): ``event_time`` is then a
    period's first month, ``n`` and ``n_weight`` count its person-months and ``mean`` is
    still events per person-month, for outcomes too rare to release month by month.
    """
    rows = []
    w = matched["weights"].astype(float) if "weights" in matched else pd.Series(1.0, matched.index)
    start = matched["event_time"].astype("int64") // months * months
    for (treated, e), g in matched.groupby([matched["treated"], start], sort=True):
        wg = w.loc[g.index].to_numpy()
        for o in outcomes:
            events = float(np.dot(g[o].astype(float).to_numpy(), wg))
            rows.append(
                {
                    "outcome": o,
                    "group": _group(treated),
                    "event_time": _int(e),
                    "months": months,
                    "n": len(g),
                    "n_events": round(events),
                    "n_weight": round(float(wg.sum())),
                    "mean": events / float(wg.sum()),
                }
            )
    return pd.DataFrame(rows).sort_values(["outcome", "group", "event_time"], ignore_index=True)


def naive_before_after(
    matched: pd.DataFrame, *, outcomes: tuple[str, ...], pre: int, post: int
) -> pd.DataFrame:
    """The before/after comparison most published evaluations report, for the referred
    only: events per person-year in the ``pre`` months before the index month and in the
    ``post`` months from it; ``change_pct`` is (after - before) / before. The same
    comparison in the matched comparators is added as ``comparator_change_pct``.
    """
    rows = []
    for o in outcomes:
        res: dict[str, dict[str, float]] = {}
        for treated, g in matched.groupby("treated", sort=True):
            before = g[(g["event_time"] >= -pre) & (g["event_time"] < 0)]
            after = g[(g["event_time"] >= 0) & (g["event_time"] < post)]
            b = 12.0 * before[o].sum() / max(len(before), 1)
            a = 12.0 * after[o].sum() / max(len(after), 1)
            res[_group(treated)] = {
                "n": float(g.loc[g["event_time"] == 0].shape[0]),
                "events_before": int(before[o].sum()),
                "months_before": len(before),
                "events_after": int(after[o].sum()),
                "months_after": len(after),
                "before": b,
                "after": a,
                "change": 100.0 * (a - b) / b if b > 0 else np.nan,
            }
        empty = {"n": 0, "before": np.nan, "after": np.nan, "change": np.nan}
        empty |= {"events_before": 0, "months_before": 0, "events_after": 0, "months_after": 0}
        r = res.get("referred", empty)
        c = res.get("comparators", empty)
        rows.append(
            {
                "outcome": o,
                "n": int(r["n"]),
                "mean_before": r["before"],
                "mean_after": r["after"],
                "change_pct": r["change"],
                "comparator_change_pct": c["change"],
                # the counts behind the means, for disclosure control
                # (disclosure control recomputes the means from them once rounded)
                **{f"n_{k}": int(r[k]) for k in _NAIVE_COUNTS},
                **{f"n_comparator_{k}": int(c[k]) for k in _NAIVE_COUNTS},
            }
        )
    return pd.DataFrame(rows)


_NAIVE_COUNTS = ("events_before", "months_before", "events_after", "months_after")


def person_codes(person_id: pd.Series) -> tuple[np.ndarray, int]:
    """An integer code per row for ``person_id`` (a categorical's own codes, no strings
    touched) and the number of codes."""
    if isinstance(person_id.dtype, pd.CategoricalDtype):
        return person_id.cat.codes.to_numpy(dtype=np.int64), len(person_id.cat.categories)
    codes, uniques = pd.factorize(person_id)
    return codes.astype(np.int64), len(uniques)


def per_row(person_id: pd.Series, values: pd.Series) -> np.ndarray:
    """``values`` (float, indexed by person id) at each row's person, NaN for people not
    in it; a categorical ``person_id`` is looked up once per category, not per row."""
    if isinstance(person_id.dtype, pd.CategoricalDtype):
        by_code = values.reindex(person_id.cat.categories).to_numpy(dtype=float)
        codes = person_id.cat.codes.to_numpy()
        return np.where(codes >= 0, by_code[codes], np.nan)
    return person_id.map(values).to_numpy(dtype=float)


def naive_change_log_se(
    matched: pd.DataFrame,
    *,
    outcomes: tuple[str, ...],
    pre: int,
    post: int,
    idname: str = "unit_id",
) -> pd.Series:
    """Standard error of the log of the referred's naive after/before rate ratio (the
    ``change_pct`` of :func:`naive_before_after`), clustered by person, one per outcome.

    The same people are counted before and after, and use is over-dispersed, so a Poisson
    interval from the four totals would be too narrow. The delta method on
    ``log(S_a / M_a) - log(S_b / M_b)`` (events ``S`` over person-months ``M``) gives each
    person the influence ``e_a/S_a - m_a/M_a - e_b/S_b + m_b/M_b``, and the variance is
    ``n / (n - 1)`` times the sum of their squares (a cluster-robust sandwich).
    Missing where an outcome has no events before or after, or fewer than two people.
    """
    ref = matched.loc[matched["treated"] == 1]
    et = ref["event_time"]
    parts = {
        "b": ref.loc[(et >= -pre) & (et < 0)],
        "a": ref.loc[(et >= 0) & (et < post)],
    }
    ids = pd.Index(ref[idname].unique())
    out = {}
    for o in outcomes:
        infl = np.zeros(len(ids))
        ok = len(ids) > 1
        for k, sign in (("a", 1.0), ("b", -1.0)):
            g = parts[k].groupby(idname, sort=False)[o].agg(["sum", "size"]).reindex(ids)
            e, m = g["sum"].fillna(0).to_numpy(float), g["size"].fillna(0).to_numpy(float)
            ok = ok and e.sum() > 0 and m.sum() > 0
            if ok:
                infl += sign * (e / e.sum() - m / m.sum())
        n = len(ids)
        out[o] = float(np.sqrt(n / (n - 1) * np.sum(infl**2))) if ok else np.nan
    return pd.Series(out, name="change_log_se", dtype=float)


def lagged_sums(
    panel: pd.DataFrame, column: str, windows: dict[str, tuple[int, int]]
) -> pd.DataFrame:
    """Add, for each person-period, the sum of ``column`` over earlier periods.

    ``windows`` maps a new column name to ``(a, b)``: the sum over periods t-b .. t-a
    (e.g. ``(1, 3)`` = the three months before). Periods without a panel row count as
    zero. Used to match on the *trajectory* of use before referral, not only its total.
    """
    pidx, n_people = person_codes(panel["person_id"])
    t = panel["t"].to_numpy(dtype=np.int64)
    n_t = int(t.max()) + 1
    # the sum per person and period (integers, so exact in float64), then running sums
    known = pidx >= 0  # a missing person_id: no sums (NaN)
    w = np.nan_to_num(panel[column].to_numpy(dtype=np.float64, na_value=np.nan))  # as skipna
    arr = np.bincount((pidx * n_t + t)[known], weights=w[known], minlength=n_people * n_t).reshape(
        n_people, n_t
    )
    cum = np.zeros((n_people, n_t + 1))
    np.cumsum(arr, axis=1, out=cum[:, 1:])
    del arr
    out = panel.copy(deep=False)  # new columns only: the panel's own are shared
    for name, (a, b) in windows.items():
        hi = np.clip(t - a + 1, 0, None)
        lo = np.clip(t - b, 0, None)
        out[name] = np.where(known, cum[pidx, hi] - cum[pidx, lo], np.nan)
    return out
