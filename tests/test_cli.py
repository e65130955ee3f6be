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
    for cmd in ("demo",):
        line = next((ln for ln in r.stdout.splitlines() if f" {cmd} " in ln), "")
        assert line.strip(" │").split(maxsplit=1)[1:], f"{cmd} has no description"


def test_bad_usage_exits_2_without_traceback() -> None:
    r = _run("--no-such-option")
    assert r.returncode == 2
    assert "Traceback" not in r.stderr + r.stdout
