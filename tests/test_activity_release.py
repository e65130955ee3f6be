"""Disclosure control of the activity tables: counts redacted/rounded, derived recomputed."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest_activity import gp_appointments, population, referrals, wellbeing

from spevidence.activity import TABLES, activity_outputs, release_tables
from spevidence.errors import DisclosureError


@pytest.fixture(scope="module")
def released():
    pop = population(600, seed=51)
    ref = referrals(pop, m=400, seed=52)
    raw, _ = activity_outputs(
        pop,
        ref,
        gp_appointments=gp_appointments(pop, k=4000, seed=53),
        wellbeing=wellbeing(ref, seed=54),
        start="2023-01-01",
        end="2023-12-31",
        at="2023-01-01",
        wellby=True,
        draw_figures=False,
    )
    safe, log = release_tables(raw)
    return raw, safe, log


def _vals(df: pd.DataFrame, col: str) -> np.ndarray:
    return pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def test_every_count_is_redacted_or_a_multiple_of_five(released):
    raw, safe, log = released
    assert safe.keys() == raw.keys()
    n_redacted = 0
    for name, df in safe.items():
        for col in TABLES[name].counts:
            if col not in df.columns:
                continue
            v = _vals(df, col)
            ok = v[~np.isnan(v)]
            assert np.all(ok % 5 == 0), (name, col)
            assert not np.any((ok >= 1) & (ok <= 7)), (name, col)
            n_redacted += int(np.isnan(v).sum() - np.isnan(_vals(raw[name], col)).sum())
    assert n_redacted > 0  # the small test data do have small cells
    assert n_redacted == int(
        log["action"].str.startswith("redacted_p").sum()
        + log["action"].str.startswith("redacted_s").sum()
    )
    assert set(log.columns) == {"table", "column", "row", "action", "reason"}


def test_derived_values_come_from_rounded_counts(released):
    _, safe, _ = released
    o = safe["activity_outcomes"]
    n, d = _vals(o, "n"), _vals(o, "referrals")
    np.testing.assert_allclose(_vals(o, "percent"), 100 * n / d, equal_nan=True)
    e = safe["equity_practice_funnel"]
    people = _vals(e, "rate_per_1000") * _vals(e, "registered") / 1000
    np.testing.assert_allclose(people, _vals(e, "people"), equal_nan=True)
    g = safe["equity_by_group"]
    for _, blk in g.groupby("characteristic"):
        assert np.nansum(_vals(blk, "share_registered")) == pytest.approx(100)
    c = safe["activity_caseload"]
    np.testing.assert_allclose(
        _vals(c, "caseload_per_year"), _vals(c, "people") * 365.25 / 365, equal_nan=True
    )
    w = safe["wellbeing_wellby"]
    np.testing.assert_allclose(
        _vals(w, "value"), _vals(w, "mean_change") * _vals(w, "people") * 13_000, equal_nan=True
    )


def test_small_count_summaries_are_redacted():
    raw = {
        "activity_time_to_contact": pd.DataFrame(
            {
                "referral_source": ["All sources", "gp", "self"],
                "referrals": [40, 37, 3],
                "median_days": [12.0, 11.0, 30.0],
                "q1_days": [5.0, 4.0, 20.0],
                "q3_days": [20.0, 19.0, 40.0],
                "mean_days": [13.0, 12.0, 31.0],
            }
        )
    }
    safe, log = release_tables(raw)
    t = safe["activity_time_to_contact"]
    # self is small; gp goes too, or 40 - 37 would give self back (secondary suppression)
    assert t["referrals"].isna().tolist() == [False, True, True]
    assert t["median_days"].isna().tolist() == [False, True, True]
    assert t["mean_days"].isna().tolist() == [False, True, True]
    assert "30.0" not in log.to_csv()
    with pytest.raises(DisclosureError, match="catalogue"):
        release_tables({"not_a_table": pd.DataFrame({"n": [1]})})


def test_figures_redraw_from_released_tables(released):
    raw, safe, _ = released
    from spevidence.activity.service import ServiceActivity

    fig = ServiceActivity(results=raw).plot("activity_outcomes", tables=safe)
    assert fig.axes[0].get_title()
