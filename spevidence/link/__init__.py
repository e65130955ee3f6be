"""Linkage: the person x period outcome panel on DuckDB or Spark (DESIGN.md section 5)."""

from spevidence.link._panel import PANEL_COLUMNS, Definitions, Panel, build_panel

__all__ = ["PANEL_COLUMNS", "Definitions", "Panel", "build_panel"]
