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
    # ---- stage 1: one row per unit with a hash of its whole design path
    lin_rate = model == "linear" and exposure is not None
    e_expr = t[exposure].cast("float64") if exposure else ibis.literal(1.0)
    w_expr = t[weights].cast("float64") if weights else ibis.literal(1.0)
    y_expr = t[yname].cast("float64")
    base = t.select(
        _id=t[idname],
        _t=t[tname],
        _y=y_expr / e_expr * _DAYS_PER_YEAR if lin_rate else y_expr,
        _e=e_expr,
        _w=w_expr * e_expr if lin_rate else w_expr,
        _cl=t[cluster],
        _grp=group_expr(t).cast("float64"),
        **{f"_x{j}": f(t).cast("float64") for j, f in enumerate(xexprs.values())},
    )
    k = len(xexprs)
    design_cols = ["_t", "_e", "_w", *[f"_x{j}" for j in range(k)]]
    P = 2147483629  # prime < 2**31: the sums of T hashes stay far below 2**63
    sig1 = ibis.struct({c: base[c] for c in design_cols}).hash()
    sig2 = ibis.struct({"salt": ibis.literal(7), **{c: base[c] for c in design_cols}}).hash()
    h1 = ((sig1 % P) + P) % P
    h2 = ((sig2 % P) + P) % P
    base = base.mutate(_h1=h1, _h2=h2)
    units = (
        base.group_by("_id")
        .aggregate(
            nrow=base.count(),
            nper=base._t.nunique(),
            tot=base._y.sum(),
            grp_min=base._grp.min(),
            grp_max=base._grp.max(),
            cl_n=base._cl.nunique(),
            cl=base._cl.min(),
            k1=base._h1.sum(),
            k2=base._h2.sum(),
        )
        .cache()
    )
    uck = (
        units.aggregate(
            dup=(units.nrow - units.nper).sum(),
            single=(units.nrow == 1).sum(),
            grp_vary=(units.grp_min != units.grp_max).sum(),
            cl_split=(units.cl_n > 1).sum(),
        )
        .to_pandas()
        .iloc[0]
    )
    if uck["dup"] > 0:
        raise DataError(
            f"{int(uck['dup'])} rows repeat a ({idname}, {tname}) pair; the DiD needs "
            "one row per unit and period. If a person sits in several match sets, use a "
            "unit id per copy (e.g. person and subclass) as idname and cluster by person."
        )
    if uck["grp_vary"] > 0:
        return "the treatment group changes within a unit"
    if uck["cl_split"] > 0:
        return "clusters split a unit"
    if uck["single"] > 0:
        attrition.append(("singleton_unit_or_period", int(uck["single"])))
        units = units.filter(units.nrow > 1)
    # ---- stage 2: cohort sizes, and cohort x period sums with design values (verified)
    coh = units.group_by(["k1", "k2"]).aggregate(
        n=units.count(),
        nzero=(units.tot <= 0).cast("int64").sum(),
        grp=units.grp_min.min(),
        grp_hi=units.grp_min.max(),
    )
    ncl = units.aggregate(
        all=units.cl.nunique(), pos=units.cl.nunique(where=units.tot > 0)
    ).to_pandas()
    rows = base.inner_join(units.select("_id", "k1", "k2", "cl"), "_id")
    design = ["_e", "_w", *[f"_x{j}" for j in range(k)]]
    aggs: dict[str, Any] = {"cnt": rows.count(), "Y": rows._y.sum()}
    for c in design:
        aggs[f"{c}_min"] = rows[c].min()
        aggs[f"{c}_max"] = rows[c].max()
    cell = rows.group_by(["k1", "k2", "_t"]).aggregate(**aggs).to_pandas()
    cohorts = coh.to_pandas().sort_values(["k1", "k2"]).reset_index(drop=True)
    if len(cohorts) == 0:
        raise DataError("The DiD input has no rows with complete data; nothing to estimate.")
    # ---- numpy side
    C, T = len(cohorts), len(periods)
    gidx = pd.MultiIndex.from_frame(cohorts[["k1", "k2"]])
    g_of_cell = gidx.get_indexer(pd.MultiIndex.from_frame(cell[["k1", "k2"]]))
    t_of_cell = pd.Index(periods).get_indexer(cell["_t"])
    n = cohorts["n"].to_numpy(float)
    consistent = (cohorts["grp"] == cohorts["grp_hi"]).all() and np.array_equal(
        cell["cnt"].to_numpy(float), n[g_of_cell]
    )
    for c in design:
        consistent = consistent and np.array_equal(
            cell[f"{c}_min"].to_numpy(float), cell[f"{c}_max"].to_numpy(float)
        )
    if not consistent:  # pragma: no cover - a 62-bit hash collision
        return "cohort hash collision"
    mask = np.zeros((C, T), dtype=bool)
    mask[g_of_cell, t_of_cell] = True
    Y = np.zeros((C, T))
    Y[g_of_cell, t_of_cell] = cell["Y"].to_numpy(float)
    E = np.ones((C, T))
    E[g_of_cell, t_of_cell] = cell["_e_min"].to_numpy(float)
    W = np.zeros((C, T))
    W[g_of_cell, t_of_cell] = cell["_w_min"].to_numpy(float)
    X = np.zeros((C, T, k))
    for j in range(k):
        X[g_of_cell, t_of_cell, j] = cell[f"_x{j}_min"].to_numpy(float)
    offset = np.log(E) if (model == "poisson" and exposure is not None) else np.zeros((C, T))
    nzero = cohorts["nzero"].to_numpy(float)
    grp = cohorts["grp"].to_numpy(float)
    if model == "poisson":
        tot_t = (Y * W).sum(axis=0)
        if np.any(tot_t[mask.any(axis=0)] <= 0):
            return "a period has no events"
        for g, label in ((1.0, "treated"), (0.0, "comparison")):
            sel = grp == g
            if sel.any() and Y[sel].sum() == 0:
                raise EstimationError(
                    f"Outcome '{yname}' is zero in every row of the {label} group; a rate "
                    "ratio cannot be estimated. Choose another outcome or a longer window."
                )
    keys_df = cohorts[["k1", "k2"]]
    period_values = list(periods)

    def meat_fn(V: np.ndarray, b: np.ndarray) -> np.ndarray:
        """One more scan: unit scores V_g' y_i - b_g, summed by cluster; returns sum s s'."""
        kk = V.shape[2]
        gi, ti = np.nonzero(mask)
        vtab = pd.DataFrame(
            {
                "k1": keys_df["k1"].to_numpy()[gi],
                "k2": keys_df["k2"].to_numpy()[gi],
                "_t": np.asarray(period_values, dtype=object)[ti],
                **{f"v{j}": V[gi, ti, j] for j in range(kk)},
            }
        )
        vtab["_t"] = vtab["_t"].astype(cell["_t"].dtype)
        btab = pd.DataFrame(
            {"k1": keys_df["k1"], "k2": keys_df["k2"], **{f"b{j}": b[:, j] for j in range(kk)}}
        )
        vt = ibis.memtable(vtab)
        bt = ibis.memtable(btab)
        r2 = rows.inner_join(vt, ["k1", "k2", "_t"])
        per_unit = r2.group_by(["_id", "cl", "k1", "k2"]).aggregate(
            **{f"s{j}": (r2._y * r2[f"v{j}"]).sum() for j in range(kk)}
        )
        pu = per_unit.inner_join(bt, ["k1", "k2"])
        per_cl = pu.group_by("cl").aggregate(
            **{f"s{j}": (pu[f"s{j}"] - pu[f"b{j}"]).sum() for j in range(kk)}
        )
        prods = {
            f"m{a}_{c}": (per_cl[f"s{a}"] * per_cl[f"s{c}"]).sum()
            for a in range(kk)
            for c in range(a, kk)
        }
        got = per_cl.aggregate(**prods).to_pandas().iloc[0]
        meat = np.zeros((kk, kk))
        for a in range(kk):
            for c in range(a, kk):
                meat[a, c] = meat[c, a] = float(got[f"m{a}_{c}"])
        return meat

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
        meat_fn=meat_fn,
        n_clusters_known=int(ncl["pos" if model == "poisson" else "all"].iloc[0]),
    )
    return IbisMoments(moments=m, attrition=tuple(attrition), n_rows_in=n_in, group=grp)
