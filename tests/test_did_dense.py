"""Dense unit x period input path of twfe / two_by_two: layouts, attrition, peers."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyfixest as pf
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from test_did_twfe import TIGHT, synth_panel

from spevidence.did import twfe, two_by_two
from spevidence.did._dense import _balanced_sorted, dense_from_frame
from spevidence.errors import DataError, EstimationError


def _staggered(n: int, months: int, seed: int) -> pd.DataFrame:
    """The benchmark's panel (benchmarks/bench_did.py): integer ids, sorted, balanced."""
    rng = np.random.default_rng(seed)
    pid = np.repeat(np.arange(n, dtype=np.int64), months)
    t = np.tile(np.arange(months, dtype=np.int64), n)
    g = rng.choice([-1, months // 4, months // 2, 3 * months // 4], n)[pid]
    d = ((g >= 0) & (t >= g)).astype(np.int8)
    frail = rng.gamma(2.0, 0.5, n)[pid]
    y = rng.poisson(frail * np.exp(0.01 * t - 0.2 * d))
    days = np.where(rng.random(n * months) < 0.05, 15.0, 30.0)
    return pd.DataFrame({"pid": pid, "t": t, "y": y, "D": d, "days": days,
                         "practice": pid // 25})  # fmt: skip


def _relabel_shuffle(df: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Same panel, rows shuffled and ids as strings (forces the scatter layout)."""
    out = df.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    out["pid"] = "u" + out["pid"].astype(str)
    return out


def test_layout_detection() -> None:
    df = _staggered(50, 6, 1)
    assert _balanced_sorted(df["pid"].to_numpy(), df["t"].to_numpy()) == (50, 6)
    shuffled = df.sample(frac=1.0, random_state=1)
    assert _balanced_sorted(shuffled["pid"].to_numpy(), shuffled["t"].to_numpy()) is None
    # a unit split over two blocks is not the balanced layout (and is a duplicate)
    pid = np.array([1, 1, 2, 2, 1, 1])
    t = np.array([0, 1, 0, 1, 0, 1])
    assert _balanced_sorted(pid, t) is None
    bad = pd.DataFrame({"pid": pid, "t": t, "y": np.arange(6), "D": [0, 1, 0, 0, 0, 1]})
    with pytest.raises(DataError, match="repeat"):
        twfe(bad, yname="y", idname="pid", tname="t", dname="D")
    # periods in a different order within one unit: not the zero-copy layout
    t2 = np.array([0, 1, 1, 0, 0, 1])
    assert _balanced_sorted(np.array([1, 1, 2, 2, 3, 3]), t2) is None


@pytest.mark.parametrize("model", ["linear", "poisson"])
@pytest.mark.parametrize("opts", [{}, {"exposure": "days"}, {"cluster": "practice"}])
def test_layouts_and_paths_agree(model: str, opts: dict[str, Any]) -> None:
    df = _staggered(600, 12, 2)
    kw = dict(yname="y", idname="pid", tname="t", dname="D", model=model, **opts)
    fast = twfe(df, **kw)  # zero-copy reshape
    scat = twfe(_relabel_shuffle(df, 3), **kw)  # factorised ids, scattered cells
    rows = twfe(df, path="rows", **kw)
    assert fast.path == "moments" and rows.path == "rows"
    for other in (scat, rows):
        np.testing.assert_allclose(fast.estimate, other.estimate, rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(fast.vcov, other.vcov, rtol=1e-10, atol=1e-16)
        assert (fast.n_obs, fast.n_units, fast.n_clusters) == (
            other.n_obs, other.n_units, other.n_clusters,
        )  # fmt: skip


@pytest.mark.parametrize("model", ["linear", "poisson"])
def test_balanced_integer_panel_vs_pyfixest(model: str) -> None:
    df = _staggered(800, 12, 4)
    r = twfe(df, yname="y", idname="pid", tname="t", dname="D", model=model)  # type: ignore[arg-type]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if model == "linear":
            f = pf.feols("y ~ D | pid + t", data=df, vcov={"CRV1": "pid"})
        else:
            f = pf.fepois("y ~ D | pid + t", data=df, vcov={"CRV1": "pid"}, **TIGHT)
    b, se = float(f.coef()["D"]), float(f.se()["D"])
    assert abs(r.coef() - b) <= 1e-8 * abs(b)
    assert abs(r.se() - se) <= 1e-6 * se
    assert r.n_obs == int(f._N)


def test_two_by_two_dense_equals_rows_unbalanced_string_ids() -> None:
    df = synth_panel(11, n=300, periods=8, unbalanced=True)
    df["exposure_days"] = 30 + df["t"] % 2
    for model in ("linear", "poisson"):
        kw = dict(yname="gp", idname="person_id", tname="t", treat="treated", post="post",
                  model=model, exposure="exposure_days", weights="weights")  # fmt: skip
        a = two_by_two(df, path="moments", **kw)  # type: ignore[arg-type]
        b = two_by_two(df, path="rows", **kw)  # type: ignore[arg-type]
        np.testing.assert_allclose(a.estimate, b.estimate, rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(a.vcov, b.vcov, rtol=1e-10, atol=1e-16)
        pd.testing.assert_frame_equal(a.attrition, b.attrition)


def test_attrition_counts_hand_made() -> None:
    # 4 units x 3 periods; unit 3 has y missing in two periods -> its last row is a
    # singleton; one zero weight; hand count: missing_y 2, zero_weight 1, singleton 1
    pid = np.repeat([10, 11, 12, 13], 3)
    t = np.tile([1, 2, 3], 4)
    y = np.array([1, 2, 3, 2, 2, 4, 5, 1, 1, np.nan, np.nan, 3], dtype=float)
    w = np.array([1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1], dtype=float)
    D = np.array([0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0])
    df = pd.DataFrame({"pid": pid, "t": t, "y": y, "w": w, "D": D})
    att: list[tuple[str, int]] = []
    dp = dense_from_frame(
        df, yname="y", idname="pid", tname="t", values=["D"], model="linear",
        exposure=None, weights="w", cluster="pid", attrition=att,
    )  # fmt: skip
    assert att == [("missing_y", 2), ("zero_weight", 1), ("singleton_unit_or_period", 1)]
    assert dp is not None and (dp.n_units, dp.n_periods, dp.n_rows) == (3, 3, 8)
    assert dp.mask is not None and int(dp.mask.sum()) == 8


def test_dense_errors() -> None:
    df = _staggered(40, 6, 5)
    with pytest.raises(EstimationError, match="one cluster"):
        twfe(df.assign(r=1), yname="y", idname="pid", tname="t", dname="D", cluster="r")
    with pytest.raises(DataError, match="must be 0/1"):
        twfe(df.assign(D=df["D"] * 2), yname="y", idname="pid", tname="t", dname="D")
    with pytest.raises(EstimationError, match="0 in all 240 rows"):
        twfe(df.assign(D=0), yname="y", idname="pid", tname="t", dname="D")
    z = df.assign(y=np.where(df.groupby("pid")["D"].transform("max") == 1, 0, df["y"]))
    with pytest.raises(EstimationError, match=r"zero in all .* treated"):
        twfe(z, yname="y", idname="pid", tname="t", dname="D", model="poisson")
    with pytest.raises(DataError, match="All 3 rows are singletons"):
        twfe(df.iloc[[0, 7, 14]], yname="y", idname="pid", tname="t", dname="D")
    with pytest.raises(DataError, match="exposure <= 0"):
        twfe(df.assign(days=0.0), yname="y", idname="pid", tname="t", dname="D",
             model="poisson", exposure="days")  # fmt: skip
