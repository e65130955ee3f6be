"""What both designs of :func:`spevidence.pipeline.run` share.

- :func:`read_inputs`: the first stage (read, validate and pseudonymise the extracts) and
  the stage cache keyed on them (:mod:`spevidence._runcache`).
- :data:`STAGES`: each design's stages, shown by :class:`spevidence.progress.Steps`
  (re-exported here); :class:`RunResult`: where a run wrote its outputs.
- :func:`release`: disclosure control of a design's tables; :func:`sroi_of_effects`: the
  SROI of a design's headline effects; :func:`service_activity`: the service-activity,
  equity, case-finding and wellbeing outputs.
- :func:`write_outputs`: the output tail (release, activity, figures, bundle, report).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import ibis
import numpy as np
import pandas as pd

from spevidence import describe
from spevidence._atomic import commit, disk_errors, staging
from spevidence._runcache import RunCache, key_fingerprint, stage_inputs
from spevidence.activity import RiskScoreSpec
from spevidence.activity.outputs import activity_outputs
from spevidence.activity.release import release_tables
from spevidence.bundle import write_bundle
from spevidence.data import read_extracts, validate
from spevidence.disclosure import release_each, released_count
from spevidence.identity import load_key
from spevidence.memory import held
from spevidence.progress import Steps  # noqa: F401 (the designs import it from here)
from spevidence.protocol import Protocol
from spevidence.report import render
from spevidence.report.figures import make_figures
from spevidence.sroi import evaluate, from_did, link_worker_inputs

READ = "Read, validate and pseudonymise extracts"
TAIL = ("Social return on investment", "Disclosure control and bundle", "Render report")
# each design's stages, in the order its finish() marks them done (Steps.step)
STAGES = {
    "matched": (
        READ,
        "Link person × period panel",
        "Match comparators at referral",
        "Estimate difference-in-differences",
        *TAIL,
    ),
    "staggered": (
        READ,
        "Link person × period panel",
        "Build the cohort panel (first referral per person)",
        "Estimate staggered difference-in-differences",
        *TAIL,
    ),
}
PERIODS_PER_YEAR = {"month": 12.0, "quarter": 4.0}

# write_outputs with the run's folders, extracts and report options bound (functools.partial)
Write = Callable[..., tuple[Path, dict[str, Path]]]


@dataclass(frozen=True)
class RunResult:
    """Where an evaluation's outputs were written."""

    bundle: Path
    reports: dict[str, Path]
    reused: tuple[str, ...] = ()  # stages taken from the run cache (spevidence._runcache)


@dataclass(frozen=True)
class Inputs:
    """The extracts a run reads (stage 1) and the stage cache keyed on them."""

    extracts: Any  # spevidence.data.Extracts as read: sources and file hashes
    clean: Any  # the validated, pseudonymised extracts
    qa: Any  # spevidence.data.QAReport
    linkage: Any  # the validation's attrition (spevidence.data.Attrition)
    cache: RunCache


def read_inputs(
    proto: Protocol,
    data: Path,
    out: Path,
    *,
    engine: Literal["duckdb", "spark"],
    key_file: str | Path | None,
    cache: bool,
) -> Inputs:
    """Read, validate and pseudonymise the extracts; open the run cache under ``out``."""
    key = load_key(key_file) if proto.ids == "nhs_number" else None
    extracts = read_extracts(data, mapping=proto.column_mapping(), values=proto.value_recodes())
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
    return Inputs(extracts=extracts, clean=clean, qa=qa, linkage=linkage, cache=run_cache)


def release(
    tables: dict[str, pd.DataFrame], proto: Protocol
) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    """Disclosure control of every table that leaves the secure environment, each by its
    entry in the disclosure catalogue (:mod:`spevidence.disclosure.catalogue`): counts
    redacted or rounded with secondary suppression over shared margins, means and rates
    recomputed from the released counts, coefficients and other statistics rounded to
    the step of the released count of people behind them or suppressed with it."""
    return release_each(
        tables, threshold=proto.disclosure.threshold, rounding=proto.disclosure.rounding
    )


def write_outputs(
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
    safe, disclosure_log, act_figures = _released(tables, proto, activity_from)
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
        # the one step a run past its memory limit must not be stopped in
        with disk_errors("moving the outputs into place", staging=stage, out=out), held():
            final = commit(stage, out, reports)
    step(7)
    return final


def _released(
    tables: dict[str, pd.DataFrame], proto: Protocol, activity_from: Any
) -> tuple[dict[str, pd.DataFrame], pd.DataFrame, dict[str, Any]]:
    """The design's tables released, with the service-activity tables (released by their
    own rules) and figures added; the disclosure log of both."""
    safe, disclosure_log = release(tables, proto)
    act_figures: dict[str, Any] = {}
    if activity_from is not None:
        act_tables, act_figures, act_log = service_activity(activity_from, proto)
        safe.update(act_tables)
        if len(act_log):
            disclosure_log = pd.concat([disclosure_log, act_log], ignore_index=True)
    if "cohort_characteristics" in safe:
        safe["cohort_characteristics"] = describe.characteristics_wide(
            safe["cohort_characteristics"]
        )
    return safe, disclosure_log, act_figures


def service_activity(
    clean: Any, proto: Protocol
) -> tuple[dict[str, pd.DataFrame], dict[str, Any], pd.DataFrame]:
    """Service activity, equity of access, case finding and wellbeing (aggregates only),
    disclosure-controlled, with figures drawn from the controlled tables."""

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


def sroi_of_effects(
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
    """The bundle's SROI tables: summary, by outcome, sensitivity and (if drawn) the
    Monte Carlo histogram."""
    tables = {
        "sroi_summary": _sroi_summary(sroi.glance().iloc[0]),
        "sroi_by_outcome": _sroi_by_outcome(sroi),
        "sroi_sensitivity": _sroi_sensitivity(sroi.sensitivity()),
    }
    sims = sroi.simulations
    if sims is not None and len(sims):
        r = sims["sroi_ratio"].to_numpy()
        edges = np.histogram_bin_edges(r, bins=20)
        counts, _ = np.histogram(r, bins=edges)
        tables["sroi_simulation"] = pd.DataFrame(
            {"bin_low": edges[:-1], "bin_high": edges[1:], "count": counts}
        )
    return tables


def _sroi_summary(g: pd.Series) -> pd.DataFrame:
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
    return summary


def _sroi_by_outcome(sroi: Any) -> pd.DataFrame:
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
    return by_outcome


def _sroi_sensitivity(sens: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "parameter": sens["parameter"] + " (" + sens["outcome"] + ")",
            "ratio_low": sens["ratio_at_low"],
            "ratio_high": sens["ratio_at_high"],
            "ratio_base": sens["base_ratio"],
        }
    )
