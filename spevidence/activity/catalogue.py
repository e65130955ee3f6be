"""Catalogue of the activity, equity, case-finding and wellbeing tables and figures.

For each released table: a one-line description, the columns that are counts of people
or events (to be redacted/rounded by disclosure control), and the columns derived from
those counts (percentages, rates, intervals, summaries) that must be suppressed, or
recomputed from the rounded counts, wherever their count is redacted.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TableInfo:
    description: str
    counts: tuple[str, ...]
    derived: tuple[str, ...] = ()


_RATE = ("rate_per_1000", "conf_low", "conf_high")
_REF_RATE = ("referral_rate_per_1000", "referral_conf_low", "referral_conf_high")
_NEED = ("need_rate_per_1000", "need_conf_low", "need_conf_high")

TABLES: dict[str, TableInfo] = {
    "activity_referrals_by_period": TableInfo(
        "Referrals per month (or quarter) by referral source.", ("referrals",)
    ),
    "activity_referrals_by_pcn_period": TableInfo(
        "Referrals per month (or quarter) by PCN.", ("referrals",)
    ),
    "activity_referrals_by_practice": TableInfo(
        "Referrals, people referred and accepted referrals per practice over the window.",
        ("referrals", "people", "accepted"),
    ),
    "activity_outcomes": TableInfo(
        "Accepted / declined / did-not-engage counts and percentages (Wilson 95% CI), "
        "all sources and by source.",
        ("n", "referrals"),
        ("percent", "conf_low", "conf_high"),
    ),
    "activity_time_to_contact": TableInfo(
        "Days from referral to first contact: median, quartiles, mean, by source.",
        ("referrals",),
        ("median_days", "q1_days", "q3_days", "mean_days"),
    ),
    "activity_time_to_contact_bands": TableInfo(
        "Referrals by days to first contact (0-7, 8-14, 15-28, 29-56, 57+, none recorded).",
        ("referrals",),
        ("percent",),
    ),
    "activity_contacts": TableInfo(
        "Contacts per accepted referral against the 6-12 norm (summary, share within norm).",
        ("referrals", "within_norm"),
        (
            "median_contacts",
            "q1_contacts",
            "q3_contacts",
            "mean_contacts",
            "percent_within_norm",
            "conf_low",
            "conf_high",
        ),
    ),
    "activity_contacts_bands": TableInfo(
        "Accepted referrals by number of contacts (0, below, within, above the norm).",
        ("referrals",),
        ("percent",),
    ),
    "activity_support_duration": TableInfo(
        "Accepted referrals by length of support (first contact, else referral, to "
        "discharge) against about 3 months; median days.",
        ("referrals",),
        ("percent", "median_days"),
    ),
    "activity_caseload": TableInfo(
        "Caseload per link worker (anonymised labels): people supported per year and per "
        "WTE against 200-250.",
        ("referrals", "people"),
        ("caseload_per_year", "caseload_per_wte_year", "against_norm"),
    ),
    "activity_coding_audit": TableInfo(
        "SNOMED CT coding of referrals by outcome: agreed codes, other codes, no code.",
        ("n", "referrals"),
        ("percent",),
    ),
    "activity_codes_outside_codelist": TableInfo(
        "Codes recorded on referrals that are not in the codelist, with counts.",
        ("referrals",),
    ),
    "activity_exclusions": TableInfo(
        "Referral rows dropped or partly ignored, by reason.", ("rows",)
    ),
    "equity_overall": TableInfo(
        "Registered people, people referred and referrals: rates per 1,000 with CIs.",
        ("registered", "people", "referrals", "need", "need_referred"),
        _RATE + _REF_RATE + _NEED,
    ),
    "equity_by_group": TableInfo(
        "Rates per 1,000 registered by age band, sex, IMD quintile and ethnic group, with "
        "shares and representation ratios (and need, if given).",
        ("registered", "people", "referrals", "need", "need_referred"),
        _RATE
        + _REF_RATE
        + _NEED
        + (
            "share_registered",
            "share_referred",
            "representation_ratio",
            "share_need",
            "need_representation_ratio",
        ),
    ),
    "equity_practice_funnel": TableInfo(
        "People referred per 1,000 registered by practice with the funnel-plot flag.",
        ("registered", "people", "referrals", "need", "need_referred"),
        (*_RATE, "funnel_flag"),
    ),
    "equity_funnel_limits": TableInfo(
        "Funnel-plot control limits (95%, 99.8%) over a grid of practice sizes; "
        "'denominator' is a grid value, not a count.",
        (),
    ),
    "equity_exclusions": TableInfo(
        "Population and referral rows outside the denominator or window, by reason.", ("rows",)
    ),
    "casefinding_by_pcn": TableInfo(
        "People registered, flagged by the risk score, referred, and flagged and referred, "
        "per PCN; the scoring date (scored_on) and the first day of its GP look-back.",
        ("registered", "flagged", "referred", "flagged_referred"),
        ("percent_flagged", "percent_flagged_referred"),
    ),
    "casefinding_factors": TableInfo(
        "Each risk factor: weight, people with it, people with it unrecorded, on the scoring "
        "date (scored_on); note marks a GP look-back the extract does not cover.",
        ("people", "missing", "registered"),
        ("percent",),
    ),
    "casefinding_score_distribution": TableInfo(
        "People by risk score, with the threshold marked.", ("people",)
    ),
    "casefinding_exclusions": TableInfo(
        "Population and appointment rows not used by the score, by reason.", ("rows",)
    ),
    "wellbeing_paired_change": TableInfo(
        "Paired before/after change per instrument: means, paired-t CI, d_z, share with a "
        "meaningful improvement/worsening (no comparator).",
        ("people", "improved", "worsened", "no_meaningful_change"),
        (
            "baseline_mean",
            "baseline_sd",
            "followup_mean",
            "followup_sd",
            "mean_change",
            "sd_change",
            "conf_low",
            "conf_high",
            "p_value",
            "effect_size_dz",
            "percent_improved",
            "percent_worsened",
        ),
    ),
    "wellbeing_followup_pattern": TableInfo(
        "People with an accepted referral by measurement pattern (baseline and follow-up, "
        "baseline only, follow-up only, neither).",
        ("people", "referred_people"),
        ("percent",),
    ),
    "wellbeing_followup_by_group": TableInfo(
        "Among people with a baseline, how many have a follow-up, by referral source (and "
        "sex, age band, IMD quintile, ethnic group if the population is given).",
        ("people", "with_followup"),
        ("percent_with_followup",),
    ),
    "wellbeing_baseline_by_followup": TableInfo(
        "Baseline score of people with and without a follow-up measure.",
        ("people",),
        ("baseline_mean", "baseline_sd"),
    ),
    "wellbeing_wellby": TableInfo(
        "WELLBY valuation of the before/after change in life satisfaction (GBP, 2019 prices; "
        "no comparator - see caveat).",
        ("people",),
        (
            "mean_change",
            "conf_low",
            "conf_high",
            "wellbys",
            "value",
            "value_conf_low",
            "value_conf_high",
            "value_at_low_price",
            "value_at_high_price",
        ),
    ),
    "wellbeing_exclusions": TableInfo(
        "Referral and wellbeing rows not used, by reason.", ("rows",)
    ),
}
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
