"""Disclosure control (DESIGN.md section 8): every released table passes one function.

    from spevidence.disclosure import control
    safe, log = control(table, count_columns=["n"], table_name="attrition")

Counts 1-7 are redacted, the rest rounded to the nearest 5 (OpenSAFELY / NHS
England defaults, DOMAIN.md), with secondary suppression against released totals.
Redacted cells are ``<NA>``; write CSVs with ``na_rep=REDACTED`` ("[REDACTED]").
"""

from spevidence.disclosure._control import (
    LOG_COLUMNS,
    REDACTED,
    check,
    control,
    redact_derived,
    released_count,
)

__all__ = ["LOG_COLUMNS", "REDACTED", "check", "control", "redact_derived", "released_count"]
