"""The person x period panel on DuckDB: hand-computed counts, an independent pandas
computation, invariance to row order and identifier relabelling, outcome definitions."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest_link import (
    END,
    START,
    TINY_EXPECTED_MONTHLY,
    as_panel_frame,
    random_world,
    reference_panel,
    tiny_world,
    write_extracts,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spevidence.data import read_extracts, validate
from spevidence.errors import DataError
from spevidence.link import PANEL_COLUMNS, build_panel


def _pipeline(folder, start=START, end=END, **kw):
    # the random worlds hold orphans, deaths and windows past their last event on purpose,
    # to test the linkage; the checks that stop such data are in test_hostile_coverage.py
    clean, qa, att = validate(
        read_extracts(folder), start=start, end=end, max_row_loss=1.0, completeness="warn"
    )
    return clean, qa, att


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = write_extracts(tmp_path_factory.mktemp("tiny"), tiny_world())
    return _pipeline(folder)


def test_tiny_monthly_panel_matches_hand_computation(tiny):
    clean, _, _ = tiny
    panel = build_panel(clean, start=START, end=END)
    got = panel.to_pandas()
    assert list(got.columns) == list(PANEL_COLUMNS)
    pd.testing.assert_frame_equal(got, as_panel_frame(TINY_EXPECTED_MONTHLY))
    # p4 registers after the window: counted out, and the attrition reconciles
    assert panel.attrition.excluded("panel_persons") == {
        "no day registered and alive in the study window": 1
    }
    assert panel.attrition.rows_in("panel_persons") == 5
    assert panel.attrition.kept("panel_persons") == 4
    assert panel.attrition.reconciles()
    assert panel.n_periods == 6
    g = panel.glance().iloc[0]
    assert (g["rows"], g["persons"], g["gp"], g["ae"], g["admissions"]) == (17, 4, 7, 3, 2)
    assert "4 people x 6 months" in panel.summary()


def test_tiny_quarterly_panel_sums_the_months(tiny):
    clean, _, _ = tiny
    q = build_panel(clean, start=START, end=END, period="quarter").to_pandas()
    m = as_panel_frame(TINY_EXPECTED_MONTHLY)
    m["t"] = m["t"] // 3
    exp = m.groupby(["person_id", "t"], as_index=False)[
        ["gp", "ae", "admissions", "exposure_days"]
    ].sum()
    pd.testing.assert_frame_equal(
        q[["person_id", "t", "gp", "ae", "admissions", "exposure_days"]], exp
    )
    assert q.loc[q.person_id == "p1", "referral_t"].tolist() == [0, 0]  # March -> Q0
    assert q.loc[q.person_id == "p5", "referral_t"].tolist() == [-1, -1]  # Nov 2020 -> Q-1
    assert set(q["period"].dt.month) == {1, 4}


def test_outcome_definitions_are_options(tiny):
    clean, _, _ = tiny
    p = build_panel(
        clean,
        start=START,
        end=END,
        gp_staff_roles=("gp", "nurse"),
        ae_department_types=("1",),
        admission_methods=("21", "2B", "11"),
    ).to_pandas()
    p1 = p[p.person_id == "p1"].set_index("t")
    assert p1.loc[1, "gp"] == 1  # nurse appointment on 10 Feb now counts (the DNA does not)
    assert p1.loc[4, "ae"] == 0  # type-3 attendance in May no longer counts
    assert p1.loc[3, "admissions"] == 2  # 21 and 2B in April
    assert p1.loc[4, "admissions"] == 1  # elective 11 in May
    assert p[p.person_id == "p5"].set_index("t").loc[0, "admissions"] == 0  # 2A not listed


def test_window_clipping_and_partial_periods(tiny):
    clean, _, _ = tiny
    p = build_panel(clean, start="2021-02-10", end="2021-03-20").to_pandas()
    p1 = p[p.person_id == "p1"]
    assert p1["exposure_days"].tolist() == [19, 20]  # 10-28 Feb, 1-20 Mar
    assert p1["gp"].tolist() == [0, 1]
    assert p1["t"].tolist() == [0, 1]
    assert p1["period"].dt.day.tolist() == [1, 1]


def test_panel_equals_independent_pandas_computation(tmp_path):
    tables = random_world(seed=11, n=70)
    folder = write_extracts(tmp_path / "w", tables)
    clean, _, att = _pipeline(folder, start="2021-01-01", end="2021-09-30")
    assert att.reconciles()
    panel = build_panel(clean, start="2021-01-01", end="2021-09-30")
    got = panel.to_pandas()
    assert panel.attrition.kept("panel_persons") == got["person_id"].nunique()
    exp = reference_panel(tables, dt.date(2021, 1, 1), dt.date(2021, 9, 30))
    pd.testing.assert_frame_equal(got, exp)
    assert got["gp"].sum() > 20 and got["admissions"].sum() > 5  # the test has teeth
    gq = build_panel(clean, start="2021-01-01", end="2021-09-30", period="quarter").to_pandas()
    eq = reference_panel(tables, dt.date(2021, 1, 1), dt.date(2021, 9, 30), "quarter")
    pd.testing.assert_frame_equal(gq, eq)


def test_monthly_gp_totals_equal_raw_extract_for_registered_and_alive(tmp_path):
    tables = random_world(seed=5, n=50)
    clean, _, _ = _pipeline(write_extracts(tmp_path / "w", tables), end="2021-12-31")
    panel = build_panel(clean, start=START, end="2021-12-31").to_pandas()
    # raw: attended GP appointments on a day the person is registered and alive
    ref = reference_panel(tables, START, dt.date(2021, 12, 31))
    raw_by_month = ref.groupby("period")["gp"].sum()
    assert panel.groupby("period")["gp"].sum().equals(raw_by_month)


def test_invariant_to_row_order_and_id_relabelling(tmp_path):
    tables = random_world(seed=3, n=40)
    base = build_panel(
        _pipeline(write_extracts(tmp_path / "a", tables))[0], start=START, end=END
    ).to_pandas()
    relabel = {f"id{i:04d}": f"zz{(i * 7919) % 1000:04d}" for i in range(40)}
    shuffled = {}
    for name, df in tables.items():
        df = df.sample(frac=1.0, random_state=1).reset_index(drop=True)
        df["person_id"] = df["person_id"].map(lambda v: relabel.get(v, v))
        shuffled[name] = df
    other = build_panel(
        _pipeline(write_extracts(tmp_path / "b", shuffled))[0], start=START, end=END
    ).to_pandas()
    back = {v: k for k, v in relabel.items()}
    other["person_id"] = other["person_id"].map(back)
    other = other.sort_values(["person_id", "t"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(base, other)


def test_build_panel_needs_validated_extracts(tmp_path):
    ex = read_extracts(write_extracts(tmp_path / "w", tiny_world()))
    with pytest.raises(DataError, match="validated"):
        build_panel(ex, start=START, end=END)


def test_bad_period_and_window_are_user_errors(tiny):
    clean, _, _ = tiny
    with pytest.raises(DataError, match="period"):
        build_panel(clean, start=START, end=END, period="week")  # type: ignore[arg-type]
    with pytest.raises(DataError, match="before it starts"):
        build_panel(clean, start=END, end=START)


def test_raw_nhs_numbers_never_reach_the_panel(tmp_path):
    from spevidence.identity import Key, pseudonymise

    tables = tiny_world()
    nhs = {"p1": "9434765919", "p2": "4010232137", "p3": "9990000018",
           "p4": "6541239878", "p5": "1234567881"}  # fmt: skip
    for df in tables.values():
        df["person_id"] = df["person_id"].map(nhs)
    key = Key(b"k" * 40)
    clean, qa, att = validate(
        read_extracts(write_extracts(tmp_path / "w", tables)),
        start=START, end=END, ids="nhs_number", key=key,
    )  # fmt: skip
    assert qa.by_rule("invalid_nhs_number") == ()
    panel = build_panel(clean, start=START, end=END).to_pandas()
    assert panel["person_id"].str.fullmatch(r"[0-9a-f]{64}").all()
    assert not panel["person_id"].isin(list(nhs.values())).any()
    expected = as_panel_frame(TINY_EXPECTED_MONTHLY)
    expected["person_id"] = expected["person_id"].map(lambda p: pseudonymise(nhs[p], key))
    expected = expected.sort_values(["person_id", "t"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(panel, expected)
    text = panel.to_csv() + qa.table().to_csv() + att.table().to_csv()
    assert not re.search(r"\d{10}", text)


# ---- small hypothesis-generated worlds against the brute-force reference ---------------

_days = st.integers(min_value=-120, max_value=300)
_BASE = dt.date(2021, 1, 1)


@st.composite
def _worlds(draw):
    from conftest_link import ADM_COLS, AE_COLS, GP_COLS, POP_COLS, REF_COLS

    n = draw(st.integers(1, 4))
    pop = []
    for i in range(n):
        death = draw(st.one_of(st.none(), _days.map(lambda d: _BASE + dt.timedelta(d))))
        starts = sorted(set(draw(st.lists(_days, min_size=1, max_size=2))))
        for s in starts:
            start = _BASE + dt.timedelta(s)
            end = draw(st.one_of(st.none(), st.integers(0, 200)))
            end = None if end is None else start + dt.timedelta(end)
            pop.append((f"h{i}", "P1", "N1", "F", 1960, start, end, death, None))
    ids = [f"h{i}" for i in range(n)] + ["ghost"]
    ev = st.tuples(st.sampled_from(ids), _days.map(lambda d: _BASE + dt.timedelta(d)))
    gp = [(p, d, draw(st.sampled_from(["attended", "dna"])), "gp", "telephone")
          for p, d in draw(st.lists(ev, max_size=8))]  # fmt: skip
    ae = [(p, d, "1") for p, d in draw(st.lists(ev, max_size=4))]
    adm = [(p, d, d, draw(st.sampled_from(["21", "2B", "11"])))
           for p, d in draw(st.lists(ev, max_size=4))]  # fmt: skip
    ref = [(p, d, "gp", draw(st.sampled_from(["accepted", "declined"])))
           for p, d in draw(st.lists(ev, max_size=3))]  # fmt: skip

    def f(rows, cols):
        return pd.DataFrame(rows, columns=pd.Index(cols), dtype=object)

    return {"population": f(pop, POP_COLS), "referrals": f(ref, REF_COLS),
            "gp_appointments": f(gp, GP_COLS), "ae_attendances": f(ae, AE_COLS),
            "admissions": f(adm, ADM_COLS)}  # fmt: skip


@settings(
    max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(world=_worlds())
def test_hypothesis_worlds_match_reference(world, tmp_path_factory):
    folder = write_extracts(tmp_path_factory.mktemp("h"), world)
    pop = world["population"]
    usable = [
        d is None or d >= s for d, s in zip(pop.death_date, pop.registration_start, strict=True)
    ]
    if not any(usable):  # every spell starts after death: nothing to link, a clear error
        with pytest.raises(DataError, match="population: no rows are left"):
            _pipeline(folder)
        return
    clean, _, att = _pipeline(folder)
    assert att.reconciles()
    got = build_panel(clean, start=START, end=END).to_pandas()
    pd.testing.assert_frame_equal(got, reference_panel(world, START, END))


@pytest.mark.parametrize("period", ["month", "quarter"])
def test_dense_counting_equals_the_engine_aggregation(tmp_path, period):
    """DuckDB counts on a persons x periods grid; the engine's own aggregation (the path
    Spark and very large panels take) must give the same panel, frame and file."""
    tables = random_world(seed=17, n=90)
    clean, _, _ = _pipeline(write_extracts(tmp_path / "w", tables), end="2021-12-31")
    dense = build_panel(clean, start=START, end="2021-12-31", period=period, cache=False)
    assert dense.dense is not None
    engine = dataclasses.replace(dense, dense=None)
    got, exp = dense.to_pandas(), engine.to_pandas()
    pd.testing.assert_frame_equal(got, exp)
    assert got["gp"].sum() > 20 and got["referral_t"].notna().any()
    dense.to_parquet(tmp_path / "dense.parquet")
    engine.to_parquet(tmp_path / "engine.parquet")
    a, b = pq.read_table(tmp_path / "dense.parquet"), pq.read_table(tmp_path / "engine.parquet")
    assert a.equals(b), (a.schema, b.schema)
    for c in ("t", "gp", "ae", "admissions", "exposure_days"):  # 64-bit integer counts
        assert a.schema.field(c).type == pa.int64()
    assert a.schema.field("person_id").type == pa.string()  # not a dictionary on reading
    # the cached panel (a view over the dense counts) answers engine queries the same way
    cached = build_panel(clean, start=START, end="2021-12-31", period=period)
    pd.testing.assert_frame_equal(cached.glance(), engine.glance())
    assert cached.dense is not None and dataclasses.replace(cached, dense=None).to_pandas().equals(
        exp
    )
