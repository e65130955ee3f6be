"""Descriptive tables for the report: cohort characteristics, trends by event time,
and the naive before/after comparison that the matched design corrects.

All functions take the matched data frame (docs/contracts.md, "Matched data") and return
aggregate tables only (no identifiers); counts in them are disclosure-controlled later.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

OUTCOME_LABELS = {
    "gp": "GP appointments",
    "ae": "A&E attendances",
    "admissions": "Unplanned admissions",
}
GROUP_LABELS = {1: "Referred", 0: "Matched comparators"}


def _int(x: object) -> int:
    """A groupby key as a Python int (pandas-stubs types keys as Hashable)."""
    return int(x)  # type: ignore[call-overload]


def _index_rows(matched: pd.DataFrame) -> pd.DataFrame:
    """One row per matched unit at its index period (event_time == 0)."""
    return matched.loc[matched["event_time"] == 0]


def cohort_characteristics(matched: pd.DataFrame, *, outcomes: tuple[str, ...]) -> pd.DataFrame:
    """Table 1: characteristics at the index month by group (referred vs comparators).

    Returns rows ``characteristic, level, group, n, value`` where ``value`` is a mean
    (continuous) or the count ``n`` in the level (categorical), and ``pct`` the share.
    """
    idx = _index_rows(matched).copy()
    idx["age"] = (pd.to_datetime(idx["period"]).dt.year - idx["year_of_birth"]).astype(float)
    rows: list[dict[str, object]] = []
    for treated, g in idx.groupby("treated", sort=True):
        group = GROUP_LABELS[_int(treated)]
        n = len(g)
        rows.append(
            {
                "characteristic": "People",
                "level": "",
                "group": group,
                "n": n,
                "mean": np.nan,
                "pct": 100.0,
            }
        )
        rows.append(
            {
                "characteristic": "Age at index (years)",
                "level": "mean",
                "group": group,
                "n": n,
                "mean": float(g["age"].mean()),
                "pct": np.nan,
            }
        )
        for sex, gs in g.groupby("sex", sort=True):
            rows.append(
                {
                    "characteristic": "Sex",
                    "level": str(sex),
                    "group": group,
                    "n": len(gs),
                    "mean": np.nan,
                    "pct": 100.0 * len(gs) / n,
                }
            )
        if "imd_decile" in g:
            quint = ((g["imd_decile"].astype(float) + 1) // 2).astype("Int64")
            for q, gq in g.groupby(quint, sort=True):
                rows.append(
                    {
                        "characteristic": "IMD quintile (1 = most deprived)",
                        "level": str(q),
                        "group": group,
                        "n": len(gq),
                        "mean": np.nan,
                        "pct": 100.0 * len(gq) / n,
                    }
                )
        for o in outcomes:
            col = f"prior_{o}"
            if col in g:
                rows.append(
                    {
                        "characteristic": f"{OUTCOME_LABELS[o]} in prior 12 months",
                        "level": "mean",
                        "group": group,
                        "n": n,
                        "mean": float(g[col].mean()),
                        "pct": np.nan,
                    }
                )
    return pd.DataFrame(rows)


def trends(matched: pd.DataFrame, *, outcomes: tuple[str, ...]) -> pd.DataFrame:
    """Mean events per person-month by event time and group: ``outcome, group, event_time,
    n, mean`` (weighted by the matching weights)."""
    rows = []
    w = matched["weights"].astype(float) if "weights" in matched else pd.Series(1.0, matched.index)
    for (treated, e), g in matched.groupby(["treated", "event_time"], sort=True):
        wg = w.loc[g.index]
        for o in outcomes:
            rows.append(
                {
                    "outcome": o,
                    "group": GROUP_LABELS[_int(treated)],
                    "event_time": _int(e),
                    "n": int(g["person_id"].nunique()),
                    "mean": float(np.average(g[o].astype(float), weights=wg)),
                }
            )
    return pd.DataFrame(rows).sort_values(["outcome", "group", "event_time"], ignore_index=True)


def naive_before_after(
    matched: pd.DataFrame, *, outcomes: tuple[str, ...], pre: int, post: int
) -> pd.DataFrame:
    """The before/after comparison most published evaluations report, for the referred
    only, beside the same comparison in the matched comparators.

    Events per person-year in the ``pre`` months before the index month and the ``post``
    months from it; ``change_pct`` is (after − before) / before.
    """
    rows = []
    for treated, g in matched.groupby("treated", sort=True):
        before = g[(g["event_time"] >= -pre) & (g["event_time"] < 0)]
        after = g[(g["event_time"] >= 0) & (g["event_time"] < post)]
        for o in outcomes:
            b = 12.0 * before[o].sum() / max(len(before), 1)
            a = 12.0 * after[o].sum() / max(len(after), 1)
            rows.append(
                {
                    "outcome": o,
                    "group": GROUP_LABELS[_int(treated)],
                    "n": int(g["person_id"].nunique()),
                    "before_per_person_year": b,
                    "after_per_person_year": a,
                    "change_pct": 100.0 * (a - b) / b if b > 0 else np.nan,
                }
            )
    return pd.DataFrame(rows)
