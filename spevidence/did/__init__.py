"""did stage (DESIGN.md section 2): difference-in-differences for count outcomes.

Two-way designs: :func:`two_by_two`, :func:`twfe`, :func:`event_study`, :func:`placebo`
(results :class:`DiDResult`, :class:`EventStudyResult`). Staggered adoption:
:func:`staggered` (Callaway & Sant'Anna; results :class:`ATTgt`, :class:`ATTAggregate`)
and :func:`etwfe` (Wooldridge's extended TWFE; result :class:`ETWFE`).
"""

from spevidence.did._etwfe import etwfe
from spevidence.did._results import ETWFE, ATTAggregate, ATTgt, DiDResult, EventStudyResult
from spevidence.did._staggered import staggered
from spevidence.did._twfe import event_study, placebo, twfe, two_by_two

__all__ = [
    "ETWFE",
    "ATTAggregate",
    "ATTgt",
    "DiDResult",
    "EventStudyResult",
    "etwfe",
    "event_study",
    "placebo",
    "staggered",
    "twfe",
    "two_by_two",
]
