"""spevidence.match.nearest against golden numbers made by real R 4.2.2 + MatchIt 4.7.2
(tests/golden/match_lalonde_matchit.R says how R and MatchIt were obtained): on the
LaLonde data, every matched pair, the ATT of re78 with its pair-clustered standard
error, the sample sizes and every balance statistic of ``summary.matchit`` (before
and after matching) for: no caliper; caliper 0.2 SD of the linear logit; caliper 0.2
SD of the propensity score; 2:1; 2:1 with the linear-logit caliper; with replacement;
Mahalanobis with replacement. R is not needed to run these tests."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from spevidence.match import nearest

GOLDEN = Path(__file__).parent / "golden"
COVS = ["age", "educ", "race", "married", "nodegree", "re74", "re75"]
CASES: dict[str, dict[str, object]] = {
    "nocaliper": {},
    "caliper_linear_logit": {"link": "linear.logit", "caliper": 0.2},
    "caliper_ps": {"caliper": 0.2},
    "ratio2": {"ratio": 2},
    "ratio2_caliper_linear_logit": {"ratio": 2, "link": "linear.logit", "caliper": 0.2},
    "replace": {"replace": True},
    "mahalanobis_replace": {"distance": "mahalanobis", "replace": True},
}
# R's summary.matchit columns -> our balance-table statistics
STATS = {
    "Means Treated": "mean_treated",
    "Means Control": "mean_control",
    "Std. Mean Diff.": "smd",
    "Var. Ratio": "var_ratio",
    "eCDF Mean": "ecdf_mean",
    "eCDF Max": "ecdf_max",
}
# R's glm and ours run the same IRLS to the same stopping rule (relative deviance
# change < 1e-8); what is left is floating-point rounding: every number agrees to
# 1e-12 relative (measured); 1e-10 leaves room for other BLAS/CPU builds
RTOL = 1e-10


@pytest.fixture(scope="module")
def lalonde() -> pd.DataFrame:
    return pd.read_csv(GOLDEN / "match_lalonde.csv", index_col="id")


@pytest.fixture(scope="module")
def golden() -> dict[str, pd.DataFrame]:
    return {
        kind: pd.read_csv(GOLDEN / f"match_lalonde_matchit_{kind}.csv", keep_default_na=False)
        if kind == "pairs"
        else pd.read_csv(GOLDEN / f"match_lalonde_matchit_{kind}.csv")
        for kind in ("pairs", "balance", "att")
    }


def _match(lalonde: pd.DataFrame, case: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return nearest(data=lalonde, treat="treat", covariates=COVS, **CASES[case])  # type: ignore[arg-type]


def _golden_mm(lalonde: pd.DataFrame, golden, case: str) -> np.ndarray:
    g = golden["pairs"][golden["pairs"]["case"] == case]
    treated_ids = lalonde.index[lalonde["treat"] == 1]
    wide = g.pivot(index="treated", columns="k", values="control").loc[treated_ids]
    return wide.to_numpy(dtype=object)


def _ours_mm(lalonde: pd.DataFrame, m) -> np.ndarray:
    ids = np.asarray(lalonde.index, dtype=object)
    return np.where(m.match_matrix >= 0, ids[np.maximum(m.match_matrix, 0)], "")


def _close(ours: float, gold: float, what: object) -> None:
    if np.isnan(gold):
        assert np.isnan(ours), what
    else:
        assert ours == pytest.approx(gold, rel=RTOL, abs=1e-12), what


def _check_all(lalonde, golden, case: str, m) -> None:
    # ATT, SE and sample sizes
    ga = golden["att"].set_index("case").loc[case]
    gl = m.glance().iloc[0]
    assert gl["n_matched_treated"] == ga["n_matched_treated"]
    assert gl["n_matched_control"] == ga["n_matched_control"]
    _close(gl["ess_control"], ga["ess_control"], "ess")
    _close(np.nan if m.caliper is None else m.caliper, ga["caliper"], "caliper")
    att = m.att("re78").iloc[0]
    _close(att["estimate"], ga["att"], "att")
    _close(att["std_error"], ga["se"], "se")
    # every balance statistic, before and after matching
    gb = golden["balance"][golden["balance"]["case"] == case]
    table = m.balance(warn=False).table().set_index("variable")
    assert set(gb["variable"]) == set(table.index)
    for _, row in gb.iterrows():
        suffix = "before" if row["sample"] == "all" else "after"
        for rname, ours in STATS.items():
            _close(table.loc[row["variable"], f"{ours}_{suffix}"], row[rname], (row, rname))
        if suffix == "after":
            _close(table.loc[row["variable"], "std_pair_dist"], row["Std. Pair Dist."], row)


@pytest.mark.parametrize("case", [c for c in CASES if c != "mahalanobis_replace"])
def test_pairs_att_balance_equal_matchit(lalonde, golden, case):
    m = _match(lalonde, case)
    ours, gold = _ours_mm(lalonde, m), _golden_mm(lalonde, golden, case)
    assert ours.shape == gold.shape
    assert (ours == gold).all(), np.argwhere(ours != gold)[:5]
    _check_all(lalonde, golden, case, m)


def test_caliper_cases_leave_treated_unmatched(golden):
    """Sanity of the golden cases themselves: the calipers bite (R left treated
    units unmatched) and the two calipers differ (PS vs linear-logit SD units)."""
    att = golden["att"].set_index("case")
    assert att.loc["caliper_ps", "n_matched_treated"] < 185
    assert att.loc["caliper_linear_logit", "n_matched_treated"] < 185
    assert att.loc["caliper_ps", "caliper"] != att.loc["caliper_linear_logit", "caliper"]


def test_mahalanobis_replace_equals_matchit_including_an_exact_tie(lalonde, golden):
    """Mahalanobis matching with replacement: all 185 pairs equal R's. NSW89 is
    exactly equidistant from PSID383 and PSID407 (identical but for age 19 vs 23
    around its 21); in floating point the last bit of rounding used to decide (R:
    0.053526938372578547 vs ...568; a BLAS dot here: ...541 vs ...534, the other way).
    On the grid (``_nn.on_grid``, exact sums) the two distances are equal, and
    MatchIt's tie rule then picks R's PSID383, on any CPU."""
    case = "mahalanobis_replace"
    m = _match(lalonde, case)
    x = lalonde.loc[["PSID383", "PSID407"]].drop(columns=["age", "re78"])
    assert (x.iloc[0] == x.iloc[1]).all()
    assert lalonde.loc[["PSID383", "NSW89", "PSID407"], "age"].tolist() == [19, 21, 23]
    assert (_ours_mm(lalonde, m) == _golden_mm(lalonde, golden, case)).all()
    _check_all(lalonde, golden, case, m)


def test_mahalanobis_within_ps_caliper_port_equals_matchit(lalonde, golden):
    """MatchIt's ``mahvars`` matching (Mahalanobis on age, educ, re74, re75 within a
    caliper of 0.2 SD of the propensity score, order "data"), which
    ``risk_set(distance="mahalanobis", caliper=...)`` runs per stratum: our port
    gives every one of R's pairs, including which treated units stay unmatched."""
    from spevidence.match._design import mahalanobis_transform
    from spevidence.match._nn import nn_match_mahcovs

    case = "mahvars_caliper_ps"
    ps = _match(lalonde, "caliper_ps")
    t = lalonde["treat"].to_numpy()
    mah = mahalanobis_transform(lalonde, ["age", "educ", "re74", "re75"], t)
    n1 = int(t.sum())
    mm = nn_match_mahcovs(
        t, np.arange(n1), np.ones(n1, int), np.zeros(len(t), bool), 1, mah, None,
        ps.distance, ps.caliper,
    )  # fmt: skip
    ids = np.asarray(lalonde.index, dtype=object)
    ours = np.where(mm >= 0, ids[np.maximum(mm, 0)], "")
    gold = _golden_mm(lalonde, golden, case)
    assert (ours == gold).all(), np.argwhere(ours != gold)[:5]
    ga = golden["att"].set_index("case").loc[case]
    assert (mm[:, 0] >= 0).sum() == ga["n_matched_treated"] < n1
    assert ps.caliper == pytest.approx(ga["caliper"], rel=RTOL)
