"""spevidence.match.nearest: MatchIt semantics, checked against MatchIt's own printed
output (README), statsmodels (propensity model), a brute-force greedy matcher, and
hand-worked examples."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spevidence.errors import DataError, EstimationError
from spevidence.match import nearest
from spevidence.match._design import fit_glm, model_matrix

GOLDEN = Path(__file__).parent / "golden"
COVS = ["age", "educ", "race", "married", "nodegree", "re74", "re75"]

pytestmark = pytest.mark.filterwarnings("ignore:nearest. matching without a caliper")


@pytest.fixture(scope="module")
def lalonde() -> pd.DataFrame:
    return pd.read_csv(GOLDEN / "match_lalonde.csv", index_col="id")


@pytest.fixture(scope="module")
def readme() -> dict:
    return json.loads((GOLDEN / "match_matchit_readme.json").read_text())


@pytest.fixture(scope="module")
def reference() -> dict:
    return json.loads((GOLDEN / "match_matchit_reference.json").read_text())


COVS_REF = ["age", "educ", "race", "nodegree", "married", "re74", "re75"]


def _quiet(**kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return nearest(**kw)


def _check_table(table: pd.DataFrame, golden: dict, sample: str, skip=(), skip_stats=()) -> None:
    t = table.set_index("variable")
    stats = ["mean_treated", "mean_control", "smd", "var_ratio", "ecdf_mean", "ecdf_max"]
    stats += ["std_pair_dist"]
    for var, vals in golden.items():
        if var in skip:
            continue
        for s, g in zip(stats, vals, strict=False):
            if s in skip_stats:
                continue
            if s == "std_pair_dist":
                if sample == "before":
                    continue
                ours = t.loc[var, s]
            else:
                ours = t.loc[var, f"{s}_{sample}"]
            if g is None:
                assert np.isnan(ours), (var, s)
            else:
                # printed to 4 decimals: agreement to rounding
                assert abs(ours - g) <= 5.01e-5 * max(1.0, 1e-4 * abs(g)), (var, s, ours, g)


# --------------------------------------------------------------------------- propensity model


@pytest.mark.parametrize("link", ["logit", "probit"])
def test_glm_distance_equals_statsmodels(lalonde, link):
    X, names = model_matrix(lalonde, COVS, full_dummies=False)
    # R model.matrix: treatment contrasts, first level ("black") dropped
    assert names == [
        "age",
        "educ",
        "racehispan",
        "racewhite",
        "married",
        "nodegree",
        "re74",
        "re75",
    ]
    X = np.column_stack([np.ones(len(X)), X])
    y = lalonde["treat"].to_numpy(float)
    _, _eta, mu = fit_glm(X, y, link=link)
    fam = sm.families.Binomial(
        link=sm.families.links.Logit() if link == "logit" else sm.families.links.Probit()
    )
    ref = sm.GLM(y, X, family=fam).fit(tol=1e-13, maxiter=200)
    # R's glm stops when the relative deviance change is < 1e-8: for the canonical
    # logit link (Newton, quadratic convergence) that is the MLE to ~1e-10; for
    # probit (Fisher scoring) R stops earlier, ~1e-6 from the MLE. We copy R.
    tol = 1e-8 if link == "logit" else 5e-6
    assert np.max(np.abs(mu - ref.fittedvalues)) < tol
    _, _, mu_tight = fit_glm(X, y, link=link, epsilon=1e-15, maxit=500)
    assert np.max(np.abs(mu_tight - ref.fittedvalues)) < 1e-9
    m = _quiet(data=lalonde, treat="treat", covariates=COVS, link=link)
    assert np.array_equal(m.distance, mu)
    ml = _quiet(data=lalonde, treat="treat", covariates=COVS, link=f"linear.{link}")
    assert np.max(np.abs(ml.distance - X @ ref.params)) < (1e-7 if link == "logit" else 5e-5)


# --------------------------------------------------------------------------- MatchIt goldens


def test_balance_before_matching_equals_matchit_summary(lalonde, readme):
    m = _quiet(data=lalonde, treat="treat", covariates=COVS)
    _check_table(m.balance(warn=False).table(), readme["all"], "before")


def test_ps_nearest_equals_matchit_reference_example(lalonde, reference):
    """1:1 nearest neighbour on a logistic propensity score, no caliper: every
    statistic of MatchIt's printed summary (before and after matching, pair
    distances, sample sizes) is reproduced."""
    g = reference["m.out1"]
    m = _quiet(data=lalonde, treat="treat", covariates=COVS_REF)
    table = m.balance(warn=False).table()
    _check_table(table, g["all"], "before")
    _check_table(table, g["matched"], "after")
    gl = m.glance().iloc[0]
    assert gl["n_matched_control"] == g["sample_sizes"]["control_matched"]
    assert gl["n_matched_treated"] == g["sample_sizes"]["treated_matched"]
    assert gl["n_unmatched_control"] == g["sample_sizes"]["control_unmatched"]
    # identical covariate rows get bit-identical propensity scores (as in R)
    X, _ = model_matrix(lalonde, COVS_REF, full_dummies=False)
    _, inv = np.unique(X, axis=0, return_inverse=True)
    assert len(np.unique(m.distance)) == inv.max() + 1


def _swap_nsw89(lalonde, m, control_id):
    from spevidence.match._nn import normalize_weights, weights_from_mm
    from spevidence.match.balance import compute_balance

    ids = list(lalonde.index)
    t = lalonde["treat"].to_numpy()
    row = np.flatnonzero(t == 1).tolist().index(ids.index("NSW89"))
    assert ids[m.match_matrix[row, 0]] in {"PSID383", "PSID407"}
    mm = m.match_matrix.copy()
    mm[row, 0] = ids.index(control_id)
    w = normalize_weights(weights_from_mm(mm, t), t)
    X, names = model_matrix(lalonde, list(m.covariates), full_dummies=True)
    r, k = np.nonzero(mm >= 0)
    pairs = (np.flatnonzero(t == 1)[r], mm[r, k])
    return compute_balance(X, names, t, w, warn=False, pairs=pairs).table(), w, t


def test_mahalanobis_exact_with_replacement_equals_matchit_reference(lalonde, reference):
    g = reference["m.out2"]
    m = _quiet(
        data=lalonde,
        treat="treat",
        covariates=COVS_REF,
        distance="mahalanobis",
        replace=True,
        exact=["married", "race"],
    )
    table = m.balance(warn=False).table()
    _check_table(table, g["matched"], "after", skip={"age"}, skip_stats={"var_ratio"})
    # the same exact tie as in the README example (NSW89 between PSID383 and
    # PSID407); in this run R's rounding picked PSID407
    swapped, w, t = _swap_nsw89(lalonde, m, "PSID407")
    _check_table(swapped, g["matched"], "after")
    wc = w[(t == 0) & (w > 0)]
    assert len(wc) == g["sample_sizes"]["control_matched"]
    assert round(wc.sum() ** 2 / (wc**2).sum(), 2) == g["sample_sizes"]["control_matched_ess"]


def test_mahalanobis_with_replacement_equals_matchit_readme(lalonde, readme):
    m = _quiet(data=lalonde, treat="treat", covariates=COVS, distance="mahalanobis", replace=True)
    g = m.glance().iloc[0]
    assert g["n_matched_treated"] == readme["sample_sizes"]["treated_matched"]
    table = m.balance(warn=False).table()
    # Every statistic except those of age agrees with MatchIt. NSW89 (age 21) is
    # exactly equidistant from PSID383 (age 19) and PSID407 (age 23), identical
    # otherwise; which one wins is decided by the last bit of floating-point
    # rounding, and R's rounding picks PSID383. The swap also changes the spread of
    # the control weights, hence (through the reliability-weights variance) every
    # variance ratio in the 4th decimal.
    _check_table(table, readme["matched"], "after", skip={"age"}, skip_stats={"var_ratio"})
    # swap in R's choice: then everything, including age, the number of matched
    # controls and their effective sample size, equals MatchIt's output
    swapped, w, t = _swap_nsw89(lalonde, m, "PSID383")
    _check_table(swapped, readme["matched"], "after")
    wc = w[(t == 0) & (w > 0)]
    assert len(wc) == readme["sample_sizes"]["control_matched"]
    assert round(wc.sum() ** 2 / (wc**2).sum(), 2) == readme["sample_sizes"]["control_matched_ess"]


# --------------------------------------------------------------------------- MatchIt snapshots

SNAPSHOTS = json.loads((GOLDEN / "match_matchit_snapshots.json").read_text())["cases"]
PS_CASES = [k for k, v in SNAPSHOTS.items() if "mahvars" not in v]


def _as_ids(lalonde, mm):
    ids = np.asarray(lalonde.index, dtype=object)
    return np.where(mm >= 0, ids[np.maximum(mm, 0)], None)


@pytest.mark.parametrize("case", PS_CASES)
def test_pairs_equal_matchit_snapshot(lalonde, case):
    """Every pair (and its column) equals MatchIt's own snapshot test output."""
    g = SNAPSHOTS[case]
    gold = np.array(g["match_matrix"], dtype=object).reshape(g["ncol"], 185).T
    m = _quiet(data=lalonde, treat="treat", covariates=COVS, **g["kwargs"])
    ours = _as_ids(lalonde, m.match_matrix)
    assert ours.shape == gold.shape
    assert (ours == gold).all(), np.argwhere(ours != gold)[:5]


def test_mahalanobis_port_equals_matchit_snapshot_on_the_grid(lalonde):
    """MatchIt's mahvars path (Mahalanobis on age, educ, re74, re75; order "data",
    no replacement) through our port of nn_matchC_mahcovs, on the transform as
    ``nearest`` uses it (``_nn.on_grid``): all 185 pairs equal R's. NSW58 (age 41,
    educ 4) is exactly equidistant from PSID415 (43, 6) and PSID420 (39, 2). On the
    raw transform the last bit of BLAS rounding decided, differently under different
    OpenBLAS kernels (PSID420 under Prescott, so NSW69 then took PSID415 instead of
    R's PSID354). Grid values do not depend on the CPU, so neither does the pair; on
    these data it is R's."""
    from spevidence.match._design import mahalanobis_transform
    from spevidence.match._nn import nn_match_mahcovs, on_grid

    g = SNAPSHOTS["baseline: Mahalanobis, m.order='data'"]
    t = lalonde["treat"].to_numpy()
    raw = mahalanobis_transform(lalonde, g["mahvars"], t)
    ids = list(lalonde.index)
    row = raw[ids.index("NSW58")]
    d415 = np.sum((row - raw[ids.index("PSID415")]) ** 2)
    d420 = np.sum((row - raw[ids.index("PSID420")]) ** 2)
    assert d415 == pytest.approx(d420, rel=1e-12)  # a tie in exact arithmetic
    mah = on_grid(raw)
    mm = nn_match_mahcovs(t, np.arange(185), np.ones(185, int), np.zeros(len(t), bool), 1, mah)
    ours = _as_ids(lalonde, mm)[:, 0]
    gold = np.array(g["match_matrix"], dtype=object)
    assert (ours == gold).all()


# --------------------------------------------------------------------------- hand-worked


def _frame(dist_t, dist_c, **extra):
    d = pd.DataFrame(
        {
            "treat": [1] * len(dist_t) + [0] * len(dist_c),
            "d": list(dist_t) + list(dist_c),
            "x": np.arange(len(dist_t) + len(dist_c), dtype=float),
        }
    )
    for k, v in extra.items():
        d[k] = v
    return d


def _pairs(m) -> dict[int, list[int]]:
    t_rows = np.flatnonzero(m.treated == 1)
    return {int(t_rows[i]): [int(c) for c in row if c >= 0] for i, row in enumerate(m.match_matrix)}


def test_order_largest_vs_smallest_changes_pairs():
    # treated 0.6 and 0.5; controls 0.56 and 0.1 (rows 2, 3)
    d = _frame([0.6, 0.5], [0.56, 0.1])
    big = _quiet(data=d, treat="treat", covariates=["x"], distance=d["d"].to_numpy())
    assert _pairs(big) == {0: [2], 1: [3]}
    small = _quiet(
        data=d, treat="treat", covariates=["x"], distance=d["d"].to_numpy(), order="smallest"
    )
    assert _pairs(small) == {0: [3], 1: [2]}
    data_order = _quiet(
        data=d, treat="treat", covariates=["x"], distance=d["d"].to_numpy(), order="data"
    )
    assert _pairs(data_order) == {0: [2], 1: [3]}
    md = big.matched_data()
    assert md["subclass"].tolist() == [1, 2, 1, 2]
    assert md["weights"].tolist() == [1.0, 1.0, 1.0, 1.0]


def test_raw_and_standardised_caliper_exclude_far_pairs():
    d = _frame([0.6, 0.5], [0.56, 0.1])
    dist = d["d"].to_numpy()
    m = nearest(
        data=d,
        treat="treat",
        covariates=["x"],
        distance=dist,
        caliper=0.1,
        std_caliper=False,
    )
    assert _pairs(m) == {0: [2], 1: []}
    assert m.glance().iloc[0]["n_unmatched_treated"] == 1
    sd = float(np.std(dist, ddof=1))
    m2 = nearest(data=d, treat="treat", covariates=["x"], distance=dist, caliper=0.1 / sd)
    assert m2.caliper == pytest.approx(0.1)
    assert _pairs(m2) == _pairs(m)
    # a caliper just wider than 0.4 readmits the far pair
    m3 = nearest(
        data=d, treat="treat", covariates=["x"], distance=dist, caliper=0.41, std_caliper=False
    )
    assert _pairs(m3) == {0: [2], 1: [3]}


def test_ratio_two_matches_in_rounds_and_weights():
    # treated B=0.52 (row 0), A=0.50 (row 1); controls 0.515, 0.53, 0.49, 0.2 (rows 2-5)
    d = _frame([0.52, 0.50], [0.515, 0.53, 0.49, 0.2])
    m = _quiet(data=d, treat="treat", covariates=["x"], distance=d["d"].to_numpy(), ratio=2)
    # round 1: B -> 0.515, A -> 0.49; round 2: B -> 0.53, A -> 0.2 (0.53 taken)
    assert _pairs(m) == {0: [2, 3], 1: [4, 5]}
    assert np.allclose(m.weights, 1.0)
    # only three controls: A's second match is missing; controls' weights 1/2,1/2,1
    # rescaled to mean 1 (MatchIt normalisation)
    d3 = _frame([0.52, 0.50], [0.515, 0.53, 0.49])
    m3 = _quiet(data=d3, treat="treat", covariates=["x"], distance=d3["d"].to_numpy(), ratio=2)
    assert _pairs(m3) == {0: [2, 3], 1: [4]}
    assert m3.weights.tolist() == pytest.approx([1, 1, 0.75, 0.75, 1.5])


def test_replace_reuses_controls_and_weights_count_uses():
    d = _frame([0.5, 0.51, 0.9], [0.505, 0.1, 0.8])
    m = _quiet(data=d, treat="treat", covariates=["x"], distance=d["d"].to_numpy(), replace=True)
    assert _pairs(m) == {0: [3], 1: [3], 2: [5]}
    # control 3 used twice: raw weights 2 and 1 -> normalised to mean 1 over 2 controls
    assert m.weights.tolist() == pytest.approx([1, 1, 1, 4 / 3, 0, 2 / 3])
    assert "subclass" not in m.matched_data().columns
    m2 = _quiet(
        data=d, treat="treat", covariates=["x"], distance=d["d"].to_numpy(), ratio=2, replace=True
    )
    assert _pairs(m2) == {0: [3, 5], 1: [3, 5], 2: [5, 3]}


def test_exact_matching_stays_within_strata():
    d = _frame([0.5, 0.7], [0.51, 0.69, 0.2, 0.95], g=["a", "b", "b", "a", "c", "c"])
    m = _quiet(data=d, treat="treat", covariates=["x"], distance=d["d"].to_numpy(), exact=["g"])
    # nearest overall to 0.5 is 0.51 (row 2) but that is in stratum b; 0.69 is in a
    assert _pairs(m) == {0: [3], 1: [2]}
    assert m.discarded.tolist() == [False, False, False, False, True, True]
    with pytest.raises(EstimationError):
        _quiet(
            data=d.assign(g=["a", "a", "b", "b", "b", "b"]),
            treat="treat",
            covariates=["x"],
            distance=d["d"].to_numpy(),
            exact=["g"],
        )


def test_random_order_is_deterministic_by_seed(lalonde):
    kw = dict(data=lalonde, treat="treat", covariates=COVS, order="random", caliper=0.5)
    a = _quiet(**kw, seed=11)
    b = _quiet(**kw, seed=11)
    assert np.array_equal(a.match_matrix, b.match_matrix)
    seeds = [_quiet(**kw, seed=s).match_matrix for s in range(5)]
    assert any(not np.array_equal(seeds[0], s) for s in seeds[1:])


def test_ties_broken_as_matchit():
    # treated 0.5 with controls at 0.4 (left) and 0.6 (right): equal distance;
    # MatchIt searches left first, then keeps the earlier of tied candidates
    d = _frame([0.5], [0.6, 0.4])
    m = _quiet(data=d, treat="treat", covariates=["x"], distance=np.array([0.5, 0.6, 0.4]))
    assert _pairs(m) == {0: [2]}


# --------------------------------------------------------------------------- brute force


def _greedy_reference(dist, treat, order, ratio, replace, caliper, strata):
    """Textbook greedy NN (no ties): rounds of one match per treated unit."""
    t_idx = np.flatnonzero(treat == 1)
    c_idx = np.flatnonzero(treat == 0)
    out = {int(t): [] for t in t_idx}
    if replace:
        for t in t_idx:
            ok = [c for c in c_idx if strata[c] == strata[t] and abs(dist[c] - dist[t]) <= caliper]
            ok.sort(key=lambda c: abs(dist[c] - dist[t]))
            out[int(t)] = [int(c) for c in ok[:ratio]]
        return out
    used: set[int] = set()
    active = {int(t_idx[o]) for o in order}
    for _r in range(ratio):
        for o in order:
            t = int(t_idx[o])
            if t not in active:
                continue
            ok = [
                c
                for c in c_idx
                if c not in used and strata[c] == strata[t] and abs(dist[c] - dist[t]) <= caliper
            ]
            if not ok:
                active.discard(t)
                continue
            c = min(ok, key=lambda c: abs(dist[c] - dist[t]))
            out[t].append(int(c))
            used.add(int(c))
            if len(out[t]) == ratio:
                active.discard(t)
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n_t=st.integers(1, 12),
    n_c=st.integers(1, 25),
    ratio=st.integers(1, 3),
    replace=st.booleans(),
    order=st.sampled_from(["largest", "smallest", "data"]),
    caliper=st.sampled_from([None, 0.05, 0.2]),
    n_strata=st.integers(1, 3),
    seed=st.integers(0, 10_000),
)
def test_port_equals_bruteforce_greedy(n_t, n_c, ratio, replace, order, caliper, n_strata, seed):
    rng = np.random.default_rng(seed)
    dist = rng.random(n_t + n_c)  # continuous: no ties
    treat = np.array([1] * n_t + [0] * n_c)
    perm = rng.permutation(n_t + n_c)
    dist, treat = dist[perm], treat[perm]
    strata = rng.integers(0, n_strata, n_t + n_c)
    if not (set(strata[treat == 1]) & set(strata[treat == 0])):
        return
    d = pd.DataFrame({"treat": treat, "x": dist, "g": strata})
    m = (
        _quiet(
            data=d,
            treat="treat",
            covariates=["x"],
            distance=dist,
            ratio=ratio,
            replace=replace,
            order=order,
            caliper=caliper,
            std_caliper=False,
            exact=["g"] if n_strata > 1 else None,
        )
        if _any_match(dist, treat, strata, caliper)
        else None
    )
    if m is None:
        return
    dt = dist[treat == 1]
    if replace:
        ord_ = np.arange(n_t)
    elif order == "largest":
        ord_ = np.argsort(-dt, kind="stable")
    elif order == "smallest":
        ord_ = np.argsort(dt, kind="stable")
    else:
        ord_ = np.arange(n_t)
    both = set(strata[treat == 1]) & set(strata[treat == 0])
    ord_ = np.array([o for o in ord_ if strata[np.flatnonzero(treat == 1)[o]] in both], dtype=int)
    ref = _greedy_reference(
        dist, treat, ord_, ratio, replace, np.inf if caliper is None else caliper, strata
    )
    got = _pairs(m)
    assert {k: sorted(v) for k, v in got.items()} == {k: sorted(v) for k, v in ref.items()}


def _any_match(dist, treat, strata, caliper):
    cal = np.inf if caliper is None else caliper
    t = np.flatnonzero(treat == 1)
    c = np.flatnonzero(treat == 0)
    return any(strata[i] == strata[j] and abs(dist[i] - dist[j]) <= cal for i in t for j in c)


# --------------------------------------------------------------------------- balance, ATT


def test_smd_conventions_by_hand():
    d = pd.DataFrame(
        {
            "treat": [1, 1, 1, 1, 0, 0, 0, 0, 0],
            "b": [1, 1, 1, 0, 1, 0, 0, 0, 0],
            "c": [3.0, 5.0, 7.0, 9.0, 1.0, 2.0, 6.0, 8.0, 4.0],
        }
    )
    dist = np.array([0.9, 0.8, 0.7, 0.6, 0.85, 0.1, 0.65, 0.75, 0.2])
    m = _quiet(data=d, treat="treat", covariates=["b", "c"], distance=dist)
    t = m.balance(warn=False).table().set_index("variable")
    p = 0.75
    assert t.loc["b", "smd_before"] == pytest.approx((p - 0.2) / np.sqrt(p * (1 - p)))
    assert t.loc["b", "mean_diff_before"] == pytest.approx(p - 0.2)
    sd_t = np.std([3, 5, 7, 9], ddof=1)
    assert t.loc["c", "smd_before"] == pytest.approx((6 - 4.2) / sd_t)
    assert t.loc["c", "var_ratio_before"] == pytest.approx(
        np.var([3, 5, 7, 9], ddof=1) / np.var([1, 2, 6, 8, 4], ddof=1)
    )
    # after matching (largest first): 0.9->0.85 (c=1), 0.8->0.75 (8), 0.7->0.65 (6), 0.6->0.2 (4)
    assert t.loc["c", "mean_control_after"] == pytest.approx((1 + 8 + 6 + 4) / 4)
    # same (treated, unmatched) denominator after matching
    assert t.loc["c", "smd_after"] == pytest.approx((6 - 19 / 4) / sd_t)
    assert t.loc["b", "type"] == "binary" and np.isnan(t.loc["b", "var_ratio_before"])
    # eCDF max for c before matching, computed by hand over the pooled values
    xs = np.sort(d["c"].unique())
    f1 = [np.mean(np.array([3, 5, 7, 9]) <= x) for x in xs]
    f0 = [np.mean(np.array([1, 2, 6, 8, 4]) <= x) for x in xs]
    assert t.loc["c", "ecdf_max_before"] == pytest.approx(np.max(np.abs(np.subtract(f1, f0))))
    assert t.loc["c", "ecdf_mean_before"] == pytest.approx(np.mean(np.abs(np.subtract(f1, f0))))


def test_balance_warns_and_love_plot(lalonde):
    m = _quiet(data=lalonde, treat="treat", covariates=COVS)
    with pytest.warns(UserWarning, match=r"\|SMD\| > 0.1"):
        bal = m.balance()
    fig = bal.plot()
    ax = fig.axes[0]
    assert len(ax.get_yticklabels()) == len(bal.table())
    assert any(np.allclose(line.get_xdata(), 0.1) for line in ax.get_lines())
    assert "standardised mean difference" in ax.get_xlabel().lower()
    long = bal.tidy()
    assert set(long["sample"]) == {"before", "after"}
    assert bal.glance().iloc[0]["max_abs_smd_after"] < bal.glance().iloc[0]["max_abs_smd_before"]


def test_no_caliper_warning():
    d = _frame([0.6, 0.5], [0.56, 0.1])
    with pytest.warns(UserWarning, match="without a caliper"):
        nearest(data=d, treat="treat", covariates=["x"], distance=d["d"].to_numpy())


def test_att_pair_clustered_equals_pyfixest(lalonde):
    import pyfixest as pf

    m = _quiet(data=lalonde, treat="treat", covariates=COVS, caliper=0.2)
    res = m.att("re78").iloc[0]
    md = m.matched_data()
    # 1:1 pairs with unit weights: the ATT is the mean paired difference
    diff = md.groupby("subclass").apply(
        lambda g: g.loc[g.treat == 1, "re78"].iloc[0] - g.loc[g.treat == 0, "re78"].iloc[0]
    )
    assert res["estimate"] == pytest.approx(diff.mean(), abs=1e-8)
    md = md.assign(subclass=md["subclass"].astype(int))
    fit = pf.feols("re78 ~ treat", data=md, weights="weights", vcov={"CRV1": "subclass"})
    assert res["estimate"] == pytest.approx(float(fit.coef()["treat"]), abs=1e-8)
    assert res["std_error"] == pytest.approx(float(fit.se()["treat"]), rel=1e-8)
    adj = m.att("re78", adjust=True).iloc[0]
    fit_adj = pf.feols(
        "re78 ~ treat + age + educ + C(race) + married + nodegree + re74 + re75",
        data=md,
        weights="weights",
        vcov={"CRV1": "subclass"},
    )
    assert adj["adjusted"]
    assert adj["estimate"] == pytest.approx(float(fit_adj.coef()["treat"]), rel=1e-8)
    assert adj["std_error"] == pytest.approx(float(fit_adj.se()["treat"]), rel=1e-6)


def test_input_errors(lalonde):
    with pytest.raises(DataError, match="not found"):
        nearest(data=lalonde, treat="treat", covariates=["nope"])
    bad = lalonde.copy()
    bad.loc[bad.index[0], "age"] = np.nan
    with pytest.raises(DataError, match="1 missing"):
        nearest(data=bad, treat="treat", covariates=COVS)
    with pytest.raises(DataError, match="0/1"):
        nearest(data=lalonde.assign(treat=lalonde["treat"] * 2), treat="treat", covariates=COVS)
    with pytest.raises(DataError, match="caliper"):
        nearest(data=lalonde, treat="treat", covariates=COVS, distance="mahalanobis", caliper=0.2)
    with pytest.raises(EstimationError):
        nearest(data=lalonde.assign(treat=1), treat="treat", covariates=COVS)


def test_matched_data_like_match_data(lalonde):
    m = _quiet(data=lalonde, treat="treat", covariates=COVS, caliper=0.1)
    md = m.matched_data()
    g = m.glance().iloc[0]
    assert len(md) == g["n_matched_treated"] + g["n_matched_control"]
    assert (md.groupby("subclass")["treat"].agg(["sum", "size"]) == [1, 2]).all().all()
    assert md.index.isin(lalonde.index).all()
    pairs = m.pairs
    assert len(pairs) == g["n_matched_control"]
    assert (
        (pairs["distance_treated"] - pairs["distance_control"]).abs() <= m.caliper + 1e-12
    ).all()


def test_balance_with_a_constant_comparator_group_gives_inf_not_an_error():
    # R: var(x1) / var(x0) with var(x0) == 0 is Inf (NaN when both groups are constant)
    from spevidence.match.balance import balance_row

    t = np.array([1, 1, 1, 0, 0, 0])
    w = np.ones(6)
    out = balance_row(np.array([1.0, 2.0, 4.0, 3.0, 3.0, 3.0]), t, w, None)
    assert out["var_ratio"] == np.inf and np.isfinite(out["smd"])
    both = balance_row(np.array([2.0, 2.0, 2.0, 3.0, 3.0, 3.0]), t, w, None)
    assert np.isnan(both["var_ratio"])
