"""One figure style for every spevidence chart: seaborn "colorblind", plain labels.

Use it as a context manager around the code that builds a figure, so nothing global
changes::

    from spevidence.report import style

    with style.context():
        fig, ax = plt.subplots(figsize=style.FIGSIZE)
        ax.plot(x, y, color=style.TREATED)
    style.save_figure(fig, "figures/trends")  # PNG + SVG, byte-deterministic

Colours come from seaborn's colour-blind-safe palette (Waskom 2021, after Wong 2011,
*Nature Methods* 8:441). ``TREATED`` and ``COMPARATOR`` are fixed so that every chart
shows the referred group and its comparators in the same colours.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import matplotlib as mpl
from cycler import cycler
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure

PALETTE_HEX: tuple[str, ...] = (
    "#0173b2",
    "#de8f05",
    "#029e73",
    "#d55e00",
    "#cc78bc",
    "#ca9161",
    "#fbafe4",
    "#949494",
    "#ece133",
    "#56b4e9",
)
"""seaborn's "colorblind" palette (``sns.color_palette("colorblind").as_hex()``), written out
so that importing the style does not import seaborn; a test checks they agree."""

PALETTE: list[tuple[float, float, float]] = [to_rgb(c) for c in PALETTE_HEX]
"""The ten seaborn "colorblind" colours, as RGB tuples."""

TREATED = PALETTE[0]  # blue: people referred to social prescribing
COMPARATOR = PALETTE[1]  # orange: matched comparators
EFFECT = PALETTE[2]  # green: estimated effects
NEUTRAL = (0.35, 0.35, 0.35)  # grey: reference lines, annotations
HIGHLIGHT = PALETTE[3]  # vermilion: warnings, failed checks

FIGSIZE = (7.0, 4.2)
"""Default figure size in inches (fits an A4 page width with margins)."""

DPI = 150
"""Resolution of released PNG files."""

_RC: dict[str, Any] = {
    "axes.prop_cycle": cycler(color=PALETTE),
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.titlesize": 12,
    "axes.titleweight": "bold",
    "axes.titlelocation": "left",
    "axes.labelsize": 10,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "legend.fontsize": 9,
    "legend.frameon": False,
    "font.family": "DejaVu Sans",
    "figure.dpi": 100,
    "savefig.dpi": DPI,
    "svg.hashsalt": "spevidence",
    "svg.fonttype": "path",
    "pdf.fonttype": 42,
    "path.simplify": True,
}


def rc() -> dict[str, Any]:
    """The matplotlib rc settings of the spevidence style (seaborn whitegrid + ours)."""
    import seaborn as sns

    base = dict(sns.axes_style("whitegrid"))
    base.update(sns.plotting_context("notebook", font_scale=0.9))
    base.update(_RC)
    return base


@contextmanager
def context() -> Iterator[None]:
    """Apply the spevidence style inside a ``with`` block only (no global state)."""
    settings: Any = rc()
    with mpl.rc_context(settings):
        yield


PNG_METADATA: dict[str, str | None] = {"Software": None}
SVG_METADATA: dict[str, str | None] = {"Date": None, "Creator": None, "Format": None}


def figure_bytes(fig: Figure, fmt: str = "png", *, dpi: int = DPI) -> bytes:
    """Render ``fig`` to PNG or SVG bytes with no timestamps or software tags.

    Two calls on equal figures give equal bytes (fixed metadata, fixed SVG hash salt).
    """
    buf = io.BytesIO()
    if fmt == "png":
        fig.savefig(buf, format="png", dpi=dpi, metadata=PNG_METADATA, bbox_inches="tight")
    elif fmt == "svg":
        with mpl.rc_context({"svg.hashsalt": "spevidence", "svg.fonttype": "path"}):
            fig.savefig(buf, format="svg", metadata=SVG_METADATA, bbox_inches="tight")
    else:
        raise ValueError(f"format must be 'png' or 'svg', got {fmt!r}")
    return buf.getvalue()


def save_figure(fig: Figure, stem: str | Path, *, dpi: int = DPI) -> dict[str, Path]:
    """Write ``stem.png`` and ``stem.svg`` deterministically; return both paths."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    for fmt in ("png", "svg"):
        path = stem.with_name(stem.name + "." + fmt)
        path.write_bytes(figure_bytes(fig, fmt, dpi=dpi))
        out[fmt] = path
    return out


def alt_text(fig: Figure) -> str:
    """A short description of a figure for screen readers, from its titles and labels.

    A figure may carry its own text in the attribute ``fig.spevidence_alt``; otherwise
    the suptitle, axes titles and axis labels are joined.
    """
    own = getattr(fig, "spevidence_alt", None)
    if isinstance(own, str) and own.strip():
        return own.strip()
    parts: list[str] = []
    sup = getattr(fig, "_suptitle", None)
    if sup is not None and sup.get_text():
        parts.append(sup.get_text())
    for ax in fig.get_axes():
        bits = [ax.get_title(loc) for loc in ("left", "center", "right")]
        title = " ".join(b for b in bits if b)
        if title:
            parts.append(title)
        axes_desc = []
        if ax.get_xlabel():
            axes_desc.append(f"x axis: {ax.get_xlabel()}")
        if ax.get_ylabel():
            axes_desc.append(f"y axis: {ax.get_ylabel()}")
        if axes_desc:
            parts.append("; ".join(axes_desc))
    return ". ".join(parts) if parts else "Figure"
