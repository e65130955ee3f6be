"""The staggered design of :func:`spevidence.pipeline.run` (``design: staggered``).

The national design of Wilding et al. (2025, BJGP): the whole registered population as a
person x period panel (quarters), each person's cohort the period they were first treated
(their first accepted referral, or their PCN's service start), compared with people not
yet or never treated. Estimated by Callaway and Sant'Anna (2021) and Wooldridge's
extended TWFE (2023, Poisson for counts), both from cohort moments computed in the engine
(DuckDB or Spark), so the panel never leaves the engine: only kilobytes of moments do.

Every released number passes :func:`spevidence.disclosure.control`; estimates resting on
fewer treated people than the disclosure threshold are withheld.

References
----------
Callaway, B. and Sant'Anna, P. H. C. (2021). Difference-in-differences with multiple
time periods. *Journal of Econometrics* 225(2), 200-230.
Wooldridge, J. M. (2023). Simple approaches to nonlinear difference-in-differences with
panel data. *The Econometrics Journal* 26(3), C31-C66.
Wilding, A. et al. (2025). Have social prescribing referrals reduced appointment
pressures on primary care? *British Journal of General Practice*.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, Literal

import ibis
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from spevidence.did import etwfe
from spevidence.did import staggered as callaway_santanna
from spevidence.did.headline import ESTIMATOR_LABELS, headline_estimator
from spevidence.disclosure import as_released
from spevidence.errors import EstimationError
from spevidence.link import build_panel, check_outcomes
from spevidence.pipeline.shared import Inputs, RunResult, Steps, Write, sroi_of_effects
from spevidence.protocol import Protocol, StaggeredSpec
from spevidence.report.figures import staggered_event_study, staggered_trends

CONTROL_LABELS = {"notyet": "people not yet or never treated", "never": "people never treated"}


def _period_label(start: dt.date, period: str, t: int) -> str:
    """Label of period index ``t`` (0 = the period holding ``start``)."""
    step = 1 if period == "month" else 3
    m0 = (start.year * 12 + start.month - 1) // step * step + t * step
    year, month = divmod(m0, 12)
    if period == "month":
        return f"{year}-{month + 1:02d}"
    return f"{year} Q{month // 3 + 1}"


def cohort_panel(table: Any, spec: StaggeredSpec) -> Any:
    """The panel (Ibis) with ``tt`` = period index + 1 and ``cohort`` (0 = never treated).

    ``referral``: a person's first accepted referral period; ``service_start``: the first
    period in which anyone in the person's PCN had an accepted referral.
    """
    t = table.mutate(tt=(table.t + 1).cast("int64"))
    if spec.cohort == "referral":
        g = t.referral_t
    else:
        starts = table.group_by("pcn_code").aggregate(_start=table.referral_t.min())
        starts = starts.rename(_pcn="pcn_code")
        t = t.left_join(starts, t.pcn_code == starts._pcn).drop("_pcn")
        g = t._start
    t = t.mutate(cohort=ibis.coalesce((g + 1).cast("int64"), ibis.literal(0, "int64")))
    return t.drop("_start") if "_start" in t.columns else t


def _rows(agg: Any, outcome: str, estimator: str, scale: str) -> pd.DataFrame:
    td = agg.tidy()
    kind = agg.kind
    out = pd.DataFrame(
        {
            "outcome": outcome,
            "estimator": ESTIMATOR_LABELS[estimator],
            "aggregation": kind,
            "event": td["event"] if kind == "dynamic" else np.nan,
            "estimate": td["estimate"],
            "std_error": td["std_error"],
            "conf_low": td["conf_low"],
            "conf_high": td["conf_high"],
            "p_value": td["p_value"],
            "n": td["n"],
            "scale": scale,
        }
    )
    if kind == "dynamic":
        out = out.loc[td["term"] != "overall"]
    return out


@dataclass
class _Fits:
    """What :func:`estimate` collects over the outcomes and estimators."""

    est: list[pd.DataFrame] = field(default_factory=list)
    pre: list[dict[str, Any]] = field(default_factory=list)
    notes: list[dict[str, Any]] = field(default_factory=list)  # estimators not fitted
    fit_notes: list[dict[str, Any]] = field(default_factory=list)  # ETWFE separation
    cohorts: pd.DataFrame = field(default_factory=pd.DataFrame)
    attrition: pd.DataFrame = field(default_factory=pd.DataFrame)
    n_units: int = 0


def estimate(
    table: Any, proto: Protocol
) -> tuple[dict[str, pd.DataFrame], list[dict[str, Any]], pd.DataFrame, int]:
    """Fit every estimator for every outcome on the cohort panel (Ibis).

    Returns the unreleased tables (estimates, pre-trend tests, cohorts), notes on
    estimators that could not be fitted, the attrition of the estimation sample (rows,
    units) and the people analysed.
    """
    fits = _Fits()
    for o in proto.outcomes:
        for name in proto.staggered_spec.estimators:
            fit_one = _callaway_santanna if name == "callaway_santanna" else _etwfe
            try:
                fit, simple, dyn, scale = fit_one(table, proto, o, fits)
            except EstimationError as exc:
                fits.notes.append(
                    {"outcome": o, "estimator": ESTIMATOR_LABELS[name], "note": str(exc)[:200]}
                )
                continue
            rows = _rows(simple, o, name, scale)
            rows["n"] = _n_treated(fit)
            fits.est.append(rows)
            fits.est.append(_rows(dyn, o, name, scale))
    if not fits.est:
        raise EstimationError(
            "design: staggered: no estimator could be fitted for any outcome ("
            + "; ".join(f"{n['estimator']} {n['outcome']}: {n['note']}" for n in fits.notes[:3])
            + "). Check that some people were referred after the first period of the window."
        )
    tables = {
        "staggered": pd.concat(fits.est, ignore_index=True),
        "staggered_pretrend": pd.DataFrame(
            fits.pre,
            columns=["outcome", "estimator", "test", "statistic", "df", "p_value", "note"],
        ),
        "staggered_cohorts": fits.cohorts,
    }
    if fits.fit_notes:
        tables["staggered_fit_notes"] = pd.DataFrame(fits.fit_notes)
    return tables, fits.notes, fits.attrition, fits.n_units


def _cluster(spec: StaggeredSpec) -> str | None:
    return None if spec.cluster == "person_id" else spec.cluster


def _callaway_santanna(
    table: Any, proto: Protocol, o: str, fits: _Fits
) -> tuple[Any, Any, Any, str]:
    """Callaway-Sant'Anna of outcome ``o``: the fit, its simple and dynamic aggregations
    and their scale; the pre-trend test (and, on the first fit, the cohorts) into ``fits``."""
    spec = proto.staggered_spec
    lo, hi = spec.event_window
    res = callaway_santanna(
        table,
        yname=o,
        idname="person_id",
        tname="tt",
        gname="cohort",
        control=spec.control,
        method=spec.method,
        base_period=spec.base_period,
        anticipation=spec.anticipation,
        cluster=_cluster(spec),
        allow_unbalanced=spec.allow_unbalanced,
    )
    # the event-study leads in the window, not every pre-treatment cell: with cohorts of
    # tens of people the cell test's chi-square reference fails (docs/methods.md, 4.3)
    pt = res.pretrend_test("leads", min_e=lo).iloc[0]
    fits.pre.append(
        {
            "outcome": o,
            "estimator": ESTIMATOR_LABELS["callaway_santanna"],
            "test": f"{pt['test']} {lo} to -1",
            "statistic": pt["statistic"],
            "df": float(pt["df"]),
            "p_value": pt["p_value"],
            "note": pt["note"],
        }
    )
    if fits.cohorts.empty:
        sizes = {g: k for g, k in res.cohort_sizes.items() if np.isfinite(g)}
        fits.cohorts = pd.DataFrame(
            {"cohort_t": [int(g) - 1 for g in sizes], "n": list(sizes.values())}
        )
        fits.attrition = res.attrition
        fits.n_units = res.n_units
    simple = res.aggregate("simple")
    dyn = res.aggregate("dynamic", min_e=lo, max_e=hi)
    return res, simple, dyn, f"events per person-{proto.period}"


def _etwfe(table: Any, proto: Protocol, o: str, fits: _Fits) -> tuple[Any, Any, Any, str]:
    """Extended TWFE of outcome ``o``: the fit, its simple and dynamic aggregations (in
    the event window) and their scale; a note on separated cells into ``fits``."""
    spec = proto.staggered_spec
    lo, hi = spec.event_window
    fam = spec.etwfe_family
    fit = etwfe(
        table,
        yname=o,
        idname="person_id",
        tname="tt",
        gname="cohort",
        family=fam,
        exposure="exposure_days" if fam == "poisson" else None,
        cluster=_cluster(spec),
        control=spec.control,
    )
    if note := separation_note(fit):
        fits.fit_notes.append({"outcome": o, "estimator": ESTIMATOR_LABELS["etwfe"], "note": note})
    simple = fit.aggregate("simple")
    dyn_all = fit.aggregate("dynamic")
    keep = (dyn_all.levels >= lo) & (dyn_all.levels <= hi)
    return fit, simple, _subset(dyn_all, keep), f"events per person-{proto.period} ({fam})"


def sroi_effects(est: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The headline effects the SROI values, and the estimator they come from.

    The simple aggregation of the :func:`headline_estimator`: one estimator for every
    outcome; outcomes whose estimate was withheld (too few people) or could not be fitted
    are left out. Columns: ``outcome, estimate, std_error, n`` (``n`` = treated people,
    before disclosure control).
    """
    name = headline_estimator(est)
    simple = est.loc[est["aggregation"] == "simple"].dropna(subset=["estimate", "std_error"])
    rows = simple.loc[simple["estimator"] == name]
    return rows[["outcome", "estimate", "std_error", "n"]].reset_index(drop=True), name


def _n_treated(fit: Any) -> int:
    """Treated people behind a simple aggregation (not every unit analysed)."""
    if hasattr(fit, "cohort_sizes"):  # Callaway-Sant'Anna
        return int(sum(k for g, k in fit.cohort_sizes.items() if np.isfinite(g)))
    used = (fit.status != "not identified") & (fit.times >= fit.groups)  # ETWFE
    per_cohort = pd.Series(fit.n_cell[used]).groupby(pd.Series(fit.groups[used])).max()
    return int(per_cohort.sum())


def separation_note(fit: Any) -> str:
    """A sentence on the ETWFE Poisson cells at the boundary (separation), or ``""``.

    Counts cohort x period cells only (never people), so it is released as text.
    """
    status = fit.status[fit.times >= fit.groups]
    zero = int((status == "no events").sum())
    nocomp = int((status == "no comparison events").sum())
    noid = int((status == "not identified").sum())
    parts = []
    if zero:
        parts.append(f"{zero} with no events count as their observed 0 less the counterfactual")
    if nocomp:
        parts.append(
            f"{nocomp} whose cohort or period has no comparison events count with a "
            "counterfactual of 0"
        )
    if noid:
        parts.append(f"{noid} with no counterfactual are left out")
    if not parts:
        return ""
    return f"of {len(status)} treated cohort-period cells after treatment, " + "; ".join(parts)


def _subset(agg: Any, keep: np.ndarray) -> Any:
    return replace(
        agg, levels=agg.levels[keep], att=agg.att[keep], se=agg.se[keep], n_level=agg.n_level[keep]
    )


def _withhold_small(table: pd.DataFrame, threshold: int, rounding: int = 5) -> pd.DataFrame:
    """The estimates as they will be released (the disclosure catalogue's ``staggered``
    entry): each rounded to the step of the released number of treated people behind it
    (``spevidence.disclosure.step``), and withheld where that number is at most the
    threshold. ``n`` stays the exact count (disclosure control rounds it on release).
    The SROI values these, so no released number gives an exact estimate back."""
    return as_released("staggered", table, threshold=threshold, rounding=rounding)


def trends(table: Any, outcomes: tuple[str, ...]) -> pd.DataFrame:
    """Mean use per person and period, ever-treated vs never-treated (computed in the engine)."""
    t = table.mutate(group=(table.cohort > 0).ifelse("Referred (ever)", "Never referred"))
    agg = t.group_by(["tt", "group"]).aggregate(
        n=t.count(), **{f"_{o}": t[o].sum().cast("float64") for o in outcomes}
    )
    df = agg.to_pyarrow().to_pandas().sort_values(["group", "tt"], kind="stable")
    rows = []
    for o in outcomes:
        rows.append(
            pd.DataFrame(
                {
                    "outcome": o,
                    "group": df["group"].astype(str).to_numpy(),
                    "t": df["tt"].astype("int64").to_numpy() - 1,
                    "n": df["n"].astype("int64").to_numpy(),
                    "n_events": df[f"_{o}"].astype("int64").to_numpy(),
                    "mean": df[f"_{o}"].to_numpy() / df["n"].to_numpy(),
                }
            )
        )
    return pd.concat(rows, ignore_index=True)


def flow(n_panel: int, attrition: pd.DataFrame, n_units: int, n_treated: int) -> pd.DataFrame:
    """Cohort flow: panel people, exclusions by reason, people analysed, of whom treated."""
    steps: list[dict[str, Any]] = [
        {"step": "People in the linked panel", "n": n_panel, "n_dropped": pd.NA, "reason": ""}
    ]
    for _, r in attrition.iterrows():
        units = int(r.get("units", 0))
        if units > 0:
            reason = str(r["reason"])
            steps.append(
                {"step": f"Excluded: {reason}", "n": pd.NA, "n_dropped": units, "reason": reason}
            )
    steps.append({"step": "People analysed", "n": n_units, "n_dropped": pd.NA, "reason": ""})
    steps.append(
        {"step": "of whom treated (in a cohort)", "n": n_treated, "n_dropped": pd.NA, "reason": ""}
    )
    out = pd.DataFrame(steps)
    out["n"] = out["n"].astype("Int64")
    out["n_dropped"] = out["n_dropped"].astype("Int64")
    return out


def finish(
    proto: Protocol,
    inputs: Inputs,
    *,
    engine: Literal["duckdb", "spark"],
    steps: Steps,
    write: Write,
) -> RunResult:
    """Link, estimate, value and write the staggered design (after stage 1)."""
    panel = build_panel(
        inputs.clean, start=proto.start, end=proto.end, period=proto.period, backend=engine
    )
    check_outcomes(panel.glance().iloc[0].to_dict(), proto.outcomes, panel.definitions)
    steps.step(2)
    table = cohort_panel(panel.table, proto.staggered_spec).cache()  # one pass for every fit
    n_panel = int(table.person_id.nunique().execute())
    steps.step(3, size=f"{n_panel:,} people in the cohort panel")
    tables = _tables(table, proto, n_panel, inputs.qa)
    steps.step(4)
    extra: dict[str, Any] = {"design": "staggered"}
    headline, name = sroi_effects(tables["staggered"])
    if len(headline):
        sroi_tables, extra["sroi_effect"] = sroi_of_effects(
            headline,
            proto,
            persons=int(headline["n"].iloc[0]),
            ae_department_types=panel.definitions.ae_department_types,
            source=f"staggered DiD estimate ({name} simple ATT)",
            described=f"the {name} overall (simple) effect of each outcome: the change in "
            f"events per person-{proto.period} among treated people in the {proto.period}s "
            f"after first treatment, relative to {CONTROL_LABELS[proto.staggered_spec.control]}",
        )
        tables.update(sroi_tables)
    steps.step(5)
    figures = partial(_figures, period=proto.period, cohort=proto.staggered_spec.cohort)
    bundle, reports = write(tables, proto, design_figures=figures, extra=extra)
    return RunResult(bundle=bundle, reports=reports)


def _tables(table: Any, proto: Protocol, n_panel: int, qa: Any) -> dict[str, pd.DataFrame]:
    """The design's tables before release: QA, cohort flow, estimates (as they will be
    released), pre-trend tests, cohorts and trends."""
    raw, notes, attrition, n_units = estimate(table, proto)
    raw["staggered"] = _withhold_small(
        raw["staggered"], proto.disclosure.threshold, proto.disclosure.rounding
    )
    cohorts = raw["staggered_cohorts"]
    cohorts.insert(
        0, "cohort", [_period_label(proto.start, proto.period, int(t)) for t in cohorts["cohort_t"]]
    )
    n_treated = int(cohorts["n"].sum()) if len(cohorts) else 0
    tr = trends(table, proto.outcomes)  # release recomputes the means from rounded counts
    tables: dict[str, pd.DataFrame] = {
        "qa": qa.table().drop(columns=["message"], errors="ignore"),
        "attrition": flow(n_panel, attrition, n_units, n_treated),
        **raw,
        "staggered_trends": tr,
    }
    if notes:
        tables["staggered_notes"] = pd.DataFrame(notes)
    return tables


def _figures(safe: dict[str, pd.DataFrame], *, period: str, cohort: str) -> dict[str, Figure]:
    """The design's figures, drawn from the released tables."""
    return {
        "staggered_event_study": staggered_event_study(
            safe["staggered"], period=period, cohort=cohort
        ),
        "staggered_trends": staggered_trends(
            safe["staggered_trends"].dropna(subset=["mean"]), period=period
        ),
    }
