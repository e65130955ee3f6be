"""Panel input checks shared by the DiD estimators, and their messages (one place).

Every estimator in :mod:`spevidence.did` reads a long panel (one row per unit and
period). The checks below are written once and used by the two-way estimators
(:mod:`~spevidence.did._twfe`, the dense path :mod:`~spevidence.did._dense`, the engine
moments :mod:`~spevidence.did._ibis_moments`) and the staggered estimators
(:mod:`~spevidence.did._staggered`, :mod:`~spevidence.did._etwfe`). Each error names the
column, the count and the fix (DESIGN.md section 9).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from spevidence.errors import DataError, EstimationError

DAYS_PER_YEAR = 365.25
# integer unit and period codes the frame path adds to the cleaned rows
UCODE = "__spe_unit_code__"
PCODE = "__spe_period_code__"
# attrition reasons of the staggered estimators (pandas, engine and ETWFE paths alike)
EARLY_UNITS = "unit already treated in the first period"
UNBALANCED_UNITS = "unit not observed in every period (balanced panel required)"


# ----------------------------------------------------------------------------- messages


def columns_not_found(missing: list[str], available: list[str], where: str) -> DataError:
    """A missing column: names the columns asked for and (the first 20 of) those available."""
    more = f" and {len(available) - 20} more" if len(available) > 20 else ""
    return DataError(
        f"Column(s) {missing} not found in the {where}. "
        f"Available columns: {available[:20]}{more}. Pass the right names."
    )


def require_columns(names: list[str], available: list[str], where: str) -> None:
    """Raise :func:`columns_not_found` for the ``names`` not in ``available``."""
    missing = [c for c in dict.fromkeys(names) if c not in available]
    if missing:
        raise columns_not_found(missing, available, where)


def no_rows() -> DataError:
    return DataError("The DiD input has no rows with complete data; nothing to estimate.")


def repeated_pairs(n_dup: int, idname: str, tname: str) -> DataError:
    """Rows repeating a (unit, period) pair (two-way estimators: matched data)."""
    return DataError(
        f"{n_dup} rows repeat a ({idname}, {tname}) pair; the DiD needs one row "
        "per unit and period. If a person sits in several match sets (matching with "
        "replacement, or a comparator later referred), use a unit id per copy (e.g. "
        "person and subclass) as idname and cluster by person; otherwise aggregate."
    )


def staggered_repeated_pairs(who: str, n_dup: int, idname: str, tname: str) -> DataError:
    """Rows repeating a (unit, period) pair (staggered estimators)."""
    return DataError(
        f"{who}: {n_dup} rows repeat a ({idname}, {tname}) pair; the panel must have one "
        "row per unit and period. Aggregate or de-duplicate."
    )


def units_with_repeated_periods(who: str, n_units: int, idname: str, tname: str) -> DataError:
    """Units with more than one row in a period (engine checks count units, not rows)."""
    return DataError(
        f"{who}: {n_units} units have more than one row in some period "
        f"({idname}, {tname}); one row per unit and period is needed."
    )


def varies_within_units(who: str, col: str, what: str, n_units: int) -> DataError:
    """A column that must be constant within each unit is not."""
    return DataError(
        f"{who}: column {col!r} ({what}) varies within {n_units} units; "
        "it must be constant for each unit."
    )


def negative_outcome(yname: str, n_bad: int) -> DataError:
    return DataError(
        f"Outcome column '{yname}' has {n_bad} negative values; a Poisson "
        "model needs counts (>= 0). Use model='linear' or fix the outcome."
    )


def not_binary(col: str, n_bad: int, n_rows: int) -> DataError:
    return DataError(
        f"Column '{col}' must be 0/1 (or True/False); {n_bad} of {n_rows} rows "
        "have other values. Recode it as an indicator."
    )


def bad_exposure(exposure: str | None, n_bad: int) -> DataError:
    return DataError(
        f"Exposure column '{exposure}' has {n_bad} rows with exposure <= 0 "
        "or non-numeric. Remove person-periods with no time at risk before the DiD "
        "(the panel contract keeps only exposure_days > 0)."
    )


def bad_weights(weights: str | None, n_bad: int) -> DataError:
    return DataError(
        f"Weights column '{weights}' has {n_bad} negative "
        "or non-numeric values; matching weights must be >= 0."
    )


def negative_unit_weights(who: str, weights: str | None, n_bad: int) -> DataError:
    return DataError(f"{who}: weights column {weights!r} has {n_bad} negative values.")


def check_model(model: str) -> None:
    if model not in ("linear", "poisson"):
        raise EstimationError(f"model must be 'linear' or 'poisson', got {model!r}.")


def check_path(path: str) -> None:
    if path not in ("auto", "rows", "moments"):
        raise EstimationError(f"path must be 'auto', 'rows' or 'moments', got {path!r}.")


def check_single_cluster(cl: np.ndarray, cluster: str) -> None:
    if cl.size == 0 or cl.min() == cl.max():
        raise EstimationError(
            f"Only one cluster in column '{cluster}'; clustered standard errors need at least "
            "two. Cluster by person (the default) or by a level with more groups."
        )


# ----------------------------------------------------------------------------- frames


def to_frame(data: Any, cols: list[str]) -> pd.DataFrame:
    """Pull only the needed columns into pandas (ibis tables are executed here)."""
    if isinstance(data, pd.DataFrame):
        require_columns(cols, list(data.columns), f"DiD input ({len(data)} rows)")
        return pd.DataFrame({c: data[c] for c in cols})
    if hasattr(data, "select") and hasattr(data, "to_pandas"):
        require_columns(cols, list(data.columns), "DiD input table")
        return data.select(*cols).to_pandas()
    raise DataError(
        f"DiD input must be a pandas DataFrame or an ibis Table, got {type(data).__name__}."
    )


def panel_frame(data: Any, needed: list[str], who: str) -> pd.DataFrame:
    """The staggered estimators' input as pandas (tables are pulled), columns checked."""
    if not isinstance(data, pd.DataFrame):
        if not hasattr(data, "to_pandas"):
            raise DataError(
                f"{who}(data=...): expected a pandas DataFrame, got {type(data).__name__}."
            )
        data = data.to_pandas()
    require_columns(needed, list(data.columns), f"{who} panel ({len(data)} rows)")
    return data


def drop_missing(df: pd.DataFrame, attrition: list[tuple[str, int]]) -> pd.DataFrame:
    """Drop rows with a missing value, column by column (each counted)."""
    for c in df.columns:
        bad = df[c].isna()
        if bad.any():
            attrition.append((f"missing_{c}", int(bad.sum())))
            df = df.loc[~bad]
    return df


def as_binary(df: pd.DataFrame, col: str) -> np.ndarray:
    v = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=float)
    bad = ~((v == 0.0) | (v == 1.0))
    if bad.any():
        raise not_binary(col, int(bad.sum()), len(v))
    return v


def check_arrays(
    y: np.ndarray,
    *,
    n_rows: int,
    yname: str,
    model: str,
    expo: np.ndarray | None,
    exposure: str | None,
    wts: np.ndarray | None,
    weights: str | None,
) -> np.ndarray | None:
    """Row checks shared by the frame and dense paths; returns the zero-weight rows."""
    if n_rows == 0:
        raise no_rows()
    if model == "poisson" and y.min() < 0:
        raise negative_outcome(yname, int((y < 0).sum()))
    if expo is not None and not (expo.min() > 0):
        raise bad_exposure(exposure, int((~(expo > 0)).sum()))
    if wts is not None:
        badw = (wts < 0) | np.isnan(wts)
        if badw.any():
            raise bad_weights(weights, int(badw.sum()))
        zero = wts == 0
        if zero.any():
            return np.asarray(zero)
    return None


def check_common(
    df: pd.DataFrame,
    *,
    yname: str,
    model: str,
    exposure: str | None,
    weights: str | None,
    attrition: list[tuple[str, int]],
) -> pd.DataFrame:
    """Model, numeric outcome and :func:`check_arrays` on a frame; drops zero weights."""
    check_model(model)
    if len(df) == 0:
        raise no_rows()
    y = pd.to_numeric(df[yname], errors="coerce")
    if y.isna().any():
        raise DataError(
            f"Outcome column '{yname}' has {int(y.isna().sum())} non-numeric values; "
            "it must be numeric."
        )

    def num(c: str | None) -> np.ndarray | None:
        return None if c is None else pd.to_numeric(df[c], errors="coerce").to_numpy(float)

    zero = check_arrays(
        y.to_numpy(dtype=float), n_rows=len(df), yname=yname, model=model,
        expo=num(exposure), exposure=exposure, wts=num(weights), weights=weights,
    )  # fmt: skip
    if zero is not None:
        attrition.append(("zero_weight", int(zero.sum())))
        df = df.loc[~zero]
    return df


def drop_singletons(
    df: pd.DataFrame, idname: str, period: str, attrition: list[tuple[str, int]]
) -> pd.DataFrame:
    """Check one row per unit and period; drop units (and periods) observed once.

    Singletons carry no information once their fixed effect is estimated; fixest/pyfixest
    drop them by default, and so do we (counted in the attrition). Adds the integer unit
    and period codes (:data:`UCODE`, :data:`PCODE`).
    """
    u, uu = pd.factorize(df[idname], sort=True)
    p, pu = pd.factorize(df[period], sort=True)
    key = u.astype(np.int64) * max(len(pu), 1) + p
    n_dup = len(key) - int(np.count_nonzero(np.bincount(key)))
    if n_dup:
        raise repeated_pairs(n_dup, idname, period)
    keep = np.ones(len(df), dtype=bool)
    while True:
        cu = np.bincount(u[keep], minlength=len(uu))
        cp = np.bincount(p[keep], minlength=len(pu))
        single = keep & ((cu[u] == 1) | (cp[p] == 1))
        if not single.any():
            break
        keep &= ~single
    n_drop = int((~keep).sum())
    if n_drop:
        attrition.append(("singleton_unit_or_period", n_drop))
        df, u, p = df.loc[keep], renumber(u[keep]), renumber(p[keep])
    return df.assign(**{UCODE: u.astype(np.int64), PCODE: p.astype(np.int64)})


def renumber(codes: np.ndarray) -> np.ndarray:
    """Renumber non-negative integer codes to 0..k-1 keeping their order."""
    present = np.bincount(codes) > 0
    return (np.cumsum(present) - 1)[codes]


# ----------------------------------------------------------------------------- frame path


def panel_columns(required: list[str], optional: list[str | None]) -> list[str]:
    """The columns an estimator reads: ``required`` then the ``optional`` ones given, once
    each and in that order (the order of the missing-value counts in the attrition)."""
    cols = list(dict.fromkeys(required))
    return cols + [c for c in optional if c is not None and c not in cols]


def checked_rows(
    data: Any,
    cols: list[str],
    *,
    yname: str,
    model: str,
    exposure: str | None,
    weights: str | None,
    attrition: list[tuple[str, int]],
    keep_missing: str | None = None,
) -> pd.DataFrame:
    """The frame path's rows: ``cols`` pulled (:func:`to_frame`), rows with a missing
    value dropped column by column (a missing ``keep_missing`` is kept: it means
    something), then :func:`check_common` (outcome, exposure, weights; zero weights
    dropped). Every drop is counted in ``attrition``."""
    raw = to_frame(data, cols)
    if keep_missing is None:
        df = drop_missing(raw, attrition)
    else:
        df = drop_missing(raw[[c for c in raw.columns if c != keep_missing]], attrition)
        df[keep_missing] = raw.loc[df.index, keep_missing]
    return check_common(
        df, yname=yname, model=model, exposure=exposure, weights=weights, attrition=attrition
    )


def checked_frame(
    data: Any,
    cols: list[str],
    *,
    yname: str,
    idname: str,
    tname: str,
    model: str,
    exposure: str | None,
    weights: str | None,
    attrition: list[tuple[str, int]],
) -> pd.DataFrame:
    """:func:`checked_rows`, then one row per unit and period checked and the units and
    periods observed once dropped (:func:`drop_singletons`, which adds the integer unit
    and period codes)."""
    df = checked_rows(
        data, cols, yname=yname, model=model, exposure=exposure, weights=weights,
        attrition=attrition,
    )  # fmt: skip
    return drop_singletons(df, idname, tname, attrition)


# ----------------------------------------------------------------------------- 2x2 messages


def treat_varies(treat: str, idname: str) -> DataError:
    """The 2×2's treated flag changes within a unit."""
    return DataError(
        f"Column '{treat}' changes within a unit ('{idname}'); it must mark treated units. "
        "Use twfe(dname=...) for a time-varying treatment indicator."
    )


def constant_indicator(col: str, total: float, n_rows: int, needs: str) -> EstimationError:
    """An indicator that is 0 (``total == 0``) or 1 in every row; ``needs`` says what the
    design needs instead (e.g. "treated and comparison units")."""
    return EstimationError(
        f"'{col}' is {'0' if total == 0 else '1'} in all {n_rows} rows; the 2×2 needs {needs}."
    )
