"""Service activity, equity of access and risk-score case finding (issue 12).

Public API::

    service_activity(referrals, *, start, end, ...)          -> ServiceActivity
    equity_of_access(population, referrals, *, at, ...)     -> EquityOfAccess
    risk_score(population, gp_appointments, *, at, spec=RiskScoreSpec(...)) -> RiskScore
    risk_score_panel(panel, population, *, spec=..., lookback_periods=12) -> panel + score
    activity_outputs(population, referrals, *, gp_appointments=, wellbeing=, ...,
                     control=None) -> (tables, figures)    # everything, for reports/CLI
    TABLES / FIGURES / count_columns(name) / derived_columns(name)   # catalogue
    release_tables(tables) -> (safe_tables, disclosure_log)  # disclosure control

Every result offers ``.tables()`` (aggregate tables only, never identifiers),
``.figures()`` and ``.plot(name)``; figures are drawn from the tables only, so they can
be redrawn from disclosure-controlled copies (``.figures(tables=controlled)``).
"""

from spevidence.activity.catalogue import FIGURES, TABLES, count_columns, derived_columns
from spevidence.activity.codelist import default_codelist, read_codelist
from spevidence.activity.equity import EquityOfAccess, equity_of_access
from spevidence.activity.outputs import activity_outputs, read_activity_extracts, write_outputs
from spevidence.activity.release import release_tables
from spevidence.activity.risk import (
    FACTORS,
    RiskScore,
    RiskScoreSpec,
    risk_score,
    risk_score_panel,
)
from spevidence.activity.service import ServiceActivity, service_activity

__all__ = [
    "FACTORS",
    "FIGURES",
    "TABLES",
    "EquityOfAccess",
    "RiskScore",
    "RiskScoreSpec",
    "ServiceActivity",
    "activity_outputs",
    "count_columns",
    "default_codelist",
    "derived_columns",
    "equity_of_access",
    "read_activity_extracts",
    "read_codelist",
    "release_tables",
    "risk_score",
    "risk_score_panel",
    "service_activity",
    "write_outputs",
]
