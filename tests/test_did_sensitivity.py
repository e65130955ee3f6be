"""Sensitivity tools: E-value, relative-magnitudes bounds, placebo index dates."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from test_did_twfe import synth_panel

from spevidence.did import DiDResult, EventStudyResult, event_study, placebo, two_by_two
from spevidence.errors import EstimationError


def _poisson_result(rr: float, lo: float, hi: float) -> DiDResult:
    b = np.log(rr)
    # the CI limit nearest 1 is reproduced exactly; the other follows from symmetry on log scale
    near = lo if rr > 1 else hi
    se = abs(np.log(rr) - np.log(near)) / 1.959963984540054
    return DiDResult(
        method="two_by_two", model="poisson", terms=("treat:post",), estimate=np.array([b]),
        vcov=np.array([[se**2]]), main_term="treat:post", df=None, n_obs=100, n_units=10,
        n_clusters=10, path="rows", formula="-", yname="y",
    )  # fmt: skip


def test_e_value_matches_vanderweele_ding_example() -> None:
    # VanderWeele & Ding (2017): RR 3.9 (95% CI 1.8 to 8.7) -> E-values 7.26 and 3.00
    ev = _poisson_result(3.9, 1.8, 8.7).e_value().iloc[0]
    assert ev["e_value"] == pytest.approx(7.26, abs=0.005)
    assert ev["e_value_ci"] == pytest.approx(3.00, abs=0.005)
    # protective effects use 1/RR; a CI covering 1 gives 1
    ev2 = _poisson_result(1 / 3.9, 1 / 8.7, 1 / 1.8).e_value().iloc[0]
    assert ev2["e_value"] == pytest.approx(7.26, abs=0.005)
    assert _poisson_result(0.9, 0.7, 1.2).e_value().iloc[0]["e_value_ci"] == 1.0


def test_e_value_needs_poisson() -> None:
    df = synth_panel(30, n=60)
    r = two_by_two(df, yname="gp", idname="person_id", tname="t", treat="treated", post="post")
    with pytest.raises(EstimationError, match="poisson"):
        r.e_value()


def _event_study_poisson() -> EventStudyResult:
    df = synth_panel(31, n=300, periods=12)
    return event_study(
        df, yname="gp", idname="person_id", tname="t", index="index_t", treat="treated",
        window=(-4, 3), model="poisson",
    )  # fmt: skip


def test_relative_magnitude_bounds_by_hand() -> None:
    es = _event_study_poisson()
    sens = es.sensitivity(mbar=(0.0, 1.0, 2.0))
    b = dict(zip(es.event_times, es.estimate, strict=True))
    b[-1] = 0.0  # the reference
    G = max(abs(b[-3] - b[-4]), abs(b[-2] - b[-3]), abs(b[-1] - b[-2]))
    assert np.allclose(sens["max_pre_change"], G)
    zero = sens[sens["mbar"] == 0.0]
    np.testing.assert_allclose(zero["lower_bound"], zero["estimate"])
    two = sens[sens["mbar"] == 2.0].reset_index(drop=True)
    # the bias may grow by up to 2*G per period after the last pre period
    np.testing.assert_allclose(
        two["upper_bound"] - two["lower_bound"], 2 * 2 * G * (two["event_time"] + 1)
    )
    tab = es.tidy()
    post = tab[tab["event_time"] >= 0].reset_index(drop=True)
    np.testing.assert_allclose(two["conf_low"], post["conf_low"] - 2 * G * (post["event_time"] + 1))


def test_relative_magnitude_identified_set_vs_diff_diff() -> None:
    """Identified set of Rambachan & Roth's Delta^RM against diff-diff's LP (peer)."""
    from diff_diff.honest_did import _solve_rm_bounds_union

    es = _event_study_poisson()
    k = np.asarray(es.event_times)
    pre, post = es.estimate[k < 0], es.estimate[k >= 0]
    for mbar in (0.5, 1.0, 2.0):
        sens = es.sensitivity(mbar=(mbar,)).reset_index(drop=True)
        for j in range(post.size):
            lvec = np.zeros(post.size)
            lvec[j] = 1.0
            lo, hi = _solve_rm_bounds_union(pre, post, lvec, pre.size, mbar)
            assert sens.loc[j, "lower_bound"] == pytest.approx(lo, abs=1e-9)
            assert sens.loc[j, "upper_bound"] == pytest.approx(hi, abs=1e-9)


def test_relative_magnitude_needs_two_pre_periods() -> None:
    df = synth_panel(31, n=300, periods=12)
    es = event_study(
        df, yname="gp", idname="person_id", tname="t", index="index_t", treat="treated",
        window=(-1, 3),
    )  # fmt: skip
    with pytest.raises(EstimationError, match="two consecutive pre-index periods"):
        es.sensitivity()


def test_placebo_null_without_pretrend_and_detects_one() -> None:
    df = synth_panel(32, n=600, periods=12)
    kw = dict(yname="gp", idname="person_id", tname="t", treat="treated", index="index_t")
    r = placebo(df, shift=2, model="poisson", **kw)  # type: ignore[arg-type]
    assert r.method == "placebo"
    assert dict(r.attrition.itertuples(index=False))["at_or_after_real_index"] == int(
        (df["t"] >= df["index_t"]).sum()
    )
    row = r.tidy().set_index("term").loc["treat:post"]
    assert row["conf_low"] < 0 < row["conf_high"]
    # cases whose use climbs in the two months before referral: the placebo picks it up
    bumped = df.copy()
    rise = (bumped["treated"] == 1) & (bumped["t"] >= bumped["index_t"] - 2)
    rng = np.random.default_rng(5)
    bumped.loc[rise, "gp"] += rng.poisson(2.0, int(rise.sum()))
    r2 = placebo(bumped, shift=2, model="poisson", **kw)  # type: ignore[arg-type]
    row2 = r2.tidy().set_index("term").loc["treat:post"]
    assert row2["estimate"] > 0 and row2["p_value"] < 0.01


def test_placebo_needs_pre_rows() -> None:
    df = pd.DataFrame(
        {"p": [1, 1, 2, 2], "t": [5, 6, 5, 6], "y": [1, 2, 3, 4], "tr": [1, 1, 0, 0], "i": [0] * 4}
    )
    with pytest.raises(EstimationError, match="before the index"):
        placebo(df, yname="y", idname="p", tname="t", treat="tr", index="i")
