"""Run the stages of an evaluation for a protocol (DESIGN.md section 2).

:func:`run` reads the extracts, validates and pseudonymises them, links them into a
person × month panel, matches referred people to comparators at the referral month,
estimates the effect by difference-in-differences, values it by SROI, applies disclosure
control to every released table, writes the bundle and renders the report from the bundle
alone. :func:`run_demo` does the same on a freshly generated synthetic ICB.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from spevidence import describe
from spevidence.errors import DataError, EstimationError, SpevidenceError
from spevidence.protocol import Protocol, load_protocol
from spevidence.protocol._model import TRAJECTORY

STEPS = (
    "Read, validate and pseudonymise extracts",
    "Link person × month panel",
    "Match comparators at referral",
    "Estimate difference-in-differences",
    "Social return on investment",
    "Disclosure control and bundle",
    "Render report",
)
POOLED_MONTHS = (3, 6)  # trends of rare outcomes: by quarter, else by half-year


@dataclass(frozen=True)
class RunResult:
    """Where an evaluation's outputs were written."""

    bundle: Path
    reports: dict[str, Path]
    reused: tuple[str, ...] = ()  # stages taken from the run cache (spevidence._runcache)


class _Steps:
    """One rich progress bar over the stages (stderr; off with progress=False)."""

    def __init__(self, enabled: bool, labels: tuple[str, ...] = STEPS) -> None:
        self.enabled = enabled
        self.labels = labels
        self._progress: Progress | None = None
        self._task: Any = None

    @contextmanager
    def run(self) -> Iterator[_Steps]:
        if not self.enabled:
            yield self
            return
        with Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
        ) as progress:
            self._progress = progress
            self._task = progress.add_task(self.labels[0], total=len(self.labels))
            yield self

    def note(self, text: str) -> None:
        if self._progress is not None:
            self._progress.console.print(text)

    def step(self, done: int) -> None:
        if self._progress is not None:
            label = self.labels[done] if done < len(self.labels) else "Done"
            self._progress.update(self._task, completed=done, description=label)


def _release(
    tables: dict[str, pd.DataFrame], proto: Protocol
) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    """Disclosure control of every table that leaves the secure environment, each by its
    entry in the disclosure catalogue (:mod:`spevidence.disclosure.catalogue`): counts
    redacted or rounded with secondary suppression over shared margins, means and rates
    recomputed from the released counts, coefficients and other statistics rounded to
    the step of the released count of people behind them or suppressed with it."""
    from spevidence.disclosure import release

    safe: dict[str, pd.DataFrame] = {}
    logs = []
    for name, table in tables.items():
        safe[name], log = release(
            name,
            table,
            threshold=proto.disclosure.threshold,
            rounding=proto.disclosure.rounding,
        )
        logs.append(log)
    log = pd.concat(logs, ignore_index=True) if logs else pd.DataFrame()
    return safe, log


def run(
    protocol: Protocol | str | Path,
    data: str | Path,
    out: str | Path,
    *,
    engine: Literal["duckdb", "spark"] = "duckdb",
    key_file: str | Path | None = None,
    formats: tuple[str, ...] | None = None,
    report_engine: str | None = None,
    progress: bool = True,
    cache: bool = True,
) -> RunResult:
    """Run an evaluation end to end.

    Parameters
    ----------
    protocol
        A :class:`~spevidence.protocol.Protocol` or the path of a protocol YAML.
    data
        Folder of extracts (``docs/contracts.md``).
    out
        Output folder: ``OUT/bundle/`` and ``OUT/report.*`` are written there.
    engine
        ``"duckdb"`` (default, embedded) or ``"spark"`` (PySpark local mode).
    key_file
        File with the pseudonymisation key when the protocol's ``ids`` is ``nhs_number``
        (else the ``SPEVIDENCE_KEY`` environment variable). The key is never written.
    formats, report_engine
        Override the protocol's report formats and rendering engine.
    cache
        Reuse the panel, matching and estimates stored in ``OUT/.spevidence-cache/``
        by an earlier run whose inputs (file hashes, protocol, seed, engine, key,
        package version) these stages read are unchanged; ``False`` neither reads nor
        writes the cache. The cache holds pseudonyms and never enters the bundle
        (:mod:`spevidence._runcache`).
    """
    from spevidence._atomic import locked_output
    from spevidence._runcache import RunCache, key_fingerprint, stage_inputs
    from spevidence.data import read_extracts, validate
    from spevidence.did import event_study
    from spevidence.identity import load_key
    from spevidence.link import build_panel

    proto = protocol if isinstance(protocol, Protocol) else load_protocol(protocol)
    out = Path(out)
    data = Path(data)
    if not data.is_dir():
        raise SpevidenceError(
            f"Extracts folder {data} not found. Give the folder holding population, "
            "referrals, gp_appointments, ae_attendances and admissions (.parquet or .csv)."
        )
    outcomes = proto.outcomes
    steps = _Steps(progress)
    # the output folder is locked for the whole run; the bundle and reports are staged and
    # moved into it together at the end (spevidence._atomic)
    with locked_output(out), steps.run():
        # 1. read, validate, pseudonymise ------------------------------------------
        key = load_key(key_file) if proto.ids == "nhs_number" else None
        extracts = read_extracts(data)
        clean, qa, linkage = validate(
            extracts,
            start=proto.start,
            end=proto.end,
            ids=proto.ids,
            key=key,
            max_row_loss=proto.qa.max_row_loss,
        )
        hashes = extracts.file_hashes
        run_cache = RunCache(
            out,
            stage_inputs(
                proto.to_dict(),
                input_hashes=hashes,
                engine=engine,
                key_fingerprint=key_fingerprint(key),
            ),
            # tables read from a database have no file hash: their changes cannot be seen
            enabled=cache and all(h is not None for h in hashes.values()),
        )
        steps.step(1)
        # the output tail both designs share (disclosure control, service activity from
        # the validated extracts, bundle, report)
        write = partial(
            _write_outputs,
            data=data,
            out=out,
            extracts=extracts,
            engine=engine,
            formats=formats,
            report_engine=report_engine,
            step=steps.step,
            activity_from=clean,
        )
        # 2. link ------------------------------------------------------------------
        if proto.design == "staggered":  # whole-population staggered DiD: its own module
            from spevidence import _pipeline_staggered

            panel_obj = build_panel(
                clean,
                start=proto.start,
                end=proto.end,
                period=proto.period,
                backend=engine,
            )

            return _pipeline_staggered.finish(proto, panel_obj, qa=qa, step=steps.step, write=write)
        if (hit := run_cache.load("panel")) is None:
            panel, panel_obj = matching_panel(clean, proto, engine=engine)
            ae_types = panel_obj.definitions.ae_department_types
            panel_attrition = panel_obj.attrition
            run_cache.save(
                "panel",
                {"panel": panel, "attrition": panel_attrition.table()},
                {"ae_department_types": ae_types},
            )
        else:
            panel, ae_types = hit.frames["panel"], hit.meta["ae_department_types"]
            panel_attrition = _attrition_from_table(hit.frames["attrition"])
            steps.note(f"Reused the linked panel from {run_cache.root / 'panel'}")
        steps.step(2)
        # 3. match -----------------------------------------------------------------
        if (hit := run_cache.load("matching")) is None:
            matched_obj, matched = matched_cohort(panel, proto)
            flow = _attrition(matched_obj)
            balance = _balance(matched_obj.balance(warn=False).table())
            run_cache.save("matching", {"matched": matched, "flow": flow, "balance": balance})
        else:
            matched, flow, balance = (hit.frames[k] for k in ("matched", "flow", "balance"))
            steps.note(f"Reused the matched cohort from {run_cache.root / 'matching'}")
        window = did_window(matched, proto)
        steps.step(3)
        # 4. difference-in-differences ---------------------------------------------
        est_rows, es_rows, pre_rows, not_estimated = [], [], [], []
        referred = matched.loc[matched["treated"] == 1]
        n_referred = int(referred["unit_id"].nunique())  # the people the coefficients rest on
        at_time = referred.groupby("event_time")["unit_id"].nunique()
        estimates = run_cache.load("estimates")
        for o in outcomes if estimates is None else ():
            for model in proto.did.models:
                try:
                    res = matched_two_by_two(window, proto, o, model)
                except EstimationError as e:  # one outcome's model, not the whole run
                    not_estimated.append(_not_estimated(o, model, e, steps))
                    continue
                td = res.tidy().iloc[[0]].copy()
                td.insert(0, "model", model)
                td.insert(0, "outcome", o)
                td["n_referred"] = n_referred
                est_rows.append(td)
            try:
                es = event_study(
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
                )
            except EstimationError as e:
                not_estimated.append(_not_estimated(o, "event study", e, steps))
                continue
            et = es.tidy()
            et.insert(0, "outcome", o)
            et["n_referred"] = et["event_time"].map(at_time).fillna(0).astype("int64")
            es_rows.append(et)
            pt = es.pretrend_test()
            pre_rows.append({"outcome": o, **_pretrend_dict(pt)})
        if estimates is None:
            if not est_rows:
                raise EstimationError(
                    "No difference-in-differences model could be estimated for any outcome: "
                    + "; ".join(
                        f"{r['outcome']} ({r['model']}): {r['reason']}" for r in not_estimated
                    )
                )
            did_est = pd.concat(est_rows, ignore_index=True)
            es_table = pd.concat(es_rows, ignore_index=True) if es_rows else pd.DataFrame()
            pre_table = pd.DataFrame(pre_rows)
            skipped = pd.DataFrame(not_estimated, columns=["outcome", "model", "reason"])
            run_cache.save(
                "estimates",
                {
                    "did": did_est,
                    "event_study": es_table,
                    "pretrend": pre_table,
                    "not_estimated": skipped,
                },
            )
        else:
            did_est, es_table, pre_table, skipped = (
                estimates.frames[k] for k in ("did", "event_study", "pretrend", "not_estimated")
            )
            steps.note(f"Reused the estimates from {run_cache.root / 'estimates'}")
        steps.step(4)
        # 5. SROI ------------------------------------------------------------------
        # the SROI values the released (rounded) estimate, so it cannot give the exact one back
        linear = _release({"did_estimates": did_est}, proto)[0]["did_estimates"]
        linear = linear.loc[linear["model"] == "linear"]
        sroi_tables, sroi_effect = _sroi(
            linear[["outcome", "estimate", "std_error"]],
            proto,
            persons=n_referred,
            ae_department_types=ae_types,
            source="matched DiD estimate",
            described=f"the linear difference-in-differences estimate of each outcome (change "
            f"in events per person-{proto.period} among referred people, relative to matched "
            f"comparators, over the {proto.did.post} {proto.period}s from referral)",
        )
        steps.step(5)
        # 6. disclosure control and bundle -----------------------------------------
        tables: dict[str, pd.DataFrame] = {
            # the QA messages quote exact row counts and row numbers: keep them inside
            "qa": qa.table().drop(columns=["message"], errors="ignore"),
            "attrition": _cohort_flow(linkage, panel_attrition, flow),
            "linkage_attrition": (linkage + panel_attrition).table(),
            "cohort_characteristics": describe.cohort_characteristics(
                window, None, outcomes=outcomes
            ),
            "balance": balance,
            "trends": _trends(window, proto),
            "naive_before_after": describe.naive_before_after(
                window, outcomes=outcomes, pre=proto.did.pre, post=proto.did.post
            ),
            "did_estimates": did_est,
            "event_study": es_table,
            "pretrend_test": pre_table,
            **({"did_not_estimated": skipped} if len(skipped) else {}),
            **sroi_tables,
        }
        bundle, reports = write(tables, proto, extra={"sroi_effect": sroi_effect})
    return RunResult(bundle=bundle, reports=reports, reused=tuple(run_cache.reused))


def _trends(window: pd.DataFrame, proto: Protocol) -> pd.DataFrame:
    """Trends by month from referral (:func:`spevidence.describe.trends`); an outcome whose
    monthly points disclosure control would mostly withhold (counts of 1 to the threshold)
    is given by quarter instead (events and person-months summed over three months, then
    released under the same rules), and by half-year where quarters are still mostly
    withheld. One period is released for an outcome, never two: quarterly and monthly
    counts side by side could give a withheld month back.
    """
    out = describe.trends(window, outcomes=proto.outcomes)
    if proto.period != "month":
        return out
    for months in POOLED_MONTHS:
        trial = _release({"trends": out}, proto)[0]["trends"]  # not released: to decide
        withheld = trial["mean"].isna().groupby(trial["outcome"]).mean()
        rare = tuple(o for o in proto.outcomes if withheld.get(o, 0.0) > 0.5)
        if not rare:
            break
        pooled = describe.trends(window, outcomes=rare, months=months)
        out = pd.concat([out.loc[~out["outcome"].isin(rare)], pooled], ignore_index=True)
    return out.sort_values(["outcome", "group", "event_time"], ignore_index=True)


def _write_outputs(
    tables: dict[str, pd.DataFrame],
    proto: Protocol,
    *,
    data: Path,
    out: Path,
    extracts: Any,
    engine: str,
    formats: tuple[str, ...] | None,
    report_engine: str | None,
    step: Callable[[int], None],
    activity_from: Any = None,
    design_figures: Callable[[dict[str, pd.DataFrame]], dict[str, Any]] | None = None,
    extra: dict[str, Any] | None = None,
) -> tuple[Path, dict[str, Path]]:
    """The tail every design shares: release the tables (disclosure control), add the
    service-activity outputs (from the validated extracts ``activity_from``, if given),
    draw the figures from the released tables only, write the bundle and render the report.

    ``design_figures`` draws a design's own figures from the released tables; ``extra``
    adds facts to the manifest. Returns the bundle folder and the rendered reports.
    """
    from spevidence._atomic import commit, disk_errors, staging
    from spevidence.bundle import write_bundle
    from spevidence.report import render
    from spevidence.report.figures import make_figures

    safe, disclosure_log = _release(tables, proto)
    act_figures: dict[str, Any] = {}
    if activity_from is not None:
        act_tables, act_figures, act_log = _activity(activity_from, proto)
        safe.update(act_tables)
        if len(act_log):
            disclosure_log = pd.concat([disclosure_log, act_log], ignore_index=True)
    if "cohort_characteristics" in safe:
        safe["cohort_characteristics"] = describe.characteristics_wide(
            safe["cohort_characteristics"]
        )
    figures = {**make_figures(safe), **act_figures}
    if design_figures is not None:
        figures.update(design_figures(safe))
    fmts = formats or proto.report.formats
    sources = extracts.sources.items()
    inputs = {name: data / s.location for name, s in sources if s.sha256 is not None}
    with staging(out) as stage:  # nothing reaches `out` until all is written
        with disk_errors("writing the bundle", staging=stage, out=out):
            bundle = write_bundle(
                stage / "bundle",
                tables=safe,
                figures=figures,
                protocol=proto.to_dict(),
                inputs=inputs,
                seed=proto.seed,
                engine=engine,
                disclosure_log=disclosure_log,
                extra={"synthetic": (data / "truth.json").is_file(), **(extra or {})},
            )
        step(6)
        with disk_errors("rendering the report", staging=stage, out=out):
            reports = render(
                bundle,
                stage,
                formats=tuple(fmts),  # type: ignore[arg-type]
                engine=(report_engine or proto.report.engine),  # type: ignore[arg-type]
            )
        with disk_errors("moving the outputs into place", staging=stage, out=out):
            final = commit(stage, out, reports)
    step(7)
    return final


def _not_estimated(outcome: str, model: str, err: Exception, steps: Any) -> dict[str, str]:
    """A model that could not be fitted on these data: the run goes on without it. The
    released reason holds no numbers (the error's row counts stay in the run log)."""
    steps.note(f"Not estimated: {outcome} ({model}): {err}")
    reason = (
        "too few events for a Poisson model; read the linear estimate"
        if model == "poisson"
        else "the design cannot identify an effect on these data"
    )
    return {"outcome": outcome, "model": model, "reason": reason}


def matching_panel(
    clean: Any, proto: Protocol, *, engine: Literal["duckdb", "spark"] = "duckdb"
) -> tuple[pd.DataFrame, Any]:
    """The person x period panel the matched design uses, as :func:`run` builds it.

    Linked from validated extracts (:func:`spevidence.link.build_panel`), with the GP
    trajectory sums matched on (``TRAJECTORY``) and, when the protocol matches on
    ``risk_score``, the case-finding score measured before each period. Returns the
    pandas panel and the :class:`~spevidence.link.Panel` (attrition, definitions).
    """
    from spevidence.link import build_panel

    panel_obj = build_panel(
        clean, start=proto.start, end=proto.end, period=proto.period, backend=engine
    )
    panel = describe.lagged_sums(panel_obj.to_pandas(), "gp", TRAJECTORY)
    panel = _with_prior_referral(panel, clean)
    if proto.match.covariates and "risk_score" in proto.match.covariates:
        panel = _with_risk_score(panel, clean, proto)
    return panel, panel_obj


def _with_prior_referral(panel: pd.DataFrame, clean: Any) -> pd.DataFrame:
    """Add ``referred_before``: 1 in the periods after a person's first referral of any
    outcome (accepted, declined, not taken up), else 0.

    ``referral_t`` is the first *accepted* referral; someone referred earlier who
    declined is no longer at risk of a first referral, yet would otherwise stay in
    the comparator pool with the high use that led to the referral.
    """
    from spevidence.match.risk_set import PRIOR_REFERRAL

    ref = clean["referrals"].select("person_id", "referral_date").to_pandas()
    starts = panel[["period", "t"]].drop_duplicates().sort_values("t")
    first = pd.to_datetime(ref.groupby("person_id")["referral_date"].min())
    tv = starts["t"].to_numpy()
    at = np.searchsorted(
        pd.to_datetime(starts["period"]).to_numpy(), first.to_numpy(), side="right"
    )
    # the period holding the first referral (one before the window if it came earlier)
    first_t = np.where(at > 0, tv[np.maximum(at - 1, 0)], tv[0] - 1)
    ft = panel["person_id"].map(pd.Series(first_t, index=first.index)).to_numpy(dtype=float)
    return panel.assign(
        **{PRIOR_REFERRAL: (panel["t"].to_numpy() > np.nan_to_num(ft, nan=np.inf)).astype("int64")}
    )


def matched_cohort(panel: pd.DataFrame, proto: Protocol) -> tuple[Any, pd.DataFrame]:
    """Risk-set matching and the matched person-period data, exactly as the protocol says.

    The one place that turns the protocol's ``match:`` section into a
    :func:`spevidence.match.risk_set` call and its ``matched_data`` (censoring, washout),
    so that :func:`run`, the tests, the analyses and the benchmarks cannot drift apart.
    Returns the matching result (balance, attrition) and the matched data.
    """
    from spevidence.match import risk_set
    from spevidence.match.risk_set import PRIOR_REFERRAL

    mp = proto.match
    eligibility = tuple(mp.eligibility)
    if mp.prior_referrals == "exclude":
        if PRIOR_REFERRAL not in panel.columns:
            raise DataError(
                f"match.prior_referrals: exclude needs the panel column {PRIOR_REFERRAL!r} "
                f"({len(panel)} rows have none). Fix: build the panel with "
                "pipeline.matching_panel, or rerun with --no-cache."
            )
        eligibility = (f"{PRIOR_REFERRAL} < 1", *eligibility)
    result = risk_set(
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
    )
    return result, result.matched_data(censoring=mp.censoring, washout=mp.washout)


def did_window(matched: pd.DataFrame, proto: Protocol) -> pd.DataFrame:
    """The matched person-periods the 2x2 uses: ``did.pre`` periods before the index to
    ``did.post`` periods from it."""
    et = matched["event_time"]
    return matched.loc[(et >= -proto.did.pre) & (et < proto.did.post)]


def matched_two_by_two(
    window: pd.DataFrame,
    proto: Protocol,
    outcome: str,
    model: Literal["linear", "poisson"],
    *,
    weights: str = "weights",
) -> Any:
    """The protocol's 2x2 DiD of one outcome on :func:`did_window`, as :func:`run` fits it
    (Poisson with days registered as exposure, clustered by ``did.cluster``)."""
    from spevidence.did import two_by_two

    return two_by_two(
        window,
        yname=outcome,
        idname="unit_id",
        tname="event_time",
        treat="treated",
        post="post",
        model=model,
        exposure="exposure_days" if model == "poisson" else None,
        cluster=proto.did.cluster,
        weights=weights,
    )


def _with_risk_score(panel: pd.DataFrame, clean: Any, proto: Protocol) -> pd.DataFrame:
    """Add the case-finding risk score (measured before each month) as a panel column."""
    from spevidence.activity import RiskScoreSpec, risk_score_panel

    population = clean["population"].to_pandas()
    spec = RiskScoreSpec.from_dict(proto.risk_score) if proto.risk_score else None
    lookback = 12 if proto.period == "month" else 4
    out = risk_score_panel(panel, population, spec=spec, lookback_periods=lookback)
    return out.drop(columns=["risk_gp_lookback", "risk_flagged"], errors="ignore")


def _activity(
    clean: Any, proto: Protocol
) -> tuple[dict[str, pd.DataFrame], dict[str, Any], pd.DataFrame]:
    """Service activity, equity of access, case finding and wellbeing (aggregates only),
    disclosure-controlled, with figures drawn from the controlled tables."""
    from spevidence.activity import RiskScoreSpec
    from spevidence.activity.outputs import activity_outputs
    from spevidence.activity.release import release_tables

    def frame(name: str) -> pd.DataFrame | None:
        if name not in clean:
            return None
        df = clean[name].to_pandas()
        return df.drop(columns=[c for c in df.columns if c.startswith("_")])

    logs: list[pd.DataFrame] = []

    def control(t: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
        safe, log = release_tables(
            t, threshold=proto.disclosure.threshold, rounding=proto.disclosure.rounding
        )
        logs.append(log)
        return safe

    population, referrals = frame("population"), frame("referrals")
    if population is None or referrals is None or referrals.empty:
        return {}, {}, pd.DataFrame()
    spec = RiskScoreSpec.from_dict(proto.risk_score) if proto.risk_score else RiskScoreSpec()
    end = pd.Timestamp(proto.end)
    # the case-finding score is taken a full GP look-back after the start of the window
    # (validation drops earlier appointments); the tables state the date (scored_on)
    risk_at = min(pd.Timestamp(proto.start) + pd.Timedelta(days=spec.lookback_days), end)
    gp = None
    if "gp_appointments" in clean:  # clean is Extracts, which has no .get
        gp = casefinding_gp(clean["gp_appointments"], risk_at, spec.lookback_days)
    tables, figures = activity_outputs(
        population,
        referrals,
        gp_appointments=gp,
        wellbeing=frame("wellbeing"),
        start=proto.start,
        end=proto.end,
        at=proto.start,
        risk_at=risk_at,
        spec=spec,
        period=proto.period,
        link_worker_wte=proto.sroi.link_worker_wte,
        control=control,
    )
    log = pd.concat(logs, ignore_index=True) if logs else pd.DataFrame()
    return tables, figures, log


def casefinding_gp(gp: Any, at: pd.Timestamp, lookback_days: int) -> pd.DataFrame:
    """GP appointments as case finding needs them, counted in the database engine.

    One row per person, status and staff role inside the look-back ``(at - lookback_days,
    at]``, and one per status and role outside it (no person), each with ``n_rows``
    appointments and the earliest ``appointment_date``: what
    :func:`spevidence.activity.risk_score` reads, without bringing every appointment into
    memory (hundreds of millions of rows at national scale). The case-finding tables equal
    those from the full extract.
    """
    import ibis

    lo, hi = (at - pd.Timedelta(days=lookback_days)).date(), at.date()
    d = gp["appointment_date"].cast("date")
    t = gp.mutate(_bad=d.isnull(), _in=((d > lo) & (d <= hi)).fill_null(False), _d=d)
    t = t.mutate(
        person_id=ibis.ifelse(t["_in"], t["person_id"].cast("string"), ibis.null("string"))
    )
    keys = [
        "person_id",
        "status",
        *(["staff_role"] if "staff_role" in gp.columns else []),
        "_in",
        "_bad",
    ]
    out = t.group_by(keys).aggregate(appointment_date=t["_d"].min(), n_rows=t.count()).to_pandas()
    out = out.drop(columns=["_in", "_bad"])
    sort = [c for c in keys if c in out.columns]
    return out.sort_values(sort, kind="stable", na_position="last").reset_index(drop=True)


def _pretrend_dict(pt: Any) -> dict[str, float]:
    if isinstance(pt, pd.DataFrame):
        row = pt.iloc[0]
        return {k: float(row[k]) for k in ("statistic", "df", "p_value") if k in row}
    if isinstance(pt, dict):
        return {k: float(pt[k]) for k in ("statistic", "df", "p_value") if k in pt}
    return {
        "statistic": float(pt.statistic),
        "df": float(pt.df),
        "p_value": float(pt.p_value),
    }


def _attrition_from_table(table: pd.DataFrame) -> Any:
    """An ``Attrition`` back from its ``table()`` (the run cache stores tables)."""
    from spevidence.data._results import Attrition, AttritionEntry

    rows = table.to_dict("records")
    return Attrition(
        tuple(
            AttritionEntry(str(r["table"]), r["stage"], str(r["reason"]), int(r["rows"]))
            for r in rows
        )
    )


def _cohort_flow(linkage: Any, panel: Any, match_flow: pd.DataFrame) -> pd.DataFrame:
    """Cohort flow from the registration records read, through every linkage exclusion,
    to the matched cases (the matching flow, from :func:`_attrition`, follows directly)."""
    from spevidence.data._flow import linkage_flow

    referred = int(match_flow["n"].iloc[0])
    flow = pd.concat(
        [linkage_flow(linkage, panel, referred=referred), match_flow], ignore_index=True
    )
    flow["n"] = flow["n"].astype("Int64")
    flow["n_dropped"] = flow["n_dropped"].astype("Int64")
    return flow


def _attrition(matched: Any) -> pd.DataFrame:
    """Cohort flow from the matching attrition: one row per step with the people remaining,
    and before it one row per non-empty exclusion ("dropped") with its reason."""
    att = matched.attrition
    table = att.table() if hasattr(att, "table") else att
    steps: list[dict[str, object]] = []
    pending: list[dict[str, object]] = []  # exclusions are shown just before the next step
    for _, r in table.iterrows():
        n = int(r["n"])
        if str(r.get("step", "")) == "dropped":
            if n > 0:
                reason = str(r.get("reason", ""))
                pending.append(
                    {"step": f"Excluded: {reason}", "n": pd.NA, "n_dropped": n, "reason": reason}
                )
        else:
            steps += pending
            pending = []
            steps.append({"step": str(r["step"]), "n": n, "n_dropped": pd.NA, "reason": ""})
    flow = pd.DataFrame(steps)
    flow["n"] = flow["n"].astype("Int64")
    flow["n_dropped"] = flow["n_dropped"].astype("Int64")
    return flow


def _balance(table: pd.DataFrame) -> pd.DataFrame:
    out = table.rename(columns={"variable": "covariate", "var_ratio_after": "variance_ratio_after"})
    keep = ["covariate", "type", "smd_before", "smd_after", "variance_ratio_after"]
    return out[[c for c in keep if c in out.columns]]


PERIODS_PER_YEAR = {"month": 12.0, "quarter": 4.0}


def _sroi(
    effects: pd.DataFrame,
    proto: Protocol,
    *,
    persons: int,
    ae_department_types: Any,
    source: str,
    described: str,
) -> tuple[dict[str, pd.DataFrame], str]:
    """SROI of the headline effects, for every design.

    ``effects`` holds one row per outcome with the change in events per person-period
    (``estimate``, ``std_error``, the protocol's period); it is converted to a change per
    person-year (x 12 or x 4), times the ``persons`` treated, valued and set against the
    link-worker inputs of the protocol's ``sroi:`` block. ``source`` names the estimate in
    the value map, ``described`` says what it is in the report. Returns the SROI tables
    and the report's sentence on which estimate feeds them; no tables (and ``""``) when
    disclosure control would redact the count of people treated.
    """
    from spevidence.disclosure import released_count
    from spevidence.sroi import evaluate, from_did, link_worker_inputs

    # the people valued are the released (rounded) count: an exact count would be
    # recoverable as quantity / (periods a year x estimate)
    dc = proto.disclosure
    released = released_count(persons, threshold=dc.threshold, rounding=dc.rounding)
    if released is None:  # too few people to release their count: nothing is valued
        return {}, ""
    persons = released
    ppy = PERIODS_PER_YEAR[proto.period]
    per_year = pd.DataFrame(
        {
            "outcome": effects["outcome"].to_numpy(),
            "estimate": ppy * effects["estimate"].to_numpy(),  # per person-year
            "std_error": ppy * effects["std_error"].to_numpy(),
        }
    )
    sroi_outcomes = from_did(
        per_year,
        persons=persons,
        duration_years=proto.sroi.duration_years,
        drop_off=proto.sroi.drop_off,
        attribution=proto.sroi.attribution,
        # one A&E count over every type: priced at the all-type average (docs/methods.md)
        ae_department_types=ae_department_types,
        quantity_source=source,
    )
    inputs = link_worker_inputs(
        wte=proto.sroi.link_worker_wte,
        salary_with_oncosts=proto.sroi.link_worker_cost,
        source=proto.sroi.link_worker_cost_source,
        management_rate=proto.sroi.management_overhead,
        vcse_activity_funding=proto.sroi.activity_costs,
    )
    sroi = evaluate(
        sroi_outcomes,
        inputs,
        discount=proto.sroi.discount,
        n_sims=proto.sroi.n_sims,
        seed=proto.seed,
    )
    per = f"person-{proto.period}"
    rounded = f" (as released: rounded to the nearest {dc.rounding})" if dc.rounding > 1 else ""
    return _sroi_tables(sroi), (
        f"{described}, converted from events per {per} to events per person-year "
        f"(× {ppy:g}) and multiplied by the number of people treated{rounded}"
    )


def _sroi_tables(sroi: Any) -> dict[str, pd.DataFrame]:
    g = sroi.glance().iloc[0]
    summary = pd.DataFrame(
        {
            "measure": [
                "total_inputs",
                "present_value",
                "npv",
                "sroi_ratio",
                "payback_years",
                "cashable_pv",
            ],
            "value": [
                g["pv_inputs"],
                g["pv_benefits"],
                g["npv"],
                g["sroi_ratio"],
                g["payback_years"],
                g["cashable_pv"],
            ],
        }
    )
    for k in ("ratio_conf_low", "ratio_conf_high", "p_ratio_gt_1"):
        if k in g:
            summary.loc[len(summary)] = [k, g[k]]
    by = sroi.outcomes
    by_outcome = pd.DataFrame(
        {
            "outcome": by["outcome"],
            "quantity": by["quantity"],
            "proxy_gbp": by["unit_value_uprated"]
            if "unit_value_uprated" in by
            else by["unit_value"],
            "proxy_source": by["source"],
            "cashable": by["cashable"],
        }
    )
    pv = sroi.tidy().groupby("outcome", sort=False)["present_value"].sum()
    by_outcome["present_value"] = by_outcome["outcome"].map(pv)
    sens = sroi.sensitivity()
    sensitivity = pd.DataFrame(
        {
            "parameter": sens["parameter"] + " (" + sens["outcome"] + ")",
            "ratio_low": sens["ratio_at_low"],
            "ratio_high": sens["ratio_at_high"],
            "ratio_base": sens["base_ratio"],
        }
    )
    tables = {
        "sroi_summary": summary,
        "sroi_by_outcome": by_outcome,
        "sroi_sensitivity": sensitivity,
    }
    sims = sroi.simulations
    if sims is not None and len(sims):
        import numpy as np

        r = sims["sroi_ratio"].to_numpy()
        edges = np.histogram_bin_edges(r, bins=20)
        counts, _ = np.histogram(r, bins=edges)
        tables["sroi_simulation"] = pd.DataFrame(
            {"bin_low": edges[:-1], "bin_high": edges[1:], "count": counts}
        )
    return tables


def demo_key(seed: int) -> bytes:
    """The demo's pseudonymisation key: derived from the seed, for synthetic data only."""
    return hashlib.sha256(f"spevidence-demo-key-{seed}".encode()).hexdigest().encode()


def run_demo(out_dir: str | Path, *, persons: int = 5000, seed: int = 20260101) -> dict[str, Path]:
    """Generate the synthetic ICB of the ``demo`` scenario and evaluate it end to end."""
    from spevidence.synthetic import generate

    out = Path(out_dir)
    data = out / "data"
    generate("demo", persons=persons, seed=seed, out=data, progress=True)
    key_file = out / "demo.key"
    key_file.write_bytes(demo_key(seed))
    os.chmod(key_file, 0o600)
    root = Path(__file__).resolve().parent
    proto_path = root.parent / "protocols" / "demo.yaml"
    if not proto_path.is_file():
        proto_path = root / "_protocols" / "demo.yaml"
    res = run(proto_path, data, out, key_file=key_file)
    paths = {f"report ({fmt})": p for fmt, p in res.reports.items()}
    paths["bundle manifest"] = res.bundle / "manifest.json"
    return paths
