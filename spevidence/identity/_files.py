"""Pseudonymise extract files at source, streaming (CSV or Parquet, order preserved)."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from spevidence._csvfile import columns_text, csv_header, header_looks_like_data, sniff
from spevidence.errors import IdentityError
from spevidence.identity._key import Key
from spevidence.identity.nhs import _valid_vector, normalise_nhs_number


@dataclass(frozen=True)
class PseudonymiseReport:
    """What ``pseudonymise_file`` did: counts only, never a value."""

    rows: int
    invalid: dict[str, int]
    columns: tuple[str, ...]

    def summary(self) -> str:
        bad = ", ".join(f"{c}: {n}" for c, n in self.invalid.items() if n)
        tail = (
            f" Invalid NHS numbers (left empty, rows kept): {bad}."
            if bad
            else " No invalid NHS numbers."
        )
        return f"Pseudonymised {', '.join(self.columns)} in {self.rows} rows.{tail}"


def _kind(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".parquet", ".pq"):
        return "parquet"
    raise IdentityError(f"{path.name}: only .csv and .parquet files can be pseudonymised.")


def _batches(path: Path, kind: str, batch_rows: int) -> Iterator[pa.RecordBatch]:
    if kind == "parquet":
        import pyarrow.parquet as pq

        yield from pq.ParquetFile(path).iter_batches(batch_size=batch_rows)
        return
    import pyarrow.csv as pacsv

    dialect = sniff(path)
    header = csv_header(path, dialect)  # DataError when the file is empty
    reader = pacsv.open_csv(
        path,
        read_options=pacsv.ReadOptions(
            block_size=1 << 22,
            encoding="utf8" if dialect.encoding.startswith("utf-8") else dialect.encoding,
        ),
        parse_options=pacsv.ParseOptions(delimiter=dialect.delimiter),
        convert_options=pacsv.ConvertOptions(column_types={c: pa.string() for c in header}),
    )
    yield from reader


def pseudonymise_file(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    key: Key,
    *,
    columns: Sequence[str] = ("person_id",),
    batch_rows: int = 100_000,
) -> PseudonymiseReport:
    """Replace NHS numbers in ``columns`` by HMAC-SHA256 pseudonyms, batch by batch.

    Rows keep their order and all other columns. Invalid NHS numbers (modulus 11)
    are left empty and counted; no value is ever printed. ``dst`` is written as CSV
    or Parquet according to its suffix.
    """
    s, d = Path(src), Path(dst)
    if s.resolve() == d.resolve():
        raise IdentityError("The output file must differ from the input file.")
    if not s.is_file():
        raise IdentityError(f"The input file {str(s)!r} does not exist.")
    kin, kout = _kind(s), _kind(d)
    rows = 0
    invalid = dict.fromkeys(columns, 0)
    writer: Any = None
    try:
        for batch in _batches(s, kin, batch_rows):
            missing = [c for c in columns if c not in batch.schema.names]
            if missing and header_looks_like_data(batch.schema.names):
                raise IdentityError(
                    f"{s.name}: the first row looks like data, not a header "
                    f"({batch.num_columns} columns). Fix: export the file with its header row."
                )
            if missing:
                raise IdentityError(
                    f"{s.name}: column(s) {columns_text(missing)} not found (columns: "
                    f"{columns_text(batch.schema.names)}). Fix: pass --column NAME."
                )
            arrays = []
            for name in batch.schema.names:
                col = batch.column(name)
                if name in columns:
                    vals = [normalise_nhs_number(v) for v in col.to_pylist()]
                    ok = _valid_vector(vals)
                    invalid[name] += int((~ok & [v is not None for v in vals]).sum())
                    col = pa.array(
                        [
                            key.digest(v.encode()) if good and v else None
                            for v, good in zip(vals, ok, strict=True)
                        ],
                        pa.string(),
                    )
                arrays.append(col)
            out = pa.RecordBatch.from_arrays(
                arrays,
                schema=pa.schema(
                    [
                        pa.field(f.name, pa.string()) if f.name in columns else f
                        for f in batch.schema
                    ]
                ),
            )
            if writer is None:
                if kout == "parquet":
                    import pyarrow.parquet as pq

                    writer = pq.ParquetWriter(d, out.schema)
                else:
                    import pyarrow.csv as pacsv

                    writer = pacsv.CSVWriter(d, out.schema)
            writer.write_batch(out)
            rows += out.num_rows
    finally:
        if writer is not None:
            writer.close()
    return PseudonymiseReport(rows=rows, invalid=invalid, columns=tuple(columns))
