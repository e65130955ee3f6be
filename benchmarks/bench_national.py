"""Benchmark: Callaway-Sant'Anna at national scale (15.7 M persons x 22 quarters, DuckDB).

The design of the national evaluation (Wilding et al. 2025): one row per person and
quarter, staggered referral cohorts, never-treated and not-yet-treated controls. The
panel is written straight to Parquet by DuckDB SQL (no event-level extracts: this
measures the estimator, not the linkage) with a known effect, then analysed with
``spevidence.did.staggered`` on an Ibis DuckDB table (the engine path: one scan of the
Parquet, cohort x period moments in the engine, a few kilobytes back to Python):
ATT(g, t), simple and dynamic aggregation, analytic (influence-function) SEs.

Generation and analysis run in separate processes, each timed (wall) with its peak
resident memory; ``uptime`` is recorded before and after. The estimates are compared
with the truth the generator used:

* outcome ``gp`` = person level (higher for later-referred cohorts: selection on levels)
  + a common quarter trend and season + effect + noise;
* effect of referral ``e`` quarters after the referral quarter ``g``: ``0.05 (e + 1)``
  for ``e >= 0`` and 0 before, so the dynamic ATT at event time ``e`` is exactly that
  and the simple ATT is its average over the post-referral (g, t) cells weighted by
  cohort size, as R ``did`` aggregates it;
* 70 % never referred, the rest referred in quarters 3..20 (uniformly).

Run::

    python benchmarks/bench_national.py --quick                   # 20k persons, temp dir
    python benchmarks/bench_national.py --persons 1000000 --data /big/disk/national
    python benchmarks/bench_national.py --persons 15700000 --data /big/disk/national

``--data`` keeps the Parquet (re-used by later runs with the same size and seed; the
generation time reported is then the one measured when it was written).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

QUARTERS = 22
GEN_VERSION = 1  # bump when the SQL below changes (invalidates kept Parquet files)


def _sql(n_persons: int, seed: int) -> str:
    """The panel as one DuckDB SELECT (deterministic: hashes of person, quarter and seed)."""
    s = int(seed)
    return f"""
    WITH p AS (
      SELECT range AS pid,
             CASE WHEN hash(range, {s}, 1) % 10000 < 7000 THEN 0
                  ELSE 3 + CAST(hash(range, {s}, 2) % 18 AS INTEGER) END AS g,
             (hash(range, {s}, 3) % 100000) / 50000.0 AS lvl
      FROM range({n_persons})
    )
    SELECT pid,
           CAST(q.range AS INTEGER) AS quarter,
           g,
           2.0::DOUBLE + lvl + CASE WHEN g > 0 THEN 0.5 + 0.02::DOUBLE * g ELSE 0.0 END
             + 0.03::DOUBLE * q.range + CASE WHEN q.range % 4 = 0 THEN 0.2::DOUBLE ELSE 0.0 END
             + CASE WHEN g > 0 AND q.range >= g THEN 0.05::DOUBLE * (q.range - g + 1)
                    ELSE 0.0 END
             + 2.0::DOUBLE * ((hash(pid, q.range, {s}, 4) % 100000) / 100000.0 - 0.5)
             AS gp
    FROM p CROSS JOIN range(1, {QUARTERS + 1}) q
    """


def generate(n_persons: int, seed: int, out: Path, threads: int, memory_limit: str) -> dict:
    import duckdb

    out.mkdir(parents=True, exist_ok=True)
    path = out / "panel.parquet"
    con = duckdb.connect()
    con.execute(f"SET threads={threads}")
    con.execute(f"SET memory_limit='{memory_limit}'")
    con.execute("SET preserve_insertion_order=false")
    sql = _sql(n_persons, seed)
    t0 = time.perf_counter()
    con.execute(f"COPY ({sql}) TO '{path}' (FORMAT parquet, COMPRESSION zstd)")
    seconds = time.perf_counter() - t0
    cohorts = con.execute(
        f"SELECT g, count(*) FROM ({sql.split('SELECT pid,')[0]} SELECT * FROM p) "
        "GROUP BY g ORDER BY g"
    ).fetchall()
    meta = {
        "persons": n_persons,
        "quarters": QUARTERS,
        "rows": n_persons * QUARTERS,
        "seed": seed,
        "version": GEN_VERSION,
        "seconds": seconds,
        "bytes": path.stat().st_size,
        "cohort_sizes": {str(int(g)): int(k) for g, k in cohorts},
        "threads": threads,
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=1))
    return meta


def truth(cohort_sizes: dict[str, int]) -> tuple[float, dict[int, float]]:
    """True simple ATT (R did weights: cohort size over post cells) and dynamic ATT by e."""
    num = den = 0.0
    for g, k in cohort_sizes.items():
        gi = int(g)
        if gi == 0:
            continue
        for t in range(gi, QUARTERS + 1):
            num += k * 0.05 * (t - gi + 1)
            den += k
    dyn = {e: (0.05 * (e + 1) if e >= 0 else 0.0) for e in range(-QUARTERS, QUARTERS)}
    return num / den, dyn


def analyse(path: Path, threads: int, memory_limit: str, controls: list[str]) -> dict:
    import ibis
    import numpy as np

    from spevidence.did import staggered

    meta = json.loads((path.parent / "meta.json").read_text())
    simple_true, dyn_true = truth(meta["cohort_sizes"])
    tmpdir = tempfile.mkdtemp(prefix="duckdb-spill-", dir=path.parent)
    con = ibis.duckdb.connect(threads=threads, memory_limit=memory_limit, temp_directory=tmpdir)
    tbl = con.read_parquet(str(path))
    runs: list[dict[str, Any]] = []
    for control in controls:
        t0 = time.perf_counter()
        ctl: Literal["never", "notyet"] = "notyet" if control == "notyet" else "never"
        r = staggered(tbl, yname="gp", idname="pid", tname="quarter", gname="g", control=ctl)
        t1 = time.perf_counter()
        s = r.aggregate("simple")
        d = r.aggregate("dynamic")
        t2 = time.perf_counter()
        dt = np.array([dyn_true[int(e)] for e in d.levels])
        z = (d.att - dt) / d.se
        runs.append(
            {
                "control": control,
                "path": r.path,
                "n_units": int(r.n_units),
                "cells": len(r.att),
                "seconds_attgt": t1 - t0,
                "seconds_aggregate": t2 - t1,
                "seconds": t2 - t0,
                "simple_att": float(s.overall_att),
                "simple_se": float(s.overall_se),
                "simple_true": simple_true,
                "simple_z": float((s.overall_att - simple_true) / s.overall_se),
                "dynamic_max_abs_error": float(np.max(np.abs(d.att - dt))),
                "dynamic_max_abs_z": float(np.max(np.abs(z))),
                "dynamic_cover95": float(np.mean(np.abs(z) < 1.959964)),
                "dynamic_events": len(d.att),
            }
        )
        print(json.dumps(runs[-1]), file=sys.stderr, flush=True)  # progress
    con.disconnect()
    shutil.rmtree(tmpdir, ignore_errors=True)
    return {"runs": runs}


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def _child(args: list[str]) -> tuple[dict, float, float]:
    """Run this script with ``args`` in a child; (its JSON, wall s, peak RSS MiB)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    assert proc.stdout is not None
    text = proc.stdout.read()
    _, status, ru = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"step {args[:2]} failed (exit {os.waitstatus_to_exitcode(status)})")
    return json.loads(text.strip().splitlines()[-1]), wall, ru.ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--persons", type=int, default=1_000_000)
    ap.add_argument("--quick", action="store_true", help="20,000 persons (seconds)")
    ap.add_argument("--data", type=Path, default=None, help="folder to keep the Parquet in")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--memory-limit", default="12GB", help="DuckDB memory_limit")
    ap.add_argument("--control", nargs="+", default=["never", "notyet"])
    ap.add_argument("--regenerate", action="store_true")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ap.add_argument("--step", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.step:
        what, where = args.step
        if what == "generate":
            res = generate(args.persons, args.seed, Path(where), args.threads, args.memory_limit)
        else:
            res = analyse(Path(where), args.threads, args.memory_limit, args.control)
        print(json.dumps(res))
        return
    n = 20_000 if args.quick else args.persons
    print(f"generating/analysing {n:,} persons ({_uptime()})", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-national-") as tmp:
        folder = (args.data or Path(tmp)) / f"persons-{n}-seed-{args.seed}"
        meta_file = folder / "meta.json"
        common = ["--persons", str(n), "--seed", str(args.seed), "--threads", str(args.threads)]
        common += ["--memory-limit", args.memory_limit]
        up0 = _uptime()
        meta = json.loads(meta_file.read_text()) if meta_file.exists() else None
        reused = meta is not None and meta.get("version") == GEN_VERSION and not args.regenerate
        gen_peak = float("nan")
        if not reused:
            meta, _, gen_peak = _child(["--step", "generate", str(folder), *common])
        assert meta is not None
        up1 = _uptime()
        step = ["--step", "analyse", str(folder / "panel.parquet")]
        res, wall, peak = _child([*step, *common, "--control", *args.control])
        up2 = _uptime()
    rows = n * QUARTERS
    print(f"\nCallaway-Sant'Anna at national scale: {n:,} persons x {QUARTERS} quarters ")
    print(f"({rows:,} rows, Parquet {meta['bytes'] / 2**30:.2f} GiB), DuckDB engine, ")
    print(f"{args.threads} threads, DuckDB memory_limit {args.memory_limit}\n")
    print("| step | wall s | peak RSS MiB | uptime before |")
    print("|---|---:|---:|---|")
    gen_note = " (re-used; measured when written)" if reused else ""
    print(
        f"| generate Parquet (DuckDB SQL){gen_note} | {meta['seconds']:.1f} "
        f"| {gen_peak:.0f} | {up0} |"
    )
    print(
        f"| analyse: {len(args.control)} x (ATT(g,t) + simple + dynamic), process total "
        f"| {wall:.1f} | {peak:.0f} | {up1} |"
    )
    print(f"\nuptime after: {up2}\n")
    print(
        "| control | ATT(g,t) s | aggregate s | cells | simple ATT (SE) | true simple "
        "| dynamic: max abs error | max abs z | share within 95% CI |"
    )
    print("|---|---:|---:|---:|---|---:|---:|---:|---:|")
    for r in res["runs"]:
        print(
            f"| {r['control']} | {r['seconds_attgt']:.1f} | {r['seconds_aggregate']:.2f} "
            f"| {r['cells']} | {r['simple_att']:.5f} ({r['simple_se']:.5f}) "
            f"| {r['simple_true']:.5f} | {r['dynamic_max_abs_error']:.5f} "
            f"| {r['dynamic_max_abs_z']:.2f} | {r['dynamic_cover95']:.2f} |"
        )
    if args.json:
        out = {
            "persons": n,
            "rows": rows,
            "generate": {**meta, "reused": reused, "peak_mib": gen_peak},
            "analyse": {**res, "wall": wall, "peak_mib": peak},
            "uptime": [up0, up1, up2],
        }
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
