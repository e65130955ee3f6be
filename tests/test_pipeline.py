"""End to end: synthetic ICB -> protocol run -> bundle -> report, twice, byte for byte."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pandas as pd
import pytest

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


def test_no_identifier_or_small_count_leaves(runs: tuple[Path, Path, Path]) -> None:
    a, _, data = runs
    files = [p for p in (a / "bundle").rglob("*") if p.is_file()] + [a / "report.html"]
    # the manifest's own SHA-256 hashes look like tokens; they are allowed, nothing else
    manifest = (a / "bundle" / "manifest.json").read_text(encoding="utf-8")
    hashes = set(re.findall(r"[0-9a-f]{64}", manifest))
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
