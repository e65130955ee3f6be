"""did estimates on mpdta against golden pyfixest values (tests/golden/did_mpdta_pyfixest.csv).

The golden file and the script that made it (did_make_mpdta_pyfixest.py) live side by side;
this test runs without pyfixest installed.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from spevidence.did import twfe, two_by_two

GOLDEN = pd.read_csv(Path(__file__).parent / "golden" / "did_mpdta_pyfixest.csv").set_index("model")


@pytest.fixture(scope="module")
def mpdta() -> pd.DataFrame:
    spec = importlib.util.find_spec("moderndid")
    if spec is None or spec.origin is None:
        pytest.skip("moderndid (carries the mpdta data) not installed")
    d = pd.read_pickle(Path(spec.origin).parent / "core" / "datasets" / "mpdta_long.pkl.gz")
    d["D"] = ((d["first.treat"] > 0) & (d["year"] >= d["first.treat"])).astype(int)
    d["emp"] = np.round(np.exp(d["lemp"]))
    d["treated"] = (d["first.treat"] > 0).astype(int)
    d["post"] = (d["year"] >= 2006).astype(int)
    return d


@pytest.mark.parametrize("path", ["rows", "moments"])
@pytest.mark.parametrize("name", list(GOLDEN.index))
def test_mpdta_matches_golden_pyfixest(mpdta: pd.DataFrame, name: str, path: str) -> None:
    kind, model = name.split("_")
    y = "lemp" if model == "linear" else "emp"
    common = dict(yname=y, idname="countyreal", tname="year", model=model, path=path)
    if kind == "twfe":
        r = twfe(mpdta, dname="D", **common)  # type: ignore[arg-type]
    else:
        r = two_by_two(mpdta, treat="treated", post="post", **common)  # type: ignore[arg-type]
    g = GOLDEN.loc[name]
    row = r.tidy().set_index("term").loc[r.main_term]
    assert row["estimate"] == pytest.approx(g["estimate"], rel=1e-8)
    assert row["std_error"] == pytest.approx(g["std_error"], rel=1e-6)
    assert row["conf_low"] == pytest.approx(g["conf_low"], rel=1e-6)
    assert row["conf_high"] == pytest.approx(g["conf_high"], rel=1e-6)
    assert r.n_obs == g["n"]
