"""Scenario-level structure (PCNs, practices) and fixed demographic tables."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
from scipy.special import gammaln, ndtr

from spevidence.synthetic._scenario import OUTCOMES, Scenario

EPOCH = dt.date(1970, 1, 1)

# England age structure (approximate shares by 5-year band, ONS mid-2021), 0-4 ... 90+.
AGE_BAND_SHARE = np.array(
    [5.6, 6.1, 6.0, 5.6, 6.0, 6.6, 6.9, 6.7, 6.3, 6.4, 6.9, 6.7, 5.8, 5.0, 5.0, 3.7, 2.5, 1.5, 0.9]
)
AGE_PMF = np.repeat(AGE_BAND_SHARE / AGE_BAND_SHARE.sum() / 5.0, 5)  # ages 0..94
AGES = np.arange(len(AGE_PMF))


def p_female(age: np.ndarray) -> np.ndarray:
    return np.where(age < 60, 0.49, np.where(age < 80, 0.53, 0.60))


# Rate multipliers by 10-year age band (0-9, ..., 80-89, 90+), before normalisation.
AGE_MULT = {
    "gp": np.array([0.9, 0.5, 0.65, 0.75, 0.85, 1.0, 1.3, 1.7, 2.0, 2.1]),
    "ae": np.array([1.2, 0.9, 1.1, 0.9, 0.8, 0.8, 0.9, 1.3, 2.0, 2.6]),
    "admissions": np.array([0.5, 0.4, 0.5, 0.5, 0.6, 0.8, 1.3, 2.2, 4.0, 5.5]),
}
SEX_MULT = {"gp": (1.15, 0.85), "ae": (1.0, 1.0), "admissions": (0.95, 1.05)}  # (F, M)
IMD_SLOPE = {"gp": 0.12, "ae": 0.25, "admissions": 0.20}
IMD_PERSON_SD = 1.5

ETHNICITY = ("White", "Asian", "Black", "Mixed", "Other")
ETHNICITY_P = np.array([0.81, 0.096, 0.042, 0.03, 0.022])


def days(d: dt.date) -> int:
    return (d - EPOCH).days


def date_of(day: int) -> dt.date:
    return EPOCH + dt.timedelta(days=int(day))


def financial_year(d: dt.date) -> str:
    y = d.year if d.month >= 4 else d.year - 1
    return f"{y}/{(y + 1) % 100:02d}"


def age_sex_multiplier(outcome: str, age: np.ndarray, male: np.ndarray, g: float) -> np.ndarray:
    band = np.minimum(age // 10, 9)
    f, m = SEX_MULT[outcome]
    return AGE_MULT[outcome][band] ** g * np.where(male, m, f)


def age_sex_mean(outcome: str, g: float) -> float:
    pf = p_female(AGES)
    mf = age_sex_multiplier(outcome, AGES, np.zeros(len(AGES), bool), g)
    mm = age_sex_multiplier(outcome, AGES, np.ones(len(AGES), bool), g)
    return float(np.sum(AGE_PMF * (pf * mf + (1 - pf) * mm)))


def gamma_power_mean(shape: float, c: float) -> float:
    """E[Z**c] for Z ~ Gamma(shape, scale=1/shape) (mean 1)."""
    return float(np.exp(gammaln(shape + c) - gammaln(shape) - c * np.log(shape)))


@dataclass(frozen=True)
class Month:
    start: int  # day number (days since 1970-01-01), inclusive
    end: int  # inclusive
    calendar_month: int  # 1..12


def months_of(start: dt.date, end: dt.date) -> list[Month]:
    out = []
    y, m = start.year, start.month
    while dt.date(y, m, 1) <= end:
        first = dt.date(y, m, 1)
        nxt = dt.date(y + (m == 12), m % 12 + 1, 1)
        out.append(Month(days(max(first, start)), days(min(nxt - dt.timedelta(1), end)), m))
        y, m = nxt.year, nxt.month
    return out


@dataclass(frozen=True)
class Structure:
    pcn_codes: list[str]
    pcn_service_start: np.ndarray  # day number per PCN
    pcn_cohort: list[str]  # financial year of service start
    practice_codes: list[str]
    practice_pcn: np.ndarray
    practice_weight: np.ndarray  # probability a person is registered there
    practice_effect: np.ndarray  # multiplicative, mean 1
    practice_imd: np.ndarray  # mean IMD decile
    lsoa_codes: list[str]  # all LSOAs; practice p uses lsoa_offset[p] + 0..lsoa_count[p]-1
    lsoa_offset: np.ndarray
    lsoa_count: np.ndarray
    imd_probs: np.ndarray  # (practices, 10): P(person IMD decile | practice)

    def imd_mean_multiplier(self, outcome: str, gradient: float) -> float:
        """Population average of the deprivation multiplier (exact, for normalisation)."""
        d = np.arange(1, 11)
        mult = 1 + gradient * IMD_SLOPE[outcome] * (5.5 - d) / 4.5
        return float(self.practice_weight @ (self.imd_probs @ mult))


def build_structure(sc: Scenario, persons: int, seed: int, start: dt.date) -> Structure:
    rng = np.random.default_rng([seed, 2])
    st = sc.structure
    n_pcn = st.pcns if st.pcns is not None else max(1, round(persons / st.persons_per_pcn))
    pcn_nums = rng.choice(90_000, size=n_pcn, replace=False) + 10_000
    pcn_codes = [f"U{x:05d}" for x in pcn_nums]
    lo, hi = st.practices_per_pcn
    n_prac = rng.integers(lo, hi + 1, size=n_pcn)
    practice_pcn = np.repeat(np.arange(n_pcn), n_prac)
    n_total = int(n_prac.sum())
    letters = np.array(list("ABCDEFGHJKLMNPY"))
    codes_num = rng.choice(900_000, size=n_total, replace=False) + 10_000
    practice_codes = [
        f"{letters[c % len(letters)]}{(c // len(letters)) % 100_000:05d}" for c in codes_num
    ]
    # guarantee uniqueness even if two numbers map to one code
    seen: dict[str, int] = {}
    for i, c in enumerate(practice_codes):
        if c in seen:
            practice_codes[i] = f"{c[0]}{(int(c[1:]) + 50_000 + i) % 100_000:05d}"
        seen[practice_codes[i]] = i
    size = rng.lognormal(0.0, 0.5, size=n_total)
    weight = size / size.sum()
    sd = st.practice_effect_sd
    effect = np.exp(rng.normal(0.0, sd, size=n_total))
    effect /= float(np.sum(weight * effect))  # population-average practice effect is exactly 1
    # practice deprivation: evenly spread over 1..10 in random order
    imd = 1.0 + 9.0 * (rng.permutation(n_total) + rng.random(n_total)) / n_total
    # P(person decile = d | practice): round(practice mean + N(0, 1.5)), clipped to 1..10
    edges = np.concatenate([[-np.inf], np.arange(1.5, 10.0, 1.0), [np.inf]])
    cdf = ndtr((edges[None, :] - imd[:, None]) / IMD_PERSON_SD)
    imd_probs = np.diff(cdf, axis=1)
    lsoa_count = rng.integers(8, 26, size=n_total).astype(np.int64)
    lsoa_offset = np.concatenate([[0], np.cumsum(lsoa_count)[:-1]]).astype(np.int64)
    first_code = 1000 + int(rng.integers(0, 5000))
    lsoa_codes = [f"E01{first_code + j:06d}" for j in range(int(lsoa_count.sum()))]
    # service start quarter per PCN
    ref = sc.referral
    s_from = ref.service_start_from or start
    s_to = ref.service_start_to or s_from
    quarters = []
    y, m = s_from.year, s_from.month
    q = dt.date(y, m, 1)
    while q <= s_to:
        quarters.append(q)
        m += 3
        if m > 12:
            y, m = y + 1, m - 12
        q = dt.date(y, m, 1)
    if not quarters:
        quarters = [s_from]
    if len(quarters) == 1:
        chosen = [quarters[0]] * n_pcn
    else:
        # spread PCNs evenly over the quarters, in random order
        idx = np.floor(np.arange(n_pcn) * len(quarters) / n_pcn).astype(int)
        chosen = [quarters[i] for i in rng.permutation(idx)]
    chosen = [max(c, s_from) for c in chosen]
    return Structure(
        pcn_codes=pcn_codes,
        pcn_service_start=np.array([days(c) for c in chosen], dtype=np.int64),
        pcn_cohort=[financial_year(c) for c in chosen],
        practice_codes=practice_codes,
        practice_pcn=practice_pcn,
        practice_weight=weight,
        practice_effect=effect,
        practice_imd=imd,
        lsoa_codes=lsoa_codes,
        lsoa_offset=lsoa_offset,
        lsoa_count=lsoa_count,
        imd_probs=imd_probs,
    )


def outcome_norms(sc: Scenario, st: Structure) -> dict[str, float]:
    """Divisors that make each outcome's population-average multiplier equal to 1."""
    ep = sc.episodes
    months_in = ep.rate_per_year / 12 * ep.mean_months
    pi = months_in / (1 + months_in)
    out = {}
    for o in OUTCOMES:
        c = sc.frailty.loadings.get(o)
        out[o] = (
            age_sex_mean(o, sc.age_gradient)
            * gamma_power_mean(sc.frailty.shape, c)
            * (1 + pi * (sc.episodes.multiplier.get(o) - 1))
            * st.imd_mean_multiplier(o, sc.deprivation_gradient)
        )
    return out
