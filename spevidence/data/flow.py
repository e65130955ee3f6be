"""Cohort flow from the linkage: registration records read -> people in the panel.

The rows use the layout of the bundle's ``attrition`` table (step, n, n_dropped, reason):
a step row carries the count remaining (``n``); an exclusion row (``n`` missing) carries
the count removed on the way to the next step and why. Every count comes from the
validation and panel :class:`~spevidence.data.Attrition`, so the flow reconciles:
records read = people in the panel + every exclusion + records combined per person.
"""

from __future__ import annotations

import pandas as pd

from spevidence.data._results import Attrition
from spevidence.errors import DataError

_REASONS = {
    "missing_id (person_id)": "no person identifier",
    "invalid_nhs_number (person_id)": "invalid NHS number",
    "unreadable_value": "a date or number that cannot be read",
    "missing_value": "a required value missing",
    "unknown_code": "a code outside the allowed values",
    "implausible_value (year_of_birth)": "implausible year of birth",
    "registration_ends_before_start (registration_end)": "registration ends before it starts",
    "registered_after_death (death_date)": "registration starts after death",
    "duplicate_row": "exact duplicate record",
}


def _reason(raw: str) -> str:
    for k, text in _REASONS.items():
        if raw == k or raw.startswith(k + " ("):
            return f"{text} ({raw.split('(', 1)[1].rstrip(')')})" if "(" in raw else text
    return raw.replace("_", " ")


def linkage_flow(linkage: Attrition, panel: Attrition, *, referred: int) -> pd.DataFrame:
    """Cohort-flow rows from the extracts to the referred people in the panel.

    Parameters
    ----------
    linkage
        The attrition from ``validate`` (per table: rows in, excluded by reason, kept).
    panel
        ``build_panel(...).attrition`` (people in the clean population, those with no
        day registered and alive in the window, people in the panel).
    referred
        Referred people in the panel, the first step of the matching flow.

    Returns
    -------
    pandas.DataFrame
        Columns ``step``, ``n``, ``n_dropped``, ``reason`` (nullable integers), ending
        with the exclusion of people never referred, so that the matching flow
        ("referred people in panel") follows on directly.
    """
    rows: list[dict[str, object]] = []

    def step(label: str, n: int) -> None:
        rows.append({"step": label, "n": n, "n_dropped": pd.NA, "reason": ""})

    def drop(reason: str, n: int) -> None:
        if n > 0:
            rows.append(
                {"step": f"Excluded: {reason}", "n": pd.NA, "n_dropped": n, "reason": reason}
            )

    records_in = linkage.rows_in("population")
    records_kept = linkage.kept("population")
    people = panel.rows_in("panel_persons")
    in_panel = panel.kept("panel_persons")
    if referred > in_panel or people > records_kept:
        raise DataError(
            "The cohort flow does not reconcile (more people than records, or more referred "
            "people than people in the panel). This is a bug; please report it."
        )
    step("Registration records in the population extract", records_in)
    for reason, n in linkage.excluded("population").items():
        drop(_reason(reason), n)
    drop("further registration records of the same person (combined, not excluded)",
         records_kept - people)  # fmt: skip
    step("People in the population", people)
    for reason, n in panel.excluded("panel_persons").items():
        drop(reason, n)
    step("People in the panel", in_panel)
    drop("no accepted referral in the panel (comparator pool only)", in_panel - referred)
    out = pd.DataFrame(rows, columns=pd.Index(["step", "n", "n_dropped", "reason"]))
    out["n"] = out["n"].astype("Int64")
    out["n_dropped"] = out["n_dropped"].astype("Int64")
    return out
