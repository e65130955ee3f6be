"""The generator's known truth (``truth.json``) summarised over an analysis window."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def true_rate_ratio(truth: Mapping[str, Any], outcome: str = "gp", months: int = 12) -> float:
    """True rate ratio among the referred over event months ``0 .. months - 1``.

    The DiD's post window, so that a ramp-up of the effect is counted as the analysis
    counts it: the person-month-weighted ratio of the expected counts with and without
    the service, from ``truth["att_by_event_month"]``; the overall ratio
    (``truth["att"][outcome]["rate_ratio"]``) where no month carries an effect.
    """
    mu0 = mu1 = 0.0
    for r in truth.get("att_by_event_month", []):
        rr, att, pm = r[f"rate_ratio_{outcome}"], r[f"att_{outcome}"], r["person_months"]
        if r["event_month"] >= months or abs(rr - 1) < 1e-12:
            continue
        m0 = att * pm / (rr - 1)  # expected count without the service
        mu0, mu1 = mu0 + m0, mu1 + rr * m0
    return mu1 / mu0 if mu0 > 0 else float(truth["att"][outcome]["rate_ratio"])


def true_effect_by_quarter(
    data: str | Path, quarters: Iterable[int], outcome: str = "gp"
) -> dict[int, float]:
    """True effect per referred person in each quarter since the referral quarter.

    Sums the generator's monthly effect (``att_<outcome>`` by event month) into
    quarters: a person referred in month ``r`` (0-2) of its quarter has event months
    ``3e - r .. 3e - r + 2`` in quarter ``e``; averaged over the referral months of the
    accepted referrals in ``data/referrals.parquet``.
    """
    data = Path(data)
    truth = json.loads((data / "truth.json").read_text(encoding="utf-8"))
    by_month = {
        int(r["event_month"]): float(r[f"att_{outcome}"]) for r in truth["att_by_event_month"]
    }
    ref = pd.read_parquet(data / "referrals.parquet")
    first = ref.loc[ref["outcome"] == "accepted"].groupby("person_id")["referral_date"].min()
    months = pd.to_datetime(first).dt.month.to_numpy()
    shares = {r: float(np.mean((months - 1) % 3 == r)) for r in range(3)}
    return {
        int(e): sum(
            share * sum(by_month.get(3 * int(e) + j - r, 0.0) for j in range(3))
            for r, share in shares.items()
        )
        for e in quarters
    }
