"""First-call against warm latency of `spevidence.did.twfe` (issue 21 notes).

    python benchmarks/notes/first_call.py --persons 300000 --months 24 [--pyfixest]

In a fresh process: the import of ``spevidence.did``, then ``twfe`` (linear, then
Poisson) on a ``persons x months`` panel (the one ``bench_did.py`` makes) called three
times each; the first call pays for lazy imports and first-touch work, the later ones
are warm. With ``--pyfixest`` also ``pyfixest.feols``/``fepois`` warmed on 50 persons
first, as ``bench_did.py`` does, and cold. A note, not a test.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import pandas as pd


def make(n: int, months: int, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    pid = np.repeat(np.arange(n, dtype=np.int64), months)
    t = np.tile(np.arange(months, dtype=np.int64), n)
    g = rng.choice([-1, months // 4, months // 2, 3 * months // 4], n)[pid]
    d = ((g >= 0) & (t >= g)).astype(np.int8)
    frail = rng.gamma(2.0, 0.5, n)[pid]
    y = rng.poisson(frail * np.exp(0.01 * t - 0.2 * d))
    return pd.DataFrame({"pid": pid, "t": t, "y": y, "D": d})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--persons", type=int, default=300_000)
    ap.add_argument("--months", type=int, default=24)
    ap.add_argument("--pyfixest", action="store_true")
    args = ap.parse_args()
    df = make(args.persons, args.months)
    print(f"load average {os.getloadavg()[0]:.1f}; {len(df):,} rows")
    t0 = time.perf_counter()
    from spevidence.did import twfe

    print(f"import spevidence.did: {time.perf_counter() - t0:.2f} s")
    for model in ("linear", "poisson"):
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            r = twfe(df, yname="y", idname="pid", tname="t", dname="D", model=model)
            times.append(time.perf_counter() - t0)
        print(
            f"twfe {model}: first {times[0]:.3f} s, then {times[1]:.3f} s, {times[2]:.3f} s "
            f"(first / warm {times[0] / min(times[1:]):.1f}x; path {r.path})"
        )
    if args.pyfixest:
        t0 = time.perf_counter()
        import pyfixest as pf

        print(f"import pyfixest: {time.perf_counter() - t0:.2f} s")
        for name, fn in (("feols", pf.feols), ("fepois", pf.fepois)):
            t0 = time.perf_counter()
            fn("y ~ D | pid + t", data=df.iloc[: 50 * args.months], vcov={"CRV1": "pid"})
            cold = time.perf_counter() - t0
            t0 = time.perf_counter()
            fn("y ~ D | pid + t", data=df, vcov={"CRV1": "pid"})
            full = time.perf_counter() - t0
            print(f"pyfixest {name}: warm-up on 50 persons {cold:.2f} s, full {full:.2f} s")
    print(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
