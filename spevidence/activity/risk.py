"""Risk-score case finding over the registered population (Prime 75-style).

Several PCNs find people for social prescribing proactively with an additive score of
risk factors: living alone, widowed, frequent GP attendance (> 15 attended GP
appointments in the year), frailty (electronic Frailty Index category; Clegg et al. 2016,
*Age and Ageing* 45:353), falls, stroke, COPD, heart failure, deprivation and older age.
The factors and weights are set in :class:`RiskScoreSpec` (and so in the protocol); the
score is the weighted sum of the factors present, and a person is flagged when the score
reaches the threshold.

The per-person scores stay inside the secure environment (``RiskScore.scores``, keyed by
the pseudonymised ``person_id``); ``RiskScore.tables()`` holds aggregates only. The score
is also offered as a matching covariate (``RiskScore.covariate()``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd

import spevidence.activity._plots as _plots
from spevidence.activity._common import (
    DateLike,
    as_dates,
    bool_flag,
    exclusions,
    require,
    to_timestamp,
)
from spevidence.activity._result import Plotter, TableResult
from spevidence.activity.equity import registered_at
from spevidence.describe import lagged_sums, per_row
from spevidence.errors import DataError, ProtocolError

# an extract whose first GP appointment is more than this many days after the start of the
# look-back does not cover it: the frequent-attender count is marked incomplete
_LOOKBACK_SLACK_DAYS = 31

FACTORS: dict[str, str] = {
    "living_alone": "Lives alone",
    "widowed": "Widowed",
    "frequent_attender": "Frequent GP attender",
    "frailty_moderate": "Moderate frailty (eFI)",
    "frailty_severe": "Severe frailty (eFI)",
    "falls": "Falls",
    "stroke": "Stroke",
    "copd": "COPD",
    "heart_failure": "Heart failure",
    "deprived": "Lives in a deprived area",
    "older_age": "Older age",
}
"""Factors the score knows, with commissioner-readable labels."""

DEFAULT_WEIGHTS: dict[str, float] = {
    "living_alone": 1.0,
    "widowed": 1.0,
    "frequent_attender": 2.0,
    "frailty_moderate": 1.0,
    "frailty_severe": 2.0,
    "falls": 1.0,
    "stroke": 1.0,
    "copd": 1.0,
    "heart_failure": 1.0,
    "deprived": 1.0,
    "older_age": 1.0,
}


@dataclass(frozen=True)
class RiskScoreSpec:
    """Configuration of the case-finding risk score (write it in the protocol).

    Parameters
    ----------
    weights
        Weight of each factor (names in ``FACTORS``); factors left out are not used.
    threshold
        A person is flagged when their score is at least this.
    frequent_attender_visits
        ``frequent_attender`` means more than this many attended appointments in the
        look-back (default 15 a year, DOMAIN.md).
    lookback_days
        Look-back window for GP attendance, ending on the scoring date.
    gp_roles
        Staff roles whose attended appointments count (``None`` = all roles).
    deprived_deciles
        IMD deciles counted as ``deprived`` (1 = most deprived).
    older_age
        Age (years) at or above which ``older_age`` applies.
    min_age
        If set, only people at least this old can be flagged.
    """

    weights: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    threshold: float = 3.0
    frequent_attender_visits: int = 15
    lookback_days: int = 365
    gp_roles: tuple[str, ...] | None = ("gp",)
    deprived_deciles: tuple[int, ...] = (1, 2)
    older_age: int = 75
    min_age: int | None = None

    def __post_init__(self) -> None:
        unknown = sorted(set(self.weights) - set(FACTORS))
        if unknown:
            raise ProtocolError(
                f"risk score weights name unknown factor(s) {unknown}; "
                f"use any of {sorted(FACTORS)}."
            )
        for k, w in self.weights.items():
            if not isinstance(w, int | float) or not math.isfinite(float(w)):
                raise ProtocolError(f"risk score weight for {k!r} must be a finite number.")
        if self.lookback_days <= 0 or self.frequent_attender_visits < 0:
            raise ProtocolError(
                "risk score lookback_days must be positive and frequent_attender_visits "
                "not negative."
            )

    def to_dict(self) -> dict[str, Any]:
        """Plain mapping (for the protocol file and the bundle manifest)."""
        return {
            "weights": {k: float(v) for k, v in self.weights.items()},
            "threshold": float(self.threshold),
            "frequent_attender_visits": int(self.frequent_attender_visits),
            "lookback_days": int(self.lookback_days),
            "gp_roles": None if self.gp_roles is None else list(self.gp_roles),
            "deprived_deciles": [int(d) for d in self.deprived_deciles],
            "older_age": int(self.older_age),
            "min_age": None if self.min_age is None else int(self.min_age),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RiskScoreSpec:
        """Build from a protocol mapping (lists become tuples)."""
        kw = dict(d)
        for k in ("gp_roles", "deprived_deciles"):
            if kw.get(k) is not None:
                kw[k] = tuple(kw[k])
        try:
            return cls(**kw)
        except TypeError as exc:
            raise ProtocolError(f"risk score specification: {exc}") from exc


@dataclass(frozen=True, repr=False)
class RiskScore(TableResult):
    """Case-finding result: aggregate tables plus the per-person scores (secure use only).

    ``scores`` has one row per registered person (pseudonymised ``person_id``, practice,
    PCN, the factor flags, ``score`` and ``flagged``). It must never be written to the
    bundle; ``tables()`` does not include it.
    """

    scores: pd.DataFrame = field(default_factory=pd.DataFrame)

    _PLOTTERS: ClassVar[dict[str, Plotter]] = {"casefinding_by_pcn": _plots.casefinding}
    _TITLE: ClassVar[str] = "Risk-score case finding"
    _PRIMARY: ClassVar[str] = "casefinding_by_pcn"

    def flagged_ids(self) -> list[str]:
        """Pseudonymised ids of flagged people (secure use only)."""
        return list(self.scores.loc[self.scores["flagged"], "person_id"])

    def covariate(self) -> pd.DataFrame:
        """``person_id``, ``risk_score``, ``risk_flagged`` (0/1) for use as matching covariates."""
        return pd.DataFrame(
            {
                "person_id": self.scores["person_id"],
                "risk_score": self.scores["score"].astype(float),
                "risk_flagged": self.scores["flagged"].astype("int64"),
            }
        )


def _gp_counts(
    gp: pd.DataFrame, at: pd.Timestamp, spec: RiskScoreSpec, drops: list[tuple[str, str, int]]
) -> pd.Series:
    require(gp, "gp_appointments", ("person_id", "appointment_date", "status"))
    # a pre-aggregated extract says how many appointments each row stands for
    n = (
        gp["n_rows"].to_numpy(dtype=np.int64)
        if "n_rows" in gp.columns
        else np.ones(len(gp), dtype=np.int64)
    )
    d = as_dates(gp["appointment_date"])
    bad = d.isna().to_numpy()
    drops.append(("gp_appointments", "appointment_date missing or not a date", int(n[bad].sum())))
    lo = at - pd.Timedelta(days=spec.lookback_days)
    inside = ~bad & ((d > lo) & (d <= at)).to_numpy()
    drops.append(("gp_appointments", "outside the look-back window", int(n[~bad & ~inside].sum())))
    attended = (gp["status"].astype(str).str.lower() == "attended").to_numpy()
    drops.append(
        ("gp_appointments", "not attended (dna/cancelled)", int(n[inside & ~attended].sum()))
    )
    keep = inside & attended
    if spec.gp_roles is not None:
        require(gp, "gp_appointments", ("staff_role",))
        roles = [r.lower() for r in spec.gp_roles]
        role_ok = gp["staff_role"].astype(str).str.lower().isin(roles).to_numpy()
        drops.append(
            (
                "gp_appointments",
                "staff role not counted (spec gp_roles)",
                int(n[keep & ~role_ok].sum()),
            )
        )
        keep = keep & role_ok
    ids = gp["person_id"].astype(str).to_numpy()[keep]
    return pd.Series(n[keep], index=ids).groupby(level=0).sum()


def risk_score(
    population: pd.DataFrame,
    gp_appointments: pd.DataFrame,
    *,
    at: DateLike,
    spec: RiskScoreSpec | None = None,
    referrals: pd.DataFrame | None = None,
    referred_between: tuple[DateLike, DateLike] | None = None,
) -> RiskScore:
    """Score everyone registered and alive on ``at`` and count the flagged per PCN.

    Parameters
    ----------
    population
        Population extract with the optional risk columns (``living_alone``, ``widowed``,
        ``frailty``, ``falls``, ``stroke``, ``copd``, ``heart_failure``, ``imd_decile``).
        A factor whose column is absent counts as not present and is reported as
        unavailable; missing values count as not present and are reported as missing.
    gp_appointments
        GP appointments extract, for ``frequent_attender``. It may be pre-aggregated: a
        column ``n_rows`` then gives how many appointments each row stands for
        (``spevidence run`` counts them in the database engine this way).
    at
        Scoring date: registration, age and the GP look-back are taken at this date.
    spec
        Factors, weights and threshold (default :class:`RiskScoreSpec`).
    referrals
        Optional referrals extract: adds how many flagged people were referred.
    referred_between
        Referral dates counted (inclusive); default any date.

    Returns
    -------
    RiskScore
        Tables ``casefinding_by_pcn``, ``casefinding_factors``,
        ``casefinding_score_distribution`` and ``casefinding_exclusions``; person-level
        ``scores`` for secure use only. ``casefinding_by_pcn`` and ``casefinding_factors``
        state the scoring date (``scored_on``; ``casefinding_by_pcn`` also the first day
        of the GP look-back, ``gp_lookback_from``); the factors table's ``note`` marks the
        frequent-attender count incomplete when the GP extract starts more than a month
        after the look-back does (score at a date a full look-back after the extract
        starts: :func:`~spevidence.activity.activity_outputs` does by default).
    """
    spec = spec if spec is not None else RiskScoreSpec()
    t_at = to_timestamp(at, name="at")
    pop, drops = registered_at(population, t_at)
    if len(pop) == 0:
        raise DataError(
            f"population ({len(population)} rows) has nobody registered and alive on "
            f"{t_at.date()}; choose a scoring date inside the registration spells."
        )
    visits = _gp_counts(gp_appointments, t_at, spec, drops)
    age = (
        t_at.year - pd.to_numeric(pop["year_of_birth"], errors="coerce")
        if "year_of_birth" in pop.columns
        else pd.Series(np.nan, index=pop.index)
    )
    n_visits = pop["person_id"].map(visits).fillna(0).astype("int64")
    factors = _factor_flags(pop, age, n_visits, spec)
    scores = _scores(pop, age, n_visits, factors.flags, spec)
    referred = pd.Series(False, index=pop.index)
    if referrals is not None:
        referred = _referred(referrals, referred_between, pop, drops)
        scores["referred"] = referred.to_numpy()
    tables = _casefinding_tables(
        scores, referred, factors, spec, gp_appointments, t_at, referrals is not None
    )
    tables["casefinding_exclusions"] = exclusions(drops)
    settings: dict[str, Any] = {
        "at": str(t_at.date()),
        "weights": dict(spec.weights),
        "threshold": spec.threshold,
        "frequent_attender_visits": spec.frequent_attender_visits,
        "lookback_days": spec.lookback_days,
        "gp_roles": spec.gp_roles,
        "deprived_deciles": spec.deprived_deciles,
        "older_age": spec.older_age,
        "min_age": spec.min_age,
    }
    return RiskScore(results=tables, settings=settings, scores=scores)


def _scores(
    pop: pd.DataFrame,
    age: pd.Series,
    n_visits: pd.Series,
    flags: Mapping[str, pd.Series],
    spec: RiskScoreSpec,
) -> pd.DataFrame:
    """Person-level scores (secure use only): the weighted sum of the factors, and
    whether it reaches the threshold (at ``spec.min_age`` or older)."""
    score = pd.Series(0.0, index=pop.index)
    for f, w in spec.weights.items():
        score = score + float(w) * flags[f].astype(float)
    flagged = score >= spec.threshold
    if spec.min_age is not None:
        flagged = flagged & (age >= spec.min_age).fillna(False).astype(bool)
    return pd.DataFrame(
        {
            "person_id": pop["person_id"].astype(str),
            "practice_code": pop["practice_code"].astype(str),
            "pcn_code": pop["pcn_code"].astype(str),
            "gp_attendances": n_visits,
            **{f: flags[f].astype(bool) for f in FACTORS},
            "score": score,
            "flagged": flagged.astype(bool),
        }
    )


def _casefinding_tables(
    scores: pd.DataFrame,
    referred: pd.Series,
    factors: _Factors,
    spec: RiskScoreSpec,
    gp_appointments: pd.DataFrame,
    t_at: pd.Timestamp,
    with_referrals: bool,
) -> dict[str, pd.DataFrame]:
    """The flagged (and referred) per PCN, the factors and the score distribution."""
    lo_at = t_at - pd.Timedelta(days=spec.lookback_days)  # look-back is (lo_at, t_at]
    tables: dict[str, pd.DataFrame] = {}
    tables["casefinding_by_pcn"] = _by_pcn_table(
        scores, referred, with_referrals=with_referrals, t_at=t_at, lo_at=lo_at
    )
    tables["casefinding_factors"] = _factors_table(
        factors, spec, len(scores), gp_appointments, t_at=t_at, lo_at=lo_at
    )
    dist = scores.groupby("score", sort=True).size().rename("people").reset_index()
    dist["flagged_at_threshold"] = dist["score"] >= spec.threshold
    tables["casefinding_score_distribution"] = dist
    return tables


@dataclass(frozen=True)
class _Factors:
    """Per person: which factors are present, which are missing; per factor: available."""

    flags: dict[str, pd.Series]
    missing: dict[str, pd.Series]
    available: dict[str, bool]


def _factor_flags(
    pop: pd.DataFrame, age: pd.Series, n_visits: pd.Series, spec: RiskScoreSpec
) -> _Factors:
    flags: dict[str, pd.Series] = {}
    missing: dict[str, pd.Series] = {}
    available: dict[str, bool] = {}
    nothing = pd.Series(False, index=pop.index)
    for f in ("living_alone", "widowed", "falls", "stroke", "copd", "heart_failure"):
        if f in pop.columns:
            flags[f], missing[f] = bool_flag(pop[f])
            available[f] = True
        else:
            flags[f], missing[f], available[f] = nothing, ~nothing, False
    if "frailty" in pop.columns:
        fr = pop["frailty"].astype("object").where(pop["frailty"].notna(), "").astype(str)
        fr = fr.str.strip().str.lower()
        flags["frailty_moderate"] = fr == "moderate"
        flags["frailty_severe"] = fr == "severe"
        missing["frailty_moderate"] = missing["frailty_severe"] = fr == ""
        available["frailty_moderate"] = available["frailty_severe"] = True
    else:
        for f in ("frailty_moderate", "frailty_severe"):
            flags[f], missing[f], available[f] = nothing, ~nothing, False
    if "imd_decile" in pop.columns:
        dec = pd.to_numeric(pop["imd_decile"], errors="coerce")
        flags["deprived"] = dec.isin(spec.deprived_deciles)
        missing["deprived"] = dec.isna()
        available["deprived"] = True
    else:
        flags["deprived"], missing["deprived"], available["deprived"] = nothing, ~nothing, False
    flags["older_age"] = (age >= spec.older_age).fillna(False).astype(bool)
    missing["older_age"] = age.isna()
    available["older_age"] = "year_of_birth" in pop.columns
    flags["frequent_attender"] = n_visits > spec.frequent_attender_visits
    missing["frequent_attender"] = nothing
    available["frequent_attender"] = True
    return _Factors(flags=flags, missing=missing, available=available)


def _referred(
    referrals: pd.DataFrame,
    referred_between: tuple[DateLike, DateLike] | None,
    pop: pd.DataFrame,
    drops: list[tuple[str, str, int]],
) -> pd.Series:
    """Whether each registered person was referred (inside ``referred_between``)."""
    require(referrals, "referrals", ("person_id", "referral_date"))
    rd = as_dates(referrals["referral_date"])
    keep = rd.notna()
    drops.append(("referrals", "referral_date missing or not a date", int((~keep).sum())))
    if referred_between is not None:
        r0 = to_timestamp(referred_between[0], name="referred_between[0]")
        r1 = to_timestamp(referred_between[1], name="referred_between[1]")
        inside = keep & (rd >= r0) & (rd <= r1)
        drops.append(("referrals", "outside referred_between", int((keep & ~inside).sum())))
        keep = inside
    ids = set(referrals.loc[keep, "person_id"].astype(str))
    return pop["person_id"].isin(ids)


def _by_pcn_table(
    scores: pd.DataFrame,
    referred: pd.Series,
    *,
    with_referrals: bool,
    t_at: pd.Timestamp,
    lo_at: pd.Timestamp,
) -> pd.DataFrame:
    g = scores.assign(_ref=referred.to_numpy(), _fr=(scores["flagged"] & referred.to_numpy()))
    by_pcn = (
        g.groupby("pcn_code", sort=True)
        .agg(
            registered=("person_id", "size"),
            flagged=("flagged", "sum"),
            **(
                {"referred": ("_ref", "sum"), "flagged_referred": ("_fr", "sum")}
                if with_referrals
                else {}
            ),
        )
        .reset_index()
    )
    total = by_pcn.drop(columns="pcn_code").sum().to_frame().T
    total.insert(0, "pcn_code", "All PCNs")
    by_pcn = pd.concat([by_pcn, total], ignore_index=True)
    by_pcn = by_pcn.astype({c: "int64" for c in by_pcn.columns if c != "pcn_code"})
    by_pcn["percent_flagged"] = 100.0 * by_pcn["flagged"] / by_pcn["registered"]
    if with_referrals:
        with np.errstate(divide="ignore", invalid="ignore"):
            by_pcn["percent_flagged_referred"] = (
                100.0 * by_pcn["flagged_referred"] / by_pcn["flagged"].replace(0, np.nan)
            )
    lookback_from = lo_at + pd.Timedelta(days=1)
    by_pcn["scored_on"] = str(t_at.date())
    by_pcn["gp_lookback_from"] = str(lookback_from.date())
    return by_pcn


def _factors_table(
    factors: _Factors,
    spec: RiskScoreSpec,
    n_registered: int,
    gp_appointments: pd.DataFrame,
    *,
    t_at: pd.Timestamp,
    lo_at: pd.Timestamp,
) -> pd.DataFrame:
    rows = []
    for f, label in FACTORS.items():
        rows.append(
            {
                "factor": label,
                "weight": float(spec.weights.get(f, 0.0)),
                "used": f in spec.weights,
                "available": factors.available[f],
                "people": int(factors.flags[f].sum()),
                "missing": int(factors.missing[f].sum()),
                "registered": n_registered,
            }
        )
    fac = pd.DataFrame(rows)
    fac["percent"] = 100.0 * fac["people"] / fac["registered"]
    fac["scored_on"] = str(t_at.date())
    fac["note"] = ""
    lookback_from = lo_at + pd.Timedelta(days=1)
    first = as_dates(gp_appointments["appointment_date"]).min()
    if pd.isna(first) or first > lo_at + pd.Timedelta(days=_LOOKBACK_SLACK_DAYS):
        fac.loc[fac["factor"] == FACTORS["frequent_attender"], "note"] = (
            "incomplete: the GP appointments extract "
            + ("is empty" if pd.isna(first) else f"starts on {first.date()}")
            + f", after the look-back start {lookback_from.date()}"
        )
    return fac


def _static_flags(pop: pd.DataFrame) -> pd.DataFrame:
    """Person-level factor flags that do not depend on the date (one row per person)."""
    out = pd.DataFrame({"person_id": pop["person_id"].astype(str)})
    for f in ("living_alone", "widowed", "falls", "stroke", "copd", "heart_failure"):
        out[f] = bool_flag(pop[f])[0].to_numpy() if f in pop.columns else False
    if "frailty" in pop.columns:
        fr = pop["frailty"].astype("object").where(pop["frailty"].notna(), "").astype(str)
        fr = fr.str.strip().str.lower()
        out["frailty_moderate"] = (fr == "moderate").to_numpy()
        out["frailty_severe"] = (fr == "severe").to_numpy()
    else:
        out["frailty_moderate"] = out["frailty_severe"] = False
    return out.drop_duplicates("person_id", keep="last")


def risk_score_panel(
    panel: pd.DataFrame,
    population: pd.DataFrame,
    *,
    spec: RiskScoreSpec | None = None,
    lookback_periods: int = 12,
) -> pd.DataFrame:
    """Add a time-varying risk score to a person x period panel (a matching covariate).

    For use as a matching covariate measured before the index period (docs/contracts.md
    panel: ``person_id``, ``period``, ``t``, ``gp``, ``year_of_birth``, ``imd_decile``).
    ``frequent_attender`` uses the attended GP appointments (``gp``) in the
    ``lookback_periods`` periods *before* each period (12 months by default; use 4 for a
    quarterly panel) and compares them with ``spec.frequent_attender_visits``; periods
    missing from the panel (not registered) count as zero. ``older_age`` uses the calendar
    year of ``period``; ``deprived`` uses ``imd_decile``; the other factors come from the
    population extract (last spell per person). ``spec.min_age`` applies to the flag.

    Returns a copy of ``panel`` with ``risk_gp_lookback`` (GP attendances in the
    look-back), ``risk_score`` and ``risk_flagged`` added (row order kept).
    """
    spec = spec if spec is not None else RiskScoreSpec()
    require(panel, "panel", ("person_id", "period", "t", "gp"))
    require(population, "population", ("person_id",))
    if lookback_periods < 1:
        raise DataError(f"lookback_periods must be at least 1, got {lookback_periods}.")

    # GP attendances in the look-back periods before each period (missing periods = 0)
    out = lagged_sums(panel, "gp", {"risk_gp_lookback": (1, lookback_periods)})
    pid = out["person_id"]
    if not isinstance(pid.dtype, pd.CategoricalDtype):
        pid = pid.astype(str)
    visits = out["risk_gp_lookback"].to_numpy()
    flags = pd.DataFrame({"frequent_attender": visits > spec.frequent_attender_visits})
    static = _static_flags(population).set_index("person_id")
    for f in static.columns:
        flags[f] = per_row(pid, static[f].astype(float)) == 1.0  # not in population: False
    year = pd.to_datetime(out["period"]).dt.year
    if "year_of_birth" in out.columns:
        age = year - pd.to_numeric(out["year_of_birth"], errors="coerce")
    else:
        age = pd.Series(np.nan, index=out.index)
    flags["older_age"] = (age >= spec.older_age).fillna(False).astype(bool).to_numpy()
    if "imd_decile" in out.columns:
        dec = pd.to_numeric(out["imd_decile"], errors="coerce")
        flags["deprived"] = dec.isin(spec.deprived_deciles).to_numpy()
    else:
        flags["deprived"] = False
    score = np.zeros(len(out))
    for f, w in spec.weights.items():
        score = score + float(w) * flags[f].to_numpy(dtype=float)
    flagged = score >= spec.threshold
    if spec.min_age is not None:
        flagged = flagged & (age >= spec.min_age).fillna(False).astype(bool).to_numpy()
    out["risk_score"] = score
    out["risk_flagged"] = flagged.astype("int64")
    return out
