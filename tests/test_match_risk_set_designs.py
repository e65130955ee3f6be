"""spevidence.match.risk_set designs added to the default: comparators from named
comparator PCNs (``comparators="comparator-pcns"``) and Mahalanobis matching
within a propensity-score caliper (``distance="mahalanobis"``)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from match_synth import make_panel

from spevidence.errors import DataError, ProtocolError
from spevidence.match import nearest, risk_set
from spevidence.match.risk_set import REASON_IN_COMPARATOR_PCN, REASON_LOOKBACK
from spevidence.protocol import load_protocol, protocol_hash

N_T = 30
PERIODS = pd.date_range("2022-01-01", periods=N_T, freq="MS")


def _person(pid, *, ref=None, pcn="U1", sex="F", yob=1960, gp=1, start=0):
    ts = np.arange(start, N_T)
    pcns = np.broadcast_to(np.asarray(pcn, dtype=object), (N_T,))[ts] if np.ndim(pcn) else pcn
    return pd.DataFrame(
        {
            "person_id": pid,
            "period": PERIODS[ts].date,
            "t": ts,
            "gp": gp,
            "ae": 0,
            "admissions": 0,
            "exposure_days": 30,
            "pcn_code": pcns,
            "sex": sex,
            "year_of_birth": yob,
            "referral_t": pd.array([ref] * len(ts), dtype="Int64"),
        }
    )


def _rs(panel, **kw):
    kw.setdefault("covariates", ["prior_gp"])
    kw.setdefault("caliper", None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return risk_set(panel, **kw)


# --------------------------------------------------------------------------- comparator PCNs


def test_comparators_come_only_from_comparator_pcns():
    moved_in = np.array(["U1"] * 10 + ["U2"] * (N_T - 10), dtype=object)
    moved_out = np.array(["U2"] * 10 + ["U1"] * (N_T - 10), dtype=object)
    panel = pd.concat(
        [
            _person("A", ref=13, gp=2),  # case in an intervention PCN
            _person("B", gp=2),  # same PCN, same use: the default design's comparator
            _person("C", pcn="U2", gp=3),  # comparator PCN
            _person("D", pcn="U2", ref=20, gp=2),  # referred in the comparator PCN
            _person("E", pcn="U3", gp=2),  # neither: never a comparator here
            _person("M", pcn=moved_in, gp=2),  # in U2 at the index period: eligible
            _person("N", pcn=moved_out, gp=2),  # was in U2, in U1 at the index: not
        ],
        ignore_index=True,
    )
    base = _rs(panel, exact=("sex",))
    assert base.pairs["comparator_person_id"].tolist()[0] == "B"
    rs = _rs(panel, comparators="comparator-pcns", comparator_pcns=["U2"])
    assert rs.exact == ("sex", "age_band")  # the design's default strata: no PCN
    at13 = rs.pool.loc[rs.pool["index_t"] == 13].set_index("person_id")["treated"]
    # D is not yet referred at 13, so a comparator then (as with not-yet-referred)
    assert at13.to_dict() == {"A": 1, "C": 0, "D": 0, "M": 0}
    # M and D have A's exact prior use (the first in person order wins the tie); D is
    # never a case: referred while registered in a comparator PCN
    assert rs.pairs[["case_person_id", "comparator_person_id"]].values.tolist() == [["A", "D"]]
    att = rs.attrition.set_index("reason")["n"]
    assert att[REASON_IN_COMPARATOR_PCN] == 1
    assert rs.attrition.iloc[0]["n"] == 2 and rs.attrition.iloc[-1]["n"] == 1
    # the default design's attrition has no comparator-PCN step
    assert REASON_IN_COMPARATOR_PCN not in set(base.attrition["reason"])
    assert rs.options["comparator_pcns"] == ("U2",)


def test_comparator_pcn_case_with_short_lookback_counted_once():
    panel = pd.concat(
        [
            _person("A", ref=13, gp=2),
            _person("C", pcn="U2", gp=2),
            _person("Y", pcn="U2", ref=3, gp=2),  # too early for the look-back too
        ],
        ignore_index=True,
    )
    rs = _rs(panel, comparators="comparator-pcns", comparator_pcns=["U2"])
    att = rs.attrition.set_index("reason")["n"]
    assert att[REASON_IN_COMPARATOR_PCN] == 1 and att[REASON_LOOKBACK] == 0
    a = rs.attrition
    assert a.iloc[0]["n"] == a.iloc[-1]["n"] + a.loc[a["step"] == "dropped", "n"].sum()


def test_comparator_pcns_on_synthetic_panel_balances():
    panel = make_panel(n_people=4000, n_periods=30, n_pcns=4, seed=3)
    comp = ["U00002", "U00003"]
    rs = _rs(
        panel, comparators="comparator-pcns", comparator_pcns=comp, covariates=None, caliper=0.2
    )
    pcn_at = panel.set_index(["person_id", "t"])["pcn_code"]
    u = rs.units
    pcn_u = pcn_at.loc[list(zip(u["person_id"], u["index_t"], strict=True))].to_numpy()
    assert set(pcn_u[u["treated"] == 0]) <= set(comp)
    assert not set(pcn_u[u["treated"] == 1]) & set(comp)
    assert rs.glance().iloc[0]["n_matched_cases"] > 50
    bal = rs.balance(warn=False).table().set_index("variable")
    assert (bal["smd_after"].abs() < 0.1).all(), bal["smd_after"]
    referred_in_comp = panel.loc[
        panel["referral_t"].notna()
        & (panel["t"] == panel["referral_t"])
        & panel["pcn_code"].isin(comp),
        "person_id",
    ].nunique()
    att = rs.attrition.set_index("reason")["n"]
    assert att[REASON_IN_COMPARATOR_PCN] == referred_in_comp > 0


def test_comparator_pcn_input_errors():
    panel = pd.concat([_person("A", ref=13), _person("C", pcn="U2")], ignore_index=True)
    with pytest.raises(DataError, match="pcn_code' cannot be in exact"):
        _rs(panel, comparators="comparator-pcns", comparator_pcns=["U2"], exact=("pcn_code",))
    with pytest.raises(DataError, match="needs comparator_pcns"):
        _rs(panel, comparators="comparator-pcns")
    with pytest.raises(DataError, match="only used with"):
        _rs(panel, comparator_pcns=["U2"])
    with pytest.raises(DataError, match="none of the 1 comparator PCN"):
        _rs(panel, comparators="comparator-pcns", comparator_pcns=["U9"])


def test_protocol_comparator_pcns(tmp_path):
    base = {"name": "x", "title": "X", "start": "2022-01-01", "end": "2023-01-01"}
    p = load_protocol(
        {**base, "match": {"comparators": "comparator-pcns", "comparator_pcns": ["U2"]}}
    )
    assert p.match.exact == ("sex", "age_band")
    assert p.match.comparator_pcns == ("U2",)
    assert p.to_dict()["match"]["comparator_pcns"] == ["U2"]
    with pytest.raises(ProtocolError, match="pcn_code cannot be in exact"):
        load_protocol(
            {
                **base,
                "match": {
                    "comparators": "comparator-pcns",
                    "comparator_pcns": ["U2"],
                    "exact": ["pcn_code", "sex"],
                },
            }
        )
    with pytest.raises(ProtocolError, match="needs comparator_pcns"):
        load_protocol({**base, "match": {"comparators": "comparator-pcns"}})
    # protocols without the option keep their hash (the key is not dumped when unset)
    plain = load_protocol(base)
    assert "comparator_pcns" not in plain.to_dict()["match"]
    explicit_none = load_protocol({**base, "match": {"comparator_pcns": None}})
    assert protocol_hash(plain) == protocol_hash(explicit_none)


# --------------------------------------------------------------------------- Mahalanobis


def test_mahalanobis_in_one_risk_set_equals_nearest():
    """One index period, no caliper: risk_set's Mahalanobis pairs are nearest()'s
    (MatchIt's) on the same candidate pool, within the same exact strata."""
    panel = make_panel(n_people=1500, n_periods=14, seed=11, churn=False)
    ref = panel["referral_t"]
    panel = panel.assign(referral_t=ref.where(ref.isna() | (ref == 12) | (ref > 13), pd.NA))
    covs = ["prior_gp", "recent_gp", "age"]
    rs = _rs(
        panel,
        covariates=covs,
        exact=("sex",),
        distance="mahalanobis",
        order="data",
        lookback=12,
    )
    pool = rs.pool.loc[rs.pool["index_t"] == 12].reset_index(drop=True)
    assert pool["treated"].sum() >= 5
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = nearest(
            pool,
            treat="treated",
            covariates=covs,
            distance="mahalanobis",
            exact=["sex"],
            ties="data",
        )
    ids = pool["person_id"].to_numpy()
    t_rows = np.flatnonzero(pool["treated"].to_numpy() == 1)
    ours = dict(zip(rs.pairs["case_person_id"], rs.pairs["comparator_person_id"], strict=True))
    theirs = {ids[t_rows[i]]: ids[c] for i, c in enumerate(m.match_matrix[:, 0]) if c >= 0}
    assert ours == theirs and len(ours) == pool["treated"].sum()
    # and it is not the propensity-score answer
    ps = _rs(panel, covariates=covs, exact=("sex",), order="data", lookback=12)
    assert (
        dict(zip(ps.pairs["case_person_id"], ps.pairs["comparator_person_id"], strict=True)) != ours
    )


def _pair_mahalanobis(rs) -> np.ndarray:
    from spevidence.match._design import mahalanobis_transform

    pool = rs.pool
    mah = mahalanobis_transform(pool, list(rs.covariates), pool["treated"].to_numpy())
    key = {
        (p, s): i for i, (p, s) in enumerate(zip(pool["person_id"], pool["index_t"], strict=True))
    }
    a = [key[(p, s)] for p, s in zip(rs.pairs["case_person_id"], rs.pairs["index_t"], strict=True)]
    b = [
        key[(p, s)]
        for p, s in zip(rs.pairs["comparator_person_id"], rs.pairs["index_t"], strict=True)
    ]
    return np.sqrt(((mah[a] - mah[b]) ** 2).sum(axis=1))


def test_mahalanobis_within_caliper_closer_pairs():
    """Mahalanobis within the 0.2 SD propensity caliper: every pair within the
    caliper, pairs closer on the covariates than propensity-score pairs (measured:
    mean pair distance about half), and balance improved on every covariate that was
    imbalanced. It does NOT balance means as well as the propensity score here
    (measured |SMD| after: prior_ae 0.18 vs 0.08, prior_admissions 0.12 vs 0.03),
    which is why the propensity score stays the default."""
    panel = make_panel(n_people=4000, n_periods=30, seed=1)
    rs = _rs(panel, covariates=None, distance="mahalanobis", caliper=0.2, lookback=12)
    ps = _rs(panel, covariates=None, caliper=0.2, lookback=12)
    assert (rs.pairs["distance_diff"] <= rs.caliper).all()
    assert rs.options["distance"] == "mahalanobis"
    assert _pair_mahalanobis(rs).mean() < 0.75 * _pair_mahalanobis(ps).mean()
    bal = rs.balance(warn=False).table().set_index("variable")
    imbalanced = bal["smd_before"].abs() > 0.1
    assert (bal.loc[imbalanced, "smd_after"].abs() < bal.loc[imbalanced, "smd_before"].abs()).all()
    assert (bal["smd_after"].abs() < 0.2).all(), bal["smd_after"]
    a = rs.attrition
    assert a.iloc[0]["n"] == a.iloc[-1]["n"] + a.loc[a["step"] == "dropped", "n"].sum()
    with pytest.raises(DataError, match="distance must be"):
        _rs(panel, distance="euclidean")


# --------------------------------------------------------------------------- strata blocks


@pytest.mark.parametrize("mahal", [False, True])
@pytest.mark.parametrize(("ratio", "reuse", "caliper"), [(1, 1, None), (2, 1, 0.3), (2, 99, 0.3)])
def test_strata_blocks_equal_one_call_per_stratum(mahal, ratio, reuse, caliper):
    """nn_match_vec / nn_match_mahcovs with ``strata`` (one call, searches kept
    inside each stratum's block) give exactly the pairs of one call per stratum."""
    from spevidence.match._nn import nn_match_mahcovs, nn_match_vec

    rng = np.random.default_rng(ratio * 10 + reuse + int(mahal))
    n = 600
    strata = rng.integers(0, 25, n)
    treat = (rng.random(n) < 0.25).astype(int)
    d = np.round(rng.normal(size=n), 2)  # rounded: plenty of exact ties
    mah = np.column_stack([d, rng.normal(size=n)])

    def run(idx, st):
        t = treat[idx]
        n1 = int(t.sum())
        order = np.argsort(-d[idx][t == 1], kind="stable")
        args = (t, order, np.full(n1, ratio), np.zeros(len(idx), bool), reuse)
        if mahal:
            return nn_match_mahcovs(*args, mah[idx], None, d[idx], caliper, st)
        return nn_match_vec(*args, d[idx], None, caliper, st)

    whole = run(np.arange(n), strata)
    treated_rows = np.flatnonzero(treat == 1)
    got = {
        int(treated_rows[i]): sorted(int(c) for c in row if c >= 0) for i, row in enumerate(whole)
    }
    want = {}
    for s in np.unique(strata):
        idx = np.flatnonzero(strata == s)
        if treat[idx].sum() == 0:
            continue
        mm = run(idx, None)
        rows = idx[treat[idx] == 1]
        for i, row in enumerate(mm):
            want[int(rows[i])] = sorted(int(idx[c]) for c in row if c >= 0)
    assert got == want
    assert sum(len(v) for v in got.values()) > 100


def test_panel_checks_count_duplicates_and_inconsistent_referrals():
    panel = pd.concat([_person("A", ref=13), _person("B"), _person("C")], ignore_index=True)
    dup = pd.concat([panel, panel.iloc[[3, 40]]], ignore_index=True)
    with pytest.raises(DataError, match="2 duplicated person_id x t"):
        _rs(dup)
    two = panel.copy()
    two.loc[(two["person_id"] == "A") & (two["t"] > 20), "referral_t"] = 21
    two.loc[two["person_id"] == "C", "referral_t"] = np.where(
        two.loc[two["person_id"] == "C", "t"] < 5, 14, 15
    )
    with pytest.raises(DataError, match="2 person\\(s\\) have more than one referral_t"):
        _rs(two)
