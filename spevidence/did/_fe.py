"""Fixed-effects engines for two-way count DiD: a row-level path and a moments path.

Both fit the same model

    linear:   y_it = alpha_i + Z_it theta + e_it                  (weighted least squares)
    poisson:  E[y_it] = exp(alpha_i + Z_it theta + offset_it)      (PPML, conditional Poisson)

where ``Z = [period dummies (first period is the base), X]`` and ``alpha_i`` are unit fixed
effects. The unit effects are concentrated out exactly (within transformation for OLS;
the conditional/multinomial likelihood for Poisson, Hausman, Hall and Griliches 1984),
the period effects are estimated as explicit dummies (periods are few).

Standard errors are cluster-robust (CRV1) with the small-sample corrections of
``fixest``/``pyfixest`` defaults (``ssc(adj=TRUE, fixef.K="nested", cluster.adj=TRUE)``):
``V = G/(G-1) * (N-1)/(N-K) * H^-1 M H^-1`` with ``K`` = number of estimated slope and
period coefficients, plus one for the unit effects when units are nested in clusters
(plus the number of units otherwise).

The moments path (DESIGN.md section 6) groups units into *cohorts* that share the whole
design path (observed periods, X, offset, weight). Estimates and clustered SEs then depend
on the data only through per-cohort period sums ``Y_gt`` and per-cohort cross-products
``S_g = sum_i y_i y_i'`` (or per cluster x cohort sums for coarser clusters).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from spevidence.errors import EstimationError

Model = Literal["linear", "poisson"]

_COLLIN_TOL = 1e-9
_MAX_ITER = 100


@dataclass(frozen=True)
class RowDesign:
    """Row-level design, already cleaned. Codes are dense 0..n-1 integers."""

    y: np.ndarray
    unit: np.ndarray
    period: np.ndarray
    X: np.ndarray
    xnames: tuple[str, ...]
    cluster: np.ndarray
    weights: np.ndarray | None = None
    offset: np.ndarray | None = None

    @property
    def n_units(self) -> int:
        return int(self.unit.max()) + 1 if self.unit.size else 0

    @property
    def n_periods(self) -> int:
        return int(self.period.max()) + 1 if self.period.size else 0


@dataclass(frozen=True)
class Moments:
    """Sufficient statistics of a two-way design, per cohort of units sharing a design path.

    Arrays are indexed ``[cohort, period, ...]``; ``mask[g, t]`` says whether period ``t``
    is observed for the cohort.
    """

    n_periods: int
    mask: np.ndarray  # (C, T) bool
    X: np.ndarray  # (C, T, k)
    offset: np.ndarray  # (C, T)
    W: np.ndarray  # (C, T) observation weights
    n: np.ndarray  # (C,) units
    nzero: np.ndarray  # (C,) units whose outcome is zero in every observed period
    Y: np.ndarray  # (C, T) sums of y over the cohort's units
    xnames: tuple[str, ...]
    S: np.ndarray | None = None  # (C, T, T) sum_i y_i y_i' (unit clusters)
    cl_cohort: np.ndarray | None = None  # (M,) cohort of each cluster x cohort cell
    cl_code: np.ndarray | None = None  # (M,) cluster of each cell
    cl_y: np.ndarray | None = None  # (M, T) sums of y in the cell
    cl_n: np.ndarray | None = None  # (M,) units in the cell
    cl_npos: np.ndarray | None = None  # (M,) units with a positive total in the cell
    # alternative to S / cluster cells: an engine pass returning the meat for given
    # loadings V (C, T, k) and constants b (C, k); used when moments live in a database
    meat_fn: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None
    n_clusters_known: int | None = None


@dataclass(frozen=True)
class Fit:
    """Output of an engine: the slope coefficients (X part) and their clustered vcov."""

    names: tuple[str, ...]
    coef: np.ndarray
    vcov: np.ndarray
    dropped_terms: tuple[str, ...]
    n_obs: int
    n_units: int
    n_clusters: int
    df_k: int
    df_t: int
    ssc: float
    path: Literal["rows", "moments"]
    iterations: int
    dropped_rows: dict[str, int] = field(default_factory=dict)


# ----------------------------------------------------------------------------- helpers


def _select_columns(gram: np.ndarray, protected: int = 0) -> list[int]:
    """Greedy sequential collinearity check on a Gram matrix (columns in order)."""
    kept: list[int] = []
    for j in range(gram.shape[0]):
        gjj = gram[j, j]
        if gjj <= 0 or not np.isfinite(gjj):
            continue
        if kept:
            gkk = gram[np.ix_(kept, kept)]
            gkj = gram[kept, j]
            r = gjj - gkj @ np.linalg.solve(gkk, gkj)
        else:
            r = gjj
        if r > _COLLIN_TOL * gjj:
            kept.append(j)
    return kept


def _period_and_x(d: RowDesign) -> np.ndarray:
    """Period dummies (the first period is the reference) beside the regressors."""
    return np.column_stack([_period_dummies(d.period, d.n_periods), d.X])


def _within(
    unit: np.ndarray, Z: np.ndarray, w: np.ndarray, n_units: int
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted within-unit deviations of the columns of ``Z``, and each unit's weight."""
    sw = np.bincount(unit, weights=w, minlength=n_units)
    return Z - (_bincols(unit, Z * w[:, None], n_units) / sw[:, None])[unit], sw


def _bincols(codes: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """Column-wise group sums: ``out[c, j] = sum values[codes == c, j]``."""
    out = np.empty((n, values.shape[1]))
    for j in range(values.shape[1]):
        out[:, j] = np.bincount(codes, weights=values[:, j], minlength=n)
    return out


def _period_dummies(period: np.ndarray, n_periods: int) -> np.ndarray:
    out = np.zeros((period.size, max(n_periods - 1, 0)))
    rows = np.nonzero(period > 0)[0]
    out[rows, period[rows] - 1] = 1.0
    return out


def _ssc(n_obs: int, df_k: int, n_clusters: int) -> float:
    if n_clusters < 2:
        raise EstimationError(
            f"Only {n_clusters} cluster(s) remain; clustered standard errors need at least 2. "
            "Cluster by person (the default) or by a level with more groups."
        )
    if n_obs <= df_k:
        raise EstimationError(
            f"{n_obs} observations for {df_k} parameters; the design is saturated. "
            "Use more periods or fewer event-time terms."
        )
    return (n_clusters / (n_clusters - 1)) * ((n_obs - 1) / (n_obs - df_k))


def _finish(
    *,
    names_all: list[str],
    kept: list[int],
    n_period_cols: int,
    bread: np.ndarray | None,
    meat: np.ndarray | None,
    theta: np.ndarray,
    n_obs: int,
    n_units: int,
    n_clusters: int,
    nested: bool,
    path: Literal["rows", "moments"],
    iterations: int,
    dropped_rows: dict[str, int],
    sandwich_x: np.ndarray | None = None,
) -> Fit:
    """Assemble a :class:`Fit`; ``sandwich_x`` is ``(bread meat bread)`` of the X block
    when already formed (moments path), else it is computed from ``bread`` and ``meat``."""
    df_k = len(kept) + (1 if nested else n_units)
    adj = _ssc(n_obs, df_k, n_clusters)
    xpos = [i for i, j in enumerate(kept) if j >= n_period_cols]
    if sandwich_x is None:
        if bread is None or meat is None:
            raise EstimationError("internal: no sandwich")  # pragma: no cover
        sandwich_x = (bread @ meat @ bread)[np.ix_(xpos, xpos)]
    names = tuple(names_all[kept[i]] for i in xpos)
    dropped = tuple(
        names_all[j] for j in range(n_period_cols, len(names_all)) if j not in set(kept)
    )
    if not names:
        gone = sum(dropped_rows.values())
        why = (
            f" once the {gone} of {n_obs + gone} rows that carry no information in a "
            "Poisson model were dropped (units or periods with no events, or rows "
            f"separated: {', '.join(f'{k} {v}' for k, v in dropped_rows.items() if v)}). "
            "There are too few events for a Poisson model: use the linear model, a "
            "longer window or coarser periods"
            if gone
            else ""
        )
        raise EstimationError(
            "Every treatment term is collinear with the unit and period fixed effects "
            f"(dropped: {', '.join(dropped)}){why}; the design cannot identify an effect. "
            "Check that treated and comparison units are both observed before and after."
        )
    return Fit(
        names=names,
        coef=theta[xpos].copy(),
        vcov=adj * sandwich_x,
        dropped_terms=dropped,
        n_obs=n_obs,
        n_units=n_units,
        n_clusters=n_clusters,
        df_k=df_k,
        df_t=n_clusters - 1,
        ssc=adj,
        path=path,
        iterations=iterations,
        dropped_rows=dropped_rows,
    )


def _unit_nested(unit: np.ndarray, cluster: np.ndarray) -> bool:
    pairs = pd.DataFrame({"u": unit, "c": cluster}).drop_duplicates()
    return len(pairs) == pairs["u"].nunique()


def _recode(codes: np.ndarray) -> tuple[np.ndarray, int]:
    uniq, inv = np.unique(codes, return_inverse=True)
    return inv.astype(np.int64), len(uniq)


# ----------------------------------------------------------------------------- rows


def fit_rows(d: RowDesign, model: Model) -> Fit:
    """Fit the two-way model on row-level data."""
    if model == "linear":
        return _fit_rows_linear(d, {})
    return _fit_rows_poisson(d)


def _fit_rows_linear(d: RowDesign, dropped_rows: dict[str, int]) -> Fit:
    n_units, n_periods = d.n_units, d.n_periods
    w = np.ones_like(d.y) if d.weights is None else d.weights
    Z = _period_and_x(d)
    names_all = [f"period::{t}" for t in range(1, n_periods)] + list(d.xnames)
    Zt, sw = _within(d.unit, Z, w, n_units)
    ybar = np.bincount(d.unit, weights=w * d.y, minlength=n_units) / sw
    yt = d.y - ybar[d.unit]
    gram = (Zt * w[:, None]).T @ Zt
    kept = _select_columns(gram)
    Zk = Zt[:, kept]
    gk = gram[np.ix_(kept, kept)]
    theta = np.linalg.solve(gk, Zk.T @ (w * yt))
    e = yt - Zk @ theta
    n_cl = int(d.cluster.max()) + 1
    scores = _bincols(d.cluster, Zk * (w * e)[:, None], n_cl)
    bread = np.linalg.inv(gk)
    return _finish(
        names_all=names_all,
        kept=kept,
        n_period_cols=n_periods - 1,
        bread=bread,
        meat=scores.T @ scores,
        theta=theta,
        n_obs=int(d.y.size),
        n_units=n_units,
        n_clusters=n_cl,
        nested=_unit_nested(d.unit, d.cluster),
        path="rows",
        iterations=1,
        dropped_rows=dropped_rows,
    )


def drop_uninformative_poisson(d: RowDesign) -> tuple[RowDesign, dict[str, int]]:
    """Drop units (and periods) whose outcome is zero throughout, as fixest does.

    They carry no information in the conditional Poisson likelihood.
    """
    dropped = {"unit_all_zero_outcome": 0, "period_all_zero_outcome": 0}
    keep = np.ones(d.y.size, dtype=bool)
    while True:
        tot_u = np.bincount(d.unit[keep], weights=d.y[keep], minlength=d.n_units)
        tot_t = np.bincount(d.period[keep], weights=d.y[keep], minlength=d.n_periods)
        bad_u = keep & (tot_u[d.unit] <= 0)
        nbu = int(bad_u.sum())
        keep &= ~bad_u
        bad_t = keep & (tot_t[d.period] <= 0)
        nbt = int(bad_t.sum())
        keep &= ~bad_t
        dropped["unit_all_zero_outcome"] += nbu
        dropped["period_all_zero_outcome"] += nbt
        if nbu == 0 and nbt == 0:
            break
    if not keep.any():
        raise EstimationError(
            f"The outcome is zero in all {d.y.size} rows; a Poisson model cannot be fitted. "
            "Choose an outcome with events, or a longer follow-up."
        )
    if keep.all():
        return d, dropped
    return _rows(d, keep), dropped


def _rows(d: RowDesign, keep: np.ndarray) -> RowDesign:
    """The design on the kept rows, units, periods and clusters numbered afresh."""
    return RowDesign(
        y=d.y[keep],
        unit=_recode(d.unit[keep])[0],
        period=_recode(d.period[keep])[0],
        X=d.X[keep],
        xnames=d.xnames,
        cluster=_recode(d.cluster[keep])[0],
        weights=None if d.weights is None else d.weights[keep],
        offset=None if d.offset is None else d.offset[keep],
    )


def separated_rows(d: RowDesign, *, tol: float = 1e-4, max_iter: int = 100) -> np.ndarray:
    """Rows whose Poisson fitted value goes to zero at the maximum (separation).

    The iterative rectifier of Correia, Guimarães & Zylkin (2021, *Stata J* 21:213), as
    pyfixest's ``separation_check=["ir"]`` and ppmlhdfe: regress ``U`` (1 on zero
    outcomes) on the unit effects, period effects and regressors, with rows of a positive
    outcome weighted so heavily that the fit is zero there; set negative fitted values of
    the zero rows back into ``U`` as zero (a ReLU) until no fitted value is negative. Rows
    with a positive fit are separated: some combination of coefficients can push their
    mean to zero without changing any other row, so the MLE does not exist until they are
    dropped. Returns a boolean mask (all False when nothing is separated).
    """
    y = d.y
    interior = y > 0
    out = np.zeros(y.size, dtype=bool)
    if interior.all() or not interior.any():
        return out
    n_units = d.n_units
    omega = np.where(interior, interior.sum() / tol**2, 1.0)
    Zt, sw = _within(d.unit, _period_and_x(d), omega, n_units)
    gram = (Zt * omega[:, None]).T @ Zt
    kept = _select_columns(gram)
    Zk, gk = Zt[:, kept], gram[np.ix_(kept, kept)]
    U = (~interior).astype(float)
    for _ in range(max_iter):
        ubar = np.bincount(d.unit, weights=omega * U, minlength=n_units) / sw
        fitted = ubar[d.unit]
        if kept:
            theta = np.linalg.lstsq(gk, Zk.T @ (omega * (U - fitted)), rcond=None)[0]
            fitted = fitted + Zk @ theta
        near_zero = (fitted > -0.1 * tol) & (fitted < tol)
        fitted[interior | near_zero] = 0.0
        if (fitted >= 0).all():
            return fitted > 0
        U[~interior] = np.maximum(fitted[~interior], 0.0)
    return out  # not converged: leave the fit to report non-convergence


def _fit_rows_poisson(d0: RowDesign) -> Fit:
    d, dropped_rows = drop_uninformative_poisson(d0)
    sep = separated_rows(d)
    if sep.any():
        dropped_rows["separated"] = int(sep.sum())
        d = _rows(d, ~sep)
    n_units, n_periods = d.n_units, d.n_periods
    y = d.y
    w = np.ones_like(y) if d.weights is None else d.weights
    off = np.zeros_like(y) if d.offset is None else d.offset
    Z = _period_and_x(d)
    names_all = [f"period::{t}" for t in range(1, n_periods)] + list(d.xnames)
    # collinearity on the (weighted) within-unit design
    Zt0, _ = _within(d.unit, Z, w, n_units)
    kept = _select_columns((Zt0 * w[:, None]).T @ Zt0)
    Z = Z[:, kept]
    num = np.bincount(d.unit, weights=w * y, minlength=n_units)

    def state(theta: np.ndarray) -> tuple[np.ndarray, float]:
        eta = Z @ theta + off
        m = np.full(n_units, -np.inf)
        np.maximum.at(m, d.unit, eta)
        ex = np.exp(eta - m[d.unit])
        den = np.bincount(d.unit, weights=w * ex, minlength=n_units)
        mu = ex * (num / den)[d.unit]
        pos = y > 0
        ll = float(np.sum(w[pos] * y[pos] * np.log(mu[pos])))
        return mu, ll

    theta = np.zeros(Z.shape[1])
    mu, ll = state(theta)
    n_iter = 0
    for it in range(1, _MAX_ITER + 1):
        n_iter = it
        wm = w * mu
        Zt, _ = _within(d.unit, Z, wm, n_units)
        H = (Zt * wm[:, None]).T @ Zt
        g = Z.T @ (w * (y - mu))
        step = np.linalg.solve(H, g)
        t_new = theta + step
        mu_new, ll_new = state(t_new)
        halvings = 0
        while ll_new < ll - 1e-12 * abs(ll) and halvings < 30:
            step = step / 2
            t_new = theta + step
            mu_new, ll_new = state(t_new)
            halvings += 1
        theta, mu, ll = t_new, mu_new, ll_new
        if np.max(np.abs(step)) < 1e-13 * max(1.0, float(np.max(np.abs(theta)))):
            break
    else:  # pragma: no cover - Newton on a concave likelihood converges
        raise EstimationError(f"Poisson fit did not converge in {_MAX_ITER} iterations.")
    wm = w * mu
    Zt, _ = _within(d.unit, Z, wm, n_units)
    H = (Zt * wm[:, None]).T @ Zt
    n_cl = int(d.cluster.max()) + 1
    scores = _bincols(d.cluster, Zt * (w * (y - mu))[:, None], n_cl)
    return _finish(
        names_all=names_all,
        kept=kept,
        n_period_cols=n_periods - 1,
        bread=np.linalg.inv(H),
        meat=scores.T @ scores,
        theta=theta,
        n_obs=int(y.size),
        n_units=n_units,
        n_clusters=n_cl,
        nested=_unit_nested(d.unit, d.cluster),
        path="rows",
        iterations=n_iter,
        dropped_rows=dropped_rows,
    )


# ----------------------------------------------------------------------------- moments


def moments_from_rows(d: RowDesign, *, unit_clusters: bool) -> Moments | None:
    """Compute cohort moments from row-level arrays (numpy).

    A cohort is the set of units sharing their whole design path: observed periods and,
    in each, the regressors, the offset and the weight. Returns ``None`` when clusters
    split a unit (the moments path then cannot form cluster scores).
    """
    n_units, T = d.n_units, d.n_periods
    w = np.ones_like(d.y) if d.weights is None else d.weights
    off = np.zeros_like(d.y) if d.offset is None else d.offset
    cl_u = np.zeros(n_units, dtype=np.int64)
    if not unit_clusters:
        cl_u[d.unit] = d.cluster
        if not np.array_equal(cl_u[d.unit], d.cluster):
            return None
    # signature of each row: its design values (X, offset, weight)
    sig_cols = [*d.X.T]
    sig_cols += [c for c in (d.offset, d.weights) if c is not None]
    rcode = _factorize_columns(sig_cols)
    cohort = _cohorts(d.unit, d.period, rcode, n_units, T)
    C = int(cohort.max()) + 1
    mask = np.zeros((C, T), dtype=bool)
    mask[cohort[d.unit], d.period] = True
    # design values of each cohort, taken from any of its rows
    first_row = np.full((C, T), -1, dtype=np.int64)
    first_row[cohort[d.unit], d.period] = np.arange(d.y.size)
    gi, ti = np.nonzero(mask)
    src = first_row[gi, ti]
    Xc = np.zeros((C, T, d.X.shape[1]))
    Xc[gi, ti] = d.X[src]
    offc = np.zeros((C, T))
    offc[gi, ti] = off[src]
    Wc = np.zeros((C, T))
    Wc[gi, ti] = w[src]
    n = np.bincount(cohort, minlength=C).astype(float)
    Ymat = np.zeros((n_units, T))
    Ymat[d.unit, d.period] = d.y
    tot = Ymat.sum(axis=1)
    nzero = np.bincount(cohort, weights=(tot <= 0).astype(float), minlength=C)
    Y = _bincols(cohort, Ymat, C)
    S = None
    cl_cohort = cl_code = cl_y = cl_n = cl_npos = None
    if unit_clusters:
        S = np.zeros((C, T, T))
        order = np.argsort(cohort, kind="stable")
        bounds = np.searchsorted(cohort[order], np.arange(C + 1))
        Ysorted = Ymat[order]
        # small blocks keep BLAS single-threaded: threaded gemm on tiny T x T products is
        # hundreds of times slower on a busy machine
        step = max(16, 100_000 // (T * T))
        for g in range(C):
            for lo in range(bounds[g], bounds[g + 1], step):
                blk = Ysorted[lo : min(lo + step, bounds[g + 1])]
                S[g] += blk.T @ blk
    else:
        cell = pd.factorize(cl_u * C + cohort, sort=True)[0]
        M = int(cell.max()) + 1
        cl_cohort = np.zeros(M, dtype=np.int64)
        cl_cohort[cell] = cohort
        cl_code = np.zeros(M, dtype=np.int64)
        cl_code[cell] = cl_u
        cl_y = _bincols(cell, Ymat, M)
        cl_n = np.bincount(cell, minlength=M).astype(float)
        cl_npos = np.bincount(cell, weights=(tot > 0).astype(float), minlength=M)
    return Moments(
        n_periods=T,
        mask=mask,
        X=Xc,
        offset=offc,
        W=Wc,
        n=n,
        nzero=nzero,
        Y=Y,
        xnames=d.xnames,
        S=S,
        cl_cohort=cl_cohort,
        cl_code=cl_code,
        cl_y=cl_y,
        cl_n=cl_n,
        cl_npos=cl_npos,
    )


def _factorize_columns(cols: list[np.ndarray]) -> np.ndarray:
    """Dense integer code of each row's combination of values (exact, hash-based)."""
    n = cols[0].size if cols else 0
    cols = [c for c in cols if c.size and c.min() != c.max()]  # constants carry no signal
    if not cols:
        return np.zeros(n, dtype=np.int64)
    if len(cols) == 1:
        return pd.factorize(cols[0], sort=True)[0].astype(np.int64)
    code = np.zeros(n, dtype=np.int64)
    size = 1
    for c in cols:
        f, uniq = pd.factorize(c, sort=True)
        if size * len(uniq) >= 2**62:
            code, u2 = pd.factorize(code, sort=True)
            size = len(u2)
        code = code * len(uniq) + f
        size *= len(uniq)
    return pd.factorize(code, sort=True)[0].astype(np.int64)


def splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser of each element (as unsigned 64-bit): the hash of the
    cohort keys here and of the unit paths in :mod:`~spevidence.did._dense`."""
    z = np.asarray(x, dtype=np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _cohorts(
    unit: np.ndarray, period: np.ndarray, rcode: np.ndarray, n_units: int, T: int
) -> np.ndarray:
    """Group units sharing the whole path {(period, row code)}; exact.

    A 64-bit hash of each unit's path proposes the groups; they are then verified row by
    row (every unit agrees with its group on every period it has, and has all of them).
    On a (vanishingly unlikely) collision the exact row-matrix comparison is used.
    """
    h = np.zeros(n_units, dtype=np.uint64)
    key = rcode * T + period
    n_keys = int(key.max()) + 1
    if n_keys <= 1 << 22:  # hash the few distinct keys once, then gather
        np.add.at(h, unit, splitmix64(np.arange(1, n_keys + 1))[key])
    else:
        np.add.at(h, unit, splitmix64(key + 1))
    cohort = pd.factorize(h, sort=True)[0].astype(np.int64)
    C = int(cohort.max()) + 1
    rep = np.full((C, T), -1, dtype=np.int64)
    rep[cohort[unit], period] = rcode
    cnt_unit = np.bincount(unit, minlength=n_units)
    cnt_rep = (rep >= 0).sum(axis=1)
    if np.array_equal(rep[cohort[unit], period], rcode) and np.array_equal(
        cnt_rep[cohort], cnt_unit
    ):
        return cohort
    R = np.full((n_units, T), -1, dtype=np.int64)  # pragma: no cover - hash collision
    R[unit, period] = rcode
    return np.unique(R, axis=0, return_inverse=True)[1].ravel().astype(np.int64)


def fit_moments(m: Moments, model: Model) -> Fit:
    """Fit the two-way model from cohort moments."""
    if model == "linear":
        return _fit_moments_linear(m)
    return _fit_moments_poisson(m)


def _meat(m: Moments, V: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Clustered meat when each unit's score is ``V_g' y_i - b_g``.

    ``V``: (C, T, k) per-cohort score loadings; ``b``: (C, k) per-unit constant.
    """
    if m.meat_fn is not None:
        return m.meat_fn(V, b)
    if m.S is not None:
        VY = np.einsum("gtk,gt->gk", V, m.Y)
        meat = np.einsum("gtk,gts,gsl->kl", V, m.S, V)
        meat -= np.einsum("gk,gl->kl", VY, b)
        meat -= np.einsum("gk,gl->kl", b, VY)
        meat += np.einsum("g,gk,gl->kl", m.n, b, b)
        return meat
    if m.cl_cohort is None or m.cl_y is None or m.cl_n is None or m.cl_code is None:
        raise EstimationError("moments: cluster sums missing")  # pragma: no cover
    g = m.cl_cohort
    cell_scores = np.einsum("mtk,mt->mk", V[g], m.cl_y) - m.cl_n[:, None] * b[g]
    sc = _bincols(m.cl_code, cell_scores, int(m.cl_code.max()) + 1)
    return sc.T @ sc


def _n_clusters(m: Moments, poisson: bool) -> int:
    if m.n_clusters_known is not None:
        return m.n_clusters_known
    if m.S is not None:
        return round(float(np.sum(m.n - m.nzero))) if poisson else round(float(m.n.sum()))
    if m.cl_code is None or m.cl_npos is None or m.cl_n is None:
        raise EstimationError("moments: cluster sums missing")  # pragma: no cover
    cnt = np.bincount(m.cl_code, weights=m.cl_npos if poisson else m.cl_n)
    return int(np.sum(cnt > 0))


class _CohortZ:
    """The cohort design ``Z_gt = [period dummies (t >= 1), X_gt]`` used implicitly.

    Products with ``Z`` exploit its structure (one dummy per period), so every pass is
    O(C T k) for ``k`` regressors instead of O(C T K^2) with ``K = T - 1 + k`` columns.
    """

    def __init__(self, m: Moments) -> None:
        self.mf = m.mask.astype(float)
        self.X = m.X * self.mf[:, :, None]  # (C, T, k)
        self.T = m.n_periods
        self.k = self.X.shape[2]
        self.K = self.T - 1 + self.k
        self.names = [f"period::{t}" for t in range(1, self.T)] + list(m.xnames)

    def dot(self, M: np.ndarray) -> np.ndarray:
        """``Z_gt @ M`` for ``M`` of shape (K,) or (K, r); shape (C, T[, r])."""
        T = self.T
        if M.ndim == 1:
            d = np.concatenate([[0.0], M[: T - 1]])
            return (d[None, :] + np.einsum("gtj,j->gt", self.X, M[T - 1 :])) * self.mf
        d2 = np.vstack([np.zeros((1, M.shape[1])), M[: T - 1]])
        xm = np.einsum("gtj,jr->gtr", self.X, M[T - 1 :])
        return (d2[None, :, :] + xm) * self.mf[:, :, None]

    def tsum(self, a: np.ndarray) -> np.ndarray:
        """Per cohort ``sum_t a_gt Z_gt``; shape (C, K)."""
        am = a * self.mf
        return np.concatenate([am[:, 1:], np.einsum("gt,gtj->gj", am, self.X)], axis=1)

    def gram(self, a: np.ndarray) -> np.ndarray:
        """``sum_g sum_t a_gt Z_gt Z_gt'``; shape (K, K)."""
        T1 = self.T - 1
        am = a * self.mf
        out = np.zeros((self.K, self.K))
        out[np.arange(T1), np.arange(T1)] = am.sum(axis=0)[1:]
        dx = np.einsum("gt,gtj->tj", am, self.X)[1:]
        out[:T1, T1:] = dx
        out[T1:, :T1] = dx.T
        out[T1:, T1:] = np.einsum("gt,gtj,gtl->jl", am, self.X, self.X)
        return out


def _full(kept: list[int], K: int, v: np.ndarray) -> np.ndarray:
    """Embed kept-column values in a length-K (or K x r) array with zeros elsewhere."""
    out = np.zeros((K, *v.shape[1:]))
    out[kept] = v
    return out


def _moment_design(
    m: Moments, unit_n: np.ndarray
) -> tuple[_CohortZ, np.ndarray, np.ndarray, np.ndarray, list[int]]:
    """Shared by both models: the cohort design, observation weights, the weighted
    within-unit means of ``Z``, the within-unit Gram matrix (units counted by ``unit_n``)
    and the columns kept by the collinearity check (as the row path does)."""
    cz = _CohortZ(m)
    W = m.W * cz.mf
    sW = W.sum(axis=1)
    zbar = cz.tsum(W) / sW[:, None]  # (C, K)
    gram = cz.gram(unit_n[:, None] * W) - (zbar * (unit_n * sW)[:, None]).T @ zbar
    return cz, W, zbar, gram, _select_columns(gram)


def _moments_fit(
    m: Moments,
    *,
    cz: _CohortZ,
    kept: list[int],
    theta: np.ndarray,
    bread: np.ndarray,
    load: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
    n_obs: int,
    n_units: int,
    poisson: bool,
    iterations: int,
    dropped_rows: dict[str, int],
) -> Fit:
    """Clustered sandwich of the X block only. Unit scores are ``V_g' y_i - b_g``;
    ``load(P)`` returns ``(V P, b P)`` for the X columns ``P`` of the bread, so the score
    pass has k columns, not T - 1 + k."""
    n_period_cols = m.n_periods - 1
    xpos = [i for i, j in enumerate(kept) if j >= n_period_cols]
    VP, bP = load(_full(kept, cz.K, bread[:, xpos]))
    return _finish(
        names_all=cz.names,
        kept=kept,
        n_period_cols=n_period_cols,
        bread=None,
        meat=None,
        theta=theta,
        n_obs=n_obs,
        n_units=n_units,
        n_clusters=_n_clusters(m, poisson=poisson),
        nested=True,
        path="moments",
        iterations=iterations,
        dropped_rows=dropped_rows,
        sandwich_x=_meat(m, VP, bP),  # = P' meat P
    )


def _fit_moments_linear(m: Moments) -> Fit:
    cz, W, zbar, gram, kept = _moment_design(m, m.n)
    WY = W * m.Y
    rhs = cz.tsum(WY).sum(axis=0) - WY.sum(axis=1) @ zbar
    gk = gram[np.ix_(kept, kept)]
    theta = np.linalg.solve(gk, rhs[kept])
    th_full = _full(kept, cz.K, theta)
    fit = (cz.dot(th_full) - (zbar @ th_full)[:, None]) * cz.mf  # Zt theta, (C, T)

    def load(P: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ZtP = (cz.dot(P) - (zbar @ P)[:, None, :]) * cz.mf[:, :, None]
        return W[:, :, None] * ZtP, np.einsum("gt,gt,gtj->gj", W, fit, ZtP)

    return _moments_fit(
        m, cz=cz, kept=kept, theta=theta, bread=np.linalg.inv(gk), load=load,
        n_obs=round(float(np.sum(m.n * m.mask.sum(axis=1)))), n_units=round(float(m.n.sum())),
        poisson=False, iterations=1, dropped_rows={},
    )  # fmt: skip


def _fit_moments_poisson(m: Moments) -> Fit:
    mk = m.mask
    mf = mk.astype(float)
    Tg = mf.sum(axis=1)
    if np.any(np.einsum("gt,gt->t", m.W * mf, m.Y)[mk.any(axis=0)] <= 0):
        raise EstimationError("moments path: a period has no events")
    n_inf = m.n - m.nzero
    cz, W, _, _, kept = _moment_design(m, n_inf)
    K = cz.K
    WYt = W * m.Y  # (C, T)
    WY = WYt.sum(axis=1)
    logW = np.log(np.where(mk, np.maximum(W, 1e-300), 1.0))

    def probs(theta: np.ndarray) -> np.ndarray:
        eta = np.where(mk, cz.dot(_full(kept, K, theta)) + m.offset + logW, -np.inf)
        ex = np.exp(eta - eta.max(axis=1, keepdims=True))
        return ex / ex.sum(axis=1, keepdims=True)

    pos = WYt > 0

    def loglik(p: np.ndarray) -> float:
        return float(np.sum(WYt[pos] * np.log(p[pos])))

    def hess(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pz = cz.tsum(p)  # (C, K)
        H = cz.gram(WY[:, None] * p) - (pz * WY[:, None]).T @ pz
        return H[np.ix_(kept, kept)], pz

    zy = cz.tsum(WYt).sum(axis=0)
    theta = np.zeros(len(kept))
    p = probs(theta)
    ll = loglik(p)
    n_iter = 0
    for it in range(1, _MAX_ITER + 1):
        n_iter = it
        H, pz = hess(p)
        grad = (zy - WY @ pz)[kept]
        step = np.linalg.solve(H, grad)
        t_new = theta + step
        p_new = probs(t_new)
        ll_new = loglik(p_new)
        halvings = 0
        while ll_new < ll - 1e-12 * abs(ll) and halvings < 30:
            step = step / 2
            t_new = theta + step
            p_new = probs(t_new)
            ll_new = loglik(p_new)
            halvings += 1
        theta, p, ll = t_new, p_new, ll_new
        if np.max(np.abs(step)) < 1e-13 * max(1.0, float(np.max(np.abs(theta)))):
            break
    else:  # pragma: no cover
        raise EstimationError(f"Poisson fit did not converge in {_MAX_ITER} iterations.")
    H, pz = hess(p)

    def load(P: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        VP = W[:, :, None] * (cz.dot(P) - (pz @ P)[:, None, :]) * mf[:, :, None]
        return VP, np.zeros((VP.shape[0], VP.shape[2]))

    return _moments_fit(
        m, cz=cz, kept=kept, theta=theta, bread=np.linalg.inv(H), load=load,
        n_obs=round(float(np.sum(n_inf * Tg))), n_units=round(float(n_inf.sum())),
        poisson=True, iterations=n_iter,
        dropped_rows={
            "unit_all_zero_outcome": round(float(np.sum(m.nzero * Tg))),
            "period_all_zero_outcome": 0,
        },
    )  # fmt: skip
