"""Run every benchmark and write benchmarks/RESULTS.md.

Usage (from the repository root)::

    python -m benchmarks            # full sizes (can take hours on 2 cores)
    python -m benchmarks --quick    # small sizes: checks that everything runs
    python -m benchmarks --only bench_did --timeout 600 --out /tmp/RESULTS.md
    python -m benchmarks --only bench_national --national   # 15.7 M persons x 22 quarters

Every ``benchmarks/bench_*.py`` (and the Monte Carlo ``coverage_did.py``) runs in its own
subprocess, one after another, so their timings do not compete with each other. For each
script the harness records the wall time, the exit status and the peak resident memory of
the script and its subprocesses (``wait4`` ru_maxrss), and copies the script's own output
(its tables compare spevidence with the peers: pyfixest, csdid, moderndid, diff-diff, with
the speed-up ratios and the largest absolute differences) into RESULTS.md, together with
the machine (CPUs, memory, OS, Python, load average) and the package versions.

Scripts are run with the arguments listed in ``RUNS`` below; a new ``bench_*.py`` not
listed there is run with ``--quick`` if its ``--help`` mentions that option, and otherwise
with no arguments. Nothing here asserts a timing: this is a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata as md
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# script stem -> (full arguments, quick arguments); "{tmp}" is a per-script temporary folder
RUNS: dict[str, tuple[list[str], list[str]]] = {
    "bench_did": ([], ["--persons", "2000", "--months", "12"]),
    "bench_link": ([], ["--persons", "2000", "--years", "1"]),
    "bench_match": ([], ["--quick"]),
    # full mode: 1 M persons; the national size (15.7 M) is opt-in: --national
    "bench_national": (["--persons", "1000000"], ["--quick"]),
    "bench_staggered": (
        ["--covariate", "1000000"],
        ["--units", "1000", "--periods", "8", "--timeout", "600", "--covariate", "5000"],
    ),
    # `spevidence run` of the matched protocol end to end; 3 M and the staggered protocol
    # (--protocol protocols/national-staggered.yaml) by hand: README.md
    "bench_run": (["--persons", "100000", "1000000"], ["--quick"]),
    "bench_synthetic": (
        ["--json", "{tmp}/out.json"],
        [
            "--persons",
            "2000",
            "--start",
            "2023-04-01",
            "--end",
            "2024-03-31",
            "--json",
            "{tmp}/out.json",
        ],
    ),
    "coverage_did": ([], ["--seeds", "10"]),
}

PACKAGES = [
    "spevidence",
    "numpy",
    "pandas",
    "scipy",
    "statsmodels",
    "linearmodels",
    "pyarrow",
    "duckdb",
    "ibis-framework",
    "pyspark",
    "pyfixest",
    "csdid",
    "moderndid",
    "diff-diff",
]


@dataclass
class Outcome:
    """What one benchmark script did."""

    name: str
    args: list[str]
    status: str
    seconds: float
    peak_mib: float
    stdout: str
    stderr_tail: str
    json: object = None
    notes: list[str] = field(default_factory=list)


def scripts(only: list[str] | None) -> list[Path]:
    """The benchmark scripts, in a fixed order (bench_*.py by name, then coverage_did.py)."""
    found = sorted(HERE.glob("bench_*.py"))
    extra = HERE / "coverage_did.py"
    if extra.exists():
        found.append(extra)
    if only:
        found = [p for p in found if p.stem in only]
    return found


# --national: the Wilding-scale run (15.7 M persons x 22 quarters, about 345 M rows)
NATIONAL = ["--persons", "15700000"]


def arguments(script: Path, *, quick: bool, tmp: Path, national: bool = False) -> list[str]:
    """The arguments for one script (see ``RUNS``)."""
    if national and script.stem == "bench_national":
        args = NATIONAL
    elif script.stem in RUNS:
        full, small = RUNS[script.stem]
        args = small if quick else full
    elif quick:
        helptext = subprocess.run(
            [sys.executable, str(script), "--help"], capture_output=True, text=True, check=False
        ).stdout
        args = ["--quick"] if "--quick" in helptext else []
    else:
        args = []
    return [a.replace("{tmp}", str(tmp)) for a in args]


def shown_arguments(args: list[str], tmp: Path) -> list[str]:
    """The arguments as shown in RESULTS.md: the temporary folder written as ``$TMP``."""
    return [a.replace(str(tmp), "$TMP") for a in args]


def run_one(script: Path, *, quick: bool, timeout: float, national: bool = False) -> Outcome:
    """Run one script in its own process; measure wall time and peak RSS (incl. children)."""
    with tempfile.TemporaryDirectory(prefix=f"{script.stem}-") as tmpdir:
        tmp = Path(tmpdir)
        args = arguments(script, quick=quick, tmp=tmp, national=national)
        out_path, err_path = tmp / "stdout.txt", tmp / "stderr.txt"
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        }
        with out_path.open("w") as fout, err_path.open("w") as ferr:
            t0 = time.perf_counter()
            proc = subprocess.Popen(
                [sys.executable, str(script), *args], cwd=ROOT, stdout=fout, stderr=ferr, env=env
            )
            status, rusage = "", None
            while True:
                pid, code, rusage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    status = (
                        "ok" if code == 0 else f"failed (exit {os.waitstatus_to_exitcode(code)})"
                    )
                    proc.returncode = os.waitstatus_to_exitcode(code)
                    break
                if time.perf_counter() - t0 > timeout:
                    proc.kill()
                    _, _, rusage = os.wait4(proc.pid, 0)
                    proc.returncode = -9
                    status = f"timeout after {timeout:.0f} s"
                    break
                time.sleep(0.2)
            seconds = time.perf_counter() - t0
        stdout = out_path.read_text(errors="replace")
        stderr = err_path.read_text(errors="replace").strip().splitlines()
        payload = None
        json_file = tmp / "out.json"
        if json_file.exists():
            payload = json.loads(json_file.read_text())
    return Outcome(
        name=script.stem,
        args=shown_arguments(args, tmp),
        status=status,
        seconds=seconds,
        peak_mib=rusage.ru_maxrss / 1024 if rusage is not None else float("nan"),
        stdout=stdout,
        stderr_tail="\n".join(stderr[-15:]),
        json=payload,
    )


def _meminfo() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024**2:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(name: str) -> str:
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return "not installed"


def _git_commit() -> str:
    proc = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    return proc.stdout.strip() or "unknown"


def machine() -> dict[str, str]:
    """Facts about the machine and interpreter, and the load average now."""
    cpus = os.cpu_count() or 0
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cpus
    load = os.getloadavg()
    return {
        "CPU": _cpu_model(),
        "logical CPUs (usable)": f"{cpus} ({usable})",
        "memory": _meminfo(),
        "OS": platform.platform(),
        "Python": f"{platform.python_implementation()} {platform.python_version()}",
        "load average (1, 5, 15 min)": ", ".join(f"{x:.2f}" for x in load),
        "_load1": f"{load[0]}",
        "_commit": _git_commit(),
        "_usable": f"{usable}",
    }


def render(
    outcomes: list[Outcome],
    facts: dict[str, str],
    load_end: tuple[float, float, float],
    *,
    quick: bool,
    started: dt.datetime,
) -> str:
    """The text of RESULTS.md."""
    usable = int(facts["_usable"]) or 1
    load1 = float(facts["_load1"])
    loaded = max(load1, load_end[0]) > 0.75 * usable
    lines = [
        "# Benchmark results",
        "",
        f"Produced by `python -m benchmarks{' --quick' if quick else ''}` on "
        f"{started:%Y-%m-%d %H:%M} UTC at commit `{facts.get('_commit', 'unknown')}`. "
        "Do not edit by hand.",
        "",
    ]
    if quick:
        lines += [
            "**Quick mode**: small sizes that show every benchmark runs; the times say little "
            "about performance at the sizes an evaluation uses.",
            "",
        ]
    if loaded:
        lines += [
            f"**These figures came from a loaded machine**: the 1-minute load average was "
            f"{load1:.1f} at the start and {load_end[0]:.1f} at the end, on {usable} usable "
            "CPUs, so other work competed for the processors. Timings and ratios are not "
            "meaningful; rerun on an idle machine.",
            "",
        ]
    lines += ["## Machine", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in facts.items() if not k.startswith("_")]
    lines += [f"| load average at the end | {', '.join(f'{x:.2f}' for x in load_end)} |", ""]
    lines += ["## Versions", "", "| package | version |", "|---|---|"]
    lines += [f"| {p} | {_version(p)} |" for p in PACKAGES]
    lines += [
        "",
        "## Summary",
        "",
        "Wall time and peak resident memory of each script (its own process and its "
        "subprocesses, so it includes data generation and every library it compares).",
        "",
        "| script | arguments | status | wall s | peak MiB |",
        "|---|---|---|---:|---:|",
    ]
    for o in outcomes:
        args = " ".join(o.args) or "(defaults)"
        lines.append(f"| `{o.name}` | `{args}` | {o.status} | {o.seconds:.1f} | {o.peak_mib:.0f} |")
    lines.append("")
    for o in outcomes:
        lines += [f"## {o.name}", ""]
        doc = _first_line(HERE / f"{o.name}.py")
        if doc:
            lines += [doc, ""]
        body = o.stdout.strip()
        if not body:
            lines += ["(no output)", ""]
        elif any(line.startswith("|") for line in body.splitlines()):
            lines += [body, ""]  # markdown tables: keep as they are
        else:
            lines += ["```text", body, "```", ""]
        if o.json is not None:
            lines += ["JSON written by the script:", "", "```json"]
            lines += [json.dumps(o.json, indent=2, sort_keys=True), "```", ""]
        if o.status != "ok" and o.stderr_tail:
            lines += ["Last lines of its error output:", "", "```text", o.stderr_tail, "```", ""]
    return "\n".join(lines).rstrip() + "\n"


def _first_line(path: Path) -> str:
    text = path.read_text(encoding="utf-8")
    for quote in ('"""', "'''"):
        if text.lstrip().startswith(quote):
            return text.lstrip()[3:].splitlines()[0].strip()
    return ""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="Small sizes (minutes, not hours).")
    ap.add_argument("--only", nargs="*", help="Run only these scripts (by stem, e.g. bench_did).")
    ap.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="Seconds per script (default 1800 quick, 86400 full).",
    )
    ap.add_argument(
        "--national",
        action="store_true",
        help="bench_national at the national size (15.7 M persons x 22 quarters; "
        "about 3 GiB of Parquet in a temporary folder, minutes).",
    )
    ap.add_argument("--out", type=Path, default=HERE / "RESULTS.md", help="Where to write.")
    args = ap.parse_args(argv)
    timeout = args.timeout or (1800.0 if args.quick else 86400.0)
    started = dt.datetime.now(dt.UTC)
    facts = machine()
    outcomes = []
    for script in scripts(args.only):
        print(f"running {script.name} ...", file=sys.stderr, flush=True)
        o = run_one(script, quick=args.quick, timeout=timeout, national=args.national)
        print(f"  {o.status} in {o.seconds:.1f} s, peak {o.peak_mib:.0f} MiB", file=sys.stderr)
        outcomes.append(o)
    text = render(outcomes, facts, os.getloadavg(), quick=args.quick, started=started)
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0 if all(o.status == "ok" for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
