"""Linkage: the person x period outcome panel on DuckDB or Spark (DESIGN.md section 5)."""

from spevidence.link._panel import PANEL_COLUMNS, Definitions, Panel, build_panel
from spevidence.link.checks import check_outcomes

__all__ = ["PANEL_COLUMNS", "Definitions", "Panel", "build_panel", "check_outcomes"]
