"""Callaway-Sant'Anna staggered-adoption difference-in-differences.

Public entry point :func:`staggered` returns an :class:`ATTgt` (group-time
average treatment effects on the treated with influence-function standard
errors); :meth:`ATTgt.aggregate` gives the ``simple`` / ``dynamic`` (event
study) / ``group`` / ``calendar`` summaries of R ``did::aggte``.

Differences from R ``did`` (2.1.2), by design:

* ``aggregate("group")``: the overall standard error uses the corrected
  weight influence function of did PR #223 (did 2.1.2 indexes it by the
  group-time cells instead of the groups); ``moderndid`` and ``csdid``
  agree with the corrected value (tested).
* ``cluster=``: analytic cluster-robust SEs (influence functions summed
  within cluster). R ``did`` clusters only through its bootstrap, which
  averages influence functions within clusters; the two agree when clusters
  have equal sizes.
* ``bootstrap=``: a Gaussian multiplier bootstrap computed from the
  influence-function covariance (R uses Mammen multipliers); seeded, and the
  same draws on the moment and row paths.

Tests check every control x method x base-period x covariate combination on
``mpdta`` against R ``did`` (via moderndid and csdid) to 1e-9.

References
----------
Callaway, B. and Sant'Anna, P. H. C. (2021). Difference-in-differences with
multiple time periods. *Journal of Econometrics* 225(2), 200-230.
Sant'Anna, P. H. C. and Zhao, J. (2020). Doubly robust difference-in-differences
estimators. *Journal of Econometrics* 219(1), 101-122.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy import stats

from spevidence._version import __version__
from spevidence.did._ibis_moments import (
    cs_moments,
    cs_moments_stream,
    cs_rows_stream,
    is_ibis_table,
    pivot_units,
    streams_units,
)
from spevidence.did._inputs import (
    negative_unit_weights,
    panel_frame,
    staggered_repeated_pairs,
    varies_within_units,
)
from spevidence.did._results import SE_EPS, guarded_wald
from spevidence.did._staggered_core import (
    CellSet,
    estimate_moments,
    estimate_rows,
    moments_from_wide,
    plan_cells,
)
from spevidence.errors import EstimationError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

Control = Literal["never", "notyet"]
Method = Literal["dr", "ipw", "reg"]
BasePeriod = Literal["varying", "universal"]
AggKind = Literal["simple", "dynamic", "group", "calendar"]
PretrendKind = Literal["cells", "leads"]
Path = Literal["auto", "moments", "rows"]

FloatArray = NDArray[np.float64]


# ----------------------------------------------------------------------------- results


@dataclass(frozen=True)
class ATTAggregate:
    """An aggregation of group-time ATTs (R ``did::aggte``).

    Attributes
    ----------
    kind : {"simple", "dynamic", "group", "calendar"}
    overall_att, overall_se : float
        The overall summary and its standard error (R names).
    levels : numpy.ndarray
        Event times (``dynamic``), cohorts (``group``) or periods (``calendar``);
        empty for ``simple``.
    att, se : numpy.ndarray
        Estimate and standard error per level.
    crit : float
        Critical value of the bands on ``att`` (uniform when bootstrapped).
    """

    kind: AggKind
    overall_att: float
    overall_se: float
    levels: FloatArray
    att: FloatArray
    se: FloatArray
    n_level: NDArray[np.int64]
    crit: float
    alpha: float
    n_units: int
    band: Literal["pointwise", "uniform"]
    settings: dict[str, Any] = field(default_factory=dict)
    estimator: str = "callaway_santanna"
    # analytic covariance of ``att`` (Callaway-Sant'Anna only; for the pre-test)
    _vcov: FloatArray = field(default_factory=lambda: np.zeros((0, 0)), repr=False, compare=False)

    def tidy(self) -> pd.DataFrame:
        """One row per estimate: the overall summary first, then each level."""
        z = stats.norm.ppf(1 - self.alpha / 2)
        col = {"dynamic": "event", "group": "group", "calendar": "time", "simple": "event"}[
            self.kind
        ]
        rows = [
            _row("overall", self.overall_att, self.overall_se, z, self.n_units)
            | {col: np.nan, "band": "pointwise"}
        ]
        for lv, a, s, nn in zip(self.levels, self.att, self.se, self.n_level, strict=True):
            rows.append(
                _row(f"{col}={_fmt(lv)}", a, s, self.crit, int(nn)) | {col: lv, "band": self.band}
            )
        return pd.DataFrame(rows)

    def glance(self) -> pd.DataFrame:
        """One-row model summary."""
        return pd.DataFrame(
            [
                {
                    "estimator": self.estimator,
                    "aggregation": self.kind,
                    "overall_att": self.overall_att,
                    "overall_se": self.overall_se,
                    "n_units": self.n_units,
                    "band": self.band,
                    "critical_value": self.crit,
                    **{k: v for k, v in self.settings.items() if not isinstance(v, dict)},
                }
            ]
        )

    def summary(self) -> str:
        """Plain-text summary."""
        lo, hi = _ci(self.overall_att, self.overall_se, stats.norm.ppf(1 - self.alpha / 2))
        lines = [
            f"{self.estimator} aggregation: {self.kind}",
            f"Overall ATT {self.overall_att:.6g} (SE {self.overall_se:.6g}), "
            f"{100 * (1 - self.alpha):.0f}% CI [{lo:.6g}, {hi:.6g}]; {self.n_units} units",
        ]
        if len(self.levels):
            lines.append(self.tidy().iloc[1:].to_string(index=False))
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        return self.tidy().to_html(index=False)

    def plot(self) -> Figure:
        """Event-study style figure: each level with its confidence interval."""
        import matplotlib.pyplot as plt
        import seaborn as sns

        pal = sns.color_palette("colorblind")
        fig, ax = plt.subplots(figsize=(7, 4))
        if len(self.levels) == 0:
            lo, hi = _ci(self.overall_att, self.overall_se, stats.norm.ppf(1 - self.alpha / 2))
            ax.errorbar(
                [0],
                [self.overall_att],
                yerr=[[self.overall_att - lo], [hi - self.overall_att]],
                fmt="o",
                color=pal[0],
                capsize=4,
            )
            ax.set_xticks([0], ["Overall"])
        else:
            pre = self.levels < 0 if self.kind == "dynamic" else np.zeros(len(self.levels), bool)
            for mask, colour, label in (
                (pre, pal[0], "Before treatment"),
                (~pre, pal[1], "From first treated period"),
            ):
                if not mask.any():
                    continue
                half = self.crit * self.se[mask]
                ax.errorbar(
                    self.levels[mask],
                    self.att[mask],
                    yerr=half,
                    fmt="o",
                    color=colour,
                    capsize=3,
                    label=label,
                )
            if self.kind == "dynamic":
                ax.legend(frameon=False)
        ax.axhline(0.0, color="grey", lw=0.8)
        xlabel = {
            "dynamic": "Periods since first treatment (0 = first treated period)",
            "group": "Cohort (period first treated)",
            "calendar": "Calendar period",
            "simple": "",
        }[self.kind]
        ax.set_xlabel(xlabel)
        ax.set_ylabel("Estimated effect on the treated (ATT)")
        ax.set_title(
            f"Staggered difference-in-differences: {self.kind} effects\n"
            f"overall {self.overall_att:.3g} (SE {self.overall_se:.3g}); "
            f"{self.band} {100 * (1 - self.alpha):.0f}% intervals"
        )
        fig.tight_layout()
        return fig


@dataclass(frozen=True)
class ATTgt:
    """Group-time average treatment effects on the treated (R ``did::att_gt``).

    Attributes
    ----------
    groups, times : numpy.ndarray
        Cohort (first treated period) and period of each cell.
    att, se : numpy.ndarray
        ATT(g, t) and its standard error (influence function, or multiplier
        bootstrap when ``bootstrap`` was given).
    vcov : numpy.ndarray
        Covariance matrix of the ATT(g, t) estimates (analytic).
    crit : float
        Critical value of the bands (uniform when bootstrapped).
    n_units : int
        Units used. ``attrition`` counts dropped rows/units by reason.
    path : {"moments", "rows"}
        Which computation was used (cohort moments or unit rows).
    """

    groups: FloatArray
    times: FloatArray
    att: FloatArray
    se: FloatArray
    analytic_se: FloatArray
    n_cell: NDArray[np.int64]
    vcov: FloatArray
    crit: float
    alpha: float
    n_units: int
    cohort_sizes: dict[float, int]
    cohort_shares: FloatArray
    path: Literal["moments", "rows"]
    attrition: pd.DataFrame
    skipped: tuple[tuple[float, float, str], ...]
    settings: dict[str, Any]
    _sigma: FloatArray = field(repr=False, compare=False)
    _cohorts: FloatArray = field(repr=False, compare=False)

    @property
    def events(self) -> FloatArray:
        """Event time ``t - g`` of each cell."""
        return self.times - self.groups

    def tidy(self) -> pd.DataFrame:
        """One row per group-time cell."""
        band = "uniform" if self.settings.get("bootstrap") else "pointwise"
        rows = []
        for g, t, a, s, nn in zip(
            self.groups, self.times, self.att, self.se, self.n_cell, strict=True
        ):
            rows.append(
                _row(f"ATT(g={_fmt(g)}, t={_fmt(t)})", a, s, self.crit, int(nn))
                | {"group": g, "time": t, "event": t - g, "post": bool(t >= g), "band": band}
            )
        return pd.DataFrame(rows)

    def glance(self) -> pd.DataFrame:
        """One-row summary: settings, units, cells, pre-trend Wald test (R ``did``'s)."""
        pt = self.pretrend_test("cells").iloc[0]
        return pd.DataFrame(
            [
                {
                    "estimator": "callaway_santanna",
                    "n_units": self.n_units,
                    "n_cells": len(self.att),
                    "n_skipped_cells": len(self.skipped),
                    "path": self.path,
                    "pretrend_test": pt["test"],
                    "pretrend_wald": pt["statistic"],
                    "pretrend_df": pt["df"],
                    "pretrend_p_value": pt["p_value"],
                    **{k: v for k, v in self.settings.items() if not isinstance(v, dict | list)},
                }
            ]
        )

    def pretrend_test(
        self, kind: PretrendKind = "cells", *, min_e: float = -math.inf
    ) -> pd.DataFrame:
        """Joint Wald (chi-square) pre-test of parallel trends: one row.

        Parameters
        ----------
        kind : {"cells", "leads"}
            ``cells`` (R ``did``'s pre-test, as printed by ``summary(att_gt)``): all
            pre-treatment ATT(g, t) are zero. ``leads``: the event-study leads of
            ``aggregate("dynamic")`` (event times ``min_e`` to -1, each averaged over the
            cohorts observed then) are zero. The cell test has one restriction per
            pre-treatment cell, and each cohort's block of its covariance is estimated
            from that cohort's units: it is reliable only when every cohort has many
            more units than pre-treatment cells. With small cohorts (tens of people and
            many periods) its chi-square reference fails and it rejects even when trends
            are parallel; test the leads then (fewer, better-estimated coefficients;
            ``min_e`` limits them to event times most cohorts reach).
        min_e : float
            ``leads`` only: the earliest event time tested.

        Returns
        -------
        pandas.DataFrame
            ``test``, ``statistic``, ``df``, ``p_value``, ``n_tested`` (coefficients
            tested), ``n_dropped`` (pre-treatment coefficients left out because their
            variance is zero or undefined, e.g. the reference period) and ``note``.
            As in R ``did``, the statistic is not reported (``NaN``, with the reason in
            ``note``) when the covariance of the tested coefficients is singular
            (reciprocal condition number at most machine epsilon).

        Notes
        -----
        The statistic is ``b' V^{-1} b`` with ``V`` the analytic (influence-function,
        cluster-robust if ``cluster`` was given) covariance, on ``df`` = the number of
        coefficients tested (R ``did`` ``att_gt``; Callaway and Sant'Anna 2021, sec. 4).
        """
        if kind == "cells":
            pre = self.times < self.groups
            return _wald_pretest(
                "cells", self.att[pre], self.analytic_se[pre], self.vcov[np.ix_(pre, pre)]
            )
        if kind != "leads":
            raise EstimationError(
                f"pretrend_test(kind={kind!r}) is not known; use 'cells' or 'leads'."
            )
        if not np.any((self.times < self.groups) & (self.times - self.groups >= min_e)):
            return _wald_pretest("leads", np.zeros(0), np.zeros(0), np.zeros((0, 0)))
        dyn = _aggregate(self, "dynamic", min_e, math.inf, None, None, None)
        pre = dyn.levels < 0
        V = dyn._vcov[np.ix_(pre, pre)]
        se = np.sqrt(np.clip(np.diag(V), 0.0, None))
        return _wald_pretest("leads", dyn.att[pre], se, V)

    def summary(self) -> str:
        """Plain-text summary of the group-time ATTs."""
        s = self.settings
        head = (
            f"Callaway-Sant'Anna group-time ATTs: control={s['control']}, method={s['method']}, "
            f"base_period={s['base_period']}, covariates={s['xformla'] or 'none'}; "
            f"{self.n_units} units, {len(self.att)} cells, path={self.path}"
        )
        return head + "\n" + self.tidy().to_string(index=False)

    def plot(self) -> Figure:
        """ATT(g, t) by event time, one series per cohort."""
        import matplotlib.pyplot as plt
        import seaborn as sns

        cohorts = np.unique(self.groups)
        pal = sns.color_palette("colorblind", len(cohorts))
        fig, ax = plt.subplots(figsize=(7, 4))
        width = 0.6 / max(len(cohorts), 1)
        for j, g in enumerate(cohorts):
            m = self.groups == g
            x = self.events[m] + (j - (len(cohorts) - 1) / 2) * width
            ax.errorbar(
                x,
                self.att[m],
                yerr=self.crit * self.se[m],
                fmt="o",
                ms=4,
                capsize=2,
                color=pal[j],
                label=f"cohort {_fmt(g)}",
            )
        ax.axhline(0.0, color="grey", lw=0.8)
        ax.axvline(-0.5, color="grey", lw=0.8, ls=":")
        ax.set_xlabel("Periods since first treatment")
        ax.set_ylabel("Estimated effect on the treated, ATT(g, t)")
        ax.set_title("Group-time effects by cohort (Callaway-Sant'Anna)")
        ax.legend(frameon=False, fontsize="small")
        fig.tight_layout()
        return fig

    def aggregate(
        self,
        kind: AggKind = "simple",
        *,
        min_e: float = -math.inf,
        max_e: float = math.inf,
        balance_e: int | None = None,
        bootstrap: int | None = None,
        seed: int | None = None,
    ) -> ATTAggregate:
        """Aggregate the group-time ATTs (Callaway and Sant'Anna 2021, section 3).

        Weights are cohort shares; their estimation error enters the standard
        errors through the weights' influence function, as in R ``did::aggte``.
        For ``group`` the overall SE uses the corrected formula of did PR #223
        (R ``did`` 2.1.2 and earlier mis-index the weight influence function).

        Parameters
        ----------
        kind : {"simple", "dynamic", "group", "calendar"}
        min_e, max_e : float
            Event-time window (``dynamic``; ``max_e`` also limits
            ``simple`` and ``group``).
        balance_e : int, optional
            ``dynamic`` only: keep cohorts observed for at least ``balance_e``
            periods after treatment.
        bootstrap, seed : int, optional
            Draws and seed for the Gaussian multiplier bootstrap (default: as
            in :func:`staggered`).
        """
        if kind not in ("simple", "dynamic", "group", "calendar"):
            raise EstimationError(
                f"aggregate(kind={kind!r}) is not known; "
                "use 'simple', 'dynamic', 'group' or 'calendar'."
            )
        biters = bootstrap if bootstrap is not None else self.settings.get("bootstrap")
        seed = seed if seed is not None else self.settings.get("seed")
        return _aggregate(self, kind, min_e, max_e, balance_e, biters, seed)

    def _repr_html_(self) -> str:
        return self.tidy().to_html(index=False)


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def _ci(est: float, se: float, crit: float) -> tuple[float, float]:
    return est - crit * se, est + crit * se


def _row(term: str, est: float, se: float, crit: float, n: int) -> dict[str, Any]:
    ok = np.isfinite(se) and se > 0
    stat = est / se if ok else math.nan
    p = float(2 * stats.norm.sf(abs(stat))) if ok else math.nan
    lo, hi = _ci(est, se, crit) if ok else (math.nan, math.nan)
    return {
        "term": term,
        "estimate": float(est),
        "std_error": float(se),
        "statistic": stat,
        "p_value": p,
        "conf_low": lo,
        "conf_high": hi,
        "n": n,
    }


PRETREND_TESTS = {"cells": "pre-treatment ATT(g,t)", "leads": "event-study leads"}


def _wald_pretest(kind: str, b: FloatArray, se: FloatArray, V: FloatArray) -> pd.DataFrame:
    """R ``did``'s Wald pre-test (:func:`guarded_wald`): zero/undefined-variance
    coefficients dropped, a singular covariance refused, else ``b' V^-1 b``."""
    stat, df, p, n_drop, note = guarded_wald(b, V, se)
    return pd.DataFrame(
        [
            {
                "test": PRETREND_TESTS[kind],
                "statistic": stat,
                "df": df,
                "p_value": p,
                "n_tested": df,
                "n_dropped": n_drop,
                "note": note,
            }
        ]
    )


# ----------------------------------------------------------------------------- bootstrap


def _sqrtm_psd(S: FloatArray) -> FloatArray:
    vals, vecs = np.linalg.eigh((S + S.T) / 2)
    vals = np.clip(vals, 0.0, None)
    return np.asarray((vecs * np.sqrt(vals)) @ vecs.T)


def _bootstrap(
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
    draws = z @ (_sqrtm_psd(sigma) @ L)
    q75, q25 = np.quantile(draws, [0.75, 0.25], axis=0)
    se = (q75 - q25) / (stats.norm.ppf(0.75) - stats.norm.ppf(0.25))
    ok = se > SE_EPS
    se = np.where(ok, se, np.nan)
    if not ok.any():
        return se, float(stats.norm.ppf(1 - alpha / 2))
    tmax = np.max(np.abs(draws[:, ok]) / se[ok], axis=1)
    crit = float(np.quantile(tmax, 1 - alpha))
    return se, max(crit, float(stats.norm.ppf(1 - alpha / 2)))


# ----------------------------------------------------------------------------- aggregation


def _wif_coef(
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


def _aggregate(
    r: ATTgt,
    kind: AggKind,
    min_e: float,
    max_e: float,
    balance_e: int | None,
    biters: int | None,
    seed: int | None,
) -> ATTAggregate:
    if kind == "simple":
        keep = (r.groups <= r.times) & (r.times <= r.groups + max_e)
        overall, ocol = _wmean_col(r, keep)
        lv = _Levels([], [], [], [], overall, ocol)
    elif kind == "dynamic":
        lv = _dynamic_levels(r, min_e, max_e, balance_e)
    elif kind == "group":
        lv = _group_levels(r, max_e)
    else:  # calendar
        lv = _calendar_levels(r)
    cols = lv.cols
    L = np.column_stack([*cols, lv.ocol]) if cols else lv.ocol[:, None]
    V = L.T @ r._sigma @ L
    se_all, crit, band = _aggregate_se(r, L, V, bool(cols), biters, seed)
    return ATTAggregate(
        kind=kind,
        overall_att=lv.overall,
        overall_se=float(se_all[-1]),
        levels=np.asarray(lv.levels, dtype=float),
        att=np.asarray(lv.ests, dtype=float),
        se=se_all[:-1] if cols else np.zeros(0),
        n_level=np.asarray(lv.nlev, dtype=np.int64),
        crit=crit,
        alpha=r.alpha,
        n_units=r.n_units,
        band=band,
        settings={
            **r.settings,
            "kind": kind,
            "min_e": min_e,
            "max_e": max_e,
            "balance_e": balance_e,
            "bootstrap": biters,
            "seed": seed,
        },
        _vcov=V[:-1, :-1] if cols else np.zeros((0, 0)),
    )


@dataclass(frozen=True)
class _Levels:
    """An aggregation before inference: per level its estimate, its column of weights
    on ``[cells | cohort shares]`` and its treated units; the overall summary likewise."""

    levels: list[float]
    ests: list[float]
    cols: list[FloatArray]
    nlev: list[int]
    overall: float
    ocol: FloatArray


def _wmean_col(r: ATTgt, mask: NDArray[np.bool_]) -> tuple[float, FloatArray]:
    """Cohort-share weighted mean of the cells in ``mask`` and its weight column
    (including the weights' influence function)."""
    K = len(r.att)
    cohorts, pg = r._cohorts, r.cohort_shares
    pgk = pg[np.searchsorted(cohorts, r.groups)]
    col = np.zeros(K + len(cohorts))
    w = pgk[mask] / pgk[mask].sum()
    col[:K][mask] = w
    est = float(w @ r.att[mask])
    col[K:] = _wif_coef(r.groups[mask], r.att[mask], cohorts, pg)
    return est, col


def _dynamic_levels(r: ATTgt, min_e: float, max_e: float, balance_e: int | None) -> _Levels:
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
    lv = _Levels([], [], [], [], 0.0, np.zeros(0))
    for e in evs:
        m = (e_ == e) & incl
        est, col = _wmean_col(r, m)
        lv.levels.append(float(e))
        lv.ests.append(est)
        lv.cols.append(col)
        lv.nlev.append(_n_treated(r, g_[m]))
    post = np.asarray(lv.levels) >= 0
    if not post.any():
        raise EstimationError(
            "aggregate('dynamic'): no post-treatment event times in the window "
            f"min_e={min_e}, max_e={max_e}; widen the window."
        )
    Lp = np.column_stack(lv.cols)[:, post]
    overall = float(np.mean(np.asarray(lv.ests)[post]))
    return replace(lv, overall=overall, ocol=Lp.mean(axis=1))


def _group_levels(r: ATTgt, max_e: float) -> _Levels:
    K = len(r.att)
    cohorts, pg = r._cohorts, r.cohort_shares
    g_, t_, a_ = r.groups, r.times, r.att
    lv = _Levels([], [], [], [], 0.0, np.zeros(0))
    for g in cohorts:
        m = (g_ == g) & (g <= t_) & (t_ <= g + max_e)
        if not m.any():
            continue
        col = np.zeros(K + len(cohorts))
        col[:K][m] = 1.0 / m.sum()
        lv.levels.append(float(g))
        lv.ests.append(float(a_[m].mean()))
        lv.cols.append(col)
        lv.nlev.append(_n_treated(r, np.array([g])))
    levels, gatt = np.asarray(lv.levels), np.asarray(lv.ests)
    pgg = pg[np.searchsorted(cohorts, levels)]
    wg = pgg / pgg.sum()
    ocol = np.column_stack(lv.cols) @ wg
    ocol[K:] += _wif_coef(levels, gatt, cohorts, pg)
    return replace(lv, overall=float(wg @ gatt), ocol=ocol)


def _calendar_levels(r: ATTgt) -> _Levels:
    g_, t_ = r.groups, r.times
    lv = _Levels([], [], [], [], 0.0, np.zeros(0))
    for t in np.unique(t_[t_ >= g_.min()]):
        m = (t_ == t) & (g_ <= t)
        if not m.any():
            continue
        est, col = _wmean_col(r, m)
        lv.levels.append(float(t))
        lv.ests.append(est)
        lv.cols.append(col)
        lv.nlev.append(_n_treated(r, g_[m]))
    return replace(lv, overall=float(np.mean(lv.ests)), ocol=np.column_stack(lv.cols).mean(axis=1))


def _aggregate_se(
    r: ATTgt,
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
        se_b, crit_b = _bootstrap(
            r._sigma, L[:, :-1] if has_levels else L, int(biters), int(seed), r.alpha
        )
        if has_levels:
            se_ov, _ = _bootstrap(r._sigma, L[:, -1:], int(biters), int(seed), r.alpha)
            se_all = np.append(se_b, se_ov)
            crit, band = crit_b, "uniform"
        else:
            se_all = se_b
    return se_all, crit, band


def _n_treated(r: ATTgt, groups: FloatArray) -> int:
    return int(sum(r.cohort_sizes.get(float(g), 0) for g in np.unique(groups)))


# ----------------------------------------------------------------------------- preparation


@dataclass(frozen=True)
class _Panel:
    Y: FloatArray
    G: FloatArray
    w: FloatArray
    Xt: FloatArray | None
    xnames: tuple[str, ...]
    times: FloatArray
    cluster: NDArray[np.int64] | None
    attrition: pd.DataFrame
    obs: NDArray[np.bool_] | None = None


def _parse_formula(xformla: str | list[str] | None) -> list[str]:
    if xformla is None:
        return []
    if isinstance(xformla, list | tuple):
        return [str(c) for c in xformla]
    rhs = xformla.split("~", 1)[-1].strip()
    if rhs in ("", "1"):
        return []
    terms = [t.strip() for t in rhs.split("+")]
    bad = [t for t in terms if not re.fullmatch(r"[A-Za-z_.][A-Za-z0-9_.]*", t)]
    if bad:
        raise EstimationError(
            f"xformla={xformla!r}: only sums of column names are supported (bad terms: {bad}); "
            "create transformed columns before calling staggered()."
        )
    return terms


def _unit_codes(ids: pd.Series) -> NDArray[np.int64]:
    """``pd.factorize(ids, sort=True)[0]``; without hashing when the ids are numbers
    already in order (a panel sorted by unit, the usual layout)."""
    v = ids.to_numpy()
    if len(v) and v.dtype.kind in "iuf" and ids.is_monotonic_increasing:
        codes = np.zeros(len(v), dtype=np.int64)
        np.cumsum(v[1:] != v[:-1], out=codes[1:])
        return codes
    return np.asarray(pd.factorize(ids, sort=True)[0], dtype=np.int64)


def _prepare(
    data: Any,
    *,
    yname: str,
    idname: str,
    tname: str,
    gname: str,
    covs: list[str],
    weights: str | None,
    cluster: str | None,
    anticipation: float,
    control: str,
    allow_unbalanced: bool = False,
) -> _Panel:
    """The cleaned balanced (or, with ``allow_unbalanced``, masked) panel as wide arrays,
    every drop counted in the attrition."""
    needed = [yname, idname, tname, gname, *covs]
    needed += [c for c in (weights, cluster) if c is not None and c not in needed]
    data = panel_frame(data, needed, "staggered")
    df = data[list(dict.fromkeys(needed))]
    attr: list[dict[str, Any]] = []
    n_rows0 = len(df)

    def record(reason: str, rows: int, units: int) -> None:
        attr.append({"reason": reason, "rows": int(rows), "units": int(units)})

    na = df[[c for c in needed if c != gname]].isna().any(axis=1).to_numpy()
    if na.any():
        record("missing outcome, period, unit, weight, cluster or covariate", int(na.sum()), 0)
        df = df.loc[~na]
    r = _unit_rows(df, idname=idname, tname=tname, gname=gname, weights=weights, cluster=cluster)
    k = _kept_units(
        r,
        record,
        gname=gname,
        anticipation=anticipation,
        control=control,
        allow_unbalanced=allow_unbalanced,
    )
    T = int(k.keep_t.sum())
    tnew = np.cumsum(k.keep_t) - 1
    sel = k.keep_t[r.tcode] & k.keep_u[r.uid]
    newid = np.cumsum(k.keep_u) - 1
    ri, ci = newid[r.uid[sel]], tnew[r.tcode[sel]]
    n = int(k.keep_u.sum())

    def wide(v: NDArray[Any]) -> FloatArray:
        out = np.full((n, T), np.nan)
        out[ri, ci] = v[sel]
        return out

    obs = None
    if k.obs_needed:
        obs = np.zeros((n, T), dtype=bool)
        obs[ri, ci] = True

    Y = wide(df[yname].to_numpy(dtype=float))
    G = k.g_u[k.keep_u]
    if r.w_row is not None:
        w = r.w_row[r.first][k.keep_u]
        if (w < 0).any():
            raise negative_unit_weights("staggered", weights, int((w < 0).sum()))
    else:
        w = np.ones(n)
    w = w / w.mean()
    cl = None
    if r.cl_row is not None and cluster != idname:
        cl = pd.factorize(r.cl_row[r.first][k.keep_u], sort=True)[0].astype(np.int64)
    Xt, xnames = _covariate_design(df, covs, wide, n, T)
    record_df = pd.DataFrame(attr, columns=["reason", "rows", "units"])
    record_df.attrs["rows_in"] = n_rows0
    return _Panel(Y, G, w, Xt, xnames, r.times_all[k.keep_t], cl, record_df, obs)


@dataclass(frozen=True)
class _UnitRows:
    """Rows coded by unit and period, with the unit-constant columns checked."""

    uid: NDArray[np.int64]
    tcode: NDArray[np.int64]
    times_all: FloatArray
    first: NDArray[np.int64]  # first row of each unit
    g_row: NDArray[Any]
    w_row: FloatArray | None
    cl_row: NDArray[np.int64] | None


def _unit_rows(
    df: pd.DataFrame,
    *,
    idname: str,
    tname: str,
    gname: str,
    weights: str | None,
    cluster: str | None,
) -> _UnitRows:
    """Code units and periods; one row per unit and period; cohort, weight and cluster
    constant within each unit."""
    uid = _unit_codes(df[idname])
    nU = int(uid.max()) + 1 if len(uid) else 0
    N = len(uid)
    tv = df[tname].to_numpy(dtype=float)
    times_all = np.unique(tv)
    tcode = np.searchsorted(times_all, tv)
    per_cell = np.bincount(uid * len(times_all) + tcode, minlength=nU * len(times_all))
    if (per_cell > 1).any():
        n_dup = int((per_cell - 1).clip(0).sum())
        raise staggered_repeated_pairs("staggered", n_dup, idname, tname)
    first = np.empty(nU, dtype=np.int64)
    first[uid[::-1]] = np.arange(N)[::-1]
    g_row = pd.to_numeric(df[gname], errors="coerce").astype(float).fillna(0.0).to_numpy()
    w_row = df[weights].to_numpy(dtype=float) if weights is not None else None
    cl_row = pd.factorize(df[cluster], sort=True)[0] if cluster is not None else None
    for arr, col, what in (
        (g_row, gname, "treatment cohort"),
        (w_row, weights, "weight"),
        (cl_row, cluster, "cluster"),
    ):
        if arr is None:
            continue
        vary = arr != arr[first][uid]
        if vary.any():
            raise varies_within_units("staggered", str(col), what, np.unique(uid[vary]).size)
    return _UnitRows(uid, tcode, times_all, first, g_row, w_row, cl_row)


@dataclass(frozen=True)
class _Kept:
    keep_u: NDArray[np.bool_]
    keep_t: NDArray[np.bool_]
    g_u: FloatArray  # cohort per unit (inf: never treated, or the comparison cohort)
    obs_needed: bool  # unbalanced units kept: the observed cells are masked


def _kept_units(
    r: _UnitRows,
    record: Any,
    *,
    gname: str,
    anticipation: float,
    control: str,
    allow_unbalanced: bool,
) -> _Kept:
    """Units and periods kept: units treated in the first period dropped, periods from
    the last cohort on when no unit is never treated, units not observed in every period
    (unless ``allow_unbalanced``); each drop recorded."""
    uid, tcode, times_all = r.uid, r.tcode, r.times_all
    nU = len(r.first)
    g_u = r.g_row[r.first]
    g_u = np.where((g_u == 0) | (g_u > times_all.max()), np.inf, g_u)
    keep_u = np.ones(nU, dtype=bool)
    rows_u = np.bincount(uid, minlength=nU)
    early = g_u <= times_all.min() + anticipation
    if early.any():
        record(
            "unit already treated in the first period", int(rows_u[early].sum()), int(early.sum())
        )
        keep_u &= ~early
    if not keep_u.any():
        raise EstimationError(
            "staggered: no rows left after dropping units treated in the first period."
        )
    keep_t = np.ones(len(times_all), dtype=bool)
    if np.isfinite(g_u[keep_u]).all():
        latest = float(g_u[keep_u].max())
        keep_t = times_all < latest - anticipation
        cut_rows = int(np.sum(keep_u[uid] & ~keep_t[tcode]))
        record(
            "no never-treated units: periods from the last cohort's treatment dropped", cut_rows, 0
        )
        if control == "never":
            g_u = np.where(g_u == latest, np.inf, g_u)
    if not np.isfinite(g_u[keep_u]).any():
        raise EstimationError(
            f"staggered: no treated units (column {gname!r}); need at least one cohort "
            "treated after the first period."
        )
    T = int(keep_t.sum())
    cnt = np.bincount(uid[keep_t[tcode]], minlength=nU)
    unb = keep_u & (cnt != T)
    obs_needed = bool(allow_unbalanced and unb.any())
    if obs_needed:
        unb = keep_u & (cnt == 0)
    if unb.any():
        record(
            "unit not observed in every period (balanced panel required)",
            int(cnt[unb].sum()),
            int(unb.sum()),
        )
        keep_u &= ~unb
    if not keep_u.any():
        raise EstimationError(
            "staggered: no unit is observed in every period; cannot form a balanced panel."
        )
    return _Kept(keep_u, keep_t, g_u, obs_needed)


def _covariate_design(
    df: pd.DataFrame, covs: list[str], wide: Any, n: int, T: int
) -> tuple[FloatArray | None, tuple[str, ...]]:
    """Covariates as periods x units x k with an intercept first (non-numeric columns
    as indicators of all but their first level), or ``None`` without covariates."""
    if not covs:
        return None, ()
    parts: list[pd.DataFrame] = []
    for c in covs:
        col = df[c]
        if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
            parts.append(col.astype(float).to_frame(c))
        else:
            dum = pd.get_dummies(col.astype(str), prefix=c, drop_first=True, dtype=float)
            parts.append(dum)
    Xdf = pd.concat(parts, axis=1)
    xnames = ("(Intercept)", *Xdf.columns.astype(str))
    arr = np.stack([wide(Xdf[c].to_numpy(dtype=float)) for c in Xdf.columns], axis=2)
    Xt = np.concatenate([np.ones((T, n, 1)), arr.transpose(1, 0, 2)], axis=2)
    return Xt, xnames


# ----------------------------------------------------------------------------- entry point


def staggered(
    data: Any,
    *,
    yname: str,
    idname: str,
    tname: str,
    gname: str,
    xformla: str | list[str] | None = None,
    control: Control = "never",
    method: Method = "dr",
    base_period: BasePeriod = "varying",
    anticipation: int = 0,
    cluster: str | None = None,
    weights: str | None = None,
    allow_unbalanced: bool = False,
    bootstrap: int | None = None,
    alpha: float = 0.05,
    seed: int | None = None,
    path: Path = "auto",
) -> ATTgt:
    """Callaway-Sant'Anna group-time average treatment effects (staggered adoption).

    For every cohort ``g`` (units first treated in period ``g``) and period
    ``t`` a two-by-two DiD compares cohort ``g`` with a control group between
    ``t`` and a base period, using the doubly robust, IPW or outcome
    regression estimator of Sant'Anna and Zhao (2020). Standard errors come
    from the influence functions (clustered by unit, or by ``cluster``).
    Reproduces R ``did::att_gt`` (panel data) option for option.

    Parameters
    ----------
    data : pandas.DataFrame
        Long panel, one row per unit and period.
    yname, idname, tname, gname : str
        Outcome, unit id, period (numeric) and cohort columns. ``gname`` is the
        first treated period, ``0`` (or missing) for never treated; cohorts
        after the last period count as never treated.
    xformla : str or list of str, optional
        Covariates, R style (``"~ lpop + region"``); non-numeric columns are
        expanded to indicators. Taken at the earlier of the two periods.
    control : {"never", "notyet"}
        Never-treated units only, or never plus not-yet-treated units.
    method : {"dr", "ipw", "reg"}
        Doubly robust, standardised inverse-probability weighting, or
        outcome regression.
    base_period : {"varying", "universal"}
        As in R ``did``: pre-treatment cells against the previous period, or
        every cell against the period before treatment (``g - 1 - anticipation``).
    anticipation : int
        Periods of anticipation before treatment.
    cluster : str, optional
        Unit-constant cluster column (e.g. practice); SEs are cluster-robust
        (sum of influence functions within cluster).
    weights : str, optional
        Unit-constant sampling weights.
    allow_unbalanced : bool
        Keep units not observed in every period (R ``did``'s
        ``allow_unbalanced_panel``: each cell uses every observed row, the
        repeated cross-section estimators, influence functions summed by
        unit). Without covariates only. Default: such units are dropped and
        counted in ``attrition``.
    bootstrap : int, optional
        Number of Gaussian multiplier bootstrap draws: bootstrap SEs and
        uniform (sup-t) bands. Needs ``seed``.
    alpha : float
        1 - confidence level.
    seed : int, optional
        Seed of :func:`numpy.random.default_rng` for the bootstrap.
    path : {"auto", "moments", "rows"}
        ``auto`` uses cohort moments when there are no covariates (the scale
        path, DESIGN.md section 6) and unit rows otherwise. For an Ibis table
        on the moment path the engine pivots the panel to one row per unit;
        DuckDB (in process) streams that pivot in Arrow batches and numpy
        forms the cohort cross-products (one scan of the data; 15.7 M units x
        22 periods in minutes, ``benchmarks/bench_national.py``), other
        engines (Spark) return the cohort moment matrices. With covariates
        (``xformla``) an Ibis table takes the row path through the engine:
        the engine cleans and pivots the panel to one row per unit (outcome
        in every period, covariates once per unit, or per period when they
        vary within units) and streams it into numpy, so memory is about
        ``units x (periods + covariates) x 8`` bytes, not the long panel; the
        per-cell regressions run in numpy and the influence functions are
        summed block by block of units (never stored as units x cells).

    Returns
    -------
    ATTgt

    References
    ----------
    Callaway, B. and Sant'Anna, P. H. C. (2021), *J. Econometrics* 225(2), 200-230.
    Sant'Anna, P. H. C. and Zhao, J. (2020), *J. Econometrics* 219(1), 101-122.
    """
    covs = _checked_options(
        control=control,
        method=method,
        base_period=base_period,
        path=path,
        allow_unbalanced=allow_unbalanced,
        xformla=xformla,
        alpha=alpha,
        bootstrap=bootstrap,
        seed=seed,
    )
    use: Literal["moments", "rows"] = (
        "moments" if (path == "moments" or (path == "auto" and not covs)) else "rows"
    )
    spec: dict[str, Any] = {
        "yname": yname,
        "idname": idname,
        "tname": tname,
        "gname": gname,
        "weights": weights,
        "anticipation": anticipation,
        "control": control,
    }
    plan = {"control": control, "base_period": base_period, "anticipation": anticipation}
    if is_ibis_table(data) and use == "moments":
        est = _engine_moment_cells(
            data,
            spec | {"cluster": cluster if cluster != idname else None},
            plan,
            method=method,
            allow_unbalanced=allow_unbalanced,
        )
    else:
        pan = _panel(data, spec, covs=covs, cluster=cluster, allow_unbalanced=allow_unbalanced)
        if pan.obs is not None and use == "rows":
            raise EstimationError(
                "allow_unbalanced=True with an unbalanced panel needs the moment path "
                "(path='auto' or 'moments', no covariates)."
            )
        est = _panel_cells(pan, plan, use=use, method=method)
    return _finish(
        est.cells,
        cohorts=est.cohorts,
        pg=est.pg,
        sizes=est.sizes,
        n=est.n,
        alpha=alpha,
        bootstrap=bootstrap,
        seed=seed,
        path=use,
        attrition=est.attrition,
        settings={
            "yname": yname,
            "idname": idname,
            "tname": tname,
            "gname": gname,
            "xformla": xformla
            if isinstance(xformla, str) or xformla is None
            else " + ".join(xformla),
            "control": control,
            "method": method,
            "base_period": base_period,
            "anticipation": anticipation,
            "cluster": cluster,
            "weights": weights,
            "bootstrap": bootstrap,
            "alpha": alpha,
            "seed": seed,
            "spevidence_version": __version__,
        },
    )


def _checked_options(
    *,
    control: str,
    method: str,
    base_period: str,
    path: str,
    allow_unbalanced: bool,
    xformla: str | list[str] | None,
    alpha: float,
    bootstrap: int | None,
    seed: int | None,
) -> list[str]:
    """Check the options of :func:`staggered`; returns the covariates."""
    if control not in ("never", "notyet"):
        raise EstimationError(f"control={control!r}: use 'never' or 'notyet'.")
    if method not in ("dr", "ipw", "reg"):
        raise EstimationError(f"method={method!r}: use 'dr', 'ipw' or 'reg'.")
    if base_period not in ("varying", "universal"):
        raise EstimationError(f"base_period={base_period!r}: use 'varying' or 'universal'.")
    if path not in ("auto", "moments", "rows"):
        raise EstimationError(f"path={path!r}: use 'auto', 'moments' or 'rows'.")
    if allow_unbalanced and xformla is not None and _parse_formula(xformla):
        raise EstimationError(
            "allow_unbalanced=True is supported without covariates only (xformla=None); "
            "with covariates, units not observed in every period are dropped by default."
        )
    if not 0 < alpha < 1:
        raise EstimationError(f"alpha={alpha}: must be between 0 and 1.")
    if bootstrap is not None and (bootstrap < 2 or seed is None):
        raise EstimationError(
            f"bootstrap={bootstrap}: needs at least 2 draws and an explicit seed= "
            "(no hidden randomness)."
        )
    covs = _parse_formula(xformla)
    if path == "moments" and covs:
        raise EstimationError(
            "path='moments' needs xformla=None; use path='rows' or 'auto' with covariates."
        )
    return covs


@dataclass(frozen=True)
class _Estimated:
    """The estimated cells and what :func:`_finish` needs besides them."""

    cells: CellSet
    cohorts: FloatArray
    pg: FloatArray  # cohort shares
    sizes: dict[float, int]
    n: int
    attrition: pd.DataFrame


def _engine_moment_cells(
    data: Any, spec: dict[str, Any], plan: dict[str, Any], *, method: str, allow_unbalanced: bool
) -> _Estimated:
    """Moment path for an Ibis table: the cohort moments computed in (or streamed from)
    the engine."""
    engine_kw = spec | {"allow_unbalanced": allow_unbalanced}
    if streams_units(data):  # in-process engine: stream the unit pivot, one scan
        mom, times, attrition = cs_moments_stream(data, **engine_kw)
    else:  # distributed engine: cohort moment matrices computed in the engine
        ep = pivot_units(data, exposure=None, **engine_kw)
        mom = cs_moments(
            ep,
            weighted=spec["weights"] is not None,
            clustered=spec["cluster"] is not None,
        )
        times, attrition = ep.times, ep.attrition
    cohorts = mom.cohorts[np.isfinite(mom.cohorts)]
    plans = plan_cells(times, cohorts, **plan)
    cells = estimate_moments(mom, cohorts, plans, method)
    n = mom.n
    sizes = {float(c): int(k) for c, k in zip(mom.cohorts, mom.count, strict=True)}
    pg = np.array([mom.wsum[list(mom.cohorts).index(g)] / n for g in cohorts])
    return _Estimated(cells, cohorts, pg, sizes, n, attrition)


def _panel(
    data: Any,
    spec: dict[str, Any],
    *,
    covs: list[str],
    cluster: str | None,
    allow_unbalanced: bool,
) -> _Panel:
    """The wide panel: streamed from the engine (Ibis table, balanced) or prepared in
    pandas."""
    if is_ibis_table(data) and not allow_unbalanced:
        er = cs_rows_stream(
            data,
            covs=tuple(dict.fromkeys(covs)),
            cluster=cluster if cluster != spec["idname"] else None,
            **spec,
        )
        return _Panel(er.Y, er.G, er.w, er.Xt, er.xnames, er.times, er.cluster, er.attrition)
    return _prepare(
        data.to_pandas() if is_ibis_table(data) else data,
        covs=covs,
        cluster=cluster,
        allow_unbalanced=allow_unbalanced,
        **spec,
    )


def _panel_cells(
    pan: _Panel, plan: dict[str, Any], *, use: Literal["moments", "rows"], method: str
) -> _Estimated:
    """The cells from a wide panel, by cohort moments or unit rows."""
    cohorts = np.unique(pan.G[np.isfinite(pan.G)])
    plans = plan_cells(pan.times, cohorts, **plan)
    if use == "moments":
        mom = moments_from_wide(pan.Y, pan.G, pan.w, pan.cluster, pan.obs)
        cells = estimate_moments(mom, cohorts, plans, method)
    else:
        cells = estimate_rows(pan.Y, pan.G, pan.w, pan.Xt, cohorts, plans, method, pan.cluster)
    n = pan.Y.shape[0]
    pg = np.array([np.mean(pan.w * np.equal(pan.G, g)) for g in cohorts])
    sizes = {float(g): int(np.sum(np.equal(pan.G, g))) for g in cohorts}
    return _Estimated(cells, cohorts, pg, sizes, n, pan.attrition)


def _finish(
    cells: CellSet,
    *,
    cohorts: FloatArray,
    pg: FloatArray,
    sizes: dict[float, int],
    n: int,
    alpha: float,
    bootstrap: int | None,
    seed: int | None,
    path: Literal["moments", "rows"],
    attrition: pd.DataFrame,
    settings: dict[str, Any],
) -> ATTgt:
    K = len(cells.att)
    if K == 0:
        raise EstimationError(
            "staggered: no group-time cell could be estimated "
            f"({len(cells.skipped)} skipped, e.g. {cells.skipped[:3]}); "
            "check the cohorts and controls."
        )
    V = cells.sigma[:K, :K]
    se = np.sqrt(np.clip(np.diag(V), 0.0, None))
    se = np.where(se <= SE_EPS, np.nan, se)
    crit = float(stats.norm.ppf(1 - alpha / 2))
    se_rep = se
    if bootstrap:
        L = np.zeros((cells.sigma.shape[0], K))
        L[:K, :K] = np.eye(K)
        se_rep, crit = _bootstrap(cells.sigma, L, int(bootstrap), int(seed or 0), alpha)
    return ATTgt(
        groups=np.array([p.group for p in cells.plans]),
        times=np.array([p.time for p in cells.plans]),
        att=cells.att,
        se=se_rep,
        analytic_se=se,
        n_cell=cells.n_cell,
        vcov=V,
        crit=crit,
        alpha=alpha,
        n_units=n,
        cohort_sizes=sizes,
        cohort_shares=pg,
        path=path,
        attrition=attrition,
        skipped=cells.skipped,
        settings=settings,
        _sigma=cells.sigma,
        _cohorts=cohorts,
    )
