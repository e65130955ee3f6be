"""Readers (CSV, Parquet, DuckDB file, Ibis connection), hashes, docs, and the CLI."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import duckdb
import ibis
import pandas as pd
import pyarrow.parquet as pq
import pytest
from conftest_link import (
    END,
    START,
    TINY_EXPECTED_MONTHLY,
    as_panel_frame,
    tiny_world,
    write_extracts,
)
from typer.testing import CliRunner

from spevidence.cli import app
from spevidence.data import read_extracts, validate
from spevidence.data.docs import contracts_markdown
from spevidence.data.schema import TABLES
from spevidence.errors import DataError
from spevidence.identity import Key, is_valid_nhs_number, pseudonymise
from spevidence.link import build_panel

ROOT = Path(__file__).resolve().parents[1]


def test_docs_page_is_generated_from_schema():
    page = (ROOT / "docs" / "data-contracts.md").read_text()
    assert page == contracts_markdown()
    for t in TABLES.values():
        assert f"## `{t.name}`" in page
        for c in t.columns:
            assert f"| `{c.name}` |" in page


@pytest.fixture(scope="module")
def parquet_dir(tmp_path_factory):
    return write_extracts(tmp_path_factory.mktemp("pq"), tiny_world())


def test_sources_hashes_and_row_counts(parquet_dir):
    ex = read_extracts(parquet_dir)
    assert ex.row_counts == {n: len(df) for n, df in tiny_world().items()}
    for name, info in ex.sources.items():
        f = parquet_dir / f"{name}.parquet"
        assert info.format == "parquet" and info.location == f.name
        assert info.sha256 == hashlib.sha256(f.read_bytes()).hexdigest()
    assert "wellbeing" not in ex  # optional table absent is fine
    with pytest.raises(DataError, match="no 'wellbeing' extract"):
        ex["wellbeing"]


def test_duckdb_file_and_ibis_connection_give_the_same_panel(parquet_dir, tmp_path):
    db = tmp_path / "extracts.duckdb"
    con = duckdb.connect(str(db))
    for name in tiny_world():
        src = parquet_dir / f"{name}.parquet"
        con.execute(f"CREATE TABLE {name} AS SELECT * FROM read_parquet('{src}')")
    con.close()
    expected = as_panel_frame(TINY_EXPECTED_MONTHLY)
    ex_file = read_extracts(db)
    assert {s.format for s in ex_file.sources.values()} == {"duckdb"}
    ibis_con = ibis.duckdb.connect(str(db), read_only=True)
    ex_con = read_extracts(ibis_con)
    assert {s.format for s in ex_con.sources.values()} == {"ibis"}
    for ex in (ex_file, ex_con):
        clean, _, att = validate(ex, start=START, end=END)
        assert att.reconciles()
        pd.testing.assert_frame_equal(
            build_panel(clean, start=START, end=END).to_pandas(), expected
        )


def test_not_a_folder_or_database(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_extracts(tmp_path / "nope")
    f = tmp_path / "x.txt"
    f.write_text("hello")
    with pytest.raises(DataError, match="expected a folder"):
        read_extracts(f)


def test_ragged_csv_is_a_clear_error(tmp_path):
    folder = write_extracts(tmp_path / "w", tiny_world(), fmt="csv")
    with open(folder / "ae_attendances.csv", "a") as fh:
        fh.write("p9,2021-01-01,1,EXTRA,FIELDS\n")
    with pytest.raises(DataError, match=r"ae_attendances\.csv: the CSV cannot be read") as e:
        read_extracts(folder)
    assert "p9" not in str(e.value)


# ---- CLI -----------------------------------------------------------------------------

runner = CliRunner()
SECRET = "cli-test-key-0123456789-abcdefghijklmnop"


def _nhs_frame() -> pd.DataFrame:
    stems = [f"{i:09d}" for i in range(400000000, 400000040)]
    ids = []
    for s in stems:
        for d in range(10):
            if is_valid_nhs_number(s + str(d)):
                ids.append(s + str(d))
                break
    ids = [*ids[:12], "4000000000", "12345"]  # last two invalid
    return pd.DataFrame({"person_id": ids, "x": range(len(ids))})


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_cli_pseudonymise_streams_preserves_order_and_hides_values(tmp_path, fmt):
    df = _nhs_frame()
    src = tmp_path / f"in.{fmt}"
    dst = tmp_path / f"out.{fmt}"
    df.to_csv(src, index=False) if fmt == "csv" else df.to_parquet(src, index=False)
    key_file = tmp_path / "key.txt"
    key_file.write_text(SECRET + "\n")
    res = runner.invoke(app, ["pseudonymise", str(src), str(dst), "--key-file", str(key_file)])
    assert res.exit_code == 0, res.output
    assert "14 rows" in res.output and "person_id: 2" in res.output
    got = pd.read_csv(dst, dtype=str) if fmt == "csv" else pq.read_table(dst).to_pandas()
    key = Key(SECRET.encode())
    expected = [pseudonymise(v, key) for v in df["person_id"][:12]] + [None, None]
    assert [None if pd.isna(v) else v for v in got["person_id"]] == expected
    assert [int(v) for v in got["x"]] == list(range(14))
    text = res.output + dst.read_bytes().decode("latin-1")
    assert SECRET not in text
    assert not any(v in res.output for v in df["person_id"])


def test_cli_pseudonymise_refuses_weak_or_missing_key(tmp_path, monkeypatch):
    src = tmp_path / "in.csv"
    _nhs_frame().to_csv(src, index=False)
    monkeypatch.delenv("SPEVIDENCE_KEY", raising=False)
    from spevidence.cli import main

    monkeypatch.setattr(
        "sys.argv", ["spevidence", "pseudonymise", str(src), str(tmp_path / "o.csv")]
    )
    with pytest.raises(SystemExit) as e:
        main()
    assert e.value.code == 1
    monkeypatch.setenv("SPEVIDENCE_KEY", "too-short")
    with pytest.raises(SystemExit) as e:
        main()
    assert e.value.code == 1
    assert not (tmp_path / "o.csv").exists()


def test_cli_validate_and_link(tmp_path, parquet_dir, capsys):
    out = tmp_path / "qa"
    res = runner.invoke(
        app,
        ["validate", "--data", str(parquet_dir), "--start", str(START), "--end", str(END),
         "--out", str(out)],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    att = pd.read_csv(out / "attrition.csv")
    assert set(att.columns) == {"table", "stage", "reason", "rows"}
    written = (out / "attrition.csv").read_text() + (out / "qa.csv").read_text() + res.output
    assert not re.search(r"\bp[1-5]\b", written)  # identifiers never leave the engine
    panel_file = tmp_path / "panel.parquet"
    res = runner.invoke(
        app,
        ["link", "--data", str(parquet_dir), "--start", str(START), "--end", str(END),
         "--out", str(panel_file)],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    got = pd.read_parquet(panel_file)
    assert len(got) == len(TINY_EXPECTED_MONTHLY)
    assert int(got["gp"].sum()) == sum(r[3] for r in TINY_EXPECTED_MONTHLY)
    assert not re.search(r"\bp[1-5]\b", res.output)  # no identifiers in the console output


def test_memory_limit_reaches_duckdb_and_a_bad_one_is_a_clear_error(
    parquet_dir, tmp_path, monkeypatch, capsys
):
    from spevidence.cli import main
    from spevidence.data.engine import MEMORY_ENV, duckdb_connect

    monkeypatch.setenv(MEMORY_ENV, "")  # restored (unset) after the test
    default = duckdb_connect().raw_sql("SELECT current_setting('memory_limit')").fetchone()[0]
    monkeypatch.setenv(MEMORY_ENV, "300MB")
    limit = duckdb_connect().raw_sql("SELECT current_setting('memory_limit')").fetchone()[0]
    assert limit != default and limit.endswith("MiB") and float(limit.split()[0]) < 300
    monkeypatch.setenv(MEMORY_ENV, "")

    def link(limit: str) -> tuple[int, str]:
        monkeypatch.setattr(
            "sys.argv",
            ["spevidence", "link", "--data", str(parquet_dir), "--start", str(START),
             "--end", str(END), "--out", str(tmp_path / "p.parquet"), "--no-progress",
             "--memory-limit", limit],
        )  # fmt: skip
        try:
            main()
            code = 0
        except SystemExit as e:
            code = int(e.code or 0)
        cap = capsys.readouterr()
        return code, cap.out + cap.err

    code, text = link("lots")
    assert code == 1 and "--memory-limit must be a size such as 4GB" in text
    assert "Traceback" not in text and not (tmp_path / "p.parquet").exists()
    code, text = link("500MB")
    assert code == 0, text
    assert len(pd.read_parquet(tmp_path / "p.parquet")) == len(TINY_EXPECTED_MONTHLY)
