"""Checks on a linked panel before anything is estimated from it.

An outcome that is zero for every person cannot be estimated (a Poisson model has no
events, a linear one no variance), and is almost always a definition or coding that
matches no row rather than a population that never used the service: the run stops,
naming the outcome, the definition used and the likely cause.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from spevidence.errors import EstimationError
from spevidence.link._panel import Definitions


def _definition(outcome: str, defs: Definitions) -> tuple[str, str]:
    """What counts as ``outcome`` (in words) and the extract's columns it depends on."""
    if outcome == "gp":
        return (
            f"gp_appointments rows with status {', '.join(defs.gp_statuses)} and staff_role "
            f"{', '.join(defs.gp_staff_roles)}",
            "gp_appointments (status, staff_role)",
        )
    if outcome == "ae":
        types = defs.ae_department_types
        which = f" at department types {', '.join(types)}" if types else ""
        return f"ae_attendances rows{which}", "ae_attendances (department_type)"
    return (
        f"admissions rows with admission_method {', '.join(defs.admission_methods)}",
        "admissions (admission_method)",
    )


def check_outcomes(
    totals: Mapping[Any, Any], outcomes: Sequence[str], defs: Definitions | None = None
) -> None:
    """Stop when an outcome is zero for every person of the panel.

    ``totals``: each outcome's sum over the panel (:meth:`Panel.glance`, or the panel
    frame's column sums); ``defs``: the definitions it was linked with (default: the
    defaults of :func:`build_panel`).

    Raises
    ------
    EstimationError
        Naming each all-zero outcome, what counts as it, and the likely cause and fix.
    """
    zero = [o for o in outcomes if float(totals.get(o, 0) or 0) == 0]
    if not zero:
        return
    defs = Definitions() if defs is None else defs
    parts = []
    for o in zero:
        counts, source = _definition(o, defs)
        parts.append(
            f"Outcome {o} is zero for every person in the panel: no {counts} falls in the "
            f"study window. Likely cause: the extract's codes mean something else locally "
            f"(every row coded as another value), or the extract was filtered before "
            f"export. Fix: look at {source} in the extract (spevidence validate lists what "
            "it excluded), recode local values in the protocol's extracts: block "
            "(docs/guide.md, 'Local codings'), or remove "
            f"{o} from outcomes."
        )
    raise EstimationError(" ".join(parts))
