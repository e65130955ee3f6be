"""Benchmark: risk-set matching (spevidence.match.risk_set) at ICB scale.

    python benchmarks/bench_match.py                       # 100k cases, ~5 M person-periods
    python benchmarks/bench_match.py --persons 26000 --cases 10000   # a tenth

Builds a synthetic person x month panel in memory (vectorised numpy; not timed):
``--persons`` people over ``--months`` months, ``--cases`` of them referred at a month
drawn uniformly after the 12-month look-back, with a peak of GP use in the three months
before referral (so the propensity score has work to do); 60 PCNs, two sexes, age bands,
about 10 % registered late. Then times ``risk_set`` with its defaults: exact strata PCN x
sex x age band x index month, 1:1 without replacement, caliper 0.2 SD of the logit, not-
yet-referred comparators. The issue's target: 100k referred people against 5 M eligible
comparator person-periods in under 60 s and under 8 GiB on 2 cores.

Reports the candidate comparator person-periods, matched cases, the wall time of
``risk_set`` (and of its two parts: everything up to the propensity score, and the
matching), and the peak resident memory of the process (ru_maxrss, includes the panel).
Timings live here, never in test assertions.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import resource
import time
import warnings

import numpy as np
import pandas as pd


def make_panel(persons: int, months: int, cases: int, seed: int = 1) -> pd.DataFrame:
    """A person x month panel (docs/contracts.md "Panel") with ``cases`` referrals."""
    rng = np.random.default_rng(seed)
    start = np.where(rng.random(persons) < 0.1, rng.integers(1, months, persons), 0)
    frailty = rng.gamma(2.0, 0.5, persons)
    yob = rng.integers(1930, 2005, persons)
    ref = np.full(persons, -1)
    who = rng.choice(np.flatnonzero(start == 0), size=cases, replace=False)
    ref[who] = rng.integers(12, months, cases)
    lam = np.repeat(frailty[:, None] * 0.4, months, axis=1)
    tt = np.arange(months)[None, :]
    peak = (ref[:, None] >= 0) & (tt >= ref[:, None] - 3) & (tt < ref[:, None])
    lam = lam + 0.6 * peak
    gp = rng.poisson(lam).astype(np.int32)
    ae = rng.poisson(0.05 * frailty[:, None] + 0.1 * peak).astype(np.int32)
    adm = rng.poisson(0.01 * frailty[:, None] + 0.05 * peak).astype(np.int32)
    present = tt >= start[:, None]
    pid, t = np.nonzero(present)
    periods = pd.date_range("2021-01-01", periods=months, freq="MS")
    pcn = pd.Categorical.from_codes(
        rng.integers(0, 60, persons), pd.Index([f"U{k:05d}" for k in range(60)])
    )
    sex = pd.Categorical.from_codes(rng.integers(0, 2, persons), pd.Index(["F", "M"]))
    referral_t = pd.array(np.where(ref >= 0, ref, 0)[pid], dtype="Int64")
    referral_t[ref[pid] < 0] = pd.NA
    return pd.DataFrame(
        {
            "person_id": pid.astype(np.int64),
            "period": periods[t],
            "t": t.astype(np.int64),
            "gp": gp[pid, t],
            "ae": ae[pid, t],
            "admissions": adm[pid, t],
            "pcn_code": pcn[pid],
            "sex": sex[pid],
            "year_of_birth": yob[pid],
            "imd_decile": rng.integers(1, 11, persons)[pid],
            "referral_t": referral_t,
        }
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--persons", type=int, default=280_000)
    ap.add_argument("--months", type=int, default=36)
    ap.add_argument("--cases", type=int, default=100_000)
    ap.add_argument("--quick", action="store_true", help="Small sizes (seconds).")
    ap.add_argument("--profile", type=int, default=0, help="print the N slowest functions")
    args = ap.parse_args()
    if args.quick:
        args.persons, args.cases = 13_000, 5_000

    from spevidence.match import risk_set

    t0 = time.perf_counter()
    panel = make_panel(args.persons, args.months, args.cases)
    t_panel = time.perf_counter() - t0
    prof = cProfile.Profile() if args.profile else None
    t0 = time.perf_counter()
    if prof is not None:
        prof.enable()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rs = risk_set(panel, caliper=0.2, ratio=1)
    if prof is not None:
        prof.disable()
    t_match = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    g = rs.glance().iloc[0]
    print("| measure | value |\n|---|---|")
    print(f"| panel rows (person-months) | {len(panel):,} |")
    print(f"| referred people | {int(g['n_cases']):,} |")
    n_pool = int(g["candidate_comparator_person_periods"])
    print(f"| candidate comparator person-periods | {n_pool:,} |")
    print(f"| exact strata (incl. index month) | {int(rs.pool['stratum'].nunique()):,} |")
    print(f"| matched cases | {int(g['n_matched_cases']):,} |")
    print(f"| panel build (not timed in the target) | {t_panel:.1f} s |")
    print(f"| risk_set wall time | {t_match:.1f} s |")
    print(f"| peak resident memory (whole process) | {peak:.2f} GiB |")
    if prof is not None:
        pstats.Stats(prof).sort_stats("cumulative").print_stats(args.profile)


if __name__ == "__main__":
    main()
