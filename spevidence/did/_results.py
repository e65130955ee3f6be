"""Result classes and small inference helpers shared by the DiD estimators.

Helpers other DiD modules may reuse: :func:`coef_table` (the tidy columns from estimates,
standard errors and degrees of freedom), :func:`wald_test` (joint chi-square test) and
:class:`DiDResult` / :class:`EventStudyResult` (frozen results with ``tidy``, ``glance``,
``summary``, ``plot``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from scipy import stats

from spevidence.errors import EstimationError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

Model = Literal["linear", "poisson"]

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


SE_EPS = float(np.sqrt(np.finfo(float).eps)) * 10  # R did's threshold for "zero variance"


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
    attrition : (reason, rows) pairs for every row dropped before fitting.
    settings : the options of the call.
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
    conf_level: float = 0.95
    dropped_terms: tuple[str, ...] = ()
    attrition: tuple[tuple[str, int], ...] = ()
    settings: tuple[tuple[str, Any], ...] = ()
    level: tuple[float, float, float, str] | None = None
    small_sample: float = 1.0
    iterations: int = 1
    extra: tuple[tuple[str, Any], ...] = field(default=())

    # ------------------------------------------------------------------ accessors
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
            "rows_dropped": int(sum(n for _, n in self.attrition)),
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
        """Rows dropped before fitting, by reason."""
        return pd.DataFrame(list(self.attrition), columns=["reason", "rows"])

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
        for reason, n in self.attrition:
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
