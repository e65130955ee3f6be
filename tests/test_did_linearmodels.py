"""TWFE against linearmodels' PanelOLS (entity and time effects), a second peer beside pyfixest.

With ``debiased=False, auto_df=False, count_effects=False, group_debias=True`` PanelOLS
scales the cluster-robust sandwich by G/(G-1)·(N-1)/N only; spevidence's CRV1 (as
fixest's) scales it by G/(G-1)·(N-1)/(N-K), where K counts the treatment, the period
effects and one intercept (unit effects nested in the clusters count as one): the two
differ by N/(N-K).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from spevidence.did import twfe

PanelOLS = pytest.importorskip("linearmodels.panel").PanelOLS


@pytest.fixture(scope="module")
def mpdta() -> pd.DataFrame:
    spec = importlib.util.find_spec("moderndid")  # locate the data without importing it
    if spec is None or spec.origin is None:
        pytest.skip("moderndid (test-only peer carrying mpdta) not installed")
    d = pd.read_pickle(Path(spec.origin).parent / "core" / "datasets" / "mpdta_long.pkl.gz")
    d["D"] = ((d["first.treat"] > 0) & (d["year"] >= d["first.treat"])).astype(int)
    return d


@pytest.mark.parametrize("path", ["rows", "moments"])
def test_twfe_linear_matches_panelols_on_mpdta(mpdta: pd.DataFrame, path: str) -> None:
    r = twfe(mpdta, yname="lemp", idname="countyreal", tname="year", dname="D", path=path)
    p = mpdta.set_index(["countyreal", "year"])
    ref = PanelOLS(p["lemp"], p[["D"]], entity_effects=True, time_effects=True).fit(
        cov_type="clustered",
        cluster_entity=True,
        debiased=False,
        auto_df=False,
        count_effects=False,
        group_debias=True,
    )
    n, k = len(mpdta), 1 + (mpdta["year"].nunique() - 1) + 1
    assert n == ref.nobs == r.n_obs == 2500
    assert r.coef() == pytest.approx(ref.params["D"], rel=1e-8)
    assert r.se() == pytest.approx(ref.std_errors["D"] * np.sqrt(n / (n - k)), rel=1e-8)
