"""The benchmark harness (python -m benchmarks): script discovery, runs, RESULTS.md."""

from __future__ import annotations

import datetime as dt
import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _harness() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "bench_harness", ROOT / "benchmarks" / "__main__.py"
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_harness"] = mod  # dataclasses look the module up by name
    spec.loader.exec_module(mod)
    return mod


H = _harness()


def test_every_benchmark_script_is_run_and_its_quick_options_exist() -> None:
    found = [p.stem for p in H.scripts(None)]
    on_disk = sorted(p.stem for p in (ROOT / "benchmarks").glob("bench_*.py"))
    assert on_disk and set(on_disk) <= set(found)
    for stem in on_disk:
        assert stem in H.RUNS, f"add {stem} to RUNS in benchmarks/__main__.py"
        helptext = subprocess.run(
            [sys.executable, str(ROOT / "benchmarks" / f"{stem}.py"), "--help"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for mode in H.RUNS[stem]:
            for opt in (a for a in mode if a.startswith("--")):
                assert opt in helptext, (stem, opt)


def test_run_one_measures_a_script_and_captures_its_output(tmp_path: Path) -> None:
    script = tmp_path / "bench_toy.py"
    script.write_text(
        "import sys\nblock = bytearray(60 * 1024 * 1024)\n"
        "print('| lib | s |'); print('|---|---|'); print('| toy |', len(sys.argv) - 1, '|')\n"
    )
    out = H.run_one(script, quick=True, timeout=120)
    assert out.status == "ok"
    assert "| toy | 0 |" in out.stdout  # no --quick in its help: run without arguments
    assert out.peak_mib >= 60  # the 60 MiB buffer is in the peak
    assert out.seconds > 0


def test_run_one_reports_failure_and_timeout(tmp_path: Path) -> None:
    bad = tmp_path / "bench_bad.py"
    bad.write_text("import sys\nprint('boom', file=sys.stderr)\nsys.exit(3)\n")
    res = H.run_one(bad, quick=False, timeout=120)
    assert res.status == "failed (exit 3)"
    assert "boom" in res.stderr_tail
    slow = tmp_path / "bench_slow.py"
    slow.write_text("import time\ntime.sleep(60)\n")
    res = H.run_one(slow, quick=False, timeout=1)
    assert res.status.startswith("timeout")
    assert res.seconds < 30


@pytest.mark.parametrize(("load", "flagged"), [(0.1, False), (15.0, True)])
def test_results_md_says_when_the_machine_was_loaded(load: float, flagged: bool) -> None:
    facts = H.machine()
    facts["_load1"], facts["_usable"] = str(load), "2"
    out = H.Outcome(
        name="bench_did",
        args=["--persons", "10"],
        status="ok",
        seconds=1.5,
        peak_mib=100.0,
        stdout="| a | b |\n|---|---|\n| 1 | 2 |\n",
        stderr_tail="",
    )
    text = H.render(
        [out], facts, (load, load, load), quick=True, started=dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    )
    assert ("came from a loaded machine" in text) == flagged
    assert "Quick mode" in text
    assert "| `bench_did` | `--persons 10` | ok | 1.5 | 100 |" in text
    assert "| 1 | 2 |" in text
    for key in ("logical CPUs", "memory", "OS", "Python", "pyfixest", "csdid", "diff-diff"):
        assert key in text


def test_plain_text_output_is_kept_verbatim_in_a_code_block() -> None:
    facts = H.machine()
    out = H.Outcome(
        name="coverage_did",
        args=[],
        status="ok",
        seconds=2.0,
        peak_mib=50.0,
        stdout="linear: coverage 0.950\n    poisson:  coverage 0.940\n",
        stderr_tail="",
    )
    text = H.render([out], facts, (0.0, 0.0, 0.0), quick=False, started=dt.datetime.now(dt.UTC))
    assert "```text\nlinear: coverage 0.950\n    poisson:  coverage 0.940\n```" in text
    assert "| `coverage_did` | `(defaults)` | ok | 2.0 | 50 |" in text
    assert "Quick mode" not in text
    assert f"at commit `{facts['_commit']}`" in text
