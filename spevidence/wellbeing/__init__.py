"""Wellbeing outcomes: paired before/after change (ONS4, WEMWBS, SWEMWBS) and WELLBYs.

Public API::

    paired_change(wellbeing, referrals, *, instruments=..., baseline_window_days=...,
                  followup_window_days=..., meaningful=..., wellby=False) -> PairedChange

Before/after change has no comparator; see the module docstring of
:mod:`spevidence.activity.wellbeing` for the caveats carried into every table. The code
lives in :mod:`spevidence.activity` (it shares that package's tables, figures and
disclosure catalogue); this package is its public address.
"""

from spevidence.activity.wellbeing import (
    INSTRUMENTS,
    MEANINGFUL_DEFAULT,
    WELLBY_CAVEAT,
    WELLBY_PRICE_YEAR,
    WELLBY_VALUE,
    PairedChange,
    paired_change,
)

__all__ = [
    "INSTRUMENTS",
    "MEANINGFUL_DEFAULT",
    "WELLBY_CAVEAT",
    "WELLBY_PRICE_YEAR",
    "WELLBY_VALUE",
    "PairedChange",
    "paired_change",
]
