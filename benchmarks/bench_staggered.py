"""Benchmark: Callaway-Sant'Anna (and ETWFE) against the Python peers.

Side by side on one simulated balanced panel (default 50,000 units x 24
periods, never-treated controls, doubly robust, no covariates, analytic SEs,
simple + dynamic aggregation): ``spevidence`` (pandas input and DuckDB
engine input), ``diff-diff``, ``moderndid`` and ``csdid``. Each peer runs in
its own subprocess with a time limit; the table gives wall time, the ratio to
spevidence, and the largest absolute difference from spevidence in ATT(g, t),
their SEs and the simple ATT -- the estimates must be identical. ``csdid``
runs three ways: analytic SEs (``fit(bstrap=False)``, like the others), its
documented defaults (``ATTgt(...).fit()`` bootstraps 1,000 multiplier draws,
and ``aggte`` inherits it), and analytic SEs with ``faster_mode=False`` (its
older per-cell code path).

``--national N`` also writes a Wilding-scale panel (N persons x 22 quarters,
Parquet, generated inside DuckDB) and times the engine path (simple and
dynamic ATT with analytic SEs) on it; ``--national 15700000`` is the
national design.

``--covariate N`` writes the same design with one continuous covariate that
drives adoption and the outcome trend (conditional parallel trends), and
times ``xformla="~x"`` (doubly robust, never-treated controls, 18 cohorts x
21 periods = 378 cells) two ways, each in its own process with its peak
resident memory: the engine path (unit pivot streamed from DuckDB) and the
table collected to pandas first (what spevidence did before the engine path).

Run::

    python benchmarks/bench_staggered.py                     # 50k x 24, all peers
    python benchmarks/bench_staggered.py --units 5000 --peers diff-diff moderndid
    python benchmarks/bench_staggered.py --national 1000000 --peers
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PEERS = ["diff-diff", "moderndid", "csdid", "csdid-defaults", "csdid-slow"]
LABELS = {
    "csdid": "csdid (analytic SEs: fit/aggte bstrap=False)",
    "csdid-defaults": "csdid (documented defaults: fit() bootstraps, biters=1000)",
    "csdid-slow": "csdid (analytic SEs, faster_mode=False)",
}


def simulate(n_units: int, n_periods: int, seed: int = 0) -> pd.DataFrame:
    """Balanced staggered panel: ~30% never treated, cohorts 3..T-2, dynamic effects."""
    rng = np.random.default_rng(seed)
    cohorts = np.arange(3, n_periods - 1)
    g = np.where(rng.random(n_units) < 0.3, 0, rng.choice(cohorts, size=n_units))
    a = rng.normal(size=n_units)
    t = np.arange(1, n_periods + 1)
    e = t[None, :] - g[:, None]
    eff = np.where((g[:, None] > 0) & (e >= 0), 0.05 * (e + 1), 0.0)
    y = a[:, None] + 0.02 * t[None, :] + eff + rng.normal(scale=0.5, size=(n_units, n_periods))
    return pd.DataFrame(
        {
            "id": np.repeat(np.arange(n_units), n_periods),
            "t": np.tile(t, n_units),
            "g": np.repeat(g, n_periods),
            "y": y.ravel(),
        }
    )


def _fitter(name: str, path: str) -> Callable[[], tuple]:
    """A function fitting ``name`` on the panel: (ATT(g,t), SEs, simple ATT, its SE)."""
    df = pd.read_parquet(path)
    if name in ("spevidence", "spevidence-duckdb"):
        from spevidence.did._staggered import staggered

        data: Any = df
        if name == "spevidence-duckdb":
            import ibis

            data = ibis.duckdb.connect().read_parquet(path)

        def ours() -> tuple:
            r = staggered(data, yname="y", idname="id", tname="t", gname="g")
            s = r.aggregate("simple")
            r.aggregate("dynamic")
            return r.att, r.se, s.overall_att, s.overall_se

        return ours
    if name == "diff-diff":
        import diff_diff as dd

        def diffdiff() -> tuple:
            res = dd.CallawaySantAnna(control_group="never_treated", estimation_method="dr").fit(
                df, outcome="y", unit="id", time="t", first_treat="g", aggregate="all"
            )
            gt = res.group_time_effects
            keys = sorted(gt)
            return (
                np.array([gt[k]["effect"] for k in keys]),
                np.array([gt[k]["se"] for k in keys]),
                res.overall_att,
                res.overall_se,
            )

        return diffdiff
    if name == "moderndid":
        import moderndid as md

        def modern() -> tuple:
            res = md.att_gt(
                df, yname="y", tname="t", idname="id", gname="g", boot=False, cband=False
            )
            s = md.aggte(res, type="simple", boot=False, cband=False)
            md.aggte(res, type="dynamic", boot=False, cband=False)
            return res.att_gt, res.se_gt, s.overall_att, s.overall_se

        return modern
    if name in ("csdid", "csdid-slow"):
        from csdid.att_gt import ATTgt

        def cs() -> tuple:
            with contextlib.redirect_stdout(io.StringIO()):
                out = ATTgt(
                    yname="y",
                    gname="g",
                    idname="id",
                    tname="t",
                    xformla="y~1",
                    data=df,
                    faster_mode=name == "csdid",
                ).fit(est_method="dr", bstrap=False)
                out.aggte("simple", bstrap=False)
                simple = (out.atte["overall_att"], out.atte["overall_se"])
                out.aggte("dynamic", bstrap=False)
            return np.asarray(out.results["att"]), np.asarray(out.results["se"]), *simple

        return cs
    if name == "csdid-defaults":  # what a user gets without options: multiplier bootstrap
        from csdid.att_gt import ATTgt

        def csd() -> tuple:
            with contextlib.redirect_stdout(io.StringIO()):
                out = ATTgt(yname="y", gname="g", idname="id", tname="t", data=df).fit()
                out.aggte("simple")
                simple = (out.atte["overall_att"], np.ravel(out.atte["overall_se"])[0])
                out.aggte("dynamic")
            return np.asarray(out.results["att"]), np.asarray(out.results["se"]), *simple

        return csd
    raise SystemExit(f"unknown worker {name}")


def run_worker(name: str, path: str, repeat: int = 1) -> dict:
    """Fit ``repeat`` times in this process; the fastest run counts (as ``timeit`` does:
    the first also pays for lazy imports and thread pools, in every library alike)."""
    warnings.simplefilter("ignore")
    fit = _fitter(name, path)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        att, se, simple, simple_se = fit()
        times.append(time.perf_counter() - t0)
    return {
        "seconds": min(times),
        "runs": times,
        "att": [float(x) for x in att],
        "se": [float(x) for x in se],
        "simple": float(simple),
        "simple_se": float(simple_se),
    }


def write_covariate_panel(n_persons: int, path: Path, threads: int) -> float:
    """The national design plus a covariate ``x`` in [0, 1) that lowers adoption and
    adds ``0.5 x + 0.03 x quarter`` to the outcome (parallel trends only given ``x``)."""
    import duckdb

    t0 = time.perf_counter()
    con = duckdb.connect()
    con.execute(f"SET threads={threads}")
    con.execute(
        f"""
        COPY (
          WITH p AS (
            SELECT range AS pid, (hash(range * 17) % 1000) / 1000.0 AS x,
                   (hash(range * 13) % 1000) / 250.0 AS a
            FROM range({n_persons})
          ), q AS (
            SELECT *, CASE WHEN hash(pid) % 100 < 55 + 30 * x THEN 0
                           ELSE 3 + hash(pid * 7) % 18 END AS g
            FROM p
          )
          SELECT pid, r.range + 1 AS quarter, g, x,
                 a + 0.5 * x + (0.02 + 0.03 * x) * (r.range + 1)
                   + CASE WHEN g > 0 AND r.range + 1 >= g THEN 0.05 * (r.range + 2 - g) ELSE 0 END
                   + ((hash(pid * 31 + r.range) % 10000) / 10000.0 - 0.5) AS gp
          FROM q CROSS JOIN range(22) r
        ) TO '{path}' (FORMAT parquet)
        """
    )
    return time.perf_counter() - t0


def covariate_worker(how: str, path: str, threads: int) -> dict:
    """One ``xformla`` run on the covariate panel: ``engine`` or ``collect`` (to pandas)."""
    import resource

    import ibis

    from spevidence.did._staggered import staggered

    tbl = ibis.duckdb.connect(threads=threads).read_parquet(path)
    t0 = time.perf_counter()
    data = tbl.to_pandas() if how == "collect" else tbl
    r = staggered(data, yname="gp", idname="pid", tname="quarter", gname="g", xformla="~x")
    d = r.aggregate("dynamic")
    return {
        "seconds": time.perf_counter() - t0,
        "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "att": [float(v) for v in r.att],
        "se": [float(v) for v in r.se],
        "cells": len(r.att),
        "units": r.n_units,
        "dynamic": [float(v) for v in d.att],
        "levels": [float(v) for v in d.levels],
        "dynamic_overall": d.overall_att,
    }


def covariate(n_persons: int, workdir: Path, threads: int, timeout: float) -> None:
    """Time xformla='~x' at scale: engine path against collecting the table to pandas."""
    path = workdir / "covariate.parquet"
    gen = write_covariate_panel(n_persons, path, threads)
    res: dict[str, dict | str] = {}
    for how in ("engine", "collect"):
        load = os.getloadavg()[0]
        try:
            proc = subprocess.run(
                [sys.executable, __file__, "--covariate-worker", how, str(path), str(threads)],
                capture_output=True,
                text=True,
                timeout=timeout,
                check=True,
            )
            res[how] = json.loads(proc.stdout.strip().splitlines()[-1]) | {"load": load}
        except subprocess.TimeoutExpired:
            res[how] = f"timeout > {timeout:.0f} s"
        except subprocess.CalledProcessError as err:
            res[how] = "failed: " + (err.stderr.strip().splitlines() or ["?"])[-1][:80]
        print(f"  covariate {how}: done", file=sys.stderr, flush=True)
    print(
        f"\nCallaway-Sant'Anna with a continuous covariate (xformla='~x', dr, never-treated), "
        f"{n_persons:,} persons x 22 quarters ({n_persons * 22:,} rows, Parquet written in "
        f"DuckDB in {gen:.1f} s), DuckDB threads={threads}\n"
    )
    print(
        "| input | seconds | peak RSS MiB | cells | max abs diff ATT(g,t) vs engine | SE "
        "| dynamic: max abs error vs truth | load 1-min |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    ref = res["engine"]
    for how, label in (("engine", "Ibis/DuckDB table (engine pivot)"), ("collect", "to_pandas()")):
        r = res[how]
        if isinstance(r, str):
            print(f"| {label} | {r} | | | | | | |")
            continue
        lv = np.asarray(r["levels"])
        truth = np.where(lv >= 0, 0.05 * (lv + 1), 0.0)
        err = np.max(np.abs(np.asarray(r["dynamic"]) - truth))
        if isinstance(ref, dict):
            da = np.max(np.abs(np.subtract(r["att"], ref["att"])))
            ds = np.nanmax(np.abs(np.subtract(r["se"], ref["se"])))
        else:
            da = ds = float("nan")
        print(
            f"| {label} | {r['seconds']:.1f} | {r['peak_mib']:.0f} | {r['cells']} | {da:.1e} "
            f"| {ds:.1e} | {err:.4f} | {r['load']:.1f} |"
        )


def national(n_persons: int, workdir: Path, threads: int) -> None:
    """Write an n_persons x 22-quarter Parquet panel in DuckDB and time the engine path."""
    import duckdb
    import ibis

    from spevidence.did._staggered import staggered

    path = workdir / "national.parquet"
    t0 = time.perf_counter()
    con = duckdb.connect()
    con.execute(f"SET threads={threads}")
    con.execute(
        f"""
        COPY (
          WITH p AS (
            SELECT range AS pid,
                   CASE WHEN hash(range) % 100 < 70 THEN 0 ELSE 3 + hash(range * 7) % 18 END AS g,
                   (hash(range * 13) % 1000) / 250.0 AS a
            FROM range({n_persons})
          )
          SELECT pid, q.range + 1 AS quarter, g,
                 a + 0.02 * (q.range + 1)
                   + CASE WHEN g > 0 AND q.range + 1 >= g THEN 0.05 * (q.range + 2 - g) ELSE 0 END
                   + ((hash(pid * 31 + q.range) % 10000) / 10000.0 - 0.5) AS gp
          FROM p CROSS JOIN range(22) q
        ) TO '{path}' (FORMAT parquet)
        """
    )
    gen = time.perf_counter() - t0
    icon = ibis.duckdb.connect(threads=threads)
    tbl = icon.read_parquet(str(path))
    t0 = time.perf_counter()
    r = staggered(tbl, yname="gp", idname="pid", tname="quarter", gname="g")
    s = r.aggregate("simple")
    d = r.aggregate("dynamic")
    fit = time.perf_counter() - t0
    truth = np.where(d.levels >= 0, 0.05 * (d.levels + 1), 0.0)
    print(
        f"\nNational-scale engine path: {n_persons:,} persons x 22 quarters "
        f"({n_persons * 22:,} rows)"
    )
    print(f"  generate Parquet in DuckDB: {gen:.1f} s; staggered + simple + dynamic: {fit:.1f} s")
    print(f"  simple ATT {s.overall_att:.5f} (SE {s.overall_se:.5f}); path={r.path}")
    print(f"  dynamic: max |estimate - truth| = {np.max(np.abs(d.att - truth)):.4f}")


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--units", type=int, default=50_000)
    ap.add_argument("--periods", type=int, default=24)
    ap.add_argument(
        "--peers",
        nargs="*",
        default=PEERS,
        help=f"subset of {PEERS}",
    )
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds per peer")
    ap.add_argument("--national", type=int, default=0, help="persons for the Wilding-scale run")
    ap.add_argument(
        "--covariate", type=int, default=0, help="persons for the xformla='~x' scale run"
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="fits per implementation in one process; the fastest counts (timeit-style)",
    )
    ap.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    ap.add_argument("--covariate-worker", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        name, path, repeat = args.worker
        print(json.dumps(run_worker(name, path, int(repeat))))
        return
    if args.covariate_worker:
        how, path, threads = args.covariate_worker
        print(json.dumps(covariate_worker(how, path, int(threads))))
        return
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.units:
            path = work / "panel.parquet"
            simulate(args.units, args.periods).to_parquet(path)
            results: dict[str, dict | str] = {}
            load0 = os.getloadavg()[0]
            for name in ["spevidence", "spevidence-duckdb", *args.peers]:
                try:
                    proc = subprocess.run(
                        [sys.executable, __file__, "--worker", name, str(path), str(args.repeat)],
                        capture_output=True,
                        text=True,
                        timeout=args.timeout,
                        check=True,
                    )
                    results[name] = json.loads(proc.stdout.strip().splitlines()[-1])
                except subprocess.TimeoutExpired:
                    results[name] = f"timeout > {args.timeout:.0f} s"
                except subprocess.CalledProcessError as err:
                    results[name] = "failed: " + (err.stderr.strip().splitlines() or ["?"])[-1][:80]
                print(f"  {name}: done", file=sys.stderr, flush=True)
            ref = results["spevidence"]
            assert isinstance(ref, dict)
            print(
                f"\nCallaway-Sant'Anna, {args.units:,} units x {args.periods} periods "
                "(never-treated controls, dr, analytic SEs, simple + dynamic aggregation; "
                "csdid also at its defaults, which bootstrap: its SE column is then "
                f"bootstrap noise). Each the fastest of {args.repeat} fits in one process "
                f"(first fits, with lazy imports: column 'first s'). Load average before / after: "
                f"{load0:.2f} / "
                f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs\n"
            )
            print(
                "| implementation | seconds | x spevidence | first s "
                "| max abs diff ATT(g,t) | SE | simple ATT |"
            )
            print("|---|---:|---:|---:|---:|---:|---:|")
            for key, res in results.items():
                name = LABELS.get(key, key)
                if isinstance(res, str):
                    print(f"| {name} | {res} | | | | | |")
                    continue
                same = len(res["att"]) == len(ref["att"])
                da = np.max(np.abs(np.subtract(res["att"], ref["att"]))) if same else float("nan")
                ds = np.max(np.abs(np.subtract(res["se"], ref["se"]))) if same else float("nan")
                print(
                    f"| {name} | {res['seconds']:.2f} | {res['seconds'] / ref['seconds']:.1f} | "
                    f"{res['runs'][0]:.2f} | {da:.1e} | {ds:.1e} | "
                    f"{abs(res['simple'] - ref['simple']):.1e} |"
                )
        if args.national:
            national(args.national, work, args.threads)
        if args.covariate:
            covariate(args.covariate, work, args.threads, args.timeout)


if __name__ == "__main__":
    main()
