"""Service activity: is the social-prescribing service running as designed?

Referrals per month by source and PCN/practice, acceptance/decline/did-not-engage rates,
time from referral to first contact, contacts per supported person against the 6-12 norm,
caseload per link worker (per whole-time equivalent, WTE) against 200-250 a year, and a
SNOMED CT coding audit. Norms from the NHS England *Social prescribing link workers:
reference guide for primary care networks* (2019) and the Network Contract DES.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd

import spevidence.activity._plots as _plots
from spevidence.activity._common import (
    DateLike,
    Period,
    as_dates,
    exclusions,
    period_start,
    require,
    to_timestamp,
)
from spevidence.activity._result import Plotter, TableResult
from spevidence.activity._stats import wilson_interval
from spevidence.activity.codelist import normalise_codelist
from spevidence.data.schema import REFERRAL_OUTCOMES
from spevidence.errors import DataError

ALL_SOURCES = "All sources"
OUTCOME_LABELS = {
    "accepted": "Accepted",
    "declined": "Declined",
    "did_not_engage": "Did not engage",
}
NOT_RECORDED_CODE = "No code recorded"
OUTSIDE_CODE = "Code outside the codelist"
TIME_BANDS: tuple[tuple[int, int | None], ...] = ((0, 7), (8, 14), (15, 28), (29, 56), (57, None))
NO_CONTACT = "No first contact recorded"


@dataclass(frozen=True, repr=False)
class ServiceActivity(TableResult):
    """Aggregate service-activity tables (see :func:`service_activity`)."""

    _PLOTTERS: ClassVar[dict[str, Plotter]] = {
        "activity_referrals_by_period": _plots.referrals_by_period,
        "activity_outcomes": _plots.outcomes,
        "activity_time_to_contact": _plots.time_to_contact,
        "activity_contacts": _plots.contacts,
        "activity_support_duration": _plots.support_duration,
        "activity_caseload": _plots.caseload,
        "activity_coding_audit": _plots.coding_audit,
    }
    _TITLE: ClassVar[str] = "Service activity"
    _PRIMARY: ClassVar[str] = "activity_outcomes"


def _attach_practice(ref: pd.DataFrame, population: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Practice and PCN of the registration spell covering each referral date."""
    require(population, "population", ("person_id", "practice_code", "pcn_code"))
    pop = population[["person_id", "practice_code", "pcn_code"]].copy()
    has_dates = "registration_start" in population.columns
    pop["_rs"] = (
        as_dates(population["registration_start"]) if has_dates else pd.Timestamp.min.normalize()
    )
    pop["_re"] = (
        as_dates(population["registration_end"])
        if "registration_end" in population.columns
        else pd.NaT
    )
    pop["person_id"] = pop["person_id"].astype(str)
    left = ref[["_row", "person_id", "_date"]]
    m = left.merge(pop, on="person_id", how="inner")
    cover = (m["_rs"].isna() | (m["_rs"] <= m["_date"])) & (
        m["_re"].isna() | (m["_date"] <= m["_re"])
    )
    m = m.loc[cover].sort_values(["_row", "_rs"], na_position="first")
    m = m.drop_duplicates("_row", keep="last").set_index("_row")
    out = ref.copy()
    out["practice_code"] = out["_row"].map(m["practice_code"]).astype("object")
    out["pcn_code"] = out["_row"].map(m["pcn_code"]).astype("object")
    n_unmatched = int(out["practice_code"].isna().sum())
    out["practice_code"] = out["practice_code"].fillna("Not registered at referral").astype(str)
    out["pcn_code"] = out["pcn_code"].fillna("Not registered at referral").astype(str)
    return out, n_unmatched


def _outcome_table(ref: pd.DataFrame, level: float) -> pd.DataFrame:
    rows = []
    groups: list[tuple[str, pd.DataFrame]] = [(ALL_SOURCES, ref)]
    groups += [(str(s), g) for s, g in ref.groupby("referral_source", sort=True)]
    for source, g in groups:
        total = len(g)
        for outcome in REFERRAL_OUTCOMES:
            rows.append(
                (source, OUTCOME_LABELS[outcome], int((g["outcome"] == outcome).sum()), total)
            )
    out = pd.DataFrame(rows, columns=["referral_source", "outcome", "n", "referrals"])
    lo, hi = wilson_interval(out["n"], out["referrals"], level=level)
    with np.errstate(divide="ignore", invalid="ignore"):
        out["percent"] = 100.0 * out["n"] / out["referrals"]
    out["conf_low"] = 100.0 * lo
    out["conf_high"] = 100.0 * hi
    return out


def _band_label(lo: int, hi: int | None, unit: str) -> str:
    if hi is None:
        return f"{lo}+ {unit}"
    return f"{lo}-{hi} {unit}" if hi != lo else f"{lo} {unit}"


def _time_to_contact(ref: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """Summary by source and bands, for referrals with a valid first-contact date."""
    if "first_contact_date" not in ref.columns:
        return pd.DataFrame(), pd.DataFrame(), 0
    fc = as_dates(ref["first_contact_date"])
    days = (fc - ref["_date"]).dt.days
    negative = days < 0
    n_negative = int(negative.sum())
    valid = days.notna() & ~negative
    d = ref.assign(_days=days)
    rows = []
    groups: list[tuple[str, pd.DataFrame]] = [(ALL_SOURCES, d)]
    groups += [(str(s), g) for s, g in d.groupby("referral_source", sort=True)]
    for source, g in groups:
        gv = g.loc[valid.loc[g.index], "_days"].astype(float)
        rows.append(
            (
                source,
                len(gv),
                float(gv.median()) if len(gv) else np.nan,
                float(gv.quantile(0.25)) if len(gv) else np.nan,
                float(gv.quantile(0.75)) if len(gv) else np.nan,
                float(gv.mean()) if len(gv) else np.nan,
            )
        )
    summary = pd.DataFrame(
        rows,
        columns=["referral_source", "referrals", "median_days", "q1_days", "q3_days", "mean_days"],
    )
    dv = days[valid].astype(int)
    band_rows = []
    for lo, hi in TIME_BANDS:
        inside = (dv >= lo) & (dv <= hi) if hi is not None else dv >= lo
        band_rows.append((_band_label(lo, hi, "days"), int(inside.sum())))
    # accepted referrals with no first contact recorded: a gap in the record or no contact
    no_contact = int((fc.isna() & (ref["outcome"] == "accepted")).sum())
    band_rows.append((NO_CONTACT, no_contact))
    bands = pd.DataFrame(band_rows, columns=["days_to_first_contact", "referrals"])
    total = bands["referrals"].sum()
    bands["percent"] = 100.0 * bands["referrals"] / total if total else np.nan
    return summary, bands, n_negative


def _contacts(
    ref: pd.DataFrame, norm: tuple[int, int], level: float
) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    if "contacts" not in ref.columns:
        return pd.DataFrame(), pd.DataFrame(), 0
    acc = ref.loc[ref["outcome"] == "accepted"]
    c = pd.to_numeric(acc["contacts"], errors="coerce")
    negative = c < 0
    n_bad = int(negative.sum())
    c = c.loc[~negative]
    lo, hi = norm
    bands_def: list[tuple[str, pd.Series]] = [
        ("0 contacts", c == 0),
        (f"1-{lo - 1} contacts (below)", (c >= 1) & (c < lo)),
        (f"{lo}-{hi} contacts (norm)", (c >= lo) & (c <= hi)),
        (f"{hi + 1}+ contacts (above)", c > hi),
        ("Not recorded", c.isna()),
    ]
    bands = pd.DataFrame(
        [(label, int(mask.sum())) for label, mask in bands_def], columns=["contacts", "referrals"]
    )
    total = bands["referrals"].sum()
    bands["percent"] = 100.0 * bands["referrals"] / total if total else np.nan
    cv = c.dropna()
    within = int(((cv >= lo) & (cv <= hi)).sum())
    wl, wh = wilson_interval(within, len(cv), level=level)
    summary = pd.DataFrame(
        {
            "referrals": [len(cv)],
            "median_contacts": [float(cv.median()) if len(cv) else np.nan],
            "q1_contacts": [float(cv.quantile(0.25)) if len(cv) else np.nan],
            "q3_contacts": [float(cv.quantile(0.75)) if len(cv) else np.nan],
            "mean_contacts": [float(cv.mean()) if len(cv) else np.nan],
            "norm_low": [lo],
            "norm_high": [hi],
            "within_norm": [within],
            "percent_within_norm": [100.0 * within / len(cv) if len(cv) else np.nan],
            "conf_low": [100.0 * float(wl)],
            "conf_high": [100.0 * float(wh)],
        }
    )
    return summary, bands, n_bad


DURATION_BANDS: tuple[tuple[str, int, int | None], ...] = (
    ("Up to 4 weeks", 0, 28),
    ("1-3 months", 29, 91),
    ("3-6 months", 92, 182),
    ("Over 6 months", 183, None),
)


def _support_duration(ref: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Days from first contact (else referral) to discharge, for accepted referrals."""
    if "discharge_date" not in ref.columns:
        return pd.DataFrame(), 0
    acc = ref.loc[ref["outcome"] == "accepted"]
    startd = acc["_date"]
    if "first_contact_date" in acc.columns:
        fc = as_dates(acc["first_contact_date"])
        startd = fc.where(fc.notna() & (fc >= acc["_date"]), acc["_date"])
    days = (as_dates(acc["discharge_date"]) - startd).dt.days
    negative = days < 0
    valid = days[days.notna() & ~negative].astype(int)
    rows = []
    for label, lo, hi in DURATION_BANDS:
        inside = (valid >= lo) & (valid <= hi) if hi is not None else valid >= lo
        rows.append((label, int(inside.sum())))
    rows.append(("No discharge recorded", int(days.isna().sum())))
    out = pd.DataFrame(rows, columns=["support_duration", "referrals"])
    total = out["referrals"].sum()
    out["percent"] = 100.0 * out["referrals"] / total if total else np.nan
    out["median_days"] = float(valid.median()) if len(valid) else np.nan
    return out, int(negative.sum())


def _caseload(
    ref: pd.DataFrame,
    *,
    days: int,
    wte: float | Mapping[str, float] | None,
    norm: tuple[int, int],
) -> pd.DataFrame:
    if "link_worker_id" not in ref.columns or ref["link_worker_id"].notna().sum() == 0:
        return pd.DataFrame()
    d = ref.loc[ref["link_worker_id"].notna()].copy()
    d["link_worker_id"] = d["link_worker_id"].astype(str)
    ids = sorted(d["link_worker_id"].unique())
    label = {lw: f"Link worker {i + 1}" for i, lw in enumerate(ids)}
    rows = []
    for lw in ids:
        g = d.loc[d["link_worker_id"] == lw]
        acc = g.loc[g["outcome"] == "accepted"]
        if wte is None:
            w, src = 1.0, "assumed 1.0"
        elif isinstance(wte, Mapping):
            raw = wte.get(lw)
            w, src = (float(raw), "given") if raw is not None else (np.nan, "not given")
        else:
            w, src = float(wte), "given"
        if not np.isnan(w) and w <= 0:
            raise DataError(
                f"link_worker_wte must be positive; {label[lw]} has WTE {w}. "
                "Give the whole-time equivalent (1.0 = full time)."
            )
        pcn = g["pcn_code"].mode().iloc[0] if "pcn_code" in g.columns else None
        people = int(acc["person_id"].nunique())
        per_year = people * 365.25 / days
        rows.append(
            {
                "link_worker": label[lw],
                **({"pcn_code": pcn} if pcn is not None else {}),
                "referrals": len(g),
                "people": people,
                "wte": w,
                "wte_source": src,
                "window_days": days,
                "caseload_per_year": per_year,
                "caseload_per_wte_year": per_year / w if not np.isnan(w) else np.nan,
            }
        )
    out = pd.DataFrame(rows)
    lo, hi = norm
    out["norm_low"] = lo
    out["norm_high"] = hi
    cl = out["caseload_per_wte_year"]
    out["against_norm"] = np.select(
        [cl.isna(), cl < lo, cl > hi], ["unknown WTE", "below", "above"], default="within"
    )
    return out


WITHHELD_CODE = "withheld: not a SNOMED CT identifier"


def _nhs_shaped(code: str) -> bool:
    """Ten digits passing the NHS-number modulus-11 check (DOMAIN.md)."""
    if len(code) != 10 or not code.isdigit():
        return False
    total = sum(int(d) * w for d, w in zip(code[:9], range(10, 1, -1), strict=True))
    check = 11 - total % 11
    check = 0 if check == 11 else check
    return check != 10 and check == int(code[9])


def _coding_audit(ref: pd.DataFrame, codelist: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    if "snomed_code" not in ref.columns:
        return pd.DataFrame(), pd.DataFrame()
    code = ref["snomed_code"].astype("object")
    code = code.where(code.notna(), "").astype(str).str.strip()
    code = code.str.replace(r"\.0$", "", regex=True)  # codes read as floats from CSV
    terms = dict(zip(codelist["code"], codelist["term"], strict=True))
    coding = np.where(
        code == "",
        NOT_RECORDED_CODE,
        np.where(
            code.isin(list(terms)), "Agreed code: " + code.map(terms).fillna(""), OUTSIDE_CODE
        ),
    )
    d = pd.DataFrame({"outcome": ref["outcome"].map(OUTCOME_LABELS), "coding": coding})
    cats = [f"Agreed code: {t}" for t in codelist["term"]] + [OUTSIDE_CODE, NOT_RECORDED_CODE]
    rows = []
    for outcome in ["All referrals", *OUTCOME_LABELS.values()]:
        g = d if outcome == "All referrals" else d.loc[d["outcome"] == outcome]
        for cat in cats:
            rows.append((outcome, cat, int((g["coding"] == cat).sum()), len(g)))
    audit = pd.DataFrame(rows, columns=["outcome", "coding", "n", "referrals"])
    with np.errstate(divide="ignore", invalid="ignore"):
        audit["percent"] = 100.0 * audit["n"] / audit["referrals"]
    outside = code[(code != "") & ~code.isin(list(terms))]
    # release only values shaped like SNOMED CT identifiers (6-18 digits) that are not
    # also shaped like an NHS number: a free-text or mis-keyed field must not leak
    shaped = outside.str.fullmatch(r"\d{6,18}") & ~outside.map(_nhs_shaped).astype(bool)
    outside = outside.where(shaped, WITHHELD_CODE)
    other = (
        outside.value_counts()
        .rename_axis("snomed_code")
        .reset_index(name="referrals")
        .sort_values(["referrals", "snomed_code"], ascending=[False, True], ignore_index=True)
    )
    return audit, other


def service_activity(
    referrals: pd.DataFrame,
    *,
    start: DateLike,
    end: DateLike,
    period: Period = "month",
    population: pd.DataFrame | None = None,
    codelist: pd.DataFrame | str | None = None,
    link_worker_wte: float | Mapping[str, float] | None = None,
    contacts_norm: tuple[int, int] = (6, 12),
    caseload_norm: tuple[int, int] = (200, 250),
    level: float = 0.95,
) -> ServiceActivity:
    """Describe service activity from the referrals extract.

    Parameters
    ----------
    referrals
        Referrals extract (``spevidence.data.schema.REFERRALS``). Optional columns
        ``first_contact_date``, ``contacts``, ``snomed_code`` and ``link_worker_id`` switch
        on the time-to-contact, contacts, coding-audit and caseload tables.
    start, end
        Referral dates counted, inclusive.
    period
        ``"month"`` or ``"quarter"`` for the referrals-over-time tables.
    population
        Optional population extract: attaches the practice and PCN of the registration
        spell covering each referral date (for the practice and PCN tables).
    codelist
        Codelist frame or CSV path with ``code`` and ``term``; default the built-in
        ``social_prescribing_snomed_v1`` (DOMAIN.md).
    link_worker_wte
        Whole-time equivalent of each link worker (mapping from ``link_worker_id``) or one
        value for all; default assumes 1.0 WTE and says so in the table.
    contacts_norm, caseload_norm
        Expected contacts per supported person (6-12) and caseload per WTE per year
        (200-250), from the NHS England reference guide for PCNs (2019).
    level
        Confidence level of the Wilson intervals (Wilson 1927) on rates.

    Returns
    -------
    ServiceActivity
        Tables ``activity_referrals_by_period``, ``activity_referrals_by_pcn_period``,
        ``activity_referrals_by_practice``, ``activity_outcomes``,
        ``activity_time_to_contact``, ``activity_time_to_contact_bands``,
        ``activity_contacts``, ``activity_contacts_bands``, ``activity_support_duration``
        (first contact, else referral, to discharge, against about 3 months),
        ``activity_caseload``,
        ``activity_coding_audit``, ``activity_codes_outside_codelist`` and
        ``activity_exclusions`` (each only when its inputs are present). Caseload is the
        number of distinct people with an accepted referral in the window, annualised
        (x 365.25 / days in window) and divided by WTE. Contacts are per accepted referral.
    """
    require(referrals, "referrals", ("person_id", "referral_date", "referral_source", "outcome"))
    t0, t1 = to_timestamp(start, name="start"), to_timestamp(end, name="end")
    _check_options(t0, t1, level, contacts_norm, caseload_norm)
    cl = normalise_codelist(codelist)
    drops: list[tuple[str, str, int]] = []
    ref = _referrals_in_window(referrals, t0, t1, drops)

    tables, ref = _referral_counts(ref, t0, t1, period, population, drops)
    tables["activity_outcomes"] = _outcome_table(ref, level)
    tables.update(_contact_tables(ref, contacts_norm, level, drops))
    days = int((t1 - t0).days) + 1
    cl_table = _caseload(ref, days=days, wte=link_worker_wte, norm=caseload_norm)
    if len(cl_table):
        tables["activity_caseload"] = cl_table
    audit, other = _coding_audit(ref, cl)
    if len(audit):
        tables["activity_coding_audit"] = audit
        tables["activity_codes_outside_codelist"] = other
    tables["activity_exclusions"] = exclusions(drops)

    settings: dict[str, Any] = {
        "start": str(t0.date()),
        "end": str(t1.date()),
        "period": period,
        "contacts_norm": tuple(contacts_norm),
        "caseload_norm": tuple(caseload_norm),
        "level": level,
        "codelist_codes": tuple(cl["code"]),
    }
    return ServiceActivity(results=tables, settings=settings)


def _referral_counts(
    ref: pd.DataFrame,
    t0: pd.Timestamp,
    t1: pd.Timestamp,
    period: Period,
    population: pd.DataFrame | None,
    drops: list[tuple[str, str, int]],
) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    """Referrals per period by source (and, with the population, by PCN and practice);
    the referrals with their period (and practice) added."""
    tables: dict[str, pd.DataFrame] = {}
    ref["period"] = period_start(ref["_date"], period)
    grid = pd.date_range(
        period_start(pd.Series([t0]), period).iloc[0],
        period_start(pd.Series([t1]), period).iloc[0],
        freq="MS" if period == "month" else "QS",
    )
    tables["activity_referrals_by_period"] = _counts_by_period(ref, grid, "referral_source")
    if population is not None:
        ref, n_unmatched = _attach_practice(ref, population)
        drops.append(
            ("referrals", "kept, but no registration spell covers the referral date", n_unmatched)
        )
        tables["activity_referrals_by_pcn_period"] = _counts_by_period(ref, grid, "pcn_code")
        tables["activity_referrals_by_practice"] = _by_practice(ref)
    return tables, ref


def _contact_tables(
    ref: pd.DataFrame,
    contacts_norm: tuple[int, int],
    level: float,
    drops: list[tuple[str, str, int]],
) -> dict[str, pd.DataFrame]:
    """Time to first contact, contacts per accepted referral and length of support
    (each only when its dates or counts are present)."""
    tables: dict[str, pd.DataFrame] = {}
    summary, bands, n_neg = _time_to_contact(ref)
    if len(summary):
        drops.append(("referrals", "kept, first_contact_date before referral_date ignored", n_neg))
        tables["activity_time_to_contact"] = summary
        tables["activity_time_to_contact_bands"] = bands
    summary, bands, n_bad = _contacts(ref, contacts_norm, level)
    if len(summary):
        drops.append(("referrals", "kept, negative contacts ignored", n_bad))
        tables["activity_contacts"] = summary
        tables["activity_contacts_bands"] = bands
    duration, n_neg = _support_duration(ref)
    if len(duration):
        drops.append(("referrals", "kept, discharge_date before first contact ignored", n_neg))
        tables["activity_support_duration"] = duration
    return tables


def _check_options(
    t0: pd.Timestamp,
    t1: pd.Timestamp,
    level: float,
    contacts_norm: tuple[int, int],
    caseload_norm: tuple[int, int],
) -> None:
    if t1 < t0:
        raise DataError(f"end ({t1.date()}) is before start ({t0.date()}); swap them.")
    if not (0 < level < 1):
        raise DataError(f"level must be between 0 and 1, got {level}.")
    for nm, (lo, hi) in (("contacts_norm", contacts_norm), ("caseload_norm", caseload_norm)):
        if not (0 < lo <= hi):
            raise DataError(f"{nm} must be (low, high) with 0 < low <= high, got {(lo, hi)}.")


def _referrals_in_window(
    referrals: pd.DataFrame,
    t0: pd.Timestamp,
    t1: pd.Timestamp,
    drops: list[tuple[str, str, int]],
) -> pd.DataFrame:
    """Referrals dated in ``[t0, t1]`` with a known outcome (``_date`` added)."""
    ref = referrals.copy()
    ref["person_id"] = ref["person_id"].astype(str)
    ref["_row"] = np.arange(len(ref))
    ref["_date"] = as_dates(ref["referral_date"])
    ref["outcome"] = ref["outcome"].astype("object").astype(str).str.strip().str.lower()
    ref["referral_source"] = ref["referral_source"].astype("object").fillna("not recorded")
    ref["referral_source"] = ref["referral_source"].astype(str)
    bad_date = ref["_date"].isna()
    drops.append(("referrals", "referral_date missing or not a date", int(bad_date.sum())))
    ref = ref.loc[~bad_date]
    outside = (ref["_date"] < t0) | (ref["_date"] > t1)
    drops.append(("referrals", "referral_date outside start-end", int(outside.sum())))
    ref = ref.loc[~outside]
    bad_outcome = ~ref["outcome"].isin(REFERRAL_OUTCOMES)
    drops.append(
        ("referrals", "outcome not accepted/declined/did_not_engage", int(bad_outcome.sum()))
    )
    return ref.loc[~bad_outcome].copy()


def _counts_by_period(ref: pd.DataFrame, grid: pd.DatetimeIndex, column: str) -> pd.DataFrame:
    """Referrals per period and value of ``column``, zeros included."""
    values = sorted(ref[column].unique())
    counts = ref.groupby(["period", column]).size()
    idx = pd.MultiIndex.from_product([grid, values], names=["period", column])
    return (
        counts.reindex(idx, fill_value=0)
        .rename("referrals")
        .reset_index()
        .astype({"referrals": "int64"})
    )


def _by_practice(ref: pd.DataFrame) -> pd.DataFrame:
    return (
        ref.groupby(["pcn_code", "practice_code"], sort=True)
        .agg(
            referrals=("person_id", "size"),
            people=("person_id", "nunique"),
            accepted=("outcome", lambda s: int((s == "accepted").sum())),
        )
        .reset_index()
    )
