"""Figures as bundle files: PNG and SVG with fixed metadata, so equal figures give equal
bytes, and a short alt text for screen readers."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib as mpl
from matplotlib.figure import Figure

DPI = 150
"""Resolution of released PNG files."""

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
