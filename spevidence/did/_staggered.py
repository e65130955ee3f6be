"""Callaway-Sant'Anna staggered-adoption difference-in-differences.

Public entry point :func:`staggered` returns an :class:`ATTgt` (group-time
average treatment effects on the treated with influence-function standard
errors); :meth:`ATTgt.aggregate` gives the ``simple`` / ``dynamic`` (event
study) / ``group`` / ``calendar`` summaries of R ``did::aggte``.

Differences from R ``did`` (2.1.2), by design:

* ``aggregate("group")``: the overall standard error uses the corrected
  weight influence function of did PR #223 (did 2.1.2 indexes it by the
  group-time cells instead of the groups); ``moderndid`` and ``csdid``
  agree with the corrected value (tested).
* ``cluster=``: analytic cluster-robust SEs (influence functions summed
  within cluster). R ``did`` clusters only through its bootstrap, which
  averages influence functions within clusters; the two agree when clusters
  have equal sizes.
* ``bootstrap=``: a Gaussian multiplier bootstrap computed from the
  influence-function covariance (R uses Mammen multipliers); seeded, and the
  same draws on the moment and row paths.

Tests check every control x method x base-period x covariate combination on
``mpdta`` against R ``did`` (via moderndid and csdid) to 1e-9.

Computation paths (``path=``)
-----------------------------
* ``moments`` (``auto`` without covariates): the cohort moments (DESIGN.md section 6).
  For an Ibis table the engine pivots the panel to one row per unit; DuckDB (in
  process) streams that pivot in Arrow batches and numpy forms the cohort
  cross-products (one scan of the data; 15.7 M units x 22 periods in minutes,
  ``benchmarks/bench_national.py``), other engines (Spark) return the cohort moment
  matrices.
* ``rows`` (``auto`` with covariates): with covariates (``xformla``) an Ibis table
  takes the row path through the engine: the engine cleans and pivots the panel to
  one row per unit (outcome in every period, covariates once per unit, or per period
  when they vary within units) and streams it into numpy, so memory is about
  ``units x (periods + covariates) x 8`` bytes, not the long panel; the per-cell
  regressions run in numpy and the influence functions are summed block by block of
  units (never stored as units x cells).

References
----------
Callaway, B. and Sant'Anna, P. H. C. (2021). Difference-in-differences with
multiple time periods. *Journal of Econometrics* 225(2), 200-230.
Sant'Anna, P. H. C. and Zhao, J. (2020). Doubly robust difference-in-differences
estimators. *Journal of Econometrics* 219(1), 101-122.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy import stats

from spevidence._version import __version__
from spevidence.did._aggte import SE_EPS, bootstrap_draws
from spevidence.did._ibis_moments import (
    PivotSpec,
    cs_moments,
    cs_moments_stream,
    cs_rows_stream,
    is_ibis_table,
    pivot_units,
    streams_units,
)
from spevidence.did._inputs import (
    EARLY_UNITS,
    UNBALANCED_UNITS,
    negative_unit_weights,
    panel_frame,
    staggered_repeated_pairs,
    varies_within_units,
)
from spevidence.did._results import ATTgt
from spevidence.did._staggered_core import (
    CellSet,
    estimate_moments,
    estimate_rows,
    moments_from_wide,
    plan_cells,
)
from spevidence.errors import EstimationError

Control = Literal["never", "notyet"]
Method = Literal["dr", "ipw", "reg"]
BasePeriod = Literal["varying", "universal"]
Path = Literal["auto", "moments", "rows"]

FloatArray = NDArray[np.float64]


# ----------------------------------------------------------------------------- preparation


@dataclass(frozen=True)
class _Panel:
    Y: FloatArray
    G: FloatArray
    w: FloatArray
    Xt: FloatArray | None
    xnames: tuple[str, ...]
    times: FloatArray
    cluster: NDArray[np.int64] | None
    attrition: pd.DataFrame
    obs: NDArray[np.bool_] | None = None


def _parse_formula(xformla: str | list[str] | None) -> list[str]:
    if xformla is None:
        return []
    if isinstance(xformla, list | tuple):
        return [str(c) for c in xformla]
    rhs = xformla.split("~", 1)[-1].strip()
    if rhs in ("", "1"):
        return []
    terms = [t.strip() for t in rhs.split("+")]
    bad = [t for t in terms if not re.fullmatch(r"[A-Za-z_.][A-Za-z0-9_.]*", t)]
    if bad:
        raise EstimationError(
            f"xformla={xformla!r}: only sums of column names are supported (bad terms: {bad}); "
            "create transformed columns before calling staggered()."
        )
    return terms


def _unit_codes(ids: pd.Series) -> NDArray[np.int64]:
    """``pd.factorize(ids, sort=True)[0]``; without hashing when the ids are numbers
    already in order (a panel sorted by unit, the usual layout)."""
    v = ids.to_numpy()
    if len(v) and v.dtype.kind in "iuf" and ids.is_monotonic_increasing:
        codes = np.zeros(len(v), dtype=np.int64)
        np.cumsum(v[1:] != v[:-1], out=codes[1:])
        return codes
    return np.asarray(pd.factorize(ids, sort=True)[0], dtype=np.int64)


def _prepare(
    data: Any,
    *,
    yname: str,
    idname: str,
    tname: str,
    gname: str,
    covs: list[str],
    weights: str | None,
    cluster: str | None,
    anticipation: float,
    control: str,
    allow_unbalanced: bool = False,
) -> _Panel:
    """The cleaned balanced (or, with ``allow_unbalanced``, masked) panel as wide arrays,
    every drop counted in the attrition."""
    needed = [yname, idname, tname, gname, *covs]
    needed += [c for c in (weights, cluster) if c is not None and c not in needed]
    data = panel_frame(data, needed, "staggered")
    df = data[list(dict.fromkeys(needed))]
    attr: list[dict[str, Any]] = []
    n_rows0 = len(df)

    def record(reason: str, rows: int, units: int) -> None:
        attr.append({"reason": reason, "rows": int(rows), "units": int(units)})

    na = df[[c for c in needed if c != gname]].isna().any(axis=1).to_numpy()
    if na.any():
        record("missing outcome, period, unit, weight, cluster or covariate", int(na.sum()), 0)
        df = df.loc[~na]
    r = _unit_rows(df, idname=idname, tname=tname, gname=gname, weights=weights, cluster=cluster)
    k = _kept_units(
        r,
        record,
        gname=gname,
        anticipation=anticipation,
        control=control,
        allow_unbalanced=allow_unbalanced,
    )
    T = int(k.keep_t.sum())
    tnew = np.cumsum(k.keep_t) - 1
    sel = k.keep_t[r.tcode] & k.keep_u[r.uid]
    newid = np.cumsum(k.keep_u) - 1
    ri, ci = newid[r.uid[sel]], tnew[r.tcode[sel]]
    n = int(k.keep_u.sum())

    def wide(v: NDArray[Any]) -> FloatArray:
        out = np.full((n, T), np.nan)
        out[ri, ci] = v[sel]
        return out

    obs = None
    if k.obs_needed:
        obs = np.zeros((n, T), dtype=bool)
        obs[ri, ci] = True

    Y = wide(df[yname].to_numpy(dtype=float))
    G = k.g_u[k.keep_u]
    if r.w_row is not None:
        w = r.w_row[r.first][k.keep_u]
        if (w < 0).any():
            raise negative_unit_weights("staggered", weights, int((w < 0).sum()))
    else:
        w = np.ones(n)
    w = w / w.mean()
    cl = None
    if r.cl_row is not None and cluster != idname:
        cl = pd.factorize(r.cl_row[r.first][k.keep_u], sort=True)[0].astype(np.int64)
    Xt, xnames = _covariate_design(df, covs, wide, n, T)
    record_df = pd.DataFrame(attr, columns=["reason", "rows", "units"])
    record_df.attrs["rows_in"] = n_rows0
    return _Panel(Y, G, w, Xt, xnames, r.times_all[k.keep_t], cl, record_df, obs)


@dataclass(frozen=True)
class _UnitRows:
    """Rows coded by unit and period, with the unit-constant columns checked."""

    uid: NDArray[np.int64]
    tcode: NDArray[np.int64]
    times_all: FloatArray
    first: NDArray[np.int64]  # first row of each unit
    g_row: NDArray[Any]
    w_row: FloatArray | None
    cl_row: NDArray[np.int64] | None


def _unit_rows(
    df: pd.DataFrame,
    *,
    idname: str,
    tname: str,
    gname: str,
    weights: str | None,
    cluster: str | None,
) -> _UnitRows:
    """Code units and periods; one row per unit and period; cohort, weight and cluster
    constant within each unit."""
    uid = _unit_codes(df[idname])
    nU = int(uid.max()) + 1 if len(uid) else 0
    N = len(uid)
    tv = df[tname].to_numpy(dtype=float)
    times_all = np.unique(tv)
    tcode = np.searchsorted(times_all, tv)
    per_cell = np.bincount(uid * len(times_all) + tcode, minlength=nU * len(times_all))
    if (per_cell > 1).any():
        n_dup = int((per_cell - 1).clip(0).sum())
        raise staggered_repeated_pairs("staggered", n_dup, idname, tname)
    first = np.empty(nU, dtype=np.int64)
    first[uid[::-1]] = np.arange(N)[::-1]
    g_row = pd.to_numeric(df[gname], errors="coerce").astype(float).fillna(0.0).to_numpy()
    w_row = df[weights].to_numpy(dtype=float) if weights is not None else None
    cl_row = pd.factorize(df[cluster], sort=True)[0] if cluster is not None else None
    for arr, col, what in (
        (g_row, gname, "treatment cohort"),
        (w_row, weights, "weight"),
        (cl_row, cluster, "cluster"),
    ):
        if arr is None:
            continue
        vary = arr != arr[first][uid]
        if vary.any():
            raise varies_within_units("staggered", str(col), what, np.unique(uid[vary]).size)
    return _UnitRows(uid, tcode, times_all, first, g_row, w_row, cl_row)


@dataclass(frozen=True)
class _Kept:
    keep_u: NDArray[np.bool_]
    keep_t: NDArray[np.bool_]
    g_u: FloatArray  # cohort per unit (inf: never treated, or the comparison cohort)
    obs_needed: bool  # unbalanced units kept: the observed cells are masked


def _kept_units(
    r: _UnitRows,
    record: Any,
    *,
    gname: str,
    anticipation: float,
    control: str,
    allow_unbalanced: bool,
) -> _Kept:
    """Units and periods kept: units treated in the first period dropped, periods from
    the last cohort on when no unit is never treated, units not observed in every period
    (unless ``allow_unbalanced``); each drop recorded."""
    uid, tcode, times_all = r.uid, r.tcode, r.times_all
    nU = len(r.first)
    g_u = r.g_row[r.first]
    g_u = np.where((g_u == 0) | (g_u > times_all.max()), np.inf, g_u)
    keep_u = np.ones(nU, dtype=bool)
    rows_u = np.bincount(uid, minlength=nU)
    early = g_u <= times_all.min() + anticipation
    if early.any():
        record(EARLY_UNITS, int(rows_u[early].sum()), int(early.sum()))
        keep_u &= ~early
    if not keep_u.any():
        raise EstimationError(
            "staggered: no rows left after dropping units treated in the first period."
        )
    keep_t = np.ones(len(times_all), dtype=bool)
    if np.isfinite(g_u[keep_u]).all():
        latest = float(g_u[keep_u].max())
        keep_t = times_all < latest - anticipation
        cut_rows = int(np.sum(keep_u[uid] & ~keep_t[tcode]))
        record(
            "no never-treated units: periods from the last cohort's treatment dropped", cut_rows, 0
        )
        if control == "never":
            g_u = np.where(g_u == latest, np.inf, g_u)
    if not np.isfinite(g_u[keep_u]).any():
        raise EstimationError(
            f"staggered: no treated units (column {gname!r}); need at least one cohort "
            "treated after the first period."
        )
    T = int(keep_t.sum())
    cnt = np.bincount(uid[keep_t[tcode]], minlength=nU)
    unb = keep_u & (cnt != T)
    obs_needed = bool(allow_unbalanced and unb.any())
    if obs_needed:
        unb = keep_u & (cnt == 0)
    if unb.any():
        record(
            UNBALANCED_UNITS,
            int(cnt[unb].sum()),
            int(unb.sum()),
        )
        keep_u &= ~unb
    if not keep_u.any():
        raise EstimationError(
            "staggered: no unit is observed in every period; cannot form a balanced panel."
        )
    return _Kept(keep_u, keep_t, g_u, obs_needed)


def _covariate_design(
    df: pd.DataFrame, covs: list[str], wide: Any, n: int, T: int
) -> tuple[FloatArray | None, tuple[str, ...]]:
    """Covariates as periods x units x k with an intercept first (non-numeric columns
    as indicators of all but their first level), or ``None`` without covariates."""
    if not covs:
        return None, ()
    parts: list[pd.DataFrame] = []
    for c in covs:
        col = df[c]
        if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
            parts.append(col.astype(float).to_frame(c))
        else:
            dum = pd.get_dummies(col.astype(str), prefix=c, drop_first=True, dtype=float)
            parts.append(dum)
    Xdf = pd.concat(parts, axis=1)
    xnames = ("(Intercept)", *Xdf.columns.astype(str))
    arr = np.stack([wide(Xdf[c].to_numpy(dtype=float)) for c in Xdf.columns], axis=2)
    Xt = np.concatenate([np.ones((T, n, 1)), arr.transpose(1, 0, 2)], axis=2)
    return Xt, xnames


# ----------------------------------------------------------------------------- entry point


def staggered(
    data: Any,
    *,
    yname: str,
    idname: str,
    tname: str,
    gname: str,
    xformla: str | list[str] | None = None,
    control: Control = "never",
    method: Method = "dr",
    base_period: BasePeriod = "varying",
    anticipation: int = 0,
    cluster: str | None = None,
    weights: str | None = None,
    allow_unbalanced: bool = False,
    bootstrap: int | None = None,
    alpha: float = 0.05,
    seed: int | None = None,
    path: Path = "auto",
) -> ATTgt:
    """Callaway-Sant'Anna group-time average treatment effects (staggered adoption).

    For every cohort ``g`` (units first treated in period ``g``) and period
    ``t`` a two-by-two DiD compares cohort ``g`` with a control group between
    ``t`` and a base period, using the doubly robust, IPW or outcome
    regression estimator of Sant'Anna and Zhao (2020). Standard errors come
    from the influence functions (clustered by unit, or by ``cluster``).
    Reproduces R ``did::att_gt`` (panel data) option for option.

    Parameters
    ----------
    data : pandas.DataFrame
        Long panel, one row per unit and period.
    yname, idname, tname, gname : str
        Outcome, unit id, period (numeric) and cohort columns. ``gname`` is the
        first treated period, ``0`` (or missing) for never treated; cohorts
        after the last period count as never treated.
    xformla : str or list of str, optional
        Covariates, R style (``"~ lpop + region"``); non-numeric columns are
        expanded to indicators. Taken at the earlier of the two periods.
    control : {"never", "notyet"}
        Never-treated units only, or never plus not-yet-treated units.
    method : {"dr", "ipw", "reg"}
        Doubly robust, standardised inverse-probability weighting, or
        outcome regression.
    base_period : {"varying", "universal"}
        As in R ``did``: pre-treatment cells against the previous period, or
        every cell against the period before treatment (``g - 1 - anticipation``).
    anticipation : int
        Periods of anticipation before treatment.
    cluster : str, optional
        Unit-constant cluster column (e.g. practice); SEs are cluster-robust
        (sum of influence functions within cluster).
    weights : str, optional
        Unit-constant sampling weights.
    allow_unbalanced : bool
        Keep units not observed in every period (R ``did``'s
        ``allow_unbalanced_panel``: each cell uses every observed row, the
        repeated cross-section estimators, influence functions summed by
        unit). Without covariates only. Default: such units are dropped and
        counted in ``attrition``.
    bootstrap : int, optional
        Number of Gaussian multiplier bootstrap draws: bootstrap SEs and
        uniform (sup-t) bands. Needs ``seed``.
    alpha : float
        1 - confidence level.
    seed : int, optional
        Seed of :func:`numpy.random.default_rng` for the bootstrap.
    path : {"auto", "moments", "rows"}
        ``auto`` uses cohort moments when there are no covariates (the scale
        path, DESIGN.md section 6) and unit rows otherwise; how an Ibis table
        is computed on each path: the module's "Computation paths".

    Returns
    -------
    ATTgt

    References
    ----------
    Callaway, B. and Sant'Anna, P. H. C. (2021), *J. Econometrics* 225(2), 200-230.
    Sant'Anna, P. H. C. and Zhao, J. (2020), *J. Econometrics* 219(1), 101-122.
    """
    covs = _checked_options(
        control=control, method=method, base_period=base_period, path=path,
        allow_unbalanced=allow_unbalanced, xformla=xformla, alpha=alpha, bootstrap=bootstrap,
        seed=seed,
    )  # fmt: skip
    use: Literal["moments", "rows"] = (
        "moments" if (path == "moments" or (path == "auto" and not covs)) else "rows"
    )
    spec: dict[str, Any] = {
        "yname": yname, "idname": idname, "tname": tname, "gname": gname, "weights": weights,
        "anticipation": anticipation, "control": control,
    }  # fmt: skip
    plan = {"control": control, "base_period": base_period, "anticipation": anticipation}
    est = _estimate(
        data, spec, plan, use=use, covs=covs, cluster=cluster, method=method,
        allow_unbalanced=allow_unbalanced,
    )  # fmt: skip
    settings = {
        "yname": yname, "idname": idname, "tname": tname, "gname": gname,
        "xformla": xformla if isinstance(xformla, str) or xformla is None else " + ".join(xformla),
        "control": control, "method": method, "base_period": base_period,
        "anticipation": anticipation, "cluster": cluster, "weights": weights,
        "bootstrap": bootstrap, "alpha": alpha, "seed": seed, "spevidence_version": __version__,
    }  # fmt: skip
    return _finish(est, alpha=alpha, bootstrap=bootstrap, seed=seed, path=use, settings=settings)


def _checked_options(
    *,
    control: str,
    method: str,
    base_period: str,
    path: str,
    allow_unbalanced: bool,
    xformla: str | list[str] | None,
    alpha: float,
    bootstrap: int | None,
    seed: int | None,
) -> list[str]:
    """Check the options of :func:`staggered`; returns the covariates."""
    if control not in ("never", "notyet"):
        raise EstimationError(f"control={control!r}: use 'never' or 'notyet'.")
    if method not in ("dr", "ipw", "reg"):
        raise EstimationError(f"method={method!r}: use 'dr', 'ipw' or 'reg'.")
    if base_period not in ("varying", "universal"):
        raise EstimationError(f"base_period={base_period!r}: use 'varying' or 'universal'.")
    if path not in ("auto", "moments", "rows"):
        raise EstimationError(f"path={path!r}: use 'auto', 'moments' or 'rows'.")
    if allow_unbalanced and xformla is not None and _parse_formula(xformla):
        raise EstimationError(
            "allow_unbalanced=True is supported without covariates only (xformla=None); "
            "with covariates, units not observed in every period are dropped by default."
        )
    if not 0 < alpha < 1:
        raise EstimationError(f"alpha={alpha}: must be between 0 and 1.")
    if bootstrap is not None and (bootstrap < 2 or seed is None):
        raise EstimationError(
            f"bootstrap={bootstrap}: needs at least 2 draws and an explicit seed= "
            "(no hidden randomness)."
        )
    covs = _parse_formula(xformla)
    if path == "moments" and covs:
        raise EstimationError(
            "path='moments' needs xformla=None; use path='rows' or 'auto' with covariates."
        )
    return covs


@dataclass(frozen=True)
class _Estimated:
    """The estimated cells and what :func:`_finish` needs besides them."""

    cells: CellSet
    cohorts: FloatArray
    pg: FloatArray  # cohort shares
    sizes: dict[float, int]
    n: int
    attrition: pd.DataFrame


def _estimate(
    data: Any,
    spec: dict[str, Any],
    plan: dict[str, Any],
    *,
    use: Literal["moments", "rows"],
    covs: list[str],
    cluster: str | None,
    method: str,
    allow_unbalanced: bool,
) -> _Estimated:
    """The group-time cells: engine moments for an Ibis table on the moment path, else
    from the wide panel (streamed from the engine or prepared in pandas)."""
    if is_ibis_table(data) and use == "moments":
        return _engine_moment_cells(
            data,
            spec | {"cluster": cluster if cluster != spec["idname"] else None},
            plan,
            method=method,
            allow_unbalanced=allow_unbalanced,
        )
    pan = _panel(data, spec, covs=covs, cluster=cluster, allow_unbalanced=allow_unbalanced)
    if pan.obs is not None and use == "rows":
        raise EstimationError(
            "allow_unbalanced=True with an unbalanced panel needs the moment path "
            "(path='auto' or 'moments', no covariates)."
        )
    return _panel_cells(pan, plan, use=use, method=method)


def _engine_moment_cells(
    data: Any, spec: dict[str, Any], plan: dict[str, Any], *, method: str, allow_unbalanced: bool
) -> _Estimated:
    """Moment path for an Ibis table: the cohort moments computed in (or streamed from)
    the engine."""
    pspec = PivotSpec(**spec, exposure=None, allow_unbalanced=allow_unbalanced)
    if streams_units(data):  # in-process engine: stream the unit pivot, one scan
        mom, times, attrition = cs_moments_stream(data, pspec)
    else:  # distributed engine: cohort moment matrices computed in the engine
        ep = pivot_units(data, pspec)
        mom = cs_moments(
            ep,
            weighted=spec["weights"] is not None,
            clustered=spec["cluster"] is not None,
        )
        times, attrition = ep.times, ep.attrition
    cohorts = mom.cohorts[np.isfinite(mom.cohorts)]
    plans = plan_cells(times, cohorts, **plan)
    cells = estimate_moments(mom, cohorts, plans, method)
    n = mom.n
    sizes = {float(c): int(k) for c, k in zip(mom.cohorts, mom.count, strict=True)}
    pg = np.array([mom.wsum[list(mom.cohorts).index(g)] / n for g in cohorts])
    return _Estimated(cells, cohorts, pg, sizes, n, attrition)


def _panel(
    data: Any,
    spec: dict[str, Any],
    *,
    covs: list[str],
    cluster: str | None,
    allow_unbalanced: bool,
) -> _Panel:
    """The wide panel: streamed from the engine (Ibis table, balanced) or prepared in
    pandas."""
    if is_ibis_table(data) and not allow_unbalanced:
        cl = cluster if cluster != spec["idname"] else None
        pspec = PivotSpec(**spec, cluster=cl, exposure=None)
        er = cs_rows_stream(data, pspec, covs=tuple(dict.fromkeys(covs)))
        return _Panel(er.Y, er.G, er.w, er.Xt, er.xnames, er.times, er.cluster, er.attrition)
    return _prepare(
        data.to_pandas() if is_ibis_table(data) else data,
        covs=covs,
        cluster=cluster,
        allow_unbalanced=allow_unbalanced,
        **spec,
    )


def _panel_cells(
    pan: _Panel, plan: dict[str, Any], *, use: Literal["moments", "rows"], method: str
) -> _Estimated:
    """The cells from a wide panel, by cohort moments or unit rows."""
    cohorts = np.unique(pan.G[np.isfinite(pan.G)])
    plans = plan_cells(pan.times, cohorts, **plan)
    if use == "moments":
        mom = moments_from_wide(pan.Y, pan.G, pan.w, pan.cluster, pan.obs)
        cells = estimate_moments(mom, cohorts, plans, method)
    else:
        cells = estimate_rows(pan.Y, pan.G, pan.w, pan.Xt, cohorts, plans, method, pan.cluster)
    n = pan.Y.shape[0]
    pg = np.array([np.mean(pan.w * np.equal(pan.G, g)) for g in cohorts])
    sizes = {float(g): int(np.sum(np.equal(pan.G, g))) for g in cohorts}
    return _Estimated(cells, cohorts, pg, sizes, n, pan.attrition)


def _finish(
    est: _Estimated,
    *,
    alpha: float,
    bootstrap: int | None,
    seed: int | None,
    path: Literal["moments", "rows"],
    settings: dict[str, Any],
) -> ATTgt:
    cells = est.cells
    K = len(cells.att)
    if K == 0:
        raise EstimationError(
            "staggered: no group-time cell could be estimated "
            f"({len(cells.skipped)} skipped, e.g. {cells.skipped[:3]}); "
            "check the cohorts and controls."
        )
    V = cells.sigma[:K, :K]
    se = np.sqrt(np.clip(np.diag(V), 0.0, None))
    se = np.where(se <= SE_EPS, np.nan, se)
    crit = float(stats.norm.ppf(1 - alpha / 2))
    se_rep = se
    if bootstrap:
        L = np.zeros((cells.sigma.shape[0], K))
        L[:K, :K] = np.eye(K)
        se_rep, crit = bootstrap_draws(cells.sigma, L, int(bootstrap), int(seed or 0), alpha)
    return ATTgt(
        groups=np.array([p.group for p in cells.plans]),
        times=np.array([p.time for p in cells.plans]),
        att=cells.att,
        se=se_rep,
        analytic_se=se,
        n_cell=cells.n_cell,
        vcov=V,
        crit=crit,
        alpha=alpha,
        n_units=est.n,
        cohort_sizes=est.sizes,
        cohort_shares=est.pg,
        path=path,
        attrition=est.attrition,
        skipped=cells.skipped,
        settings=settings,
        _sigma=cells.sigma,
        _cohorts=est.cohorts,
    )
