"""Plain-English labels shared by figures, tables and text (no heavy imports).

One table (:data:`LABELS`) names every outcome, model term, model and matching
covariate the report shows; :func:`label` reads it and, for names it does not hold,
spells out the patterns the pipeline makes (``gp_m4_6``, ``sexF``), so that no raw column
name reaches a reader.
"""

from __future__ import annotations

import re

OUTCOME_LABELS = {
    "gp": "GP appointments",
    "ae": "A&E attendances",
    "admissions": "Unplanned admissions",
    "wellbeing": "Wellbeing score",
}

LABELS: dict[str, str] = {
    **OUTCOME_LABELS,
    # model terms
    "treat:post": "Referred × after referral",
    "treated:post": "Referred × after referral",
    "att": "Average effect on the referred",
    "ATT": "Average effect on the referred",
    # models
    "linear": "Linear (events per person per month)",
    "poisson": "Poisson (rate ratio)",
    # matching covariates
    "distance": "Propensity score (matching distance)",
    "age": "Age (years)",
    "sex": "Sex",
    "female": "Female",
    "imd_decile": "IMD decile (1 = most deprived)",
    "living_alone": "Living alone",
    "widowed": "Widowed",
    "frailty": "Frailty (eFI)",
    "falls": "Falls",
    "stroke": "Stroke",
    "copd": "COPD",
    "heart_failure": "Heart failure",
    "risk_score": "Case-finding risk score",
    "gp_prior_12m": "GP appointments, prior 12 months",
    "ae_prior_12m": "A&E attendances, prior 12 months",
    "admissions_prior_12m": "Unplanned admissions, prior 12 months",
    "pcn_code": "Primary care network",
    "practice_code": "Practice",
}
"""Every variable, term and outcome name the report may show, and its label."""

_SEX = {"F": "female", "M": "male", "U": "unknown", "I": "indeterminate"}
_LAGGED = re.compile(r"^(?P<outcome>[a-z]+)_m(?P<a>\d+)_(?P<b>\d+)$")


def label(name: object) -> str:
    """The plain-English label of a variable, term, model or outcome name."""
    text = str(name)
    if text in LABELS:
        return LABELS[text]
    if (m := _LAGGED.match(text)) is not None:
        what = OUTCOME_LABELS.get(m["outcome"], m["outcome"].upper())
        return f"{what}, {m['a']}–{m['b']} months before"
    for prefix, when in (("prior_", "in the look-back window"), ("recent_", "in recent months")):
        if text.startswith(prefix) and text[len(prefix) :] in OUTCOME_LABELS:
            return f"{OUTCOME_LABELS[text[len(prefix) :]]} {when}"
    if text.startswith("sex") and text[3:] in _SEX:
        return f"Sex: {_SEX[text[3:]]}"
    return text.replace("_", " ").capitalize()


def outcome_label(name: object) -> str:
    """Plain-English label of an outcome column name."""
    return label(name)


def effect_scale(model: object, scale: object = None) -> str:
    """How an estimate is expressed: ``"ratio"`` (rate ratio, null 1), ``"log"`` (log rate
    ratio, e.g. a Poisson coefficient, null 0) or ``"absolute"`` (events per person-period).

    An explicit ``scale`` column wins; otherwise a model whose name mentions Poisson, log or
    ratio is read as a log rate ratio.
    """
    s = "" if scale is None else str(scale).strip().lower()
    if s in ("ratio", "rate_ratio", "irr"):
        return "ratio"
    if s in ("log", "log_ratio", "log_rate_ratio"):
        return "log"
    if s in ("absolute", "difference", "linear"):
        return "absolute"
    if s and s != "nan":
        return "absolute"
    m = str(model).lower()
    return "log" if ("poisson" in m or "log" in m or "ratio" in m) else "absolute"


def as_percent(value: float, scale: str) -> float:
    """Percentage change in the rate implied by an estimate on ``scale`` (ratio or log)."""
    import math

    return (value - 1.0) * 100.0 if scale == "ratio" else (math.exp(value) - 1.0) * 100.0
