"""Figures for the activity, equity, case-finding and wellbeing tables (private).

Every function takes the aggregate tables by name and returns a matplotlib Figure drawn
from those tables only, so the same figure can be redrawn from disclosure-controlled
tables. Colours: seaborn "colorblind" (Wong 2011, *Nature Methods* 8:441).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from spevidence.activity._common import NEUTRAL, PALETTE, figure_style

Tables = Mapping[str, pd.DataFrame]


def _needs(*names: str) -> Callable[[Callable[[Tables], Figure]], Callable[[Tables], Figure]]:
    def deco(fn: Callable[[Tables], Figure]) -> Callable[[Tables], Figure]:
        fn.needs = names  # type: ignore[attr-defined]
        return fn

    return deco


def _fig(width: float = 7.0, height: float = 4.2) -> tuple[Figure, Any]:
    fig = Figure(figsize=(width, height), layout="constrained")
    ax = fig.add_subplot()
    return fig, ax


SOURCE_LABELS = {
    "gp": "GP",
    "practice_staff": "Practice staff",
    "other_agency": "Other agency",
    "self": "Self-referral",
}


def _source(v: object) -> str:
    return SOURCE_LABELS.get(str(v), str(v).replace("_", " "))


def _num(s: pd.Series) -> np.ndarray:
    return pd.to_numeric(s, errors="coerce").to_numpy(dtype=float, na_value=np.nan)


# ----------------------------------------------------------------------------- activity
@_needs("activity_referrals_by_period")
def referrals_by_period(tables: Tables) -> Figure:
    df = tables["activity_referrals_by_period"]
    wide = df.pivot_table(
        index="period", columns="referral_source", values="referrals", aggfunc="sum", sort=True
    ).fillna(0)
    with figure_style():
        fig, ax = _fig()
        x = np.arange(len(wide))
        bottom = np.zeros(len(wide))
        for i, col in enumerate(wide.columns):
            vals = wide[col].to_numpy(dtype=float)
            ax.bar(x, vals, bottom=bottom, color=PALETTE[i % 10], label=_source(col))
            bottom += vals
        labels = [pd.Timestamp(p).strftime("%b %Y") for p in wide.index]
        step = max(1, len(labels) // 12)
        ax.set_xticks(x[::step], labels[::step], rotation=45, ha="right")
        ax.set_title("Social prescribing referrals over time, by source")
        ax.set_xlabel("Referral period")
        ax.set_ylabel("Referrals")
        ax.legend(title="Referred by", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig


@_needs("activity_outcomes")
def outcomes(tables: Tables) -> Figure:
    df = tables["activity_outcomes"]
    sources = list(dict.fromkeys(df["referral_source"]))
    outs = list(dict.fromkeys(df["outcome"]))
    with figure_style():
        fig, ax = _fig()
        width = 0.8 / max(len(outs), 1)
        x = np.arange(len(sources))
        for j, oc in enumerate(outs):
            sub = df.loc[df["outcome"] == oc].set_index("referral_source").reindex(sources)
            pct = _num(sub["percent"])
            err = np.vstack([pct - _num(sub["conf_low"]), _num(sub["conf_high"]) - pct])
            ax.bar(
                x + (j - (len(outs) - 1) / 2) * width,
                pct,
                width,
                color=PALETTE[j],
                label=oc,
                yerr=np.clip(np.nan_to_num(err), 0, None),
                capsize=2,
                error_kw={"elinewidth": 0.8},
            )
        ax.set_xticks(x, [_source(s) for s in sources], rotation=20, ha="right")
        ax.set_ylim(0, 100)
        ax.set_title("What happened to referrals, by source (95% CI)")
        ax.set_xlabel("Referred by")
        ax.set_ylabel("Percent of referrals")
        ax.legend(title="Outcome", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig


def _bar_bands(
    df: pd.DataFrame, label_col: str, title: str, xlabel: str, highlight: str | None = None
) -> Figure:
    with figure_style():
        fig, ax = _fig()
        labels = [str(v) for v in df[label_col]]
        colours = [PALETTE[2] if highlight and highlight in lab else PALETTE[0] for lab in labels]
        ax.bar(np.arange(len(df)), _num(df["referrals"]), color=colours)
        ax.set_xticks(np.arange(len(df)), labels, rotation=20, ha="right")
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("Referrals")
    return fig


@_needs("activity_time_to_contact_bands")
def time_to_contact(tables: Tables) -> Figure:
    return _bar_bands(
        tables["activity_time_to_contact_bands"],
        "days_to_first_contact",
        "Time from referral to first contact with a link worker",
        "Days from referral to first contact",
    )


@_needs("activity_contacts_bands")
def contacts(tables: Tables) -> Figure:
    return _bar_bands(
        tables["activity_contacts_bands"],
        "contacts",
        "Contacts per accepted referral (green: the expected range)",
        "Contacts with the link worker",
        highlight="(norm)",
    )


@_needs("activity_support_duration")
def support_duration(tables: Tables) -> Figure:
    return _bar_bands(
        tables["activity_support_duration"],
        "support_duration",
        "How long people were supported (expected: about 3 months)",
        "Time from first contact to discharge",
        highlight="1-3 months",
    )


@_needs("activity_caseload")
def caseload(tables: Tables) -> Figure:
    df = tables["activity_caseload"]
    with figure_style():
        fig, ax = _fig()
        y = _num(df["caseload_per_wte_year"])
        x = np.arange(len(df))
        lo, hi = float(df["norm_low"].iloc[0]), float(df["norm_high"].iloc[0])
        ax.axhspan(lo, hi, color=PALETTE[2], alpha=0.2, label=f"Expected {lo:.0f}-{hi:.0f} a year")
        ax.bar(x, np.nan_to_num(y), color=PALETTE[0], label="Caseload per full-time worker")
        ax.set_xticks(x, list(df["link_worker"]), rotation=30, ha="right")
        ax.set_title("Link-worker caseload against the expected range")
        ax.set_xlabel("Link worker")
        ax.set_ylabel("People supported per year per full-time worker")
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig


@_needs("activity_coding_audit")
def coding_audit(tables: Tables) -> Figure:
    return _stacked_percent(
        tables["activity_coding_audit"],
        rows="outcome",
        parts="coding",
        title="SNOMED CT coding of referrals (coding audit)",
        xlabel="Percent of referrals",
    )


def _stacked_percent(df: pd.DataFrame, *, rows: str, parts: str, title: str, xlabel: str) -> Figure:
    """Horizontal 100 % stacked bars: one bar per ``rows`` value, segments by ``parts``."""
    groups = list(dict.fromkeys(df[rows]))
    with figure_style():
        fig, ax = _fig()
        left = np.zeros(len(groups))
        for j, part in enumerate(dict.fromkeys(df[parts])):
            sub = df.loc[df[parts] == part].set_index(rows).reindex(groups)
            vals = np.nan_to_num(_num(sub["percent"]))
            ax.barh(np.arange(len(groups)), vals, left=left, color=PALETTE[j % 10], label=part)
            left += vals
        ax.set_yticks(np.arange(len(groups)), groups)
        ax.invert_yaxis()
        ax.set_xlim(0, 100)
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=2)
    return fig


# ------------------------------------------------------------------------------- equity
@_needs("equity_by_group")
def equity_rates(tables: Tables) -> Figure:
    df = tables["equity_by_group"]
    chars = list(dict.fromkeys(df["characteristic"]))
    with figure_style():
        fig = Figure(figsize=(7.0, 1.6 + 0.32 * len(df) + 0.3 * len(chars)), layout="constrained")
        ax = fig.add_subplot()
        ypos: list[float] = []
        labels: list[str] = []
        y = 0.0
        for i, ch in enumerate(chars):
            sub = df.loc[df["characteristic"] == ch]
            est = _num(sub["rate_per_1000"])
            err = np.vstack([est - _num(sub["conf_low"]), _num(sub["conf_high"]) - est])
            ys = y + np.arange(len(sub))
            ax.errorbar(
                est,
                ys,
                xerr=np.clip(np.nan_to_num(err), 0, None),
                fmt="o",
                color=PALETTE[i % 10],
                capsize=2,
                markersize=4,
            )
            ypos.extend(ys.tolist())
            labels.extend(f"{ch}: {g}" for g in sub["group"])
            y += len(sub) + 0.6
        overall = tables.get("equity_overall")
        if overall is not None and len(overall):
            ax.axvline(
                float(overall["rate_per_1000"].iloc[0]),
                color=NEUTRAL,
                linestyle="--",
                label="All registered people",
            )
            ax.legend(loc="lower right")
        ax.set_yticks(ypos, labels)
        ax.invert_yaxis()
        ax.set_title("Who is referred, by group")
        ax.set_xlabel("People referred per 1,000 registered (95% confidence interval)")
    return fig


@_needs("equity_practice_funnel", "equity_funnel_limits")
def funnel(tables: Tables) -> Figure:
    df = tables["equity_practice_funnel"]
    lim = tables["equity_funnel_limits"]
    with figure_style():
        fig, ax = _fig()
        n = _num(lim["denominator"])
        ax.plot(
            n, _num(lim["lower_95"]), color=NEUTRAL, linestyle="--", linewidth=1, label="95% limits"
        )
        ax.plot(n, _num(lim["upper_95"]), color=NEUTRAL, linestyle="--", linewidth=1)
        ax.plot(
            n,
            _num(lim["lower_998"]),
            color=NEUTRAL,
            linestyle="-",
            linewidth=1,
            label="99.8% limits",
        )
        ax.plot(n, _num(lim["upper_998"]), color=NEUTRAL, linestyle="-", linewidth=1)
        ax.axhline(
            float(lim["target_per_1000"].iloc[0]),
            color=PALETTE[0],
            linewidth=1,
            label="Average across practices",
        )
        colour = {"above 99.8%": PALETTE[3], "below 99.8%": PALETTE[1]}
        cols = [colour.get(str(f), PALETTE[0]) for f in df["funnel_flag"]]
        ax.scatter(
            _num(df["registered"]),
            _num(df["rate_per_1000"]),
            c=cols,
            s=22,
            zorder=3,
            label="Practice",
        )
        ax.set_title("Referral rates by practice (funnel plot)")
        ax.set_xlabel("Registered people in the practice")
        ax.set_ylabel("People referred per 1,000 registered")
        ax.legend(loc="upper right")
    return fig


# -------------------------------------------------------------------------- case finding
@_needs("casefinding_by_pcn")
def casefinding(tables: Tables) -> Figure:
    df = tables["casefinding_by_pcn"]
    df = df.loc[df["pcn_code"] != "All PCNs"]
    with figure_style():
        fig, ax = _fig()
        x = np.arange(len(df))
        flagged = np.nan_to_num(_num(df["flagged"]))
        ax.bar(x, flagged, color=PALETTE[0], label="Flagged by the risk score")
        if "flagged_referred" in df.columns:
            ax.bar(
                x,
                np.nan_to_num(_num(df["flagged_referred"])),
                color=PALETTE[1],
                label="... of whom referred",
            )
        ax.set_xticks(x, list(df["pcn_code"]), rotation=30, ha="right")
        ax.set_title("Case finding: people flagged by the risk score, by PCN")
        ax.set_xlabel("Primary Care Network")
        ax.set_ylabel("People")
        ax.legend()
    return fig


# ----------------------------------------------------------------------------- wellbeing
@_needs("wellbeing_paired_change")
def wellbeing_change(tables: Tables) -> Figure:
    df = tables["wellbeing_paired_change"]
    df = df.loc[pd.to_numeric(df["people"], errors="coerce").fillna(0) > 0]
    with figure_style():
        fig = Figure(figsize=(7.0, 1.6 + 0.5 * max(len(df), 1)), layout="constrained")
        ax = fig.add_subplot()
        y = np.arange(len(df))
        est = _num(df["mean_change"])
        err = np.vstack([est - _num(df["conf_low"]), _num(df["conf_high"]) - est])
        ax.errorbar(
            est, y, xerr=np.clip(np.nan_to_num(err), 0, None), fmt="o", color=PALETTE[0], capsize=3
        )
        ax.axvline(0, color=NEUTRAL, linewidth=1)
        ax.set_yticks(y, [f"{a} (n={b})" for a, b in zip(df["label"], df["people"], strict=True)])
        ax.invert_yaxis()
        ax.set_title("Change in wellbeing, referral to follow-up")
        ax.set_xlabel("Mean change in score, points (95% CI; no comparison group)")
    return fig


@_needs("wellbeing_followup_pattern")
def wellbeing_missing(tables: Tables) -> Figure:
    return _stacked_percent(
        tables["wellbeing_followup_pattern"],
        rows="label",
        parts="pattern",
        title="Who has wellbeing measures",
        xlabel="Percent of people with an accepted referral",
    )
