"""Comparator follow-up after their own later referral (risk_set.matched_data censoring).

A not-yet-referred comparator who is referred later is cut at that referral
("referral"), cut earlier ("referral" + washout), kept ("none"), or cut and the remaining
comparator rows weighted by the inverse probability of having stayed unreferred
("ipcw"), with the hazard taken from the risk sets' own pooled-logistic referral model.
Every expectation here is computed by hand from the panel and the fitted coefficients.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from spevidence.errors import DataError
from spevidence.match import risk_set

N_T = 30
PERIODS = pd.date_range("2022-01-01", periods=N_T, freq="MS")


def _person(pid, *, gp, ref=None, start=0, pcn="U1"):
    ts = np.arange(start, N_T)
    return pd.DataFrame(
        {
            "person_id": pid,
            "period": PERIODS[ts].date,
            "t": ts,
            "gp": np.asarray(gp)[ts],
            "ae": 0,
            "admissions": 0,
            "exposure_days": 30,
            "pcn_code": pcn,
            "sex": "F",
            "year_of_birth": 1960,
            "referral_t": pd.array([ref] * len(ts), dtype="Int64"),
        }
    )


def _gp(level, bump_from=None, bump=0):
    g = np.full(N_T, level)
    if bump_from is not None:
        g[bump_from:] += bump
    return g


@pytest.fixture(scope="module")
def matched():
    # A referred at 13; C referred at 20 (matched to A: same prior use at 13, and its
    # use rises from 16 on, so its referral hazard changes after the index); B and D
    # never referred, with other levels of use; E joins at 5 and is C's comparator
    people = [
        _person("A", gp=_gp(2), ref=13),
        _person("C", gp=_gp(2, bump_from=16, bump=3), ref=20),
        _person("B", gp=_gp(1)),
        _person("D", gp=_gp(4)),
        _person("E", gp=_gp(3), start=5),
    ]
    panel = pd.concat(people, ignore_index=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return risk_set(
            panel,
            exact=("pcn_code", "sex"),
            covariates=["prior_gp"],
            caliper=None,
            lookback=12,
        )


def _comparator_of_a(md):
    return md.loc[(md["treated"] == 0) & (md["index_t"] == 13)]


def test_the_pairs_are_as_designed(matched):
    pairs = matched.pairs[["case_person_id", "comparator_person_id", "index_t"]]
    assert pairs.values.tolist()[0] == ["A", "C", 13]


@pytest.mark.parametrize(
    ("censoring", "washout", "last_t"),
    [("referral", 0, 19), ("referral", 3, 16), ("none", 0, N_T - 1), ("ipcw", 0, 19)],
)
def test_comparator_follow_up_ends_where_the_rule_says(matched, censoring, washout, last_t):
    md = matched.matched_data(censoring=censoring, washout=washout)
    c = _comparator_of_a(md)
    assert (c["person_id"] == "C").all()
    assert c["t"].min() == 0 and c["t"].max() == last_t
    assert len(c) == last_t + 1
    # the case's own rows are never cut
    a = md.loc[(md["treated"] == 1) & (md["person_id"] == "A")]
    assert a["t"].max() == N_T - 1


def test_ipcw_weights_are_the_inverse_probability_of_staying_unreferred(matched):
    b = matched.coefficients
    gp_c = _gp(2, bump_from=16, bump=3)

    def hazard(u):
        prior = gp_c[u - 12 : u].sum()  # t = u-12 .. u-1
        eta = b["(Intercept)"] + b["prior_gp"] * prior + b["log1p(prior_gp)"] * np.log1p(prior)
        return 1.0 / (1.0 + np.exp(-eta))

    md = matched.matched_data(censoring="ipcw")
    c = _comparator_of_a(md).set_index("t")
    base = matched.units.loc[
        (matched.units["treated"] == 0) & (matched.units["index_t"] == 13), "weights"
    ].iloc[0]
    # before and at the index: the matching weight only
    assert np.allclose(c.loc[:13, "weights"], base)
    surv = 1.0
    for u in range(14, 20):
        surv *= 1.0 - hazard(u)
        assert c.loc[u, "weights"] == pytest.approx(base / surv, rel=1e-10), u
    # use rises from 16, so the hazard rises and the weights grow faster after it
    assert hazard(19) > hazard(15)
    # the cases keep weight 1 in every period
    assert (md.loc[md["treated"] == 1, "weights"] == 1.0).all()


def test_ipcw_skips_months_without_registration():
    # comparator C is away (no panel row) in months 15-16: no hazard is added there
    people = [
        _person("A", gp=_gp(2), ref=13),
        _person("C", gp=_gp(2), ref=22),
        _person("B", gp=_gp(1)),
    ]
    panel = pd.concat(people, ignore_index=True)
    panel = panel.loc[~((panel["person_id"] == "C") & panel["t"].isin([15, 16]))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rs = risk_set(panel, exact=("sex",), covariates=["prior_gp"], caliper=None)
    iw = rs.ipcw.set_index("t")
    assert 15 not in iw.index and 16 not in iw.index
    assert list(iw.index) == [14, 17, 18, 19, 20, 21]
    h = iw["hazard"]
    assert iw.loc[17, "ipcw"] == pytest.approx(1 / ((1 - h[14]) * (1 - h[17])), rel=1e-12)


def test_bad_censoring_options_raise(matched):
    with pytest.raises(DataError, match="censoring"):
        matched.matched_data(censoring="later")  # type: ignore[arg-type]
    with pytest.raises(DataError, match="washout"):
        matched.matched_data(censoring="ipcw", washout=2)
    with pytest.raises(DataError, match="washout"):
        matched.matched_data(censoring="referral", washout=-1)


def test_protocol_validates_the_censoring_options(tmp_path):
    import yaml

    from spevidence.errors import ProtocolError
    from spevidence.protocol import load_protocol

    root = Path(__file__).resolve().parents[1]
    base = yaml.safe_load((root / "protocols" / "frequent-attenders.yaml").read_text())
    assert load_protocol(root / "protocols" / "frequent-attenders.yaml").match.censoring == "ipcw"
    for match, ok in [
        ({"censoring": "referral", "washout": 3}, True),
        ({"censoring": "none"}, True),
        ({"censoring": "ipcw", "washout": 3}, False),
        ({"censoring": "later"}, False),
        ({"censoring": "referral", "washout": -1}, False),
        ({"censoring": "ipcw", "eligibility": ["prior_gp > 15"]}, True),
        ({"censoring": "ipcw", "eligibility": ["prior_gp >> 15"]}, False),
    ]:
        d = {**base, "match": {**base["match"], **match}}
        f = tmp_path / "p.yaml"
        f.write_text(yaml.safe_dump(d))
        if ok:
            p = load_protocol(f)
            assert p.match.censoring == match["censoring"]
        else:
            with pytest.raises(ProtocolError):
                load_protocol(f)


def test_eligibility_criteria_apply_to_cases_and_comparators():
    from spevidence.match.risk_set import REASON_INELIGIBLE

    people = [
        _person("A", gp=_gp(2), ref=13),  # prior_gp at 13 = 24: eligible
        _person("F", gp=_gp(1), ref=14),  # prior_gp at 14 = 12: not eligible -> dropped
        _person("C", gp=_gp(1)),  # 12: the nearest on prior use, but not eligible
        _person("D", gp=_gp(4)),  # 48: eligible
    ]
    panel = pd.concat(people, ignore_index=True)
    kw = dict(exact=("sex",), covariates=["prior_gp"], caliper=None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        free = risk_set(panel, **kw)
        rs = risk_set(panel, eligibility=["prior_gp > 20"], **kw)
    assert free.pairs["comparator_person_id"].tolist()[0] in ("C", "F")  # prior 12, tie
    assert rs.pairs[["case_person_id", "comparator_person_id"]].values.tolist() == [["A", "D"]]
    assert set(rs.pool["person_id"]) == {"A", "D"}
    att = rs.attrition.set_index("reason")["n"]
    assert att[REASON_INELIGIBLE] == 1
    assert rs.attrition.iloc[-1]["n"] == 1
    # a panel column works too, and a bad criterion names the accepted form
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        by_col = risk_set(panel.assign(x=panel["gp"]), eligibility=["x >= 2"], **kw)
    assert by_col.pairs["comparator_person_id"].tolist() == ["D"]
    with pytest.raises(DataError, match="<column> <op> <number>"):
        risk_set(panel, eligibility=["prior_gp >> 20"], **kw)
    with pytest.raises(DataError, match="neither a derived"):
        risk_set(panel, eligibility=["nothing > 1"], **kw)


def test_ipcw_hazard_is_the_ineligible_rate_when_a_comparator_stops_meeting_the_criteria():
    # C (A's comparator at 13) has a declined referral in month 16: from 17 on it fails
    # `referred_before < 1`. The pooled model was fitted on eligible candidates only, so
    # C's hazard there is the crude rate among ineligible candidates: G (never eligible)
    # at 13 and 20, and C itself at 20, where its accepted referral is an event -> 1/3.
    people = [
        _person("A", gp=_gp(2), ref=13),
        _person("C", gp=_gp(2, bump_from=16, bump=3), ref=20),
        _person("B", gp=_gp(1)),
        _person("D", gp=_gp(4)),
        _person("G", gp=_gp(6)),
    ]
    panel = pd.concat(people, ignore_index=True)
    before = ((panel["person_id"] == "C") & (panel["t"] > 16)) | (panel["person_id"] == "G")
    panel["referred_before"] = before.astype("int64")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rs = risk_set(
            panel,
            exact=("pcn_code", "sex"),
            covariates=["prior_gp"],
            caliper=None,
            eligibility=["referred_before < 1"],
        )
    assert rs.pairs[["case_person_id", "comparator_person_id"]].values.tolist() == [["A", "C"]]
    assert rs.diagnostics["candidate_person_periods_ineligible"] == 3
    assert rs.diagnostics["referrals_among_ineligible"] == 1
    b = rs.coefficients
    gp_c = _gp(2, bump_from=16, bump=3)
    iw = rs.ipcw.set_index("t")
    assert list(iw.index) == [14, 15, 16, 17, 18, 19]
    for u in (14, 15, 16):  # still eligible: the fitted model
        prior = gp_c[u - 12 : u].sum()
        eta = b["(Intercept)"] + b["prior_gp"] * prior + b["log1p(prior_gp)"] * np.log1p(prior)
        assert iw.loc[u, "hazard"] == pytest.approx(1 / (1 + np.exp(-eta)), rel=1e-12)
    assert np.allclose(iw.loc[17:, "hazard"], 1 / 3, rtol=0, atol=1e-15)
    surv = np.cumprod(1 - iw["hazard"].to_numpy())
    assert np.allclose(iw["ipcw"].to_numpy(), 1 / surv, rtol=1e-12)
    # with no referral among the ineligible (C declined and is never referred) their
    # hazard is 0: C's weight stops growing when it stops being eligible
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rs0 = risk_set(
            panel.loc[panel["person_id"] != "G"].assign(
                referral_t=lambda d: d["referral_t"].where(d["person_id"] != "C", pd.NA)
            ),
            exact=("pcn_code", "sex"),
            covariates=["prior_gp"],
            caliper=None,
            eligibility=["referred_before < 1"],
        )
    iw0 = rs0.ipcw.set_index("t")
    assert rs0.diagnostics["referrals_among_ineligible"] == 0
    assert (iw0.loc[17:, "hazard"] == 0).all() and (iw0.loc[:16, "hazard"] > 0).all()
    assert iw0["ipcw"].loc[17:].nunique() == 1
