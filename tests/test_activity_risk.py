"""Risk-score case finding: hand-computed scores on explicit data; no person rows released."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest_activity import gp_appointments, pid, population, referrals

from spevidence.activity import (
    FACTORS,
    RiskScoreSpec,
    equity_of_access,
    risk_score,
    risk_score_panel,
)
from spevidence.errors import DataError, ProtocolError

AT = "2024-01-01"


def _explicit() -> tuple[pd.DataFrame, pd.DataFrame]:
    ids = [pid(i) for i in range(6)]
    pop = pd.DataFrame(
        {
            "person_id": ids,
            "practice_code": ["A81001", "A81001", "A81002", "B82001", "B82001", "B82002"],
            "pcn_code": ["U00001", "U00001", "U00001", "U00002", "U00002", "U00002"],
            "sex": ["F", "M", "F", "M", "F", "M"],
            "year_of_birth": [1940, 1990, 1948, 1930, 1960, 1950],
            "registration_start": "2000-01-01",
            "registration_end": [None, None, None, None, None, "2023-06-30"],
            "death_date": None,
            "imd_decile": [1, 5, 2, None, 9, 1],
            "living_alone": [True, False, True, None, False, True],
            "widowed": [True, False, False, True, False, False],
            "frailty": ["severe", "fit", "moderate", None, "mild", "severe"],
            "falls": [False, False, True, True, False, False],
            "stroke": [False, False, False, True, False, False],
            "copd": [True, False, False, False, False, False],
            "heart_failure": [False, False, False, False, True, False],
        }
    )
    # person 1: 16 attended GP appointments in the look-back -> frequent attender;
    # person 4: 15 attended + DNAs + nurse + an appointment on the day after 'at' -> not
    rows = [(ids[1], f"2023-{m:02d}-10", "attended", "gp") for m in range(1, 13)]
    rows += [(ids[1], f"2023-0{m}-20", "attended", "gp") for m in range(1, 5)]
    rows += [(ids[4], f"2023-{m:02d}-10", "attended", "gp") for m in range(1, 13)]
    rows += [(ids[4], f"2023-0{m}-20", "attended", "gp") for m in range(1, 4)]
    rows += [(ids[4], "2023-05-05", "dna", "gp"), (ids[4], "2023-05-06", "attended", "nurse")]
    rows += [(ids[4], "2024-01-02", "attended", "gp"), (ids[4], "2023-01-01", "attended", "gp")]
    gp = pd.DataFrame(rows, columns=["person_id", "appointment_date", "status", "staff_role"])
    gp["mode"] = "face_to_face"
    return pop, gp


def test_scores_match_hand_computation():
    pop, gp = _explicit()
    r = risk_score(pop, gp, at=AT)
    s = r.scores.set_index("person_id")
    ids = [pid(i) for i in range(6)]
    # weights: living_alone 1, widowed 1, frequent 2, moderate 1, severe 2, falls 1,
    # stroke 1, copd 1, heart_failure 1, deprived (decile 1-2) 1, older_age (>= 75) 1
    expected = {
        ids[0]: 1 + 1 + 2 + 1 + 1 + 1,  # alone, widowed, severe, copd, deprived, age 84
        ids[1]: 2,  # frequent attender only
        ids[2]: 1 + 1 + 1 + 1 + 1,  # alone, moderate, falls, deprived, age 76
        ids[3]: 1 + 1 + 1 + 1,  # widowed, falls, stroke, age 94 (living_alone missing)
        ids[4]: 1,  # heart failure; 15 visits is not > 15
    }
    assert s["score"].to_dict() == pytest.approx(expected)
    assert ids[5] not in s.index  # left before 'at'
    assert s["gp_attendances"].to_dict() == {
        ids[0]: 0,
        ids[1]: 16,
        ids[2]: 0,
        ids[3]: 0,
        ids[4]: 15,
    }
    assert s["flagged"].to_dict() == {i: v >= 3 for i, v in expected.items()}
    fac = r.tables()["casefinding_factors"].set_index("factor")
    assert fac.loc[FACTORS["living_alone"], "missing"] == 1
    assert fac.loc[FACTORS["frailty_severe"], "people"] == 1
    assert fac.loc[FACTORS["frequent_attender"], "people"] == 1
    ex = r.tables()["casefinding_exclusions"].set_index("reason")["rows"]
    assert ex["not attended (dna/cancelled)"] == 1
    assert ex["staff role not counted (spec gp_roles)"] == 1
    assert (
        ex["outside the look-back window"] == 2
    )  # 2024-01-02 and 2023-01-01 (window is (at-365, at])


def test_spec_changes_weights_threshold_and_roles():
    pop, gp = _explicit()
    ids = [pid(i) for i in range(6)]
    spec = RiskScoreSpec(
        weights={"frequent_attender": 5.0, "heart_failure": 1.0},
        threshold=2,
        gp_roles=None,
        frequent_attender_visits=14,
    )
    s = risk_score(pop, gp, at=AT, spec=spec).scores.set_index("person_id")
    # all roles count: person 4 has 15 GP + 1 nurse = 16 attended in the window (> 14)
    assert s.loc[ids[4], "gp_attendances"] == 16
    assert s.loc[ids[4], "score"] == 6.0 and s.loc[ids[1], "score"] == 5.0
    assert s.loc[ids[0], "score"] == 0.0
    assert s["flagged"].sum() == 2
    older = risk_score(pop, gp, at=AT, spec=RiskScoreSpec(min_age=80)).scores
    assert set(older.loc[older["flagged"], "person_id"]) == {ids[0], ids[3]}
    spec2 = RiskScoreSpec.from_dict({"threshold": 4, "gp_roles": ["gp"], "deprived_deciles": [1]})
    assert spec2.gp_roles == ("gp",) and spec2.deprived_deciles == (1,)
    assert RiskScoreSpec.from_dict(spec2.to_dict()) == spec2
    with pytest.raises(ProtocolError, match="unknown factor"):
        RiskScoreSpec(weights={"loneliness": 1.0})
    with pytest.raises(ProtocolError):
        RiskScoreSpec.from_dict({"thresold": 3})


def test_by_pcn_and_referred():
    pop, gp = _explicit()
    ids = [pid(i) for i in range(6)]
    ref = pd.DataFrame(
        {
            "person_id": [ids[0], ids[3], ids[1]],
            "referral_date": ["2024-02-01", "2024-03-01", "2022-01-01"],
            "outcome": "accepted",
        }
    )
    r = risk_score(pop, gp, at=AT, referrals=ref, referred_between=("2024-01-01", "2024-12-31"))
    t = r.tables()["casefinding_by_pcn"].set_index("pcn_code")
    assert t.loc["U00001", "registered"] == 3 and t.loc["U00001", "flagged"] == 2
    assert t.loc["U00002", "registered"] == 2 and t.loc["U00002", "flagged"] == 1
    assert t.loc["U00001", "flagged_referred"] == 1 and t.loc["U00002", "flagged_referred"] == 1
    assert t.loc["All PCNs", "flagged"] == 3 and t.loc["All PCNs", "referred"] == 2
    assert t.loc["U00001", "percent_flagged_referred"] == pytest.approx(50.0)
    dist = r.tables()["casefinding_score_distribution"]
    assert dist["people"].sum() == 5
    assert dict(zip(dist["score"], dist["people"], strict=True)) == {
        1.0: 1,
        2.0: 1,
        4.0: 1,
        5.0: 1,
        7.0: 1,
    }


def test_person_rows_stay_out_of_tables_and_feed_equity_and_matching():
    pop = population(300, seed=21)
    gp = gp_appointments(pop, seed=22)
    ref = referrals(pop, m=200, seed=23)
    r = risk_score(pop, gp, at="2023-01-01", referrals=ref)
    ids = set(pop["person_id"])
    for name, df in r.tables().items():
        assert "person_id" not in df.columns, name
        assert not df.astype(str).isin(ids).any().any(), name
    shown = repr(r) + str(r) + r.summary()
    assert not any(p in shown for p in ids)
    cov = r.covariate()
    assert list(cov.columns) == ["person_id", "risk_score", "risk_flagged"]
    assert cov["risk_flagged"].sum() == len(r.flagged_ids())
    e = equity_of_access(pop, ref, at="2023-01-01", need=r)
    o = e.tables()["equity_overall"].iloc[0]
    assert o["need"] == len(r.flagged_ids())
    assert "casefinding_by_pcn" in r.figures()


def test_missing_columns():
    pop, gp = _explicit()
    r = risk_score(pop.drop(columns=["stroke", "frailty"]), gp, at=AT)
    fac = r.tables()["casefinding_factors"].set_index("factor")
    assert not fac.loc[FACTORS["stroke"], "available"]
    assert fac.loc[FACTORS["stroke"], "missing"] == 5
    with pytest.raises(DataError, match="gp_appointments"):
        risk_score(pop, gp.drop(columns="status"), at=AT)


def test_risk_score_panel_matches_brute_force():
    rng = np.random.default_rng(5)
    ids = [pid(i) for i in range(4)]
    rows = []
    for i, p in enumerate(ids):
        ts = sorted(rng.choice(np.arange(30), size=22, replace=False))  # gaps = not registered
        for t in ts:
            rows.append(
                (
                    p,
                    pd.Timestamp("2021-01-01") + pd.DateOffset(months=int(t)),
                    int(t),
                    int(rng.poisson(1.5 + i)),
                    1950 + 20 * i,
                    [1, 5, 2, 9][i],
                )
            )
    panel = pd.DataFrame(
        rows, columns=["person_id", "period", "t", "gp", "year_of_birth", "imd_decile"]
    )
    panel = panel.sample(frac=1.0, random_state=1).reset_index(drop=True)  # order kept
    pop = pd.DataFrame(
        {
            "person_id": ids,
            "living_alone": [True, False, True, False],
            "frailty": ["severe", None, "fit", "moderate"],
        }
    )
    spec = RiskScoreSpec(frequent_attender_visits=20, threshold=3)
    out = risk_score_panel(panel, pop, spec=spec, lookback_periods=12)
    assert list(out["person_id"]) == list(panel["person_id"])
    for _, r in out.iterrows():
        same = panel.loc[
            (panel["person_id"] == r["person_id"]) & panel["t"].between(r["t"] - 12, r["t"] - 1)
        ]
        visits = same["gp"].sum()
        assert r["risk_gp_lookback"] == visits
        i = ids.index(r["person_id"])
        age = r["period"].year - r["year_of_birth"]
        expected = (
            2 * (visits > 20)
            + [1, 0, 1, 0][i]  # living alone
            + [2, 0, 0, 1][i]  # frailty severe / moderate
            + (r["imd_decile"] in (1, 2))
            + (age >= 75)
        )
        assert r["risk_score"] == expected
        assert r["risk_flagged"] == int(expected >= 3)
    q = risk_score_panel(panel, pop, spec=spec, lookback_periods=4)
    assert (q["risk_gp_lookback"] <= out["risk_gp_lookback"]).all()
    with pytest.raises(DataError, match="panel"):
        risk_score_panel(panel.drop(columns="gp"), pop)


@pytest.mark.parametrize("roles", [None, ("gp",)])
def test_engine_counted_gp_appointments_give_the_same_tables(tmp_path, roles):
    # spevidence run counts the look-back visits in DuckDB (pipeline.casefinding_gp)
    # instead of reading every appointment; the case-finding tables must not change
    from spevidence.data import read_extracts, validate
    from spevidence.pipeline import casefinding_gp
    from spevidence.synthetic import generate

    generate("demo", persons=1500, seed=3, out=tmp_path)
    clean, _, _ = validate(read_extracts(tmp_path), start="2021-04-01", end="2024-03-31")
    pop = clean["population"].to_pandas()
    full = clean["gp_appointments"].to_pandas()
    spec = RiskScoreSpec(gp_roles=roles)
    at = pd.Timestamp("2022-06-30")
    counted = casefinding_gp(clean["gp_appointments"], at, spec.lookback_days)
    assert len(counted) < len(full) / 5 and counted["n_rows"].sum() == len(full)
    a = risk_score(pop, full, at=at, spec=spec)
    b = risk_score(pop, counted, at=at, spec=spec)
    ta, tb = a.tables(), b.tables()
    assert set(ta) == set(tb)
    for name in ta:
        pd.testing.assert_frame_equal(ta[name], tb[name], check_dtype=False)
    pd.testing.assert_frame_equal(a.scores, b.scores, check_dtype=False)
    assert (
        ta["casefinding_factors"].set_index("factor").loc[FACTORS["frequent_attender"], "people"]
        > 0
    )
