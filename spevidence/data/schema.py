"""Data contracts for the extracts (DESIGN.md section 4), declared once.

Used by validation, the synthetic generator, the docs table and error messages.
Column kinds: ``id`` (string identifier, never printed), ``str``, ``int``,
``date``, ``float``, ``bool``. Dates are calendar dates (no time of day).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Kind = Literal["id", "str", "int", "date", "float", "bool"]

# Longest text accepted in a code column without a fixed list of values (ODS and PCN
# codes are 3-6 characters, LSOA codes 9, SNOMED CT identifiers at most 18): a longer
# value is not a code and must not reach a released table.
MAX_CODE_LENGTH = 64


@dataclass(frozen=True)
class Column:
    name: str
    kind: Kind
    required: bool = True
    nullable: bool = False
    allowed: tuple[str, ...] | None = None
    description: str = ""

    @property
    def max_length(self) -> int | None:
        """Longest value accepted (text columns without a list of allowed values)."""
        return MAX_CODE_LENGTH if self.kind == "str" and self.allowed is None else None


@dataclass(frozen=True)
class Table:
    name: str
    description: str
    columns: tuple[Column, ...]
    date_column: str | None = None  # the event date, for window/registration checks
    optional: bool = False  # the whole table may be absent
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def required(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.required)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)


# Emergency admission methods (HES/SUS APC), DOMAIN.md. 2B (transfer) is excluded
# from the default "unplanned" definition to avoid double counting.
EMERGENCY_METHODS: tuple[str, ...] = ("21", "22", "23", "24", "25", "2A", "2B", "2C", "2D", "28")
UNPLANNED_METHODS_DEFAULT: tuple[str, ...] = tuple(m for m in EMERGENCY_METHODS if m != "2B")
ELECTIVE_METHODS: tuple[str, ...] = ("11", "12", "13")
MATERNITY_METHODS: tuple[str, ...] = ("31", "32")
OTHER_METHODS: tuple[str, ...] = ("81", "82", "83", "84")
ADMISSION_METHODS: tuple[str, ...] = (
    ELECTIVE_METHODS + EMERGENCY_METHODS + MATERNITY_METHODS + OTHER_METHODS
)

REFERRAL_OUTCOMES = ("accepted", "declined", "did_not_engage")
APPOINTMENT_STATUS = ("attended", "dna", "cancelled")
STAFF_ROLES = ("gp", "nurse", "other")
APPOINTMENT_MODES = ("face_to_face", "telephone", "video", "home_visit")
REFERRAL_SOURCES = ("gp", "practice_staff", "other_agency", "self")
ETHNICITY_GROUPS = ("White", "Asian", "Black", "Mixed", "Other")  # ONS 2021 top-level groups
SEX = ("F", "M")

POPULATION = Table(
    "population",
    "Registered population: one row per person and registration spell.",
    (
        Column("person_id", "id", description="NHS number or pseudonym"),
        Column("practice_code", "str", description="GP practice (ODS code)"),
        Column("pcn_code", "str", description="Primary Care Network (ODS code)"),
        Column("sex", "str", allowed=SEX),
        Column("year_of_birth", "int"),
        Column("registration_start", "date"),
        Column("registration_end", "date", nullable=True, description="empty if still registered"),
        Column("death_date", "date", nullable=True, description="empty if alive"),
        Column("imd_decile", "int", required=False, nullable=True, description="1 = most deprived"),
        Column("lsoa", "str", required=False, nullable=True),
        Column("ethnicity_group", "str", required=False, nullable=True, allowed=ETHNICITY_GROUPS),
        Column("living_alone", "bool", required=False, nullable=True),
        Column("widowed", "bool", required=False, nullable=True),
        Column(
            "frailty",
            "str",
            required=False,
            nullable=True,
            allowed=("fit", "mild", "moderate", "severe"),
            description="eFI category",
        ),
        Column("falls", "bool", required=False, nullable=True),
        Column("stroke", "bool", required=False, nullable=True),
        Column("copd", "bool", required=False, nullable=True),
        Column("heart_failure", "bool", required=False, nullable=True),
    ),
)

REFERRALS = Table(
    "referrals",
    "Social-prescribing referrals: one row per referral.",
    (
        Column("person_id", "id"),
        Column("referral_date", "date"),
        Column("referral_source", "str", allowed=REFERRAL_SOURCES),
        Column("outcome", "str", allowed=REFERRAL_OUTCOMES),
        Column("first_contact_date", "date", required=False, nullable=True),
        Column("contacts", "int", required=False, nullable=True),
        Column("discharge_date", "date", required=False, nullable=True),
        Column("snomed_code", "str", required=False, nullable=True),
        Column("link_worker_id", "str", required=False, nullable=True),
    ),
    date_column="referral_date",
)

GP_APPOINTMENTS = Table(
    "gp_appointments",
    "GP practice appointments: one row per appointment.",
    (
        Column("person_id", "id"),
        Column("appointment_date", "date"),
        Column("status", "str", allowed=APPOINTMENT_STATUS),
        Column("staff_role", "str", allowed=STAFF_ROLES),
        Column("mode", "str", allowed=APPOINTMENT_MODES),
    ),
    date_column="appointment_date",
)

AE_ATTENDANCES = Table(
    "ae_attendances",
    "A&E attendances (ECDS-style): one row per attendance.",
    (
        Column("person_id", "id"),
        Column("arrival_date", "date"),
        Column("department_type", "str", allowed=("1", "2", "3", "4"), description="1 = major A&E"),
    ),
    date_column="arrival_date",
)

ADMISSIONS = Table(
    "admissions",
    "Hospital admissions (HES/SUS APC spells): one row per spell.",
    (
        Column("person_id", "id"),
        Column("admission_date", "date"),
        Column("discharge_date", "date", nullable=True),
        Column("admission_method", "str", allowed=ADMISSION_METHODS),
    ),
    date_column="admission_date",
)

WELLBEING = Table(
    "wellbeing",
    "Wellbeing measures: one row per measurement.",
    (
        Column("person_id", "id"),
        Column("measured_date", "date"),
        Column(
            "instrument",
            "str",
            allowed=(
                "ons4_life_satisfaction",
                "ons4_worthwhile",
                "ons4_happiness",
                "ons4_anxiety",
                "wemwbs",
                "swemwbs",
            ),
        ),
        Column("score", "float"),
    ),
    date_column="measured_date",
    optional=True,
)

TABLES: dict[str, Table] = {
    t.name: t
    for t in (POPULATION, REFERRALS, GP_APPOINTMENTS, AE_ATTENDANCES, ADMISSIONS, WELLBEING)
}
