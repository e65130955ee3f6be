"""Small explicit and seeded test extracts for the activity/equity/wellbeing tests.

Person ids are pseudonym-shaped (64 hex characters) so that the identifier scan is a
real test; a second set uses valid NHS numbers.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

PRACTICES = {"A81001": "U00001", "A81002": "U00001", "B82001": "U00002", "B82002": "U00002"}


def pid(i: int) -> str:
    """A pseudonym-shaped token (64 hex characters) for person ``i``."""
    return hashlib.sha256(f"person-{i}".encode()).hexdigest()


def nhs_number(i: int) -> str:
    """A valid (modulus-11) NHS number in the 999 test range."""
    k = 0
    while True:
        base = f"999{(i * 7 + k) % 10**6:06d}"
        total = sum(int(d) * w for d, w in zip(base, range(10, 1, -1), strict=True))
        check = 11 - total % 11
        check = 0 if check == 11 else check
        if check != 10:
            return base + str(check)
        k += 1


def population(n: int = 400, *, seed: int = 1, ids: str = "pseudonym") -> pd.DataFrame:
    """Registered population with risk columns; some left, died, or not yet registered."""
    rng = np.random.default_rng(seed)
    make = pid if ids == "pseudonym" else nhs_number
    practice = rng.choice(list(PRACTICES), n, p=[0.4, 0.3, 0.2, 0.1])
    reg_start = pd.Timestamp("2015-01-01") + pd.to_timedelta(rng.integers(0, 3000, n), "D")
    reg_end = pd.Series(pd.NaT, index=range(n), dtype="datetime64[ns]")
    left = rng.random(n) < 0.08
    reg_end[left] = reg_start[left] + pd.to_timedelta(rng.integers(200, 2000, left.sum()), "D")
    death = pd.Series(pd.NaT, index=range(n), dtype="datetime64[ns]")
    died = rng.random(n) < 0.05
    death[died] = pd.Timestamp("2022-01-01") + pd.to_timedelta(
        rng.integers(0, 900, died.sum()), "D"
    )
    df = pd.DataFrame(
        {
            "person_id": [make(i) for i in range(n)],
            "practice_code": practice,
            "pcn_code": [PRACTICES[p] for p in practice],
            "sex": rng.choice(["F", "M"], n),
            "year_of_birth": rng.integers(1925, 2015, n),
            "registration_start": reg_start,
            "registration_end": reg_end,
            "death_date": death,
            "imd_decile": pd.array(rng.integers(1, 11, n), dtype="Int64"),
            "ethnicity_group": rng.choice(["White", "Asian", "Black", "Mixed", "Other", None], n),
            "living_alone": rng.random(n) < 0.3,
            "widowed": rng.random(n) < 0.15,
            "frailty": rng.choice(["fit", "mild", "moderate", "severe", None], n),
            "falls": rng.random(n) < 0.1,
            "stroke": rng.random(n) < 0.05,
            "copd": rng.random(n) < 0.08,
            "heart_failure": rng.random(n) < 0.05,
        }
    )
    df.loc[rng.random(n) < 0.05, "imd_decile"] = pd.NA
    return df


def referrals(pop: pd.DataFrame, *, m: int = 300, seed: int = 2) -> pd.DataFrame:
    """Referrals for random people, including out-of-window and bad rows."""
    rng = np.random.default_rng(seed)
    who = rng.choice(pop["person_id"].to_numpy(), m)
    rdate = pd.Timestamp("2023-01-01") + pd.to_timedelta(rng.integers(-40, 400, m), "D")
    outcome = rng.choice(["accepted", "declined", "did_not_engage"], m, p=[0.65, 0.2, 0.15])
    fc = rdate + pd.to_timedelta(rng.integers(-3, 70, m), "D")
    fc = pd.Series(fc).where(rng.random(m) < 0.85)
    contacts = pd.Series(rng.integers(0, 18, m).astype(float)).where(rng.random(m) < 0.9)
    code = rng.choice(["871731000000106", "871711000000103", "1234567", None], m)
    lw = rng.choice(["lw-alpha", "lw-beta", "lw-gamma", None], m, p=[0.4, 0.3, 0.2, 0.1])
    df = pd.DataFrame(
        {
            "person_id": who,
            "referral_date": rdate,
            "referral_source": rng.choice(["gp", "practice_staff", "other_agency", "self"], m),
            "outcome": outcome,
            "first_contact_date": fc,
            "contacts": contacts,
            "discharge_date": rdate + pd.Timedelta(days=90),
            "snomed_code": code,
            "link_worker_id": lw,
        }
    )
    df["referral_date"] = df["referral_date"].astype(object)
    df.loc[3, "referral_date"] = None  # unparseable date: counted as dropped
    df.loc[5, "outcome"] = "lost"  # invalid outcome: counted as dropped
    return df


def gp_appointments(pop: pd.DataFrame, *, k: int = 6000, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "person_id": rng.choice(pop["person_id"].to_numpy()[:60], k),
            "appointment_date": pd.Timestamp("2022-01-01")
            + pd.to_timedelta(rng.integers(0, 500, k), "D"),
            "status": rng.choice(["attended", "dna", "cancelled"], k, p=[0.85, 0.1, 0.05]),
            "staff_role": rng.choice(["gp", "nurse"], k, p=[0.7, 0.3]),
            "mode": "face_to_face",
        }
    )


def wellbeing(ref: pd.DataFrame, *, seed: int = 4) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for _, r in ref.dropna(subset=["referral_date"]).iterrows():
        d = pd.Timestamp(r["referral_date"])
        b = float(rng.integers(20, 60))
        rows.append(
            (r["person_id"], d + pd.Timedelta(days=int(rng.integers(-20, 10))), "wemwbs", b)
        )
        if rng.random() < 0.6:
            f = float(np.clip(b + rng.integers(-4, 9), 14, 70))
            rows.append(
                (r["person_id"], d + pd.Timedelta(days=int(rng.integers(70, 200))), "wemwbs", f)
            )
        ls = float(rng.integers(0, 11))
        rows.append((r["person_id"], d, "ons4_life_satisfaction", ls))
        if rng.random() < 0.5:
            f = float(np.clip(ls + rng.integers(-2, 4), 0, 10))
            rows.append((r["person_id"], d + pd.Timedelta(days=120), "ons4_life_satisfaction", f))
    return pd.DataFrame(rows, columns=["person_id", "measured_date", "instrument", "score"])
