"""Checks that stop a run whose extracts would make it silently wrong (issue 19).

Four checks run at the end of validation, on the counts validation already made:

- **Empty extracts**: a required extract with a header and no rows stops the run.
- **Row loss**: a table that loses more than ``max_row_loss`` (default 5 %) of its usable
  rows stops the run, naming the table, the count, the share and the reasons. Usable
  rows are the rows read less those excluded for expected reasons: exact repeats of a
  row (the first copy is kept), events outside the study window, and events outside
  the person's registration spells (they were registered elsewhere then). Every other
  exclusion counts as lost (unreadable or missing values, unknown codes, invalid NHS
  numbers, people not in the population extract, events after death or before birth).
- **Coverage of the study window**: every event extract (GP appointments, A&E,
  admissions) must have rows in every month of the study window; referrals in every
  month from the first month with a referral (a service may start inside the window)
  to the end. A run of empty months at the start, the end or inside the window stops
  the run when the table is busy enough that the run cannot be empty by chance: when
  the table's average month (rows in the window / months in the window) would have
  put at least ``EXPECTED_IN_GAP`` (10) rows into it, so that the chance of seeing none
  is below 1 in 20,000 (Poisson). No whole month may be missing; a month that is only
  partly covered (an extract taken mid-month) is not detected, so set ``end`` to the
  last complete month. A table with no rows kept in the window stops too, unless it
  was empty or stopped for losing more rows than it set aside as expected (that loss
  is then the message).
- **No accepted referral**: referrals kept, none with the outcome ``accepted``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace

import ibis.expr.types as ir

from spevidence.data._results import Attrition, QAIssue

MAX_ROW_LOSS = 0.05
EXPECTED_IN_GAP = 10.0
REQUIRED_TABLES = ("population", "referrals", "gp_appointments", "ae_attendances", "admissions")
COVERED_TABLES = ("gp_appointments", "ae_attendances", "admissions", "referrals")
# exclusions that lose no information the evaluation should have had
EXPECTED_EXCLUSIONS = ("duplicate_row", "outside_study_window", "outside_registration")
# what most often causes each kind of loss, as a reader would say it
_CAUSES = {
    "not_in_population": (
        "for people not in the population extract",
        "most often the extract was pseudonymised with a different key, or covers other "
        "practices or dates",
    ),
    "invalid_nhs_number": (
        "with an invalid NHS number",
        "if person_id already holds pseudonyms, set ids: pseudonym",
    ),
    "unreadable_value": ("with a value that cannot be read", "check the date format and delimiter"),
    "missing_value": ("with a required value empty", ""),
    "unknown_code": ("with a code outside the allowed values", "see docs/contracts.md"),
    "missing_id": ("with no person_id", ""),
    "after_death": ("dated after the person's death", ""),
    "born_after_event": ("dated before the person's year of birth", ""),
}


@dataclass(frozen=True)
class RowLoss:
    """Rows one table lost to validation, of the rows it should have been able to use."""

    table: str
    usable: int
    lost: int
    reasons: tuple[tuple[str, int], ...]
    expected: int = 0  # excluded for expected reasons (repeats, outside window/registration)

    @property
    def share(self) -> float:
        return self.lost / self.usable if self.usable else 0.0

    def describe(self) -> str:
        why = "; ".join(_cause(r, n) for r, n in self.reasons)
        also = (
            f" ({self.expected} more rows were outside the study window or the registration "
            "spells, or repeated rows, as expected)"
            if self.expected
            else ""
        )
        return (
            f"{self.table}: {self.lost} of {self.usable} usable rows ({pct(self.share)}) were "
            f"excluded: {why}{also}"
        )


def pct(share: float) -> str:
    """A share as a percentage to three significant digits: 5%, 5.4% (not "5%"), 50%."""
    return f"{share * 100:.3g}%"


def _rule(reason: str) -> str:
    return reason.split(" (", 1)[0]


def _cause(reason: str, n: int) -> str:
    """ "4 rows with a value that cannot be read in appointment_date (check ...)"."""
    rule = _rule(reason)
    what, hint = _CAUSES.get(rule, ("excluded as " + rule.replace("_", " "), ""))
    col = reason[len(rule) :].strip(" ()")
    text = f"{n} row{'s' if n != 1 else ''} {what}"
    text += f" in {col}" if col and col != "person_id" else ""
    return text + (f" ({hint})" if hint else "")


def row_losses(attrition: Attrition) -> list[RowLoss]:
    """Per table: usable rows, rows lost and why (from validation's attrition)."""
    out = []
    for t in attrition.tables:
        excluded = attrition.excluded(t)
        expected = sum(n for r, n in excluded.items() if _rule(r) in EXPECTED_EXCLUSIONS)
        lost = {r: n for r, n in excluded.items() if _rule(r) not in EXPECTED_EXCLUSIONS}
        reasons = tuple(sorted(lost.items(), key=lambda kv: (-kv[1], kv[0])))
        n_lost = sum(lost.values())
        out.append(RowLoss(t, attrition.rows_in(t) - expected, n_lost, reasons, expected))
    return out


_LOSS_FIX = (
    "Fix: correct the extract at source; only if the loss is understood and cannot bias the "
    "comparison, raise qa.max_row_loss in the protocol (--max-row-loss for validate and "
    "link); the report then says so."
)


def _issue(table: str, rule: str, rows: int, message: str, *, column: str = "*") -> QAIssue:
    return QAIssue(table, column, rule, rows, "error", message)


def check_row_loss(attrition: Attrition, max_row_loss: float) -> list[QAIssue]:
    """Errors for tables over the bar; warnings for tables over the default but within a
    bar the protocol raised (``qa.max_row_loss``), which the report's summary states."""
    out: list[QAIssue] = []
    for loss in row_losses(attrition):
        if loss.lost == 0:
            continue
        if loss.share > max_row_loss:
            bar = f"That is more than the {pct(max_row_loss)} a table may lose (qa.max_row_loss)."
            left = f"No rows of {loss.table} are left."
            msg = f"{loss.describe()}. {left if loss.lost == loss.usable else bar}"
            out.append(_issue(loss.table, "row_loss", loss.lost, msg))
        elif loss.share > MAX_ROW_LOSS:
            msg = (
                f"{loss.describe()}. That is more than the default {pct(MAX_ROW_LOSS)}, within "
                f"the {pct(max_row_loss)} allowed (qa.max_row_loss); the report's summary says so."
            )
            out.append(
                QAIssue(loss.table, "*", "row_loss_above_default", loss.lost, "warning", msg)
            )
    errors = [i for i in out if i.action == "error"]
    if errors:  # the fix once, after the last table
        last = errors[-1]
        out[out.index(last)] = replace(last, message=f"{last.message} {_LOSS_FIX}")
    return out


def check_empty(attrition: Attrition) -> list[QAIssue]:
    """A required extract with a header and no rows."""
    return [
        _issue(
            t,
            "empty_extract",
            0,
            f"{t}: the extract has a header but no rows. Fix: export {t} again; an evaluation "
            "needs every extract for the whole study window.",
        )
        for t in REQUIRED_TABLES
        if t in attrition.tables and attrition.rows_in(t) == 0
    ]


def check_accepted(referrals: ir.Table, kept: int) -> list[QAIssue]:
    """Referrals kept, none of them accepted: nobody counts as referred."""
    if not kept or int(referrals.filter(referrals.outcome == "accepted").count().execute()):
        return []
    msg = (
        f"referrals: none of the {kept} referrals kept has the outcome 'accepted', so nobody "
        "counts as referred. Fix: check the outcome column (accepted, declined, "
        "did_not_engage) or map your codes onto them."
    )
    return [_issue("referrals", "no_accepted_referral", 0, msg, column="outcome")]


def _month(d: dt.date) -> int:
    return d.year * 12 + d.month - 1


def _label(m: int) -> str:
    return f"{m // 12}-{m % 12 + 1:02d}"


def _months(m: int) -> str:
    return f"{m} month{'s' if m != 1 else ''}"


def _monthly(table: ir.Table, col: str, start: dt.date, end: dt.date) -> tuple[dict[int, int], int]:
    """Rows per month (as year*12 + month-1) inside the window; and the first month with
    a row in the whole table (or -1 when it is empty)."""
    d = table[col]
    inside = d.between(start, end)
    m = d.year().cast("int64") * 12 + d.month().cast("int64") - 1
    recs = (
        table.group_by(_m=m)
        .aggregate(n=inside.cast("int64").sum())
        .order_by("_m")
        .to_pyarrow()
        .to_pylist()
    )
    counts = {int(r["_m"]): int(r["n"]) for r in recs if r["_m"] is not None and r["n"]}
    first = min((int(r["_m"]) for r in recs if r["_m"] is not None), default=-1)
    return counts, first


def _gaps(months: range, counts: dict[int, int]) -> list[tuple[int, int]]:
    """Runs of consecutive empty months, as (first, last)."""
    runs: list[tuple[int, int]] = []
    for m in months:
        if counts.get(m, 0):
            continue
        if runs and runs[-1][1] == m - 1:
            runs[-1] = (runs[-1][0], m)
        else:
            runs.append((m, m))
    return runs


_COVERAGE_FIX = {
    "none": "Fix: supply the extracts for the study window, or move `start`/`end` in the "
    "protocol (--start/--end for validate and link) to the dates they cover.",
    "end": "Fix: shorten `end` in the protocol (--end for validate and link) or supply the "
    "missing months.",
    "start": "Fix: move `start` later in the protocol (--start for validate and link) or "
    "supply the missing months.",
    "gap": "Fix: supply the missing months; an empty month would be counted as no use.",
}


def check_coverage(
    tables: dict[str, ir.Table], date_columns: dict[str, str], start: dt.date, end: dt.date
) -> list[QAIssue]:
    """Errors for event extracts that do not cover the study window (see module doc).
    Each kind of gap states its fix once, after the last table with it."""
    found: list[tuple[str, QAIssue]] = []
    for name in COVERED_TABLES:
        if name not in tables:
            continue
        col = date_columns[name]
        for kind, msg in _table_gaps(name, tables[name], col, start, end):
            found.append((kind, _issue(name, "months_missing", 0, msg, column=col)))
    out = [i for _, i in found]
    for kind, fix in _COVERAGE_FIX.items():
        last = [n for n, (k, _) in enumerate(found) if k == kind]
        if last:
            out[last[-1]] = replace(out[last[-1]], message=f"{out[last[-1]].message} {fix}")
    return out


def _table_gaps(
    name: str, table: ir.Table, col: str, start: dt.date, end: dt.date
) -> list[tuple[str, str]]:
    """(kind, message) for each run of months of the window the table does not cover."""
    counts, first = _monthly(table, col, start, end)
    lo, hi = _month(start), _month(end)
    if name == "referrals":
        lo = max(lo, first)  # a service may start inside the window
    total = sum(counts.values())
    if total == 0:  # (first < 0: no rows kept at all)
        return [("none", f"{name}: none of the rows kept falls in the study window {start} "
                 f"to {end}.")]  # fmt: skip
    rate = total / (hi - lo + 1)
    return [
        _gap(name, a, b, lo, hi, rate)
        for a, b in _gaps(range(lo, hi + 1), counts)
        if (b - a + 1) * rate >= EXPECTED_IN_GAP
    ]


def _gap(name: str, a: int, b: int, lo: int, hi: int, rate: float) -> tuple[str, str]:
    k = _months(b - a + 1)
    if b == hi:
        return "end", (
            f"{name}: no rows after {_label(a - 1)}; the study window ends {_label(hi)} "
            f"({k} missing)."
        )
    if a == lo:
        return "start", (
            f"{name}: no rows before {_label(b + 1)}; the study window starts {_label(lo)} "
            f"({k} missing)."
        )
    span = _label(a) if a == b else f"{_label(a)} to {_label(b)}"
    return "gap", (
        f"{name}: no rows in {span} ({k}), although the table has about {rate:.0f} rows a "
        "month around it."
    )
