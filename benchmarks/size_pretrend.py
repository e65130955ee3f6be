"""Size of the Callaway-Sant'Anna pre-trend tests when trends are parallel (small cohorts).

Usage (from the repository root)::

    python benchmarks/size_pretrend.py --scenario null --seeds 200
    python benchmarks/size_pretrend.py --scenario synthetic --seeds 40 --persons 4000

Counts how often each joint Wald pre-test of :meth:`spevidence.did.ATTgt.pretrend_test`
rejects at the 5 % level over seeds: ``cells`` (every pre-treatment ATT(g, t), R
``did``'s test), ``leads -8`` (the event-study leads from -8 to -1, as the staggered
pipeline tests them with ``event_window: [-8, 8]``) and ``leads all`` (every lead).

Scenarios (quarterly, 24 periods, not-yet-treated comparators, universal base period,
outcome regression, as ``protocols/national-staggered.yaml``):

* ``null``: an exact null. People are assigned at random to cohorts 5..24 (15-30 people
  each, about 450 treated) or never treated (``--never``, default 2000); GP counts are
  Poisson with a gamma person frailty (mean 1.4 a quarter), seasonal and pandemic period
  effects, and no treatment effect. Seconds per 100 seeds.
* ``synthetic``: the generator's ``staggered-national-random-timing`` scenario (referral
  unrelated to passing peaks of use), ``--persons`` people, through validation and the
  quarterly panel as the pipeline does; about 4 s a seed at 4000 people.

A test that holds its size rejects in about 5 % of seeds (binomial MC s.e.
``sqrt(0.05 * 0.95 / seeds)``).

Last runs (2026-12-06, under the heavy-job lock, 2 cores shared, load average 1.4-6):
``null`` seeds 0-999 (two runs, 0-399 and 400-999): cells reject 1000/1000 (median
statistic about 2,100 on 250 df), leads -8 58/1000 (0.058, MC s.e. 0.007), leads all
108/1000; ``synthetic`` seeds 0-59 at 4,000 people (81 s): cells reject 48/60 and are
not computed (singular covariance) in 12, leads -8 2/60, leads all 6/60. Tables in
benchmarks/README.md; docs/methods.md section 3.3.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from spevidence.did import staggered

TESTS = {"cells": ("cells", -np.inf), "leads -8": ("leads", -8.0), "leads all": ("leads", -np.inf)}
KW = dict(control="notyet", method="reg", base_period="universal")


def null_panel(seed: int, never: int = 2000, periods: int = 24) -> pd.DataFrame:
    """Person x quarter counts with parallel trends: random cohorts of 15-30 people."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(15, 31, periods - 4)  # cohorts 5..24
    g = np.concatenate([np.repeat(np.arange(5, periods + 1), sizes), np.zeros(never, int)])
    n = g.size
    frail = rng.gamma(2.0, 0.7, n)
    t = np.arange(1, periods + 1)
    season = 1 + 0.12 * np.cos(2 * np.pi * (t - 3) / 4)
    shock = np.where((t >= 9) & (t <= 12), 0.8, 1.0)
    mu = frail[:, None] * (season * shock)[None, :]
    y = rng.poisson(mu)
    return pd.DataFrame(
        {
            "id": np.repeat(np.arange(n), periods),
            "t": np.tile(t, n),
            "g": np.repeat(g, periods),
            "y": y.ravel().astype(float),
        }
    )


def synthetic_fit(seed: int, persons: int, tmp: Path) -> object:
    from spevidence.data import read_extracts, validate
    from spevidence.link import build_panel
    from spevidence.pipeline import staggered as ps
    from spevidence.protocol import load_protocol
    from spevidence.synthetic import generate

    root = Path(__file__).resolve().parents[1]
    proto = load_protocol(root / "protocols" / "national-staggered.yaml")
    out = tmp / f"s{seed}"
    generate(
        "staggered-national-random-timing", persons=persons, seed=seed, out=out, progress=False
    )
    clean, _, _ = validate(read_extracts(out), start=proto.start, end=proto.end, ids="pseudonym")
    panel = build_panel(clean, start=proto.start, end=proto.end, period="quarter")
    table = ps.cohort_panel(panel.table, proto.staggered_spec)
    return staggered(table, yname="gp", idname="person_id", tname="tt", gname="cohort", **KW)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", choices=["null", "synthetic"], default="null")
    ap.add_argument("--seeds", type=int, default=200)
    ap.add_argument("--start", type=int, default=0, help="first seed")
    ap.add_argument("--persons", type=int, default=4000, help="synthetic: people generated")
    ap.add_argument("--never", type=int, default=2000, help="null: never-treated people")
    args = ap.parse_args()
    t0 = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.start, args.start + args.seeds):
            if args.scenario == "null":
                r = staggered(
                    null_panel(seed, args.never), yname="y", idname="id", tname="t", gname="g",
                    **KW,
                )  # fmt: skip
            else:
                r = synthetic_fit(seed, args.persons, Path(tmp))
            for name, (kind, min_e) in TESTS.items():
                pt = r.pretrend_test(kind, min_e=min_e).iloc[0]  # type: ignore[attr-defined]
                rows.append(
                    {"seed": seed, "test": name, "df": pt["df"], "p": pt["p_value"],
                     "stat": pt["statistic"]}
                )  # fmt: skip
    res = pd.DataFrame(rows)
    n = args.seeds
    print(
        f"scenario {args.scenario}, seeds {args.start}-{args.start + n - 1}, "
        f"{time.perf_counter() - t0:.0f} s\n"
    )
    print(
        "| test | median df | median statistic | not computed (singular) | rejections at 5 % "
        "| rate | MC s.e. at 5 % |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, d in res.groupby("test", sort=False):
        rej, nan = int((d["p"] < 0.05).sum()), int(d["p"].isna().sum())
        print(
            f"| {name} | {d['df'].median():.0f} | {d['stat'].median():.1f} | {nan} | "
            f"{rej}/{n} | {rej / n:.3f} | {np.sqrt(0.05 * 0.95 / n):.3f} |"
        )


if __name__ == "__main__":
    main()
