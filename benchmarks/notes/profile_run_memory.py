"""Where the memory of the matched `spevidence run` goes, stage by stage (issue 21 notes).

    python benchmarks/notes/profile_run_memory.py --data DATA   # spevidence synth kent-ae
    memray run -o run.bin benchmarks/notes/profile_run_memory.py --data ...   # allocations

Runs the stages of the matched design the way ``spevidence.pipeline.run`` runs them
(``spevidence.pipeline.matched``; first written at commit 6998bea, before the package):
read_extracts + validate, build_panel, Panel.to_pandas (categorical), describe.lagged_sums,
_with_prior_referral,
_with_risk_score, risk_set, matched_data, balance, did_window, the 2x2 models, the event
studies, the descriptive tables, the run-cache write of the panel, and _activity. After
each step it prints the process RSS, the peak RSS within the step (a thread samples
/proc every 20 ms, so DuckDB's and Arrow's native memory count too), Arrow's allocated
bytes, and the deep size and dtypes of the frames the step made. A note, not a test.
"""

from __future__ import annotations

import argparse
import gc
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
import psutil
import pyarrow as pa

MIB = 1024**2
PROC = psutil.Process()


class Peak:
    """Peak RSS between start() and stop(), sampled by a thread."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.peak = PROC.memory_info().rss
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, PROC.memory_info().rss)
            time.sleep(0.02)

    def stop(self) -> int:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak = max(self.peak, PROC.memory_info().rss)
        return self.peak


ROWS: list[dict[str, Any]] = []


def frame_info(df: pd.DataFrame) -> str:
    """Rows, deep MiB and the five biggest columns with their dtypes."""
    usage = df.memory_usage(deep=True, index=True)
    top = usage.drop("Index").sort_values(ascending=False).head(5)
    cols = ", ".join(f"{c} {df[c].dtype} {v / MIB:.0f}" for c, v in top.items())
    return f"{len(df):,} rows, {usage.sum() / MIB:,.0f} MiB deep ({cols})"


def step(name: str, fn: Callable[[], Any], show: Callable[[Any], str] | None = None) -> Any:
    gc.collect()
    before = PROC.memory_info().rss
    peak = Peak()
    peak.start()
    t0 = time.perf_counter()
    out = fn()
    secs = time.perf_counter() - t0
    top = peak.stop()
    after = PROC.memory_info().rss
    what = show(out) if show else ""
    ROWS.append(
        {
            "step": name,
            "s": secs,
            "rss_before": before / MIB,
            "peak": top / MIB,
            "rss_after": after / MIB,
            "arrow": pa.total_allocated_bytes() / MIB,
            "what": what,
        }
    )
    print(
        f"{name:<34} {secs:7.1f} s  RSS {before / MIB:7,.0f} -> peak {top / MIB:7,.0f} "
        f"-> {after / MIB:7,.0f} MiB  (arrow {pa.total_allocated_bytes() / MIB:,.0f})  {what}",
        flush=True,
    )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--protocol", type=Path, default=Path("protocols/kent-ae.yaml"))
    ap.add_argument("--out", type=Path, default=Path("/tmp/profile_run_memory"))
    args = ap.parse_args()

    from spevidence import describe
    from spevidence._runcache import RunCache
    from spevidence.data import read_extracts, validate
    from spevidence.did import event_study
    from spevidence.link import build_panel
    from spevidence.match import risk_set
    from spevidence.match.risk_set import PRIOR_REFERRAL
    from spevidence.pipeline import matched as pl
    from spevidence.pipeline import shared
    from spevidence.protocol import load_protocol

    proto = load_protocol(args.protocol)
    extracts = step("read_extracts", lambda: read_extracts(args.data))
    clean, _qa, _linkage = step(
        "validate",
        lambda: validate(
            extracts,
            start=proto.start,
            end=proto.end,
            ids=proto.ids,
            key=None,
            max_row_loss=proto.qa.max_row_loss,
        ),
    )
    pobj = step(
        "build_panel",
        lambda: build_panel(
            clean, start=proto.start, end=proto.end, period=proto.period, backend="duckdb"
        ),
    )
    box = {"raw": step("Panel.to_pandas", partial(pobj.to_pandas, categorical=True), frame_info)}
    panel = step(  # the raw frame lives while lagged_sums runs, as in matching_panel
        "describe.lagged_sums",
        lambda: describe.lagged_sums(box.pop("raw"), "gp", pl.TRAJECTORY),
        frame_info,
    )
    panel = step("_with_prior_referral", lambda: pl._with_prior_referral(panel, clean), frame_info)
    panel = step("_with_risk_score", lambda: pl._with_risk_score(panel, clean, proto), frame_info)
    reads = {s: {"profile": time.time()} for s in ("panel", "matching", "estimates")}
    cache = RunCache(args.out, reads, enabled=True)
    step(
        "run cache: save panel",
        lambda: cache.save("panel", {"panel": panel, "attrition": pobj.attrition.table()}),
    )
    mp = proto.match
    eligibility = tuple(mp.eligibility)
    if mp.prior_referrals == "exclude":
        eligibility = (f"{PRIOR_REFERRAL} < 1", *eligibility)
    res = step(
        "match.risk_set",
        lambda: risk_set(
            panel,
            exact=mp.exact,
            covariates=list(mp.covariates) if mp.covariates else None,
            ratio=mp.ratio,
            caliper=mp.caliper,
            replace=mp.replace,
            comparators=mp.comparators,
            comparator_pcns=mp.comparator_pcns,
            lookback=mp.lookback,
            eligibility=eligibility,
            seed=proto.seed,
        ),
        lambda r: f"pairs {len(r.pairs):,}",
    )
    matched = step(
        "Matched.matched_data",
        lambda: res.matched_data(censoring=mp.censoring, washout=mp.washout),
        frame_info,
    )
    step("Matched.balance", lambda: pl._balance(res.balance(warn=False).table()))
    window = step("did_window", lambda: pl.did_window(matched, proto), frame_info)
    for o in proto.outcomes:
        for model in proto.did.models:
            step(f"two_by_two {o} {model}", partial(pl.matched_two_by_two, window, proto, o, model))
        step(
            f"event_study {o}",
            partial(
                event_study,
                matched,
                yname=o,
                idname="unit_id",
                tname="t",
                index="index_t",
                treat="treated",
                window=proto.did.window,
                reference=-1,
                cluster=proto.did.cluster,
                weights="weights",
            ),
        )
    step(
        "describe tables + trends",
        lambda: (
            describe.cohort_characteristics(window, None, outcomes=proto.outcomes),
            pl._trends(window, proto),
            describe.naive_before_after(
                window, outcomes=proto.outcomes, pre=proto.did.pre, post=proto.did.post
            ),
        ),
    )
    step("_activity (service activity)", lambda: shared.service_activity(clean, proto))
    print(f"\nmax RSS of the process (ru_maxrss): {PROC.memory_info().rss / MIB:,.0f} MiB now")
    import resource

    print(f"ru_maxrss {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB")
    print("\n| step | s | RSS before MiB | peak MiB | RSS after MiB | Arrow MiB | frames |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for r in ROWS:
        print(
            f"| {r['step']} | {r['s']:.1f} | {r['rss_before']:,.0f} | {r['peak']:,.0f} "
            f"| {r['rss_after']:,.0f} | {r['arrow']:,.0f} | {r['what']} |"
        )


if __name__ == "__main__":
    main()
