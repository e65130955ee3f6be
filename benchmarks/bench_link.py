"""Benchmark: extracts -> validated -> monthly person x period panel, DuckDB and Spark.

    python benchmarks/bench_link.py --persons 1000000 --years 5
    python benchmarks/bench_link.py --data extracts-1m/ --start 2019-04-01 --end 2024-03-31

Either writes synthetic Parquet extracts (vectorised numpy, pseudonymised ids; GP ~6, A&E
~0.4, admissions ~0.1 per person-year) to a temporary folder, or reads a folder of
extracts (e.g. from ``spevidence synth --identifiers pseudonym``). Then times, on DuckDB,
(1) read_extracts + validate (every QA check, the attrition) and (2) build_panel + the
sorted panel written to Parquet (what ``spevidence link`` does after validation), and
reports wall and CPU time and peak resident memory of the linkage (ru_maxrss, which
includes DuckDB's in-process memory; the extracts are generated in a child process). Then the same
Parquet extracts are read, validated and linked by Spark (local mode, all cores) as on a
warehouse, and the panel counted there. Timings live here, never in test assertions.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import os
import resource
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def make_extracts(folder: Path, persons: int, years: int, seed: int = 1) -> dict[str, int]:
    """Write the five extracts for ``persons`` people over ``years`` years from 2019."""
    rng = np.random.default_rng(seed)
    start = np.datetime64("2019-01-01")
    span = int(365.25 * years)
    # pseudonyms as spevidence makes them: 64 hex characters (HMAC-SHA256), here the
    # SHA-256 of the row number (string joins and sorts cost what they cost in real use)
    ids = pa.array([hashlib.sha256(b"%d" % i).hexdigest() for i in range(persons)])
    reg_start = start + rng.integers(-3000, span // 2, persons).astype("timedelta64[D]")
    has_end = rng.random(persons) < 0.15
    reg_end = reg_start + rng.integers(30, 4000, persons).astype("timedelta64[D]")
    dies = rng.random(persons) < 0.05
    death = start + rng.integers(0, span, persons).astype("timedelta64[D]")
    nat = np.datetime64("NaT")
    pop = pa.table(
        {
            "person_id": ids,
            "practice_code": np.char.add("P", (np.arange(persons) % 500).astype(str)),
            "pcn_code": np.char.add("N", (np.arange(persons) % 60).astype(str)),
            "sex": np.where(rng.random(persons) < 0.5, "F", "M"),
            "year_of_birth": rng.integers(1925, 2015, persons),
            "registration_start": pa.array(reg_start, pa.date32()),
            "registration_end": pa.array(np.where(has_end, reg_end, nat), pa.date32()),
            "death_date": pa.array(np.where(dies, death, nat), pa.date32()),
            "imd_decile": rng.integers(1, 11, persons),
        }
    )
    pq.write_table(pop, folder / "population.parquet")
    rows = {"population": persons}

    def events(rate: float) -> tuple[np.ndarray, np.ndarray]:
        n = rng.poisson(rate * years, persons)
        who = np.repeat(np.arange(persons), n)
        when = start + rng.integers(0, span, len(who)).astype("timedelta64[D]")
        return who, when

    who, when = events(6.0)
    m = len(who)
    gp = pa.table(
        {
            "person_id": ids.take(who),
            "appointment_date": pa.array(when, pa.date32()),
            "status": np.where(rng.random(m) < 0.9, "attended", "dna"),
            "staff_role": np.where(rng.random(m) < 0.6, "gp", "nurse"),
            "mode": np.where(rng.random(m) < 0.7, "face_to_face", "telephone"),
        }
    )
    pq.write_table(gp, folder / "gp_appointments.parquet")
    rows["gp_appointments"] = m
    del gp

    who, when = events(0.4)
    ae = pa.table(
        {
            "person_id": ids.take(who),
            "arrival_date": pa.array(when, pa.date32()),
            "department_type": rng.choice(np.array(["1", "2", "3", "4"]), len(who)),
        }
    )
    pq.write_table(ae, folder / "ae_attendances.parquet")
    rows["ae_attendances"] = len(who)

    who, when = events(0.1)
    los = rng.integers(0, 10, len(who)).astype("timedelta64[D]")
    adm = pa.table(
        {
            "person_id": ids.take(who),
            "admission_date": pa.array(when, pa.date32()),
            "discharge_date": pa.array(when + los, pa.date32()),
            "admission_method": rng.choice(np.array(["21", "22", "2B", "11", "12"]), len(who)),
        }
    )
    pq.write_table(adm, folder / "admissions.parquet")
    rows["admissions"] = len(who)

    who = np.flatnonzero(rng.random(persons) < 0.02)
    when = start + rng.integers(0, span, len(who)).astype("timedelta64[D]")
    ref = pa.table(
        {
            "person_id": ids.take(who),
            "referral_date": pa.array(when, pa.date32()),
            "referral_source": np.full(len(who), "gp"),
            "outcome": np.where(rng.random(len(who)) < 0.7, "accepted", "declined"),
        }
    )
    pq.write_table(ref, folder / "referrals.parquet")
    rows["referrals"] = len(who)
    return rows


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--persons", type=int, default=1_000_000)
    ap.add_argument("--years", type=int, default=5)
    ap.add_argument("--data", type=Path, help="Folder of extracts to use instead.")
    ap.add_argument("--start", help="Study start with --data (YYYY-MM-DD).")
    ap.add_argument("--end", help="Study end with --data (YYYY-MM-DD).")
    ap.add_argument("--no-spark", action="store_true", help="DuckDB only.")
    ap.add_argument(
        "--spark-timeout",
        type=float,
        default=900.0,
        help="Stop the Spark run after this many seconds (reported as not finished).",
    )
    ap.add_argument("--spark-memory", default="8g", help="spark.driver.memory (local mode).")
    ap.add_argument(
        "--memory-limit",
        default="4GB",
        help="DuckDB memory_limit (spills to disk beyond it); the numpy counting arrays "
        "(~1 GiB at 1 M x 60 months) come on top.",
    )
    args = ap.parse_args()

    from spevidence.data import read_extracts, validate
    from spevidence.link import build_panel

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.data is not None:
            folder = args.data
            rows = {n: pq.ParquetFile(f).metadata.num_rows for n, f in _files(folder).items()}
            start = dt.date.fromisoformat(args.start)
            end = dt.date.fromisoformat(args.end)
            t_gen = 0.0
            label = f"{rows['population']:,} population rows from {folder.name}/"
        else:
            folder = work
            t0 = time.perf_counter()
            # in a child process: memory the generator's arrays leave resident (Arrow's
            # allocator keeps freed pages) is not the linkage's
            with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
                rows = pool.submit(make_extracts, folder, args.persons, args.years).result()
            t_gen = time.perf_counter() - t0
            start, end = dt.date(2019, 1, 1), dt.date(2019 + args.years - 1, 12, 31)
            label = f"{args.persons:,} persons x {args.years} years"

        print(f"{label} ({start} to {end}); {sum(rows.values()):,} extract rows; "
              f"{os.cpu_count()} CPUs, DuckDB memory_limit {args.memory_limit}, "
              f"load average {os.getloadavg()[0]:.2f}")  # fmt: skip
        print("| step | engine | wall s | CPU s |\n|---|---|---|---|")
        if t_gen:
            print(f"| generate extracts | numpy | {t_gen:.1f} | |")
        t0, c0 = time.perf_counter(), _cpu()
        ex = read_extracts(folder)
        ex.con.raw_sql(f"SET memory_limit = '{args.memory_limit}'")
        clean, _, att = validate(ex, start=start, end=end)
        t_val, c_val = time.perf_counter() - t0, _cpu() - c0
        print(f"| read + validate (all QA checks) | DuckDB | {t_val:.1f} | {c_val:.1f} |",
              flush=True)  # fmt: skip
        t0, c0 = time.perf_counter(), _cpu()
        panel = build_panel(clean, start=start, end=end, cache=False)
        panel.to_parquet(work / "panel.parquet")
        t_panel, c_panel = time.perf_counter() - t0, _cpu() - c0
        n_panel = pq.ParquetFile(work / "panel.parquet").metadata.num_rows
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
        print(f"| panel ({n_panel:,} rows) -> sorted Parquet | DuckDB | {t_panel:.1f} | "
              f"{c_panel:.1f} |")  # fmt: skip
        print(f"| **total** | DuckDB | **{t_val + t_panel:.1f}** | {c_val + c_panel:.1f} |",
              flush=True)  # fmt: skip
        if not args.no_spark:
            import ibis
            from pyspark.sql import SparkSession

            session = (
                SparkSession.builder.master("local[*]")
                .config("spark.sql.session.timeZone", "UTC")
                .config("spark.driver.memory", args.spark_memory)
                .config("spark.sql.shuffle.partitions", str(4 * (os.cpu_count() or 1)))
                .config("spark.ui.enabled", "false")
                .config("spark.ui.showConsoleProgress", "false")
                .getOrCreate()
            )
            session.sparkContext.setLogLevel("ERROR")
            done: dict[str, float] = {}

            def spark_run() -> None:
                # as on a warehouse: Spark reads the extracts itself, and validation and
                # linkage both run there; the panel is counted (Spark computes it all)
                t0 = time.perf_counter()
                for name, f in _files(folder).items():
                    session.read.parquet(str(f)).createOrReplaceTempView(name)
                scon = ibis.pyspark.connect(session)
                sclean, _, _ = validate(read_extracts(scon), start=start, end=end)
                done["validate"] = time.perf_counter() - t0
                sp = build_panel(sclean, start=start, end=end, backend=scon, cache=False)
                done["rows"] = sp.table.count().execute()
                done["seconds"] = time.perf_counter() - t0

            worker = threading.Thread(target=spark_run, daemon=True)
            worker.start()
            worker.join(args.spark_timeout)
            if "seconds" in done:
                print(f"| read + validate (Spark reads the Parquet files) | Spark local | "
                      f"{done['validate']:.1f} | (JVM) |")  # fmt: skip
                print(f"| **total**, panel ({done['rows']:,.0f} rows) counted | Spark local | "
                      f"**{done['seconds']:.1f}** | (JVM) |")  # fmt: skip
                session.stop()
            else:  # the JVM exits with this process (its gateway watches our stdin)
                step = "validation" if "validate" not in done else "the panel"
                print(f"| read + validate + panel | Spark local | {step} not finished "
                      f"in {args.spark_timeout:.0f} s (stopped) | (JVM) |")  # fmt: skip
                print(f"\npeak RSS (this process; Spark's JVM not included) {peak:.2f} GiB; "
                      f"attrition reconciles: {att.reconciles()}", flush=True)  # fmt: skip
                os._exit(0)
        print(f"\npeak RSS (this process; Spark's JVM not included) {peak:.2f} GiB; "
              f"attrition reconciles: {att.reconciles()}")  # fmt: skip


def _files(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.glob("*.parquet"))}


if __name__ == "__main__":
    main()
