"""Common base for the aggregate-table results of this stage (private)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pandas as pd
from matplotlib.figure import Figure

from spevidence.errors import SpevidenceError

Plotter = Callable[[Mapping[str, pd.DataFrame]], Figure]


@dataclass(frozen=True)
class TableResult:
    """Aggregate tables (no identifiers) plus the options that made them.

    ``tables()`` returns the released tables by name; ``figures()`` draws every figure from
    those tables only, so the same figures can be redrawn from disclosure-controlled copies
    (pass them as ``tables=``).
    """

    results: Mapping[str, pd.DataFrame]
    settings: Mapping[str, Any] = field(default_factory=dict)

    _PLOTTERS: ClassVar[dict[str, Plotter]] = {}
    _TITLE: ClassVar[str] = "Results"
    _PRIMARY: ClassVar[str] = ""

    def tidy(self) -> pd.DataFrame:
        """The headline table of this result (a copy)."""
        name = self._PRIMARY if self._PRIMARY in self.results else next(iter(self.results))
        return self.results[name].copy()

    def tables(self) -> dict[str, pd.DataFrame]:
        """Aggregate tables by name (copies; safe to modify)."""
        return {name: df.copy() for name, df in self.results.items()}

    def figure_names(self) -> list[str]:
        """Names of the figures that can be drawn from the tables present."""
        return [n for n in self._PLOTTERS if self._can_plot(n, self.results)]

    def _can_plot(self, name: str, tables: Mapping[str, pd.DataFrame]) -> bool:
        need = getattr(self._PLOTTERS[name], "needs", (name,))
        return all(t in tables and len(tables[t]) > 0 for t in need)

    def plot(self, name: str, *, tables: Mapping[str, pd.DataFrame] | None = None) -> Figure:
        """Draw one figure by name, from ``tables`` (default: this result's own tables)."""
        src = self.results if tables is None else tables
        if name not in self._PLOTTERS:
            raise SpevidenceError(
                f"no figure named {name!r}; choose one of {sorted(self._PLOTTERS)}."
            )
        if not self._can_plot(name, src):
            raise SpevidenceError(
                f"figure {name!r} cannot be drawn: its table is missing or empty "
                "(the extract may lack the columns it needs)."
            )
        return self._PLOTTERS[name](src)

    def figures(self, *, tables: Mapping[str, pd.DataFrame] | None = None) -> dict[str, Figure]:
        """Every figure that the tables support, by name."""
        src = self.results if tables is None else tables
        return {n: self._PLOTTERS[n](src) for n in self._PLOTTERS if self._can_plot(n, src)}

    def summary(self) -> str:
        """Plain-text listing of the tables (names, rows, columns)."""
        lines = [self._TITLE]
        for name, df in self.results.items():
            lines.append(f"  {name}: {len(df)} rows; columns {', '.join(map(str, df.columns))}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {len(self.results)} tables>"
