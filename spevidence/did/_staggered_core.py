"""Numerical core of the Callaway-Sant'Anna estimator (private).

Two interchangeable paths compute the same group-time ATTs and the same
covariance of their influence functions:

* the **row path** runs the panel two-by-two estimators of Sant'Anna and Zhao
  (2020) -- doubly robust (``dr``), standardised inverse-probability weighting
  (``ipw``) and outcome regression (``reg``) -- unit by unit, exactly as R
  ``DRDID`` / ``did`` do;
* the **moment path** (no covariates) uses that, with an intercept-only
  propensity score and outcome model, all three estimators reduce to a
  difference of weighted cohort means and every influence function is, within
  a cohort, an affine function of the unit's weight and weighted outcome
  vector. Then the estimates need only per-cohort sums and the variance only
  per-cohort ``(T+2) x (T+2)`` cross-product matrices (DESIGN.md section 6).

Both paths return a :class:`CellSet`: the ATTs and the ``P x P`` covariance
``sigma`` of the stacked influence functions ``[cells | cohort shares]``,
scaled so that ``sigma[k, k]`` is the squared standard error. Aggregation and
the bootstrap only ever need ``sigma``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
TRIM_LEVEL = 0.995
OVERLAP_LEVEL = 0.999


@dataclass(frozen=True)
class CellPlan:
    """One group-time cell: which periods and which cohorts enter it."""

    group: float
    time: float
    t_idx: int
    base_idx: int
    control_cohorts: tuple[float, ...]
    reference: bool  # universal base period row with ATT 0 by construction


@dataclass(frozen=True)
class CellSet:
    """Estimated cells and the covariance of their influence functions."""

    plans: tuple[CellPlan, ...]
    att: FloatArray
    n_cell: NDArray[np.int64]
    sigma: FloatArray  # (K + G) x (K + G); G = number of treated cohorts
    skipped: tuple[tuple[float, float, str], ...]


def plan_cells(
    times: FloatArray,
    cohorts: FloatArray,
    *,
    control: str,
    base_period: str,
    anticipation: float,
) -> list[CellPlan]:
    """Enumerate the (g, t) cells as R ``did::att_gt`` does.

    ``cohorts`` are the finite treatment cohorts present; never-treated units
    carry ``inf``.
    """
    plans: list[CellPlan] = []
    universal = base_period == "universal"
    tf = 0 if universal else 1
    n_t = len(times)
    all_cohorts = np.append(cohorts, np.inf)
    for g in cohorts:
        pre = np.flatnonzero(times < g - anticipation)
        if len(pre) == 0:
            continue
        for ti in range(n_t - tf):
            t_idx = ti + tf
            post = g <= times[t_idx]
            base = int(pre[-1]) if (universal or post) else ti
            if universal and base == t_idx:
                plans.append(CellPlan(float(g), float(times[t_idx]), t_idx, base, (), True))
                continue
            ctrl: tuple[float, ...]
            if control == "never":
                ctrl = (np.inf,)
            else:
                relevant = max(times[t_idx], times[base]) + anticipation
                ctrl = tuple(float(c) for c in all_cohorts if c > relevant and c != g)
            plans.append(CellPlan(float(g), float(times[t_idx]), t_idx, base, ctrl, False))
    return plans


# ----------------------------------------------------------------------------- row path


def _logit_coef(d: FloatArray, X: FloatArray, w: FloatArray) -> FloatArray:
    """Weighted logistic regression by Newton-Raphson; returns the coefficients."""
    beta = np.zeros(X.shape[1])
    for _ in range(100):
        p = _sigmoid(X, beta)
        W = w * p * (1.0 - p)
        grad = X.T @ (w * (d - p))
        H = X.T @ (W[:, None] * X)
        step = np.linalg.solve(H, grad)
        beta = beta + step
        if np.max(np.abs(step)) < 1e-13 * (1.0 + np.max(np.abs(beta))):
            break
    return beta


def _sigmoid(X: FloatArray, beta: FloatArray) -> FloatArray:
    return np.asarray(1.0 / (1.0 + np.exp(-(X @ beta))))


def _wls(y: FloatArray, X: FloatArray, w: FloatArray) -> FloatArray:
    Xw = X * w[:, None]
    return np.asarray(np.linalg.solve(X.T @ Xw, Xw.T @ y))


@dataclass(frozen=True)
class CellFit:
    """A fitted panel 2x2 cell: its ATT and the constants of its influence function.

    With these, :func:`cell_influence` gives any unit's influence function from
    the unit's own data, so the units x cells matrix never has to be stored.
    """

    att: float
    method: str
    wbar: float  # mean input weight over the cell's units
    gamma: FloatArray | None  # propensity-score logit coefficients (dr, ipw)
    beta: FloatArray | None  # outcome-regression coefficients (dr, reg)
    mw1: float
    mw0: float
    a1: float  # treated-side mean (eta_t or a_t)
    a0: float  # control-side mean (eta_c or a_c)
    v_or_t: FloatArray | None  # outcome-regression estimation effect, treated side
    v_ps: FloatArray | None  # propensity-score estimation effect
    v_or_c: FloatArray | None  # outcome-regression estimation effect, control side


def fit_two_by_two(
    dy: FloatArray,
    d: FloatArray,
    X: FloatArray,
    w_in: FloatArray,
    method: str,
    gamma: FloatArray | None = None,
) -> CellFit | None:
    """Panel 2x2 DiD ATT (Sant'Anna and Zhao, 2020) and its influence-function constants.

    ``dr`` is ``DRDID::drdid_panel`` (traditional doubly robust), ``ipw`` is
    ``DRDID::std_ipw_did_panel`` and ``reg`` is ``DRDID::reg_did_panel``.
    ``gamma`` are the weighted propensity logit coefficients when the caller
    already has them (cells sharing units and covariates share them). Returns
    ``None`` when the cell cannot be estimated (as ``did`` skips it).

    The estimation-effect terms of the influence function, ``asy @ m`` with
    ``asy = (score * X) @ M`` (units x k), are kept as the k-vectors
    ``v = M @ m``: a unit's term is ``score * (X @ v)``.
    """
    n = len(d)
    wbar = float(w_in.mean())
    w = w_in / wbar
    ctrl = d == 0

    def mean_x(v: FloatArray) -> FloatArray:  # (v * X).mean(axis=0)
        return np.asarray(X.T @ v / n)

    if method in ("dr", "ipw"):
        if gamma is None:
            gamma = _logit_coef(d, X, w)
        ps = np.clip(_sigmoid(X, gamma), 1e-6, 1 - 1e-6)
        trim = np.ones(n, dtype=bool)
        trim[ctrl] = ps[ctrl] < TRIM_LEVEL
        w_treat = trim * w * d
        w_cont = trim * w * ps * (1 - d) / (1 - ps)
        mw1 = float(w_treat.mean())
        mw0 = float(w_cont.mean())
        if mw1 == 0 or mw0 == 0:
            return None
        Wps = ps * (1 - ps) * w
        hess = np.linalg.inv(X.T @ (Wps[:, None] * X)) * n
    if method in ("dr", "reg"):
        beta = _wls(dy[ctrl], X[ctrl], w[ctrl])
        out = X @ beta
        w_ols = w * (1 - d)
        gram_inv = np.linalg.inv(X.T @ (w_ols[:, None] * X) / n)
    if method == "dr":
        att_t = w_treat * (dy - out)
        att_c = w_cont * (dy - out)
        eta_t = float(att_t.mean() / mw1)
        eta_c = float(att_c.mean() / mw0)
        return CellFit(
            eta_t - eta_c,
            method,
            wbar,
            gamma,
            beta,
            mw1,
            mw0,
            eta_t,
            eta_c,
            gram_inv @ mean_x(w_treat),
            hess @ mean_x(att_c - w_cont * eta_c),
            gram_inv @ mean_x(w_cont),
        )
    if method == "ipw":
        a_t = float((w_treat * dy / mw1).mean())
        a_c = float((w_cont * dy / mw0).mean())
        mom = mean_x(w_cont * (dy - a_c)) / mw0
        return CellFit(
            a_t - a_c, method, wbar, gamma, None, mw1, mw0, a_t, a_c, None, hess @ mom, None
        )
    # reg
    w1 = w * d
    mw1 = float(w1.mean())
    if mw1 == 0 or not ctrl.any():
        return None
    eta_t = float((w1 * dy).mean() / mw1)
    eta_c = float((w1 * out).mean() / mw1)
    v = gram_inv @ mean_x(w1)
    return CellFit(eta_t - eta_c, method, wbar, None, beta, mw1, 0.0, eta_t, eta_c, v, None, None)


def cell_influence(
    f: CellFit, dy: FloatArray, d: FloatArray, X: FloatArray, w_in: FloatArray
) -> FloatArray:
    """Influence function of a fitted cell for any of its units (subset scale)."""
    w = w_in / f.wbar
    if f.gamma is not None:
        ps = np.clip(_sigmoid(X, f.gamma), 1e-6, 1 - 1e-6)
        trim = (d != 0) | (ps < TRIM_LEVEL)
        w_treat = trim * w * d
        w_cont = trim * w * ps * (1 - d) / (1 - ps)
        score_ps = w * (d - ps)
    if f.beta is not None:
        out = X @ f.beta
        score_or = w * (1 - d) * (dy - out)
    if f.method == "dr":
        assert f.v_or_t is not None and f.v_ps is not None and f.v_or_c is not None
        att_t = w_treat * (dy - out)
        att_c = w_cont * (dy - out)
        inf_t = (att_t - w_treat * f.a1 - score_or * (X @ f.v_or_t)) / f.mw1
        inf_c = (
            att_c - w_cont * f.a0 + score_ps * (X @ f.v_ps) - score_or * (X @ f.v_or_c)
        ) / f.mw0
        return np.asarray(inf_t - inf_c)
    if f.method == "ipw":
        assert f.v_ps is not None
        e_t = w_treat * dy / f.mw1
        e_c = w_cont * dy / f.mw0
        inf_t = e_t - w_treat * f.a1 / f.mw1
        inf_c = e_c - w_cont * f.a0 / f.mw0
        return np.asarray(inf_t - (inf_c + score_ps * (X @ f.v_ps)))
    assert f.v_or_t is not None
    w1 = w * d
    inf_t = (w1 * dy - w1 * f.a1) / f.mw1
    inf_c = (w1 * out - w1 * f.a0 + score_or * (X @ f.v_or_t)) / f.mw1
    return np.asarray(inf_t - inf_c)


def _cell_feasible(d: FloatArray, X: FloatArray, method: str, ps: FloatArray | None) -> str | None:
    """The pre-checks of ``did::compute.att_gt``: overlap (``ps``: the unweighted
    propensity fit) and a solvable outcome regression."""
    if ps is not None and np.max(ps) >= OVERLAP_LEVEL:
        return "overlap violated (propensity score >= 0.999)"
    if method in ("dr", "reg"):
        Xc = X[d == 0]
        gram = Xc.T @ Xc
        if np.linalg.cond(gram) > 1.0 / np.finfo(float).eps:
            return "too few control units to fit the outcome regression"
    return None


def _covariate_periods(Xt: FloatArray | None, T: int) -> list[int]:
    """For each period, the first period with the same covariate values (fit sharing key)."""
    if Xt is None:
        return [0] * T
    if Xt.strides[0] == 0:  # broadcast view: time-invariant by construction
        return [0] * T
    key = list(range(T))
    for k in range(1, T):
        if np.array_equal(Xt[k], Xt[k - 1]):
            key[k] = key[k - 1]
    return key


def _cluster_sums(cluster: NDArray[np.int64], B: FloatArray, ncl: int) -> FloatArray:
    """Rows of ``B`` summed within clusters (a sparse indicator product, not ``np.add.at``)."""
    from scipy import sparse

    n = len(cluster)
    ind = sparse.csr_array((np.ones(n), (cluster, np.arange(n))), shape=(ncl, n))
    return np.asarray(ind @ B)


def estimate_rows(
    Y: FloatArray,
    G: FloatArray,
    w: FloatArray,
    Xt: FloatArray | None,
    cohorts: FloatArray,
    plans: list[CellPlan],
    method: str,
    cluster: NDArray[np.int64] | None,
    chunk_bytes: int = 64 << 20,
) -> CellSet:
    """Row path: every cell from unit-level data. ``Y`` is units x periods.

    ``Xt`` is periods x units x k (intercept included), or ``None`` for an
    intercept only; a read-only broadcast view (time-invariant covariates)
    is fine. ``w`` are unit weights normalised to mean one.

    Two passes. The first fits every cell (:func:`fit_two_by_two`); cells
    with the same units (cohort and control cohorts) and covariate values
    share one propensity-score fit (with ``control="never"`` and
    time-invariant covariates, one per cohort), and without weights the
    overlap check reuses the estimation fit (the same computation). The
    second evaluates the influence functions block by block of units
    (``chunk_bytes`` per block) and adds each block's cross-products to the
    covariance, so memory stays ``units x (periods + covariates)`` rather than
    ``units x cells``.
    """
    xkey = _covariate_periods(Xt, Y.shape[1])
    kept, fitted, ncell, skipped = _fit_cells(Y, G, w, Xt, plans, method, xkey)
    sigma = _row_sigma(
        Y, G, w, Xt, cohorts, kept, fitted, ncell, cluster, xkey=xkey, chunk_bytes=chunk_bytes
    )
    return CellSet(
        tuple(kept),
        np.asarray([0.0 if f is None else f.att for f in fitted], dtype=float),
        np.asarray(ncell, dtype=np.int64),
        sigma,
        tuple(skipped),
    )


def _fit_cells(
    Y: FloatArray,
    G: FloatArray,
    w: FloatArray,
    Xt: FloatArray | None,
    plans: list[CellPlan],
    method: str,
    xkey: list[int],
) -> tuple[list[CellPlan], list[CellFit | None], list[int], list[tuple[float, float, str]]]:
    """Pass 1 of :func:`estimate_rows`: fit every cell (kept plans, their fits, None for
    universal-base reference rows, units per cell, and the cells skipped with why)."""
    n = Y.shape[0]
    kept: list[CellPlan] = []
    fitted: list[CellFit | None] = []  # None for universal-base reference rows
    ncell: list[int] = []
    skipped: list[tuple[float, float, str]] = []
    ones = np.ones((n, 1))
    unweighted = bool(np.all(w == 1.0))
    sub_key: tuple[float, tuple[float, ...]] | None = None
    sub = np.zeros(0, dtype=np.int64)  # the cell's units (positions)
    fit_key: tuple[float, tuple[float, ...], int] | None = None
    fit_val: tuple[str | None, FloatArray | None] = (None, None)
    X = ones
    for p in plans:
        if p.reference:
            kept.append(p)
            fitted.append(None)
            ncell.append(int(np.sum(np.equal(G, p.group))))
            continue
        key = (p.group, p.control_cohorts)
        if key != sub_key:  # plans come cohort by cohort: keep the last subset only
            treat = np.equal(G, p.group)
            ctl = np.isin(G, np.asarray(p.control_cohorts))
            ok = treat.any() and ctl.any()
            sub = np.flatnonzero(treat | ctl) if ok else np.zeros(0, dtype=np.int64)
            d = np.equal(G[sub], p.group).astype(float)
            sub_key = key
        if len(sub) == 0:
            skipped.append((p.group, p.time, "no treated or no control units"))
            continue
        xi = min(p.base_idx, p.t_idx)
        fkey = (*key, xkey[xi])
        if fkey != fit_key:
            X = ones[sub] if Xt is None else Xt[xi][sub]
            g_unw = _logit_coef(d, X, np.ones(len(d))) if method in ("dr", "ipw") else None
            ps_unw = _sigmoid(X, g_unw) if g_unw is not None else None
            reason = _cell_feasible(d, X, method, ps_unw)
            gamma = None
            if reason is None and g_unw is not None:
                gamma = g_unw if unweighted else _logit_coef(d, X, w[sub] / w[sub].mean())
            fit_key, fit_val = fkey, (reason, gamma)
        reason, gamma = fit_val
        if reason is not None:
            skipped.append((p.group, p.time, reason))
            continue
        dy = Y[sub, p.t_idx] - Y[sub, p.base_idx]
        f = fit_two_by_two(dy, d, X, w[sub], method, gamma)
        if f is None:
            skipped.append((p.group, p.time, "no effective control units after trimming"))
            continue
        kept.append(p)
        fitted.append(f)
        ncell.append(len(d))
    return kept, fitted, ncell, skipped


def _row_sigma(
    Y: FloatArray,
    G: FloatArray,
    w: FloatArray,
    Xt: FloatArray | None,
    cohorts: FloatArray,
    kept: list[CellPlan],
    fitted: list[CellFit | None],
    ncell: list[int],
    cluster: NDArray[np.int64] | None,
    *,
    xkey: list[int],
    chunk_bytes: int,
) -> FloatArray:
    """Pass 2 of :func:`estimate_rows`: the covariance of the cells and cohort shares,
    from the influence functions evaluated block by block of units."""
    n = Y.shape[0]
    ones = np.ones((n, 1))
    K = len(kept)
    pg = np.array([np.mean(w * np.equal(G, g)) for g in cohorts])
    P = K + len(cohorts)
    ncl = int(cluster.max()) + 1 if cluster is not None else 0
    acc = np.zeros((ncl, P)) if cluster is not None else np.zeros((P, P))
    rows = max(256, chunk_bytes // (8 * P))
    for r0 in range(0, n, rows):
        r1 = min(n, r0 + rows)
        Gc, wc, Yc = G[r0:r1], w[r0:r1], Y[r0:r1]
        Bc = np.zeros((r1 - r0, P), order="F")
        mkey: tuple[float, tuple[float, ...]] | None = None
        xk: tuple[float, tuple[float, ...], int] | None = None
        for j, (p, f) in enumerate(zip(kept, fitted, strict=True)):
            if f is None:
                continue
            if (p.group, p.control_cohorts) != mkey:
                mkey = (p.group, p.control_cohorts)
                m = np.flatnonzero(np.equal(Gc, p.group) | np.isin(Gc, p.control_cohorts))
                d = np.equal(Gc[m], p.group).astype(float)
                wm = wc[m]
            if len(m) == 0:
                continue
            xi = min(p.base_idx, p.t_idx)
            if (*mkey, xkey[xi]) != xk:
                xk = (*mkey, xkey[xi])
                X = ones[r0:r1][m] if Xt is None else Xt[xi][r0:r1][m]
            dy = Yc[m, p.t_idx] - Yc[m, p.base_idx]
            Bc[m, j] = cell_influence(f, dy, d, X, wm) * (n / ncell[j])
        Bc[:, K:] = wc[:, None] * (Gc[:, None] == cohorts[None, :]) - pg[None, :]
        if cluster is not None:
            acc += _cluster_sums(cluster[r0:r1], Bc, ncl)
        else:
            acc += Bc.T @ Bc
    return np.asarray((acc.T @ acc if cluster is not None else acc) / n**2, dtype=float)


# -------------------------------------------------------------------------- moment path


@dataclass(frozen=True)
class CohortMoments:
    """Per-cohort sufficient statistics of a balanced panel (no covariates).

    With ``u_i = [1, w_i, w_i * y_i1, ..., w_i * y_iT]`` (weights normalised to
    mean one over all units): ``count[c]`` units, ``wsum[c] = sum w``,
    ``wy[c] = sum w * y`` (length T) and ``M[c] = sum u u'``. With clusters,
    ``U[cl, c] = sum of u over the units of cohort c in cluster cl``.
    """

    cohorts: FloatArray  # sorted, inf (never treated) last if present
    count: NDArray[np.int64]
    wsum: FloatArray
    wy: FloatArray  # C x T
    M: FloatArray  # C x (T+2) x (T+2)
    U: FloatArray | None  # n_clusters x C x (T+2)
    n: int
    # unbalanced panels: u_i = [1, w, w*y*obs (T), w*obs (T)]; wobs = sum w*obs (C x T),
    # nobs = number of observed rows (C x T)
    wobs: FloatArray | None = None
    nobs: FloatArray | None = None


def _crossprod(X: FloatArray, block: int = 256) -> FloatArray:
    """``X' X`` for a tall ``n x p`` array, as a sum of stacked ``block x p`` products.

    Small products keep OpenBLAS on one thread: its threaded ``dgemm`` on a tall
    thin matrix is many times slower on a shared, loaded machine (measured
    3.2 s against 0.06 s for 1 M x 24) and no faster on an idle one.
    """
    n, p = X.shape
    m = (n // block) * block
    S = X[:m].reshape(-1, block, p)
    out = np.matmul(S.transpose(0, 2, 1), S).sum(axis=0) if m else np.zeros((p, p))
    rest = X[m:]
    return np.asarray(out + rest.T @ rest, dtype=float)


def moments_from_wide(
    Y: FloatArray,
    G: FloatArray,
    w: FloatArray,
    cluster: NDArray[np.int64] | None,
    obs: NDArray[np.bool_] | None = None,
) -> CohortMoments:
    """Cohort moments from a wide units x periods array (weights mean one).

    ``obs`` (units x periods) marks observed cells of an unbalanced panel;
    missing cells of ``Y`` are ignored.
    """
    cohorts = np.unique(G)
    n, T = Y.shape
    C = len(cohorts)
    code = np.searchsorted(cohorts, G)
    count = np.bincount(code, minlength=C).astype(np.int64)
    width = T + 2 if obs is None else 2 * T + 2
    u = np.empty((n, width))
    u[:, 0] = 1.0
    u[:, 1] = w
    if obs is None:
        u[:, 2:] = w[:, None] * Y
    else:
        u[:, 2 : T + 2] = np.where(obs, w[:, None] * np.nan_to_num(Y), 0.0)
        u[:, T + 2 :] = w[:, None] * obs
    M = np.zeros((C, width, width))
    order = np.argsort(code, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(count)])
    us = u[order]
    for c in range(C):
        M[c] = _crossprod(us[bounds[c] : bounds[c + 1]])
    wsum = M[:, 0, 1].copy()
    wy = M[:, 0, 2 : T + 2].copy()
    U = None
    if cluster is not None:
        ncl = int(cluster.max()) + 1
        U = np.zeros((ncl, C, width))
        np.add.at(U, (cluster, code), u)
    if obs is None:
        return CohortMoments(cohorts, count, wsum, wy, M, U, n)
    nobs = np.zeros((C, T))
    np.add.at(nobs, code, obs.astype(float))
    return CohortMoments(cohorts, count, wsum, wy, M, U, n, M[:, 0, T + 2 :].copy(), nobs)


def estimate_moments(
    mom: CohortMoments, cohorts: FloatArray, plans: list[CellPlan], method: str
) -> CellSet:
    """Moment path: the cells and their influence-function covariance from cohort sums."""
    C = len(mom.cohorts)
    n = mom.n
    pos = {float(c): i for i, c in enumerate(mom.cohorts)}
    kept: list[CellPlan] = []
    atts: list[float] = []
    ncell: list[int] = []
    thetas: list[FloatArray] = []  # each C x (T+2)
    skipped: list[tuple[float, float, str]] = []
    ub = mom.wobs is not None and mom.nobs is not None
    width = mom.M.shape[1]
    for p in plans:
        theta = np.zeros((C, width))
        gi = pos.get(p.group)
        if p.reference:
            kept.append(p)
            atts.append(0.0)
            ncell.append(int(mom.count[gi]) if gi is not None else 0)
            thetas.append(theta)
            continue
        ci = [pos[c] for c in p.control_cohorts if c in pos]
        n1 = int(mom.count[gi]) if gi is not None else 0
        n0 = int(sum(mom.count[i] for i in ci))
        if gi is None or n1 == 0 or n0 == 0:
            skipped.append((p.group, p.time, "no treated or no control units"))
            continue
        if ub:
            res = _rc_cell(mom, gi, ci, p.t_idx, p.base_idx, method, n)
            if isinstance(res, str):
                skipped.append((p.group, p.time, res))
                continue
            att, th, ncount = res
            kept.append(p)
            atts.append(att)
            ncell.append(ncount)
            thetas.append(th)
            continue
        if method in ("dr", "ipw") and n1 / (n1 + n0) >= OVERLAP_LEVEL:
            skipped.append((p.group, p.time, "overlap violated (propensity score >= 0.999)"))
            continue
        W1 = mom.wsum[gi]
        W0 = float(sum(mom.wsum[i] for i in ci))
        if method in ("dr", "ipw"):
            ps = min(max(W1 / (W1 + W0), 1e-6), 1 - 1e-6)
            if ps >= TRIM_LEVEL:
                skipped.append((p.group, p.time, "no effective control units after trimming"))
                continue
        m1 = (mom.wy[gi, p.t_idx] - mom.wy[gi, p.base_idx]) / W1
        m0 = float(sum(mom.wy[i, p.t_idx] - mom.wy[i, p.base_idx] for i in ci)) / W0
        theta[gi, 1] = -n * m1 / W1
        theta[gi, 2 + p.t_idx] = n / W1
        theta[gi, 2 + p.base_idx] = -n / W1
        for i in ci:
            theta[i, 1] = n * m0 / W0
            theta[i, 2 + p.t_idx] = -n / W0
            theta[i, 2 + p.base_idx] = n / W0
        kept.append(p)
        atts.append(m1 - m0)
        ncell.append(n1 + n0)
        thetas.append(theta)
    pg = np.array([mom.wsum[pos[float(g)]] / n if float(g) in pos else 0.0 for g in cohorts])
    for j, g in enumerate(cohorts):
        theta = np.zeros((C, width))
        theta[:, 0] = -pg[j]
        if float(g) in pos:
            theta[pos[float(g)], 1] = 1.0
        thetas.append(theta)
    Theta = np.stack(thetas, axis=-1)  # C x width x P
    if mom.U is not None:
        S = mom.U.reshape(mom.U.shape[0], -1) @ Theta.reshape(-1, Theta.shape[2])
        sigma = S.T @ S / n**2
    else:
        sigma = _sandwich(mom.M, Theta) / n**2
    return CellSet(
        tuple(kept),
        np.asarray(atts, dtype=float),
        np.asarray(ncell, dtype=np.int64),
        sigma,
        tuple(skipped),
    )


def _sandwich(M: FloatArray, Theta: FloatArray) -> FloatArray:
    """``sum_c Theta_c' M_c Theta_c`` as one matrix product.

    A loop over cohorts of small BLAS products has long tail latencies on a
    busy machine (threads started for every call: measured 12 ms median but
    650 ms worst case for 50 k units x 24 periods, against 4-6 ms and 20-37 ms).
    """
    P = Theta.shape[2]
    MT = np.matmul(M, Theta)
    sigma = Theta.reshape(-1, P).T @ MT.reshape(-1, P)
    return np.asarray((sigma + sigma.T) / 2)


def _rc_cell(
    mom: CohortMoments, gi: int, ci: list[int], t: int, b: int, method: str, n: int
) -> tuple[float, FloatArray, int] | str:
    """One cell of an unbalanced panel: R ``did``'s ``allow_unbalanced_panel`` estimator.

    Without covariates the repeated cross-section estimators of ``DRDID``
    (``drdid_rc``, ``std_ipw_did_rc``, ``reg_did_rc``) all reduce to a
    difference of four weighted means over the observed rows, and the unit's
    influence function is the sum of its rows' contributions.
    """
    wobs = mom.wobs if mom.wobs is not None else np.zeros_like(mom.wy)
    nobs = mom.nobs if mom.nobs is not None else np.zeros_like(mom.wy)
    C, T = mom.wy.shape[0], mom.wy.shape[1]
    W1t, W1b = wobs[gi, t], wobs[gi, b]
    W0t = float(sum(wobs[i, t] for i in ci))
    W0b = float(sum(wobs[i, b] for i in ci))
    r1 = nobs[gi, t] + nobs[gi, b]
    r0 = float(sum(nobs[i, t] + nobs[i, b] for i in ci))
    if min(W1t, W1b, W0t, W0b) <= 0:
        return "no treated or no control observations in the period or its base period"
    if method in ("dr", "ipw"):
        if r1 / (r1 + r0) >= OVERLAP_LEVEL:
            return "overlap violated (propensity score >= 0.999)"
        ps = min(max((W1t + W1b) / (W1t + W1b + W0t + W0b), 1e-6), 1 - 1e-6)
        if ps >= TRIM_LEVEL:
            return "no effective control units after trimming"
    m1t, m1b = mom.wy[gi, t] / W1t, mom.wy[gi, b] / W1b
    m0t = float(sum(mom.wy[i, t] for i in ci)) / W0t
    m0b = float(sum(mom.wy[i, b] for i in ci)) / W0b
    th = np.zeros((C, 2 * T + 2))
    for rows, sign, (Wt, Wb, mt, mb) in (
        ([gi], 1.0, (W1t, W1b, m1t, m1b)),
        (ci, -1.0, (W0t, W0b, m0t, m0b)),
    ):
        for i in rows:
            th[i, 2 + t] = sign * n / Wt
            th[i, 2 + b] = -sign * n / Wb
            th[i, 2 + T + t] = -sign * n * mt / Wt
            th[i, 2 + T + b] = sign * n * mb / Wb
    n_units = int(mom.count[gi] + sum(mom.count[i] for i in ci))
    return float((m1t - m1b) - (m0t - m0b)), th, n_units
