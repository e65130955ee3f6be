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
``pyfixest`` fit (tests).

References
----------
Wooldridge, J. M. (2021). Two-way fixed effects, the two-way Mundlak
regression, and difference-in-differences estimators. SSRN 3906345.
Wooldridge, J. M. (2023). Simple approaches to nonlinear
difference-in-differences with panel data. *The Econometrics Journal* 26(3), C31-C66.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy import stats

from spevidence._version import __version__
from spevidence.did._staggered import ATTAggregate, _fmt, _row
from spevidence.did._staggered_engine import etwfe_moments, is_ibis_table, pivot_units
from spevidence.errors import DataError, EstimationError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

Family = Literal["linear", "poisson"]
EtwfeKind = Literal["simple", "dynamic", "event", "group", "calendar"]
FloatArray = NDArray[np.float64]


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


@dataclass(frozen=True)
class ETWFE:
    """Extended TWFE fit: cell coefficients, cell ATTs and their covariance.

    Attributes
    ----------
    coef : numpy.ndarray
        Interaction coefficients ``tau_gt`` (log scale for Poisson).
    vcov : numpy.ndarray
        Cluster-robust covariance of all parameters (CRV1, as pyfixest/fixest).
    groups, times : numpy.ndarray
        Cohort and period of each interaction cell.
    att, se : numpy.ndarray
        Cell ATT on the response scale and its delta-method SE.
    """

    family: Family
    control: Literal["notyet", "never"]
    groups: FloatArray
    times: FloatArray
    coef: FloatArray
    coef_se: FloatArray
    att: FloatArray
    se: FloatArray
    n_cell: NDArray[np.int64]
    params: FloatArray
    param_names: tuple[str, ...]
    vcov: FloatArray
    n_units: int
    n_obs: int
    n_clusters: int
    alpha: float
    attrition: pd.DataFrame
    settings: dict[str, Any]
    _cells: tuple[FloatArray, FloatArray, FloatArray] = field(repr=False, compare=False)

    def tidy(self) -> pd.DataFrame:
        """One row per treated cohort x period cell (ATT on the response scale)."""
        z = stats.norm.ppf(1 - self.alpha / 2)
        rows = []
        for g, t, a, s, b, bs, nn in zip(
            self.groups,
            self.times,
            self.att,
            self.se,
            self.coef,
            self.coef_se,
            self.n_cell,
            strict=True,
        ):
            rows.append(
                _row(f"ATT(g={_fmt(g)}, t={_fmt(t)})", a, s, z, int(nn))
                | {"group": g, "time": t, "event": t - g, "coef": b, "coef_se": bs}
            )
        return pd.DataFrame(rows)

    def glance(self) -> pd.DataFrame:
        """One-row summary."""
        return pd.DataFrame(
            [
                {
                    "estimator": "etwfe",
                    "family": self.family,
                    "control": self.control,
                    "n_units": self.n_units,
                    "n_obs": self.n_obs,
                    "n_clusters": self.n_clusters,
                    "n_cells": len(self.coef),
                }
            ]
        )

    def summary(self) -> str:
        """Plain-text summary."""
        head = (
            f"Extended TWFE ({self.family}, control={self.control}): {self.n_units} units, "
            f"{self.n_obs} observations, {self.n_clusters} clusters"
        )
        return head + "\n" + self.tidy().to_string(index=False)

    def plot(self) -> Figure:
        """Event-study figure of the dynamic aggregation."""
        return self.aggregate("dynamic").plot()

    def aggregate(self, kind: EtwfeKind = "simple") -> ATTAggregate:
        """Average the cell ATTs over treated observations (R ``etwfe::emfx``).

        ``simple``, ``group`` and ``calendar`` use post-treatment cells; ``dynamic``
        (alias ``event``) reports every event time that has cells. Delta-method SEs.
        """
        if kind == "event":
            kind = "dynamic"
        if kind not in ("simple", "dynamic", "group", "calendar"):
            raise EstimationError(
                f"aggregate(kind={kind!r}): use 'simple', 'dynamic' (or 'event'), "
                "'group' or 'calendar'."
            )
        w_cell, eff, jac = self._cells  # obs count, ATT numerators, Jacobian rows
        g, t = self.groups, self.times
        post = t >= g
        e = t - g

        def comb(mask: NDArray[np.bool_]) -> tuple[float, float]:
            ww = w_cell[mask] / w_cell[mask].sum()
            est = float(ww @ eff[mask])
            grad = ww @ jac[mask]
            return est, float(np.sqrt(max(grad @ self.vcov @ grad, 0.0)))

        overall, overall_se = comb(post)
        levels: list[float] = []
        ests: list[float] = []
        ses: list[float] = []
        nlev: list[int] = []
        if kind != "simple":
            key = {"dynamic": e, "group": g, "calendar": t}[kind]
            for lv in np.unique(key if kind == "dynamic" else key[post]):
                m = key == lv if kind == "dynamic" else (key == lv) & post
                a, s = comb(m)
                levels.append(float(lv))
                ests.append(a)
                ses.append(s)
                nlev.append(int(w_cell[m].sum()))
        return ATTAggregate(
            kind=kind,
            overall_att=overall,
            overall_se=overall_se,
            levels=np.asarray(levels, dtype=float),
            att=np.asarray(ests, dtype=float),
            se=np.asarray(ses, dtype=float),
            n_level=np.asarray(nlev, dtype=np.int64),
            crit=float(stats.norm.ppf(1 - self.alpha / 2)),
            alpha=self.alpha,
            n_units=self.n_units,
            band="pointwise",
            settings={**self.settings, "kind": kind},
            estimator="etwfe",
        )

    def _repr_html_(self) -> str:
        return self.tidy().to_html(index=False)


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
    if not isinstance(data, pd.DataFrame):
        if hasattr(data, "to_pandas"):
            data = data.to_pandas()
        else:
            raise DataError(
                f"etwfe(data=...): expected a pandas DataFrame, got {type(data).__name__}."
            )
    needed = list(dict.fromkeys(c for c in (yname, idname, tname, gname, exposure, cluster) if c))
    missing = [c for c in needed if c not in data.columns]
    if missing:
        raise DataError(
            f"etwfe: column(s) {missing} not found in the panel ({len(data)} rows); "
            f"available: {list(data.columns)[:20]}."
        )
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
        raise DataError(
            f"etwfe: {k} rows repeat a ({idname}, {tname}) pair; "
            "one row per unit and period is needed."
        )
    for col in (gname, cluster):
        if col is None:
            continue
        nun = df.groupby(idname, sort=False)[col].nunique()
        if (nun > 1).any():
            raise DataError(
                f"etwfe: column {col!r} varies within {int((nun > 1).sum())} units; "
                "it must be constant for each unit."
            )
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
                "reason": "unit already treated in the first period",
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
                "reason": "unit not observed in every period (balanced panel required)",
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

    References
    ----------
    Wooldridge, J. M. (2021), SSRN 3906345; Wooldridge, J. M. (2023),
    *The Econometrics Journal* 26(3), C31-C66.
    """
    if family not in ("linear", "poisson"):
        raise EstimationError(f"family={family!r}: use 'linear' or 'poisson'.")
    if control not in ("notyet", "never"):
        raise EstimationError(f"control={control!r}: use 'notyet' or 'never'.")
    if xvar is not None:
        raise EstimationError("etwfe(xvar=...) is not supported yet; fit subgroups separately.")
    if exposure is not None and family != "poisson":
        raise EstimationError("etwfe(exposure=...) needs family='poisson' (exposure is an offset).")
    if is_ibis_table(data):
        ep = pivot_units(
            data,
            yname=yname,
            idname=idname,
            tname=tname,
            gname=gname,
            weights=None,
            cluster=cluster if cluster != idname else None,
            exposure=exposure,
            anticipation=0,
            control="never",
        )
        em = etwfe_moments(
            ep, exposure=exposure is not None, clustered=cluster is not None and cluster != idname
        )
        mom = _Moments(times=ep.times, **em)
        n = int(mom.count.sum())
        attr = ep.attrition
    else:
        mom, n, attr = _prepare(
            data,
            yname=yname,
            idname=idname,
            tname=tname,
            gname=gname,
            exposure=exposure,
            cluster=cluster,
        )
    if family == "poisson" and (mom.ysum < 0).any():
        raise DataError(f"etwfe(family='poisson'): outcome {yname!r} has negative values.")
    return _fit(
        mom,
        n,
        family,
        control,
        alpha,
        {
            "yname": yname,
            "idname": idname,
            "tname": tname,
            "gname": gname,
            "family": family,
            "exposure": exposure,
            "cluster": cluster,
            "control": control,
            "alpha": alpha,
            "spevidence_version": __version__,
        },
        attr,
    )


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
    names = [f"time={_fmt(t)}" for t in times] + [f"cohort={_fmt(g)}" for g in cohorts[1:]]
    for c in range(C):
        for ti in range(T):
            r = c * T + ti
            X[r, ti] = 1.0
            if c > 0:
                X[r, T + c - 1] = 1.0
    for k, (c, ti) in enumerate(cells):
        X[c * T + ti, T + C - 1 + k] = 1.0
        names.append(f"ATT(g={_fmt(cohorts[c])}, t={_fmt(times[ti])})")
    return X, cells, names


def _fit(
    mom: _Moments,
    n: int,
    family: Family,
    control: str,
    alpha: float,
    settings: dict[str, Any],
    attr: pd.DataFrame,
) -> ETWFE:
    C, T = len(mom.cohorts), len(mom.times)
    X, cells, names = _design(mom, control)
    if not cells:
        raise EstimationError("etwfe: no treated cohort x period cells to estimate.")
    P = X.shape[1]
    nct = np.repeat(mom.count, T).astype(float)  # obs per cell
    Ysum = mom.ysum.reshape(-1)
    Esum = mom.esum.reshape(-1)
    if family == "linear":
        H = X.T @ (nct[:, None] * X)
        beta = np.linalg.solve(H, X.T @ Ysum)
        mu = X @ beta  # fitted value per cell (per unit of exposure = 1)
        bread = np.linalg.inv(H)
    else:
        beta = np.zeros(P)
        ybar = mom.ysum.sum(axis=0) / mom.esum.sum(axis=0)
        if (ybar <= 0).any():
            raise EstimationError("etwfe(family='poisson'): a period has no events at all.")
        beta[:T] = np.log(ybar)
        for _ in range(200):
            mu = np.exp(X @ beta)
            grad = X.T @ (Ysum - Esum * mu)
            H = X.T @ ((Esum * mu)[:, None] * X)
            step = np.linalg.solve(H, grad)
            beta = beta + step
            if np.max(np.abs(step)) < 1e-13:
                break
        else:
            raise EstimationError(
                "etwfe(family='poisson') did not converge; a treated cell may have zero events."
            )
        mu = np.exp(X @ beta)
        H = X.T @ ((Esum * mu)[:, None] * X)
        bread = np.linalg.inv(H)
    # cluster-robust meat from cohort moments: r_i = y_i - e_i * mu_c
    mu_c = mu.reshape(C, T)
    Xc = X.reshape(C, T, P)
    if mom.Ucl_y is not None and mom.Ucl_e is not None:
        R = mom.Ucl_y - mom.Ucl_e * mu_c[None]  # n_cl x C x T
        S = np.einsum("lct,ctp->lp", R, Xc)
        meat = S.T @ S
    else:
        D = mu_c[:, None, :]  # broadcast over columns: (Mye D)[a, b] = Mye[a, b] mu[b]
        RR = (
            mom.Myy
            - mom.Mye * D
            - np.transpose(mom.Mye * D, (0, 2, 1))
            + mom.Mee * mu_c[:, :, None] * mu_c[:, None, :]
        )
        meat = np.einsum("ctp,cts,csq->pq", Xc, RR, Xc)
    N = n * T
    G = mom.n_clusters
    adj = (G / (G - 1)) * ((N - 1) / (N - P))
    V = adj * bread @ meat @ bread
    # cell effects on the response scale and their Jacobian
    K = len(cells)
    rows = np.array([c * T + ti for c, ti in cells])
    tau = beta[P - K :]
    w_cell = nct[rows]
    jac = np.zeros((K, P))
    if family == "linear":
        eff = tau.copy()
        jac[np.arange(K), P - K + np.arange(K)] = 1.0
    else:
        ebar = Esum[rows] / nct[rows]
        full = mu[rows]
        base = full * np.exp(-tau)
        eff = ebar * (full - base)
        jac = (ebar * (full - base))[:, None] * X[rows]
        jac[:, P - K :] = 0.0
        jac[np.arange(K), P - K + np.arange(K)] = ebar * full
    se_eff = np.sqrt(np.clip(np.einsum("kp,pq,kq->k", jac, V, jac), 0.0, None))
    coef_se = np.sqrt(np.clip(np.diag(V)[P - K :], 0.0, None))
    return ETWFE(
        family=family,
        control="never" if control == "never" else "notyet",
        groups=np.array([mom.cohorts[c] for c, _ in cells]),
        times=np.array([mom.times[ti] for _, ti in cells]),
        coef=np.asarray(tau, dtype=float),
        coef_se=coef_se,
        att=np.asarray(eff, dtype=float),
        se=se_eff,
        n_cell=w_cell.astype(np.int64),
        params=np.asarray(beta, dtype=float),
        param_names=tuple(names),
        vcov=V,
        n_units=n,
        n_obs=N,
        n_clusters=G,
        alpha=alpha,
        attrition=attr,
        settings=settings,
        _cells=(np.asarray(w_cell, float), np.asarray(eff, float), np.asarray(jac, float)),
    )


__all__ = ["ETWFE", "etwfe"]
