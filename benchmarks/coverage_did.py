"""Monte Carlo coverage of the 95% CI of two_by_two (linear and Poisson), matched design.

Usage (from the repository root)::

    python benchmarks/coverage_did.py --seeds 2000

Data: person x month panels (400 people in 200 case-comparator pairs, 12 months), pairs
that share a (pseudo) index month, person frailty, a common trend, exposure that varies
with month length (Poisson). Linear: additive true effect -0.3 events/month on the
Poisson mean; Poisson: multiplicative true effect, rate ratio exp(-0.25). Standard errors
are clustered by person (about 395 clusters after the all-zero units drop out of the
Poisson fit). Reports the share of CIs covering the truth (target 0.95), the mean
estimate and the SD of the estimates against the mean SE. The default of 2000 seeds
gives a Monte Carlo s.e. of about 0.005 for the coverage: with 200 seeds (0.015) a run
can land at 0.92 by chance (seeds 0-199 did).

Last run (2026-12-06, seeds 0-4999, load average about 2 on 2 cores): linear coverage
0.945 (MC s.e. 0.003), mean estimate -0.3014 (truth -0.3); Poisson coverage 0.952
(MC s.e. 0.003), mean log RR -0.2507 (truth -0.25). Poisson SD of estimates 0.0480
against mean SE 0.0480; the clustered SE equals pyfixest ``fepois`` (CRV1) to about
1e-11 (relative).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from spevidence.did import two_by_two

TRUE_LINEAR = -0.3
TRUE_LOG_RR = -0.25


def panel(seed: int, model: str, n: int = 400, months: int = 12) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    pid = np.repeat(np.arange(n), months)
    t = np.tile(np.arange(months), n)
    treated = (pid % 2 == 0).astype(int)
    index_t = rng.integers(3, months - 3, n // 2)[pid // 2]
    post = (t >= index_t).astype(int)
    frail = rng.gamma(2.0, 0.75, n)[pid]
    days = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])[t % 12]
    if model == "linear":
        mu = frail + 0.05 * t + TRUE_LINEAR * treated * post + 0.4  # > 0.1 always
    else:
        mu = frail * days / 30 * np.exp(0.02 * t + TRUE_LOG_RR * treated * post)
    y = rng.poisson(mu)
    return pd.DataFrame(
        {"pid": pid, "t": t, "y": y, "treated": treated, "post": post, "days": days}
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=2000)
    ap.add_argument("--start", type=int, default=0, help="first seed")
    ap.add_argument("--models", nargs="*", default=["linear", "poisson"])
    args = ap.parse_args()
    for model in args.models:
        hits, est, ses = 0, [], []
        for seed in range(args.start, args.start + args.seeds):
            df = panel(seed, model)
            if model == "linear":
                # the additive DGP is on the monthly count: no exposure scaling
                r = two_by_two(df, yname="y", idname="pid", tname="t", treat="treated", post="post")
                truth = TRUE_LINEAR
            else:
                r = two_by_two(
                    df, yname="y", idname="pid", tname="t", treat="treated", post="post",
                    model="poisson", exposure="days",
                )  # fmt: skip
                truth = TRUE_LOG_RR
            tab = r.tidy()
            i = list(tab["term"]).index("treat:post")
            lo, hi = float(tab["conf_low"].iloc[i]), float(tab["conf_high"].iloc[i])
            hits += int(lo <= truth <= hi)
            est.append(float(tab["estimate"].iloc[i]))
            ses.append(float(tab["std_error"].iloc[i]))
        cov = hits / args.seeds
        mcse = np.sqrt(cov * (1 - cov) / args.seeds)
        e = np.asarray(est)
        print(
            f"{model}: coverage {cov:.3f} (MC s.e. {mcse:.3f}) over {args.seeds} seeds; "
            f"mean estimate {e.mean():.4f} (MC s.e. {e.std(ddof=1) / np.sqrt(e.size):.4f}); "
            f"SD of estimates {e.std(ddof=1):.4f}, mean SE {np.mean(ses):.4f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
