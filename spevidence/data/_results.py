"""QA report and attrition: frozen results of validation and linkage."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pandas as pd

from spevidence.errors import DataError

Action = Literal["error", "excluded", "set_missing", "warning"]
Stage = Literal["input", "excluded", "kept"]


@dataclass(frozen=True)
class QAIssue:
    """One check that found rows: where, what rule, how many, what was done."""

    table: str
    column: str
    rule: str
    rows: int
    action: Action
    message: str
    first_rows: tuple[int, ...] = ()


@dataclass(frozen=True)
class QAReport:
    """All data-quality findings (one row per table x column x rule that found rows).

    ``action`` is ``"error"`` (validation stopped), ``"excluded"`` (the rows were
    dropped and counted in the attrition), ``"set_missing"`` (an optional value was
    unreadable and set to missing) or ``"warning"`` (kept as is).
    """

    issues: tuple[QAIssue, ...] = ()

    def table(self) -> pd.DataFrame:
        """One row per finding: table, column, rule, rows, action, message."""
        cols = ["table", "column", "rule", "rows", "action", "message"]
        return pd.DataFrame(
            [[getattr(i, c) for c in cols] for i in self.issues], columns=pd.Index(cols)
        ).astype({"rows": "int64"})

    tidy = table

    @property
    def ok(self) -> bool:
        """``True`` when no finding is an error."""
        return not any(i.action == "error" for i in self.issues)

    def by_rule(self, rule: str, table: str | None = None) -> tuple[QAIssue, ...]:
        return tuple(
            i for i in self.issues if i.rule == rule and (table is None or i.table == table)
        )

    def summary(self) -> str:
        if not self.issues:
            return "Data quality: no problems found."
        lines = [f"Data quality: {len(self.issues)} finding(s)."]
        lines += [f"- [{i.action}] {i.message}" for i in self.issues]
        return "\n".join(lines)

    def __len__(self) -> int:
        return len(self.issues)

    def __str__(self) -> str:
        return self.summary()


@dataclass(frozen=True)
class AttritionEntry:
    table: str
    stage: Stage
    reason: str
    rows: int


@dataclass(frozen=True)
class Attrition:
    """Every row in, every row excluded (with its reason), every row kept, per table.

    Reconciles by construction: for each table, rows in = rows kept + Σ excluded.
    ``table()`` is the cohort-flow table (columns table, stage, reason, rows).
    """

    entries: tuple[AttritionEntry, ...] = ()

    @property
    def tables(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(e.table for e in self.entries))

    def rows_in(self, table: str) -> int:
        return sum(e.rows for e in self.entries if e.table == table and e.stage == "input")

    def kept(self, table: str) -> int:
        return sum(e.rows for e in self.entries if e.table == table and e.stage == "kept")

    def excluded(self, table: str) -> dict[str, int]:
        return {
            e.reason: e.rows for e in self.entries if e.table == table and e.stage == "excluded"
        }

    def reconciles(self) -> bool:
        return all(
            self.rows_in(t) == self.kept(t) + sum(self.excluded(t).values()) for t in self.tables
        )

    def check(self) -> Attrition:
        """Return self, or raise DataError if a table does not reconcile."""
        for t in self.tables:
            dropped = sum(self.excluded(t).values())
            if self.rows_in(t) != self.kept(t) + dropped:
                raise DataError(
                    f"{t}: attrition does not reconcile: {self.rows_in(t)} rows in, "
                    f"{self.kept(t)} kept, {dropped} excluded. This is a bug; please report it."
                )
        return self

    def table(self) -> pd.DataFrame:
        cols = ["table", "stage", "reason", "rows"]
        return pd.DataFrame(
            [[e.table, e.stage, e.reason, e.rows] for e in self.entries], columns=pd.Index(cols)
        ).astype({"rows": "int64"})

    tidy = table

    def __add__(self, other: Attrition) -> Attrition:
        return Attrition(self.entries + other.entries)

    def summary(self) -> str:
        lines = []
        for t in self.tables:
            lines.append(f"{t}: {self.rows_in(t)} in, {self.kept(t)} kept")
            lines += [f"  - {r}: {n}" for r, n in self.excluded(t).items()]
        return "\n".join(lines)
