"""The ``spevidence report`` and ``spevidence reproduce`` commands, and reproduction."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from spevidence.errors import ReportError
from spevidence.report._example import write_example_bundle
from spevidence.reproduce import reproduce

ROOT = Path(__file__).resolve().parents[1]

_STAND_IN = """#!{python}
import sys
from pathlib import Path
args = sys.argv[1:]
Path(args[args.index("--output") + 1]).write_text("stand-in " + " ".join(args))
"""


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_example_bundle(tmp_path_factory.mktemp("cli") / "bundle", with_figures=False)


@pytest.fixture
def quarto_env(tmp_path: Path) -> dict[str, str]:
    exe = tmp_path / "quarto"
    exe.write_text(_STAND_IN.format(python=sys.executable))
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    env = dict(os.environ)
    env["QUARTO_PATH"] = str(exe)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "spevidence", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        check=False,
    )


def _main(args: list[str], monkeypatch, capsys) -> tuple[int, str, str]:
    """Run the CLI entry point in-process (as the installed command does)."""
    from spevidence.cli import main

    monkeypatch.setattr(sys, "argv", ["spevidence", *args])
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_report_command(bundle: Path, tmp_path: Path, quarto_env, monkeypatch, capsys) -> None:
    monkeypatch.setenv("QUARTO_PATH", quarto_env["QUARTO_PATH"])
    code, out, err = _main(
        [
            "report",
            str(bundle),
            "--out",
            str(tmp_path / "o"),
            "--format",
            "html,docx",
            "--engine",
            "quarto",
        ],
        monkeypatch,
        capsys,
    )
    assert code == 0, err
    assert "Report rendered" in out
    assert (tmp_path / "o" / "report.docx").read_text().startswith("stand-in render report.qmd")
    code, out, err = _main(["report", str(bundle), "--format", "odt"], monkeypatch, capsys)
    assert code == 1
    assert "unknown report format 'odt'" in err and "Traceback" not in err


def test_reproduce_command(bundle: Path, tmp_path: Path, quarto_env, monkeypatch, capsys) -> None:
    monkeypatch.setenv("QUARTO_PATH", quarto_env["QUARTO_PATH"])
    code, out, err = _main(
        ["reproduce", str(bundle), "--out", str(tmp_path / "r"), "--engine", "quarto"],
        monkeypatch,
        capsys,
    )
    assert code == 0, err
    assert "Bundle verified" in out and (tmp_path / "r" / "report.html").is_file()
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-r", str(bundle), str(copy)], check=True)
    (copy / "tables" / "sroi_summary.csv").write_text("measure,value\nsroi_ratio,9.9\n")
    # as a real command: exit status 1, the file named, no traceback
    bad = _cli("reproduce", str(copy), "--engine", "quarto", env=quarto_env)
    assert bad.returncode == 1
    assert "tables/sroi_summary.csv" in bad.stderr and "Traceback" not in bad.stderr


def test_reproduce_reruns_and_compares(bundle: Path, tmp_path: Path, monkeypatch) -> None:
    exe = tmp_path / "quarto"
    exe.write_text(_STAND_IN.format(python=sys.executable))
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("QUARTO_PATH", str(exe))
    data = tmp_path / "data"
    data.mkdir()
    calls: list[dict[str, object]] = []

    def same(protocol: Path, *, data: Path, out: Path, key_file: Path | None) -> Path:
        calls.append({"protocol": protocol.name, "data": data, "key_file": key_file})
        return write_example_bundle(out, with_figures=False)

    res = reproduce(
        bundle,
        out_dir=tmp_path / "r",
        formats="html",
        data=data,
        key_file=tmp_path / "k",
        runner=same,
    )
    assert res.results_compared and res.files_checked > 20
    assert calls == [{"protocol": "protocol.yaml", "data": data, "key_file": tmp_path / "k"}]

    def different(protocol: Path, *, data: Path, out: Path, key_file: Path | None) -> Path:
        return write_example_bundle(out, with_figures=False, pretrend_fails=True)

    with pytest.raises(ReportError, match=r"tables/pretrend_test\.csv: the re-run gives"):
        reproduce(bundle, out_dir=tmp_path / "r2", formats="html", data=data, runner=different)
