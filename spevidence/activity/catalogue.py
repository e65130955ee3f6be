"""Catalogue of the activity, equity, case-finding and wellbeing tables and figures.

The tables and the roles of their columns (counts, the columns derived from them, the
statistics and margins of disclosure control) are declared once, in the disclosure
catalogue (:data:`spevidence.disclosure.catalogue.ACTIVITY`); :data:`TABLES` is that part
of it. Each entry has a one-line ``description``, the ``counts`` of people or events
(redacted/rounded by disclosure control) and the ``derived`` columns (percentages,
rates, intervals, summaries) suppressed, or recomputed from the rounded counts, wherever
their count is redacted.
"""

from __future__ import annotations

from collections.abc import Mapping

from spevidence.disclosure.catalogue import ACTIVITY, Roles

TABLES: Mapping[str, Roles] = ACTIVITY
"""Every table the activity and wellbeing stages can produce."""

FIGURES: dict[str, str] = {
    "activity_referrals_by_period": "Referrals over time, stacked by source.",
    "activity_outcomes": "Accepted/declined/did-not-engage percentages by source, 95% CI.",
    "activity_time_to_contact": "Referrals by days from referral to first contact.",
    "activity_contacts": "Accepted referrals by number of contacts, norm highlighted.",
    "activity_support_duration": "Accepted referrals by length of support.",
    "activity_caseload": "Caseload per full-time link worker against 200-250 a year.",
    "activity_coding_audit": "SNOMED CT coding of referrals by outcome (percent).",
    "equity_rates": "People referred per 1,000 registered by group, 95% CI.",
    "equity_funnel": "Funnel plot of practice referral rates (95% and 99.8% limits).",
    "casefinding_by_pcn": "People flagged by the risk score per PCN, and how many referred.",
    "wellbeing_paired_change": "Mean change per instrument with 95% CI (no comparator).",
    "wellbeing_followup_pattern": "Who has baseline and follow-up wellbeing measures.",
}
"""Every figure, drawn from the tables of the same family."""


def count_columns(name: str) -> tuple[str, ...]:
    """Count columns of a released table (for disclosure control)."""
    return TABLES[name].counts


def derived_columns(name: str) -> tuple[str, ...]:
    """Columns derived from the counts (suppress or recompute with their counts)."""
    return TABLES[name].derived
