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


def _cohort_year_dummies(dd: pd.DataFrame) -> list[str]:
    """Add log exposure and mpdta's cohort and year dummies (in place); their names."""
    dd["logexp"] = np.log(dd["days"])
    fe = []
    for g in [2004, 2006, 2007]:
        dd[f"cg{g}"] = (dd["g"] == g).astype(float)
        fe.append(f"cg{g}")
    for t in [2004, 2005, 2006, 2007]:
        dd[f"yr{t}"] = (dd["year"] == t).astype(float)
        fe.append(f"yr{t}")
    return fe


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
    fe = _cohort_year_dummies(dd)
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


# ---------------------------------------------------------------- separation (Poisson)


def _rare(mpdta: pd.DataFrame, zero: list[tuple[float, float]], seed: int = 5) -> pd.DataFrame:
    """mpdta with a Poisson count ``y`` (about 0.5 a county-year) and no events at all in
    the given (cohort, year) cells."""
    d = mpdta.copy()
    rng = np.random.default_rng(seed)
    rate = 0.5 * d["days"] / 365 * np.exp(0.3 * (d["lpop"] - d["lpop"].mean()))
    d["y"] = rng.poisson(rate).astype(float)
    for g, t in zero:
        d.loc[(d["first.treat"] == g) & (d["year"] == t), "y"] = 0.0
    return d


# (2004, 2005): a treated cell with no events. Cohort 2006 with no events before 2006:
# with not-yet controls its comparison cells 2003-05 are separated, with never controls
# its reference year 2005 is; either way its effect is -infinity, so the counterfactual
# of its treated cells is 0.
ZERO = [(2004, 2005), (2006, 2003), (2006, 2004), (2006, 2005)]


def _cells_of(d: pd.DataFrame, idx) -> set[tuple[float, float]]:
    sub = d.loc[idx]
    return set(zip(sub["first.treat"].astype(float), sub["year"].astype(float), strict=True))


@pytest.mark.parametrize(
    ("control", "exposure", "cluster"),
    [("notyet", None, None), ("never", "days", None), ("notyet", "days", "state")],
)
def test_poisson_separation_equals_pyfixest(mpdta, control, exposure, cluster) -> None:
    """Cells with no events: the rows left out are those pyfixest's fe + ir separation
    checks drop, and the estimates and SEs equal pyfixest's."""
    import pyfixest as pf

    warnings.simplefilter("ignore")
    d = _rare(mpdta, ZERO)
    cell = d.groupby(["first.treat", "year"])["y"]
    assert (cell.sum() == 0).sum() == len(ZERO)  # no other empty cell by chance
    r = etwfe(
        d, yname="y", **MP, family="poisson", control=control, exposure=exposure, cluster=cluster
    )
    status = dict(zip(zip(r.groups, r.times, strict=True), r.status, strict=True))
    assert status[(2004, 2005)] == "no events"
    assert r.coef[r.status == "no events"].tolist() == [-np.inf]
    assert {k for k, s in status.items() if s == "no comparison events"} == {
        k for k in status if k[0] == 2006
    }
    assert "not identified" not in r.status
    sep = r.separation.set_index("reason")
    assert sep.loc["treated cell with no events", "rows"] == 20  # cohort 2004: 20 counties

    dd, names = _dummies(d, r)
    if exposure:
        dd["logexp"] = np.log(dd[exposure])
    fml = f"y ~ {' + '.join(names)} | g + year"
    m = pf.fepois(
        fml,
        dd,
        separation_check=["fe", "ir"],
        vcov={"CRV1": cluster or "countyreal"},
        offset="logexp" if exposure else None,
        iwls_tol=1e-12,
        iwls_maxiter=200,
        fixef_tol=1e-12,
    )
    # pyfixest drops exactly the cells whose MLE does not exist, and fits the same model
    assert _cells_of(dd, dd.index.difference(m._data.index)) == set(ZERO)
    assert r.n_obs == m._N
    est = [nm for nm, s in zip(names, r.status, strict=True) if s == "estimated"]
    np.testing.assert_allclose(r.coef[r.status == "estimated"], m.coef()[est], rtol=1e-8)
    np.testing.assert_allclose(r.coef_se[r.status == "estimated"], m.se()[est], rtol=1e-6)
    # cohort 2006: counterfactual 0, so the effect is the observed mean
    mean = cell.mean()
    for (g, t), a in zip(zip(r.groups, r.times, strict=True), r.att, strict=True):
        if g == 2006:
            assert a == pytest.approx(mean[(g, t)], rel=1e-9)


def test_poisson_aggregations_with_cells_left_out(mpdta) -> None:
    """Aggregations from pyfixest's coefficients and covariance (numerical delta method):
    cells with no events enter with effect 0 minus the counterfactual mean, cells whose
    cohort has no comparison events with the observed mean (counterfactual 0)."""
    import pyfixest as pf

    warnings.simplefilter("ignore")
    d = _rare(mpdta, ZERO)
    r = etwfe(d, yname="y", **MP, family="poisson", exposure="days")
    dd, names = _dummies(d, r)
    fe = _cohort_year_dummies(dd)
    st = dict(zip(names, r.status, strict=True))
    no_events = [nm for nm in names if st[nm] == "no events"]
    own = [nm for nm in names if nm not in no_events]  # cohort 2006's are collinear with cg2006
    empty = np.zeros(len(dd), bool)
    for g, t in ZERO:
        empty |= ((dd["g"] == g) & (dd["year"] == t)).to_numpy()
    m = pf.fepois(
        f"y ~ {' + '.join(own + fe)}",
        dd.loc[~empty],
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
    est = [nm for nm in names if st[nm] == "estimated"]
    tau = dd[est].to_numpy()
    tau_idx = [cols.index(nm) for nm in est]
    zero_rows = (dd[no_events].sum(axis=1) > 0).to_numpy()
    cf_zero = (dd["g"] == 2006).to_numpy()
    treated = (dd[names].sum(axis=1) > 0).to_numpy()

    def effects(beta: np.ndarray, rows: np.ndarray) -> float:
        eta = X[rows] @ beta + off[rows]
        fitted = np.where(zero_rows[rows], 0.0, np.exp(eta))
        cf = np.where(cf_zero[rows], 0.0, np.exp(eta - tau[rows] @ beta[tau_idx]))
        return float(np.mean(fitted - cf))

    def delta(rows: np.ndarray) -> tuple[float, float]:
        J = np.zeros(len(b))
        for j in range(len(b)):
            h = 1e-6 * max(1.0, abs(b[j]))
            bp, bm = b.copy(), b.copy()
            bp[j] += h
            bm[j] -= h
            J[j] = (effects(bp, rows) - effects(bm, rows)) / (2 * h)
        return effects(b, rows), float(np.sqrt(J @ V @ J))

    post = treated & (dd["year"] >= dd["g"]).to_numpy()
    a = r.aggregate("simple")
    est_, se_ = delta(post)
    assert a.overall_att == pytest.approx(est_, rel=1e-8)
    assert a.overall_se == pytest.approx(se_, rel=1e-5)
    assert a.settings["cells_no_events"] == 1
    assert a.settings["cells_no_comparison_events"] == 2
    for kind, key in (
        ("event", dd["year"] - dd["g"]),
        ("group", dd["g"]),
        ("calendar", dd["year"]),
    ):
        agg = r.aggregate(kind)  # type: ignore[arg-type]
        base = treated if kind == "event" else post
        assert agg.levels.tolist() == sorted(set(key[base]))
        for lv, att, s in zip(agg.levels, agg.att, agg.se, strict=True):
            e, se = delta(base & (key == lv).to_numpy())
            assert att == pytest.approx(e, rel=1e-8)
            assert s == pytest.approx(se, rel=1e-5)


def test_poisson_with_no_estimable_effect_is_a_clear_error(mpdta) -> None:
    post = [(g, t) for g in (2004, 2006, 2007) for t in range(2003, 2008) if t >= g]
    d = _rare(mpdta, post)
    with pytest.raises(EstimationError, match=r"no effect of treatment on 'y'.*7 have no events"):
        etwfe(d, yname="y", **MP, family="poisson")
    # without comparison events before 2007 in any cohort, nothing has a counterfactual
    d = _rare(mpdta, [(g, t) for g in (0, 2004, 2006, 2007) for t in range(2003, 2007)])
    with pytest.raises(EstimationError, match="7 have no comparison cells with events"):
        etwfe(d, yname="y", **MP, family="poisson")


def test_poisson_cohort_without_a_counterfactual_is_left_out() -> None:
    """No comparison events in periods 1-2 except cohort 3's: those cells form a group of
    their own, cohort 3's level against everyone else is not identified (pyfixest fits
    it under an arbitrary normalisation) and its effects are left out; cohort 5's equal
    pyfixest's."""
    import pyfixest as pf

    warnings.simplefilter("ignore")
    rng = np.random.default_rng(0)
    G = np.repeat([0, 3, 5], [30, 10, 10])
    T = 6
    d = pd.DataFrame(
        {
            "id": np.repeat(np.arange(len(G)), T),
            "t": np.tile(np.arange(1, T + 1), len(G)),
            "g": np.repeat(G, T),
        }
    )
    d["y"] = rng.poisson(1.0, len(d)).astype(float)
    d.loc[(d["g"] != 3) & (d["t"] <= 2), "y"] = 0.0
    r = etwfe(d, yname="y", idname="id", tname="t", gname="g", family="poisson")
    assert r.status.tolist() == ["not identified"] * 4 + ["estimated"] * 2
    assert np.isnan(r.att[:4]).all() and np.isfinite(r.att[4:]).all()
    reasons = dict(zip(r.separation["reason"], r.separation["cells"], strict=True))
    assert reasons == {
        "treated cell without a counterfactual": 4,
        "comparison cell with no events that separates the fit": 4,
        "comparison cell not linked to the main comparison group": 2,
    }
    assert r.aggregate("group").levels.tolist() == [5.0]
    assert r.aggregate("simple").settings["cells_not_identified"] == 4
    dd = d.copy()
    names = []
    for g, t in zip(r.groups, r.times, strict=True):
        names.append(f"d{int(g)}_{int(t)}")
        dd[names[-1]] = ((dd["g"] == g) & (dd["t"] == t)).astype(float)
    m = pf.fepois(
        f"y ~ {' + '.join(names)} | g + t",
        dd,
        separation_check=["fe", "ir"],
        iwls_tol=1e-12,
        fixef_tol=1e-12,
        vcov={"CRV1": "id"},
    )
    gone = dd.loc[dd.index.difference(m._data.index)]
    assert set(zip(gone["g"], gone["t"], strict=True)) == {(0, 1), (0, 2), (5, 1), (5, 2)}
    np.testing.assert_allclose(r.coef[4:], m.coef()[names[4:]], rtol=1e-8)


def test_poisson_newton_halves_steps_from_a_poor_start(mpdta) -> None:
    """From log rates of -30 a full Newton step overflows (exp of about e^30); halved
    steps reach the same maximum as the default start."""
    from spevidence.did._etwfe import _design, _poisson_newton, _prepare, _start

    d = _rare(mpdta, [])
    mom, _, _ = _prepare(d, yname="y", **MP, exposure="days", cluster=None)
    X, _, _ = _design(mom, "notyet")
    Y, E = mom.ysum.reshape(-1), mom.esum.reshape(-1)
    good = _poisson_newton(X, Y, E, _start(X, Y, E))
    bad = np.full(X.shape[1], -30.0)
    with np.errstate(over="ignore", invalid="ignore"):
        mu = E * np.exp(X @ bad)
        full_step = bad + np.linalg.solve(X.T @ (mu[:, None] * X), X.T @ (Y - mu))
        assert not np.isfinite(Y @ (X @ full_step) - E @ np.exp(X @ full_step))
    np.testing.assert_allclose(_poisson_newton(X, Y, E, bad), good, rtol=0, atol=1e-10)


@pytest.mark.parametrize("seed", range(4))
def test_separation_matches_pyfixest_on_sparse_random_panels(seed) -> None:
    """Tiny cohorts and a rare outcome give many empty cells in irregular patterns; the
    cells judged separated are exactly the cells pyfixest's iterative rectifier drops."""
    import pyfixest as pf

    from spevidence.did._etwfe import _design, _prepare, _support

    warnings.simplefilter("ignore")
    rng = np.random.default_rng(seed)
    sizes = [2, 3, 2, 4, 3, 12]  # cohorts 2..6, then never treated
    G = np.repeat([2, 3, 4, 5, 6, 0], sizes)
    T = 7
    d = pd.DataFrame(
        {
            "id": np.repeat(np.arange(len(G)), T),
            "t": np.tile(np.arange(1, T + 1), len(G)),
            "g": np.repeat(G, T),
        }
    )
    d["y"] = rng.poisson(0.25 * rng.gamma(1.0, 1.0, len(G))[d["id"]]).astype(float)
    for control in ("notyet", "never"):
        mom, _, _ = _prepare(
            d, yname="y", idname="id", tname="t", gname="g", exposure=None, cluster=None
        )
        _, cells, _ = _design(mom, control)
        sup = _support(mom, cells, "poisson")
        ours = {
            (mom.cohorts[c], mom.times[t]) for c, t in zip(*np.nonzero(sup.separated), strict=True)
        }
        dd = d.copy()
        dd["gg"] = np.where(dd["g"] == 0, np.inf, dd["g"])
        names = []
        for c, ti in cells:
            nm = f"d{c}_{ti}"
            names.append(nm)
            dd[nm] = ((dd["gg"] == mom.cohorts[c]) & (dd["t"] == mom.times[ti])).astype(float)
        m = pf.fepois(f"y ~ {' + '.join(names)} | g + t", dd, separation_check=["fe", "ir"])
        gone = dd.loc[dd.index.difference(m._data.index)]
        theirs = set(zip(gone["gg"].astype(float), gone["t"].astype(float), strict=True))
        assert ours == theirs, (seed, control)
        assert sup.separated.sum() > 3  # the check has something to find


def test_rare_outcomes_on_a_small_synthetic_icb(tmp_path) -> None:
    """The case that used to fail ("did not converge"): A&E and admissions per quarter
    for 2,000 people. Both engines leave out the same cells and give the same fit, and
    the pipeline reports the cells left out instead of dropping the estimator."""
    from spevidence.data import read_extracts, validate
    from spevidence.link import build_panel
    from spevidence.pipeline import staggered as ps
    from spevidence.protocol import load_protocol
    from spevidence.synthetic import generate

    warnings.simplefilter("ignore")
    generate("staggered-national-random-timing", persons=2000, seed=1, out=tmp_path)
    proto = load_protocol(Path(__file__).resolve().parents[1] / "protocols/national-staggered.yaml")
    clean, _, _ = validate(
        read_extracts(tmp_path), start=proto.start, end=proto.end, ids="pseudonym"
    )
    panel = build_panel(clean, start=proto.start, end=proto.end, period="quarter")
    table = ps.cohort_panel(panel.table, proto.staggered_spec).cache()
    kw = {
        "idname": "person_id",
        "tname": "tt",
        "gname": "cohort",
        "family": "poisson",
        "exposure": "exposure_days",
    }
    a = etwfe(table, yname="admissions", **kw)
    b = etwfe(table.to_pandas(), yname="admissions", **kw)
    pd.testing.assert_frame_equal(a.separation, b.separation)
    assert (a.status == b.status).all()
    assert a.glance().loc[0, "n_cells_no_events"] > 50  # rare: many empty treated cells
    ok = a.status == "estimated"
    np.testing.assert_allclose(a.coef[ok], b.coef[ok], rtol=1e-9)
    np.testing.assert_allclose(
        a.se[a.status != "not identified"], b.se[b.status != "not identified"], rtol=1e-8
    )
    simple = a.aggregate("simple")
    assert np.isfinite(simple.overall_att) and simple.overall_se > 0
    spec = proto.staggered_spec.model_copy(update={"estimators": ("etwfe",)})
    proto = proto.model_copy(update={"outcomes": ("ae", "admissions"), "staggered": spec})
    raw, notes, _, _ = ps.estimate(table, proto)
    assert notes == []
    fit_notes = raw["staggered_fit_notes"]
    assert fit_notes["outcome"].tolist() == ["ae", "admissions"]
    assert fit_notes["note"].str.contains("with no events count as their observed 0").all()
    assert (raw["staggered"]["estimator"] == "Extended TWFE").sum() > 2


@pytest.mark.parametrize("lam", [0.05, 0.2])
def test_cells_with_no_events_keep_the_average_unbiased(lam) -> None:
    """Simulated rare outcome (0.05 or 0.2 events a period, rate ratio 0.7, cohorts of
    about ten people): averaging the empty treated cells in at 0 minus the
    counterfactual, and the cells of cohorts with no events before treatment at a
    counterfactual of 0, recovers the true effect; leaving them out (the rows a
    row-level fit drops) would select cells on the outcome and bias the average up."""
    warnings.simplefilter("ignore")
    rr, T, reps = 0.7, 10, 300
    truth = lam * (rr - 1)
    ours, left_out, cover = [], [], 0
    for s in range(reps):
        rng = np.random.default_rng(s)
        G = np.concatenate([np.repeat(np.arange(3, 9), rng.poisson(8, 6) + 2), np.zeros(200)])
        t = np.tile(np.arange(1, T + 1), len(G))
        g = np.repeat(G, T)
        frailty = np.repeat(rng.gamma(2.0, 0.5, len(G)), T)
        y = rng.poisson(lam * frailty * np.where((g > 0) & (t >= g), rr, 1.0))
        d = pd.DataFrame({"id": np.repeat(np.arange(len(G)), T), "t": t, "g": g, "y": y})
        r = etwfe(d, yname="y", idname="id", tname="t", gname="g", family="poisson")
        a = r.aggregate("simple")
        ours.append(a.overall_att)
        cover += abs(a.overall_att - truth) <= 1.959964 * a.overall_se
        w, eff, _ = r._cells
        m = (r.times >= r.groups) & (r.status == "estimated")
        left_out.append(w[m] @ eff[m] / w[m].sum())
    assert abs(np.mean(ours) - truth) < 3 * np.std(ours) / np.sqrt(reps)
    assert np.mean(left_out) - truth > 5 * np.std(left_out) / np.sqrt(reps)
    if lam == 0.2:  # at 0.05 the empty cells' zero variance shows: coverage about 0.9
        assert 0.92 <= cover / reps <= 0.98
