"""Cohort moments computed inside the engine (DuckDB, Spark) with Ibis: two GROUP BYs.

Row-level data never enter Python. Stage 1 groups rows by unit and pivots the T periods
into columns (observed flag, design values, outcome); stage 2 groups units by their whole
design path (a *cohort*) and sums ``y_t`` and ``y_s * y_t`` (DESIGN.md section 6). The
result has one row per cohort (per cluster x cohort for coarser clusters): a few kB.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from spevidence.did._fe import Model, Moments
from spevidence.errors import DataError, EstimationError

_DAYS_PER_YEAR = 365.25


@dataclass(frozen=True)
class IbisMoments:
    """Moments plus the bookkeeping the estimators report."""

    moments: Moments
    attrition: tuple[tuple[str, int], ...]
    n_rows_in: int
    # per cohort: group indicator (treated / ever-treated), for the zero-outcome check
    group: np.ndarray


def is_ibis_table(data: Any) -> bool:
    """True for an ibis Table (without importing ibis when it is not loaded)."""
    if "ibis" not in sys.modules or isinstance(data, pd.DataFrame):
        return False
    import ibis.expr.types as ir

    return isinstance(data, ir.Table)


def moments_from_ibis(
    table: Any,
    *,
    yname: str,
    idname: str,
    tname: str,
    xexprs: dict[str, Callable[[Any], Any]],
    group_expr: Callable[[Any], Any],
    binary: list[str],
    model: Model,
    exposure: str | None,
    weights: str | None,
    cluster: str,
) -> IbisMoments | str:
    """Compute cohort moments in the engine; return a reason string when not possible.

    ``xexprs`` build each regressor from the (renamed) table; ``group_expr`` the 0/1 unit
    group (treated) used for checks; ``binary`` names input columns that must be 0/1.
    """
    import ibis

    cols = [yname, idname, tname, *binary]
    cols += [c for c in (exposure, weights, cluster) if c is not None]
    missing = [c for c in dict.fromkeys(cols) if c not in table.columns]
    if missing:
        raise DataError(
            f"Column(s) {missing} not found in the DiD input table. "
            f"Available columns: {list(table.columns)}. Pass the right names."
        )
    # ---- row-level checks, one scan
    t = table
    checks: dict[str, Any] = {"n": t.count()}
    for c in dict.fromkeys(cols):
        checks[f"miss__{c}"] = t[c].isnull().sum()
    checks["neg_y"] = (t[yname] < 0).sum()
    for c in binary:
        checks[f"nonbin__{c}"] = (t[c].notnull() & ~t[c].cast("float64").isin([0.0, 1.0])).sum()
    if exposure is not None:
        checks["bad_e"] = (t[exposure] <= 0).sum()
    if weights is not None:
        checks["neg_w"] = (t[weights] < 0).sum()
        checks["zero_w"] = (t[weights] == 0).sum()
    ck = t.aggregate(**checks).to_pandas().iloc[0]
    n_in = int(ck["n"])
    attrition: list[tuple[str, int]] = []
    if model == "poisson" and ck["neg_y"] > 0:
        raise DataError(
            f"Outcome column '{yname}' has {int(ck['neg_y'])} negative values; a Poisson "
            "model needs counts (>= 0). Use model='linear' or fix the outcome."
        )
    for c in binary:
        if ck[f"nonbin__{c}"] > 0:
            raise DataError(
                f"Column '{c}' must be 0/1; {int(ck[f'nonbin__{c}'])} of {n_in} rows have "
                "other values. Recode it as an indicator."
            )
    if exposure is not None and ck["bad_e"] > 0:
        raise DataError(
            f"Exposure column '{exposure}' has {int(ck['bad_e'])} rows with exposure <= 0. "
            "Remove person-periods with no time at risk before the DiD."
        )
    if weights is not None and ck["neg_w"] > 0:
        raise DataError(
            f"Weights column '{weights}' has {int(ck['neg_w'])} negative values; matching "
            "weights must be >= 0."
        )
    keep = ibis.literal(True)
    for c in dict.fromkeys(cols):
        if ck[f"miss__{c}"] > 0:
            attrition.append((f"missing_{c}", int(ck[f"miss__{c}"])))
        keep = keep & t[c].notnull()
    if weights is not None and ck["zero_w"] > 0:
        attrition.append(("zero_weight", int(ck["zero_w"])))
        keep = keep & (t[weights] != 0)
    t = t.filter(keep)
    # ---- periods
    per = t.group_by(tname).aggregate(n=t.count()).order_by(tname).to_pandas()
    if (per["n"] == 1).any():
        return "a period is observed once (singleton)"
    periods = per[tname].tolist()
    T = len(periods)
    # ---- stage 1: one row per unit, periods pivoted
    base = t.select(
        _id=t[idname],
        _t=t[tname],
        _y=t[yname].cast("float64"),
        _e=(t[exposure].cast("float64") if exposure else ibis.literal(1.0)),
        _w=(t[weights].cast("float64") if weights else ibis.literal(1.0)),
        _cl=t[cluster],
        _grp=group_expr(t).cast("float64"),
        **{f"_x{j}": f(t).cast("float64") for j, f in enumerate(xexprs.values())},
    )
    k = len(xexprs)
    agg: dict[str, Any] = {
        "nrow": base.count(),
        "nper": base._t.nunique(),
        "tot": base._y.sum(),
        "grp_min": base._grp.min(),
        "grp_max": base._grp.max(),
        "cl_n": base._cl.nunique(),
        "cl": base._cl.min(),
    }
    for i, p in enumerate(periods):
        at = base._t == p
        agg[f"o{i}"] = base._y.count(where=at)
        agg[f"y{i}"] = base._y.sum(where=at)
        agg[f"e{i}"] = base._e.max(where=at)
        agg[f"w{i}"] = base._w.max(where=at)
        for j in range(k):
            agg[f"x{j}_{i}"] = base[f"_x{j}"].max(where=at)
    units = base.group_by("_id").aggregate(**agg)
    uck = units.aggregate(
        n_units=units.count(),
        dup=(units.nrow - units.nper).sum(),
        single=(units.nrow == 1).sum(),
        grp_vary=(units.grp_min != units.grp_max).sum(),
        cl_split=(units.cl_n > 1).sum(),
    ).to_pandas()
    uck_row = uck.iloc[0]
    if uck_row["dup"] > 0:
        raise DataError(
            f"{int(uck_row['dup'])} rows repeat a ({idname}, {tname}) pair; the DiD needs "
            "one row per unit and period. Aggregate the panel first."
        )
    if uck_row["grp_vary"] > 0:
        return "the treatment group changes within a unit"
    if uck_row["cl_split"] > 0:
        return "clusters split a unit"
    if uck_row["single"] > 0:
        attrition.append(("singleton_unit_or_period", int(uck_row["single"])))
        units = units.filter(units.nrow > 1)
    # ---- stage 2: cohorts
    keys = [f"o{i}" for i in range(T)] + ["grp_min"]
    keys += [f"e{i}" for i in range(T)] + [f"w{i}" for i in range(T)]
    keys += [f"x{j}_{i}" for j in range(k) for i in range(T)]
    unit_clusters = cluster == idname
    if not unit_clusters:
        keys = ["cl", *keys]
    yv = {i: units[f"y{i}"].fill_null(0.0) for i in range(T)}
    sums: dict[str, Any] = {
        "n": units.count(),
        "nzero": (units.tot <= 0).cast("int64").sum(),
        "npos": (units.tot > 0).cast("int64").sum(),
    }
    for i in range(T):
        sums[f"Y{i}"] = yv[i].sum()
    if unit_clusters:
        for a in range(T):
            for b in range(a, T):
                sums[f"S{a}_{b}"] = (yv[a] * yv[b]).sum()
    res = units.group_by(keys).aggregate(**sums).to_pandas()
    if len(res) == 0:
        raise DataError("The DiD input has no rows with complete data; nothing to estimate.")
    # ---- numpy side: assemble Moments (cluster x cohort rows are merged into cohorts)
    res = res.sort_values(keys, kind="stable", na_position="first").reset_index(drop=True)
    dkeys = [c for c in keys if c != "cl"]
    coh_code = pd.Series(
        pd.MultiIndex.from_frame(res[dkeys].astype("float64").fillna(-1.0)).factorize()[0]
    ).to_numpy()
    C = int(coh_code.max()) + 1
    first = np.zeros(C, dtype=np.int64)
    first[coh_code[::-1]] = np.arange(len(res))[::-1]
    rep = res.iloc[first]
    mask = np.column_stack([rep[f"o{i}"].to_numpy() > 0 for i in range(T)])
    X = np.zeros((C, T, k))
    for j in range(k):
        X[:, :, j] = np.column_stack([rep[f"x{j}_{i}"].to_numpy(float) for i in range(T)])
    E = np.column_stack([rep[f"e{i}"].to_numpy(float) for i in range(T)])
    W = np.column_stack([rep[f"w{i}"].to_numpy(float) for i in range(T)])
    X = np.nan_to_num(X) * mask[:, :, None]
    E = np.where(mask, np.nan_to_num(E, nan=1.0), 1.0)
    W = np.where(mask, np.nan_to_num(W, nan=0.0), 0.0)

    def by_cohort(col: str) -> np.ndarray:
        return np.bincount(coh_code, weights=res[col].to_numpy(float), minlength=C)

    n = by_cohort("n")
    nzero = by_cohort("nzero")
    Y = np.column_stack([by_cohort(f"Y{i}") for i in range(T)])
    scale = np.ones((C, T))
    offset = np.zeros((C, T))
    if exposure is not None:
        if model == "poisson":
            offset = np.log(E)
        else:
            scale = _DAYS_PER_YEAR / E
            W = W * E
    Y = Y * scale
    S = None
    cl_kw: dict[str, Any] = {}
    if unit_clusters:
        S = np.zeros((C, T, T))
        for a in range(T):
            for b in range(a, T):
                v = by_cohort(f"S{a}_{b}") * scale[:, a] * scale[:, b]
                S[:, a, b] = v
                S[:, b, a] = v
    else:
        cl_kw = {
            "cl_cohort": coh_code,
            "cl_code": pd.factorize(res["cl"], sort=True)[0].astype(np.int64),
            "cl_y": np.column_stack([res[f"Y{i}"].to_numpy(float) for i in range(T)])
            * scale[coh_code],
            "cl_n": res["n"].to_numpy(float),
            "cl_npos": res["npos"].to_numpy(float),
        }
    if model == "poisson":
        tot_t = (Y * W).sum(axis=0)
        if np.any(tot_t[mask.any(axis=0)] <= 0):
            return "a period has no events"
    grp = rep["grp_min"].to_numpy(float)
    if model == "poisson":
        for g, label in ((1.0, "treated"), (0.0, "comparison")):
            sel = grp == g
            if sel.any() and Y[sel].sum() == 0:
                raise EstimationError(
                    f"Outcome '{yname}' is zero in every row of the {label} group; a rate "
                    "ratio cannot be estimated. Choose another outcome or a longer window."
                )
    m = Moments(
        n_periods=T,
        mask=mask,
        X=X,
        offset=offset,
        W=W,
        n=n,
        nzero=nzero,
        Y=Y,
        xnames=tuple(xexprs),
        S=S,
        **cl_kw,
    )
    return IbisMoments(moments=m, attrition=tuple(attrition), n_rows_in=n_in, group=grp)
