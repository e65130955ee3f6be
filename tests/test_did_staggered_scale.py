"""The national-scale engine path of staggered(): the streamed unit pivot (DuckDB).

The streamed path (one scan, cohort cross-products formed batch by batch in numpy) must
give the same cohort moments as the in-engine aggregate path (used for Spark) and the
same estimates as the pandas row path, whatever the batch size.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from spevidence.did import staggered
from spevidence.did._ibis_moments import (
    PivotSpec,
    cs_moments,
    cs_moments_stream,
    pivot_units,
    streams_units,
)
from spevidence.errors import DataError


def _panel(n: int = 400, T: int = 7, seed: int = 5) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g = np.where(rng.random(n) < 0.35, 0, rng.choice([3, 4, 6, 9], size=n))  # 9 > T: never
    a = rng.normal(size=n)
    t = np.arange(1, T + 1)
    eff = np.where((g[:, None] > 0) & (t[None, :] >= g[:, None]), 0.3, 0.0)
    y = a[:, None] + 0.1 * t[None, :] + eff + rng.normal(size=(n, T))
    df = pd.DataFrame(
        {
            "id": np.repeat(np.arange(n), T),
            "t": np.tile(t, n),
            "g": np.repeat(g, T),
            "y": y.ravel(),
            "w": np.repeat(rng.uniform(0.5, 2.0, n), T),
            "practice": np.repeat([f"P{k:02d}" for k in rng.integers(0, 23, n)], T),
        }
    )
    df.loc[df["id"] == 3, "g"] = 1  # treated in the first period: dropped
    return df[~((df["id"] == 11) & (df["t"] == 4))].reset_index(drop=True)  # one gap


KW = [
    {"weights": None, "cluster": None, "control": "never", "allow_unbalanced": False},
    {"weights": "w", "cluster": "practice", "control": "notyet", "allow_unbalanced": False},
    {"weights": "w", "cluster": "practice", "control": "never", "allow_unbalanced": True},
]


@pytest.mark.parametrize("kw", KW)
@pytest.mark.parametrize("batch_rows", [37, 1 << 20])
def test_streamed_moments_equal_engine_aggregates(kw, batch_rows) -> None:
    import ibis

    con = ibis.duckdb.connect()
    tbl = con.create_table("panel", _panel())
    assert streams_units(tbl)
    common = {"yname": "y", "idname": "id", "tname": "t", "gname": "g", "anticipation": 0}
    spec = PivotSpec(**common, **kw, exposure=None)
    ms, times, attr = cs_moments_stream(tbl, spec, batch_rows=batch_rows)
    ep = pivot_units(tbl, spec)
    ma = cs_moments(ep, weighted=kw["weights"] is not None, clustered=kw["cluster"] is not None)
    np.testing.assert_array_equal(times, ep.times)
    pd.testing.assert_frame_equal(attr, ep.attrition)
    np.testing.assert_array_equal(ms.cohorts, ma.cohorts)
    np.testing.assert_array_equal(ms.count, ma.count)
    assert ms.n == ma.n
    np.testing.assert_allclose(ms.M, ma.M, rtol=1e-12, atol=1e-9)
    if kw["cluster"]:
        assert ms.U is not None and ma.U is not None
        np.testing.assert_allclose(ms.U, ma.U, rtol=1e-12, atol=1e-9)
    if kw["allow_unbalanced"]:
        assert ms.nobs is not None and ma.nobs is not None
        np.testing.assert_array_equal(ms.nobs, ma.nobs)
    else:
        assert ms.nobs is None and ma.nobs is None


@pytest.mark.parametrize("kw", KW)
def test_streamed_estimates_equal_row_path(kw) -> None:
    import ibis

    df = _panel(seed=9)
    tbl = ibis.duckdb.connect().create_table("panel", df)
    kw = {k: v for k, v in kw.items() if v is not None}
    a = staggered(df, yname="y", idname="id", tname="t", gname="g", **kw)
    b = staggered(tbl, yname="y", idname="id", tname="t", gname="g", **kw)
    assert b.path == "moments" and b.n_units == a.n_units
    np.testing.assert_allclose(b.att, a.att, rtol=0, atol=1e-10)
    np.testing.assert_allclose(b.se, a.se, rtol=0, atol=1e-10)
    pd.testing.assert_frame_equal(a.attrition, b.attrition)
    for kind in ("simple", "dynamic"):
        x, y = a.aggregate(kind), b.aggregate(kind)
        assert y.overall_att == pytest.approx(x.overall_att, abs=1e-10)
        assert y.overall_se == pytest.approx(x.overall_se, abs=1e-10)
    if not kw.get("allow_unbalanced"):
        # the balanced-panel rows path (no moments at all) agrees too
        c = staggered(df, yname="y", idname="id", tname="t", gname="g", path="rows", **kw)
        np.testing.assert_allclose(b.att, c.att, rtol=0, atol=1e-10)
        np.testing.assert_allclose(b.se, c.se, rtol=0, atol=1e-10)


def test_streamed_path_checks_units_on_the_same_pass() -> None:
    import ibis

    df = _panel(n=60)
    df.loc[(df["id"] == 5) & (df["t"] == 2), "g"] = 4  # cohort varies within a unit
    tbl = ibis.duckdb.connect().create_table("panel", df)
    with pytest.raises(DataError, match="varies within 1 units"):
        staggered(tbl, yname="y", idname="id", tname="t", gname="g")
    dup = pd.concat([_panel(n=60), _panel(n=60).iloc[[0]]])
    tbl = ibis.duckdb.connect().create_table("panel", dup)
    with pytest.raises(DataError, match="more than one row"):
        staggered(tbl, yname="y", idname="id", tname="t", gname="g")


@pytest.mark.parametrize("n", [0, 5, 256, 1000])
def test_blocked_crossprod_is_xtx(n) -> None:
    from spevidence.did._staggered_core import _crossprod

    X = np.random.default_rng(n).normal(size=(n, 6))
    np.testing.assert_allclose(_crossprod(X, block=256), X.T @ X, rtol=1e-13, atol=1e-12)


@pytest.mark.parametrize("method", ["dr", "ipw", "reg"])
@pytest.mark.parametrize("kw", [{}, {"weights": "w", "cluster": "practice", "control": "notyet"}])
def test_row_path_covariance_by_unit_blocks_equals_one_block(method, kw) -> None:
    """The row path adds the influence-function cross-products block by block of units."""
    from spevidence.did._staggered import _prepare
    from spevidence.did._staggered_core import estimate_rows, plan_cells

    df = _panel(n=1100, seed=3)
    df["x"] = np.random.default_rng(1).normal(size=1100)[df["id"].to_numpy()]
    pan = _prepare(
        df,
        yname="y",
        idname="id",
        tname="t",
        gname="g",
        covs=["x"],
        weights=kw.get("weights"),
        cluster=kw.get("cluster"),
        anticipation=0,
        control=kw.get("control", "never"),
    )
    cohorts = np.unique(pan.G[np.isfinite(pan.G)])
    plans = plan_cells(
        pan.times,
        cohorts,
        control=kw.get("control", "never"),
        base_period="varying",
        anticipation=0,
    )
    args = (pan.Y, pan.G, pan.w, pan.Xt, cohorts, plans, method, pan.cluster)
    one = estimate_rows(*args)
    blocks = estimate_rows(*args, chunk_bytes=1)  # 256-unit blocks: 5 of them
    np.testing.assert_array_equal(blocks.att, one.att)
    np.testing.assert_allclose(blocks.sigma, one.sigma, rtol=1e-12, atol=1e-15)
    assert np.all(np.diag(one.sigma)[: len(one.att)] >= 0)
