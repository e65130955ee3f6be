"""Whole tables lost to their identifiers: a plain error instead of an empty analysis.

Read from the attrition only (counts, never a value). A table whose every row fails the
NHS-number check holds pseudonyms (or something else), not NHS numbers; event tables of
which no row belongs to a person in the population were pseudonymised under another key.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from spevidence.data._results import Attrition, QAIssue

INVALID = "invalid_nhs_number (person_id)"
UNLINKED = "not_in_population (person_id)"


def _lost_to(att: Attrition, table: str, reason: str) -> bool:
    """No row kept, and at least half of the rows dropped for ``reason``."""
    n = att.rows_in(table)
    return n > 0 and att.kept(table) == 0 and 2 * att.excluded(table).get(reason, 0) >= n


def identifier_errors(
    att: Attrition,
    issues: Sequence[QAIssue],
    ids: Literal["nhs_number", "pseudonym"],
    *,
    whole_tables_may_go: bool = False,
) -> list[str]:
    """Error paragraphs for tables emptied by their identifiers (none when all is well).
    ``whole_tables_may_go`` (``max_row_loss`` of 1: any loss accepted) lets event tables
    that link to nobody through; the population and NHS-number mistakes always stop."""
    pseudonymised = [t for t in att.tables if ids == "nhs_number" and _lost_to(att, t, INVALID)]
    if pseudonymised:
        cols = ", ".join(f"{t}.person_id" for t in pseudonymised)
        return [
            f"{cols}: none of the identifiers is a valid NHS number "
            f"({', '.join(f'{att.rows_in(t)} rows in {t}' for t in pseudonymised)}), so they "
            "look pseudonymised already, but the identifiers were declared as raw NHS numbers "
            "(ids: nhs_number). Fix: set `ids: pseudonym` in the protocol (or pass --ids "
            "pseudonym); or, if they should be NHS numbers, export the raw numbers."
        ]
    if att.rows_in("population") and att.kept("population") == 0:
        found = " ".join(i.message for i in issues if i.table == "population")
        return [f"population: no rows are left after the checks. {found}".strip()]
    unlinked = [t for t in att.tables if t != "population" and _lost_to(att, t, UNLINKED)]
    if not unlinked or whole_tables_may_go:
        return []
    rows = ", ".join(f"{att.rows_in(t)} rows in {t}" for t in unlinked)
    return [
        f"{', '.join(unlinked)}: no row links to a person in the population ({rows}), so "
        f"the identifiers of {'these tables' if len(unlinked) > 1 else 'this table'} and of "
        "the population seem to be pseudonymised under different keys (or to be different "
        "identifiers). Fix: pseudonymise every extract with the same key (spevidence "
        "pseudonymise --key-file KEY), or supply the raw NHS numbers with ids: nhs_number."
    ]
