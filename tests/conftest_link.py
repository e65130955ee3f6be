"""Helpers for the data/identity/link tests: tiny worlds built in code, an independent
pandas panel, and writers. Imported explicitly (not a pytest conftest)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd

D = dt.date

START = D(2021, 1, 1)
END = D(2021, 6, 30)


def _frame(rows: list[tuple], cols: list[str]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=pd.Index(cols), dtype=object)


POP_COLS = [
    "person_id", "practice_code", "pcn_code", "sex", "year_of_birth",
    "registration_start", "registration_end", "death_date", "imd_decile",
]  # fmt: skip
REF_COLS = ["person_id", "referral_date", "referral_source", "outcome"]
GP_COLS = ["person_id", "appointment_date", "status", "staff_role", "mode"]
AE_COLS = ["person_id", "arrival_date", "department_type"]
ADM_COLS = ["person_id", "admission_date", "discharge_date", "admission_method"]


def tiny_world() -> dict[str, pd.DataFrame]:
    """Five people; every count of the expected panel below is worked out by hand."""
    pop = _frame(
        [
            ("p1", "A81001", "U1", "F", 1950, D(2015, 1, 1), None, None, 2),
            ("p2", "A81001", "U1", "M", 1980, D(2021, 2, 15), D(2021, 4, 10), None, None),
            ("p3", "A81002", "U2", "F", 1930, D(2010, 1, 1), None, D(2021, 3, 5), 10),
            ("p4", "A81002", "U2", "M", 1990, D(2021, 7, 1), None, None, 5),
            ("p5", "A81001", "U1", "M", 1960, D(2019, 1, 1), D(2021, 1, 31), None, 4),
            ("p5", "A81002", "U2", "M", 1960, D(2021, 3, 1), None, None, 4),
        ],
        POP_COLS,
    )
    ref = _frame(
        [
            ("p1", D(2021, 1, 15), "gp", "declined"),
            ("p1", D(2021, 3, 10), "gp", "accepted"),
            ("p1", D(2021, 5, 10), "self", "accepted"),
            ("p5", D(2020, 11, 20), "other_agency", "accepted"),
            ("p2", D(2021, 3, 1), "gp", "did_not_engage"),
        ],
        REF_COLS,
    )
    gp = _frame(
        [
            ("p1", D(2021, 1, 4), "attended", "gp", "face_to_face"),
            ("p1", D(2021, 1, 20), "attended", "gp", "telephone"),
            ("p1", D(2021, 2, 1), "dna", "gp", "face_to_face"),
            ("p1", D(2021, 2, 10), "attended", "nurse", "face_to_face"),
            ("p1", D(2021, 3, 15), "attended", "gp", "video"),
            ("p2", D(2021, 2, 20), "attended", "gp", "face_to_face"),
            ("p2", D(2021, 4, 10), "attended", "gp", "face_to_face"),
            ("p3", D(2021, 3, 5), "attended", "gp", "home_visit"),
            ("p5", D(2021, 6, 30), "attended", "gp", "telephone"),
        ],
        GP_COLS,
    )
    ae = _frame(
        [
            ("p1", D(2021, 3, 11), "1"),
            ("p1", D(2021, 5, 2), "3"),
            ("p3", D(2021, 1, 31), "1"),
        ],
        AE_COLS,
    )
    adm = _frame(
        [
            ("p1", D(2021, 4, 1), D(2021, 4, 3), "21"),
            ("p1", D(2021, 4, 20), D(2021, 4, 22), "2B"),
            ("p1", D(2021, 5, 5), D(2021, 5, 6), "11"),
            ("p5", D(2021, 1, 31), D(2021, 2, 2), "2A"),
        ],
        ADM_COLS,
    )
    return {
        "population": pop,
        "referrals": ref,
        "gp_appointments": gp,
        "ae_attendances": ae,
        "admissions": adm,
    }


# person, period(month), t, gp, ae, admissions, exposure_days, practice, pcn, sex, yob, imd,
# referral_date, referral_t  -- worked out by hand from tiny_world() for Jan-Jun 2021
TINY_EXPECTED_MONTHLY = [
    ("p1", D(2021, 1, 1), 0, 2, 0, 0, 31, "A81001", "U1", "F", 1950, 2, D(2021, 3, 10), 2),
    ("p1", D(2021, 2, 1), 1, 0, 0, 0, 28, "A81001", "U1", "F", 1950, 2, D(2021, 3, 10), 2),
    ("p1", D(2021, 3, 1), 2, 1, 1, 0, 31, "A81001", "U1", "F", 1950, 2, D(2021, 3, 10), 2),
    ("p1", D(2021, 4, 1), 3, 0, 0, 1, 30, "A81001", "U1", "F", 1950, 2, D(2021, 3, 10), 2),
    ("p1", D(2021, 5, 1), 4, 0, 1, 0, 31, "A81001", "U1", "F", 1950, 2, D(2021, 3, 10), 2),
    ("p1", D(2021, 6, 1), 5, 0, 0, 0, 30, "A81001", "U1", "F", 1950, 2, D(2021, 3, 10), 2),
    ("p2", D(2021, 2, 1), 1, 1, 0, 0, 14, "A81001", "U1", "M", 1980, None, None, None),
    ("p2", D(2021, 3, 1), 2, 0, 0, 0, 31, "A81001", "U1", "M", 1980, None, None, None),
    ("p2", D(2021, 4, 1), 3, 1, 0, 0, 10, "A81001", "U1", "M", 1980, None, None, None),
    ("p3", D(2021, 1, 1), 0, 0, 1, 0, 31, "A81002", "U2", "F", 1930, 10, None, None),
    ("p3", D(2021, 2, 1), 1, 0, 0, 0, 28, "A81002", "U2", "F", 1930, 10, None, None),
    ("p3", D(2021, 3, 1), 2, 1, 0, 0, 5, "A81002", "U2", "F", 1930, 10, None, None),
    ("p5", D(2021, 1, 1), 0, 0, 0, 1, 31, "A81002", "U2", "M", 1960, 4, D(2020, 11, 20), -2),
    ("p5", D(2021, 3, 1), 2, 0, 0, 0, 31, "A81002", "U2", "M", 1960, 4, D(2020, 11, 20), -2),
    ("p5", D(2021, 4, 1), 3, 0, 0, 0, 30, "A81002", "U2", "M", 1960, 4, D(2020, 11, 20), -2),
    ("p5", D(2021, 5, 1), 4, 0, 0, 0, 31, "A81002", "U2", "M", 1960, 4, D(2020, 11, 20), -2),
    ("p5", D(2021, 6, 1), 5, 1, 0, 0, 30, "A81002", "U2", "M", 1960, 4, D(2020, 11, 20), -2),
]

PANEL_COLS = [
    "person_id", "period", "t", "gp", "ae", "admissions", "exposure_days", "practice_code",
    "pcn_code", "sex", "year_of_birth", "imd_decile", "referral_date", "referral_t",
]  # fmt: skip


def as_panel_frame(rows: list[tuple]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=pd.Index(PANEL_COLS))
    for c in ("period", "referral_date"):
        df[c] = pd.to_datetime(df[c]).astype("datetime64[s]")
    for c in ("t", "gp", "ae", "admissions", "exposure_days"):
        df[c] = df[c].astype("int64")
    for c in ("year_of_birth", "imd_decile", "referral_t"):
        df[c] = df[c].astype("Int64")
    for c in ("person_id", "practice_code", "pcn_code", "sex"):
        df[c] = df[c].astype("str")
    return df


def write_extracts(folder: Path, tables: dict[str, pd.DataFrame], *, fmt: str = "parquet") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, df in tables.items():
        out = df.copy()
        for c in out.columns:
            if out[c].map(lambda v: isinstance(v, dt.date)).any():
                out[c] = pd.to_datetime(out[c]).astype("datetime64[s]")
                if fmt == "parquet":
                    out[c] = out[c].dt.date
        if fmt == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            schema_fields = []
            for c in out.columns:
                vals = out[c].tolist()
                if any(isinstance(v, dt.date) for v in vals):
                    typ = pa.date32()
                elif c in ("year_of_birth", "imd_decile", "contacts"):
                    typ = pa.int64()
                else:
                    typ = pa.string()
                schema_fields.append(pa.field(c, typ))
            arrays = [
                pa.array([None if pd.isna(v) else v for v in out[c].tolist()], f.type)
                for c, f in zip(out.columns, schema_fields, strict=True)
            ]
            pq.write_table(
                pa.Table.from_arrays(arrays, schema=pa.schema(schema_fields)),
                folder / f"{name}.parquet",
            )
        else:
            out.to_csv(folder / f"{name}.csv", index=False)
    return folder


# ---------------------------------------------------------------------------
# random worlds and an independent pandas panel
# ---------------------------------------------------------------------------


def random_world(seed: int, n: int = 60) -> dict[str, pd.DataFrame]:
    """Seeded world with gaps, overlapping spells, deaths, orphans and duplicates."""
    rng = np.random.default_rng(seed)
    base = D(2020, 6, 1)

    def day(lo: int, hi: int) -> dt.date:
        return base + dt.timedelta(days=int(rng.integers(lo, hi)))

    pop_rows = []
    for i in range(n):
        pid = f"id{i:04d}"
        n_spells = int(rng.integers(1, 3))
        death = day(100, 500) if rng.random() < 0.2 else None
        starts = sorted({int(s) for s in rng.integers(-400, 450, size=n_spells)})
        for k, s in enumerate(starts):
            start = base + dt.timedelta(days=s)
            end = (
                start + dt.timedelta(days=int(rng.integers(0, 400))) if rng.random() < 0.6 else None
            )
            pop_rows.append(
                (
                    pid,
                    f"P{k}{i % 3}",
                    f"N{i % 2}",
                    "F" if i % 2 else "M",
                    1940 + i % 50,
                    start,
                    end,
                    death,
                    int(rng.integers(1, 11)) if rng.random() < 0.8 else None,
                )
            )
    pop = _frame(pop_rows, POP_COLS)
    ids = [f"id{i:04d}" for i in range(n)] + ["ghost1", "ghost2"]

    def pick() -> str:
        return ids[int(rng.integers(0, len(ids)))]

    gp = _frame(
        [
            (
                pick(),
                day(-60, 460),
                str(rng.choice(["attended", "attended", "dna", "cancelled"])),
                str(rng.choice(["gp", "gp", "nurse", "other"])),
                "face_to_face",
            )
            for _ in range(n * 8)
        ],
        GP_COLS,
    )
    gp = pd.concat([gp, gp.iloc[:7]], ignore_index=True)  # exact duplicates
    ae = _frame(
        [(pick(), day(-60, 460), str(rng.choice(["1", "2", "3", "4"]))) for _ in range(n * 3)],
        AE_COLS,
    )
    adm_rows = []
    for _ in range(n * 2):
        a = day(-60, 460)
        adm_rows.append(
            (
                pick(),
                a,
                a + dt.timedelta(days=int(rng.integers(0, 9))),
                str(rng.choice(["21", "22", "2B", "11", "31", "28", "2A"])),
            )
        )
    adm = _frame(adm_rows, ADM_COLS)
    ref = _frame(
        [
            (
                pick(),
                day(-200, 460),
                "gp",
                str(rng.choice(["accepted", "declined", "did_not_engage"])),
            )
            for _ in range(n)
        ],
        REF_COLS,
    )
    return {"population": pop, "referrals": ref, "gp_appointments": gp,
            "ae_attendances": ae, "admissions": adm}  # fmt: skip


def _period_start(d: dt.date, period: str) -> dt.date:
    m = d.month if period == "month" else (d.month - 1) // 3 * 3 + 1
    return D(d.year, m, 1)


def reference_panel(
    tables: dict[str, pd.DataFrame],
    start: dt.date,
    end: dt.date,
    period: str = "month",
    *,
    gp_roles: tuple[str, ...] = ("gp",),
    ae_types: tuple[str, ...] | None = None,
    methods: tuple[str, ...] = ("21", "22", "23", "24", "25", "2A", "2C", "2D", "28"),
) -> pd.DataFrame:
    """The panel by brute force: expand every registration to its days, in plain Python."""
    pop = tables["population"]
    # validate() drops spells that start after the recorded death
    pop = pop[
        [
            not (d is not None and not pd.isna(d) and d < s)
            for d, s in zip(pop["death_date"], pop["registration_start"], strict=True)
        ]
    ]
    death: dict[str, dt.date | None] = {}
    for pid, g in pop.groupby("person_id"):
        ds = [d for d in g["death_date"] if d is not None and not pd.isna(d)]
        death[str(pid)] = min(ds) if ds else None
    days: dict[str, set[dt.date]] = {}
    for r in pop.itertuples():
        last = (
            end
            if r.registration_end is None or pd.isna(r.registration_end)
            else min(end, r.registration_end)
        )
        dd = death[r.person_id]
        if dd is not None:
            last = min(last, dd)
        d = max(start, r.registration_start)
        s = days.setdefault(r.person_id, set())
        while d <= last:
            s.add(d)
            d += dt.timedelta(days=1)
    p0 = _period_start(start, period)
    step = 1 if period == "month" else 3

    def t_of(d: dt.date) -> int:
        p = _period_start(d, period)
        return ((p.year - p0.year) * 12 + p.month - p0.month) // step

    expo: dict[tuple[str, int], int] = {}
    for pid, s in days.items():
        for d in s:
            expo[(pid, t_of(d))] = expo.get((pid, t_of(d)), 0) + 1

    def count(df: pd.DataFrame, col: str, keep) -> dict[tuple[str, int], int]:
        out: dict[tuple[str, int], int] = {}
        for r in df.drop_duplicates().itertuples():
            d = getattr(r, col)
            if keep(r) and d in days.get(r.person_id, ()):
                k = (r.person_id, t_of(d))
                out[k] = out.get(k, 0) + 1
        return out

    gp = count(
        tables["gp_appointments"],
        "appointment_date",
        lambda r: r.status == "attended" and r.staff_role in gp_roles,
    )
    ae = count(
        tables["ae_attendances"],
        "arrival_date",
        lambda r: ae_types is None or r.department_type in ae_types,
    )
    adm = count(tables["admissions"], "admission_date", lambda r: r.admission_method in methods)
    latest = (
        pop.sort_values("registration_start").groupby("person_id").tail(1).set_index("person_id")
    )
    refs = tables["referrals"]
    first_ref: dict[str, dt.date] = {}
    for r in refs.drop_duplicates().itertuples():
        if r.outcome != "accepted" or r.person_id not in death:
            continue
        if death[r.person_id] is not None and r.referral_date > death[r.person_id]:
            continue
        if r.person_id not in first_ref or r.referral_date < first_ref[r.person_id]:
            first_ref[r.person_id] = r.referral_date
    rows = []
    for (pid, t), e in sorted(expo.items()):
        m = p0.month - 1 + t * step
        per = D(p0.year + m // 12, m % 12 + 1, 1)
        a = latest.loc[pid]
        rd = first_ref.get(pid)
        rows.append((pid, per, t, gp.get((pid, t), 0), ae.get((pid, t), 0), adm.get((pid, t), 0), e,
                     a.practice_code, a.pcn_code, a.sex, a.year_of_birth,
                     None if a.imd_decile is None or pd.isna(a.imd_decile) else a.imd_decile,
                     rd, None if rd is None else t_of(rd)))  # fmt: skip
    return as_panel_frame(rows)
