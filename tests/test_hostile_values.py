"""Hostile inputs, coded values (issue 22): a value outside a coded column's allowed list
stops `validate`, `link` and `run` with one paragraph naming the table, the column, each
unknown value with its row count and the protocol line that recodes it; values that look
like identifiers are counted, never shown; a `values:` recode in the protocol makes the
local coding run and gives the panel of the native coding.

One small synthetic ICB (pseudonymised, 2021-04 to 2024-03) is written once; each case
copies it and writes a local coding into one column, as an ICB's extract would hold it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml
from hostile import assert_clean, assert_no_partial_output, cli

from spevidence.data import read_extracts, validate
from spevidence.data.schema import TABLES
from spevidence.errors import DataError
from spevidence.link import build_panel
from spevidence.protocol import Protocol, load_protocol

ROOT = Path(__file__).resolve().parents[1]
START, END = "2021-04-01", "2024-03-31"
LOCAL = "Local code"
GP_LOCAL = "General Practitioner"
pytestmark = pytest.mark.xdist_group("hostile_values")

CODED = [(t.name, c.name) for t in TABLES.values() for c in t.columns if c.allowed is not None]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from spevidence.synthetic import generate

    out = tmp_path_factory.mktemp("icb") / "data"
    generate("demo", persons=800, seed=5, out=out, identifiers="pseudonym")
    (out / "truth.json").unlink()  # a real extract folder: no answers beside it
    return out


def _read(folder: Path, table: str) -> pd.DataFrame:
    return pd.read_parquet(folder / f"{table}.parquet")


def _copy(base: Path, tmp: Path) -> Path:
    data = tmp / "data"
    shutil.copytree(base, data)
    return data


def _set(data: Path, table: str, column: str, rows: slice | pd.Series, value: str) -> None:
    df = _read(data, table)
    df[column] = df[column].astype("object")
    df.loc[rows, column] = value
    df.to_parquet(data / f"{table}.parquet", index=False)


def _identifiers(base: Path) -> list[str]:
    return list(_read(base, "population")["person_id"].head(20))


def _general_practitioner(base: Path, tmp: Path) -> Path:
    """The demo's GP extract with its GP staff role written "General Practitioner"."""
    data = _copy(base, tmp)
    gp = _read(data, "gp_appointments")
    _set(data, "gp_appointments", "staff_role", gp["staff_role"] == "gp", GP_LOCAL)
    return data


def _stop_message(data: Path, **read: object) -> str:
    with pytest.raises(DataError) as err:
        validate(read_extracts(data, **read), start=START, end=END)  # type: ignore[arg-type]
    return str(err.value)


@pytest.mark.parametrize(("table", "column"), CODED, ids=[f"{t}.{c}" for t, c in CODED])
def test_every_coded_column_stops_on_an_unknown_value(base, tmp_path, table, column) -> None:
    data = _copy(base, tmp_path)
    _set(data, table, column, slice(0, 2), LOCAL)  # the first three rows
    msg = _stop_message(data)
    allowed = ", ".join(TABLES[table].column(column).allowed or ())
    head = f"{table}.{column}: 3 rows hold values outside the allowed values ({allowed}): "
    assert head + '"Local code" (3 rows)' in msg
    assert f'extracts: {{{table}: {{values: {{{column}: {{"Local code": ' in msg
    assert "\n" not in msg and "Traceback" not in msg
    assert not any(i in msg for i in _identifiers(base))


def test_every_unknown_column_of_a_table_is_named(base, tmp_path) -> None:
    """A row is excluded under its first failed check only; the stop still names both
    columns, each value with its own count."""
    data = _general_practitioner(base, tmp_path)
    _set(data, "gp_appointments", "mode", slice(0, 4), "Face-to-Face video")
    msg = _stop_message(data)
    assert "gp_appointments.staff_role: " in msg and f'"{GP_LOCAL}" (' in msg
    assert "gp_appointments.mode: 5 rows hold values" in msg
    assert '"Face-to-Face video" (5 rows)' in msg


@pytest.mark.parametrize(
    "value",
    ["9434765919", "943 476 5919", "1957-03-02", "a3f9b2c1d4e5f6a7b8c9", "x" * 41],
    ids=["nhs-number", "nhs-number-spaced", "date", "token", "long-text"],
)
def test_values_that_look_like_identifiers_are_counted_not_shown(base, tmp_path, value) -> None:
    data = _copy(base, tmp_path)
    _set(data, "gp_appointments", "staff_role", slice(0, 1), value)
    _set(data, "gp_appointments", "staff_role", slice(2, 2), "Pharmacist")
    msg = _stop_message(data)
    assert "gp_appointments.staff_role: 3 rows hold values" in msg
    assert '"Pharmacist" (1 rows); 1 other value (not shown)' in msg
    assert value not in msg and value.replace(" ", "") not in msg


def test_general_practitioner_stops_validate_link_and_run(base, tmp_path) -> None:
    """The issue's case: it passed `validate`, then `run` died with a raw LinAlgError."""
    data = _general_practitioner(base, tmp_path)
    says = ["gp_appointments.staff_role: ", f'"{GP_LOCAL}" (', "values: {staff_role: "]
    ids = _identifiers(base)
    out = cli("validate", "--data", data, "--start", START, "--end", END)
    assert_clean(out, code=1, identifiers=ids, says=says)
    panel = tmp_path / "panel" / "panel.parquet"
    out = cli("link", "--data", data, "--start", START, "--end", END, "--out", panel,
              "--no-progress")  # fmt: skip
    assert_clean(out, code=1, identifiers=ids, says=says)
    assert not panel.exists()
    out_dir = tmp_path / "out"
    out = cli("run", _protocol(tmp_path), "--data", data, "--out", out_dir, "--no-progress")
    assert_clean(out, code=1, identifiers=ids, says=says)
    assert_no_partial_output(out_dir)


def _protocol(tmp: Path, **changes: object) -> Path:
    p = yaml.safe_load((ROOT / "protocols" / "demo.yaml").read_text())
    p.update(ids="pseudonym", report={"formats": ["html"], "engine": "builtin"})
    p["sroi"]["n_sims"] = 50
    p.update(changes)
    path = tmp / "protocol.yaml"
    path.write_text(yaml.safe_dump(p))
    return path


RECODE = {"gp_appointments": {"values": {"staff_role": {GP_LOCAL: "gp"}}}}


def _panel(data: Path, proto: Protocol) -> pd.DataFrame:
    ex = read_extracts(data, mapping=proto.column_mapping(), values=proto.value_recodes())
    clean, _, _ = validate(ex, start=START, end=END)
    return build_panel(clean, start=START, end=END, cache=False).to_pandas()


def test_a_recode_in_the_protocol_gives_the_native_panel(base, tmp_path) -> None:
    data = _general_practitioner(base, tmp_path)
    recoded = load_protocol(_protocol(tmp_path, extracts=RECODE))
    assert recoded.value_recodes() == {"gp_appointments": {"staff_role": {GP_LOCAL: "gp"}}}
    native = _panel(base, load_protocol(_protocol(tmp_path)))
    assert native["gp"].sum() > 0
    pd.testing.assert_frame_equal(_panel(data, recoded), native)


def test_a_recode_in_the_protocol_runs(base, tmp_path) -> None:
    data = _general_practitioner(base, tmp_path)
    out_dir = tmp_path / "out"
    proto = _protocol(tmp_path, extracts=RECODE)
    out = cli("run", proto, "--data", data, "--out", out_dir, "--no-progress")
    assert_clean(out, code=0, identifiers=_identifiers(base), says=["Evaluation finished"])
    assert (out_dir / "report.html").exists()


@pytest.mark.parametrize(
    ("extracts", "says"),
    [
        ({"gp_appts": {"values": {}}}, "extracts names the table 'gp_appts'"),
        ({"gp_appointments": {"values": {"person_id": {"a": "b"}}}}, "not a coded column"),
        ({"gp_appointments": {"values": {"staff_role": {GP_LOCAL: "doctor"}}}}, "'doctor'"),
        ({"gp_appointments": {"columns": {"role": "staff_rol"}}}, "renames onto 'staff_rol'"),
        ({"gp_appointments": {"recode": {}}}, "recode"),
    ],
    ids=["unknown-table", "not-coded", "target-not-allowed", "unknown-column", "unknown-key"],
)
def test_a_wrong_extracts_block_stops_check(tmp_path, extracts, says) -> None:
    out = cli("check", _protocol(tmp_path, extracts=extracts))
    assert_clean(out, code=1, says=[says])


def test_an_outcome_zero_for_everyone_stops_the_run(base, tmp_path) -> None:
    """Every GP appointment with a valid role that is not the GP one (all filtered out by
    the definitions): the run stops naming the outcome and the cause, before estimating."""
    data = _copy(base, tmp_path)
    _set(data, "gp_appointments", "staff_role", slice(None), "nurse")
    out_dir = tmp_path / "out"
    out = cli("run", _protocol(tmp_path), "--data", data, "--out", out_dir, "--no-progress")
    says = ["Outcome gp is zero for every person", "staff_role gp", "remove gp from outcomes"]
    assert_clean(out, code=1, identifiers=_identifiers(base), says=says)
    assert "Outcome ae" not in out.text and "Outcome admissions" not in out.text
    assert_no_partial_output(out_dir)


@pytest.mark.parametrize(
    ("totals", "says"),
    [
        ({"gp": 3, "ae": 0, "admissions": 2}, ["Outcome ae is zero", "ae_attendances rows"]),
        (
            {"gp": 3, "ae": 1, "admissions": 0.0},
            ["Outcome admissions is zero", "admission_method 21, 22, 23, 24, 25, 2A, 2C"],
        ),
        (
            {"gp": 0, "ae": 0, "admissions": None},
            ["Outcome gp", "Outcome ae", "Outcome admissions"],
        ),
    ],
    ids=["ae", "admissions", "all-three"],
)
def test_check_outcomes_names_each_zero_outcome(totals, says) -> None:
    from spevidence.errors import EstimationError
    from spevidence.link import check_outcomes

    with pytest.raises(EstimationError) as err:
        check_outcomes(totals, ("gp", "ae", "admissions"))
    for s in says:
        assert s in str(err.value)
    check_outcomes({"gp": 1, "ae": 1, "admissions": 0}, ("gp", "ae"))  # not an outcome here
