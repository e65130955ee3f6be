"""did stage (DESIGN.md section 2): two-way difference-in-differences for count outcomes.

Public API: :func:`two_by_two`, :func:`twfe`, :func:`event_study` and their results
:class:`DiDResult`, :class:`EventStudyResult`.
"""

from spevidence.did._etwfe import ETWFE, etwfe
from spevidence.did._results import DiDResult, EventStudyResult
from spevidence.did._staggered import ATTAggregate, ATTgt, staggered
from spevidence.did._twfe import event_study, twfe, two_by_two

__all__ = [
    "ETWFE",
    "ATTAggregate",
    "ATTgt",
    "DiDResult",
    "EventStudyResult",
    "etwfe",
    "event_study",
    "staggered",
    "twfe",
    "two_by_two",
]
