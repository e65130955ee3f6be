"""Smoke tests: the public API runs end to end on small data."""

from __future__ import annotations

import numpy as np
import pytest
from match_synth import make_panel

from spevidence.match import risk_set


@pytest.fixture(scope="module")
def panel():
    return make_panel(n_people=1500, n_periods=30, seed=3)


def test_risk_set_contract_columns(panel):
    rs = risk_set(panel, lookback=6)
    md = rs.matched_data()
    for c in ("treated", "subclass", "weights", "index_t", "event_time", "post", "unit_id"):
        assert c in md.columns
    assert np.array_equal(md["event_time"], md["t"] - md["index_t"])
    assert set(md["post"].unique()) <= {0, 1}
    # each subclass has exactly one case unit
    n_case_units = md.loc[md["treated"] == 1].groupby("subclass")["unit_id"].nunique()
    assert (n_case_units == 1).all()
