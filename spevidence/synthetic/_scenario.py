"""Scenario files for the synthetic ICB generator: pydantic model and lookup."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from spevidence.errors import SpevidenceError

OUTCOMES: tuple[str, str, str] = ("gp", "ae", "admissions")


class ScenarioError(SpevidenceError):
    """A synthetic scenario cannot be found, read or validated."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PerOutcome(_Model):
    """One number for each of the three outcomes."""

    gp: float
    ae: float
    admissions: float

    def get(self, outcome: str) -> float:
        return float(getattr(self, outcome))


class Window(_Model):
    start: dt.date = Field(description="First day of the extracts (inclusive).")
    end: dt.date = Field(description="Last day of the extracts (inclusive).")

    @model_validator(mode="after")
    def _order(self) -> Window:
        if self.end <= self.start:
            raise ValueError(f"window.end ({self.end}) must be after window.start ({self.start})")
        return self


class Structure(_Model):
    pcns: int | None = Field(
        default=3, ge=1, description="Number of PCNs; null = persons/persons_per_pcn."
    )
    persons_per_pcn: int = Field(default=40_000, ge=100)
    practices_per_pcn: tuple[int, int] = (3, 6)
    practice_effect_sd: float = Field(default=0.10, ge=0, le=1)

    @model_validator(mode="after")
    def _range(self) -> Structure:
        lo, hi = self.practices_per_pcn
        if not 1 <= lo <= hi:
            raise ValueError("structure.practices_per_pcn must be [min, max] with 1 <= min <= max")
        return self


class PopulationOpts(_Model):
    churn_in: float = Field(
        default=0.10, ge=0, le=0.9, description="Share registering during window."
    )
    churn_out: float = Field(
        default=0.10, ge=0, le=0.9, description="Share leaving during the window."
    )
    rejoin_share: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="Share of leavers who register again 1-12 months later (a second "
        "population row, at a practice of the same PCN).",
    )
    mortality_multiplier: float = Field(default=1.0, ge=0, le=10)


class Frailty(_Model):
    shape: float = Field(default=1.2, gt=0, description="Gamma shape of the shared frailty.")
    loadings: PerOutcome = PerOutcome(gp=1.0, ae=0.9, admissions=1.1)
    specific_shape: float = Field(
        default=5.0, gt=0, description="Gamma shape, outcome-specific part."
    )


class Shock(_Model):
    start: dt.date
    end: dt.date
    multiplier: PerOutcome
    label: str = "shock"


class Episodes(_Model):
    rate_per_year: float = Field(default=0.15, ge=0, le=5)
    mean_months: float = Field(default=3.0, ge=1, le=36, description="Mean length (1 + binomial).")
    multiplier: PerOutcome = PerOutcome(gp=4.0, ae=2.0, admissions=2.0)


class Referral(_Model):
    service_start_from: dt.date | None = Field(
        default=None,
        description="Earliest quarter a PCN starts its service (default: window start).",
    )
    service_start_to: dt.date | None = Field(
        default=None, description="Latest quarter a PCN starts its service (default: = from)."
    )
    monthly_hazard: float = Field(default=0.001, ge=0, le=1)
    recent_gp_weight: float = Field(
        default=0.3, description="Log-hazard per log(1 + GP last 3 months)."
    )
    recent_gp_count_weight: float = Field(
        default=0.0,
        description="Log-hazard per attended GP appointment in the last 3 months (the "
        "more often a frequent attender was seen lately, the likelier the referral; "
        "log-linear in the observed count, like a propensity-score model).",
    )
    prior_gp_count_weight: float = Field(
        default=0.0,
        description="Log-hazard per attended GP appointment in the last 12 months (a "
        "frequent attender by the year's count, as in the record).",
    )
    spike_weight: float = Field(
        default=3.0,
        description="Log-hazard per log of (1 + GP last 3 months) / (1 + GP months 4-12 "
        "before / 3): referral follows a spike above the person's own *observed* earlier "
        "use (as seen in the record, never the latent rate).",
    )
    episode_weight: float = Field(
        default=0.0, description="Log-hazard when in a transient episode."
    )
    risk_flag_weight: float = Field(default=0.3, description="Log-hazard per risk flag.")
    min_age: int = Field(default=18, ge=0, le=120)
    repeat_after_months: int | None = Field(
        default=None,
        ge=1,
        description="If set, people referred but not accepted may be referred again this "
        "many months later (several referral rows; the effect starts at the accepted one).",
    )
    eligibility_gp_last_12m: int | None = Field(
        default=None, ge=0, description="Only people with more attended GP appointments than this."
    )
    outcomes: dict[Literal["accepted", "declined", "did_not_engage"], float] = {
        "accepted": 0.70,
        "declined": 0.15,
        "did_not_engage": 0.15,
    }
    sources: dict[Literal["gp", "practice_staff", "other_agency", "self"], float] = {
        "gp": 0.60,
        "practice_staff": 0.20,
        "other_agency": 0.12,
        "self": 0.08,
    }

    @model_validator(mode="after")
    def _probs(self) -> Referral:
        for name in ("outcomes", "sources"):
            probs = getattr(self, name)
            total = sum(probs.values())
            if any(p < 0 for p in probs.values()) or abs(total - 1.0) > 1e-6:
                raise ValueError(
                    f"referral.{name} must be non-negative probabilities summing to 1 "
                    f"(got {total:g})"
                )
        if (
            self.service_start_from is not None
            and self.service_start_to is not None
            and self.service_start_to < self.service_start_from
        ):
            raise ValueError("referral.service_start_to is before referral.service_start_from")
        return self


class Effects(_Model):
    rate_ratio: PerOutcome = PerOutcome(gp=1.0, ae=1.0, admissions=1.0)
    ramp_up_months: float = Field(default=3.0, ge=0, le=60)
    cohort_scale: dict[str, float] = Field(
        default_factory=dict,
        description="Service-start financial year ('2019/20') -> power applied to each rate ratio.",
    )

    @model_validator(mode="after")
    def _positive(self) -> Effects:
        for o in OUTCOMES:
            if self.rate_ratio.get(o) <= 0:
                raise ValueError(f"effects.rate_ratio.{o} must be > 0")
        for k in self.cohort_scale:
            if len(k) != 7 or k[4] != "/" or not (k[:4] + k[5:]).isdigit():
                raise ValueError(f"effects.cohort_scale key {k!r} must look like '2019/20'")
        return self


class Wellbeing(_Model):
    instrument: Literal["swemwbs", "wemwbs", "ons4_life_satisfaction"] = "swemwbs"
    baseline_mean: float = 19.0
    baseline_sd: float = Field(default=4.0, ge=0)
    natural_change: float = 1.0
    effect: float = 2.0
    change_sd: float = Field(default=3.0, ge=0)


class MissingColumn(_Model):
    table: Literal[
        "population", "referrals", "gp_appointments", "ae_attendances", "admissions", "wellbeing"
    ]
    column: str


class Defects(_Model):
    invalid_nhs_number: float = Field(default=0.0, ge=0, le=1, description="Share of persons.")
    duplicate_events: float = Field(default=0.0, ge=0, le=1, description="Share of event rows.")
    events_after_death: float = Field(
        default=0.0, ge=0, le=1, description="Share of deceased persons."
    )
    events_outside_registration: float = Field(
        default=0.0, ge=0, le=1, description="Share of persons registered for part of the window."
    )
    referrals_not_in_population: float = Field(
        default=0.0, ge=0, le=1, description="Per referral row."
    )
    mixed_date_formats: float = Field(
        default=0.0, ge=0, le=1, description="Share of event dates (CSV)."
    )
    unparseable_dates: float = Field(
        default=0.0, ge=0, le=1, description="Share of event dates (CSV)."
    )
    negative_length_of_stay: float = Field(
        default=0.0, ge=0, le=1, description="Share of admissions."
    )
    missing_column: MissingColumn | None = None

    @property
    def any(self) -> bool:
        return self.missing_column is not None or any(
            float(v) > 0 for k, v in self.model_dump().items() if k != "missing_column"
        )


class Scenario(_Model):
    """A synthetic ICB scenario (see ``synthetic/README.md``).

    Top-level fields: ``name``, ``description``, ``window`` (start/end dates),
    ``persons`` (default size), ``identifiers`` (``nhs_number`` from the 999 test range
    or ``pseudonym`` tokens), ``structure`` (PCNs and practices), ``population`` (churn,
    re-registration, mortality), ``rates`` (population-average events per person-year),
    ``frailty`` (shared gamma frailty), ``seasonality``, ``shocks`` (e.g. a pandemic
    dip), ``episodes`` (transient bad patches), ``referral`` (who is referred, when, and
    the outcome), ``effects`` (true rate ratios, ramp-up, cohort scaling), ``wellbeing``
    and ``defects``. Unknown fields are errors.
    """

    name: str
    description: str = ""
    window: Window
    persons: int = Field(default=5000, ge=1)
    identifiers: Literal["nhs_number", "pseudonym"] = "nhs_number"
    structure: Structure = Field(default_factory=Structure)
    population: PopulationOpts = Field(default_factory=PopulationOpts)
    rates: PerOutcome = PerOutcome(gp=5.5, ae=0.4, admissions=0.1)
    elective_admissions_per_year: float = Field(default=0.08, ge=0)
    other_appointments: bool = Field(
        default=True, description="Also emit nurse/other/DNA/cancelled rows."
    )
    age_gradient: float = Field(default=1.0, ge=0, le=3)
    deprivation_gradient: float = Field(default=1.0, ge=0, le=3)
    frailty: Frailty = Field(default_factory=Frailty)
    seasonality: PerOutcome = PerOutcome(gp=0.10, ae=0.06, admissions=0.12)
    shocks: list[Shock] = Field(default_factory=list)
    episodes: Episodes = Field(default_factory=Episodes)
    referral: Referral = Field(default_factory=Referral)
    effects: Effects = Field(default_factory=Effects)
    wellbeing: Wellbeing | None = None
    defects: Defects = Field(default_factory=Defects)

    @model_validator(mode="after")
    def _consistent(self) -> Scenario:
        for o in OUTCOMES:
            if self.rates.get(o) < 0:
                raise ValueError(f"rates.{o} must be >= 0")
            if not 0 <= self.seasonality.get(o) < 1:
                raise ValueError(f"seasonality.{o} must be in [0, 1)")
        if self.identifiers == "pseudonym" and self.defects.invalid_nhs_number > 0:
            raise ValueError(
                "defects.invalid_nhs_number needs identifiers: nhs_number (pseudonyms have no "
                "check digit)"
            )
        return self


def scenario_dirs() -> list[Path]:
    """Folders searched for ``NAME.yaml``: the installed copy, then the repository's."""
    import spevidence

    pkg = Path(spevidence.__file__).resolve().parent
    return [p for p in (pkg / "_synthetic", pkg.parent / "synthetic") if p.is_dir()]


def list_scenarios() -> list[str]:
    """Names of the scenarios shipped with spevidence (``synthetic/*.yaml``)."""
    names: set[str] = set()
    for d in scenario_dirs():
        names.update(p.stem for p in d.glob("*.yaml"))
    return sorted(names)


def _format_validation(err: ValidationError, source: str) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(x) for x in e["loc"]) or "(top level)"
        lines.append(f"  - {loc}: {e['msg']}")
    return (
        f"Scenario {source} is not valid ({len(lines)} problem(s)):\n"
        + "\n".join(lines)
        + "\nFix these fields in the scenario YAML (see synthetic/README.md)."
    )


def load_scenario(name_or_path: str | Path | Scenario) -> Scenario:
    """Load and validate a scenario.

    Parameters
    ----------
    name_or_path
        A path to a YAML file, or the NAME of a shipped scenario (``synthetic/NAME.yaml``),
        or an already-built :class:`Scenario` (returned unchanged).

    Raises
    ------
    ScenarioError
        The file is missing, is not YAML, or fails validation (each problem listed).
    """
    if isinstance(name_or_path, Scenario):
        return name_or_path
    text_name = str(name_or_path)
    path = Path(text_name)
    if not (path.suffix in {".yaml", ".yml"} or path.exists()):
        found = [d / f"{text_name}.yaml" for d in scenario_dirs()]
        found = [p for p in found if p.is_file()]
        if not found:
            raise ScenarioError(
                f"No scenario named {text_name!r}. Known scenarios: "
                f"{', '.join(list_scenarios()) or '(none found)'}; or give a path to a YAML file."
            )
        path = found[0]
    if not path.is_file():
        raise ScenarioError(f"Scenario file {path} does not exist; check the path.")
    try:
        raw: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ScenarioError(f"Scenario file {path} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ScenarioError(f"Scenario file {path} must hold a mapping of fields at the top level.")
    raw.setdefault("name", path.stem)
    try:
        return Scenario.model_validate(raw)
    except ValidationError as exc:
        raise ScenarioError(_format_validation(exc, str(path))) from None
