"""The headline of a staggered evaluation: which estimator's simple aggregation is valued.

Shared by the pipeline (the SROI values it) and the report (the board summary states it),
so both always name the same estimate. Operates on the released ``staggered`` estimates
table (columns ``outcome, estimator, aggregation, estimate, std_error, ...``).
"""

from __future__ import annotations

import pandas as pd

ESTIMATOR_LABELS = {
    "callaway_santanna": "Callaway-Sant'Anna",
    "etwfe": "Extended TWFE",
}


def headline_estimator(est: pd.DataFrame) -> str:
    """The estimator whose simple aggregation is the headline ("" if none was estimated).

    Callaway-Sant'Anna, or the extended TWFE when Callaway-Sant'Anna gave no estimate
    (not run, not fitted, or every estimate withheld): the simple aggregation of both is
    the average change in events per person-period among the treated after first
    treatment (for the Poisson family too). The SROI values it and the board summary
    states it, so both always name the same estimate.
    """
    simple = est.loc[est["aggregation"] == "simple"].dropna(subset=["estimate", "std_error"])
    for key in ("callaway_santanna", "etwfe"):
        if (simple["estimator"] == ESTIMATOR_LABELS[key]).any():
            return ESTIMATOR_LABELS[key]
    return ""
