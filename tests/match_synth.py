"""Small synthetic person x period panels for the match tests (docs/contracts.md "Panel").

Referral depends on recent GP use (people are referred at a peak), age and
deprivation, so an unmatched comparison is biased and matching has work to do.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def make_panel(
    n_people: int = 3000,
    n_periods: int = 36,
    *,
    n_pcns: int = 3,
    referral_rate: float = 0.004,
    seed: int = 1,
    churn: bool = True,
) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    pid = np.array([f"P{i:06d}" for i in range(n_people)], dtype=object)
    sex = rng.choice(["F", "M"], n_people)
    yob = rng.integers(1930, 2004, n_people)
    imd = rng.integers(1, 11, n_people)
    pcn = rng.choice([f"U{k:05d}" for k in range(n_pcns)], n_people)
    practice = np.array([f"{p}-{rng.integers(0, 2)}" for p in pcn], dtype=object)
    frailty = rng.gamma(2.0, 0.5, n_people) * (1 + (2020 - yob) / 60)
    start = np.zeros(n_people, dtype=int)
    end = np.full(n_people, n_periods - 1)
    if churn:
        late = rng.random(n_people) < 0.15
        start[late] = rng.integers(1, n_periods, late.sum())
        gone = rng.random(n_people) < 0.1
        end[gone] = np.maximum(start[gone], rng.integers(0, n_periods, gone.sum()))
    periods = pd.date_range("2021-01-01", periods=n_periods, freq="MS")
    lam = np.outer(frailty, np.ones(n_periods)) * 0.4
    # a transient peak of use makes people likely to be referred
    shock = rng.random((n_people, n_periods)) < 0.03
    peak = np.zeros_like(lam)
    for k in range(3):
        peak[:, k:] += np.where(shock[:, : n_periods - k], 1.5, 0.0)
    gp = rng.poisson(lam + peak)
    ae = rng.poisson(0.05 * frailty[:, None] + 0.2 * peak)
    adm = rng.poisson(0.01 * frailty[:, None] + 0.05 * peak)
    referral_t = np.full(n_people, -1)
    for tt in range(n_periods):
        alive = (start <= tt) & (end >= tt) & (referral_t < 0)
        recent = gp[:, max(0, tt - 3) : tt].sum(axis=1)
        p = referral_rate * np.exp(0.25 * recent - 0.05 * (imd - 5)) * (1 + (2020 - yob) / 80)
        ref = alive & (rng.random(n_people) < np.minimum(p, 0.5))
        referral_t[ref] = tt
    lengths = end - start + 1
    who = np.repeat(np.arange(n_people), lengths)
    ts = np.concatenate([np.arange(a, b + 1) for a, b in zip(start, end, strict=True)])
    ref_ok = referral_t >= 0
    ref_date = np.where(ref_ok, periods[np.maximum(referral_t, 0)] + pd.Timedelta(days=9), pd.NaT)
    panel = pd.DataFrame(
        {
            "person_id": pid[who],
            "period": periods[ts],
            "t": ts,
            "gp": gp[who, ts],
            "ae": ae[who, ts],
            "admissions": adm[who, ts],
            "exposure_days": np.asarray(periods[ts].days_in_month),
            "practice_code": practice[who],
            "pcn_code": pcn[who],
            "sex": sex[who],
            "year_of_birth": yob[who],
            "imd_decile": imd[who],
            "referral_date": ref_date[who],
            "referral_t": pd.array(np.where(ref_ok, referral_t, 0)[who], dtype="Int64"),
        }
    )
    panel.loc[~ref_ok[who], "referral_t"] = pd.NA
    panel["period"] = panel["period"].dt.date
    panel["referral_date"] = pd.to_datetime(panel["referral_date"]).dt.date
    return panel
