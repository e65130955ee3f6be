"""Aggregation of group-time ATTs (R ``did::aggte``) and the multiplier bootstrap.

The arithmetic behind :meth:`spevidence.did._results.ATTgt.aggregate`: per level its
estimate and its column of weights on ``[cells | cohort shares]`` (the weights'
influence function included), then the standard errors, analytic or by the Gaussian
multiplier bootstrap. Callaway and Sant'Anna (2021), sections 3 and 4.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal, Protocol

import numpy as np
from numpy.typing import NDArray
from scipy import stats

from spevidence.errors import EstimationError

FloatArray = NDArray[np.float64]
SE_EPS = float(np.sqrt(np.finfo(float).eps)) * 10  # R did's threshold for "zero variance"


class Cells(Protocol):
    """What the aggregation reads of a group-time result (:class:`ATTgt`)."""

    @property
    def groups(self) -> FloatArray: ...
    @property
    def times(self) -> FloatArray: ...
    @property
    def att(self) -> FloatArray: ...
    @property
    def alpha(self) -> float: ...
    @property
    def cohort_sizes(self) -> dict[float, int]: ...
    @property
    def cohort_shares(self) -> FloatArray: ...
    @property
    def _sigma(self) -> FloatArray: ...
    @property
    def _cohorts(self) -> FloatArray: ...


def sqrtm_psd(S: FloatArray) -> FloatArray:
    vals, vecs = np.linalg.eigh((S + S.T) / 2)
    vals = np.clip(vals, 0.0, None)
    return np.asarray((vecs * np.sqrt(vals)) @ vecs.T)


def bootstrap_draws(
    sigma: FloatArray, L: FloatArray, biters: int, seed: int, alpha: float
) -> tuple[FloatArray, float]:
    """Gaussian multiplier bootstrap: bootstrap SEs (IQR rule) and the sup-t critical value.

    Draws ``sigma^{1/2} z`` with ``z ~ N(0, I)``: exactly the conditional law of
    ``sum_i v_i psi_i / n`` with standard normal multipliers ``v_i`` (the
    multiplier bootstrap of Callaway and Sant'Anna 2021, section 4, with
    Gaussian rather than Mammen weights), computed from the influence-function
    covariance so the moment and row paths give the same draws.
    """
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((biters, sigma.shape[0]))
    draws = z @ (sqrtm_psd(sigma) @ L)
    q75, q25 = np.quantile(draws, [0.75, 0.25], axis=0)
    se = (q75 - q25) / (stats.norm.ppf(0.75) - stats.norm.ppf(0.25))
    ok = se > SE_EPS
    se = np.where(ok, se, np.nan)
    if not ok.any():
        return se, float(stats.norm.ppf(1 - alpha / 2))
    tmax = np.max(np.abs(draws[:, ok]) / se[ok], axis=1)
    crit = float(np.quantile(tmax, 1 - alpha))
    return se, max(crit, float(stats.norm.ppf(1 - alpha / 2)))


def wif_coef(
    keep_groups: FloatArray, keep_att: FloatArray, cohorts: FloatArray, pg: FloatArray
) -> FloatArray:
    """Coefficients on the cohort-share influence functions of ``did``'s ``wif``."""
    gi = np.searchsorted(cohorts, keep_groups)
    pk = pg[gi]
    s = pk.sum()
    b = np.zeros(len(cohorts))
    np.add.at(b, gi, keep_att / s)
    cnt = np.bincount(gi, minlength=len(cohorts))
    b -= cnt * float(pk @ keep_att) / s**2
    return b


@dataclass(frozen=True)
class Levels:
    """An aggregation before inference: per level its estimate, its column of weights
    on ``[cells | cohort shares]`` and its treated units; the overall summary likewise."""

    levels: list[float]
    ests: list[float]
    cols: list[FloatArray]
    nlev: list[int]
    overall: float
    ocol: FloatArray


def wmean_col(r: Cells, mask: NDArray[np.bool_]) -> tuple[float, FloatArray]:
    """Cohort-share weighted mean of the cells in ``mask`` and its weight column
    (including the weights' influence function)."""
    K = len(r.att)
    cohorts, pg = r._cohorts, r.cohort_shares
    pgk = pg[np.searchsorted(cohorts, r.groups)]
    col = np.zeros(K + len(cohorts))
    w = pgk[mask] / pgk[mask].sum()
    col[:K][mask] = w
    est = float(w @ r.att[mask])
    col[K:] = wif_coef(r.groups[mask], r.att[mask], cohorts, pg)
    return est, col


def dynamic_levels(r: Cells, min_e: float, max_e: float, balance_e: int | None) -> Levels:
    g_, t_ = r.groups, r.times
    e_ = t_ - g_
    incl = np.ones(len(r.att), dtype=bool)
    evs = np.unique(e_)
    if balance_e is not None:
        tmax, tmin = t_.max(), t_.min()
        incl = (tmax - g_) >= balance_e
        evs = np.unique(e_[incl])
        evs = evs[(evs >= balance_e - tmax + tmin) & (evs <= balance_e)]
    evs = evs[(evs >= min_e) & (evs <= max_e)]
    lv = Levels([], [], [], [], 0.0, np.zeros(0))
    for e in evs:
        m = (e_ == e) & incl
        est, col = wmean_col(r, m)
        lv.levels.append(float(e))
        lv.ests.append(est)
        lv.cols.append(col)
        lv.nlev.append(n_treated(r, g_[m]))
    post = np.asarray(lv.levels) >= 0
    if not post.any():
        raise EstimationError(
            "aggregate('dynamic'): no post-treatment event times in the window "
            f"min_e={min_e}, max_e={max_e}; widen the window."
        )
    Lp = np.column_stack(lv.cols)[:, post]
    overall = float(np.mean(np.asarray(lv.ests)[post]))
    return replace(lv, overall=overall, ocol=Lp.mean(axis=1))


def group_levels(r: Cells, max_e: float) -> Levels:
    K = len(r.att)
    cohorts, pg = r._cohorts, r.cohort_shares
    g_, t_, a_ = r.groups, r.times, r.att
    lv = Levels([], [], [], [], 0.0, np.zeros(0))
    for g in cohorts:
        m = (g_ == g) & (g <= t_) & (t_ <= g + max_e)
        if not m.any():
            continue
        col = np.zeros(K + len(cohorts))
        col[:K][m] = 1.0 / m.sum()
        lv.levels.append(float(g))
        lv.ests.append(float(a_[m].mean()))
        lv.cols.append(col)
        lv.nlev.append(n_treated(r, np.array([g])))
    levels, gatt = np.asarray(lv.levels), np.asarray(lv.ests)
    pgg = pg[np.searchsorted(cohorts, levels)]
    wg = pgg / pgg.sum()
    ocol = np.column_stack(lv.cols) @ wg
    ocol[K:] += wif_coef(levels, gatt, cohorts, pg)
    return replace(lv, overall=float(wg @ gatt), ocol=ocol)


def calendar_levels(r: Cells) -> Levels:
    g_, t_ = r.groups, r.times
    lv = Levels([], [], [], [], 0.0, np.zeros(0))
    for t in np.unique(t_[t_ >= g_.min()]):
        m = (t_ == t) & (g_ <= t)
        if not m.any():
            continue
        est, col = wmean_col(r, m)
        lv.levels.append(float(t))
        lv.ests.append(est)
        lv.cols.append(col)
        lv.nlev.append(n_treated(r, g_[m]))
    return replace(lv, overall=float(np.mean(lv.ests)), ocol=np.column_stack(lv.cols).mean(axis=1))


def aggregate_se(
    r: Cells,
    L: FloatArray,
    V: FloatArray,
    has_levels: bool,
    biters: int | None,
    seed: int | None,
) -> tuple[FloatArray, float, Literal["pointwise", "uniform"]]:
    """Standard errors of the levels and (last) the overall summary, the critical value
    and the band: analytic, or by the multiplier bootstrap (uniform bands)."""
    se_all = np.sqrt(np.clip(np.diag(V), 0.0, None))
    se_all = np.where(se_all <= SE_EPS, np.nan, se_all)
    crit = float(stats.norm.ppf(1 - r.alpha / 2))
    band: Literal["pointwise", "uniform"] = "pointwise"
    if biters:
        if seed is None:
            raise EstimationError("bootstrap needs an explicit seed= (no hidden randomness).")
        se_b, crit_b = bootstrap_draws(
            r._sigma, L[:, :-1] if has_levels else L, int(biters), int(seed), r.alpha
        )
        if has_levels:
            se_ov, _ = bootstrap_draws(r._sigma, L[:, -1:], int(biters), int(seed), r.alpha)
            se_all = np.append(se_b, se_ov)
            crit, band = crit_b, "uniform"
        else:
            se_all = se_b
    return se_all, crit, band


def n_treated(r: Cells, groups: FloatArray) -> int:
    return int(sum(r.cohort_sizes.get(float(g), 0) for g in np.unique(groups)))
