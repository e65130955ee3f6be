"""did stage (DESIGN.md section 2): difference-in-differences for count outcomes.

Two-way designs: :func:`two_by_two`, :func:`twfe`, :func:`event_study`, :func:`placebo`
(results :class:`DiDResult`, :class:`EventStudyResult`). Staggered adoption:
:func:`staggered` (Callaway & Sant'Anna; results :class:`ATTgt`, :class:`ATTAggregate`)
and :func:`etwfe` (Wooldridge's extended TWFE; result :class:`ETWFE`).

The estimators are imported on first use (PEP 562 ``__getattr__``): they bring in scipy and
statsmodels (about 1.4 s of scipy.stats alone), which
``spevidence.did.headline`` (read by the report) does not need.
``from spevidence.did import twfe`` works as before.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from spevidence.did._etwfe import etwfe
    from spevidence.did._results import (
        ETWFE,
        ATTAggregate,
        ATTgt,
        DiDResult,
        EventStudyResult,
    )
    from spevidence.did._staggered import staggered
    from spevidence.did._twfe import event_study, placebo, twfe, two_by_two

# public name -> the module that defines it
_LAZY = {
    "ETWFE": "spevidence.did._results",
    "ATTAggregate": "spevidence.did._results",
    "ATTgt": "spevidence.did._results",
    "DiDResult": "spevidence.did._results",
    "EventStudyResult": "spevidence.did._results",
    "etwfe": "spevidence.did._etwfe",
    "event_study": "spevidence.did._twfe",
    "placebo": "spevidence.did._twfe",
    "staggered": "spevidence.did._staggered",
    "twfe": "spevidence.did._twfe",
    "two_by_two": "spevidence.did._twfe",
}

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


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
