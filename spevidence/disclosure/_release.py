"""Release one table by its catalogue entry (:mod:`spevidence.disclosure.catalogue`)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from spevidence.disclosure._control import LOG_COLUMNS, control, released_count
from spevidence.disclosure._derived import round_statistics, significant, whole_quantiles
from spevidence.disclosure.catalogue import Roles, roles
from spevidence.errors import DisclosureError


def _num(df: pd.DataFrame, col: str) -> np.ndarray:
    return pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def recompute_ratios(table: pd.DataFrame, spec: Roles) -> pd.DataFrame:
    """Each ratio from its released numerator and denominator (missing if either is)."""
    out = table.copy()
    for col, (num, den, scale) in spec.ratios.items():
        if {num, den} <= set(out.columns):
            b = _num(out, den)
            with np.errstate(divide="ignore", invalid="ignore"):
                out[col] = np.where(b > 0, scale * _num(out, num) / b, np.nan)
    return out


def _coefficient_extras(out: pd.DataFrame) -> None:
    """Test statistics and rate ratios from the released (rounded) estimates, in place."""
    if {"statistic", "estimate", "std_error"} <= set(out.columns):
        se = _num(out, "std_error")
        with np.errstate(divide="ignore", invalid="ignore"):
            out["statistic"] = np.where(se > 0, _num(out, "estimate") / se, np.nan)
    for rr, col in (
        ("rate_ratio", "estimate"),
        ("rr_conf_low", "conf_low"),
        ("rr_conf_high", "conf_high"),
    ):
        if rr in out.columns:
            has = np.isfinite(_num(out, rr))
            out[rr] = np.where(has, np.exp(_num(out, col)), np.nan)


Z95 = 1.959963984540054  # the 97.5th percentile of the standard normal


def _naive_changes(out: pd.DataFrame) -> None:
    """The naive before/after percentage changes from the released means, and their 95%
    CIs from the released standard error of the log ratio, in place."""
    comp = {}
    for k in ("before", "after"):
        a = _num(out, f"n_comparator_events_{k}")
        b = _num(out, f"n_comparator_months_{k}")
        with np.errstate(divide="ignore", invalid="ignore"):
            comp[k] = np.where(b > 0, 12.0 * a / b, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        for col, before, after in (
            ("change_pct", _num(out, "mean_before"), _num(out, "mean_after")),
            ("comparator_change_pct", comp["before"], comp["after"]),
        ):
            out[col] = np.where(before > 0, 100.0 * (after - before) / before, np.nan)
    if "change_log_se" in out.columns:  # a 95% CI around the released change
        ratio, se = 1.0 + _num(out, "change_pct") / 100.0, _num(out, "change_log_se")
        for col, z in (("change_conf_low", -Z95), ("change_conf_high", Z95)):
            out[col] = 100.0 * (ratio * np.exp(z * se) - 1.0)


def release_derived(
    table: pd.DataFrame, spec: Roles, *, threshold: int, rounding: int
) -> pd.DataFrame:
    """Ratios, statistics, quantiles, p-values and fixed-decimal numbers of a table whose
    counts are already released (rounded or redacted), by the catalogue's rules."""
    out = recompute_ratios(table, spec)
    out = round_statistics(out, dict(spec.statistics), threshold=threshold, rounding=rounding)
    out = whole_quantiles(out, dict(spec.quantiles), threshold=threshold)
    for col in spec.pvalues:
        if col in out.columns:
            out[col] = significant(out[col])
    for col, decimals in spec.fixed.items():
        if col in out.columns:
            out[col] = np.round(_num(out, col), decimals)
    _coefficient_extras(out)
    if "change_pct" in spec.recomputed:
        _naive_changes(out)
    return out


def _roles(name: str, table: pd.DataFrame) -> Roles:
    spec = roles(name)
    if spec is None:
        raise DisclosureError(
            f"table {name!r} ({len(table)} rows) is not in the disclosure catalogue: add it to "
            "spevidence.disclosure.catalogue with the role of each column."
        )
    return spec


def release(
    name: str, table: pd.DataFrame, *, threshold: int = 7, rounding: int = 5
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Disclosure control of one bundle table by its catalogue entry.

    Counts are redacted and rounded with secondary suppression over the table's margins;
    ratios are then recomputed from the released counts and statistics rounded to the
    step of their released count (or suppressed with it). Raises
    :class:`~spevidence.errors.DisclosureError` for a table that is not catalogued.
    """
    spec = _roles(name, table)
    counts = [c for c in spec.counts if c in table.columns]
    log = pd.DataFrame(columns=list(LOG_COLUMNS))
    out = table
    if counts and len(table):
        margins = tuple(m for m in spec.margins if m.count in counts)
        out, log = control(
            table,
            count_columns=counts,
            table_name=name,
            threshold=threshold,
            rounding=rounding,
            margins=margins,
        )
    return release_derived(out, spec, threshold=threshold, rounding=rounding), log


def release_each(
    tables: Mapping[str, pd.DataFrame], *, threshold: int = 7, rounding: int = 5
) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    """Every table released by its catalogue entry (:func:`release`), and one log.

    The log is empty (no columns) when there are no tables.
    """
    safe: dict[str, pd.DataFrame] = {}
    logs = []
    for name, table in tables.items():
        safe[name], log = release(name, table, threshold=threshold, rounding=rounding)
        logs.append(log)
    log = pd.concat(logs, ignore_index=True) if logs else pd.DataFrame()
    return safe, log


def as_released(
    name: str, table: pd.DataFrame, *, threshold: int = 7, rounding: int = 5
) -> pd.DataFrame:
    """The derived numbers of a table as :func:`release` will give them, its counts exact.

    Each count is taken at its released value (:func:`released_count`, one cell at a
    time: no margins), the ratios, statistics and p-values are released from those by the
    catalogue entry of ``name`` (a statistic resting on a redacted count is withheld), and
    the counts are then put back as they were (they are released later, with the table).
    Use it where a later stage computes with estimates (e.g. the SROI values them), so
    that no released number gives an exact estimate back.
    """
    spec = _roles(name, table)
    counts = [c for c in spec.counts if c in table.columns]
    shown = {
        c: pd.array(
            [
                pd.NA
                if pd.isna(v)
                else released_count(int(v), threshold=threshold, rounding=rounding)
                for v in pd.to_numeric(table[c], errors="coerce")
            ],
            dtype="Int64",
        )
        for c in counts
    }
    out = release_derived(table.assign(**shown), spec, threshold=threshold, rounding=rounding)
    for c in counts:
        out[c] = table[c].to_numpy()
    return out
