"""All activity, equity, case-finding and wellbeing outputs in one call (for reports/CLI).

``activity_outputs`` runs the four analyses on the extracts and returns the aggregate
tables and the figures drawn from them. Pass ``control`` (for example
``spevidence.disclosure.control`` wrapped to return the controlled tables) to apply
disclosure control to the tables *before* the figures are drawn, so that figures show
released numbers only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from spevidence.activity._common import DateLike, as_dates, check_no_identifiers, to_timestamp
from spevidence.activity._result import TableResult
from spevidence.activity.equity import equity_of_access
from spevidence.activity.risk import RiskScoreSpec, risk_score
from spevidence.activity.service import service_activity
from spevidence.activity.wellbeing import INSTRUMENTS, paired_change
from spevidence.disclosure import REDACTED
from spevidence.errors import DataError

Control = Callable[[dict[str, pd.DataFrame]], Mapping[str, pd.DataFrame]]


def read_activity_extracts(data_dir: str | Path) -> dict[str, pd.DataFrame]:
    """Read ``population``, ``referrals``, ``gp_appointments`` and optional ``wellbeing``.

    Each is ``NAME.parquet`` or ``NAME.csv`` in ``data_dir`` (docs/contracts.md), read
    as it is: no schema, mapping or QA (that is :func:`spevidence.data.read_extracts`,
    which needs all five extracts of a run); for ``spevidence activity``.
    """
    folder = Path(data_dir)
    if not folder.is_dir():
        raise DataError(f"extracts folder {folder.name!r} not found; pass --data FOLDER.")
    out: dict[str, pd.DataFrame] = {}
    for name, required in (
        ("population", True),
        ("referrals", True),
        ("gp_appointments", False),
        ("wellbeing", False),
    ):
        pq, csv = folder / f"{name}.parquet", folder / f"{name}.csv"
        if pq.is_file():
            out[name] = pd.read_parquet(pq)
        elif csv.is_file():
            out[name] = pd.read_csv(csv, dtype={"person_id": str, "snomed_code": str})
        elif required:
            raise DataError(
                f"extract {name!r} not found in the data folder: add {name}.parquet or {name}.csv."
            )
    return out


def activity_outputs(
    population: pd.DataFrame,
    referrals: pd.DataFrame,
    *,
    gp_appointments: pd.DataFrame | None = None,
    wellbeing: pd.DataFrame | None = None,
    start: DateLike | None = None,
    end: DateLike | None = None,
    at: DateLike | None = None,
    risk_at: DateLike | None = None,
    period: str = "month",
    spec: RiskScoreSpec | None = None,
    wellby: bool = False,
    link_worker_wte: float | Mapping[str, float] | None = None,
    control: Control | None = None,
    draw_figures: bool = True,
) -> tuple[dict[str, pd.DataFrame], dict[str, Figure]]:
    """Run service activity, equity, case finding and wellbeing; return tables and figures.

    ``start``/``end`` default to the first and last referral dates; ``at`` (the date the
    registered population is counted) defaults to ``start``. ``risk_at`` (the date the
    case-finding score is taken) defaults to ``at`` when ``at`` is given, otherwise to
    ``start`` plus the score's GP look-back (``spec.lookback_days``, capped at ``end``), so
    that the frequent-attender look-back lies inside an extract that begins at ``start``;
    the case-finding tables state the date (``scored_on``).
    Case finding runs when ``gp_appointments`` is given; wellbeing when ``wellbeing`` is
    (for the instruments present in it; the WELLBY table only with ONS4 life satisfaction).
    Returns aggregate tables only (checked for identifier columns) and figures drawn from
    the (controlled, if ``control`` is given) tables; ``draw_figures=False`` skips them.
    """
    dates = _dates(referrals, start=start, end=end, at=at, risk_at=risk_at, spec=spec)
    t0, t1 = dates.start, dates.end
    results: list[TableResult] = [
        service_activity(
            referrals,
            start=t0,
            end=t1,
            period=period,  # type: ignore[arg-type]
            population=population,
            link_worker_wte=link_worker_wte,
        )
    ]
    need: Any = None
    if gp_appointments is not None:
        rs = risk_score(
            population,
            gp_appointments,
            at=dates.risk_at,
            spec=spec,
            referrals=referrals,
            referred_between=(t0, t1),
        )
        results.append(rs)
        need = rs
    results.append(
        equity_of_access(population, referrals, at=dates.at, start=t0, end=t1, need=need)
    )
    paired = _paired_change(wellbeing, referrals, population, t0, t1, wellby=wellby)
    if paired is not None:
        results.append(paired)
    tables: dict[str, pd.DataFrame] = {}
    for r in results:
        tables.update(r.tables())
    check_no_identifiers(tables)
    released = dict(control(tables)) if control is not None else tables
    figures: dict[str, Figure] = {}
    for r in results if draw_figures else []:
        figures.update(r.figures(tables=released))
    return released, figures


@dataclass(frozen=True)
class _Dates:
    """The referral window, the date the population is counted and the scoring date."""

    start: pd.Timestamp
    end: pd.Timestamp
    at: pd.Timestamp
    risk_at: pd.Timestamp


def _paired_change(
    wellbeing: pd.DataFrame | None,
    referrals: pd.DataFrame,
    population: pd.DataFrame,
    t0: pd.Timestamp,
    t1: pd.Timestamp,
    *,
    wellby: bool,
) -> TableResult | None:
    """Paired wellbeing change over the instruments the extract holds (None if none)."""
    if wellbeing is None or not len(wellbeing) or "instrument" not in wellbeing.columns:
        return None
    present = set(wellbeing["instrument"].astype(str).str.strip().str.lower())
    instruments = tuple(i for i in INSTRUMENTS if i in present)
    if not instruments:
        return None
    return paired_change(
        wellbeing,
        referrals,
        instruments=instruments,
        start=t0,
        end=t1,
        population=population,
        wellby=wellby and "ons4_life_satisfaction" in instruments,
    )


def _dates(
    referrals: pd.DataFrame,
    *,
    start: DateLike | None,
    end: DateLike | None,
    at: DateLike | None,
    risk_at: DateLike | None,
    spec: RiskScoreSpec | None,
) -> _Dates:
    """Fill in the defaults of :func:`activity_outputs`'s dates."""
    dates = as_dates(referrals["referral_date"]) if "referral_date" in referrals else None
    if (start is None or end is None) and (dates is None or dates.notna().sum() == 0):
        raise DataError("referrals has no valid referral_date; give start and end explicitly.")
    ref_dates = dates if dates is not None else pd.Series(dtype="datetime64[ns]")
    t0 = to_timestamp(start, name="start") if start is not None else ref_dates.min()
    t1 = to_timestamp(end, name="end") if end is not None else ref_dates.max()
    t_at = to_timestamp(at, name="at") if at is not None else t0
    if risk_at is not None:
        t_risk = to_timestamp(risk_at, name="risk_at")
    elif at is not None:
        t_risk = t_at
    else:
        lookback = (spec if spec is not None else RiskScoreSpec()).lookback_days
        t_risk = min(t0 + pd.Timedelta(days=lookback), t1)
    return _Dates(start=t0, end=t1, at=t_at, risk_at=t_risk)


def write_outputs(
    out_dir: str | Path,
    tables: Mapping[str, pd.DataFrame],
    figures: Mapping[str, Figure],
    *,
    disclosure_log: pd.DataFrame | None = None,
) -> Path:
    """Write ``tables/NAME.csv``, ``figures/NAME.png`` and ``disclosure_log.csv``.

    Redacted cells (missing counts after disclosure control) are written as
    ``[REDACTED]`` when a disclosure log is given.
    """
    out = Path(out_dir)
    (out / "tables").mkdir(parents=True, exist_ok=True)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    na_rep = REDACTED if disclosure_log is not None else ""
    for name, df in sorted(tables.items()):
        (out / "tables" / f"{name}.csv").write_text(
            df.to_csv(index=False, lineterminator="\n", na_rep=na_rep), encoding="utf-8"
        )
    if disclosure_log is not None:
        (out / "disclosure_log.csv").write_text(
            disclosure_log.to_csv(index=False, lineterminator="\n"), encoding="utf-8"
        )
    for name, fig in sorted(figures.items()):
        fig.savefig(out / "figures" / f"{name}.png", dpi=150, metadata={"Software": None})
    return out
