"""The installed package works (issue 19, item 11): build the wheel from this repository,
install it with the runtime lock into a fresh virtual environment outside the repository,
and run there what a new user runs first: `demo`, `init`, `check` on every shipped
protocol, and `synth --list`.

Offline: hatchling (dev lock) builds the wheel, uv installs the locked runtime packages
from its cache.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hostile import Outcome, assert_clean

ROOT = Path(__file__).resolve().parents[1]
# slow; one worker under `make test` (-n 2 --dist loadgroup) builds the environment once
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("wheel")]


def _uv() -> str:
    """uv from this environment (bootstrap lock), else from PATH."""
    here = Path(sys.executable).parent / "uv"
    found = str(here) if here.is_file() else shutil.which("uv")
    assert found, "uv is needed to build the fresh environment (make install puts it in .venv)"
    return found


def _ok(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    assert r.returncode == 0, f"{cmd[:3]} failed:\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    return r.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment, outside the repository, holding the runtime lock and
    the wheel built from this checkout; returns its ``bin`` folder."""
    base = tmp_path_factory.mktemp("wheel")
    assert ROOT not in base.parents
    dist = base / "dist"
    code = "import sys; from hatchling.build import build_wheel; print(build_wheel(sys.argv[1]))"
    name = _ok([sys.executable, "-c", code, str(dist)], cwd=ROOT).strip().splitlines()[-1]
    wheel = dist / name
    assert wheel.is_file() and wheel.suffix == ".whl"
    env_dir = base / "env"
    uv = _uv()
    _ok([uv, "venv", "--quiet", "--python", sys.executable, str(env_dir)], cwd=base)
    py = env_dir / "bin" / "python"
    _ok(
        [uv, "pip", "sync", "--quiet", "--python", str(py), str(ROOT / "requirements/runtime.txt")],
        cwd=base,
    )
    _ok([uv, "pip", "install", "--quiet", "--python", str(py), "--no-deps", str(wheel)], cwd=base)
    return env_dir / "bin"


def _spevidence(bin_dir: Path, *args: str | Path, cwd: Path) -> Outcome:
    """Run the installed `spevidence` as a user would: not from the repository."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env |= {"NO_COLOR": "1", "COLUMNS": "200", "PATH": f"{bin_dir}{os.pathsep}{env['PATH']}"}
    r = subprocess.run(
        [str(bin_dir / "spevidence"), *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=1800,
    )
    return Outcome(r.returncode, r.stdout, r.stderr)


def _package_dir(bin_dir: Path, cwd: Path) -> Path:
    code = "import spevidence, pathlib; print(pathlib.Path(spevidence.__file__).parent)"
    return Path(_ok([str(bin_dir / "python"), "-c", code], cwd=cwd).strip())


def test_the_package_comes_from_the_wheel_with_its_data(installed: Path, tmp_path: Path) -> None:
    pkg = _package_dir(installed, tmp_path)
    assert "site-packages" in pkg.parts and ROOT not in pkg.parents
    shipped = sorted(p.name for p in (ROOT / "protocols").glob("*.yaml"))
    assert sorted(p.name for p in (pkg / "_protocols").glob("*.yaml")) == shipped
    for sub in ("_protocols/codelists", "_quarto", "_synthetic"):
        theirs = sorted(p.name for p in (pkg / sub).iterdir())
        ours = sorted(p.name for p in (ROOT / sub.lstrip("_")).iterdir() if p.name != "__pycache__")
        assert theirs == ours, sub


def test_synth_list(installed: Path, tmp_path: Path) -> None:
    out = _spevidence(installed, "synth", "--list", cwd=tmp_path)
    assert_clean(out, code=0)
    shipped = {p.stem for p in (ROOT / "synthetic").glob("*.yaml")}
    assert set(out.stdout.split()) == shipped


def test_init_then_check(installed: Path, tmp_path: Path) -> None:
    assert_clean(_spevidence(installed, "init", "p.yaml", cwd=tmp_path), code=0, says=("Wrote",))
    out = _spevidence(installed, "check", "p.yaml", cwd=tmp_path)
    assert_clean(out, code=0, says=("Protocol is valid", "sha256:"))


def test_check_every_shipped_protocol(installed: Path, tmp_path: Path) -> None:
    pkg = _package_dir(installed, tmp_path)
    files = sorted((pkg / "_protocols").glob("*.yaml"))
    assert len(files) == len(list((ROOT / "protocols").glob("*.yaml"))) > 0
    for f in files:
        assert_clean(_spevidence(installed, "check", f, cwd=tmp_path), code=0, says=("sha256:",))


def test_demo(installed: Path, tmp_path: Path) -> None:
    out = _spevidence(installed, "demo", "--out", "demo", "--persons", "3000", cwd=tmp_path)
    assert_clean(out, code=0, says=("Demo finished",))
    folder = tmp_path / "demo"
    assert (folder / "report.html").stat().st_size > 10_000
    assert (folder / "report.pdf").read_bytes()[:5] == b"%PDF-"
    manifest = json.loads((folder / "bundle" / "manifest.json").read_text(encoding="utf-8"))
    assert len(manifest["protocol_sha256"]) == 64
    released = yaml.safe_load((folder / "bundle" / "protocol.yaml").read_text(encoding="utf-8"))
    assert released["name"] == "demo"
