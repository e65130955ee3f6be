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
from dataclasses import dataclass, replace
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
    check_model,
    check_path,
    check_single_cluster,
    checked_frame,
    checked_rows,
    constant_indicator,
    drop_singletons,
    not_binary,
    panel_columns,
    to_frame,
    treat_varies,
)
from spevidence.did._results import (
    DiDResult,
    EventStudyResult,
    alpha_of,
    attrition_frame,
    wald_test,
)
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
    data: Any, spec: _Spec, *, values: list[str], attrition: list[tuple[str, int]]
) -> Dense | None:
    """Dense unit x period matrices for an in-memory frame (None: use the frame path)."""
    check_model(spec.model)
    check_path(spec.path)
    local: list[tuple[str, int]] = []
    dp = dense_from_frame(data, values=values, attrition=local, **spec.columns())
    if dp is None:
        return None
    attrition += local
    if dp.cluster is not None and dp.cluster.max() == dp.cluster.min():
        check_single_cluster(dp.cluster, spec.cluster)
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


def _attrition(attrition: list[tuple[str, int]], fit: Fit) -> pd.DataFrame:
    out = list(attrition)
    out += [(k, v) for k, v in fit.dropped_rows.items() if v]
    return attrition_frame(out)


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
        alpha=alpha_of(conf_level),
        dropped_terms=fit.dropped_terms,
        attrition=_attrition(attrition, fit),
        settings=settings,
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


@dataclass(frozen=True)
class _Spec:
    """The options every two-way estimator shares (``cluster`` resolved to a column)."""

    yname: str
    idname: str
    tname: str
    model: Model
    exposure: str | None
    weights: str | None
    cluster: str
    path: Path

    @property
    def cluster_is_unit(self) -> bool:
        return self.cluster == self.idname

    def columns(self) -> dict[str, Any]:
        """The column options as keywords (engine moments, dense input)."""
        return {
            "yname": self.yname, "idname": self.idname, "tname": self.tname,
            "model": self.model, "exposure": self.exposure, "weights": self.weights,
            "cluster": self.cluster,
        }  # fmt: skip

    def design(self, df: pd.DataFrame, X: np.ndarray, xnames: tuple[str, ...]) -> RowDesign:
        """:func:`_design` of the checked frame ``df`` with regressors ``X``."""
        return _design(
            df, yname=self.yname, idname=self.idname, X=X, xnames=xnames, model=self.model,
            exposure=self.exposure, weights=self.weights, cluster=self.cluster,
        )  # fmt: skip

    def checked_frame(self, data: Any, cols: list[str], attrition: list[Any]) -> pd.DataFrame:
        """:func:`~spevidence.did._inputs.checked_frame` with these options."""
        return checked_frame(
            data, cols, yname=self.yname, idname=self.idname, tname=self.tname,
            model=self.model, exposure=self.exposure, weights=self.weights, attrition=attrition,
        )  # fmt: skip


# ----------------------------------------------------------------------------- 2x2 steps


def _two_by_two_fit(
    data: Any,
    spec: _Spec,
    treat: str,
    post: str,
    covs: list[str],
    attrition: list[tuple[str, int]],
) -> tuple[Fit, RowDesign | Moments, IbisMoments | None]:
    """The 2×2 by the first path that can express it: engine moments (Ibis table, no
    covariates), dense matrices (DataFrame, no covariates), else the checked frame."""
    im = _engine_moments(
        data, path=spec.path, can=not covs,
        xexprs={"post": lambda t: t[post], "treat:post": lambda t: t[treat] * t[post]},
        group_expr=lambda t: t[treat], binary=[treat, post], **spec.columns(),
    )  # fmt: skip
    if im is not None:
        return (*_two_by_two_engine(im, treat, post, spec.model, attrition), im)
    dp = None if covs else _dense_input(data, spec, values=[treat, post], attrition=attrition)
    if dp is not None:
        return (*_two_by_two_dense(dp, spec, treat, post), None)
    cols = panel_columns(
        [spec.yname, spec.idname, spec.tname, treat, post, *covs],
        [spec.exposure, spec.weights, spec.cluster],
    )
    df = spec.checked_frame(data, cols, attrition)
    return (*_two_by_two_frame(df, spec, treat, post, covs), None)


def _two_by_two_engine(
    im: IbisMoments, treat: str, post: str, model: Model, attrition: list[tuple[str, int]]
) -> tuple[Fit, Moments]:
    """The 2×2 on moments computed in the engine."""
    d = im.moments
    if np.unique(im.group).size < 2:
        raise EstimationError(
            f"'{treat}' takes one value in all units; the 2×2 needs treated and comparison units."
        )
    po_obs = d.X[:, :, 0][d.mask]
    if po_obs.min() == po_obs.max():
        raise EstimationError(f"'{post}' is constant in all rows; the 2×2 needs pre and post.")
    attrition += list(im.attrition)
    return fit_moments(d, model), d


def _two_by_two_dense(
    dp: Dense, spec: _Spec, treat: str, post: str
) -> tuple[Fit, RowDesign | Moments]:
    """The 2×2 on dense unit x period matrices."""
    trm, pom = _dense_binary(dp, treat), _dense_binary(dp, post)
    obs_n = (
        dp.observed().sum(axis=1) if dp.mask is not None
        else np.full(dp.n_units, dp.n_periods)
    )  # fmt: skip
    n_tr = dp.unit_sum(trm)
    if np.any((n_tr > 0) & (n_tr < obs_n)):
        raise treat_varies(treat, spec.idname)
    s_tr = float(obs_n[n_tr > 0].sum())
    s_po = float(dp.unit_sum(pom).sum())
    if s_tr == 0 or s_tr == dp.n_rows:
        raise constant_indicator(treat, s_tr, dp.n_rows, "treated and comparison units")
    if s_po == 0 or s_po == dp.n_rows:
        raise constant_indicator(post, s_po, dp.n_rows, "pre and post periods")
    _dense_groups_check(dp, spec.yname, n_tr > 0, spec.model)
    trpo = np.logical_and(trm, pom)
    dd = dense_design(
        dp, yname=spec.yname, X=[pom, trpo], xnames=("post", "treat:post"), model=spec.model,
        exposure=spec.exposure, weights=spec.weights,
    )  # fmt: skip
    return _fit_dense(dd, spec.model, spec.path, cluster_is_unit=spec.cluster_is_unit)


def _two_by_two_frame(
    df: pd.DataFrame, spec: _Spec, treat: str, post: str, covs: list[str]
) -> tuple[Fit, RowDesign]:
    """The 2×2 on the checked frame (:meth:`_Spec.checked_frame`)."""
    tr = as_binary(df, treat)
    po = as_binary(df, post)
    uc = df[UCODE].to_numpy()
    n_tr, n_u = np.bincount(uc, weights=tr), np.bincount(uc)
    if np.any((n_tr > 0) & (n_tr < n_u)):
        raise treat_varies(treat, spec.idname)
    if tr.sum() == 0 or tr.sum() == tr.size:
        raise constant_indicator(treat, tr.sum(), tr.size, "treated and comparison units")
    if po.sum() == 0 or po.sum() == po.size:
        raise constant_indicator(post, po.sum(), po.size, "pre and post periods")
    _outcome_groups_check(df, spec.yname, tr, spec.model)
    cov_cols = [pd.to_numeric(df[c]).to_numpy(dtype=float) for c in covs]
    X = np.column_stack([po, tr * po, *cov_cols])
    d = spec.design(df, X, ("post", "treat:post", *covs))
    fit = _fit(
        d, spec.model, spec.path, covariates=bool(covs), cluster_is_unit=spec.cluster_is_unit
    )
    return fit, d


# ----------------------------------------------------------------------------- TWFE steps


def _twfe_engine(
    im: IbisMoments, dname: str, model: Model, attrition: list[tuple[str, int]]
) -> tuple[Fit, Moments]:
    d = im.moments
    if not np.any(d.X[:, :, 0][d.mask] == 1):
        raise EstimationError(f"'{dname}' is 0 in all rows; no treated observations.")
    attrition += list(im.attrition)
    return fit_moments(d, model), d


def _twfe_dense(dp: Dense, spec: _Spec, dname: str) -> tuple[Fit, RowDesign | Moments]:
    Dm = _dense_binary(dp, dname)
    if not Dm.any():
        raise EstimationError(f"'{dname}' is 0 in all {dp.n_rows} rows; no treated observations.")
    if spec.model == "poisson":
        _dense_groups_check(dp, spec.yname, np.asarray(Dm.any(axis=1)), spec.model)
    dd = dense_design(
        dp, yname=spec.yname, X=[Dm], xnames=(dname,), model=spec.model,
        exposure=spec.exposure, weights=spec.weights,
    )  # fmt: skip
    return _fit_dense(dd, spec.model, spec.path, cluster_is_unit=spec.cluster_is_unit)


def _twfe_frame(df: pd.DataFrame, spec: _Spec, dname: str) -> tuple[Fit, RowDesign]:
    D = as_binary(df, dname)
    if D.sum() == 0:
        raise EstimationError(f"'{dname}' is 0 in all {D.size} rows; no treated observations.")
    uc = df[UCODE].to_numpy()
    ever = (np.bincount(uc, weights=D) > 0)[uc].astype(float)
    _outcome_groups_check(df, spec.yname, ever, spec.model)
    d = spec.design(df, D[:, None], (dname,))
    fit = _fit(d, spec.model, spec.path, covariates=False, cluster_is_unit=spec.cluster_is_unit)
    return fit, d


# ----------------------------------------------------------------------------- event-study steps


def _event_time(
    df: pd.DataFrame, tname: str, index: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Period, event time and has-an-index of each row."""
    t = pd.to_numeric(df[tname], errors="coerce").to_numpy(dtype=float)
    idx = pd.to_numeric(df[index], errors="coerce").to_numpy(dtype=float)
    return t, t - idx, ~np.isnan(idx)


def _treated(df: pd.DataFrame, treat: str | None, has_index: np.ndarray) -> np.ndarray:
    """0/1 per row: ``treat``, or (without it) whether the unit has an index."""
    return as_binary(df, treat) if treat is not None else has_index.astype(float)


def _event_rows(
    df: pd.DataFrame,
    spec: _Spec,
    *,
    index: str,
    treat: str | None,
    window: tuple[int, int],
    attrition: list[tuple[str, int]],
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Rows in the event window, singletons dropped (by event time with ``treat``, else
    by period); returns them, the treated flag and the event time (NaN: no index)."""
    t, e, has_index = _event_time(df, spec.tname, index)
    if np.isnan(t).any():
        raise DataError(
            f"Period column '{spec.tname}' must be numeric (period index) for an event study."
        )
    tr = _treated(df, treat, has_index)
    if tr.sum() == 0:
        raise EstimationError("No treated units (all index periods missing / treat all 0).")
    outside = has_index & ((e < window[0]) | (e > window[1]))
    if outside.any():
        attrition.append(("outside_event_window", int(outside.sum())))
    period_col = "__spe_period__"
    df = df.assign(**{period_col: e if treat is not None else t}).loc[~outside]
    df = drop_singletons(df, spec.idname, period_col, attrition)
    _, e, has_index = _event_time(df, spec.tname, index)
    tr = _treated(df, treat, has_index)
    if not np.any(has_index & (e >= 0) & (tr == 1)):
        raise EstimationError("No treated rows at or after the index period; no post period.")
    _outcome_groups_check(df, spec.yname, tr, spec.model)
    return df, tr, np.where(has_index, e, np.nan)


def _event_terms(
    tr: np.ndarray, ein: np.ndarray, window: tuple[int, int], reference: int
) -> tuple[np.ndarray, tuple[str, ...]]:
    """One indicator per event time in the window (reference and absent ones left out)."""
    ks = [k for k in range(window[0], window[1] + 1) if k != reference]
    X = np.column_stack([(tr * (ein == k)).astype(float) for k in ks])
    present = np.asarray(X.any(axis=0), dtype=bool)
    ks = [k for k, p in zip(ks, present.tolist(), strict=True) if p]
    return X[:, present], tuple(f"event_time::{k}" for k in ks)


def _event_formula(yname: str, model: Model, exposure: str | None, matched: bool) -> str:
    if matched:
        rhs = "sum_k beta_k*treat*1[e=k]  (mu_e: event-time effects)"
        return _lhs(yname, model, exposure).replace("lambda_t", "mu_e").format(rhs)
    return _lhs(yname, model, exposure).format("sum_k beta_k*1[e=k]")


def _checked_window(window: tuple[int, int], reference: int) -> tuple[int, int]:
    lo, hi = int(window[0]), int(window[1])
    if not (lo <= reference <= hi) or lo >= hi:
        raise EstimationError(
            f"window {window} must satisfy low < high and contain the reference {reference}."
        )
    return lo, hi


def _moments_computed_in(im: IbisMoments | None) -> tuple[tuple[str, Any], ...]:
    return (("moments_computed_in", "engine" if im is not None else "python"),)


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
    spec = _Spec(yname, idname, tname, model, exposure, weights, cluster or idname, path)
    attrition: list[tuple[str, int]] = []
    fit, d, im = _two_by_two_fit(data, spec, treat, post, covs, attrition)
    rhs = "gamma*post + beta*treat:post" + (" + covariates" if covs else "")
    settings = dict(
        yname=yname, idname=idname, tname=tname, treat=treat, post=post, model=model,
        exposure=exposure, covariates=tuple(covs), cluster=spec.cluster, weights=weights, path=path,
    )  # fmt: skip
    res: DiDResult = _build(
        DiDResult, method="two_by_two", d=d, fit=fit, model=model, main_term="treat:post",
        yname=yname, formula=_lhs(yname, model, exposure).format(rhs), exposure=exposure,
        attrition=attrition, settings=settings, conf_level=conf_level,
        extra=_moments_computed_in(im),
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
    spec = _Spec(yname, idname, tname, model, exposure, weights, cluster or idname, path)
    attrition: list[tuple[str, int]] = []
    fit: Fit
    d: RowDesign | Moments
    im = _engine_moments(
        data, path=path, can=True, xexprs={dname: lambda t: t[dname]},
        group_expr=lambda t: t[dname] * 0, binary=[dname], **spec.columns(),
    )  # fmt: skip
    dp = None
    if im is None:
        dp = _dense_input(data, spec, values=[dname], attrition=attrition)
    if im is not None:
        fit, d = _twfe_engine(im, dname, model, attrition)
    elif dp is not None:
        fit, d = _twfe_dense(dp, spec, dname)
    else:
        cols = panel_columns([yname, idname, tname, dname], [exposure, weights, spec.cluster])
        fit, d = _twfe_frame(spec.checked_frame(data, cols, attrition), spec, dname)
    settings = dict(
        yname=yname, idname=idname, tname=tname, dname=dname, model=model, exposure=exposure,
        cluster=spec.cluster, weights=weights, path=path,
    )  # fmt: skip
    res: DiDResult = _build(
        DiDResult, method="twfe", d=d, fit=fit, model=model, main_term=dname, yname=yname,
        formula=_lhs(yname, model, exposure).format(f"beta*{dname}"), exposure=exposure,
        attrition=attrition, settings=settings, conf_level=conf_level,
        extra=_moments_computed_in(im),
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
    lo, hi = _checked_window(window, reference)
    spec = _Spec(yname, idname, tname, model, exposure, weights, cluster or idname, path)
    cols = panel_columns([yname, idname, tname], [index, treat, exposure, weights, spec.cluster])
    attrition: list[tuple[str, int]] = []
    # a missing index is meaningful (never treated) only without `treat`
    df = checked_rows(
        data, cols, yname=yname, model=model, exposure=exposure, weights=weights,
        attrition=attrition, keep_missing=index if treat is None else None,
    )  # fmt: skip
    df, tr, ein = _event_rows(
        df, spec, index=index, treat=treat, window=(lo, hi), attrition=attrition
    )
    X, xnames = _event_terms(tr, ein, (lo, hi), reference)
    d = spec.design(df, X, xnames)
    fit = _fit(d, model, path, covariates=False, cluster_is_unit=spec.cluster_is_unit)
    kept_k = tuple(int(n.split("::")[1]) for n in fit.names)
    pre = [i for i, k in enumerate(kept_k) if k < 0]
    pretrend = wald_test(fit.coef[pre], fit.vcov[np.ix_(pre, pre)])
    main = next((n for n, k in zip(fit.names, kept_k, strict=True) if k >= 0), fit.names[0])
    settings = dict(
        yname=yname, idname=idname, tname=tname, index=index, window=(lo, hi),
        reference=reference, model=model, exposure=exposure, cluster=spec.cluster,
        weights=weights, treat=treat, path=path,
    )  # fmt: skip
    res: EventStudyResult = _build(
        EventStudyResult, method="event_study", d=d, fit=fit, model=model, main_term=main,
        yname=yname, formula=_event_formula(yname, model, exposure, matched=treat is not None),
        exposure=exposure, attrition=attrition, settings=settings, conf_level=conf_level,
        event_times=kept_k, reference=reference, pretrend=pretrend,
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
    df = to_frame(
        data, panel_columns([yname, idname, tname, treat, index], [exposure, weights, cl])
    )
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
        attrition=pd.concat(
            [attrition_frame([("at_or_after_real_index", dropped)]), res.attrition],
            ignore_index=True,
        ),
        settings={**res.settings, "shift": shift, "index": index},
    )
