"""Every DiD result class, and the small inference helpers they share.

Two-way designs: :class:`DiDResult` / :class:`EventStudyResult`; staggered adoption:
:class:`ATTgt` (Callaway-Sant'Anna), :class:`ETWFE` (Wooldridge) and their
aggregations :class:`ATTAggregate`. All are frozen, with ``tidy``, ``glance``,
``summary`` and ``plot``, and share field names and types: ``alpha`` (1 - confidence
level), ``settings`` (a mapping of the call's options), ``attrition`` (a DataFrame,
one row per reason); ``glance()`` names the ``estimator`` and the ``outcome``.
Helpers other DiD modules reuse: :func:`coef_table` (the tidy columns from estimates,
standard errors and degrees of freedom) and :func:`wald_test` (joint chi-square test).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy import stats

from spevidence.did._aggte import (
    SE_EPS,
    Levels,
    aggregate_se,
    calendar_levels,
    dynamic_levels,
    group_levels,
    wmean_col,
)
from spevidence.errors import EstimationError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

Model = Literal["linear", "poisson"]
Family = Literal["linear", "poisson"]
AggKind = Literal["simple", "dynamic", "group", "calendar"]
EtwfeKind = Literal["simple", "dynamic", "event", "group", "calendar"]
PretrendKind = Literal["cells", "leads"]
FloatArray = NDArray[np.float64]
ATTRITION_COLUMNS = ["reason", "rows"]

TIDY_COLUMNS = (
    "term",
    "estimate",
    "std_error",
    "statistic",
    "p_value",
    "conf_low",
    "conf_high",
    "n",
)


def coef_table(
    terms: tuple[str, ...] | list[str],
    estimate: np.ndarray,
    std_error: np.ndarray,
    *,
    df: int | None,
    n: int,
    conf_level: float = 0.95,
) -> pd.DataFrame:
    """Tidy coefficient table: t(df) inference when ``df`` is given, normal otherwise."""
    est = np.asarray(estimate, dtype=float)
    se = np.asarray(std_error, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        stat = est / se
    dist: Any = stats.t(df) if df is not None else stats.norm()
    crit = float(dist.ppf(0.5 + conf_level / 2))
    return pd.DataFrame(
        {
            "term": list(terms),
            "estimate": est,
            "std_error": se,
            "statistic": stat,
            "p_value": 2 * dist.sf(np.abs(stat)),
            "conf_low": est - crit * se,
            "conf_high": est + crit * se,
            "n": np.full(est.size, n, dtype=np.int64),
        }
    )


def guarded_wald(
    b: np.ndarray, V: np.ndarray, se: np.ndarray | None = None
) -> tuple[float, int, float, int, str]:
    """Joint Wald chi-square test that all of ``b`` are zero, with R ``did``'s guards:
    coefficients with zero or undefined variance are left out (and counted), and a
    singular covariance (reciprocal condition number <= machine epsilon) is refused
    rather than inverted. ``se`` defaults to the square root of ``diag(V)``. Returns
    (statistic, df, p-value, n left out, note); the statistic and p-value are NaN,
    with the reason in the note, when not testable."""
    b = np.asarray(b, dtype=float)
    V = np.asarray(V, dtype=float)
    if se is None:
        se = np.sqrt(np.clip(np.diag(V), 0.0, None)) if b.size else np.zeros(0)
    ok = np.isfinite(se) & (se > SE_EPS)
    n_drop = int((~ok).sum())
    b, V = b[ok], V[np.ix_(ok, ok)]
    stat, p, note = float("nan"), float("nan"), ""
    if b.size == 0:
        note = "no coefficient with a positive variance: not tested"
    elif not np.isfinite(V).all():
        note = "covariance has missing values: not tested"
    else:
        rc = 1.0 / float(np.linalg.cond(V, 1))
        if not rc > np.finfo(float).eps:
            note = f"covariance singular (reciprocal condition number {rc:.1e}): not tested"
        else:
            stat = float(b @ np.linalg.solve(V, b))
            p = float(stats.chi2.sf(stat, b.size))
    if n_drop and not note:
        note = f"{n_drop} with zero variance (e.g. a reference period) left out"
    return stat, int(b.size), p, n_drop, note


def wald_test(b: np.ndarray, V: np.ndarray) -> tuple[float, int, float]:
    """Joint Wald chi-square test that all of ``b`` are zero: (statistic, df, p-value),
    NaN where :func:`guarded_wald` finds the covariance untestable (too few events)."""
    stat, df, p, _, _ = guarded_wald(b, V)
    return stat, df, p


def attrition_frame(pairs: list[tuple[str, int]]) -> pd.DataFrame:
    """The two-way estimators' attrition: ``(reason, rows)`` pairs as a DataFrame."""
    return pd.DataFrame(pairs, columns=ATTRITION_COLUMNS).astype({"rows": "int64"})


def alpha_of(conf_level: float) -> float:
    """``1 - conf_level`` to 12 decimals (0.95 gives 0.05; ``1 - alpha`` gives 0.95 back)."""
    return round(1.0 - conf_level, 12)


@dataclass(frozen=True, eq=False, repr=False)
class DiDResult:
    """A fitted two-way fixed-effects DiD (2×2 or TWFE), linear or Poisson.

    Attributes
    ----------
    method : {"two_by_two", "twfe", "event_study"}
    model : {"linear", "poisson"}
    terms, estimate, vcov : coefficient names, estimates and clustered covariance
        (log rate ratios for Poisson).
    main_term : the term that carries the treatment effect.
    df : degrees of freedom of the t reference distribution (``G - 1``) or ``None``
        (normal reference, used for Poisson as in fixest/pyfixest).
    n_obs, n_units, n_clusters : rows, units and clusters used in the fit.
    path : {"rows", "moments"} which engine computed the fit.
    formula : the exact model that was fitted, in words/formula notation.
    alpha : 1 - confidence level of the intervals (``conf_level``, deprecated, is
        ``1 - alpha``).
    attrition : rows dropped before fitting, one row per reason (``reason, rows``).
    settings : the options of the call (a mapping).
    level : Poisson only: (estimate, conf_low, conf_high, unit) of the level effect.
    """

    method: str
    model: Model
    terms: tuple[str, ...]
    estimate: np.ndarray
    vcov: np.ndarray
    main_term: str
    df: int | None
    n_obs: int
    n_units: int
    n_clusters: int
    path: Literal["rows", "moments"]
    formula: str
    yname: str
    alpha: float = 0.05
    dropped_terms: tuple[str, ...] = ()
    attrition: pd.DataFrame = field(default_factory=lambda: attrition_frame([]))
    settings: Mapping[str, Any] = field(default_factory=dict)
    level: tuple[float, float, float, str] | None = None
    small_sample: float = 1.0
    iterations: int = 1
    extra: tuple[tuple[str, Any], ...] = field(default=())

    # ------------------------------------------------------------------ accessors
    @property
    def conf_level(self) -> float:
        """Deprecated (use ``alpha``): the confidence level, ``1 - alpha``."""
        return 1.0 - self.alpha

    @property
    def std_error(self) -> np.ndarray:
        return np.sqrt(np.diag(self.vcov))

    def coef(self, term: str | None = None) -> float:
        """Estimate of ``term`` (default: the treatment term)."""
        return float(self.estimate[self.terms.index(term or self.main_term)])

    def se(self, term: str | None = None) -> float:
        """Clustered standard error of ``term`` (default: the treatment term)."""
        return float(self.std_error[self.terms.index(term or self.main_term)])

    # ------------------------------------------------------------------ tables
    def tidy(self) -> pd.DataFrame:
        """One row per term: ``term, estimate, std_error, statistic, p_value, conf_low,
        conf_high, n`` (+ ``rate_ratio, rr_conf_low, rr_conf_high`` and the level effect
        of the main term for Poisson)."""
        out = coef_table(
            self.terms,
            self.estimate,
            self.std_error,
            df=self.df,
            n=self.n_obs,
            conf_level=self.conf_level,
        )
        if self.model == "poisson":
            out["rate_ratio"] = np.exp(out["estimate"])
            out["rr_conf_low"] = np.exp(out["conf_low"])
            out["rr_conf_high"] = np.exp(out["conf_high"])
            lev = np.full(len(out), np.nan)
            lo, hi = lev.copy(), lev.copy()
            if self.level is not None:
                i = self.terms.index(self.main_term)
                lev[i], lo[i], hi[i] = self.level[:3]
            out["level_effect"] = lev
            out["level_conf_low"] = lo
            out["level_conf_high"] = hi
        return out

    def glance(self) -> pd.DataFrame:
        """One-row model summary."""
        row: dict[str, Any] = {
            "estimator": self.method,
            "method": self.method,
            "model": self.model,
            "outcome": self.yname,
            "estimate": self.coef(),
            "std_error": self.se(),
            "n_obs": self.n_obs,
            "n_units": self.n_units,
            "n_clusters": self.n_clusters,
            "path": self.path,
            "small_sample_factor": self.small_sample,
            "iterations": self.iterations,
            "rows_dropped": int(self.attrition["rows"].sum()),
        }
        if self.model == "poisson":
            row["rate_ratio"] = float(np.exp(self.coef()))
            if self.level is not None:
                row["level_effect"] = self.level[0]
                row["level_unit"] = self.level[3]
        row.update(dict(self.extra))
        return pd.DataFrame([row])

    def e_value(self, term: str | None = None) -> pd.DataFrame:
        """E-value of the rate ratio (VanderWeele & Ding 2017, *Ann Intern Med* 167:268).

        The minimum strength of association (risk-ratio scale) an unmeasured confounder
        would need with both treatment and outcome to explain away the estimate (and the
        CI limit nearest 1; 1 when the CI includes 1). Poisson models only; rate ratios
        are treated as risk ratios (rare-outcome approximation not needed for rates).
        """
        if self.model != "poisson":
            raise EstimationError(
                "E-values are defined here for rate ratios: refit with model='poisson'."
            )
        i = self.terms.index(term or self.main_term)
        tab = self.tidy()

        def ev(rr: float) -> float:
            rr = 1 / rr if rr < 1 else rr
            return float(rr + np.sqrt(rr * (rr - 1)))

        rr = float(tab["rate_ratio"].iloc[i])
        lo, hi = float(tab["rr_conf_low"].iloc[i]), float(tab["rr_conf_high"].iloc[i])
        near = 1.0 if lo <= 1 <= hi else (lo if rr > 1 else hi)
        return pd.DataFrame(
            [{"term": term or self.main_term, "rate_ratio": rr, "e_value": ev(rr),
              "e_value_ci": ev(near)}]
        )  # fmt: skip

    def attrition_table(self) -> pd.DataFrame:
        """Rows dropped before fitting, by reason (a copy of ``attrition``)."""
        return self.attrition.copy()

    def summary(self) -> str:
        """Plain-text summary: model, fit path, coefficient table."""
        lines = [
            f"{self.method} difference-in-differences ({self.model}), outcome '{self.yname}'",
            f"Model: {self.formula}",
            f"Observations: {self.n_obs}  units: {self.n_units}  clusters: {self.n_clusters}"
            f"  path: {self.path}",
        ]
        if self.dropped_terms:
            lines.append(f"Collinear terms dropped: {', '.join(self.dropped_terms)}")
        for reason, n in self.attrition.itertuples(index=False):
            if n:
                lines.append(f"Rows dropped ({reason}): {n}")
        tab = self.tidy()
        lines.append(tab.to_string(index=False, float_format=lambda v: f"{v:.6g}"))
        if self.level is not None:
            est, lo, hi, unit = self.level
            lines.append(f"Level effect ({unit}): {est:.4g} [{lo:.4g}, {hi:.4g}]")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.summary()

    def _repr_html_(self) -> str:
        return "<pre>" + self.summary().replace("&", "&amp;").replace("<", "&lt;") + "</pre>"

    # ------------------------------------------------------------------ plot
    def plot(self) -> Figure:
        """Coefficient plot with confidence intervals (rate ratios for Poisson)."""
        import matplotlib.pyplot as plt
        import seaborn as sns

        tab = self.tidy()
        pal = sns.color_palette("colorblind")
        fig, ax = plt.subplots(figsize=(6, 1.2 + 0.5 * len(tab)))
        if self.model == "poisson":
            est, lo, hi, ref = tab["rate_ratio"], tab["rr_conf_low"], tab["rr_conf_high"], 1.0
            xlabel = "Rate ratio (1 = no change)"
        else:
            est, lo, hi, ref = tab["estimate"], tab["conf_low"], tab["conf_high"], 0.0
            xlabel = f"Change in {self.yname} (0 = no change)"
        ypos = np.arange(len(tab))[::-1]
        ax.errorbar(
            est, ypos, xerr=[est - lo, hi - est], fmt="o", color=pal[0], ecolor=pal[0], capsize=3
        )
        ax.axvline(ref, color="grey", linestyle="--", linewidth=1)
        labels = {
            "treat:post": "Effect of referral (DiD)",
            "post": "Change after index, comparators",
        }
        ax.set_yticks(ypos, [labels.get(t, t) for t in tab["term"]])
        ax.set_xlabel(xlabel)
        ax.set_title(f"Estimated effect on {self.yname} ({int(self.conf_level * 100)}% CI)")
        fig.tight_layout()
        return fig


@dataclass(frozen=True, eq=False, repr=False)
class EventStudyResult(DiDResult):
    """Event-study result: one coefficient per event time, with a pre-trend test.

    ``event_times[j]`` is the event time of ``terms[j]``; ``reference`` is the omitted
    event time (normalised to zero). ``pretrend`` is the joint Wald chi-square test that all
    pre-period coefficients (event time < 0, reference excluded) are zero.
    """

    event_times: tuple[int, ...] = ()
    reference: int = -1
    pretrend: tuple[float, int, float] = (float("nan"), 0, float("nan"))

    def tidy(self) -> pd.DataFrame:
        out = super().tidy()
        out.insert(1, "event_time", list(self.event_times))
        return out

    def sensitivity(self, mbar: tuple[float, ...] = (0.5, 1.0, 2.0)) -> pd.DataFrame:
        """Post-period effects under bounded violations of parallel trends.

        Relative magnitudes of Rambachan & Roth (2023, *Rev Econ Stud* 90:2555), restriction
        ``Delta^RM(Mbar)``: between consecutive post periods the trend violation ``delta``
        may change by at most ``Mbar`` times the largest change between consecutive pre
        periods, ``G = max_{s<-1} |beta_{s+1} - beta_s|`` (the reference period is 0).
        Starting from ``delta_{-1}`` (the last pre period), the bias of event time
        ``e >= 0`` is then at most ``(e + 1) * Mbar * G`` in absolute value, so the
        identified set of the effect at ``e`` is
        ``beta_e - beta_{-1} -/+ (e + 1) * Mbar * G`` (``beta_{-1} = 0`` when the reference
        is -1); this equals Rambachan & Roth's identified set for ``l = e``-th unit vector
        (Lemma 2.1 with the union over the sign and the reference pre period).

        ``conf_low``/``conf_high`` widen the event time's CI by the same half-width. This
        is a sensitivity display, not Rambachan & Roth's honest CI: ``G`` and ``beta_{-1}``
        are treated as known (no adjustment for their estimation). Scale: log rate ratio
        for Poisson.

        Returns
        -------
        pandas.DataFrame
            One row per ``mbar`` and post event time: ``estimate``, ``max_pre_change``
            (``G``), ``half_width``, ``lower_bound``, ``upper_bound``, ``conf_low``,
            ``conf_high``.
        """
        if self.reference >= 0:
            raise EstimationError(
                f"The reference period is {self.reference}; relative-magnitude bounds need "
                "a pre-period reference (e.g. -1)."
            )
        tab = self.tidy()
        delta = {int(e): float(b) for e, b in zip(tab["event_time"], tab["estimate"], strict=True)}
        delta[self.reference] = 0.0
        pre = sorted(e for e in delta if e < 0)
        changes = [abs(delta[e + 1] - delta[e]) for e in pre if e + 1 in delta and e + 1 < 0]
        if not changes:
            raise EstimationError(
                "Relative-magnitude bounds need two consecutive pre-index periods (one "
                "besides the reference): widen the window to the left."
            )
        if -1 not in delta:
            raise EstimationError(
                "No coefficient for event time -1 (the last pre-index period); the bounds "
                "start from it. Include -1 in the window."
            )
        G = float(max(changes))
        anchor = delta[-1]
        post = tab[tab["event_time"] >= 0]
        rows = []
        for m in mbar:
            for _, r in post.iterrows():
                h = (int(r["event_time"]) + 1) * m * G
                centre = float(r["estimate"]) - anchor
                rows.append(
                    {
                        "mbar": m,
                        "event_time": int(r["event_time"]),
                        "estimate": centre,
                        "max_pre_change": G,
                        "half_width": h,
                        "lower_bound": centre - h,
                        "upper_bound": centre + h,
                        "conf_low": float(r["conf_low"]) - anchor - h,
                        "conf_high": float(r["conf_high"]) - anchor + h,
                    }
                )
        return pd.DataFrame(rows)

    def pretrend_test(self) -> pd.DataFrame:
        """Joint Wald test of the pre-period coefficients (H0: all zero)."""
        stat, df, p = self.pretrend
        return pd.DataFrame(
            [{"test": "pre-trend (joint Wald)", "statistic": stat, "df": df, "p_value": p}]
        )

    def glance(self) -> pd.DataFrame:
        out = super().glance()
        out["pretrend_statistic"], out["pretrend_df"], out["pretrend_p_value"] = self.pretrend
        return out

    def plot(self) -> Figure:
        """Event-study plot: effect by period relative to the index date, with CIs."""
        import matplotlib.pyplot as plt
        import seaborn as sns

        tab = self.tidy()
        pal = sns.color_palette("colorblind")
        ref_val = 1.0 if self.model == "poisson" else 0.0
        if self.model == "poisson":
            est, lo, hi = tab["rate_ratio"], tab["rr_conf_low"], tab["rr_conf_high"]
            ylabel = "Rate ratio vs comparators (1 = no difference)"
        else:
            est, lo, hi = tab["estimate"], tab["conf_low"], tab["conf_high"]
            ylabel = f"Difference in {self.yname} vs comparators"
        e = np.asarray(tab["event_time"], dtype=float)
        fig, ax = plt.subplots(figsize=(8, 4.5))
        pre = e < 0
        for sel, colour, label in ((pre, pal[0], "before index"), (~pre, pal[1], "after index")):
            ax.errorbar(
                e[sel],
                np.asarray(est)[sel],
                yerr=[np.asarray(est - lo)[sel], np.asarray(hi - est)[sel]],
                fmt="o",
                color=colour,
                capsize=2,
                label=label,
            )
        ax.plot(
            [self.reference],
            [ref_val],
            marker="D",
            color="grey",
            linestyle="none",
            label="reference",
        )
        ax.axhline(ref_val, color="grey", linewidth=1)
        ax.axvline(-0.5, color="grey", linestyle="--", linewidth=1)
        stat, df, p = self.pretrend
        subtitle = f"pre-trend test: chi2({df}) = {stat:.2f}, p = {p:.3f}" if df else ""
        ax.set_title(f"Event study: {self.yname} relative to the index period\n{subtitle}")
        ax.set_xlabel("Periods relative to the index (referral) period")
        ax.set_ylabel(ylabel)
        ax.legend(frameon=False)
        fig.tight_layout()
        return fig


# ----------------------------------------------------------------------------- staggered


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
                _row(f"{col}={fmt_number(lv)}", a, s, self.crit, int(nn))
                | {col: lv, "band": self.band}
            )
        return pd.DataFrame(rows)

    def glance(self) -> pd.DataFrame:
        """One-row model summary."""
        return pd.DataFrame(
            [
                {
                    "estimator": self.estimator,
                    "outcome": self.settings.get("yname"),
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
                _row(f"ATT(g={fmt_number(g)}, t={fmt_number(t)})", a, s, self.crit, int(nn))
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
                    "outcome": self.settings.get("yname"),
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
                label=f"cohort {fmt_number(g)}",
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


def fmt_number(x: float) -> str:
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


def _aggregate(
    r: ATTgt,
    kind: AggKind,
    min_e: float,
    max_e: float,
    balance_e: int | None,
    biters: int | None,
    seed: int | None,
) -> ATTAggregate:
    lv = _levels(r, kind, min_e, max_e, balance_e)
    cols = lv.cols
    L = np.column_stack([*cols, lv.ocol]) if cols else lv.ocol[:, None]
    V = L.T @ r._sigma @ L
    se_all, crit, band = aggregate_se(r, L, V, bool(cols), biters, seed)
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


def _levels(r: ATTgt, kind: AggKind, min_e: float, max_e: float, balance_e: int | None) -> Levels:
    """The levels of an aggregation, before inference (:mod:`~spevidence.did._aggte`)."""
    if kind == "simple":
        keep = (r.groups <= r.times) & (r.times <= r.groups + max_e)
        overall, ocol = wmean_col(r, keep)
        return Levels([], [], [], [], overall, ocol)
    if kind == "dynamic":
        return dynamic_levels(r, min_e, max_e, balance_e)
    if kind == "group":
        return group_levels(r, max_e)
    return calendar_levels(r)


# ----------------------------------------------------------------------------- ETWFE


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
    status : numpy.ndarray
        Per cell: ``"estimated"``; or, Poisson only (separation: the maximum likelihood
        estimate does not exist), ``"no events"`` (coefficient ``-inf``, left out of
        the fit; effect on the count scale 0 minus the counterfactual mean),
        ``"no comparison events"`` (every comparison cell of its cohort or period is
        empty, so that effect is ``-inf`` and the counterfactual 0; effect = the
        observed mean, coefficient NaN) or ``"not identified"`` (its cohort or period
        is not linked to the other comparison cells: ``att`` NaN). All but the last
        are aggregated.
    separation : pandas.DataFrame
        Poisson: the cohort x period cells at the boundary or left out of the fit,
        counted by reason (``reason, cells, rows, aggregated, note``; never
        identifiers); empty when there are none.
    n_units, n_obs, n_clusters : int
        Units, rows and clusters in the fit (after any cells left out).
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
    status: NDArray[np.object_]
    params: FloatArray
    param_names: tuple[str, ...]
    vcov: FloatArray
    n_units: int
    n_obs: int
    n_clusters: int
    alpha: float
    attrition: pd.DataFrame
    separation: pd.DataFrame
    settings: dict[str, Any]
    _cells: tuple[FloatArray, FloatArray, FloatArray] = field(repr=False, compare=False)

    def tidy(self) -> pd.DataFrame:
        """One row per treated cohort x period cell (ATT on the response scale), with
        its ``status`` (see the class attributes)."""
        z = stats.norm.ppf(1 - self.alpha / 2)
        rows = []
        for g, t, a, s, b, bs, nn, st in zip(
            self.groups,
            self.times,
            self.att,
            self.se,
            self.coef,
            self.coef_se,
            self.n_cell,
            self.status,
            strict=True,
        ):
            rows.append(
                _row(f"ATT(g={fmt_number(g)}, t={fmt_number(t)})", a, s, z, int(nn))
                | {
                    "group": g,
                    "time": t,
                    "event": t - g,
                    "coef": b,
                    "coef_se": bs,
                    "status": st,
                }
            )
        return pd.DataFrame(rows)

    def glance(self) -> pd.DataFrame:
        """One-row summary."""
        return pd.DataFrame(
            [
                {
                    "estimator": "etwfe",
                    "outcome": self.settings.get("yname"),
                    "family": self.family,
                    "control": self.control,
                    "n_units": self.n_units,
                    "n_obs": self.n_obs,
                    "n_clusters": self.n_clusters,
                    "n_cells": len(self.coef),
                    "n_cells_no_events": int((self.status == "no events").sum()),
                    "n_cells_no_comparison_events": int(
                        (self.status == "no comparison events").sum()
                    ),
                    "n_cells_not_identified": int((self.status == "not identified").sum()),
                }
            ]
        )

    def summary(self) -> str:
        """Plain-text summary."""
        head = (
            f"Extended TWFE ({self.family}, control={self.control}): {self.n_units} units, "
            f"{self.n_obs} observations, {self.n_clusters} clusters"
        )
        out = head + "\n" + self.tidy().to_string(index=False)
        if len(self.separation):
            out += "\nLeft out of the Poisson fit (separation):\n" + self.separation[
                ["reason", "cells", "rows", "aggregated"]
            ].to_string(index=False)
        return out

    def plot(self) -> Figure:
        """Event-study figure of the dynamic aggregation."""
        return self.aggregate("dynamic").plot()

    def aggregate(self, kind: EtwfeKind = "simple") -> ATTAggregate:
        """Average the cell ATTs over treated observations (R ``etwfe::emfx``).

        ``simple``, ``group`` and ``calendar`` use post-treatment cells; ``dynamic``
        (alias ``event``) reports every event time that has cells. Delta-method SEs.

        Poisson cells at the boundary (separation) are averaged in at the limit of the
        maximum likelihood estimate: cells with no events (``status == "no events"``)
        with effect 0 minus the counterfactual mean, cells whose cohort or period has
        no comparison events with a counterfactual of 0 (leaving them out would select
        cells on the outcome and bias the average). Cells with
        ``status == "not identified"`` are left out: the average is then over the
        treated observations of the other cells, and levels with none are not
        reported. ``settings`` (and ``glance()``) count the post-treatment cells of each
        kind.
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
        ok = self.status != "not identified"
        post = (t >= g) & ok
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
            for lv in np.unique(key[ok] if kind == "dynamic" else key[post]):
                m = (key == lv) & ok if kind == "dynamic" else (key == lv) & post
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
            settings={
                **self.settings,
                "kind": kind,
                "cells_no_events": int((post & (self.status == "no events")).sum()),
                "cells_no_comparison_events": int(
                    (post & (self.status == "no comparison events")).sum()
                ),
                "cells_not_identified": int(((t >= g) & ~ok).sum()),
            },
            estimator="etwfe",
        )

    def _repr_html_(self) -> str:
        return self.tidy().to_html(index=False)
