"""Benchmark: `spevidence run` end to end: wall time, whole-tree peak memory, time per stage.

    python benchmarks/bench_run.py --persons 50000 100000 300000        # kent-ae, matched
    python benchmarks/bench_run.py --protocol protocols/national-staggered.yaml --persons 300000
    python benchmarks/bench_run.py --persons 1000000 --memory-limit 4GB --engine spark

For each size, the extracts are generated once with ``spevidence synth`` (scenario
``kent-ae`` for the matched protocol ``protocols/kent-ae.yaml``, ``staggered-national``
for ``protocols/national-staggered.yaml``; seed 5) into ``OUT_ROOT/data/`` unless that
folder is already there, and then ``spevidence run PROTOCOL --data D --out O`` runs as a
subprocess in its own process group, at ``nice`` 10, with a fresh output folder (so no
stage comes from the run cache). Recorded:

* wall time, exit code, the load average at the start and the end;
* peak resident memory of the whole process tree: psutil polls every 0.2 s and sums the
  RSS of the run and all its descendants (a Spark JVM included); the maximum is kept,
  with the stage it fell in, and the peak within each stage;
* time per stage: ``spevidence run`` prints its progress only when its standard error is
  a terminal (a rich progress bar; nothing before the end when it is a pipe or a file),
  so by default (``--progress pty``) its standard error is a pseudo-terminal and the
  stage labels are read from the bar as it redraws (0.1 s resolution). ``--progress
  pipe`` reads plain lines from a pipe instead (for when the run prints them); the stage
  times then come only from what it printed. The cache files the run writes after the
  panel, the matching and the estimates (``OUT/.spevidence-cache/*/manifest.json``) give
  a second, independent clock, reported beside;
* if the run fails or is killed: the stage it was in and the tail of its error output.

The benchmark never takes the machine down: when the machine's available memory
(``MemAvailable``) falls under ``--min-available`` (1.5 GiB) it kills the whole process
group at once and reports the run as "stopped by the benchmark at X GiB" (the run's RSS
then). Timings live here, never in test assertions; on a machine shared with other work
the load average says how far to trust them.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import pty
import re
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import termios
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
GIB = 1024**3

# the shipped protocol -> the synthetic scenario that matches its window and identifiers
SCENARIOS = {"kent-ae": "kent-ae", "national-staggered": "staggered-national"}
SEED = 5
POLL = 0.2  # seconds between memory samples
STARTUP = "(start-up, before the first progress line)"
ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07]*\x07|\x1b[()][A-Za-z0-9]|\x1b[=>]")
# a rich progress line: "<spinner> <label> <bar> 3/7 0:01:12"
RICH = re.compile(r"^\W*(?P<label>\w.*?)\s+[━╸╺\-─ ]+\s*(?P<done>\d+)/(?P<total>\d+)\s+\d+:\d\d")
# a plain progress line (a run that prints them when not a terminal), e.g.
# "[0:01:12] stage 3/7: Match comparators at referral ..." or "Match comparators ... 3/7"
PLAIN = re.compile(r"(?P<done>\d+)/(?P<total>\d+)\W+(?P<label>[A-Za-z].*?)\s*(\(|$)")


@dataclass
class Stage:
    """One stage of the run as its progress output named it."""

    label: str
    start: float  # seconds from the start of the run
    end: float | None = None
    peak_gib: float = 0.0

    @property
    def seconds(self) -> float | None:
        return None if self.end is None else self.end - self.start


@dataclass
class Outcome:
    """What one `spevidence run` did."""

    protocol: str
    persons: int
    engine: str
    memory_limit: str | None
    repeat: int
    status: str = ""
    exit_code: int | None = None
    seconds: float = 0.0
    peak_gib: float = 0.0
    peak_stage: str = ""
    died_in: str = ""
    stages: list[Stage] = field(default_factory=list)
    cache_marks: dict[str, float] = field(default_factory=dict)
    progress_source: str = ""
    progress_lines_before_exit: int = 0
    load_start: tuple[float, float, float] = (0.0, 0.0, 0.0)
    load_end: tuple[float, float, float] = (0.0, 0.0, 0.0)
    available_start_gib: float = 0.0
    min_available_gib: float = 0.0
    synth_seconds: float | None = None
    stderr_tail: str = ""


def _tree_rss(proc: psutil.Process) -> int:
    """Resident bytes of a process and all its descendants (shared pages counted in each)."""
    total = 0
    try:
        procs = [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            total += p.memory_info().rss
    return total


def _kill_tree(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the run's process group and any descendant that left it."""
    try:
        kids = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        kids = []
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # the run is its own group leader (new session)
    for k in kids:
        with contextlib.suppress(psutil.NoSuchProcess):
            k.kill()


def synth(scenario: str, persons: int, data: Path) -> float | None:
    """Generate the extracts unless ``data`` is already there; the seconds it took."""
    if (data / "population.parquet").exists() or (data / "population.csv").exists():
        return None
    data.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    cmd = [
        *_spevidence(),
        "synth",
        "--scenario",
        scenario,
        "--persons",
        str(persons),
        "--seed",
        str(SEED),
        "--out",
        str(data),
        "--no-progress",
    ]
    subprocess.run(cmd, check=True, cwd=ROOT, preexec_fn=lambda: os.nice(10))
    return time.perf_counter() - t0


def _spevidence() -> list[str]:
    exe = Path(sys.executable).with_name("spevidence")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "spevidence"]


class _Progress:
    """Reads the run's error output (a pseudo-terminal or a pipe) in a thread: keeps all of
    it (ANSI codes removed) and the time each stage label first appeared."""

    def __init__(self, fd: int, t0: float, log: Path) -> None:
        self.fd, self.t0, self.log = fd, t0, log
        self.stages: list[Stage] = []
        self.text: list[str] = []
        self.lines = 0
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        buf = ""
        with self.log.open("w", encoding="utf-8", errors="replace") as f:
            while True:
                try:
                    chunk = os.read(self.fd, 65536)
                except OSError:  # EIO: the pseudo-terminal's other end closed
                    break
                if not chunk:
                    break
                now = time.perf_counter() - self.t0
                text = ANSI.sub("", chunk.decode("utf-8", errors="replace"))
                f.write(text)
                buf += text
                *parts, buf = re.split(r"[\r\n]", buf)
                for part in parts:
                    self._line(part, now)
            self._line(buf, time.perf_counter() - self.t0)

    def _line(self, line: str, now: float) -> None:
        line = line.strip()
        if not line:
            return
        self.lines += 1
        self.text.append(line)
        if len(self.text) > 400:
            del self.text[:200]
        m = RICH.search(line) or PLAIN.search(line)
        if m is None:
            return
        label = m.group("label").strip()
        if self.stages and self.stages[-1].label == label:
            return
        if not self.stages:  # imports, the lock: before the first progress line
            self.stages.append(Stage(label=STARTUP, start=0.0))
        if self.stages:
            self.stages[-1].end = now
        self.stages.append(Stage(label=label, start=now))

    def current(self) -> Stage | None:
        return self.stages[-1] if self.stages else None


def run_one(
    protocol: Path,
    persons: int,
    *,
    engine: str,
    memory_limit: str | None,
    out_root: Path,
    repeat: int,
    progress: str,
    min_available: float,
    nice: int,
    keep: bool,
) -> Outcome:
    """One ``spevidence run`` of ``protocol`` on ``persons`` synthetic people."""
    name = protocol.stem
    scenario = SCENARIOS.get(name, name)
    data = out_root / "data" / f"{scenario}-{persons}-seed{SEED}"
    res = Outcome(
        protocol=str(protocol),
        persons=persons,
        engine=engine,
        memory_limit=memory_limit,
        repeat=repeat,
        progress_source=progress,
    )
    res.synth_seconds = synth(scenario, persons, data)
    out = out_root / "out" / f"{name}-{persons}-{engine}-r{repeat}"
    shutil.rmtree(out, ignore_errors=True)  # a fresh folder: nothing from the run cache
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [*_spevidence(), "run", str(protocol), "--data", str(data), "--out", str(out)]
    cmd += ["--engine", engine]
    if memory_limit:
        cmd += ["--memory-limit", memory_limit]
    env = {**os.environ, "TERM": os.environ.get("TERM", "xterm"), "COLUMNS": "160"}
    if progress == "pty":
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 160, 0, 0))
        err_w, err_r = slave, master
    else:
        err_r, err_w = os.pipe()
    log = out_root / "logs" / f"{name}-{persons}-{engine}-r{repeat}.stderr.txt"
    log.parent.mkdir(parents=True, exist_ok=True)
    res.load_start = os.getloadavg()
    res.available_start_gib = psutil.virtual_memory().available / GIB
    res.min_available_gib = res.available_start_gib
    t0, wall0 = time.perf_counter(), time.time()
    with (log.with_suffix("").with_suffix(".stdout.txt")).open("wb") as fout:
        proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=fout,
            stderr=err_w,
            env=env,
            start_new_session=True,  # its own process group: killed as one
            preexec_fn=(lambda: os.nice(nice)) if nice else None,
        )
    os.close(err_w)
    reader = _Progress(err_r, t0, log)
    ps = psutil.Process(proc.pid)
    stopped_at: float | None = None
    stopped_avail = 0.0
    startup_peak = 0.0
    while proc.poll() is None:
        rss = _tree_rss(ps) / GIB
        now_stage = reader.current()
        if rss > res.peak_gib:
            res.peak_gib = rss
            res.peak_stage = now_stage.label if now_stage else STARTUP
        if now_stage is not None:
            now_stage.peak_gib = max(now_stage.peak_gib, rss)
        else:
            startup_peak = max(startup_peak, rss)
        avail = psutil.virtual_memory().available / GIB
        res.min_available_gib = min(res.min_available_gib, avail)
        if avail < min_available:
            stopped_at, stopped_avail = rss, avail
            _kill_tree(proc)
            proc.wait()
            break
        time.sleep(POLL)
    res.seconds = time.perf_counter() - t0
    res.exit_code = proc.returncode
    res.load_end = os.getloadavg()
    reader.thread.join(timeout=10)
    with contextlib.suppress(OSError):
        os.close(err_r)
    res.stages = reader.stages
    if res.stages and res.stages[0].label == STARTUP:
        res.stages[0].peak_gib = max(res.stages[0].peak_gib, startup_peak)
    # stage labels seen before the last one (a bar shown only when the run ends gives one)
    res.progress_lines_before_exit = max(sum(1 for s in reader.stages if s.label != STARTUP) - 1, 0)
    if res.stages and res.stages[-1].end is None:
        res.stages[-1].end = res.seconds
    cache = out / ".spevidence-cache"
    for stage in ("panel", "matching", "estimates"):
        mf = cache / stage / "manifest.json"
        if mf.exists():  # mtime -> seconds from the start
            res.cache_marks[stage] = mf.stat().st_mtime - wall0
    last = res.stages[-1].label if res.stages else STARTUP
    if stopped_at is not None:
        res.status = (
            f"stopped by the benchmark at {stopped_at:.1f} GiB "
            f"(machine's available memory {stopped_avail:.1f} GiB)"
        )
        res.died_in = last
    elif proc.returncode == 0:
        res.status = "ok"
    else:
        killed = proc.returncode < 0 or proc.returncode == 137
        res.status = f"{'killed' if killed else 'failed'} (exit {proc.returncode})"
        res.died_in = last
    if res.status != "ok":
        res.stderr_tail = "\n".join(_tail(reader.text, 15))
    if not keep:
        shutil.rmtree(out, ignore_errors=True)
    return res


def _tail(lines: list[str], n: int) -> list[str]:
    """The last ``n`` lines, a redrawn progress bar kept once per stage (its last state)."""
    out: list[str] = []
    for line in lines:
        m = RICH.search(line)
        if m and out and (prev := RICH.search(out[-1])) and prev.group("label") == m.group("label"):
            out[-1] = line
        else:
            out.append(line)
    return out[-n:]


def _fmt_s(x: float | None) -> str:
    return "" if x is None else f"{x:.1f}"


def _load(x: tuple[float, float, float]) -> str:
    return f"{x[0]:.1f}"


def report(outcomes: list[Outcome]) -> str:
    """Markdown tables: one row per run, then the stages of each run."""
    lines = [
        "| protocol | persons | engine | memory limit | rep | status | wall s | peak GiB (tree) "
        "| peak in stage | died in | load 1-min start / end | min available GiB |",
        "|---|---:|---|---|---:|---|---:|---:|---|---|---|---:|",
    ]
    for o in outcomes:
        lines.append(
            f"| {Path(o.protocol).stem} | {o.persons:,} | {o.engine} | {o.memory_limit or '-'} "
            f"| {o.repeat} | {o.status} | {o.seconds:.1f} | {o.peak_gib:.2f} | {o.peak_stage} "
            f"| {o.died_in} | {_load(o.load_start)} / {_load(o.load_end)} "
            f"| {o.min_available_gib:.1f} |"
        )
    for key in sorted({(o.protocol, o.persons, o.engine, o.memory_limit) for o in outcomes}):
        runs = [o for o in outcomes if (o.protocol, o.persons, o.engine, o.memory_limit) == key]
        labels: list[str] = []
        for o in runs:
            labels += [s.label for s in o.stages if s.label not in labels]
        src = runs[0].progress_source
        lines += [
            "",
            f"Stages of {Path(key[0]).stem}, {key[1]:,} persons, {key[2]}"
            f"{', memory limit ' + key[3] if key[3] else ''} (from its progress output, "
            f"read through a {'pseudo-terminal' if src == 'pty' else 'pipe'}; seconds and "
            "whole-tree peak GiB per repeat):",
            "",
            "| stage | " + " | ".join(f"s (rep {o.repeat}) | peak GiB" for o in runs) + " |",
            "|---|" + "---:|---:|" * len(runs),
        ]
        for label in labels:
            cells = []
            for o in runs:
                s = next((s for s in o.stages if s.label == label), None)
                cells += [_fmt_s(s.seconds if s else None), f"{s.peak_gib:.2f}" if s else ""]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        if not labels:
            lines.append("| (no progress lines were printed) |" + " |" * (2 * len(runs)))
        for o in runs:
            if o.stages and not o.progress_lines_before_exit:
                lines.append(
                    f"\nRep {o.repeat}: the run printed no progress line before its final one "
                    f"(through a {'pseudo-terminal' if src == 'pty' else 'pipe'}), so the "
                    "stage times above are not stage times; see the run-cache marks."
                )
        marks = [o for o in runs if o.cache_marks]
        if marks:
            lines += [
                "",
                "Run-cache files written at (s from start): "
                + "; ".join(
                    f"rep {o.repeat}: "
                    + ", ".join(f"{k} {v:.1f}" for k, v in o.cache_marks.items())
                    for o in marks
                ),
            ]
        if len(runs) > 1:
            ok = [o.seconds for o in runs if o.status == "ok"]
            if ok:
                lines.append(
                    f"\nMedian wall time of the runs that finished: {statistics.median(ok):.1f} s"
                )
    for o in outcomes:
        if o.stderr_tail:
            lines += [
                "",
                f"Last lines of the error output, {Path(o.protocol).stem} {o.persons:,} "
                f"rep {o.repeat} ({o.status}):",
                "",
                "```text",
                o.stderr_tail,
                "```",
            ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--persons", type=int, nargs="+", default=[100_000])
    ap.add_argument("--protocol", type=Path, default=ROOT / "protocols" / "kent-ae.yaml")
    ap.add_argument("--engine", choices=["duckdb", "spark"], default="duckdb")
    ap.add_argument("--memory-limit", help="Passed to `spevidence run --memory-limit`.")
    ap.add_argument(
        "--out-root",
        type=Path,
        default=Path("/tmp/spevidence-bench-run"),
        help="Extracts (data/), outputs (out/, removed after each run) and logs (logs/).",
    )
    ap.add_argument("--repeat", type=int, default=1, help="Runs per size.")
    ap.add_argument(
        "--progress",
        choices=["pty", "pipe"],
        default="pty",
        help="Read the run's progress through a pseudo-terminal (default) or a pipe.",
    )
    ap.add_argument(
        "--min-available",
        type=float,
        default=1.5,
        help="Stop the run when the machine's available memory falls under this many GiB.",
    )
    ap.add_argument("--nice", type=int, default=10, help="Niceness of the run (0: none).")
    ap.add_argument("--keep", action="store_true", help="Keep each run's output folder.")
    ap.add_argument("--json", type=Path, help="Also write the results to this JSON file.")
    ap.add_argument("--quick", action="store_true", help="5,000 persons: checks that it runs.")
    args = ap.parse_args(argv)
    persons = [5000] if args.quick else args.persons
    protocol = args.protocol.resolve()
    outcomes: list[Outcome] = []
    for n in persons:
        for r in range(1, args.repeat + 1):
            o = run_one(
                protocol,
                n,
                engine=args.engine,
                memory_limit=args.memory_limit,
                out_root=args.out_root,
                repeat=r,
                progress=args.progress,
                min_available=args.min_available,
                nice=args.nice,
                keep=args.keep,
            )
            print(
                f"{protocol.stem} {n:,} rep {r}: {o.status} in {o.seconds:.1f} s, "
                f"peak {o.peak_gib:.2f} GiB",
                file=sys.stderr,
                flush=True,
            )
            outcomes.append(o)
    print(
        f"`spevidence run` of {protocol.name}, engine {args.engine}, "
        f"{os.cpu_count()} CPUs, nice {args.nice}; extracts from `spevidence synth` seed {SEED}\n"
    )
    print(report(outcomes))
    if args.json:
        payload = [asdict(o) for o in outcomes]
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return 0 if all(o.status == "ok" for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
