"""The matched design of :func:`spevidence.pipeline.run` (``design: matched``, the default).

Links the validated extracts into a person × period panel, matches referred people to
comparators at the referral period (risk-set matching), estimates the effect by a 2×2
difference-in-differences and an event study on the matched cohort, and values the linear
estimate by SROI. The panel, the matching and the estimates are kept in the run cache
(:mod:`spevidence._runcache`) and reused when their inputs are unchanged.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pandas as pd

from spevidence import describe
from spevidence.activity import RiskScoreSpec, risk_score_panel
from spevidence.data import Attrition, AttritionEntry
from spevidence.data.flow import linkage_flow
from spevidence.did import NUMERICAL_ERRORS, event_study, two_by_two
from spevidence.errors import DataError, EstimationError
from spevidence.link import build_panel, check_outcomes
from spevidence.match import risk_set
from spevidence.match.risk_set import PRIOR_REFERRAL
from spevidence.pipeline.shared import (
    Inputs,
    RunResult,
    Steps,
    Write,
    release,
    sroi_of_effects,
)
from spevidence.protocol import Protocol
from spevidence.protocol.constants import TRAJECTORY

POOLED_MONTHS = (3, 6)  # trends of rare outcomes: by quarter, else by half-year
ESTIMATES = ("did", "event_study", "pretrend", "not_estimated")  # the cached estimate tables

# a model that cannot be fitted on these data: an estimator's own check or a numerical failure
_CANNOT_FIT: tuple[type[Exception], ...] = (EstimationError, *NUMERICAL_ERRORS)


def finish(
    proto: Protocol,
    inputs: Inputs,
    *,
    engine: Literal["duckdb", "spark"],
    steps: Steps,
    write: Write,
) -> RunResult:
    """Link, match, estimate, value and write the matched design (after stage 1)."""
    panel, ae_types, panel_attrition = _link(proto, inputs, engine, steps)
    check_outcomes(panel[list(proto.outcomes)].sum().to_dict(), proto.outcomes)
    steps.step(2)
    matched, flow, balance = _match(panel, proto, inputs, steps)
    window = did_window(matched, proto)
    steps.step(3)
    n_referred = int(matched.loc[matched["treated"] == 1, "unit_id"].nunique())
    did_est, es_table, pre_table, skipped = _estimate(matched, window, proto, inputs, steps)
    steps.step(4)
    # the SROI values the released (rounded) estimate, so it cannot give the exact one back
    linear = release({"did_estimates": did_est}, proto)[0]["did_estimates"]
    linear = linear.loc[linear["model"] == "linear"]
    sroi_tables, sroi_effect = sroi_of_effects(
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
    outcomes = proto.outcomes
    tables: dict[str, pd.DataFrame] = {
        # the QA messages quote exact row counts and row numbers: keep them inside
        "qa": inputs.qa.table().drop(columns=["message"], errors="ignore"),
        "attrition": _cohort_flow(inputs.linkage, panel_attrition, flow),
        "linkage_attrition": (inputs.linkage + panel_attrition).table(),
        "cohort_characteristics": describe.cohort_characteristics(window, None, outcomes=outcomes),
        "balance": balance,
        "trends": _trends(window, proto),
        "naive_before_after": _naive(window, proto),
        "did_estimates": did_est,
        "event_study": es_table,
        "pretrend_test": pre_table,
        **({"did_not_estimated": skipped} if len(skipped) else {}),
        **sroi_tables,
    }
    bundle, reports = write(tables, proto, extra={"sroi_effect": sroi_effect})
    return RunResult(bundle=bundle, reports=reports, reused=tuple(inputs.cache.reused))


def _link(
    proto: Protocol, inputs: Inputs, engine: Literal["duckdb", "spark"], steps: Steps
) -> tuple[pd.DataFrame, Any, Attrition]:
    """Stage 2: the matching panel, its A&E department types and its attrition (cached)."""
    run_cache = inputs.cache
    if (hit := run_cache.load("panel")) is None:
        panel, panel_obj = matching_panel(inputs.clean, proto, engine=engine)
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
    return panel, ae_types, panel_attrition


def _match(
    panel: pd.DataFrame, proto: Protocol, inputs: Inputs, steps: Steps
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Stage 3: the matched data, the matching's cohort flow and the balance (cached)."""
    run_cache = inputs.cache
    if (hit := run_cache.load("matching")) is None:
        matched_obj, matched = matched_cohort(panel, proto)
        flow = _attrition(matched_obj)
        balance = _balance(matched_obj.balance(warn=False).table())
        run_cache.save("matching", {"matched": matched, "flow": flow, "balance": balance})
    else:
        matched, flow, balance = (hit.frames[k] for k in ("matched", "flow", "balance"))
        steps.note(f"Reused the matched cohort from {run_cache.root / 'matching'}")
    return matched, flow, balance


def _estimate(
    matched: pd.DataFrame, window: pd.DataFrame, proto: Protocol, inputs: Inputs, steps: Steps
) -> tuple[pd.DataFrame, ...]:
    """Stage 4: the 2x2 estimates, the event study, the pre-trend tests and the models
    that could not be fitted (cached)."""
    run_cache = inputs.cache
    if (hit := run_cache.load("estimates")) is not None:
        steps.note(f"Reused the estimates from {run_cache.root / 'estimates'}")
        return tuple(hit.frames[k] for k in ESTIMATES)
    fitted = _fit(matched, window, proto, steps)
    run_cache.save("estimates", dict(zip(ESTIMATES, fitted, strict=True)))
    return fitted


def _fit(
    matched: pd.DataFrame, window: pd.DataFrame, proto: Protocol, steps: Steps
) -> tuple[pd.DataFrame, ...]:
    """Every model of every outcome; a model that cannot be fitted is noted, not fatal."""
    est_rows, es_rows, pre_rows, not_estimated = [], [], [], []
    referred = matched.loc[matched["treated"] == 1]
    n_referred = int(referred["unit_id"].nunique())  # the people the coefficients rest on
    at_time = referred.groupby("event_time")["unit_id"].nunique()
    for o in proto.outcomes:
        for model in proto.did.models:
            try:
                res = matched_two_by_two(window, proto, o, model)
            except _CANNOT_FIT as e:  # one model, not the whole run
                not_estimated.append(_not_estimated(o, model, e, steps))
                continue
            td = res.tidy().iloc[[0]].copy()
            td.insert(0, "model", model)
            td.insert(0, "outcome", o)
            td["n_referred"] = n_referred
            est_rows.append(td)
        try:
            es = _event_study(matched, proto, o)
        except _CANNOT_FIT as e:
            not_estimated.append(_not_estimated(o, "event study", e, steps))
            continue
        et = es.tidy()
        et.insert(0, "outcome", o)
        et["n_referred"] = et["event_time"].map(at_time).fillna(0).astype("int64")
        es_rows.append(et)
        pre_rows.append({"outcome": o, **_pretrend_dict(es.pretrend_test())})
    if not est_rows:
        raise EstimationError(
            "No difference-in-differences model could be estimated for any outcome: "
            + "; ".join(f"{r['outcome']} ({r['model']}): {r['reason']}" for r in not_estimated)
        )
    return (
        pd.concat(est_rows, ignore_index=True),
        pd.concat(es_rows, ignore_index=True) if es_rows else pd.DataFrame(),
        pd.DataFrame(pre_rows),
        pd.DataFrame(not_estimated, columns=["outcome", "model", "reason"]),
    )


def _event_study(matched: pd.DataFrame, proto: Protocol, outcome: str) -> Any:
    """The protocol's event study of one outcome on the matched data."""
    return event_study(
        matched,
        yname=outcome,
        idname="unit_id",
        tname="t",
        index="index_t",
        treat="treated",
        window=proto.did.window,
        reference=-1,
        cluster=proto.did.cluster,
        weights="weights",
    )


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
        trial = release({"trends": out}, proto)[0]["trends"]  # not released: to decide
        withheld = trial["mean"].isna().groupby(trial["outcome"]).mean()
        rare = tuple(o for o in proto.outcomes if withheld.get(o, 0.0) > 0.5)
        if not rare:
            break
        pooled = describe.trends(window, outcomes=rare, months=months)
        out = pd.concat([out.loc[~out["outcome"].isin(rare)], pooled], ignore_index=True)
    return out.sort_values(["outcome", "group", "event_time"], ignore_index=True)


def _not_estimated(outcome: str, model: str, err: Exception, steps: Steps) -> dict[str, str]:
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
    clean: Any,
    proto: Protocol,
    *,
    engine: Literal["duckdb", "spark"] = "duckdb",
    categorical: bool = True,
) -> tuple[pd.DataFrame, Any]:
    """The person x period panel the matched design uses, as :func:`run` builds it.

    Linked from validated extracts (:func:`spevidence.link.build_panel`), with the GP
    trajectory sums matched on (``TRAJECTORY``) and, when the protocol matches on
    ``risk_score``, the case-finding score measured before each period. Returns the
    pandas panel and the :class:`~spevidence.link.Panel` (attrition, definitions).
    Its string columns are categoricals (``Panel.to_pandas(categorical=True)``);
    ``categorical=False`` gives them as strings (the earlier panel, kept for the test
    that both give the same matching: tests/test_match_compact.py).
    """
    panel_obj = build_panel(
        clean, start=proto.start, end=proto.end, period=proto.period, backend=engine
    )
    panel = describe.lagged_sums(panel_obj.to_pandas(categorical=categorical), "gp", TRAJECTORY)
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
    ref = clean["referrals"].select("person_id", "referral_date").to_pandas()
    starts = panel[["period", "t"]].drop_duplicates().sort_values("t")
    first = pd.to_datetime(ref.groupby("person_id")["referral_date"].min())
    tv = starts["t"].to_numpy()
    at = np.searchsorted(
        pd.to_datetime(starts["period"]).to_numpy(), first.to_numpy(), side="right"
    )
    # the period holding the first referral (one before the window if it came earlier)
    first_t = np.where(at > 0, tv[np.maximum(at - 1, 0)], tv[0] - 1)
    ft = describe.per_row(panel["person_id"], pd.Series(first_t.astype(float), index=first.index))
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


def _naive(window: pd.DataFrame, proto: Protocol) -> pd.DataFrame:
    """The referred's naive before/after change, with the person-clustered standard error
    of its log (``change_log_se``; disclosure control turns it into a 95% CI)."""
    kw: dict[str, Any] = {"outcomes": proto.outcomes, "pre": proto.did.pre, "post": proto.did.post}
    naive = describe.naive_before_after(window, **kw)
    se = describe.naive_change_log_se(window, **kw)
    return naive.assign(change_log_se=naive["outcome"].map(se))


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
    population = clean["population"].to_pandas()
    spec = RiskScoreSpec.from_dict(proto.risk_score) if proto.risk_score else None
    lookback = 12 if proto.period == "month" else 4
    out = risk_score_panel(panel, population, spec=spec, lookback_periods=lookback)
    return out.drop(columns=["risk_gp_lookback", "risk_flagged"], errors="ignore")


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
