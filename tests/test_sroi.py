"""SROI engine: every term of the convention by hand, invariances, simulation, errors."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from matplotlib.figure import Figure
from scipy import stats

from spevidence.errors import DataError
from spevidence.sroi import (
    SROIResult,
    cost_per_person,
    evaluate,
    from_did,
    link_worker_inputs,
    plot_tables,
    unit_costs,
)
from spevidence.sroi._engine import _triangular_ppf

# ---------------------------------------------------------------- fixtures


def one_outcome(**over) -> pd.DataFrame:
    row = {
        "outcome": "gp",
        "stakeholder": "NHS",
        "quantity": 100.0,
        "unit_value": 50.0,
        "price_year": "2022/23",
        "source": "test",
        "deadweight": 0.1,
        "attribution": 0.25,
        "displacement": 0.2,
        "drop_off": 0.5,
        "duration_years": 3,
        "cashable": False,
    }
    row.update(over)
    return pd.DataFrame([row])


def inputs_table(*rows) -> pd.DataFrame:
    rows = rows or ((1000.0, 0),)
    return pd.DataFrame(
        [
            {"item": f"cost {k}", "amount": a, "year": y, "price_year": "2022/23", "source": "test"}
            for k, (a, y) in enumerate(rows)
        ]
    )


# ---------------------------------------------------------------- hand-computed terms


def test_every_term_by_hand():
    res = evaluate(one_outcome(), inputs_table((1000.0, 0), (500.0, 1)), discount=0.035)
    tidy = res.tidy()
    # year 1: 100 x 50 x 0.9 x 0.8 x 0.75 = 2700, drop-off factor 1, discount 1/1.035
    # year 2: x (1 - 0.5)^1 = 1350, discount 1/1.035^2; year 3: 675, 1/1.035^3
    assert tidy["year"].tolist() == [1, 2, 3]
    np.testing.assert_allclose(tidy["gross_value"], [5000.0, 5000.0, 5000.0])
    np.testing.assert_allclose(tidy["drop_off_factor"], [1.0, 0.5, 0.25])
    np.testing.assert_allclose(tidy["value"], [2700.0, 1350.0, 675.0])
    np.testing.assert_allclose(tidy["discount_factor"], [1 / 1.035, 1 / 1.071225, 1 / 1.108717875])
    pv_b = 2700 / 1.035 + 1350 / 1.071225 + 675 / 1.108717875
    pv_i = 1000 + 500 / 1.035  # year 0 undiscounted, year 1 discounted once
    g = res.glance().iloc[0]
    assert g["pv_benefits"] == pytest.approx(pv_b, rel=1e-12)
    assert g["pv_inputs"] == pytest.approx(pv_i, rel=1e-12)
    assert g["npv"] == pytest.approx(pv_b - pv_i, rel=1e-12)
    assert g["sroi_ratio"] == pytest.approx(pv_b / pv_i, rel=1e-12)
    assert g["cashable_pv"] == 0.0
    assert g["non_cashable_pv"] == pytest.approx(pv_b, rel=1e-12)
    assert g["break_even_scale"] == pytest.approx(pv_i / pv_b, rel=1e-12)
    assert g["price_year"] == "2022/23"


@pytest.mark.parametrize(
    ("rate", "value", "factor"),
    [("deadweight", 0.3, 0.7), ("displacement", 0.4, 0.6), ("attribution", 0.15, 0.85)],
)
def test_each_rate_multiplies_by_one_minus_rate(rate, value, factor):
    base = dict(deadweight=0.0, displacement=0.0, attribution=0.0, drop_off=0.0, duration_years=1)
    r0 = evaluate(one_outcome(**base), inputs_table(), discount=0.0)
    r1 = evaluate(one_outcome(**{**base, rate: value}), inputs_table(), discount=0.0)
    assert r0.pv_benefits == pytest.approx(5000.0)
    assert r1.pv_benefits == pytest.approx(5000.0 * factor)


def test_drop_off_geometric_and_discount_per_year():
    o = one_outcome(deadweight=0, displacement=0, attribution=0, drop_off=0.2, duration_years=4)
    res = evaluate(o, inputs_table(), discount=0.1)
    expected = sum(5000 * 0.8 ** (t - 1) / 1.1**t for t in range(1, 5))
    assert res.pv_benefits == pytest.approx(expected, rel=1e-12)


def test_uprating_to_a_common_price_year():
    # NHSCII pay and prices (PSSRU 2024 Manual, Table 12.1.1): 2022/23 -> 2023/24 is +4.31 %
    o = one_outcome(deadweight=0, displacement=0, attribution=0, drop_off=0, duration_years=1)
    i = inputs_table()
    res = evaluate(o, i, discount=0.0, price_year="2023/24")
    f = 1.0431
    assert res.outcomes["uprating_factor"].iloc[0] == pytest.approx(f, rel=1e-12)
    assert res.pv_benefits == pytest.approx(5000 * f, rel=1e-12)
    assert res.pv_inputs == pytest.approx(1000 * f, rel=1e-12)
    # mixed price years: default target = the latest one; inputs from 2019/20 uprated 4 steps
    i2 = i.assign(price_year="2019/20")
    res2 = evaluate(o.assign(price_year="2023/24"), i2, discount=0.0)
    assert res2.price_year == "2023/24"
    assert res2.pv_inputs == pytest.approx(1000 * 1.0249 * 1.0258 * 1.0732 * 1.0431)
    assert res2.pv_benefits == pytest.approx(5000.0)
    # deflating works too
    res3 = evaluate(o, i, discount=0.0, price_year="2021/22")
    assert res3.pv_benefits == pytest.approx(5000 / 1.0732)
    # a year the shipped index does not cover is refused, naming the fix
    with pytest.raises(DataError, match=r"'2024/25' is not in the uprating index.*uprating="):
        evaluate(o, i, discount=0.0, price_year="2024/25")


def test_user_uprating_index():
    idx = pd.DataFrame(
        {"financial_year": ["2022/23", "2023/24"], "annual_change_pct": [None, 10.0]}
    )
    res = evaluate(
        one_outcome(duration_years=1, drop_off=0),
        inputs_table(),
        discount=0.0,
        price_year=2023,
        uprating=idx,
    )
    assert res.price_year == "2023/24"
    assert res.outcomes["uprating_factor"].iloc[0] == pytest.approx(1.1)


def test_payback_by_hand():
    o = one_outcome(
        deadweight=0, displacement=0, attribution=0, drop_off=0, duration_years=3, unit_value=6.0
    )
    # 600 a year undiscounted, 1000 up front: paid back 400/600 of the way through year 2
    res = evaluate(o, inputs_table((1000.0, 0)), discount=0.0)
    assert res.glance()["payback_years"].iloc[0] == pytest.approx(1 + 400 / 600)
    # never paid back within 3 years
    res = evaluate(o, inputs_table((5000.0, 0)), discount=0.0)
    assert np.isnan(res.glance()["payback_years"].iloc[0])
    # later inputs push payback out: 1000 at 0 and 600 at year 1 -> 1600 by end of year 3 (1800)
    res = evaluate(o, inputs_table((1000.0, 0), (600.0, 1)), discount=0.0)
    assert res.glance()["payback_years"].iloc[0] == pytest.approx(2 + 400 / 600)


def test_cashable_split():
    o = pd.concat(
        [
            one_outcome(outcome="gp", cashable=False),
            one_outcome(outcome="ae", cashable=True, unit_value=100.0),
        ],
        ignore_index=True,
    )
    res = evaluate(o, inputs_table(), discount=0.035)
    by = res.by_outcome().set_index("outcome")["present_value"]
    g = res.glance().iloc[0]
    assert g["cashable_pv"] == pytest.approx(by["ae"])
    assert g["non_cashable_pv"] == pytest.approx(by["gp"])
    assert by["ae"] == pytest.approx(2 * by["gp"])
    assert res.by_outcome()["share"].sum() == pytest.approx(1.0)


# ---------------------------------------------------------------- invariances


rate = st.floats(0, 0.95)


@settings(max_examples=25, deadline=None)
@given(
    q=st.floats(1, 1e4),
    uv=st.floats(1, 1e4),
    dw=rate,
    disp=rate,
    attr=rate,
    drop=rate,
    dur=st.integers(1, 6),
    r=st.floats(0, 0.2),
    amount=st.floats(100, 1e6),
)
def test_invariances(q, uv, dw, disp, attr, drop, dur, r, amount):
    o = one_outcome(
        quantity=q,
        unit_value=uv,
        deadweight=dw,
        displacement=disp,
        attribution=attr,
        drop_off=drop,
        duration_years=dur,
    )
    base = evaluate(o, inputs_table((amount, 0)), discount=r)
    doubled = evaluate(o, inputs_table((2 * amount, 0)), discount=r)
    assert doubled.sroi_ratio == pytest.approx(base.sroi_ratio / 2, rel=1e-10)
    # zero discount and one year: a plain product
    one = evaluate(o.assign(duration_years=1), inputs_table((amount, 0)), discount=0.0)
    product = q * uv * (1 - dw) * (1 - disp) * (1 - attr)
    assert one.pv_benefits == pytest.approx(product, rel=1e-10)
    assert one.sroi_ratio == pytest.approx(product / amount, rel=1e-10)
    # scaling every quantity by the break-even factor gives a ratio of exactly 1
    k = base.glance()["break_even_scale"].iloc[0]
    be = evaluate(o.assign(quantity=q * k), inputs_table((amount, 0)), discount=r)
    assert be.sroi_ratio == pytest.approx(1.0, rel=1e-9)
    # row order of inputs does not matter
    two = inputs_table((amount / 3, 0), (2 * amount / 3, 1))
    assert evaluate(o, two, discount=r).pv_inputs == pytest.approx(
        evaluate(o, two.iloc[::-1], discount=r).pv_inputs, rel=1e-12
    )


# ---------------------------------------------------------------- from_did / inputs / costs


def did_effects(gp=(-1.2, 0.3), ae=(-0.1, 0.04), adm=(-0.02, 0.008)) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "outcome": ["gp", "ae", "admissions"],
            "estimate": [gp[0], ae[0], adm[0]],
            "std_error": [gp[1], ae[1], adm[1]],
        }
    )


def test_from_did_builds_the_impact_map():
    o = from_did(did_effects(), persons=800, duration_years=2, attribution=0.1)
    assert o["quantity"].tolist() == pytest.approx([960.0, 80.0, 16.0])
    assert o["quantity_se"].tolist() == pytest.approx([240.0, 32.0, 6.4])
    assert (o["deadweight"] == 0).all() and (o["attribution"] == 0.1).all()
    costs = unit_costs().set_index("item")
    assert o["unit_value"].tolist() == [
        costs.loc["gp_consultation", "value"],
        costs.loc["ae_attendance", "value"],
        costs.loc["nel_admission_short_stay", "value"],
    ]
    assert o["cashable"].tolist() == [False, True, True]
    assert o["source"].str.contains("PSSRU").iloc[0]
    # quarterly estimates are turned into yearly quantities
    q = from_did(did_effects(), persons=800, effect_period="quarter")
    assert q["quantity"].iloc[0] == pytest.approx(4 * 960.0)
    # an increase in use is a disbenefit (negative quantity)
    worse = from_did(did_effects(gp=(0.5, 0.1)), persons=10)
    assert worse["quantity"].iloc[0] == pytest.approx(-5.0)


def test_from_did_wellbeing_is_valued_in_wellbys():
    # +0.3 points of life satisfaction for 100 people for 1 year = 30 WELLBYs x £13,000
    eff = pd.DataFrame({"outcome": ["wellbeing"], "estimate": [0.3], "std_error": [0.1]})
    o = from_did(eff, persons=100)
    assert o["quantity"].iloc[0] == pytest.approx(30.0)
    assert (o["unit_value"].iloc[0], o["unit_value_low"].iloc[0]) == (13000, 10000)
    assert not o["cashable"].iloc[0]
    res = evaluate(o, inputs_table(), discount=0.0, price_year="2019/20")
    assert res.pv_benefits == pytest.approx(30 * 13000)


def test_from_did_log_ratio_uses_the_baseline_rate():
    # Poisson DiD: log RR = log(0.8), baseline 5 GP visits a year -> 1 fewer visit a year
    eff = pd.DataFrame({"outcome": ["gp"], "estimate": [np.log(0.8)], "std_error": [0.05]})
    o = from_did(eff, persons=100, scale="log_ratio", baseline={"gp": 5.0})
    assert o["quantity"].iloc[0] == pytest.approx(100.0)
    assert o["quantity_se"].iloc[0] == pytest.approx(100 * 5.0 * 0.8 * 0.05)
    with pytest.raises(DataError, match="baseline="):
        from_did(eff, persons=100, scale="log_ratio")


def test_from_did_deadweight_is_zeroed_with_a_warning():
    with pytest.warns(UserWarning, match="double-count"):
        o = from_did(did_effects(), persons=100, deadweight=0.3)
    assert (o["deadweight"] == 0).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        from_did(did_effects(), persons=100)


def test_from_did_cost_map_and_errors():
    o = from_did(did_effects(), persons=100, cost_map={"admissions": "nel_admission_long_stay"})
    assert (
        o["unit_value"].iloc[2]
        == unit_costs().set_index("item").loc["nel_admission_long_stay", "value"]
    )
    with pytest.raises(DataError, match=r"effects row 0 \('loneliness'\).*cost_map"):
        from_did(
            pd.DataFrame({"outcome": ["loneliness"], "estimate": [0.1], "std_error": [0.1]}),
            persons=10,
        )
    with pytest.raises(DataError, match=r"effects row 0 \('loneliness'\): which way"):
        from_did(
            pd.DataFrame({"outcome": ["loneliness"], "estimate": [0.1], "std_error": [0.1]}),
            persons=10,
            cost_map={"loneliness": "wellby"},
        )
    with pytest.raises(DataError, match="more than one row"):
        from_did(pd.concat([did_effects(), did_effects()]), persons=10)
    with pytest.raises(DataError, match="persons"):
        from_did(did_effects(), persons=0)
    with pytest.raises(DataError, match="std_error"):
        from_did(did_effects().drop(columns="std_error"), persons=10)
    mine = pd.DataFrame(
        {"item": ["gp_consultation"], "value": [60.0], "price_year": ["2023/24"], "source": [""]}
    )
    with pytest.raises(DataError, match=r"unit_costs row 0 \('gp_consultation'\): source"):
        from_did(did_effects().iloc[:1], persons=10, unit_costs=mine)


def test_link_worker_inputs_and_cost_per_person():
    i = link_worker_inputs(
        wte=2, years=2, management_rate=0.1, vcse_activity_funding=5000, price_year="2022/23"
    )
    assert len(i) == 6
    pay = i[i["item"] == "Link-worker pay and on-costs"]
    assert pay["amount"].tolist() == [2 * 36428.0, 2 * 36428.0]
    assert pay["year"].tolist() == [0, 1]
    mgmt = i[i["item"] == "Management and overheads"]["amount"]
    assert mgmt.tolist() == pytest.approx([7285.6, 7285.6])
    assert "ARRS" in pay["source"].iloc[0]
    total = 2 * (72856 + 7285.6 + 5000)
    assert cost_per_person(i, wte=2, caseload_per_wte=200, years=2) == pytest.approx(total / 800)
    assert link_worker_inputs(wte=1, price_year=2019)["amount"].iloc[0] == 34113
    with pytest.raises(DataError, match="no shipped ARRS link-worker cost for 2021/22"):
        link_worker_inputs(wte=1, price_year="2021/22")
    with pytest.raises(DataError, match="source"):
        link_worker_inputs(wte=1, salary_with_oncosts=30000)


# ---------------------------------------------------------------- simulation


def test_simulation_is_reproducible_with_a_seed():
    o = from_did(did_effects(), persons=800, duration_years=2)
    i = link_worker_inputs(wte=3)
    a = evaluate(o, i, n_sims=500, seed=7)
    b = evaluate(o, i, n_sims=500, seed=7)
    c = evaluate(o, i, n_sims=500, seed=8)
    pd.testing.assert_frame_equal(a.simulations, b.simulations)
    pd.testing.assert_frame_equal(a.glance(), b.glance())
    assert not np.allclose(a.simulations["sroi_ratio"], c.simulations["sroi_ratio"])
    # simulate() on an existing result equals n_sims= at evaluate
    d = evaluate(o, i).simulate(500, seed=7)
    pd.testing.assert_frame_equal(a.simulations, d.simulations)
    assert a.glance()["n_sims"].iloc[0] == 500 and a.glance()["seed"].iloc[0] == 7


def test_simulation_matches_the_normal_sampling_distribution():
    # no proxy ranges: the ratio is linear in the quantity, so ratio ~ Normal(r, se * r / q)
    o = one_outcome(quantity=100.0, quantity_se=20.0, duration_years=2)
    res = evaluate(o, inputs_table(), n_sims=20000, seed=3)
    s = res.simulations["sroi_ratio"]
    sd = 20.0 * res.sroi_ratio / 100.0
    assert s.mean() == pytest.approx(res.sroi_ratio, abs=4 * sd / np.sqrt(20000))
    assert s.std() == pytest.approx(sd, rel=0.03)
    p = res.glance()["p_ratio_gt_1"].iloc[0]
    assert p == pytest.approx(1 - stats.norm.cdf((1 - res.sroi_ratio) / sd), abs=0.015)


def test_ci_crossing_zero_gives_an_interval_across_zero():
    persons = 1000
    # GP estimate -0.1 (SE 0.1): 95 % CI crosses zero
    eff = pd.DataFrame({"outcome": ["gp"], "estimate": [-0.1], "std_error": [0.1]})
    res = evaluate(from_did(eff, persons=persons), link_worker_inputs(wte=1), n_sims=4000, seed=11)
    g = res.glance().iloc[0]
    assert g["ratio_conf_low"] < 0 < g["ratio_conf_high"]
    assert g["p_ratio_gt_1"] < 1
    assert g["npv_conf_low"] < 0
    # a precise, large effect gives an interval well above 1
    eff2 = pd.DataFrame({"outcome": ["gp"], "estimate": [-3.0], "std_error": [0.1]})
    caveats = " ".join(res.caveats())
    # ratio about 0.13 (GP only, 1 WTE): the interval spans zero and stays below £1
    assert "zero or below" in caveats and "below £1" in caveats
    assert "includes £1" not in caveats
    g2 = evaluate(
        from_did(eff2, persons=persons), link_worker_inputs(wte=1), n_sims=4000, seed=11
    ).glance()
    assert g2["ratio_conf_low"].iloc[0] > 1 and g2["p_ratio_gt_1"].iloc[0] == 1.0
    precise = evaluate(
        from_did(eff2, persons=persons), link_worker_inputs(wte=1), n_sims=500, seed=1
    ).caveats()
    assert not any("includes £1" in c for c in precise)


def test_input_cost_ranges_enter_sensitivity_and_simulation():
    o = one_outcome(duration_years=1, drop_off=0)
    i = inputs_table((1000.0, 0), (500.0, 1)).assign(
        amount_low=[800.0, 500.0], amount_high=[1500.0, 500.0]
    )
    res = evaluate(o, i, discount=0.0)
    s = res.sensitivity().set_index(["parameter", "outcome"])
    assert s.loc[("input_amount", "cost 0"), "ratio_at_low"] == pytest.approx(
        res.pv_benefits / 1300
    )
    assert s.loc[("input_amount", "cost 0"), "ratio_at_high"] == pytest.approx(
        res.pv_benefits / 2000
    )
    assert ("inputs", "all") not in s.index
    sims = res.simulate(20000, seed=5).simulations["pv_inputs"]
    # mean of Triangular(800, 1000, 1500) is 1100; the fixed 500 is added
    assert sims.mean() == pytest.approx(1600.0, abs=5)
    assert sims.min() >= 1300 and sims.max() <= 2000
    with pytest.raises(DataError, match=r"inputs row 0 \('cost 0'\): need 0 <= amount_low"):
        evaluate(o, i.assign(amount_low=[1200.0, 500.0]))


def test_triangular_draws_match_scipy():
    u = np.linspace(0.001, 0.999, 101)
    lo, mode, hi = 10000.0, 13000.0, 16000.0
    ours = _triangular_ppf(u, np.array(lo), np.array(mode), np.array(hi))
    ref = stats.triang.ppf(u, c=(mode - lo) / (hi - lo), loc=lo, scale=hi - lo)
    np.testing.assert_allclose(ours, ref, rtol=1e-12)
    # mode at the upper bound (GP £42-£49, value £49)
    ours = _triangular_ppf(u, np.array(42.0), np.array(49.0), np.array(49.0))
    ref = stats.triang.ppf(u, c=1.0, loc=42, scale=7)
    np.testing.assert_allclose(ours, ref, rtol=1e-12)


# ---------------------------------------------------------------- sensitivity


def test_sensitivity_rows_agree_with_re_evaluation():
    o = one_outcome(quantity_se=10.0, unit_value_low=40.0, unit_value_high=60.0)
    i = inputs_table((3000.0, 0))
    res = evaluate(o, i)
    s = res.sensitivity().set_index(["parameter", "outcome"])
    checks = {
        ("unit_value", "gp"): dict(unit_value=40.0),
        ("quantity", "gp"): dict(quantity=100 - 1.959963984540054 * 10),
        ("attribution", "gp"): dict(attribution=0.15),
        ("drop_off", "gp"): dict(drop_off=0.4),
        ("duration_years", "gp"): dict(duration_years=2),
    }
    for key, over in checks.items():
        redo = evaluate(o.assign(**over), i)
        assert s.loc[key, "ratio_at_low"] == pytest.approx(redo.sroi_ratio, rel=1e-12), key
    low_disc = evaluate(o, i, discount=0.015).sroi_ratio
    assert s.loc[("discount", "all"), "ratio_at_low"] == pytest.approx(low_disc, rel=1e-12)
    assert s.loc[("inputs", "all"), "ratio_at_high"] == pytest.approx(res.sroi_ratio / 1.2)
    # deadweight is varied because it is non-zero here; sorted by swing
    assert ("deadweight", "gp") in s.index
    assert res.sensitivity()["swing"].is_monotonic_decreasing
    # DiD impact maps (deadweight 0) do not get a deadweight row
    did = evaluate(from_did(did_effects(), persons=100), link_worker_inputs(wte=1))
    assert "deadweight" not in set(did.sensitivity()["parameter"])


def test_break_even_effect():
    res = evaluate(
        from_did(did_effects(), persons=800, duration_years=2), link_worker_inputs(wte=3)
    )
    be = res.break_even().set_index("outcome")
    # re-evaluate with the GP effect at its break-even size: ratio exactly 1
    eff = did_effects()
    eff.loc[0, "estimate"] = be.loc["gp", "break_even_effect"]
    again = evaluate(from_did(eff, persons=800, duration_years=2), link_worker_inputs(wte=3))
    assert again.sroi_ratio == pytest.approx(1.0, rel=1e-10)
    # an outcome where more is better (wellbeing) gets a positive break-even effect
    wb = pd.DataFrame({"outcome": ["wellbeing"], "estimate": [0.01], "std_error": [0.01]})
    res = evaluate(from_did(wb, persons=50, effect_period="quarter"), inputs_table())
    eff_be = res.break_even()["break_even_effect"].iloc[0]
    assert eff_be > 0
    wb.loc[0, "estimate"] = eff_be
    again = evaluate(from_did(wb, persons=50, effect_period="quarter"), inputs_table())
    assert again.sroi_ratio == pytest.approx(1.0, rel=1e-10)


# ---------------------------------------------------------------- errors


def test_errors_name_the_row_and_the_fix():
    i = inputs_table()
    with pytest.raises(DataError, match=r"inputs row 1 \('cost 1'\): amount -5 is negative"):
        evaluate(one_outcome(), inputs_table((10.0, 0), (-5.0, 0)))
    o2 = pd.concat([one_outcome(), one_outcome(outcome="ae", attribution=1.5)], ignore_index=True)
    with pytest.raises(
        DataError, match=r"outcomes row 1 \('ae'\): attribution = 1.5 .*e\.g\. 0\.25"
    ):
        evaluate(o2, i)
    with pytest.raises(
        DataError, match=r"row 0 \('gp'\): price_year '2009/10' is not in the uprating"
    ):
        evaluate(one_outcome(price_year="2009/10"), i)
    with pytest.raises(DataError, match="not a financial year"):
        evaluate(one_outcome(price_year="last year"), i)
    with pytest.raises(DataError, match=r"outcomes row 0 \('gp'\): source is missing"):
        evaluate(one_outcome(source=None), i)
    with pytest.raises(DataError, match=r"inputs row 0 \('cost 0'\): source is missing"):
        evaluate(one_outcome(), i.assign(source="  "))
    with pytest.raises(DataError, match="unit_value -1 is negative"):
        evaluate(one_outcome(unit_value=-1.0), i)
    with pytest.raises(DataError, match="duration_years"):
        evaluate(one_outcome(duration_years=0), i)
    with pytest.raises(DataError, match="lacks column"):
        evaluate(one_outcome().drop(columns="cashable"), i)
    with pytest.raises(DataError, match="discount"):
        evaluate(one_outcome(), i, discount=3.5)
    with pytest.raises(DataError, match="sum to £0"):
        evaluate(one_outcome(), inputs_table((0.0, 0)))
    with pytest.raises(DataError, match="unit_value_low"):
        evaluate(one_outcome(unit_value_low=60.0, unit_value_high=70.0), i)
    with pytest.raises(DataError, match="price_year '2030/31' is not in the uprating index"):
        evaluate(one_outcome(), i, price_year="2030/31")


@pytest.mark.parametrize("rate", ["deadweight", "displacement", "attribution", "drop_off"])
@pytest.mark.parametrize("value", [-0.1, 1.2, float("nan")])
def test_every_rate_outside_unit_interval_is_refused(rate, value):
    o = pd.concat([one_outcome(), one_outcome(outcome="ae", **{rate: value})], ignore_index=True)
    with pytest.raises(DataError, match=rf"outcomes row 1 \('ae'\): {rate} = .* outside \[0, 1\]"):
        evaluate(o, inputs_table())


# ---------------------------------------------------------------- figures and tables


def test_figures_and_summary(tmp_path):
    res = evaluate(
        from_did(did_effects(), persons=800, duration_years=2),
        link_worker_inputs(wte=3),
        n_sims=300,
        seed=1,
    )
    assert isinstance(res, SROIResult)
    for kind in ("waterfall", "tornado", "simulation"):
        fig = res.plot(kind=kind)
        assert isinstance(fig, Figure)
        ax = fig.axes[0]
        assert (ax.get_title() and ax.get_xlabel()) or ax.get_ylabel()
        fig.savefig(tmp_path / f"{kind}.png")
        assert (tmp_path / f"{kind}.png").stat().st_size > 5000
    with pytest.raises(DataError, match="simulate"):
        evaluate(from_did(did_effects(), persons=800), link_worker_inputs(wte=3)).plot(
            kind="simulation"
        )
    text = res.summary()
    assert "Value per £1" in text and "P(ratio > 1)" in text
    g = res.glance().iloc[0]
    assert g["ratio_conf_low"] < 1 < g["ratio_conf_high"]
    assert any("includes £1" in c for c in res.caveats())
    tidy = res.tidy()
    assert set(tidy["outcome"]) == {"gp", "ae", "admissions"} and tidy["year"].max() == 2
    assert tidy["present_value"].sum() == pytest.approx(res.pv_benefits)


def test_tables_round_trip_through_csv_and_redraw(tmp_path):
    res = evaluate(
        from_did(did_effects(), persons=800, duration_years=2),
        link_worker_inputs(wte=3),
        n_sims=400,
        seed=2,
    )
    tables = res.tables()
    assert set(tables) == {"sroi_summary", "sroi_by_outcome", "sroi_sensitivity", "sroi_simulation"}
    sim = tables["sroi_simulation"]
    assert sim["share"].sum() == pytest.approx(1.0)
    assert (sim["bin_high"] > sim["bin_low"]).all()
    # the report only sees CSVs: redraw every figure from them
    back = {}
    for name, df in tables.items():
        df.to_csv(tmp_path / f"{name}.csv", index=False)
        back[name] = pd.read_csv(tmp_path / f"{name}.csv")
    for kind in ("waterfall", "tornado", "simulation"):
        assert isinstance(plot_tables(back, kind), Figure)
    with pytest.raises(DataError, match="needs table"):
        plot_tables({"sroi_summary": back["sroi_summary"]}, "tornado")
    # no simulation table without simulations
    assert (
        "sroi_simulation"
        not in evaluate(from_did(did_effects(), persons=800), link_worker_inputs(wte=3)).tables()
    )
