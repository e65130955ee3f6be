"""Nearest-neighbour matching with MatchIt's semantics (``matchit(method = "nearest")``).

References
----------
Ho, D. E., Imai, K., King, G., & Stuart, E. A. (2007). Matching as nonparametric
preprocessing for reducing model dependence in parametric causal inference.
Political Analysis 15(3), 199-236.
Ho, D. E., Imai, K., King, G., & Stuart, E. A. (2011). MatchIt: nonparametric
preprocessing for parametric causal inference. Journal of Statistical Software 42(8).
Austin, P. C. (2011). Optimal caliper widths for propensity-score matching when
estimating differences in means and differences in proportions in observational
studies. Pharmaceutical Statistics 10(2), 150-161.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from spevidence.errors import DataError, EstimationError
from spevidence.match._design import (
    Link,
    check_covariates,
    mahalanobis_transform,
    model_matrix,
    propensity_distance,
)
from spevidence.match._nn import (
    Ties,
    nn_match_mahcovs,
    nn_match_vec,
    normalize_weights,
    on_grid,
    subclass_from_mm,
    weights_from_mm,
    weights_from_subclass,
)
from spevidence.match.balance import Balance, compute_balance

if TYPE_CHECKING:
    from matplotlib.figure import Figure

Order = Literal["largest", "smallest", "random", "data"]
Distance = Literal["glm", "mahalanobis"]


@dataclass(frozen=True)
class Matched:
    """Result of :func:`nearest`.

    Attributes
    ----------
    data : the input frame (unchanged).
    treat : name of the treatment column.
    covariates : covariates used for the distance and the balance table.
    distance : the distance of every unit (propensity score or linear predictor).
    match_matrix : (n_treated, ratio) positions (0-based rows of ``data``) of each
        treated unit's controls, -1 where none (MatchIt ``match.matrix``).
    subclass : match-set id per row (NaN if unmatched; all NaN with replacement).
    weights : matching weights per row (0 = unmatched), normalised as MatchIt does.
    discarded : rows that could not be matched (exact strata without both groups).
    caliper : the caliper in distance units (after ``std_caliper``), or None.
    options : the call's options.
    coefficients : propensity-model coefficients (intercept first), if estimated.
    """

    data: pd.DataFrame = field(repr=False)
    treat: str
    covariates: tuple[str, ...]
    distance: np.ndarray | None = field(repr=False)
    match_matrix: np.ndarray = field(repr=False)
    subclass: np.ndarray = field(repr=False)
    weights: np.ndarray = field(repr=False)
    discarded: np.ndarray = field(repr=False)
    caliper: float | None
    options: dict[str, object] = field(repr=False)
    coefficients: np.ndarray | None = field(default=None, repr=False)

    # ------------------------------------------------------------------ derived
    @property
    def treated(self) -> np.ndarray:
        return self.data[self.treat].to_numpy(dtype=int)

    @property
    def n_treated(self) -> int:
        return int(self.treated.sum())

    @property
    def n_control(self) -> int:
        return int((self.treated == 0).sum())

    @property
    def n_matched_treated(self) -> int:
        return int(((self.weights > 0) & (self.treated == 1)).sum())

    @property
    def n_matched_control(self) -> int:
        return int(((self.weights > 0) & (self.treated == 0)).sum())

    @property
    def pairs(self) -> pd.DataFrame:
        """One row per (treated, control) pair: row positions, subclass, distances."""
        t_idx = np.flatnonzero(self.treated == 1)
        dist = self.distance if self.distance is not None else np.full(len(self.data), np.nan)
        rows = []
        for r, ti in enumerate(t_idx):
            for k, c in enumerate(self.match_matrix[r]):
                if c < 0:
                    continue
                rows.append(
                    {
                        "pair_set": r + 1,
                        "match": k + 1,
                        "treated_row": int(ti),
                        "control_row": int(c),
                        "treated_index": self.data.index[int(ti)],
                        "control_index": self.data.index[int(c)],
                        "distance_treated": dist[ti],
                        "distance_control": dist[c],
                    }
                )
        return pd.DataFrame(
            rows,
            columns=[
                "pair_set",
                "match",
                "treated_row",
                "control_row",
                "treated_index",
                "control_index",
                "distance_treated",
                "distance_control",
            ],
        )

    def matched_data(self) -> pd.DataFrame:
        """Matched rows with ``distance``, ``weights`` and ``subclass`` columns
        (MatchIt ``match.data``; unmatched rows dropped)."""
        out = self.data.copy()
        for name in ("distance", "weights", "subclass"):
            if name in out.columns:
                raise DataError(
                    f"matched_data: the input already has a column {name!r}; rename it "
                    "before matching."
                )
        if self.distance is not None:
            out["distance"] = self.distance
        out["weights"] = self.weights
        if not bool(self.options.get("replace")):
            out["subclass"] = pd.array(
                [pd.NA if np.isnan(s) else int(s) for s in self.subclass], dtype="Int64"
            )
        return out.loc[self.weights > 0]

    def _balance_matrix(self) -> tuple[np.ndarray, list[str]]:
        X, names = model_matrix(self.data, list(self.covariates), full_dummies=True)
        if self.distance is None:
            return X, names
        return np.column_stack([self.distance, X]), ["distance", *names]

    def balance(self, *, warn: bool = True) -> Balance:
        """Balance of the distance and each covariate (factors expanded to all
        levels) before and after matching, cobalt/MatchIt ATT conventions."""
        X, names = self._balance_matrix()
        t_rows = np.flatnonzero(self.treated == 1)
        r, k = np.nonzero(self.match_matrix >= 0)
        pairs = (t_rows[r], self.match_matrix[r, k])
        return compute_balance(X, names, self.treated, self.weights, warn=warn, pairs=pairs)

    def att(self, outcome: str, *, adjust: bool = False) -> pd.DataFrame:
        """ATT on the matched data: weighted difference in means (``adjust=False``)
        or weighted regression on treatment plus the covariates (``adjust=True``),
        with standard errors clustered on subclass (pair) — or on unit with
        replacement (Austin & Small 2014; MatchIt "Estimating effects" vignette)."""
        from spevidence.match._effects import att_on_matched

        md = self.matched_data()
        cluster = "subclass" if "subclass" in md.columns else None
        covs: list[str] = list(self.covariates) if adjust else []
        return att_on_matched(
            md, outcome=outcome, treat=self.treat, covariates=covs, cluster=cluster
        )

    def glance(self) -> pd.DataFrame:
        """Counts of treated/control units: all, matched, unmatched, discarded."""
        t = self.treated
        return pd.DataFrame(
            {
                "n_treated": [self.n_treated],
                "n_control": [self.n_control],
                "n_matched_treated": [self.n_matched_treated],
                "n_matched_control": [self.n_matched_control],
                "n_unmatched_treated": [self.n_treated - self.n_matched_treated],
                "n_unmatched_control": [self.n_control - self.n_matched_control],
                "n_discarded": [int(self.discarded.sum())],
                "ess_control": [_ess(self.weights[(t == 0) & (self.weights > 0)])],
                "caliper": [self.caliper],
            }
        )

    def tidy(self) -> pd.DataFrame:
        """The balance table (long form)."""
        return self.balance(warn=False).tidy()

    def summary(self) -> str:
        g = self.glance().iloc[0]
        o = self.options
        head = (
            f"{o.get('ratio')}:1 nearest-neighbour matching "
            f"{'with' if o.get('replace') else 'without'} replacement on "
            f"{o.get('distance')} ({o.get('link')}), order={o.get('order')}, "
            f"caliper={self.caliper}\n"
            f"treated: {g['n_treated']} ({g['n_matched_treated']} matched); controls: "
            f"{g['n_control']} ({g['n_matched_control']} matched)\n"
        )
        return head + self.balance(warn=False).summary()

    def plot(self) -> Figure:
        """Love plot of the balance before/after matching."""
        return self.balance(warn=False).plot()


def _ess(w: np.ndarray) -> float:
    if len(w) == 0:
        return 0.0
    return float(w.sum() ** 2 / (w**2).sum())


def _strata_codes(data: pd.DataFrame, exact: Sequence[str]) -> np.ndarray:
    codes = data[list(exact)].groupby(list(exact), sort=True, dropna=False).ngroup()
    return codes.to_numpy(dtype=np.int64)


def nearest(
    data: pd.DataFrame,
    *,
    treat: str,
    covariates: Sequence[str],
    distance: Distance | np.ndarray | pd.Series = "glm",
    link: Link = "logit",
    ratio: int = 1,
    caliper: float | None = None,
    std_caliper: bool = True,
    replace: bool = False,
    order: Order | None = None,
    exact: Sequence[str] | None = None,
    seed: int | np.random.Generator | None = None,
    ties: Ties = "matchit",
) -> Matched:
    """Greedy nearest-neighbour matching for the ATT, as MatchIt's
    ``matchit(method = "nearest")``.

    Parameters
    ----------
    data : one row per unit.
    treat : 0/1 (or boolean) treatment column.
    covariates : columns for the propensity model and the balance table; text and
        categorical columns are expanded as R's ``model.matrix`` does (treatment
        contrasts, levels sorted), logical columns as ``nameTRUE``.
    distance : ``"glm"`` (binomial GLM propensity score), ``"mahalanobis"``
        (Mahalanobis distance on the covariates, pooled within-group covariance, as
        MatchIt) or a numeric vector of precomputed distances (MatchIt
        ``distance = <numeric>``).
    link : ``"logit"``, ``"probit"``, or ``"linear.logit"`` / ``"linear.probit"``
        (match on the linear predictor).
    ratio : controls per treated unit (k:1 matching).
    caliper : maximum distance between matched units; in standard deviations of the
        distance when ``std_caliper`` (SD over all units), else in raw units.
    replace : allow a control to be matched to several treated units.
    order : order in which treated units are matched: ``"largest"`` distance first,
        ``"smallest"``, ``"random"`` (uses ``seed``) or ``"data"``; None = MatchIt's
        default (``"largest"`` for a propensity score, ``"data"`` for Mahalanobis).
        With ``replace=True`` the order is irrelevant and ``"data"`` is used.
    exact : columns on which matches must agree exactly.
    seed : seed or Generator for ``order="random"``. (The permutation differs from
        R's ``sample()``; every other order reproduces MatchIt's pairs.)
    ties : which of several equally near controls is taken: ``"matchit"`` (MatchIt's
        search order: units sorted stably by distance, searched outwards from the
        treated unit, left first) or ``"data"`` (the first in data order).
        Distances equal up to floating-point noise (about 1e-9 of their range) count
        as equal, so the pairs do not depend on the CPU or BLAS library.

    Returns
    -------
    Matched
    """
    options = _options(locals())  # first: here locals() holds just the arguments
    tvals = _treatment(data, treat)
    n1 = int(tvals.sum())
    _check_options(ratio, caliper, order)
    covariates = list(covariates)
    check_covariates(data, covariates, table="nearest")
    if exact:
        check_covariates(data, list(exact), table="nearest")
    dist, coef, mah = _distances(data, tvals, covariates, distance, link, caliper, order)
    if order is None:
        order = "largest" if dist is not None else "data"
    cal = _caliper_width(caliper, std_caliper, dist)
    reuse_max = np.iinfo(np.int32).max if replace else 1
    eff_order: Order = "data" if reuse_max >= n1 else order
    discarded, strata = _exact_strata(data, tvals, exact)
    # on the grid, distances equal up to rounding noise are equal (see _nn.on_grid):
    # the matching order and the pairs are the same on every CPU
    dist_g = on_grid(dist) if dist is not None else None
    ord_ = _treated_order(eff_order, dist_g, tvals, discarded, seed)
    ratios = np.full(n1, int(ratio))
    mm = _match_matrix(tvals, ord_, ratios, discarded, reuse_max, dist_g, mah, strata, cal, ties)
    sub, w = _subclass_and_weights(mm, tvals, reuse_max)
    if caliper is None:
        warnings.warn(
            "nearest: matching without a caliper; poor matches are kept. Consider "
            "caliper=0.2 (SD of the logit of the propensity score, Austin 2011).",
            UserWarning,
            stacklevel=2,
        )
    options["order"] = eff_order
    return Matched(
        data=data,
        treat=treat,
        covariates=tuple(covariates),
        distance=dist,
        match_matrix=mm,
        subclass=sub,
        weights=w,
        discarded=discarded,
        caliper=cal,
        options=options,
        coefficients=coef,
    )


def _options(args: dict[str, Any]) -> dict[str, object]:
    """The options of a :func:`nearest` call as :attr:`Matched.options` records them
    (``order`` is then set to the order used)."""
    distance, exact, seed = args["distance"], args["exact"], args["seed"]
    return {
        "distance": distance if isinstance(distance, str) else "user",
        "link": args["link"],
        "ratio": int(args["ratio"]),
        "caliper": args["caliper"],
        "std_caliper": args["std_caliper"],
        "replace": args["replace"],
        "order": args["order"],
        "exact": tuple(exact) if exact else None,
        "seed": seed if not isinstance(seed, np.random.Generator) else "Generator",
        "ties": args["ties"],
    }


def _caliper_width(
    caliper: float | None, std_caliper: bool, dist: np.ndarray | None
) -> float | None:
    """The caliper in units of the distance (SD over all units when ``std_caliper``)."""
    if caliper is None or dist is None:
        return None
    return float(caliper) * (float(np.std(dist, ddof=1)) if std_caliper else 1.0)


def _exact_strata(
    data: pd.DataFrame, tvals: np.ndarray, exact: Sequence[str] | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Units discarded (in a stratum without both groups) and the stratum codes."""
    discarded = np.zeros(len(data), dtype=bool)
    if not exact:
        return discarded, None
    strata = _strata_codes(data, list(exact))
    discarded |= _outside_common_strata(strata, tvals, exact)
    return discarded, strata


def _treatment(data: pd.DataFrame, treat: str) -> np.ndarray:
    """The treatment column as 0/1 integers; DataError or EstimationError unless it
    is complete, 0/1 and holds both groups."""
    if treat not in data.columns:
        raise DataError(f"nearest: treatment column {treat!r} not found in the data.")
    tcol = data[treat]
    if tcol.isna().any():
        raise DataError(
            f"nearest: treatment column {treat!r} has {int(tcol.isna().sum())} missing "
            "value(s); drop those rows first."
        )
    tvals = tcol.astype(int).to_numpy()
    if not set(np.unique(tvals)) <= {0, 1}:
        raise DataError(f"nearest: treatment column {treat!r} must be 0/1 or boolean.")
    n1 = int(tvals.sum())
    if n1 == 0 or n1 == len(tvals):
        raise EstimationError(
            f"nearest: need both treated and control units; found {n1} treated among "
            f"{len(tvals)} rows."
        )
    return tvals


def _check_options(ratio: int, caliper: float | None, order: Order | None) -> None:
    """ratio, caliper and order are of the accepted kinds (DataError naming the value)."""
    if not isinstance(ratio, int | np.integer) or ratio < 1:
        raise DataError(f"nearest: ratio must be a positive integer, got {ratio!r}.")
    if caliper is not None and not (np.isfinite(caliper) and caliper > 0):
        raise DataError(f"nearest: caliper must be a positive number, got {caliper!r}.")
    if order is not None and order not in ("largest", "smallest", "random", "data"):
        raise DataError(f"nearest: order must be largest/smallest/random/data, got {order!r}.")


def _distances(
    data: pd.DataFrame,
    tvals: np.ndarray,
    covariates: list[str],
    distance: Distance | np.ndarray | pd.Series,
    link: Link,
    caliper: float | None,
    order: Order | None,
) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """(distance, propensity coefficients, Mahalanobis-transformed covariates): the
    distance is None for Mahalanobis matching, the transform None otherwise."""
    coef: np.ndarray | None = None
    dist: np.ndarray | None = None
    mah: np.ndarray | None = None
    if isinstance(distance, str):
        if distance not in ("glm", "mahalanobis"):
            raise DataError(
                f"nearest: distance must be 'glm', 'mahalanobis' or a numeric vector, got "
                f"{distance!r}."
            )
        if distance == "glm":
            if link not in ("logit", "linear.logit", "probit", "linear.probit"):
                raise DataError(f"nearest: unknown link {link!r}.")
            dist, coef = propensity_distance(data, tvals, covariates, link=link)
        else:
            if caliper is not None:
                raise DataError(
                    "nearest: a caliper needs a propensity-score distance (distance='glm'); "
                    "with distance='mahalanobis' use exact= instead."
                )
            if order in ("largest", "smallest"):
                raise DataError(
                    f"nearest: order={order!r} needs a propensity score; with "
                    "distance='mahalanobis' use 'data' or 'random'."
                )
            mah = mahalanobis_transform(data, covariates, tvals)
    else:
        dist = np.asarray(distance, dtype=float)
        if dist.shape != (len(data),) or not np.all(np.isfinite(dist)):
            raise DataError(
                f"nearest: a numeric distance must have one finite value per row "
                f"({len(data)} rows)."
            )
    return dist, coef, mah


def _outside_common_strata(
    strata: np.ndarray, tvals: np.ndarray, exact: Sequence[str]
) -> np.ndarray:
    """Rows in an exact stratum without both groups (EstimationError if every one is)."""
    both = set(strata[tvals == 1]) & set(strata[tvals == 0])
    if not both:
        raise EstimationError(
            f"nearest: no exact stratum of {list(exact)} contains both treated and "
            "control units; no matches are possible."
        )
    return ~np.isin(strata, list(both))


def _treated_order(
    eff_order: Order,
    dist_g: np.ndarray | None,
    tvals: np.ndarray,
    discarded: np.ndarray,
    seed: int | np.random.Generator | None,
) -> np.ndarray:
    """Positions of the treated units in the order they are matched."""
    if eff_order in ("largest", "smallest") and dist_g is not None:
        dt = dist_g[tvals == 1]
        return np.argsort(-dt if eff_order == "largest" else dt, kind="stable")
    if eff_order == "random":
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        return rng.permutation(np.flatnonzero(~discarded[tvals == 1]))
    return np.flatnonzero(~discarded[tvals == 1])


def _match_matrix(
    tvals: np.ndarray,
    ord_: np.ndarray,
    ratios: np.ndarray,
    discarded: np.ndarray,
    reuse_max: int,
    dist_g: np.ndarray | None,
    mah: np.ndarray | None,
    strata: np.ndarray | None,
    cal: float | None,
    ties: Ties,
) -> np.ndarray:
    """The greedy search (MatchIt's port in ``_nn``) on the Mahalanobis covariates or
    the gridded distance; EstimationError when no treated unit found a control."""
    if mah is not None:
        mah_g = on_grid(mah)
        mm = nn_match_mahcovs(tvals, ord_, ratios, discarded, reuse_max, mah_g, strata, ties=ties)
    elif dist_g is not None:
        mm = nn_match_vec(tvals, ord_, ratios, discarded, reuse_max, dist_g, strata, cal, ties=ties)
    else:  # pragma: no cover - every distance option sets dist or mah
        raise EstimationError("nearest: no distance could be computed.")
    if not (mm[:, 0] >= 0).any():
        raise EstimationError(
            f"nearest: no treated unit could be matched ({len(ratios)} treated); widen or "
            "drop the caliper or the exact-matching variables."
        )
    return mm


def _subclass_and_weights(
    mm: np.ndarray, tvals: np.ndarray, reuse_max: int
) -> tuple[np.ndarray, np.ndarray]:
    """Subclass per row (all NaN with replacement) and normalised matching weights."""
    if reuse_max > 1:
        sub = np.full(len(tvals), np.nan)
        w = weights_from_mm(mm, tvals)
    else:
        sub = subclass_from_mm(mm, tvals)
        w = weights_from_subclass(sub, tvals)
    return sub, normalize_weights(w, tvals)
