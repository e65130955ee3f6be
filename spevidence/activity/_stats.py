"""Confidence intervals and funnel-plot limits used by the activity and equity tables.

- Wilson score interval for a proportion (Wilson 1927, *JASA* 22:209; recommended by
  Brown, Cai & DasGupta 2001, *Statistical Science* 16:101).
- Exact (Garwood 1936) interval for a Poisson count, via the chi-squared distribution.
- Funnel-plot control limits for a proportion, exact binomial with the interpolation of
  Spiegelhalter (2005), "Funnel plots for comparing institutional performance",
  *Statistics in Medicine* 24:1185-1202, appendix A.1.1.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats


def _z(level: float) -> float:
    return float(stats.norm.ppf(0.5 + level / 2.0))


def wilson_interval(
    k: np.ndarray | pd.Series | float, n: np.ndarray | pd.Series | float, *, level: float = 0.95
) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for ``k`` successes out of ``n`` (vectorised; NaN where n = 0)."""
    k_arr = np.asarray(k, dtype=float)
    n_arr = np.asarray(n, dtype=float)
    z = _z(level)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = k_arr / n_arr
        denom = 1.0 + z**2 / n_arr
        centre = (p + z**2 / (2.0 * n_arr)) / denom
        half = z * np.sqrt(p * (1.0 - p) / n_arr + z**2 / (4.0 * n_arr**2)) / denom
    low = np.where(k_arr <= 0, 0.0, np.clip(centre - half, 0.0, 1.0))
    high = np.where(k_arr >= n_arr, 1.0, np.clip(centre + half, 0.0, 1.0))
    low = np.where(n_arr > 0, low, np.nan)
    high = np.where(n_arr > 0, high, np.nan)
    return low, high


def poisson_exact_interval(
    k: np.ndarray | pd.Series | float, *, level: float = 0.95
) -> tuple[np.ndarray, np.ndarray]:
    """Exact (Garwood) interval for a Poisson count ``k`` (the mean count, not a rate)."""
    k_arr = np.asarray(k, dtype=float)
    alpha = 1.0 - level
    low = np.where(k_arr > 0, stats.chi2.ppf(alpha / 2.0, 2.0 * k_arr) / 2.0, 0.0)
    high = stats.chi2.ppf(1.0 - alpha / 2.0, 2.0 * k_arr + 2.0) / 2.0
    return np.asarray(low, dtype=float), np.asarray(high, dtype=float)


def funnel_limits(
    target: float, n: np.ndarray | pd.Series | float, *, level: float
) -> tuple[np.ndarray, np.ndarray]:
    """Exact binomial funnel limits (proportions) at denominators ``n`` around ``target``.

    For the upper limit with tail probability ``p = 1 - (1 - level)/2``: ``r`` is the
    smallest count with ``F(r) >= p``, ``a = (F(r) - p) / (F(r) - F(r - 1))`` and the limit
    is ``(r - a) / n`` (Spiegelhalter 2005, appendix A.1.1); the lower limit uses
    ``p = (1 - level)/2`` the same way. Limits are clipped to [0, 1] and kept on their own
    side of the target (the interpolation can cross it when ``n * target`` is tiny).
    """
    n_arr = np.atleast_1d(np.asarray(n, dtype=float))
    out: list[np.ndarray] = []
    for p in ((1.0 - level) / 2.0, 1.0 - (1.0 - level) / 2.0):
        r = stats.binom.ppf(p, n_arr, target)
        f_r = stats.binom.cdf(r, n_arr, target)
        f_r1 = stats.binom.cdf(r - 1, n_arr, target)
        with np.errstate(divide="ignore", invalid="ignore"):
            a = np.where(f_r > f_r1, (f_r - p) / (f_r - f_r1), 0.0)
            lim = np.where(n_arr > 0, (r - a) / n_arr, np.nan)
        out.append(np.clip(lim, 0.0, 1.0))
    # with very small expected counts the interpolation can cross the target: keep the
    # limits on their own side of it
    return np.minimum(out[0], target), np.maximum(out[1], target)
