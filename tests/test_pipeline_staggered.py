"""The staggered-adoption branch of the pipeline (design: staggered).

Recovery: on the ``staggered-national-random-timing`` scenario (referral timing unrelated
to passing peaks of use) the dynamic effects of ``protocols/national-staggered.yaml``
(Callaway-Sant'Anna and ETWFE Poisson, quarterly) cover the generator's true effects;
on ``staggered-national`` (referral at a peak of GP use) the same design is flagged by its
pre-trend test. End to end: ``spevidence run`` writes a disclosure-controlled bundle and a
report with the staggered section.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from spevidence.data import read_extracts, validate
from spevidence.errors import ProtocolError
from spevidence.link import build_panel
from spevidence.pipeline import RunResult, run
from spevidence.pipeline import staggered as ps
from spevidence.protocol import load_protocol
from spevidence.synthetic import generate, true_effect_by_quarter

ROOT = Path(__file__).resolve().parents[1]
PROTOCOL = ROOT / "protocols" / "national-staggered.yaml"
SCENARIOS = ROOT / "synthetic"


def staggered_fit(
    scenario: str, persons: int, seed: int, tmp: Path, estimators: tuple[str, ...]
) -> tuple[dict[str, pd.DataFrame], Path]:
    out = tmp / scenario
    generate(scenario, persons=persons, seed=seed, out=out, progress=False)
    proto = load_protocol(PROTOCOL)
    spec = proto.staggered_spec.model_copy(update={"estimators": estimators})
    proto = proto.model_copy(update={"outcomes": ("gp",), "staggered": spec})
    clean, _, _ = validate(read_extracts(out), start=proto.start, end=proto.end, ids="pseudonym")
    panel = build_panel(clean, start=proto.start, end=proto.end, period="quarter")
    table = ps.cohort_panel(panel.table, proto.staggered_spec).cache()
    raw, notes, _, _ = ps.estimate(table, proto)
    assert notes == []
    return raw, out


def test_random_timing_dynamic_effects_are_recovered(tmp_path: Path) -> None:
    raw, out = staggered_fit(
        "staggered-national-random-timing", 15_000, 1, tmp_path, ("callaway_santanna", "etwfe")
    )
    truth = true_effect_by_quarter(out, range(9))
    # the truth grows over the year after referral: the test has something to find
    assert truth[0] > -0.03 and truth[4] < -0.2
    st = raw["staggered"]
    dyn = st.loc[st["aggregation"] == "dynamic"]
    for name in ("Callaway-Sant'Anna", "Extended TWFE"):
        post = dyn.loc[(dyn["estimator"] == name) & (dyn["event"] >= 0)]
        assert sorted(post["event"]) == list(range(9))
        for _, r in post.iterrows():
            t = truth[int(r["event"])]
            assert r["conf_low"] <= t <= r["conf_high"], (name, r["event"], r["estimate"], t)
        # the reduction a year after referral is detected (CI below zero)
        assert float(post.loc[post["event"] == 4, "conf_high"].iloc[0]) < 0
    pre = dyn.loc[(dyn["estimator"] == "Callaway-Sant'Anna") & (dyn["event"] <= -2)]
    assert len(pre) == 7
    assert ((pre["conf_low"] <= 0) & (pre["conf_high"] >= 0)).all()
    # no pre-trends, and the joint test of those 7 leads agrees (the test of all 250
    # pre-treatment cells, with cohorts of ~70 people, rejects here: p = 0.0001)
    pt = raw["staggered_pretrend"].iloc[0]
    assert pt["test"] == "event-study leads -8 to -1" and pt["df"] == 7
    assert pt["p_value"] > 0.05


def test_referral_at_a_peak_is_flagged_by_the_pretrend_test(tmp_path: Path) -> None:
    # staggered-national: people are referred after a spike in their GP use. The same
    # design then mistakes the fall after the peak for an effect; its pre-trend test says so.
    raw, out = staggered_fit("staggered-national", 10_000, 1, tmp_path, ("callaway_santanna",))
    truth = true_effect_by_quarter(out, range(9))
    pt = raw["staggered_pretrend"]
    assert float(pt["p_value"].iloc[0]) < 1e-6
    st = raw["staggered"]
    cs = st.loc[(st["estimator"] == "Callaway-Sant'Anna") & (st["aggregation"] == "dynamic")]
    e1 = cs.loc[cs["event"] == 1].iloc[0]
    # regression to the mean: far more negative than the truth, the CI well clear of it
    assert e1["conf_high"] < truth[1] - 0.3


def test_protocol_checks_give_clear_errors() -> None:
    raw = yaml.safe_load(PROTOCOL.read_text())
    proto = load_protocol(raw)
    assert proto.design == "staggered" and proto.period == "quarter"
    assert proto.staggered_spec.control == "notyet"
    with pytest.raises(ProtocolError, match="design is 'matched'"):
        load_protocol({**raw, "design": "matched"})
    bad = {**raw, "staggered": {**raw["staggered"], "event_window": [1, 4]}}
    with pytest.raises(ProtocolError, match="event_window"):
        load_protocol(bad)
    bad = {**raw, "staggered": {**raw["staggered"], "cohort": "practice"}}
    with pytest.raises(ProtocolError, match=r"staggered\.cohort"):
        load_protocol(bad)
    # matched protocols keep their earlier form (and hash): no design fields in to_dict
    demo = load_protocol(ROOT / "protocols" / "demo.yaml")
    assert "design" not in demo.to_dict() and "staggered" not in demo.to_dict()
    assert proto.to_dict()["staggered"]["cohort"] == "referral"


def test_service_start_cohort_is_the_pcns_first_referral_period() -> None:
    import ibis

    df = pd.DataFrame(
        {
            "person_id": ["a", "a", "b", "b", "c", "c"],
            "t": [0, 1, 0, 1, 0, 1],
            "pcn_code": ["P1", "P1", "P1", "P1", "P2", "P2"],
            "referral_t": pd.array([pd.NA, pd.NA, 1, 1, pd.NA, pd.NA], dtype="Int64"),
        }
    )
    con = ibis.duckdb.connect()
    tab = con.create_table("p", df)
    spec = load_protocol(PROTOCOL).staggered_spec
    by_ref = ps.cohort_panel(tab, spec).to_pandas().sort_values(["person_id", "t"])
    assert by_ref["cohort"].tolist() == [0, 0, 2, 2, 0, 0]
    assert by_ref["tt"].tolist() == [1, 2, 1, 2, 1, 2]
    spec2 = spec.model_copy(update={"cohort": "service_start"})
    by_pcn = ps.cohort_panel(tab, spec2).to_pandas().sort_values(["person_id", "t"])
    assert by_pcn["cohort"].tolist() == [2, 2, 2, 2, 0, 0]


def test_withheld_estimates_and_flow() -> None:
    st = pd.DataFrame(
        {
            "estimate": [1.0, 2.0],
            "std_error": [0.1, 0.2],
            "conf_low": [0.8, 1.6],
            "conf_high": [1.2, 2.4],
            "p_value": [0.01, 0.02],
            "n": [7, 8],
        }
    )
    out = ps._withhold_small(st, 7)
    assert np.isnan(out["estimate"].iloc[0]) and out["estimate"].iloc[1] == 2.0
    att = pd.DataFrame({"reason": ["gone", "none"], "rows": [30, 0], "units": [3, 0]})
    fl = ps.flow(100, att, 97, 12)
    assert fl["step"].tolist()[1] == "Excluded: gone"
    assert int(fl["n_dropped"].iloc[1]) == 3 and int(fl["n"].iloc[2]) == 97


@pytest.fixture(scope="module")
def staggered_run(tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    """``spevidence run`` on a small staggered scenario: both estimators, two outcomes,
    and wellbeing measures (as the demo scenario makes them) so every activity output runs."""
    tmp = tmp_path_factory.mktemp("staggered_run")
    data = tmp / "data"
    scenario = yaml.safe_load((SCENARIOS / "staggered-national-random-timing.yaml").read_text())
    scenario["wellbeing"] = yaml.safe_load((SCENARIOS / "demo.yaml").read_text())["wellbeing"]
    (tmp / "scenario.yaml").write_text(yaml.safe_dump(scenario))
    generate(str(tmp / "scenario.yaml"), persons=3000, seed=2, out=data, progress=False)
    raw = yaml.safe_load(PROTOCOL.read_text())
    raw["outcomes"] = ["gp", "ae"]
    raw["staggered"]["estimators"] = ["callaway_santanna", "etwfe"]
    return run(load_protocol(raw), data, tmp / "out", formats=("html",), progress=False)


def test_run_end_to_end_writes_a_staggered_bundle_and_report(staggered_run: RunResult) -> None:
    res = staggered_run
    tables = res.bundle / "tables"
    st = pd.read_csv(tables / "staggered.csv")
    assert set(st["outcome"]) == {"gp", "ae"}
    assert set(st["aggregation"]) == {"simple", "dynamic"}
    # disclosure control: every released count is 0 or a multiple of 5 above the threshold
    for name in ("staggered", "staggered_cohorts", "staggered_trends", "attrition"):
        t = pd.read_csv(tables / f"{name}.csv")
        for col in [c for c in ("n", "n_dropped") if c in t.columns]:
            v = pd.to_numeric(t[col], errors="coerce").dropna()
            assert ((v % 5 == 0) & ((v == 0) | (v > 7))).all(), (name, col)
    # estimates on redacted (small) cells are withheld
    small = st["n"].isna()
    assert st.loc[small, "estimate"].isna().all()
    assert (res.bundle / "figures" / "staggered_event_study.png").is_file()
    html = res.reports["html"].read_text(encoding="utf-8")
    assert "Staggered adoption" in html
    assert "Dynamic effects by quarters since first treatment" in html
    assert "No matching in a staggered design" in html
    assert "first accepted referral" in html
    manifest = json.loads((res.bundle / "manifest.json").read_text())
    assert manifest["extra"]["design"] == "staggered"
    # the pre-test is the event-study leads' in the window (7 of them: -8..-2, -1 the base)
    pt = pd.read_csv(tables / "staggered_pretrend.csv")
    assert pt["test"].tolist() == ["event-study leads -8 to -1"] * 2
    assert (pt["df"] == 7).all() and pt["p_value"].between(0, 1).all()
    assert "joint Wald test of the event-study leads -8 to -1" in html


def test_staggered_run_values_the_callaway_santanna_effect(staggered_run: RunResult) -> None:
    bundle = staggered_run.bundle
    tables = bundle / "tables"
    for name in ("sroi_summary", "sroi_by_outcome", "sroi_sensitivity", "sroi_simulation"):
        assert (tables / f"{name}.parquet").is_file(), name
    assert (bundle / "figures" / "sroi_value_map.png").is_file()
    st = pd.read_parquet(tables / "staggered.parquet")
    simple = st.loc[st["aggregation"] == "simple"].set_index(["estimator", "outcome"])
    by = pd.read_parquet(tables / "sroi_by_outcome.parquet").set_index("outcome")
    assert set(by.index) == {"gp", "ae"}
    # quantity = avoided events a year = -(ATT per person-quarter) x 4 x treated people:
    # the same whole number of people for every outcome, the (rounded) released n
    people = {}
    for o in ("gp", "ae"):
        cs = float(simple.loc[("Callaway-Sant'Anna", o), "estimate"])
        people[o] = by.loc[o, "quantity"] / (-4.0 * cs)
        n_released = float(simple.loc[("Callaway-Sant'Anna", o), "n"])
        assert abs(people[o] - round(people[o])) < 1e-6, (o, people[o])
        # the released count itself, so the exact count cannot be worked back
        assert people[o] == pytest.approx(n_released, abs=1e-6), (o, people[o], n_released)
        # not the extended TWFE's estimate (it differs; on this small sample its Poisson
        # fit of A&E does not converge), nor a x 12 (monthly) conversion
        if o == "gp":
            etwfe = float(simple.loc[("Extended TWFE", o), "estimate"])
            assert abs(etwfe - cs) > 1e-4 * abs(cs)
        assert "Callaway-Sant'Anna simple ATT" in by.loc[o, "proxy_source"]
        # one year of benefit, discounted once at 3.5 %
        pv = by.loc[o, "quantity"] * by.loc[o, "proxy_gbp"] / 1.035
        assert by.loc[o, "present_value"] == pytest.approx(pv, rel=1e-9)
    assert people["gp"] == pytest.approx(people["ae"], rel=1e-12)
    summary = pd.read_parquet(tables / "sroi_summary.parquet").set_index("measure")["value"]
    assert summary["present_value"] == pytest.approx(by["present_value"].sum(), rel=1e-9)
    ratio = summary["present_value"] / summary["total_inputs"]
    assert summary["sroi_ratio"] == pytest.approx(ratio, rel=1e-9)
    # the bundle records the sroi: block it used and which estimate fed it; the report says so
    assert "sroi" in yaml.safe_load((bundle / "protocol.yaml").read_text())
    effect = json.loads((bundle / "manifest.json").read_text())["extra"]["sroi_effect"]
    assert "Callaway-Sant'Anna" in effect and "person-quarter" in effect and "× 4" in effect
    html = staggered_run.reports["html"].read_text(encoding="utf-8")
    assert "The change in NHS use that is valued is the Callaway-Sant" in html
    assert "bundle holds no `sroi_summary` table" not in html


def test_sroi_effects_prefer_callaway_santanna_and_skip_withheld() -> None:
    est = pd.DataFrame(
        {
            "outcome": ["gp", "ae", "gp", "ae", "gp"],
            "estimator": ["Extended TWFE"] * 2 + ["Callaway-Sant'Anna"] * 3,
            "aggregation": ["simple", "simple", "simple", "simple", "dynamic"],
            "estimate": [-0.5, -0.1, -0.4, np.nan, -0.9],
            "std_error": [0.1, 0.05, 0.1, np.nan, 0.2],
            "n": [200, 200, 200, 5, 200],
        }
    )
    eff, name = ps.sroi_effects(est)
    assert name == "Callaway-Sant'Anna"
    assert eff["outcome"].tolist() == ["gp"] and eff["estimate"].tolist() == [-0.4]
    eff, name = ps.sroi_effects(est.loc[est["estimator"] == "Extended TWFE"])
    assert name == "Extended TWFE" and eff["outcome"].tolist() == ["gp", "ae"]
    eff, name = ps.sroi_effects(est.assign(estimate=np.nan))
    assert eff.empty and name == ""


def test_staggered_bundle_has_the_service_activity_outputs(staggered_run: RunResult) -> None:
    from spevidence.pipeline.shared import service_activity

    bundle = staggered_run.bundle
    tables = bundle / "tables"
    for name in (
        "activity_referrals_by_period",
        "activity_outcomes",
        "equity_by_group",
        "casefinding_by_pcn",
        "wellbeing_paired_change",
    ):
        assert (tables / f"{name}.parquet").is_file(), name
    for name in ("activity_referrals_by_period", "equity_rates", "wellbeing_followup_pattern"):
        assert (bundle / "figures" / f"{name}.png").is_file(), name
    # by the protocol's period (quarters), released under the protocol's rules
    by_period = pd.read_parquet(tables / "activity_referrals_by_period.parquet")
    assert set(pd.to_datetime(by_period["period"]).dt.month) == {1, 4, 7, 10}
    v = pd.to_numeric(by_period["referrals"], errors="coerce").dropna()
    assert ((v % 5 == 0) & ((v == 0) | (v > 7))).all()
    assert v.sum() > 0
    log = pd.read_csv(bundle / "disclosure_log.csv")
    assert {"activity_referrals_by_period", "equity_by_group"} <= set(log["table"])
    # the matched design's code path, not a copy of it: the same tables from the extracts
    proto = load_protocol(bundle / "protocol.yaml")
    clean, _, _ = validate(
        read_extracts(bundle.parents[1] / "data"), start=proto.start, end=proto.end, ids=proto.ids
    )
    expected, _, _ = service_activity(clean, proto)
    for name in ("activity_referrals_by_period", "wellbeing_paired_change"):
        pd.testing.assert_frame_equal(
            pd.read_parquet(tables / f"{name}.parquet"), expected[name], check_dtype=False
        )
    html = staggered_run.reports["html"].read_text(encoding="utf-8")
    assert "Referrals to social prescribing by quarter" in html
    for missing in ("Service activity was not", "Equity of access was not", "No wellbeing"):
        assert missing not in html


def _shown(bundle: Path, template: str, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a report template's python cells here (no kernel); return what they show."""
    import spevidence.report.sections as sections
    from spevidence.report import template_dir
    from spevidence.report._qmd import parse_qmd

    shown: list[str] = []
    monkeypatch.setattr(sections, "show", shown.append)
    monkeypatch.chdir(workdir)
    ns: dict[str, object] = {}
    for cell in parse_qmd(template_dir() / f"{template}.qmd").cells:
        exec(compile(cell.source, f"{template}.qmd:{cell.line}", "exec"), ns)
        if "parameters" in cell.tags:
            ns["bundle"] = str(bundle)
    return "\n".join(shown)


def _ci(r: pd.Series) -> str:
    """An estimate with its CI as the report writes it (3 decimals, Unicode minus)."""

    def f(x: float) -> str:
        return ("−" if x < 0 else "") + f"{abs(x):,.3f}"

    return f"{f(r['estimate'])} per person per quarter (95% CI {f(r['conf_low'])} to " + (
        f"{f(r['conf_high'])})"
    )


def test_board_summary_states_the_staggered_headline(
    staggered_run: RunResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = staggered_run.bundle
    text = _shown(bundle, "summary", tmp_path, monkeypatch)
    assert "not run" not in text
    assert "The main comparison" not in text
    # the Callaway-Sant'Anna simple ATT the SROI values, from the released table
    st = pd.read_csv(bundle / "tables" / "staggered.csv")
    simple = st.loc[st["aggregation"] == "simple"].set_index(["estimator", "outcome"])
    assert "The estimates are the Callaway-Sant'Anna overall effect" in text
    for o, label in (("gp", "GP appointments"), ("ae", "A&E attendances")):
        assert f"**{label}**: {_ci(simple.loc[('Callaway-Sant' + chr(39) + 'Anna', o)])}" in text
    # the findings (after the key numbers, which list every estimator) state one estimator
    findings = text.split("were compared, quarter by quarter")[1]
    assert _ci(simple.loc[("Extended TWFE", "gp")]) not in findings
    n = int(pd.read_csv(bundle / "tables" / "attrition.csv")["n"].dropna().iloc[-1])
    assert f"- {n:,} people referred to link workers were compared, quarter by quarter" in text
    assert "people not yet referred or never referred" in text
    assert "matched comparators" not in text and "similar people" not in text
    # caveats as docs/methods.md gives them for this design
    assert "**Value for money**" in text
    assert "estimates resting on 7 or fewer treated people are withheld" in text
    assert "Staggered difference-in-differences removes stable differences" in text
    p = float(pd.read_csv(bundle / "tables" / "staggered_pretrend.csv")["p_value"].min())
    assert ("regression to the mean" in text) == (p < 0.05)
    assert ("followed parallel trends" in text) == (p >= 0.05)


def _variant(bundle: Path, tmp: Path, edit_table: Any = None, **protocol: Any) -> Any:
    """The board text of a copy of the bundle with its staggered table or protocol changed."""
    import shutil

    from spevidence.report.narrative import Narrative
    from spevidence.report.sections import ReportBundle

    copy = tmp / "bundle"
    shutil.copytree(bundle, copy)
    if edit_table is not None:
        path = copy / "tables" / "staggered.csv"
        edit_table(pd.read_csv(path)).to_csv(path, index=False)
    if protocol:
        raw = yaml.safe_load((copy / "protocol.yaml").read_text())
        raw["staggered"].update(protocol)
        (copy / "protocol.yaml").write_text(yaml.safe_dump(raw))
    nar = Narrative(ReportBundle(copy))
    return nar.key_numbers() + nar.board_findings() + nar.board_caveats()


def test_board_summary_withheld_fallback_and_disagreement(
    staggered_run: RunResult, tmp_path: Path
) -> None:
    cs, simple = "Callaway-Sant'Anna", "simple"

    def withhold_cs_gp(st: pd.DataFrame) -> pd.DataFrame:
        hit = (st["estimator"] == cs) & (st["outcome"] == "gp") & (st["aggregation"] == simple)
        return st.assign(estimate=st["estimate"].mask(hit), std_error=st["std_error"].mask(hit))

    text = _variant(staggered_run.bundle, tmp_path / "a", withhold_cs_gp)
    assert "**GP appointments**: withheld (it rests on 7 or fewer treated people)" in text
    assert "Callaway-Sant'Anna overall effect" in text  # A&E still has its CS estimate

    def no_cs(st: pd.DataFrame) -> pd.DataFrame:
        return st.assign(estimate=st["estimate"].mask(st["estimator"] == cs))

    text = _variant(staggered_run.bundle, tmp_path / "b", no_cs)
    assert "The estimates are the Extended TWFE overall effect" in text
    etwfe = pd.read_csv(staggered_run.bundle / "tables" / "staggered.csv")
    etwfe = etwfe.loc[
        (etwfe["estimator"] == "Extended TWFE")
        & (etwfe["aggregation"] == simple)
        & (etwfe["outcome"] == "gp")
    ].iloc[0]
    assert _ci(etwfe) in text
    assert "disagree" not in text

    def far_apart(st: pd.DataFrame) -> pd.DataFrame:
        hit = (st["estimator"] == "Extended TWFE") & (st["aggregation"] == simple)
        hit &= st["outcome"] == "gp"
        return st.assign(
            estimate=st["estimate"].mask(hit, 5.0),
            conf_low=st["conf_low"].mask(hit, 4.0),
            conf_high=st["conf_high"].mask(hit, 6.0),
        )

    text = _variant(staggered_run.bundle, tmp_path / "c", far_apart)
    assert "The two estimators disagree for GP appointments" in text
    text = _variant(staggered_run.bundle, tmp_path / "d", cohort="service_start")
    assert "people registered in PCNs that started a link-worker service" in text
    assert "people in PCNs whose service had not yet started, or never did" in text
    assert "regression to the mean" not in text  # timing set by the service, not by referral
    assert "People in PCNs with a link-worker service in the final analysis" in text
    assert "Referred people" not in text


def test_sroi_values_nobody_when_the_treated_count_would_be_redacted() -> None:
    from spevidence.pipeline.shared import sroi_of_effects

    proto = load_protocol(PROTOCOL)
    effects = pd.DataFrame({"outcome": ["gp"], "estimate": [-0.2], "std_error": [0.05]})
    kw = {"ae_department_types": None, "source": "test", "described": "test"}
    assert sroi_of_effects(effects, proto, persons=7, **kw) == ({}, "")
    tables, said = sroi_of_effects(effects, proto, persons=402, **kw)
    by = tables["sroi_by_outcome"].set_index("outcome")
    assert by.loc["gp", "quantity"] == pytest.approx(0.2 * 4 * 400)  # the released 400
    assert "rounded to the nearest 5" in said


def test_report_says_when_the_pretrend_test_could_not_be_computed(
    staggered_run: RunResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    from spevidence.report.narrative import Narrative
    from spevidence.report.sections import ReportBundle

    monkeypatch.chdir(tmp_path)  # the section draws its figures into the working folder
    bundle = staggered_run.bundle
    pt = pd.read_csv(bundle / "tables" / "staggered_pretrend.csv")
    if (pt["p_value"] >= 0.05).all():  # as run: the section names the test that ran
        section = Narrative(ReportBundle(bundle)).staggered()
        assert "joint Wald test of the event-study leads -8 to -1: p ≥ 0.05" in section
    # no p-value (e.g. a singular covariance): neither "passed" nor "parallel"
    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy)
    note = "covariance singular (reciprocal condition number 1.0e-17): not tested"
    pt.assign(statistic=np.nan, p_value=np.nan, note=note).to_csv(
        copy / "tables" / "staggered_pretrend.csv", index=False
    )
    nar = Narrative(ReportBundle(copy))
    assert "| Parallel pre-referral trends | not computed |" in nar.key_numbers()
    assert "could not be computed" in nar.board_caveats()
    section = nar.staggered()
    assert f"event-study leads -8 to -1 could not be computed ({note})" in section
    for text in (nar.key_numbers(), nar.board_caveats(), section):
        assert "passed" not in text and "followed parallel" not in text
        assert "moved in parallel" not in text
