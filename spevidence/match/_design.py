"""R-style model matrices and the propensity-score GLM used by MatchIt.

MatchIt builds the propensity-score design with ``model.matrix`` (treatment
contrasts: an intercept and one dummy per factor level except the first, levels
sorted) and the balance table with *all* levels of each factor
(``contrasts = FALSE``). The GLM is fitted by iteratively reweighted least
squares exactly as R's ``glm.fit`` does (same starting values, same
convergence rule ``|dev - dev_old| / (|dev| + 0.1) < 1e-8``, at most 25
iterations), so the fitted propensity scores agree with R to the last digits
that matter for matching order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd
from scipy import linalg, special, stats

from spevidence.errors import DataError, EstimationError

Link = Literal["logit", "linear.logit", "probit", "linear.probit"]

_DBL_EPS = float(np.finfo(float).eps)


def _is_categorical(s: pd.Series) -> bool:
    return not (pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s))


def _levels(s: pd.Series) -> list[object]:
    """Factor levels as R's ``factor()`` would make them (sorted unique values)."""
    if isinstance(s.dtype, pd.CategoricalDtype):
        present = set(s.dropna().unique())
        return [c for c in s.cat.categories if c in present]
    return sorted(s.dropna().unique().tolist())


def check_covariates(data: pd.DataFrame, covariates: Sequence[str], *, table: str) -> None:
    """Raise DataError for missing columns or missing/non-finite values."""
    missing = [c for c in covariates if c not in data.columns]
    if missing:
        raise DataError(
            f"{table}: covariate column(s) {missing} not found; available columns are "
            f"{list(data.columns)}. Fix the covariate names."
        )
    for c in covariates:
        s = data[c]
        bad = int(s.isna().sum())
        if not _is_categorical(s) and not pd.api.types.is_bool_dtype(s):
            bad += int((~np.isfinite(s.to_numpy(dtype=float, na_value=np.nan))).sum()) - int(
                s.isna().sum()
            )
        if bad:
            raise DataError(
                f"{table}: column {c!r} has {bad} missing or non-finite value(s) out of "
                f"{len(s)} rows; matching needs complete covariates. Impute or drop those "
                "rows first."
            )


def model_matrix(
    data: pd.DataFrame, covariates: Sequence[str], *, full_dummies: bool
) -> tuple[np.ndarray, list[str]]:
    """Expand covariates as R's ``model.matrix`` does, without the intercept column.

    ``full_dummies=False``: treatment contrasts (first level dropped), as used for
    the propensity-score model. ``full_dummies=True``: one column per level, as
    MatchIt/cobalt use for balance tables. Logical columns become ``nameTRUE``.
    """
    cols: list[np.ndarray] = []
    names: list[str] = []
    for c in covariates:
        s = data[c]
        if pd.api.types.is_bool_dtype(s):
            cols.append(s.to_numpy(dtype=float))
            names.append(f"{c}TRUE")
        elif _is_categorical(s):
            levels = _levels(s)
            use = levels if full_dummies else levels[1:]
            values = s.to_numpy(dtype=object)
            for lev in use:
                cols.append((values == lev).astype(float))
                names.append(f"{c}{lev}")
        else:
            cols.append(s.to_numpy(dtype=float))
            names.append(str(c))
    if not cols:
        return np.empty((len(data), 0)), []
    return np.column_stack(cols), names


def _linkinv(eta: np.ndarray, link: str) -> np.ndarray:
    if link == "logit":
        # R's C_logit_linkinv: exp(eta) clamped outside +-30, then x / (1 + x)
        with np.errstate(over="ignore"):
            tmp = np.where(eta < -30, _DBL_EPS, np.where(eta > 30, 1 / _DBL_EPS, np.exp(eta)))
        return np.asarray(tmp / (1 + tmp))
    thresh = -stats.norm.ppf(_DBL_EPS)
    return np.asarray(stats.norm.cdf(np.clip(eta, -thresh, thresh)))


def _mu_eta(eta: np.ndarray, link: str) -> np.ndarray:
    if link == "logit":
        with np.errstate(over="ignore"):
            opexp = 1 + np.exp(eta)
            out = np.exp(eta) / (opexp * opexp)
        return np.asarray(np.where((eta > 30) | (eta < -30), _DBL_EPS, out))
    return np.maximum(stats.norm.pdf(eta), _DBL_EPS)


def _linkfun(mu: np.ndarray, link: str) -> np.ndarray:
    if link == "logit":
        return np.asarray(np.log(mu / (1 - mu)))
    return np.asarray(stats.norm.ppf(mu))


def _binomial_deviance(y: np.ndarray, mu: np.ndarray) -> float:
    return float(2 * np.sum(special.xlogy(y, y / mu) + special.xlogy(1 - y, (1 - y) / (1 - mu))))


_CHUNK = 1 << 20


def _wls_step(X: np.ndarray, w: np.ndarray, z: np.ndarray, solver: str) -> np.ndarray:
    if solver == "cholesky":
        # normal equations accumulated over row blocks: the weighted block stays in
        # memory instead of a weighted copy of all of X (faster at millions of rows)
        k = X.shape[1]
        xtx = np.zeros((k, k))
        xtz = np.zeros(k)
        ww = w * w
        for a in range(0, X.shape[0], _CHUNK):
            Xc = X[a : a + _CHUNK]
            Xw = Xc * ww[a : a + _CHUNK, None]
            xtx += Xc.T @ Xw
            xtz += Xw.T @ z[a : a + _CHUNK]
        try:
            return np.asarray(linalg.cho_solve(linalg.cho_factor(xtx), xtz))
        except linalg.LinAlgError:
            pass
    coef, *_ = np.linalg.lstsq(X * w[:, None], z * w, rcond=None)
    return np.asarray(coef)


def fit_glm(
    X: np.ndarray,
    y: np.ndarray,
    *,
    link: Literal["logit", "probit"],
    epsilon: float = 1e-8,
    maxit: int = 25,
    solver: Literal["lstsq", "cholesky"] = "lstsq",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Binomial GLM by IRLS as in R ``glm.fit``; X must include the intercept.

    Returns (coefficients, linear predictor, fitted probabilities). ``solver="lstsq"``
    solves each weighted least-squares step by an orthogonal decomposition, as R's QR
    does (aliased columns get a minimum-norm solution; fitted values are unaffected);
    ``"cholesky"`` uses the normal equations (much faster for millions of rows; falls
    back to lstsq if X'WX is not positive definite).
    """
    y = np.asarray(y, dtype=float)
    mu = (y + 0.5) / 2.0  # binomial()$initialize with unit weights
    eta = _linkfun(mu, link)
    mu = _linkinv(eta, link)
    devold = _binomial_deviance(y, mu)
    coef = np.zeros(X.shape[1])
    converged = False
    for _ in range(maxit):
        mu_eta = _mu_eta(eta, link)
        var = mu * (1 - mu)
        z = eta + (y - mu) / mu_eta
        w = np.sqrt(mu_eta**2 / var)
        coef = _wls_step(X, w, z, solver)
        eta = X @ coef
        mu = _linkinv(eta, link)
        dev = _binomial_deviance(y, mu)
        if not np.isfinite(dev):
            raise EstimationError(
                "propensity-score model: the deviance became non-finite during fitting "
                f"({X.shape[0]} rows, {X.shape[1]} columns); remove covariates that "
                "perfectly separate the treated from the controls."
            )
        if abs(dev - devold) / (abs(dev) + 0.1) < epsilon:
            converged = True
            break
        devold = dev
    # final linear predictor accumulated column by column (as R's reference BLAS
    # dgemv does): identical covariate rows get bit-identical distances, which
    # matters for ties in the matching order and in the eCDF balance statistics
    eta = np.zeros(X.shape[0])
    for j in range(X.shape[1]):
        eta = eta + X[:, j] * coef[j]
    mu = _linkinv(eta, link)
    if not converged:
        raise EstimationError(
            f"propensity-score model did not converge in {maxit} iterations ({X.shape[0]} "
            "rows); check for covariates that perfectly predict treatment."
        )
    return coef, eta, mu


def propensity_distance(
    data: pd.DataFrame, treat: np.ndarray, covariates: Sequence[str], *, link: Link
) -> tuple[np.ndarray, np.ndarray]:
    """MatchIt ``distance = "glm"``: fitted probabilities, or the linear predictor for
    ``linear.*`` links. Returns (distance, coefficients)."""
    X, _ = model_matrix(data, covariates, full_dummies=False)
    X = np.column_stack([np.ones(len(data)), X])
    base: Literal["logit", "probit"] = "probit" if link.endswith("probit") else "logit"
    coef, eta, mu = fit_glm(X, treat, link=base)
    return (eta if link.startswith("linear") else mu), coef


def mahalanobis_transform(
    data: pd.DataFrame, covariates: Sequence[str], treat: np.ndarray
) -> np.ndarray:
    """MatchIt ``transform_covariates(method = "mahalanobis")``: covariates (factors
    as all-level dummies divided by sqrt(2)) are scaled, then multiplied by the
    pivoted Cholesky factor of the inverse pooled within-group covariance (a
    generalised inverse when it is singular), so that squared Euclidean distances
    between rows are Mahalanobis distances."""
    from scipy.linalg import lapack

    cols: list[np.ndarray] = []
    for c in covariates:
        s = data[c]
        if pd.api.types.is_bool_dtype(s):
            cols.append(s.to_numpy(dtype=float))
        elif _is_categorical(s):
            values = s.to_numpy(dtype=object)
            for lev in _levels(s):
                cols.append((values == lev).astype(float) / np.sqrt(2))
        else:
            cols.append(s.to_numpy(dtype=float))
    X = np.column_stack(cols)
    keep = (X.max(axis=0) - X.min(axis=0)) >= np.sqrt(_DBL_EPS)
    if not keep.any():
        return X[:, :1]
    X = X[:, keep]
    X = (X - X.mean(axis=0)) / X.std(axis=0, ddof=1)
    Xc = X.copy()
    for g in np.unique(treat):
        m = treat == g
        Xc[m] -= Xc[m].mean(axis=0)
    n = X.shape[0]
    var = (Xc.T @ Xc) / (n - len(np.unique(treat)))
    inv: np.ndarray | None = None
    if np.linalg.det(var) > 1e-8:
        try:
            inv = np.linalg.solve(var, np.eye(var.shape[0]))
        except np.linalg.LinAlgError:
            inv = None
    if inv is None:
        u, d, vt = np.linalg.svd(var)
        pos = d > max(1e-8 * d[0], 0)
        inv = vt.T[:, pos] @ ((1 / d[pos])[:, None] * u[:, pos].T)
    ch, piv, _rank, _info = lapack.dpstrf(np.array(inv, order="F"), tol=-1.0, lower=0)
    ch = np.triu(ch)
    p = np.argsort(piv, kind="stable")
    return np.asarray(X @ ch[:, p].T)
