"""Analysis 03: a national staggered evaluation mirroring Wilding et al. (2025, BJGP).

One command, from the repository root (after ``make install``)::

    .venv/bin/python analyses/03-national-staggered/run.py                 # DuckDB
    .venv/bin/python analyses/03-national-staggered/run.py --engine spark  # PySpark

For each of two synthetic populations it generates the data, runs
``protocols/national-staggered.yaml`` end to end with ``spevidence.pipeline.run`` (person x
quarter panel, Callaway-Sant'Anna and ETWFE Poisson against not-yet and never-referred
people, disclosure control, bundle, HTML report), then compares the released dynamic
effects with the generator's truth:

* ``staggered-national``: people are referred after a spike in their GP use, as in
  practice; the design then mistakes the fall after the peak for an effect.
* ``staggered-national-random-timing``: the same population and effects, but referral
  timing does not follow a spike; the design should recover the truth.

Writes ``OUT/<scenario>/`` (data, bundle, report.html), ``OUT/comparison.csv`` and the
figure ``OUT/national-staggered.png`` (``--figure`` copies it elsewhere).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import time
from pathlib import Path

import pandas as pd

from spevidence.pipeline import run
from spevidence.protocol import load_protocol
from spevidence.synthetic import generate, true_effect_by_quarter

ROOT = Path(__file__).resolve().parents[2]
PROTOCOL = ROOT / "protocols" / "national-staggered.yaml"
MATCHED = Path(__file__).resolve().parent / "matched-at-referral.yaml"
SCENARIOS = ("staggered-national", "staggered-national-random-timing")


def figure(comp: pd.DataFrame, matched: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    pal = sns.color_palette("colorblind")
    titles = {
        "staggered-national": "Referred at a peak of GP use (as in practice)",
        "staggered-national-random-timing": "Referral timing unrelated to peaks of use",
    }
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4), sharey=True)
    for ax, sc in zip(axes[:2], SCENARIOS, strict=True):
        sub = comp.loc[comp["scenario"] == sc]
        for j, est in enumerate(("Callaway-Sant'Anna", "Extended TWFE")):
            s = sub.loc[sub["estimator"] == est].sort_values("event")
            x = s["event"].to_numpy(float) + (j - 0.5) * 0.25
            ax.errorbar(
                x,
                s["estimate"],
                yerr=[s["estimate"] - s["conf_low"], s["conf_high"] - s["estimate"]],
                fmt="os"[j],
                ms=4,
                capsize=2,
                color=pal[j],
                label=f"{est} (95% CI)",
            )
        t = sub.drop_duplicates("event").sort_values("event")
        ax.plot(t["event"], t["truth"], color="black", lw=1.5, label="True effect")
        ax.axhline(0, color="grey", lw=0.8)
        ax.axvline(-0.5, color="grey", ls=":", lw=0.8)
        ax.set_title(titles[sc])
        ax.set_xlabel("Quarters since first accepted referral")
    ax = axes[2]
    m = matched.sort_values("event")
    ax.errorbar(
        m["event"] / 3,
        m["estimate"] * 3,
        yerr=[(m["estimate"] - m["conf_low"]) * 3, (m["conf_high"] - m["estimate"]) * 3],
        fmt="D",
        ms=3,
        capsize=1.5,
        color=pal[2],
        label="Matched at referral, by month (95% CI)",
    )
    ax.plot(m["event"] / 3, m["truth"] * 3, color="black", lw=1.5)
    ax.axhline(0, color="grey", lw=0.8)
    ax.axvline(-1 / 6, color="grey", ls=":", lw=0.8)
    ax.set_title("Referred at a peak: matched at referral\non recent use (spevidence's design)")
    ax.set_xlabel("Quarters since referral (monthly estimates x 3)")
    axes[0].set_ylabel("Change in GP appointments\nper person per quarter")
    handles, labels = [], []
    for a in (axes[0], axes[2]):
        h, lab = a.get_legend_handles_labels()
        handles += h
        labels += lab
    fig.legend(handles, labels, frameon=False, loc="lower center", ncol=4)
    fig.suptitle(
        "National staggered design (Wilding et al. 2025) on synthetic data: estimates vs truth"
    )
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def spark_session() -> None:
    """A local Spark session sized for one machine (spevidence uses the active session).

    Spark's default of 200 shuffle partitions turns each small aggregation into 200
    tasks; a handful per core is enough here.
    """
    from pyspark.sql import SparkSession

    spark = (
        SparkSession.builder.appName("spevidence-analysis-03")
        .master("local[2]")
        .config("spark.sql.shuffle.partitions", "8")
        .config("spark.driver.memory", "6g")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")


def run_matched(out: Path, engine: str) -> pd.DataFrame:
    """The peak scenario again, with spevidence's matched design (``MATCHED``).

    Returns the monthly event study with the generator's truth per event month (the mean
    over all accepted referrals; matched cases are most of them).
    """
    import json

    data = out / SCENARIOS[0] / "data"
    t0 = time.perf_counter()
    res = run(
        load_protocol(MATCHED),
        data,
        out / "staggered-national-matched",
        engine=engine,
        formats=("html",),
        progress=False,
    )
    t1 = time.perf_counter()
    truth = json.loads((data / "truth.json").read_text(encoding="utf-8"))
    by_month = {int(r["event_month"]): r["att_gp"] for r in truth["att_by_event_month"]}
    es = pd.read_csv(res.bundle / "tables" / "event_study.csv")
    es = es.loc[es["outcome"] == "gp"].rename(columns={"event_time": "event"})
    es["truth"] = [by_month.get(int(e), 0.0) if e >= 0 else 0.0 for e in es["event"]]
    es["covers"] = (es["conf_low"] <= es["truth"]) & (es["truth"] <= es["conf_high"])
    did = pd.read_csv(res.bundle / "tables" / "did_estimates.csv")
    post = es.loc[es["event"] >= 0]
    print(f"\n== {SCENARIOS[0]}, matched at referral ({MATCHED.name}), engine {engine}")
    print(f"spevidence run {t1 - t0:.0f} s; report {res.reports}")
    print(did[["model", "estimate", "conf_low", "conf_high", "rate_ratio", "n"]].to_string())
    mean_truth = sum(by_month.get(m, 0.0) for m in range(12)) / 12
    print(f"true mean effect per person-month over months 0-11: {mean_truth:.4f}")
    k = int(post["covers"].sum())
    print(f"event study: {k}/{len(post)} post-referral months cover the truth")
    cols = ["event", "estimate", "conf_low", "conf_high", "truth", "covers", "n"]
    es[cols].to_csv(out / "comparison-matched.csv", index=False)
    return es[cols]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--engine", choices=("duckdb", "spark"), default="duckdb")
    ap.add_argument("--persons", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=2025)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--figure", type=Path, default=None, help="also copy the figure here")
    args = ap.parse_args()
    out = args.out or ROOT / "out" / "analyses" / f"03-national-staggered-{args.engine}"
    if args.engine == "spark":
        spark_session()
    proto = load_protocol(PROTOCOL)
    _, hi = proto.staggered_spec.event_window
    rows = []
    for sc in SCENARIOS:
        data = out / sc / "data"
        t0 = time.perf_counter()
        if not (data / "truth.json").is_file():
            generate(sc, persons=args.persons, seed=args.seed, out=data, progress=False)
        t1 = time.perf_counter()
        res = run(proto, data, out / sc, engine=args.engine, formats=("html",), progress=False)
        t2 = time.perf_counter()
        st = pd.read_csv(res.bundle / "tables" / "staggered.csv")
        pt = pd.read_csv(res.bundle / "tables" / "staggered_pretrend.csv")
        truth = true_effect_by_quarter(data, range(0, hi + 1))
        dyn = st.loc[(st["aggregation"] == "dynamic") & (st["outcome"] == "gp")].copy()
        dyn["truth"] = [truth.get(int(e), 0.0) if e >= 0 else 0.0 for e in dyn["event"]]
        dyn["covers"] = (dyn["conf_low"] <= dyn["truth"]) & (dyn["truth"] <= dyn["conf_high"])
        dyn.insert(0, "scenario", sc)
        rows.append(dyn)
        simple = st.loc[st["aggregation"] == "simple"]
        post = dyn.loc[dyn["event"] >= 0]
        print(f"\n== {sc}: {args.persons:,} people, engine {args.engine}")
        print(f"generate {t1 - t0:.0f} s, spevidence run {t2 - t1:.0f} s; report {res.reports}")
        print("overall (simple) effect per person-quarter:")
        print(
            simple[["estimator", "estimate", "conf_low", "conf_high", "n"]].to_string(index=False)
        )
        print(
            f"pre-trend test (CS, {pt['test'].iloc[0]}): "
            f"chi2 {pt['statistic'].iloc[0]:.1f} on "
            f"{pt['df'].iloc[0]:.0f} df, p = {pt['p_value'].iloc[0]:.3g}"
        )
        for est, g in post.groupby("estimator", sort=False):
            print(
                f"{est}: {int(g['covers'].sum())}/{len(g)} post-referral quarters cover the truth"
            )
    comp = pd.concat(rows, ignore_index=True)
    matched = run_matched(out, args.engine)
    cols = [
        "scenario",
        "estimator",
        "event",
        "estimate",
        "conf_low",
        "conf_high",
        "truth",
        "covers",
        "n",
    ]
    comp[cols].to_csv(out / "comparison.csv", index=False)
    png = out / "national-staggered.png"
    figure(comp.loc[comp["event"] >= -4], matched, png)
    if args.figure is not None:
        shutil.copyfile(png, args.figure)
    load = subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    print(f"\nwrote {out / 'comparison.csv'} and {png}; machine: {load}")


if __name__ == "__main__":
    main()
