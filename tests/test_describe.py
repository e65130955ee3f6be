"""Descriptive tables against independent computations on small data."""

from __future__ import annotations

import numpy as np
import pandas as pd

from spevidence import describe


def _panel() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    rows = []
    for pid in ("a", "b", "c"):
        for t in range(20):
            if pid == "c" and t in (5, 6):  # a gap: not registered
                continue
            rows.append({"person_id": pid, "t": t, "gp": int(rng.poisson(1.0))})
    return pd.DataFrame(rows)


def test_lagged_sums_match_a_loop() -> None:
    p = _panel()
    out = describe.lagged_sums(p, "gp", {"m1_3": (1, 3), "m4_6": (4, 6)})
    lookup = {(r.person_id, r.t): r.gp for r in p.itertuples()}
    for r in out.itertuples():
        want13 = sum(lookup.get((r.person_id, r.t - k), 0) for k in (1, 2, 3))
        want46 = sum(lookup.get((r.person_id, r.t - k), 0) for k in (4, 5, 6))
        assert r.m1_3 == want13 and r.m4_6 == want46


def test_naive_before_after_by_hand() -> None:
    m = pd.DataFrame(
        {
            "person_id": ["x"] * 4 + ["y"] * 4,
            "treated": [1] * 4 + [0] * 4,
            "event_time": [-2, -1, 0, 1] * 2,
            "gp": [2, 4, 1, 1, 1, 1, 1, 1],
        }
    )
    t = describe.naive_before_after(m, outcomes=("gp",), pre=2, post=2).iloc[0]
    assert t["mean_before"] == 12 * 3.0 and t["mean_after"] == 12 * 1.0
    assert t["change_pct"] == -200 / 3
    assert t["comparator_change_pct"] == 0.0


def test_trends_weighted_mean() -> None:
    m = pd.DataFrame(
        {
            "person_id": ["x", "y", "z"],
            "treated": [0, 0, 1],
            "event_time": [0, 0, 0],
            "gp": [1, 4, 2],
            "weights": [3.0, 1.0, 1.0],
        }
    )
    t = describe.trends(m, outcomes=("gp",)).set_index("group")
    assert t.loc["comparators", "mean"] == (3 * 1 + 1 * 4) / 4
    assert t.loc["referred", "mean"] == 2.0


def test_table1_released_numbers_do_not_give_back_exact_counts() -> None:
    from spevidence.disclosure import control

    rng = np.random.default_rng(8)
    n = 148
    matched = pd.DataFrame(
        {
            "event_time": 0,
            "treated": np.repeat([1, 0], n),
            "period": "2022-03-01",
            "year_of_birth": rng.integers(1940, 2000, 2 * n),
            "sex": np.where(np.arange(2 * n) % 5 < 3, "F", "M"),  # 89 or 88 women of 148
            "imd_decile": rng.integers(1, 11, 2 * n),
            "prior_gp": rng.poisson(4, 2 * n),
        }
    )
    long = describe.cohort_characteristics(matched, None, outcomes=("gp",))
    safe, _ = control(
        long, count_columns=["n_group", "n"], table_name="t1", derived={"n": ["value"]}
    )
    wide = describe.characteristics_wide(safe).set_index("characteristic")
    referred = wide["referred"]
    assert referred["People"] == 150  # 148 rounded to the nearest 5
    women = int((matched.loc[matched["treated"] == 1, "sex"] == "F").sum())
    rounded_women = 5 * np.floor(women / 5 + 0.5)
    assert referred["Female (%)"] == round(100 * rounded_women / 150, 1)
    assert referred["Female (%)"] != round(100 * women / n, 1)  # the exact share is not released
    age = referred["Age at index (years), mean"]
    assert age == round(age, 1)


def _released(tables: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    from pathlib import Path

    from spevidence.pipeline.shared import release
    from spevidence.protocol import load_protocol

    proto = load_protocol(Path(__file__).resolve().parents[1] / "protocols" / "demo.yaml")
    safe, _ = release(tables, proto)
    return safe


def test_trends_and_naive_means_are_released_from_rounded_counts() -> None:
    # 148 referred people and 6 comparators at one event time: the exact mean beside a
    # rounded n would give the exact n back (as "59.46 % female" did in Table 1)
    rng = np.random.default_rng(11)
    n_ref, n_cmp = 148, 6
    rows = []
    for treated, n in ((1, n_ref), (0, n_cmp)):
        for i in range(n):
            for e in range(-3, 3):
                rows.append(
                    {"person_id": f"{treated}-{i}", "treated": treated, "event_time": e,
                     "gp": int(rng.poisson(2.0)), "weights": 1.0}
                )  # fmt: skip
    m = pd.DataFrame(rows)
    raw_tr = describe.trends(m, outcomes=("gp",))
    raw_nv = describe.naive_before_after(m, outcomes=("gp",), pre=3, post=3)
    se = describe.naive_change_log_se(m, outcomes=("gp",), pre=3, post=3, idname="person_id")
    raw_nv["change_log_se"] = raw_nv["outcome"].map(se)
    safe = _released({"trends": raw_tr, "naive_before_after": raw_nv})
    tr = safe["trends"]
    ref = tr.loc[tr["group"] == "referred"]
    for c in ("n", "n_events", "n_weight"):
        assert (ref[c].astype(int) % 5 == 0).all()
    # the released mean is the ratio of the released (rounded) counts, not the exact mean
    assert np.allclose(ref["mean"], ref["n_events"].astype(float) / ref["n_weight"].astype(float))
    assert not np.allclose(ref["mean"], raw_tr.loc[raw_tr["group"] == "referred", "mean"])
    # 6 comparators: their counts are redacted, and so are their means
    cmp_ = tr.loc[tr["group"] == "comparators"]
    assert cmp_["n"].isna().all() and cmp_["mean"].isna().all()

    nv = safe["naive_before_after"].iloc[0]
    assert int(nv["n"]) == 150
    assert nv["mean_before"] == 12 * nv["n_events_before"] / nv["n_months_before"]
    assert nv["change_pct"] == 100 * (nv["mean_after"] - nv["mean_before"]) / nv["mean_before"]
    assert int(nv["n_months_before"]) % 5 == 0 and int(nv["n_events_after"]) % 5 == 0
    # the CI of the change: around the released change, from the SE rounded to the step
    # of n = 150 (0.01)
    assert nv["change_log_se"] == round(float(se["gp"]), 2) and nv["change_log_se"] > 0
    ratio = 1 + nv["change_pct"] / 100
    for col, z in (
        ("change_conf_low", -1.959963984540054),
        ("change_conf_high", 1.959963984540054),
    ):
        assert np.isclose(nv[col], 100 * (ratio * np.exp(z * nv["change_log_se"]) - 1))
    assert nv["change_conf_low"] < nv["change_pct"] < nv["change_conf_high"]
    # the comparators' change rests on redacted counts (6 people x 3 months = 18 is
    # released rounded, but their events could be small): whatever is released is
    # computed from released numbers only
    if pd.notna(nv["comparator_change_pct"]):
        b = 12 * nv["n_comparator_events_before"] / nv["n_comparator_months_before"]
        a = 12 * nv["n_comparator_events_after"] / nv["n_comparator_months_after"]
        assert np.isclose(nv["comparator_change_pct"], 100 * (a - b) / b)


def test_trends_by_quarter_sum_the_months() -> None:
    rng = np.random.default_rng(5)
    rows = [
        {"person_id": f"{t}-{i}", "treated": t, "event_time": e,
         "ae": int(rng.poisson(0.3)), "weights": float(rng.choice([1.0, 0.5]))}
        for t in (0, 1) for i in range(20) for e in range(-6, 6)
    ]  # fmt: skip
    m = pd.DataFrame(rows)
    monthly = describe.trends(m, outcomes=("ae",))
    q = describe.trends(m, outcomes=("ae",), months=3)
    assert (monthly["months"] == 1).all() and (q["months"] == 3).all()
    # quarters of event time from the index month: -6..-4, -3..-1, 0..2, 3..5
    assert sorted(set(q["event_time"])) == [-6, -3, 0, 3]
    for _, r in q.iterrows():
        g = m.loc[
            (m["treated"] == (r["group"] == "referred"))
            & (m["event_time"] >= r["event_time"])
            & (m["event_time"] < r["event_time"] + 3)
        ]
        events = float((g["ae"] * g["weights"]).sum())
        assert r["n"] == len(g) == 60  # person-months
        assert r["n_events"] == round(events) and r["n_weight"] == round(g["weights"].sum())
        assert r["mean"] == events / g["weights"].sum()  # still per person-month


def test_naive_change_log_se_is_the_person_clustered_delta_method() -> None:
    # two referred people, two months before and two after; a comparator is ignored
    m = pd.DataFrame(
        {
            "unit_id": ["x"] * 4 + ["y"] * 4 + ["z"] * 4,
            "treated": [1] * 8 + [0] * 4,
            "event_time": [-2, -1, 0, 1] * 3,
            "gp": [2, 4, 1, 1, 0, 2, 1, 0, 9, 9, 9, 9],
        }
    )
    se = describe.naive_change_log_se(m, outcomes=("gp",), pre=2, post=2)["gp"]
    # by hand: S_b = 8, S_a = 3, M_b = M_a = 4; influence = e_a/3 - 2/4 - e_b/8 + 2/4
    infl = np.array([2 / 3 - 6 / 8, 1 / 3 - 2 / 8])
    assert np.isclose(se, np.sqrt(2 / 1 * np.sum(infl**2)))
    # no events after: no interval
    m0 = m.assign(gp=np.where(m["event_time"] >= 0, 0, m["gp"]))
    assert np.isnan(describe.naive_change_log_se(m0, outcomes=("gp",), pre=2, post=2)["gp"])
