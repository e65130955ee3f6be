"""Disclosure control: redaction, rounding, secondary suppression, derived numbers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.optimize import Bounds, LinearConstraint, milp

from spevidence.disclosure import (
    LOG_COLUMNS,
    REDACTED,
    check,
    control,
    redact_derived,
    released_count,
)
from spevidence.errors import DisclosureError

# ---------------------------------------------------------------- helpers


def _lines(n_rows: int, cols: list[str], totals: str | None, groups: list[int]) -> list[list]:
    """Cells (row, col) whose sums are released, built independently of the library."""
    lines: list[list] = []
    if totals in ("columns", "both"):
        for g in sorted(set(groups)):
            rows = [i for i in range(n_rows) if groups[i] == g]
            for c in cols:
                lines.append([(i, c) for i in rows])
    if totals in ("rows", "both"):
        for i in range(n_rows):
            lines.append([(i, c) for c in cols])
    return lines


def _integer_range(raw: pd.DataFrame, redacted: set, lines: list[list], cell) -> tuple[int, int]:
    """Min and max integer value of ``cell`` consistent with exact totals (MILP).

    Worst-case reader: knows every total and every released cell unrounded.
    """
    cells = sorted(redacted)
    k = cells.index(cell)
    a, b = [], []
    for line in lines:
        row = [1.0 if c in line else 0.0 for c in cells]
        if any(row):
            a.append(row)
            b.append(sum(float(raw.loc[i, col]) for (i, col) in line if (i, col) in redacted))
    cons = LinearConstraint(np.array(a), np.array(b), np.array(b))
    obj = np.zeros(len(cells))
    obj[k] = 1.0
    integrality = np.ones(len(cells))
    bounds = Bounds(0, np.inf)
    lo = milp(obj, constraints=cons, integrality=integrality, bounds=bounds)
    hi = milp(-obj, constraints=cons, integrality=integrality, bounds=bounds)
    assert lo.status == 0 and hi.status == 0
    return round(lo.fun), round(-hi.fun)


# ---------------------------------------------------------------- fixed cases


def test_primary_redaction_and_rounding_by_hand():
    t = pd.DataFrame({"stage": list("abcdefgh"), "n": [0, 1, 7, 8, 12, 13, 1002, 5]})
    safe, log = control(t, count_columns=["n"], table_name="attrition")
    # 0 kept; 1, 7, 5 redacted; 8->10, 12->10, 13->15, 1002->1000
    assert safe["n"].tolist() == [0, pd.NA, pd.NA, 10, 10, 15, 1000, pd.NA]
    assert str(safe["n"].dtype) == "Int64"
    red = log[log["action"] == "redacted_primary"]
    assert red["row"].tolist() == ["1", "2", "7"]
    assert set(red["reason"]) == {"count between 1 and 7"}
    assert list(log.columns) == list(LOG_COLUMNS)
    rounded = log[log["action"] == "rounded"]
    assert rounded["reason"].tolist() == ["5 released count(s) rounded to the nearest 5"]
    # inputs are not mutated
    assert t["n"].tolist() == [0, 1, 7, 8, 12, 13, 1002, 5]


def test_redact_zero_and_configurable_threshold_and_rounding():
    t = pd.DataFrame({"n": [0, 3, 10, 11, 26]})
    safe, _ = control(t, count_columns=["n"], table_name="t", redact_zero=True)
    assert safe["n"].isna().tolist() == [True, True, False, False, False]
    safe, _ = control(t, count_columns=["n"], table_name="t", threshold=10, rounding=10)
    # 10 and 3 redacted (<= 10); 11 -> 10 would fall inside 1..10 so is raised to 20; 26 -> 30
    assert safe["n"].tolist() == [0, pd.NA, pd.NA, 20, 30]
    safe, _ = control(t, count_columns=["n"], table_name="t", rounding=1)
    assert safe["n"].tolist() == [0, pd.NA, 10, 11, 26]


def test_secondary_suppression_column_totals_within_groups():
    t = pd.DataFrame(
        {
            "characteristic": ["sex", "sex", "age", "age", "age"],
            "level": ["F", "M", "<65", "65-79", "80+"],
            "treated": [120, 3, 40, 60, 23],
        }
    )
    safe, log = control(
        t, count_columns=["treated"], table_name="t1", totals="columns", group_by=["characteristic"]
    )
    # M is small, so F (the only other sex) must go too; age is untouched
    assert safe["treated"].isna().tolist() == [True, True, False, False, False]
    sec = log[log["action"] == "redacted_secondary"]
    assert sec["row"].tolist() == ["0"]
    assert "column total" in sec["reason"].iloc[0]


def test_secondary_picks_smallest_positive_cell():
    t = pd.DataFrame({"a": [2], "b": [50], "c": [9], "d": [0]})
    safe, _ = control(t, count_columns=["a", "b", "c", "d"], table_name="t", totals="rows")
    assert safe.iloc[0].isna().tolist() == [True, False, True, False]


def test_two_by_two_with_both_totals_suppresses_rectangle():
    t = pd.DataFrame({"x": [3, 40], "y": [50, 60]})
    safe, _ = control(t, count_columns=["x", "y"], table_name="t", totals="both")
    assert safe.isna().to_numpy().all()


def test_redacted_zeros_summing_to_zero_get_a_positive_partner():
    # with zeros redacted, two redacted zeros in one line would both be pinned at 0
    t = pd.DataFrame({"a": [0], "b": [0], "c": [50], "d": [60]})
    safe, _ = control(
        t, count_columns=["a", "b", "c", "d"], table_name="t", totals="rows", redact_zero=True
    )
    assert safe.iloc[0].isna().tolist() == [True, True, True, False]


def test_single_cell_total_is_an_error():
    t = pd.DataFrame({"n": [4]})
    with pytest.raises(DisclosureError, match="only count in its column total"):
        control(t, count_columns=["n"], table_name="t", totals="columns")


def test_derived_columns_follow_their_count():
    t = pd.DataFrame({"events": [3, 40, 60], "py": [100.0, 200.0, 300.0], "rate": [0.03, 0.2, 0.2]})
    safe, log = control(
        t,
        count_columns=["events"],
        table_name="rates",
        totals="columns",
        derived={"events": ["rate"]},
    )
    assert safe["rate"].isna().tolist() == [True, True, False]
    assert (log["action"] == "redacted_derived").sum() == 2


def test_redact_derived_helper():
    t = pd.DataFrame({"n": [5, 30], "mean_visits": [4.2, 3.1]})
    safe, log = redact_derived(t, columns=["mean_visits"], counts=["n"], table_name="means")
    assert safe["mean_visits"].isna().tolist() == [True, False]
    assert log["action"].tolist() == ["redacted_derived"]
    assert "4.2" not in log.to_csv()


def test_csv_marker_and_labels():
    t = pd.DataFrame({"n": [3, 100]}, index=pd.Index(["small", "big"], name="group"))
    safe, log = control(t, count_columns=["n"], table_name="t")
    text = safe.to_csv(na_rep=REDACTED)
    assert "small,[REDACTED]" in text and "big,100" in text
    assert log.loc[log["action"] == "redacted_primary", "row"].tolist() == ["small"]


def test_released_count_is_the_count_a_released_table_shows():
    # by hand: halves round up, 1..threshold are redacted, zero is released
    by_hand = [0, None, None, 10, 10, 15, 400]
    assert [released_count(n) for n in (0, 5, 7, 8, 12, 13, 402)] == by_hand
    # a rounded value that would land in 1..threshold is raised above it
    assert released_count(12, threshold=11) == 15
    assert released_count(402, rounding=1) == 402 and released_count(3, rounding=1) is None
    # the same value as a column of control() shows, for every count and rule tried
    ns = [*range(60), 999, 1001, 123456]
    for threshold, rounding in ((7, 5), (10, 10), (5, 1), (0, 5)):
        safe, _ = control(
            pd.DataFrame({"n": ns}),
            count_columns=["n"],
            table_name="t",
            threshold=threshold,
            rounding=rounding,
        )
        shown = [None if pd.isna(v) else int(v) for v in safe["n"]]
        assert [released_count(n, threshold=threshold, rounding=rounding) for n in ns] == shown
    with pytest.raises(DisclosureError, match="count"):
        released_count(-1)


def test_errors_name_table_and_fix():
    with pytest.raises(DisclosureError, match=r"t\.n: 1 value\(s\) are negative"):
        control(pd.DataFrame({"n": [-1, 4]}), count_columns=["n"], table_name="t")
    with pytest.raises(DisclosureError, match="not whole numbers"):
        control(pd.DataFrame({"n": [1.5]}), count_columns=["n"], table_name="t")
    with pytest.raises(DisclosureError, match="not in the table"):
        control(pd.DataFrame({"n": [1]}), count_columns=["m"], table_name="t")
    with pytest.raises(DisclosureError, match="totals"):
        control(pd.DataFrame({"n": [1]}), count_columns=["n"], table_name="t", totals="all")  # type: ignore[arg-type]


def test_check_rejects_unsafe_tables_and_accepts_controlled_ones():
    raw = pd.DataFrame({"n": [3, 12, 100]})
    with pytest.raises(DisclosureError, match="between 1 and 7"):
        check(raw, count_columns=["n"], table_name="t")
    with pytest.raises(DisclosureError, match="multiples of 5"):
        check(pd.DataFrame({"n": [12]}), count_columns=["n"], table_name="t")
    safe, _ = control(raw, count_columns=["n"], table_name="t")
    check(safe, count_columns=["n"], table_name="t")


# ---------------------------------------------------------------- properties


@st.composite
def tables(draw):
    n_rows = draw(st.integers(1, 5))
    n_cols = draw(st.integers(1, 3))
    cell = st.one_of(st.integers(0, 12), st.integers(0, 200))
    values = draw(
        st.lists(st.lists(cell, min_size=n_cols, max_size=n_cols), min_size=n_rows, max_size=n_rows)
    )
    cols = [f"c{j}" for j in range(n_cols)]
    groups = draw(st.lists(st.integers(0, 1), min_size=n_rows, max_size=n_rows))
    totals = draw(st.sampled_from([None, "rows", "columns", "both"]))
    df = pd.DataFrame(values, columns=cols)
    df.insert(0, "grp", groups)
    redact_zero = draw(st.booleans())
    return df, cols, totals, redact_zero


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tables())
def test_properties_released_counts_are_safe_and_redactions_unrecoverable(case):
    raw, cols, totals, redact_zero = case
    try:
        safe, log = control(
            raw,
            count_columns=cols,
            table_name="prop",
            totals=totals,
            group_by=["grp"],
            redact_zero=redact_zero,
        )
    except DisclosureError as exc:
        # only legitimate refusal: a redacted cell alone in a released total
        assert "only count" in str(exc) or "cannot protect" in str(exc)
        return
    for c in cols:
        released = safe[c].dropna().astype(int).to_numpy()
        assert not ((released >= 1) & (released <= 7)).any()
        assert (released % 5 == 0).all()
        kept = safe[c].notna().to_numpy()
        # rounding moves a count by at most half the base
        assert (np.abs(released - raw[c].to_numpy()[kept]) <= 2.5).all()
        # every small count is redacted
        small = ((raw[c] >= 1) & (raw[c] <= 7)).to_numpy().copy()
        if redact_zero:
            small |= (raw[c] == 0).to_numpy()
        assert safe[c].isna().to_numpy()[small].all()
    # the log never carries the values of redacted cells
    assert list(log.columns) == list(LOG_COLUMNS)
    red = log[log["action"].str.startswith("redacted")]
    assert set(red["reason"]) <= {
        "count between 1 and 7",
        "zero count (redact_zero=True)",
        "secondary suppression: protects a redacted cell sharing its column total",
        "secondary suppression: protects a redacted cell sharing its row total",
        "secondary suppression: a redacted cell was recoverable from the column totals",
        "secondary suppression: a redacted cell was recoverable from the row totals",
    }
    # no redacted cell can be pinned down from exact totals (integer programme)
    if totals is not None:
        redacted = {(i, c) for c in cols for i in np.flatnonzero(safe[c].isna().to_numpy())}
        lines = _lines(len(raw), cols, totals, raw["grp"].tolist())
        for cell in redacted:
            lo, hi = _integer_range(raw, redacted, lines, cell)
            assert hi > lo, f"cell {cell} recoverable: range [{lo}, {hi}]"


def test_deterministic():
    t = pd.DataFrame({"g": [0, 0, 1, 1], "x": [3, 9, 9, 40], "y": [9, 9, 2, 41]})
    runs = [
        control(t, count_columns=["x", "y"], table_name="t", totals="both", group_by=["g"])
        for _ in range(2)
    ]
    pd.testing.assert_frame_equal(runs[0][0], runs[1][0])
    pd.testing.assert_frame_equal(runs[0][1], runs[1][1])


def test_step_leaves_every_candidate_count_a_whole_sum():
    # a mean of whole numbers rounded to the step of its released count: for every count
    # that rounds to the released one some whole sum gives the released mean
    from spevidence.disclosure import step
    from spevidence.disclosure._derived import round_statistics

    for true_n, total in ((76, 1028), (24, 1), (8, 121), (403, 5171), (10, 3)):
        shown = released_count(true_n)
        assert shown is not None
        t = pd.DataFrame({"mean": [total / true_n], "n": [shown]})
        v = round_statistics(t, {"mean": "n"})["mean"].iloc[0]
        p = step(shown)
        for m in range(max(8, shown - 2), shown + 3):
            lo, hi = m * (v - p / 2), m * (v + p / 2)
            assert np.floor(hi) >= np.ceil(lo), (true_n, m, v, p)
    small = round_statistics(pd.DataFrame({"mean": [2.5], "n": [pd.NA]}), {"mean": "n"})
    assert small["mean"].isna().all()


def test_margin_total_row_protects_its_only_redacted_part():
    from spevidence.disclosure import Margin

    t = pd.DataFrame({"src": ["All", "a", "b", "c"], "n": [76, 46, 26, 4]})
    safe, log = control(
        t, count_columns=["n"], table_name="t", margins=[Margin("n", (), ("src", "All"))]
    )
    # c is small; b (the smallest other part) goes too, the total stays
    assert safe["n"].isna().tolist() == [False, False, True, True]
    assert (log["action"] == "redacted_secondary").sum() == 1
    one = pd.DataFrame({"src": ["All", "a"], "n": [5, 5]})
    safe, _ = control(
        one, count_columns=["n"], table_name="t", margins=[Margin("n", (), ("src", "All"))]
    )
    assert safe["n"].isna().all()
    only = pd.DataFrame({"src": ["All", "a"], "n": [40, 3]})  # the part is its total's only part
    safe, _ = control(
        only, count_columns=["n"], table_name="t", margins=[Margin("n", (), ("src", "All"))]
    )
    assert safe["n"].isna().all()
