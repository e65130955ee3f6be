"""Report figures drawn from released (disclosure-controlled) bundle tables.

Each function takes one released table and returns a matplotlib Figure in the spevidence
style (:mod:`spevidence.report.style`), with a plain-English title, axis labels and alt
text (``fig.spevidence_alt``). Column names follow ``docs/contracts.md``; where a stage may
name a column in more than one way, the first match in the lists below is used.

:func:`make_figures` draws every figure the tables allow, for passing to
:func:`spevidence.bundle.write_bundle`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg", force=False)

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from spevidence.errors import ReportError
from spevidence.report import style
from spevidence.report._labels import (
    OUTCOME_LABELS,
    as_percent,
    effect_scale,
    label,
    outcome_label,
)

MAIN_TERMS = ("att", "ATT", "treated:post", "treat:post")
"""Model terms of the headline effect: the forest plot does not repeat them."""

__all__ = [
    "FIGURES",
    "OUTCOME_LABELS",
    "cohort_flow",
    "event_study",
    "forest",
    "love_plot",
    "make_figures",
    "outcome_label",
    "simulation",
    "staggered_event_study",
    "staggered_trends",
    "tornado",
    "trends",
    "value_map",
]


def _col(df: pd.DataFrame, candidates: Sequence[str], table: str, *, required: bool = True) -> str:
    for c in candidates:
        if c in df.columns:
            return c
    if required:
        raise ReportError(
            f"table {table!r} has none of the columns {list(candidates)} "
            f"(it has {list(df.columns)}); it cannot be drawn."
        )
    return ""


def _figure_legend(fig: Figure, ax: Axes) -> None:
    """One legend for the figure, below the plots, so it never hides data."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncols=min(3, len(handles)))


def _new(figsize: tuple[float, float] = style.FIGSIZE) -> tuple[Figure, Axes]:
    fig = Figure(figsize=figsize, layout="constrained")
    ax = fig.add_subplot()
    return fig, ax


def _flow_steps(attrition: pd.DataFrame) -> list[dict[str, Any]]:
    """Main steps, each with the exclusions that led to it.

    Two layouts are read: a drop count on the step it leads to (``n_dropped`` and
    ``reason`` on a step row), or separate exclusion rows (``n`` missing, ``n_dropped``
    given) placed before the step they lead to.
    """
    label = _col(attrition, ["step", "stage", "description"], "attrition")
    count = _col(
        attrition, ["n_remaining", "n", "remaining", "persons", "people", "rows"], "attrition"
    )
    dropped = _col(attrition, ["n_dropped", "dropped", "excluded"], "attrition", required=False)
    reason = _col(attrition, ["reason", "drop_reason"], "attrition", required=False)
    steps: list[dict[str, Any]] = []
    pending: list[tuple[str, Any]] = []
    for rec in attrition.reset_index(drop=True).to_dict("records"):
        why = str(rec[reason]) if reason and not _is_missing(rec[reason]) else ""
        is_exclusion = _is_missing(rec[count]) and dropped and not _is_missing(rec[dropped])
        if is_exclusion:
            text = why or str(rec[label]).removeprefix("Excluded: ") or "Excluded"
            pending.append((text, rec[dropped]))
            continue
        excl = list(pending)
        pending = []
        if dropped and steps and not _is_missing(rec[dropped]):
            excl.append((why or "Excluded", rec[dropped]))
        steps.append({"label": str(rec[label]), "n": rec[count], "excluded": excl})
    if pending and steps:  # exclusions after the last step
        steps.append({"label": "After exclusions", "n": None, "excluded": pending})
    return steps


def cohort_flow(attrition: pd.DataFrame) -> Figure:
    """Cohort flow diagram (STROBE/RECORD style) from the attrition table.

    Main boxes show each step with the people remaining (``n``); side boxes show the
    people excluded on the way to it, with the reason (``n_dropped``, ``reason``).
    """
    steps = _flow_steps(attrition)
    n = len(steps)
    gaps = [max(1, len(st["excluded"])) for st in steps[1:]]
    ys = [0.0]
    for g in gaps:
        ys.append(ys[-1] - (0.9 + 0.95 * g))
    height = -ys[-1] + 1.2 if n else 1.0
    main_box = {"boxstyle": "round,pad=0.45", "fc": "#eef4fa", "ec": style.TREATED, "lw": 1.2}
    side_box = {"boxstyle": "round,pad=0.35", "fc": "#fdf1ea", "ec": style.COMPARATOR, "lw": 1}
    arrow = {"arrowstyle": "-|>", "color": style.NEUTRAL, "lw": 1.1}
    with style.context():
        fig = Figure(figsize=(7.0, max(2.0, 0.55 * height + 0.5)), layout="constrained")
        ax = fig.add_subplot()
        ax.set_xlim(0, 10)
        ax.set_ylim(ys[-1] - 0.6 if n else -1, 0.6)
        ax.axis("off")
        for i, st in enumerate(steps):
            ax.text(
                3.0,
                ys[i],
                f"{st['label']}\nn = {_count_text(st['n'])}",
                ha="center",
                va="center",
                fontsize=9.5,
                bbox=main_box,
                wrap=True,
            )
            if i == 0:
                continue
            top, bottom = ys[i - 1] - 0.32, ys[i] + 0.32
            ax.annotate("", xy=(3.0, bottom), xytext=(3.0, top), arrowprops=arrow)
            k = len(st["excluded"])
            for j, (why, count) in enumerate(st["excluded"]):
                y = top - (top - bottom) * (j + 1) / (k + 1)
                ax.annotate("", xy=(5.55, y), xytext=(3.0, y), arrowprops=arrow)
                ax.text(
                    5.75,
                    y,
                    f"{why}\nn = {_count_text(count)}",
                    ha="left",
                    va="center",
                    fontsize=8.5,
                    bbox=side_box,
                    wrap=True,
                )
        ax.set_title("How the study cohort was formed")
    fig.spevidence_alt = "Cohort flow diagram: " + "; ".join(  # type: ignore[attr-defined]
        f"{st['label']}, n = {_count_text(st['n'])}"
        + "".join(f" (excluded: {w}, n = {_count_text(c)})" for w, c in st["excluded"])
        for st in steps
    )
    return fig


def _is_missing(v: Any) -> bool:
    if v is None or isinstance(v, str):
        return v is None
    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


def _count_text(v: object) -> str:
    if _is_missing(v):
        return "redacted"
    if isinstance(v, str):
        return v
    try:
        f = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return str(v)
    return f"{round(f):,}" if f.is_integer() else f"{f:,.1f}"


def love_plot(balance: pd.DataFrame, *, threshold: float = 0.1) -> Figure:
    """Love plot: absolute standardised mean differences before and after matching."""
    var = _col(balance, ["covariate", "variable", "term"], "balance")
    before = _col(
        balance, ["smd_before", "smd_unmatched", "smd_all", "smd_pre"], "balance", required=False
    )
    after = _col(balance, ["smd_after", "smd_matched", "smd"], "balance")
    df = balance.copy()
    df["_after"] = df[after].abs()
    if before:
        df["_before"] = df[before].abs()
    df = df.sort_values("_before" if before else "_after").reset_index(drop=True)
    y = np.arange(len(df))
    with style.context():
        fig, ax = _new((7.0, max(2.5, 0.32 * len(df) + 1.3)))
        if before:
            ax.scatter(
                df["_before"],
                y,
                marker="o",
                facecolor="white",
                edgecolor=style.COMPARATOR,
                s=36,
                label="Before matching",
                zorder=3,
            )
        ax.scatter(
            df["_after"], y, marker="o", color=style.TREATED, s=36, label="After matching", zorder=3
        )
        ax.axvline(threshold, color=style.HIGHLIGHT, ls="--", lw=1, label=f"|SMD| = {threshold}")
        ax.set_yticks(y, [label(v) for v in df[var]])
        ax.set_xlabel("Absolute standardised mean difference (referred vs comparators)")
        ax.set_title("Covariate balance before and after matching")
        _figure_legend(fig, ax)
        ax.set_xlim(left=0)
    worst = float(df["_after"].max()) if len(df) else float("nan")
    fig.spevidence_alt = (  # type: ignore[attr-defined]
        f"Love plot of {len(df)} covariates; the largest absolute standardised mean difference "
        f"after matching is {worst:.2f} (threshold {threshold})."
    )
    return fig


POOLED = {3: "quarter", 6: "half-year"}
"""Months per point in the trends table -> the period's name."""


def pooled_outcomes(trends: pd.DataFrame) -> dict[str, str]:
    """Outcomes the trends table gives by quarter or half-year (``months`` 3 or 6), with
    the period: their monthly counts were mostly too small to release."""
    if "months" not in trends.columns or "outcome" not in trends.columns:
        return {}
    months = pd.to_numeric(trends["months"], errors="coerce")
    return {
        str(o): POOLED[int(m)]
        for o, m in zip(trends["outcome"], months, strict=True)
        if int(m) in POOLED
    }


def trends(trends: pd.DataFrame) -> Figure:
    """Mean outcome per person-month by months from referral, referred vs comparators.

    Rows with ``months`` 3 or 6 (outcomes too rare to release by month) are quarters or
    half-years of event time, drawn at their middle month with square markers; the panel
    title says so.
    """
    et = _col(trends, ["event_time", "time", "t"], "trends")
    grp = _col(trends, ["group", "treated"], "trends")
    val = _col(trends, ["mean", "rate", "value", "mean_outcome"], "trends")
    out_col = _col(trends, ["outcome"], "trends", required=False)
    outcomes = list(dict.fromkeys(trends[out_col])) if out_col else [None]
    pooled = pooled_outcomes(trends)
    with style.context():
        fig = Figure(figsize=(7.0, 2.4 * len(outcomes) + 0.6), layout="constrained")
        axes = fig.subplots(len(outcomes), 1, sharex=True, squeeze=False)[:, 0]
        for ax, outcome in zip(axes, outcomes, strict=True):
            sub = trends if outcome is None else trends[trends[out_col] == outcome]
            period = pooled.get(str(outcome))
            for g, sg in sub.groupby(grp, sort=True):
                treated = str(g).lower() in ("1", "true", "treated", "referred")
                sg = sg.sort_values(et)
                # a quarter or half-year is drawn at its middle month
                width = pd.to_numeric(sg["months"]) if period else 1
                ax.plot(
                    sg[et] + (width - 1) / 2,
                    sg[val],
                    marker="s" if period else "o",
                    ms=4 if period else 3,
                    lw=1.6,
                    color=style.TREATED if treated else style.COMPARATOR,
                    label="Referred" if treated else "Matched comparators",
                )
            ax.axvline(-0.5, color=style.NEUTRAL, ls=":", lw=1)
            ax.set_ylim(bottom=0)  # a mean count: rounding noise is not blown up
            ax.set_ylabel("Mean per person\nper month")
            title = outcome_label(outcome) if outcome is not None else "Outcome"
            ax.set_title(f"{title}, by {period}" if period else title)
            withheld = int(pd.to_numeric(sub[val], errors="coerce").isna().sum())
            if withheld:
                unit = f"{period}s" if period else "points"
                ax.text(
                    1.0,
                    1.02,
                    f"{withheld} of {len(sub)} {unit} withheld: 1-7 people or events"
                    + ("" if period else " (disclosure control)"),
                    transform=ax.transAxes,
                    ha="right",
                    va="bottom",
                    fontsize=8,
                    color=style.NEUTRAL,
                )
        # the legend from a monthly panel where there is one (its markers are the usual ones)
        monthly = [ax for ax, o in zip(axes, outcomes, strict=True) if str(o) not in pooled]
        _figure_legend(fig, (monthly or list(axes))[0])
        axes[-1].set_xlabel("Months from referral (0 = month of referral)")
    alt = (
        "Line chart of mean use per person per month by month from referral for referred "
        "people and matched comparators, for "
        + ", ".join(outcome_label(o) for o in outcomes if o is not None)
    )
    for o, period in pooled.items():
        alt += f"; {outcome_label(o)} by {period}"
    fig.spevidence_alt = alt  # type: ignore[attr-defined]
    return fig


def forest(did: pd.DataFrame) -> Figure:
    """Forest plot of difference-in-differences estimates with 95% confidence intervals.

    Log-scale (Poisson) and rate-ratio estimates are shown as % change in the rate; linear
    estimates as the change per person per period. Each kind gets its own panel.
    """
    for c in ("estimate", "conf_low", "conf_high"):
        _col(did, [c], "did_estimates")
    df = did.reset_index(drop=True)
    labels, kinds, est, lo, hi = [], [], [], [], []
    for i, r in df.iterrows():
        parts = [outcome_label(r["outcome"])] if "outcome" in df.columns else []
        if "analysis" in df.columns and not _is_missing(r["analysis"]):
            parts.append(str(r["analysis"]))
        # the model shows in the panel (rate ratio or per person); the main term is implied
        if "term" in df.columns and str(r["term"]) not in MAIN_TERMS:
            parts.append(label(r["term"]))
        labels.append(" · ".join(parts) if parts else f"estimate {i}")
        kind = effect_scale(r.get("model", ""), r.get("scale"))
        vals = [float(r["estimate"]), float(r["conf_low"]), float(r["conf_high"])]
        if kind != "absolute":
            vals = [as_percent(v, kind) for v in vals]
        kinds.append("percent" if kind != "absolute" else "absolute")
        est.append(vals[0])
        lo.append(vals[1])
        hi.append(vals[2])
    frame = pd.DataFrame({"label": labels, "kind": kinds, "est": est, "lo": lo, "hi": hi})
    panels = [k for k in ("percent", "absolute") if k in set(kinds)]
    xlabels = {
        "percent": "% change in the rate of use attributable to referral (95% CI)",
        "absolute": "Change per person per month attributable to referral (95% CI)",
    }
    heights = [max(1.0, 0.42 * int((frame["kind"] == k).sum()) + 0.9) for k in panels]
    with style.context():
        fig = Figure(figsize=(7.0, sum(heights) + 0.5), layout="constrained")
        axes = fig.subplots(len(panels), 1, squeeze=False, height_ratios=heights)[:, 0]
        for ax, kind in zip(axes, panels, strict=True):
            sub = frame[frame["kind"] == kind].reset_index(drop=True)
            y = np.arange(len(sub))[::-1]
            ax.errorbar(
                sub["est"],
                y,
                xerr=[sub["est"] - sub["lo"], sub["hi"] - sub["est"]],
                fmt="o",
                color=style.EFFECT,
                ecolor=style.EFFECT,
                capsize=3,
                lw=1.5,
            )
            ax.axvline(0, color=style.NEUTRAL, lw=1)
            ax.set_yticks(y, list(sub["label"]))
            ax.set_ylim(-0.6, len(sub) - 0.4)
            ax.set_xlabel(xlabels[kind])
        axes[0].set_title("Estimated effect of social prescribing")
    fig.spevidence_alt = "Forest plot of " + "; ".join(  # type: ignore[attr-defined]
        f"{lab}: {e:.1f}% ({a:.1f}% to {b:.1f}%)"
        if k == "percent"
        else f"{lab}: {e:.3f} ({a:.3f} to {b:.3f})"
        for lab, k, e, a, b in zip(labels, kinds, est, lo, hi, strict=True)
    )
    return fig


def event_study(es: pd.DataFrame) -> Figure:
    """Event-study coefficients by months from referral, with 95% confidence intervals."""
    et = _col(es, ["event_time", "relative_time", "e", "term"], "event_study")
    out_col = _col(es, ["outcome"], "event_study", required=False)
    outcomes = list(dict.fromkeys(es[out_col])) if out_col else [None]
    with style.context():
        fig = Figure(figsize=(7.0, 2.4 * len(outcomes) + 0.6), layout="constrained")
        axes = fig.subplots(len(outcomes), 1, sharex=True, squeeze=False)[:, 0]
        for ax, outcome in zip(axes, outcomes, strict=True):
            sub = es if outcome is None else es[es[out_col] == outcome]
            sub = (
                sub.assign(_t=pd.to_numeric(sub[et], errors="coerce"))
                .dropna(subset=["_t"])
                .sort_values("_t")
            )
            pre = sub["_t"] < 0
            for mask, colour, lab in (
                (pre, style.COMPARATOR, "Before referral"),
                (~pre, style.TREATED, "After referral"),
            ):
                s = sub[mask]
                ax.errorbar(
                    s["_t"],
                    s["estimate"],
                    yerr=[s["estimate"] - s["conf_low"], s["conf_high"] - s["estimate"]],
                    fmt="o",
                    ms=3.5,
                    color=colour,
                    ecolor=colour,
                    capsize=2,
                    lw=1.1,
                    label=lab,
                )
            ax.axhline(0, color=style.NEUTRAL, lw=1)
            ax.axvline(-0.5, color=style.NEUTRAL, ls=":", lw=1)
            ax.set_ylabel("Difference vs\ncomparators")
            ax.set_title(outcome_label(outcome) if outcome is not None else "Event study")
        _figure_legend(fig, axes[0])
        axes[-1].set_xlabel("Months from referral (reference: month before referral)")
    fig.spevidence_alt = (  # type: ignore[attr-defined]
        "Event-study chart: difference between referred people and comparators in each month "
        "before and after referral, with 95% confidence intervals"
    )
    return fig


def tornado(sens: pd.DataFrame, *, base: float | None = None) -> Figure:
    """Tornado chart: SROI ratio when each assumption is set to its low and high value."""
    par = _col(sens, ["parameter", "assumption", "input"], "sroi_sensitivity")
    lo = _col(sens, ["ratio_low", "low", "sroi_low"], "sroi_sensitivity")
    hi = _col(sens, ["ratio_high", "high", "sroi_high"], "sroi_sensitivity")
    bcol = _col(sens, ["ratio_base", "base", "sroi_base"], "sroi_sensitivity", required=False)
    df = sens.copy()
    if base is None and bcol:
        base = float(df[bcol].iloc[0])
    df["_span"] = (df[hi] - df[lo]).abs()
    df = df.sort_values("_span").reset_index(drop=True)
    y = np.arange(len(df))
    centre = base if base is not None else float((df[lo] + df[hi]).mean() / 2)
    with style.context():
        fig, ax = _new((7.0, max(2.2, 0.4 * len(df) + 1.2)))
        ax.barh(
            y, df[lo] - centre, left=centre, color=style.COMPARATOR, label="Low value of assumption"
        )
        ax.barh(
            y, df[hi] - centre, left=centre, color=style.TREATED, label="High value of assumption"
        )
        ax.axvline(centre, color=style.NEUTRAL, lw=1)
        ax.axvline(1.0, color=style.HIGHLIGHT, ls="--", lw=1, label="Break-even (£1 per £1)")
        ax.set_yticks(y, [label(v) for v in df[par]])
        ax.set_xlabel("Social value per £1 invested (SROI ratio)")
        ax.set_title("Which assumptions matter most")
        _figure_legend(fig, ax)
    fig.spevidence_alt = (  # type: ignore[attr-defined]
        f"Tornado chart of {len(df)} assumptions around a central SROI ratio of {centre:.2f}"
    )
    return fig


def simulation(sim: pd.DataFrame) -> Figure:
    """Distribution of the SROI ratio across Monte Carlo draws (binned counts or draws)."""
    with style.context():
        fig, ax = _new()
        if {"bin_low", "bin_high"}.issubset(sim.columns):
            cnt = _col(sim, ["count", "n", "draws", "share"], "sroi_simulation")
            width = sim["bin_high"] - sim["bin_low"]
            ax.bar(
                sim["bin_low"],
                sim[cnt],
                width=width,
                align="edge",
                color=style.TREATED,
                edgecolor="white",
            )
            ax.set_ylabel("Simulations" if cnt != "share" else "Share of simulations")
        else:
            draws = _col(sim, ["sroi_ratio", "ratio", "value"], "sroi_simulation")
            ax.hist(sim[draws].dropna(), bins=40, color=style.TREATED, edgecolor="white")
            ax.set_ylabel("Simulations")
        ax.axvline(1.0, color=style.HIGHLIGHT, ls="--", lw=1, label="Break-even (£1 per £1)")
        ax.set_xlabel("Social value per £1 invested (SROI ratio)")
        ax.set_title("Uncertainty in the SROI ratio (Monte Carlo simulation)")
        ax.legend(loc="upper right")
    fig.spevidence_alt = "Histogram of simulated SROI ratios with the break-even line at 1"  # type: ignore[attr-defined]
    return fig


def value_map(by_outcome: pd.DataFrame) -> Figure:
    """Present value of each outcome (the SROI value map), as horizontal bars."""
    out_col = _col(by_outcome, ["outcome", "item"], "sroi_by_outcome")
    val = _col(by_outcome, ["present_value", "pv", "value"], "sroi_by_outcome")
    df = by_outcome.sort_values(val).reset_index(drop=True)
    with style.context():
        fig, ax = _new((7.0, max(2.2, 0.45 * len(df) + 1.2)))
        colours = [style.EFFECT if v >= 0 else style.HIGHLIGHT for v in df[val]]
        ax.barh(np.arange(len(df)), df[val], color=colours)
        ax.axvline(0, color=style.NEUTRAL, lw=1)
        ax.set_yticks(np.arange(len(df)), [outcome_label(v) for v in df[out_col]])
        ax.set_xlabel("Present value (£)")
        ax.set_title("Where the social value comes from")
        ax.xaxis.set_major_formatter(matplotlib.ticker.StrMethodFormatter("£{x:,.0f}"))
    fig.spevidence_alt = "Bar chart of present value by outcome: " + "; ".join(  # type: ignore[attr-defined]
        f"{outcome_label(o)} £{v:,.0f}" for o, v in zip(df[out_col], df[val], strict=True)
    )
    return fig


FIGURES: dict[str, tuple[str, Callable[[pd.DataFrame], Figure]]] = {
    "cohort_flow": ("attrition", cohort_flow),
    "love_plot": ("balance", love_plot),
    "trends": ("trends", trends),
    "forest": ("did_estimates", forest),
    "event_study": ("event_study", event_study),
    "sroi_tornado": ("sroi_sensitivity", tornado),
    "sroi_simulation": ("sroi_simulation", simulation),
    "sroi_value_map": ("sroi_by_outcome", value_map),
}
"""Figure name -> (released table it is drawn from, drawing function)."""


def make_figures(tables: Mapping[str, pd.DataFrame]) -> dict[str, Figure]:
    """Draw every report figure the released tables allow (for ``write_bundle``)."""
    out: dict[str, Figure] = {}
    for name, (table, draw) in FIGURES.items():
        df = tables.get(table)
        if df is not None and len(df) > 0:
            out[name] = draw(df)
    return out


# the staggered design's figures (spevidence.pipeline.staggered draws them from its released
# tables); what a cohort is, by the protocol's staggered.cohort
_COHORT_LABELS = {
    "referral": "first accepted referral",
    "service_start": "PCN service start (first accepted referral in the PCN)",
}


def staggered_event_study(est: pd.DataFrame, *, period: str, cohort: str) -> Figure:
    """Staggered design: dynamic effects by periods since first treatment, per outcome,
    each estimator (the released ``staggered`` table)."""

    dyn = est.loc[est["aggregation"] == "dynamic"]
    outcomes = list(dict.fromkeys(dyn["outcome"]))
    estimators = list(dict.fromkeys(dyn["estimator"]))
    with style.context():
        fig = Figure(figsize=(7.0, 2.6 * max(len(outcomes), 1) + 0.7), layout="constrained")
        axes = fig.subplots(max(len(outcomes), 1), 1, sharex=True, squeeze=False)[:, 0]
        width = 0.25
        for ax, o in zip(axes, outcomes, strict=False):
            for j, name in enumerate(estimators):
                s = dyn.loc[(dyn["outcome"] == o) & (dyn["estimator"] == name)]
                s = s.dropna(subset=["estimate"]).sort_values("event")
                if s.empty:
                    continue
                x = s["event"].to_numpy(float) + (j - (len(estimators) - 1) / 2) * width
                ax.errorbar(
                    x,
                    s["estimate"],
                    yerr=[s["estimate"] - s["conf_low"], s["conf_high"] - s["estimate"]],
                    fmt="os"[j % 2],
                    ms=3.5,
                    color=style.PALETTE[j],
                    capsize=2,
                    lw=1.1,
                    label=name,
                )
            ax.axhline(0, color=style.NEUTRAL, lw=1)
            ax.axvline(-0.5, color=style.NEUTRAL, ls=":", lw=1)
            ax.set_ylabel(f"Change per person\nper {period}")
            ax.set_title(outcome_label(o))
        if estimators:
            axes[0].legend(frameon=False, fontsize="small", loc="best")
        axes[-1].set_xlabel(
            f"{period.capitalize()}s since {_COHORT_LABELS.get(cohort, cohort)} "
            "(0 = first treated; left of the dotted line: before)"
        )
        fig.suptitle("Effect on NHS use by time since referral (staggered DiD)")
    fig.spevidence_alt = (  # type: ignore[attr-defined]
        f"Event-study chart: estimated change in NHS use per person per {period}, by {period}s "
        "before and after first treatment, with 95% confidence intervals, for each estimator"
    )
    return fig


def staggered_trends(tr: pd.DataFrame, *, period: str) -> Figure:
    """Staggered design: mean use per person by calendar period, people ever referred vs
    never referred (the released ``staggered_trends`` table)."""

    outcomes = list(dict.fromkeys(tr["outcome"]))
    with style.context():
        fig = Figure(figsize=(7.0, 2.3 * max(len(outcomes), 1) + 0.6), layout="constrained")
        axes = fig.subplots(max(len(outcomes), 1), 1, sharex=True, squeeze=False)[:, 0]
        for ax, o in zip(axes, outcomes, strict=False):
            for colour, grp in (
                (style.TREATED, "Referred (ever)"),
                (style.COMPARATOR, "Never referred"),
            ):
                s = tr.loc[(tr["outcome"] == o) & (tr["group"] == grp)].sort_values("t")
                ax.plot(s["t"], s["mean"], marker="o", ms=2.5, color=colour, label=grp)
            ax.set_ylabel(f"Mean per person\nper {period}")
            ax.set_title(outcome_label(o))
        axes[0].legend(frameon=False, fontsize="small")
        axes[-1].set_xlabel(f"{period.capitalize()} of the study window (0 = first)")
    fig.spevidence_alt = (  # type: ignore[attr-defined]
        f"Line chart: mean NHS use per person per {period} over the study window, people ever "
        "referred and people never referred"
    )
    return fig
