"""The joint Wald pre-trend test never raises on too few events (issue 19): zero-variance
coefficients are left out and a singular covariance is refused (R ``did``'s guards),
for the matched event study as for Callaway-Sant'Anna."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from spevidence.did import event_study
from spevidence.did._results import guarded_wald, wald_test


def test_wald_statistic_by_hand() -> None:
    b = np.array([0.3, -0.2])
    V = np.array([[0.04, 0.01], [0.01, 0.09]])
    stat, df, p = wald_test(b, V)
    by_hand = float(b @ np.linalg.inv(V) @ b)
    assert math.isclose(stat, by_hand, rel_tol=1e-12) and df == 2
    assert math.isclose(p, stats.chi2.sf(by_hand, 2), rel_tol=1e-12)


def test_singular_covariance_is_refused_not_inverted() -> None:
    stat, df, p, n_drop, note = guarded_wald(np.array([0.1, 0.1]), np.ones((2, 2)) * 0.01)
    assert math.isnan(stat) and math.isnan(p) and df == 2 and n_drop == 0
    assert "singular" in note


def test_zero_variance_terms_are_left_out_and_counted() -> None:
    V = np.diag([0.04, 0.0, 0.09])
    stat, df, _, n_drop, note = guarded_wald(np.array([0.2, 0.0, 0.3]), V)
    assert df == 2 and n_drop == 1 and "left out" in note
    assert math.isclose(stat, 0.2**2 / 0.04 + 0.3**2 / 0.09, rel_tol=1e-12)


def test_event_study_with_no_events_before_the_index_is_not_tested() -> None:
    # nobody has any use before the index: the leads are exactly 0 with no variance;
    # the old code inverted a covariance of rounding noise and gave chi2 = 1.8
    rng = np.random.default_rng(0)
    rows = [
        {
            "u": i,
            "t": e + 10,
            "idx": 10,
            "treat": int(i < 20),
            "y": int(e >= 0 and rng.random() < 0.3),
        }
        for i in range(40)
        for e in range(-3, 3)
    ]
    r = event_study(
        pd.DataFrame(rows), yname="y", idname="u", tname="t", index="idx", treat="treat",
        window=(-3, 2),
    )  # fmt: skip
    t = r.pretrend_test().iloc[0]
    assert math.isnan(t["statistic"]) and math.isnan(t["p_value"]) and t["df"] == 0
