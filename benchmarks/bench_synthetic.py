"""Benchmark the synthetic ICB generator: time and peak memory (not a test).

Usage (from the repository root)::

    python benchmarks/bench_synthetic.py                      # 1 M persons x 5 years
    python benchmarks/bench_synthetic.py --persons 200000     # smaller, extrapolate
    python benchmarks/bench_synthetic.py --persons 15700000   # national scale

Each size runs in a fresh subprocess so that its peak resident memory (ru_maxrss) is
its own. Target (issue 4): 1 M persons x 5 years in under 2 minutes with peak memory
under 4 GiB on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = """
import json, resource, sys, time
from spevidence.synthetic import generate
persons, scenario, start, end, out, fmt = sys.argv[1:7]
t0 = time.perf_counter()
res = generate(scenario, persons=int(persons), seed=1, out=out, format=fmt, start=start, end=end,
               identifiers="pseudonym", progress=False)
secs = time.perf_counter() - t0
cpu = resource.getrusage(resource.RUSAGE_SELF)
size = sum(p.stat().st_size for p in res.files.values())
print(json.dumps({"seconds": secs, "cpu_seconds": cpu.ru_utime + cpu.ru_stime,
                  "peak_mib": cpu.ru_maxrss / 1024, "rows": res.rows, "bytes": size}))
"""


def run(persons: int, scenario: str, start: str, end: str, fmt: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-synth-") as tmp:
        cmd = [sys.executable, "-c", CHILD, str(persons), scenario, start, end, tmp, fmt]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise SystemExit(proc.stderr)
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        out["wall_seconds_incl_import"] = wall
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--persons", type=int, nargs="+", default=[1_000_000])
    ap.add_argument("--scenario", default="staggered-national")
    ap.add_argument("--start", default="2019-04-01")
    ap.add_argument("--end", default="2024-03-31")
    ap.add_argument("--format", default="parquet", choices=["parquet", "csv"])
    ap.add_argument("--json", type=Path, help="Also write the results to this JSON file.")
    args = ap.parse_args()
    results = []
    print(f"{'persons':>12} {'seconds':>9} {'cpu s':>8} {'peak MiB':>9} {'GP rows':>12} {'MB':>8}")
    for n in args.persons:
        r = run(n, args.scenario, args.start, args.end, args.format)
        r["persons"] = n
        results.append(r)
        print(
            f"{n:>12,} {r['seconds']:>9.1f} {r['cpu_seconds']:>8.1f} {r['peak_mib']:>9.0f} "
            f"{r['rows']['gp_appointments']:>12,} {r['bytes'] / 1e6:>8.1f}",
            flush=True,
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
