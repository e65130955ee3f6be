"""Simulate one chunk of persons: population, referrals and events (row arrays)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np

from spevidence.synthetic._scenario import OUTCOMES, Scenario
from spevidence.synthetic._structure import (
    AGE_PMF,
    ETHNICITY_P,
    IMD_SLOPE,
    Month,
    Structure,
    age_sex_multiplier,
    days,
    gamma_power_mean,
    p_female,
)

NEVER = np.iinfo(np.int64).max // 4  # "no date" sentinel (day number)
DAYS_PER_MONTH = 365.25 / 12
BURN_IN_MONTHS = 12
MAX_EVENT_MONTH = 120

# Appointment marks: attended appointments with a GP are the outcome; the rest are extra rows.
STATUS = ("attended", "dna", "cancelled")
STATUS_P = np.array([0.92, 0.05, 0.03])
ROLE = ("gp", "nurse", "other")
ROLE_P = np.array([0.60, 0.30, 0.10])
MODE = ("face_to_face", "telephone", "video", "home_visit")
MODE_P = np.array([0.62, 0.30, 0.03, 0.05])
DEPT = ("1", "2", "3", "4")
DEPT_P = np.array([0.68, 0.02, 0.27, 0.03])
UNPLANNED = ("21", "22", "23", "24", "25", "28", "2A", "2C", "2D")
UNPLANNED_P = np.array([0.72, 0.06, 0.02, 0.03, 0.01, 0.08, 0.04, 0.01, 0.03])
ELECTIVE = ("11", "12", "13")
ELECTIVE_P = np.array([0.45, 0.10, 0.45])
TRANSFER_SHARE = 0.03  # emergency spells followed by a 2B transfer spell (not an outcome)
SOURCES = ("gp", "practice_staff", "other_agency", "self")
REF_OUTCOMES = ("accepted", "declined", "did_not_engage")
SNOMED_REFERRAL = "871731000000106"
SNOMED_DECLINED = "871711000000103"


def _ep_length(rng: np.random.Generator, mean: float, n: int) -> np.ndarray:
    """Episode length in months: 1 + Binomial(2 (mean - 1), 1/2), so little spread."""
    k = max(0, round(2 * (mean - 1)))
    return 1 + rng.binomial(k, 0.5, n).astype(np.int64)


def _distinct_marks(
    keys: list[np.ndarray], mark: np.ndarray, n_marks: int
) -> tuple[np.ndarray, np.ndarray]:
    """Make rows that agree on ``keys`` differ in ``mark`` (no exact duplicate rows).

    Same-day repeats (two attended GP appointments for one person on one day) are real
    but would be exact duplicates of each other; the k-th repeat in a group takes the
    group's first mark + k (mod ``n_marks``), e.g. a second same-day GP appointment is
    by another mode. Repeats beyond ``n_marks`` in one group (vanishingly rare) are
    collapsed. Returns the new marks and a boolean mask of the rows to keep.
    """
    n = len(mark)
    if n == 0:
        return mark, np.ones(0, dtype=bool)
    order = np.lexsort(tuple(reversed(keys)))
    same = np.ones(n, dtype=bool)
    same[0] = False
    for k in keys:
        ks = k[order]
        same[1:] &= ks[1:] == ks[:-1]
    start = np.flatnonzero(~same)
    grp = np.cumsum(~same) - 1
    rank = np.arange(n) - start[grp]
    first = mark[order][start][grp]
    new = mark.copy()
    new[order] = (first + rank) % n_marks
    keep = np.ones(n, dtype=bool)
    keep[order] = rank < n_marks
    return new, keep


def _logistic(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def poisson(rng: np.random.Generator, lam: np.ndarray) -> np.ndarray:
    """Poisson draws by sequential inversion (one uniform each; exact).

    Several times faster than ``Generator.poisson`` for the small means of monthly
    counts; means above 30 fall back to ``Generator.poisson``.
    """
    lam = np.asarray(lam, dtype=np.float64)
    out = np.zeros(lam.shape, dtype=np.int64)
    u = rng.random(lam.shape)
    big = lam > 30.0
    any_big = bool(big.any())
    p = np.exp(-np.where(big, 0.0, lam) if any_big else -lam)
    hit = u > p
    if any_big:
        hit &= ~big
    idx = np.flatnonzero(hit)
    pj, fj, uj, lj = p[idx], p[idx], u[idx], lam[idx]
    j = 0
    while idx.size and j < 400:
        j += 1
        out[idx] = j
        pj = pj * lj / j
        fj = fj + pj
        more = uj > fj
        idx, pj, fj, uj, lj = idx[more], pj[more], fj[more], uj[more], lj[more]
    if any_big:
        out[big] = rng.poisson(lam[big])
    return out


_DAY_BITS = 20  # day offsets from BASE_DAY fit in 20 bits (2,800 years)
BASE_DAY = -365 * 100  # 1870


def span(a: np.ndarray, b: np.ndarray, g0: np.ndarray, g1: np.ndarray) -> np.ndarray:
    """Days in [a, b] outside the gap [g0, g1] (all inclusive)."""
    gap = np.maximum(np.minimum(b, g1) - np.maximum(a, g0) + 1, 0)
    return np.maximum(b - a + 1, 0) - gap


def place(
    a: np.ndarray, b: np.ndarray, u: np.ndarray, g0: np.ndarray, g1: np.ndarray
) -> np.ndarray:
    """A uniform day in [a, b] outside the gap [g0, g1], from uniforms ``u`` in [0, 1)."""
    start = np.where((a >= g0) & (a <= g1), g1 + 1, a)
    gap = np.maximum(np.minimum(b, g1) - np.maximum(start, g0) + 1, 0)
    eff = np.maximum(b - start + 1, 0) - gap
    day = start + (u * eff).astype(np.int64)
    return np.where((gap > 0) & (day >= g0), day + gap, day)


@dataclass
class Events:
    """Event rows kept as sortable int64 keys: person, day and a one-bit tag.

    ``g0``/``g1`` hold each person's registration gap (empty when g0 > g1): events are
    placed uniformly over a segment's registered days only.
    """

    g0: np.ndarray
    g1: np.ndarray
    keys: list[np.ndarray] = field(default_factory=list)

    def add(
        self,
        counts: np.ndarray,
        who: np.ndarray,
        a: np.ndarray,
        b: np.ndarray,
        rng: np.random.Generator,
        tag: int = 0,
    ) -> None:
        tot = int(counts.sum())
        if tot == 0:
            return
        rep = np.repeat(np.arange(len(counts)), counts)
        w = who[rep]
        day = place(a[rep], b[rep], rng.random(tot), self.g0[w], self.g1[w])
        self.keys.append((w << (_DAY_BITS + 1)) | ((day - BASE_DAY) << 1) | tag)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Person, day and tag, sorted by person then day."""
        if not self.keys:
            z = np.zeros(0, np.int64)
            return z, z, z
        k = np.sort(np.concatenate(self.keys))
        self.keys = []
        return (
            k >> (_DAY_BITS + 1),
            ((k >> 1) & ((1 << _DAY_BITS) - 1)) + BASE_DAY,
            k & 1,
        )


@dataclass
class Truth:
    """Accumulators for the true effect among accepted referred people (post referral)."""

    mu0: dict[str, float]
    mu1: dict[str, float]
    exposure_days: float
    by_month_mu0: dict[str, np.ndarray]
    by_month_mu1: dict[str, np.ndarray]
    by_month_days: np.ndarray
    expected_all: dict[str, float]  # expected events, whole population in window
    exposure_all: float
    referred: dict[str, int]
    referred_persons: int
    deaths: int
    joiners: int
    leavers: int
    rejoiners: int
    by_cohort: dict[str, dict[str, float]]

    @classmethod
    def empty(cls) -> Truth:
        z = {o: 0.0 for o in OUTCOMES}
        return cls(
            dict(z),
            dict(z),
            0.0,
            {o: np.zeros(MAX_EVENT_MONTH + 1) for o in OUTCOMES},
            {o: np.zeros(MAX_EVENT_MONTH + 1) for o in OUTCOMES},
            np.zeros(MAX_EVENT_MONTH + 1),
            dict(z),
            0.0,
            {k: 0 for k in REF_OUTCOMES},
            0,
            0,
            0,
            0,
            0,
            {},
        )

    def merge(self, other: Truth) -> None:
        for o in OUTCOMES:
            self.mu0[o] += other.mu0[o]
            self.mu1[o] += other.mu1[o]
            self.by_month_mu0[o] += other.by_month_mu0[o]
            self.by_month_mu1[o] += other.by_month_mu1[o]
            self.expected_all[o] += other.expected_all[o]
        self.exposure_days += other.exposure_days
        self.by_month_days += other.by_month_days
        self.exposure_all += other.exposure_all
        for k in REF_OUTCOMES:
            self.referred[k] += other.referred[k]
        self.referred_persons += other.referred_persons
        self.deaths += other.deaths
        self.joiners += other.joiners
        self.leavers += other.leavers
        self.rejoiners += other.rejoiners
        for c, d in other.by_cohort.items():
            mine = self.by_cohort.setdefault(c, {})
            for k, v in d.items():
                mine[k] = mine.get(k, 0.0) + v


@dataclass
class Chunk:
    """Row arrays of one chunk; person columns index into the chunk (0..n-1)."""

    n: int
    pop: dict[str, np.ndarray]
    ref: dict[str, np.ndarray]
    gp: dict[str, np.ndarray]
    ae: dict[str, np.ndarray]
    adm: dict[str, np.ndarray]
    wb: dict[str, np.ndarray] | None
    truth: Truth


def simulate_chunk(
    sc: Scenario,
    st: Structure,
    norms: dict[str, float],
    months: list[Month],
    window: tuple[dt.date, dt.date],
    n: int,
    rng: np.random.Generator,
    wb_rng: np.random.Generator,
) -> Chunk:
    w0, w1 = days(window[0]), days(window[1])
    truth = Truth.empty()
    persons = _draw_persons(sc, st, window, n, rng)
    reg = _draw_registration(sc, st, persons, w0, w1, rng)
    truth.rejoiners = reg.rejoiners
    truth.deaths = int(reg.dies.sum())
    truth.joiners = int(reg.joiner.sum())
    truth.leavers = int(((reg.reg_end < NEVER) & ~reg.dies).sum() + truth.rejoiners)
    world = _World(
        sc=sc,
        st=st,
        persons=persons,
        reg=reg,
        base=_daily_rates(sc, st, norms, persons, rng),
        elective_base=(
            sc.elective_admissions_per_year
            / 365.25
            * age_sex_multiplier("admissions", persons.age, persons.male, sc.age_gradient)
            / 1.6
        ),
        other_ratio=_other_appointments_ratio(sc),
        rr=_rate_ratios(sc, st, persons.pcn),
        ramp_days=sc.effects.ramp_up_months * DAYS_PER_MONTH,
        service_start=st.pcn_service_start[persons.pcn],
    )
    state = _initial_state(sc, n, rng)
    events = _EventSets(Events(reg.g0, reg.g1), Events(reg.g0, reg.g1), Events(reg.g0, reg.g1))
    for mi in range(-BURN_IN_MONTHS, len(months)):
        if mi < 0:
            _burn_in_month(world, months[0], mi, state, rng)
        else:
            _simulate_month(world, months[mi], mi, state, events, truth, rng)
        _episode_transitions(sc, state, rng)
    refs = _referral_rows(world, state, truth, w1, rng)
    return Chunk(
        n,
        _population_columns(persons, reg),
        refs.cols,
        _gp_rows(events.gp, rng),
        _ae_rows(events.ae, rng),
        _admission_rows(world, events.adm, w1, rng),
        _wellbeing_rows(sc, refs, wb_rng),
        truth,
    )


@dataclass(frozen=True)
class _Persons:
    """Person-level draws of a chunk (position = person within the chunk)."""

    age: np.ndarray
    male: np.ndarray
    yob: np.ndarray
    practice: np.ndarray
    pcn: np.ndarray
    imd: np.ndarray
    lsoa: np.ndarray
    eth: np.ndarray
    z: np.ndarray  # shared frailty (gamma, mean 1)
    living_alone: np.ndarray
    widowed: np.ndarray
    falls: np.ndarray
    stroke: np.ndarray
    copd: np.ndarray
    hf: np.ndarray
    efi: np.ndarray
    n_flags: np.ndarray  # number of risk flags


def _draw_persons(
    sc: Scenario,
    st: Structure,
    window: tuple[dt.date, dt.date],
    n: int,
    rng: np.random.Generator,
) -> _Persons:
    """Age, sex, practice, deprivation, ethnicity, frailty and risk flags."""
    age = rng.choice(len(AGE_PMF), size=n, p=AGE_PMF).astype(np.int64)
    male = rng.random(n) >= p_female(age)
    yob = window[0].year - age - (rng.random(n) < 0.5)
    practice = rng.choice(len(st.practice_codes), size=n, p=st.practice_weight)
    pcn = st.practice_pcn[practice]
    cum = np.cumsum(st.imd_probs[practice], axis=1)
    imd = 1 + (rng.random(n)[:, None] > cum[:, :-1]).sum(axis=1).astype(np.int64)
    lsoa = st.lsoa_offset[practice] + (rng.random(n) * st.lsoa_count[practice]).astype(np.int64)
    eth = rng.choice(len(ETHNICITY_P), size=n, p=ETHNICITY_P)
    k = sc.frailty.shape
    z = rng.gamma(k, 1.0 / k, size=n)
    lz = np.log(z)
    adult = age >= 18
    living_alone = adult & (rng.random(n) < _logistic(-2.2 + 0.025 * (age - 18) + 0.2 * lz))
    widowed = (age >= 30) & (rng.random(n) < _logistic(-7.5 + 0.085 * age))
    falls = (age >= 60) & (rng.random(n) < _logistic(-3.5 + 0.06 * (age - 60) + 0.6 * lz))
    stroke = adult & (rng.random(n) < _logistic(-6.0 + 0.065 * (age - 20) + 0.4 * lz))
    copd = (age >= 35) & (rng.random(n) < _logistic(-5.0 + 0.055 * (age - 35) + 0.5 * lz))
    hf = adult & (rng.random(n) < _logistic(-8.0 + 0.08 * (age - 20) + 0.5 * lz))
    efi_score = 0.04 * (age - 65) + 0.8 * lz + rng.normal(0, 0.6, n)
    efi = np.where(age < 65, -1, np.digitize(efi_score, [0.3, 1.0, 1.6]))
    n_flags = (living_alone.astype(int) + widowed + falls + stroke + copd + hf + (efi >= 2)).astype(
        np.float64
    )
    return _Persons(
        age=age,
        male=male,
        yob=yob,
        practice=practice,
        pcn=pcn,
        imd=imd,
        lsoa=lsoa,
        eth=eth,
        z=z,
        living_alone=living_alone,
        widowed=widowed,
        falls=falls,
        stroke=stroke,
        copd=copd,
        hf=hf,
        efi=efi,
        n_flags=n_flags,
    )


@dataclass(frozen=True)
class _Registration:
    """Registration spells and deaths (day numbers; NEVER = none)."""

    joiner: np.ndarray
    reg_start: np.ndarray
    reg_end: np.ndarray  # end of the last spell (death included)
    death: np.ndarray
    dies: np.ndarray
    g0: np.ndarray  # first day of the gap between two spells (NEVER = no gap)
    g1: np.ndarray  # its last day
    practice2: np.ndarray  # practice of the second spell (-1 = none)
    act_start: np.ndarray  # first registered day in the window
    act_end: np.ndarray  # last registered (and alive) day in the window
    rejoiners: int


def _draw_registration(
    sc: Scenario, st: Structure, p: _Persons, w0: int, w1: int, rng: np.random.Generator
) -> _Registration:
    """Joiners, leavers, deaths and a second spell for some leavers."""
    n, age, z, pcn = len(p.age), p.age, p.z, p.pcn
    k = sc.frailty.shape
    joiner = rng.random(n) < sc.population.churn_in
    span_before = np.maximum(2, 365 * np.minimum(age, 30))
    reg_start = np.where(
        joiner,
        w0 + 1 + (rng.random(n) * (w1 - w0)).astype(np.int64),
        w0 - 1 - (rng.random(n) * span_before).astype(np.int64),
    )
    leaver = rng.random(n) < sc.population.churn_out
    first_in = np.maximum(reg_start, w0)
    reg_end = np.where(
        leaver & (first_in < w1),
        first_in + (rng.random(n) * (w1 - first_in)).astype(np.int64),
        NEVER,
    )
    mort = (
        np.exp(-10.3 + 0.094 * (age + 0.5))
        * z**0.5
        / gamma_power_mean(k, 0.5)
        * sc.population.mortality_multiplier
    )
    t_death = rng.exponential(1.0, n) / np.maximum(mort / 365.25, 1e-12)
    death_day = first_in + t_death.astype(np.int64)
    dies = death_day <= np.minimum(w1, reg_end)
    death = np.where(dies, death_day, NEVER)
    reg_end = np.where(dies, death_day, reg_end)
    # some leavers register again later (a second spell, at another practice)
    g0 = np.full(n, NEVER)
    g1 = np.full(n, NEVER - 1)
    practice2 = np.full(n, -1)
    rejoiners = 0
    if sc.population.rejoin_share > 0:
        back = reg_end + 1 + rng.integers(30, 366, n)
        rejoin = (
            (reg_end < w1)
            & ~dies
            & (back <= w1)
            & (death_day >= back)
            & (rng.random(n) < sc.population.rejoin_share)
        )
        g0 = np.where(rejoin, reg_end + 1, g0)
        g1 = np.where(rejoin, back - 1, g1)
        # a practice in the same PCN (so the person's service start and cohort stay put)
        first_prac = np.searchsorted(st.practice_pcn, np.arange(len(st.pcn_codes)))
        n_prac = np.bincount(st.practice_pcn, minlength=len(st.pcn_codes))
        pick = first_prac[pcn] + (rng.random(n) * n_prac[pcn]).astype(np.int64)
        practice2 = np.where(rejoin, pick, -1)
        dies2 = rejoin & (death_day <= w1)
        death = np.where(dies2, death_day, death)
        reg_end = np.where(rejoin, np.where(dies2, death_day, NEVER), reg_end)
        dies = dies | dies2
        rejoiners = int(rejoin.sum())
    act_start = np.maximum(reg_start, w0)
    act_end = np.minimum(reg_end, w1)  # reg_end already includes death
    return _Registration(
        joiner, reg_start, reg_end, death, dies, g0, g1, practice2, act_start, act_end, rejoiners
    )


def _daily_rates(
    sc: Scenario,
    st: Structure,
    norms: dict[str, float],
    p: _Persons,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """Rates per day by outcome (outcome-specific multipliers, mean 1 in the population)."""
    ks = sc.frailty.specific_shape
    base: dict[str, np.ndarray] = {}
    for o in OUTCOMES:
        c = sc.frailty.loadings.get(o)
        imd_mult = 1 + sc.deprivation_gradient * IMD_SLOPE[o] * (5.5 - p.imd) / 4.5
        base[o] = (
            sc.rates.get(o)
            / 365.25
            / norms[o]
            * age_sex_multiplier(o, p.age, p.male, sc.age_gradient)
            * imd_mult
            * st.practice_effect[p.practice]
            * p.z**c
            * rng.gamma(ks, 1.0 / ks, size=len(p.age))
        )
    return base


def _other_appointments_ratio(sc: Scenario) -> float:
    """Other GP-practice appointments (not attended with a GP) per attended GP one."""
    p_att_gp = STATUS_P[0] * ROLE_P[0]
    return float((1 - p_att_gp) / p_att_gp) if sc.other_appointments else 0.0


def _rate_ratios(sc: Scenario, st: Structure, pcn: np.ndarray) -> dict[str, np.ndarray]:
    """The effect (rate ratio) per person, scaled by the cohort of their PCN."""
    rr = {o: np.full(len(pcn), sc.effects.rate_ratio.get(o)) for o in OUTCOMES}
    if sc.effects.cohort_scale:
        scale_pcn = np.array([sc.effects.cohort_scale.get(c, 1.0) for c in st.pcn_cohort])
        for o in OUTCOMES:
            rr[o] = rr[o] ** scale_pcn[pcn]
    return rr


@dataclass(frozen=True)
class _World:
    """What stays fixed while the months of a chunk are simulated."""

    sc: Scenario
    st: Structure
    persons: _Persons
    reg: _Registration
    base: dict[str, np.ndarray]  # rates per day by outcome
    elective_base: np.ndarray  # elective admissions per day
    other_ratio: float
    rr: dict[str, np.ndarray]  # rate ratio after an accepted referral
    ramp_days: float
    service_start: np.ndarray  # day the service starts in the person's PCN


@dataclass
class _State:
    """What the monthly loop carries from one month to the next (updated in place)."""

    in_ep: np.ndarray  # in an episode of higher use
    remaining: np.ndarray  # months left in the episode
    hist: np.ndarray  # attended GP appointments, last 12 months (row = month % 12)
    last_ref_month: np.ndarray  # month index of the person's latest referral
    n_refs: np.ndarray
    ref_month: np.ndarray  # month of the accepted referral
    accepted_day: np.ndarray
    rows_p: list[np.ndarray]  # referral rows: person, day, accepted
    rows_d: list[np.ndarray]
    rows_a: list[np.ndarray]


def _initial_state(sc: Scenario, n: int, rng: np.random.Generator) -> _State:
    """Episodes at their stationary start; no history and no referral yet."""
    ep = sc.episodes
    m_in = ep.rate_per_year / 12 * ep.mean_months
    in_ep = rng.random(n) < m_in / (1 + m_in)
    remaining = np.where(in_ep, _ep_length(rng, ep.mean_months, n), 0)
    return _State(
        in_ep=in_ep,
        remaining=remaining,
        hist=np.zeros((12, n), dtype=np.int64),
        last_ref_month=np.full(n, -(10**6)),
        n_refs=np.zeros(n, dtype=np.int64),
        ref_month=np.full(n, -1),
        accepted_day=np.full(n, NEVER),
        rows_p=[],
        rows_d=[],
        rows_a=[],
    )


@dataclass(frozen=True)
class _EventSets:
    """Event rows by outcome, filled month by month."""

    gp: Events
    ae: Events
    adm: Events


def _burn_in_month(
    world: _World, mo: Month, mi: int, state: _State, rng: np.random.Generator
) -> None:
    """A month before the window: only attended GP history and episode state matter."""
    sc, n = world.sc, len(state.in_ep)
    a = np.full(n, mo.start)
    b = np.full(n, mo.end)
    season = 1 + sc.seasonality.gp * np.cos(2 * np.pi * ((mo.calendar_month - 1 + mi) % 12) / 12)
    length = np.where(world.reg.reg_start < mo.start, b - a + 1, 0)  # history only if registered
    lam = world.base["gp"] * length
    lam *= season
    lam[state.in_ep] *= sc.episodes.multiplier.gp
    cnt = poisson(rng, lam)
    state.hist[mi % 12] = cnt


def _month_multipliers(sc: Scenario, mo: Month) -> dict[str, float]:
    """Seasonality and shocks of one month, by outcome."""
    mlen = mo.end - mo.start + 1
    mult: dict[str, float] = {}
    for o in OUTCOMES:
        s = 1 + sc.seasonality.get(o) * np.cos(2 * np.pi * (mo.calendar_month - 1) / 12)
        for sh in sc.shocks:
            ov = min(mo.end, days(sh.end)) - max(mo.start, days(sh.start)) + 1
            if ov > 0:
                s *= 1 + (sh.multiplier.get(o) - 1) * ov / mlen
        mult[o] = s
    return mult


def _simulate_month(
    world: _World,
    mo: Month,
    mi: int,
    state: _State,
    events: _EventSets,
    truth: Truth,
    rng: np.random.Generator,
) -> None:
    """One month of the window: referrals, then events, then the truth's accumulators."""
    reg = world.reg
    a = np.maximum(mo.start, reg.act_start)
    b = np.minimum(mo.end, reg.act_end)
    length = span(a, b, reg.g0, reg.g1)
    active = length > 0
    mult = _month_multipliers(world.sc, mo)
    _refer(world, mi, a, b, state, rng)
    means = _month_means(world, mult, a, b, state)
    _draw_month_events(world, means, mi, a, b, state, events, rng)
    _add_truth(truth, world, means, mi, length, active, state.ref_month)


def _refer(
    world: _World, mi: int, a: np.ndarray, b: np.ndarray, state: _State, rng: np.random.Generator
) -> None:
    """Referral decisions of one month (history up to last month)."""
    ref, reg, hist = world.sc.referral, world.reg, state.hist
    g0, g1 = reg.g0, reg.g1
    gp3 = hist[(mi - 1) % 12] + hist[(mi - 2) % 12] + hist[(mi - 3) % 12]
    gp12 = hist.sum(axis=0)
    seg_a = np.maximum(a, world.service_start)
    seg_len = span(seg_a, b, g0, g1)
    if ref.repeat_after_months is None:
        free = state.n_refs == 0
    else:  # people not yet helped may be referred again after a while
        free = (state.accepted_day == NEVER) & (
            mi - state.last_ref_month >= ref.repeat_after_months
        )
    elig = free & (seg_len > 0) & (world.persons.age + mi // 12 >= ref.min_age)
    if ref.eligibility_gp_last_12m is not None:
        elig &= gp12 > ref.eligibility_gp_last_12m
    if not (ref.monthly_hazard > 0 and elig.any()):
        return
    idx = np.flatnonzero(elig)
    # the spike is judged against the person's *observed* earlier use
    # (months 4-12 before, scaled to three months), as a GP would see it in
    # the record; never against the latent rate, which no one observes
    usual3 = (gp12[idx] - gp3[idx]) / 3.0
    h = ref.monthly_hazard * np.exp(
        ref.recent_gp_weight * np.log1p(gp3[idx])
        + ref.recent_gp_count_weight * gp3[idx]
        + ref.prior_gp_count_weight * gp12[idx]
        + ref.spike_weight * np.log((1 + gp3[idx]) / (1 + usual3))
        + ref.episode_weight * state.in_ep[idx]
        + ref.risk_flag_weight * world.persons.n_flags[idx]
    )
    p = 1 - np.exp(-h * seg_len[idx] / DAYS_PER_MONTH)
    hit = idx[rng.random(len(idx)) < p]
    if len(hit):
        rday = place(seg_a[hit], b[hit], rng.random(len(hit)), g0[hit], g1[hit])
        state.last_ref_month[hit] = mi
        state.n_refs[hit] += 1
        is_acc = rng.random(len(hit)) < ref.outcomes.get("accepted", 0.0)
        state.accepted_day[hit[is_acc]] = rday[is_acc]
        state.ref_month[hit[is_acc]] = mi
        state.rows_p.append(hit)
        state.rows_d.append(rday)
        state.rows_a.append(is_acc)


@dataclass(frozen=True)
class _MonthMeans:
    """Expected events of one month, before and after an accepted referral."""

    b1: np.ndarray  # last day before the referral (segment 1 is [a, b1])
    a2: np.ndarray  # first day from the referral (segment 2 is [a2, b])
    len2: np.ndarray  # registered days in segment 2
    post: np.ndarray  # people with days in segment 2
    mu_pre: dict[str, np.ndarray]  # everyone, segment 1
    mu_post0: dict[str, np.ndarray]  # people in ``post``, segment 2, without the effect
    mu_post: dict[str, np.ndarray]  # the same with the effect


def _month_means(
    world: _World, mult: dict[str, float], a: np.ndarray, b: np.ndarray, state: _State
) -> _MonthMeans:
    """Expected counts of one month: the segment before and after an accepted referral."""
    g0, g1, ep, base = world.reg.g0, world.reg.g1, world.sc.episodes, world.base
    in_ep, accepted_day = state.in_ep, state.accepted_day
    b1 = np.minimum(b, accepted_day - 1)
    len1 = span(a, b1, g0, g1)
    a2 = np.maximum(a, accepted_day)
    len2 = span(a2, b, g0, g1)
    post = np.flatnonzero(len2 > 0)
    ep_idx = np.flatnonzero(in_ep)
    mu_pre = {}
    for o in OUTCOMES:
        m = base[o] * len1
        m *= mult[o]
        m[ep_idx] *= ep.multiplier.get(o)
        mu_pre[o] = m
    epm_post = {o: np.where(in_ep[post], ep.multiplier.get(o), 1.0) for o in OUTCOMES}
    mid = (a2[post] + b[post]) / 2.0
    ramp = (
        np.minimum(1.0, np.maximum(mid - accepted_day[post], 0) / world.ramp_days)
        if world.ramp_days > 0
        else np.ones(len(post))
    )
    mu_post0 = {o: base[o][post] * mult[o] * epm_post[o] * len2[post] for o in OUTCOMES}
    eff = {o: 1 + (world.rr[o][post] - 1) * ramp for o in OUTCOMES}
    mu_post = {o: mu_post0[o] * eff[o] for o in OUTCOMES}
    return _MonthMeans(b1, a2, len2, post, mu_pre, mu_post0, mu_post)


def _draw_month_events(
    world: _World,
    means: _MonthMeans,
    mi: int,
    a: np.ndarray,
    b: np.ndarray,
    state: _State,
    events: _EventSets,
    rng: np.random.Generator,
) -> None:
    """Draw one month's events and record its attended GP appointments in the history."""
    mu_pre, mu_post, post, b1, a2 = means.mu_pre, means.mu_post, means.post, means.b1, means.a2
    everyone = np.arange(len(a))
    ev_gp, ev_ae, ev_adm = events.gp, events.ae, events.adm
    c_gp = poisson(rng, mu_pre["gp"])
    c_gp2 = poisson(rng, mu_post["gp"])
    ev_gp.add(c_gp, everyone, a, b1, rng)
    ev_gp.add(c_gp2, post, a2[post], b[post], rng)
    cnt = c_gp.copy()
    cnt[post] += c_gp2
    state.hist[mi % 12] = cnt
    other_ratio = world.other_ratio
    if other_ratio > 0:
        ev_gp.add(poisson(rng, mu_pre["gp"] * other_ratio), everyone, a, b1, rng, tag=1)
        ev_gp.add(
            poisson(rng, mu_post["gp"] * other_ratio),
            post,
            a2[post],
            b[post],
            rng,
            tag=1,
        )
    ev_ae.add(poisson(rng, mu_pre["ae"]), everyone, a, b1, rng)
    ev_ae.add(poisson(rng, mu_post["ae"]), post, a2[post], b[post], rng)
    ev_adm.add(poisson(rng, mu_pre["admissions"]), everyone, a, b1, rng)
    ev_adm.add(poisson(rng, mu_post["admissions"]), post, a2[post], b[post], rng)


def _add_truth(
    truth: Truth,
    world: _World,
    means: _MonthMeans,
    mi: int,
    length: np.ndarray,
    active: np.ndarray,
    ref_month: np.ndarray,
) -> None:
    """Add one month's exposure and expected events to the truth's accumulators."""
    mu_pre, mu_post0, mu_post = means.mu_pre, means.mu_post0, means.mu_post
    post, len2 = means.post, means.len2
    truth.exposure_all += float(length[active].sum())
    for o in OUTCOMES:
        truth.expected_all[o] += float(mu_pre[o].sum() + mu_post[o].sum())
    if not len(post):
        return
    ek = np.minimum(mi - ref_month[post], MAX_EVENT_MONTH)
    truth.exposure_days += float(len2[post].sum())
    np.add.at(truth.by_month_days, ek, len2[post])
    for o in OUTCOMES:
        truth.mu0[o] += float(mu_post0[o].sum())
        truth.mu1[o] += float(mu_post[o].sum())
        np.add.at(truth.by_month_mu0[o], ek, mu_post0[o])
        np.add.at(truth.by_month_mu1[o], ek, mu_post[o])
    if world.sc.effects.cohort_scale:
        coh = np.array(world.st.pcn_cohort)[world.persons.pcn[post]]
        for c in np.unique(coh):
            sel = coh == c
            d = truth.by_cohort.setdefault(str(c), {})
            d["exposure_days"] = d.get("exposure_days", 0.0) + float(len2[post][sel].sum())
            for o in OUTCOMES:
                d[f"mu0_{o}"] = d.get(f"mu0_{o}", 0.0) + float(mu_post0[o][sel].sum())
                d[f"mu1_{o}"] = d.get(f"mu1_{o}", 0.0) + float(mu_post[o][sel].sum())


def _episode_transitions(sc: Scenario, state: _State, rng: np.random.Generator) -> None:
    """Episodes end or start at the end of the month."""
    ep = sc.episodes
    p_start = 1 - np.exp(-ep.rate_per_year / 12)
    n = len(state.in_ep)
    state.remaining = np.where(state.in_ep, state.remaining - 1, state.remaining)
    state.in_ep = state.in_ep & (state.remaining > 0)
    start_ep = (~state.in_ep) & (rng.random(n) < p_start)
    starters = np.flatnonzero(start_ep)
    state.remaining[starters] = _ep_length(rng, ep.mean_months, len(starters))
    state.in_ep = state.in_ep | start_ep


@dataclass(frozen=True)
class _Referrals:
    """Referral rows (``cols``) and what the wellbeing scores are drawn from."""

    cols: dict[str, np.ndarray]
    referred: np.ndarray  # person of each row
    outcome: np.ndarray  # index into REF_OUTCOMES
    first_contact: np.ndarray
    planned_discharge: np.ndarray  # before a leaving or death cut it short
    last: np.ndarray  # last registered day of the spell the referral falls in


def _referral_rows(
    world: _World, state: _State, truth: Truth, w1: int, rng: np.random.Generator
) -> _Referrals:
    """Referral rows in (person, day) order with outcome, source, contacts, discharge."""
    ref, reg = world.sc.referral, world.reg
    if state.rows_p:
        referred = np.concatenate(state.rows_p)
        rday = np.concatenate(state.rows_d)
        acc = np.concatenate(state.rows_a)
    else:
        referred, rday, acc = np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, bool)
    order = np.lexsort((rday, referred))
    referred, rday, acc = referred[order], rday[order], acc[order]
    nr = len(referred)
    truth.referred_persons = len(np.unique(referred))
    # the non-accepted are split into declined / did not engage
    not_acc = ~acc
    pd_ = ref.outcomes.get("declined", 0.0)
    pn_ = ref.outcomes.get("did_not_engage", 0.0)
    split = rng.random(nr) < (pd_ / (pd_ + pn_) if pd_ + pn_ > 0 else 1.0)
    outcome = np.where(not_acc, np.where(split, 1, 2), 0)
    for i, key in enumerate(REF_OUTCOMES):
        truth.referred[key] = int((outcome == i).sum())
    src_p: dict[str, float] = {str(k): float(v) for k, v in ref.sources.items()}
    source = rng.choice(len(SOURCES), size=nr, p=[src_p.get(s, 0.0) for s in SOURCES])
    first_contact = np.where(outcome == 0, rday + rng.integers(3, 29, nr), NEVER)
    contacts = np.where(outcome == 0, rng.integers(3, 13, nr), np.where(outcome == 2, 0, -1))
    discharge = np.where(
        outcome == 0,
        first_contact + rng.integers(60, 121, nr),
        np.where(outcome == 2, rday + rng.integers(30, 61, nr), NEVER),
    )
    # contacts and discharges stop when the person leaves or dies (or at the data cut)
    # the last registered day of the spell the referral falls in
    g0, act_end = reg.g0, reg.act_end
    last = np.where(
        rday < g0[referred], np.minimum(act_end[referred], g0[referred] - 1), act_end[referred]
    )
    first_contact = np.where(first_contact > last, NEVER, first_contact)
    contacts = np.where((outcome == 0) & (first_contact == NEVER), 0, contacts)
    planned_discharge = discharge
    discharge = np.where(discharge > last, np.where(last < w1, last, NEVER), discharge)
    lw = rng.integers(1, 4, nr)
    cols = {
        "person": referred,
        "referral_date": rday,
        "referral_source": source,
        "outcome": outcome,
        "first_contact_date": first_contact,
        "contacts": contacts,
        "discharge_date": discharge,
        "snomed": (outcome == 1).astype(np.int64),
        "link_worker": world.persons.pcn[referred] * 10 + lw,
    }
    return _Referrals(cols, referred, outcome, first_contact, planned_discharge, last)


def _gp_rows(ev_gp: Events, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """GP appointment rows with status, staff role and mode."""
    person, day, tag = ev_gp.arrays()
    other = np.flatnonzero(tag == 1)
    # marks of the "other" rows: joint (status, role) excluding (attended, gp)
    joint = np.outer(STATUS_P, ROLE_P).ravel()
    joint[0] = 0.0
    joint /= joint.sum()
    sr = rng.choice(len(joint), size=len(other), p=joint)
    status = np.zeros(len(person), np.int64)
    role = np.zeros(len(person), np.int64)
    status[other] = sr // len(ROLE_P)
    role[other] = sr % len(ROLE_P)
    mode = rng.choice(len(MODE_P), size=len(person), p=MODE_P)
    mode, keep = _distinct_marks([person, day, status, role], mode, len(MODE_P))
    return {
        "person": person[keep],
        "day": day[keep],
        "status": status[keep],
        "role": role[keep],
        "mode": mode[keep],
    }


def _ae_rows(ev_ae: Events, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """A&E attendance rows with department type."""
    pa_, da_, _ = ev_ae.arrays()
    dept = rng.choice(len(DEPT_P), size=len(pa_), p=DEPT_P)
    dept, keep = _distinct_marks([pa_, da_], dept, len(DEPT_P))
    return {"person": pa_[keep], "day": da_[keep], "dept": dept[keep]}


def _admission_rows(
    world: _World, ev_adm: Events, w1: int, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Admission spells: unplanned, elective and 2B transfers, with discharge day."""
    reg, age = world.reg, world.persons.age
    g0, g1, act_start, act_end = reg.g0, reg.g1, reg.act_start, reg.act_end
    pu, du, _ = ev_adm.arrays()
    # elective admissions: constant rate over each person's registration in the window
    act_len = span(act_start, act_end, g0, g1)
    ev_el = Events(g0, g1)
    everyone = np.arange(len(age))
    ev_el.add(poisson(rng, world.elective_base * act_len), everyone, act_start, act_end, rng)
    pe, de, _ = ev_el.arrays()
    nu, ne = len(pu), len(pe)
    meth_u = rng.choice(len(UNPLANNED_P), size=nu, p=UNPLANNED_P)
    mean_los = 3.0 + 0.08 * np.maximum(age[pu] - 50, 0)
    los_u = np.where(rng.random(nu) < 0.3, 0, rng.geometric(1 / mean_los))
    meth_e = rng.choice(len(ELECTIVE_P), size=ne, p=ELECTIVE_P) + len(UNPLANNED)
    los_e = np.where(rng.random(ne) < 0.7, 0, rng.geometric(0.5, ne))
    tr = np.flatnonzero((los_u > 0) & (rng.random(nu) < TRANSFER_SHARE))
    p_t = pu[tr]
    d_t = du[tr] + los_u[tr]
    los_t = rng.geometric(1 / 4.0, len(tr))
    keep_t = (d_t <= act_end[p_t]) & ~((d_t >= g0[p_t]) & (d_t <= g1[p_t]))
    code_2b = len(UNPLANNED) + len(ELECTIVE)
    person = np.concatenate([pu, pe, p_t[keep_t]])
    day = np.concatenate([du, de, d_t[keep_t]])
    los = np.concatenate([los_u, los_e, los_t[keep_t]])
    meth = np.concatenate([meth_u, meth_e, np.full(int(keep_t.sum()), code_2b)])
    dis = day + los
    dis = np.minimum(dis, reg.death[person])  # died in hospital
    dis = np.where(dis > w1, NEVER, dis)  # still in hospital at the data cut
    order = np.lexsort((dis, meth, day, person))
    # two spells of one person with the same dates and method would be exact duplicate
    # rows (in practice one spell): collapse them
    same = np.zeros(len(order), dtype=bool)
    if len(order) > 1:
        same[1:] = (
            (person[order][1:] == person[order][:-1])
            & (day[order][1:] == day[order][:-1])
            & (meth[order][1:] == meth[order][:-1])
            & (dis[order][1:] == dis[order][:-1])
        )
    order = order[~same]
    return {
        "person": person[order],
        "day": day[order],
        "discharge": dis[order],
        "method": meth[order],
    }


def _wellbeing_rows(
    sc: Scenario, refs: _Referrals, wb_rng: np.random.Generator
) -> dict[str, np.ndarray] | None:
    """Wellbeing scores at first contact and at discharge of accepted referrals."""
    if sc.wellbeing is None:
        return None
    wbs = sc.wellbeing
    lo, hi = {"swemwbs": (7, 35), "wemwbs": (14, 70), "ons4_life_satisfaction": (0, 10)}[
        wbs.instrument
    ]
    sel = np.flatnonzero((refs.outcome == 0) & (refs.first_contact < NEVER))
    who = refs.referred[sel]
    fc = refs.first_contact[sel]
    base_score = wb_rng.normal(wbs.baseline_mean, wbs.baseline_sd, len(sel))
    change = wbs.natural_change + wbs.effect + wb_rng.normal(0, wbs.change_sd, len(sel))
    dd = refs.planned_discharge[sel]
    ok2 = (dd < NEVER) & (dd <= refs.last[sel])
    wp = np.concatenate([who, who[ok2]])
    wd = np.concatenate([fc, dd[ok2]])
    ws = np.concatenate([base_score, (base_score + change)[ok2]])
    ws = np.clip(np.rint(ws), lo, hi).astype(np.float64)
    order = np.lexsort((wd, wp))
    return {"person": wp[order], "day": wd[order], "score": ws[order]}


def _population_columns(p: _Persons, reg: _Registration) -> dict[str, np.ndarray]:
    """The person columns of a chunk."""
    return {
        "practice": p.practice,
        "pcn": p.pcn,
        "male": p.male,
        "yob": p.yob,
        "reg_start": reg.reg_start,
        "reg_end": reg.reg_end,
        "death": reg.death,
        "imd": p.imd,
        "lsoa": p.lsoa,
        "eth": p.eth,
        "living_alone": p.living_alone,
        "widowed": p.widowed,
        "efi": p.efi,
        "falls": p.falls,
        "stroke": p.stroke,
        "copd": p.copd,
        "hf": p.hf,
        "act_start": reg.act_start,
        "act_end": reg.act_end,
        "g0": reg.g0,
        "g1": reg.g1,
        "practice2": reg.practice2,
    }
