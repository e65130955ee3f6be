"""Numbers derived from counts of people: means, SDs, coefficients, quantiles, p-values.

A mean over ``n`` people of whole-number data (GP appointments, days, scores) is
``sum / n`` with a whole ``sum``, so a mean given to many decimals beside a rounded
``n`` tells which of the few counts that round to ``n`` is the true one (1028/76 for
a mean of 13.526). The same holds for a difference-in-differences coefficient of a
matched 1:1 cohort (1/24 = 0.0416667 for a cohort released as 25).

The rule (one for every such number): a statistic over ``n`` people is released
rounded to a *step* ``p`` from the 1-2-5 series (..., 0.01, 0.02, 0.05, 0.1, ...), the
smallest with ``p * n_min >= 1``, where ``n_min`` is the smallest count that the
released ``n`` can stand for (``n - rounding / 2``, and above the threshold). Then for
every count that rounds to ``n`` some whole ``sum`` is consistent with the released
value (the interval ``n * (value +/- p / 2)`` is at least 1 wide), so the value
cannot tell the candidates apart. A statistic whose ``n`` is redacted, or is at or
below the threshold, is suppressed. Quantiles of whole numbers are released as whole
numbers (their interpolation fraction depends on ``n``); p-values to two
significant figures.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from spevidence.errors import DisclosureError


def step(n: float, *, threshold: int = 7, rounding: int = 5) -> float:
    """The rounding step of a statistic over a released count ``n`` (see the module).

    Examples
    --------
    >>> step(25), step(300), step(8, rounding=1)
    (0.05, 0.005, 0.2)
    """
    n_min = max(math.ceil(n - rounding / 2) if rounding > 1 else n, threshold + 1, 1)
    for k in range(-12, 13):
        for m in (1, 2, 5):
            p = m * 10.0**k
            if p * n_min >= 1 - 1e-12:
                return float(f"{p:.12g}")
    return 1e13  # pragma: no cover - n_min >= 1 always meets 1


def _on_step(v: np.ndarray, p: float) -> np.ndarray:
    decimals = max(0, -math.floor(math.log10(p))) + 1
    return np.round(np.round(v / p) * p, decimals) + 0.0  # + 0.0: no "-0.0"


def _sizes(table: pd.DataFrame, size: str, threshold: int) -> np.ndarray:
    if size not in table.columns:
        raise DisclosureError(
            f"the count {size!r} of the people behind a statistic is not in the table "
            f"({len(table)} rows), so the statistic cannot be released; add it (an estimate "
            "cached by an older version: run again without the cache)."
        )
    n = pd.to_numeric(table[size], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    return np.where(np.isfinite(n) & (n > threshold), n, np.nan)


def round_statistics(
    table: pd.DataFrame,
    columns: dict[str, str],
    *,
    threshold: int = 7,
    rounding: int = 5,
) -> pd.DataFrame:
    """Round each of ``columns`` (statistic -> the released count column of the people it
    rests on) to the step of that count, row by row; suppress it where the count is
    redacted or at most ``threshold``. Returns a copy."""
    out = table.copy()
    for col, size in columns.items():
        if col not in out.columns:
            continue
        n = _sizes(out, size, threshold)
        v = pd.to_numeric(out[col], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        res = np.full(len(v), np.nan)
        for i in np.flatnonzero(np.isfinite(n) & np.isfinite(v)):
            res[i] = _on_step(v[i : i + 1], step(n[i], threshold=threshold, rounding=rounding))[0]
        out[col] = res
    return out


def whole_quantiles(
    table: pd.DataFrame, columns: dict[str, str], *, threshold: int = 7
) -> pd.DataFrame:
    """Quantiles of whole-number data (days, contacts) as whole numbers (halves to even),
    suppressed where their count (``columns``: quantile -> count column) is redacted or
    at most ``threshold``. Returns a copy."""
    out = table.copy()
    for col, size in columns.items():
        if col not in out.columns:
            continue
        if not size:  # one value over the whole table: whole numbers only
            out[col] = np.round(pd.to_numeric(out[col], errors="coerce").astype(float))
            continue
        n = _sizes(out, size, threshold)
        v = pd.to_numeric(out[col], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        out[col] = np.where(np.isfinite(n), np.round(v), np.nan)
    return out


def significant(values: pd.Series | np.ndarray, digits: int = 2) -> np.ndarray:
    """Values (p-values) to ``digits`` significant figures; missing stays missing."""
    v = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    out = np.full(len(v), np.nan)
    ok = np.isfinite(v) & (v != 0)
    mag = np.floor(np.log10(np.abs(v[ok])))
    scale = 10.0 ** (digits - 1 - mag)
    out[ok] = np.round(v[ok] * scale) / scale
    out[np.isfinite(v) & (v == 0)] = 0.0
    return out
