"""Engine-side cohort moments (Ibis: DuckDB, Spark, ...) for national-scale panels.

One pass pivots the long panel to one row per unit (``sum(y) filter (t = k)``
for each period), a second aggregates units to cohorts (and clusters): counts,
weight sums, weighted outcome sums and the ``T x T`` cross-products. Only
these few kilobytes come back to Python (DESIGN.md section 6).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from spevidence.did._staggered_core import CohortMoments, _crossprod
from spevidence.errors import DataError, EstimationError

FloatArray = NDArray[np.float64]


def is_ibis_table(data: Any) -> bool:
    """True for an Ibis table expression (without importing ibis for pandas input)."""
    mod = type(data).__module__
    return mod.startswith("ibis.") and hasattr(data, "group_by") and hasattr(data, "execute")


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
    *,
    yname: str,
    idname: str,
    tname: str,
    gname: str,
    weights: str | None,
    cluster: str | None,
    exposure: str | None,
    anticipation: float,
    control: str,
    allow_unbalanced: bool,
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

    needed = [c for c in (yname, idname, tname, gname, weights, cluster, exposure) if c]
    needed += list(covs)
    missing = [c for c in dict.fromkeys(needed) if c not in t.columns]
    if missing:
        raise DataError(f"staggered: column(s) {missing} not found in the engine table.")
    attr: list[dict[str, Any]] = []
    t = t.select(*dict.fromkeys(needed))
    notnull = t[yname].notnull() & t[tname].notnull() & t[idname].notnull()
    for c in (weights, cluster, exposure, *covs):
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
        what = "covariate" if covs else "exposure"
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
        latest = float(finite.max())
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
    for j in range(len(xnames)):
        aggs[f"_xlo{j}"] = t[f"_cv{j}"].min()
        aggs[f"_xhi{j}"] = t[f"_cv{j}"].max()
    for k, tk in enumerate(times):
        aggs[f"y{k}"] = t[yname].cast("float64").sum(where=t._t == float(tk)).fill_null(0.0)
        if allow_unbalanced:
            aggs[f"o{k}"] = (t._t == float(tk)).cast("float64").sum()
        if exposure:
            aggs[f"e{k}"] = t[exposure].cast("float64").sum(where=t._t == float(tk))
        if covs_by_period:
            for j in range(len(xnames)):
                aggs[f"x{j}_{k}"] = t[f"_cv{j}"].sum(where=t._t == float(tk))
    units = t.group_by(idname).aggregate(**aggs)
    return _Pivot(units, times, attr, n_in, tmin, xnames)


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


def _apply_checks(
    checks: dict[str, int],
    attr: list[dict[str, Any]],
    *,
    gname: str,
    weights: str | None,
    cluster: str | None,
    idname: str,
    tname: str,
    allow_unbalanced: bool,
) -> bool:
    """Raise on unit-inconsistent columns or duplicates; record the dropped units.

    Returns True when units not observed in every period are kept (unbalanced path).
    """
    for col, what, key in (
        (gname, "treatment cohort", "vary_g"),
        (weights, "weight", "vary_w"),
        (cluster, "cluster", "vary_cl"),
    ):
        if col and checks[key] > 0:
            raise DataError(
                f"staggered: column {col!r} ({what}) varies within {checks[key]} units; "
                "it must be constant for each unit."
            )
    if checks["dup"] > 0:
        raise DataError(
            f"staggered: {checks['dup']} units have more than one row in some period "
            f"({idname}, {tname}); one row per unit and period is needed."
        )
    if checks["early"] > 0:
        attr.append(
            {
                "reason": "unit already treated in the first period",
                "rows": checks["early_rows"],
                "units": checks["early"],
            }
        )
    unbalanced = checks["unbalanced"] > 0
    if unbalanced and not allow_unbalanced:
        attr.append(
            {
                "reason": "unit not observed in every period (balanced panel required)",
                "rows": checks["unbalanced_rows"],
                "units": checks["unbalanced"],
            }
        )
    return bool(allow_unbalanced and unbalanced)


def pivot_units(
    t: Any,
    *,
    yname: str,
    idname: str,
    tname: str,
    gname: str,
    weights: str | None,
    cluster: str | None,
    exposure: str | None,
    anticipation: float,
    control: str,
    allow_unbalanced: bool = False,
    covs: tuple[str, ...] = (),
    covs_by_period: bool = False,
) -> EnginePanel:
    """Clean and pivot an Ibis long panel to one row per unit, counting every drop.

    The pivot is materialised in the engine (it is scanned by several queries).
    ``covs`` adds the covariate design columns (see :func:`_pivot`).
    """
    import ibis

    pv = _pivot(
        t,
        yname=yname,
        idname=idname,
        tname=tname,
        gname=gname,
        weights=weights,
        cluster=cluster,
        exposure=exposure,
        anticipation=anticipation,
        control=control,
        allow_unbalanced=allow_unbalanced,
        covs=covs,
        covs_by_period=covs_by_period,
    )
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
    unbalanced = _apply_checks(
        checks,
        pv.attr,
        gname=gname,
        weights=weights,
        cluster=cluster,
        idname=idname,
        tname=tname,
        allow_unbalanced=allow_unbalanced,
    )
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
    *,
    yname: str,
    idname: str,
    tname: str,
    gname: str,
    weights: str | None,
    cluster: str | None,
    anticipation: float,
    control: str,
    allow_unbalanced: bool = False,
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
    pv = _pivot(
        t,
        yname=yname,
        idname=idname,
        tname=tname,
        gname=gname,
        weights=weights,
        cluster=cluster,
        exposure=None,
        anticipation=anticipation,
        control=control,
        allow_unbalanced=allow_unbalanced,
    )
    import pyarrow.compute as pc

    T, first = len(pv.times), pv.tmin + anticipation
    width = 2 * T + 2 if allow_unbalanced else T + 2
    checks = dict.fromkeys(
        ("vary_g", "vary_w", "vary_cl", "dup", "unbalanced", "unbalanced_rows", "early"), 0
    )
    checks["early_rows"] = 0
    acc: dict[float, FloatArray] = {}
    nobs: dict[float, FloatArray] = {}
    parts: list[pd.DataFrame] = []
    units = pv.units.cache() if hasattr(pv.units, "cache") else pv.units
    reader = units.to_pyarrow_batches(chunk_size=batch_rows)
    for b in reader:
        if b.num_rows == 0:
            continue
        g = b.column("_g").to_numpy(zero_copy_only=False).astype(float)
        nt = b.column("_nt").to_numpy(zero_copy_only=False).astype(np.int64)
        w = b.column("_w").to_numpy(zero_copy_only=False).astype(float)
        checks["vary_g"] += int(np.sum(g != b.column("_gmin").to_numpy(zero_copy_only=False)))
        checks["vary_w"] += int(np.sum(w != b.column("_wmin").to_numpy(zero_copy_only=False)))
        if cluster:
            checks["vary_cl"] += int(
                pc.sum(pc.not_equal(b.column("_cl"), b.column("_clmin"))).as_py() or 0
            )
        checks["dup"] += int(np.sum(nt > T))
        short = nt < T
        checks["unbalanced"] += int(short.sum())
        checks["unbalanced_rows"] += int(nt[short].sum())
        early = g <= first
        checks["early"] += int(early.sum())
        checks["early_rows"] += int(nt[early].sum())
        keep = ~early if allow_unbalanced else ~early & (nt == T)
        idx = np.flatnonzero(keep)
        if len(idx) == 0:
            continue
        gk = g[idx]
        levels, code = np.unique(gk, return_inverse=True)
        small = code.astype(np.int16 if len(levels) < 2**15 else np.int64)
        order = idx[np.argsort(small, kind="stable")]  # radix sort for int16
        bounds = np.concatenate([[0], np.cumsum(np.bincount(code, minlength=len(levels)))])
        # units x width, rows sorted by cohort: u_i = [1, w, w y_1..T (, w obs_1..T)]
        X = np.empty((len(idx), width))
        X[:, 0] = 1.0
        X[:, 1] = w[order]
        for k in range(T):
            X[:, 2 + k] = b.column(f"y{k}").to_numpy(zero_copy_only=False)[order]
        if weights:
            X[:, 2 : T + 2] *= X[:, 1:2]
        if allow_unbalanced:
            for k in range(T):
                X[:, T + 2 + k] = b.column(f"o{k}").to_numpy(zero_copy_only=False)[order]
            for i, lev in enumerate(levels):
                o_sum = X[bounds[i] : bounds[i + 1], T + 2 :].sum(axis=0)
                nobs[float(lev)] = nobs.get(float(lev), 0.0) + o_sum
            X[:, T + 2 :] *= X[:, 1:2]
        for i, lev in enumerate(levels):
            key = float(lev)
            acc[key] = acc.get(key, 0.0) + _crossprod(X[bounds[i] : bounds[i + 1]])
        if cluster:
            frame = pd.DataFrame(X, columns=[f"s{j}" for j in range(width)])
            frame["_cl"] = b.column("_cl").take(order).to_numpy(zero_copy_only=False)
            frame["_g"] = g[order]
            parts.append(frame.groupby(["_cl", "_g"], sort=False).sum())
    unbalanced = _apply_checks(
        checks,
        pv.attr,
        gname=gname,
        weights=weights,
        cluster=cluster,
        idname=idname,
        tname=tname,
        allow_unbalanced=allow_unbalanced,
    )
    if not acc:
        raise EstimationError(
            f"staggered: no unit observed in every period ({pv.n_in} rows); "
            "see the attrition or use allow_unbalanced=True."
        )
    cohorts = np.array(sorted(acc))
    M = np.stack([acc[c] for c in cohorts])
    U = None
    if cluster:
        cr = pd.concat(parts).groupby(level=[0, 1], sort=False).sum().reset_index()
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
    wbar = float(M[:, 0, 1].sum()) / n if weights else 1.0
    scale = np.array([1.0] + [1.0 / wbar] * (keep_w - 1))
    M = M * scale[None, :, None] * scale[None, None, :]
    if U is not None:
        U = U * scale[None, None, :]
    wsum, wy = M[:, 0, 1].copy(), M[:, 0, 2 : T + 2].copy()
    attrition = pd.DataFrame(pv.attr, columns=["reason", "rows", "units"])
    if not unbalanced:
        return CohortMoments(cohorts, count, wsum, wy, M, U, n), pv.times, attrition
    nob = np.stack([nobs[c] for c in cohorts])
    mom = CohortMoments(cohorts, count, wsum, wy, M, U, n, M[:, 0, T + 2 :].copy(), nob)
    return mom, pv.times, attrition


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
    *,
    yname: str,
    idname: str,
    tname: str,
    gname: str,
    covs: tuple[str, ...],
    weights: str | None,
    cluster: str | None,
    anticipation: float,
    control: str,
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
    kw: dict[str, Any] = {
        "yname": yname,
        "idname": idname,
        "tname": tname,
        "gname": gname,
        "weights": weights,
        "cluster": cluster,
        "exposure": None,
        "anticipation": anticipation,
        "control": control,
        "allow_unbalanced": False,
        "covs": covs,
    }
    ep = pivot_units(t, **kw)
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
        ep = pivot_units(t, **kw, covs_by_period=True)
        u = ep.units
    T = len(ep.times)
    xcols = (
        [f"x{j}_{k}" for k in range(T) for j in range(J)]
        if by_period
        else [f"_xlo{j}" for j in range(J)]
    )
    cols = ["_g", "_w", *(["_cl"] if cluster else []), *[f"y{k}" for k in range(T)], *xcols]
    Y = np.empty((n, T))
    G = np.empty(n)
    w = np.empty(n)
    X = np.empty((T, n, J + 1)) if by_period else np.empty((n, J + 1))
    X[..., 0] = 1.0
    cl_parts: list[Any] = []
    pos = 0
    reader = u.order_by(idname).select(*cols).to_pyarrow_batches(chunk_size=batch_rows)
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
    if (w < 0).any():
        raise DataError(
            f"staggered: weights column {weights!r} has {int((w < 0).sum())} negative values."
        )
    w = w / w.mean()
    cl = None
    if cluster:
        cl = pd.factorize(np.concatenate(cl_parts), sort=True)[0].astype(np.int64)
    Xt = X if by_period else np.broadcast_to(X, (T, n, J + 1))
    return EngineRows(Y, G, w, Xt, ep.xnames, ep.times, cl, ep.attrition)
