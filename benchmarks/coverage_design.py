"""Monte Carlo coverage of the whole matched design on the synthetic generator.

For each seed: generate a synthetic ICB (scenario with a known effect), validate, link
the person x month panel, risk-set match as the protocol says (``frequent-attenders``
protocol: PCN, sex and the last three months' GP count exact; people referred before
excluded; GP trajectory, A&E, admissions, age, IMD, risk score in the propensity score),
follow comparators with the protocol's censoring rule, and fit the Poisson DiD (12
months before / 12 after, clustered by person). The truth is the generator's rate
ratio over event months 0-11 (``truth.json`` ``att_by_event_month``). Rows are
appended to a CSV as they finish, so a run can be stopped and resumed.

Usage (from the repository root; minutes per seed at these sizes)::

    python benchmarks/coverage_design.py \\
        --scenario null-effect --persons 3000 --seeds 200 --csv out/coverage.csv

Prints the coverage of the 95 % CI, the mean bias of the log rate ratio and their Monte
Carlo standard errors.

``--weight-variants`` refits each seed's match with other censoring weights (IPCW
truncated at the 99th/95th percentile, stabilised by the comparators' mean hazard per
event month or by the hazard at the index covariates, unweighted cut at referral, not
cut) and prints their bias paired with the protocol's. ``--prior-referrals keep|exclude``
overrides the protocol's ``match.prior_referrals`` (``exclude``: people with an earlier
referral of any outcome are ineligible at the index month, cases and comparators alike;
see docs/methods.md); ``--exact-also recent_gp`` adds exact matching on the GP count of
the last three months.

A seed whose fit fails is recorded with its error (column ``error``) and the run goes
on; the summary counts the failures and gives the coverage over the seeds that fitted.
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
from spevidence.errors import SpevidenceError
from spevidence.pipeline import did_window, matched_cohort, matched_two_by_two, matching_panel
from spevidence.protocol import load_protocol
from spevidence.synthetic import generate, true_rate_ratio

ROOT = Path(__file__).resolve().parents[1]


def fit(md: pd.DataFrame, proto, weights: str = "weights") -> tuple[float, float, int]:  # type: ignore[no-untyped-def]
    """Poisson DiD of GP use on the protocol's window: log RR, its SE, matched cases."""
    w = did_window(md, proto)
    r = matched_two_by_two(w, proto, "gp", "poisson", weights=weights).tidy()
    n_cases = int(w.loc[w["treated"] == 1, "unit_id"].nunique())
    return float(r["estimate"].iloc[0]), float(r["std_error"].iloc[0]), n_cases


def weight_variants(result, md: pd.DataFrame) -> dict[str, pd.DataFrame]:  # type: ignore[no-untyped-def]
    """The same match with other censoring weights, each in column ``_w``."""
    base = md["weights"] / md["ipcw"]  # the matching weight
    iw = md["ipcw"]
    post = (md["treated"] == 0) & md["hazard"].notna()  # weighted comparator rows
    out = {}
    for q in (0.99, 0.95):
        cap = float(np.quantile(iw[post], q)) if post.any() else 1.0
        out[f"trunc{round(q * 100)}"] = md.assign(_w=base * np.minimum(iw, cap))
    # stabilised: numerator = probability of staying unreferred from the comparators'
    # mean fitted hazard in each event month (marginal) ...
    hz = md.loc[post, ["event_time", "hazard"]].assign(b=base[post])
    hz["bh"] = hz["b"] * hz["hazard"]
    by = hz.groupby("event_time")[["bh", "b"]].sum()
    surv = np.exp(np.log1p(-(by["bh"] / by["b"])).sort_index().cumsum())
    out["stab_marg"] = md.assign(_w=md["weights"] * md["event_time"].map(surv).where(post, 1.0))
    # ... or from the hazard at the comparator's index covariates (baseline)
    eta = md["unit_id"].map(result.units.set_index("unit_id")["distance"])
    h0 = np.minimum(1 / (1 + np.exp(-eta)), 0.99)
    num = np.exp(np.log1p(-h0).where(post, 0.0).groupby(md["unit_id"]).cumsum())
    out["stab_base"] = md.assign(_w=md["weights"] * num)
    out["cut"] = md.assign(_w=base)
    out["not_cut"] = result.matched_data(censoring="none").assign(_w=lambda d: d["weights"])
    return out


def one_seed(  # type: ignore[no-untyped-def]
    scenario: str,
    persons: int,
    seed: int,
    proto,
    censoring: str,
    *,
    variants: bool = False,
    prior_referrals: str | None = None,
    exact_also: tuple[str, ...] = (),
) -> dict:  # type: ignore[type-arg]
    tmp = Path(tempfile.mkdtemp(prefix="spe-cov-"))
    upd: dict[str, object] = {"censoring": censoring}
    if prior_referrals is not None:
        upd["prior_referrals"] = prior_referrals
    if exact_also:
        upd["exact"] = (*proto.match.exact, *exact_also)
    proto = proto.model_copy(update={"match": proto.match.model_copy(update=upd)})
    try:
        res = generate(scenario, persons=persons, seed=seed, out=tmp, identifiers="pseudonym")
        clean, _, _ = validate(read_extracts(tmp), start=proto.start, end=proto.end)
        panel, _ = matching_panel(clean, proto)
        truth = res.truth
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    true_log = math.log(true_rate_ratio(truth, "gp", proto.did.post))
    row: dict[str, object] = {
        "seed": seed,
        "scenario": scenario,
        "persons": persons,
        "censoring": censoring,
        "prior_referrals": proto.match.prior_referrals,
        "exact_also": " ".join(exact_also),
        "true_log_rr": true_log,
        "error": "",
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            result, md = matched_cohort(panel, proto)
            est, se, n_cases = fit(md, proto)
        except SpevidenceError as e:  # recorded, never dropped: a failure is a result
            return row | {"error": f"{type(e).__name__}: {e}"[:200]}
        row |= {
            "n_cases": n_cases,
            "log_rr": est,
            "se": se,
            "covers": bool(abs(est - true_log) <= 1.959964 * se),
            "ipcw_max": float(md["ipcw"].max()) if "ipcw" in md else 1.0,
        }
        if variants and censoring == "ipcw":
            for name, d in weight_variants(result, md).items():
                e, s, _ = fit(d, proto, "_w")
                row[f"log_rr_{name}"], row[f"se_{name}"] = e, s
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", default="null-effect")
    ap.add_argument("--protocol", default="frequent-attenders")
    ap.add_argument("--persons", type=int, default=3000)
    ap.add_argument("--seeds", type=int, default=200)
    ap.add_argument("--first-seed", type=int, default=1000)
    ap.add_argument("--censoring", default="ipcw", choices=["ipcw", "referral", "none"])
    ap.add_argument("--weight-variants", action="store_true", help="refit with other weights")
    ap.add_argument(
        "--prior-referrals", choices=["keep", "exclude"], help="override the protocol's"
    )
    ap.add_argument(
        "--exact-also", nargs="*", default=[], help="more exact columns, e.g. recent_gp"
    )
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
        row = one_seed(
            args.scenario, args.persons, seed, proto, args.censoring,
            variants=args.weight_variants, prior_referrals=args.prior_referrals,
            exact_also=tuple(args.exact_also),
        )  # fmt: skip
        pd.DataFrame([row]).to_csv(args.csv, mode="a", header=not args.csv.is_file(), index=False)
        if row["error"]:
            print(f"seed {seed} failed: {row['error']}", flush=True)
            continue
        print(
            f"seed {seed} ({time.time() - t0:.0f}s): {100 * math.expm1(row['log_rr']):+.1f}% "
            f"(truth {100 * math.expm1(row['true_log_rr']):+.1f}%) covers={row['covers']}",
            flush=True,
        )
    df = pd.read_csv(args.csv)
    failed = df["error"].notna() if "error" in df else df["seed"] < 0
    df = df.loc[~failed]
    n = len(df)
    cov = df["covers"].mean()
    bias = (df["log_rr"] - df["true_log_rr"]).to_numpy()
    print(
        f"{args.scenario}, {args.persons} persons, censoring={args.censoring}: {n} seeds, "
        f"95% CI coverage {cov:.3f} (MC s.e. {math.sqrt(cov * (1 - cov) / n):.3f}); "
        f"mean bias of log RR {bias.mean():+.4f} (MC s.e. {bias.std(ddof=1) / math.sqrt(n):.4f}); "
        f"SD of log RR {df['log_rr'].std(ddof=1):.4f}, mean SE {df['se'].mean():.4f}; "
        f"mean cases {df['n_cases'].mean():.0f}; {int(failed.sum())} seed(s) failed to fit"
    )
    for c in [c for c in df.columns if c.startswith("log_rr_")]:
        v = df[c] - df["true_log_rr"]
        dv = (df[c] - df["log_rr"]).to_numpy()
        cv = (v.abs() <= 1.959964 * df["se_" + c[7:]]).mean()
        print(
            f"  {c[7:]}: coverage {cv:.3f}, mean bias {v.mean():+.4f} "
            f"(MC s.e. {v.std(ddof=1) / math.sqrt(n):.4f}); minus the protocol's "
            f"{dv.mean():+.4f} (paired MC s.e. {dv.std(ddof=1) / math.sqrt(n):.4f})"
        )
    if np.isnan(cov):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
