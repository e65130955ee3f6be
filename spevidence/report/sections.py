"""Helpers the report templates call: read the bundle, format tables, place figures.

Everything here reads only the bundle folder (tables CSV, figures, manifest). Each
helper returns pandoc Markdown, which a template cell shows with :func:`show`, so the
same template renders with Quarto and with the built-in renderer.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import yaml

from spevidence.report._labels import label as name_label

if TYPE_CHECKING:
    from matplotlib.figure import Figure

NOT_RUN = "This analysis was not run in this evaluation (the bundle holds no `{name}` table)."
REDACTED = "[c]"
"""The mark of a cell withheld by disclosure control (the ONS convention)."""
NOT_AVAILABLE = "[x]"
"""The mark of a cell with no value: it does not apply, or could not be computed."""
MARKS_NOTE = {
    REDACTED: f"{REDACTED} marks a cell withheld by disclosure control (a count from 1 to 7, "
    "a cell from which one could be worked out, or a number resting on one).",
    NOT_AVAILABLE: f"{NOT_AVAILABLE} marks a cell with no value: it does not apply, or "
    "could not be computed.",
}
LABELLED = ("outcome", "covariate", "variable", "term", "model")
"""Columns whose values are names the label table (:func:`~spevidence.report._labels.label`)
turns into words."""


def show(markdown: str) -> None:
    """Display Markdown from a template cell (Quarto and the built-in renderer read it)."""
    from IPython.display import Markdown, display

    display(Markdown(markdown))


def _fmt_number(value: Any, digits: int) -> str:
    if value is None:
        return NOT_AVAILABLE
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value):
            return NOT_AVAILABLE
        if math.isinf(value):
            return "∞" if value > 0 else "−∞"
        if value.is_integer() and abs(value) >= 1000:
            return f"{int(value):,}"
        if value.is_integer() and abs(value) < 1000:
            return f"{int(value)}"
        text = f"{value:,.{digits}f}"
        return text.replace("-", "−", 1) if text.startswith("-") else text
    return str(value)


COLUMN_LABELS: dict[str, str] = {
    "outcome": "Outcome",
    "model": "Model",
    "term": "Term",
    "estimate": "Estimate",
    "std_error": "Std. error",
    "statistic": "Statistic",
    "p_value": "p value",
    "conf_low": "95% CI low",
    "conf_high": "95% CI high",
    "n": "n",
    "n_dropped": "n excluded",
    "smd_before": "SMD before",
    "smd_after": "SMD after",
    "variance_ratio_after": "Variance ratio after",
    "event_time": "Months from referral",
    "df": "df",
    "analysis": "Analysis",
}
"""Plain-English column headings used by :func:`markdown_table` unless overridden."""


def _heading(col: object) -> str:
    text = str(col)
    if text in COLUMN_LABELS:
        return COLUMN_LABELS[text]
    text = text.replace("_", " ")
    return text[:1].upper() + text[1:]


def _escape(text: str) -> str:
    """Table-cell text as literal Markdown: pipes, line breaks and angle brackets (a value
    such as ``<PCN/ICB>`` would otherwise be read as an HTML tag and vanish)."""
    for ch in "\\|<>":
        text = text.replace(ch, "\\" + ch)
    return text.replace("\n", " ")


def markdown_table(
    df: pd.DataFrame,
    *,
    caption: str | None = None,
    label: str | None = None,
    digits: int | dict[str, int] = 2,
    rename: dict[str, str] | None = None,
    max_rows: int = 60,
    redacted: set[tuple[int, str]] | frozenset[tuple[int, str]] = frozenset(),
) -> str:
    """A pandoc pipe table (numbers right-aligned), with caption and ``#tbl-`` label.

    Names in the :data:`LABELLED` columns are shown by their labels; the cells
    ``(row position, column)`` in ``redacted`` are shown as :data:`REDACTED`, other
    missing cells as :data:`NOT_AVAILABLE`, and a note below says what each mark means.
    """

    frame = df.head(max_rows).copy()
    for col in LABELLED:
        if col in frame.columns:
            frame[col] = [v if pd.isna(v) else name_label(v) for v in frame[col]]
    cols = list(frame.columns)
    names = [(rename or {}).get(str(c), _heading(c)) for c in cols]
    numeric = [pd.api.types.is_numeric_dtype(frame[c]) for c in cols]
    # a float column is shown with fixed decimals unless every value is a whole number
    whole = {
        str(c): bool(
            pd.api.types.is_numeric_dtype(frame[c])
            and (pd.to_numeric(frame[c], errors="coerce").dropna() % 1 == 0).all()
        )
        for c in cols
    }
    body: list[list[str]] = []
    for i, rec in enumerate(frame.itertuples(index=False, name=None)):
        cells = []
        for c, v in zip(cols, rec, strict=True):
            if (i, str(c)) in redacted:
                cells.append(REDACTED)
                continue
            d = digits.get(str(c), 2) if isinstance(digits, dict) else digits
            if v is not None and not isinstance(v, str) and pd.isna(v):
                v = None
            if hasattr(v, "item"):
                v = v.item()
            if str(c) in ("p_value", "p") and isinstance(v, float) and 0 <= v < 0.001:
                cells.append("<0.001")
                continue
            if isinstance(v, float) and not whole[str(c)]:
                text = f"{v:,.{d}f}"
                cells.append(_escape("−" + text[1:] if text.startswith("-") else text))
                continue
            cells.append(_escape(_fmt_number(v, d)))
        body.append(cells)
    # column widths in proportion to content (pandoc reads them from the dashes when a
    # table is wider than the page): long labels get room, numbers stay narrow
    widths = []
    for j, name in enumerate(names):
        longest_word = max((len(w) for w in name.split()), default=3)
        content = max((len(r[j]) for r in body), default=0)
        widths.append(max(3, min(40, max(content, longest_word))))
    head = "| " + " | ".join(_escape(n) for n in names) + " |"
    rule = (
        "|"
        + "|".join(
            ("-" * w + ":") if num else (":" + "-" * w)
            for w, num in zip(widths, numeric, strict=True)
        )
        + "|"
    )
    rows = ["| " + " | ".join(r) + " |" for r in body]
    lines = [head, rule, *rows]
    out = "\n".join(lines) + "\n"
    if len(df) > max_rows:
        out += f"\n*First {max_rows} of {len(df)} rows; the full table is in the bundle.*\n"
    if caption:
        lab = f" {{#{label}}}" if label else ""
        out += f"\n: {caption}{lab}\n"
    shown = {c for r in body for c in r}
    if notes := [text for mark, text in MARKS_NOTE.items() if mark in shown]:
        out += "\n*" + " ".join(notes) + "*\n"
    return "\n" + out


@dataclass
class ReportBundle:
    """Read-only view of a bundle folder for the report templates."""

    path: Path
    figure_dir: Path = field(default_factory=lambda: Path("_figures"))
    _tables: dict[str, pd.DataFrame | None] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        self.figure_dir = Path(self.figure_dir)

    # -- reading ---------------------------------------------------------------
    @property
    def manifest_sha256(self) -> str | None:
        """SHA-256 of the bundle's ``manifest.json`` (the anchor the report prints)."""
        import hashlib

        p = self.path / "manifest.json"
        return hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None

    @property
    def manifest(self) -> dict[str, Any]:
        p = self.path / "manifest.json"
        if not p.is_file():
            return {}
        data = json.loads(p.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}

    @property
    def protocol(self) -> dict[str, Any]:
        p = self.path / "protocol.yaml"
        if not p.is_file():
            return {}
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}

    def table(self, name: str) -> pd.DataFrame | None:
        """A released table, or ``None`` if the bundle does not hold it."""
        if name not in self._tables:
            p = self.path / "tables" / f"{name}.csv"
            self._tables[name] = pd.read_csv(p) if p.is_file() else None
        t = self._tables[name]
        return None if t is None else t.copy()

    def has(self, name: str) -> bool:
        t = self.table(name)
        return t is not None and len(t) > 0

    def disclosure_log(self) -> pd.DataFrame | None:
        p = self.path / "disclosure_log.csv"
        return pd.read_csv(p) if p.is_file() else None

    def bundle_figure(self, name: str) -> Path | None:
        p = self.path / "figures" / f"{name}.png"
        return p if p.is_file() else None

    # -- writing markdown --------------------------------------------------------
    def table_md(
        self,
        name: str,
        *,
        caption: str,
        columns: Sequence[str] | None = None,
        label: str | None = None,
        digits: int | dict[str, int] = 2,
        rename: dict[str, str] | None = None,
        transform: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
    ) -> str:
        """A released table as Markdown, or the "not run" sentence."""
        df = self.table(name)
        if df is None or df.empty:
            return not_run(name)
        # the cells the log names are marked only where the rows are the released ones
        redacted = self.redacted_cells(name) if transform is None else frozenset()
        if transform is not None:
            df = transform(df)
        if columns is not None:
            keep = [c for c in columns if c in df.columns]
            if keep:
                df = df[keep]
        out = markdown_table(
            df,
            caption=caption,
            label=label or f"tbl-{name}",
            digits=digits,
            rename=rename,
            redacted=redacted,
        )
        if transform is not None and self.redactions(name):
            out += (
                f"\n*{NOT_AVAILABLE} marks a value that is not available: in this table it "
                "may also be one withheld by disclosure control (see the disclosure log).*\n"
            )
        return out

    def redacted_cells(self, name: str) -> frozenset[tuple[int, str]]:
        """The ``(row, column)`` cells of table ``name`` the disclosure log says were
        withheld (a whole-column entry names no cell)."""
        log = self.disclosure_log()
        need = {"table", "column", "row", "action"}
        if log is None or log.empty or not need <= set(log.columns):
            return frozenset()
        hit = log[
            (log["table"].astype(str) == name)
            & log["action"].astype(str).str.contains("redact")
            & log["row"].astype(str).str.fullmatch(r"\d+")
        ]
        return frozenset(zip(hit["row"].astype(int), hit["column"].astype(str), strict=True))

    def redactions(self, name: str) -> int:
        """How many cells of table ``name`` the disclosure log says were redacted."""
        log = self.disclosure_log()
        if log is None or log.empty:
            return 0
        by = next((c for c in ("table", "table_name") if c in log.columns), None)
        act = next((c for c in ("action", "rule") if c in log.columns), None)
        if by is None or act is None:
            return 0
        hit = (log[by].astype(str) == name) & log[act].astype(str).str.lower().str.contains(
            "redact"
        )
        return int(hit.sum())

    def figure_md(
        self,
        name: str,
        *,
        caption: str,
        alt: str,
        draw: Callable[[pd.DataFrame], Figure] | None = None,
        table: str | None = None,
        width: str | None = None,
    ) -> str:
        """A figure as Markdown: the bundle's own ``figures/NAME.png`` if present, else one
        drawn by ``draw`` (default: the function registered for NAME in
        :data:`spevidence.report.figures.FIGURES`) from the released ``table``; else "".

        The PNG is copied or written (deterministic bytes) into ``figure_dir`` next to the
        document being rendered. matplotlib is imported only if a figure must be drawn.
        """
        self.figure_dir.mkdir(parents=True, exist_ok=True)
        target = self.figure_dir / f"{name}.png"
        src = self.bundle_figure(name)
        if src is not None:
            target.write_bytes(src.read_bytes())
            meta = (self.manifest.get("figures") or {}).get(name) or {}
            alt = str(meta.get("alt") or alt)
        else:
            from spevidence.bundle.figure_files import figure_bytes
            from spevidence.report.figures import FIGURES

            default_table, default_draw = FIGURES.get(name, (None, None))
            table = table or default_table
            draw = draw or default_draw
            df = self.table(table) if table is not None else None
            if draw is None or df is None or df.empty:
                return ""
            fig = draw(df)
            target.write_bytes(figure_bytes(fig, "png"))
            own = getattr(fig, "spevidence_alt", None)
            alt = own if isinstance(own, str) and own else alt
        rel = target.as_posix()
        size = f" width={width}" if width else ""
        return f'\n![{caption}]({rel}){{#fig-{_slug(name)} fig-alt="{_attr(alt)}"{size}}}\n'


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9-]", "-", name.lower())


def _attr(value: str) -> str:
    return value.replace("\\", " ").replace('"', "'").replace("\n", " ")


def not_run(name: str) -> str:
    """The sentence used when a section's table is absent."""
    return "\n*" + NOT_RUN.format(name=name) + "*\n"
