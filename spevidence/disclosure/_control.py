"""Statistical disclosure control for released aggregate tables.

Rules (DOMAIN.md; OpenSAFELY output-checking defaults; NHS England HES analysis
guide): counts from 1 to ``threshold`` (7) are redacted, every other count is
rounded to the nearest ``rounding`` (5), and secondary suppression makes sure a
redacted cell cannot be recovered by subtraction from a released total.

Zero counts are released as 0 by default: both guides redact 1-7, and a zero is
a multiple of 5 (``redact_zero=True`` redacts them too, e.g. when "nobody in
this group" is itself sensitive).

Redacted cells become missing (pandas ``<NA>`` in nullable ``Int64`` count
columns). In CSV write them as the marker :data:`REDACTED`
(``safe.to_csv(path, na_rep=REDACTED)``) so a reader can tell a redaction from
an empty cell.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from spevidence.errors import DisclosureError

REDACTED = "[REDACTED]"
LOG_COLUMNS: tuple[str, ...] = ("table", "column", "row", "action", "reason")
Totals = Literal["rows", "columns", "both"]
Cell = tuple[int, int]
# a set of cells whose sum is released: (kind, cells, the cell holding that sum in this
# table, if it is here)
Line = tuple[str, list[Cell], Cell | None]


@dataclass(frozen=True)
class Margin:
    """Count cells of one table that add up to a released total.

    Within each block of rows sharing the values of ``within``, the cells of the count
    column ``count`` add up to a total that is released: in this table, on the rows whose
    column ``total[0]`` holds the label ``total[1]`` (e.g. ``("referral_source", "All
    sources")``), or in another table (``total=None``; e.g. time-to-contact bands adding up
    to the referrals of another table).
    """

    count: str
    within: tuple[str, ...] = ()
    total: tuple[str, str] | None = None


def _row_labels(table: pd.DataFrame) -> list[str]:
    if isinstance(table.index, pd.RangeIndex):
        return [str(i) for i in range(len(table))]
    return [str(v) for v in table.index]


def _counts(table: pd.DataFrame, columns: list[str], table_name: str) -> np.ndarray:
    """Counts as a float array (NaN = missing); errors name table, column and row count."""
    out = np.empty((len(table), len(columns)), dtype=float)
    for j, c in enumerate(columns):
        v = pd.to_numeric(table[c], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        bad_type = table[c].notna().to_numpy() & np.isnan(v)
        if bad_type.any():
            raise DisclosureError(
                f"{table_name}.{c}: {int(bad_type.sum())} value(s) are not numbers; "
                "count columns must hold whole non-negative counts."
            )
        finite = np.isfinite(v)
        bad = finite & ((v < 0) | (v != np.round(v)))
        if bad.any():
            raise DisclosureError(
                f"{table_name}.{c}: {int(bad.sum())} value(s) are negative or not whole numbers; "
                "pass only counts here and control derived numbers with derived= or "
                "redact_derived()."
            )
        out[:, j] = v
    return out


def _lines(
    table: pd.DataFrame, n_cols: int, totals: Totals | None, group_by: list[str] | None
) -> list[Line]:
    """Sets of cells whose sum is released (by this table or elsewhere)."""
    lines: list[Line] = []
    n = len(table)
    if totals in ("columns", "both"):
        if group_by:
            codes = table.groupby(group_by, sort=False, dropna=False).ngroup().to_numpy()
        else:
            codes = np.zeros(n, dtype=int)
        for g in np.unique(codes):
            rows = np.flatnonzero(codes == g).tolist()
            for j in range(n_cols):
                lines.append(("column total", [(i, j) for i in rows], None))
    if totals in ("rows", "both"):
        for i in range(n):
            lines.append(("row total", [(i, j) for j in range(n_cols)], None))
    return lines


def _margin_lines(
    table: pd.DataFrame, count_columns: list[str], margins: Sequence[Margin], table_name: str
) -> list[Line]:
    """The lines of declared margins: each block's parts, and its total row if it is here."""
    lines: list[Line] = []
    for m in margins:
        cols = [m.count, *m.within, *([m.total[0]] if m.total else [])]
        missing = [c for c in cols if c not in table.columns]
        if missing or m.count not in count_columns:
            raise DisclosureError(
                f"{table_name}: margin on {m.count!r} names column(s) not in the table or not "
                f"a count ({missing or [m.count]}); fix the disclosure catalogue."
            )
        j = count_columns.index(m.count)
        is_total = (
            (table[m.total[0]].astype(str) == m.total[1]).to_numpy()
            if m.total
            else np.zeros(len(table), dtype=bool)
        )
        keys = (
            table.groupby(list(m.within), sort=False, dropna=False).ngroup().to_numpy()
            if m.within
            else np.zeros(len(table), dtype=int)
        )
        for g in np.unique(keys):
            rows = np.flatnonzero((keys == g) & ~is_total).tolist()
            tot = np.flatnonzero((keys == g) & is_total).tolist()
            total_cell = (tot[0], j) if tot else None
            lines.append(("margin", [(i, j) for i in rows], total_cell))
    return lines


def _determined(mask: np.ndarray, raw: np.ndarray, lines: list[Line]) -> list[tuple[int, int]]:
    """Redacted cells whose value the released totals pin down.

    Worst case: the reader knows every total and every released cell exactly
    (unrounded). For each redacted cell, a linear programme finds the smallest and
    largest value consistent with the totals and non-negativity; the cell is
    recoverable when the two coincide.
    """
    cells = [(int(c[0]), int(c[1])) for c in np.argwhere(mask)]
    if not cells or not lines:
        return []
    pos = {c: k for k, c in enumerate(cells)}
    a_rows, b_vals = [], []
    for _, line, _tot in lines:
        r = np.zeros(len(cells))
        rhs = 0.0
        for c in line:
            if c in pos and np.isfinite(raw[c]):
                r[pos[c]] = 1.0
                rhs += float(raw[c])
        if r.any():
            a_rows.append(r)
            b_vals.append(rhs)
    if not a_rows:
        return []
    a_eq = np.vstack(a_rows)
    b_eq = np.asarray(b_vals)
    # equalities alone: a cell is fixed iff every null-space direction leaves it unchanged
    from scipy.linalg import null_space

    ns = null_space(a_eq)
    fixed = np.ones(len(cells), dtype=bool) if ns.size == 0 else np.linalg.norm(ns, axis=1) < 1e-9
    out = [c for c, k in pos.items() if fixed[k] and a_eq[:, k].any()]
    # non-negativity can pin a cell only when some redacted cells are zero (the true
    # point is then on the boundary); otherwise the equality test is exact
    if not any(raw[c] == 0 for c in cells):
        return out
    from scipy.optimize import linprog

    for c, k in pos.items():
        if fixed[k] or not a_eq[:, k].any():
            continue
        obj = np.zeros(len(cells))
        obj[k] = 1.0
        lo = linprog(obj, A_eq=a_eq, b_eq=b_eq, bounds=(0, None), method="highs")
        hi = linprog(-obj, A_eq=a_eq, b_eq=b_eq, bounds=(0, None), method="highs")
        if lo.status == 0 and hi.status == 0 and (-hi.fun - lo.fun) < 0.5:
            out.append(c)
    return out


def _pick(line: list[tuple[int, int]], mask: np.ndarray, raw: np.ndarray) -> tuple[int, int] | None:
    """The smallest released cell of a line (positive counts first, then zeros)."""
    cand = [c for c in line if not mask[c] and np.isfinite(raw[c])]
    if not cand:
        return None
    pos = [c for c in cand if raw[c] > 0]
    pool = pos or cand
    return min(pool, key=lambda c: (raw[c], c))


def _blank_derived(
    safe: pd.DataFrame,
    column: str,
    hit: np.ndarray,
    table_name: str,
    labels: list[str],
    reason: str,
) -> list[dict[str, str]]:
    """Set ``safe[column]`` missing in rows ``hit`` (in place); return the log rows."""
    if not len(hit):
        return []
    col = (
        safe[column].astype("float64")
        if pd.api.types.is_numeric_dtype(safe[column])
        else safe[column].astype(object)
    )
    col.iloc[hit] = np.nan
    safe[column] = col
    return [
        {
            "table": table_name,
            "column": column,
            "row": labels[i],
            "action": "redacted_derived",
            "reason": reason,
        }
        for i in hit
    ]


def _round(v: np.ndarray, rounding: int, threshold: int) -> np.ndarray:
    r = np.floor(v / rounding + 0.5) * rounding
    # never release a rounded value inside 1..threshold
    floor_ok = (threshold // rounding + 1) * rounding
    return np.where((r > 0) & (r <= threshold), floor_ok, r)


def control(
    table: pd.DataFrame,
    *,
    count_columns: list[str],
    table_name: str,
    threshold: int = 7,
    rounding: int = 5,
    totals: Totals | None = None,
    group_by: list[str] | None = None,
    derived: dict[str, list[str]] | None = None,
    redact_zero: bool = False,
    margins: Sequence[Margin] = (),
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Make a table of counts safe to release.

    Parameters
    ----------
    table : pandas.DataFrame
        An aggregate table (never person-level data).
    count_columns : list of str
        Columns holding counts (whole numbers >= 0; missing allowed and kept).
    table_name : str
        Name used in the log and in error messages.
    threshold : int, default 7
        Counts 1..threshold are redacted (primary suppression).
    rounding : int, default 5
        Other counts are rounded to the nearest multiple (halves up); a rounded
        value that would fall in 1..threshold is raised to the next multiple above
        it. ``rounding=1`` switches rounding off.
    totals : {"rows", "columns", "both"}, optional
        Which sums of the counts are released (in this table or elsewhere):
        ``"columns"`` - the sum of each count column (within each ``group_by``
        block); ``"rows"`` - the sum across ``count_columns`` of each row. Every
        line with a redacted cell then gets a second redaction (the smallest other
        positive count), and a linear-programming check adds more until no
        redacted cell can be recovered exactly from the totals. ``None``: no totals are released.
    group_by : list of str, optional
        Columns defining blocks whose column totals are released (e.g. the
        characteristic in a Table 1: the levels of sex add up to the group size).
    derived : dict, optional
        ``{count_column: [derived columns]}``: numbers computed from that count in
        the same row (rates, percentages, means) are redacted wherever the count
        is redacted. Compute them from the *rounded* counts, or an exact rate with
        a known denominator gives the unrounded count back.
    redact_zero : bool, default False
        Also redact zero counts.
    margins : sequence of Margin, optional
        Parts and totals this table shares with itself or other tables (a total row and
        its parts; bands adding up to a count released elsewhere). A line whose total is
        released never has exactly one redacted part: a second part is redacted, or, if
        there is none, the total row itself.

    Returns
    -------
    safe : pandas.DataFrame
        Copy of ``table``: count columns as nullable ``Int64``, redacted cells
        ``<NA>``, the rest rounded; derived cells of redacted counts ``NaN``.
    log : pandas.DataFrame
        ``table``, ``column``, ``row`` (index label, or row number), ``action``
        (``redacted_primary``, ``redacted_secondary``, ``redacted_derived``,
        ``rounded``) and ``reason``. Original values of redacted cells are never
        written.

    Raises
    ------
    DisclosureError
        Bad counts, unknown columns, or a redacted cell that is the only count of
        a released total (then do not release that total).
    """
    count_columns, derived = _check_arguments(
        table,
        count_columns,
        table_name,
        threshold=threshold,
        rounding=rounding,
        totals=totals,
        group_by=group_by,
        derived=derived,
    )
    raw = _counts(table, count_columns, table_name)
    finite = np.isfinite(raw)
    primary = finite & (raw >= 1) & (raw <= threshold)
    if redact_zero:
        primary |= finite & (raw == 0)
    lines = _lines(table, len(count_columns), totals, group_by)
    lines += _margin_lines(table, count_columns, margins, table_name)
    state = _Suppression(
        mask=primary.copy(),
        raw=raw,
        labels=_row_labels(table),
        count_columns=count_columns,
        table_name=table_name,
    )
    # with disjoint totals (rows only or columns only) two redactions per line
    # suffice unless redacted zeros sum to zero; crossed totals need the LP check
    need_lp = totals == "both" or (redact_zero and totals is not None) or len(margins) > 1
    _suppress_secondary(state, lines, need_lp=need_lp)
    return _released(table, state, primary, derived, threshold=threshold, rounding=rounding)


def _check_arguments(
    table: pd.DataFrame,
    count_columns: list[str],
    table_name: str,
    *,
    threshold: int,
    rounding: int,
    totals: Totals | None,
    group_by: list[str] | None,
    derived: dict[str, list[str]] | None,
) -> tuple[list[str], dict[str, list[str]]]:
    """The arguments of :func:`control` checked; the count columns and ``derived``."""
    if not isinstance(table, pd.DataFrame):
        raise DisclosureError(
            f"{table_name}: expected a pandas DataFrame, got {type(table).__name__}."
        )
    count_columns = list(count_columns)
    if not count_columns:
        raise DisclosureError(
            f"{table_name}: count_columns is empty; name the columns that hold counts."
        )
    missing = [c for c in [*count_columns, *(group_by or [])] if c not in table.columns]
    if missing:
        raise DisclosureError(
            f"{table_name}: column(s) {missing} not in the table ({len(table)} rows)."
        )
    for name, v, lo in (("threshold", threshold, 0), ("rounding", rounding, 1)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
            raise DisclosureError(f"{table_name}: {name} = {v!r}; give a whole number >= {lo}.")
    if totals not in (None, "rows", "columns", "both"):
        raise DisclosureError(
            f"{table_name}: totals = {totals!r}; use None, 'rows', 'columns' or 'both'."
        )
    derived = dict(derived or {})
    for c, cols in derived.items():
        if c not in count_columns:
            raise DisclosureError(f"{table_name}: derived key {c!r} is not one of count_columns.")
        bad = [d for d in cols if d not in table.columns]
        if bad:
            raise DisclosureError(f"{table_name}: derived column(s) {bad} not in the table.")
    return count_columns, derived


@dataclass(frozen=True)
class _Suppression:
    """The redaction pattern as it grows: ``mask`` and ``secondary_reason`` change."""

    mask: np.ndarray
    raw: np.ndarray
    labels: list[str]
    count_columns: list[str]
    table_name: str
    secondary_reason: dict[Cell, str] = field(default_factory=dict)


def _protect_line(s: _Suppression, kind: str, line: list[Cell], total: Cell | None) -> bool:
    """Redact a second cell of a line with exactly one redaction; ``True`` if it did."""
    mask = s.mask
    if total is not None and mask[total]:
        return False  # its total is not released
    k = sum(bool(mask[c]) for c in line)
    if k != 1:
        return False
    pick = _pick(line, mask, s.raw)
    if pick is None and total is not None:
        pick = total  # the only part: its total row goes with it
    elif pick is None and kind == "margin":
        return False  # the part is its total, controlled where that is released
    if pick is None:
        only = next(c for c in line if mask[c])
        raise DisclosureError(
            f"{s.table_name}: row {s.labels[only[0]]}, column {s.count_columns[only[1]]!r} is "
            f"redacted and is the only count in its {kind}, so that total would reveal it; "
            "do not release that total (change totals=/group_by=) or merge categories."
        )
    mask[pick] = True
    s.secondary_reason[pick] = f"secondary suppression: protects a redacted cell sharing its {kind}"
    return True


def _suppress_secondary(s: _Suppression, lines: list[Line], *, need_lp: bool) -> None:
    """Add secondary redactions until no line and (``need_lp``) no LP recovers a cell."""
    mask, raw = s.mask, s.raw
    for _ in range(10 * (raw.size + 1)):
        changed = False
        for kind, line, total in lines:
            changed |= _protect_line(s, kind, line, total)
        if changed:
            continue
        det = _determined(mask, raw, [ln for ln in lines if ln[2] is None or not mask[ln[2]]])
        det = det if need_lp else []
        if not det:
            break
        # a chain of redactions still pins a cell down: widen the pattern around it
        cell = det[0]
        for kind, line, _total in lines:
            if cell in line:
                pick = _pick(line, mask, raw)
                if pick is not None:
                    mask[pick] = True
                    s.secondary_reason[pick] = (
                        f"secondary suppression: a redacted cell was recoverable from the {kind}s"
                    )
                    break
        else:
            raise DisclosureError(
                f"{s.table_name}: cannot protect row {s.labels[cell[0]]}, "
                f"column {s.count_columns[cell[1]]!r} "
                "from the released totals; release fewer totals or merge categories."
            )
    else:  # pragma: no cover - each pass adds a redaction, so this cannot be reached
        raise DisclosureError(f"{s.table_name}: secondary suppression did not settle.")


def _released(
    table: pd.DataFrame,
    s: _Suppression,
    primary: np.ndarray,
    derived: dict[str, list[str]],
    *,
    threshold: int,
    rounding: int,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The safe copy of ``table`` (redacted, rounded, derived cells blanked) and its log."""
    mask, raw, labels, table_name = s.mask, s.raw, s.labels, s.table_name
    finite = np.isfinite(raw)
    released = np.where(
        mask | ~finite,
        np.nan,
        _round(np.where(finite, raw, 0.0), rounding, threshold) if rounding > 1 else raw,
    )
    safe = table.copy()
    log_rows: list[dict[str, str]] = []
    for j, c in enumerate(s.count_columns):
        safe[c] = pd.array([None if np.isnan(x) else int(x) for x in released[:, j]], dtype="Int64")
        for i in np.flatnonzero(mask[:, j]):
            if primary[i, j]:
                action = "redacted_primary"
                reason = (
                    "zero count (redact_zero=True)"
                    if raw[i, j] == 0
                    else f"count between 1 and {threshold}"
                )
            else:
                action, reason = "redacted_secondary", s.secondary_reason[(int(i), j)]
            log_rows.append(
                {
                    "table": table_name,
                    "column": c,
                    "row": labels[i],
                    "action": action,
                    "reason": reason,
                }
            )
        n_round = int((finite[:, j] & ~mask[:, j]).sum())
        if rounding > 1 and n_round:
            log_rows.append(
                {
                    "table": table_name,
                    "column": c,
                    "row": "all",
                    "action": "rounded",
                    "reason": f"{n_round} released count(s) rounded to the nearest {rounding}",
                }
            )
        hit = np.flatnonzero(mask[:, j])
        for d in derived.get(c, []):
            log_rows += _blank_derived(
                safe, d, hit, table_name, labels, f"derived from redacted count {c!r}"
            )
    log = pd.DataFrame(log_rows, columns=list(LOG_COLUMNS))
    return safe, log


def released_count(n: int, *, threshold: int = 7, rounding: int = 5) -> int | None:
    """The value one count takes in a released table: what :func:`control` gives it.

    Use it where a count enters a released number other than a table cell (e.g. the
    people an SROI values), so the exact count cannot be worked back from that number.

    Parameters
    ----------
    n : int
        A count (whole number >= 0).
    threshold, rounding : int
        As for :func:`control`.

    Returns
    -------
    int or None
        ``None`` when the count is redacted (1..``threshold``), else the rounded count.

    Examples
    --------
    >>> released_count(402), released_count(5), released_count(0)
    (400, None, 0)
    """
    safe, _ = control(
        pd.DataFrame({"n": [n]}),
        count_columns=["n"],
        table_name="count",
        threshold=threshold,
        rounding=rounding,
    )
    v = safe["n"].iloc[0]
    return None if pd.isna(v) else int(v)


def redact_derived(
    table: pd.DataFrame,
    *,
    columns: list[str],
    counts: list[str],
    table_name: str,
    threshold: int = 7,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Redact derived numbers (rates, means, percentages) that rest on small counts.

    In every row where any of ``counts`` (raw numerators or denominators) is in
    1..``threshold``, the ``columns`` become missing. The count columns
    themselves are left as they are: pass them through :func:`control` (or drop
    them) before release.

    Returns
    -------
    safe, log : pandas.DataFrame
        As for :func:`control`, with action ``redacted_derived``.
    """
    if not isinstance(table, pd.DataFrame):
        raise DisclosureError(
            f"{table_name}: expected a pandas DataFrame, got {type(table).__name__}."
        )
    missing = [c for c in [*columns, *counts] if c not in table.columns]
    if missing:
        raise DisclosureError(
            f"{table_name}: column(s) {missing} not in the table ({len(table)} rows)."
        )
    raw = _counts(table, list(counts), table_name)
    small = ((raw >= 1) & (raw <= threshold)).any(axis=1)
    safe = table.copy()
    labels = _row_labels(table)
    hit = np.flatnonzero(small)
    reason = f"rests on a count between 1 and {threshold} ({', '.join(counts)})"
    log_rows = []
    for d in columns:
        log_rows += _blank_derived(safe, d, hit, table_name, labels, reason)
    return safe, pd.DataFrame(log_rows, columns=list(LOG_COLUMNS))


def check(
    table: pd.DataFrame,
    *,
    count_columns: list[str],
    table_name: str,
    threshold: int = 7,
    rounding: int = 5,
) -> None:
    """Raise :class:`DisclosureError` if a released count breaks the rules.

    Checks that no non-missing count lies in 1..``threshold`` and every count is a
    multiple of ``rounding``. Use it on tables just before they leave the secure
    environment (e.g. when writing the bundle).
    """
    missing = [c for c in count_columns if c not in table.columns]
    if missing:
        raise DisclosureError(
            f"{table_name}: column(s) {missing} not in the table ({len(table)} rows)."
        )
    for c in count_columns:
        v = pd.to_numeric(table[c], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        v = v[np.isfinite(v)]
        small = int(((v >= 1) & (v <= threshold)).sum())
        if small:
            raise DisclosureError(
                f"{table_name}.{c}: {small} count(s) between 1 and {threshold} would be released; "
                "pass the table through spevidence.disclosure.control() first."
            )
        off = int((np.mod(v, rounding) != 0).sum()) if rounding > 1 else 0
        if off:
            raise DisclosureError(
                f"{table_name}.{c}: {off} count(s) are not multiples of {rounding}; "
                "pass the table through spevidence.disclosure.control() first."
            )
