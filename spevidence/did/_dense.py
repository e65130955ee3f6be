"""Fast input path for two-way DiD on in-memory frames: unit x period matrices, no copies.

A long panel (one row per unit and period) is held as dense ``(units, periods)`` matrices.
When the rows are already sorted by unit then period and the panel is balanced (the usual
layout of a person-month panel), the matrices are zero-copy reshapes of the columns;
otherwise the rows are scattered into them once (cells not observed are masked). Ids are
factorised once (integer ids without hashing when they are dense), every check is one
vectorised pass, and no DataFrame is copied.

From the matrices :func:`cohort_moments` forms the exact cohort moments of DESIGN.md
section 6 (units sharing a whole design path): per-cohort period sums of ``y`` and a
score pass ``s_i = V_g' y_i - b_g`` for the clustered meat. :func:`rows_of` gives the
row-level design when the moments path does not apply. Both feed the engines of
:mod:`spevidence.did._fe`, so results equal the row path (tests: 1e-10).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from spevidence.did._fe import Model, Moments, RowDesign, splitmix64
from spevidence.did._inputs import (
    DAYS_PER_YEAR,
    check_arrays,
    no_rows,
    panel_columns,
    repeated_pairs,
    require_columns,
)
from spevidence.errors import DataError

# rows per block in score passes: small blocks keep BLAS single-threaded (threaded gemm on
# thin matrices is many times slower on a loaded machine)
_BLOCK = 16_384


@dataclass(frozen=True)
class Dense:
    """A cleaned panel as ``(n_units, n_periods)`` matrices.

    ``cols`` maps column names to matrices (value 0 in cells that are not observed);
    ``mask`` is ``None`` for a balanced panel. ``cluster`` holds one code per unit
    (``None``: units are the clusters). ``n_rows`` counts the observed cells.
    """

    n_units: int
    n_periods: int
    mask: np.ndarray | None
    cols: dict[str, np.ndarray]
    cluster: np.ndarray | None
    n_rows: int

    def observed(self) -> np.ndarray:
        if self.mask is None:
            return np.ones((self.n_units, self.n_periods), dtype=bool)
        return self.mask

    def unit_sum(self, a: np.ndarray) -> np.ndarray:
        """Sum over each unit's observed periods (cells not observed hold 0)."""
        return np.asarray(a.sum(axis=1, dtype=float))

    def values(self, name: str) -> np.ndarray:
        """Observed cells of a column as a flat array (unit-major order)."""
        a = self.cols[name]
        return a.ravel() if self.mask is None else a[self.mask]


# ----------------------------------------------------------------------------- input


def _column(data: pd.DataFrame, c: str) -> np.ndarray:
    s = data[c]
    if isinstance(s.dtype, np.dtype) and s.dtype.kind in "biuf":
        return s.to_numpy()
    if isinstance(s.dtype, np.dtype) and s.dtype.kind == "M":
        return s.to_numpy()
    num = pd.to_numeric(s, errors="coerce")
    if num.notna().sum() == s.notna().sum():
        return num.to_numpy(dtype=float, na_value=np.nan)
    return s.to_numpy()  # identifiers (strings): factorised later


def _isna(a: np.ndarray) -> np.ndarray | None:
    if a.dtype.kind in "biu":
        return None
    bad = np.isnan(a) if a.dtype.kind == "f" else np.asarray(pd.isna(a), dtype=bool)
    return bad if bad.any() else None


def _codes(a: np.ndarray) -> tuple[np.ndarray, int]:
    """Dense codes 0..k-1 in sorted order of the values (integers without hashing)."""
    if a.dtype.kind in "iu" and a.size:
        lo, hi = int(a.min()), int(a.max())
        span = hi - lo + 1
        if span <= 2 * a.size + 4096:
            off = a - lo if lo != 0 else a
            present = np.bincount(off, minlength=span) > 0
            rank = np.cumsum(present, dtype=np.int64) - 1
            return rank[off], int(rank[-1]) + 1
    codes, uniq = pd.factorize(a, sort=True)
    return codes.astype(np.int64, copy=False), len(uniq)


def _balanced_sorted(uid: np.ndarray, per: np.ndarray) -> tuple[int, int] | None:
    """(units, periods) when rows are sorted by unit then period and the panel is balanced."""
    N = uid.size
    if N < 4 or uid.dtype.kind not in "iuf" or per.dtype.kind not in "iufM":
        return None
    m = 64
    T = 0
    while True:
        head = uid[: min(m, N)]
        idx = np.flatnonzero(head != head[0])
        if idx.size:
            T = int(idx[0])
            break
        if m >= N:
            return None  # one unit only
        m *= 4
    if T < 2 or N % T:
        return None
    n = N // T
    P = per.reshape(n, T)
    first = P[0]
    if not np.all(first[1:] > first[:-1]):
        return None
    U = uid.reshape(n, T)
    if not (np.array_equal(U[:, 1:], np.broadcast_to(U[:, :1], (n, T - 1)))):
        return None
    if not np.array_equal(P, np.broadcast_to(first, (n, T))):
        return None
    heads = U[:, 0]
    if not (np.all(heads[1:] > heads[:-1]) or np.unique(heads).size == n):
        return None
    return n, T


def dense_from_frame(
    data: Any,
    *,
    yname: str,
    idname: str,
    tname: str,
    values: list[str],
    model: Model,
    exposure: str | None,
    weights: str | None,
    cluster: str,
    attrition: list[tuple[str, int]],
    max_fill: float = 4.0,
) -> Dense | None:
    """Build the dense panel from a pandas DataFrame, or ``None`` (use the frame path).

    ``values`` are numeric columns kept as matrices (outcome, regressors, exposure,
    weights). Checks (missing values, negative counts, exposure <= 0, weights,
    duplicates, singletons) and their messages follow the frame path. Returns ``None``
    for inputs this path does not cover: not a DataFrame, a cluster that varies within a
    unit, or a panel so sparse that the matrices would exceed ``max_fill`` times the rows.
    """
    if not isinstance(data, pd.DataFrame):
        return None
    names = panel_columns([yname, idname, tname, *values], [exposure, weights, cluster])
    require_columns(names, list(data.columns), f"DiD input ({len(data)} rows)")
    arr = _checked_arrays(
        data, names, yname=yname, values=values, model=model, exposure=exposure,
        weights=weights, attrition=attrition,
    )  # fmt: skip
    vals = [c for c in dict.fromkeys([yname, *values, exposure, weights]) if c is not None]
    shape = _balanced_sorted(arr[idname], arr[tname])
    if shape is not None:
        return _dense_balanced(arr, shape, vals, idname=idname, cluster=cluster)
    return _dense_scattered(
        arr, vals, idname=idname, tname=tname, cluster=cluster, attrition=attrition,
        max_fill=max_fill,
    )  # fmt: skip


def _checked_arrays(
    data: pd.DataFrame,
    names: list[str],
    *,
    yname: str,
    values: list[str],
    model: Model,
    exposure: str | None,
    weights: str | None,
    attrition: list[tuple[str, int]],
) -> dict[str, np.ndarray]:
    """The columns as arrays, rows with a missing value dropped (column by column, as
    the frame path counts them), then the frame path's checks (:func:`check_arrays`);
    zero-weight rows dropped."""
    arr = {c: _column(data, c) for c in names}
    keep: np.ndarray | None = None
    for c in names:  # sequential, as the frame path counts them
        bad = _isna(arr[c])
        if bad is None:
            continue
        if keep is not None:
            bad &= keep
        nb = int(bad.sum())
        if nb:
            attrition.append((f"missing_{c}", nb))
            keep = ~bad if keep is None else keep & ~bad
    if keep is not None:
        arr = {c: a[keep] for c, a in arr.items()}
    for c in [x for x in (yname, *values, exposure, weights) if x is not None]:
        if arr[c].dtype.kind not in "biuf":
            raise DataError(
                f"Column '{c}' has non-numeric values ({arr[c].size} rows); it must be numeric."
            )
    zero_w = check_arrays(
        arr[yname],
        n_rows=arr[yname].size,
        yname=yname,
        model=model,
        expo=None if exposure is None else arr[exposure],
        exposure=exposure,
        wts=None if weights is None else arr[weights],
        weights=weights,
    )
    if zero_w is not None:
        attrition.append(("zero_weight", int(zero_w.sum())))
        arr = {c: a[~zero_w] for c, a in arr.items()}
    return arr


def _dense_balanced(
    arr: dict[str, np.ndarray],
    shape: tuple[int, int],
    vals: list[str],
    *,
    idname: str,
    cluster: str,
) -> Dense | None:
    """Balanced rows sorted by unit then period: zero-copy reshapes (None: the cluster
    varies within a unit)."""
    n, T = shape
    cols = {c: arr[c].reshape(n, T) for c in vals}
    cl_unit: np.ndarray | None = None
    if cluster != idname:
        C2 = arr[cluster].reshape(n, T)
        if not np.array_equal(C2[:, 1:], np.broadcast_to(C2[:, :1], (n, T - 1))):
            return None
        cl_unit = _codes(C2[:, 0])[0]
    return Dense(n, T, None, cols, cl_unit, n * T)


def _singletons(
    mask: np.ndarray, N: int, idname: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Units and periods observed once, dropped until none is left (as fixest does):
    units and periods kept, the observed mask after the drop and the rows dropped."""
    n, T = mask.shape
    keep_u = np.ones(n, dtype=bool)
    keep_t = np.ones(T, dtype=bool)
    m2 = mask
    while True:
        cu = m2.sum(axis=1)
        ct = m2.sum(axis=0)
        bu = keep_u & (cu == 1)
        bt = keep_t & (ct == 1)
        if not (bu.any() or bt.any()):
            break
        keep_u &= ~bu
        keep_t &= ~bt
        m2 = mask & keep_u[:, None] & keep_t[None, :]
    n_single = int(mask.sum() - m2.sum())
    if n_single == N:
        raise DataError(
            f"All {N} rows are singletons (their unit or period is observed only once), "
            "so no unit can be compared over time. Check that the input holds several "
            f"periods per '{idname}'."
        )
    return keep_u, keep_t, m2, n_single


def _dense_scattered(
    arr: dict[str, np.ndarray],
    vals: list[str],
    *,
    idname: str,
    tname: str,
    cluster: str,
    attrition: list[tuple[str, int]],
    max_fill: float,
) -> Dense | None:
    """Any other layout: rows scattered into unit x period matrices with an observed
    mask, after the duplicate and singleton checks (None: too sparse, or the cluster
    varies within a unit)."""
    u, n = _codes(arr[idname])
    p, T = _codes(arr[tname])
    N = u.size
    if N == 0:
        raise no_rows()
    if n * T > max_fill * N + 1_000_000:
        return None
    key = u * T + p
    cnt = np.bincount(key, minlength=n * T)
    n_dup = N - int(np.count_nonzero(cnt))
    if n_dup:
        raise repeated_pairs(n_dup, idname, tname)
    mask = (cnt > 0).reshape(n, T)
    del cnt
    keep_u, keep_t, m2, n_single = _singletons(mask, N, idname)
    cl_unit = None
    if cluster != idname:
        cc, _ = _codes(arr[cluster])
        cl_u = np.full(n, -1, dtype=np.int64)
        cl_u[u] = cc
        if not np.array_equal(cl_u[u], cc):
            return None
    if n_single:
        attrition.append(("singleton_unit_or_period", n_single))
        rows_keep = keep_u[u] & keep_t[p]
        newu = np.cumsum(keep_u) - 1
        newt = np.cumsum(keep_t) - 1
        u, p = newu[u[rows_keep]], newt[p[rows_keep]]
        arr = {c: arr[c][rows_keep] for c in vals}
        if cluster != idname:
            cl_u = cl_u[keep_u]
        n, T = int(keep_u.sum()), int(keep_t.sum())
        mask = m2[keep_u][:, keep_t]
        key = u * T + p
    if cluster != idname:
        cl_unit = _codes(cl_u)[0]
    cols: dict[str, np.ndarray] = {}
    for c in vals:
        a = arr[c]
        M = np.zeros(n * T, dtype=a.dtype if a.dtype.kind in "biuf" else float)
        M[key] = a
        cols[c] = M.reshape(n, T)
    full = bool(mask.all())
    return Dense(n, T, None if full else mask, cols, cl_unit, int(u.size))


# ----------------------------------------------------------------------------- design


@dataclass(frozen=True)
class DenseDesign:
    """The two-way design on dense matrices: outcome, regressors, weights, offset."""

    y: np.ndarray  # (n, T) numeric (float or integer counts)
    X: list[np.ndarray]  # k matrices (n, T); 0/1 ones may be integer typed
    xnames: tuple[str, ...]
    weights: np.ndarray | None  # (n, T)
    offset: np.ndarray | None  # (n, T)
    panel: Dense


def design(
    dp: Dense,
    *,
    yname: str,
    X: list[np.ndarray],
    xnames: tuple[str, ...],
    model: Model,
    exposure: str | None,
    weights: str | None,
) -> DenseDesign:
    """Outcome/weights/offset as in the frame path (rates per person-year for linear)."""
    y = dp.cols[yname]  # integer counts stay integer (converted block by block)
    if y.dtype.kind not in "iuf":
        y = y.astype(np.float64)
    w = None if weights is None else dp.cols[weights].astype(np.float64, copy=False)
    off = None
    if exposure is not None:
        e = dp.cols[exposure].astype(np.float64, copy=False)
        obs = dp.observed()
        if model == "poisson":
            off = np.log(np.where(obs, e, 1.0))
        else:
            with np.errstate(divide="ignore", invalid="ignore"):
                y = np.where(obs, y / e * DAYS_PER_YEAR, 0.0)
            w = e if w is None else w * e
    return DenseDesign(y, X, xnames, w, off, dp)


def rows_of(dd: DenseDesign, *, cluster_is_unit: bool) -> RowDesign:
    """The row-level design of the observed cells (unit-major order)."""
    dp = dd.panel
    n, T = dp.n_units, dp.n_periods
    if dp.mask is None:
        unit = np.repeat(np.arange(n, dtype=np.int64), T)
        per = np.tile(np.arange(T, dtype=np.int64), n)
    else:
        unit, per = np.nonzero(dp.mask)
        unit, per = unit.astype(np.int64), per.astype(np.int64)

    def flat(a: np.ndarray) -> np.ndarray:
        return a.ravel() if dp.mask is None else a[dp.mask]

    cl = unit if cluster_is_unit or dp.cluster is None else dp.cluster[unit]
    X = np.column_stack([flat(x).astype(np.float64) for x in dd.X])
    return RowDesign(
        y=flat(dd.y).astype(np.float64),
        unit=unit,
        period=per,
        X=X,
        xnames=dd.xnames,
        cluster=cl,
        weights=None if dd.weights is None else flat(dd.weights),
        offset=None if dd.offset is None else flat(dd.offset),
    )


def is_binary(a: np.ndarray) -> bool:
    if a.dtype.kind == "b":
        return True
    return bool(a.min() >= 0 and a.max() <= 1 and (a.dtype.kind in "iu" or np.all(a % 1 == 0)))


def _unit_paths(parts: list[np.ndarray]) -> tuple[np.ndarray, bool]:
    """One uint64 key per unit for its path; ``exact`` when the key is injective."""
    packed: list[np.ndarray] = []
    hashed: list[np.ndarray] = []
    for a in parts:
        if is_binary(a):
            bits = a.view(bool) if a.dtype.itemsize == 1 else a.astype(bool)  # 0/1 checked
            packed.append(np.packbits(bits, axis=1, bitorder="little"))
        else:
            hashed.append(a)
    n = parts[0].shape[0]
    key = np.zeros(n, dtype=np.uint64)
    exact = not hashed
    if packed:
        B = np.concatenate(packed, axis=1) if len(packed) > 1 else packed[0]
        nb = B.shape[1]
        pad = (-nb) % 8
        if pad:
            B = np.concatenate([B, np.zeros((n, pad), dtype=np.uint8)], axis=1)
        words = np.ascontiguousarray(B).view(np.uint64)
        if words.shape[1] == 1:
            key = words[:, 0].copy()
        else:
            exact = False
            for j in range(words.shape[1]):
                key = splitmix64(key ^ words[:, j])
    T = parts[0].shape[1]
    salt = splitmix64(np.arange(1, T + 1, dtype=np.uint64))
    for j, a in enumerate(hashed):
        bits = np.ascontiguousarray(a, dtype=np.float64).view(np.uint64)
        h = np.zeros(n, dtype=np.uint64)
        for lo in range(0, n, _BLOCK):
            blk = bits[lo : lo + _BLOCK]
            h[lo : lo + _BLOCK] = splitmix64(blk ^ salt).sum(axis=1, dtype=np.uint64)
        key = splitmix64(key ^ splitmix64(h + np.uint64(j + 1)))
    return key, exact


def _cohort_codes(parts: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Cohort of each unit (units sharing every matrix row) and one representative each."""
    key, exact = _unit_paths(parts)
    cohort, uniq = pd.factorize(key, sort=True)
    cohort = cohort.astype(np.int64, copy=False)
    C = len(uniq)
    rep = np.zeros(C, dtype=np.int64)
    rep[cohort[::-1]] = np.arange(cohort.size - 1, -1, -1)  # first unit of each cohort
    if not exact:
        same = all(np.array_equal(a, a[rep[cohort]]) for a in parts)
        if not same:  # pragma: no cover - 64-bit hash collision
            allm = np.concatenate([np.asarray(a, dtype=np.float64) for a in parts], axis=1)
            _, first, cohort = np.unique(allm, axis=0, return_index=True, return_inverse=True)
            cohort = cohort.ravel().astype(np.int64)
            rep = first.astype(np.int64)
    return cohort, rep


def cohort_moments(dd: DenseDesign, *, model: Model) -> Moments:
    """Exact cohort moments (DESIGN.md section 6) with a per-unit score pass for the meat."""
    dp = dd.panel
    n, T = dp.n_units, dp.n_periods
    parts: list[np.ndarray] = [*dd.X]
    if dp.mask is not None:
        parts.append(dp.mask)
    parts += [a for a in (dd.offset, dd.weights) if a is not None]
    cohort, rep = _cohort_codes(parts)
    C = rep.size
    mask = np.ones((C, T), dtype=bool) if dp.mask is None else dp.mask[rep]
    k = len(dd.X)
    Xc = np.zeros((C, T, k))
    for j, x in enumerate(dd.X):
        Xc[:, :, j] = x[rep]
    offc = np.zeros((C, T)) if dd.offset is None else np.where(mask, dd.offset[rep], 0.0)
    Wc = np.ones((C, T)) if dd.weights is None else dd.weights[rep]
    Wc = np.where(mask, Wc, 0.0)
    y = dd.y
    cnt = np.bincount(cohort, minlength=C)
    # per-cohort period sums and unit totals in one pass over contiguous row blocks
    Yf = np.zeros(C * T)
    tot = np.empty(n)
    cols_t = np.arange(T)
    for lo in range(0, n, _BLOCK):
        blk = y[lo : lo + _BLOCK]
        idx = (cohort[lo : lo + _BLOCK, None] * T + cols_t).ravel()
        Yf += np.bincount(idx, weights=blk.ravel(), minlength=C * T)
        tot[lo : lo + _BLOCK] = blk.sum(axis=1)
    Y = Yf.reshape(C, T)
    pos = tot > 0
    nzero = np.bincount(cohort, weights=(~pos).astype(float), minlength=C)
    cl = dp.cluster
    if cl is None:
        n_cl = int(pos.sum()) if model == "poisson" else n
    else:
        sel = cl[pos] if model == "poisson" else cl
        n_cl = int(np.unique(sel).size)

    def meat_fn(V: np.ndarray, b: np.ndarray) -> np.ndarray:
        # per-unit scores s_i = V_g' y_i - b_g, in blocks, without BLAS (see _BLOCK)
        kk = V.shape[2]
        s = np.empty((n, kk))
        for lo in range(0, n, _BLOCK):
            hi = min(lo + _BLOCK, n)
            g = cohort[lo:hi]
            yb = y[lo:hi].astype(np.float64, copy=False)
            s[lo:hi] = np.einsum("it,itk->ik", yb, V[g]) - b[g]
        if cl is not None:
            m_cl = int(cl.max()) + 1
            s = np.column_stack([np.bincount(cl, weights=s[:, j], minlength=m_cl)
                                 for j in range(kk)])  # fmt: skip
        return np.asarray(np.einsum("ik,il->kl", s, s))

    return Moments(
        n_periods=T,
        mask=mask,
        X=Xc,
        offset=offc,
        W=Wc,
        n=cnt.astype(float),
        nzero=nzero,
        Y=Y,
        xnames=dd.xnames,
        meat_fn=meat_fn,
        n_clusters_known=n_cl,
    )
