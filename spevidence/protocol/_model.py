"""Pydantic model of an evaluation protocol."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)

from spevidence.errors import ProtocolError
from spevidence.protocol._loader import read_yaml
from spevidence.protocol.constants import MAX_SIMS, TRAJECTORY

Outcome = Literal["gp", "ae", "admissions"]

# the documented minimum of disclosure control (DOMAIN.md; docs/methods.md section 5)
DISCLOSURE_FLOOR = {"threshold": 7, "rounding": 5}


def matching_columns(*, risk_score: bool) -> tuple[frozenset[str], frozenset[str]]:
    """Names the matched design's panel holds at the index period: numeric ones (for
    ``match.covariates``, ``eligibility`` and ``exact``) and categorical ones (``exact``
    only). ``risk_score`` is there when the covariates ask for it."""
    # imported here: the stages (ibis, scipy) add about 2 s to loading a protocol
    from spevidence.link import PANEL_COLUMNS
    from spevidence.match.risk_set import DERIVED_USE, PRIOR_REFERRAL

    categorical = frozenset({"practice_code", "pcn_code", "sex", "age_band"})
    not_matched = {"person_id", "period", "t", "referral_date", "referral_t"}
    numeric = (
        (set(PANEL_COLUMNS) - not_matched - categorical)
        | set(DERIVED_USE)
        | set(TRAJECTORY)
        | {"age", PRIOR_REFERRAL}
        | ({"risk_score"} if risk_score else set())
    )
    return frozenset(numeric), categorical


def _known(field: str, names: tuple[str, ...], allowed: frozenset[str]) -> None:
    unknown = [n for n in names if n not in allowed]
    if unknown:
        raise ValueError(
            f"{field} names {', '.join(map(repr, unknown))}, which the matching panel does not "
            f"hold; use any of {', '.join(sorted(allowed))}"
            + (
                " (risk_score only when it is in match.covariates)"
                if field != "match.covariates"
                else ""
            )
        )


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class MatchSpec(_Frozen):
    """Risk-set matching of referred people to comparators at the moment of referral."""

    comparators: Literal["not-yet-referred", "never-referred", "comparator-pcns"] = (
        "not-yet-referred"
    )
    comparator_pcns: tuple[str, ...] | None = Field(
        None,
        description="PCN codes that supply the comparators (comparators: comparator-pcns)",
    )
    exact: tuple[str, ...] = ("pcn_code", "sex", "recent_gp")
    covariates: tuple[str, ...] | None = Field(
        None, description="matching covariates; default: prior use of each outcome, age, IMD"
    )
    ratio: int = Field(1, ge=1, le=10)
    caliper: float | None = Field(0.2, gt=0)
    lookback: int = Field(12, ge=1, le=60, description="months of prior use matched on")
    replace: bool = False
    censoring: Literal["ipcw", "referral", "none"] = Field(
        "ipcw",
        description=(
            "comparators referred later: cut at their referral and weight the rest by the "
            "inverse probability of staying unreferred (ipcw), cut only (referral), or keep "
            "(none)"
        ),
    )
    washout: int = Field(
        0, ge=0, le=24, description="with censoring: referral, cut this many periods earlier"
    )
    eligibility: tuple[str, ...] = Field(
        (),
        description=(
            "the scheme's eligibility criteria at referral, e.g. 'prior_gp > 15': "
            "comparators must have met them too"
        ),
    )
    prior_referrals: Literal["keep", "exclude"] = Field(
        "exclude",
        description=(
            "people referred before the index period with any outcome (declined, not "
            "taken up) stay eligible (keep), or are neither cases nor comparators from "
            "then on (exclude: a new-referral design)"
        ),
    )

    @model_validator(mode="after")
    def _washout_needs_referral(self) -> MatchSpec:
        from spevidence.errors import DataError
        from spevidence.match.risk_set import parse_criterion

        numeric, categorical = matching_columns(risk_score="risk_score" in (self.covariates or ()))
        _known("match.exact", self.exact, numeric | categorical)
        _known("match.covariates", self.covariates or (), numeric)
        for c in self.eligibility:
            try:
                column, _, _ = parse_criterion(c)
            except DataError as e:
                raise ValueError(f"match.eligibility: {e}".replace("risk_set: ", "")) from None
            _known("match.eligibility", (column,), numeric)
        if self.washout and self.censoring != "referral":
            raise ValueError(
                f"match.washout ({self.washout}) applies only with censoring: referral "
                f"(got censoring: {self.censoring}); set washout: 0 or censoring: referral"
            )
        return self

    @model_validator(mode="before")
    @classmethod
    def _comparator_pcn_exact(cls, data: Any) -> Any:
        # PCN cannot be an exact stratum when comparators come from other PCNs: the
        # default strata of that design are sex and age band (risk_set's default)
        if (
            isinstance(data, dict)
            and data.get("comparators") == "comparator-pcns"
            and "exact" not in data
        ):
            data = {**data, "exact": ("sex", "age_band")}
        return data

    @model_validator(mode="after")
    def _comparator_pcns(self) -> MatchSpec:
        if self.comparators == "comparator-pcns":
            if not self.comparator_pcns:
                raise ValueError(
                    "comparators: comparator-pcns needs comparator_pcns, the list of PCN "
                    "codes that supply the comparators"
                )
            if "pcn_code" in self.exact:
                raise ValueError(
                    "with comparators: comparator-pcns, pcn_code cannot be in exact (a case "
                    "and its comparators are in different PCNs); use e.g. [sex, age_band]"
                )
        elif self.comparator_pcns:
            raise ValueError("comparator_pcns is only used with comparators: comparator-pcns")
        return self

    @model_serializer(mode="wrap")
    def _dump(self, handler: Any) -> dict[str, Any]:
        # leave comparator_pcns out when unset, so the hash of protocols written
        # before the option existed does not change
        out: dict[str, Any] = handler(self)
        if out.get("comparator_pcns") is None:
            out.pop("comparator_pcns", None)
        return out


class DidSpec(_Frozen):
    """Difference-in-differences options."""

    models: tuple[Literal["linear", "poisson"], ...] = ("linear", "poisson")
    pre: int = Field(12, ge=1, description="periods before the index date in the 2x2")
    post: int = Field(12, ge=1, description="periods after the index date in the 2x2")
    window: tuple[int, int] = Field(
        (-12, 12), description="event-study periods from the index; -1 is the reference"
    )
    cluster: Literal["person_id", "practice_code", "pcn_code"] = "person_id"

    @model_validator(mode="after")
    def _window(self) -> DidSpec:
        lo, hi = self.window
        if not lo <= -1 < hi:
            raise ValueError(
                f"did.window [{lo}, {hi}] must start before 0 (at -1 or earlier: period -1 is "
                "the event study's reference) and end at or after 0, e.g. [-12, 12]"
            )
        return self


class SroiSpec(_Frozen):
    """Social return on investment options."""

    link_worker_wte: float = Field(1.0, gt=0)
    link_worker_cost: float = Field(
        36428.0, gt=0, description="per WTE per year (ARRS max 2022/23)"
    )
    link_worker_cost_source: str = Field(
        "NHS England Network Contract DES: ARRS maximum reimbursement, band 5, 2022/23",
        min_length=3,
    )
    management_overhead: float = Field(0.15, ge=0, le=2)
    activity_costs: float = Field(0.0, ge=0)
    duration_years: int = Field(1, ge=1, le=10)
    drop_off: float = Field(0.0, ge=0, le=1)
    attribution: float = Field(0.0, ge=0, le=1)
    discount: float = Field(0.035, ge=0, le=0.2)
    n_sims: int = Field(
        1000, ge=0, le=MAX_SIMS, description=f"Monte Carlo draws (0 = none; at most {MAX_SIMS:,})"
    )


class DisclosureSpec(_Frozen):
    """Statistical disclosure control on every released table.

    Neither setting can go below the documented minimum (``DISCLOSURE_FLOOR``: redact
    counts 1-7, round the rest to 5; docs/methods.md section 5), so a report's statement
    that its outputs passed disclosure control is always true; stricter values are allowed.
    """

    threshold: int = Field(7, description="counts 1..threshold are redacted (at least 7)")
    rounding: int = Field(5, description="other counts rounded to this base (at least 5)")

    @field_validator("threshold", "rounding")
    @classmethod
    def _floor(cls, value: int, info: ValidationInfo) -> int:
        floor = DISCLOSURE_FLOOR[str(info.field_name)]
        if value < floor:
            raise ValueError(
                f"disclosure.{info.field_name} is {value}, below the minimum of {floor} "
                "(OpenSAFELY and the NHS England HES analysis guide: redact counts 1-7 and "
                "round the rest to the nearest 5; docs/methods.md section 5). Set "
                f"{info.field_name}: {floor} or more; disclosure control cannot be switched off"
            )
        return value


class StaggeredSpec(_Frozen):
    """Staggered-adoption difference-in-differences (used when ``design: staggered``).

    The national design of Wilding et al. (2025, BJGP): a person x quarter panel of the
    whole registered population, each person's cohort the period they were first
    treated, compared with not-yet and never-treated people (Callaway and Sant'Anna
    2021; Wooldridge's extended TWFE for counts).
    """

    cohort: Literal["referral", "service_start"] = Field(
        "referral",
        description="referral: the period of a person's first accepted referral; "
        "service_start: the period the person's PCN made its first accepted referral",
    )
    estimators: tuple[Literal["callaway_santanna", "etwfe"], ...] = Field(
        ("callaway_santanna", "etwfe"), min_length=1
    )
    control: Literal["notyet", "never"] = "notyet"
    method: Literal["dr", "ipw", "reg"] = "reg"
    base_period: Literal["varying", "universal"] = "universal"
    anticipation: int = Field(0, ge=0, le=12, description="periods of anticipation")
    etwfe_family: Literal["linear", "poisson"] = "poisson"
    event_window: tuple[int, int] = Field((-8, 8), description="dynamic effects reported")
    cluster: Literal["person_id", "practice_code", "pcn_code"] = "person_id"
    allow_unbalanced: bool = Field(
        False,
        description="keep people not registered in every period (else they are dropped, "
        "and counted in the cohort flow)",
    )

    @model_validator(mode="after")
    def _window(self) -> StaggeredSpec:
        lo, hi = self.event_window
        if not lo < 0 <= hi:
            raise ValueError(
                f"event_window [{lo}, {hi}] must start before 0 and end at or after 0, e.g. [-8, 8]"
            )
        if len(set(self.estimators)) != len(self.estimators):
            raise ValueError("estimators lists an estimator twice")
        return self


class QASpec(_Frozen):
    """Data-quality bars the extracts must pass before the evaluation runs."""

    max_row_loss: float = Field(
        0.05,
        ge=0,
        le=1,
        description="largest share of a table's usable rows validation may exclude (invalid "
        "or unreadable values, people not in the population, events after death or before "
        "birth) before the run stops; above 0.05 the report's summary says so",
    )


class ExtractSpec(_Frozen):
    """How one extract's local layout maps onto its contract (docs/data-contracts.md)."""

    columns: dict[str, str] = Field(
        default_factory=dict,
        description="local column name -> contract column name, where they differ",
    )
    values: dict[str, dict[str, str]] = Field(
        default_factory=dict,
        description="per coded column, local value -> allowed value (a local coding), "
        "applied before the codes are checked",
    )


def _check_extracts(extracts: dict[str, ExtractSpec]) -> None:
    """Tables, columns and recode targets named in ``extracts:`` exist in the contracts."""
    from spevidence.data.schema import TABLES  # here: the data stage loads ibis

    for name, spec in extracts.items():
        if name not in TABLES:
            raise ValueError(
                f"extracts names the table {name!r}; the tables are {', '.join(TABLES)}"
            )
        table = TABLES[name]
        wrong = sorted(set(spec.columns.values()) - set(table.names))
        if wrong:
            raise ValueError(
                f"extracts.{name}.columns renames onto {', '.join(map(repr, wrong))}, not a "
                f"column of {name}; its columns are {', '.join(table.names)}"
            )
        coded = {c.name: c.allowed for c in table.columns if c.allowed is not None}
        for col, recode in spec.values.items():
            if col not in coded:
                raise ValueError(
                    f"extracts.{name}.values names {col!r}, not a coded column of {name}; "
                    f"its coded columns are {', '.join(coded)}"
                )
            allowed = coded[col] or ()
            bad = sorted({v for v in recode.values() if v not in allowed})
            if bad:
                raise ValueError(
                    f"extracts.{name}.values.{col} recodes to {', '.join(map(repr, bad))}, "
                    f"not an allowed value; use one of {', '.join(allowed)}"
                )


class ReportSpec(_Frozen):
    formats: tuple[Literal["html", "pdf", "docx"], ...] = ("html", "pdf")
    engine: Literal["auto", "quarto", "builtin"] = "auto"


class Protocol(_Frozen):
    """A pre-specified evaluation protocol."""

    name: str
    title: str
    description: str = ""
    start: dt.date
    end: dt.date
    period: Literal["month", "quarter"] = "month"
    ids: Literal["pseudonym", "nhs_number"] = "pseudonym"
    outcomes: tuple[Outcome, ...] = ("gp", "ae", "admissions")
    match: MatchSpec = MatchSpec()
    did: DidSpec = DidSpec()
    sroi: SroiSpec = SroiSpec()
    disclosure: DisclosureSpec = DisclosureSpec()
    qa: QASpec = QASpec()
    extracts: dict[str, ExtractSpec] = Field(
        default_factory=dict,
        description="local layouts per extract: column renames and value recodes",
    )
    report: ReportSpec = ReportSpec()
    risk_score: dict[str, Any] | None = Field(
        None,
        description="case-finding risk score (spevidence.activity.RiskScoreSpec fields); "
        "add 'risk_score' to match.covariates to match on it",
    )
    seed: int = 0
    design: Literal["matched", "staggered"] = Field(
        "matched",
        description="matched: risk-set matching + DiD (did:); staggered: staggered-adoption "
        "DiD over the whole population (staggered:)",
    )
    staggered: StaggeredSpec | None = None

    @field_validator("risk_score")
    @classmethod
    def _risk_score(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            _risk_score_spec(value)
        return value

    @field_validator("extracts")
    @classmethod
    def _extracts(cls, value: dict[str, ExtractSpec]) -> dict[str, ExtractSpec]:
        _check_extracts(value)
        return value

    @model_validator(mode="after")
    def _window(self) -> Protocol:
        if self.end <= self.start:
            raise ValueError(f"end ({self.end}) must be after start ({self.start})")
        self._periods_fit()
        if self.design == "matched" and self.staggered is not None:
            raise ValueError(
                "a 'staggered' block is given but design is 'matched'; set design: staggered "
                "to run it, or delete the block"
            )
        return self

    def column_mapping(self) -> dict[str, dict[str, str]]:
        """``extracts:`` column renames, as :func:`spevidence.data.read_extracts` takes them."""
        return {n: dict(e.columns) for n, e in self.extracts.items() if e.columns}

    def value_recodes(self) -> dict[str, dict[str, dict[str, str]]]:
        """``extracts:`` value recodes, as :func:`spevidence.data.read_extracts` takes them."""
        out = {n: {c: dict(m) for c, m in e.values.items()} for n, e in self.extracts.items()}
        return {n: v for n, v in out.items() if v}

    def n_periods(self) -> int:
        """Periods (months or quarters) in the study window, the first and last included."""
        months = (self.end.year - self.start.year) * 12 + self.end.month - self.start.month
        step = 1 if self.period == "month" else 3
        return months // step + 1

    def _periods_fit(self) -> None:
        """Every length in periods fits in the study window (else nothing is estimable,
        and a huge value would allocate one column or draw per period)."""
        n = self.n_periods()
        lengths = (
            {"did.pre": self.did.pre, "did.post": self.did.post}
            | {"did.window start": -self.did.window[0], "did.window end": self.did.window[1]}
            if self.design == "matched"
            else {
                "staggered.event_window start": -self.staggered_spec.event_window[0],
                "staggered.event_window end": self.staggered_spec.event_window[1],
            }
        )
        for name, length in lengths.items():
            if length > n:
                raise ValueError(
                    f"{name} ({length} {self.period}s) is longer than the study window "
                    f"({n} {self.period}s from {self.start} to {self.end}); shorten it to "
                    f"at most {n}"
                )

    @property
    def staggered_spec(self) -> StaggeredSpec:
        """The staggered options (defaults when ``design: staggered`` has no block)."""
        return self.staggered if self.staggered is not None else StaggeredSpec()

    def to_dict(self) -> dict[str, Any]:
        out = self.model_dump(mode="json")
        if self.qa == QASpec():  # protocols that keep the default bars keep their hash
            out.pop("qa")
        if not self.extracts:  # likewise protocols that read the extracts as they are
            out.pop("extracts")
        if self.design == "matched":  # matched protocols keep their earlier form and hash
            out.pop("design")
            out.pop("staggered")
        else:  # blocks a staggered design does not use are not recorded (sroi: it values
            for k in ("match", "did", "risk_score"):  # the staggered headline effect)
                out.pop(k)
            out["staggered"] = self.staggered_spec.model_dump(mode="json")
        return out


def _risk_score_spec(value: dict[str, Any]) -> None:
    """Check a ``risk_score:`` mapping as :class:`spevidence.activity.RiskScoreSpec`
    would read it: known keys, values of the right type, known factors."""
    import dataclasses

    from pydantic import TypeAdapter

    from spevidence.activity.risk import RiskScoreSpec

    keys = [f.name for f in dataclasses.fields(RiskScoreSpec)]
    unknown = [k for k in value if k not in keys]
    if unknown:
        raise ValueError(
            f"risk_score has unknown key(s) {', '.join(map(repr, unknown))}; use any of "
            + ", ".join(keys)
        )
    try:
        TypeAdapter(RiskScoreSpec).validate_python(value)
    except ValidationError as exc:
        e = exc.errors()[0]
        loc = ".".join(str(x) for x in e["loc"])
        raise ValueError(f"risk_score.{loc}: {e['msg']}") from None
    except ProtocolError as exc:
        raise ValueError(str(exc)) from None


def protocol_hash(protocol: Protocol) -> str:
    """SHA-256 of the protocol's canonical JSON (sorted keys): what the bundle records."""
    blob = json.dumps(protocol.to_dict(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def load_protocol(source: str | Path | dict[str, Any]) -> Protocol:
    """Read and validate a protocol from a YAML file (or a dict).

    Raises
    ------
    ProtocolError
        If the file is missing or not YAML, or a field fails validation; the message
        lists each field, what is wrong and how to fix it.
    """
    if isinstance(source, dict):
        raw: Any = source
        where = "protocol"
    else:
        where = str(source)
        raw = read_yaml(Path(source))
    if not isinstance(raw, dict):
        raise ProtocolError(f"Protocol {where} must be a YAML mapping of fields to values.")
    try:
        return Protocol.model_validate(raw)
    except ValidationError as exc:
        lines = []
        for e in exc.errors():
            loc = ".".join(str(x) for x in e["loc"]) or "(top level)"
            lines.append(f"  - {loc}: {e['msg'].removeprefix('Value error, ')}")
        raise ProtocolError(
            f"Protocol {where} has {len(lines)} problem(s):\n"
            + "\n".join(lines)
            + "\nFix these fields and run again."
        ) from None
