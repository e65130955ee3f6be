"""Disclosure control (DESIGN.md sections 8 and 10): one policy for every released table.

    from spevidence.disclosure import control, release
    safe, log = control(table, count_columns=["n"], table_name="attrition")
    safe, log = release("trends", table)  # by the catalogue's column roles
    safe, log = release_each(tables)       # every table of a bundle, one log

Counts 1-7 are redacted, the rest rounded to the nearest 5 (OpenSAFELY / NHS
England defaults, DOMAIN.md), with secondary suppression against released totals
(:class:`Margin`). Numbers derived from counts are recomputed from the released counts
or rounded to the :func:`step` of their released count (:mod:`.catalogue`).
Redacted cells are ``<NA>``; write CSVs with ``na_rep=REDACTED`` ("[REDACTED]").
"""

from spevidence.disclosure._control import (
    LOG_COLUMNS,
    REDACTED,
    Margin,
    check,
    control,
    redact_derived,
    released_count,
)
from spevidence.disclosure._derived import step
from spevidence.disclosure._release import as_released, release, release_derived, release_each
from spevidence.disclosure.catalogue import CATALOGUE, Roles, roles

__all__ = [
    "CATALOGUE",
    "LOG_COLUMNS",
    "REDACTED",
    "Margin",
    "Roles",
    "as_released",
    "check",
    "control",
    "redact_derived",
    "release",
    "release_derived",
    "release_each",
    "released_count",
    "roles",
    "step",
]
