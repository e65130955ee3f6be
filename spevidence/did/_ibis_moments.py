"""Moments computed inside the engine (DuckDB, Spark, ...) with Ibis: the one place.

Row-level data never enter Python; only a few kilobytes of sums come back
(DESIGN.md section 6). Two families of estimators use it:

* two-way DiD (:func:`moments_from_ibis`): stage 1 groups rows by unit and pivots
  the T periods into columns (observed flag, design values, outcome); stage 2 groups
  units by their whole design path (a *cohort*) and sums ``y_t`` and ``y_s * y_t``.
  The result has one row per cohort (per cluster x cohort for coarser clusters).
* staggered adoption (:func:`pivot_units`, :func:`cs_moments`,
  :func:`cs_moments_stream`, :func:`etwfe_moments`, :func:`cs_rows_stream`): one pass
  pivots the long panel to one row per unit (``sum(y) filter (t = k)`` for each
  period), a second aggregates units to cohorts (and clusters): counts, weight sums,
  weighted outcome sums and the ``T x T`` cross-products.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from spevidence.did._fe import Model, Moments
from spevidence.did._inputs import (
    DAYS_PER_YEAR,
    EARLY_UNITS,
    UNBALANCED_UNITS,
    bad_exposure,
    bad_weights,
    negative_outcome,
    negative_unit_weights,
    no_rows,
    not_binary,
    repeated_pairs,
    require_columns,
    units_with_repeated_periods,
    varies_within_units,
)
from spevidence.did._staggered_core import CohortMoments, _crossprod
from spevidence.errors import EstimationError

FloatArray = NDArray[np.float64]


def is_ibis_table(data: Any) -> bool:
    """True for an ibis Table (without importing ibis when it is not loaded)."""
    if "ibis" not in sys.modules or isinstance(data, pd.DataFrame):
        return False
    import ibis.expr.types as ir

    return isinstance(data, ir.Table)


# ----------------------------------------------------------------------------- two-way DiD


@dataclass(frozen=True)
class IbisMoments:
    """Moments plus the bookkeeping the estimators report."""

    moments: Moments
    attrition: tuple[tuple[str, int], ...]
    n_rows_in: int
    # per cohort: group indicator (treated / ever-treated), for the zero-outcome check
    group: np.ndarray


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
    cols = [yname, idname, tname, *binary]
    cols += [c for c in (exposure, weights, cluster) if c is not None]
    require_columns(cols, list(table.columns), "DiD input table")
    attrition: list[tuple[str, int]] = []
    t, n_in = _checked_rows(
        table, cols, yname=yname, binary=binary, model=model, exposure=exposure,
        weights=weights, attrition=attrition,
    )  # fmt: skip
    per = t.group_by(tname).aggregate(n=t.count()).order_by(tname).to_pandas()
    if (per["n"] == 1).any():
        return "a period is observed once (singleton)"
    periods = per[tname].tolist()
    base = _design_rows(
        t, yname=yname, idname=idname, tname=tname, xexprs=xexprs, group_expr=group_expr,
        model=model, exposure=exposure, weights=weights, cluster=cluster,
    )  # fmt: skip
    units = _units_by_path(base, idname=idname, tname=tname, attrition=attrition)
    if isinstance(units, str):
        return units
    k = len(xexprs)
    cohorts, cell, ncl, rows = _cohort_cells(base, units, k)
    arrays = _cohort_arrays(cohorts, cell, periods, k, model=model, exposure=exposure)
    if isinstance(arrays, str):  # pragma: no cover - a 62-bit hash collision
        return arrays
    if model == "poisson":
        why_not = _poisson_events_check(arrays, yname)
        if why_not is not None:
            return why_not
    m = Moments(
        n_periods=len(periods),
        mask=arrays.mask,
        X=arrays.X,
        offset=arrays.offset,
        W=arrays.W,
        n=arrays.n,
        nzero=cohorts["nzero"].to_numpy(float),
        Y=arrays.Y,
        xnames=tuple(xexprs),
        meat_fn=_engine_meat(rows, arrays.mask, cohorts[["k1", "k2"]], periods, cell["_t"].dtype),
        n_clusters_known=int(ncl["pos" if model == "poisson" else "all"].iloc[0]),
    )
    return IbisMoments(moments=m, attrition=tuple(attrition), n_rows_in=n_in, group=arrays.grp)


def _checked_rows(
    t: Any,
    cols: list[str],
    *,
    yname: str,
    binary: list[str],
    model: Model,
    exposure: str | None,
    weights: str | None,
    attrition: list[tuple[str, int]],
) -> tuple[Any, int]:
    """Row-level checks in one scan; the rows kept (missing values, zero weights dropped
    and counted) and the number of rows in."""
    import ibis

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
    if model == "poisson" and ck["neg_y"] > 0:
        raise negative_outcome(yname, int(ck["neg_y"]))
    for c in binary:
        if ck[f"nonbin__{c}"] > 0:
            raise not_binary(c, int(ck[f"nonbin__{c}"]), n_in)
    if exposure is not None and ck["bad_e"] > 0:
        raise bad_exposure(exposure, int(ck["bad_e"]))
    if weights is not None and ck["neg_w"] > 0:
        raise bad_weights(weights, int(ck["neg_w"]))
    keep = ibis.literal(True)
    for c in dict.fromkeys(cols):
        if ck[f"miss__{c}"] > 0:
            attrition.append((f"missing_{c}", int(ck[f"miss__{c}"])))
        keep = keep & t[c].notnull()
    if weights is not None and ck["zero_w"] > 0:
        attrition.append(("zero_weight", int(ck["zero_w"])))
        keep = keep & (t[weights] != 0)
    return t.filter(keep), n_in


def _design_rows(
    t: Any,
    *,
    yname: str,
    idname: str,
    tname: str,
    xexprs: dict[str, Callable[[Any], Any]],
    group_expr: Callable[[Any], Any],
    model: Model,
    exposure: str | None,
    weights: str | None,
    cluster: str,
) -> Any:
    """Stage 1 input: one row per row with its design values and two hashes of them."""
    import ibis

    lin_rate = model == "linear" and exposure is not None
    e_expr = t[exposure].cast("float64") if exposure else ibis.literal(1.0)
    w_expr = t[weights].cast("float64") if weights else ibis.literal(1.0)
    y_expr = t[yname].cast("float64")
    base = t.select(
        _id=t[idname],
        _t=t[tname],
        _y=y_expr / e_expr * DAYS_PER_YEAR if lin_rate else y_expr,
        _e=e_expr,
        _w=w_expr * e_expr if lin_rate else w_expr,
        _cl=t[cluster],
        _grp=group_expr(t).cast("float64"),
        **{f"_x{j}": f(t).cast("float64") for j, f in enumerate(xexprs.values())},
    )
    design_cols = ["_t", "_e", "_w", *[f"_x{j}" for j in range(len(xexprs))]]
    P = 2147483629  # prime < 2**31: the sums of T hashes stay far below 2**63
    sig1 = ibis.struct({c: base[c] for c in design_cols}).hash()
    sig2 = ibis.struct({"salt": ibis.literal(7), **{c: base[c] for c in design_cols}}).hash()
    h1 = ((sig1 % P) + P) % P
    h2 = ((sig2 % P) + P) % P
    return base.mutate(_h1=h1, _h2=h2)


def _units_by_path(
    base: Any, *, idname: str, tname: str, attrition: list[tuple[str, int]]
) -> Any | str:
    """Stage 1: one row per unit with a hash of its whole design path (cached), checked;
    a reason string when the moments cannot express the design."""
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
        raise repeated_pairs(int(uck["dup"]), idname, tname)
    if uck["grp_vary"] > 0:
        return "the treatment group changes within a unit"
    if uck["cl_split"] > 0:
        return "clusters split a unit"
    if uck["single"] > 0:
        attrition.append(("singleton_unit_or_period", int(uck["single"])))
        units = units.filter(units.nrow > 1)
    return units


def _cohort_cells(base: Any, units: Any, k: int) -> tuple[pd.DataFrame, pd.DataFrame, Any, Any]:
    """Stage 2: cohort sizes, cohort x period sums with design values (to verify), the
    cluster counts, and the rows joined to their cohort (for the meat)."""
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
    aggs: dict[str, Any] = {"cnt": rows.count(), "Y": rows._y.sum()}
    for c in ["_e", "_w", *[f"_x{j}" for j in range(k)]]:
        aggs[f"{c}_min"] = rows[c].min()
        aggs[f"{c}_max"] = rows[c].max()
    cell = rows.group_by(["k1", "k2", "_t"]).aggregate(**aggs).to_pandas()
    cohorts = coh.to_pandas().sort_values(["k1", "k2"]).reset_index(drop=True)
    if len(cohorts) == 0:
        raise no_rows()
    return cohorts, cell, ncl, rows


@dataclass(frozen=True)
class _CohortArrays:
    """The cohort x period arrays of :class:`~spevidence.did._fe.Moments`."""

    mask: np.ndarray
    Y: np.ndarray
    W: np.ndarray
    X: np.ndarray
    offset: np.ndarray
    n: np.ndarray
    grp: np.ndarray


def _cohort_arrays(
    cohorts: pd.DataFrame,
    cell: pd.DataFrame,
    periods: list[Any],
    k: int,
    *,
    model: Model,
    exposure: str | None,
) -> _CohortArrays | str:
    """The numpy side: cohort x period arrays, after verifying that every unit of a
    cohort has the same design path (else the reason string)."""
    C, T = len(cohorts), len(periods)
    gidx = pd.MultiIndex.from_frame(cohorts[["k1", "k2"]])
    g_of_cell = gidx.get_indexer(pd.MultiIndex.from_frame(cell[["k1", "k2"]]))
    t_of_cell = pd.Index(periods).get_indexer(cell["_t"])
    n = cohorts["n"].to_numpy(float)
    consistent = (cohorts["grp"] == cohorts["grp_hi"]).all() and np.array_equal(
        cell["cnt"].to_numpy(float), n[g_of_cell]
    )
    for c in ["_e", "_w", *[f"_x{j}" for j in range(k)]]:
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
    return _CohortArrays(mask, Y, W, X, offset, n, cohorts["grp"].to_numpy(float))


def _poisson_events_check(a: _CohortArrays, yname: str) -> str | None:
    """Poisson: a reason when a period has no events; an error when a group has none."""
    tot_t = (a.Y * a.W).sum(axis=0)
    if np.any(tot_t[a.mask.any(axis=0)] <= 0):
        return "a period has no events"
    for g, label in ((1.0, "treated"), (0.0, "comparison")):
        sel = a.grp == g
        if sel.any() and a.Y[sel].sum() == 0:
            raise EstimationError(
                f"Outcome '{yname}' is zero in every row of the {label} group; a rate "
                "ratio cannot be estimated. Choose another outcome or a longer window."
            )
    return None


def _engine_meat(
    rows: Any, mask: np.ndarray, keys_df: pd.DataFrame, period_values: list[Any], t_dtype: Any
) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """The clustered meat as one more scan of the rows (see :func:`moments_from_ibis`)."""
    import ibis

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
        vtab["_t"] = vtab["_t"].astype(t_dtype)
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

    return meat_fn


# ----------------------------------------------------------------------------- staggered


@dataclass(frozen=True)
class PivotSpec:
    """The columns and options of a staggered panel's unit pivot (:func:`pivot_units`,
    :func:`cs_moments_stream`, :func:`cs_rows_stream`): one place for the signature."""

    yname: str
    idname: str
    tname: str
    gname: str
    weights: str | None
    cluster: str | None
    exposure: str | None
    anticipation: float
    control: str
    allow_unbalanced: bool = False


@dataclass(frozen=True)
class EnginePanel:
    """Unit-level pivot of a long panel, still in the engine, and its bookkeeping."""

    units: Any  # ibis table: one row per kept unit with g, w, cl, y0..y{T-1}[, e0..]
    times: FloatArray
    attrition: pd.DataFrame
    n_rows_in: int
    unbalanced: bool = False
    xnames: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Pivot:
    """The unit pivot as an (uncached) engine expression and what scan 1 learnt."""

    units: Any
    times: FloatArray
    attr: list[dict[str, Any]]
    n_in: int
    tmin: float
    xnames: tuple[str, ...] = ()  # covariate design columns (indicators expanded)


def _pivot(
    t: Any,
    spec: PivotSpec,
    *,
    covs: tuple[str, ...] = (),
    covs_by_period: bool = False,
) -> _Pivot:
    """Scan 1 (periods, cohorts, row counts: one small group-by) and the pivot expression.

    With covariates ``covs`` the pivot also carries, per unit, the smallest and
    largest value of each design column (``_xlo{j}``, ``_xhi{j}``; non-numeric
    covariates expanded to indicators of all but their first level, as
    ``pandas.get_dummies(drop_first=True)``) and, with ``covs_by_period``, its
    value in every period (``x{j}_{k}``).
    """
    import ibis

    yname, idname, tname, gname = spec.yname, spec.idname, spec.tname, spec.gname
    weights, cluster, exposure = spec.weights, spec.cluster, spec.exposure
    anticipation, allow_unbalanced = spec.anticipation, spec.allow_unbalanced
    needed = [c for c in (yname, idname, tname, gname, weights, cluster, exposure) if c]
    needed += list(covs)
    require_columns(needed, list(t.columns), "DiD input table")
    attr: list[dict[str, Any]] = []
    t, tg, n_in = _usable_rows(
        t.select(*dict.fromkeys(needed)),
        attr,
        yname=yname,
        idname=idname,
        tname=tname,
        gname=gname,
        others=(weights, cluster, exposure, *covs),
        covariates=bool(covs),
    )
    t, xnames = _design_columns(t, covs)
    times = np.unique(tg["_t"].to_numpy(dtype=float))
    tmax, tmin = float(times.max()), float(times.min())
    t = t.mutate(_g=ibis.ifelse((t._g == 0) | (t._g > tmax), ibis.literal(np.inf), t._g))
    graw = np.unique(tg["_g"].to_numpy(dtype=float))
    gvals = np.unique(np.where((graw == 0) | (graw > tmax), np.inf, graw))
    finite = gvals[np.isfinite(gvals) & (gvals > tmin + anticipation)]
    if len(finite) == 0:
        raise EstimationError(f"staggered: no treated cohort after the first period in {gname!r}.")
    if not np.isinf(gvals).any():
        t, times = _cut_from_last_cohort(
            t, tg, times, float(finite.max()), attr, anticipation=anticipation, control=spec.control
        )
    aggs = _unit_aggregates(
        t,
        times,
        yname=yname,
        weights=weights,
        cluster=cluster,
        exposure=exposure,
        n_x=len(xnames),
        allow_unbalanced=allow_unbalanced,
        covs_by_period=covs_by_period,
    )
    units = t.group_by(idname).aggregate(**aggs)
    return _Pivot(units, times, attr, n_in, tmin, xnames)


def _usable_rows(
    t: Any,
    attr: list[dict[str, Any]],
    *,
    yname: str,
    idname: str,
    tname: str,
    gname: str,
    others: tuple[str | None, ...],
    covariates: bool,
) -> tuple[Any, pd.DataFrame, int]:
    """Rows with every value needed (the others counted), the row counts by period,
    cohort and usability (one scan), and the number of rows in."""
    notnull = t[yname].notnull() & t[tname].notnull() & t[idname].notnull()
    for c in others:
        if c:
            notnull = notnull & t[c].notnull()
    t = t.mutate(
        _ok=notnull, _g=t[gname].cast("float64").fill_null(0.0), _t=t[tname].cast("float64")
    )
    # one scan gives the row counts, the periods and the cohorts
    tg = t.group_by(["_t", "_g", "_ok"]).aggregate(_n=t.count()).execute()
    n_in = int(tg["_n"].sum())
    ok = tg["_ok"].to_numpy(dtype=bool)
    tg = tg[ok]
    n_ok = int(tg["_n"].sum())
    if n_ok < n_in:
        what = "covariate" if covariates else "exposure"
        attr.append(
            {
                "reason": f"missing outcome, period, unit, weight, cluster or {what}",
                "rows": n_in - n_ok,
                "units": 0,
            }
        )
    t = t.filter(t._ok)
    if n_ok == 0:
        raise EstimationError(f"staggered: no usable rows in the engine table ({n_in} rows).")
    return t, tg, n_in


def _cut_from_last_cohort(
    t: Any,
    tg: pd.DataFrame,
    times: FloatArray,
    latest: float,
    attr: list[dict[str, Any]],
    *,
    anticipation: float,
    control: str,
) -> tuple[Any, FloatArray]:
    """No never-treated units: drop the periods from the last cohort on (counted); with
    ``control="never"`` the last cohort becomes the never-treated comparison."""
    import ibis

    cut = t._t >= latest - anticipation
    k = int(tg["_n"].to_numpy()[tg["_t"].to_numpy(dtype=float) >= latest - anticipation].sum())
    attr.append(
        {
            "reason": "no never-treated units: periods from the last cohort on dropped",
            "rows": k,
            "units": 0,
        }
    )
    t = t.filter(~cut)
    times = times[times < latest - anticipation]
    if control == "never":
        t = t.mutate(_g=ibis.ifelse(t._g == latest, ibis.literal(np.inf), t._g))
    return t, times


def _unit_aggregates(
    t: Any,
    times: FloatArray,
    *,
    yname: str,
    weights: str | None,
    cluster: str | None,
    exposure: str | None,
    n_x: int,
    allow_unbalanced: bool,
    covs_by_period: bool,
) -> dict[str, Any]:
    """The columns of the unit pivot (see :class:`EnginePanel`)."""
    import ibis

    aggs: dict[str, Any] = {
        "_g": t._g.max(),
        "_gmin": t._g.min(),
        "_nt": t.count(),
        "_w": (t[weights].cast("float64").max() if weights else ibis.literal(1.0)),
        "_wmin": (t[weights].cast("float64").min() if weights else ibis.literal(1.0)),
    }
    if cluster:
        aggs["_cl"] = t[cluster].max()
        aggs["_clmin"] = t[cluster].min()
    for j in range(n_x):
        aggs[f"_xlo{j}"] = t[f"_cv{j}"].min()
        aggs[f"_xhi{j}"] = t[f"_cv{j}"].max()
    for k, tk in enumerate(times):
        aggs[f"y{k}"] = t[yname].cast("float64").sum(where=t._t == float(tk)).fill_null(0.0)
        if allow_unbalanced:
            aggs[f"o{k}"] = (t._t == float(tk)).cast("float64").sum()
        if exposure:
            aggs[f"e{k}"] = t[exposure].cast("float64").sum(where=t._t == float(tk))
        if covs_by_period:
            for j in range(n_x):
                aggs[f"x{j}_{k}"] = t[f"_cv{j}"].sum(where=t._t == float(tk))
    return aggs


def _design_columns(t: Any, covs: tuple[str, ...]) -> tuple[Any, tuple[str, ...]]:
    """Numeric design columns ``_cv0, _cv1, ...`` for the covariates, as the row path builds.

    Numeric columns are cast to float; any other column (text, boolean,
    categorical) becomes indicators of each level but the first, levels sorted
    as text (``pandas.get_dummies(col.astype(str), drop_first=True)``). The
    levels are read from the usable rows (one small ``DISTINCT`` per column).
    """
    names: list[str] = []
    cols: dict[str, Any] = {}
    for c in covs:
        dtype = t.schema()[c]
        if dtype.is_numeric() and not dtype.is_boolean():
            cols[f"_cv{len(names)}"] = t[c].cast("float64")
            names.append(c)
            continue
        values = t.select(c).distinct().execute()[c].tolist()
        levels = sorted(values, key=str)
        for lev in levels[1:]:
            cols[f"_cv{len(names)}"] = (t[c] == lev).cast("float64")
            names.append(f"{c}_{lev}")
    return (t.mutate(**cols) if cols else t), tuple(names)


def _apply_checks(checks: dict[str, int], attr: list[dict[str, Any]], spec: PivotSpec) -> bool:
    """Raise on unit-inconsistent columns or duplicates; record the dropped units.

    Returns True when units not observed in every period are kept (unbalanced path).
    """
    gname, weights, cluster = spec.gname, spec.weights, spec.cluster
    idname, tname, allow_unbalanced = spec.idname, spec.tname, spec.allow_unbalanced
    for col, what, key in (
        (gname, "treatment cohort", "vary_g"),
        (weights, "weight", "vary_w"),
        (cluster, "cluster", "vary_cl"),
    ):
        if col and checks[key] > 0:
            raise varies_within_units("staggered", col, what, checks[key])
    if checks["dup"] > 0:
        raise units_with_repeated_periods("staggered", checks["dup"], idname, tname)
    if checks["early"] > 0:
        attr.append(
            {
                "reason": EARLY_UNITS,
                "rows": checks["early_rows"],
                "units": checks["early"],
            }
        )
    unbalanced = checks["unbalanced"] > 0
    if unbalanced and not allow_unbalanced:
        attr.append(
            {
                "reason": UNBALANCED_UNITS,
                "rows": checks["unbalanced_rows"],
                "units": checks["unbalanced"],
            }
        )
    return bool(allow_unbalanced and unbalanced)


def pivot_units(
    t: Any,
    spec: PivotSpec,
    *,
    covs: tuple[str, ...] = (),
    covs_by_period: bool = False,
) -> EnginePanel:
    """Clean and pivot an Ibis long panel to one row per unit, counting every drop.

    The pivot is materialised in the engine (it is scanned by several queries).
    ``covs`` adds the covariate design columns (see :func:`_pivot`).
    """
    import ibis

    pv = _pivot(t, spec, covs=covs, covs_by_period=covs_by_period)
    cluster, anticipation = spec.cluster, spec.anticipation
    u, T, tmin = pv.units, len(pv.times), pv.tmin
    if hasattr(u, "cache"):
        u = u.cache()  # the unit pivot is scanned several times: materialise it once
    row = (
        u.aggregate(
            vary_g=(u._g != u._gmin).sum(),
            vary_w=(u._w != u._wmin).sum(),
            vary_cl=((u._cl != u._clmin).sum() if cluster else ibis.literal(0)),
            dup=(u._nt > T).sum(),
            unbalanced=(u._nt < T).sum(),
            unbalanced_rows=u._nt.sum(where=u._nt < T),
            early=(u._g <= tmin + anticipation).sum(),
            early_rows=u._nt.sum(where=u._g <= tmin + anticipation),
        )
        .execute()
        .iloc[0]
    )
    checks = {k: int(v) if pd.notna(v) else 0 for k, v in row.items()}
    unbalanced = _apply_checks(checks, pv.attr, spec)
    keep = u._g > tmin + anticipation
    u = u.filter(keep if unbalanced else keep & (u._nt == T))
    return EnginePanel(
        u,
        pv.times,
        pd.DataFrame(pv.attr, columns=["reason", "rows", "units"]),
        pv.n_in,
        unbalanced,
        pv.xnames,
    )


def streams_units(data: Any) -> bool:
    """True when the engine runs in this process (DuckDB): stream the unit pivot.

    An in-process engine hands its result to Python as Arrow batches without a
    copy, and numpy forms the cohort cross-products (``X'X`` per cohort, BLAS)
    far faster than the engine evaluates ``T (T + 1) / 2`` product aggregates.
    A distributed engine (Spark) instead returns the small moment matrices.
    """
    try:
        return str(data.get_backend().name) == "duckdb"
    except Exception:
        return False


def cs_moments_stream(
    t: Any,
    spec: PivotSpec,
    *,
    batch_rows: int = 1 << 20,
) -> tuple[CohortMoments, FloatArray, pd.DataFrame]:
    """Callaway-Sant'Anna cohort moments from one streamed scan of the unit pivot.

    The engine groups the long panel by unit (one row per unit, one column per
    period), materialises that pivot (DuckDB streams a stored table several
    times faster than a group-by result) and streams it in Arrow batches; each
    batch adds its cohort cross-products ``sum u u'`` (``u = [1, w, w
    y_1..T]``, plus ``w obs_t`` when unbalanced units are kept) and, with
    clusters, its cluster x cohort sums. Memory is the engine's pivot (about
    ``units x (periods + 5) x 8`` bytes, spilled to disk by the engine if
    needed) plus one batch; the unit checks (cohort/weight/cluster constant
    within unit, duplicates, balance) are made on the same pass. Equal to
    :func:`cs_moments` up to floating-point summation order.
    """
    spec = replace(spec, exposure=None)
    pv = _pivot(t, spec)
    weights, cluster, allow_unbalanced = spec.weights, spec.cluster, spec.allow_unbalanced
    T = len(pv.times)
    sums = _StreamSums(
        T=T,
        first=pv.tmin + spec.anticipation,
        width=2 * T + 2 if allow_unbalanced else T + 2,
        weighted=bool(weights),
        clustered=bool(cluster),
        allow_unbalanced=allow_unbalanced,
    )
    units = pv.units.cache() if hasattr(pv.units, "cache") else pv.units
    for b in units.to_pyarrow_batches(chunk_size=batch_rows):
        if b.num_rows:
            sums.add(b)
    unbalanced = _apply_checks(sums.checks, pv.attr, spec)
    if not sums.acc:
        raise EstimationError(
            f"staggered: no unit observed in every period ({pv.n_in} rows); "
            "see the attrition or use allow_unbalanced=True."
        )
    attrition = pd.DataFrame(pv.attr, columns=["reason", "rows", "units"])
    return sums.moments(unbalanced), pv.times, attrition


_UNIT_CHECKS = (
    "vary_g",
    "vary_w",
    "vary_cl",
    "dup",
    "unbalanced",
    "unbalanced_rows",
    "early",
    "early_rows",
)


@dataclass
class _StreamSums:
    """Running sums of :func:`cs_moments_stream`: unit checks, cohort cross-products
    ``sum u u'``, observed rows per cohort and period, cluster x cohort sums of ``u``."""

    T: int
    first: float  # units treated at or before this period are dropped
    width: int
    weighted: bool
    clustered: bool
    allow_unbalanced: bool
    checks: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_UNIT_CHECKS, 0))
    acc: dict[float, FloatArray] = field(default_factory=dict)
    nobs: dict[float, FloatArray] = field(default_factory=dict)
    parts: list[pd.DataFrame] = field(default_factory=list)

    def add(self, b: Any) -> None:
        """One Arrow batch of the unit pivot."""
        g = b.column("_g").to_numpy(zero_copy_only=False).astype(float)
        nt = b.column("_nt").to_numpy(zero_copy_only=False).astype(np.int64)
        w = b.column("_w").to_numpy(zero_copy_only=False).astype(float)
        early = self._check(b, g, nt, w)
        keep = ~early if self.allow_unbalanced else ~early & (nt == self.T)
        idx = np.flatnonzero(keep)
        if len(idx) == 0:
            return
        levels, code = np.unique(g[idx], return_inverse=True)
        small = code.astype(np.int16 if len(levels) < 2**15 else np.int64)
        order = idx[np.argsort(small, kind="stable")]  # radix sort for int16
        bounds = np.concatenate([[0], np.cumsum(np.bincount(code, minlength=len(levels)))])
        X = self._unit_vectors(b, w, order)
        if self.allow_unbalanced:
            for i, lev in enumerate(levels):
                o_sum = X[bounds[i] : bounds[i + 1], self.T + 2 :].sum(axis=0)
                self.nobs[float(lev)] = self.nobs.get(float(lev), 0.0) + o_sum
            X[:, self.T + 2 :] *= X[:, 1:2]
        for i, lev in enumerate(levels):
            key = float(lev)
            self.acc[key] = self.acc.get(key, 0.0) + _crossprod(X[bounds[i] : bounds[i + 1]])
        if self.clustered:
            frame = pd.DataFrame(X, columns=[f"s{j}" for j in range(self.width)])
            frame["_cl"] = b.column("_cl").take(order).to_numpy(zero_copy_only=False)
            frame["_g"] = g[order]
            self.parts.append(frame.groupby(["_cl", "_g"], sort=False).sum())

    def _check(self, b: Any, g: FloatArray, nt: NDArray[np.int64], w: FloatArray) -> Any:
        """Count the unit checks of :func:`_apply_checks`; returns the early units."""
        import pyarrow.compute as pc

        ck, T = self.checks, self.T
        ck["vary_g"] += int(np.sum(g != b.column("_gmin").to_numpy(zero_copy_only=False)))
        ck["vary_w"] += int(np.sum(w != b.column("_wmin").to_numpy(zero_copy_only=False)))
        if self.clustered:
            ck["vary_cl"] += int(
                pc.sum(pc.not_equal(b.column("_cl"), b.column("_clmin"))).as_py() or 0
            )
        ck["dup"] += int(np.sum(nt > T))
        short = nt < T
        ck["unbalanced"] += int(short.sum())
        ck["unbalanced_rows"] += int(nt[short].sum())
        early = g <= self.first
        ck["early"] += int(early.sum())
        ck["early_rows"] += int(nt[early].sum())
        return early

    def _unit_vectors(self, b: Any, w: FloatArray, order: NDArray[np.int64]) -> FloatArray:
        """Units x width, rows sorted by cohort: ``u_i = [1, w, w y_1..T (, obs_1..T)]``
        (the observed flags are weighted by the caller, after counting them)."""
        T = self.T
        X = np.empty((len(order), self.width))
        X[:, 0] = 1.0
        X[:, 1] = w[order]
        for k in range(T):
            X[:, 2 + k] = b.column(f"y{k}").to_numpy(zero_copy_only=False)[order]
        if self.weighted:
            X[:, 2 : T + 2] *= X[:, 1:2]
        if self.allow_unbalanced:
            for k in range(T):
                X[:, T + 2 + k] = b.column(f"o{k}").to_numpy(zero_copy_only=False)[order]
        return X

    def moments(self, unbalanced: bool) -> CohortMoments:
        """The cohort moments, weights normalised to mean one."""
        T, width = self.T, self.width
        cohorts = np.array(sorted(self.acc))
        M = np.stack([self.acc[c] for c in cohorts])
        U = None
        if self.clustered:
            cr = pd.concat(self.parts).groupby(level=[0, 1], sort=False).sum().reset_index()
            clcode = pd.factorize(cr["_cl"], sort=True)[0]
            ccode = np.searchsorted(cohorts, cr["_g"].to_numpy(dtype=float))
            U = np.zeros((int(clcode.max()) + 1, len(cohorts), width))
            U[clcode, ccode, :] = cr[[f"s{j}" for j in range(width)]].to_numpy(dtype=float)
        keep_w = width if unbalanced else T + 2
        M = M[:, :keep_w, :keep_w]
        if U is not None:
            U = U[:, :, :keep_w]
        count = np.rint(M[:, 0, 0]).astype(np.int64)
        n = int(count.sum())
        wbar = float(M[:, 0, 1].sum()) / n if self.weighted else 1.0
        scale = np.array([1.0] + [1.0 / wbar] * (keep_w - 1))
        M = M * scale[None, :, None] * scale[None, None, :]
        if U is not None:
            U = U * scale[None, None, :]
        wsum, wy = M[:, 0, 1].copy(), M[:, 0, 2 : T + 2].copy()
        if not unbalanced:
            return CohortMoments(cohorts, count, wsum, wy, M, U, n)
        nob = np.stack([self.nobs[c] for c in cohorts])
        return CohortMoments(cohorts, count, wsum, wy, M, U, n, M[:, 0, T + 2 :].copy(), nob)


def cs_moments(ep: EnginePanel, *, weighted: bool, clustered: bool) -> CohortMoments:
    """Callaway-Sant'Anna cohort moments computed in the engine.

    ``u = [1, w, w y_1..T]`` (balanced) or ``[1, w, w y_t obs_t, w obs_t]``
    (unbalanced); the engine returns ``sum u u'`` per cohort (and ``sum u``
    per cluster x cohort).
    """
    u = ep.units
    T = len(ep.times)
    w = u._w
    v: list[Any] = [None, w] + [w * u[f"y{k}"] for k in range(T)]
    if ep.unbalanced:
        v += [w * u[f"o{k}"] for k in range(T)]
    width = len(v)
    aggs: dict[str, Any] = {"n": u.count()}
    for b in range(1, width):
        aggs[f"s{b}"] = v[b].sum()
        for a in range(1, b + 1):
            aggs[f"m{a}_{b}"] = (v[a] * v[b]).sum()
    res = u.group_by("_g").aggregate(**aggs).execute().sort_values("_g").reset_index(drop=True)
    cohorts = res["_g"].to_numpy(dtype=float)
    C = len(cohorts)
    count = res["n"].to_numpy(dtype=np.int64)
    n = int(count.sum())
    wbar = float(res["s1"].sum()) / n if weighted else 1.0
    scale = np.array([1.0] + [1.0 / wbar] * (width - 1))
    M = np.zeros((C, width, width))
    M[:, 0, 0] = count
    for b in range(1, width):
        M[:, 0, b] = M[:, b, 0] = res[f"s{b}"].to_numpy(dtype=float)
        for a in range(1, b + 1):
            M[:, a, b] = M[:, b, a] = res[f"m{a}_{b}"].to_numpy(dtype=float)
    M = M * scale[None, :, None] * scale[None, None, :]
    U = None
    if clustered:
        cagg: dict[str, Any] = {"n": u.count()}
        for b in range(1, width):
            cagg[f"s{b}"] = v[b].sum()
        cr = u.group_by(["_cl", "_g"]).aggregate(**cagg).execute()
        clcode = pd.factorize(cr["_cl"], sort=True)[0]
        ccode = np.searchsorted(cohorts, cr["_g"].to_numpy(dtype=float))
        U = np.zeros((int(clcode.max()) + 1, C, width))
        U[clcode, ccode, 0] = cr["n"].to_numpy(dtype=float)
        for b in range(1, width):
            U[clcode, ccode, b] = cr[f"s{b}"].to_numpy(dtype=float) / wbar
    wsum, wy = M[:, 0, 1].copy(), M[:, 0, 2 : T + 2].copy()
    if not ep.unbalanced:
        return CohortMoments(cohorts, count, wsum, wy, M, U, n)
    oagg = {f"o{k}": u[f"o{k}"].sum() for k in range(T)}
    ores = u.group_by("_g").aggregate(**oagg).execute().sort_values("_g")
    nobs = np.column_stack([ores[f"o{k}"].to_numpy(dtype=float) for k in range(T)])
    return CohortMoments(cohorts, count, wsum, wy, M, U, n, M[:, 0, T + 2 :].copy(), nobs)


def etwfe_moments(ep: EnginePanel, *, exposure: bool, clustered: bool) -> dict[str, Any]:
    """Extended-TWFE cohort moments: sums and cross-products of outcome and exposure."""
    u = ep.units
    T = len(ep.times)
    ys = [u[f"y{k}"] for k in range(T)]
    es = [u[f"e{k}"] for k in range(T)] if exposure else None
    aggs: dict[str, Any] = {"n": u.count()}
    for k in range(T):
        aggs[f"y{k}"] = ys[k].sum()
        for j in range(k + 1):
            aggs[f"yy{j}_{k}"] = (ys[j] * ys[k]).sum()
        if es is not None:
            aggs[f"e{k}"] = es[k].sum()
            for j in range(T):
                aggs[f"ye{j}_{k}"] = (ys[j] * es[k]).sum()
            for j in range(k + 1):
                aggs[f"ee{j}_{k}"] = (es[j] * es[k]).sum()
    res = u.group_by("_g").aggregate(**aggs).execute().sort_values("_g").reset_index(drop=True)
    C = len(res)
    count = res["n"].to_numpy(dtype=np.int64)
    ysum = np.column_stack([res[f"y{k}"].to_numpy(dtype=float) for k in range(T)])
    Myy = np.zeros((C, T, T))
    for k in range(T):
        for j in range(k + 1):
            Myy[:, j, k] = Myy[:, k, j] = res[f"yy{j}_{k}"].to_numpy(dtype=float)
    if es is not None:
        esum = np.column_stack([res[f"e{k}"].to_numpy(dtype=float) for k in range(T)])
        Mye = np.zeros((C, T, T))
        Mee = np.zeros((C, T, T))
        for k in range(T):
            for j in range(T):
                Mye[:, j, k] = res[f"ye{j}_{k}"].to_numpy(dtype=float)
            for j in range(k + 1):
                Mee[:, j, k] = Mee[:, k, j] = res[f"ee{j}_{k}"].to_numpy(dtype=float)
    else:
        esum = np.repeat(count[:, None].astype(float), T, axis=1)
        Mye = ysum[:, :, None] * np.ones((1, 1, T))
        Mee = count[:, None, None] * np.ones((1, T, T))
    out: dict[str, Any] = {
        "cohorts": res["_g"].to_numpy(dtype=float),
        "count": count,
        "ysum": ysum,
        "esum": esum,
        "Myy": Myy,
        "Mye": Mye,
        "Mee": Mee,
        "Ucl_y": None,
        "Ucl_e": None,
        "n_clusters": int(count.sum()),
    }
    if clustered:
        cagg: dict[str, Any] = {"n": u.count()}
        for k in range(T):
            cagg[f"y{k}"] = ys[k].sum()
            if es is not None:
                cagg[f"e{k}"] = es[k].sum()
        cr = u.group_by(["_cl", "_g"]).aggregate(**cagg).execute()
        clcode = pd.factorize(cr["_cl"], sort=True)[0]
        ccode = np.searchsorted(out["cohorts"], cr["_g"].to_numpy(dtype=float))
        ncl = int(clcode.max()) + 1
        Uy = np.zeros((ncl, C, T))
        Ue = np.zeros((ncl, C, T))
        for k in range(T):
            Uy[clcode, ccode, k] = cr[f"y{k}"].to_numpy(dtype=float)
            Ue[clcode, ccode, k] = (
                cr[f"e{k}"].to_numpy(dtype=float)
                if es is not None
                else cr["n"].to_numpy(dtype=float)
            )
        out.update(Ucl_y=Uy, Ucl_e=Ue, n_clusters=ncl)
    return out


@dataclass(frozen=True)
class EngineRows:
    """The unit-level arrays of the row path, read from an engine pivot."""

    Y: FloatArray  # units x periods
    G: FloatArray
    w: FloatArray  # normalised to mean one
    Xt: FloatArray  # periods x units x (1 + covariate columns); a broadcast view if constant
    xnames: tuple[str, ...]
    times: FloatArray
    cluster: NDArray[np.int64] | None
    attrition: pd.DataFrame


def cs_rows_stream(
    t: Any,
    spec: PivotSpec,
    *,
    covs: tuple[str, ...],
    batch_rows: int = 1 << 20,
) -> EngineRows:
    """The row path's unit arrays from an engine pivot: outcomes and covariates per unit.

    The engine cleans and pivots the long panel to one row per kept unit
    (outcome in every period, cohort, weight, cluster, covariate design
    columns), with the same unit checks and attrition as the moment path; the
    pivot is streamed in Arrow batches, ordered by unit id (the row path's
    order), into preallocated arrays. Covariates constant within every unit
    (the usual case: Callaway-Sant'Anna take them at the base period) come
    back once per unit and are broadcast over the periods; otherwise a second
    pivot returns their value in every period. Memory: ``units x (periods +
    covariate columns) x 8`` bytes (``units x periods x (1 + covariate
    columns)`` when covariates vary in time) instead of the long panel.
    """
    spec = replace(spec, exposure=None, allow_unbalanced=False)
    idname, weights, cluster = spec.idname, spec.weights, spec.cluster
    ep = pivot_units(t, spec, covs=covs)
    J = len(ep.xnames)
    u = ep.units
    info = (
        u.aggregate(
            _n=u.count(), **{f"_v{j}": (u[f"_xlo{j}"] != u[f"_xhi{j}"]).sum() for j in range(J)}
        )
        .execute()
        .iloc[0]
    )
    n = int(info["_n"])
    if n == 0:
        raise EstimationError(
            f"staggered: no unit observed in every period ({ep.n_rows_in} rows); see the attrition."
        )
    by_period = any(int(info[f"_v{j}"] or 0) > 0 for j in range(J))
    if by_period:  # covariates vary within units: their value in every period
        ep = pivot_units(t, spec, covs=covs, covs_by_period=True)
        u = ep.units
    T = len(ep.times)
    xcols = (
        [f"x{j}_{k}" for k in range(T) for j in range(J)]
        if by_period
        else [f"_xlo{j}" for j in range(J)]
    )
    cols = ["_g", "_w", *(["_cl"] if cluster else []), *[f"y{k}" for k in range(T)], *xcols]
    reader = u.order_by(idname).select(*cols).to_pyarrow_batches(chunk_size=batch_rows)
    Y, G, w, X, cl_parts = _read_units(reader, n, T, J, by_period=by_period, cluster=cluster)
    if (w < 0).any():
        raise negative_unit_weights("staggered", weights, int((w < 0).sum()))
    w = w / w.mean()
    cl = None
    if cluster:
        cl = pd.factorize(np.concatenate(cl_parts), sort=True)[0].astype(np.int64)
    Xt = X if by_period else np.broadcast_to(X, (T, n, J + 1))
    return EngineRows(Y, G, w, Xt, ep.xnames, ep.times, cl, ep.attrition)


def _read_units(
    reader: Any, n: int, T: int, J: int, *, by_period: bool, cluster: str | None
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, list[Any]]:
    """Stream the unit pivot into preallocated arrays: outcomes, cohorts, weights,
    design (intercept first) and the cluster values batch by batch."""
    Y = np.empty((n, T))
    G = np.empty(n)
    w = np.empty(n)
    X = np.empty((T, n, J + 1)) if by_period else np.empty((n, J + 1))
    X[..., 0] = 1.0
    cl_parts: list[Any] = []
    pos = 0
    for b in reader:
        m = b.num_rows
        if m == 0:
            continue
        sl = slice(pos, pos + m)

        def col(name: str, b: Any = b) -> FloatArray:
            return np.asarray(b.column(name).to_numpy(zero_copy_only=False), dtype=float)

        G[sl] = col("_g")
        w[sl] = col("_w")
        for k in range(T):
            Y[sl, k] = col(f"y{k}")
        for j in range(J):
            if by_period:
                for k in range(T):
                    X[k, sl, 1 + j] = col(f"x{j}_{k}")
            else:
                X[sl, 1 + j] = col(f"_xlo{j}")
        if cluster:
            cl_parts.append(b.column("_cl").to_numpy(zero_copy_only=False))
        pos += m
    if pos != n:  # the engine changed under us (a table rewritten between queries)
        raise EstimationError(f"staggered: the engine returned {pos} units, expected {n}.")
    return Y, G, w, X, cl_parts
