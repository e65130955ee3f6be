"""Plain-English labels shared by figures and text (no heavy imports)."""

from __future__ import annotations

OUTCOME_LABELS = {
    "gp": "GP appointments",
    "ae": "A&E attendances",
    "admissions": "Unplanned admissions",
    "wellbeing": "Wellbeing score",
}


def outcome_label(name: object) -> str:
    """Plain-English label of an outcome column name."""
    text = str(name)
    return OUTCOME_LABELS.get(text, text.replace("_", " ").capitalize())


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
