"""Matching gives the same pairs on any machine (issue 19): distances that differ only
by floating-point noise count as equal (``_nn.on_grid``), saturated propensity scores
share one distance (``risk_set.saturate``), and equal distances are broken by a stated
rule. The CPU's BLAS kernel cannot be switched inside a test (OPENBLAS_CORETYPE is
read at start-up and must be left alone), so the noise is made here: covariates moved
by one part in 1e12 must give the same pairs."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from match_synth import make_panel

from spevidence.match import nearest, risk_set
from spevidence.match._nn import GRID_BITS, nn_match_vec, on_grid
from spevidence.match.risk_set import SATURATED, saturate

GOLDEN = Path(__file__).parent / "golden"
COVS = ["age", "educ", "race", "married", "nodegree", "re74", "re75"]


def _jitter(x: np.ndarray, rng: np.random.Generator, rel: float = 1e-12) -> np.ndarray:
    return x * (1 + rel * rng.uniform(-1, 1, len(x)))


def _pairs(rs) -> list[tuple[str, str, int]]:  # type: ignore[no-untyped-def]
    p = rs.pairs
    return list(zip(p["case_person_id"], p["comparator_person_id"], p["index_t"], strict=True))


def test_on_grid_makes_noise_equal_and_keeps_real_differences() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(-3.0, 2.0, 5000)
    g = on_grid(x)
    assert np.array_equal(on_grid(g), g)  # idempotent: the grid is exact
    span = x.max() - x.min()
    q = math.ldexp(1.0, math.frexp(span)[1] - GRID_BITS)
    assert np.all(np.abs(g - x) <= q / 2)
    assert np.array_equal(np.round(g / q), g / q)  # every value on the grid
    noisy = on_grid(_jitter(x, rng, 1e-14))
    # all but values within noise of a grid boundary (expected ~0 of 5,000) land equal
    assert (noisy != g).sum() <= 1
    # differences far above the grid survive: the order of distinct values is kept
    assert np.array_equal(np.argsort(g, kind="stable"), np.argsort(x, kind="stable"))
    m = on_grid(np.column_stack([x, 1e-6 * x]))  # matrices: column by column
    assert np.array_equal(m[:, 0], g) and np.array_equal(m[:, 1], on_grid(1e-6 * x))


def test_saturated_scores_share_one_distance() -> None:
    eta = np.array([-40.0, -20.566039, -20.566075, 0.69, 25.0])
    s = saturate(eta)
    assert s[0] == s[1] == s[2] == -SATURATED and s[4] == SATURATED
    assert s[3] == 0.69
    assert abs(1 / (1 + math.exp(SATURATED)) - 1e-8) < 1e-15


def test_equal_distances_go_to_the_first_control_in_data_order() -> None:
    # treated at 0; controls at -1 (rows 1, 3) and +1 (rows 2, 4): all equally near
    treat = np.array([1, 0, 0, 0, 0])
    dist = np.array([0.0, -1.0, 1.0, -1.0, 1.0])
    args = (treat, np.array([0]), np.array([2]), np.zeros(5, dtype=bool), 1, dist)
    assert nn_match_vec(*args, ties="data").tolist() == [[1, 2]]
    # MatchIt's rule takes the nearest in sorted position, left side first
    assert nn_match_vec(*args, ties="matchit")[0, 0] == 3


@pytest.mark.parametrize("distance", ["glm", "mahalanobis"])
def test_risk_set_pairs_survive_noise_in_the_covariates(distance: str) -> None:
    panel = make_panel(n_people=2500, n_periods=24, seed=24)
    kw = {
        "covariates": ["prior_gp", "recent_gp", "age"],
        "exact": ("sex",),
        "lookback": 6,
        "caliper": 0.2,
        "distance": distance,
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        base = risk_set(panel, **kw)  # type: ignore[arg-type]
        rng = np.random.default_rng(7)
        noisy = panel.assign(
            gp=_jitter(panel["gp"].to_numpy(dtype=float) + 1.0, rng) - 1.0,
            # age (a covariate) is the index year minus this: moved by 1e-12 years
            year_of_birth=panel["year_of_birth"] + 1e-12 * rng.uniform(-1, 1, len(panel)),
        )
        moved = risk_set(noisy, **kw)  # type: ignore[arg-type]
    assert len(base.pairs) > 50
    # the noise really reached the distances (else the test proves nothing) ...
    d0, d1 = base.pool["distance"].to_numpy(), moved.pool["distance"].to_numpy()
    assert not np.array_equal(d0, d1) and np.allclose(d0, d1, rtol=0, atol=1e-8)
    # ... and the pairs did not move
    assert _pairs(base) == _pairs(moved)


@pytest.mark.parametrize("ties", ["matchit", "data"])
@pytest.mark.parametrize("distance", ["glm", "mahalanobis"])
def test_nearest_pairs_survive_noise_in_the_covariates(distance: str, ties: str) -> None:
    d = pd.read_csv(GOLDEN / "match_lalonde.csv", index_col="id")
    rng = np.random.default_rng(3)
    noisy = d.assign(**{c: _jitter(d[c].to_numpy(dtype=float), rng) for c in ("age", "educ")})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = nearest(d, treat="treat", covariates=COVS, distance=distance, ties=ties)  # type: ignore[arg-type]
        b = nearest(noisy, treat="treat", covariates=COVS, distance=distance, ties=ties)  # type: ignore[arg-type]
    assert np.array_equal(a.match_matrix, b.match_matrix)
