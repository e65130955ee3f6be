"""End to end: synthetic ICB -> protocol run -> bundle -> report, twice, byte for byte."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from spevidence import describe
from spevidence.bundle import scan_paths, verify_bundle
from spevidence.pipeline import demo_key, run
from spevidence.protocol import load_protocol
from spevidence.synthetic import generate

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.xdist_group("pipeline")


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    base = tmp_path_factory.mktemp("e2e")
    data = base / "data"
    generate("demo", persons=3000, seed=11, out=data)
    key = base / "k.key"
    key.write_bytes(demo_key(11))
    proto = load_protocol(ROOT / "protocols" / "demo.yaml")
    proto = proto.model_copy(update={"sroi": proto.sroi.model_copy(update={"n_sims": 200})})
    for name in ("a", "b"):
        run(
            proto,
            data,
            base / name,
            key_file=key,
            formats=("html", "pdf"),
            report_engine="builtin",
            progress=False,
        )
    return base / "a", base / "b", data


def test_outputs_exist_and_bundle_verifies(runs: tuple[Path, Path, Path]) -> None:
    a, _, _ = runs
    assert (a / "report.html").stat().st_size > 10_000
    assert (a / "report.pdf").read_bytes()[:5] == b"%PDF-"
    assert (a / "bundle" / "manifest.json").is_file()
    assert verify_bundle(a / "bundle") == []


def test_two_runs_are_byte_identical(runs: tuple[Path, Path, Path]) -> None:
    a, b, _ = runs
    da, db = _digest(a / "bundle"), _digest(b / "bundle")
    assert da == db
    assert (a / "report.html").read_bytes() == (b / "report.html").read_bytes()
    assert (a / "report.pdf").read_bytes() == (b / "report.pdf").read_bytes()


def test_estimates_cover_every_outcome_and_model(runs: tuple[Path, Path, Path]) -> None:
    a, _, _ = runs
    did = pd.read_csv(a / "bundle" / "tables" / "did_estimates.csv")
    assert set(zip(did["outcome"], did["model"], strict=True)) == {
        (o, m) for o in ("gp", "ae", "admissions") for m in ("linear", "poisson")
    }
    assert (did["conf_low"] <= did["estimate"]).all() and (
        did["estimate"] <= did["conf_high"]
    ).all()


def test_case_finding_score_is_a_matching_covariate(runs: tuple[Path, Path, Path]) -> None:
    a, _, _ = runs
    bal = pd.read_csv(a / "bundle" / "tables" / "balance.csv").set_index("covariate")
    assert "risk_score" in bal.index
    assert abs(bal.loc["risk_score", "smd_after"]) < abs(bal.loc["risk_score", "smd_before"])


def test_case_finding_counts_frequent_attenders(runs: tuple[Path, Path, Path]) -> None:
    # validation drops GP appointments before the window, so the score is taken a full
    # look-back (365 days) after the start (2021-04-01), not on the start (an empty year)
    a, _, _ = runs
    fac = pd.read_csv(a / "bundle" / "tables" / "casefinding_factors.csv").set_index("factor")
    assert (fac["scored_on"] == "2022-04-01").all()
    assert fac.loc["Frequent GP attender", "people"] >= 100
    assert pd.isna(fac.loc["Frequent GP attender", "note"])  # the look-back is complete
    html = (a / "report.html").read_text(encoding="utf-8")
    assert "score measured on 2022-04-01" in html


def test_no_identifier_or_small_count_leaves(runs: tuple[Path, Path, Path]) -> None:
    a, _, data = runs
    files = [p for p in (a / "bundle").rglob("*") if p.is_file()] + [a / "report.html"]
    # the manifest's own SHA-256 hashes look like tokens; they are allowed, nothing else
    manifest = (a / "bundle" / "manifest.json").read_text(encoding="utf-8")
    hashes = set(re.findall(r"[0-9a-f]{64}", manifest))
    # and the manifest's own SHA-256, which the report prints as its anchor
    hashes.add(hashlib.sha256(manifest.encode("utf-8")).hexdigest())
    assert scan_paths(files, allow=hashes) == []
    # no pseudonym or NHS number from the extracts appears anywhere in the outputs
    ids = pd.read_parquet(data / "population.parquet", columns=["person_id"])["person_id"]
    blob = b"".join(p.read_bytes() for p in files)
    assert not any(str(i).encode() in blob for i in ids.iloc[:500])
    # every released count is 0 or >= 8 and a multiple of 5
    for csv in (a / "bundle" / "tables").glob("*.csv"):
        t = pd.read_csv(csv)
        for col in [c for c in t.columns if c in ("n", "rows", "n_dropped", "n_group")]:
            v = pd.to_numeric(t[col], errors="coerce").dropna()
            assert ((v == 0) | ((v >= 8) & (v % 5 == 0))).all(), (csv.name, col)


def test_report_html_is_self_contained(runs: tuple[Path, Path, Path]) -> None:
    a, _, _ = runs
    html = (a / "report.html").read_text(encoding="utf-8")
    external = re.findall(r"""(?:src|href)\s*=\s*["']https?://""", html)
    assert external == []


def test_rare_outcomes_are_trended_by_quarter_or_half_year(tmp_path: Path) -> None:
    # the demo's size (5,000 people, about 170 referred): by month most A&E and admission
    # counts are 1-7 and withheld; pooled over quarters (A&E) or half-years (admissions,
    # rarer still) the trends figure has points to show
    from spevidence.data import read_extracts, validate
    from spevidence.identity import load_key
    from spevidence.pipeline import matched_cohort, matching_panel
    from spevidence.pipeline.matched import _trends
    from spevidence.pipeline.shared import release
    from spevidence.report.figures import trends as trends_figure

    generate("demo", persons=5000, seed=20260101, out=tmp_path / "data", progress=False)
    (tmp_path / "k.key").write_bytes(demo_key(20260101))
    proto = load_protocol(ROOT / "protocols" / "demo.yaml")
    clean, _, _ = validate(
        read_extracts(tmp_path / "data"),
        start=proto.start,
        end=proto.end,
        ids=proto.ids,
        key=load_key(tmp_path / "k.key"),
    )
    panel, _ = matching_panel(clean, proto)
    _, matched = matched_cohort(panel, proto)
    e = matched["event_time"]
    window = matched.loc[(e >= -proto.did.pre) & (e < proto.did.post)]

    def released(table: pd.DataFrame) -> pd.DataFrame:
        return release({"trends": table}, proto)[0]["trends"]

    def share_withheld(table: pd.DataFrame, outcome: str) -> float:
        return float(table.loc[table["outcome"] == outcome, "mean"].isna().mean())

    monthly = released(describe.trends(window, outcomes=proto.outcomes))
    assert share_withheld(monthly, "ae") > 0.5 and share_withheld(monthly, "admissions") > 0.5
    assert share_withheld(monthly, "gp") == 0
    raw = _trends(window, proto)
    months = raw.groupby("outcome")["months"].agg(set).to_dict()
    assert months == {"gp": {1}, "ae": {3}, "admissions": {6}}
    # by quarter, admissions are still mostly withheld: hence half-years
    by_quarter = released(describe.trends(window, outcomes=("admissions",), months=3))
    assert share_withheld(by_quarter, "admissions") > 0.5
    safe = released(raw)
    for o in ("ae", "admissions"):
        assert share_withheld(safe, o) < 0.5 < share_withheld(monthly, o)
    # every released mean is the ratio of the released (rounded) counts
    shown = safe.dropna(subset=["mean"])
    assert len(shown) > 0.75 * len(safe)
    ratio = shown["n_events"].astype(float) / shown["n_weight"].astype(float)
    assert np.allclose(shown["mean"], ratio, rtol=0, atol=1e-12)
    for c in ("n", "n_events", "n_weight"):
        v = safe[c].dropna().astype(int)
        assert ((v == 0) | ((v > 7) & (v % 5 == 0))).all(), c
    # a pooled period's raw counts are the sums of its months'
    raw_m = describe.trends(window, outcomes=("admissions",))
    for _, r in raw.loc[raw["outcome"] == "admissions"].iterrows():
        block = raw_m.loc[
            (raw_m["group"] == r["group"])
            & raw_m["event_time"].between(r["event_time"], r["event_time"] + 5)
        ]
        assert r["n"] == block["n"].sum()
    # the figure draws a pooled period at its middle month and says which period it is
    fig = trends_figure(safe)
    titles = {ax.get_title("left") or ax.get_title(): ax for ax in fig.axes}
    adm = titles["Unplanned admissions, by half-year"]
    lines = [ln for ln in adm.get_lines() if ln.get_marker() == "s"]  # not the referral line
    assert len(lines) == 2  # referred, comparators
    x = sorted({float(v) for ln in lines for v in ln.get_xdata()})
    assert x == [-9.5, -3.5, 2.5, 8.5]
    assert "A&E attendances, by quarter" in titles and "GP appointments" in titles
