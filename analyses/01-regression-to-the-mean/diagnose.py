"""Diagnose the residual regression to the mean of matched DiD, over many seeds.

For each seed: generate a synthetic ICB, link the panel exactly as the pipeline does,
match referred people to comparators with the protocol's risk-set matching, then
estimate the Poisson DiD (12 months before / 12 after) under several designs:

* ``censor-0``   comparator follow-up ends at the period before their own referral
                 (the session-1 design);
* ``censor-k``   ... ends ``k`` periods before their own referral (a washout);
* ``no-censor``  comparators followed whatever happens to them later (intention to
                 treat of the sequential trial emulated at each index month);
* ``ipcw``       censored at own referral, remaining comparator rows weighted by the
                 inverse probability of staying unreferred (the risk sets' propensity
                 model is a pooled-logistic referral hazard; ``censoring="ipcw"``);
* ``never``      comparators restricted to the never-referred.

Prints, per design, the mean estimate (%), its SD over seeds, the mean standard
error, and the share of 95 % CIs covering the truth.

    python analyses/01-regression-to-the-mean/diagnose.py --scenario null-effect \
        --persons 10000 --seeds 10
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd

from spevidence.data import read_extracts, validate
from spevidence.did import two_by_two
from spevidence.match import risk_set
from spevidence.pipeline import demo_key, matching_panel
from spevidence.protocol import load_protocol
from spevidence.synthetic import generate, true_rate_ratio

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def panel_for(scenario: str, persons: int, seed: int, work: Path, proto):  # type: ignore[no-untyped-def]
    cache = work / f"{scenario}-{persons}-{seed}.parquet"
    truth_f = work / f"{scenario}-{persons}-{seed}.truth.json"
    if cache.is_file() and truth_f.is_file():
        return pd.read_parquet(cache), json.loads(truth_f.read_text())
    data = work / f"{scenario}-{persons}-{seed}"
    generate(scenario, persons=persons, seed=seed, out=data)
    key = demo_key(seed)
    extracts = read_extracts(data)
    ids = "pseudonym" if scenario == "kent-ae" else "nhs_number"
    clean, _, _ = validate(
        extracts, start=proto.start, end=proto.end, ids=ids, key=key if ids != "pseudonym" else None
    )
    panel, _ = matching_panel(clean, proto)
    truth = json.loads((data / "truth.json").read_text())
    panel.to_parquet(cache)
    truth_f.write_text(json.dumps(truth))
    return panel, truth


def with_prior_referral(panel: pd.DataFrame, data: Path, seed: int, proto) -> pd.DataFrame:  # type: ignore[no-untyped-def]
    """Add ``prior_referral``: 1 from the period after a person's first referral of any
    outcome (accepted, declined, did not engage), else 0."""
    from spevidence.identity import pseudonymise

    r = pd.read_parquet(data / "referrals.parquet", columns=["person_id", "referral_date"])
    if not str(r["person_id"].iloc[0]).startswith("P"):
        r["person_id"] = pseudonymise(r["person_id"].astype(str), demo_key(seed))
    d = pd.to_datetime(r["referral_date"])
    start = pd.Timestamp(proto.start)
    r["rt"] = (d.dt.year - start.year) * 12 + (d.dt.month - start.month)
    first = r.groupby("person_id")["rt"].min()
    f = panel["person_id"].map(first).astype("float64").to_numpy(na_value=np.inf)
    return panel.assign(prior_referral=(panel["t"].to_numpy() > f).astype("int64"))


def did(md: pd.DataFrame, pre: int, post: int, weights: str = "weights") -> tuple[float, float]:
    w = md.loc[(md["event_time"] >= -pre) & (md["event_time"] < post)]
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
        weights=weights,
    )
    t = r.tidy().iloc[0]
    return float(t["estimate"]), float(t["std_error"])


def naive(md: pd.DataFrame, pre: int, post: int) -> float:
    g = md.loc[md["treated"] == 1]
    b = g.loc[(g["event_time"] >= -pre) & (g["event_time"] < 0), "gp"].mean()
    a = g.loc[(g["event_time"] >= 0) & (g["event_time"] < post), "gp"].mean()
    return 100 * (a / b - 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", default="null-effect")
    ap.add_argument("--protocol", default="frequent-attenders")
    ap.add_argument("--persons", type=int, default=10000)
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--first-seed", type=int, default=1)
    ap.add_argument("--washouts", default="0,1,2,3,6")
    ap.add_argument("--designs", default="censor,no-censor,ipcw,never")
    ap.add_argument("--work", type=Path, default=ROOT / "out" / "analyses" / "01-diagnose")
    ap.add_argument("--csv", type=Path, default=None)
    ap.add_argument("--covariates", default=None, help="comma-separated; default: protocol")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    proto = load_protocol(ROOT / "protocols" / f"{args.protocol}.yaml")
    mp = proto.match
    covs = list(mp.covariates) if mp.covariates else None
    if args.covariates:
        covs = args.covariates.split(",")
    designs = args.designs.split(",")
    rows = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        t0 = time.time()
        panel, truth = panel_for(args.scenario, args.persons, seed, args.work, proto)
        rr_true = true_rate_ratio(truth, "gp", proto.did.post)
        kw = dict(
            exact=mp.exact,
            covariates=covs,
            ratio=mp.ratio,
            caliper=mp.caliper,
            replace=mp.replace,
            lookback=mp.lookback,
            seed=proto.seed,
        )
        m = risk_set(panel, comparators="not-yet-referred", **kw)
        res = {}
        if "censor" in designs:
            for k in (int(x) for x in args.washouts.split(",")):
                md = m.matched_data(censoring="referral", washout=k)
                res[f"censor-{k}"] = did(md, proto.did.pre, proto.did.post)
                if k == 0:
                    nv = naive(md, proto.did.pre, proto.did.post)
        if "no-censor" in designs:
            res["no-censor"] = did(m.matched_data(censoring="none"), proto.did.pre, proto.did.post)
        if "ipcw" in designs:
            res["ipcw"] = did(m.matched_data(censoring="ipcw"), proto.did.pre, proto.did.post)
        if "prior-ref" in designs:
            data = args.work / f"{args.scenario}-{args.persons}-{seed}"
            pp = with_prior_referral(panel, data, seed, proto)
            kw2 = {**kw, "exact": (*mp.exact, "prior_referral")}
            mq = risk_set(pp, comparators="not-yet-referred", **kw2)
            for cz in ("ipcw", "referral", "none"):
                res[f"prior-ref-{cz}"] = did(
                    mq.matched_data(censoring=cz), proto.did.pre, proto.did.post
                )
        if "exact3" in designs:
            kw3 = {**kw, "exact": (*mp.exact, "gp_m1_3")}
            me = risk_set(panel, comparators="not-yet-referred", **kw3)
            for cz in ("ipcw", "none"):
                res[f"exact3-{cz}"] = did(
                    me.matched_data(censoring=cz), proto.did.pre, proto.did.post
                )
            bal = me.units.groupby("treated")["gp_m1_3"].mean()
            print(f"  exact3: {len(me.units) // 2} pairs, gp_m1_3 {bal.round(2).to_dict()}")
        for name, upd in (
            ("cal05", {"caliper": 0.05}),
            ("replace", {"replace": True}),
            ("cal05-replace", {"caliper": 0.05, "replace": True}),
        ):
            if name in designs:
                mv = risk_set(panel, comparators="not-yet-referred", **{**kw, **upd})
                res[f"{name}-ipcw"] = did(mv.matched_data(), proto.did.pre, proto.did.post)
                bal = mv.units.groupby("treated")["gp_m1_3"].mean()
                print(
                    f"  {name}: {(mv.units.treated == 1).sum()} cases, "
                    f"gp_m1_3 {bal.round(2).to_dict()}"
                )
        if "elig" in designs:
            # the scheme's own eligibility rule (> 15 GP appointments in 12 months) as an
            # exact stratum: comparators must have been eligible for referral at the index
            pe = panel.assign(
                eligible=(panel["gp_m1_3"] + panel["gp_m4_6"] + panel["gp_m7_12"] > 15).astype(
                    "int64"
                )
            )
            mv = risk_set(
                pe, comparators="not-yet-referred", **{**kw, "exact": (*mp.exact, "eligible")}
            )
            for cz in ("ipcw", "none", "referral"):
                res[f"elig-{cz}"] = did(
                    mv.matched_data(censoring=cz), proto.did.pre, proto.did.post
                )
            bal = mv.units.groupby("treated")["gp_m1_3"].mean()
            print(
                f"  elig: {(mv.units.treated == 1).sum()} cases, gp_m1_3 {bal.round(2).to_dict()}"
            )
        if "never" in designs:
            mn = risk_set(panel, comparators="never-referred", **kw)
            res["never"] = did(mn.matched_data(censoring="referral"), proto.did.pre, proto.did.post)
        for name, (b, se) in res.items():
            rows.append(
                {
                    "seed": seed,
                    "design": name,
                    "truth_pct": 100 * (rr_true - 1),
                    "est_pct": 100 * (math.exp(b) - 1),
                    "log_est": b,
                    "se": se,
                    "covers": abs(b - math.log(rr_true)) <= 1.959964 * se,
                    "naive_pct": nv if "censor" in designs else np.nan,
                }
            )
        print(
            f"seed {seed} ({time.time() - t0:.0f}s) truth {100 * (rr_true - 1):.1f}%: "
            + ", ".join(f"{k} {100 * (math.exp(v[0]) - 1):+.1f}" for k, v in res.items()),
            flush=True,
        )
    df = pd.DataFrame(rows)
    if args.csv:
        df.to_csv(args.csv, index=False)
    df["bias_log"] = df["log_est"] - np.log1p(df["truth_pct"] / 100)
    summ = df.groupby("design", sort=False).agg(
        mean_est_pct=("est_pct", "mean"),
        mean_truth_pct=("truth_pct", "mean"),
        mean_bias_log=("bias_log", "mean"),
        sd_log=("log_est", "std"),
        mean_se=("se", "mean"),
        coverage=("covers", "mean"),
        naive_pct=("naive_pct", "mean"),
    )
    summ["mcse_bias"] = summ["sd_log"] / math.sqrt(args.seeds)
    print(f"\n{args.scenario}, {args.persons} persons, {args.seeds} seeds")
    print(summ.round(4).to_string())


if __name__ == "__main__":
    main()
