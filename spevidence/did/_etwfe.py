"""Wooldridge's extended two-way fixed effects (ETWFE) for staggered adoption.

The model (Wooldridge 2021, 2023), as R ``etwfe`` fits it by default (cohort
and period fixed effects, one coefficient per treated cohort x period cell)::

    linear:  E[y_it] = a_g + b_t + sum_{(h,s) in S} tau_hs 1{g = h, t = s}
    poisson: E[y_it] = e_it * exp(a_g + b_t + sum tau_hs 1{g = h, t = s})

With ``control="notyet"`` the cells ``S`` are the post-treatment cells
``t >= g`` (not-yet and never-treated observations are the controls); with
``control="never"`` they are every treated-cohort period except ``g - 1``.
Aggregations (R ``etwfe::emfx``) average the cell effects on the response
scale over treated observations, with delta-method standard errors.

Because every regressor is constant within a cohort x period cell, the fit
needs only the cell sums, and the unit-clustered variance only per-cohort
``T x T`` cross-products of outcome and exposure (DESIGN.md section 6), so
this runs in seconds on national panels. The result equals the row-level
``pyfixest`` fit (tests). For the same reason Poisson separation (cells with no
events whose maximum likelihood estimate does not exist) is a property of cells and
is found exactly from the cell sums (``_support``).

References
----------
Wooldridge, J. M. (2021). Two-way fixed effects, the two-way Mundlak
regression, and difference-in-differences estimators. SSRN 3906345.
Wooldridge, J. M. (2023). Simple approaches to nonlinear
difference-in-differences with panel data. *The Econometrics Journal* 26(3), C31-C66.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from spevidence._version import __version__
from spevidence.did._ibis_moments import PivotSpec, etwfe_moments, is_ibis_table, pivot_units
from spevidence.did._inputs import (
    EARLY_UNITS,
    UNBALANCED_UNITS,
    panel_frame,
    staggered_repeated_pairs,
    varies_within_units,
)
from spevidence.did._results import ETWFE, Family, fmt_number
from spevidence.errors import DataError, EstimationError

FloatArray = NDArray[np.float64]
# status of a treated cell in a Poisson fit (see _support)
ESTIMATED, NO_EVENTS, NOT_IDENTIFIED, NO_COMPARISON = 0, 1, 2, 3


@dataclass(frozen=True)
class _Moments:
    """Per-cohort moments of a balanced panel (cohort index c, period index t)."""

    times: FloatArray
    cohorts: FloatArray  # finite cohorts then inf (never) last when present
    count: NDArray[np.int64]  # units per cohort
    ysum: FloatArray  # C x T
    esum: FloatArray  # C x T
    Myy: FloatArray  # C x T x T
    Mye: FloatArray  # C x T x T  (sum y e')
    Mee: FloatArray  # C x T x T
    Ucl_y: FloatArray | None  # n_cl x C x T
    Ucl_e: FloatArray | None
    n_clusters: int


# ------------------------------------------------------------------------------- prepare


def _prepare(
    data: Any,
    *,
    yname: str,
    idname: str,
    tname: str,
    gname: str,
    exposure: str | None,
    cluster: str | None,
) -> tuple[_Moments, int, pd.DataFrame]:
    needed = list(dict.fromkeys(c for c in (yname, idname, tname, gname, exposure, cluster) if c))
    data = panel_frame(data, needed, "etwfe")
    df = data[needed].copy()
    attr: list[dict[str, Any]] = []
    df[gname] = pd.to_numeric(df[gname], errors="coerce").astype(float).fillna(0.0)
    na = df[[c for c in needed if c != gname]].isna().any(axis=1)
    if na.any():
        attr.append(
            {
                "reason": "missing outcome, period, unit, exposure or cluster",
                "rows": int(na.sum()),
                "units": 0,
            }
        )
        df = df.loc[~na]
    if df.duplicated([idname, tname]).any():
        k = int(df.duplicated([idname, tname]).sum())
        raise staggered_repeated_pairs("etwfe", k, idname, tname)
    for col, what in ((gname, "treatment cohort"), (cluster, "cluster")):
        if col is None:
            continue
        nun = df.groupby(idname, sort=False)[col].nunique()
        if (nun > 1).any():
            raise varies_within_units("etwfe", col, what, int((nun > 1).sum()))
    if exposure is not None and (df[exposure] <= 0).any():
        k = int((df[exposure] <= 0).sum())
        attr.append({"reason": "exposure not positive", "rows": k, "units": 0})
        df = df.loc[df[exposure] > 0]
    tmin, tmax = float(df[tname].min()), float(df[tname].max())
    g = df[gname].to_numpy(dtype=float)
    df[gname] = np.where((g == 0) | (g > tmax), np.inf, g)
    early = df[gname] <= tmin
    if early.any():
        attr.append(
            {
                "reason": EARLY_UNITS,
                "rows": int(early.sum()),
                "units": int(df.loc[early, idname].nunique()),
            }
        )
        df = df.loc[~early]
    if not np.isinf(df[gname]).any():
        latest = float(df[gname].max())
        cut = df[tname].astype(float) >= latest
        attr.append(
            {
                "reason": "no never-treated units: periods from the last cohort on dropped",
                "rows": int(cut.sum()),
                "units": 0,
            }
        )
        df = df.loc[~cut]
        df[gname] = np.where(df[gname] == latest, np.inf, df[gname])
    times = np.sort(pd.unique(df[tname].astype(float)))
    cnt = df.groupby(idname, sort=False)[tname].transform("size")
    unb = cnt != len(times)
    if unb.any():
        attr.append(
            {
                "reason": UNBALANCED_UNITS,
                "rows": int(unb.sum()),
                "units": int(df.loc[unb, idname].nunique()),
            }
        )
        df = df.loc[~unb]
    if df.empty or not np.isfinite(df[gname]).any():
        raise EstimationError(
            "etwfe: no treated units left after cleaning; check gname and the panel."
        )
    df = df.sort_values([idname, tname], kind="stable")
    T = len(times)
    n = len(df) // T
    Y = df[yname].to_numpy(dtype=float).reshape(n, T)
    E = np.ones_like(Y) if exposure is None else df[exposure].to_numpy(dtype=float).reshape(n, T)
    first = df.iloc[::T]
    G = first[gname].to_numpy(dtype=float)
    cl = None
    if cluster is not None and cluster != idname:
        cl = pd.factorize(first[cluster], sort=True)[0].astype(np.int64)
    mom = _moments(Y, E, G, times, cl)
    return mom, n, pd.DataFrame(attr, columns=["reason", "rows", "units"])


def _moments(
    Y: FloatArray, E: FloatArray, G: FloatArray, times: FloatArray, cl: NDArray[np.int64] | None
) -> _Moments:
    cohorts = np.unique(G)
    code = np.searchsorted(cohorts, G)
    C, T = len(cohorts), Y.shape[1]
    count = np.bincount(code, minlength=C).astype(np.int64)
    ysum = np.zeros((C, T))
    esum = np.zeros((C, T))
    Myy = np.zeros((C, T, T))
    Mye = np.zeros((C, T, T))
    Mee = np.zeros((C, T, T))
    for c in range(C):
        m = code == c
        y, e = Y[m], E[m]
        ysum[c], esum[c] = y.sum(axis=0), e.sum(axis=0)
        Myy[c], Mye[c], Mee[c] = y.T @ y, y.T @ e, e.T @ e
    Uy = Ue = None
    ncl = len(G)
    if cl is not None:
        ncl = int(cl.max()) + 1
        Uy = np.zeros((ncl, C, T))
        Ue = np.zeros((ncl, C, T))
        np.add.at(Uy, (cl, code), Y)
        np.add.at(Ue, (cl, code), E)
    return _Moments(times, cohorts, count, ysum, esum, Myy, Mye, Mee, Uy, Ue, ncl)


# ------------------------------------------------------------------------------- fit


def etwfe(
    data: Any,
    *,
    yname: str,
    idname: str,
    tname: str,
    gname: str,
    family: Family = "linear",
    exposure: str | None = None,
    xvar: str | None = None,
    cluster: str | None = None,
    control: Literal["notyet", "never"] = "notyet",
    alpha: float = 0.05,
) -> ETWFE:
    """Wooldridge's extended two-way fixed effects estimator (linear or Poisson).

    Parameters
    ----------
    data : pandas.DataFrame
        Balanced long panel, one row per unit and period.
    yname, idname, tname, gname : str
        Outcome, unit id, period and cohort (first treated period; ``0`` or
        missing = never treated) columns.
    family : {"linear", "poisson"}
        ``poisson`` for counts (GP appointments, A&E attendances): effects are
        reported on the count scale, the natural model for count outcomes.
    exposure : str, optional
        Poisson only: exposure (e.g. days registered), entering as an offset
        ``log(exposure)``.
    xvar : str, optional
        Heterogeneity covariate of R ``etwfe``; not supported yet.
    cluster : str, optional
        Cluster column (default: the unit id). CRV1 small-sample factors as
        ``fixest``/``pyfixest``.
    control : {"notyet", "never"}
        Not-yet-treated (``etwfe`` default) or never-treated comparison.
    alpha : float
        1 - confidence level.

    Returns
    -------
    ETWFE

    Notes
    -----
    Poisson with rare outcomes or small cohorts: a cohort x period cell with no events
    can make the maximum likelihood estimate not exist (separation). Such cells are
    found exactly and left out of the fit, as pyfixest's ``fe`` + ``ir`` separation
    checks drop the rows (estimates and SEs equal pyfixest's); ``ETWFE.separation``
    counts them by reason and ``ETWFE.status`` marks each treated cell. The effects
    of treated cells at the boundary are the limits of the estimate and stay in the
    aggregations: a treated cell with no events has coefficient ``-inf`` and effect 0
    minus its counterfactual mean; a cell whose cohort (or period) has no comparison
    events has counterfactual 0 and effect equal to its observed mean. Leaving them
    out would select cells on the outcome. When no cell after treatment has a
    finite estimate the error says why and what to change.

    References
    ----------
    Wooldridge, J. M. (2021), SSRN 3906345; Wooldridge, J. M. (2023),
    *The Econometrics Journal* 26(3), C31-C66. Santos Silva, J. M. C. and Tenreyro, S.
    (2010). On the existence of the maximum likelihood estimates in Poisson regression.
    *Economics Letters* 107(2), 310-312. Correia, S., Guimaraes, P. and Zylkin, T.
    (2021). Verifying the existence of maximum likelihood estimates for generalized
    linear models. arXiv:1903.01633.
    """
    _checked_options(family=family, control=control, xvar=xvar, exposure=exposure)
    mom, attr = _cell_moments(
        data, yname=yname, idname=idname, tname=tname, gname=gname, exposure=exposure,
        cluster=cluster,
    )  # fmt: skip
    if family == "poisson" and (mom.ysum < 0).any():
        raise DataError(f"etwfe(family='poisson'): outcome {yname!r} has negative values.")
    settings = {
        "yname": yname, "idname": idname, "tname": tname, "gname": gname, "family": family,
        "exposure": exposure, "cluster": cluster, "control": control, "alpha": alpha,
        "spevidence_version": __version__,
    }  # fmt: skip
    return _fit(mom, family, control, alpha, settings, attr)


def _checked_options(*, family: str, control: str, xvar: str | None, exposure: str | None) -> None:
    if family not in ("linear", "poisson"):
        raise EstimationError(f"family={family!r}: use 'linear' or 'poisson'.")
    if control not in ("notyet", "never"):
        raise EstimationError(f"control={control!r}: use 'notyet' or 'never'.")
    if xvar is not None:
        raise EstimationError("etwfe(xvar=...) is not supported yet; fit subgroups separately.")
    if exposure is not None and family != "poisson":
        raise EstimationError("etwfe(exposure=...) needs family='poisson' (exposure is an offset).")


def _cell_moments(
    data: Any,
    *,
    yname: str,
    idname: str,
    tname: str,
    gname: str,
    exposure: str | None,
    cluster: str | None,
) -> tuple[_Moments, pd.DataFrame]:
    """The per-cohort moments and the attrition: computed in the engine for an Ibis
    table, else from the cleaned pandas panel (:func:`_prepare`)."""
    if not is_ibis_table(data):
        mom, _, attr = _prepare(
            data, yname=yname, idname=idname, tname=tname, gname=gname, exposure=exposure,
            cluster=cluster,
        )  # fmt: skip
        return mom, attr
    clustered = cluster is not None and cluster != idname
    ep = pivot_units(
        data,
        PivotSpec(
            yname=yname, idname=idname, tname=tname, gname=gname, weights=None,
            cluster=cluster if clustered else None, exposure=exposure, anticipation=0,
            control="never",
        ),
    )  # fmt: skip
    em = etwfe_moments(ep, exposure=exposure is not None, clustered=clustered)
    return _Moments(times=ep.times, **em), ep.attrition


def _design(mom: _Moments, control: str) -> tuple[FloatArray, list[tuple[int, int]], list[str]]:
    """Cell design X (C*T x P): period FE, cohort FE (first dropped), interactions."""
    times, cohorts = mom.times, mom.cohorts
    C, T = len(cohorts), len(times)
    cells: list[tuple[int, int]] = []
    for c, g in enumerate(cohorts):
        if not np.isfinite(g):
            continue
        for ti, t in enumerate(times):
            if control == "notyet":
                if t >= g:
                    cells.append((c, ti))
            else:
                pre = np.flatnonzero(times < g)
                if len(pre) and ti != pre[-1]:
                    cells.append((c, ti))
    P = T + (C - 1) + len(cells)
    X = np.zeros((C * T, P))
    names = [f"time={fmt_number(t)}" for t in times] + [
        f"cohort={fmt_number(g)}" for g in cohorts[1:]
    ]
    for c in range(C):
        for ti in range(T):
            r = c * T + ti
            X[r, ti] = 1.0
            if c > 0:
                X[r, T + c - 1] = 1.0
    for k, (c, ti) in enumerate(cells):
        X[c * T + ti, T + C - 1 + k] = 1.0
        names.append(f"ATT(g={fmt_number(cohorts[c])}, t={fmt_number(times[ti])})")
    return X, cells, names


def _fit(
    mom: _Moments,
    family: Family,
    control: str,
    alpha: float,
    settings: dict[str, Any],
    attr: pd.DataFrame,
) -> ETWFE:
    C, T = len(mom.cohorts), len(mom.times)
    X_all, cells, names_all = _design(mom, control)
    if not cells:
        raise EstimationError("etwfe: no treated cohort x period cells to estimate.")
    K_all = len(cells)
    sup = _support(mom, cells, family)
    _check_support(sup, mom, cells, settings["yname"])
    fit = sup.fit.reshape(-1)
    cols = _columns(sup, cells, C, T)
    X = X_all[:, cols]
    names = [names_all[j] for j in cols]
    P = X.shape[1]
    nct = np.repeat(mom.count, T).astype(float)  # obs per cell
    Ysum = mom.ysum.reshape(-1)
    Esum = mom.esum.reshape(-1)
    beta, mu, bread = _solve(X, nct, Ysum, Esum, fit, family)
    meat, G = _meat(mom, sup, X, mu, fit)
    n_fit = int(mom.count[sup.fit.any(axis=1)].sum())
    N = int((nct * fit).sum())
    adj = (G / (G - 1)) * ((N - 1) / (N - P))
    V = adj * bread @ meat @ bread
    # cell effects on the response scale and their Jacobian (parameters in the fit)
    rows = np.array([c * T + ti for c, ti in cells])
    w_cell = nct[rows]
    st = sup.status
    own = fit[rows]  # treated cells fitted with their own coefficient
    n_own = int(own.sum())
    tau_col = np.full(K_all, -1)
    tau_col[own] = P - n_own + np.arange(n_own)
    est = st == ESTIMATED
    coef = np.full(K_all, np.nan)
    coef_se = np.full(K_all, np.nan)
    coef[est] = beta[tau_col[est]]
    coef_se[est] = np.sqrt(np.clip(np.diag(V)[tau_col[est]], 0.0, None))
    eff = np.full(K_all, np.nan)
    jac = np.zeros((K_all, P))
    if family == "linear":
        eff = coef.copy()
        jac[np.arange(K_all), tau_col] = 1.0
    else:
        coef[st == NO_EVENTS] = -np.inf
        ebar = Esum[rows] / nct[rows]
        use = st != NOT_IDENTIFIED
        Xfe = X[rows].copy()
        Xfe[:, P - n_own :] = 0.0  # the cell's own coefficient is not in the counterfactual
        with np.errstate(over="ignore"):
            base = np.where(  # counterfactual mean per unit of exposure
                (st == ESTIMATED) | (st == NO_EVENTS), np.exp(Xfe @ beta), 0.0
            )
        full = np.where(own, mu[rows], 0.0)  # fitted = observed mean (0 with no events)
        eff = np.where(use, ebar * (full - base), np.nan)
        jac = np.where(use, ebar * (full - base), 0.0)[:, None] * Xfe
        k = np.flatnonzero(own)
        jac[k, tau_col[k]] = ebar[k] * full[k]
    se_eff = np.sqrt(np.clip(np.einsum("kp,pq,kq->k", jac, V, jac), 0.0, None))
    se_eff[st == 2] = np.nan
    return ETWFE(
        family=family,
        control="never" if control == "never" else "notyet",
        groups=np.array([mom.cohorts[c] for c, _ in cells]),
        times=np.array([mom.times[ti] for _, ti in cells]),
        coef=coef,
        coef_se=coef_se,
        att=np.asarray(eff, dtype=float),
        se=se_eff,
        n_cell=w_cell.astype(np.int64),
        status=np.array([_STATUS[s] for s in st], dtype=object),
        params=np.asarray(beta, dtype=float),
        param_names=tuple(names),
        vcov=V,
        n_units=n_fit,
        n_obs=N,
        n_clusters=G,
        alpha=alpha,
        attrition=attr,
        separation=sup.table,
        settings=settings,
        _cells=(np.asarray(w_cell, float), np.asarray(eff, float), np.asarray(jac, float)),
    )


def _solve(
    X: FloatArray,
    nct: FloatArray,
    Ysum: FloatArray,
    Esum: FloatArray,
    fit: NDArray[np.bool_],
    family: Family,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Coefficients, fitted mean per cell (per unit of exposure) and the bread
    (inverse Hessian) of the cell-sum fit: least squares, or Poisson on the cells in
    the fit."""
    if family == "linear":
        H = X.T @ (nct[:, None] * X)
        beta = np.linalg.solve(H, X.T @ Ysum)
        mu = X @ beta  # fitted value per cell (per unit of exposure = 1)
        return beta, mu, np.linalg.inv(H)
    beta = _poisson_newton(X[fit], Ysum[fit], Esum[fit], _start(X[fit], Ysum[fit], Esum[fit]))
    mu = np.exp(X @ beta)
    mu[~fit] = 0.0
    H = X.T @ ((Esum * mu)[:, None] * X)
    return beta, mu, np.linalg.inv(H)


def _meat(
    mom: _Moments, sup: _Support, X: FloatArray, mu: FloatArray, fit: NDArray[np.bool_]
) -> tuple[FloatArray, int]:
    """Cluster-robust meat from cohort moments, ``r_i = y_i - e_i * mu_c`` over the
    cells in the fit, and the number of clusters."""
    C, T = len(mom.cohorts), len(mom.times)
    P = X.shape[1]
    mu_c = mu.reshape(C, T)
    Xc = (X * fit[:, None]).reshape(C, T, P)
    if mom.Ucl_y is not None and mom.Ucl_e is not None:
        R = mom.Ucl_y - mom.Ucl_e * mu_c[None]  # n_cl x C x T
        S = np.einsum("lct,ctp->lp", R, Xc)
        meat = S.T @ S
        n_cl = int(((mom.Ucl_e * sup.fit[None]).sum(axis=(1, 2)) > 0).sum())
    else:
        D = mu_c[:, None, :]  # broadcast over columns: (Mye D)[a, b] = Mye[a, b] mu[b]
        RR = (
            mom.Myy
            - mom.Mye * D
            - np.transpose(mom.Mye * D, (0, 2, 1))
            + mom.Mee * mu_c[:, :, None] * mu_c[:, None, :]
        )
        meat = sum((Xc[c].T @ RR[c] @ Xc[c] for c in range(C)), np.zeros((P, P)))
        n_cl = int(mom.count[sup.fit.any(axis=1)].sum())
    return meat, n_cl


_STATUS = {
    ESTIMATED: "estimated",
    NO_EVENTS: "no events",
    NOT_IDENTIFIED: "not identified",
    NO_COMPARISON: "no comparison events",
}


def _columns(sup: _Support, cells: list[tuple[int, int]], C: int, T: int) -> list[int]:
    """Columns of the full design kept: periods and cohorts with comparison cells in the
    fit (the first such cohort is the reference) and the own coefficients of the treated
    cells in the fit."""
    periods = np.flatnonzero(sup.comparison.any(axis=0))
    cohorts = np.flatnonzero(sup.comparison.any(axis=1))
    cols = [int(t) for t in periods]
    cols += [T + int(c) - 1 for c in cohorts[1:]]
    cols += [T + C - 1 + k for k, (c, ti) in enumerate(cells) if sup.fit[c, ti]]
    return cols


def _start(X: FloatArray, Y: FloatArray, E: FloatArray) -> FloatArray:
    """Starting values: weighted least squares of log((y + 0.1) / e), as R ``glm``'s
    Poisson ``mustart = y + 0.1``; the treated cells' own coefficients start at their
    saturated values."""
    w = Y + 0.1
    return np.asarray(
        np.linalg.solve(X.T @ (w[:, None] * X), X.T @ (w * np.log(w / E))), dtype=np.float64
    )


def _poisson_newton(
    X: FloatArray, Y: FloatArray, E: FloatArray, beta: FloatArray, maxiter: int = 100
) -> FloatArray:
    """Poisson maximum likelihood on cell sums: Newton steps, capped at 10 on the log
    scale and halved until the log-likelihood does not fall. Stops after a full step
    below 1e-10 (Newton converges quadratically, so the error left is of the order of
    its square)."""

    def loglik(b: FloatArray) -> float:
        eta = X @ b
        with np.errstate(over="ignore", invalid="ignore"):
            return float(Y @ eta - E @ np.exp(eta))

    ll = loglik(beta)
    for _ in range(maxiter):
        mu = E * np.exp(X @ beta)
        step = np.linalg.solve(X.T @ (mu[:, None] * X), X.T @ (Y - mu))
        size = min(1.0, 10.0 / max(float(np.max(np.abs(step))), 1e-300))  # at most e^10
        while True:
            new = beta + size * step
            ll_new = loglik(new)
            if np.isfinite(ll_new) and ll_new >= ll - 1e-12 * (1.0 + abs(ll)):
                break
            size /= 2
            if size < 1e-10:
                raise EstimationError(
                    "etwfe(family='poisson'): the likelihood could not be increased "
                    "(step halving failed); please report this with the cohort sizes."
                )
        beta, ll = new, ll_new
        if size == 1.0 and np.max(np.abs(step)) < 1e-10:
            return beta
    raise EstimationError(
        f"etwfe(family='poisson') did not converge in {maxiter} Newton steps; "
        "please report this with the cohort sizes."
    )


def _check_support(sup: _Support, mom: _Moments, cells: list[tuple[int, int]], yname: str) -> None:
    """A clear error when no post-treatment cell can be estimated."""
    post = np.array([mom.times[ti] >= mom.cohorts[c] for c, ti in cells])
    if (sup.status[post] == ESTIMATED).any():
        return
    k = int(post.sum())
    zero = int((sup.status[post] == NO_EVENTS).sum())
    noid = k - zero
    raise EstimationError(
        f"etwfe(family='poisson'): no effect of treatment on {yname!r} can be estimated: "
        f"of the {k} treated cohort x period cells after treatment, {zero} have no "
        f"events (log rate ratio -infinity) and {noid} have no comparison cells with "
        "events in their cohort or period (the Poisson maximum likelihood estimate does "
        "not exist: separation). Use longer periods (period: quarter), fewer and larger "
        "cohorts, more people or a more common outcome, or family='linear'."
    )


# ------------------------------------------------------------------------------- separation

_NO_EVENTS = "treated cell with no events"
_NO_COMPARISON = "treated cell whose cohort or period has no comparison events"
_NOT_IDENTIFIED = "treated cell without a counterfactual"
_SEPARATED = "comparison cell with no events that separates the fit"
_DISCONNECTED = "comparison cell not linked to the main comparison group"
_REASONS = {
    _NO_EVENTS: (
        "its log rate ratio is -infinity (separation): left out of the fit; its count-scale "
        "effect, 0 minus the counterfactual mean, is in the aggregations",
        True,
    ),
    _NO_COMPARISON: (
        "every comparison cell of its cohort or period has no events, so that effect is "
        "-infinity and the counterfactual mean 0 (separation): its effect is its observed "
        "mean (fitted by its own coefficient when it has events), in the aggregations",
        True,
    ),
    _NOT_IDENTIFIED: (
        "its cohort or period is in a comparison group not linked to the rest: no "
        "counterfactual, left out of the fit and the aggregations",
        False,
    ),
    _SEPARATED: (
        "its cohort and period fixed effects would be infinite (separation): left out of the fit",
        False,
    ),
    _DISCONNECTED: (
        "not linked by comparison cells with events to the cohort and period effects of the "
        "rest: left out of the fit",
        False,
    ),
}


@dataclass(frozen=True)
class _Support:
    """Which cohort x period cells a Poisson fit can use (all of them for the linear model).

    ``comparison`` (C x T) marks the comparison cells in the fit, ``fit`` every cell in
    it (those and the treated cells with a coefficient); ``status`` gives each treated
    cell ESTIMATED, NO_EVENTS (effect 0 minus the counterfactual), NO_COMPARISON
    (counterfactual 0, effect the observed mean) or NOT_IDENTIFIED; ``table`` counts
    the cells and rows by reason; ``separated`` marks the cells whose maximum likelihood
    estimate does not exist (every treated cell with no events, and the separated
    comparison cells): the rows a row-level separation check (pyfixest
    ``separation_check=["fe", "ir"]``) drops.
    """

    comparison: NDArray[np.bool_]
    fit: NDArray[np.bool_]
    status: NDArray[np.int8]
    table: pd.DataFrame
    separated: NDArray[np.bool_]


def _support(mom: _Moments, cells: list[tuple[int, int]], family: Family) -> _Support:
    """Find the cells whose Poisson MLE does not exist (separation), as fixest/pyfixest do.

    Every regressor is constant within a cohort x period cell, so separation is a
    property of cells: a cell with no events is separated when some combination of the
    parameters can push its mean to zero while leaving every cell with events unchanged
    (Santos Silva and Tenreyro 2010; Correia, Guimaraes and Zylkin 2021, whose iterative
    rectifier pyfixest and ppmlhdfe run on the rows). A treated cell has its own
    coefficient, so with no events it is always separated and says nothing about the
    other parameters. The comparison cells follow a two-way (cohort + period) log-linear
    model on an incomplete table: cells with events tie their cohort and period into
    components whose effects move together, each zero cell asks its cohort's component
    to sit at or above its period's, and a zero cell is separated exactly when its two
    components are not in one strongly connected component of those constraints (else
    the constraints force equality). Comparison cells outside the connected part with
    the most events are left out too (their effects cannot be compared with the rest),
    and the check repeats until nothing changes.

    A treated cell whose cohort and period are in that part has a counterfactual; one
    whose cohort or period lost every comparison cell to separation has the limit
    counterfactual 0 (that effect runs to -infinity); any other has none.
    """
    C, T = mom.ysum.shape
    K = len(cells)
    if family == "linear":
        none = np.zeros((C, T), bool)
        return _Support(~none, ~none, np.zeros(K, np.int8), _empty_support(), none)
    treated = np.zeros((C, T), bool)
    for c, ti in cells:
        treated[c, ti] = True
    pos = mom.ysum > 0
    comp = ~treated  # comparison cells still in the fit
    separated = np.zeros((C, T), bool)
    loose = np.zeros((C, T), bool)

    def components(mask: NDArray[np.bool_]) -> tuple[int, NDArray[np.int32]]:
        r, t = np.nonzero(mask)
        g = coo_matrix((np.ones(len(r)), (r, C + t)), shape=(C + T, C + T))
        n, lab = connected_components(g, directed=False)
        return int(n), lab

    while True:
        n, lab = components(comp & pos)
        zr, zt = np.nonzero(comp & ~pos)
        if len(zr):
            a, b = lab[zr], lab[C + zt]
            d = coo_matrix((np.ones(len(a)), (a, b)), shape=(n, n))
            _, scc = connected_components(d, directed=True, connection="strong")
            sep = scc[a] != scc[b]
            if sep.any():
                separated[zr[sep], zt[sep]] = True
                comp[zr[sep], zt[sep]] = False
                continue
        n, lab = components(comp)
        events = np.bincount(lab[:C], weights=(mom.ysum * comp).sum(axis=1), minlength=n)
        main = int(np.argmax(events))
        inside = (lab[:C] == main)[:, None] & (lab[C:] == main)[None, :]
        out = comp & ~inside
        if not out.any():
            break
        loose |= out
        comp &= ~out
    # nodes (cohorts, then periods) in the main part, and those whose every comparison
    # cell was separated: their effect runs to -infinity
    had = np.concatenate([(~treated).any(axis=1), (~treated).any(axis=0)])
    kept = np.concatenate([comp.any(axis=1), comp.any(axis=0)])
    unseparated = ~treated & ~separated
    left = np.concatenate([unseparated.any(axis=1), unseparated.any(axis=0)])
    in_main = kept & (lab == main)
    at_minus_inf = had & ~left
    status = np.zeros(K, np.int8)
    for k, (c, ti) in enumerate(cells):
        ends = (c, C + ti)
        if not all(in_main[e] or at_minus_inf[e] for e in ends):
            status[k] = NOT_IDENTIFIED
        elif any(at_minus_inf[e] for e in ends):
            status[k] = NO_COMPARISON
        elif not pos[c, ti]:
            status[k] = NO_EVENTS
    fit = comp.copy()
    for k, (c, ti) in enumerate(cells):
        fit[c, ti] = pos[c, ti] and status[k] in (ESTIMATED, NO_COMPARISON)
    rows_per_cell = np.repeat(mom.count[:, None], T, axis=1)
    tr = np.zeros((C, T), np.int8) - 1
    for k, (c, ti) in enumerate(cells):
        tr[c, ti] = status[k]
    masks = {
        _NO_EVENTS: tr == NO_EVENTS,
        _NO_COMPARISON: tr == NO_COMPARISON,
        _NOT_IDENTIFIED: tr == NOT_IDENTIFIED,
        _SEPARATED: separated,
        _DISCONNECTED: loose,
    }
    table = pd.DataFrame(
        [
            {
                "reason": reason,
                "cells": int(m.sum()),
                "rows": int(rows_per_cell[m].sum()),
                "aggregated": _REASONS[reason][1],
                "note": _REASONS[reason][0],
            }
            for reason, m in masks.items()
            if m.any()
        ],
        columns=_SUPPORT_COLUMNS,
    )
    return _Support(comp, fit, status, table, separated | ((tr >= 0) & ~pos))


_SUPPORT_COLUMNS = ["reason", "cells", "rows", "aggregated", "note"]


def _empty_support() -> pd.DataFrame:
    return pd.DataFrame(columns=_SUPPORT_COLUMNS)


__all__ = ["ETWFE", "etwfe"]
