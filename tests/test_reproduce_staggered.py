"""A reviewer reproduces a staggered-design bundle: re-render, re-run, compare; tampering fails.

The real thing end to end: ``spevidence.pipeline.run`` writes the bundle of a
``design: staggered`` protocol, and ``spevidence.reproduce.reproduce`` verifies
every hash, re-renders the report, re-runs the bundled protocol on the same data with its
default runner and compares every released table.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from spevidence.errors import ReportError
from spevidence.pipeline import run
from spevidence.protocol import load_protocol
from spevidence.reproduce import reproduce
from spevidence.synthetic import generate

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def test_staggered_bundle_reproduces_and_tampering_is_caught(tmp_path: Path) -> None:
    data = tmp_path / "data"
    generate("staggered-national-random-timing", persons=2500, seed=3, out=data, progress=False)
    raw = yaml.safe_load((ROOT / "protocols" / "national-staggered.yaml").read_text())
    raw["staggered"]["estimators"] = ["callaway_santanna", "etwfe"]
    res = run(load_protocol(raw), data, tmp_path / "out", formats=("html",), progress=False)
    bundle = res.bundle

    rep = reproduce(bundle, out_dir=tmp_path / "repro", formats="html", data=data)
    assert rep.results_compared
    assert rep.files_checked > 5
    assert rep.rerun is not None and (rep.rerun / "tables" / "staggered.csv").is_file()
    assert any(p.suffix == ".html" for p in rep.outputs.values())

    # a changed estimate in the bundle is caught before anything is rendered
    bad = tmp_path / "bad_bundle"
    shutil.copytree(bundle, bad)
    f = bad / "tables" / "staggered.csv"
    text = f.read_text(encoding="utf-8").splitlines()
    cells = text[1].split(",")
    cells[4] = "0.123"  # the first estimate
    text[1] = ",".join(cells)
    f.write_text("\n".join(text) + "\n", encoding="utf-8")
    with pytest.raises(ReportError, match=r"tables/staggered\.csv"):
        reproduce(bad, out_dir=tmp_path / "repro2", formats="html", data=data)
