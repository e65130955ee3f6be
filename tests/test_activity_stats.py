"""Invariants of the interval and funnel helpers (hypothesis) and date-type robustness."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
from conftest_activity import pid
from hypothesis import given, settings
from hypothesis import strategies as st

from spevidence.activity import service_activity
from spevidence.activity._stats import funnel_limits, poisson_exact_interval, wilson_interval


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 5000), frac=st.floats(0, 1), level=st.sampled_from([0.9, 0.95, 0.998]))
def test_wilson_contains_estimate_and_widens_with_level(n, frac, level):
    k = round(frac * n)
    lo, hi = wilson_interval(k, n, level=level)
    assert 0 <= lo <= k / n <= hi <= 1
    lo2, hi2 = wilson_interval(k, n, level=0.999)
    assert lo2 <= lo + 1e-12 and hi2 >= hi - 1e-12


@settings(max_examples=60, deadline=None)
@given(k=st.integers(0, 10_000))
def test_poisson_interval_contains_count(k):
    lo, hi = poisson_exact_interval(k)
    assert 0 <= lo <= k <= hi


@settings(max_examples=40, deadline=None)
@given(target=st.floats(0.005, 0.6), n=st.integers(5, 20_000))
def test_funnel_limits_bracket_target_and_nest(target, n):
    l95, u95 = funnel_limits(target, n, level=0.95)
    l998, u998 = funnel_limits(target, n, level=0.998)
    assert l998[0] <= l95[0] <= target + 1e-12
    assert target - 1e-12 <= u95[0] <= u998[0]


def test_date_objects_strings_and_timestamps_agree():
    base = pd.DataFrame(
        {
            "person_id": [pid(i) for i in range(4)],
            "referral_date": ["2024-01-03", "2024-02-10", "2024-02-29", "2024-03-31"],
            "referral_source": ["gp", "self", "gp", "gp"],
            "outcome": ["accepted", "declined", "accepted", "did_not_engage"],
            "first_contact_date": ["2024-01-05", None, "2024-03-10", None],
        }
    )
    as_obj = base.assign(
        referral_date=[dt.date.fromisoformat(d) for d in base["referral_date"]],
        first_contact_date=[
            None if pd.isna(d) else dt.date.fromisoformat(d) for d in base["first_contact_date"]
        ],
    )
    as_ts = base.assign(
        referral_date=pd.to_datetime(base["referral_date"]),
        first_contact_date=pd.to_datetime(base["first_contact_date"]),
    )
    ref = service_activity(base, start=dt.date(2024, 1, 1), end="2024-03-31").tables()
    for other in (as_obj, as_ts):
        got = service_activity(other, start="2024-01-01", end=pd.Timestamp("2024-03-31")).tables()
        for name in ref:
            pd.testing.assert_frame_equal(ref[name], got[name], obj=name)
    assert ref["activity_referrals_by_period"]["referrals"].tolist() == [1, 0, 1, 1, 1, 0]
    assert np.isclose(
        ref["activity_time_to_contact"]
        .set_index("referral_source")
        .loc["All sources", "median_days"],
        np.median([2, 10]),
    )
