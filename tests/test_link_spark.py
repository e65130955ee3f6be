"""DuckDB and Spark (local mode) build identical panels from the same expression.

One shared, small Spark session for the whole module: local[1], one shuffle partition.
"""

from __future__ import annotations

import pandas as pd
import pytest
from conftest_link import (
    END,
    START,
    TINY_EXPECTED_MONTHLY,
    as_panel_frame,
    random_world,
    tiny_world,
    write_extracts,
)

from spevidence.data import read_extracts, validate
from spevidence.identity import Key
from spevidence.link import build_panel

pytestmark = [pytest.mark.spark, pytest.mark.xdist_group("spark")]


@pytest.fixture(scope="module")
def spark_con(spark_session):
    import ibis

    return ibis.pyspark.connect(spark_session)


def test_tiny_panel_identical_on_spark(tmp_path, spark_con):
    clean, _, _ = validate(
        read_extracts(write_extracts(tmp_path / "w", tiny_world())), start=START, end=END
    )
    duck = build_panel(clean, start=START, end=END).to_pandas()
    spark = build_panel(clean, start=START, end=END, backend=spark_con)
    assert spark.engine == "pyspark"
    got = spark.to_pandas()
    pd.testing.assert_frame_equal(got, duck)
    pd.testing.assert_frame_equal(got, as_panel_frame(TINY_EXPECTED_MONTHLY))
    assert spark.attrition == build_panel(clean, start=START, end=END).attrition


def test_random_world_identical_on_spark_quarterly(tmp_path, spark_con):
    tables = random_world(seed=21, n=40)
    nhs = {}
    # raw NHS numbers so the pseudonymised path is exercised too
    for i in range(40):
        stem = 900000000 + i * 7
        for d in range(10):
            from spevidence.identity import is_valid_nhs_number

            if is_valid_nhs_number(f"{stem}{d}"):
                nhs[f"id{i:04d}"] = f"{stem}{d}"
                break
    for df in tables.values():
        df["person_id"] = df["person_id"].map(lambda v: nhs.get(v, v))
    clean, _, _ = validate(
        read_extracts(write_extracts(tmp_path / "w", tables)),
        start=START,
        end="2021-12-31",
        ids="nhs_number",
        key=Key(b"s" * 32),
        # a random world: orphans, deaths and a window past its last event, on purpose
        max_row_loss=1.0,
        completeness="warn",
    )
    duck = build_panel(clean, start=START, end="2021-12-31", period="quarter").to_pandas()
    spark = build_panel(
        clean, start=START, end="2021-12-31", period="quarter", backend=spark_con
    ).to_pandas()
    assert len(duck) > 50 and duck["gp"].sum() > 10
    pd.testing.assert_frame_equal(spark, duck)


def test_extracts_on_a_spark_connection_validate_and_link_on_spark(tmp_path, spark_con):
    """Warehouse path: tables already in Spark; validation and linkage both run there."""
    import pyarrow.parquet as pq

    folder = write_extracts(tmp_path / "w", tiny_world())
    session = spark_con._session
    for name in tiny_world():
        session.createDataFrame(pq.read_table(folder / f"{name}.parquet")).createOrReplaceTempView(
            name
        )
    ex = read_extracts(spark_con)
    assert {s.format for s in ex.sources.values()} == {"ibis"}
    assert ex.row_counts == {n: len(df) for n, df in tiny_world().items()}
    clean, qa, att = validate(ex, start=START, end=END)
    assert att.reconciles() and qa.ok
    panel = build_panel(clean, start=START, end=END, backend=spark_con)
    pd.testing.assert_frame_equal(panel.to_pandas(), as_panel_frame(TINY_EXPECTED_MONTHLY))
    # the case-finding GP counts of spevidence run come out of Spark as out of DuckDB
    from spevidence.pipeline import casefinding_gp

    at = pd.Timestamp(END)
    duck, _, _ = validate(read_extracts(folder), start=START, end=END)
    a = casefinding_gp(clean["gp_appointments"], at, 365)
    b = casefinding_gp(duck["gp_appointments"], at, 365)
    assert a["n_rows"].sum() == int(duck["gp_appointments"].count().execute()) > 0
    pd.testing.assert_frame_equal(a, b, check_dtype=False)
