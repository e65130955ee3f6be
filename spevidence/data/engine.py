"""The engine the extracts live on: the embedded DuckDB connection and Arrow uploads.

Shared by the readers and validation (``spevidence.data``) and the linkage
(``spevidence.link``); the CLI sets :data:`MEMORY_ENV` for ``--memory-limit``.
"""

from __future__ import annotations

import os
import re
import shutil
import weakref
from typing import Any
from uuid import uuid4

import ibis
import ibis.expr.types as ir
from ibis.backends import BaseBackend

from spevidence._atomic import private_tmpdir
from spevidence.errors import DataError

MEMORY_ENV = "SPEVIDENCE_MEMORY_LIMIT"


def duckdb_connect() -> BaseBackend:
    """An embedded (in-memory) DuckDB connection that can spill to disk.

    An in-memory DuckDB has no temporary directory, so a sort or join larger than its
    memory limit fails instead of spilling (1 M people x 5 years of monthly panel ran out
    of memory at 15 GiB). This one spills to a private temporary folder (mode 0700:
    spilled blocks hold pseudonyms), removed with the connection. Its memory limit is
    DuckDB's default (80 % of RAM) unless ``SPEVIDENCE_MEMORY_LIMIT`` says otherwise
    (e.g. ``4GB``; the ``--memory-limit`` option of ``spevidence link`` and ``run``).
    """
    con = ibis.duckdb.connect()
    con.raw_sql("SET enable_progress_bar = false")
    if limit := os.environ.get(MEMORY_ENV, "").strip():
        if not re.fullmatch(r"\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)", limit, re.I):
            raise DataError(
                f"{MEMORY_ENV} / --memory-limit must be a size such as 4GB or 500MB, not {limit!r}."
            )
        con.raw_sql(f"SET memory_limit = '{limit}'")
    tmp = str(private_tmpdir("duckdb"))  # spevidence-duckdb-PID-…: swept once PID is gone
    os.chmod(tmp, 0o700)
    con.raw_sql(f"SET temp_directory = '{tmp}'")
    weakref.finalize(con, shutil.rmtree, tmp, ignore_errors=True)
    return con


def upload_arrow(con: BaseBackend, data: Any) -> ir.Table:
    """Put an Arrow table on ``con`` as a temporary table (or temp view on Spark)."""
    name = f"spe_{uuid4().hex}"
    if con.name == "pyspark":
        # ibis's memtable path on PySpark loses values of nullable integer columns
        # (ibis 12); Spark 4 converts Arrow tables itself, exactly.
        session = con._session
        session.createDataFrame(data).createOrReplaceTempView(name)
        return con.table(name)
    return con.create_table(name, data, temp=True)
