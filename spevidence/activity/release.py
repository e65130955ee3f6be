"""Disclosure control for the activity, equity, case-finding and wellbeing tables.

Every table goes through :func:`spevidence.disclosure.control` with the count columns
and margins of its entry in the disclosure catalogue
(:data:`spevidence.disclosure.catalogue.ACTIVITY`; counts 1-7 redacted, others rounded
to the nearest 5, by default; a total row and its parts, bands adding up to a count of
another table: secondary suppression). Derived numbers (percentages, rates, means,
medians) that rest on a small count are redacted with
:func:`spevidence.disclosure.redact_derived`. Means and SDs are rounded to the step of
their released count and quantiles given as whole numbers
(``spevidence.disclosure.step``; so a mean of days beside a rounded count cannot tell
which count is the true one), p-values to two significant figures; the rest
(percentages, rates per 1,000 and their intervals, shares, ratios, WELLBY values,
caseloads) are then *recomputed from the rounded counts and means*, so that an exact
rate beside a rounded denominator cannot give the unrounded count back.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd

from spevidence.activity._stats import poisson_exact_interval, wilson_interval
from spevidence.activity.wellbeing import WELLBY_RANGE
from spevidence.disclosure import LOG_COLUMNS, control, redact_derived, release_derived
from spevidence.disclosure.catalogue import ACTIVITY
from spevidence.errors import DisclosureError


def _f(df: pd.DataFrame, col: str) -> np.ndarray:
    return pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def _pct(df: pd.DataFrame, out: str, k: str, n: str) -> None:
    with np.errstate(divide="ignore", invalid="ignore"):
        df[out] = 100.0 * _f(df, k) / _f(df, n)


def _pct_of_sum(df: pd.DataFrame, out: str, k: str, by: list[str] | None = None) -> None:
    v = pd.Series(_f(df, k), index=df.index)
    tot = v.groupby([df[c] for c in by]).transform("sum") if by else pd.Series(v.sum(), df.index)
    with np.errstate(divide="ignore", invalid="ignore"):
        df[out] = (100.0 * v / tot.replace(0, np.nan)).to_numpy()


def _wilson(df: pd.DataFrame, k: str, n: str, lo: str, hi: str, scale: float) -> None:
    a, b = wilson_interval(_f(df, k), _f(df, n))
    miss = np.isnan(_f(df, k)) | np.isnan(_f(df, n))
    df[lo] = np.where(miss, np.nan, scale * a)
    df[hi] = np.where(miss, np.nan, scale * b)


def _rates(df: pd.DataFrame) -> None:
    with np.errstate(divide="ignore", invalid="ignore"):
        df["rate_per_1000"] = 1000.0 * _f(df, "people") / _f(df, "registered")
    _wilson(df, "people", "registered", "conf_low", "conf_high", 1000.0)
    if "referral_rate_per_1000" in df.columns:
        ref, reg = _f(df, "referrals"), _f(df, "registered")
        a, b = poisson_exact_interval(np.nan_to_num(ref))
        with np.errstate(divide="ignore", invalid="ignore"):
            df["referral_rate_per_1000"] = 1000.0 * ref / reg
            df["referral_conf_low"] = np.where(np.isnan(ref), np.nan, 1000.0 * a / reg)
            df["referral_conf_high"] = np.where(np.isnan(ref), np.nan, 1000.0 * b / reg)
    if "need_rate_per_1000" in df.columns:
        with np.errstate(divide="ignore", invalid="ignore"):
            df["need_rate_per_1000"] = 1000.0 * _f(df, "need_referred") / _f(df, "need")
        _wilson(df, "need_referred", "need", "need_conf_low", "need_conf_high", 1000.0)


def _equity_groups(df: pd.DataFrame) -> None:
    _rates(df)
    _pct_of_sum(df, "share_registered", "registered", ["characteristic"])
    _pct_of_sum(df, "share_referred", "people", ["characteristic"])
    with np.errstate(divide="ignore", invalid="ignore"):
        df["representation_ratio"] = _f(df, "share_referred") / _f(df, "share_registered")
    if "share_need" in df.columns:
        _pct_of_sum(df, "share_need", "need", ["characteristic"])
        with np.errstate(divide="ignore", invalid="ignore"):
            df["need_representation_ratio"] = _f(df, "share_referred") / _f(df, "share_need")


def _outcomes(df: pd.DataFrame) -> None:
    _pct(df, "percent", "n", "referrals")
    _wilson(df, "n", "referrals", "conf_low", "conf_high", 100.0)


def _contacts(df: pd.DataFrame) -> None:
    _pct(df, "percent_within_norm", "within_norm", "referrals")
    _wilson(df, "within_norm", "referrals", "conf_low", "conf_high", 100.0)


def _casefinding(df: pd.DataFrame) -> None:
    _pct(df, "percent_flagged", "flagged", "registered")
    if "percent_flagged_referred" in df.columns:
        _pct(df, "percent_flagged_referred", "flagged_referred", "flagged")


def _paired(df: pd.DataFrame) -> None:
    _pct(df, "percent_improved", "improved", "people")
    _pct(df, "percent_worsened", "worsened", "people")


def _wellby(df: pd.DataFrame) -> None:
    # value = mean change x people x years x price: recompute with the rounded people
    scale = _f(df, "people") * _f(df, "duration_years")
    df["wellbys"] = _f(df, "mean_change") * scale
    for out, col, price in (
        ("value", "mean_change", _f(df, "value_per_wellby")),
        ("value_conf_low", "conf_low", _f(df, "value_per_wellby")),
        ("value_conf_high", "conf_high", _f(df, "value_per_wellby")),
        ("value_at_low_price", "mean_change", np.full(len(df), WELLBY_RANGE[0])),
        ("value_at_high_price", "mean_change", np.full(len(df), WELLBY_RANGE[1])),
    ):
        df[out] = _f(df, col) * scale * price


def _caseload(df: pd.DataFrame) -> None:
    per_year = _f(df, "people") * 365.25 / _f(df, "window_days")
    df["caseload_per_year"] = per_year
    with np.errstate(divide="ignore", invalid="ignore"):
        cl = per_year / _f(df, "wte")
    df["caseload_per_wte_year"] = cl
    lo, hi = _f(df, "norm_low"), _f(df, "norm_high")
    df["against_norm"] = np.select(
        [np.isnan(cl), cl < lo, cl > hi], ["unknown", "below", "above"], default="within"
    )


_RECOMPUTE: dict[str, Callable[[pd.DataFrame], None]] = {
    "activity_caseload": _caseload,
    "wellbeing_wellby": _wellby,
    "activity_outcomes": _outcomes,
    "activity_time_to_contact_bands": lambda d: _pct_of_sum(d, "percent", "referrals"),
    "activity_contacts_bands": lambda d: _pct_of_sum(d, "percent", "referrals"),
    "activity_support_duration": lambda d: _pct_of_sum(d, "percent", "referrals"),
    "activity_contacts": _contacts,
    "activity_coding_audit": lambda d: _pct(d, "percent", "n", "referrals"),
    "equity_overall": _rates,
    "equity_by_group": _equity_groups,
    "equity_practice_funnel": _rates,
    "casefinding_by_pcn": _casefinding,
    "casefinding_factors": lambda d: _pct(d, "percent", "people", "registered"),
    "wellbeing_paired_change": _paired,
    "wellbeing_followup_pattern": lambda d: _pct(d, "percent", "people", "referred_people"),
    "wellbeing_followup_by_group": lambda d: _pct(
        d, "percent_with_followup", "with_followup", "people"
    ),
}


def release_tables(
    tables: Mapping[str, pd.DataFrame], *, threshold: int = 7, rounding: int = 5
) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    """Disclosure-control every activity/equity/case-finding/wellbeing table.

    Parameters
    ----------
    tables
        Tables by name, as returned by the ``.tables()`` of the results or by
        :func:`~spevidence.activity.activity_outputs`. Every name must be in the
        catalogue (``spevidence.activity.TABLES``, the activity part of
        ``spevidence.disclosure.CATALOGUE``).
    threshold, rounding
        Passed to :func:`spevidence.disclosure.control` (redact 1..threshold, round the
        rest to the nearest ``rounding``).

    Returns
    -------
    safe, log
        The controlled tables (redacted counts ``<NA>``; derived values recomputed from
        the rounded counts or redacted) and the disclosure log (no original values).
    """
    safe: dict[str, pd.DataFrame] = {}
    logs: list[pd.DataFrame] = []
    for name, df in tables.items():
        spec = ACTIVITY.get(name)
        if spec is None:
            raise DisclosureError(
                f"table {name!r} is not in the activity catalogue: add it to "
                "spevidence.disclosure.catalogue.ACTIVITY with its count columns."
            )
        counts = [c for c in spec.counts if c in df.columns]
        derived = [c for c in spec.derived if c in df.columns]
        out = df.copy()
        if counts and len(out):
            if derived:
                out, log = redact_derived(
                    out, columns=derived, counts=counts, table_name=name, threshold=threshold
                )
                logs.append(log)
            out, log = control(
                out,
                count_columns=counts,
                table_name=name,
                threshold=threshold,
                rounding=rounding,
                margins=tuple(m for m in spec.margins if m.count in counts),
                derived={c: derived for c in counts} if derived else None,
            )
            logs.append(log)
            # means, SDs and quantiles to the step of their released count; then the
            # rates, shares and values recomputed from the released counts and means
            out = release_derived(out, spec, threshold=threshold, rounding=rounding)
            if name in _RECOMPUTE:
                _RECOMPUTE[name](out)
        safe[name] = out
    log = pd.concat(logs, ignore_index=True) if logs else pd.DataFrame(columns=list(LOG_COLUMNS))
    return safe, log
