"""Readers: CSV, Parquet, a DuckDB database file or any Ibis connection -> ``Extracts``."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal
from uuid import uuid4

import ibis
import ibis.expr.types as ir
from ibis.backends import BaseBackend

from spevidence._csvfile import (
    columns_text,
    csv_header,
    header_looks_like_data,
    sniff,
)
from spevidence.data._codes import recoded
from spevidence.data.engine import duckdb_connect
from spevidence.data.schema import TABLES, Table
from spevidence.errors import DataError

SourceFormat = Literal["csv", "parquet", "duckdb", "ibis"]
ROW = "_row"  # 1-based row number in the source (1 = first data row)


@dataclass(frozen=True)
class SourceInfo:
    """Where one extract table came from."""

    table: str
    format: SourceFormat
    location: str  # file name (no folder) or "database table"
    sha256: str | None  # of the file; None for tables in a database/connection
    rows: int


@dataclass(frozen=True)
class Extracts:
    """The extract tables as Ibis tables on one connection (frozen).

    Attributes
    ----------
    con
        The Ibis connection the tables live on (DuckDB in memory by default).
    tables
        Table name -> Ibis table with the canonical column names of ``schema.py``.
        Raw extracts also carry ``_row``, the 1-based row number in the source.
    sources
        Table name -> :class:`SourceInfo` (format, file name, SHA-256, row count).
    stage
        ``"raw"`` from :func:`read_extracts`, ``"clean"`` from ``validate``.
    ids
        For clean extracts: ``"pseudonym"`` (person_id is a pseudonym token).
    """

    con: BaseBackend
    tables: Mapping[str, ir.Table]
    sources: Mapping[str, SourceInfo]
    date_format: str | None = None
    stage: Literal["raw", "clean"] = "raw"
    ids: Literal["nhs_number", "pseudonym"] | None = None
    study_window: tuple[Any, Any] | None = None

    def __getitem__(self, name: str) -> ir.Table:
        try:
            return self.tables[name]
        except KeyError:
            raise DataError(
                f"There is no {name!r} extract (have: {', '.join(self.tables)})."
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self.tables

    @property
    def row_counts(self) -> dict[str, int]:
        """Rows per table as read from the source."""
        return {name: s.rows for name, s in self.sources.items()}

    @property
    def file_hashes(self) -> dict[str, str | None]:
        """SHA-256 of each source file (``None`` for database tables)."""
        return {name: s.sha256 for name, s in self.sources.items()}

    def __repr__(self) -> str:
        parts = ", ".join(f"{n}={s.rows}" for n, s in self.sources.items())
        return f"Extracts(stage={self.stage!r}, {parts})"


def sha256_file(path: str | os.PathLike[str], *, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def _sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _headerless(table: str, where: str, n: int) -> DataError:
    return DataError(
        f"{table} ({where}): the first row looks like data, not a header ({n} columns). "
        f"Fix: export the file with its header row ({', '.join(TABLES[table].required)})."
    )


def _read_csv(con: BaseBackend, table: str, path: Path) -> tuple[ir.Table, int]:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    dialect = sniff(path)
    names = csv_header(path, dialect)
    if len(set(names)) != len(names):
        if header_looks_like_data(names):
            raise _headerless(table, path.name, len(names))
        repeated = sorted({n for n in names if names.count(n) > 1})
        raise DataError(
            f"{table} ({path.name}): the header repeats a column name "
            f"({columns_text(repeated)}). Fix: give each column a unique name."
        )
    try:
        tab = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(
                column_names=names,
                skip_rows=1,
                encoding="utf8" if dialect.encoding.startswith("utf-8") else dialect.encoding,
                block_size=1 << 24,  # a row must fit in one block
            ),
            convert_options=pacsv.ConvertOptions(
                column_types={n: pa.string() for n in names},
                strings_can_be_null=True,
                null_values=["", "NULL", "null", "NA", "N/A"],
                quoted_strings_can_be_null=True,
            ),
            parse_options=pacsv.ParseOptions(delimiter=dialect.delimiter, newlines_in_values=False),
        )
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        # pyarrow's message can quote a data line; do not repeat it.
        text = str(exc)
        if isinstance(exc, UnicodeDecodeError) or "UTF8" in text or "utf8" in text:
            kind = f"part of it is not {dialect.encoding.upper()} text (mixed encodings)"
        elif "columns" in text:
            kind = "a row has the wrong number of fields"
        else:
            kind = "it cannot be parsed"
        raise DataError(
            f"{path.name}: the CSV cannot be read ({kind}). Fix: re-export it as UTF-8 CSV "
            "with one header row and the same number of fields on every row."
        ) from None
    tab = tab.append_column(ROW, pa.array(range(1, tab.num_rows + 1), type=pa.int64()))
    return con.create_table(f"_spe_src_{uuid4().hex}", tab, temp=True), tab.num_rows


def _sql_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _read_parquet(con: BaseBackend, table: str, path: Path) -> tuple[ir.Table, int]:
    import pyarrow.parquet as pq

    damaged = DataError(
        f"{table} ({path.name}): the Parquet file is damaged or not a Parquet file (its "
        "pages cannot be read). Fix: export or copy it again, and check the copy (e.g. "
        "compare its SHA-256 with the source's)."
    )
    try:
        file = pq.ParquetFile(path)
        meta, names = file.metadata, file.schema_arrow.names
    except Exception:
        raise damaged from None
    src = f"read_parquet({_sql_str(str(path))}, file_row_number = true)"
    cols = ", ".join(_sql_ident(c) for c in names)
    try:  # decode every page once, so damage is found here and not mid-analysis
        con.raw_sql(f"SELECT bit_xor(hash({cols})) FROM {src}").fetchall()
    except Exception:
        raise damaged from None
    sql = f"SELECT * EXCLUDE (file_row_number), file_row_number + 1 AS {ROW} FROM {src}"
    return con.sql(sql), meta.num_rows


def _with_row_numbers(t: ir.Table, con: BaseBackend) -> ir.Table:
    """Row numbers for database tables: scan order on DuckDB; elsewhere (engines that need
    an ordered window, e.g. Spark) the order of all columns, so they are deterministic."""
    if ROW in t.columns:
        return t
    if con.name == "duckdb":
        rn = ibis.row_number()
    else:
        rn = ibis.row_number().over(order_by=[t[c] for c in t.columns])
    return t.mutate(**{ROW: (rn + 1).cast("int64")})


def _apply_mapping(name: str, t: ir.Table, mapping: Mapping[str, str], spec: Table) -> ir.Table:
    renames: dict[str, str] = {}
    for local, canonical in mapping.items():
        if local not in t.columns:
            have = [c for c in t.columns if c != ROW]
            if header_looks_like_data(have):
                raise _headerless(name, "its header", len(have))
            raise DataError(
                f"{name}: the mapping renames column {local!r}, which is not in the extract "
                f"(columns found: {columns_text(have)}). Fix: correct the mapping."
            )
        renames[canonical] = local
    lower = {c.lower(): c for c in t.columns}
    for col in spec.names:
        if col not in t.columns and col not in renames and col.lower() in lower:
            renames[col] = lower[col.lower()]
    return t.rename(renames) if renames else t


def read_extracts(
    source: str | os.PathLike[str] | BaseBackend,
    *,
    mapping: Mapping[str, Mapping[str, str]] | None = None,
    date_format: str | None = None,
    tables: Mapping[str, str] | None = None,
    values: Mapping[str, Mapping[str, Mapping[str, str]]] | None = None,
) -> Extracts:
    """Read the extracts into Ibis tables.

    Parameters
    ----------
    source
        A folder holding ``population``, ``referrals``, ``gp_appointments``,
        ``ae_attendances``, ``admissions`` (and optionally ``wellbeing``) as
        ``.parquet`` or ``.csv`` files; a DuckDB database file (``.duckdb``/``.db``)
        with tables of those names; or any Ibis connection (Postgres, SQL Server,
        Databricks, Spark ...) holding them.
    mapping
        Local column names per table, ``{"gp_appointments": {"appt_dt":
        "appointment_date"}}``: local name -> canonical name. Column names that
        differ only in case are matched automatically.
    date_format
        Format of dates written as text, e.g. ``"%d/%m/%Y"``. Default: ISO
        ``YYYY-MM-DD`` and UK ``DD/MM/YYYY`` are both read. Applied by ``validate``.
    tables
        Table name -> file or database-table name, where they differ from the
        canonical names.
    values
        Local codings per table and column, ``{"gp_appointments": {"staff_role":
        {"General Practitioner": "gp"}}}``: local value (as written, spaces around
        it ignored) -> allowed value; applied before validation checks the codes.

    Returns
    -------
    Extracts
        Frozen: Ibis tables, source formats, file SHA-256 hashes and row counts.

    Raises
    ------
    DataError
        A required extract or column is missing, or a file cannot be read. The
        message names the table, the column and the fix; never a data value.
    """
    mapping = mapping or {}
    table_names = dict(tables or {})
    values = values or {}
    for what, given in (("mapping", mapping), ("values", values)):
        unknown = sorted(set(given) - set(TABLES))
        if unknown:
            raise DataError(
                f"{what} names unknown tables {unknown}; the tables are {', '.join(TABLES)}."
            )
    if isinstance(source, BaseBackend):
        con = source
        raw, sources = _from_connection(con, table_names)
    else:
        path = Path(source)
        con = duckdb_connect()
        if path.is_file() and path.suffix.lower() in {".duckdb", ".db", ".ddb"}:
            raw, sources = _from_database(con, path, table_names)
        elif path.is_dir():
            raw, sources = _from_folder(con, path, table_names)
        elif not path.exists():
            raise DataError(f"The extracts path {str(path)!r} does not exist. Fix: check --data.")
        else:
            raise DataError(
                f"{path.name}: expected a folder of CSV/Parquet extracts or a DuckDB database "
                "file (.duckdb). Fix: point at the folder that holds population.parquet etc."
            )
    _map_columns(raw, sources, mapping)
    for name, recode in values.items():
        if name in raw:
            raw[name] = recoded(raw[name], recode)
    return Extracts(
        con=con,
        tables=MappingProxyType(raw),
        sources=MappingProxyType(_counted(raw, sources)),
        date_format=date_format,
    )


_Read = tuple[dict[str, ir.Table], dict[str, SourceInfo]]  # tables and where each was read


def _from_connection(con: BaseBackend, table_names: dict[str, str]) -> _Read:
    """The tables of an Ibis connection (row numbers added)."""
    raw: dict[str, ir.Table] = {}
    sources: dict[str, SourceInfo] = {}
    available = set(con.list_tables())
    for name, spec in TABLES.items():
        local = table_names.get(name, name)
        if local not in available:
            if spec.optional:
                continue
            raise _missing_table(name, f"the connection has no table {local!r}")
        raw[name] = _with_row_numbers(con.table(local), con)
        sources[name] = SourceInfo(name, "ibis", local, None, 0)
    return raw, sources


def _from_database(con: BaseBackend, path: Path, table_names: dict[str, str]) -> _Read:
    """The tables of a DuckDB database file, attached read-only to ``con``."""
    raw: dict[str, ir.Table] = {}
    sources: dict[str, SourceInfo] = {}
    alias = "spe_src"
    con.attach(str(path), name=alias, read_only=True)
    available = set(con.list_tables(database=(alias, "main")))
    digest = sha256_file(path)
    for name, spec in TABLES.items():
        local = table_names.get(name, name)
        if local not in available:
            if spec.optional:
                continue
            raise _missing_table(name, f"{path.name} has no table {local!r}")
        raw[name] = _with_row_numbers(con.table(local, database=(alias, "main")), con)
        sources[name] = SourceInfo(name, "duckdb", f"{path.name}:{local}", digest, 0)
    return raw, sources


def _from_folder(con: BaseBackend, path: Path, table_names: dict[str, str]) -> _Read:
    """The Parquet and CSV files of a folder, read onto ``con``."""
    raw: dict[str, ir.Table] = {}
    sources: dict[str, SourceInfo] = {}
    for name, spec in TABLES.items():
        found = _find_file(path, name, table_names.get(name, name))
        if found is None:
            if spec.optional:
                continue
            stem = table_names.get(name, name)
            raise _missing_table(name, f"{path} has no {stem}.parquet or {stem}.csv")
        f, fmt = found
        try:
            t, n = _read_parquet(con, name, f) if fmt == "parquet" else _read_csv(con, name, f)
            digest = sha256_file(f)
        except OSError as exc:
            raise DataError(
                f"{name} ({f.name}): the file cannot be read "
                f"({(exc.strerror or type(exc).__name__).lower()}). Fix: check that "
                "you may read it (its owner and permissions, e.g. chmod u+r), or copy "
                "it again."
            ) from None
        raw[name] = t
        sources[name] = SourceInfo(name, fmt, f.name, digest, n)  # type: ignore[arg-type]
    return raw, sources


def _map_columns(
    raw: dict[str, ir.Table],
    sources: dict[str, SourceInfo],
    mapping: Mapping[str, Mapping[str, str]],
) -> None:
    """Rename local columns in ``raw`` to the canonical ones; stop, naming every table,
    when required columns are missing."""
    problems: list[str] = []
    for name in list(raw):
        spec = TABLES[name]
        t = _apply_mapping(name, raw[name], mapping.get(name, {}), spec)
        missing = [c for c in spec.required if c not in t.columns]
        if missing:
            cols_found = [c for c in t.columns if c != ROW]
            if header_looks_like_data(cols_found):
                where = sources[name].location if sources[name].format != "ibis" else "its header"
                problems.append(str(_headerless(name, where, len(cols_found))))
                continue
            problems.append(_missing_columns(name, missing, cols_found))
        raw[name] = t
    if problems:
        raise DataError(" ".join(problems))


def _missing_columns(name: str, missing: list[str], cols_found: list[str]) -> str:
    have = columns_text(cols_found)
    cols = ", ".join(repr(c) for c in missing)
    return (
        f"{name}: required column{'s' if len(missing) > 1 else ''} {cols} "
        f"{'are' if len(missing) > 1 else 'is'} missing (columns found: {have}). "
        f"Fix: add {'them' if len(missing) > 1 else 'it'} to the extract, or map your "
        f"local name onto it, e.g. mapping={{{name!r}: {{'your_name': {missing[0]!r}}}}}."
    )


def _counted(raw: dict[str, ir.Table], sources: dict[str, SourceInfo]) -> dict[str, SourceInfo]:
    """``sources`` with row counts (counted in the engine for database tables)."""
    counts = {
        name: s.rows if s.format in ("csv", "parquet") else int(raw[name].count().execute())
        for name, s in sources.items()
    }
    return {
        name: SourceInfo(s.table, s.format, s.location, s.sha256, counts[name])
        for name, s in sources.items()
    }


def _find_file(folder: Path, table: str, stem: str) -> tuple[Path, str] | None:
    """The one file that holds a table in a folder: ``STEM.parquet`` or ``STEM.csv``."""
    present = [
        (folder / f"{stem}{suffix}", kind)
        for suffix, kind in ((".parquet", "parquet"), (".csv", "csv"))
        if (folder / f"{stem}{suffix}").exists() or (folder / f"{stem}{suffix}").is_symlink()
    ]
    if len(present) > 1:
        raise DataError(
            f"{table}: both {present[0][0].name} and {present[1][0].name} are in {folder.name}, "
            "so it is not clear which to read. Fix: remove one of them (keep the current export)."
        )
    if not present:
        return None
    f = present[0][0]
    if f.is_dir():
        raise DataError(
            f"{table}: {f.name} is a folder, not a file. Fix: put the extract itself at "
            f"{f.name} (one file, e.g. the parts concatenated), or name it with tables=."
        )
    if not f.is_file():
        raise DataError(
            f"{table}: {f.name} is not a regular file (a pipe, device or broken link). "
            "Fix: copy the extract there as an ordinary file."
        )
    return present[0]


def _missing_table(name: str, detail: str) -> DataError:
    return DataError(
        f"The {name} extract is missing: {detail}. Fix: export it (columns: "
        f"{', '.join(TABLES[name].required)}), or name the file with tables={{{name!r}: ...}}."
    )
