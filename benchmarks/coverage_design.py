"""Monte Carlo coverage of the whole matched design on the synthetic generator.

For each seed: generate a synthetic ICB (scenario with a known effect), validate, link
the person x month panel, risk-set match as the protocol says (``frequent-attenders``
protocol: PCN and sex exact, GP trajectory, A&E, admissions, age, IMD, risk score),
follow comparators with the protocol's censoring rule, and fit the Poisson DiD (12
months before / 12 after, clustered by person). The truth is the generator's rate
ratio over event months 0-11 (``truth.json`` ``att_by_event_month``). Rows are
appended to a CSV as they finish, so a run can be stopped and resumed.

Usage (from the repository root; minutes per seed at these sizes)::

    python benchmarks/coverage_design.py \\
        --scenario null-effect --persons 3000 --seeds 200 --csv out/coverage.csv

Prints the coverage of the 95 % CI, the mean bias of the log rate ratio and their Monte
Carlo standard errors.
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from spevidence.data import read_extracts, validate
from spevidence.did import two_by_two
from spevidence.pipeline import matched_cohort, matching_panel
from spevidence.protocol import load_protocol
from spevidence.synthetic import generate, true_rate_ratio

ROOT = Path(__file__).resolve().parents[1]


def one_seed(scenario: str, persons: int, seed: int, proto, censoring: str) -> dict:  # type: ignore[no-untyped-def,type-arg]
    tmp = Path(tempfile.mkdtemp(prefix="spe-cov-"))
    try:
        res = generate(scenario, persons=persons, seed=seed, out=tmp, identifiers="pseudonym")
        clean, _, _ = validate(read_extracts(tmp), start=proto.start, end=proto.end)
        proto = proto.model_copy(
            update={"match": proto.match.model_copy(update={"censoring": censoring})}
        )
        panel, _ = matching_panel(clean, proto)
        truth = res.truth
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, md = matched_cohort(panel, proto)
        w = md.loc[(md["event_time"] >= -proto.did.pre) & (md["event_time"] < proto.did.post)]
        r = two_by_two(
            w,
            yname="gp",
            idname="unit_id",
            tname="event_time",
            treat="treated",
            post="post",
            model="poisson",
            exposure="exposure_days",
            cluster="person_id",
            weights="weights",
        ).tidy()
    est, se = float(r["estimate"].iloc[0]), float(r["std_error"].iloc[0])
    true_log = math.log(true_rate_ratio(truth, "gp", proto.did.post))
    return {
        "seed": seed,
        "scenario": scenario,
        "persons": persons,
        "censoring": censoring,
        "n_cases": int(w.loc[w["treated"] == 1, "unit_id"].nunique()),
        "true_log_rr": true_log,
        "log_rr": est,
        "se": se,
        "covers": bool(abs(est - true_log) <= 1.959964 * se),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", default="null-effect")
    ap.add_argument("--protocol", default="frequent-attenders")
    ap.add_argument("--persons", type=int, default=3000)
    ap.add_argument("--seeds", type=int, default=200)
    ap.add_argument("--first-seed", type=int, default=1000)
    ap.add_argument("--censoring", default="ipcw", choices=["ipcw", "referral", "none"])
    ap.add_argument("--csv", type=Path, required=True)
    args = ap.parse_args()
    proto = load_protocol(ROOT / "protocols" / f"{args.protocol}.yaml")
    if args.scenario != "frequent-attenders":  # the > 15 GP visits rule is that scheme's
        proto = proto.model_copy(
            update={"match": proto.match.model_copy(update={"eligibility": ()})}
        )
    done: set[int] = set()
    if args.csv.is_file():
        done = set(pd.read_csv(args.csv)["seed"].tolist())
    args.csv.parent.mkdir(parents=True, exist_ok=True)
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        if seed in done:
            continue
        t0 = time.time()
        row = one_seed(args.scenario, args.persons, seed, proto, args.censoring)
        pd.DataFrame([row]).to_csv(args.csv, mode="a", header=not args.csv.is_file(), index=False)
        print(
            f"seed {seed} ({time.time() - t0:.0f}s): {100 * math.expm1(row['log_rr']):+.1f}% "
            f"(truth {100 * math.expm1(row['true_log_rr']):+.1f}%) covers={row['covers']}",
            flush=True,
        )
    df = pd.read_csv(args.csv)
    n = len(df)
    cov = df["covers"].mean()
    bias = (df["log_rr"] - df["true_log_rr"]).to_numpy()
    print(
        f"{args.scenario}, {args.persons} persons, censoring={args.censoring}: {n} seeds, "
        f"95% CI coverage {cov:.3f} (MC s.e. {math.sqrt(cov * (1 - cov) / n):.3f}); "
        f"mean bias of log RR {bias.mean():+.4f} (MC s.e. {bias.std(ddof=1) / math.sqrt(n):.4f}); "
        f"SD of log RR {df['log_rr'].std(ddof=1):.4f}, mean SE {df['se'].mean():.4f}; "
        f"mean cases {df['n_cases'].mean():.0f}"
    )
    if np.isnan(cov):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
