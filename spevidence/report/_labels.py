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
