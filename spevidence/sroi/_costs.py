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
    """Return the shipped unit-cost table (one row per item), checked on load.

    Columns: ``item``, ``description``, ``value``, ``value_low``, ``value_high``,
    ``unit``, ``price_year`` (financial year, ``"YYYY/YY"``), ``cashable``,
    ``source`` (publication, table, year), ``verified`` (``"yes"`` only when the
    figure was read in the cited source; ``"no"`` otherwise, with ``notes`` saying
    what was checked) and ``notes``. Sources: PSSRU/CHE Unit Costs of Health and
    Social Care 2023 and 2024 Manuals (GP consultation; NHS National Cost
    Collection 2023/24 emergency care and non-elective stays), A&E by department
    type (derived, unverified), NHS England ARRS maximum reimbursement (unverified)
    and HM Treasury Green Book wellbeing guidance 2021 (WELLBY, unverified); see
    ``docs/methods.md``. Licensed value banks are not shipped; pass your own table
    with the same columns to :func:`spevidence.sroi.from_did` (``unit_costs=``).

    Returns
    -------
    pandas.DataFrame
        A fresh copy; editing it does not change the shipped table.

    Raises
    ------
    DataError
        If the shipped file breaks its schema (see :func:`check_unit_costs`).
    """
    df = _read_data("unit_costs.csv")
    return check_unit_costs(df, where="shipped unit_costs.csv", full=True, index=uprating_index())


def check_unit_costs(
    costs: pd.DataFrame,
    *,
    where: str = "unit_costs",
    full: bool = False,
    index: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Check a unit-cost table and return it with normalised price years.

    Every row needs an ``item`` (unique), a ``value`` >= 0, a ``price_year`` (a
    financial year; in ``index`` when given, so that it can be uprated) and a
    ``source``. When present, ``value_low`` <= ``value`` <= ``value_high`` and
    ``verified`` is ``"yes"`` or ``"no"``. With ``full=True`` every column of
    :data:`UNIT_COST_COLUMNS` is required and ``unit`` and ``notes`` must be filled.

    Raises
    ------
    DataError
        Naming the row, the column and the fix.
    """
    if not isinstance(costs, pd.DataFrame):
        raise DataError(f"{where} must be a pandas DataFrame, got {type(costs).__name__}.")
    need = UNIT_COST_COLUMNS if full else ("item", "value", "price_year", "source")
    missing = [c for c in need if c not in costs.columns]
    if missing:
        raise DataError(
            f"{where} lacks column(s) {missing} ({len(costs)} rows); the table needs "
            f"{', '.join(need)} (full layout: {', '.join(UNIT_COST_COLUMNS)})."
        )
    df = costs.reset_index(drop=True).copy()
    items = df["item"].astype(str)
    if items.duplicated().any():
        dup = sorted(set(items[items.duplicated()]))
        raise DataError(f"{where}: item(s) {dup} appear more than once; keep one row per item.")
    years = []
    for i in range(len(df)):
        lab = f"{where} row {i} ({items.iloc[i]!r})"
        v = pd.to_numeric(pd.Series([df["value"].iloc[i]]), errors="coerce").iloc[0]
        if not np.isfinite(v) or v < 0:
            raise DataError(f"{lab}: value must be a number >= 0 (£ per unit).")
        for col in ("source", *(("unit", "notes") if full else ())):
            txt = df[col].iloc[i]
            if not isinstance(txt, str) or not txt.strip():
                fix = "give the publication, table and year" if col == "source" else "fill it in"
                raise DataError(f"{lab}: {col} is missing; {fix}.")
        py = df["price_year"].iloc[i]
        if py is None or (isinstance(py, float) and np.isnan(py)):
            raise DataError(
                f"{lab}: price_year is missing; give the financial year, e.g. '2023/24'."
            )
        years.append(normalise_price_year(py, where=lab))
        if index is not None and years[-1] not in set(index["financial_year"]):
            raise DataError(
                f"{lab}: price_year {years[-1]!r} is not in the uprating index "
                f"({index['financial_year'].iloc[0]} to {index['financial_year'].iloc[-1]}); "
                "give the value in a year the index covers."
            )
        for col, sign in (("value_low", 1.0), ("value_high", -1.0)):
            if col in df.columns:
                b = pd.to_numeric(pd.Series([df[col].iloc[i]]), errors="coerce").iloc[0]
                if np.isfinite(b) and sign * (b - v) > 0:
                    raise DataError(
                        f"{lab}: {col} = {b:g} is on the wrong side of value = {v:g}; "
                        "value_low <= value <= value_high."
                    )
        if "verified" in df.columns and str(df["verified"].iloc[i]).strip() not in ("yes", "no"):
            raise DataError(
                f"{lab}: verified must be 'yes' (figure read in the cited source) or 'no'."
            )
    df["price_year"] = years
    if "cashable" in df.columns:
        df["cashable"] = [
            _as_bool(v, where=f"{where} row {i} ({items.iloc[i]!r})")
            for i, v in enumerate(df["cashable"])
        ]
    return df


_TRUE = {"true", "yes", "1"}
_FALSE = {"false", "no", "0"}


def _as_bool(value: Any, *, where: str) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    txt = str(value).strip().lower()
    if txt in _TRUE:
        return True
    if txt in _FALSE:
        return False
    raise DataError(f"{where}: cashable = {value!r}; write true or false.")


def uprating_index() -> pd.DataFrame:
    """Return the shipped uprating index (NHS Cost Inflation Index, pay and prices).

    Columns: ``financial_year``, ``annual_change_pct`` (change into that year),
    ``index`` (level, 2014/15 = 1), ``provisional``, ``source``, ``verified``,
    ``notes``. Source: PSSRU/CHE Unit Costs of Health and Social Care 2024 Manual
    (Jones et al. 2025), Table 12.1.1 (NHSCII pay and prices, NHS providers),
    2014/15 = 1 to 2023/24; the latest year is provisional.
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
