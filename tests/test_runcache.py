"""Run cache: stage keys, exact round trip, invalidation, and end to end byte-identity."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from spevidence._runcache import CACHE_DIR, RunCache, key_fingerprint, stage_inputs
from spevidence.bundle import scan_paths, verify_bundle
from spevidence.cli import app
from spevidence.identity import Key
from spevidence.pipeline import demo_key, run
from spevidence.protocol import load_protocol
from spevidence.synthetic import generate

ROOT = Path(__file__).resolve().parents[1]

PROTO = {
    "name": "t",
    "title": "T",
    "start": "2022-01-01",
    "end": "2023-12-31",
    "period": "month",
    "outcomes": ["gp", "ae"],
    "match": {"covariates": ["gp_m1_3"], "ratio": 1},
    "did": {"pre": 12, "post": 12},
    "sroi": {"discount": 0.035},
    "report": {"formats": ["html"]},
    "seed": 1,
}
HASHES = {"population": "a" * 64, "referrals": "b" * 64}


def reads(proto=PROTO, hashes=HASHES, engine="duckdb", key=None):
    return stage_inputs(proto, input_hashes=hashes, engine=engine, key_fingerprint=key)


def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "person_id": pd.array(["p1", "p2", "p3"], dtype="str"),
            "period": pd.to_datetime(["2022-01-01", "2022-02-01", "2022-03-01"]).astype(
                "datetime64[s]"
            ),
            "gp": np.array([0, 2, 1], dtype="int64"),
            "imd_decile": pd.array([3, None, 10], dtype="Int64"),
            "weights": [1.0, 0.5, np.nan],
            "group": pd.Categorical(["a", "b", "a"], categories=["b", "a"]),
        },
        index=pd.Index([10, 11, 12], name="row"),
    )


# ------------------------------------------------------------------ keys


def test_keys_chain_and_change_with_what_each_stage_reads():
    base = RunCache(Path("unused"), reads()).keys
    assert len(set(base.values())) == 3

    def changed(**kw):
        k = RunCache(Path("unused"), reads(**kw)).keys
        return tuple(s for s in ("panel", "matching", "estimates") if k[s] != base[s])

    every = ("panel", "matching", "estimates")
    assert changed(hashes={**HASHES, "referrals": "c" * 64}) == every  # an input file changed
    assert changed(engine="spark") == every
    assert changed(key="f" * 64) == every  # another pseudonymisation key
    assert changed(proto={**PROTO, "end": "2024-03-31"}) == every
    # the risk score is built in the panel when it is a matching covariate
    assert changed(proto={**PROTO, "match": {"covariates": ["risk_score"], "ratio": 1}}) == every
    assert changed(proto={**PROTO, "match": {"covariates": ["gp_m1_3"], "ratio": 2}}) == (
        "matching",
        "estimates",
    )
    assert changed(proto={**PROTO, "seed": 2}) == ("matching", "estimates")
    assert changed(proto={**PROTO, "did": {"pre": 6, "post": 12}}) == ("estimates",)
    assert changed(proto={**PROTO, "outcomes": ["gp"]}) == ("estimates",)
    # SROI, report and free text are recomputed every run: they do not touch the keys
    assert changed(proto={**PROTO, "sroi": {"discount": 0.015}, "title": "New"}) == ()
    # a new top-level protocol field is read by the panel stage unless declared otherwise
    assert changed(proto={**PROTO, "linkage": {"fuzzy": True}}) == every


def test_package_version_is_part_of_the_key(monkeypatch):
    import spevidence._runcache as rc

    a = RunCache(Path("unused"), reads()).keys
    monkeypatch.setattr(rc, "__version__", "999.0")
    b = RunCache(Path("unused"), reads()).keys
    assert all(a[s] != b[s] for s in a)


def test_key_fingerprint_identifies_the_key_without_revealing_it():
    k1, k2 = Key(b"x" * 32), Key(b"y" * 32)
    f1 = key_fingerprint(k1)
    assert f1 == key_fingerprint(Key(b"x" * 32)) and f1 != key_fingerprint(k2)
    assert f1 is not None and "x" * 8 not in f1 and len(f1) == 64
    assert key_fingerprint(None) is None


# ------------------------------------------------------------------ store and load


def test_round_trip_is_exact_and_private(tmp_path):
    c = RunCache(tmp_path, reads())
    assert c.load("panel") is None and not (tmp_path / CACHE_DIR).exists()
    df = frame()
    c.save("panel", {"panel": df}, {"ae_department_types": None})
    hit = RunCache(tmp_path, reads()).load("panel")
    assert hit is not None and hit.meta == {"ae_department_types": None}
    pd.testing.assert_frame_equal(hit.frames["panel"], df, check_exact=True)
    assert list(hit.frames["panel"].dtypes.astype(str)) == list(df.dtypes.astype(str))
    root = tmp_path / CACHE_DIR
    assert (root.stat().st_mode & 0o777) == 0o700
    assert all((p.stat().st_mode & 0o777) == 0o600 for p in root.rglob("*.arrow"))
    assert (root / "CACHEDIR.TAG").read_text().startswith("Signature: 8a477f597d28d172")


def test_stale_or_corrupt_stage_is_not_used(tmp_path):
    RunCache(tmp_path, reads()).save("panel", {"panel": frame()})
    # another input: the stored key no longer matches
    assert RunCache(tmp_path, reads(hashes={"population": "0" * 64})).load("panel") is None
    # a tampered file: its hash no longer matches the manifest
    path = tmp_path / CACHE_DIR / "panel" / "panel.arrow"
    data = bytearray(path.read_bytes())
    data[-20] ^= 0xFF
    path.write_bytes(bytes(data))
    assert RunCache(tmp_path, reads()).load("panel") is None
    # a broken manifest
    (tmp_path / CACHE_DIR / "panel" / "manifest.json").write_text("{not json")
    assert RunCache(tmp_path, reads()).load("panel") is None


def test_disabled_cache_reads_and_writes_nothing(tmp_path):
    RunCache(tmp_path, reads()).save("panel", {"panel": frame()})
    off = RunCache(tmp_path / "other", reads(), enabled=False)
    off.save("panel", {"panel": frame()})
    assert not (tmp_path / "other").exists()
    assert RunCache(tmp_path, reads(), enabled=False).load("panel") is None


def test_saving_replaces_the_stage_slot(tmp_path):
    RunCache(tmp_path, reads()).save("panel", {"panel": frame()})
    other = reads(hashes={"population": "0" * 64})
    RunCache(tmp_path, other).save("panel", {"panel": frame().iloc[:1]})
    assert RunCache(tmp_path, reads()).load("panel") is None
    hit = RunCache(tmp_path, other).load("panel")
    assert hit is not None and len(hit.frames["panel"]) == 1
    assert sorted(p.name for p in (tmp_path / CACHE_DIR).iterdir()) == ["CACHEDIR.TAG", "panel"]


# ------------------------------------------------------------------ end to end


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _outputs(out: Path) -> dict[str, str]:
    """Every output the user receives: bundle files and the report (not the cache)."""
    d = {f"bundle/{k}": v for k, v in _digest(out / "bundle").items()}
    d["report.html"] = hashlib.sha256((out / "report.html").read_bytes()).hexdigest()
    return d


@pytest.fixture(scope="module")
def e2e(tmp_path_factory: pytest.TempPathFactory):
    """Four runs: API (computes, fills the cache), CLI again (reuses), CLI --no-cache
    into another folder (computes), and later an API run with a changed DiD option."""
    base = tmp_path_factory.mktemp("runcache")
    data = base / "data"
    generate("demo", persons=1500, seed=5, out=data)
    key = base / "k.key"
    key.write_bytes(demo_key(5))
    proto = load_protocol(ROOT / "protocols" / "demo.yaml")
    proto = proto.model_copy(
        update={
            "sroi": proto.sroi.model_copy(update={"n_sims": 100}),
            "report": proto.report.model_copy(update={"formats": ("html",), "engine": "builtin"}),
        }
    )
    kw = dict(key_file=key, formats=("html",), report_engine="builtin", progress=False)
    first = run(proto, data, base / "a", **kw)
    first_out = _outputs(base / "a")
    proto_file = base / "p.yaml"
    proto_file.write_text(yaml.safe_dump(proto.to_dict()), encoding="utf-8")

    def cli(out: Path, *extra: str):
        args = ["run", str(proto_file), "--data", str(data), "--out", str(out),
                "--key-file", str(key), "--no-progress", *extra]  # fmt: skip
        return CliRunner().invoke(app, args)

    again = cli(base / "a")
    nocache = cli(base / "b", "--no-cache")
    return {
        "base": base, "data": data, "proto": proto, "kw": kw, "first": first,
        "first_out": first_out, "again": again, "nocache": nocache,
    }  # fmt: skip


pytestmark = pytest.mark.xdist_group("runcache")


def test_rerun_reuses_every_stage_and_outputs_are_byte_identical(e2e):
    base = e2e["base"]
    assert e2e["first"].reused == ()
    again, nocache = e2e["again"], e2e["nocache"]
    assert again.exit_code == 0 and nocache.exit_code == 0, again.output + nocache.output
    # the progress output says which stages were reused
    assert "Reused from the run cache: panel, matching, estimates" in again.output
    assert "Reused" not in nocache.output
    assert not (base / "b" / CACHE_DIR).exists()  # --no-cache writes nothing
    a = _outputs(base / "a")
    assert a == e2e["first_out"]  # from the cache == computed
    assert a == _outputs(base / "b")  # with the cache == without it
    assert verify_bundle(base / "a" / "bundle") == []


def test_cache_is_private_and_never_in_the_bundle(e2e):
    base, data = e2e["base"], e2e["data"]
    cache = base / "a" / CACHE_DIR
    assert sorted(p.name for p in cache.iterdir()) == [
        "CACHEDIR.TAG",
        "estimates",
        "matching",
        "panel",
    ]
    ids = pd.read_parquet(data / "population.parquet", columns=["person_id"])["person_id"]
    panel = pd.read_feather(cache / "panel" / "panel.arrow")
    # the cache holds pseudonyms (so it must stay private) ...
    assert panel["person_id"].str.fullmatch(r"[0-9a-f]{64}").all()
    # ... and no bundle file, report or manifest entry comes from it or names it
    files = [p for p in (base / "a" / "bundle").rglob("*") if p.is_file()]
    files.append(base / "a" / "report.html")
    assert not any(CACHE_DIR in str(p) for p in files)
    manifest = (base / "a" / "bundle" / "manifest.json").read_text(encoding="utf-8")
    assert CACHE_DIR not in manifest
    hashes = set(re.findall(r"[0-9a-f]{64}", manifest))
    # and the manifest's own SHA-256, which the report prints as its anchor
    hashes.add(hashlib.sha256(manifest.encode("utf-8")).hexdigest())
    assert scan_paths(files, allow=hashes) == []
    blob = b"".join(p.read_bytes() for p in files)
    assert not any(str(i).encode() in blob for i in ids.iloc[:300])
    assert not any(p.encode() in blob for p in panel["person_id"].unique()[:300])


def test_demo_report_shows_the_sroi_section_with_its_figures(e2e):
    # issue 9: "the demo report shows the SROI section with its figures"
    out = e2e["base"] / "b"
    html = (out / "report.html").read_text(encoding="utf-8")
    heads = [re.sub(r"<[^>]+>", "", h) for h in re.findall(r"<h[12][^>]*>(.*?)</h[12]>", html)]
    assert any(re.search("social return|SROI", h, flags=re.I) for h in heads), heads
    figs = {p.stem for p in (out / "bundle" / "figures").iterdir()}
    assert {"sroi_tornado", "sroi_value_map", "sroi_simulation"} <= figs
    by = pd.read_csv(out / "bundle" / "tables" / "sroi_by_outcome.csv").set_index("outcome")
    # one A&E count over every department type: priced at the all-type average
    assert "(ae_attendance)" in by.loc["ae", "proxy_source"]
    # the people valued are the released count of referred people (a multiple of 5), so
    # quantity / (12 x estimate) does not give back the exact count
    did = pd.read_csv(out / "bundle" / "tables" / "did_estimates.csv")
    lin = did.loc[(did["model"] == "linear") & (did["outcome"] == "gp")].iloc[0]
    people = by.loc["gp", "quantity"] / (-12.0 * float(lin["estimate"]))
    assert people == pytest.approx(round(people / 5) * 5, abs=1e-6), people


def test_z_a_changed_did_option_reuses_panel_and_matching_only(e2e):
    # runs last in this file: it replaces the stored estimates of folder a
    base, proto = e2e["base"], e2e["proto"]
    changed = proto.model_copy(update={"did": proto.did.model_copy(update={"models": ("linear",)})})
    res = run(changed, e2e["data"], base / "a", **e2e["kw"])
    assert res.reused == ("panel", "matching")
    # the estimates were recomputed with the new option (linear only) ...
    did = pd.read_csv(base / "a" / "bundle" / "tables" / "did_estimates.csv")
    assert set(did["model"]) == {"linear"}
    # ... from the same matched cohort: the linear estimates equal the first run's
    before = pd.read_csv(base / "b" / "bundle" / "tables" / "did_estimates.csv")
    lin = before[before["model"] == "linear"].reset_index(drop=True)
    pd.testing.assert_frame_equal(did, lin[did.columns])
