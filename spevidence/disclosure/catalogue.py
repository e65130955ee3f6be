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

The activity, equity, case-finding and wellbeing tables take their counts and the ratios
they recompute from :mod:`spevidence.activity.catalogue` (one place each); this module
adds their statistics, quantiles and margins.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from spevidence.activity.catalogue import TABLES
from spevidence.disclosure._control import Margin


@dataclass(frozen=True)
class Roles:
    """Column roles of one released table (see the module docstring)."""

    counts: tuple[str, ...] = ()
    ratios: Mapping[str, tuple[str, str, float]] = field(default_factory=dict)
    statistics: Mapping[str, str] = field(default_factory=dict)
    quantiles: Mapping[str, str] = field(default_factory=dict)
    pvalues: tuple[str, ...] = ()
    fixed: Mapping[str, int] = field(default_factory=dict)
    margins: tuple[Margin, ...] = ()
    recomputed: tuple[str, ...] = ()
    other: tuple[str, ...] = ()

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
        recomputed=("change_pct", "comparator_change_pct"),
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

# statistics, quantiles, margins and other numbers of the activity tables (their counts
# and recomputed ratios are in spevidence.activity.catalogue)
_ACTIVITY: dict[str, dict[str, object]] = {
    "activity_referrals_by_period": {"margins": (Margin("referrals"),)},
    "activity_referrals_by_pcn_period": {"margins": (Margin("referrals"),)},
    "activity_referrals_by_practice": {
        "margins": tuple(Margin(c, ("pcn_code",)) for c in ("referrals", "people", "accepted"))
    },
    "activity_outcomes": {
        "margins": (
            Margin("n", ("outcome",), _ALL_SOURCES),
            Margin("n", ("referral_source",)),
            Margin("referrals", ("outcome",), _ALL_SOURCES),
        )
    },
    "activity_time_to_contact": {
        "statistics": {"mean_days": "referrals"},
        "quantiles": dict.fromkeys(("median_days", "q1_days", "q3_days"), "referrals"),
        "margins": (Margin("referrals", (), _ALL_SOURCES),),
    },
    "activity_time_to_contact_bands": {"margins": (Margin("referrals"),)},
    "activity_contacts": {
        "statistics": {"mean_contacts": "referrals"},
        "quantiles": dict.fromkeys(("median_contacts", "q1_contacts", "q3_contacts"), "referrals"),
        "other": ("norm_low", "norm_high"),
    },
    "activity_contacts_bands": {"margins": (Margin("referrals"),)},
    # one median over every accepted referral, repeated on each row
    "activity_support_duration": {
        "quantiles": {"median_days": ""},
        "margins": (Margin("referrals"),),
    },
    "activity_caseload": {
        "margins": (Margin("referrals"), Margin("people")),
        "other": ("wte", "window_days", "norm_low", "norm_high"),
    },
    "activity_coding_audit": {
        "margins": (
            Margin("n", ("coding",), ("outcome", "All referrals")),
            Margin("n", ("outcome",)),
        )
    },
    "activity_codes_outside_codelist": {"margins": (Margin("referrals"),)},
    "activity_exclusions": {},
    "equity_overall": {},
    "equity_by_group": {"margins": tuple(Margin(c, ("characteristic",)) for c in _EQUITY)},
    "equity_practice_funnel": {"margins": tuple(Margin(c) for c in _EQUITY)},
    "equity_funnel_limits": {
        "other": (
            "denominator",
            "target_per_1000",
            "lower_95",
            "upper_95",
            "lower_998",
            "upper_998",
        )
    },
    "equity_exclusions": {},
    "casefinding_by_pcn": {
        "margins": tuple(
            Margin(c, (), ("pcn_code", "All PCNs"))
            for c in ("registered", "flagged", "referred", "flagged_referred")
        )
    },
    "casefinding_factors": {"other": ("weight", "note")},
    "casefinding_score_distribution": {"margins": (Margin("people"),), "other": ("score",)},
    "casefinding_exclusions": {},
    "wellbeing_paired_change": {
        "statistics": dict.fromkeys(_WELLBEING_STATS, "people"),
        "pvalues": ("p_value",),
        "other": ("meaningful_change",),
    },
    "wellbeing_followup_pattern": {"margins": (Margin("people", ("instrument",)),)},
    "wellbeing_followup_by_group": {
        "margins": (
            Margin("people", ("instrument", "characteristic")),
            Margin("with_followup", ("instrument", "characteristic")),
        )
    },
    "wellbeing_baseline_by_followup": {
        "statistics": dict.fromkeys(("baseline_mean", "baseline_sd"), "people"),
        "margins": (Margin("people", ("instrument",)),),
    },
    "wellbeing_wellby": {
        "statistics": dict.fromkeys(("mean_change", "conf_low", "conf_high"), "people"),
        "other": ("duration_years", "value_per_wellby"),
    },
    "wellbeing_exclusions": {},
}


def _activity_roles() -> dict[str, Roles]:
    out = {}
    for name, info in TABLES.items():
        extra: dict = dict(_ACTIVITY.get(name, {}))
        own = {*extra.get("statistics", {}), *extra.get("quantiles", {}), *extra.get("pvalues", ())}
        out[name] = Roles(
            counts=info.counts,
            recomputed=tuple(c for c in info.derived if c not in own),
            **extra,
        )
    return out


CATALOGUE: Mapping[str, Roles] = MappingProxyType({**PIPELINE, **_activity_roles()})
"""Every table a bundle can hold (the pipeline's, the staggered design's, SROI, activity,
equity, case finding and wellbeing) and its column roles."""


def roles(name: str) -> Roles | None:
    """The roles of a bundle table, or ``None`` if it is not catalogued."""
    return CATALOGUE.get(name)
