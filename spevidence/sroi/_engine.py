"""SROI calculation: impact map -> present values, ratio, sensitivity and Monte Carlo.

Convention (Cabinet Office 2012, *A guide to Social Return on Investment*; HM
Treasury Green Book 2022): inputs in year 0 are undiscounted; the benefit of
outcome *i* in year *t* = 1 .. duration is

    quantity x unit_value x (1 - deadweight) x (1 - displacement)
             x (1 - attribution) x (1 - drop_off) ** (t - 1)

discounted by (1 + discount) ** t; inputs in year k > 0 are discounted by
(1 + discount) ** k; every value is uprated to one price year first.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from spevidence.errors import DataError
from spevidence.sroi._costs import (
    _with_levels,
    normalise_price_year,
    uprating_factors,
    uprating_index,
)
from spevidence.sroi._plots import plot_tables

if TYPE_CHECKING:
    from matplotlib.figure import Figure

RATES: tuple[str, ...] = ("deadweight", "displacement", "attribution", "drop_off")
OUTCOME_REQUIRED: tuple[str, ...] = (
    "outcome",
    "stakeholder",
    "quantity",
    "unit_value",
    "price_year",
    "source",
    *RATES,
    "duration_years",
    "cashable",
)
INPUT_REQUIRED: tuple[str, ...] = ("item", "amount", "year", "price_year", "source")
_TRUE = {"true", "yes", "y", "1", "t"}
_FALSE = {"false", "no", "n", "0", "f"}


# --------------------------------------------------------------------------- validation


def _num(df: pd.DataFrame, col: str) -> np.ndarray:
    return pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=float)


def _show(v: Any) -> str:
    """repr of a cell value without numpy's type wrapper (np.float64(1.5) -> 1.5)."""
    return repr(v.item()) if isinstance(v, np.generic) else repr(v)


def _label(df: pd.DataFrame, key: str, i: int) -> str:
    return str(df[key].iloc[i])


def _require(df: pd.DataFrame, cols: tuple[str, ...], table: str, hint: str) -> None:
    if not isinstance(df, pd.DataFrame):
        raise DataError(f"{table} must be a pandas DataFrame, got {type(df).__name__}.")
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise DataError(f"{table} lacks column(s) {missing} ({len(df)} rows given); {hint}")
    if len(df) == 0:
        raise DataError(f"{table} has no rows; give at least one row.")


def _check_source(df: pd.DataFrame, table: str, key: str) -> None:
    src = df["source"]
    for i in range(len(df)):
        v = src.iloc[i]
        if not isinstance(v, str) or not v.strip():
            raise DataError(
                f"{table} row {i} ({_label(df, key, i)!r}): source is missing; every value "
                "needs its source (publication and table), e.g. 'PSSRU Unit Costs 2023'."
            )


def _validate_outcomes(outcomes: pd.DataFrame) -> pd.DataFrame:
    t = "outcomes"
    _require(
        outcomes,
        OUTCOME_REQUIRED,
        t,
        "build the impact map with spevidence.sroi.from_did() or add the columns.",
    )
    df = outcomes.reset_index(drop=True).copy()
    df["outcome"] = df["outcome"].astype(str)
    if df["outcome"].duplicated().any():
        dup = sorted(set(df.loc[df["outcome"].duplicated(), "outcome"]))
        raise DataError(
            f"outcomes: outcome name(s) {dup} appear more than once; give each row a unique name."
        )
    _check_source(df, t, "outcome")
    q, uv = _quantities_and_values(df)
    df["quantity"] = q
    df["unit_value"] = uv
    for r in RATES:
        _clean_rate(df, r)
    df["duration_years"] = _durations(df)
    df["cashable"] = _cashable(df)
    se = _num(df, "quantity_se") if "quantity_se" in df.columns else np.full(len(df), np.nan)
    if (se < 0).any():
        i = int(np.flatnonzero(se < 0)[0])
        raise DataError(
            f"outcomes row {i} ({_label(df, 'outcome', i)!r}): quantity_se is negative; "
            "give a standard error >= 0."
        )
    df["quantity_se"] = se
    df["unit_value_low"], df["unit_value_high"] = _unit_value_range(df, uv)
    df["price_year"] = [
        normalise_price_year(v, where=f"outcomes row {i} ({_label(df, 'outcome', i)!r})")
        for i, v in enumerate(df["price_year"])
    ]
    return df


def _quantities_and_values(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    q = _num(df, "quantity")
    uv = _num(df, "unit_value")
    for i in range(len(df)):
        lab = _label(df, "outcome", i)
        if not np.isfinite(q[i]):
            raise DataError(
                f"outcomes row {i} ({lab!r}): quantity is missing or not a number; "
                "give events per year."
            )
        if not np.isfinite(uv[i]):
            raise DataError(
                f"outcomes row {i} ({lab!r}): unit_value is missing or not a number; "
                "give £ per unit."
            )
        if uv[i] < 0:
            raise DataError(
                f"outcomes row {i} ({lab!r}): unit_value {uv[i]:g} is negative; give the value of "
                "one unit as a positive amount and put the direction in quantity "
                "(negative = disbenefit)."
            )
    return q, uv


def _clean_rate(df: pd.DataFrame, r: str) -> None:
    """Check rate ``r`` and its optional ``_low``/``_high`` and write them as floats (in place)."""
    v = _num(df, r)
    for i in range(len(df)):
        if not (np.isfinite(v[i]) and 0.0 <= v[i] <= 1.0):
            raise DataError(
                f"outcomes row {i} ({_label(df, 'outcome', i)!r}): "
                f"{r} = {_show(df[r].iloc[i])} is outside [0, 1]; "
                f"give {r} as a fraction, e.g. 0.25 for 25 %."
            )
    df[r] = v
    for side in ("low", "high"):
        c = f"{r}_{side}"
        if c in df.columns:
            w = _num(df, c)
            w = np.where(np.isfinite(w), w, v)
            if ((w < 0) | (w > 1)).any():
                i = int(np.flatnonzero((w < 0) | (w > 1))[0])
                raise DataError(
                    f"outcomes row {i} ({_label(df, 'outcome', i)!r}): {c} is outside [0, 1]; "
                    "give it as a fraction."
                )
            df[c] = w
    if f"{r}_low" in df.columns and f"{r}_high" in df.columns:
        bad = (df[f"{r}_low"] > v) | (df[f"{r}_high"] < v)
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataError(
                f"outcomes row {i} ({_label(df, 'outcome', i)!r}): need {r}_low <= {r} <= {r}_high."
            )


def _durations(df: pd.DataFrame) -> np.ndarray:
    dur = _num(df, "duration_years")
    for i in range(len(df)):
        if not (np.isfinite(dur[i]) and dur[i] >= 1 and float(dur[i]).is_integer()):
            raise DataError(
                f"outcomes row {i} ({_label(df, 'outcome', i)!r}): duration_years = "
                f"{_show(df['duration_years'].iloc[i])}; give a whole number of years >= 1."
            )
    return dur.astype(int)


def _cashable(df: pd.DataFrame) -> list[bool]:
    cash = []
    for i, v in enumerate(df["cashable"]):
        if isinstance(v, (bool, np.bool_)):
            cash.append(bool(v))
        elif str(v).strip().lower() in _TRUE:
            cash.append(True)
        elif str(v).strip().lower() in _FALSE:
            cash.append(False)
        else:
            raise DataError(
                f"outcomes row {i} ({_label(df, 'outcome', i)!r}): cashable = {_show(v)}; "
                "give True or False."
            )
    return cash


def _unit_value_range(df: pd.DataFrame, uv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lo = _num(df, "unit_value_low") if "unit_value_low" in df.columns else np.full(len(df), np.nan)
    hi = (
        _num(df, "unit_value_high") if "unit_value_high" in df.columns else np.full(len(df), np.nan)
    )
    for i in range(len(df)):
        lab = _label(df, "outcome", i)
        if np.isfinite(lo[i]) != np.isfinite(hi[i]):
            raise DataError(
                f"outcomes row {i} ({lab!r}): give both unit_value_low and "
                "unit_value_high, or neither."
            )
        if np.isfinite(lo[i]) and not (0 <= lo[i] <= uv[i] <= hi[i]):
            raise DataError(
                f"outcomes row {i} ({lab!r}): need "
                "0 <= unit_value_low <= unit_value <= unit_value_high "
                f"(got {lo[i]:g}, {uv[i]:g}, {hi[i]:g})."
            )
    return lo, hi


def _validate_inputs(inputs: pd.DataFrame) -> pd.DataFrame:
    t = "inputs"
    _require(
        inputs,
        INPUT_REQUIRED,
        t,
        "give item, amount (£), year (0 = first year), price_year and source; "
        "spevidence.sroi.link_worker_inputs() builds them.",
    )
    df = inputs.reset_index(drop=True).copy()
    df["item"] = df["item"].astype(str)
    _check_source(df, t, "item")
    amt = _num(df, "amount")
    yr = _num(df, "year")
    for i in range(len(df)):
        lab = _label(df, "item", i)
        if not np.isfinite(amt[i]):
            raise DataError(f"inputs row {i} ({lab!r}): amount is missing or not a number; give £.")
        if amt[i] < 0:
            raise DataError(
                f"inputs row {i} ({lab!r}): amount {amt[i]:g} is negative; inputs are costs >= 0 "
                "(record income or savings as outcomes instead)."
            )
        if not (np.isfinite(yr[i]) and yr[i] >= 0 and float(yr[i]).is_integer()):
            raise DataError(
                f"inputs row {i} ({lab!r}): year = {_show(df['year'].iloc[i])}; "
                "give a whole number >= 0 (0 = first year)."
            )
    df["amount"] = amt
    df["year"] = yr.astype(int)
    lo = _num(df, "amount_low") if "amount_low" in df.columns else np.full(len(df), np.nan)
    hi = _num(df, "amount_high") if "amount_high" in df.columns else np.full(len(df), np.nan)
    for i in range(len(df)):
        lab = _label(df, "item", i)
        if np.isfinite(lo[i]) != np.isfinite(hi[i]):
            raise DataError(
                f"inputs row {i} ({lab!r}): give both amount_low and amount_high, or neither."
            )
        if np.isfinite(lo[i]) and not (0 <= lo[i] <= amt[i] <= hi[i]):
            raise DataError(
                f"inputs row {i} ({lab!r}): need 0 <= amount_low <= amount <= amount_high "
                f"(got {lo[i]:g}, {amt[i]:g}, {hi[i]:g})."
            )
    df["amount_low"] = lo
    df["amount_high"] = hi
    df["price_year"] = [
        normalise_price_year(v, where=f"inputs row {i} ({_label(df, 'item', i)!r})")
        for i, v in enumerate(df["price_year"])
    ]
    return df


# --------------------------------------------------------------------------- core maths


def _annuity(
    drop_off: np.ndarray, discount: np.ndarray | float, duration: np.ndarray
) -> np.ndarray:
    """sum_{t=1..D} (1 - d)^(t-1) / (1 + r)^t, broadcast over arrays."""
    d = np.asarray(drop_off, dtype=float)
    r = np.asarray(discount, dtype=float)
    dur = np.asarray(duration)
    shape = np.broadcast_shapes(d.shape, r.shape, dur.shape)
    out = np.zeros(shape)
    tmax = int(np.max(dur))
    for t in range(1, tmax + 1):
        out = out + np.where(dur >= t, (1.0 - d) ** (t - 1) / (1.0 + r) ** t, 0.0)
    return out


def _pv_benefits(
    q: np.ndarray,
    uv: np.ndarray,
    dw: np.ndarray,
    disp: np.ndarray,
    attr: np.ndarray,
    drop: np.ndarray,
    dur: np.ndarray,
    r: np.ndarray | float,
) -> np.ndarray:
    """Present value per outcome (last axis = outcomes)."""
    return q * uv * (1 - dw) * (1 - disp) * (1 - attr) * _annuity(drop, r, dur)


def _pv_inputs(amount: np.ndarray, year: np.ndarray, r: float) -> float:
    return float(np.sum(amount / (1.0 + float(r)) ** year))


def _ratio(b: Any, c: Any) -> Any:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(b, dtype=float) / np.asarray(c, dtype=float)


@dataclass(frozen=True)
class _Ranges:
    """The one-way sensitivity's default ranges (see :meth:`SROIResult.sensitivity`)."""

    proxy_range: float
    rate_range: float
    quantity_z: float
    duration_range: int


def _one_way_row(
    param: str,
    outcome: str,
    base: float,
    lo: float,
    hi: float,
    f: Callable[[float], tuple[float, float]],
) -> dict[str, Any]:
    """One row of the tornado: ratio and NPV with ``param`` at ``lo`` and at ``hi``
    (``f`` gives the present values of benefits and inputs at a value)."""
    (b_lo, c_lo), (b_hi, c_hi) = f(lo), f(hi)
    return {
        "parameter": param,
        "outcome": outcome,
        "base": base,
        "low": lo,
        "high": hi,
        "ratio_at_low": float(_ratio(b_lo, c_lo)),
        "ratio_at_high": float(_ratio(b_hi, c_hi)),
        "npv_at_low": b_lo - c_lo,
        "npv_at_high": b_hi - c_hi,
    }


# --------------------------------------------------------------------------- result


@dataclass(frozen=True, eq=False, repr=False)
class SROIResult:
    """Result of :func:`evaluate`: present values, ratio and (optionally) simulations.

    Attributes
    ----------
    outcomes, inputs : pandas.DataFrame
        Validated impact map and inputs, with ``uprating_factor`` and the uprated
        ``unit_value_uprated`` / ``amount_uprated`` in ``price_year`` prices.
    discount : float
        Annual discount rate.
    price_year : str
        Common price year (financial year) of every £ figure.
    simulations : pandas.DataFrame or None
        One row per Monte Carlo draw (``pv_benefits``, ``pv_inputs``, ``npv``,
        ``sroi_ratio``) when simulated.
    seed : int or None
        Seed of the simulation.
    """

    outcomes: pd.DataFrame
    inputs: pd.DataFrame
    discount: float
    price_year: str
    simulations: pd.DataFrame | None = None
    seed: int | None = None

    # ---- point estimates
    def _arrays(self) -> dict[str, np.ndarray]:
        o = self.outcomes
        return {
            "q": o["quantity"].to_numpy(float),
            "uv": o["unit_value_uprated"].to_numpy(float),
            "dw": o["deadweight"].to_numpy(float),
            "disp": o["displacement"].to_numpy(float),
            "attr": o["attribution"].to_numpy(float),
            "drop": o["drop_off"].to_numpy(float),
            "dur": o["duration_years"].to_numpy(int),
        }

    def _pv_by_outcome(self, **over: Any) -> np.ndarray:
        a = self._arrays()
        a.update(over)
        r = over.get("r", self.discount)
        return _pv_benefits(a["q"], a["uv"], a["dw"], a["disp"], a["attr"], a["drop"], a["dur"], r)

    def _pv_in(self, r: float | None = None, scale: float = 1.0) -> float:
        i = self.inputs
        return scale * float(
            _pv_inputs(
                i["amount_uprated"].to_numpy(float),
                i["year"].to_numpy(int),
                self.discount if r is None else r,
            )
        )

    @property
    def pv_benefits(self) -> float:
        return float(np.sum(self._pv_by_outcome()))

    @property
    def pv_inputs(self) -> float:
        return self._pv_in()

    @property
    def sroi_ratio(self) -> float:
        return float(_ratio(self.pv_benefits, self.pv_inputs))

    def payback_years(self) -> float:
        """Years until cumulative discounted benefits reach cumulative discounted inputs.

        Benefits of year *t* accrue evenly over (t - 1, t]; inputs of year *k* are
        spent at time *k*. ``nan`` when benefits never catch up within the horizon.
        """
        tidy = self.tidy()
        horizon = int(max(self.outcomes["duration_years"].max(), self.inputs["year"].max() + 1))
        b = (
            tidy.groupby("year")["present_value"]
            .sum()
            .reindex(range(1, horizon + 1), fill_value=0.0)
        )
        i = self.inputs
        pvi = i["amount_uprated"].to_numpy(float) / (1 + self.discount) ** i["year"].to_numpy(int)
        c = (
            pd.Series(pvi)
            .groupby(i["year"].to_numpy(int))
            .sum()
            .reindex(range(0, horizon + 1), fill_value=0.0)
        )
        cum_b = 0.0
        cum_c = float(c.loc[0])
        for t in range(1, horizon + 1):
            bt = float(b.loc[t])
            if cum_b >= cum_c:
                return float(t - 1)
            if bt > 0 and cum_b + bt >= cum_c:
                return float(t - 1 + (cum_c - cum_b) / bt)
            cum_b += bt
            cum_c += float(c.loc[t])
        return float(t) if cum_b >= cum_c else float("nan")

    # ---- tables
    def tidy(self) -> pd.DataFrame:
        """Benefits by outcome and year (the value map in long form).

        Columns: ``outcome``, ``stakeholder``, ``year``, ``quantity``, ``unit_value``
        (uprated), ``gross_value`` (quantity x unit_value), ``deadweight``,
        ``displacement``, ``attribution``, ``drop_off_factor`` ((1 - d)^(t-1)),
        ``value`` (net of all four), ``discount_factor`` (1/(1+r)^t),
        ``present_value``, ``cashable``.
        """
        rows = []
        for _, o in self.outcomes.iterrows():
            for t in range(1, int(o["duration_years"]) + 1):
                gross = float(o["quantity"]) * float(o["unit_value_uprated"])
                dof = (1 - float(o["drop_off"])) ** (t - 1)
                value = (
                    gross
                    * (1 - float(o["deadweight"]))
                    * (1 - float(o["displacement"]))
                    * (1 - float(o["attribution"]))
                    * dof
                )
                df = 1 / (1 + self.discount) ** t
                rows.append(
                    {
                        "outcome": o["outcome"],
                        "stakeholder": o["stakeholder"],
                        "year": t,
                        "quantity": float(o["quantity"]),
                        "unit_value": float(o["unit_value_uprated"]),
                        "gross_value": gross,
                        "deadweight": float(o["deadweight"]),
                        "displacement": float(o["displacement"]),
                        "attribution": float(o["attribution"]),
                        "drop_off_factor": dof,
                        "value": value,
                        "discount_factor": df,
                        "present_value": value * df,
                        "cashable": bool(o["cashable"]),
                    }
                )
        return pd.DataFrame(rows)

    def by_outcome(self) -> pd.DataFrame:
        """Present value per outcome (``sroi_by_outcome`` in the bundle)."""
        o = self.outcomes
        pv = self._pv_by_outcome()
        total = float(np.sum(pv))
        return pd.DataFrame(
            {
                "outcome": o["outcome"].to_numpy(),
                "stakeholder": o["stakeholder"].to_numpy(),
                "quantity": o["quantity"].to_numpy(float),
                "unit_value": o["unit_value_uprated"].to_numpy(float),
                "price_year": self.price_year,
                "duration_years": o["duration_years"].to_numpy(int),
                "cashable": o["cashable"].to_numpy(bool),
                "present_value": pv,
                "share": pv / total if total != 0 else np.full(len(pv), np.nan),
                "source": o["source"].to_numpy(),
            }
        )

    def glance(self) -> pd.DataFrame:
        """One row: ``pv_benefits``, ``pv_inputs``, ``npv``, ``sroi_ratio``,
        ``payback_years``, ``cashable_pv``, ``non_cashable_pv``, ``break_even_scale``
        (factor on every quantity that gives ratio 1), ``discount``, ``price_year``,
        ``n_sims``; with simulations also ``ratio_conf_low``/``ratio_conf_high``
        (2.5th/97.5th percentiles), ``npv_conf_low``/``npv_conf_high``,
        ``p_ratio_gt_1`` and ``seed``."""
        pv = self._pv_by_outcome()
        cash = self.outcomes["cashable"].to_numpy(bool)
        b = float(np.sum(pv))
        c = self.pv_inputs
        row: dict[str, Any] = {
            "pv_benefits": b,
            "pv_inputs": c,
            "npv": b - c,
            "sroi_ratio": float(_ratio(b, c)),
            "payback_years": self.payback_years(),
            "cashable_pv": float(np.sum(pv[cash])),
            "non_cashable_pv": float(np.sum(pv[~cash])),
            "break_even_scale": float(_ratio(c, b)) if b > 0 else float("nan"),
            "discount": self.discount,
            "price_year": self.price_year,
            "n_sims": 0 if self.simulations is None else len(self.simulations),
        }
        if self.simulations is not None:
            s = self.simulations
            row["ratio_conf_low"] = float(np.quantile(s["sroi_ratio"], 0.025))
            row["ratio_conf_high"] = float(np.quantile(s["sroi_ratio"], 0.975))
            row["npv_conf_low"] = float(np.quantile(s["npv"], 0.025))
            row["npv_conf_high"] = float(np.quantile(s["npv"], 0.975))
            row["p_ratio_gt_1"] = float(np.mean(s["sroi_ratio"] > 1.0))
            row["seed"] = self.seed
        return pd.DataFrame([row])

    def break_even(self) -> pd.DataFrame:
        """Quantity of each outcome alone (others fixed) that makes the ratio 1.

        Columns ``outcome``, ``quantity``, ``break_even_quantity`` and, for impact
        maps built by :func:`from_did` (``persons`` column), ``break_even_effect``:
        the change in events per person-year needed (negative = fewer events).
        """
        pv = self._pv_by_outcome()
        gap = self.pv_inputs - float(np.sum(pv))
        o = self.outcomes
        q = o["quantity"].to_numpy(float)
        per_unit = self._pv_by_outcome(q=np.ones(len(o)))
        with np.errstate(divide="ignore", invalid="ignore"):
            be = np.where(per_unit > 0, q + gap / per_unit, np.nan)
        out = pd.DataFrame(
            {"outcome": o["outcome"].to_numpy(), "quantity": q, "break_even_quantity": be}
        )
        if "persons" in o.columns:
            ones = pd.Series(1.0, index=o.index)
            ppy = o.get("periods_per_year", ones).to_numpy(float)
            sign = o.get("benefit_sign", -ones).to_numpy(float)
            out["break_even_effect"] = sign * be / (o["persons"].to_numpy(float) * ppy)
        return out

    def summary(self) -> str:
        """Plain-English summary of the headline numbers."""
        g = self.glance().iloc[0]
        lines = [
            f"SROI ({self.price_year} prices, discount {self.discount:.1%} a year)",
            f"  Present value of benefits : £{g['pv_benefits']:,.0f}",
            f"    of which cashable       : £{g['cashable_pv']:,.0f}",
            f"  Present value of inputs   : £{g['pv_inputs']:,.0f}",
            f"  Net present value         : £{g['npv']:,.0f}",
            f"  Value per £1 invested     : £{g['sroi_ratio']:.2f}",
        ]
        if np.isfinite(g["payback_years"]):
            lines.append(f"  Payback                   : {g['payback_years']:.1f} years")
        else:
            lines.append("  Payback                   : not within the benefit period")
        if self.simulations is not None:
            lines.append(
                f"  95% interval for ratio    : £{g['ratio_conf_low']:.2f} "
                f"to £{g['ratio_conf_high']:.2f} (P(ratio > 1) = {g['p_ratio_gt_1']:.2f}, "
                f"{int(g['n_sims'])} simulations, seed {self.seed})"
            )
        return "\n".join(lines)

    def caveats(self) -> list[str]:
        """Plain-English limitations written from this result (for the report)."""
        g = self.glance().iloc[0]
        o = self.outcomes
        out: list[str] = []
        if self.simulations is not None:
            lo, hi = float(g["ratio_conf_low"]), float(g["ratio_conf_high"])
            if lo <= 1.0 <= hi:
                out.append(
                    f"The 95% interval for value per £1 (£{lo:.2f} to £{hi:.2f}) includes £1: "
                    "we cannot be confident the service returns more than it costs."
                )
            if hi < 1.0:
                out.append(
                    f"The whole 95% interval is below £1 (up to £{hi:.2f}): on these outcomes "
                    "alone the service is unlikely to pay for itself."
                )
            if lo <= 0.0:
                out.append(
                    "The interval reaches zero or below: the data are consistent with no "
                    "saving at all, or with extra use of services."
                )
        else:
            out.append("No simulation was run, so the ratio is shown without uncertainty.")
        if (o["quantity"] < 0).any():
            names = ", ".join(map(str, o.loc[o["quantity"] < 0, "outcome"]))
            out.append(f"Use of some services rose rather than fell ({names}); counted as a cost.")
        if "persons" in o.columns and (o["deadweight"] == 0).all():
            out.append(
                "Deadweight is not subtracted: the matched comparison group already estimates "
                "what would have happened anyway."
            )
        if self.simulations is not None and len(o) > 1:
            out.append(
                "The simulation treats the outcomes' estimates as independent; if they move "
                "together the true interval is wider."
            )
        if g["cashable_pv"] > 0:
            out.append(
                "Cashable savings assume hospital activity is paid per case; under block or "
                "aligned payment contracts fewer attendances free capacity rather than cash."
            )
        if o["duration_years"].max() > 1:
            out.append(
                f"Benefits are assumed to last up to {int(o['duration_years'].max())} years; "
                "the follow-up data may be shorter."
            )
        return out

    def __repr__(self) -> str:
        return self.summary()

    def _repr_html_(self) -> str:
        return "<h4>SROI</h4>" + self.glance().to_html(index=False)

    # ---- sensitivity
    def sensitivity(
        self,
        *,
        proxy_range: float = 0.2,
        rate_range: float = 0.1,
        quantity_z: float = 1.959963984540054,
        discount_range: tuple[float, float] = (0.015, 0.05),
        input_range: float = 0.2,
        duration_range: int = 1,
    ) -> pd.DataFrame:
        """One-way sensitivity: vary one parameter at a time over a range (tornado).

        Ranges: ``unit_value`` from ``unit_value_low``/``unit_value_high`` when
        given, else +/- ``proxy_range`` (relative); ``quantity`` +/- ``quantity_z``
        standard errors when ``quantity_se`` is given, else +/- ``proxy_range``;
        each rate from ``<rate>_low``/``<rate>_high`` when given, else +/-
        ``rate_range`` (absolute, clipped to [0, 1]) - deadweight is varied only
        when non-zero or given a range (in a matched DiD the comparator *is* the
        deadweight); ``duration_years`` +/- ``duration_range`` (>= 1); the discount
        rate over ``discount_range`` (Green Book: 1.5 % for health effects); each
        input over ``amount_low``/``amount_high`` when given, else all inputs
        together +/- ``input_range``.

        Returns
        -------
        pandas.DataFrame
            ``parameter``, ``outcome`` (or ``"all"``), ``base``, ``low``, ``high``,
            ``ratio_at_low``, ``ratio_at_high``, ``npv_at_low``, ``npv_at_high``,
            ``base_ratio``, ``swing`` (|ratio_at_high - ratio_at_low|), sorted by swing.
        """
        o = self.outcomes
        a = self._arrays()
        c0 = self.pv_inputs
        base_b = float(np.sum(self._pv_by_outcome()))
        base_ratio = float(_ratio(base_b, c0))
        ranges = _Ranges(
            proxy_range=proxy_range,
            rate_range=rate_range,
            quantity_z=quantity_z,
            duration_range=duration_range,
        )
        rows: list[dict[str, Any]] = []
        for j in range(len(o)):
            rows += self._one_way_outcome(j, a, c0, ranges)
        rows.append(
            _one_way_row(
                "discount",
                "all",
                self.discount,
                discount_range[0],
                discount_range[1],
                lambda v: (float(np.sum(self._pv_by_outcome(r=v))), self._pv_in(r=v)),
            )
        )
        rows += self._one_way_inputs(base_b, c0, input_range)
        out = pd.DataFrame(rows)
        out["base_ratio"] = base_ratio
        out["swing"] = (out["ratio_at_high"] - out["ratio_at_low"]).abs()
        return out.sort_values("swing", ascending=False, kind="stable").reset_index(drop=True)

    def _one_way_outcome(
        self, j: int, a: dict[str, np.ndarray], c0: float, ranges: _Ranges
    ) -> list[dict[str, Any]]:
        """Sensitivity rows of outcome ``j``: unit value, quantity, rates and duration."""
        o = self.outcomes
        name = str(o["outcome"].iloc[j])
        rows: list[dict[str, Any]] = []

        def vary(key: str, value: float) -> tuple[float, float]:
            arr = a[key].astype(float).copy()
            arr[j] = value
            return float(np.sum(self._pv_by_outcome(**{key: arr}))), c0

        uv = a["uv"][j]
        lo_raw, hi_raw = o["unit_value_low"].iloc[j], o["unit_value_high"].iloc[j]
        f = o["uprating_factor"].iloc[j]
        if np.isfinite(lo_raw):
            lo, hi = lo_raw * f, hi_raw * f
        else:
            lo, hi = uv * (1 - ranges.proxy_range), uv * (1 + ranges.proxy_range)
        rows.append(_one_way_row("unit_value", name, uv, lo, hi, lambda v: vary("uv", v)))
        q = a["q"][j]
        se = o["quantity_se"].iloc[j]
        if np.isfinite(se) and se > 0:
            lo, hi = q - ranges.quantity_z * se, q + ranges.quantity_z * se
        else:
            lo, hi = q - abs(q) * ranges.proxy_range, q + abs(q) * ranges.proxy_range
        rows.append(_one_way_row("quantity", name, q, lo, hi, lambda v: vary("q", v)))
        for r, key in zip(RATES, ("dw", "disp", "attr", "drop"), strict=True):
            base = a[key][j]
            if f"{r}_low" in o.columns and f"{r}_high" in o.columns:
                lo, hi = float(o[f"{r}_low"].iloc[j]), float(o[f"{r}_high"].iloc[j])
            elif r == "deadweight" and base == 0:
                continue
            else:
                lo, hi = max(0.0, base - ranges.rate_range), min(1.0, base + ranges.rate_range)
            rows.append(_one_way_row(r, name, base, lo, hi, functools.partial(vary, key)))
        d = a["dur"][j]
        rows.append(
            _one_way_row(
                "duration_years",
                name,
                float(d),
                float(max(1, d - ranges.duration_range)),
                float(d + ranges.duration_range),
                lambda v: vary("dur", int(v)),
            )
        )
        return rows

    def _one_way_inputs(self, base_b: float, c0: float, input_range: float) -> list[dict[str, Any]]:
        """Sensitivity rows of the inputs: each item with a stated range, else all together."""
        inp = self.inputs
        disc = (1 + self.discount) ** inp["year"].to_numpy(int)
        pv_items = inp["amount_uprated"].to_numpy(float) / disc
        if not np.isfinite(inp["amount_low"].to_numpy(float)).any():
            return [
                _one_way_row(
                    "inputs",
                    "all",
                    c0,
                    c0 * (1 - input_range),
                    c0 * (1 + input_range),
                    lambda v: (base_b, v),
                )
            ]
        # one row per input item with a stated range
        rows = []
        for k in range(len(inp)):
            lo_k = float(inp["amount_low"].iloc[k])
            if not np.isfinite(lo_k):
                continue
            f_k = float(inp["uprating_factor"].iloc[k])
            amount = float(inp["amount_uprated"].iloc[k])

            def vary_input(v: float, k: int = k) -> tuple[float, float]:
                return base_b, c0 - pv_items[k] + v / disc[k]

            rows.append(
                _one_way_row(
                    "input_amount",
                    str(inp["item"].iloc[k]),
                    amount,
                    lo_k * f_k,
                    float(inp["amount_high"].iloc[k]) * f_k,
                    vary_input,
                )
            )
        return rows

    # ---- simulation
    def simulate(self, n_sims: int = 5000, *, seed: int | None = None) -> SROIResult:
        """Monte Carlo over the DiD sampling distribution and the proxy ranges.

        Each draw takes, independently per outcome, ``quantity`` ~ Normal(quantity,
        quantity_se) (when ``quantity_se`` is given; the DiD estimate's sampling
        distribution), ``unit_value`` ~ Triangular(low, unit_value, high) (when
        ``unit_value_low``/``high`` are given) and each rate ~ Uniform(low, high)
        when ``<rate>_low``/``<rate>_high`` are given, and each input amount ~
        Triangular(amount_low, amount, amount_high) when given; the discount rate
        is fixed.
        Correlation between outcomes' estimates is ignored (not available from
        separate DiD fits). Draws use ``numpy.random.default_rng(seed)``.

        Returns
        -------
        SROIResult
            A copy with ``simulations`` (one row per draw) and ``seed`` set.
        """
        if isinstance(n_sims, bool) or not isinstance(n_sims, (int, np.integer)) or n_sims < 1:
            raise DataError(f"n_sims = {n_sims!r}; give a whole number >= 1, e.g. 5000.")
        rng = np.random.default_rng(seed)
        o = self.outcomes
        n, k = int(n_sims), len(o)
        a = self._arrays()
        draws: dict[str, np.ndarray] = {}
        se = o["quantity_se"].to_numpy(float)
        has_se = np.isfinite(se) & (se > 0)
        z = rng.standard_normal((n, k))
        draws["q"] = a["q"] + np.where(has_se, se, 0.0) * z
        lo = o["unit_value_low"].to_numpy(float) * o["uprating_factor"].to_numpy(float)
        hi = o["unit_value_high"].to_numpy(float) * o["uprating_factor"].to_numpy(float)
        u = rng.random((n, k))
        draws["uv"] = _triangular_ppf(u, lo, a["uv"], hi)
        for r, key in zip(RATES, ("dw", "disp", "attr", "drop"), strict=True):
            u = rng.random((n, k))
            if f"{r}_low" in o.columns and f"{r}_high" in o.columns:
                rl = o[f"{r}_low"].to_numpy(float)
                rh = o[f"{r}_high"].to_numpy(float)
                draws[key] = rl + (rh - rl) * u
            else:
                draws[key] = np.broadcast_to(a[key], (n, k))
        pv = _pv_benefits(
            draws["q"],
            draws["uv"],
            draws["dw"],
            draws["disp"],
            draws["attr"],
            draws["drop"],
            a["dur"],
            self.discount,
        )
        b = pv.sum(axis=1)
        inp = self.inputs
        f_in = inp["uprating_factor"].to_numpy(float)
        disc = (1 + self.discount) ** inp["year"].to_numpy(int)
        u = rng.random((n, len(inp)))
        amounts = _triangular_ppf(
            u,
            inp["amount_low"].to_numpy(float) * f_in,
            inp["amount_uprated"].to_numpy(float),
            inp["amount_high"].to_numpy(float) * f_in,
        )
        c = (amounts / disc).sum(axis=1)
        sims = pd.DataFrame(
            {
                "sim": np.arange(n),
                "pv_benefits": b,
                "pv_inputs": c,
                "npv": b - c,
                "sroi_ratio": _ratio(b, c),
            }
        )
        return dataclasses.replace(self, simulations=sims, seed=seed)

    # ---- released tables and figures
    def tables(self, *, bins: int = 60) -> dict[str, pd.DataFrame]:
        """The SROI tables for the bundle (names as in docs/contracts.md).

        ``sroi_summary`` (glance), ``sroi_by_outcome``, ``sroi_sensitivity`` and,
        when simulated, ``sroi_simulation``: a histogram of the simulated ratio
        (``bin_low``, ``bin_high``, ``share`` of draws - shares, not counts, so
        no small-number rule applies). They hold no person counts; every figure
        can be redrawn from them with :func:`spevidence.sroi.plot_tables`.
        """
        out = {
            "sroi_summary": self.glance(),
            "sroi_by_outcome": self.by_outcome(),
            "sroi_sensitivity": self.sensitivity(),
        }
        if self.simulations is not None:
            r = self.simulations["sroi_ratio"].to_numpy(float)
            r = r[np.isfinite(r)]
            counts, edges = np.histogram(r, bins=bins)
            out["sroi_simulation"] = pd.DataFrame(
                {"bin_low": edges[:-1], "bin_high": edges[1:], "share": counts / max(len(r), 1)}
            )
        return out

    def plot(
        self, kind: Literal["waterfall", "tornado", "simulation"] = "waterfall", *, top: int = 12
    ) -> Figure:
        """Draw the value map (``"waterfall"``), the one-way sensitivity
        (``"tornado"``, ``top`` parameters) or the simulated ratios
        (``"simulation"``); drawn from :meth:`tables` only."""
        if kind == "simulation" and self.simulations is None:
            raise DataError("no simulations to plot; call .simulate(n_sims, seed=...) first.")
        return plot_tables(self.tables(), kind, top=top)


def _triangular_ppf(u: np.ndarray, lo: np.ndarray, mode: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Inverse CDF of Triangular(lo, mode, hi); returns ``mode`` where no range is given."""
    lo = np.where(np.isfinite(lo), lo, mode)
    hi = np.where(np.isfinite(hi), hi, mode)
    width = hi - lo
    with np.errstate(divide="ignore", invalid="ignore"):
        fc = np.where(width > 0, (mode - lo) / width, 0.5)
        left = lo + np.sqrt(u * width * (mode - lo))
        right = hi - np.sqrt((1 - u) * width * (hi - mode))
    out = np.where(u < fc, left, right)
    return np.where(width > 0, out, mode)


# --------------------------------------------------------------------------- public entry


def _check_rate_and_draws(discount: float, n_sims: int) -> None:
    """DataError unless ``discount`` is in [0, 1) and ``n_sims`` a whole number >= 0."""
    if (
        isinstance(discount, bool)
        or not isinstance(discount, (int, float, np.floating))
        or not (0.0 <= float(discount) < 1.0)
    ):
        raise DataError(
            f"discount = {discount!r} is outside [0, 1); give an annual rate, e.g. 0.035 for 3.5 %."
        )
    if isinstance(n_sims, bool) or not isinstance(n_sims, (int, np.integer)) or n_sims < 0:
        raise DataError(f"n_sims = {n_sims!r}; give a whole number >= 0 (0 = no simulation).")


def _uprate(o: pd.DataFrame, i: pd.DataFrame, target: str, index: pd.DataFrame) -> None:
    """Add the uprating factors to ``target`` prices and the uprated values (in place)."""
    fo = uprating_factors(o["price_year"], target, index, table="outcomes", label=o["outcome"])
    fi = uprating_factors(i["price_year"], target, index, table="inputs", label=i["item"])
    o["uprating_factor"] = fo
    o["unit_value_uprated"] = o["unit_value"].to_numpy(float) * fo
    i["uprating_factor"] = fi
    i["amount_uprated"] = i["amount"].to_numpy(float) * fi


def evaluate(
    outcomes: pd.DataFrame,
    inputs: pd.DataFrame,
    *,
    discount: float = 0.035,
    price_year: str | int | None = None,
    n_sims: int = 0,
    seed: int | None = None,
    uprating: pd.DataFrame | None = None,
) -> SROIResult:
    """Social return on investment of an impact map.

    Parameters
    ----------
    outcomes : pandas.DataFrame
        The impact map, one row per outcome: ``outcome``, ``stakeholder``,
        ``quantity`` (units a year; positive = benefit, e.g. avoided events),
        ``unit_value`` (£ per unit, >= 0), ``price_year``, ``source``,
        ``deadweight``, ``attribution``, ``displacement``, ``drop_off`` (fractions
        in [0, 1]), ``duration_years`` (whole years >= 1), ``cashable``; optional
        ``quantity_se``, ``unit_value_low``, ``unit_value_high`` and
        ``<rate>_low``/``<rate>_high``. Build it from DiD estimates with
        :func:`spevidence.sroi.from_did` (deadweight 0: the comparator removed it).
    inputs : pandas.DataFrame
        ``item``, ``amount`` (£ >= 0), ``year`` (0 = first year), ``price_year``,
        ``source``; optional ``amount_low``/``amount_high``; see
        :func:`spevidence.sroi.link_worker_inputs`.
    discount : float, default 0.035
        Annual discount rate (HM Treasury Green Book 3.5 %).
    price_year : str or int, optional
        Price year of the results (``"2024/25"``); default the latest price year
        among the rows. Values are uprated with ``uprating``.
    n_sims : int, default 0
        Monte Carlo draws (see :meth:`SROIResult.simulate`); 0 = none.
    seed : int, optional
        Seed for ``numpy.random.default_rng``.
    uprating : pandas.DataFrame, optional
        Index with ``financial_year`` and ``annual_change_pct``; default the
        shipped NHS Cost Inflation Index (:func:`spevidence.sroi.uprating_index`).

    Returns
    -------
    SROIResult

    References
    ----------
    Cabinet Office (2012). *A guide to Social Return on Investment* (SROI Network).
    HM Treasury (2022). *The Green Book: appraisal and evaluation in central government*.
    """
    o = _validate_outcomes(outcomes)
    i = _validate_inputs(inputs)
    _check_rate_and_draws(discount, n_sims)
    index = uprating_index() if uprating is None else _with_levels(uprating, where="uprating")
    target = (
        max([*o["price_year"], *i["price_year"]])
        if price_year is None
        else normalise_price_year(price_year, where="price_year")
    )
    _uprate(o, i, target, index)
    pv_in = float(np.sum(i["amount_uprated"] / (1 + float(discount)) ** i["year"]))
    if pv_in <= 0:
        raise DataError(
            f"inputs: the {len(i)} input rows sum to £0, so the SROI ratio is undefined; "
            "give the cost of the service (link-worker pay, management, VCSE funding)."
        )
    res = SROIResult(outcomes=o, inputs=i, discount=float(discount), price_year=target)
    if n_sims:
        res = res.simulate(int(n_sims), seed=seed)
    return res
