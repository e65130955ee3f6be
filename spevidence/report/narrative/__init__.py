"""Plain-English text written from the released results (summary, limitations, appendix).

One module per design writes what that design says its own way
(:mod:`~spevidence.report.narrative.matched`, :mod:`~spevidence.report.narrative.staggered`);
:mod:`~spevidence.report.narrative.shared` holds the formatting, the display tables and the
sections both write alike. :func:`Narrative` chooses the design once, from the bundle.
"""

from __future__ import annotations

from spevidence.report.narrative.matched import MatchedNarrative
from spevidence.report.narrative.shared import (
    ALPHA,
    SMD_BAR,
    SROI_LABELS,
    SUPPRESSED,
    WARN,
    NarrativeBase,
    did_display,
    effect_sentence,
    effect_size,
    table1_display,
    wellbeing_display,
)
from spevidence.report.narrative.staggered import PLAIN_REASONS, StaggeredNarrative
from spevidence.report.sections import ReportBundle

__all__ = [
    "ALPHA",
    "PLAIN_REASONS",
    "SMD_BAR",
    "SROI_LABELS",
    "SUPPRESSED",
    "WARN",
    "MatchedNarrative",
    "Narrative",
    "NarrativeBase",
    "StaggeredNarrative",
    "did_display",
    "effect_sentence",
    "effect_size",
    "is_staggered",
    "table1_display",
    "wellbeing_display",
]


def is_staggered(rb: ReportBundle) -> bool:
    """A ``design: staggered`` bundle: staggered estimates and no matched DiD."""
    return rb.has("staggered") and not rb.has("did_estimates")


def Narrative(rb: ReportBundle) -> NarrativeBase:  # noqa: N802 (the templates call it as the class it was)
    """The sections of text for a bundle, written the way its design needs: the one place
    the design is chosen (:class:`StaggeredNarrative` for a staggered bundle, else
    :class:`MatchedNarrative`)."""
    return StaggeredNarrative(rb) if is_staggered(rb) else MatchedNarrative(rb)
