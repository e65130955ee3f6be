"""Two-way fixed-effects DiD for count outcomes: 2×2, TWFE and event study.

References
----------
Angrist, J. D. and Pischke, J.-S. (2009). *Mostly Harmless Econometrics*, ch. 5.
Hausman, J., Hall, B. H. and Griliches, Z. (1984). Econometric models for count data with
an application to the patents–R&D relationship. *Econometrica* 52(4), 909–938.
Santos Silva, J. M. C. and Tenreyro, S. (2006). The log of gravity. *REStat* 88(4), 641–658.
Wooldridge, J. M. (2023). Simple approaches to nonlinear difference-in-differences with
panel data. *The Econometrics Journal* 26(3), C31–C66.
Bergé, L. (2018). Efficient estimation of maximum likelihood models with multiple
fixed-effects: the R package FENmlm. CREA Discussion Papers (fixest conventions).

Computation paths (``result.path``; ``glance()['moments_computed_in']``)
-----------------------------------------------------------------------
* ``moments`` computed in the engine: an ibis table (DuckDB, Spark, ...) passed to
  :func:`two_by_two` (no covariates) or :func:`twfe`. Cohort keys are hashes of each unit's
  design path (verified exactly), cohort x period sums come from one GROUP BY, and the
  clustered meat from one more scan with the per-cohort score loadings. Falls back to
  pulling the needed columns (then the paths below) when: covariates are given, a period
  is observed once, a Poisson period has no events, the treated flag changes within a
  unit, or clusters split a unit. :func:`event_study` always pulls its columns.
* ``moments`` computed in Python (pandas DataFrame input to :func:`twfe` or
  :func:`two_by_two` without covariates): the columns are held as dense unit x period
  matrices (:mod:`spevidence.did._dense`; zero-copy reshapes when the rows are sorted by
  unit then period and the panel is balanced, else one scatter), cohorts are found by
  packing/hashing each unit's design path, and the fit needs one blocked pass for the
  cohort x period sums and one for the unit scores. Chosen automatically when there are at
  most half as many cohorts as units; clusters must contain whole units.
* ``rows``: everything else (covariates, clusters splitting units, few shared paths).
  :func:`event_study` and other inputs (e.g. pulled ibis columns) prepare the row design
  with pandas first, then choose between the cohort moments and rows the same way.
All paths give the same estimates and standard errors (tests: 1e-10).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, Literal, ParamSpec, TypeVar

import numpy as np
import pandas as pd
from scipy import stats

from spevidence.did._dense import (
    Dense,
    cohort_moments,
    dense_from_frame,
    is_binary,
    rows_of,
)
from spevidence.did._dense import design as dense_design
from spevidence.did._fe import (
    Fit,
    Model,
    Moments,
    RowDesign,
    fit_moments,
    fit_rows,
    moments_from_rows,
)
from spevidence.did._ibis_moments import IbisMoments, is_ibis_table, moments_from_ibis
from spevidence.did._inputs import (
    DAYS_PER_YEAR,
    PCODE,
    UCODE,
    as_binary,
    check_common,
    check_model,
    check_path,
    check_single_cluster,
    drop_missing,
    drop_singletons,
    not_binary,
    to_frame,
)
from spevidence.did._results import DiDResult, EventStudyResult, wald_test
from spevidence.errors import DataError, EstimationError

Path = Literal["auto", "rows", "moments"]


def _design(
    df: pd.DataFrame,
    *,
    yname: str,
    idname: str,
    X: np.ndarray,
    xnames: tuple[str, ...],
    model: Model,
    exposure: str | None,
    weights: str | None,
    cluster: str,
) -> RowDesign:
    y = pd.to_numeric(df[yname]).to_numpy(dtype=float)
    w = None if weights is None else pd.to_numeric(df[weights]).to_numpy(dtype=float)
    off = None
    if exposure is not None:
        e = pd.to_numeric(df[exposure]).to_numpy(dtype=float)
        if model == "poisson":
            off = np.log(e)
        else:  # linear: rate per person-year, weighted by person-time
            y = y / e * DAYS_PER_YEAR
            w = e if w is None else w * e
    unit = df[UCODE].to_numpy()
    per = df[PCODE].to_numpy()
    cl = unit if cluster == idname else pd.factorize(df[cluster], sort=True)[0].astype(np.int64)
    check_single_cluster(cl, cluster)
    return RowDesign(
        y=y,
        unit=unit,
        period=per,
        X=X.astype(float),
        xnames=xnames,
        cluster=cl,
        weights=w,
        offset=off,
    )


# ----------------------------------------------------------------------------- dense path


def _dense_input(
    data: Any,
    path: Path,
    *,
    yname: str,
    idname: str,
    tname: str,
    values: list[str],
    model: Model,
    exposure: str | None,
    weights: str | None,
    cluster: str,
    attrition: list[tuple[str, int]],
) -> Dense | None:
    """Dense unit x period matrices for an in-memory frame (None: use the frame path)."""
    check_model(model)
    check_path(path)
    local: list[tuple[str, int]] = []
    dp = dense_from_frame(
        data, yname=yname, idname=idname, tname=tname, values=values, model=model,
        exposure=exposure, weights=weights, cluster=cluster, attrition=local,
    )  # fmt: skip
    if dp is None:
        return None
    attrition += local
    if dp.cluster is not None and dp.cluster.max() == dp.cluster.min():
        check_single_cluster(dp.cluster, cluster)
    return dp


def _dense_binary(dp: Dense, col: str) -> np.ndarray:
    a = dp.cols[col]
    if not is_binary(a):
        v = dp.values(col).astype(float)
        raise not_binary(col, int((~((v == 0.0) | (v == 1.0))).sum()), v.size)
    return a


def _dense_groups_check(dp: Dense, yname: str, group: np.ndarray, model: Model) -> None:
    """Poisson: the outcome must have events among treated and among comparison units."""
    if model != "poisson":
        return
    tot = dp.unit_sum(dp.cols[yname])
    cnt = dp.observed().sum(axis=1) if dp.mask is not None else np.full(dp.n_units, dp.n_periods)
    for g, label in ((True, "treated"), (False, "comparison")):
        sel = group == g
        if sel.any() and not np.any(tot[sel] != 0):
            raise EstimationError(
                f"Outcome '{yname}' is zero in all {int(cnt[sel].sum())} rows of the {label} "
                "group; a rate ratio cannot be estimated. Choose another outcome or a longer "
                "window."
            )


def _fit_dense(
    dd: Any, model: Model, path: Path, *, cluster_is_unit: bool
) -> tuple[Fit, RowDesign | Moments]:
    """Moments path when the design has shared paths (cohorts), else rows; as :func:`_fit`."""
    why_not = None
    if path != "rows":
        m = cohort_moments(dd, model=model)
        if model == "poisson" and np.any(m.Y.sum(axis=0)[m.mask.any(axis=0)] <= 0):
            why_not = "a period has no events"
        elif path == "moments" or m.n.size <= 0.5 * dd.panel.n_units:
            return fit_moments(m, model), m
    if path == "moments":
        raise EstimationError(f"The moments path cannot express this design: {why_not}.")
    d = rows_of(dd, cluster_is_unit=cluster_is_unit)
    return fit_rows(d, model), d


def _fit(d: RowDesign, model: Model, path: Path, *, covariates: bool, cluster_is_unit: bool) -> Fit:
    check_path(path)
    why_not = None
    if covariates:
        why_not = "covariates vary within cohorts"
    elif model == "poisson":
        tot_t = np.bincount(d.period, weights=d.y, minlength=d.n_periods)
        if np.any(tot_t <= 0):
            why_not = "a period has no events"
    m = None
    if why_not is None and path != "rows":
        m = moments_from_rows(d, unit_clusters=cluster_is_unit)
        if m is None:
            why_not = "clusters split a unit"
    if path == "moments" and m is None:
        raise EstimationError(f"The moments path cannot express this design: {why_not}.")
    if m is not None and (path == "moments" or m.n.size <= 0.5 * d.n_units):
        return fit_moments(m, model)
    return fit_rows(d, model)


def _level_sums(d: RowDesign | Moments, main: str) -> tuple[float, float]:
    """Weighted events and person-time of the observations with the treatment term on."""
    j = d.xnames.index(main)
    if isinstance(d, RowDesign):
        sel = d.X[:, j] == 1
        y = d.y[sel]
        w = None if d.weights is None else d.weights[sel]
        time = np.ones(y.size) if d.offset is None else np.exp(d.offset[sel])
        if w is None:
            return float(y.sum()), float(time.sum())
        return float(np.sum(w * y)), float(np.sum(w * time))
    sel2 = (d.X[:, :, j] == 1) & d.mask
    events = float(np.sum((d.W * d.Y)[sel2]))
    ptime = float(np.sum((d.W * np.exp(d.offset) * d.n[:, None])[sel2]))
    return events, ptime


def _poisson_level(
    sums: tuple[float, float], fit: Fit, main: str, exposure: str | None, conf_level: float
) -> tuple[float, float, float, str]:
    """Level effect for Poisson: observed treated rate × (1 − 1/RR).

    The observed events and person-time of rows with the treatment indicator on; the CI is
    the rate-ratio CI mapped through the same formula (the rate is held fixed).
    """
    events, ptime = sums
    scale = DAYS_PER_YEAR if exposure is not None else 1.0
    unit = "events per person-year" if exposure is not None else "events per person-period"
    rate = events / ptime * scale if ptime > 0 else float("nan")
    i = fit.names.index(main)
    b, se = fit.coef[i], float(np.sqrt(fit.vcov[i, i]))
    z = float(stats.norm.ppf(0.5 + conf_level / 2))
    lev = rate * (1 - np.exp(-b))
    lo, hi = rate * (1 - np.exp(-(b - z * se))), rate * (1 - np.exp(-(b + z * se)))
    return float(lev), float(lo), float(hi), unit


def _attrition(attrition: list[tuple[str, int]], fit: Fit) -> tuple[tuple[str, int], ...]:
    out = list(attrition)
    out += [(k, v) for k, v in fit.dropped_rows.items() if v]
    return tuple(out)


def _build(
    cls: type[DiDResult],
    *,
    method: str,
    d: RowDesign | Moments,
    fit: Fit,
    model: Model,
    main_term: str,
    yname: str,
    formula: str,
    exposure: str | None,
    attrition: list[tuple[str, int]],
    settings: dict[str, Any],
    conf_level: float,
    **kw: Any,
) -> Any:
    if main_term not in fit.names:
        raise EstimationError(
            f"The treatment term '{main_term}' is collinear with the fixed effects; "
            "treated and comparison units must both be observed before and after the index."
        )
    level = None
    if model == "poisson" and main_term in d.xnames:
        level = _poisson_level(_level_sums(d, main_term), fit, main_term, exposure, conf_level)
    return cls(
        method=method,
        model=model,
        terms=fit.names,
        estimate=fit.coef,
        vcov=fit.vcov,
        main_term=main_term,
        df=fit.df_t if model == "linear" else None,
        n_obs=fit.n_obs,
        n_units=fit.n_units,
        n_clusters=fit.n_clusters,
        path=fit.path,
        formula=formula,
        yname=yname,
        conf_level=conf_level,
        dropped_terms=fit.dropped_terms,
        attrition=_attrition(attrition, fit),
        settings=tuple(settings.items()),
        level=level,
        small_sample=fit.ssc,
        iterations=fit.iterations,
        **kw,
    )


def _engine_moments(data: Any, *, path: Path, can: bool, **kw: Any) -> IbisMoments | None:
    """Moments computed in the engine for an ibis table, or None (then rows are pulled)."""
    if not is_ibis_table(data) or path == "rows" or not can:
        return None
    got = moments_from_ibis(data, **kw)
    if isinstance(got, IbisMoments):
        return got
    if path == "moments":
        raise EstimationError(f"The moments path cannot express this design: {got}.")
    return None


def _lhs(yname: str, model: Model, exposure: str | None) -> str:
    if model == "poisson":
        off = f" + log({exposure})" if exposure else ""
        return f"E[{yname}] = exp(alpha_i + lambda_t + {{}}{off})  [PPML, unit FE conditioned out]"
    if exposure:
        return (
            f"{yname}/{exposure}*365.25 = alpha_i + lambda_t + {{}} + e  [WLS, weights {exposure}]"
        )
    return f"{yname} = alpha_i + lambda_t + {{}} + e  [OLS]"


def _outcome_groups_check(df: pd.DataFrame, yname: str, group: np.ndarray, model: Model) -> None:
    if model != "poisson":
        return
    y = pd.to_numeric(df[yname]).to_numpy(dtype=float)
    for g, label in ((1.0, "treated"), (0.0, "comparison")):
        sel = group == g
        if sel.any() and np.all(y[sel] == 0):
            raise EstimationError(
                f"Outcome '{yname}' is zero in all {int(sel.sum())} rows of the {label} group; "
                "a rate ratio cannot be estimated. Choose another outcome or a longer window."
            )


# ----------------------------------------------------------------------------- public


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _names_the_outcome(fn: Callable[_P, _R]) -> Callable[_P, _R]:
    """An estimation error that does not already name the outcome column says which one."""

    @functools.wraps(fn)
    def wrapper(*args: _P.args, **kw: _P.kwargs) -> _R:
        try:
            return fn(*args, **kw)
        except EstimationError as e:
            y = kw.get("yname")
            if y is None or f"'{y}'" in str(e):
                raise
            raise EstimationError(f"Outcome '{y}': {e}") from None

    return wrapper


@_names_the_outcome
def two_by_two(
    data: Any,
    *,
    yname: str,
    idname: str,
    tname: str,
    treat: str,
    post: str,
    model: Model = "linear",
    exposure: str | None = None,
    covariates: Sequence[str] | None = None,
    cluster: str | None = None,
    weights: str | None = None,
    path: Path = "auto",
    conf_level: float = 0.95,
) -> DiDResult:
    """Matched 2×2 difference-in-differences with unit and period fixed effects.

    The fitted model (``i`` unit, ``t`` period) is

    * linear: ``y_it = alpha_i + lambda_t + gamma*post_it + beta*(treat_i*post_it)
      [+ covariates_it'delta] + e_it`` by (weighted) least squares;
    * poisson: ``E[y_it] = exp(alpha_i + lambda_t + gamma*post_it + beta*(treat_i*post_it)
      [+ log exposure_it])`` by Poisson pseudo-maximum likelihood with the unit effects
      conditioned out (Hausman, Hall & Griliches 1984; Santos Silva & Tenreyro 2006).

    ``beta`` (term ``"treat:post"``) is the DiD effect; for Poisson ``exp(beta)`` is the
    rate ratio. ``post`` may differ between units (matched data: post is relative to each
    match set's index date); when it is common to all units it is absorbed by the period
    effects and dropped. With ``exposure`` the linear outcome is the rate per person-year
    (``y / exposure * 365.25``) weighted by exposure; Poisson uses ``log(exposure)`` as
    offset. ``weights`` (e.g. matching weights) multiply the observation weights.

    Standard errors are clustered by ``cluster`` (default: ``idname``) with fixest's
    default small-sample correction ``G/(G-1) * (N-1)/(N-K)``; inference uses
    ``t(G-1)`` for linear and the normal distribution for Poisson (as fixest/pyfixest).

    Parameters
    ----------
    data : pandas.DataFrame or ibis.Table
        One row per unit and period.
    yname, idname, tname : str
        Outcome, unit identifier and period columns.
    treat, post : str
        0/1 columns: treated unit (constant within unit); post-index period.
    model : {"linear", "poisson"}
    exposure : str, optional
        Time at risk (e.g. ``exposure_days``), must be > 0.
    covariates : sequence of str, optional
        Time-varying covariates (time-invariant ones are absorbed by the unit effects).
    cluster : str, optional
        Cluster column; default the unit.
    weights : str, optional
        Non-negative weights (matching weights); rows with weight 0 are dropped (counted).
    path : {"auto", "rows", "moments"}
        Engine. ``auto`` uses the exact moments path (DESIGN.md §6) when the design allows.
    conf_level : float

    Returns
    -------
    DiDResult
    """
    covs = list(covariates or [])
    cl = cluster or idname
    cols = list(dict.fromkeys([yname, idname, tname, treat, post, *covs]))
    cols += [c for c in (exposure, weights, cl) if c is not None and c not in cols]
    attrition: list[tuple[str, int]] = []
    d: RowDesign | Moments
    im = _engine_moments(
        data, path=path, can=not covs, yname=yname, idname=idname, tname=tname,
        xexprs={"post": lambda t: t[post], "treat:post": lambda t: t[treat] * t[post]},
        group_expr=lambda t: t[treat], binary=[treat, post], model=model,
        exposure=exposure, weights=weights, cluster=cl,
    )  # fmt: skip
    dp = None
    if im is None and not covs:
        dp = _dense_input(
            data, path, yname=yname, idname=idname, tname=tname, values=[treat, post],
            model=model, exposure=exposure, weights=weights, cluster=cl, attrition=attrition,
        )  # fmt: skip
    if im is not None:
        d = im.moments
        if np.unique(im.group).size < 2:
            raise EstimationError(
                f"'{treat}' takes one value in all units; the 2×2 needs treated and comparison "
                "units."
            )
        po_obs = d.X[:, :, 0][d.mask]
        if po_obs.min() == po_obs.max():
            raise EstimationError(f"'{post}' is constant in all rows; the 2×2 needs pre and post.")
        attrition += list(im.attrition)
        fit = fit_moments(d, model)
    elif dp is not None:
        trm, pom = _dense_binary(dp, treat), _dense_binary(dp, post)
        obs_n = (
            dp.observed().sum(axis=1) if dp.mask is not None
            else np.full(dp.n_units, dp.n_periods)
        )  # fmt: skip
        n_tr = dp.unit_sum(trm)
        if np.any((n_tr > 0) & (n_tr < obs_n)):
            raise DataError(
                f"Column '{treat}' changes within a unit ('{idname}'); it must mark treated units. "
                "Use twfe(dname=...) for a time-varying treatment indicator."
            )
        s_tr = float(obs_n[n_tr > 0].sum())
        s_po = float(dp.unit_sum(pom).sum())
        if s_tr == 0 or s_tr == dp.n_rows:
            raise EstimationError(
                f"'{treat}' is {'0' if s_tr == 0 else '1'} in all {dp.n_rows} rows; "
                "the 2×2 needs treated and comparison units."
            )
        if s_po == 0 or s_po == dp.n_rows:
            raise EstimationError(
                f"'{post}' is {'0' if s_po == 0 else '1'} in all {dp.n_rows} rows; "
                "the 2×2 needs pre and post periods."
            )
        _dense_groups_check(dp, yname, n_tr > 0, model)
        trpo = np.logical_and(trm, pom)
        dd = dense_design(
            dp, yname=yname, X=[pom, trpo], xnames=("post", "treat:post"), model=model,
            exposure=exposure, weights=weights,
        )  # fmt: skip
        fit, d = _fit_dense(dd, model, path, cluster_is_unit=cl == idname)
    else:
        df = drop_missing(to_frame(data, cols), attrition)
        df = check_common(
            df,
            yname=yname,
            model=model,
            exposure=exposure,
            weights=weights,
            attrition=attrition,
        )
        df = drop_singletons(df, idname, tname, attrition)
        tr = as_binary(df, treat)
        po = as_binary(df, post)
        uc = df[UCODE].to_numpy()
        n_tr, n_u = np.bincount(uc, weights=tr), np.bincount(uc)
        if np.any((n_tr > 0) & (n_tr < n_u)):
            raise DataError(
                f"Column '{treat}' changes within a unit ('{idname}'); it must mark treated units. "
                "Use twfe(dname=...) for a time-varying treatment indicator."
            )
        if tr.sum() == 0 or tr.sum() == tr.size:
            raise EstimationError(
                f"'{treat}' is {'0' if tr.sum() == 0 else '1'} in all {tr.size} rows; "
                "the 2×2 needs treated and comparison units."
            )
        if po.sum() == 0 or po.sum() == po.size:
            raise EstimationError(
                f"'{post}' is {'0' if po.sum() == 0 else '1'} in all {po.size} rows; "
                "the 2×2 needs pre and post periods."
            )
        _outcome_groups_check(df, yname, tr, model)
        cov_cols = [pd.to_numeric(df[c]).to_numpy(dtype=float) for c in covs]
        X = np.column_stack([po, tr * po, *cov_cols])
        xnames = ("post", "treat:post", *covs)
        d = _design(
            df, yname=yname, idname=idname, X=X, xnames=xnames,
            model=model, exposure=exposure, weights=weights, cluster=cl,
        )  # fmt: skip
        fit = _fit(d, model, path, covariates=bool(covs), cluster_is_unit=cl == idname)
    rhs = "gamma*post + beta*treat:post" + (" + covariates" if covs else "")
    settings = dict(
        yname=yname, idname=idname, tname=tname, treat=treat, post=post, model=model,
        exposure=exposure, covariates=tuple(covs), cluster=cl, weights=weights, path=path,
    )  # fmt: skip
    res: DiDResult = _build(
        DiDResult, method="two_by_two", d=d, fit=fit, model=model, main_term="treat:post",
        yname=yname, formula=_lhs(yname, model, exposure).format(rhs), exposure=exposure,
        attrition=attrition, settings=settings, conf_level=conf_level,
        extra=(("moments_computed_in", "engine" if im is not None else "python"),),
    )  # fmt: skip
    return res


@_names_the_outcome
def twfe(
    data: Any,
    *,
    yname: str,
    idname: str,
    tname: str,
    dname: str,
    model: Model = "linear",
    exposure: str | None = None,
    cluster: str | None = None,
    weights: str | None = None,
    path: Path = "auto",
    conf_level: float = 0.95,
) -> DiDResult:
    """Two-way fixed-effects DiD: ``y ~ D | unit + period``.

    linear: ``y_it = alpha_i + lambda_t + beta*D_it + e_it``; poisson (PPML, conditional on
    the unit effects): ``E[y_it] = exp(alpha_i + lambda_t + beta*D_it [+ log exposure_it])``,
    reported as the rate ratio ``exp(beta)`` and a level effect. ``D`` is the 0/1 treatment
    indicator (on in treated periods). With staggered adoption and heterogeneous effects the
    TWFE estimate is a weighted average that can mislead (Goodman-Bacon 2021); use the
    staggered estimators then. Inference and options as in :func:`two_by_two`.

    Returns
    -------
    DiDResult
    """
    cl = cluster or idname
    cols = list(dict.fromkeys([yname, idname, tname, dname]))
    cols += [c for c in (exposure, weights, cl) if c is not None and c not in cols]
    attrition: list[tuple[str, int]] = []
    d: RowDesign | Moments
    im = _engine_moments(
        data, path=path, can=True, yname=yname, idname=idname, tname=tname,
        xexprs={dname: lambda t: t[dname]}, group_expr=lambda t: t[dname] * 0,
        binary=[dname], model=model, exposure=exposure, weights=weights, cluster=cl,
    )  # fmt: skip
    dp = None
    if im is None:
        dp = _dense_input(
            data, path, yname=yname, idname=idname, tname=tname, values=[dname], model=model,
            exposure=exposure, weights=weights, cluster=cl, attrition=attrition,
        )  # fmt: skip
    if im is not None:
        d = im.moments
        if not np.any(d.X[:, :, 0][d.mask] == 1):
            raise EstimationError(f"'{dname}' is 0 in all rows; no treated observations.")
        attrition += list(im.attrition)
        fit = fit_moments(d, model)
    elif dp is not None:
        Dm = _dense_binary(dp, dname)
        if not Dm.any():
            raise EstimationError(
                f"'{dname}' is 0 in all {dp.n_rows} rows; no treated observations."
            )
        if model == "poisson":
            _dense_groups_check(dp, yname, np.asarray(Dm.any(axis=1)), model)
        dd = dense_design(
            dp, yname=yname, X=[Dm], xnames=(dname,), model=model, exposure=exposure,
            weights=weights,
        )  # fmt: skip
        fit, d = _fit_dense(dd, model, path, cluster_is_unit=cl == idname)
    else:
        df = drop_missing(to_frame(data, cols), attrition)
        df = check_common(
            df,
            yname=yname,
            model=model,
            exposure=exposure,
            weights=weights,
            attrition=attrition,
        )
        df = drop_singletons(df, idname, tname, attrition)
        D = as_binary(df, dname)
        if D.sum() == 0:
            raise EstimationError(f"'{dname}' is 0 in all {D.size} rows; no treated observations.")
        uc = df[UCODE].to_numpy()
        ever = (np.bincount(uc, weights=D) > 0)[uc].astype(float)
        _outcome_groups_check(df, yname, ever, model)
        d = _design(
            df, yname=yname, idname=idname, X=D[:, None],
            xnames=(dname,), model=model, exposure=exposure, weights=weights, cluster=cl,
        )  # fmt: skip
        fit = _fit(d, model, path, covariates=False, cluster_is_unit=cl == idname)
    settings = dict(
        yname=yname, idname=idname, tname=tname, dname=dname, model=model, exposure=exposure,
        cluster=cl, weights=weights, path=path,
    )  # fmt: skip
    res: DiDResult = _build(
        DiDResult, method="twfe", d=d, fit=fit, model=model, main_term=dname, yname=yname,
        formula=_lhs(yname, model, exposure).format(f"beta*{dname}"), exposure=exposure,
        attrition=attrition, settings=settings, conf_level=conf_level,
        extra=(("moments_computed_in", "engine" if im is not None else "python"),),
    )  # fmt: skip
    return res


@_names_the_outcome
def event_study(
    data: Any,
    *,
    yname: str,
    idname: str,
    tname: str,
    index: str,
    window: tuple[int, int] = (-12, 12),
    reference: int = -1,
    model: Model = "linear",
    exposure: str | None = None,
    cluster: str | None = None,
    weights: str | None = None,
    treat: str | None = None,
    path: Path = "auto",
    conf_level: float = 0.95,
) -> EventStudyResult:
    """Event study relative to each unit's (pseudo) index period, with a pre-trend test.

    Event time is ``e_it = t - index_i``; rows with ``e`` outside ``window`` are dropped
    (counted in the attrition). Two designs:

    * ``treat`` given (matched data; comparators carry their case's pseudo index):
      ``y_it = alpha_i + mu_e + sum_{k != reference} beta_k * treat_i * 1[e_it = k] + e``,
      i.e. event-time effects common to cases and comparators (they absorb regression to
      the mean) and case-specific deviations ``beta_k``.
    * ``treat`` omitted: units with a missing ``index`` are never treated and kept in full;
      ``y_it = alpha_i + lambda_t + sum_{k != reference} beta_k * 1[e_it = k] + e`` with
      calendar-period effects (the classic TWFE event study; with staggered adoption and
      heterogeneous effects prefer the staggered estimators, Sun & Abraham 2021).

    Poisson replaces the linear index by ``exp(...)`` with ``log(exposure)`` offset.
    The pre-trend test is the joint Wald chi-square test that all ``beta_k`` with ``k < 0``
    (except the reference) are zero. Inference as in :func:`two_by_two`.

    Returns
    -------
    EventStudyResult
    """
    lo, hi = int(window[0]), int(window[1])
    if not (lo <= reference <= hi) or lo >= hi:
        raise EstimationError(
            f"window {window} must satisfy low < high and contain the reference {reference}."
        )
    cl = cluster or idname
    cols = list(dict.fromkeys([yname, idname, tname]))
    cols += [c for c in (index, treat, exposure, weights, cl) if c is not None and c not in cols]
    attrition: list[tuple[str, int]] = []
    raw = to_frame(data, cols)
    # a missing index is meaningful (never treated) only without `treat`
    check_cols = [c for c in raw.columns if c != index or treat is not None]
    df = drop_missing(raw[check_cols], attrition)
    if treat is None:
        df[index] = raw.loc[df.index, index]
    df = check_common(
        df,
        yname=yname,
        model=model,
        exposure=exposure,
        weights=weights,
        attrition=attrition,
    )
    t = pd.to_numeric(df[tname], errors="coerce").to_numpy(dtype=float)
    idx = pd.to_numeric(df[index], errors="coerce").to_numpy(dtype=float)
    if np.isnan(t).any():
        raise DataError(
            f"Period column '{tname}' must be numeric (period index) for an event study."
        )
    e = t - idx
    has_index = ~np.isnan(idx)
    tr = as_binary(df, treat) if treat is not None else has_index.astype(float)
    if tr.sum() == 0:
        raise EstimationError("No treated units (all index periods missing / treat all 0).")
    outside = has_index & ((e < lo) | (e > hi))
    if outside.any():
        attrition.append(("outside_event_window", int(outside.sum())))
    period_col = "__spe_period__"
    df = df.assign(**{period_col: e if treat is not None else t}).loc[~outside]
    df = drop_singletons(df, idname, period_col, attrition)
    t = pd.to_numeric(df[tname]).to_numpy(dtype=float)
    idx = pd.to_numeric(df[index], errors="coerce").to_numpy(dtype=float)
    e = t - idx
    has_index = ~np.isnan(idx)
    tr = as_binary(df, treat) if treat is not None else has_index.astype(float)
    if not np.any(has_index & (e >= 0) & (tr == 1)):
        raise EstimationError("No treated rows at or after the index period; no post period.")
    _outcome_groups_check(df, yname, tr, model)
    ks = [k for k in range(lo, hi + 1) if k != reference]
    ein = np.where(has_index, e, np.nan)
    X = np.column_stack([(tr * (ein == k)).astype(float) for k in ks])
    present = np.asarray(X.any(axis=0), dtype=bool)
    ks = [k for k, p in zip(ks, present.tolist(), strict=True) if p]
    X = X[:, present]
    xnames = tuple(f"event_time::{k}" for k in ks)
    d = _design(
        df, yname=yname, idname=idname, X=X, xnames=xnames, model=model,
        exposure=exposure, weights=weights, cluster=cl,
    )  # fmt: skip
    fit = _fit(d, model, path, covariates=False, cluster_is_unit=cl == idname)
    kept_k = tuple(int(n.split("::")[1]) for n in fit.names)
    pre = [i for i, k in enumerate(kept_k) if k < 0]
    pretrend = wald_test(fit.coef[pre], fit.vcov[np.ix_(pre, pre)])
    main = next((n for n, k in zip(fit.names, kept_k, strict=True) if k >= 0), fit.names[0])
    if treat is not None:
        rhs = "sum_k beta_k*treat*1[e=k]  (mu_e: event-time effects)"
        form = _lhs(yname, model, exposure).replace("lambda_t", "mu_e").format(rhs)
    else:
        form = _lhs(yname, model, exposure).format("sum_k beta_k*1[e=k]")
    settings = dict(
        yname=yname, idname=idname, tname=tname, index=index, window=(lo, hi),
        reference=reference, model=model, exposure=exposure, cluster=cl, weights=weights,
        treat=treat, path=path,
    )  # fmt: skip
    res: EventStudyResult = _build(
        EventStudyResult, method="event_study", d=d, fit=fit, model=model, main_term=main,
        yname=yname, formula=form, exposure=exposure, attrition=attrition, settings=settings,
        conf_level=conf_level, event_times=kept_k, reference=reference, pretrend=pretrend,
    )  # fmt: skip
    return res


def placebo(
    data: Any,
    *,
    yname: str,
    idname: str,
    tname: str,
    treat: str,
    index: str,
    shift: int = 6,
    model: Model = "linear",
    exposure: str | None = None,
    cluster: str | None = None,
    weights: str | None = None,
    conf_level: float = 0.95,
) -> DiDResult:
    """Placebo 2×2: pretend the index came ``shift`` periods early, using pre-index data only.

    Rows at or after each unit's real index are dropped; a fake post indicator
    ``t >= index - shift`` replaces the real one and :func:`two_by_two` is fitted. With
    parallel pre-trends (and no anticipation) the placebo effect should be near zero.

    Returns
    -------
    DiDResult
        ``method == "placebo"``; the settings record ``shift``.
    """
    if shift < 1:
        raise EstimationError(f"shift must be a positive number of periods, got {shift}.")
    cl = cluster or idname
    cols = list(dict.fromkeys([yname, idname, tname, treat, index]))
    cols += [c for c in (exposure, weights, cl) if c is not None and c not in cols]
    df = to_frame(data, cols)
    t = pd.to_numeric(df[tname], errors="coerce")
    idx = pd.to_numeric(df[index], errors="coerce")
    pre = (t < idx).to_numpy()
    if not pre.any():
        raise EstimationError(f"No rows before the index period ('{index}'); no placebo possible.")
    fake = "__spe_placebo_post__"
    sub = df.loc[pre].assign(**{fake: (t[pre] >= idx[pre] - shift).astype(int)})
    res = two_by_two(
        sub, yname=yname, idname=idname, tname=tname, treat=treat, post=fake, model=model,
        exposure=exposure, cluster=cl, weights=weights, conf_level=conf_level,
    )  # fmt: skip
    dropped = int((~pre).sum())
    return replace(
        res,
        method="placebo",
        attrition=(("at_or_after_real_index", dropped), *res.attrition),
        settings=(*res.settings, ("shift", shift), ("index", index)),
    )
