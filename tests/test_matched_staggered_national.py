"""The staggered-national scenario's true effects, recovered by the matched design.

On ``staggered-national`` people are referred after a spike in their own GP use; the
whole-population staggered design then reports the fall after the peak as an effect
(``tests/test_pipeline_staggered.py`` shows it flagged). Matching each referred person at
the month of referral to a not-yet-referred person with exactly the same recent GP count
(``analyses/03-national-staggered/matched-at-referral.yaml``) recovers the generator's
truth month by month. Slow (about a minute): it runs the whole pipeline.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from spevidence.pipeline import run
from spevidence.protocol import load_protocol
from spevidence.synthetic import generate

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

PROTOCOL = ROOT / "analyses" / "03-national-staggered" / "matched-at-referral.yaml"


def test_matched_design_recovers_staggered_national_truth(tmp_path: Path) -> None:
    data = tmp_path / "data"
    generate("staggered-national", persons=30_000, seed=1, out=data, progress=False)
    res = run(load_protocol(PROTOCOL), data, tmp_path / "out", formats=(), progress=False)
    truth = json.loads((data / "truth.json").read_text(encoding="utf-8"))
    by_month = {int(r["event_month"]): float(r["att_gp"]) for r in truth["att_by_event_month"]}
    # the truth grows over the year after referral: there is something to find
    assert by_month[0] > -0.02 and by_month[11] < -0.08

    tables = res.bundle / "tables"
    did = pd.read_csv(tables / "did_estimates.csv")
    lin = did.loc[(did["outcome"] == "gp") & (did["model"] == "linear")].iloc[0]
    mean_truth = sum(by_month[m] for m in range(12)) / 12
    assert lin["conf_low"] <= mean_truth <= lin["conf_high"], (lin["estimate"], mean_truth)

    es = pd.read_csv(tables / "event_study.csv")
    es = es.loc[es["outcome"] == "gp"]
    post = es.loc[es["event_time"] >= 0]
    covers = [
        r.conf_low <= by_month.get(int(r.event_time), 0.0) <= r.conf_high for r in post.itertuples()
    ]
    assert len(covers) == 13
    assert sum(covers) >= 10, post[["event_time", "estimate", "conf_low", "conf_high"]]
    # no peak left before referral: the national design shows about -2 per quarter there
    # (-0.7 a month), a propensity score without exact matching about -0.2 a month
    pre = es.loc[es["event_time"] <= -2]
    assert len(pre) == 11
    assert pre["estimate"].abs().max() < 0.1, pre[["event_time", "estimate"]]
