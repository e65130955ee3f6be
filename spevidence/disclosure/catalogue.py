"""The disclosure catalogue: every table a bundle can hold, and the role of its columns.

One policy (DESIGN.md section 10), applied by :func:`spevidence.disclosure.release`:

- ``counts`` (people, events, rows): 1..threshold redacted, the rest rounded
  (:func:`~spevidence.disclosure.control`);
- ``margins``: parts adding up to a released total (a total row of the same table, or a
  count of another table) get secondary suppression, so that no redacted part can be
  worked out by subtraction (:class:`~spevidence.disclosure.Margin`);
- ``ratios`` (rates, shares, means with a count numerator): *recomputed from the released
  (rounded) counts*, missing where either count is redacted;
- ``statistics`` (means, SDs, coefficients, their intervals, over a number of people held
  in a count column): *rounded to the step of that released count*, suppressed where
  it is redacted or at most the threshold (the step rule of
  :mod:`spevidence.disclosure._derived`); a test statistic is recomputed from the
  released estimate and standard error;
- ``quantiles`` of whole numbers: whole numbers, suppressed with their count;
- ``pvalues``: two significant figures; ``fixed``: released to a stated number of
  decimals (balance diagnostics, Wald statistics);
- ``other``: numbers that are not about people (money, simulation bins, settings, event
  times, codes) or text: released as they are.

The activity, equity, case-finding and wellbeing tables (:data:`ACTIVITY`) also say what
they hold and which columns derive from their counts; :mod:`spevidence.activity` lists them
as its ``TABLES``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from spevidence.disclosure._control import Margin


@dataclass(frozen=True)
class Roles:
    """Column roles of one released table (see the module docstring).

    ``description`` says what the table holds; ``derived`` lists the columns computed
    from its counts that are blanked wherever a count they rest on is redacted (the
    activity, equity, case-finding and wellbeing tables).
    """

    description: str = ""
    counts: tuple[str, ...] = ()
    ratios: Mapping[str, tuple[str, str, float]] = field(default_factory=dict)
    statistics: Mapping[str, str] = field(default_factory=dict)
    quantiles: Mapping[str, str] = field(default_factory=dict)
    pvalues: tuple[str, ...] = ()
    fixed: Mapping[str, int] = field(default_factory=dict)
    margins: tuple[Margin, ...] = ()
    recomputed: tuple[str, ...] = ()
    other: tuple[str, ...] = ()
    derived: tuple[str, ...] = ()

    def numbers(self) -> set[str]:
        """Every column this entry gives a role (for checking that none is left out)."""
        return {
            *self.counts,
            *self.ratios,
            *self.statistics,
            *self.quantiles,
            *self.pvalues,
            *self.fixed,
            *self.recomputed,
            *self.other,
        }


def _coefficients(size: str, *cols: str) -> dict[str, str]:
    return dict.fromkeys(("estimate", "std_error", "conf_low", "conf_high", *cols), size)


_NAIVE = ("events_before", "months_before", "events_after", "months_after")

PIPELINE: dict[str, Roles] = {
    "qa": Roles(counts=("rows",)),
    "attrition": Roles(counts=("n", "n_dropped")),
    "linkage_attrition": Roles(counts=("rows",)),
    # the long Table 1: percentages are recomputed from the released counts and means
    # rounded to the step of the group size by describe.characteristics_wide
    "cohort_characteristics": Roles(
        counts=("n_group", "n"),
        statistics={"value": "n_group"},
        recomputed=("referred", "comparators", "comparator_pool"),  # its wide form
    ),
    "balance": Roles(fixed={"smd_before": 2, "smd_after": 2, "variance_ratio_after": 2}),
    "trends": Roles(
        counts=("n", "n_events", "n_weight"),
        ratios={"mean": ("n_events", "n_weight", 1.0)},
        other=("event_time", "months"),
    ),
    "staggered_trends": Roles(
        counts=("n", "n_events"), ratios={"mean": ("n_events", "n", 1.0)}, other=("t",)
    ),
    "naive_before_after": Roles(
        counts=("n", *(f"n_{k}" for k in _NAIVE), *(f"n_comparator_{k}" for k in _NAIVE)),
        ratios={
            "mean_before": ("n_events_before", "n_months_before", 12.0),
            "mean_after": ("n_events_after", "n_months_after", 12.0),
        },
        # the person-clustered SE of log(after / before), rounded to the step of n; the
        # 95% CI of change_pct is recomputed around the released change from it
        statistics={"change_log_se": "n"},
        recomputed=("change_pct", "comparator_change_pct", "change_conf_low", "change_conf_high"),
    ),
    # a coefficient rests on the referred people (n_referred: the matched cohort for the
    # 2x2, the people observed at that event time for the event study); n counts rows
    "did_estimates": Roles(
        counts=("n", "n_referred"),
        statistics=_coefficients("n_referred", "level_effect", "level_conf_low", "level_conf_high"),
        recomputed=("statistic", "rate_ratio", "rr_conf_low", "rr_conf_high"),
        pvalues=("p_value",),
    ),
    "event_study": Roles(
        counts=("n", "n_referred"),
        statistics=_coefficients("n_referred"),
        recomputed=("statistic",),
        pvalues=("p_value",),
        other=("event_time",),
    ),
    "pretrend_test": Roles(fixed={"statistic": 2}, pvalues=("p_value",), other=("df",)),
    "did_not_estimated": Roles(),
    # n: the treated people behind each estimate
    "staggered": Roles(
        counts=("n",), statistics=_coefficients("n"), pvalues=("p_value",), other=("event",)
    ),
    # the cohorts add up to the treated people of the attrition table
    "staggered_cohorts": Roles(counts=("n",), margins=(Margin("n"),), other=("cohort_t",)),
    "staggered_pretrend": Roles(fixed={"statistic": 2}, pvalues=("p_value",), other=("df",)),
    "staggered_fit_notes": Roles(),
    "staggered_notes": Roles(),
    "staggered_not_estimated": Roles(),
    # money and simulation draws, not counts of people or events
    "sroi_summary": Roles(other=("value",)),
    "sroi_by_outcome": Roles(other=("quantity", "proxy_gbp", "present_value")),
    "sroi_sensitivity": Roles(other=("ratio_low", "ratio_high", "ratio_base")),
    "sroi_simulation": Roles(other=("bin_low", "bin_high", "count")),
}

_ALL_SOURCES = ("referral_source", "All sources")
_EQUITY = ("registered", "people", "referrals", "need", "need_referred")
_RATE = ("rate_per_1000", "conf_low", "conf_high")
_REF_RATE = ("referral_rate_per_1000", "referral_conf_low", "referral_conf_high")
_NEED = ("need_rate_per_1000", "need_conf_low", "need_conf_high")
_WELLBEING_STATS = (
    "baseline_mean",
    "baseline_sd",
    "followup_mean",
    "followup_sd",
    "mean_change",
    "sd_change",
    "conf_low",
    "conf_high",
    "effect_size_dz",
)


def _table(
    description: str,
    counts: tuple[str, ...],
    derived: tuple[str, ...] = (),
    *,
    statistics: Mapping[str, str] | None = None,
    quantiles: Mapping[str, str] | None = None,
    pvalues: tuple[str, ...] = (),
    margins: tuple[Margin, ...] = (),
    other: tuple[str, ...] = (),
) -> Roles:
    """An activity, equity, case-finding or wellbeing table: its derived columns are
    blanked with their counts, then recomputed unless they are statistics, quantiles or
    p-values (rounded to the step of their count instead)."""
    statistics, quantiles = dict(statistics or {}), dict(quantiles or {})
    own = {*statistics, *quantiles, *pvalues}
    return Roles(
        description=description,
        counts=counts,
        derived=derived,
        recomputed=tuple(c for c in derived if c not in own),
        statistics=statistics,
        quantiles=quantiles,
        pvalues=pvalues,
        margins=margins,
        other=other,
    )


ACTIVITY: dict[str, Roles] = {
    "activity_referrals_by_period": _table(
        "Referrals per month (or quarter) by referral source.",
        ("referrals",),
        margins=(Margin("referrals"),),
    ),
    "activity_referrals_by_pcn_period": _table(
        "Referrals per month (or quarter) by PCN.",
        ("referrals",),
        margins=(Margin("referrals"),),
    ),
    "activity_referrals_by_practice": _table(
        "Referrals, people referred and accepted referrals per practice over the window.",
        ("referrals", "people", "accepted"),
        margins=tuple(Margin(c, ("pcn_code",)) for c in ("referrals", "people", "accepted")),
    ),
    "activity_outcomes": _table(
        "Accepted / declined / did-not-engage counts and percentages (Wilson 95% CI), "
        "all sources and by source.",
        ("n", "referrals"),
        ("percent", "conf_low", "conf_high"),
        margins=(
            Margin("n", ("outcome",), _ALL_SOURCES),
            Margin("n", ("referral_source",)),
            Margin("referrals", ("outcome",), _ALL_SOURCES),
        ),
    ),
    "activity_time_to_contact": _table(
        "Days from referral to first contact: median, quartiles, mean, by source.",
        ("referrals",),
        ("median_days", "q1_days", "q3_days", "mean_days"),
        statistics={"mean_days": "referrals"},
        quantiles=dict.fromkeys(("median_days", "q1_days", "q3_days"), "referrals"),
        margins=(Margin("referrals", (), _ALL_SOURCES),),
    ),
    "activity_time_to_contact_bands": _table(
        "Referrals by days to first contact (0-7, 8-14, 15-28, 29-56, 57+, none recorded).",
        ("referrals",),
        ("percent",),
        margins=(Margin("referrals"),),
    ),
    "activity_contacts": _table(
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
        statistics={"mean_contacts": "referrals"},
        quantiles=dict.fromkeys(("median_contacts", "q1_contacts", "q3_contacts"), "referrals"),
        other=("norm_low", "norm_high"),
    ),
    "activity_contacts_bands": _table(
        "Accepted referrals by number of contacts (0, below, within, above the norm).",
        ("referrals",),
        ("percent",),
        margins=(Margin("referrals"),),
    ),
    # one median over every accepted referral, repeated on each row
    "activity_support_duration": _table(
        "Accepted referrals by length of support (first contact, else referral, to "
        "discharge) against about 3 months; median days.",
        ("referrals",),
        ("percent", "median_days"),
        quantiles={"median_days": ""},
        margins=(Margin("referrals"),),
    ),
    "activity_caseload": _table(
        "Caseload per link worker (anonymised labels): people supported per year and per "
        "WTE against 200-250.",
        ("referrals", "people"),
        ("caseload_per_year", "caseload_per_wte_year", "against_norm"),
        margins=(Margin("referrals"), Margin("people")),
        other=("wte", "window_days", "norm_low", "norm_high"),
    ),
    "activity_coding_audit": _table(
        "SNOMED CT coding of referrals by outcome: agreed codes, other codes, no code.",
        ("n", "referrals"),
        ("percent",),
        margins=(
            Margin("n", ("coding",), ("outcome", "All referrals")),
            Margin("n", ("outcome",)),
        ),
    ),
    "activity_codes_outside_codelist": _table(
        "Codes recorded on referrals that are not in the codelist, with counts.",
        ("referrals",),
        margins=(Margin("referrals"),),
    ),
    "activity_exclusions": _table("Referral rows dropped or partly ignored, by reason.", ("rows",)),
    "equity_overall": _table(
        "Registered people, people referred and referrals: rates per 1,000 with CIs.",
        _EQUITY,
        _RATE + _REF_RATE + _NEED,
    ),
    "equity_by_group": _table(
        "Rates per 1,000 registered by age band, sex, IMD quintile and ethnic group, with "
        "shares and representation ratios (and need, if given).",
        _EQUITY,
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
        margins=tuple(Margin(c, ("characteristic",)) for c in _EQUITY),
    ),
    "equity_practice_funnel": _table(
        "People referred per 1,000 registered by practice with the funnel-plot flag.",
        _EQUITY,
        (*_RATE, "funnel_flag"),
        margins=tuple(Margin(c) for c in _EQUITY),
    ),
    "equity_funnel_limits": _table(
        "Funnel-plot control limits (95%, 99.8%) over a grid of practice sizes; "
        "'denominator' is a grid value, not a count.",
        (),
        other=(
            "denominator",
            "target_per_1000",
            "lower_95",
            "upper_95",
            "lower_998",
            "upper_998",
        ),
    ),
    "equity_exclusions": _table(
        "Population and referral rows outside the denominator or window, by reason.", ("rows",)
    ),
    "casefinding_by_pcn": _table(
        "People registered, flagged by the risk score, referred, and flagged and referred, "
        "per PCN; the scoring date (scored_on) and the first day of its GP look-back.",
        ("registered", "flagged", "referred", "flagged_referred"),
        ("percent_flagged", "percent_flagged_referred"),
        margins=tuple(
            Margin(c, (), ("pcn_code", "All PCNs"))
            for c in ("registered", "flagged", "referred", "flagged_referred")
        ),
    ),
    "casefinding_factors": _table(
        "Each risk factor: weight, people with it, people with it unrecorded, on the scoring "
        "date (scored_on); note marks a GP look-back the extract does not cover.",
        ("people", "missing", "registered"),
        ("percent",),
        other=("weight", "note"),
    ),
    "casefinding_score_distribution": _table(
        "People by risk score, with the threshold marked.",
        ("people",),
        margins=(Margin("people"),),
        other=("score",),
    ),
    "casefinding_exclusions": _table(
        "Population and appointment rows not used by the score, by reason.", ("rows",)
    ),
    "wellbeing_paired_change": _table(
        "Paired before/after change per instrument: means, paired-t CI, d_z, share with a "
        "meaningful improvement/worsening (no comparator).",
        ("people", "improved", "worsened", "no_meaningful_change"),
        (
            *_WELLBEING_STATS[:8],
            "p_value",
            "effect_size_dz",
            "percent_improved",
            "percent_worsened",
        ),
        statistics=dict.fromkeys(_WELLBEING_STATS, "people"),
        pvalues=("p_value",),
        other=("meaningful_change",),
    ),
    "wellbeing_followup_pattern": _table(
        "People with an accepted referral by measurement pattern (baseline and follow-up, "
        "baseline only, follow-up only, neither).",
        ("people", "referred_people"),
        ("percent",),
        margins=(Margin("people", ("instrument",)),),
    ),
    "wellbeing_followup_by_group": _table(
        "Among people with a baseline, how many have a follow-up, by referral source (and "
        "sex, age band, IMD quintile, ethnic group if the population is given).",
        ("people", "with_followup"),
        ("percent_with_followup",),
        margins=(
            Margin("people", ("instrument", "characteristic")),
            Margin("with_followup", ("instrument", "characteristic")),
        ),
    ),
    "wellbeing_baseline_by_followup": _table(
        "Baseline score of people with and without a follow-up measure.",
        ("people",),
        ("baseline_mean", "baseline_sd"),
        statistics=dict.fromkeys(("baseline_mean", "baseline_sd"), "people"),
        margins=(Margin("people", ("instrument",)),),
    ),
    "wellbeing_wellby": _table(
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
        statistics=dict.fromkeys(("mean_change", "conf_low", "conf_high"), "people"),
        other=("duration_years", "value_per_wellby"),
    ),
    "wellbeing_exclusions": _table("Referral and wellbeing rows not used, by reason.", ("rows",)),
}
"""Every table the activity, equity, case-finding and wellbeing stages can produce."""

CATALOGUE: Mapping[str, Roles] = MappingProxyType({**PIPELINE, **ACTIVITY})
"""Every table a bundle can hold (the pipeline's, the staggered design's, SROI, activity,
equity, case finding and wellbeing) and its column roles."""


def roles(name: str) -> Roles | None:
    """The roles of a bundle table, or ``None`` if it is not catalogued."""
    return CATALOGUE.get(name)
