"""Equity of access: who is referred, against the registered population and against need.

Rates of people referred per 1,000 registered people, by age band, sex, IMD quintile and
ethnic group, with Wilson score intervals (Wilson 1927; Brown, Cai & DasGupta 2001), and
referrals per 1,000 with exact Poisson intervals (Garwood 1936). Practices are compared
in a funnel plot with exact binomial 95% and 99.8% limits around the overall rate
(Spiegelhalter 2005, *Statistics in Medicine* 24:1185).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd

import spevidence.activity._plots as _plots
from spevidence.activity._common import (
    AGE_BANDS_DEFAULT,
    CHARACTERISTIC_LABELS,
    CHARACTERISTIC_SOURCES,
    DateLike,
    as_dates,
    characteristic,
    exclusions,
    require,
    to_timestamp,
)
from spevidence.activity._result import Plotter, TableResult
from spevidence.activity._stats import funnel_limits, poisson_exact_interval, wilson_interval
from spevidence.data.schema import REFERRAL_OUTCOMES
from spevidence.errors import DataError


@dataclass(frozen=True, repr=False)
class EquityOfAccess(TableResult):
    """Aggregate equity-of-access tables (see :func:`equity_of_access`)."""

    _PLOTTERS: ClassVar[dict[str, Plotter]] = {
        "equity_rates": _plots.equity_rates,
        "equity_funnel": _plots.funnel,
    }
    _TITLE: ClassVar[str] = "Equity of access"
    _PRIMARY: ClassVar[str] = "equity_by_group"


def registered_at(population: pd.DataFrame, at: pd.Timestamp) -> tuple[pd.DataFrame, list]:
    """People registered and alive on ``at``: one row per person (latest covering spell)."""
    require(
        population,
        "population",
        ("person_id", "practice_code", "pcn_code", "registration_start"),
    )
    pop = population.copy()
    pop["person_id"] = pop["person_id"].astype(str)
    rs = as_dates(pop["registration_start"])
    re_ = as_dates(pop["registration_end"]) if "registration_end" in pop.columns else None
    dd = as_dates(pop["death_date"]) if "death_date" in pop.columns else None
    drops: list[tuple[str, str, int]] = []
    bad = rs.isna()
    drops.append(("population", "registration_start missing or not a date", int(bad.sum())))
    not_reg = ~bad & ((rs > at) | (re_.notna() & (re_ < at) if re_ is not None else False))
    drops.append(("population", "spell does not cover the date 'at'", int(not_reg.sum())))
    dead = ~bad & ~not_reg & (dd.notna() & (dd <= at) if dd is not None else False)
    drops.append(("population", "died on or before the date 'at'", int(dead.sum())))
    keep = ~(bad | not_reg | dead)
    pop = pop.loc[keep].assign(_rs=rs[keep])
    n_before = len(pop)
    pop = pop.sort_values(["person_id", "_rs"]).drop_duplicates("person_id", keep="last")
    drops.append(("population", "second spell of a person covering 'at'", n_before - len(pop)))
    return pop.drop(columns="_rs").reset_index(drop=True), drops


def _need_ids(need: Any) -> set[str] | None:
    if need is None:
        return None
    flagged = getattr(need, "flagged_ids", None)
    if callable(flagged):
        return {str(x) for x in flagged()}
    if isinstance(need, pd.Series) and need.dtype == bool:
        return {str(x) for x in need.index[need.to_numpy()]}
    if isinstance(need, pd.DataFrame):
        require(need, "need", ("person_id", "flagged"))
        return {str(x) for x in need.loc[need["flagged"].astype(bool), "person_id"]}
    if isinstance(need, Iterable) and not isinstance(need, str):
        return {str(x) for x in need}
    raise DataError(
        "need must be a RiskScore result, a boolean Series indexed by person_id, a frame "
        "with person_id and flagged, or a collection of person ids."
    )


def _characteristic(
    pop: pd.DataFrame, name: str, at: pd.Timestamp, bands: tuple[int, ...]
) -> pd.Series | None:
    source = CHARACTERISTIC_SOURCES.get(name, name)
    if source not in pop.columns:
        return None
    return characteristic(name, pop[source], at.year, bands)


def _rate_columns(
    df: pd.DataFrame, level: float, prefix: str = "", k: str = "people", n: str = "registered"
) -> pd.DataFrame:
    lo, hi = wilson_interval(df[k], df[n], level=level)
    with np.errstate(divide="ignore", invalid="ignore"):
        df[f"{prefix}rate_per_1000"] = 1000.0 * df[k] / df[n]
    df[f"{prefix}conf_low"] = 1000.0 * lo
    df[f"{prefix}conf_high"] = 1000.0 * hi
    return df


def _referral_rate(df: pd.DataFrame, level: float) -> pd.DataFrame:
    lo, hi = poisson_exact_interval(df["referrals"], level=level)
    with np.errstate(divide="ignore", invalid="ignore"):
        df["referral_rate_per_1000"] = 1000.0 * df["referrals"] / df["registered"]
        df["referral_conf_low"] = 1000.0 * lo / df["registered"]
        df["referral_conf_high"] = 1000.0 * hi / df["registered"]
    return df


def equity_of_access(
    population: pd.DataFrame,
    referrals: pd.DataFrame,
    *,
    at: DateLike,
    start: DateLike | None = None,
    end: DateLike | None = None,
    by: tuple[str, ...] = ("age_band", "sex", "imd_quintile", "ethnicity_group"),
    need: Any = None,
    outcomes: tuple[str, ...] = REFERRAL_OUTCOMES,
    age_bands: tuple[int, ...] = AGE_BANDS_DEFAULT,
    level: float = 0.95,
) -> EquityOfAccess:
    """Referral rates per 1,000 registered people, by group and by practice.

    Parameters
    ----------
    population
        Population extract. The denominator is everyone registered and alive on ``at``.
    referrals
        Referrals extract; a person counts as referred if they have at least one referral
        with an outcome in ``outcomes`` dated in ``[start, end]`` (default: any date).
    at
        Date on which the registered population is counted (and ages are taken, as
        calendar year of ``at`` minus year of birth).
    by
        Characteristics: ``age_band``, ``sex``, ``imd_quintile`` (from ``imd_decile``),
        ``ethnicity_group`` or any other population column. Missing values form a
        "Not recorded" group; characteristics whose column is absent are skipped.
    need
        Optional population in need: a :class:`~spevidence.activity.RiskScore` (its
        flagged people), a boolean Series indexed by person_id, or a collection of person
        ids. Adds, per group, the people in need, how many of them were referred and the
        ratio of the referred share to the share of need.
    outcomes
        Referral outcomes that count (default all: accepted, declined, did not engage).
    age_bands
        Lower bounds of the age bands.
    level
        Confidence level.

    Returns
    -------
    EquityOfAccess
        Tables ``equity_overall``, ``equity_by_group``, ``equity_practice_funnel``,
        ``equity_funnel_limits`` and ``equity_exclusions``. Rates of people referred have
        Wilson intervals; rates of referrals have exact Poisson intervals. The
        ``representation_ratio`` is the group's share of referred people divided by its
        share of registered people (1 = referred in proportion).
    """
    require(referrals, "referrals", ("person_id", "referral_date", "outcome"))
    t_at = to_timestamp(at, name="at")
    t0 = to_timestamp(start, name="start") if start is not None else None
    t1 = to_timestamp(end, name="end") if end is not None else None
    if not (0 < level < 1):
        raise DataError(f"level must be between 0 and 1, got {level}.")
    pop, drops = registered_at(population, t_at)
    if len(pop) == 0:
        raise DataError(
            f"population ({len(population)} rows) has nobody registered and alive on "
            f"{t_at.date()}; choose a date 'at' inside the registration spells."
        )
    _add_referral_counts(pop, referrals, t0, t1, outcomes, drops)
    with_need = _add_need(pop, need)
    tables: dict[str, pd.DataFrame] = {}
    overall = _overall(pop, level, with_need=with_need)
    tables["equity_overall"] = overall
    by_group, skipped = _by_group(pop, by, t_at, tuple(age_bands), level, with_need=with_need)
    if by_group is not None:
        tables["equity_by_group"] = by_group
    target = float(overall["people"].iloc[0] / overall["registered"].iloc[0])
    prac = _practice_funnel(pop, target, level, with_need=with_need)
    tables["equity_practice_funnel"] = prac
    tables["equity_funnel_limits"] = _funnel_limits_table(prac, target)
    tables["equity_exclusions"] = exclusions(drops)
    settings: dict[str, Any] = {
        "at": str(t_at.date()),
        "start": None if t0 is None else str(t0.date()),
        "end": None if t1 is None else str(t1.date()),
        "by": tuple(by),
        "skipped_characteristics": tuple(skipped),
        "outcomes": tuple(outcomes),
        "need": with_need,
        "level": level,
    }
    return EquityOfAccess(results=tables, settings=settings)


def _add_need(pop: pd.DataFrame, need: Any) -> bool:
    """Add the people in need (and in need and referred) to ``pop``; whether any are."""
    need_ids = _need_ids(need)
    if need_ids is not None:
        pop["_need"] = pop["person_id"].isin(need_ids).astype("int64")
        pop["_need_referred"] = pop["_need"] * pop["_referred"]
    return need_ids is not None


def _overall(pop: pd.DataFrame, level: float, *, with_need: bool) -> pd.DataFrame:
    """The registered population's referral rates (and the rate among people in need)."""
    overall = _aggregate(pop, [], with_need=with_need)
    overall = _referral_rate(_rate_columns(overall, level), level)
    if with_need:
        overall = _rate_columns(overall, level, prefix="need_", k="need_referred", n="need")
    return overall


def _by_group(
    pop: pd.DataFrame,
    by: tuple[str, ...],
    t_at: pd.Timestamp,
    bands: tuple[int, ...],
    level: float,
    *,
    with_need: bool,
) -> tuple[pd.DataFrame | None, list[str]]:
    """The rates by each characteristic of ``by`` the population has; those it has not."""
    parts, skipped = [], []
    for name in by:
        g = _characteristic(pop, name, t_at, bands)
        if g is None:
            skipped.append(name)
            continue
        parts.append(_group_rates(pop.assign(group=g), name, level, with_need=with_need))
    return (pd.concat(parts, ignore_index=True) if parts else None), skipped


def _add_referral_counts(
    pop: pd.DataFrame,
    referrals: pd.DataFrame,
    t0: pd.Timestamp | None,
    t1: pd.Timestamp | None,
    outcomes: tuple[str, ...],
    drops: list[tuple[str, str, int]],
) -> None:
    """Add ``_referrals`` and ``_referred`` to ``pop`` (in place), counting the drops."""
    ref = referrals[["person_id", "referral_date", "outcome"]].copy()
    ref["person_id"] = ref["person_id"].astype(str)
    d = as_dates(ref["referral_date"])
    bad = d.isna()
    drops.append(("referrals", "referral_date missing or not a date", int(bad.sum())))
    outside = ~bad & ((d < t0 if t0 is not None else False) | (d > t1 if t1 is not None else False))
    drops.append(("referrals", "referral_date outside start-end", int(outside.sum())))
    other = ~bad & ~outside & ~ref["outcome"].astype(str).isin(outcomes)
    drops.append(("referrals", "outcome not counted (option outcomes)", int(other.sum())))
    ref = ref.loc[~(bad | outside | other)]
    in_pop = ref["person_id"].isin(pop["person_id"])
    drops.append(("referrals", "person not registered and alive on 'at'", int((~in_pop).sum())))
    ref = ref.loc[in_pop]
    n_ref = ref.groupby("person_id").size()
    pop["_referrals"] = pop["person_id"].map(n_ref).fillna(0).astype("int64")
    pop["_referred"] = (pop["_referrals"] > 0).astype("int64")


def _aggregate(frame: pd.DataFrame, keys: list[str], *, with_need: bool) -> pd.DataFrame:
    """Registered, referred people and referrals (and need) by ``keys`` (none: one row)."""
    spec: dict[str, tuple[str, str]] = {
        "registered": ("person_id", "size"),
        "people": ("_referred", "sum"),
        "referrals": ("_referrals", "sum"),
    }
    if with_need:
        spec["need"] = ("_need", "sum")
        spec["need_referred"] = ("_need_referred", "sum")
    if keys:
        return frame.groupby(keys, sort=True, observed=True).agg(**spec).reset_index()
    return (
        frame.assign(_all="All registered people")
        .groupby("_all")
        .agg(**spec)
        .reset_index(drop=True)
    )


def _group_rates(frame: pd.DataFrame, name: str, level: float, *, with_need: bool) -> pd.DataFrame:
    """Rates, shares and representation ratios by the groups of one characteristic."""
    t = _aggregate(frame, ["group"], with_need=with_need)
    t["group"] = t["group"].astype(str)
    t.insert(0, "characteristic", CHARACTERISTIC_LABELS.get(name, name.replace("_", " ")))
    t = _referral_rate(_rate_columns(t, level), level)
    t["share_registered"] = 100.0 * t["registered"] / t["registered"].sum()
    tot_ref = t["people"].sum()
    t["share_referred"] = 100.0 * t["people"] / tot_ref if tot_ref else np.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        t["representation_ratio"] = t["share_referred"] / t["share_registered"]
    if with_need:
        t = _rate_columns(t, level, prefix="need_", k="need_referred", n="need")
        tot_need = t["need"].sum()
        t["share_need"] = 100.0 * t["need"] / tot_need if tot_need else np.nan
        with np.errstate(divide="ignore", invalid="ignore"):
            t["need_representation_ratio"] = t["share_referred"] / t["share_need"]
    return t


def _practice_funnel(
    pop: pd.DataFrame, target: float, level: float, *, with_need: bool
) -> pd.DataFrame:
    """Referred people per practice, flagged against the funnel limits around ``target``."""
    prac = _aggregate(
        pop.assign(
            practice_code=pop["practice_code"].astype(str), pcn_code=pop["pcn_code"].astype(str)
        ),
        ["pcn_code", "practice_code"],
        with_need=with_need,
    )
    prac = _rate_columns(prac, level)
    l95, u95 = funnel_limits(target, prac["registered"], level=0.95)
    l998, u998 = funnel_limits(target, prac["registered"], level=0.998)
    p = prac["people"] / prac["registered"]
    prac["funnel_flag"] = np.select(
        [p > u998, p < l998, p > u95, p < l95],
        ["above 99.8%", "below 99.8%", "above 95%", "below 95%"],
        default="within 95%",
    )
    return prac


def _funnel_limits_table(prac: pd.DataFrame, target: float) -> pd.DataFrame:
    """The 95% and 99.8% funnel limits on a grid of practice sizes (for the plot)."""
    n_max = float(prac["registered"].max()) * 1.1
    n_min = max(1.0, float(prac["registered"].min()) * 0.5)
    grid = np.unique(np.round(np.geomspace(n_min, max(n_max, n_min + 1), 120)))
    l95, u95 = funnel_limits(target, grid, level=0.95)
    l998, u998 = funnel_limits(target, grid, level=0.998)
    return pd.DataFrame(
        {
            "denominator": grid,
            "target_per_1000": 1000.0 * target,
            "lower_95": 1000.0 * l95,
            "upper_95": 1000.0 * u95,
            "lower_998": 1000.0 * l998,
            "upper_998": 1000.0 * u998,
        }
    )
