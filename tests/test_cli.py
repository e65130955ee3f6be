"""The command line as a user meets it: help, version, exit codes, no tracebacks."""

from __future__ import annotations

import subprocess
import sys

from spevidence import __version__


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "spevidence", *args], capture_output=True, text=True, check=False
    )


def test_version() -> None:
    r = _run("--version")
    assert r.returncode == 0
    assert r.stdout.strip() == f"spevidence {__version__}"


def test_help_lists_commands_with_descriptions() -> None:
    r = _run("--help")
    assert r.returncode == 0
    for cmd in ("demo", "synth", "run", "check", "init", "report", "reproduce"):
        line = next((ln for ln in r.stdout.splitlines() if f" {cmd} " in ln), "")
        assert line.strip(" │").split(maxsplit=1)[1:], f"{cmd} has no description"


def test_bad_usage_exits_2_without_traceback() -> None:
    r = _run("--no-such-option")
    assert r.returncode == 2
    assert "Traceback" not in r.stderr + r.stdout


def test_init_then_check_round_trip(tmp_path) -> None:  # type: ignore[no-untyped-def]
    f = tmp_path / "p.yaml"
    assert _run("init", str(f)).returncode == 0
    r = _run("check", str(f))
    assert r.returncode == 0 and "sha256:" in r.stdout
    # init refuses to overwrite without --force
    again = _run("init", str(f))
    assert again.returncode == 1 and "--force" in again.stderr


def test_check_reports_bad_fields_with_exit_1(tmp_path) -> None:  # type: ignore[no-untyped-def]
    f = tmp_path / "p.yaml"
    f.write_text("name: x\ntitle: t\nstart: 2022-01-01\nend: 2021-01-01\nmatch: {ratio: 0}\n")
    r = _run("check", str(f))
    assert r.returncode == 1
    assert "match.ratio" in r.stderr and "Traceback" not in r.stderr


def test_run_with_missing_data_folder_is_a_user_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    r = _run(
        "run", "protocols/demo.yaml", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path)
    )
    assert r.returncode == 1
    assert "not found" in r.stderr and "Traceback" not in r.stderr
