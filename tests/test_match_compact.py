"""The compact matching panel (issue 21): categorical person and practice columns give the
same matching and estimates as the panel of strings.

``pipeline.matching_panel`` builds the panel with its string columns (person_id,
practice_code, pcn_code, sex) as categoricals and sums the GP trajectory on integer person
codes. ``matching_panel(..., categorical=False)`` still builds the earlier panel of strings:
both are matched here on a synthetic ICB and must give the same pairs, matched data and
2x2 estimates to the last digit.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from spevidence.data import read_extracts, validate
from spevidence.describe import lagged_sums
from spevidence.match.risk_set import sorted_codes
from spevidence.pipeline import did_window, matched_cohort, matched_two_by_two, matching_panel
from spevidence.protocol import load_protocol
from spevidence.synthetic import generate

ROOT = Path(__file__).resolve().parents[1]
STRINGS = ("person_id", "practice_code", "pcn_code", "sex")


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    data = tmp_path_factory.mktemp("compact") / "data"
    generate("kent-ae", persons=6000, seed=5, out=data, progress=False)
    proto = load_protocol(ROOT / "protocols" / "kent-ae.yaml")
    clean, _, _ = validate(read_extracts(data), start=proto.start, end=proto.end)
    new, _ = matching_panel(clean, proto)
    old, _ = matching_panel(clean, proto, categorical=False)
    return proto, new, old


def _matched(panel: pd.DataFrame, proto):  # type: ignore[no-untyped-def]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return matched_cohort(panel, proto)


def test_the_panel_is_categorical_and_decodes_to_the_panel_of_strings(both) -> None:  # type: ignore[no-untyped-def]
    _, new, old = both
    for c in STRINGS:
        assert isinstance(new[c].dtype, pd.CategoricalDtype), c
        assert list(new[c].cat.categories) == sorted(new[c].cat.categories), c
    decoded = new.assign(**{c: new[c].astype(new[c].cat.categories.dtype) for c in STRINGS})
    pd.testing.assert_frame_equal(decoded, old, check_exact=True)


def test_same_pairs_matched_data_and_estimates(both) -> None:  # type: ignore[no-untyped-def]
    proto, new, old = both
    res_new, md_new = _matched(new, proto)
    res_old, md_old = _matched(old, proto)
    assert len(res_old.pairs) > 20  # a real matching, not an empty one
    for name in ("pairs", "units", "attrition", "ipcw"):
        pd.testing.assert_frame_equal(getattr(res_new, name), getattr(res_old, name))
    assert res_new.diagnostics == res_old.diagnostics
    pd.testing.assert_frame_equal(md_new, md_old, check_exact=True)
    pd.testing.assert_frame_equal(
        res_new.balance(warn=False).table(), res_old.balance(warn=False).table(), check_exact=True
    )
    for o in proto.outcomes:
        for model in proto.did.models:
            a = matched_two_by_two(did_window(md_new, proto), proto, o, model).tidy()
            b = matched_two_by_two(did_window(md_old, proto), proto, o, model).tidy()
            pd.testing.assert_frame_equal(a, b, check_exact=True)


def test_lagged_sums_on_person_codes() -> None:
    # person b has no row at t=1 (not registered): it counts as zero
    panel = pd.DataFrame(
        {"person_id": ["b", "a", "a", "b", "a"], "t": [0, 0, 1, 2, 2], "gp": [4, 1, 2, 8, 5]}
    )
    want = [0.0, 0.0, 1.0, 4.0, 3.0]  # sums over t-2 .. t-1
    for ids in (panel["person_id"], panel["person_id"].astype("category")):
        got = lagged_sums(panel.assign(person_id=ids), "gp", {"prev2": (1, 2)})
        assert got["prev2"].tolist() == want
        assert "prev2" not in panel.columns  # the input is not changed


def test_sorted_codes_follow_string_order_whatever_the_category_order() -> None:
    col = pd.Series(pd.Categorical(["y", "x", None, "y"], categories=["z", "y", "x"]))
    codes, levels = sorted_codes(col)
    assert list(levels) == ["x", "y"]  # unused "z" dropped, sorted
    assert codes.tolist() == [1, 0, -1, 1]
    codes_s, levels_s = sorted_codes(col.astype(object))
    assert np.array_equal(codes, codes_s) and list(levels) == list(levels_s)
