"""Dense person x period counting: the DuckDB fast path of the panel (DESIGN.md §5).

The linkage definitions stay Ibis expressions (which events count, merged spells, the
person attributes, the first accepted referral); the engine evaluates each of them once
and returns narrow integer columns. What a hash aggregation over tens of millions of
(person, period) groups would do is then a ``numpy.bincount`` on ``k * P + t`` into a
persons x periods array, and the panel rows, already in person then period order, are
streamed out in blocks of people. At 1 M people x 60 months the four count arrays take
about 1 GB; panels larger than ``MAX_CELLS`` person-periods keep the engine path.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass

import ibis.expr.types as ir
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

OUTCOMES: tuple[str, ...] = ("gp", "ae", "admissions")
# persons x periods above which the engine aggregates instead (4 int32 arrays: 6.4 GB)
MAX_CELLS = 400_000_000
# person attributes (latest registration spell), in panel column order
ATTRS: tuple[str, ...] = ("practice_code", "pcn_code", "sex", "year_of_birth", "imd_decile")
_EPOCH = dt.date(1970, 1, 1)


@dataclass(frozen=True)
class Parts:
    """The linkage pieces, as Ibis expressions on one connection.

    keys: person_id, _k (0..n-1 in person_id order); spells: _k, s, e (clipped to the
    window, e >= s); events: per outcome a table of _k, t (events inside the window);
    persons: _k and the person attributes; first_ref: _rk, referral_date, referral_t.
    """

    keys: ir.Table
    spells: ir.Table
    events: tuple[tuple[str, ir.Table], ...]
    persons: ir.Table
    first_ref: ir.Table
    period_start: tuple[dt.date, ...]
    period_end: tuple[dt.date, ...]


def _days(col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """date32 column -> int64 days since 1970-01-01 (no nulls expected)."""
    return np.asarray(pc.cast(col, pa.int32()).to_numpy(zero_copy_only=False), dtype=np.int64)


class Dense:
    """Counts and exposure days held as persons x periods arrays (int32)."""

    def __init__(self, parts: Parts) -> None:
        keys = parts.keys.order_by("_k").to_pyarrow()
        self.person_id = keys.column("person_id").combine_chunks()
        n, p = len(self.person_id), len(parts.period_start)
        self.n, self.p = n, p
        if not np.array_equal(keys.column("_k").to_numpy(), np.arange(n)):
            raise AssertionError("person keys must be 0..n-1")  # built so by build_panel
        self.counts: dict[str, np.ndarray] = {}
        for name, ev in parts.events:
            idx = ev.select(i=ev._k * p + ev.t).to_pyarrow().column("i").to_numpy()
            c = np.bincount(idx, minlength=n * p)
            if len(c) != n * p:  # an event outside the window or a key out of range
                raise AssertionError(f"{name}: event index out of range")
            self.counts[name] = c.astype(np.int32).reshape(n, p)
            del idx, c
        sp = parts.spells.to_pyarrow()
        k = sp.column("_k").to_numpy()
        s, e = _days(sp.column("s")), _days(sp.column("e"))
        ps = np.array([(d - _EPOCH).days for d in parts.period_start], dtype=np.int64)
        pe = np.array([(d - _EPOCH).days for d in parts.period_end], dtype=np.int64)
        expo = np.zeros((n, p), dtype=np.int32)
        for t in range(p):
            d = np.minimum(e, pe[t]) - np.maximum(s, ps[t]) + 1
            np.maximum(d, 0, out=d)
            expo[:, t] = np.bincount(k, weights=d, minlength=n).astype(np.int32)
        self.exposure = expo
        self.period_days = ps
        per = parts.persons.order_by("_k").to_pyarrow()
        if not np.array_equal(per.column("_k").to_numpy(), np.arange(n)):
            raise AssertionError("one attribute row per person expected")
        # strings dictionary-encoded once: each block then takes integer indices
        self.attrs = {c: _encoded(per.column(c).combine_chunks()) for c in ATTRS}
        ref = parts.first_ref.to_pyarrow()
        pos = np.full(n, -1, dtype=np.int64)
        pos[ref.column("_rk").to_numpy()] = np.arange(ref.num_rows)
        self.ref_pos = pos
        self.ref = {c: ref.column(c).combine_chunks() for c in ("referral_date", "referral_t")}

    def long(self) -> pa.Table:
        """The narrow table (_k, t, counts, exposure_days) of person-periods with exposure."""
        mask = self.exposure > 0
        kk, tt = np.nonzero(mask)
        cols = {"_k": kk.astype(np.int64), "t": tt.astype(np.int64)}
        for name in OUTCOMES:
            cols[name] = self.counts[name][mask].astype(np.int64)
        cols["exposure_days"] = self.exposure[mask].astype(np.int64)
        return pa.table(cols)

    def batches(self, schema: pa.Schema, block: int = 50_000) -> Iterator[pa.RecordBatch]:
        """Panel rows (person then period order) for ``block`` people at a time.

        String columns come out dictionary-encoded (cheap to build and to write);
        ``schema`` gives every other column's type.
        """
        for k0 in range(0, self.n, block):
            k1 = min(self.n, k0 + block)
            ex = self.exposure[k0:k1]
            mask = ex > 0
            kk, tt = np.nonzero(mask)
            rows = kk + k0
            cols: dict[str, pa.Array] = {
                "person_id": pa.DictionaryArray.from_arrays(
                    pa.array(kk.astype(np.int32)), self.person_id.slice(k0, k1 - k0)
                ),
                "period": pa.array(self.period_days[tt].astype(np.int32)).view(pa.date32()),
                "t": pa.array(tt.astype(np.int64)),
            }
            for name in OUTCOMES:
                cols[name] = pa.array(self.counts[name][k0:k1][mask].astype(np.int64))
            cols["exposure_days"] = pa.array(ex[mask].astype(np.int64))
            idx = pa.array(rows)
            for c in ATTRS:
                cols[c] = self.attrs[c].take(idx)
            rp = self.ref_pos[rows]
            ridx = pa.array(rp, mask=rp < 0)
            for c in ("referral_date", "referral_t"):
                cols[c] = self.ref[c].take(ridx)
            yield pa.record_batch(
                [_as(cols[f.name], f.type) for f in schema], schema=dict_schema(schema)
            )


def _is_str(t: pa.DataType) -> bool:
    return bool(pa.types.is_string(t) or pa.types.is_large_string(t))


def _encoded(arr: pa.Array) -> pa.Array:
    return arr.dictionary_encode() if _is_str(arr.type) else arr


def dict_schema(schema: pa.Schema) -> pa.Schema:
    """``schema`` with its string columns dictionary-encoded."""
    return pa.schema(
        [
            pa.field(f.name, pa.dictionary(pa.int32(), f.type)) if _is_str(f.type) else f
            for f in schema
        ]
    )


def _as(a: pa.Array, typ: pa.DataType) -> pa.Array:
    if pa.types.is_dictionary(a.type):
        want = pa.dictionary(pa.int32(), typ)
        if a.type != want:
            a = pa.DictionaryArray.from_arrays(
                pc.cast(a.indices, pa.int32()), pc.cast(a.dictionary, typ)
            )
        return a
    return a if a.type == typ else pc.cast(a, typ)
