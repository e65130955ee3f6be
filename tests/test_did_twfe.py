"""Two-way DiD (2×2, TWFE, event study) against pyfixest and statsmodels; moments = rows."""

from __future__ import annotations

import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pyfixest as pf
import pytest

from spevidence.did import event_study, twfe, two_by_two
from spevidence.errors import DataError, EstimationError

# fepois in pyfixest stops at iwls_tol=1e-8 by default; tighten it (DESIGN.md section 6).
TIGHT = {"iwls_tol": 1e-13, "iwls_maxiter": 200, "fixef_tol": 1e-13}


def _rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-300)


@pytest.fixture(scope="module")
def mpdta() -> pd.DataFrame:
    import importlib.util

    spec = importlib.util.find_spec("moderndid")  # locate the data without importing it
    if spec is None or spec.origin is None:
        pytest.skip("moderndid (test-only peer carrying mpdta) not installed")
    path = Path(spec.origin).parent / "core" / "datasets" / "mpdta_long.pkl.gz"
    d = pd.read_pickle(path)
    d["D"] = ((d["first.treat"] > 0) & (d["year"] >= d["first.treat"])).astype(int)
    d["emp"] = np.round(np.exp(d["lemp"]))
    d["treated"] = (d["first.treat"] > 0).astype(int)
    d["post"] = (d["year"] >= 2006).astype(int)
    return d


def _fepois(fml: str, data: pd.DataFrame, **kw: object) -> object:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pf.fepois(fml, data=data, **TIGHT, **kw)


def synth_panel(
    seed: int, n: int = 300, periods: int = 10, *, unbalanced: bool = False
) -> pd.DataFrame:
    """Matched-style person × month panel: cases and comparators sharing an index period."""
    rng = np.random.default_rng(seed)
    pid = np.repeat(np.arange(n), periods)
    t = np.tile(np.arange(periods), n)
    pair = pid // 2
    treated = (pid % 2 == 0).astype(int)
    index_t = rng.integers(3, periods - 2, n // 2 + 1)[pair]
    post = (t >= index_t).astype(int)
    frail = rng.gamma(2.0, 0.5, n)[pid]
    exposure = rng.choice([30, 31, 28], n * periods) * np.where(
        rng.random(n * periods) < 0.1, 0.5, 1
    )
    mu = frail * exposure / 30 * np.exp(0.2 * treated - 0.25 * treated * post + 0.03 * t)
    y = rng.poisson(mu)
    w = np.where(treated == 1, 1.0, rng.choice([0.5, 1.0], n)[pid])
    practice = (pid // 20).astype(int)
    df = pd.DataFrame(
        {
            "person_id": [f"p{i:05d}" for i in pid],
            "t": t,
            "gp": y,
            "treated": treated,
            "post": post,
            "index_t": index_t,
            "exposure_days": exposure,
            "weights": w,
            "practice": practice,
            "age": rng.normal(60, 10, n)[pid] + t / 12 + rng.normal(0, 1, n * periods),
        }
    )
    if unbalanced:
        df = df.loc[rng.random(len(df)) > 0.15].reset_index(drop=True)
    return df


# ----------------------------------------------------------------------------- mpdta


@pytest.mark.parametrize("path", ["rows", "moments"])
def test_twfe_linear_matches_pyfixest_on_mpdta(mpdta: pd.DataFrame, path: str) -> None:
    r = twfe(mpdta, yname="lemp", idname="countyreal", tname="year", dname="D", path=path)
    ref = pf.feols("lemp ~ D | countyreal + year", data=mpdta, vcov={"CRV1": "countyreal"})
    assert r.path == path
    assert _rel(r.coef(), ref.coef()["D"]) < 1e-8
    assert _rel(r.se(), ref.se()["D"]) < 1e-8
    tid = r.tidy().iloc[0]
    rt = ref.tidy().loc["D"]
    assert _rel(tid["p_value"], rt["Pr(>|t|)"]) < 1e-6
    assert _rel(tid["conf_low"], rt["2.5%"]) < 1e-8
    assert r.n_obs == ref._N == 2500


@pytest.mark.parametrize("path", ["rows", "moments"])
def test_twfe_poisson_matches_pyfixest_on_mpdta(mpdta: pd.DataFrame, path: str) -> None:
    r = twfe(
        mpdta, yname="emp", idname="countyreal", tname="year", dname="D", model="poisson", path=path
    )
    ref = _fepois("emp ~ D | countyreal + year", mpdta, vcov={"CRV1": "countyreal"})
    assert _rel(r.coef(), ref.coef()["D"]) < 1e-8
    assert _rel(r.se(), ref.se()["D"]) < 1e-6
    tid = r.tidy().iloc[0]
    assert tid["rate_ratio"] == pytest.approx(np.exp(ref.coef()["D"]), rel=1e-8)
    assert _rel(tid["conf_high"], ref.tidy().loc["D", "97.5%"]) < 1e-6


def test_two_by_two_linear_matches_pyfixest_on_mpdta(mpdta: pd.DataFrame) -> None:
    r = two_by_two(
        mpdta, yname="lemp", idname="countyreal", tname="year", treat="treated", post="post"
    )
    d = mpdta.assign(tp=mpdta["treated"] * mpdta["post"])
    ref = pf.feols("lemp ~ tp | countyreal + year", data=d, vcov={"CRV1": "countyreal"})
    # post is common to all units here: absorbed by the year effects and dropped
    assert r.dropped_terms == ("post",)
    assert _rel(r.coef(), ref.coef()["tp"]) < 1e-8
    assert _rel(r.se(), ref.se()["tp"]) < 1e-8


# ----------------------------------------------------------------------------- synthetic


@pytest.mark.parametrize("unbalanced", [False, True])
@pytest.mark.parametrize("cluster", [None, "practice"])
def test_two_by_two_poisson_exposure_weights_vs_pyfixest(
    unbalanced: bool, cluster: str | None
) -> None:
    df = synth_panel(3, unbalanced=unbalanced)
    r = two_by_two(
        df, yname="gp", idname="person_id", tname="t", treat="treated", post="post",
        model="poisson", exposure="exposure_days", weights="weights", cluster=cluster,
    )  # fmt: skip
    d = df.assign(tp=df["treated"] * df["post"], log_e=np.log(df["exposure_days"]))
    cl = cluster or "person_id"
    ref = _fepois(
        "gp ~ post + tp | person_id + t", d, vcov={"CRV1": cl}, weights="weights", offset="log_e"
    )
    for ours, theirs in (("post", "post"), ("treat:post", "tp")):
        assert _rel(r.coef(ours), ref.coef()[theirs]) < 1e-8
        assert _rel(r.se(ours), ref.se()[theirs]) < 1e-6
    assert r.n_obs == ref._N


@pytest.mark.parametrize("unbalanced", [False, True])
def test_two_by_two_linear_exposure_weights_covariates_vs_pyfixest(unbalanced: bool) -> None:
    df = synth_panel(4, unbalanced=unbalanced)
    r = two_by_two(
        df, yname="gp", idname="person_id", tname="t", treat="treated", post="post",
        exposure="exposure_days", weights="weights", covariates=["age"],
    )  # fmt: skip
    assert r.path == "rows"
    d = df.assign(
        tp=df["treated"] * df["post"],
        rate=df["gp"] / df["exposure_days"] * 365.25,
        ww=df["weights"] * df["exposure_days"],
    )
    ref = pf.feols(
        "rate ~ post + tp + age | person_id + t", data=d, vcov={"CRV1": "person_id"}, weights="ww"
    )
    for ours, theirs in (("treat:post", "tp"), ("age", "age")):
        assert _rel(r.coef(ours), ref.coef()[theirs]) < 1e-8
        assert _rel(r.se(ours), ref.se()[theirs]) < 1e-8


def test_poisson_sandwich_matches_statsmodels_glm() -> None:
    """Unit and period dummies in a plain GLM give the same coefficient and sandwich."""
    import statsmodels.api as sm

    df = synth_panel(5, n=40, periods=8)
    # units without events are dropped by conditional Poisson; the dummy GLM cannot fit them
    df = df.loc[df.groupby("person_id")["gp"].transform("sum") > 0].reset_index(drop=True)
    r = two_by_two(
        df, yname="gp", idname="person_id", tname="t", treat="treated", post="post",
        model="poisson", exposure="exposure_days", path="rows",
    )  # fmt: skip
    X = pd.get_dummies(df[["person_id", "t"]].astype(str), drop_first=True).astype(float)
    X.insert(0, "const", 1.0)
    X["post"] = df["post"].astype(float)
    X["tp"] = (df["treated"] * df["post"]).astype(float)
    groups = pd.factorize(df["person_id"])[0]
    glm = sm.GLM(df["gp"], X, family=sm.families.Poisson(), offset=np.log(df["exposure_days"]))
    res = glm.fit(
        cov_type="cluster", cov_kwds={"groups": groups, "use_correction": False}, tol=1e-13
    )
    assert _rel(r.coef(), res.params["tp"]) < 1e-8
    # our vcov carries fixest's small-sample factor; statsmodels' is the raw sandwich
    assert _rel(r.se() ** 2 / r.small_sample, res.cov_params().loc["tp", "tp"]) < 1e-6


# ----------------------------------------------------------------------------- moments = rows


@pytest.mark.parametrize("model", ["linear", "poisson"])
@pytest.mark.parametrize("unbalanced", [False, True])
@pytest.mark.parametrize("cluster", [None, "practice"])
def test_moments_path_equals_rows(model: str, unbalanced: bool, cluster: str | None) -> None:
    df = synth_panel(7, n=400, periods=8, unbalanced=unbalanced)
    # make the exposure constant within cohort so cohorts stay few
    df["exposure_days"] = 30 + df["t"] % 2
    kw = dict(
        yname="gp", idname="person_id", tname="t", treat="treated", post="post", model=model,
        exposure="exposure_days", weights="weights", cluster=cluster,
    )  # fmt: skip
    rows = two_by_two(df, path="rows", **kw)  # type: ignore[arg-type]
    mom = two_by_two(df, path="moments", **kw)  # type: ignore[arg-type]
    assert (rows.path, mom.path) == ("rows", "moments")
    np.testing.assert_allclose(mom.estimate, rows.estimate, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(mom.vcov, rows.vcov, rtol=1e-10, atol=1e-14)
    assert (mom.n_obs, mom.n_units, mom.n_clusters) == (rows.n_obs, rows.n_units, rows.n_clusters)


def test_auto_path_uses_moments_for_cohort_designs(mpdta: pd.DataFrame) -> None:
    r = twfe(mpdta, yname="lemp", idname="countyreal", tname="year", dname="D")
    assert r.path == "moments"
    assert r.glance()["path"].iloc[0] == "moments"


# ----------------------------------------------------------------------------- event study


@pytest.mark.parametrize("model", ["linear", "poisson"])
def test_event_study_matched_vs_pyfixest(model: str) -> None:
    df = synth_panel(11, n=300, periods=12)
    r = event_study(
        df, yname="gp", idname="person_id", tname="t", index="index_t", treat="treated",
        window=(-3, 3), model=model,
    )  # fmt: skip
    d = df.assign(e=df["t"] - df["index_t"])
    d = d.loc[d["e"].between(-3, 3)].copy()
    names = []
    for k in range(-3, 4):
        if k == -1:
            continue
        nm = f"ev_m{-k}" if k < 0 else f"ev_{k}"
        d[nm] = ((d["e"] == k) & (d["treated"] == 1)).astype(float)
        names.append(nm)
    fml = f"gp ~ {' + '.join(names)} | person_id + e"
    ref = (
        pf.feols(fml, data=d, vcov={"CRV1": "person_id"})
        if model == "linear"
        else _fepois(fml, d, vcov={"CRV1": "person_id"})
    )
    np.testing.assert_allclose(r.estimate, ref.coef()[names].to_numpy(), rtol=1e-8)
    np.testing.assert_allclose(r.std_error, ref.se()[names].to_numpy(), rtol=1e-6)
    assert r.tidy()["event_time"].tolist() == [-3, -2, 0, 1, 2, 3]
    # pre-trend Wald test from pyfixest's own covariance
    V = ref._vcov[:2, :2]
    b = ref.coef()[names[:2]].to_numpy()
    assert r.pretrend[0] == pytest.approx(float(b @ np.linalg.solve(V, b)), rel=1e-5)
    assert r.pretrend[1] == 2


def test_event_study_never_treated_design_vs_pyfixest(mpdta: pd.DataFrame) -> None:
    d = mpdta.assign(first=mpdta["first.treat"].where(mpdta["first.treat"] > 0))
    r = event_study(
        d, yname="lemp", idname="countyreal", tname="year", index="first", window=(-4, 3)
    )
    e = d["year"] - d["first"]
    ref_d = d.copy()
    names = []
    for k in range(-4, 4):
        if k == -1:
            continue
        nm = f"ev_m{-k}" if k < 0 else f"ev_{k}"
        ref_d[nm] = (e == k).astype(float)
        names.append(nm)
    present = [n for n in names if ref_d[n].any()]
    ref = pf.feols(
        f"lemp ~ {' + '.join(present)} | countyreal + year", data=ref_d, vcov={"CRV1": "countyreal"}
    )
    np.testing.assert_allclose(r.estimate, ref.coef()[present].to_numpy(), rtol=1e-8)
    np.testing.assert_allclose(r.std_error, ref.se()[present].to_numpy(), rtol=1e-8)


def test_event_study_moments_equals_rows() -> None:
    df = synth_panel(12, n=400, periods=12)
    kw = dict(
        yname="gp", idname="person_id", tname="t", index="index_t", treat="treated",
        window=(-4, 4), model="poisson", weights="weights",
    )  # fmt: skip
    a = event_study(df, path="rows", **kw)  # type: ignore[arg-type]
    b = event_study(df, path="moments", **kw)  # type: ignore[arg-type]
    np.testing.assert_allclose(b.estimate, a.estimate, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(b.vcov, a.vcov, rtol=1e-10, atol=1e-14)
    assert a.pretrend[0] == pytest.approx(b.pretrend[0], rel=1e-9)


# ----------------------------------------------------------------------------- behaviour


def test_invariant_to_row_order_and_id_relabelling() -> None:
    df = synth_panel(13)
    kw = dict(
        yname="gp", idname="person_id", tname="t", treat="treated", post="post", model="poisson"
    )
    a = two_by_two(df, **kw)  # type: ignore[arg-type]
    rng = np.random.default_rng(0)
    shuffled = df.sample(frac=1.0, random_state=1).reset_index(drop=True)
    relabel = {p: f"z{rng.integers(1e9)}_{i}" for i, p in enumerate(df["person_id"].unique())}
    shuffled["person_id"] = shuffled["person_id"].map(relabel)
    b = two_by_two(shuffled, **kw)  # type: ignore[arg-type]
    np.testing.assert_allclose(b.estimate, a.estimate, rtol=1e-11)
    np.testing.assert_allclose(b.vcov, a.vcov, rtol=1e-10)


def test_poisson_level_effect_and_attrition() -> None:
    df = synth_panel(14)
    df.loc[df["person_id"] == "p00001", "gp"] = 0  # one comparator with no events at all
    r = two_by_two(
        df, yname="gp", idname="person_id", tname="t", treat="treated", post="post",
        model="poisson", exposure="exposure_days",
    )  # fmt: skip
    att = dict(r.attrition.itertuples(index=False))
    total = df.groupby("person_id")["gp"].transform("sum")
    assert att["unit_all_zero_outcome"] == int((total == 0).sum()) >= 10
    assert r.n_units == df.loc[total > 0, "person_id"].nunique()
    assert r.n_obs + att["unit_all_zero_outcome"] == len(df)
    sel = (df["treated"] == 1) & (df["post"] == 1)
    rate = df.loc[sel, "gp"].sum() / df.loc[sel, "exposure_days"].sum() * 365.25
    level = r.tidy().set_index("term").loc["treat:post"]
    assert level["level_effect"] == pytest.approx(rate * (1 - np.exp(-r.coef())), rel=1e-12)
    assert level["level_conf_low"] < level["level_effect"] < level["level_conf_high"]
    assert r.glance()["level_unit"].iloc[0] == "events per person-year"


def test_tidy_glance_summary_plot() -> None:
    df = synth_panel(15)
    r = two_by_two(df, yname="gp", idname="person_id", tname="t", treat="treated", post="post")
    tab = r.tidy()
    assert list(tab.columns) == [
        "term", "estimate", "std_error", "statistic", "p_value", "conf_low", "conf_high", "n",
    ]  # fmt: skip
    assert "treat:post" in r.summary()
    assert r.glance().shape[0] == 1
    from matplotlib.figure import Figure

    assert isinstance(r.plot(), Figure)
    es = event_study(
        df, yname="gp", idname="person_id", tname="t", index="index_t", treat="treated",
        window=(-2, 2), model="poisson",
    )  # fmt: skip
    fig = es.plot()
    assert isinstance(fig, Figure)
    assert "pre-trend" in fig.axes[0].get_title()


@pytest.fixture(scope="module")
def duck() -> object:
    import ibis

    return ibis.duckdb.connect()


@pytest.mark.parametrize("model", ["linear", "poisson"])
@pytest.mark.parametrize("cluster", [None, "practice"])
def test_engine_moments_via_duckdb_equal_rows(
    duck: object, model: str, cluster: str | None
) -> None:
    """Moments computed inside DuckDB (two GROUP BYs) give the row-level fit."""
    df = synth_panel(16, n=200, unbalanced=True)
    tbl = duck.create_table(f"panel_{model}_{cluster}", df, overwrite=True)  # type: ignore[attr-defined]
    kw = dict(
        yname="gp", idname="person_id", tname="t", treat="treated", post="post", model=model,
        exposure="exposure_days", weights="weights", cluster=cluster,
    )  # fmt: skip
    a = two_by_two(df, path="rows", **kw)  # type: ignore[arg-type]
    b = two_by_two(tbl, **kw)  # type: ignore[arg-type]
    assert b.path == "moments"
    assert dict(b.extra)["moments_computed_in"] == "engine"
    np.testing.assert_allclose(b.estimate, a.estimate, rtol=1e-10)
    np.testing.assert_allclose(b.vcov, a.vcov, rtol=1e-10)
    assert (b.n_obs, b.n_units, b.n_clusters) == (a.n_obs, a.n_units, a.n_clusters)
    pd.testing.assert_frame_equal(b.attrition, a.attrition)
    if model == "poisson":
        assert b.level is not None and a.level is not None
        np.testing.assert_allclose(b.level[:3], a.level[:3], rtol=1e-10)


def test_engine_twfe_mpdta_and_row_fallback(duck: object, mpdta: pd.DataFrame) -> None:
    tbl = duck.create_table("mpdta", mpdta, overwrite=True)  # type: ignore[attr-defined]
    r = twfe(tbl, yname="emp", idname="countyreal", tname="year", dname="D", model="poisson")
    ref = _fepois("emp ~ D | countyreal + year", mpdta, vcov={"CRV1": "countyreal"})
    assert dict(r.extra)["moments_computed_in"] == "engine"
    assert _rel(r.coef(), ref.coef()["D"]) < 1e-8
    assert _rel(r.se(), ref.se()["D"]) < 1e-6
    # covariates cannot be expressed by cohort moments: rows are pulled and fitted instead
    r2 = two_by_two(
        tbl, yname="lemp", idname="countyreal", tname="year", treat="treated", post="post",
        covariates=["lpop"],
    )  # fmt: skip
    assert r2.path == "rows"
    assert dict(r2.extra)["moments_computed_in"] == "python"


# ----------------------------------------------------------------------------- errors


def _base() -> pd.DataFrame:
    return synth_panel(20, n=40, periods=6)


KW = dict(yname="gp", idname="person_id", tname="t", treat="treated", post="post")


def test_error_exposure_not_positive() -> None:
    df = _base()
    df.loc[3, "exposure_days"] = 0
    with pytest.raises(DataError, match=r"exposure_days.*1 rows"):
        two_by_two(df, model="poisson", exposure="exposure_days", **KW)  # type: ignore[arg-type]


def test_error_no_post_period() -> None:
    df = _base().assign(post=0)
    with pytest.raises(EstimationError, match="pre and post"):
        two_by_two(df, **KW)  # type: ignore[arg-type]


def test_error_single_cluster() -> None:
    df = _base().assign(region="A")
    with pytest.raises(EstimationError, match="one cluster"):
        two_by_two(df, cluster="region", **KW)  # type: ignore[arg-type]


def test_error_outcome_all_zero_in_group() -> None:
    df = _base()
    df.loc[df["treated"] == 1, "gp"] = 0
    with pytest.raises(EstimationError, match="zero in all"):
        two_by_two(df, model="poisson", **KW)  # type: ignore[arg-type]


def test_error_singular_design() -> None:
    df = _base()
    # treatment switches on at the same period for every unit: collinear with period effects
    df["D"] = (df["t"] >= 3).astype(int)
    with pytest.raises(EstimationError, match="collinear"):
        twfe(df, yname="gp", idname="person_id", tname="t", dname="D")


def test_error_duplicate_rows_and_missing_column() -> None:
    df = _base()
    with pytest.raises(DataError, match="repeat"):
        two_by_two(pd.concat([df, df.iloc[:2]]), **KW)  # type: ignore[arg-type]
    with pytest.raises(DataError, match="nope"):
        two_by_two(df, cluster="nope", **KW)  # type: ignore[arg-type]


def test_error_messages_do_not_leak_identifiers() -> None:
    df = _base()
    df.loc[0, "exposure_days"] = -1
    with pytest.raises(DataError) as exc:
        two_by_two(df, model="poisson", exposure="exposure_days", **KW)  # type: ignore[arg-type]
    assert "p000" not in str(exc.value)


@pytest.mark.parametrize("model", ["linear", "poisson"])
def test_person_in_two_match_sets_unit_copies_clustered_by_person(model: str) -> None:
    """Risk-set matching reuses people: one unit per (person, match set), cluster by person."""
    df = synth_panel(40, n=200)
    df["subclass"] = df["person_id"].str[1:].astype(int) // 2
    reused = df[df["subclass"] < 10].copy()  # 20 people appear in a second match set
    reused["subclass"] += 1000
    reused["index_t"] = reused["index_t"] + 1
    reused["post"] = (reused["t"] >= reused["index_t"]).astype(int)
    both = pd.concat([df, reused], ignore_index=True)
    both["unit"] = both["person_id"] + "/" + both["subclass"].astype(str)
    with pytest.raises(DataError, match="several match sets"):
        two_by_two(both, yname="gp", idname="person_id", tname="t", treat="treated", post="post")
    r = two_by_two(
        both, yname="gp", idname="unit", tname="t", treat="treated", post="post", model=model,
        cluster="person_id",
    )  # fmt: skip
    d = both.assign(tp=both["treated"] * both["post"])
    fml = "gp ~ post + tp | unit + t"
    ref = (
        pf.feols(fml, data=d, vcov={"CRV1": "person_id"})
        if model == "linear"
        else _fepois(fml, d, vcov={"CRV1": "person_id"})
    )
    assert _rel(r.coef(), ref.coef()["tp"]) < 1e-8
    assert _rel(r.se(), ref.se()["tp"]) < 1e-6
    assert (
        r.n_clusters
        == both.loc[
            both.groupby("unit")["gp"].transform("sum") > 0 if model == "poisson" else slice(None),
            "person_id",
        ].nunique()
    )


def test_poisson_drops_separated_rows_as_fixest() -> None:
    # x = 1 only on rows with no events: its coefficient goes to -inf and those rows are
    # separated (the MLE does not exist with them). The iterative rectifier finds them;
    # the fit then equals pyfixest's on the data without them, and counts them.
    df = synth_panel(11, n=200)
    rng = np.random.default_rng(5)
    busy = df.groupby("person_id")["gp"].transform("sum").to_numpy() > 0
    zero = np.flatnonzero((df["gp"].to_numpy() == 0) & busy)  # in units with events
    sep = rng.choice(zero, 25, replace=False)
    df["x"] = 0.0
    df.loc[sep, "x"] = 1.0
    kw = dict(yname="gp", idname="person_id", tname="t", treat="treated", post="post")
    r = two_by_two(
        df, **kw, model="poisson", exposure="exposure_days", covariates=["x"], weights="weights"
    )
    assert dict(r.attrition.itertuples(index=False))["separated"] == 25
    d = df.drop(index=sep)
    d = d.assign(tp=d["treated"] * d["post"], log_e=np.log(d["exposure_days"]))
    ref = _fepois(
        "gp ~ post + tp | person_id + t", d, vcov={"CRV1": "person_id"}, weights="weights",
        offset="log_e",
    )  # fmt: skip
    assert _rel(r.coef("treat:post"), ref.coef()["tp"]) < 1e-8
    assert _rel(r.se("treat:post"), ref.se()["tp"]) < 1e-6
    assert r.n_obs == ref._N
    # without separated rows nothing is dropped for separation
    r0 = two_by_two(df, **kw, model="poisson", exposure="exposure_days", weights="weights")
    assert "separated" not in set(r0.attrition["reason"])


def test_poisson_with_too_few_events_is_a_clear_error() -> None:
    # comparators' events all after the index, the cases' all before: no Poisson effect
    df = synth_panel(12, n=40)
    y = np.where((df["treated"] == 1) == (df["post"] == 1), 0, df["gp"])
    with pytest.raises(EstimationError, match=r"Outcome 'gp': .*too few events for a Poisson"):
        two_by_two(
            df.assign(gp=y), yname="gp", idname="person_id", tname="t", treat="treated",
            post="post", model="poisson", exposure="exposure_days",
        )  # fmt: skip
