"""SROI figures: value map (waterfall), tornado, simulation histogram."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

if TYPE_CHECKING:
    from spevidence.sroi._engine import SROIResult

_LABELS = {
    "gp": "GP appointments avoided",
    "ae": "A&E attendances avoided",
    "admissions": "Emergency admissions avoided",
}


def _palette() -> list[tuple[float, float, float]]:
    return list(sns.color_palette("colorblind"))


def _money(v: float) -> str:
    return f"-£{abs(v):,.0f}" if v < 0 else f"£{v:,.0f}"


def waterfall(res: SROIResult) -> Figure:
    """Value map: each outcome's present value stacked up, the cost, then the NPV."""
    pal = _palette()
    bo = res.by_outcome()
    labels = [_LABELS.get(str(n), str(n)) for n in bo["outcome"]]
    vals = bo["present_value"].to_numpy(float)
    pv_in = res.pv_inputs
    fig = Figure(figsize=(8, 4.5), layout="constrained")
    ax = fig.subplots()
    bars: list[tuple[str, float, float, tuple[float, float, float], str]] = []
    start = 0.0
    for lab, v in zip(labels, vals, strict=True):
        bars.append((lab, start, v, pal[2] if v >= 0 else pal[3], ""))
        start += v
    total = start
    bars.append(("Total benefits", 0.0, total, pal[0], ""))
    bars.append(("Cost of service", total, -pv_in, pal[1], "//"))
    bars.append(("Net present value", 0.0, total - pv_in, pal[4], ""))
    for x, (_, bottom, height, colour, hatch) in enumerate(bars):
        ax.bar(
            x, height, bottom=bottom, color=colour, edgecolor="black", linewidth=0.5, hatch=hatch
        )
        top = bottom + height
        ax.text(
            x, top, _money(height), ha="center", va="bottom" if height >= 0 else "top", fontsize=8
        )
    ax.set_xticks(range(len(bars)), [b[0] for b in bars], rotation=20, ha="right")
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_ylabel(f"Present value (£, {res.price_year} prices)")
    ax.set_title(f"Value map: £{res.sroi_ratio:.2f} of value for every £1 spent")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: _money(v)))
    return fig


def tornado(res: SROIResult, *, top: int = 12) -> Figure:
    pal = _palette()
    s = res.sensitivity().head(top).iloc[::-1]
    base = float(s["base_ratio"].iloc[0]) if len(s) else res.sroi_ratio
    names = [
        f"{p.replace('_', ' ')} ({_LABELS.get(str(o), str(o)) if o != 'all' else 'all'})"
        for p, o in zip(s["parameter"], s["outcome"], strict=True)
    ]
    fig = Figure(figsize=(8, 0.45 * len(s) + 1.5), layout="constrained")
    ax = fig.subplots()
    y = np.arange(len(s))
    lo = s["ratio_at_low"].to_numpy(float)
    hi = s["ratio_at_high"].to_numpy(float)
    ax.barh(
        y,
        lo - base,
        left=base,
        color=pal[0],
        label="parameter at low end",
        edgecolor="black",
        linewidth=0.4,
    )
    ax.barh(
        y,
        hi - base,
        left=base,
        color=pal[1],
        label="parameter at high end",
        edgecolor="black",
        linewidth=0.4,
        hatch="//",
    )
    ax.axvline(base, color="black", linewidth=1)
    ax.axvline(1.0, color="grey", linestyle="--", linewidth=1, label="break-even (£1 per £1)")
    ax.set_yticks(y, names)
    ax.set_xlabel("Value per £1 spent (SROI ratio)")
    ax.set_title("Which assumptions matter most: one-way sensitivity")
    ax.legend(loc="lower right", fontsize=8)
    return fig


def simulation(res: SROIResult) -> Figure:
    pal = _palette()
    sims = res.simulations
    if sims is None:
        raise ValueError("no simulations")  # unreachable: SROIResult.plot checks first
    r = sims["sroi_ratio"].to_numpy(float)
    r = r[np.isfinite(r)]
    g = res.glance().iloc[0]
    fig = Figure(figsize=(8, 4.5), layout="constrained")
    ax = fig.subplots()
    ax.hist(r, bins=60, color=pal[0], edgecolor="white", linewidth=0.3)
    ax.axvspan(
        g["ratio_conf_low"], g["ratio_conf_high"], color=pal[0], alpha=0.12, label="95% interval"
    )
    ax.axvline(1.0, color="black", linestyle="--", linewidth=1.2, label="break-even (£1 per £1)")
    ax.axvline(
        res.sroi_ratio,
        color=pal[3],
        linewidth=1.5,
        label=f"central estimate (£{res.sroi_ratio:.2f})",
    )
    ax.set_xlabel("Value per £1 spent (SROI ratio)")
    ax.set_ylabel("Number of simulations")
    ax.set_title(
        f"How sure are we? Chance the service returns more than £1 per £1: {g['p_ratio_gt_1']:.0%}"
    )
    ax.legend(fontsize=8)
    return fig
