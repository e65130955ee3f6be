"""Build SROI inputs: the impact map from DiD estimates, and link-worker costs."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from spevidence.errors import DataError
from spevidence.sroi._costs import check_unit_costs, normalise_price_year
from spevidence.sroi._costs import unit_costs as _shipped_unit_costs

# A&E department types (ECDS): 1 = consultant-led 24-hour major A&E, 2 = single
# specialty, 3 = urgent treatment centre / minor injury unit, 4 = walk-in centre
AE_TYPE_ITEMS: dict[str, str] = {t: f"ae_attendance_type{t}" for t in ("1", "2", "3", "4")}
DEFAULT_COST_MAP: dict[str, str] = {
    "gp": "gp_consultation",
    "ae": "ae_attendance",
    **{f"ae_type{t}": item for t, item in AE_TYPE_ITEMS.items()},
    "admissions": "nel_admission_short_stay",
    "wellbeing": "wellby",
}
# which way is good: use of services should fall; life satisfaction should rise
DEFAULT_DIRECTION: dict[str, Literal["decrease", "increase"]] = {
    "gp": "decrease",
    "ae": "decrease",
    **{f"ae_type{t}": "decrease" for t in AE_TYPE_ITEMS},
    "admissions": "decrease",
    "wellbeing": "increase",
}


def ae_cost_item(department_types: Sequence[str] | None) -> str:
    """Unit-cost item that prices an A&E count covering these department types.

    ``None`` (or all four types) -> ``"ae_attendance"``, the activity-weighted
    average over every type (National Cost Collection 2023/24); one type ->
    ``"ae_attendance_typeN"``. Counts split by type are priced row by row: name
    the outcomes ``ae_type1`` ... ``ae_type4``.

    Raises
    ------
    DataError
        For an unknown type, or several but not all types (their average depends
        on your activity mix: pass ``cost_map={"ae": ITEM}`` with your own cost).
    """
    if department_types is None:
        return "ae_attendance"
    types = sorted({str(t).strip() for t in department_types})
    bad = [t for t in types if t not in AE_TYPE_ITEMS]
    if bad or not types:
        raise DataError(
            f"ae_department_types = {list(department_types)!r}: A&E department types are "
            "'1', '2', '3' and '4' (ECDS); give a subset of them or None for all."
        )
    if types == sorted(AE_TYPE_ITEMS):
        return "ae_attendance"
    if len(types) == 1:
        return AE_TYPE_ITEMS[types[0]]
    raise DataError(
        f"the A&E count covers department types {types}, not all of them: the shipped table "
        "has one cost per type and an all-type average, not this mix. Count each type as its "
        "own outcome (ae_type1, ae_type3, ...) or pass cost_map={'ae': ITEM} with a cost "
        "weighted by your own activity mix."
    )


_PERIODS = {"year": 1.0, "quarter": 4.0, "month": 12.0}


def from_did(
    effects: pd.DataFrame,
    *,
    persons: int | float,
    unit_costs: pd.DataFrame | None = None,
    duration_years: int = 1,
    cost_map: Mapping[str, str] | None = None,
    direction: Mapping[str, Literal["decrease", "increase"]] | None = None,
    effect_period: Literal["year", "quarter", "month"] = "year",
    scale: Literal["absolute", "log_ratio"] = "absolute",
    baseline: Mapping[str, float] | None = None,
    stakeholder: str = "NHS",
    attribution: float = 0.0,
    displacement: float = 0.0,
    drop_off: float = 0.0,
    deadweight: float = 0.0,
    ae_department_types: Sequence[str] | None = None,
    quantity_source: str = "matched DiD estimate",
) -> pd.DataFrame:
    """Build the SROI impact map from difference-in-differences estimates.

    Parameters
    ----------
    effects : pandas.DataFrame
        One row per outcome with ``outcome`` (e.g. ``"gp"``, ``"ae"``,
        ``"admissions"``, ``"wellbeing"``), ``estimate`` (change per person per
        ``effect_period``: events, negative = fewer; for ``"wellbeing"`` the
        change in life satisfaction on the 0-10 scale, i.e. WELLBYs a year) and
        ``std_error``.
    persons : int
        People who received the service (the referred, matched cohort).
    unit_costs : pandas.DataFrame, optional
        Unit-cost table with the columns of :func:`spevidence.sroi.unit_costs`
        (at least ``item``, ``value``, ``price_year``, ``source``); default the
        shipped table.
    duration_years : int, default 1
        Years the effect lasts (benefit period).
    cost_map : mapping, optional
        Outcome -> unit-cost ``item``; default ``gp -> gp_consultation``,
        ``ae -> ae_attendance``, ``admissions -> nel_admission_short_stay``
        (short stay is the conservative choice; map to
        ``nel_admission_long_stay`` or your own average if you know the mix),
        ``wellbeing -> wellby`` (only for a 0-10 life-satisfaction measure such
        as ONS4 life satisfaction).
    direction : mapping, optional
        Outcome -> ``"decrease"`` (a fall is the benefit: quantity = -estimate)
        or ``"increase"`` (quantity = +estimate). Default ``"decrease"`` for
        ``gp``/``ae``/``admissions``, ``"increase"`` for ``wellbeing``; other
        outcomes must be listed.
    effect_period : {"year", "quarter", "month"}
        Time unit of ``estimate`` (and ``baseline``); converted to a year.
    scale : {"absolute", "log_ratio"}
        ``"absolute"``: ``estimate`` is the change in events per person per
        period (linear DiD). ``"log_ratio"``: it is a log rate ratio (Poisson
        DiD); the change is then ``baseline x (exp(estimate) - 1)`` with the
        delta-method SE ``baseline x exp(estimate) x std_error``.
    baseline : mapping, optional
        Outcome -> events per person per period in the treated group had there
        been no service (e.g. the treated post-period rate / exp(estimate));
        required with ``scale="log_ratio"``.
    stakeholder : str, default "NHS"
    attribution, displacement, drop_off : float
        Fractions in [0, 1] applied to every outcome.
    deadweight : float, default 0
        Ignored (set to 0 with a warning when non-zero): in a matched DiD the
        comparator group *is* the deadweight, so subtracting it again
        double-counts (DOMAIN.md; Social Value UK "do not over-claim").
    ae_department_types : sequence of str, optional
        A&E department types the ``ae`` outcome counts (the panel's
        ``Definitions.ae_department_types``): ``None`` = all types, priced at the
        all-type average ``ae_attendance``; one type (e.g. ``("1",)``) is priced at
        that type's cost (see :func:`ae_cost_item`). Outcomes ``ae_type1`` ...
        ``ae_type4`` (counts split by type) are priced by type whatever this says.
        An explicit ``cost_map["ae"]`` wins.
    quantity_source : str, default "matched DiD estimate"
        Which estimate the quantities come from, appended to each row's ``source``
        (e.g. ``"staggered DiD estimate (Callaway-Sant'Anna simple ATT)"``).

    Returns
    -------
    pandas.DataFrame
        The impact map for :func:`spevidence.sroi.evaluate`: ``quantity`` =
        avoided events a year = -estimate x periods-per-year x persons (sign
        flipped for ``"increase"`` outcomes),
        ``quantity_se`` = std_error x periods-per-year x persons, plus the unit
        value (and its range), price year, source and cashable flag of the mapped
        unit cost, and ``persons`` / ``periods_per_year`` / ``benefit_sign`` (-1
        when fewer is better) for break-even effects.
    """
    eff, names = _checked_effects(effects)
    fractions = {"attribution": attribution, "displacement": displacement, "drop_off": drop_off}
    _check_options(persons, effect_period, fractions, deadweight, duration_years)
    costs = _shipped_unit_costs() if unit_costs is None else _check_costs(unit_costs)
    common = _RowSettings(
        stakeholder=stakeholder,
        attribution=attribution,
        displacement=displacement,
        drop_off=drop_off,
        duration_years=duration_years,
        persons=persons,
        ppy=_PERIODS[effect_period],
        quantity_source=quantity_source,
    )
    cmap = {**DEFAULT_COST_MAP, "ae": ae_cost_item(ae_department_types), **(cost_map or {})}
    dmap = {**DEFAULT_DIRECTION, **(direction or {})}
    by_item = {str(it): k for k, it in enumerate(costs["item"])}
    rows = []
    for i in range(len(eff)):
        out = str(names.iloc[i])
        est, se = _change_per_period(
            i, out, eff, scale=scale, baseline=baseline, effect_period=effect_period
        )
        item, sign = _item_and_sign(i, out, costs, cmap, dmap)
        rows.append(_impact_row(out, est, se, sign, costs, by_item[item], item, common))
    return pd.DataFrame(rows)


def _item_and_sign(
    i: int, out: str, costs: pd.DataFrame, cmap: Mapping[str, str], dmap: Mapping[str, str]
) -> tuple[str, float]:
    """The unit-cost item of effects row ``i`` (outcome ``out``) and the sign of its
    benefit (-1 when fewer is better)."""
    by_item = {str(it) for it in costs["item"]}
    item = cmap.get(out)
    if item is None or item not in by_item:
        raise DataError(
            f"effects row {i} ({out!r}): no unit cost for this outcome (mapped item {item!r}); "
            f"pass cost_map={{'{out}': ITEM}} with an item of the unit-cost table "
            f"({', '.join(map(str, costs['item']))})."
        )
    way = dmap.get(out)
    if way not in ("decrease", "increase"):
        raise DataError(
            f"effects row {i} ({out!r}): which way is a benefit? pass "
            f"direction={{'{out}': 'decrease'}} (fewer is better) or 'increase'."
        )
    return item, -1.0 if way == "decrease" else 1.0


def _checked_effects(effects: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """``effects`` with a fresh index, and its outcome names (one row per outcome)."""
    if not isinstance(effects, pd.DataFrame):
        raise DataError(f"effects must be a pandas DataFrame, got {type(effects).__name__}.")
    need = ("outcome", "estimate", "std_error")
    missing = [c for c in need if c not in effects.columns]
    if missing:
        raise DataError(
            f"effects lacks column(s) {missing} ({len(effects)} rows); give one row per outcome "
            "with outcome, estimate and std_error (e.g. the DiD tidy() rows of the treatment term)."
        )
    if len(effects) == 0:
        raise DataError("effects has no rows; give one DiD estimate per outcome.")
    eff = effects.reset_index(drop=True)
    names = eff["outcome"].astype(str)
    if names.duplicated().any():
        dup = sorted(set(names[names.duplicated()]))
        raise DataError(
            f"effects has more than one row for outcome(s) {dup}; keep one estimate per outcome "
            "(filter on model/term first)."
        )
    return eff, names


def _check_options(
    persons: int | float,
    effect_period: str,
    fractions: Mapping[str, float],
    deadweight: float,
    duration_years: int,
) -> None:
    """Check :func:`from_did`'s scalar options (warn about a non-zero deadweight)."""
    if (
        isinstance(persons, bool)
        or not isinstance(persons, (int, float, np.integer, np.floating))
        or not (np.isfinite(persons) and persons > 0)
    ):
        raise DataError(f"persons = {persons!r}; give the number of people supported (> 0).")
    if effect_period not in _PERIODS:
        raise DataError(f"effect_period = {effect_period!r}; use 'year', 'quarter' or 'month'.")
    for name, v in fractions.items():
        if not (isinstance(v, (int, float, np.floating)) and 0.0 <= float(v) <= 1.0):
            raise DataError(
                f"{name} = {v!r} is outside [0, 1]; give a fraction, e.g. 0.1 for 10 %."
            )
    if deadweight:
        warnings.warn(
            f"deadweight = {deadweight!r} ignored and set to 0: the matched comparator already "
            "removes deadweight; subtracting it again would double-count.",
            UserWarning,
            stacklevel=3,  # the caller of from_did
        )
    if (
        isinstance(duration_years, bool)
        or not isinstance(duration_years, (int, np.integer))
        or duration_years < 1
    ):
        raise DataError(f"duration_years = {duration_years!r}; give a whole number of years >= 1.")


def _change_per_period(
    i: int,
    out: str,
    eff: pd.DataFrame,
    *,
    scale: str,
    baseline: Mapping[str, float] | None,
    effect_period: str,
) -> tuple[float, float]:
    """Row ``i``'s change in events per person per period and its SE (on the count scale)."""
    est = pd.to_numeric(pd.Series([eff["estimate"].iloc[i]]), errors="coerce").iloc[0]
    se = pd.to_numeric(pd.Series([eff["std_error"].iloc[i]]), errors="coerce").iloc[0]
    if not np.isfinite(est):
        raise DataError(f"effects row {i} ({out!r}): estimate is missing or not a number.")
    if not np.isfinite(se) or se < 0:
        raise DataError(f"effects row {i} ({out!r}): std_error must be a number >= 0.")
    if scale == "log_ratio":
        b = (baseline or {}).get(out)
        if b is None or not np.isfinite(b) or b < 0:
            raise DataError(
                f"effects row {i} ({out!r}): scale='log_ratio' needs the counterfactual "
                f"rate; pass baseline={{'{out}': events per person per {effect_period}}}."
            )
        est, se = b * (np.exp(est) - 1.0), b * np.exp(est) * se
    elif scale != "absolute":
        raise DataError(f"scale = {scale!r}; use 'absolute' or 'log_ratio'.")
    return est, se


@dataclass(frozen=True)
class _RowSettings:
    """What every row of the impact map shares."""

    stakeholder: str
    attribution: float
    displacement: float
    drop_off: float
    duration_years: int
    persons: int | float
    ppy: float
    quantity_source: str


def _impact_row(
    out: str,
    est: float,
    se: float,
    sign: float,
    costs: pd.DataFrame,
    k: int,
    item: str,
    s: _RowSettings,
) -> dict[str, object]:
    """One outcome's row of the impact map, valued at row ``k`` of ``costs``."""
    ppy, persons = s.ppy, s.persons
    c = costs.iloc[k]
    low = c["value_low"] if "value_low" in costs.columns else np.nan
    high = c["value_high"] if "value_high" in costs.columns else np.nan
    return {
        "outcome": out,
        "stakeholder": s.stakeholder,
        "quantity": sign * float(est) * ppy * float(persons),
        "quantity_se": float(se) * ppy * float(persons),
        "unit_value": float(c["value"]),
        "unit_value_low": float(low) if pd.notna(low) else np.nan,
        "unit_value_high": float(high) if pd.notna(high) else np.nan,
        "price_year": c["price_year"],
        "source": f"{c['source']} ({item}); quantity: {s.quantity_source}",
        "deadweight": 0.0,
        "attribution": float(s.attribution),
        "displacement": float(s.displacement),
        "drop_off": float(s.drop_off),
        "duration_years": int(s.duration_years),
        "cashable": bool(c["cashable"]) if "cashable" in costs.columns else False,
        "unit_cost_item": item,
        "unit_cost_verified": str(c["verified"]) if "verified" in costs.columns else "no",
        "persons": float(persons),
        "periods_per_year": ppy,
        "benefit_sign": sign,
    }


def _check_costs(costs: pd.DataFrame) -> pd.DataFrame:
    return check_unit_costs(costs, where="unit_costs")


def link_worker_inputs(
    *,
    wte: float,
    years: int = 1,
    price_year: str | int = "2022/23",
    salary_with_oncosts: float | None = None,
    management_rate: float = 0.0,
    vcse_activity_funding: float = 0.0,
    other: float = 0.0,
    source: str | None = None,
) -> pd.DataFrame:
    """Inputs table for a link-worker service, one row per item and year.

    Link-worker pay = ``wte`` x ``salary_with_oncosts`` (default: the ARRS maximum
    reimbursable salary + on-costs for ``price_year`` from the shipped unit-cost
    table: 2019/20, 2020/21 or 2022/23); management and overheads =
    ``management_rate`` x pay; VCSE activity funding and other costs are £ a year.

    Returns
    -------
    pandas.DataFrame
        ``item``, ``amount``, ``year`` (0 .. years-1), ``price_year``, ``source``.
    """
    py = normalise_price_year(price_year, where="link_worker_inputs price_year")
    _check_link_worker_options(
        wte=wte,
        years=years,
        amounts={
            "management_rate": management_rate,
            "vcse_activity_funding": vcse_activity_funding,
            "other": other,
        },
    )
    salary, src = _salary_and_source(py, salary_with_oncosts, source)
    rows = []
    for k in range(int(years)):
        pay = float(wte) * salary
        rows.append(
            {
                "item": "Link-worker pay and on-costs",
                "amount": pay,
                "year": k,
                "price_year": py,
                "source": src,
            }
        )
        if management_rate:
            rows.append(
                {
                    "item": "Management and overheads",
                    "amount": pay * float(management_rate),
                    "year": k,
                    "price_year": py,
                    "source": f"assumption: {management_rate:g} x link-worker pay",
                }
            )
        if vcse_activity_funding:
            rows.append(
                {
                    "item": "VCSE activity funding",
                    "amount": float(vcse_activity_funding),
                    "year": k,
                    "price_year": py,
                    "source": source or "local VCSE funding (user-supplied)",
                }
            )
        if other:
            rows.append(
                {
                    "item": "Other costs",
                    "amount": float(other),
                    "year": k,
                    "price_year": py,
                    "source": source or "user-supplied",
                }
            )
    return pd.DataFrame(rows)


def _check_link_worker_options(*, wte: float, years: int, amounts: Mapping[str, float]) -> None:
    if (
        isinstance(wte, bool)
        or not isinstance(wte, (int, float, np.integer, np.floating))
        or not (wte > 0)
    ):
        raise DataError(f"wte = {wte!r}; give the whole-time-equivalent link workers (> 0).")
    if isinstance(years, bool) or not isinstance(years, (int, np.integer)) or years < 1:
        raise DataError(f"years = {years!r}; give a whole number of years >= 1.")
    for name, v in amounts.items():
        if not isinstance(v, (int, float, np.integer, np.floating)) or not np.isfinite(v) or v < 0:
            raise DataError(f"{name} = {v!r}; give an amount >= 0.")


def _salary_and_source(
    py: str, salary_with_oncosts: float | None, source: str | None
) -> tuple[float, str]:
    """Link-worker pay a year per WTE and where it comes from (default: shipped ARRS cost)."""
    if salary_with_oncosts is None:
        costs = _shipped_unit_costs()
        hit = costs[costs["item"].str.startswith("link_worker_arrs") & (costs["price_year"] == py)]
        if len(hit) == 0:
            have = ", ".join(
                costs.loc[costs["item"].str.startswith("link_worker_arrs"), "price_year"]
            )
            raise DataError(
                f"no shipped ARRS link-worker cost for {py} (shipped: {have}); pass "
                "salary_with_oncosts=£ a year, or use a shipped price year."
            )
        return float(
            hit["value"].iloc[0]
        ), source or f"{hit['source'].iloc[0]} ({hit['item'].iloc[0]})"
    if not np.isfinite(salary_with_oncosts) or salary_with_oncosts < 0:
        raise DataError(f"salary_with_oncosts = {salary_with_oncosts!r}; give £ a year >= 0.")
    if not source:
        raise DataError(
            "salary_with_oncosts given without source; pass source='where the figure comes from'."
        )
    return float(salary_with_oncosts), source


def cost_per_person(
    inputs: pd.DataFrame, *, wte: float, caseload_per_wte: float, years: int = 1
) -> float:
    """Undiscounted cost per person supported: total inputs / (wte x caseload x years).

    A typical caseload is 200-250 people a year per WTE (DOMAIN.md).
    """
    for name, v in (("wte", wte), ("caseload_per_wte", caseload_per_wte), ("years", years)):
        if not isinstance(v, (int, float, np.integer, np.floating)) or not v > 0:
            raise DataError(f"{name} = {v!r}; give a number > 0.")
    if "amount" not in inputs.columns:
        raise DataError("inputs lacks column 'amount'; build it with link_worker_inputs().")
    return float(pd.to_numeric(inputs["amount"]).sum()) / (
        float(wte) * float(caseload_per_wte) * float(years)
    )
