"""did stage (DESIGN.md section 2): difference-in-differences for count outcomes.

Two-way designs: :func:`two_by_two`, :func:`twfe`, :func:`event_study`, :func:`placebo`
(results :class:`DiDResult`, :class:`EventStudyResult`). Staggered adoption:
:func:`staggered` (Callaway & Sant'Anna; results :class:`ATTgt`, :class:`ATTAggregate`)
and :func:`etwfe` (Wooldridge's extended TWFE; result :class:`ETWFE`).
"""

import numpy as np

from spevidence.did._etwfe import etwfe
from spevidence.did._results import ETWFE, ATTAggregate, ATTgt, DiDResult, EventStudyResult
from spevidence.did._staggered import staggered
from spevidence.did._twfe import event_study, placebo, twfe, two_by_two

# What a numerical failure of an estimator raises (a singular design, an overflow): the
# pipeline turns it into an EstimationError naming the outcome, never a traceback.
NUMERICAL_ERRORS: tuple[type[Exception], ...] = (
    np.linalg.LinAlgError,
    FloatingPointError,
    ZeroDivisionError,
    OverflowError,
)

__all__ = [
    "ETWFE",
    "NUMERICAL_ERRORS",
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
