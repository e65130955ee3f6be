"""Paired before/after change in wellbeing scores for people supported by a link worker.

For each instrument (ONS4 personal wellbeing items, WEMWBS, SWEMWBS) the baseline is
the measurement closest to the referral date inside a baseline window and the follow-up
is the last (or first) measurement inside a follow-up window. People with both give a
paired change: mean with a paired-t interval (Student 1908), the standardised change
d_z = mean / SD (Lakens 2013, *Frontiers in Psychology* 4:863) and the share reaching a
meaningful change (WEMWBS 3 points: Maheswaran et al. 2012, *Health and Quality of Life
Outcomes* 10:156; SWEMWBS 1 point: Shah et al. 2021, *Health and Quality of Life Outcomes*
19:260; ONS4 1 point by convention). The missing-data pattern (who has a follow-up
measure, and how their baseline compares) is reported beside it.

**No comparator**: a before/after change includes natural recovery and regression to the
mean; it is not the effect of the service. The optional WELLBY valuation (one point of
life satisfaction for one person for one year = GBP 13,000 at 2019 prices, range
10,000-16,000; HM Treasury Green Book supplementary guidance: wellbeing, 2021) carries
this caveat in its table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
from scipy import stats

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
    text_group,
    to_timestamp,
)
from spevidence.activity._result import Plotter, TableResult
from spevidence.errors import DataError

INSTRUMENTS: dict[str, dict[str, Any]] = {
    "wemwbs": {"label": "WEMWBS (14-70)", "range": (14.0, 70.0), "better": "higher"},
    "swemwbs": {"label": "SWEMWBS (7-35)", "range": (7.0, 35.0), "better": "higher"},
    "ons4_life_satisfaction": {
        "label": "ONS4 life satisfaction (0-10)",
        "range": (0.0, 10.0),
        "better": "higher",
    },
    "ons4_worthwhile": {
        "label": "ONS4 worthwhile (0-10)",
        "range": (0.0, 10.0),
        "better": "higher",
    },
    "ons4_happiness": {"label": "ONS4 happiness (0-10)", "range": (0.0, 10.0), "better": "higher"},
    "ons4_anxiety": {
        "label": "ONS4 anxiety (0-10, lower is better)",
        "range": (0.0, 10.0),
        "better": "lower",
    },
}
"""Instruments, their score ranges and which direction is better (DOMAIN.md)."""

MEANINGFUL_DEFAULT: dict[str, float] = {
    "wemwbs": 3.0,
    "swemwbs": 1.0,
    "ons4_life_satisfaction": 1.0,
    "ons4_worthwhile": 1.0,
    "ons4_happiness": 1.0,
    "ons4_anxiety": 1.0,
}

WELLBY_VALUE = 13_000.0
WELLBY_RANGE = (10_000.0, 16_000.0)
WELLBY_PRICE_YEAR = 2019
WELLBY_SOURCE = "HM Treasury Green Book supplementary guidance: wellbeing (2021)"
WELLBY_CAVEAT = (
    "Before/after change in people referred, with no comparison group: it includes "
    "natural recovery and regression to the mean and is not the effect of the service. "
    "Only people with both measures are included; see the follow-up pattern table."
)

PATTERNS = ("Baseline and follow-up", "Baseline only", "Follow-up only", "Neither")


@dataclass(frozen=True, repr=False)
class PairedChange(TableResult):
    """Aggregate wellbeing tables (see :func:`paired_change`)."""

    _PLOTTERS: ClassVar[dict[str, Plotter]] = {
        "wellbeing_paired_change": _plots.wellbeing_change,
        "wellbeing_followup_pattern": _plots.wellbeing_missing,
    }
    _TITLE: ClassVar[str] = "Wellbeing: paired before/after change (no comparator)"
    _PRIMARY: ClassVar[str] = "wellbeing_paired_change"


def _index_referrals(
    referrals: pd.DataFrame,
    t0: pd.Timestamp | None,
    t1: pd.Timestamp | None,
    drops: list[tuple[str, str, int]],
) -> pd.DataFrame:
    require(referrals, "referrals", ("person_id", "referral_date", "outcome"))
    ref = referrals.copy()
    ref["person_id"] = ref["person_id"].astype(str)
    ref["_date"] = as_dates(ref["referral_date"])
    bad = ref["_date"].isna()
    drops.append(("referrals", "referral_date missing or not a date", int(bad.sum())))
    acc = ~bad & (ref["outcome"].astype(str).str.lower() == "accepted")
    drops.append(("referrals", "outcome not accepted", int((~bad & ~acc).sum())))
    keep = acc.copy()
    if t0 is not None or t1 is not None:
        inside = (
            keep
            & (ref["_date"] >= (t0 if t0 is not None else pd.Timestamp.min))
            & (ref["_date"] <= (t1 if t1 is not None else pd.Timestamp.max))
        )
        drops.append(("referrals", "referral_date outside start-end", int((keep & ~inside).sum())))
        keep = inside
    ref = ref.loc[keep].sort_values(["person_id", "_date"], kind="stable")
    n = len(ref)
    ref = ref.drop_duplicates("person_id", keep="first")
    drops.append(("referrals", "later accepted referral of the same person", n - len(ref)))
    cols = ["person_id", "_date"] + (["referral_source"] if "referral_source" in ref else [])
    return ref[cols].rename(columns={"_date": "index_date"}).reset_index(drop=True)


def _pick(
    m: pd.DataFrame, lo: int, hi: int, how: Literal["closest", "first", "last"]
) -> pd.DataFrame:
    w = m.loc[(m["_days"] >= lo) & (m["_days"] <= hi)].copy()
    if how == "closest":
        w["_key"] = w["_days"].abs()
        w = w.sort_values(["person_id", "_key", "_days"], kind="stable")
        return w.drop_duplicates("person_id", keep="first")
    w = w.sort_values(["person_id", "_days"], kind="stable")
    return w.drop_duplicates("person_id", keep="first" if how == "first" else "last")


def _group_columns(
    people: pd.DataFrame, population: pd.DataFrame | None, age_bands: tuple[int, ...]
) -> dict[str, pd.Series]:
    out: dict[str, pd.Series] = {}
    if "referral_source" in people.columns:
        out["Referral source"] = text_group(people["referral_source"])
    if population is None:
        return out
    require(population, "population", ("person_id",))
    pop = population.copy()
    pop["person_id"] = pop["person_id"].astype(str)
    if "registration_start" in pop.columns:
        pop = pop.assign(_rs=as_dates(pop["registration_start"])).sort_values(
            ["person_id", "_rs"], kind="stable"
        )
    pop = pop.drop_duplicates("person_id", keep="last").set_index("person_id")
    ids, year = people["person_id"], people["index_date"].dt.year
    for name in ("sex", "age_band", "imd_quintile", "ethnicity_group"):
        source = CHARACTERISTIC_SOURCES.get(name, name)
        if source in pop.columns:
            g = characteristic(name, ids.map(pop[source]), year, age_bands)
            out[CHARACTERISTIC_LABELS[name]] = g.astype(str)
    return out


def paired_change(
    wellbeing: pd.DataFrame,
    referrals: pd.DataFrame,
    *,
    instruments: tuple[str, ...] = ("wemwbs", "swemwbs", "ons4_life_satisfaction"),
    baseline_window_days: tuple[int, int] = (-90, 30),
    followup_window_days: tuple[int, int] = (56, 365),
    followup_pick: Literal["last", "first"] = "last",
    meaningful: Mapping[str, float] | None = None,
    start: DateLike | None = None,
    end: DateLike | None = None,
    population: pd.DataFrame | None = None,
    wellby: bool = False,
    wellby_value: float = WELLBY_VALUE,
    wellby_duration_years: float = 1.0,
    age_bands: tuple[int, ...] = AGE_BANDS_DEFAULT,
    level: float = 0.95,
) -> PairedChange:
    """Paired before/after wellbeing change for people with an accepted referral.

    Parameters
    ----------
    wellbeing
        Wellbeing extract (``person_id, measured_date, instrument, score``).
    referrals
        Referrals extract. The index date of a person is their first accepted referral
        dated in ``[start, end]`` (default any date).
    instruments
        Instruments analysed (see ``INSTRUMENTS``).
    baseline_window_days
        Days relative to the index date in which a baseline may be measured (inclusive);
        the measurement closest to the index date is used (ties: the earlier).
    followup_window_days
        Days relative to the index date for the follow-up (inclusive); must start after
        the baseline window ends. ``followup_pick`` chooses the last (end of support,
        default) or first measurement in it.
    meaningful
        Smallest change that counts as meaningful, per instrument (defaults
        ``MEANINGFUL_DEFAULT``: WEMWBS 3, SWEMWBS 1, ONS4 items 1).
    population
        Optional population extract: adds sex, age band, IMD quintile and ethnic group
        to the table of who has a follow-up measure.
    wellby
        Add ``wellbeing_wellby``: WELLBYs = mean change in life satisfaction x people x
        ``wellby_duration_years``, valued at ``wellby_value`` (GBP, 2019 prices).
    level
        Confidence level of the paired-t intervals.

    Returns
    -------
    PairedChange
        Tables ``wellbeing_paired_change``, ``wellbeing_followup_pattern``,
        ``wellbeing_followup_by_group``, ``wellbeing_baseline_by_followup``, optional
        ``wellbeing_wellby`` and ``wellbeing_exclusions``.
    """
    require(wellbeing, "wellbeing", ("person_id", "measured_date", "instrument", "score"))
    _check_options(instruments, baseline_window_days, followup_window_days, followup_pick, level)
    b0, b1 = baseline_window_days
    f0, f1 = followup_window_days
    thresholds = dict(MEANINGFUL_DEFAULT)
    thresholds.update(dict(meaningful or {}))
    t0 = to_timestamp(start, name="start") if start is not None else None
    t1 = to_timestamp(end, name="end") if end is not None else None
    settings: dict[str, Any] = {
        "instruments": tuple(instruments),
        "baseline_window_days": (b0, b1),
        "followup_window_days": (f0, f1),
        "followup_pick": followup_pick,
        "meaningful": {i: thresholds[i] for i in instruments},
        "start": None if t0 is None else str(t0.date()),
        "end": None if t1 is None else str(t1.date()),
        "wellby": wellby,
        "wellby_value": wellby_value,
        "wellby_price_year": WELLBY_PRICE_YEAR,
        "level": level,
    }
    drops: list[tuple[str, str, int]] = []
    index = _index_referrals(referrals, t0, t1, drops)
    m, outside = _measurements_in_windows(wellbeing, index, instruments, (b0, b1), (f0, f1), drops)
    groups = _group_columns(index, population, tuple(age_bands))
    rows, wellby_row, n_picked = _instrument_rows(m, index, groups, settings, wellby_duration_years)
    used_elsewhere = int((~outside).sum()) - n_picked
    drops.append(("wellbeing", "another measurement in the same window was used", used_elsewhere))
    tables = _tables(rows, wellby_row, wellby=wellby)
    tables["wellbeing_exclusions"] = exclusions(drops)
    return PairedChange(results=tables, settings=settings)


def _instrument_rows(
    m: pd.DataFrame,
    index: pd.DataFrame,
    groups: dict[str, pd.Series],
    settings: Mapping[str, Any],
    wellby_duration_years: float,
) -> tuple[_Rows, dict[str, Any] | None, int]:
    """The rows of every table, instrument by instrument (as ``settings`` says), the
    WELLBY row (if asked for) and how many measurements were picked."""
    (b0, b1), (f0, f1) = settings["baseline_window_days"], settings["followup_window_days"]
    rows = _Rows()
    wellby_row: dict[str, Any] | None = None
    n_people = len(index)
    n_picked = 0
    for inst in settings["instruments"]:
        info = INSTRUMENTS[inst]
        mi = m.loc[m["instrument"] == inst]
        base = _pick(mi, b0, b1, "closest").set_index("person_id")["score"]
        fup = _pick(mi, f0, f1, settings["followup_pick"]).set_index("person_id")["score"]
        has_b = index["person_id"].isin(base.index)
        has_f = index["person_id"].isin(fup.index)
        rows.pattern.extend(_pattern_rows(inst, info["label"], has_b, has_f, n_people))
        rows.group.extend(_followup_by_group_rows(inst, info["label"], groups, has_b, has_f))
        n_picked += len(base) + len(fup)
        paired = pd.concat([base.rename("b"), fup.rename("f")], axis=1, join="inner")
        rows.base.extend(_baseline_rows(inst, info["label"], base, fup))
        change = _paired_t(paired, settings["level"])
        threshold = float(settings["meaningful"][inst])
        rows.change.append(_change_row(inst, info, paired, change, threshold))
        if settings["wellby"] and inst == "ons4_life_satisfaction":
            value = settings["wellby_value"]
            wellby_row = _wellby_row(inst, change, wellby_duration_years, value)
    return rows, wellby_row, n_picked


def _check_options(
    instruments: tuple[str, ...],
    baseline_window_days: tuple[int, int],
    followup_window_days: tuple[int, int],
    followup_pick: str,
    level: float,
) -> None:
    unknown = [i for i in instruments if i not in INSTRUMENTS]
    if unknown:
        raise DataError(f"unknown instrument(s) {unknown}; use any of {sorted(INSTRUMENTS)}.")
    b0, b1 = baseline_window_days
    f0, f1 = followup_window_days
    if not (b0 <= b1 < f0 <= f1):
        raise DataError(
            f"windows must satisfy baseline start <= end < follow-up start <= end, got "
            f"baseline {baseline_window_days} and follow-up {followup_window_days} (days)."
        )
    if followup_pick not in ("last", "first"):
        raise DataError(f"followup_pick must be 'last' or 'first', got {followup_pick!r}.")
    if not (0 < level < 1):
        raise DataError(f"level must be between 0 and 1, got {level}.")


def _measurements_in_windows(
    wellbeing: pd.DataFrame,
    index: pd.DataFrame,
    instruments: tuple[str, ...],
    baseline: tuple[int, int],
    followup: tuple[int, int],
    drops: list[tuple[str, str, int]],
) -> tuple[pd.DataFrame, pd.Series]:
    """Valid measurements of referred people with ``_days`` from the index date, and the
    mask of those outside both windows (the drops are counted into ``drops``)."""
    b0, b1 = baseline
    f0, f1 = followup
    wb = wellbeing.copy()
    wb["person_id"] = wb["person_id"].astype(str)
    wb["instrument"] = wb["instrument"].astype(str).str.strip().str.lower()
    wb["_date"] = as_dates(wb["measured_date"])
    wb["score"] = pd.to_numeric(wb["score"], errors="coerce")
    other = ~wb["instrument"].isin(instruments)
    drops.append(("wellbeing", "instrument not analysed", int(other.sum())))
    wb = wb.loc[~other]
    bad = wb["_date"].isna() | wb["score"].isna()
    drops.append(("wellbeing", "measured_date or score missing or invalid", int(bad.sum())))
    wb = wb.loc[~bad]
    lo_r = wb["instrument"].map(lambda i: INSTRUMENTS[i]["range"][0]).astype(float)
    hi_r = wb["instrument"].map(lambda i: INSTRUMENTS[i]["range"][1]).astype(float)
    out_range = (wb["score"] < lo_r) | (wb["score"] > hi_r)
    drops.append(("wellbeing", "score outside the instrument's range", int(out_range.sum())))
    wb = wb.loc[~out_range]
    no_ref = ~wb["person_id"].isin(index["person_id"])
    drops.append(("wellbeing", "person has no accepted referral in the window", int(no_ref.sum())))
    m = wb.loc[~no_ref].merge(index[["person_id", "index_date"]], on="person_id", how="inner")
    m["_days"] = (m["_date"] - m["index_date"]).dt.days
    outside = ~(m["_days"].between(b0, b1) | m["_days"].between(f0, f1))
    drops.append(
        ("wellbeing", "measured outside the baseline and follow-up windows", int(outside.sum()))
    )
    return m, outside


@dataclass(frozen=True)
class _Rows:
    """Rows of the tables, filled one instrument at a time."""

    change: list[dict[str, Any]] = field(default_factory=list)
    pattern: list[tuple[Any, ...]] = field(default_factory=list)
    group: list[tuple[Any, ...]] = field(default_factory=list)
    base: list[tuple[Any, ...]] = field(default_factory=list)


@dataclass(frozen=True)
class _PairedT:
    """Mean paired change, its SD and paired-t interval and p-value."""

    n: int
    d: np.ndarray
    mean: float
    sd: float
    lo: float
    hi: float
    p: float


def _pattern_rows(
    inst: str, label: str, has_b: pd.Series, has_f: pd.Series, n_people: int
) -> list[tuple[Any, ...]]:
    rows = []
    for pat, mask in zip(
        PATTERNS,
        (has_b & has_f, has_b & ~has_f, ~has_b & has_f, ~has_b & ~has_f),
        strict=True,
    ):
        k = int(mask.sum())
        rows.append((inst, label, pat, k, n_people))
    return rows


def _followup_by_group_rows(
    inst: str, label: str, groups: dict[str, pd.Series], has_b: pd.Series, has_f: pd.Series
) -> list[tuple[Any, ...]]:
    rows = []
    for ch, g in groups.items():
        frame = pd.DataFrame(
            {"group": g.to_numpy(), "b": has_b.to_numpy(), "f": (has_b & has_f).to_numpy()}
        )
        agg = frame.loc[frame["b"]].groupby("group", sort=True)["f"].agg(["size", "sum"])
        for grp, r in agg.iterrows():
            rows.append((inst, label, ch, str(grp), int(r["size"]), int(r["sum"])))
    return rows


def _baseline_rows(inst: str, label: str, base: pd.Series, fup: pd.Series) -> list[tuple[Any, ...]]:
    rows = []
    for has, sub in (
        ("Yes", base[base.index.isin(fup.index)]),
        ("No", base[~base.index.isin(fup.index)]),
    ):
        rows.append(
            (
                inst,
                label,
                has,
                len(sub),
                float(sub.mean()) if len(sub) else np.nan,
                float(sub.std(ddof=1)) if len(sub) > 1 else np.nan,
            )
        )
    return rows


def _paired_t(paired: pd.DataFrame, level: float) -> _PairedT:
    n = len(paired)
    d = (paired["f"] - paired["b"]).to_numpy(dtype=float)
    mean = float(d.mean()) if n else np.nan
    sd = float(d.std(ddof=1)) if n > 1 else np.nan
    if n > 1:
        half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * sd / np.sqrt(n)
        lo, hi = mean - half, mean + half
        p = float(stats.ttest_rel(paired["f"], paired["b"]).pvalue) if sd > 0 else np.nan
    else:
        lo = hi = p = np.nan
    return _PairedT(n=n, d=d, mean=mean, sd=sd, lo=lo, hi=hi, p=p)


def _change_row(
    inst: str, info: Mapping[str, Any], paired: pd.DataFrame, c: _PairedT, thr: float
) -> dict[str, Any]:
    n, d, mean, sd = c.n, c.d, c.mean, c.sd
    sign = 1.0 if info["better"] == "higher" else -1.0
    improved = int((sign * d >= thr).sum())
    worsened = int((sign * d <= -thr).sum())
    return {
        "instrument": inst,
        "label": info["label"],
        "better": info["better"],
        "people": n,
        "baseline_mean": float(paired["b"].mean()) if n else np.nan,
        "baseline_sd": float(paired["b"].std(ddof=1)) if n > 1 else np.nan,
        "followup_mean": float(paired["f"].mean()) if n else np.nan,
        "followup_sd": float(paired["f"].std(ddof=1)) if n > 1 else np.nan,
        "mean_change": mean,
        "sd_change": sd,
        "conf_low": c.lo,
        "conf_high": c.hi,
        "p_value": c.p,
        "effect_size_dz": mean / sd if n > 1 and sd > 0 else np.nan,
        "meaningful_change": thr,
        "improved": improved,
        "percent_improved": 100.0 * improved / n if n else np.nan,
        "worsened": worsened,
        "percent_worsened": 100.0 * worsened / n if n else np.nan,
        "no_meaningful_change": n - improved - worsened,
    }


def _wellby_row(
    inst: str, c: _PairedT, wellby_duration_years: float, wellby_value: float
) -> dict[str, Any]:
    n, mean, lo, hi = c.n, c.mean, c.lo, c.hi
    wb_people = n * wellby_duration_years
    return {
        "instrument": inst,
        "people": n,
        "mean_change": mean,
        "conf_low": lo,
        "conf_high": hi,
        "duration_years": float(wellby_duration_years),
        "wellbys": mean * wb_people,
        "value_per_wellby": float(wellby_value),
        "price_year": WELLBY_PRICE_YEAR,
        "value": mean * wb_people * wellby_value,
        "value_conf_low": lo * wb_people * wellby_value,
        "value_conf_high": hi * wb_people * wellby_value,
        "value_at_low_price": mean * wb_people * WELLBY_RANGE[0],
        "value_at_high_price": mean * wb_people * WELLBY_RANGE[1],
        "source": WELLBY_SOURCE,
        "caveat": WELLBY_CAVEAT,
    }


def _tables(
    rows: _Rows, wellby_row: dict[str, Any] | None, *, wellby: bool
) -> dict[str, pd.DataFrame]:
    tables: dict[str, pd.DataFrame] = {}
    tables["wellbeing_paired_change"] = pd.DataFrame(rows.change)
    pattern = pd.DataFrame(
        rows.pattern, columns=["instrument", "label", "pattern", "people", "referred_people"]
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        pattern["percent"] = 100.0 * pattern["people"] / pattern["referred_people"]
    tables["wellbeing_followup_pattern"] = pattern
    by_group = pd.DataFrame(
        rows.group,
        columns=["instrument", "label", "characteristic", "group", "people", "with_followup"],
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        by_group["percent_with_followup"] = 100.0 * by_group["with_followup"] / by_group["people"]
    tables["wellbeing_followup_by_group"] = by_group
    tables["wellbeing_baseline_by_followup"] = pd.DataFrame(
        rows.base,
        columns=["instrument", "label", "has_followup", "people", "baseline_mean", "baseline_sd"],
    )
    if wellby:
        if wellby_row is None:
            raise DataError(
                "wellby=True needs 'ons4_life_satisfaction' in instruments (a WELLBY is one "
                "point of life satisfaction for one person for one year)."
            )
        tables["wellbeing_wellby"] = pd.DataFrame([wellby_row])
    return tables
