"""Bundle writing, manifest, verification, identifier scan and figure style."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import matplotlib
import pandas as pd
import pytest
from matplotlib.figure import Figure

from spevidence.bundle import (
    compare_bundles,
    figure_files,
    read_manifest,
    read_table,
    scan_paths,
    scan_text,
    small_count_findings,
    verify_bundle,
    write_bundle,
)
from spevidence.errors import DisclosureError, ReportError
from spevidence.identity import is_valid_nhs_number as nhs_number_valid
from spevidence.report import style

matplotlib.use("Agg")


def _figure() -> Figure:
    with style.context():
        fig = Figure(figsize=(4, 3))
        ax = fig.add_subplot()
        ax.plot([0, 1, 2], [2.0, 1.0, 1.5], color=style.TREATED)
        ax.set_title("GP appointments by month")
        ax.set_xlabel("Months from referral")
    return fig


def _write(root: Path, name: str = "bundle", **over: object) -> Path:
    inp = root / "inputs"
    inp.mkdir(parents=True, exist_ok=True)
    (inp / "population.csv").write_text("a,b\n1,2\n3,4\n", encoding="utf-8")
    tables = {
        "did_estimates": pd.DataFrame(
            {
                "outcome": ["gp", "ae"],
                "model": ["poisson", "poisson"],
                "term": ["treated:post"] * 2,
                "estimate": [-0.12, -0.05],
                "std_error": [0.03, 0.04],
                "conf_low": [-0.18, -0.13],
                "conf_high": [-0.06, 0.03],
            }
        ),
        "attrition": pd.DataFrame({"step": ["all", "matched"], "n": [1200, 850]}),
    }
    kwargs: dict[str, object] = {
        "tables": tables,
        "figures": {"trends": _figure()},
        "protocol": {"name": "test", "seed": 3, "window": {"start": "2021-04-01"}},
        "inputs": {"population": inp / "population.csv"},
        "seed": 3,
        "engine": "duckdb",
        "disclosure_log": pd.DataFrame({"table": ["attrition"], "action": ["rounded"]}),
        "extra": {"note": "synthetic"},
    }
    kwargs.update(over)
    return write_bundle(root / name, **kwargs)  # type: ignore[arg-type]


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_layout_and_manifest_contents(tmp_path: Path) -> None:
    b = _write(tmp_path)
    names = set(_files(b))
    assert {
        "manifest.json",
        "protocol.yaml",
        "disclosure_log.csv",
        "tables/did_estimates.csv",
        "tables/did_estimates.parquet",
        "tables/attrition.csv",
        "figures/trends.png",
        "figures/trends.svg",
    } <= names
    m = read_manifest(b)
    assert m["seed"] == 3 and m["engine"] == "duckdb"
    assert m["row_counts"] == {"attrition": 2, "did_estimates": 2}
    expected = hashlib.sha256((tmp_path / "inputs" / "population.csv").read_bytes()).hexdigest()
    assert m["inputs"]["population"] == {
        "file": "population.csv",
        "bytes": 12,
        "sha256": expected,
        "rows": 2,
    }
    assert "inputs" not in json.dumps(m["inputs"])  # no folder names, only file names
    for pkg in ("pandas", "numpy", "matplotlib", "python", "spevidence"):
        assert pkg in m["versions"]
    # every file but the manifest is hashed, with the right hash
    assert set(m["files"]) == names - {"manifest.json"}
    for rel, digest in m["files"].items():
        assert hashlib.sha256((b / rel).read_bytes()).hexdigest() == digest
    assert m["figures"]["trends"]["alt"].startswith("GP appointments by month")
    assert m["extra"] == {"note": "synthetic"}
    back = read_table(b, "did_estimates")
    assert back is not None and back["estimate"].tolist() == [-0.12, -0.05]
    assert pd.read_parquet(b / "tables" / "did_estimates.parquet")["conf_high"].tolist() == [
        -0.06,
        0.03,
    ]
    assert read_table(b, "staggered") is None


def test_two_writes_are_byte_identical(tmp_path: Path) -> None:
    a = _files(_write(tmp_path / "one"))
    b = _files(_write(tmp_path / "two"))
    assert a.keys() == b.keys()
    differing = [k for k in a if a[k] != b[k]]
    assert differing == []
    text = a["manifest.json"].decode() + a["figures/trends.svg"].decode()
    assert "2026" not in text and "Date" not in text  # no timestamps
    assert b"Software" not in a["figures/trends.png"]


def test_protocol_change_changes_hash(tmp_path: Path) -> None:
    a = read_manifest(_write(tmp_path / "one"))
    b = read_manifest(_write(tmp_path / "two", protocol={"name": "test", "seed": 4}))
    assert a["protocol_sha256"] != b["protocol_sha256"]


def test_verify_detects_tampering(tmp_path: Path) -> None:
    b = _write(tmp_path)
    assert verify_bundle(b) == []
    csv = b / "tables" / "did_estimates.csv"
    csv.write_text(csv.read_text().replace("-0.12", "-0.22"))
    (b / "figures" / "trends.svg").unlink()
    (b / "tables" / "extra.csv").write_text("x\n1\n")
    problems = verify_bundle(b)
    assert len(problems) == 3
    assert problems[0].startswith("figures/trends.svg") and "missing" in problems[0]
    assert any(p.startswith("tables/did_estimates.csv") and "differ" in p for p in problems)
    assert any(p.startswith("tables/extra.csv") and "not listed" in p for p in problems)


def test_verify_detects_protocol_edit(tmp_path: Path) -> None:
    b = _write(tmp_path)
    p = b / "protocol.yaml"
    p.write_text(p.read_text().replace("seed: 3", "seed: 4"))
    problems = verify_bundle(b)
    assert problems == ["protocol.yaml: contents differ from the manifest (SHA-256 mismatch)"]


def test_verify_requires_manifest(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match=r"manifest\.json is missing"):
        verify_bundle(tmp_path)
    (tmp_path / "manifest.json").write_text('{"format": "other"}')
    with pytest.raises(ReportError, match="not a spevidence-bundle/1 manifest"):
        verify_bundle(tmp_path)


def test_rewrite_replaces_old_bundle_but_refuses_other_folders(tmp_path: Path) -> None:
    b = _write(tmp_path)
    (b / "tables" / "stale.csv").write_text("x\n1\n")
    b = _write(tmp_path, figures={})
    assert not (b / "tables" / "stale.csv").exists()
    assert not (b / "figures" / "trends.png").exists()
    assert verify_bundle(b) == []
    other = tmp_path / "home"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(ReportError, match="refusing to overwrite"):
        _write(tmp_path, name="home")
    assert (other / "notes.txt").read_text() == "keep me"


@pytest.mark.parametrize("bad", ["Did Estimates", "../escape", "1st", "a/b", ""])
def test_unsafe_table_names_refused(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ReportError, match="not allowed in a bundle"):
        _write(tmp_path, tables={bad: pd.DataFrame({"x": [1]})})


def test_identifier_in_table_refused(tmp_path: Path) -> None:
    leak = pd.DataFrame({"person": ["943 476 5919"], "n": [10]})  # valid NHS number (DOMAIN.md)
    with pytest.raises(DisclosureError, match="look like patient identifiers") as info:
        _write(tmp_path, tables={"leak": leak})
    assert "9434765919" not in str(info.value) and "5919" not in str(info.value)
    assert not (tmp_path / "bundle").exists()


def test_nhs_number_check_digit() -> None:
    assert nhs_number_valid("9434765919")
    assert not nhs_number_valid("9434765918")
    assert not nhs_number_valid("943476591")


def test_scan_text_finds_identifiers_not_numbers() -> None:
    hits = scan_text("a,9434765919\nb,943-476-5919\nc,9434765918\n")
    assert [(h.line, h.kind) for h in hits] == [
        (1, "NHS-number-shaped string"),
        (2, "NHS-number-shaped string"),
    ]
    # estimates, money and long decimals are not identifiers
    assert scan_text("0.9434765919,1234567890.5,£9434765919.00,94347659190") == []
    assert len(scan_text("id_9434765919")) == 1  # glued to a label is still a leak
    token = "a3f9c2e81b7d4f60a9e3c5b1d7f2e8a4c6b0d9f1e3a5c7b9d1f3e5a7c9b1d3f5"
    assert [h.kind for h in scan_text(f"row,{token}\n")] == ["pseudonym-shaped token"]
    assert scan_text(f"row,{token}\n", allow=[token]) == []
    assert scan_text(f"row,{token[:16]}\n", allow=[token]) == []
    assert scan_text("sroi_ratio_discount_3_5,admissions_prior_12m\n") == []
    svg = '<path d="M 943 476 5919 L 1 2"/>\n<text>943 476 5919</text>'
    assert [h.line for h in scan_text(svg)] == [2]  # geometry is skipped, text is not
    finding = scan_text("9434765919")[0]
    assert "9434765919" not in str(finding)


def test_scan_paths_and_small_counts(tmp_path: Path) -> None:
    b = _write(tmp_path)
    assert scan_paths([b / "tables", b / "disclosure_log.csv"]) == []
    ok = pd.DataFrame({"n": [0, 10, 1205, None]})
    assert small_count_findings(ok, name="t", count_columns=["n"]) == []
    bad = pd.DataFrame({"n": [3, 12, 15]})
    found = small_count_findings(bad, name="t", count_columns=["n", "absent"])
    assert [(f.line, f.kind) for f in found] == [
        (1, "small count in column 'n'"),
        (2, "unrounded count in column 'n'"),
    ]


def test_compare_bundles(tmp_path: Path) -> None:
    a = _write(tmp_path / "one")
    b = _write(tmp_path / "two", figures={})
    assert compare_bundles(a, b) == []  # figures are not compared
    changed = {
        "did_estimates": pd.DataFrame({"outcome": ["gp"], "estimate": [-0.5]}),
        "attrition": pd.DataFrame({"step": ["all", "matched"], "n": [1200, 850]}),
    }
    c = _write(tmp_path / "three", tables=changed, seed=4)
    problems = compare_bundles(a, c)
    assert "manifest.json: seed differs between the original and the re-run" in problems
    assert "tables/did_estimates.csv: the re-run gives different numbers" in problems
    assert not any("attrition" in p for p in problems)


def test_palette_is_seaborn_colorblind() -> None:
    import seaborn as sns

    assert list(style.PALETTE_HEX) == sns.color_palette("colorblind").as_hex()
    rc = style.rc()
    assert rc["axes.prop_cycle"].by_key()["color"][0] == style.PALETTE[0]
    before = dict(matplotlib.rcParams)
    with style.context():
        assert matplotlib.rcParams["axes.titlelocation"] == "left"
    assert dict(matplotlib.rcParams) == before  # no global state left behind


def test_figure_bytes_deterministic() -> None:
    a, b = _figure(), _figure()
    assert figure_files.figure_bytes(a, "png") == figure_files.figure_bytes(b, "png")
    assert figure_files.figure_bytes(a, "svg") == figure_files.figure_bytes(b, "svg")
    with pytest.raises(ValueError, match="png"):
        figure_files.figure_bytes(a, "jpg")
