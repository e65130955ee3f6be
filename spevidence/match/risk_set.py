"""Risk-set (sequential) matching of referred people to comparators at the moment of
referral.

For every index period (a period in which somebody was referred) the comparators
are the people who, in that period, were registered and alive, had been registered
for the whole look-back window, and had not (yet) been referred. Each case is
matched, within exact strata (by default PCN, sex, age band, and the index period
itself), to the comparator(s) nearest on the logit of a propensity score for
referral built from prior use of each outcome over the look-back window and the
other covariates. Comparators inherit the case's index period as a pseudo index
date, so cases and comparators share one event-time axis for difference-in-
differences.

Comparator PCNs
---------------
With ``comparators="comparator-pcns"`` a case and its comparators are by construction in
different PCNs, so PCN cannot be an exact stratum (passing ``"pcn_code"`` in ``exact`` is
an error). The default strata are then sex, age band and the index period: what a
PCN-level comparison must hold fixed at the person level. Differences between PCNs
(deprivation, list size, access) are confounders that person-level strata do not remove:
match on ``imd_decile`` (a default covariate when present) and on prior use, choose
comparator PCNs similar to the intervention PCNs (same ICB place, similar deprivation),
and, when the panel carries a PCN-level grouping column (e.g. locality or an
intervention-comparator PCN pairing), add it to ``exact``. Comparators who are referred
later (rare where the service is not offered) are handled as with ``"not-yet-referred"``.

References
----------
Li, Y. P., Propert, K. J., & Rosenbaum, P. R. (2001). Balanced risk set matching.
Journal of the American Statistical Association 96(455), 870-882.
Lu, B. (2005). Propensity score matching with time-dependent covariates.
Biometrics 61(3), 721-728.
Thomas, L. E., Yang, S., Wojdyla, D., & Schaubel, D. E. (2020). Matching with
time-dependent treatments: a review and look forward. Statistics in Medicine
39(17), 2350-2370.
Austin, P. C. (2011). Optimal caliper widths for propensity-score matching.
Pharmaceutical Statistics 10(2), 150-161.
"""

from __future__ import annotations

import itertools
import math
import operator
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from spevidence.errors import DataError, EstimationError
from spevidence.match._design import fit_glm, mahalanobis_transform
from spevidence.match._nn import nn_match_mahcovs, nn_match_vec, on_grid
from spevidence.match.balance import Balance, compute_balance

if TYPE_CHECKING:
    from matplotlib.figure import Figure

Comparators = Literal["not-yet-referred", "never-referred", "comparator-pcns"]
Order = Literal["largest", "smallest", "random", "data"]
Distance = Literal["glm", "mahalanobis"]
Censoring = Literal["ipcw", "referral", "none"]

OUTCOMES = ("gp", "ae", "admissions")
DERIVED_USE = tuple(f"{w}_{o}" for w in ("prior", "recent") for o in OUTCOMES)
# covariates derived from the panel at the index period (not panel columns)
DERIVED = frozenset({"age", *DERIVED_USE})
REQUIRED = ("person_id", "t", "period", "referral_t")
DEFAULT_AGE_BREAKS = (18, 30, 40, 50, 60, 70, 80)
DEFAULT_EXACT = ("pcn_code", "sex", "age_band")

REASON_OUTSIDE = "referral period outside the panel's study window"
REASON_NO_ROW = "no panel row in the referral period (not registered then)"
REASON_LOOKBACK = "registered for less than the look-back window before referral"
REASON_MISSING = "missing covariate or exact-matching value at referral"
REASON_INELIGIBLE = "did not meet the scheme's eligibility criteria at referral"
REASON_PRIOR_REFERRAL = "referred before (an earlier referral was declined or not taken up)"
# panel column (1 after a person's first referral of any outcome) behind that reason
PRIOR_REFERRAL = "referred_before"
REASON_NO_STRATUM = "no eligible comparator in the exact-matching stratum"
REASON_USED = "all eligible comparators in the stratum already used by earlier matches"
REASON_CALIPER = "no unused comparator within the caliper"
REASON_IN_COMPARATOR_PCN = "referred while registered in a comparator PCN"
REASON_ORDER = (
    REASON_OUTSIDE,
    REASON_NO_ROW,
    REASON_LOOKBACK,
    REASON_IN_COMPARATOR_PCN,
    REASON_MISSING,
    REASON_PRIOR_REFERRAL,
    REASON_INELIGIBLE,
    REASON_NO_STRATUM,
    REASON_USED,
    REASON_CALIPER,
)


_CRITERION = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(>=|<=|==|!=|>|<)\s*(-?\d+(?:\.\d+)?)\s*$")
_OPS = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}


def parse_criterion(text: str) -> tuple[str, str, float]:
    """Split an eligibility criterion such as ``"prior_gp > 15"`` into (column,
    operator, number); raise DataError naming the accepted form otherwise."""
    m = _CRITERION.match(str(text))
    if m is None:
        raise DataError(
            f"risk_set: eligibility criterion {text!r} is not of the form "
            "'<column> <op> <number>' with op one of > >= < <= == != (e.g. 'prior_gp > 15')."
        )
    return m.group(1), m.group(2), float(m.group(3))


def _meets(v: np.ndarray, op: str, value: float) -> np.ndarray:
    """Rows whose value meets a criterion; a missing value never does."""
    missing = -np.inf if op in (">", ">=") else np.inf
    return np.asarray(_OPS[op](np.nan_to_num(v, nan=missing), value))


def _age_band_codes(age: np.ndarray, breaks: Sequence[int]) -> tuple[np.ndarray, pd.Index]:
    """Integer age-band codes (-1 where age is missing) and the band labels, in age
    order (same bands as :func:`_age_band`)."""
    edges = [int(b) for b in breaks]
    labels = [f"<{edges[0]}"]
    labels += [f"{lo}-{hi - 1}" for lo, hi in itertools.pairwise(edges)]
    labels.append(f"{edges[-1]}+")
    codes = np.searchsorted(np.asarray(edges, dtype=float), age, side="right").astype(np.int64)
    codes[np.isnan(age)] = -1
    return codes, pd.Index(labels)


@dataclass(frozen=True)
class RiskSetMatched:
    """Result of :func:`risk_set`.

    Attributes
    ----------
    pairs : one row per (case, comparator) pair: subclass, index_t, person ids,
        stratum, distances.
    units : one row per matched unit (case or comparator use): unit_id, person_id,
        treated, subclass, index_t, weights, stratum, distance and the covariates.
    attrition : referred people in, then those dropped by reason, then matched
        (counts reconcile: in = matched + sum of dropped).
    pool : every candidate person-period (cases and eligible comparators at each
        index period) with covariates, distance and matching weight (0 = unused);
        the basis of the before/after balance table. Contains identifiers: never
        release it.
    diagnostics : counts about comparators (used, later referred, censored rows).
    ipcw : inverse-probability-of-censoring weights of comparator rows after the
        index period (unit_id, t, hazard, ipcw); see :meth:`matched_data`.
    """

    panel: pd.DataFrame = field(repr=False)
    pairs: pd.DataFrame = field(repr=False)
    units: pd.DataFrame = field(repr=False)
    attrition: pd.DataFrame = field(repr=False)
    pool: pd.DataFrame = field(repr=False)
    covariates: tuple[str, ...]
    exact: tuple[str, ...]
    caliper: float | None
    coefficients: pd.Series = field(repr=False)
    diagnostics: dict[str, int] = field(repr=False)
    options: dict[str, object] = field(repr=False)
    ipcw: pd.DataFrame = field(repr=False, default_factory=pd.DataFrame)

    def matched_data(
        self,
        *,
        window: tuple[int, int] | None = None,
        censoring: Censoring = "ipcw",
        washout: int = 0,
    ) -> pd.DataFrame:
        """Panel rows of matched people, one copy per matched unit, plus ``unit_id``,
        ``treated``, ``subclass``, ``weights``, ``index_t``, ``event_time`` (= t -
        index_t) and ``post`` (event_time >= 0), as in docs/contracts.md.

        Parameters
        ----------
        window : ``(lo, hi)`` keeps event times lo..hi.
        censoring : what happens to a not-yet-referred comparator who is referred
            later (the same person may also appear as a case, with another
            ``unit_id``):

            * ``"ipcw"`` (default): their comparator follow-up stops at the period
              before their own referral, and every comparator row after the index
              period is weighted by the inverse probability of having stayed
              unreferred up to it (``weights`` = matching weight x
              ``ipcw``). The probability comes from the referral hazard that is
              already fitted for matching (the propensity score of the risk sets is
              a pooled-logistic discrete-time hazard of referral), evaluated on the
              comparator's own covariates in each later period. This removes the
              informative censoring: people are referred at a peak of use, so
              cutting them at referral keeps their peak and drops the fall after
              it (Robins & Finkelstein 2000; Hernán & Robins 2016, per-protocol
              effect of sequential trials; Danaei et al. 2013).
            * ``"referral"``: stop at the period before their own referral,
              unweighted (biased towards a benefit under regression to the mean;
              kept to reproduce earlier runs and for sensitivity analyses).
            * ``"none"``: follow comparators whatever happens to them later (the
              intention-to-treat effect of referral now against usual care, which
              includes later referral; unbiased when the true effect is nil, diluted
              towards nil otherwise).
        washout : with ``censoring="referral"`` only: stop comparator follow-up this
            many periods earlier (before the rise in use that leads to referral).
        """
        if censoring not in ("ipcw", "referral", "none"):
            raise DataError(
                f"matched_data: censoring must be 'ipcw', 'referral' or 'none', got {censoring!r}."
            )
        if not isinstance(washout, int | np.integer) or washout < 0:
            raise DataError(f"matched_data: washout must be an integer >= 0, got {washout!r}.")
        if washout and censoring != "referral":
            raise DataError(
                f"matched_data: washout={washout} applies to censoring='referral' only; "
                f"got censoring={censoring!r}."
            )
        u = self.units[["unit_id", "person_id", "treated", "subclass", "weights", "index_t"]]
        md = _rows_of(self.panel, u["person_id"]).merge(
            u, on="person_id", how="inner", validate="many_to_many"
        )
        md["event_time"] = (md["t"] - md["index_t"]).astype("int64")
        if censoring != "none":
            censor = (md["treated"] == 0) & md["referral_t"].notna()
            ref_t = md["referral_t"].astype("float64").to_numpy(na_value=np.inf)
            censor &= md["t"].to_numpy() >= ref_t - int(washout)
            md = md.loc[~censor]
        if window is not None:
            lo, hi = window
            md = md.loc[(md["event_time"] >= lo) & (md["event_time"] <= hi)]
        md["post"] = (md["event_time"] >= 0).astype("int64")
        if censoring == "ipcw":
            iw = self.ipcw
            md = md.merge(iw, on=["unit_id", "t"], how="left", validate="many_to_one")
            md["ipcw"] = md["ipcw"].fillna(1.0)
            md["weights"] = md["weights"] * md["ipcw"]
        md = md.sort_values(
            ["subclass", "treated", "unit_id", "t"], ascending=[True, False, True, True]
        )
        return md.reset_index(drop=True)

    def balance(self, *, warn: bool = True) -> Balance:
        """Balance of the distance, the matching covariates, age and sex, cases vs
        comparators: before = all cases vs all eligible comparator person-periods
        at the same index periods; after = matched units with their weights."""
        p = self.pool
        cols = ["distance", *self.covariates]
        if "age" not in cols and "age" in p.columns:
            cols.append("age")
        X = p[cols].to_numpy(dtype=float)
        names = list(cols)
        if "sex" in p.columns:
            for lev in sorted(p["sex"].dropna().unique().tolist()):
                X = np.column_stack([X, (p["sex"] == lev).to_numpy(dtype=float)])
                names.append(f"sex{lev}")
        return compute_balance(
            X,
            names,
            p["treated"].to_numpy(dtype=int),
            p["weights"].to_numpy(dtype=float),
            warn=warn,
        )

    def glance(self) -> pd.DataFrame:
        """Counts: cases in/matched, comparator units, strata, caliper."""
        a = self.attrition
        n_in = int(a.loc[a["step"] == "referred people in panel", "n"].iloc[0])
        n_matched = int(a.loc[a["step"] == "matched cases", "n"].iloc[0])
        return pd.DataFrame(
            {
                "n_cases": [n_in],
                "n_matched_cases": [n_matched],
                "n_unmatched_cases": [n_in - n_matched],
                "n_comparator_units": [int((self.units["treated"] == 0).sum())],
                "n_comparator_people": [
                    int(self.units.loc[self.units["treated"] == 0, "person_id"].nunique())
                ],
                "n_subclasses": [int(self.units["subclass"].nunique())],
                "caliper": [self.caliper],
                **{k: [v] for k, v in self.diagnostics.items()},
            }
        )

    def tidy(self) -> pd.DataFrame:
        """The balance table (long form)."""
        return self.balance(warn=False).tidy()

    def summary(self) -> str:
        g = self.glance().iloc[0]
        return (
            f"risk-set matching {self.options['ratio']}:1 "
            f"{'with' if self.options['replace'] else 'without'} replacement"
            f"{', Mahalanobis distance' if self.options.get('distance') == 'mahalanobis' else ''}"
            ", comparators "
            f"{self.options['comparators']}, exact on {list(self.exact)} + index period, "
            f"caliper {self.options['caliper']} SD of the logit propensity score\n"
            f"cases: {g['n_cases']} referred, {g['n_matched_cases']} matched; comparator "
            f"units: {g['n_comparator_units']}\n"
            + self.attrition.to_string(index=False)
            + "\n"
            + self.balance(warn=False).summary()
        )

    def plot(self) -> Figure:
        """Love plot of the balance before/after matching."""
        return self.balance(warn=False).plot()


# A fitted probability within 1e-8 of 0 or 1 (the IRLS convergence tolerance) is
# numerically 0 or 1: under separation the linear predictor of such people drifts to
# wherever the iterations stopped, a value set by rounding, not by the data.
SATURATED = math.log((1 - 1e-8) / 1e-8)  # 18.42...


def saturate(eta: np.ndarray) -> np.ndarray:
    """The logit clipped to +-SATURATED: people whose referral probability is
    numerically 0 (or 1) share one distance, and ties among them are broken by the
    stated rule (first in (index period, person id) order)."""
    return np.clip(eta, -SATURATED, SATURATED)


def _ps_design(pool: pd.DataFrame, covs: Sequence[str]) -> np.ndarray:
    """Propensity-model design, intercept first: counts of use enter as log(1 + x)
    and x (use is heavily skewed, and referral depends on it strongly), other
    covariates as is. Filled into one preallocated array (no stacking copies)."""
    k = 1 + sum(2 if c.startswith(("prior_", "recent_")) else 1 for c in covs)
    X = np.empty((len(pool), k), order="F")  # column by column: contiguous columns
    X[:, 0] = 1.0
    j = 1
    for c in covs:
        x = pool[c].to_numpy(dtype=float)
        X[:, j] = x
        j += 1
        if c.startswith(("prior_", "recent_")):
            np.log1p(np.maximum(x, 0.0), out=X[:, j])
            j += 1
    return X


def _check_panel(panel: pd.DataFrame, exact: Sequence[str], lookback: int, recent: int) -> None:
    need = [*REQUIRED, *OUTCOMES]
    need += [c for c in exact if c != "age_band" and c not in DERIVED_USE]
    if "age_band" in exact:
        need.append("year_of_birth")
    missing = [c for c in dict.fromkeys(need) if c not in panel.columns]
    if missing:
        raise DataError(
            f"risk_set: panel is missing column(s) {missing} ({len(panel)} rows); build "
            "the panel with spevidence.link (docs/contracts.md 'Panel')."
        )
    if len(panel) == 0:
        raise DataError("risk_set: the panel has 0 rows; build it with spevidence.link first.")
    if lookback < 1:
        raise DataError(f"risk_set: lookback must be >= 1 period, got {lookback}.")
    if not 1 <= recent <= lookback:
        raise DataError(
            f"risk_set: recent must be between 1 and lookback ({lookback}), got {recent}."
        )


def _comparator_pcn_rows(
    panel: pd.DataFrame,
    comparators: str,
    comparator_pcns: Sequence[str] | None,
    exact: Sequence[str],
) -> np.ndarray | None:
    """Per panel row: registered in a comparator PCN (None unless comparator-pcns)."""
    if comparators != "comparator-pcns":
        if comparator_pcns:
            raise DataError(
                f"risk_set: comparator_pcns ({len(comparator_pcns)} PCN(s)) are only used "
                "with comparators='comparator-pcns'; set it, or drop comparator_pcns."
            )
        return None
    if isinstance(comparator_pcns, str) or not comparator_pcns:
        raise DataError(
            "risk_set: comparators='comparator-pcns' needs comparator_pcns, a list of the "
            "PCN codes (panel column 'pcn_code') named in the protocol as comparators."
        )
    if "pcn_code" in exact:
        raise DataError(
            "risk_set: with comparators='comparator-pcns' a case and its comparators are "
            "in different PCNs, so 'pcn_code' cannot be in exact; use e.g. "
            "exact=('sex', 'age_band') (the default for this design)."
        )
    if "pcn_code" not in panel.columns:
        raise DataError(
            f"risk_set: comparators='comparator-pcns' needs the panel column 'pcn_code' "
            f"({len(panel)} rows)."
        )
    wanted = {str(p) for p in comparator_pcns}
    in_cp = panel["pcn_code"].isin(wanted).to_numpy(dtype=bool, na_value=False)
    if not in_cp.any():
        raise DataError(
            f"risk_set: none of the {len(wanted)} comparator PCN(s) appears in the panel's "
            f"'pcn_code' column ({len(panel)} rows); check the PCN codes in the protocol."
        )
    return in_cp


def risk_set(
    panel: pd.DataFrame,
    *,
    exact: Sequence[str] | None = None,
    covariates: Sequence[str] | None = None,
    ratio: int = 1,
    caliper: float | None = 0.2,
    distance: Distance = "glm",
    replace: bool = False,
    comparators: Comparators = "not-yet-referred",
    comparator_pcns: Sequence[str] | None = None,
    lookback: int = 12,
    recent: int = 3,
    order: Order = "largest",
    age_breaks: Sequence[int] = DEFAULT_AGE_BREAKS,
    eligibility: Sequence[str] = (),
    seed: int | np.random.Generator = 0,
) -> RiskSetMatched:
    """Risk-set matching of referred people to comparators eligible at referral.

    Parameters
    ----------
    panel : person x period frame (docs/contracts.md "Panel").
    exact : columns matched exactly, measured in the index period. Default
        ``("pcn_code", "sex", "age_band")``; with ``comparators="comparator-pcns"``
        ``("sex", "age_band")`` (see Notes). ``"age_band"``
        is derived from ``year_of_birth`` and the index period's calendar year
        (bands from ``age_breaks``); a derived count of use (e.g. ``"recent_gp"``)
        matches its integer value exactly, which makes pre-referral trajectories
        closer still. The index period is always an exact stratum.
    covariates : matching covariates. Default: ``prior_gp``, ``prior_ae``,
        ``prior_admissions`` (sums over the ``lookback`` periods before the index),
        ``recent_gp`` (sum over the last ``recent`` periods before the index: people
        are referred at a peak of use, so matching the recent level as well as the
        year's total is what makes pre-referral trends parallel), ``age`` and
        ``imd_decile`` (if in the panel). ``recent_ae`` and ``recent_admissions`` are
        also available. Any other numeric panel column is taken at the index period.
    ratio : comparators per case.
    caliper : in standard deviations of the logit of the propensity score (Austin
        2011 recommends 0.2); None for no caliper (a warning is given).
    distance : ``"glm"`` (nearest on the logit of the propensity score) or
        ``"mahalanobis"``: nearest in the Mahalanobis distance on the covariates
        (pooled within-group covariance over all candidates, as MatchIt), within the
        propensity-score caliper when ``caliper`` is set. This is MatchIt's
        ``matchit(distance = "glm", mahvars = ~ covariates, caliper = ...)``; the
        order of matching still follows the propensity score.
    replace : allow a comparator person-period to serve several cases. Without
        replacement a person is used as a comparator at most once overall
        (earlier index periods are matched first).
    comparators : ``"not-yet-referred"`` (referral later than the index, or never),
        ``"never-referred"``, or ``"comparator-pcns"``: not-yet-referred people
        registered, in the index period, with one of the ``comparator_pcns`` (PCNs
        named in the protocol as comparators, e.g. PCNs without the service).
    comparator_pcns : PCN codes (panel column ``pcn_code``) that supply the
        comparators when ``comparators="comparator-pcns"``. Cases are the referred
        people registered elsewhere; a person referred while registered in a
        comparator PCN is not a case (attrition reason "referred while registered in
        a comparator PCN").
    lookback : periods of registration required before the index, and the window
        for the ``prior_*`` covariates (t in [index - lookback, index - 1]).
    recent : window for the ``recent_*`` covariates (t in [index - recent, index - 1]).
    order : order of matching within a stratum (MatchIt ``m.order``).
    age_breaks : lower edges of the age bands after the first.
    eligibility : the scheme's own eligibility criteria, each ``"<column> <op>
        <number>"`` (e.g. ``"prior_gp > 15"`` for a frequent-attender scheme), on a
        derived covariate (``prior_*``, ``recent_*``, ``age``) or a numeric panel column
        at the index period. Cases and comparators who do not meet them are not
        candidates (cases are counted in the attrition): comparators must have been
        eligible for referral when the case was referred, as in the target trial.
        A threshold in the referral rule cannot be represented by a logistic propensity
        score, which then trades the recent peak against other covariates.
    seed : seed or Generator (used only by ``order="random"``).

    Notes
    -----
    The propensity score is one pooled logistic regression (R ``glm`` IRLS) of case
    status on the covariates over every candidate person-period; matching is greedy
    nearest-neighbour on its logit within each index period x stratum, exactly as
    MatchIt's ``nearest`` with ``exact`` would do per stratum. A not-yet-referred
    comparator may be referred later: they can then also be matched as a case at
    their own referral (``diagnostics['comparators_later_referred']`` counts them),
    and their comparator follow-up stops before their referral. Candidates are held
    in (index period, person id) order, so ties in the distance are broken by person
    id and the result does not depend on the row order of ``panel``. The caliper is
    in SDs of the logit over all candidate person-periods (MatchIt's convention:
    the SD of the distance over all units).

    With ``comparators="comparator-pcns"`` PCN cannot be an exact stratum: see the
    module docstring ("Comparator PCNs").
    """
    options = _options(locals())  # first: here locals() holds just the arguments
    if exact is None:
        exact = ("sex", "age_band") if comparators == "comparator-pcns" else DEFAULT_EXACT
    exact = tuple(exact)
    _check_options(ratio=ratio, caliper=caliper, distance=distance, comparators=comparators)
    _check_panel(panel, exact, lookback, recent)
    in_comparator_pcn = _comparator_pcn_rows(panel, comparators, comparator_pcns, exact)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    dense = _dense_arrays(panel)
    covs, crit = _covariates_and_criteria(panel, covariates, exact, eligibility)
    spec = _Spec(exact, tuple(covs), tuple(crit), comparators, lookback, recent, age_breaks)
    columns = _panel_columns(panel, exact, covs, crit)
    eligible = _candidate_pool(dense, columns, spec, in_comparator_pcn)
    m = _match_candidates(
        eligible, spec, dense.n_people, caliper, distance, ratio, replace, order, rng
    )
    return _result(panel, dense, columns, spec, eligible, m, in_comparator_pcn is not None, options)


def _result(
    panel: pd.DataFrame,
    dense: _Dense,
    columns: _Columns,
    spec: _Spec,
    eligible: _Eligible,
    m: _Matched,
    by_comparator_pcn: bool,
    options: dict[str, Any],
) -> RiskSetMatched:
    """The matched units, their censoring weights, and the result with its diagnostics."""
    covs, exact = list(spec.covs), spec.exact
    person_ids = np.asarray(dense.persons, dtype=object)
    units = _units_frame(m.pairs, m.pool, m.comparator_weights, covs, exact, person_ids)
    ipcw = _comparator_ipcw(units, dense, columns, spec, m.coef, eligible)
    return RiskSetMatched(
        panel=panel,
        pairs=_pairs_frame(m.pairs, m.pool, person_ids),
        units=units,
        attrition=_attrition(len(dense.case_people), m.drop_reason, m.pairs, by_comparator_pcn),
        pool=m.released_pool(person_ids),
        covariates=tuple(covs),
        exact=exact,
        caliper=m.caliper,
        coefficients=_coefficient_series(m.coef, covs),
        diagnostics=_diagnostics(
            panel, m.pool, m.pairs, dense.ref_person, person_ids, ipcw, eligible
        ),
        options=options,
        ipcw=ipcw,
    )


def _options(args: dict[str, Any]) -> dict[str, Any]:
    """The options of a :func:`risk_set` call as :attr:`RiskSetMatched.options` records them."""
    seed, pcns = args["seed"], args["comparator_pcns"]
    return {
        "ratio": int(args["ratio"]),
        "caliper": args["caliper"],
        "distance": args["distance"],
        "replace": args["replace"],
        "comparators": args["comparators"],
        "comparator_pcns": tuple(pcns) if pcns else None,
        "lookback": args["lookback"],
        "recent": args["recent"],
        "order": args["order"],
        "age_breaks": tuple(args["age_breaks"]),
        "eligibility": tuple(args["eligibility"]),
        "seed": seed if not isinstance(seed, np.random.Generator) else "Generator",
    }


@dataclass(frozen=True)
class _Spec:
    """What a candidate is and what it is measured on (the options of :func:`risk_set`)."""

    exact: tuple[str, ...]
    covs: tuple[str, ...]
    crit: tuple[tuple[str, str, float], ...]  # parsed eligibility criteria
    comparators: Comparators
    lookback: int
    recent: int
    age_breaks: Sequence[int]


def _check_options(*, ratio: int, caliper: float | None, distance: str, comparators: str) -> None:
    """The matching options are of the accepted kinds (DataError naming the value)."""
    if not isinstance(ratio, int | np.integer) or ratio < 1:
        raise DataError(f"risk_set: ratio must be a positive integer, got {ratio!r}.")
    if caliper is not None and not (np.isfinite(caliper) and caliper > 0):
        raise DataError(f"risk_set: caliper must be a positive number or None, got {caliper!r}.")
    if distance not in ("glm", "mahalanobis"):
        raise DataError(f"risk_set: distance must be 'glm' or 'mahalanobis', got {distance!r}.")
    if comparators not in ("not-yet-referred", "never-referred", "comparator-pcns"):
        raise DataError(
            "risk_set: comparators must be 'not-yet-referred', 'never-referred' or "
            f"'comparator-pcns', got {comparators!r}."
        )


@dataclass(frozen=True)
class _Dense:
    """The panel as person x period arrays (persons coded in person-id order)."""

    pcode: np.ndarray  # person code of each panel row
    persons: pd.Index  # person ids, by code
    t: np.ndarray  # period of each panel row
    n_t: int
    pres: np.ndarray  # people x periods: 1 where the person has a row
    cum_p: np.ndarray  # cumulative sum of pres along periods, 0 first
    cum_o: dict[str, np.ndarray]  # cumulative use of each outcome, 0 first
    ref_person: np.ndarray  # referral period per person (NaN = never)
    period_year: np.ndarray  # calendar year of each period

    @property
    def n_people(self) -> int:
        return len(self.persons)

    @property
    def case_people(self) -> np.ndarray:
        """Codes of the referred people."""
        return np.flatnonzero(~np.isnan(self.ref_person))


def sorted_codes(col: pd.Series) -> tuple[np.ndarray, pd.Index]:
    """Integer codes of a column's values in sorted order (-1 = missing) and the values
    by code, as ``pd.factorize(col, sort=True)``; a categorical gives its own codes (its
    categories put in sorted order first when they are not)."""
    if not isinstance(col.dtype, pd.CategoricalDtype):
        codes, levels = pd.factorize(col, sort=True)
        return np.asarray(codes, dtype=np.int64), pd.Index(levels)
    col = col.cat.remove_unused_categories()
    cats = col.cat.categories
    if not cats.is_monotonic_increasing:
        col = col.cat.reorder_categories(cats.sort_values())
    return col.cat.codes.to_numpy(dtype=np.int64), pd.Index(col.cat.categories)


def _rows_of(panel: pd.DataFrame, person_id: pd.Series) -> pd.DataFrame:
    """The panel rows of these people (in panel order), categorical columns decoded to
    their values: the frame of the matched people is as from a panel of strings."""
    sub = panel.loc[panel["person_id"].isin(person_id.unique())]
    decode = {
        c: sub[c].astype(sub[c].cat.categories.dtype)
        for c in sub.columns
        if isinstance(sub[c].dtype, pd.CategoricalDtype)
    }
    return sub.assign(**decode) if decode else sub


def _dense_arrays(panel: pd.DataFrame) -> _Dense:
    """Presence, cumulative use and referral period on a persons x periods grid;
    DataError for negative periods, duplicated rows or several referral periods."""
    pcode, persons = sorted_codes(panel["person_id"])
    n_people = len(persons)
    t = panel["t"].to_numpy(dtype=np.int64)
    if t.min() < 0:
        raise DataError("risk_set: panel column 't' has negative values; t must start at 0.")
    n_t = int(t.max()) + 1
    pres = np.zeros((n_people, n_t), dtype=np.int32)
    pres[pcode, t] = 1
    cum_p = np.zeros((n_people, n_t + 1), dtype=np.int32)
    np.cumsum(pres, axis=1, out=cum_p[:, 1:])
    n_dup = len(panel) - int(cum_p[:, -1].sum())  # rows beyond one per person x period
    if n_dup:
        raise DataError(
            f"risk_set: panel has {n_dup} duplicated person_id x t row(s); the panel must "
            "have one row per person and period."
        )
    cum_o: dict[str, np.ndarray] = {}
    for o in OUTCOMES:
        dense = np.zeros((n_people, n_t), dtype=np.float64)
        dense[pcode, t] = panel[o].to_numpy(dtype=np.float64, na_value=0.0)
        cum = np.zeros((n_people, n_t + 1), dtype=np.float64)
        np.cumsum(dense, axis=1, out=cum[:, 1:])
        cum_o[o] = cum
    ref_person = np.full(n_people, np.nan)
    rt = panel["referral_t"].to_numpy(dtype=np.float64, na_value=np.nan)
    has = ~np.isnan(rt)
    ref_person[pcode[has]] = rt[has]
    differs = rt[has] != ref_person[pcode[has]]  # another row of the person won
    if differs.any():
        n_bad = len(np.unique(pcode[has][differs]))
        raise DataError(
            f"risk_set: {n_bad} person(s) have more than one referral_t in the panel; "
            "referral_t must be constant per person (first accepted referral)."
        )
    period_year = (
        pd.to_datetime(panel["period"]).dt.year.groupby(t).first().reindex(range(n_t)).to_numpy()
    )
    return _Dense(pcode, persons, t, n_t, pres, cum_p, cum_o, ref_person, period_year)


def _covariates_and_criteria(
    panel: pd.DataFrame,
    covariates: Sequence[str] | None,
    exact: Sequence[str],
    eligibility: Sequence[str],
) -> tuple[list[str], list[tuple[str, str, float]]]:
    """The matching covariates (the defaults when None) and the parsed eligibility
    criteria, each checked to be a derived covariate or a numeric panel column."""
    default_covs = ["prior_gp", "prior_ae", "prior_admissions", "recent_gp", "age"]
    if "imd_decile" in panel.columns and panel["imd_decile"].notna().any():
        default_covs.append("imd_decile")
    covs = list(covariates) if covariates is not None else default_covs
    for c in covs:
        if c not in DERIVED and c not in panel.columns:
            raise DataError(
                f"risk_set: covariate {c!r} is neither a derived covariate "
                f"({sorted(DERIVED)}) nor a panel column."
            )
        if c not in DERIVED and not pd.api.types.is_numeric_dtype(panel[c]):
            raise DataError(
                f"risk_set: covariate {c!r} is not numeric; put categorical variables in "
                "`exact` instead."
            )
    crit = [parse_criterion(c) for c in eligibility]
    for col, _, _ in crit:
        if col not in DERIVED and col not in panel.columns:
            raise DataError(
                f"risk_set: eligibility criterion on {col!r}, which is neither a derived "
                f"covariate ({sorted(DERIVED)}) nor a panel column."
            )
        if col not in DERIVED and not pd.api.types.is_numeric_dtype(panel[col]):
            raise DataError(f"risk_set: eligibility column {col!r} is not numeric.")
    if ("age" in covs or "age_band" in exact) and "year_of_birth" not in panel.columns:
        raise DataError("risk_set: 'age' needs the panel column 'year_of_birth'.")
    return covs, crit


@dataclass(frozen=True)
class _Columns:
    """Panel columns the candidates are measured on, one value per panel row."""

    cat_codes: dict[str, np.ndarray]  # categorical columns as codes (-1 = missing)
    cat_levels: dict[str, pd.Index]  # their levels, by code
    num_panel: dict[str, np.ndarray]  # numeric covariates taken from the panel
    crit_panel: dict[str, np.ndarray]  # those and the eligibility criteria's columns
    yob: np.ndarray | None  # year of birth


def _panel_columns(
    panel: pd.DataFrame,
    exact: Sequence[str],
    covs: Sequence[str],
    crit: Sequence[tuple[str, str, float]],
) -> _Columns:
    """Categorical columns as integer codes (-1 = missing), numeric ones as floats."""
    cat_cols = [c for c in exact if c != "age_band" and c not in DERIVED_USE]
    if "sex" in panel.columns and "sex" not in cat_cols:
        cat_cols.append("sex")
    cat_codes: dict[str, np.ndarray] = {}
    cat_levels: dict[str, pd.Index] = {}
    for c in cat_cols:
        cat_codes[c], cat_levels[c] = sorted_codes(panel[c])
    num_panel = {
        c: panel[c].to_numpy(dtype=np.float64, na_value=np.nan) for c in covs if c not in DERIVED
    }
    # panel columns of the eligibility criteria (at the index, and later for the weights)
    crit_panel = num_panel | {
        c: panel[c].to_numpy(dtype=np.float64, na_value=np.nan)
        for c, _, _ in crit
        if c not in DERIVED and c not in num_panel
    }
    yob = (
        panel["year_of_birth"].to_numpy(dtype=np.float64, na_value=np.nan)
        if "year_of_birth" in panel.columns
        else None
    )
    return _Columns(cat_codes, cat_levels, num_panel, crit_panel, yob)


def _index_period_parts(
    dense: _Dense,
    yob: np.ndarray | None,
    in_comparator_pcn: np.ndarray | None,
    *,
    comparators: str,
    lookback: int,
    recent: int,
) -> tuple[dict[str, list[np.ndarray]], dict[int, str]]:
    """The candidate rows of each index period (cases and eligible comparators) with
    their derived covariates, as lists of arrays by column; and the reason each case
    that is not a candidate was dropped (by person code)."""
    pcode, t, n_t, cum_p, cum_o = dense.pcode, dense.t, dense.n_t, dense.cum_p, dense.cum_o
    ref_person = dense.ref_person
    case_people = dense.case_people
    case_t = ref_person[case_people].astype(np.int64)
    drop_reason: dict[int, str] = {}
    index_periods = np.unique(case_t)
    # canonical order (index period, person id) so that ties in the distance are
    # broken the same way whatever the row order of the input panel
    rsel = np.flatnonzero(np.isin(t, index_periods))
    rsel = rsel[np.lexsort((pcode[rsel], t[rsel]))]
    t_sorted = t[rsel]

    parts: dict[str, list[np.ndarray]] = {"_row": [], "treated": [], "index_t": []}
    for s in index_periods:
        s = int(s)
        cases_s = case_people[case_t == s]
        if s < 0 or s >= n_t:
            for p in cases_s:
                drop_reason[int(p)] = REASON_OUTSIDE
            continue
        a, b = np.searchsorted(t_sorted, [s, s + 1])
        r_at = rsel[a:b]
        p_at = pcode[r_at]
        lo = s - lookback
        if lo >= 0:
            full = (cum_p[p_at, s + 1] - cum_p[p_at, lo]) == lookback + 1
        else:
            full = np.zeros(len(p_at), dtype=bool)
        ref_at = ref_person[p_at]
        is_case = ref_at == s
        if comparators == "never-referred":
            comp_ok = np.isnan(ref_at)
        else:
            comp_ok = np.isnan(ref_at) | (ref_at > s)
        present_cases = set(p_at[is_case].tolist())
        for p in cases_s:
            if int(p) not in present_cases:
                drop_reason[int(p)] = REASON_NO_ROW
        for p in p_at[is_case & ~full]:
            drop_reason[int(p)] = REASON_LOOKBACK
        if in_comparator_pcn is not None:
            in_cp = in_comparator_pcn[r_at]
            comp_ok &= in_cp
            for p in p_at[is_case & in_cp]:
                drop_reason[int(p)] = REASON_IN_COMPARATOR_PCN
            is_case = is_case & ~in_cp
        sel = full & (is_case | comp_ok)
        if not sel.any():
            continue
        rows_s = r_at[sel]
        ps = p_at[sel]
        parts["_row"].append(rows_s)
        parts["treated"].append(is_case[sel].astype(np.int64))
        parts["index_t"].append(np.full(len(rows_s), s, dtype=np.int64))
        for o in OUTCOMES:
            parts.setdefault(f"prior_{o}", []).append(cum_o[o][ps, s] - cum_o[o][ps, lo])
            parts.setdefault(f"recent_{o}", []).append(cum_o[o][ps, s] - cum_o[o][ps, s - recent])
        if yob is not None:
            parts.setdefault("age", []).append(float(dense.period_year[s]) - yob[rows_s])
    return parts, drop_reason


def _pool_frame(
    parts: dict[str, list[np.ndarray]],
    dense: _Dense,
    columns: _Columns,
    exact: Sequence[str],
    age_breaks: Sequence[int],
    lookback: int,
) -> tuple[pd.DataFrame, dict[str, pd.Index]]:
    """The candidate pool, one row per candidate person-period, with the panel's
    covariates and the codes of the exact-matching columns; and the levels of every
    coded column (age band included)."""
    n_cases = len(dense.case_people)
    if not parts["_row"]:
        raise EstimationError(
            f"risk_set: none of the {n_cases} referred people has a panel row "
            f"and {lookback} periods of registration before referral; nothing to match."
        )
    cols: dict[str, np.ndarray] = {k: np.concatenate(v) for k, v in parts.items()}
    row = cols["_row"]
    cols["_p"] = dense.pcode[row]
    for c, arr in columns.num_panel.items():
        cols[c] = arr[row]
    for c, codes in columns.cat_codes.items():
        cols[f"_code_{c}"] = codes[row]
    cat_levels = dict(columns.cat_levels)
    if "age_band" in exact:
        band_codes, band_levels = _age_band_codes(cols["age"], age_breaks)
        cols["_code_age_band"] = band_codes
        cat_levels["age_band"] = band_levels
    for c in exact:
        if c in DERIVED_USE:  # exact on a count of prior use: its integer value
            v = cols[c]
            cols[f"_code_{c}"] = np.where(np.isnan(v), -1, np.round(v)).astype(np.int64)
    pool = pd.DataFrame(cols, copy=False)
    if int(pool["treated"].sum()) == 0:
        raise EstimationError(
            f"risk_set: none of the {n_cases} referred people has a panel row "
            f"and {lookback} periods of registration before referral; nothing to match."
        )
    return pool, cat_levels


@dataclass(frozen=True)
class _Eligible:
    """The candidates with complete values who meet the eligibility criteria."""

    pool: pd.DataFrame
    drop_reason: dict[int, str]  # cases left out, by person code
    n_inelig: int  # candidate person-periods that did not meet the criteria
    n_inelig_ref: int  # of which referred


def _eligible_pool(
    pool: pd.DataFrame,
    covs: Sequence[str],
    exact: Sequence[str],
    crit: Sequence[tuple[str, str, float]],
    crit_panel: dict[str, np.ndarray],
) -> _Eligible:
    """Drop candidates with a missing covariate or exact value, then those who do not
    meet the scheme's eligibility criteria at the index period."""
    drop_reason: dict[int, str] = {}
    # missing covariates / exact values
    exact_code_cols = [f"_code_{c}" for c in exact]
    miss = pool[covs].isna().any(axis=1).to_numpy().copy()
    if exact:
        miss |= (pool[exact_code_cols].to_numpy() < 0).any(axis=1)
    for p in pool.loc[miss & (pool["treated"].to_numpy() == 1), "_p"]:
        drop_reason[int(p)] = REASON_MISSING
    # the scheme's eligibility criteria at the index period, among the complete rows
    # (one mask, so the pool is copied once, not once per step)
    keep = ~miss
    n_inelig = n_inelig_ref = 0
    if crit:
        ok = keep.copy()
        treated = pool["treated"].to_numpy() == 1
        # an earlier referral is checked first, so it is the reason given when it applies
        for col, op, value in sorted(crit, key=lambda c: c[0] != PRIOR_REFERRAL):
            if col in pool.columns and (col in DERIVED or col in covs):
                v = pool[col].to_numpy(dtype=float)
            else:
                v = crit_panel[col][pool["_row"]]
            ok_c = _meets(v, op, value)
            why = REASON_PRIOR_REFERRAL if col == PRIOR_REFERRAL else REASON_INELIGIBLE
            for p in pool.loc[ok & ~ok_c & treated, "_p"]:
                drop_reason[int(p)] = why
            ok &= ok_c
        # referrals among candidates who do not meet the criteria: the censoring
        # hazard of comparators in periods when they no longer meet them
        n_inelig, n_inelig_ref = int((keep & ~ok).sum()), int((keep & ~ok & treated).sum())
        keep = ok
    if not keep.all():
        pool = pool.loc[keep].reset_index(drop=True)
    return _Eligible(pool, drop_reason, n_inelig, n_inelig_ref)


def _check_pool(pool: pd.DataFrame, n_referred: int) -> None:
    """The pool holds at least one case and one comparator (EstimationError otherwise)."""
    if int(pool["treated"].sum()) == 0:
        raise EstimationError(
            f"risk_set: no referred person (of {n_referred}) is eligible for "
            "matching; see the attrition reasons (look-back, registration, covariates)."
        )
    if int((pool["treated"] == 0).sum()) == 0:
        raise EstimationError(
            "risk_set: there are no eligible comparators at any index period; use "
            "comparators='not-yet-referred' or a shorter lookback."
        )


def _decode_categories(
    pool: pd.DataFrame, cat_levels: dict[str, pd.Index], exact: Sequence[str]
) -> pd.DataFrame:
    """Decoded values of the exact-matching columns and sex, for the outputs (in
    place; the codes of columns not matched exactly are dropped)."""
    for c, levels in cat_levels.items():
        codes = (
            pool.pop(f"_code_{c}").to_numpy() if c not in exact else pool[f"_code_{c}"].to_numpy()
        )
        pool[c] = pd.Series(levels.take(np.maximum(codes, 0)), index=pool.index).where(codes >= 0)
    return pool


def _candidate_pool(
    dense: _Dense, columns: _Columns, spec: _Spec, in_comparator_pcn: np.ndarray | None
) -> _Eligible:
    """Every candidate person-period (cases and eligible comparators at each index
    period) with its covariates, and why each referred person who is not a candidate
    was dropped."""
    parts, drop_reason = _index_period_parts(
        dense,
        columns.yob,
        in_comparator_pcn,
        comparators=spec.comparators,
        lookback=spec.lookback,
        recent=spec.recent,
    )
    pool, cat_levels = _pool_frame(
        parts, dense, columns, spec.exact, spec.age_breaks, spec.lookback
    )
    eligible = _eligible_pool(pool, list(spec.covs), spec.exact, spec.crit, columns.crit_panel)
    drop_reason.update(eligible.drop_reason)
    _check_pool(eligible.pool, len(dense.case_people))
    pool = _decode_categories(eligible.pool, cat_levels, spec.exact)
    return _Eligible(pool, drop_reason, eligible.n_inelig, eligible.n_inelig_ref)


def _propensity_score(pool: pd.DataFrame, covs: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Coefficients of the pooled logistic model of referral and its saturated logit
    (the distance) for every candidate."""
    X = _ps_design(pool, covs)
    coef, eta, _ = fit_glm(
        X, pool["treated"].to_numpy(dtype=float), link="logit", solver="cholesky"
    )
    return coef, saturate(eta)


def _caliper_width(caliper: float | None, eta: np.ndarray) -> float | None:
    """The caliper in units of the logit (SDs over all candidates); a warning when
    there is none. Called by :func:`risk_set` itself (the warning points at its caller)."""
    cal: float | None = None
    if caliper is not None:
        cal = float(caliper) * float(np.std(eta, ddof=1))
    else:
        warnings.warn(
            "risk_set: matching without a caliper; poor matches are kept. Consider "
            "caliper=0.2 (SD of the logit of the propensity score, Austin 2011).",
            UserWarning,
            stacklevel=3,
        )
    return cal


@dataclass(frozen=True)
class _Matched:
    """The candidate pool scored and matched: pairs, weights and what was dropped."""

    pool: pd.DataFrame  # with distance, _stratum and weights
    coef: np.ndarray
    caliper: float | None
    pairs: pd.DataFrame
    comparator_weights: np.ndarray
    drop_reason: dict[int, str]  # cases left out, by person code
    exact_code_cols: list[str]

    def released_pool(self, person_ids: np.ndarray) -> pd.DataFrame:
        """The pool as :attr:`RiskSetMatched.pool` holds it (person ids, no codes)."""
        return (
            self.pool.drop(columns=["_p", "_row", *self.exact_code_cols])
            .rename(columns={"_stratum": "stratum"})
            .assign(person_id=person_ids[self.pool["_p"].to_numpy()])
        )


def _match_candidates(
    eligible: _Eligible,
    spec: _Spec,
    n_people: int,
    caliper: float | None,
    distance: Distance,
    ratio: int,
    replace: bool,
    order: Order,
    rng: np.random.Generator,
) -> _Matched:
    """Score the candidates (propensity score), stratify them and match within strata."""
    pool, drop_reason = eligible.pool, dict(eligible.drop_reason)
    covs = list(spec.covs)
    coef, eta = _propensity_score(pool, covs)
    pool["distance"] = eta
    cal = _caliper_width(caliper, eta)
    exact_code_cols = [f"_code_{c}" for c in spec.exact]
    pool["_stratum"] = pool.groupby(["index_t", *exact_code_cols], sort=True).ngroup().to_numpy()
    pairs_at, match_reasons = _match_pool(
        pool, covs, n_people, distance, ratio, cal, replace, order, rng
    )
    drop_reason.update(match_reasons)
    pr = _pairs_table(pairs_at, int(pool["treated"].sum()))
    pool_w, comp_w = _matching_weights(pr, len(pool))
    pool["weights"] = pool_w
    return _Matched(pool, coef, cal, pr, comp_w, drop_reason, exact_code_cols)


def _case_order(
    dt: np.ndarray, replace: bool, order: Order, rng: np.random.Generator
) -> np.ndarray:
    """Order in which the cases of an index period are matched (MatchIt ``m.order``)."""
    n1 = len(dt)
    if replace or order == "data":
        return np.arange(n1)  # MatchIt: with enough reuse the order is "data"
    if order == "largest":
        return np.argsort(-dt, kind="stable")
    if order == "smallest":
        return np.argsort(dt, kind="stable")
    return rng.permutation(n1)


def _match_pool(
    pool: pd.DataFrame,
    covs: Sequence[str],
    n_people: int,
    distance: Distance,
    ratio: int,
    cal: float | None,
    replace: bool,
    order: Order,
    rng: np.random.Generator,
) -> tuple[list[tuple[int, int, int, int, int]], dict[int, str]]:
    """Greedy nearest-neighbour matching within each index period x exact stratum.

    Returns the pairs as (subclass, case row, comparator row, k, index period) and
    the reason each unmatched case was dropped (by person code)."""
    drop_reason: dict[int, str] = {}
    reuse_max = np.iinfo(np.int32).max if replace else 1
    used_person = np.zeros(n_people, dtype=bool)
    pair_rows: list[tuple[int, int, int, int, int]] = []  # subclass, case row, comp row, k, s
    subclass = 0
    treated_arr = pool["treated"].to_numpy()
    pperson = pool["_p"].to_numpy()
    grid_arr = on_grid(pool["distance"].to_numpy())  # ties within noise become exact
    strat_arr = pool["_stratum"].to_numpy()
    index_arr = pool["index_t"].to_numpy()
    mah: np.ndarray | None = None
    if distance == "mahalanobis":
        mah = on_grid(mahalanobis_transform(pool, covs, treated_arr))

    n_strata = int(strat_arr.max()) + 1 if len(strat_arr) else 0
    for s in np.unique(index_arr):
        # one call per index period; each search stays inside its exact stratum
        # (nn_match_vec strata=), which equals matching every stratum on its own
        in_s = np.flatnonzero(index_arr == s)
        st = strat_arr[in_s]
        tr = treated_arr[in_s]
        has_case = np.bincount(st[tr == 1], minlength=n_strata) > 0
        keep = has_case[st]
        in_s, st, tr = in_s[keep], st[keep], tr[keep]
        if not replace:
            avail = (tr == 1) | ~used_person[pperson[in_s]]
        else:
            avail = np.ones(len(in_s), dtype=bool)
        n_comp_all = np.bincount(st[tr == 0], minlength=n_strata)
        n_comp_avail = np.bincount(st[(tr == 0) & avail], minlength=n_strata)
        empty = (tr == 1) & (n_comp_avail[st] == 0)
        for r in in_s[empty]:
            no_st = n_comp_all[strat_arr[r]] == 0
            drop_reason[int(pperson[r])] = REASON_NO_STRATUM if no_st else REASON_USED
        sel = avail & ~empty
        g2, st2, tr2 = in_s[sel], st[sel], tr[sel]
        if not (tr2 == 1).any():
            continue
        d = grid_arr[g2]
        n1 = int((tr2 == 1).sum())
        ord_ = _case_order(d[tr2 == 1], replace, order, rng)
        args = (tr2, ord_, np.full(n1, int(ratio)), np.zeros(len(g2), dtype=bool), reuse_max)
        if mah is not None:
            mm = nn_match_mahcovs(*args, mah[g2], None, d, cal, st2, ties="data")
        else:
            mm = nn_match_vec(*args, d, None, cal, st2, ties="data")
        case_rows = g2[tr2 == 1]
        # cases in (stratum, candidate) order: subclass numbers as stratum by stratum
        for r_i in np.argsort(st2[tr2 == 1], kind="stable"):
            case_row = case_rows[r_i]
            ctrl = mm[r_i][mm[r_i] >= 0]
            if len(ctrl) == 0:
                drop_reason[int(pperson[case_row])] = REASON_CALIPER
                continue
            subclass += 1
            for k, c in enumerate(ctrl):
                pair_rows.append((subclass, int(case_row), int(g2[c]), k + 1, int(s)))
                if not replace:
                    used_person[pperson[g2[c]]] = True
    return pair_rows, drop_reason


def _pairs_table(pairs_at: list[tuple[int, int, int, int, int]], n_cases: int) -> pd.DataFrame:
    """The pairs as a frame (EstimationError when no case found a comparator)."""
    if not pairs_at:
        raise EstimationError(
            f"risk_set: none of the {n_cases} eligible cases found a "
            "comparator; widen the caliper, coarsen the exact strata or use more comparators."
        )
    return pd.DataFrame(pairs_at, columns=["subclass", "_case", "_comp", "match", "index_t"])


def _matching_weights(pr: pd.DataFrame, n_pool: int) -> tuple[np.ndarray, np.ndarray]:
    """Matching weight of every pool row (cases 1, unused 0) and of each pair's
    comparator (1/k in a subclass of k, normalised to mean 1 as MatchIt)."""
    pool_w = np.zeros(n_pool)
    k_sub = pr.groupby("subclass")["_comp"].transform("size").to_numpy()
    comp_w = 1.0 / k_sub
    comp_w = comp_w * len(comp_w) / comp_w.sum()  # MatchIt normalisation (mean 1)
    np.add.at(pool_w, pr["_comp"].to_numpy(), comp_w)
    pool_w[pr["_case"].unique()] = 1.0
    return pool_w, comp_w


def _pairs_frame(pr: pd.DataFrame, pool: pd.DataFrame, person_ids: np.ndarray) -> pd.DataFrame:
    """One row per (case, comparator) pair with their ids, stratum and distances."""
    pperson = pool["_p"].to_numpy()
    dist_arr = pool["distance"].to_numpy()
    pairs = pd.DataFrame(
        {
            "subclass": pr["subclass"].to_numpy(),
            "match": pr["match"].to_numpy(),
            "index_t": pr["index_t"].to_numpy(),
            "case_person_id": person_ids[pperson[pr["_case"].to_numpy()]],
            "comparator_person_id": person_ids[pperson[pr["_comp"].to_numpy()]],
            "stratum": pool["_stratum"].to_numpy()[pr["_case"].to_numpy()],
            "distance_case": dist_arr[pr["_case"].to_numpy()],
            "distance_comparator": dist_arr[pr["_comp"].to_numpy()],
        }
    )
    pairs["distance_diff"] = (pairs["distance_case"] - pairs["distance_comparator"]).abs()
    return pairs


def _units_frame(
    pr: pd.DataFrame,
    pool: pd.DataFrame,
    comp_w: np.ndarray,
    covs: Sequence[str],
    exact: Sequence[str],
    person_ids: np.ndarray,
) -> pd.DataFrame:
    """One row per matched unit (a case, or a comparator's use in one subclass)."""
    pperson = pool["_p"].to_numpy()
    unit_cols = ["index_t", "_stratum", "distance", *covs]
    for c in exact:
        if c not in unit_cols:
            unit_cols.append(c)
    case_units = pool.loc[pr.drop_duplicates("subclass")["_case"].to_numpy(), unit_cols].copy()
    case_units.insert(0, "subclass", pr.drop_duplicates("subclass")["subclass"].to_numpy())
    case_units.insert(1, "treated", 1)
    case_units.insert(2, "weights", 1.0)
    case_units.insert(
        0, "person_id", person_ids[pperson[pr.drop_duplicates("subclass")["_case"].to_numpy()]]
    )
    comp_units = pool.loc[pr["_comp"].to_numpy(), unit_cols].copy()
    comp_units.insert(0, "subclass", pr["subclass"].to_numpy())
    comp_units.insert(1, "treated", 0)
    comp_units.insert(2, "weights", comp_w)
    comp_units.insert(0, "person_id", person_ids[pperson[pr["_comp"].to_numpy()]])
    units = pd.concat([case_units, comp_units], ignore_index=True)
    units = units.sort_values(["subclass", "treated"], ascending=[True, False], kind="stable")
    units = units.rename(columns={"_stratum": "stratum"}).reset_index(drop=True)
    units.insert(0, "unit_id", np.arange(1, len(units) + 1))
    return units


def _comparator_ipcw(
    units: pd.DataFrame,
    dense: _Dense,
    columns: _Columns,
    spec: _Spec,
    coef: np.ndarray,
    eligible: _Eligible,
) -> pd.DataFrame:
    """Censoring weights of the comparator units (empty unless not-yet-referred)."""
    if spec.comparators != "not-yet-referred":
        return pd.DataFrame(
            {
                "unit_id": np.zeros(0, np.int64),
                "t": np.zeros(0, np.int64),
                "hazard": np.zeros(0),
                "ipcw": np.zeros(0),
            }
        )
    cu = units.loc[units["treated"] == 0, ["unit_id", "person_id", "index_t"]]
    n_inelig = eligible.n_inelig
    return _censoring_weights(
        unit_id=cu["unit_id"].to_numpy(dtype=np.int64),
        person=dense.persons.get_indexer(pd.Index(cu["person_id"])),
        index_t=cu["index_t"].to_numpy(dtype=np.int64),
        pres=dense.pres,
        ref_person=dense.ref_person,
        row_key=dense.pcode.astype(np.int64) * dense.n_t + dense.t,
        covs=spec.covs,
        coef=coef,
        cum_o=dense.cum_o,
        num_panel=columns.crit_panel,
        yob=columns.yob,
        crit=spec.crit,
        hazard_ineligible=eligible.n_inelig_ref / n_inelig if n_inelig else 0.0,
        period_year=dense.period_year,
        lookback=spec.lookback,
        recent=spec.recent,
    )


def _attrition(
    n_in: int, drop_reason: dict[int, str], pr: pd.DataFrame, has_comparator_pcns: bool
) -> pd.DataFrame:
    """Referred people in, dropped by reason (in REASON_ORDER), matched; checked to
    reconcile."""
    counts = pd.Series(list(drop_reason.values()), dtype=object).value_counts()
    n_matched = int(pr["subclass"].nunique())
    att_rows = [{"step": "referred people in panel", "reason": "", "n": n_in}]
    for reason in REASON_ORDER:
        if reason == REASON_IN_COMPARATOR_PCN and not has_comparator_pcns:
            continue  # only a step of the comparator-PCN design
        att_rows.append({"step": "dropped", "reason": reason, "n": int(counts.get(reason, 0))})
    att_rows.append({"step": "matched cases", "reason": "", "n": n_matched})
    attrition = pd.DataFrame(att_rows)
    if n_in != n_matched + sum(drop_reason_count for drop_reason_count in counts.to_numpy()):
        raise EstimationError(  # pragma: no cover - internal consistency check
            "risk_set: internal error, attrition counts do not reconcile."
        )
    return attrition


def _diagnostics(
    panel: pd.DataFrame,
    pool: pd.DataFrame,
    pr: pd.DataFrame,
    ref_person: np.ndarray,
    person_ids: np.ndarray,
    ipcw: pd.DataFrame,
    eligible: _Eligible,
) -> dict[str, int]:
    """Counts about the comparators: later referred, censored rows, large weights."""
    pperson = pool["_p"].to_numpy()
    comp_people = np.unique(pperson[pr["_comp"].to_numpy()])
    later = comp_people[~np.isnan(ref_person[comp_people])]
    matched_case_people = set(pperson[pr["_case"].unique()].tolist())
    rows_censored = 0
    if len(later):
        comp_ref = pd.Series(ref_person[comp_people], index=person_ids[comp_people])
        later_ids = set(person_ids[later].tolist())
        sub = panel.loc[panel["person_id"].isin(later_ids), ["person_id", "t"]]
        sub_ids = np.asarray(sub["person_id"], dtype=object)
        rows_censored = int((sub["t"].to_numpy() >= comp_ref.loc[sub_ids].to_numpy()).sum())
    return {
        "comparators_later_referred": len(later),
        "comparators_later_matched_as_cases": int(
            sum(1 for p in later.tolist() if p in matched_case_people)
        ),
        "comparator_rows_censored_at_own_referral": rows_censored,
        "candidate_comparator_person_periods": int((pool["treated"] == 0).sum()),
        "comparator_rows_ipcw_above_2": int((ipcw["ipcw"] > 2).sum()),
        "candidate_person_periods_ineligible": eligible.n_inelig,
        "referrals_among_ineligible": eligible.n_inelig_ref,
    }


def _coefficient_series(coef: np.ndarray, covs: Sequence[str]) -> pd.Series:
    """The propensity model's coefficients named as its design's columns."""
    coef_names = ["(Intercept)"]
    for c in covs:
        coef_names.append(c)
        if c.startswith(("prior_", "recent_")):
            coef_names.append(f"log1p({c})")
    return pd.Series(coef, index=coef_names, name="coefficient")


def _censoring_weights(
    *,
    unit_id: np.ndarray,
    person: np.ndarray,
    index_t: np.ndarray,
    pres: np.ndarray,
    ref_person: np.ndarray,
    row_key: np.ndarray,
    covs: Sequence[str],
    coef: np.ndarray,
    cum_o: dict[str, np.ndarray],
    num_panel: dict[str, np.ndarray],
    yob: np.ndarray | None,
    period_year: np.ndarray,
    lookback: int,
    recent: int,
    crit: Sequence[tuple[str, str, float]] = (),
    hazard_ineligible: float = 0.0,
) -> pd.DataFrame:
    """Inverse probability of staying unreferred, for comparator rows after the index.

    The propensity model of the risk sets is a pooled logistic regression of referral
    in a period on the history before it among everyone still at risk (a discrete-time
    hazard model). For a comparator matched at index ``s`` and still unreferred and
    registered in period ``u > s``, the hazard ``h_u`` is that model evaluated on the
    comparator's covariates at ``u``; the weight of their row at ``t`` is
    ``prod_{s < u <= t} 1 / (1 - h_u)`` (rows at or after their own referral are
    censored; months without registration add no hazard).

    The model was fitted on the candidates who met the eligibility criteria ``crit``;
    in a period when the comparator does not meet them (an earlier referral that was
    declined, use below a frequent-attender threshold) their hazard is instead the
    crude referral rate among the ineligible candidates, ``hazard_ineligible`` (0 when
    no one ineligible was referred). Extrapolating the model there gave hazards near 1
    for people who had declined a referral, and weights up to 1e9.
    """
    n_t = pres.shape[1]
    reps = np.maximum(n_t - 1 - index_t, 0)
    uid = np.repeat(unit_id, reps)
    p = np.repeat(person, reps)
    s = np.repeat(index_t, reps)
    start = np.cumsum(reps) - reps
    u = s + 1 + (np.arange(len(uid)) - np.repeat(start, reps))
    ref = np.where(np.isnan(ref_person[p]), np.inf, ref_person[p])
    keep = (pres[p, u] == 1) & (u < ref)
    uid, p, u = uid[keep], p[keep], u[keep]
    cols: dict[str, np.ndarray] = {}
    lo = np.maximum(u - lookback, 0)
    for o in OUTCOMES:
        cols[f"prior_{o}"] = cum_o[o][p, u] - cum_o[o][p, lo]
        cols[f"recent_{o}"] = cum_o[o][p, u] - cum_o[o][p, np.maximum(u - recent, 0)]
    if yob is not None or any(c not in cols and c != "age" for c in [*covs, *num_panel]):
        order = np.argsort(row_key, kind="stable")
        pos = order[np.searchsorted(row_key, p.astype(np.int64) * n_t + u, sorter=order)]
        if yob is not None:
            cols["age"] = period_year[u].astype(float) - yob[pos]
        for c, arr in num_panel.items():
            cols[c] = arr[pos]
    frame = pd.DataFrame({c: cols[c] for c in covs})
    eta = _ps_design(frame, covs) @ coef  # the design has its intercept first
    h = np.where(np.isnan(eta), 0.0, 1.0 / (1.0 + np.exp(-np.nan_to_num(eta))))
    if crit:
        ok = np.ones(len(h), dtype=bool)
        for col, op, value in crit:
            ok &= _meets(cols[col], op, value)
        h = np.where(ok, h, hazard_ineligible)
    h = np.minimum(h, 0.99)
    out = pd.DataFrame({"unit_id": uid, "t": u.astype(np.int64), "hazard": h})
    out = out.sort_values(["unit_id", "t"], kind="stable").reset_index(drop=True)
    out["ipcw"] = np.exp(-np.log1p(-out["hazard"]).groupby(out["unit_id"]).cumsum())
    return out
