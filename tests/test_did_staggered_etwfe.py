"""Extended TWFE (``spevidence.did.etwfe``) against pyfixest row-level fits.

The cell-moment fit must equal ``pyfixest.feols`` / ``fepois`` with the
saturated cohort x period interactions, cohort and period fixed effects and
unit-clustered (CRV1) errors; the aggregations must equal a delta-method
computation from pyfixest's own coefficients and covariance.
"""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from spevidence.did._etwfe import etwfe
from spevidence.did._staggered import staggered
from spevidence.errors import EstimationError

MP = {"idname": "countyreal", "tname": "year", "gname": "first.treat"}


@pytest.fixture(scope="module")
def mpdta() -> pd.DataFrame:
    spec = importlib.util.find_spec("moderndid")
    assert spec is not None and spec.submodule_search_locations
    path = Path(spec.submodule_search_locations[0]) / "core" / "datasets" / "mpdta_long.pkl.gz"
    d = pd.read_pickle(path)
    d["emp"] = np.round(np.exp(d["lemp"]))
    rng = np.random.default_rng(0)
    d["days"] = rng.integers(200, 366, size=len(d)).astype(float)
    d["state"] = (d["countyreal"] // 1000).astype(str)
    return d


def _dummies(d: pd.DataFrame, res) -> tuple[pd.DataFrame, list[str]]:
    dd = d.copy()
    names = []
    for g, t in zip(res.groups, res.times, strict=True):
        nm = f"d_{int(g)}_{int(t)}"
        names.append(nm)
        dd[nm] = ((dd["first.treat"] == g) & (dd["year"] == t)).astype(float)
    dd["g"] = dd["first.treat"]
    return dd, names


@pytest.mark.parametrize(
    ("family", "control", "exposure", "cluster"),
    [
        ("linear", "notyet", None, None),
        ("linear", "never", None, "state"),
        ("poisson", "notyet", None, None),
        ("poisson", "never", "days", None),
        ("poisson", "notyet", "days", "state"),
    ],
)
def test_etwfe_equals_pyfixest(mpdta, family, control, exposure, cluster) -> None:
    import pyfixest as pf

    warnings.simplefilter("ignore")
    y = "lemp" if family == "linear" else "emp"
    r = etwfe(
        mpdta, yname=y, **MP, family=family, control=control, exposure=exposure, cluster=cluster
    )
    dd, names = _dummies(mpdta, r)
    fml = f"{y} ~ {' + '.join(names)} | g + year"
    vc = {"CRV1": cluster or "countyreal"}
    if family == "linear":
        m = pf.feols(fml, dd, vcov=vc)
    else:
        if exposure:
            dd["logexp"] = np.log(dd[exposure])
        m = pf.fepois(
            fml,
            dd,
            vcov=vc,
            offset="logexp" if exposure else None,
            iwls_tol=1e-12,
            iwls_maxiter=200,
            fixef_tol=1e-12,
        )
    np.testing.assert_allclose(r.coef, m.coef()[names].to_numpy(), rtol=0, atol=1e-9)
    np.testing.assert_allclose(r.coef_se, m.se()[names].to_numpy(), rtol=1e-8)


def test_poisson_aggregations_match_delta_method_on_pyfixest(mpdta) -> None:
    """Response-scale ATTs averaged over treated rows, SEs by a numerical Jacobian."""
    import pyfixest as pf

    warnings.simplefilter("ignore")
    r = etwfe(mpdta, yname="emp", **MP, family="poisson", exposure="days")
    dd, names = _dummies(mpdta, r)
    dd["logexp"] = np.log(dd["days"])
    fe = []
    for g in [2004, 2006, 2007]:
        dd[f"cg{g}"] = (dd["g"] == g).astype(float)
        fe.append(f"cg{g}")
    for t in [2004, 2005, 2006, 2007]:
        dd[f"yr{t}"] = (dd["year"] == t).astype(float)
        fe.append(f"yr{t}")
    m = pf.fepois(
        f"emp ~ {' + '.join(names + fe)}",
        dd,
        vcov={"CRV1": "countyreal"},
        offset="logexp",
        iwls_tol=1e-12,
        iwls_maxiter=200,
    )
    b = m.coef().to_numpy()
    V = np.asarray(m._vcov)
    cols = list(m.coef().index)
    X = np.column_stack([np.ones(len(dd)) if c == "Intercept" else dd[c].to_numpy() for c in cols])
    off = dd["logexp"].to_numpy()
    dmat = dd[names].to_numpy()
    treated = dmat.sum(axis=1) > 0
    tau_idx = [cols.index(nm) for nm in names]

    def effects(beta: np.ndarray, rows: np.ndarray) -> float:
        eta = X[rows] @ beta + off[rows]
        tau = dmat[rows] @ beta[tau_idx]
        return float(np.mean(np.exp(eta) - np.exp(eta - tau)))

    def delta(rows: np.ndarray) -> tuple[float, float]:
        est = effects(b, rows)
        J = np.zeros(len(b))
        for j in range(len(b)):
            h = 1e-6 * max(1.0, abs(b[j]))
            bp, bm = b.copy(), b.copy()
            bp[j] += h
            bm[j] -= h
            J[j] = (effects(bp, rows) - effects(bm, rows)) / (2 * h)
        return est, float(np.sqrt(J @ V @ J))

    est, se = delta(treated)
    a = r.aggregate("simple")
    assert a.overall_att == pytest.approx(est, rel=1e-8)
    assert a.overall_se == pytest.approx(se, rel=1e-5)
    ev = r.aggregate("event")
    e_row = (dd["year"] - dd["g"]).to_numpy()
    for lv, att, s in zip(ev.levels, ev.att, ev.se, strict=True):
        est, se = delta(treated & (e_row == lv))
        assert att == pytest.approx(est, rel=1e-8)
        assert s == pytest.approx(se, rel=1e-5)
    gr = r.aggregate("group")
    for lv, att in zip(gr.levels, gr.att, strict=True):
        assert att == pytest.approx(effects(b, treated & (dd["g"].to_numpy() == lv)), rel=1e-8)


def test_linear_never_equals_callaway_santanna_universal(mpdta) -> None:
    """Balanced, no covariates: ETWFE with never-treated controls = CS(never, universal)."""
    e = etwfe(mpdta, yname="lemp", **MP, control="never")
    cs = staggered(mpdta, yname="lemp", **MP, base_period="universal")
    keep = cs.times != cs.groups - 1
    np.testing.assert_allclose(e.att, cs.att[keep], atol=1e-12)
    sd = cs.aggregate("simple")
    assert e.aggregate("simple").overall_att == pytest.approx(sd.overall_att, abs=1e-12)


def test_etwfe_results_interface_and_errors(mpdta) -> None:
    import matplotlib

    matplotlib.use("Agg")
    r = etwfe(mpdta, yname="lemp", **MP)
    t = r.tidy()
    assert {
        "term",
        "estimate",
        "std_error",
        "p_value",
        "conf_low",
        "group",
        "time",
        "event",
    } <= set(t.columns)
    assert len(t) == 7  # post cells only: 2004 x 4 periods, 2006 x 2, 2007 x 1
    assert r.glance().loc[0, "n_units"] == 500
    assert r.aggregate("dynamic").levels.tolist() == [0, 1, 2, 3]
    assert r.plot() is not None
    with pytest.raises(EstimationError, match="poisson"):
        etwfe(mpdta, yname="lemp", **MP, exposure="days")
    with pytest.raises(EstimationError, match="xvar"):
        etwfe(mpdta, yname="lemp", **MP, xvar="lpop")


@pytest.mark.parametrize(
    "kw",
    [
        {"yname": "lemp"},
        {"yname": "emp", "family": "poisson", "exposure": "days", "cluster": "state"},
        {"yname": "emp", "family": "poisson", "control": "never"},
    ],
)
def test_duckdb_engine_equals_pandas(mpdta, kw) -> None:
    import ibis

    con = ibis.duckdb.connect()
    tbl = con.create_table("mpdta", mpdta)
    a = etwfe(mpdta, **MP, **kw)
    b = etwfe(tbl, **MP, **kw)
    np.testing.assert_allclose(b.coef, a.coef, rtol=0, atol=1e-10)
    np.testing.assert_allclose(b.vcov, a.vcov, rtol=0, atol=1e-10 * np.abs(a.vcov).max())
    assert b.aggregate("event").overall_se == pytest.approx(
        a.aggregate("event").overall_se, rel=1e-10
    )
