"""Shipped unit costs, the uprating index and price-year handling.

Every shipped figure carries its source, price year and notes (``verified`` says
whether it was checked at its primary source; see ``notes`` for what to check).
"""

from __future__ import annotations

import functools
import io
import re
from importlib import resources
from typing import Any

import numpy as np
import pandas as pd

from spevidence.errors import DataError

_FY = re.compile(r"^\s*(\d{4})\s*[/-]\s*(\d{2}|\d{4})\s*$")

UNIT_COST_COLUMNS: tuple[str, ...] = (
    "item",
    "description",
    "value",
    "value_low",
    "value_high",
    "unit",
    "price_year",
    "cashable",
    "source",
    "verified",
    "notes",
)
INDEX_COLUMNS: tuple[str, ...] = ("financial_year", "annual_change_pct")


@functools.lru_cache(maxsize=4)
def _read_text(name: str) -> str:
    return resources.files("spevidence.sroi").joinpath("data", name).read_text(encoding="utf-8")


def _read_data(name: str) -> pd.DataFrame:
    return pd.read_csv(io.StringIO(_read_text(name)), keep_default_na=True)


def unit_costs() -> pd.DataFrame:
    """Return the shipped unit-cost table (one row per item).

    Columns: ``item``, ``description``, ``value``, ``value_low``, ``value_high``,
    ``unit``, ``price_year`` (financial year, ``"YYYY/YY"``), ``cashable``,
    ``source``, ``verified`` (``"yes"``/``"no"``: checked at the primary source)
    and ``notes``. Figures are those of DOMAIN.md (PSSRU Unit Costs of Health and
    Social Care 2023; NHS National Cost Collection; Network Contract DES; HM
    Treasury Green Book wellbeing guidance 2021). Licensed value banks are not
    shipped; pass your own table with the same columns to
    :func:`spevidence.sroi.from_did` (``unit_costs=``).

    Returns
    -------
    pandas.DataFrame
        A fresh copy; editing it does not change the shipped table.
    """
    df = _read_data("unit_costs.csv")
    df["price_year"] = [
        normalise_price_year(v, where="shipped unit_costs.csv") for v in df["price_year"]
    ]
    df["cashable"] = df["cashable"].astype(bool)
    return df


def uprating_index() -> pd.DataFrame:
    """Return the shipped uprating index (NHS Cost Inflation Index, pay and prices).

    Columns: ``financial_year``, ``annual_change_pct`` (change into that year),
    ``index`` (level, 2014/15 = 1), ``provisional``, ``source``, ``verified``,
    ``notes``. Source: PSSRU Unit Costs of Health and Social Care 2025 Manual
    (Jones et al. 2026), transcribed from a secondary source and marked
    unverified (see ``notes``); the latest year is provisional.
    """
    df = _read_data("uprating_index.csv")
    return _with_levels(df, where="shipped uprating_index.csv")


def _with_levels(index: pd.DataFrame, *, where: str) -> pd.DataFrame:
    missing = [c for c in INDEX_COLUMNS if c not in index.columns]
    if missing:
        raise DataError(
            f"{where}: uprating index lacks column(s) {missing}; it needs 'financial_year' "
            "and 'annual_change_pct' (percentage change into that year; blank for the first year)."
        )
    if len(index) == 0:
        raise DataError(f"{where}: the uprating index has no rows; give at least one year.")
    df = index.copy()
    df["financial_year"] = [normalise_price_year(v, where=where) for v in df["financial_year"]]
    df = df.sort_values("financial_year", kind="stable").reset_index(drop=True)
    if df["financial_year"].duplicated().any():
        raise DataError(
            f"{where}: a financial year appears twice in the uprating index; keep one row per year."
        )
    pct = pd.to_numeric(df["annual_change_pct"], errors="coerce").to_numpy(dtype=float)
    for i in range(1, len(df)):
        if not np.isfinite(pct[i]):
            raise DataError(
                f"{where}: row {i} ({df['financial_year'].iloc[i]}) has no annual_change_pct; "
                "only the first (base) year may be blank."
            )
        if pct[i] <= -100:
            raise DataError(
                f"{where}: row {i} has annual_change_pct <= -100; give a percentage, e.g. 2.5."
            )
    # consecutive years only: a gap would silently treat two years as one step
    starts = [int(y[:4]) for y in df["financial_year"]]
    for i in range(1, len(starts)):
        if starts[i] != starts[i - 1] + 1:
            raise DataError(
                f"{where}: the uprating index jumps from {df['financial_year'].iloc[i - 1]} to "
                f"{df['financial_year'].iloc[i]}; give one row per consecutive financial year."
            )
    growth = np.where(np.arange(len(df)) == 0, 1.0, 1.0 + np.nan_to_num(pct) / 100.0)
    df["index"] = np.cumprod(growth)
    return df


def normalise_price_year(value: Any, *, where: str) -> str:
    """Return a financial year as ``"YYYY/YY"``.

    Accepts ``"2022/23"``, ``"2022-23"``, ``"2022/2023"`` or an integer year ``Y``,
    read as the financial year starting in April of ``Y`` (``2022`` -> ``"2022/23"``);
    a calendar-year price base (e.g. Green Book 2019 prices) maps to the financial
    year that covers most of it.
    """
    if isinstance(value, bool) or value is None:
        raise DataError(
            f"{where}: price year {value!r} is not a year; "
            "write it as a financial year, e.g. '2022/23'."
        )
    if isinstance(value, (int, np.integer)) or (
        isinstance(value, float) and float(value).is_integer()
    ):
        y = int(value)
        if 1900 <= y <= 2200:
            return f"{y}/{(y + 1) % 100:02d}"
    if isinstance(value, str):
        m = _FY.match(value)
        if m:
            y = int(m.group(1))
            tail = m.group(2)
            end = int(tail) if len(tail) == 4 else (y // 100) * 100 + int(tail)
            if len(tail) == 2 and end < y:
                end += 100
            if end == y + 1:
                return f"{y}/{(y + 1) % 100:02d}"
        elif value.strip().isdigit() and len(value.strip()) == 4:
            return normalise_price_year(int(value.strip()), where=where)
    raise DataError(
        f"{where}: price year {value!r} is not a financial year; write it as 'YYYY/YY', "
        "e.g. '2022/23' (April 2022 to March 2023)."
    )


def uprating_factors(
    years: pd.Series, target: str, index: pd.DataFrame, *, table: str, label: pd.Series
) -> np.ndarray:
    """Factor taking each value from its price year to ``target`` (NHSCII levels ratio)."""
    level = dict(zip(index["financial_year"], index["index"], strict=True))
    known = ", ".join(index["financial_year"])
    if target not in level:
        raise DataError(
            f"price_year {target!r} is not in the uprating index (known years: {known}); "
            "choose a known year or pass your own index with uprating=."
        )
    out = np.empty(len(years), dtype=float)
    for i, (y, lab) in enumerate(zip(years, label, strict=True)):
        if y not in level:
            raise DataError(
                f"{table} row {i} ({lab!r}): price_year {y!r} is not in the uprating index "
                f"(known years: {known}); give the value in a known price year or pass an "
                "index covering it with uprating=."
            )
        out[i] = level[target] / level[y]
    return out
