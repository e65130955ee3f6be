"""Covariate balance before and after matching, with cobalt / MatchIt conventions.

For the ATT (Greifer, cobalt; MatchIt ``summary.matchit``):

* standardised mean difference = (weighted mean treated - weighted mean control) /
  SD of the treated group in the *unmatched* sample, the same denominator before
  and after matching; for a binary (0/1) variable the SD is sqrt(p (1 - p)) of the
  treated proportion, for others the (n - 1) sample SD; the raw difference in
  proportions is reported beside the SMD for binary variables;
* variance ratio = weighted variance treated / weighted variance control
  (reliability weights, as ``cov.wt``), continuous variables only;
* eCDF mean / max = mean / max absolute difference between the weighted empirical
  CDFs, evaluated at the distinct values (for binary variables both equal the
  absolute difference in proportions).

References
----------
Austin, P. C. (2009). Balance diagnostics for comparing the distribution of
baseline covariates between treatment groups in propensity-score matched samples.
Statistics in Medicine 28(25), 3083-3107.
Greifer, N. cobalt: Covariate Balance Tables and Plots (R package).
Ho, Imai, King & Stuart (2011). MatchIt. Journal of Statistical Software 42(8).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from matplotlib.figure import Figure

SMD_THRESHOLD = 0.1
_SQRT_EPS = float(np.sqrt(np.finfo(float).eps))


def _wmean(x: np.ndarray, w: np.ndarray) -> float:
    return float(np.sum(x * w) / np.sum(w))


def _wvar(x: np.ndarray, w: np.ndarray, binary: bool) -> float:
    w = w / np.sum(w)
    mx = float(np.sum(w * x))
    if binary:
        return mx * (1 - mx)
    denom = 1 - float(np.sum(w**2))
    if denom <= 0:
        return float("nan")
    return float(np.sum(w * (x - mx) ** 2) / denom)


def _ecdf_stats(x: np.ndarray, t: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    """MatchIt ``qqsum(standardize = TRUE)``: weighted eCDF differences."""
    w = w.astype(float).copy()
    for g in (0, 1):
        m = t == g
        w[m] = w[m] / w[m].sum()
    order = np.argsort(x, kind="stable")
    xo = x[order]
    wo = w[order]
    to = t[order]
    signed = np.where(to == to[0], -wo, wo)
    cs = np.abs(np.cumsum(signed))
    keep = np.append(np.diff(xo) != 0, True)
    ediff = cs[keep]
    return float(np.mean(ediff)), float(np.max(ediff))


def _usable_sd(x: np.ndarray, i1: np.ndarray, i0: np.ndarray, binary: bool, sd: float) -> float:
    """The standardising SD, or (MatchIt/cobalt) the pooled SD of this sample when
    the treated SD is zero or not finite."""
    if np.isfinite(sd) and sd >= _SQRT_EPS:
        return sd
    v1 = _wvar(x[i1], np.ones(int(i1.sum())), binary)
    v0 = _wvar(x[i0], np.ones(int(i0.sum())), binary)
    return float(np.sqrt((v1 + v0) / 2))


def balance_row(
    x: np.ndarray, t: np.ndarray, w: np.ndarray | None, sd_denominator: float | None
) -> dict[str, float]:
    """One variable's balance statistics in one sample (w=None: unweighted).

    ``sd_denominator`` is the standardising SD (treated SD in the unmatched sample);
    None computes it from this sample.
    """
    x = np.asarray(x, dtype=float)
    t = np.asarray(t, dtype=int)
    ww = np.ones(len(x)) if w is None else np.asarray(w, dtype=float)
    # zero-weight (unmatched) units stay in: they carry no weight but, as in MatchIt's
    # qqsum, their values are still evaluation points of the eCDFs
    binary = bool(np.all((x == 0) | (x == 1)))
    i1 = (t == 1) & (ww > 0)
    i0 = (t == 0) & (ww > 0)
    out: dict[str, float] = {
        "mean_treated": float("nan"),
        "mean_control": float("nan"),
        "mean_diff": float("nan"),
        "smd": float("nan"),
        "var_ratio": float("nan"),
        "ecdf_mean": float("nan"),
        "ecdf_max": float("nan"),
        "n_treated": float(i1.sum()),
        "n_control": float(i0.sum()),
    }
    if not i1.any() or not i0.any():
        return out
    m1 = _wmean(x[i1], ww[i1])
    m0 = _wmean(x[i0], ww[i0])
    diff = m1 - m0
    out.update(mean_treated=m1, mean_control=m0, mean_diff=diff)
    sd = sd_denominator
    if sd is None:
        sd = float(np.sqrt(_wvar(x[i1], np.ones(int(i1.sum())), binary)))
    if abs(diff) > _SQRT_EPS:
        sd = _usable_sd(x, i1, i0, binary, sd)
        out["smd"] = diff / sd if sd > 0 else float("nan")
    else:
        out["smd"] = 0.0 if abs(diff) == 0 else diff
    if binary:
        out["ecdf_mean"] = out["ecdf_max"] = abs(diff)
    elif i1.sum() >= 2 or i0.sum() >= 2:
        v1, v0 = _wvar(x[i1], ww[i1], False), _wvar(x[i0], ww[i0], False)
        # as R: a constant comparator group gives Inf (NaN when both are constant)
        out["var_ratio"] = v1 / v0 if v0 > 0 else (float("inf") if v1 > 0 else float("nan"))
        out["ecdf_mean"], out["ecdf_max"] = _ecdf_stats(x, t, ww)
    return out


def treated_sd(x: np.ndarray, t: np.ndarray) -> float:
    """Standardising SD for the ATT: treated group, unmatched sample."""
    x = np.asarray(x, dtype=float)
    binary = bool(np.all((x == 0) | (x == 1)))
    xt = x[np.asarray(t) == 1]
    if len(xt) == 0:
        return float("nan")
    return float(np.sqrt(_wvar(xt, np.ones(len(xt)), binary)))


@dataclass(frozen=True)
class Balance:
    """Balance of each covariate before and after matching (ATT conventions).

    Build with :func:`compute_balance` (or ``Matched.balance()``). ``table()`` is the
    wide balance table, ``tidy()`` the long one, ``plot()`` the Love plot.
    """

    frame: pd.DataFrame = field(repr=False)
    threshold: float = SMD_THRESHOLD

    def table(self) -> pd.DataFrame:
        """One row per covariate: type, means, SMD, variance ratio, eCDF stats,
        before (``*_before``) and after (``*_after``) matching."""
        return self.frame.copy()

    def tidy(self) -> pd.DataFrame:
        """Long form: variable, sample ("before"/"after"), statistic, value."""
        rows = []
        stats = (
            "mean_treated",
            "mean_control",
            "mean_diff",
            "smd",
            "var_ratio",
            "ecdf_mean",
            "ecdf_max",
            "n_treated",
            "n_control",
        )
        for _, r in self.frame.iterrows():
            for sample in ("before", "after"):
                for s in stats:
                    rows.append(
                        {
                            "variable": r["variable"],
                            "type": r["type"],
                            "sample": sample,
                            "statistic": s,
                            "value": r[f"{s}_{sample}"],
                        }
                    )
        return pd.DataFrame(rows)

    def glance(self) -> pd.DataFrame:
        """Summary: number of covariates, max |SMD| before/after, how many exceed
        the threshold after matching."""
        f = self.frame
        return pd.DataFrame(
            {
                "n_covariates": [len(f)],
                "max_abs_smd_before": [float(np.nanmax(np.abs(f["smd_before"])))],
                "max_abs_smd_after": [float(np.nanmax(np.abs(f["smd_after"])))],
                "n_above_threshold_after": [int((np.abs(f["smd_after"]) > self.threshold).sum())],
                "threshold": [self.threshold],
            }
        )

    def summary(self) -> str:
        """Plain-text balance table."""
        cols = ["variable", "type", "smd_before", "smd_after", "var_ratio_after"]
        g = self.glance().iloc[0]
        return (
            self.frame[cols].to_string(index=False, float_format=lambda v: f"{v:.4f}")
            + f"\nmax |SMD| after matching: {g['max_abs_smd_after']:.4f} "
            f"({int(g['n_above_threshold_after'])} covariate(s) above {self.threshold})"
        )

    def plot(self, *, abs_smd: bool = True) -> Figure:
        """Love plot: |SMD| of each covariate before and after matching, with the
        0.1 threshold line."""
        import matplotlib.pyplot as plt
        import seaborn as sns

        pal = sns.color_palette("colorblind")
        f = self.frame
        before = f["smd_before"].to_numpy(dtype=float)
        after = f["smd_after"].to_numpy(dtype=float)
        if abs_smd:
            before, after = np.abs(before), np.abs(after)
        y = np.arange(len(f))[::-1]
        fig, ax = plt.subplots(figsize=(7, 0.35 * len(f) + 1.6))
        ax.scatter(before, y, color=pal[1], marker="o", label="Before matching", zorder=3)
        ax.scatter(after, y, color=pal[0], marker="s", label="After matching", zorder=3)
        ax.axvline(self.threshold, color="0.4", linestyle="--", linewidth=1)
        if not abs_smd:
            ax.axvline(-self.threshold, color="0.4", linestyle="--", linewidth=1)
            ax.axvline(0, color="0.7", linewidth=0.8)
        ax.set_yticks(y)
        ax.set_yticklabels(f["variable"].tolist())
        ax.set_xlabel(
            "Absolute standardised mean difference" if abs_smd else "Standardised mean difference"
        )
        ax.set_title("Covariate balance: referred people vs matched comparators")
        ax.legend(loc="lower right", frameon=False)
        ax.grid(axis="x", alpha=0.3)
        fig.tight_layout()
        return fig

    def _repr_html_(self) -> str:
        return str(self.frame.to_html(index=False, float_format=lambda v: f"{v:.4f}"))


def compute_balance(
    X: np.ndarray,
    names: list[str],
    treat: np.ndarray,
    weights: np.ndarray,
    *,
    threshold: float = SMD_THRESHOLD,
    warn: bool = True,
    pairs: tuple[np.ndarray, np.ndarray] | None = None,
) -> Balance:
    """Balance table for covariate matrix ``X`` (columns ``names``): before = all
    units unweighted; after = units with positive matching ``weights``.

    ``pairs`` (treated rows, control rows) adds ``std_pair_dist``: the mean absolute
    within-pair difference divided by the standardising SD (MatchIt's "Std. Pair
    Dist.")."""
    t = np.asarray(treat, dtype=int)
    rows = []
    for j, name in enumerate(names):
        x = np.asarray(X[:, j], dtype=float)
        binary = bool(np.all((x == 0) | (x == 1)))
        sd = treated_sd(x, t)
        b = balance_row(x, t, None, sd)
        a = balance_row(x, t, np.asarray(weights, dtype=float), sd)
        row: dict[str, object] = {"variable": name, "type": "binary" if binary else "continuous"}
        for k, v in b.items():
            row[f"{k}_before"] = v
        for k, v in a.items():
            row[f"{k}_after"] = v
        if pairs is not None:
            pdist = float(np.mean(np.abs(x[pairs[0]] - x[pairs[1]]))) if len(pairs[0]) else np.nan
            # MatchIt (match.qoi): standardised only when the matched mean difference
            # is itself standardised (|difference| > sqrt(eps)), by the same SD
            diff = float(a["mean_diff"])
            if np.isfinite(diff) and abs(diff) > _SQRT_EPS and abs(pdist) > 1e-8:
                w = np.asarray(weights, dtype=float)
                i1, i0 = (t == 1) & (w > 0), (t == 0) & (w > 0)
                psd = _usable_sd(x, i1, i0, binary, sd)
                pdist = pdist / psd if psd > 0 else float("nan")
            row["std_pair_dist"] = pdist
        rows.append(row)
    frame = pd.DataFrame(rows)
    bal = Balance(frame=frame, threshold=threshold)
    if warn and len(frame):
        bad = frame.loc[np.abs(frame["smd_after"]) > threshold, "variable"].tolist()
        if bad:
            warnings.warn(
                f"balance: {len(bad)} covariate(s) have |SMD| > {threshold} after matching "
                f"({', '.join(map(str, bad[:10]))}); consider a tighter caliper, exact "
                "matching on them, or regression adjustment.",
                UserWarning,
                stacklevel=3,
            )
    return bal
