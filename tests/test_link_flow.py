"""The bundle's cohort flow starts from the registration records read and carries every
linkage exclusion into the matching flow; it reconciles, and it is released only after
disclosure control."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

import spevidence.synthetic as synthetic
from spevidence import describe
from spevidence.data import read_extracts, validate
from spevidence.data.flow import linkage_flow
from spevidence.identity import Key
from spevidence.link import build_panel
from spevidence.match import risk_set
from spevidence.pipeline.matched import _attrition, _cohort_flow
from spevidence.pipeline.shared import release
from spevidence.protocol import load_protocol
from spevidence.protocol._model import TRAJECTORY
from spevidence.report.figures import _flow_steps

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def linked(tmp_path_factory):
    from spevidence.synthetic._scenario import Defects

    sc = synthetic.load_scenario("demo")
    # a population defect the flow must show: invalid NHS numbers (rows excluded)
    d = Defects(invalid_nhs_number=0.03, duplicate_events=0.02)
    out = tmp_path_factory.mktemp("flow")
    synthetic.generate(
        sc.model_copy(update={"defects": d}), persons=1500, seed=3, out=out,
        identifiers="nhs_number",
    )  # fmt: skip
    start, end = sc.window.start, sc.window.end
    raw = read_extracts(out)
    clean, _, att = validate(raw, start=start, end=end, ids="nhs_number", key=Key(b"f" * 32))
    panel = build_panel(clean, start=start, end=end)
    frame = describe.lagged_sums(panel.to_pandas(), "gp", TRAJECTORY)
    matched = risk_set(frame, seed=1)
    truth = json.loads((out / "truth.json").read_text())
    return raw, att, panel, matched, truth


def _reconcile(flow: pd.DataFrame) -> None:
    """Each step = the step before minus the exclusions between them."""
    last = None
    dropped = 0
    for rec in flow.to_dict("records"):
        if pd.isna(rec["n"]):
            dropped += int(rec["n_dropped"])
            continue
        if last is not None:
            assert last - dropped == int(rec["n"]), rec["step"]
        last, dropped = int(rec["n"]), 0


def test_flow_starts_from_records_read_and_reconciles(linked):
    raw, att, panel, matched, _ = linked
    flow = _cohort_flow(att, panel.attrition, _attrition(matched))
    assert flow.loc[0, "step"] == "Registration records in the population extract"
    assert int(flow.loc[0, "n"]) == raw.row_counts["population"]
    _reconcile(flow)
    steps = flow.loc[flow["n"].notna(), "step"].tolist()
    assert steps[:3] == ["Registration records in the population extract",
                         "People in the population", "People in the panel"]  # fmt: skip
    assert steps[3] == "referred people in panel" and steps[-1] == "matched cases"
    # every population exclusion from validation appears, with its count
    drops = flow.loc[flow["n_dropped"].notna()]
    excl = dict(zip(drops["reason"], drops["n_dropped"].astype(int), strict=True))
    assert sorted(n for r, n in excl.items() if "NHS" in r or "duplicate" in r) == sorted(
        att.excluded("population").values()
    )
    assert sum(att.excluded("population").values()) > 0  # the defects were excluded
    why = "no day registered and alive in the study window"
    assert excl.get(why, 0) == panel.attrition.excluded("panel_persons")[why]
    # the people in the panel are the people in the panel table
    n_panel = int(flow.loc[flow["step"] == "People in the panel", "n"].iloc[0])
    assert n_panel == panel.to_pandas()["person_id"].nunique()


def test_flow_figure_starts_from_the_records_read(linked):
    _, att, panel, matched, _ = linked
    flow = _cohort_flow(att, panel.attrition, _attrition(matched))
    steps = _flow_steps(flow)
    assert steps[0]["label"].startswith("Registration records")
    assert steps[1]["excluded"], "population exclusions shown beside the first arrow"
    assert steps[-1]["label"] == "matched cases"


def test_released_flow_and_linkage_table_pass_disclosure_control(linked):
    _, att, panel, matched, _ = linked
    proto = load_protocol(ROOT / "protocols" / "demo.yaml")
    tables = {
        "attrition": _cohort_flow(att, panel.attrition, _attrition(matched)),
        "linkage_attrition": (att + panel.attrition).table(),
    }
    safe, log = release(tables, proto)
    thr, rnd = proto.disclosure.threshold, proto.disclosure.rounding
    for name, cols in (("attrition", ["n", "n_dropped"]), ("linkage_attrition", ["rows"])):
        for c in cols:
            vals = pd.to_numeric(safe[name][c], errors="coerce").dropna()
            assert ((vals == 0) | (vals >= thr)).all(), (name, c)
            assert (vals % rnd == 0).all(), (name, c)
    assert set(log["table"]) >= {"attrition", "linkage_attrition"}
    # the linkage table covers every extract, reconciling before release
    lt = tables["linkage_attrition"]
    assert set(lt["table"]) >= {"population", "gp_appointments", "panel_persons"}
    assert (att + panel.attrition).reconciles()


def test_linkage_flow_refuses_counts_that_cannot_reconcile(linked):
    from spevidence.errors import DataError

    _, att, panel, _, _ = linked
    with pytest.raises(DataError, match="does not reconcile"):
        linkage_flow(att, panel.attrition, referred=10**9)
