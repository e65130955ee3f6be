"""did stage (DESIGN.md section 2): two-way difference-in-differences for count outcomes.

Public API: :func:`two_by_two`, :func:`twfe`, :func:`event_study`, :func:`placebo` and
their results :class:`DiDResult`, :class:`EventStudyResult`.
"""

from spevidence.did._results import DiDResult, EventStudyResult
from spevidence.did._twfe import event_study, placebo, twfe, two_by_two

__all__ = [
    "DiDResult",
    "EventStudyResult",
    "event_study",
    "placebo",
    "twfe",
    "two_by_two",
]
