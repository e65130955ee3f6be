"""Comparator selection (DESIGN.md section 2): MatchIt-compatible nearest-neighbour
matching, risk-set matching of referred people to not-yet-referred comparators, and
balance diagnostics with cobalt conventions."""

from spevidence.match.balance import Balance
from spevidence.match.nearest import Matched, nearest
from spevidence.match.risk_set import RiskSetMatched, risk_set

__all__ = ["Balance", "Matched", "RiskSetMatched", "nearest", "risk_set"]
