"""Shipped unit costs and uprating index: schema, sources, loader checks, A&E by type.

The figures marked ``verified=yes`` were read in the cited tables (PSSRU/CHE Unit
Costs of Health and Social Care 2023 and 2024 Manuals, Tables 6.1.1, 9.4.2 and
12.1.1); the expected values below are those printed tables, not our own output.
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from spevidence.errors import DataError
from spevidence.sroi import (
    ae_cost_item,
    check_unit_costs,
    evaluate,
    from_did,
    unit_costs,
    uprating_index,
)
from spevidence.sroi._costs import UNIT_COST_COLUMNS, _read_text


def raw_costs() -> pd.DataFrame:
    return pd.read_csv(io.StringIO(_read_text("unit_costs.csv")))


def inputs(price_year: str = "2023/24") -> pd.DataFrame:
    return pd.DataFrame(
        {"item": ["link worker"], "amount": [1000.0], "year": [0], "price_year": [price_year],
         "source": ["test"]}
    )  # fmt: skip


# ------------------------------------------------------------------ schema


def test_shipped_table_schema_every_row_sourced_and_priced():
    raw = raw_costs()
    assert tuple(raw.columns) == UNIT_COST_COLUMNS
    c = unit_costs()
    assert c["item"].is_unique
    years = set(uprating_index()["financial_year"])
    for _, r in c.iterrows():
        assert isinstance(r["source"], str) and len(r["source"]) > 20, r["item"]
        assert r["price_year"] in years, r["item"]  # every row can be uprated
        assert r["verified"] in ("yes", "no"), r["item"]
        assert isinstance(r["unit"], str) and r["unit"].startswith("£ per"), r["item"]
        assert isinstance(r["notes"], str) and len(r["notes"]) > 20, r["item"]
        lo = r["value_low"] if pd.notna(r["value_low"]) else r["value"]
        hi = r["value_high"] if pd.notna(r["value_high"]) else r["value"]
        assert lo <= r["value"] <= hi, r["item"]
    # a verified figure names the table it was read in; an unverified one says what was checked
    ver = c[c["verified"] == "yes"]
    assert ver["source"].str.contains(r"Table \d+\.\d+\.\d+").all()
    unver = c[c["verified"] == "no"]
    assert len(unver) > 0
    assert unver["notes"].str.contains("NOT read|not retrieved|not read", case=False).all()
    assert c["cashable"].map(type).eq(bool).all()


def test_verified_rows_hold_the_figures_printed_in_their_tables():
    c = unit_costs().set_index("item")
    printed = {  # item: (value, price year, verified) as printed in the cited table
        "gp_consultation": (45, "2023/24"),  # 2024 Manual, Table 9.4.2
        "gp_consultation_excl_qualifications": (37, "2023/24"),
        "gp_consultation_2022_23": (49, "2022/23"),  # 2023 Manual, Table 9.4.2
        "ae_attendance": (273, "2023/24"),  # 2024 Manual, Table 6.1.1 'Emergency care'
        "nel_admission_short_stay": (792, "2023/24"),
        "nel_admission_long_stay": (5134, "2023/24"),
    }
    for item, (value, year) in printed.items():
        assert (c.loc[item, "value"], c.loc[item, "price_year"]) == (value, year), item
        assert c.loc[item, "verified"] == "yes", item
    assert c.loc["gp_consultation_2022_23", "value_low"] == 42
    # figures no primary source confirmed stay unverified
    for item in ("link_worker_arrs_2019_20", "link_worker_arrs_2022_23", "wellby"):
        assert c.loc[item, "verified"] == "no", item
    assert (c.loc["wellby", "value_low"], c.loc["wellby", "value_high"]) == (10000, 16000)


def test_shipped_index_is_the_printed_nhscii_series():
    idx = uprating_index().set_index("financial_year")
    printed = {"2015/16": 0.40, "2016/17": 2.09, "2017/18": 1.24, "2018/19": 1.60,
               "2019/20": 2.14, "2020/21": 2.49, "2021/22": 2.58, "2022/23": 7.32,
               "2023/24": 4.31}  # fmt: skip
    assert idx.index[0] == "2014/15" and idx["index"].iloc[0] == 1.0
    for year, pct in printed.items():
        assert idx.loc[year, "annual_change_pct"] == pct
    assert idx["index"].iloc[-1] == pytest.approx(np.prod([1 + p / 100 for p in printed.values()]))
    assert idx.loc["2023/24", "provisional"] and not idx.loc["2022/23", "provisional"]
    assert (idx["verified"] == "yes").all()
    assert idx["source"].str.contains("Table 12.1.1").all()


# ------------------------------------------------------------------ loader checks


def first(col: str, value: object):
    """Edit: set ``col`` of row 0 to ``value``."""

    def edit(d: pd.DataFrame) -> pd.DataFrame:
        return d.assign(**{col: [value, *list(d[col][1:])]})

    return edit


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (first("source", ""), r"row 0 \('gp_consultation'\): source is missing"),
        (first("price_year", None), r"row 0 .*price_year is missing"),
        (first("price_year", "2009/10"), r"'2009/10' is not in the uprating index"),
        (first("price_year", "last year"), r"not a financial year"),
        (first("value", -1), r"row 0 .*value must be a number >= 0"),
        (first("value_low", 99), r"value_low = 99 is on the wrong side"),
        (first("verified", "maybe"), r"verified must be 'yes'"),
        (first("cashable", "sometimes"), r"cashable = 'sometimes'"),
        (first("notes", ""), r"row 0 .*notes is missing"),
        (lambda d: pd.concat([d, d.iloc[[0]]]), r"\['gp_consultation'\] appear more than once"),
        (lambda d: d.drop(columns="notes"), r"lacks column\(s\) \['notes'\]"),
    ],
)
def test_loader_rejects_a_broken_table_naming_row_and_fix(edit, match):
    broken = edit(raw_costs())
    with pytest.raises(DataError, match=match):
        check_unit_costs(broken, where="unit_costs.csv", full=True, index=uprating_index())


def test_user_table_is_checked_by_from_did():
    eff = pd.DataFrame({"outcome": ["gp"], "estimate": [-0.5], "std_error": [0.1]})
    mine = pd.DataFrame(
        {"item": ["gp_consultation"], "value": [60.0], "price_year": [None], "source": ["x"]}
    )
    with pytest.raises(DataError, match=r"unit_costs row 0 \('gp_consultation'\): price_year"):
        from_did(eff, persons=10, unit_costs=mine)
    ok = from_did(eff, persons=10, unit_costs=mine.assign(price_year="2023-24"))
    assert ok["price_year"].iloc[0] == "2023/24" and ok["unit_value"].iloc[0] == 60.0


def test_uprating_of_shipped_costs_uses_the_index_levels():
    eff = pd.DataFrame({"outcome": ["gp"], "estimate": [-1.0], "std_error": [0.0]})
    o = from_did(eff, persons=1, cost_map={"gp": "gp_consultation_2022_23"})
    idx = uprating_index().set_index("financial_year")["index"]
    res = evaluate(o, inputs(), discount=0.0, price_year="2023/24")
    factor = idx["2023/24"] / idx["2022/23"]
    assert factor == pytest.approx(1.0431)
    assert res.outcomes["uprating_factor"].iloc[0] == pytest.approx(factor, rel=1e-12)
    assert res.pv_benefits == pytest.approx(49 * factor, rel=1e-12)
    # another index gives another value: the factor really comes from the index
    mine = pd.DataFrame({"financial_year": ["2022/23", "2023/24"], "annual_change_pct": [None, 10]})
    res2 = evaluate(o, inputs(), discount=0.0, price_year="2023/24", uprating=mine)
    assert res2.pv_benefits == pytest.approx(49 * 1.1, rel=1e-12)


# ------------------------------------------------------------------ A&E by department type


def test_ae_cost_item_by_department_type():
    assert ae_cost_item(None) == "ae_attendance"
    assert ae_cost_item(["4", "3", "2", "1"]) == "ae_attendance"
    assert ae_cost_item(("1",)) == "ae_attendance_type1"
    assert ae_cost_item(["3"]) == "ae_attendance_type3"
    with pytest.raises(DataError, match=r"covers department types \['1', '3'\].*cost_map"):
        ae_cost_item(("1", "3"))
    with pytest.raises(DataError, match="'1', '2', '3' and '4'"):
        ae_cost_item(("5",))


def test_ae_priced_by_department_type_in_from_did():
    c = unit_costs().set_index("item")
    one = pd.DataFrame({"outcome": ["ae"], "estimate": [-0.2], "std_error": [0.05]})
    # a single A&E count over every type: the all-type average
    assert from_did(one, persons=10)["unit_cost_item"].iloc[0] == "ae_attendance"
    # the panel counted type 1 only: priced as type 1
    t1 = from_did(one, persons=10, ae_department_types=("1",))
    assert t1["unit_value"].iloc[0] == c.loc["ae_attendance_type1", "value"]
    assert t1["unit_cost_verified"].iloc[0] == "no"
    # an explicit cost_map wins
    own = from_did(one, persons=10, ae_department_types=("1",), cost_map={"ae": "ae_attendance"})
    assert own["unit_cost_item"].iloc[0] == "ae_attendance"
    # counts split by type: each priced at its own cost
    split = pd.DataFrame(
        {"outcome": ["ae_type1", "ae_type3"], "estimate": [-0.1, -0.3], "std_error": [0.02, 0.05]}
    )
    o = from_did(split, persons=100)
    assert o["unit_value"].tolist() == [
        c.loc["ae_attendance_type1", "value"],
        c.loc["ae_attendance_type3", "value"],
    ]
    assert o["quantity"].tolist() == pytest.approx([10.0, 30.0])
    res = evaluate(o, inputs(), discount=0.0)
    assert res.pv_benefits == pytest.approx(10 * 273 + 30 * 160)


def test_type_costs_follow_their_stated_derivation():
    c = unit_costs().set_index("item")
    avg = c.loc["ae_attendance", "value"]
    # notes: all-type average x reference-costs ratio (MIU/UCC 67, walk-in 46, ED 114)
    assert c.loc["ae_attendance_type3", "value"] == round(avg * 67 / 114)
    assert c.loc["ae_attendance_type4", "value"] == round(avg * 46 / 114)
    assert c.loc["ae_attendance_type1", "value"] == avg  # a lower bound for type 1
    assert c.loc["ae_attendance_type1", "value_high"] == round(avg * 138 / 114)
    for t in "1234":
        assert c.loc[f"ae_attendance_type{t}", "verified"] == "no"
        assert "Derived" in c.loc[f"ae_attendance_type{t}", "source"]
    order = [c.loc[f"ae_attendance_type{t}", "value"] for t in "431"]
    assert order == sorted(order)
