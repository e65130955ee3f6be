"""Issue 7 scenario checks: the matched design recovers the generator's true effects.

Each synthetic ICB is validated, linked, risk-set matched with its protocol (comparators
followed with the protocol's censoring rule, ``ipcw`` by default) and analysed with the
Poisson DiD over 12 months before / 12 months after, as ``spevidence run`` does. The
truth is the generator's rate ratio over event months 0-11 (``att_by_event_month``, so
that the ramp-up of the effect is counted as in the analysis window).

Sizes and seeds are fixed in advance (seed 1 everywhere); across seeds the design's
mean bias is measured by ``analyses/01-regression-to-the-mean/diagnose.py`` and
``benchmarks/coverage_design.py`` (numbers in analyses/01's README).
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import pandas as pd
import pytest

from spevidence import describe
from spevidence.data import read_extracts, validate
from spevidence.did import two_by_two
from spevidence.pipeline import matched_cohort, matching_panel
from spevidence.protocol import load_protocol
from spevidence.synthetic import generate, true_rate_ratio

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _analyse(scenario: str, protocol: str, persons: int, seed: int, tmp: Path):
    proto = load_protocol(ROOT / "protocols" / f"{protocol}.yaml")
    if scenario == "null-effect":  # referral there has no "> 15 GP visits" rule
        proto = proto.model_copy(
            update={"match": proto.match.model_copy(update={"eligibility": ()})}
        )
    res = generate(scenario, persons=persons, seed=seed, out=tmp, identifiers="pseudonym")
    clean, _, _ = validate(read_extracts(tmp), start=proto.start, end=proto.end)
    panel, _ = matching_panel(clean, proto)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, md = matched_cohort(panel, proto)
        w = md.loc[(md["event_time"] >= -proto.did.pre) & (md["event_time"] < proto.did.post)]
        est = {}
        for o in proto.outcomes:
            r = two_by_two(
                w,
                yname=o,
                idname="unit_id",
                tname="event_time",
                treat="treated",
                post="post",
                model="poisson",
                exposure="exposure_days",
                cluster="person_id",
                weights="weights",
            ).tidy()
            est[o] = r.iloc[0]
    naive = describe.naive_before_after(
        w, outcomes=proto.outcomes, pre=proto.did.pre, post=proto.did.post
    ).set_index("outcome")
    truth = {o: true_rate_ratio(res.truth, o, proto.did.post) for o in proto.outcomes}
    n_cases = int(w.loc[w["treated"] == 1, "unit_id"].nunique())
    return est, naive, truth, n_cases


def _covers(row: pd.Series, rr: float) -> bool:
    return bool(row["rr_conf_low"] <= rr <= row["rr_conf_high"])


def test_null_effect_matched_ci_covers_zero_while_before_after_falls(tmp_path):
    est, naive, truth, n = _analyse("null-effect", "frequent-attenders", 20000, 1, tmp_path)
    assert n >= 400
    assert truth["gp"] == pytest.approx(1.0)
    # the before/after among the referred shows a large spurious fall ...
    assert naive.loc["gp", "change_pct"] <= -15.0
    # ... the matched DiD does not: its CI covers no effect, and it is far above the fall
    gp = est["gp"]
    assert _covers(gp, 1.0), gp
    assert 100 * (gp["rate_ratio"] - 1) > naive.loc["gp", "change_pct"] + 10


def test_frequent_attenders_ci_covers_the_true_effects(tmp_path):
    est, naive, truth, n = _analyse("frequent-attenders", "frequent-attenders", 20000, 1, tmp_path)
    assert n >= 300
    assert truth["gp"] < 0.85  # GP -20 % after a three-month ramp-up
    for o in ("gp", "ae", "admissions"):
        assert _covers(est[o], truth[o]), (o, est[o], truth[o])
    # the before/after overstates the GP fall by regression to the mean
    assert naive.loc["gp", "change_pct"] < 100 * (truth["gp"] - 1) - 10


def test_kent_ae_ci_covers_the_true_effects(tmp_path):
    est, _, truth, n = _analyse("kent-ae", "kent-ae", 20000, 1, tmp_path)
    assert n >= 300
    assert math.isclose(truth["ae"], 0.85, abs_tol=0.03)
    for o in ("gp", "ae", "admissions"):
        assert _covers(est[o], truth[o]), (o, est[o], truth[o])
