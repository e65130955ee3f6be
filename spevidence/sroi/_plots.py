"""SROI figures drawn from the released tables only (so the report can redraw them).

- value map (waterfall): ``sroi_by_outcome`` + ``sroi_summary``
- tornado: ``sroi_sensitivity``
- simulation histogram: ``sroi_simulation`` (+ ``sroi_summary``)

Colour-blind-safe palette (seaborn "colorblind") plus hatching, so the figures
also read in greyscale.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from spevidence.errors import DataError

_LABELS = {
    "gp": "GP appointments avoided",
    "ae": "A&E attendances avoided",
    "admissions": "Emergency admissions avoided",
    "wellbeing": "Wellbeing (WELLBYs)",
}
_PARAMS = {
    "unit_value": "unit cost",
    "quantity": "effect size (DiD 95% CI)",
    "deadweight": "deadweight",
    "displacement": "displacement",
    "attribution": "attribution",
    "drop_off": "drop-off",
    "duration_years": "years the effect lasts",
    "discount": "discount rate",
    "inputs": "cost of the service",
    "input_amount": "cost",
}


def _palette() -> list[tuple[float, float, float]]:
    return list(sns.color_palette("colorblind"))


def _money(v: float) -> str:
    return f"-£{abs(v):,.0f}" if v < 0 else f"£{v:,.0f}"


def _label(outcome: object) -> str:
    return _LABELS.get(str(outcome), str(outcome))


def waterfall(by_outcome: pd.DataFrame, summary: pd.DataFrame) -> Figure:
    """Value map: each outcome's present value stacked up, the cost, then the NPV."""
    pal = _palette()
    g = summary.iloc[0]
    vals = by_outcome["present_value"].to_numpy(float)
    pv_in = float(g["pv_inputs"])
    fig = Figure(figsize=(8, 4.8), layout="constrained")
    ax = fig.subplots()
    bars: list[tuple[str, float, float, tuple[float, float, float], str]] = []
    start = 0.0
    for name, v in zip(by_outcome["outcome"], vals, strict=True):
        bars.append((_label(name), start, v, pal[2] if v >= 0 else pal[3], ""))
        start += v
    total = start
    bars.append(("Total benefits", 0.0, total, pal[0], ""))
    bars.append(("Cost of the service", total, -pv_in, pal[1], "//"))
    bars.append(("Net present value", 0.0, total - pv_in, pal[4], ".."))
    for x, (_, bottom, height, colour, hatch) in enumerate(bars):
        ax.bar(
            x, height, bottom=bottom, color=colour, edgecolor="black", linewidth=0.5, hatch=hatch
        )
        if height >= 0:
            ax.annotate(
                _money(height),
                (x, bottom + height),
                xytext=(0, 3),
                textcoords="offset points",
                ha="center",
                va="bottom",
                fontsize=8,
            )
        else:  # a cost or disbenefit: label it inside the bar
            ax.text(
                x,
                bottom + height / 2,
                _money(height),
                ha="center",
                va="center",
                fontsize=8,
                bbox={"facecolor": "white", "edgecolor": "none", "pad": 1.5},
            )
    ax.set_xticks(range(len(bars)), [b[0] for b in bars], rotation=20, ha="right")
    ax.axhline(0, color="black", linewidth=0.8)
    ends = [v for _, b, h, _, _ in bars for v in (b, b + h)] + [0.0]
    lo_y, hi_y = min(ends), max(ends)
    pad = 0.12 * ((hi_y - lo_y) or 1.0)
    ax.set_ylim(lo_y - (pad if lo_y < 0 else 0.0), hi_y + pad)
    ax.set_ylabel(f"Present value (£, {g['price_year']} prices)")
    ax.set_title(
        f"Value map: £{float(g['sroi_ratio']):.2f} of value for every £1 spent "
        f"(discount {float(g['discount']):.1%} a year)"
    )
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: _money(v)))
    return fig


def tornado(sensitivity: pd.DataFrame, *, top: int = 12) -> Figure:
    """One-way sensitivity: how far the ratio moves as each assumption moves."""
    pal = _palette()
    if len(sensitivity) == 0:
        raise DataError("sroi_sensitivity has no rows; nothing to plot.")
    s = sensitivity.sort_values("swing", ascending=False, kind="stable").head(top).iloc[::-1]
    base = float(s["base_ratio"].iloc[0])
    names = [
        f"{_PARAMS.get(str(p), str(p))}" + ("" if o == "all" else f" - {_label(o)}")
        for p, o in zip(s["parameter"], s["outcome"], strict=True)
    ]
    fig = Figure(figsize=(8.5, 0.42 * len(s) + 1.6), layout="constrained")
    ax = fig.subplots()
    y = np.arange(len(s))
    lo = s["ratio_at_low"].to_numpy(float)
    hi = s["ratio_at_high"].to_numpy(float)
    kw: dict[str, Any] = {"edgecolor": "black", "linewidth": 0.4}
    ax.barh(y, lo - base, left=base, color=pal[0], label="assumption at its low end", **kw)
    ax.barh(
        y, hi - base, left=base, color=pal[1], hatch="//", label="assumption at its high end", **kw
    )
    ax.axvline(base, color="black", linewidth=1, label=f"central estimate (£{base:.2f})")
    ax.axvline(1.0, color="grey", linestyle="--", linewidth=1, label="break-even (£1 per £1)")
    ax.set_yticks(y, names)
    ax.set_xlabel("Value per £1 spent (SROI ratio)")
    ax.set_title("Which assumptions matter most (one at a time)")
    fig.legend(loc="outside lower center", ncols=2, fontsize=8)
    return fig


def simulation(sim: pd.DataFrame, summary: pd.DataFrame) -> Figure:
    """Histogram of simulated ratios with the 95% interval and break-even line."""
    pal = _palette()
    g = summary.iloc[0]
    if "p_ratio_gt_1" not in summary.columns or not np.isfinite(float(g["p_ratio_gt_1"])):
        raise DataError("sroi_summary has no simulation results; run with n_sims > 0.")
    fig = Figure(figsize=(8, 4.5), layout="constrained")
    ax = fig.subplots()
    left = sim["bin_low"].to_numpy(float)
    width = sim["bin_high"].to_numpy(float) - left
    ax.bar(
        left,
        sim["share"].to_numpy(float) * 100,
        width=width,
        align="edge",
        color=pal[0],
        edgecolor="white",
        linewidth=0.3,
        label="simulations",
    )
    ax.axvspan(
        float(g["ratio_conf_low"]),
        float(g["ratio_conf_high"]),
        color=pal[0],
        alpha=0.12,
        label="95% interval",
    )
    ax.axvline(1.0, color="black", linestyle="--", linewidth=1.2, label="break-even (£1 per £1)")
    ax.axvline(
        float(g["sroi_ratio"]),
        color=pal[3],
        linewidth=1.5,
        label=f"central estimate (£{float(g['sroi_ratio']):.2f})",
    )
    ax.set_xlabel("Value per £1 spent (SROI ratio)")
    ax.set_ylabel("Share of simulations (%)")
    ax.set_title(
        "How sure are we? Chance of more than £1 back per £1 spent: "
        f"{float(g['p_ratio_gt_1']):.0%} ({int(g['n_sims'])} simulations)"
    )
    ax.legend(fontsize=8)
    return fig


def plot_tables(
    tables: Mapping[str, pd.DataFrame],
    kind: Literal["waterfall", "tornado", "simulation"] = "waterfall",
    *,
    top: int = 12,
) -> Figure:
    """Draw an SROI figure from released tables (``SROIResult.tables()`` or a bundle).

    Parameters
    ----------
    tables : mapping
        ``sroi_summary`` and ``sroi_by_outcome`` (waterfall), ``sroi_sensitivity``
        (tornado), ``sroi_simulation`` and ``sroi_summary`` (simulation).
    kind : {"waterfall", "tornado", "simulation"}
    top : int
        Parameters shown in the tornado.
    """
    need = {
        "waterfall": ("sroi_by_outcome", "sroi_summary"),
        "tornado": ("sroi_sensitivity",),
        "simulation": ("sroi_simulation", "sroi_summary"),
    }
    if kind not in need:
        raise DataError(
            f"plot kind {kind!r} is unknown; use 'waterfall', 'tornado' or 'simulation'."
        )
    missing = [t for t in need[kind] if t not in tables]
    if missing:
        hint = " (run with n_sims > 0)" if "sroi_simulation" in missing else ""
        raise DataError(f"the {kind} figure needs table(s) {missing}{hint}.")
    if kind == "waterfall":
        return waterfall(tables["sroi_by_outcome"], tables["sroi_summary"])
    if kind == "tornado":
        return tornado(tables["sroi_sensitivity"], top=top)
    return simulation(tables["sroi_simulation"], tables["sroi_summary"])
