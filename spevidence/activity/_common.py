"""Shared helpers for the activity, equity, case-finding and wellbeing stages (private)."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, Literal

import matplotlib as mpl
import numpy as np
import pandas as pd
import seaborn as sns
from cycler import cycler

from spevidence.errors import DataError

Period = Literal["month", "quarter"]
DateLike = _dt.date | str | pd.Timestamp

PALETTE: list[tuple[float, float, float]] = [
    (float(r), float(g), float(b)) for r, g, b in sns.color_palette("colorblind", 10)
]
NEUTRAL = (0.35, 0.35, 0.35)

# Columns that hold person identifiers: never allowed in an aggregate table.
IDENTIFIER_COLUMNS = ("person_id", "nhs_number", "pseudonym", "token")

AGE_BANDS_DEFAULT: tuple[int, ...] = (0, 18, 30, 45, 65, 75, 85)
"""Lower bounds of the default age bands: 0-17, 18-29, 30-44, 45-64, 65-74, 75-84, 85+."""

NOT_RECORDED = "Not recorded"


def to_timestamp(value: DateLike, *, name: str) -> pd.Timestamp:
    """A date option as a normalised Timestamp, or a DataError naming the option."""
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise DataError(
            f"option {name!r} is not a date ({type(value).__name__}); give an ISO date "
            "such as 2024-04-01."
        ) from exc
    if pd.isna(ts):
        raise DataError(f"option {name!r} is missing; give an ISO date such as 2024-04-01.")
    return ts.normalize()


def require(df: pd.DataFrame, table: str, columns: Iterable[str]) -> None:
    """Raise a DataError if ``df`` lacks any of ``columns``."""
    if not isinstance(df, pd.DataFrame):
        raise DataError(f"{table} must be a pandas DataFrame, got {type(df).__name__}.")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataError(
            f"{table} ({len(df)} rows) lacks required column(s) {missing}; "
            f"rename or add them as in spevidence.data.schema (table {table!r})."
        )


def as_dates(s: pd.Series) -> pd.Series:
    """Parse a date column (date objects, strings or datetimes) to datetime64; bad -> NaT."""
    out = pd.to_datetime(s, errors="coerce")
    if getattr(out.dt, "tz", None) is not None:
        out = out.dt.tz_localize(None)
    return out.dt.normalize()


def period_start(dates: pd.Series, period: Period) -> pd.Series:
    """First day of the month or quarter of each date (datetime64)."""
    if period not in ("month", "quarter"):
        raise DataError(f"period must be 'month' or 'quarter', got {period!r}.")
    freq = "M" if period == "month" else "Q"
    return dates.dt.to_period(freq).dt.start_time.dt.normalize()


def age_band_labels(bounds: tuple[int, ...]) -> list[str]:
    labels = []
    for lo, hi in zip(bounds, (*bounds[1:], None), strict=True):
        labels.append(f"{lo}+" if hi is None else f"{lo}-{hi - 1}")
    return labels


def age_band(age: pd.Series, bounds: tuple[int, ...] = AGE_BANDS_DEFAULT) -> pd.Series:
    """Ordered categorical age band from whole-year ages (missing -> 'Not recorded')."""
    if list(bounds) != sorted(bounds) or len(set(bounds)) != len(bounds):
        raise DataError(f"age_bands must be strictly increasing lower bounds, got {bounds}.")
    labels = age_band_labels(bounds)
    idx = np.searchsorted(np.asarray(bounds), age.to_numpy(dtype=float, na_value=np.nan), "right")
    vals = np.array([labels[i - 1] if 0 < i <= len(labels) else NOT_RECORDED for i in idx])
    vals = np.where(age.isna().to_numpy(), NOT_RECORDED, vals)
    return pd.Series(
        pd.Categorical(vals, categories=[*labels, NOT_RECORDED], ordered=True), index=age.index
    )


def imd_quintile(decile: pd.Series) -> pd.Series:
    """IMD quintile label from the decile (1 = most deprived): '1 (most deprived)' ... '5'."""
    d = pd.to_numeric(decile, errors="coerce")
    q = np.ceil(d.to_numpy(dtype=float, na_value=np.nan) / 2.0)
    names = {1.0: "1 (most deprived)", 2.0: "2", 3.0: "3", 4.0: "4", 5.0: "5 (least deprived)"}
    vals = [names.get(v, NOT_RECORDED) for v in q]
    return pd.Series(
        pd.Categorical(vals, categories=[*names.values(), NOT_RECORDED], ordered=True),
        index=decile.index,
    )


def text_group(s: pd.Series) -> pd.Series:
    """A string grouping column with missing values labelled 'Not recorded'."""
    out = s.astype("object").where(s.notna(), NOT_RECORDED).astype(str)
    return out.where(out.str.strip() != "", NOT_RECORDED)


CHARACTERISTIC_LABELS = {
    "age_band": "Age band",
    "sex": "Sex",
    "imd_quintile": "IMD quintile",
    "ethnicity_group": "Ethnic group",
}
"""Labels of the person characteristics tables are broken down by."""
CHARACTERISTIC_SOURCES = {"age_band": "year_of_birth", "imd_quintile": "imd_decile"}
"""Population column a characteristic derives from, where it is not its own name."""
SEX_LABELS = {"F": "Female", "M": "Male"}


def characteristic(
    name: str, values: pd.Series, year: int | pd.Series, bands: tuple[int, ...]
) -> pd.Series:
    """Characteristic ``name`` of each person from the population column it derives from
    (``values``; see :data:`CHARACTERISTIC_SOURCES`): the age band at ``year``, the IMD
    quintile, or the text group (sex labelled Female/Male)."""
    if name == "age_band":
        return age_band(year - pd.to_numeric(values, errors="coerce"), bands)
    if name == "imd_quintile":
        return imd_quintile(values)
    g = text_group(values)
    return g.map(lambda v: SEX_LABELS.get(v, v)) if name == "sex" else g


def bool_flag(s: pd.Series) -> tuple[pd.Series, pd.Series]:
    """(flag as bool with missing -> False, missing mask) from a bool/0-1/'true' column."""
    if s.dtype == bool:
        return s.astype(bool), pd.Series(False, index=s.index)
    missing = s.isna()
    text = s.astype("object").where(~missing, "").astype(str).str.strip().str.lower()
    flag = text.isin(["true", "1", "1.0", "yes", "y", "t"])
    return flag, missing


def exclusions(rows: list[tuple[str, str, int]]) -> pd.DataFrame:
    """Exclusions table: one row per (table, reason) with the number of rows dropped."""
    return pd.DataFrame(rows, columns=["table", "reason", "rows"]).astype({"rows": "int64"})


@contextmanager
def figure_style() -> Iterator[None]:
    """Colour-blind-safe, plain style applied inside a ``with`` block only."""
    rc: dict[str, Any] = dict(sns.axes_style("whitegrid"))
    rc.update(
        {
            "axes.prop_cycle": cycler(color=PALETTE),
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.titlesize": 12,
            "axes.labelsize": 10,
            "legend.frameon": False,
            "font.family": "DejaVu Sans",
        }
    )
    with mpl.rc_context(rc):  # type: ignore[arg-type]
        yield


def check_no_identifiers(tables: dict[str, pd.DataFrame]) -> None:
    """Defensive check: aggregate tables must not carry identifier columns."""
    for name, df in tables.items():
        bad = [c for c in df.columns if str(c).lower() in IDENTIFIER_COLUMNS]
        if bad:
            raise DataError(f"internal error: aggregate table {name!r} has identifier column(s).")
