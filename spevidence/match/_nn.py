"""Greedy nearest-neighbour matching on a scalar distance: a line-by-line port of
MatchIt's ``nn_matchC_vec`` / ``find_control_vec`` (MatchIt 4.7, src/nn_matchC_vec.cpp,
src/internal.cpp), for one treated group (focal = 1) and one control group.

Porting notes (what makes the pairs identical to MatchIt's):

* units are sorted by distance with a *stable* sort (R's ``order``) and each treated
  unit searches outwards from its own position, alternating left then right, one
  step at a time, skipping ineligible units, treated units and other exact strata;
  a side stops at the caliper, or when ``ratio`` closer candidates are already held;
* without replacement the treated units are visited in rounds ``r = 1..max(ratio)``
  (everyone's first match, then everyone's second, ...); a control is used once; a
  treated unit with no control in round 1 is dropped;
* with replacement each treated unit takes its ``ratio`` nearest at once;
* ties between candidates found on the two sides are broken as libc++'s
  ``std::partial_sort`` breaks them (the library MatchIt's snapshot tests were
  produced with); for 1:1 matching every standard library gives the same answer.
  With ``ties="data"`` (risk-set matching) every candidate at the same distance is
  collected and the ``ratio`` nearest are taken in (distance, data position) order:
  among equally near controls the first in data order wins.

Distances that differ only by floating-point noise are made equal first
(:func:`on_grid`), so which tie rule applies never depends on the CPU or on the BLAS
kernel it selects.

Indices are 0-based; the returned match matrix uses -1 for "no match".
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import numpy as np

Ties = Literal["matchit", "data"]

# --------------------------------------------------------------------------- grid
GRID_BITS = 30


def on_grid(x: np.ndarray) -> np.ndarray:
    """``x`` rounded to a power-of-two grid of about 1e-9 of its finite range
    (2**-30 of the range, column by column for a matrix).

    A propensity score or a Mahalanobis transform carries the rounding of the BLAS
    kernel the CPU selects (and, under separation, much more): two comparators that
    tie in exact arithmetic can differ in the 6th to 16th digit, and which one is
    "nearer" would then depend on the machine. On the grid such values are exactly
    equal and the stated tie rule decides. The rounding is exact (scaling by a power
    of two and rounding to an integer are exact in floating point), so equal inputs
    give equal outputs on any machine; only values within noise of a grid boundary
    (a chance of about noise / 1e-9) can still land apart.
    """
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 2:
        return np.column_stack([on_grid(a[:, j]) for j in range(a.shape[1])]).reshape(a.shape)
    finite = a[np.isfinite(a)]
    span = float(finite.max() - finite.min()) if len(finite) else 0.0
    if span == 0.0 or not math.isfinite(span):
        return a.copy()
    q = math.ldexp(1.0, math.frexp(span)[1] - GRID_BITS)
    return np.round(a / q) * q


# --------------------------------------------------------------------------- libc++ heap
# MatchIt keeps the `ratio` closest candidates with std::partial_sort. Which of
# several *tied* candidates survive, and in which column they land, depends on the
# C++ standard library. MatchIt's own snapshot tests (tests/testthat/_snaps/
# nearest_snapshots.md) were produced with LLVM's libc++, so that is what is
# ported here; a libstdc++ (GCC) build can order exact ties differently.


def _sift_down(a: list[int], key: list[float], n: int, start: int) -> None:
    child = start
    if n < 2 or (n - 2) // 2 < child:
        return
    child = 2 * child + 1
    if child + 1 < n and key[a[child]] < key[a[child + 1]]:
        child += 1
    if key[a[child]] < key[a[start]]:
        return
    top = a[start]
    while True:
        a[start] = a[child]
        start = child
        if (n - 2) // 2 < child:
            break
        child = 2 * child + 1
        if child + 1 < n and key[a[child]] < key[a[child + 1]]:
            child += 1
        if key[a[child]] < key[top]:
            break
    a[start] = top


def _pop_heap(a: list[int], key: list[float], n: int) -> None:
    if n <= 1:
        return
    top = a[0]
    # Floyd's sift-down: move the hole to a leaf
    hole = 0
    child = 0
    while True:
        child = 2 * child + 1
        if child + 1 < n and key[a[child]] < key[a[child + 1]]:
            child += 1
        a[hole] = a[child]
        hole = child
        if child > (n - 2) // 2:
            break
    last = n - 1
    if hole == last:
        a[hole] = top
        return
    a[hole] = a[last]
    a[last] = top
    # sift up the element now at `hole`
    length = hole + 1
    if length > 1:
        length = (length - 2) // 2
        ptr = length
        pos = hole
        if key[a[ptr]] < key[a[pos]]:
            t = a[pos]
            while True:
                a[pos] = a[ptr]
                pos = ptr
                if length == 0:
                    break
                length = (length - 1) // 2
                ptr = length
                if not key[a[ptr]] < key[t]:
                    break
            a[pos] = t


def _partial_sort(a: list[int], key: list[float], middle: int) -> None:
    """libc++ std::partial_sort(a.begin(), a.begin() + middle, a.end(), key-less)."""
    if middle == 0:
        return
    for start in range((middle - 2) // 2, -1, -1):
        _sift_down(a, key, middle, start)
    for i in range(middle, len(a)):
        if key[a[i]] < key[a[0]]:
            a[i], a[0] = a[0], a[i]
            _sift_down(a, key, middle, 0)
    n = middle
    while n > 1:
        _pop_heap(a, key, n)
        n -= 1


def _std_sort(a: list[int], key: list[float]) -> None:
    """std::sort on the short ranges used here (at most 2 x ratio candidates, all
    already <= ratio): equal keys keep their order, as libc++'s small-range sorts
    and insertion sort do."""
    a.sort(key=lambda i: key[i])


# --------------------------------------------------------------------------- search


def _sorted_blocks(
    key: np.ndarray, strata: np.ndarray | None
) -> tuple[list[int], list[int], list[int] | None, list[int] | None]:
    """Units sorted by ``key`` (stable, R's ``order``), within blocks of ``strata``
    when given. Returns (ind_d_ord, match_d_ord, lo, hi): lo/hi[u] are the first and
    last sorted positions of unit u's stratum block (None without strata). Searching
    only inside the block is the same as matching each stratum on its own."""
    n = len(key)
    order_d = np.argsort(key, kind="stable") if strata is None else np.lexsort((key, strata))
    inv = np.empty(n, dtype=np.int64)
    inv[order_d] = np.arange(n)
    if strata is None:
        return order_d.tolist(), inv.tolist(), None, None
    st = np.asarray(strata)[order_d]
    starts = np.flatnonzero(np.r_[True, st[1:] != st[:-1]])
    ends = np.r_[starts[1:], n] - 1
    block = np.searchsorted(starts, inv, side="right") - 1
    return order_d.tolist(), inv.tolist(), starts[block].tolist(), ends[block].tolist()


def _find_control_vec(
    t_id: int,
    ind_d_ord: list[int],
    match_d_ord: list[int],
    treat: list[int],
    distance: list[float],
    eligible: list[bool],
    r: int,
    mm_row: list[int],
    caliper_dist: float,
    exact: list[int] | None,
    first_control: int,
    last_control: int,
    ratio: int = 1,
    ties: Ties = "matchit",
) -> list[int]:
    # "data": a side does not stop at `ratio` finds but only once `ratio` strictly
    # nearer candidates are held, so every control tied with the last one is seen
    cap = ratio if ties == "matchit" else -1
    iil, iir, min_dist, mm_rowi = _search_start(
        t_id, ind_d_ord, match_d_ord, treat, distance, r, mm_row
    )
    min_ii = first_control
    max_ii = last_control
    di = distance[t_id]
    ex_t = exact[t_id] if exact is not None else 0

    l_stop = False
    r_stop = False
    left = False
    pm_id: list[int] = []
    pm_dist: list[float] = []
    n_l = 0
    n_r = 0
    while not l_stop or not r_stop:
        if l_stop:
            left = False
        elif r_stop:
            left = True
        else:
            left = not left
        if left:
            if iil <= min_ii or n_l == cap:
                l_stop = True
                continue
            iil -= 1
            iz = ind_d_ord[iil]
        else:
            if iir >= max_ii or n_r == cap:
                r_stop = True
                continue
            iir += 1
            iz = ind_d_ord[iir]
        if not eligible[iz] or treat[iz] != 0:
            continue
        if r > 1 and iz in mm_rowi:
            continue
        dist_c = abs(di - distance[iz])
        beyond = dist_c > caliper_dist
        if not beyond and dist_c < min_dist:
            continue
        if beyond or (len(pm_id) >= ratio and _held_nearer(pm_dist, dist_c, ratio)):
            # beyond the caliper, or `ratio` strictly nearer held: this side is done
            l_stop, r_stop = l_stop or left, r_stop or not left
            continue
        if exact is not None and exact[iz] != ex_t:
            continue
        pm_id.append(iz)
        pm_dist.append(dist_c)
        # (a side is searched only while it has not stopped)
        if left:
            n_l += 1
            l_stop = n_l == cap
        else:
            n_r += 1
            r_stop = n_r == cap
    return _nearest_found(pm_id, pm_dist, di, distance, ratio, ties)


def _held_nearer(pm_dist: list[float], dist_c: float, ratio: int) -> bool:
    """Whether ``ratio`` of the distances held are strictly less than ``dist_c``."""
    closer = 0
    for d in pm_dist:
        if d < dist_c:
            closer += 1
            if closer == ratio:
                return True
    return False


def _search_start(
    t_id: int,
    ind_d_ord: list[int],
    match_d_ord: list[int],
    treat: list[int],
    distance: list[float],
    r: int,
    mm_row: list[int],
) -> tuple[int, int, float, list[int]]:
    """Where the search of round ``r`` starts (find_control_vec's first block): from
    the treated unit's own position, or beyond the controls it already holds (which
    sets the least distance a new control may have). Returns (iil, iir, min_dist,
    mm_rowi), mm_rowi being the controls already held."""
    ii = match_d_ord[t_id]
    mm_rowi: list[int] = []
    possible_starts: list[int] = []
    if r > 1:
        mm_rowi = [m for m in mm_row if m >= 0 and treat[m] == 0]
        possible_starts = [match_d_ord[m] for m in mm_rowi]
    if not possible_starts:
        return ii, ii, 0.0, mm_rowi
    possible_starts.append(ii)
    iil = min(possible_starts)
    iir = max(possible_starts)
    if iil == ii:
        min_dist = abs(distance[t_id] - distance[ind_d_ord[iir]])
    elif iir == ii:
        min_dist = abs(distance[t_id] - distance[ind_d_ord[iil]])
    else:
        min_dist = max(
            abs(distance[t_id] - distance[ind_d_ord[iil]]),
            abs(distance[t_id] - distance[ind_d_ord[iir]]),
        )
    return iil, iir, min_dist, mm_rowi


def _nearest_found(
    pm_id: list[int],
    pm_dist: list[float],
    di: float,
    distance: list[float],
    ratio: int,
    ties: Ties,
) -> list[int]:
    """The ``ratio`` nearest of the controls found (find_control_vec's last block:
    libc++'s partial_sort / sort order for "matchit")."""
    n_pm = len(pm_id)
    if ties == "data":
        return sorted(pm_id, key=lambda u: (abs(di - distance[u]), u))[:ratio]
    if n_pm <= 1:
        return pm_id
    if n_pm <= ratio and all(pm_dist[i] <= pm_dist[i + 1] for i in range(n_pm - 1)):
        return pm_id
    idx = list(range(n_pm))
    if n_pm > ratio:
        _partial_sort(idx, pm_dist, ratio)
        return [pm_id[i] for i in idx[:ratio]]
    _std_sort(idx, pm_dist)
    return [pm_id[i] for i in idx]


def _update_first_last(
    first: int, last: int, ind_d_ord: list[int], eligible: list[bool], treat: list[int]
) -> tuple[int, int]:
    if not eligible[ind_d_ord[first]]:
        for c in range(first + 1, last + 1):
            u = ind_d_ord[c]
            if eligible[u] and treat[u] == 0:
                first = c
                break
    if not eligible[ind_d_ord[last]]:
        for c in range(last - 1, first - 1, -1):
            u = ind_d_ord[c]
            if eligible[u] and treat[u] == 0:
                last = c
                break
    return first, last


def nn_match_vec(
    treat: np.ndarray,
    order: np.ndarray,
    ratio: np.ndarray,
    discarded: np.ndarray,
    reuse_max: int,
    distance: np.ndarray,
    exact: np.ndarray | None = None,
    caliper_dist: float | None = None,
    strata: np.ndarray | None = None,
    ties: Ties = "matchit",
) -> np.ndarray:
    """Port of MatchIt ``nn_matchC_vec``.

    Parameters
    ----------
    treat : 0/1 array over all units.
    order : 0-based positions among the treated units (in data order) giving the
        matching order.
    ratio : number of controls wanted per treated unit (length n1, data order).
    discarded : units that may not be matched.
    reuse_max : times a control may be used (1 = without replacement).
    distance : the scalar distance (propensity score or linear predictor).
    exact : integer stratum codes; matches only within a stratum.
    caliper_dist : maximum absolute distance difference (raw units), or None.
    strata : integer stratum codes: the same result as one call per stratum (each
        search stays inside its stratum's block of the sorted units), in one call.
        Unlike ``exact`` (MatchIt's own, which walks past other strata's units) it
        costs nothing when there are thousands of strata.
    ties : ``"matchit"`` (MatchIt's search order decides among equally near
        controls) or ``"data"`` (the first in data order wins).

    Returns
    -------
    (n1, max(ratio)) integer array of matched control indices, -1 = none.
    """
    n = len(treat)
    treat_l = np.asarray(treat, dtype=np.int64).tolist()
    dist_l = np.asarray(distance, dtype=np.float64).tolist()
    ind_d_ord, match_d_ord, blo, bhi = _sorted_blocks(np.asarray(distance, dtype=float), strata)
    if caliper_dist is None:
        dist_arr = np.asarray(distance, dtype=np.float64)
        finite = dist_arr[np.isfinite(dist_arr)]
        cal = float(finite.max() - finite.min() + 1) if len(finite) else 1.0
    else:
        cal = float(caliper_dist)
    exact_l = np.asarray(exact, dtype=np.int64).tolist() if exact is not None else None
    eligible = (~np.asarray(discarded, dtype=bool)).tolist()
    first_last = [0, n - 1]

    def find(ti: int, r: int, row: list[int], k: int, rounds: bool) -> list[int]:
        if rounds:  # MatchIt narrows the search to the first/last eligible control
            first_last[:] = _update_first_last(
                first_last[0], first_last[1], ind_d_ord, eligible, treat_l
            )
            lo, hi = first_last
            if blo is not None and bhi is not None:
                lo, hi = max(lo, blo[ti]), min(hi, bhi[ti])
        else:
            lo, hi = (blo[ti], bhi[ti]) if blo is not None and bhi is not None else (0, n - 1)
        return _find_control_vec(
            ti, ind_d_ord, match_d_ord, treat_l, dist_l, eligible, r, row, cal, exact_l,
            lo, hi, k, ties,
        )  # fmt: skip

    return _greedy(treat_l, order, ratio, eligible, reuse_max, find)


def _greedy(
    treat_l: list[int],
    order: np.ndarray,
    ratio: np.ndarray,
    eligible: list[bool],
    reuse_max: int,
    find: Callable[[int, int, list[int], int, bool], list[int]],
) -> np.ndarray:
    """MatchIt's greedy driver (``nn_matchC_vec`` / ``nn_matchC_mahcovs``), shared by
    both distances; ``find(t, r, row, k, rounds)`` returns the k nearest eligible
    controls of treated unit t (MatchIt's find_control_*).

    When a control can be reused fewer times than there are treated units, treated
    units are visited in rounds r = 1..max(ratio), one control each per round; a
    control (and a treated unit with its ratio filled) becomes ineligible when used up,
    and a treated unit with no control in its round is dropped. Otherwise each treated
    unit takes its k nearest at once (nothing is ever used up). ``eligible`` is
    updated in place.
    """
    ind_focal = [i for i, v in enumerate(treat_l) if v == 1]
    nf = len(ind_focal)
    ratio_l = np.asarray(ratio, dtype=np.int64).tolist()
    max_ratio = max(ratio_l) if ratio_l else 1
    mm = [[-1] * max_ratio for _ in range(nf)]
    order_l = np.asarray(order, dtype=np.int64).tolist()
    elig_arr = np.asarray(eligible, dtype=bool)
    t_arr = np.asarray(treat_l, dtype=np.int64)
    n_eligible = [int((elig_arr & (t_arr == 0)).sum()), int((elig_arr & (t_arr == 1)).sum())]
    times_matched = [0] * len(treat_l)
    allowed = [reuse_max] * len(treat_l)
    for i in range(nf):
        allowed[ind_focal[i]] = ratio_l[i]
    at_once = reuse_max >= nf
    for r in [1] if at_once else range(1, max_ratio + 1):
        for t in order_l:
            ti = ind_focal[t]
            if at_once:
                if eligible[ti]:
                    k = find(ti, 1, mm[t], ratio_l[t], False)
                    mm[t][: len(k)] = k
                continue
            if ratio_l[t] < r:
                continue
            if n_eligible[0] == 0:
                break
            if not eligible[ti]:
                continue
            k = find(ti, r, mm[t], 1, True)
            if not k:
                eligible[ti] = False
                n_eligible[1] -= 1
                continue
            row = mm[t]
            row[sum(1 for v in row if v >= 0)] = k[0]
            for ck in (k[0], ti):
                if not eligible[ck]:
                    continue
                times_matched[ck] += 1
                if times_matched[ck] >= allowed[ck]:
                    eligible[ck] = False
                    n_eligible[treat_l[ck]] -= 1
    return np.asarray(mm, dtype=np.int64).reshape(nf, max_ratio)


def subclass_from_mm(mm: np.ndarray, treat: np.ndarray) -> np.ndarray:
    """MatchIt ``mm2subclassC``: subclass ids 1..k numbered in data order of the
    matched treated units; NaN for unmatched units."""
    n = len(treat)
    sub = np.full(n, np.nan)
    ind_focal = np.flatnonzero(np.asarray(treat) == 1)
    k = 0
    for row_i in range(mm.shape[0]):
        if mm[row_i, 0] < 0:
            continue
        k += 1
        sub[ind_focal[row_i]] = k
        for c in mm[row_i]:
            if c >= 0:
                sub[c] = k
    return sub


def weights_from_subclass(sub: np.ndarray, treat: np.ndarray) -> np.ndarray:
    """MatchIt ``get_weights_from_subclass`` for the ATT (before normalisation)."""
    w = np.zeros(len(treat))
    ok = ~np.isnan(sub)
    t1 = ok & (treat == 1)
    t0 = ok & (treat == 0)
    w[t1] = 1.0
    if t0.any():
        s0 = sub[t0].astype(np.int64)
        s1 = sub[t1].astype(np.int64)
        nlev = int(max(s0.max(), s1.max() if len(s1) else 0)) + 1
        n1 = np.bincount(s1, minlength=nlev)
        n0 = np.bincount(s0, minlength=nlev)
        w[t0] = n1[s0] / n0[s0]
    return w


def weights_from_mm(mm: np.ndarray, treat: np.ndarray) -> np.ndarray:
    """MatchIt ``weights_matrixC``: with replacement, each control gets 1/k for each
    treated unit it serves (k = that unit's number of matches)."""
    w = np.zeros(len(treat))
    ind_focal = np.flatnonzero(np.asarray(treat) == 1)
    for r in range(mm.shape[0]):
        if mm[r, 0] < 0:
            continue
        row = mm[r][mm[r] >= 0]
        for c in row:
            w[c] += 1.0 / len(row)
        w[ind_focal[r]] += 1.0
    return w


def normalize_weights(w: np.ndarray, treat: np.ndarray) -> np.ndarray:
    """MatchIt ``.make_sum_to_n``: non-zero weights in each group rescaled to mean 1."""
    out = w.copy()
    for g in (0, 1):
        idx = (w > 0) & (treat == g)
        if idx.any():
            out[idx] = idx.sum() * w[idx] / w[idx].sum()
    return out


# --------------------------------------------------------------------------- Mahalanobis


def _find_control_mahcovs(
    t_id: int,
    ind_d_ord: list[int],
    match_d_ord: list[int],
    match_var: list[float],
    treat: list[int],
    eligible: list[bool],
    r: int,
    mm_row: list[int],
    mah: np.ndarray,
    exact: list[int] | None,
    ratio: int = 1,
    distance: list[float] | None = None,
    caliper_dist: float | None = None,
    bounds: tuple[int, int] | None = None,
    ties: Ties = "matchit",
) -> list[int]:
    ii = match_d_ord[t_id]
    # "data": the `ratio` nearest in (distance, data position) order are kept, so of
    # two equally near controls the first in data order wins
    tie_pos = ties == "data"
    iil = iir = ii
    min_ii, max_ii = bounds if bounds is not None else (0, len(match_d_ord) - 1)
    l_stop = r_stop = False
    left = False
    pm: list[tuple[int, float]] = []
    n_l = n_r = 0
    mv_i = match_var[t_id]
    row_t = mah[t_id]
    mm_rowi = [m for m in mm_row if m >= 0] if r > 1 else []
    ex_t = exact[t_id] if exact is not None else 0
    while not l_stop or not r_stop:
        if l_stop:
            left = False
        elif r_stop:
            left = True
        else:
            left = not left
        if left:
            if iil <= min_ii or n_l == ratio:
                l_stop = True
                continue
            iil -= 1
            iz = ind_d_ord[iil]
        else:
            if iir >= max_ii or n_r == ratio:
                r_stop = True
                continue
            iir += 1
            iz = ind_d_ord[iir]
        if not eligible[iz] or treat[iz] != 0:
            continue
        if r > 1 and iz in mm_rowi:
            continue
        mv_dist = abs(mv_i - match_var[iz])
        mv_dist = mv_dist * mv_dist
        if len(pm) == ratio and pm[-1][1] < mv_dist:
            if left:
                l_stop = True
            else:
                r_stop = True
            continue
        if exact is not None and exact[iz] != ex_t:
            continue
        if (
            caliper_dist is not None
            and distance is not None
            and abs(distance[iz] - distance[t_id]) > caliper_dist
        ):
            continue
        diff = row_t - mah[iz]
        # a correctly rounded sum: the same bits on every CPU (a BLAS dot is not)
        dist_c = math.fsum((diff * diff).tolist())
        if not math.isfinite(dist_c):
            continue
        _insert_found(pm, (iz, dist_c), ratio, tie_pos)
        # NB: MatchIt counts a side's matches only through the ratio test above
    return [p[0] for p in pm]


def _insert_found(
    pm: list[tuple[int, float]], new: tuple[int, float], ratio: int, tie_pos: bool
) -> None:
    """Put a control found into the list of the nearest so far, kept sorted by
    distance and at most ``ratio`` long (find_control_mahcovs' insertion, in place)."""
    dist_c = new[1]
    if tie_pos:
        pm.append(new)
        pm.sort(key=lambda p: (p[1], p[0]))
        del pm[ratio:]
        return
    if not pm:
        pm.append(new)
    elif dist_c > pm[-1][1]:
        if len(pm) == ratio:
            return
        pm.append(new)
    elif ratio == 1:
        pm[0] = new
    else:
        if len(pm) == ratio:
            pm.pop()
        if dist_c > pm[-1][1]:
            pm.append(new)
        else:
            pos = 0
            while pos < len(pm) and pm[pos][1] < dist_c:
                pos += 1
            pm.insert(pos, new)


def nn_match_mahcovs(
    treat: np.ndarray,
    order: np.ndarray,
    ratio: np.ndarray,
    discarded: np.ndarray,
    reuse_max: int,
    mah: np.ndarray,
    exact: np.ndarray | None = None,
    distance: np.ndarray | None = None,
    caliper_dist: float | None = None,
    strata: np.ndarray | None = None,
    ties: Ties = "matchit",
) -> np.ndarray:
    """Port of MatchIt ``nn_matchC_mahcovs``: nearest neighbours in the Euclidean
    metric of the transformed covariates ``mah``, searching outwards along the first
    transformed covariate. With ``distance`` and ``caliper_dist`` (raw units) a
    control further than the caliper on ``distance`` is skipped: MatchIt's
    ``mahvars`` matching (Mahalanobis within a propensity-score caliper). ``strata``
    and ``ties`` as in :func:`nn_match_vec` (one call for many strata)."""
    treat_l = np.asarray(treat, dtype=np.int64).tolist()
    match_var = [float(v) for v in mah[:, 0]]
    ind_d_ord, match_d_ord, blo, bhi = _sorted_blocks(np.asarray(mah[:, 0], dtype=float), strata)
    exact_l = np.asarray(exact, dtype=np.int64).tolist() if exact is not None else None
    mah = np.asarray(mah, dtype=float)
    dist_l = np.asarray(distance, dtype=float).tolist() if distance is not None else None
    eligible = (~np.asarray(discarded, dtype=bool)).tolist()

    def find(ti: int, r: int, row: list[int], k: int, rounds: bool) -> list[int]:
        bounds = (blo[ti], bhi[ti]) if blo is not None and bhi is not None else None
        return _find_control_mahcovs(
            ti, ind_d_ord, match_d_ord, match_var, treat_l, eligible, r, row, mah, exact_l,
            k, dist_l, caliper_dist, bounds, ties,
        )  # fmt: skip

    return _greedy(treat_l, order, ratio, eligible, reuse_max, find)
