"""One figure style for every spevidence chart: seaborn "colorblind", plain labels.

Use it as a context manager around the code that builds a figure, so nothing global
changes::

    from spevidence.report import style

    with style.context():
        fig, ax = plt.subplots(figsize=style.FIGSIZE)
        ax.plot(x, y, color=style.TREATED)

The bundle writes figures as deterministic PNG and SVG files
(:mod:`spevidence.bundle.figure_files`).

Colours come from seaborn's colour-blind-safe palette (Waskom 2021, after Wong 2011,
*Nature Methods* 8:441). ``TREATED`` and ``COMPARATOR`` are fixed so that every chart
shows the referred group and its comparators in the same colours.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import matplotlib as mpl
from cycler import cycler
from matplotlib.colors import to_rgb

from spevidence.bundle.figure_files import DPI

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
