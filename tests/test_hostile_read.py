"""Hostile extracts and identifiers through `validate`, `link` and `run` (issue 19, items 1,
6, 8, 10 and 12): header-less files, two files for one table, all-equal NHS numbers, other
encodings and delimiters, unreadable, damaged or misplaced files, pseudonyms read as NHS
numbers, extracts under another key, a world-readable key, 1 MB codes.

Each case changes a copy of one small synthetic ICB (real NHS-number-valid identifiers) and
runs the CLI as a user would; it must end with the documented exit code, no traceback, no
identifier and no ten-digit run in the output, and no half-written run folder."""

from __future__ import annotations

import csv
import hashlib
import os
import secrets
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from hostile import assert_clean, assert_no_partial_output, cli

from spevidence._csvfile import header_looks_like_data, looks_like_column_name
from spevidence.data import read_extracts, validate
from spevidence.data._types import nhs_number_valid
from spevidence.errors import DataError
from spevidence.identity import Key, is_valid_nhs_number, pseudonymise_file
from spevidence.synthetic import generate

ROOT = Path(__file__).resolve().parents[1]
START, END = "2021-04-01", "2024-03-31"
EVENT_TABLES = ("referrals", "gp_appointments", "ae_attendances", "admissions", "wellbeing")
ALL_EQUAL = [str(d) * 10 for d in range(10)]


@dataclass(frozen=True)
class World:
    nhs: Path  # extracts with NHS numbers (CSV)
    pseudo: Path  # extracts with pseudonyms (CSV)
    key: Path
    protocols: dict[str, Path]  # ids -> protocol file
    identifiers: frozenset[str]
    baseline: Path  # attrition.csv of the untouched NHS-number extracts


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    base = tmp_path_factory.mktemp("hostile_read")
    nhs, pseudo = base / "nhs", base / "pseudo"
    generate("demo", persons=300, seed=3, out=nhs, format="csv", identifiers="nhs_number")
    generate("demo", persons=300, seed=3, out=pseudo, format="csv", identifiers="pseudonym")
    key = base / "key.txt"
    key.write_text(secrets.token_hex(32) + "\n")
    key.chmod(0o600)
    text = (ROOT / "protocols" / "demo.yaml").read_text()
    protocols = {}
    for ids in ("nhs_number", "pseudonym"):
        p = base / f"protocol_{ids}.yaml"
        p.write_text(text.replace("ids: nhs_number", f"ids: {ids}"))
        protocols[ids] = p
    idents = {
        str(v)
        for folder in (nhs, pseudo)
        for f in folder.glob("*.csv")
        for v in pd.read_csv(f, dtype=str)["person_id"].dropna()
    }
    out = cli(*_validate_args(nhs, key, "nhs_number", base / "baseline"))
    assert out.code == 0, out.text
    return World(
        nhs, pseudo, key, protocols, frozenset(idents), base / "baseline" / "attrition.csv"
    )


def _validate_args(data: Path, key: Path, ids: str, out: Path) -> list[str | Path]:
    args: list[str | Path] = ["validate", "--data", data, "--start", START, "--end", END]
    args += ["--ids", ids, "--out", out]
    return [*args, "--key-file", key] if ids == "nhs_number" else args


def _args(cmd: str, w: World, data: Path, ids: str, out: Path) -> list[str | Path]:
    if cmd == "validate":
        return _validate_args(data, w.key, ids, out / "validate")
    if cmd == "link":
        args: list[str | Path] = ["link", "--data", data, "--start", START, "--end", END]
        args += ["--ids", ids, "--out", out / "panel.parquet", "--no-progress"]
        return [*args, "--key-file", w.key] if ids == "nhs_number" else args
    args = ["run", w.protocols[ids], "--data", data, "--out", out / "run", "--no-progress"]
    return [*args, "--no-cache", "--format", "html", "--key-file", w.key]


# --- how each case changes the extracts ------------------------------------------------


def _rewrite(path: Path, *, encoding: str = "utf-8", delimiter: str = ",") -> None:
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    with open(path, "w", newline="", encoding=encoding) as fh:
        csv.writer(fh, delimiter=delimiter).writerows(rows)


def _headerless(table: str) -> Callable[[Path], None]:
    def build(d: Path) -> None:
        p = d / f"{table}.csv"
        p.write_text("".join(p.read_text().splitlines(keepends=True)[1:]))

    return build


def _headerless_parquet(d: Path) -> None:
    _headerless("gp_appointments")(d)
    src = d / "gp_appointments.csv"
    # the first data row becomes the column names, as any reader without a header does
    pq.write_table(pacsv.read_csv(src), d / "gp_appointments.parquet")
    src.unlink()


def _both_referrals(d: Path) -> None:
    pq.write_table(pacsv.read_csv(d / "referrals.csv"), d / "referrals.parquet")


def _all_equal_digits(d: Path) -> None:
    p = d / "population.csv"
    df = pd.read_csv(p, dtype=str, keep_default_na=False)
    df.loc[: 2 * len(ALL_EQUAL) - 1, "person_id"] = ALL_EQUAL * 2
    df.to_csv(p, index=False)


def _extra_column(encoding: str, name: str, value: str) -> Callable[[Path], None]:
    def build(d: Path) -> None:
        p = d / "population.csv"
        df = pd.read_csv(p, dtype=str, keep_default_na=False)
        df[name] = value
        df.to_csv(p, index=False, encoding=encoding)

    return build


def _encoded(table: str, encoding: str) -> Callable[[Path], None]:
    return lambda d: _rewrite(d / f"{table}.csv", encoding=encoding)


def _delimited(delimiter: str) -> Callable[[Path], None]:
    return lambda d: _rewrite(d / "gp_appointments.csv", delimiter=delimiter)


def _unreadable(d: Path) -> None:
    (d / "gp_appointments.csv").chmod(0)


def _io_error(d: Path) -> None:
    """A file whose every read fails (EIO), even for root: a link to /proc/self/mem."""
    (d / "gp_appointments.csv").unlink()
    (d / "gp_appointments.csv").symlink_to("/proc/self/mem")


def _fifo(d: Path) -> None:
    (d / "gp_appointments.csv").unlink()
    os.mkfifo(d / "gp_appointments.csv")


def _folder(d: Path) -> None:
    (d / "gp_appointments.csv").unlink()
    (d / "gp_appointments.csv").mkdir()
    (d / "gp_appointments.csv" / "part-0.csv").write_text("person_id\n")


def _corrupt_parquet(d: Path) -> None:
    src = d / "gp_appointments.csv"
    dst = d / "gp_appointments.parquet"
    pq.write_table(pacsv.read_csv(src), dst, compression="zstd", row_group_size=2000)
    src.unlink()
    raw = bytearray(dst.read_bytes())
    footer = pq.ParquetFile(dst).metadata.serialized_size + 8
    rng = np.random.default_rng(1)
    lo, hi = len(raw) // 10, len(raw) - footer - 64
    for at in range(lo, hi, (hi - lo) // 8):  # damage every column chunk's pages
        raw[at : at + 48] = rng.integers(0, 256, 48, dtype=np.uint8).tobytes()
    dst.write_bytes(bytes(raw))
    assert pq.ParquetFile(dst).metadata.num_rows > 0  # the footer still reads


def _other_key(d: Path) -> None:
    for t in EVENT_TABLES:
        p = d / f"{t}.csv"
        df = pd.read_csv(p, dtype=str, keep_default_na=False)
        df["person_id"] = [hashlib.sha256(v.encode()).hexdigest()[:32] for v in df.person_id]
        df.to_csv(p, index=False)


def _long_code(d: Path) -> None:
    p = d / "population.csv"
    df = pd.read_csv(p, dtype=str, keep_default_na=False)
    df.loc[3, "practice_code"] = "A" * 1_000_000
    df.to_csv(p, index=False)


# --- the table of cases ----------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[Path], None]
    code: int = 1
    says: tuple[str, ...] = ()
    commands: tuple[str, ...] = ("validate", "run")  # link reads as validate does
    data: str = "nhs"  # which synthetic ICB: "nhs" or "pseudo"
    ids: str = "nhs_number"  # what the user says person_id holds
    same_as_baseline: bool = False  # exit 0 and the same attrition as the untouched files
    qa: dict[str, int] = field(default_factory=dict)  # rule -> rows expected in qa.csv


FIX_HEADER = ("first row looks like data, not a header", "header row")
EVERY = ("validate", "link", "run")
CASES = [
    Case(
        "headerless_gp",
        _headerless("gp_appointments"),
        says=("gp_appointments", *FIX_HEADER),
        commands=EVERY,
    ),
    Case(
        "headerless_ae",
        _headerless("ae_attendances"),
        says=("ae_attendances", *FIX_HEADER),
        commands=EVERY,
    ),
    Case("headerless_population", _headerless("population"), says=("population", *FIX_HEADER)),
    Case(
        "headerless_parquet",
        _headerless_parquet,
        says=("gp_appointments", "first row looks like data"),
    ),
    Case(
        "both_referrals_files",
        _both_referrals,
        says=("referrals.csv", "referrals.parquet", "remove one"),
    ),
    Case(
        # twenty people once merged into one; now 20 invalid numbers, 6.7 % of the
        # population, more than a table may lose (qa.max_row_loss): the run stops
        "all_equal_digit_nhs_numbers",
        _all_equal_digits,
        says=("population: 20 of 300 usable rows", "20 rows with an invalid NHS number"),
        commands=("validate",),
    ),
    Case(
        "latin1_header",
        _extra_column("latin-1", "área", "São Tomé"),
        code=0,
        commands=("validate",),
        same_as_baseline=True,
    ),
    Case(
        "cp1252_values",
        _extra_column("cp1252", "note", "‘quoted’ – €5"),
        code=0,
        commands=("validate",),
        same_as_baseline=True,
    ),
    Case(
        "utf8_bom",
        _encoded("gp_appointments", "utf-8-sig"),
        code=0,
        commands=("validate",),
        same_as_baseline=True,
    ),
    Case(
        "utf16_bom",
        _encoded("gp_appointments", "utf-16"),
        code=0,
        commands=("validate",),
        same_as_baseline=True,
    ),
    Case(
        "utf16_no_bom",
        _encoded("ae_attendances", "utf-16-le"),
        says=("ae_attendances.csv", "UTF-16", "UTF-8"),
    ),
    Case(
        "semicolon_delimited",
        _delimited(";"),
        code=0,
        commands=("validate",),
        same_as_baseline=True,
    ),
    Case("tab_delimited", _delimited("\t"), code=0, commands=("validate",), same_as_baseline=True),
    Case(
        "unreadable_file",
        _unreadable,
        says=("gp_appointments.csv", "cannot be read", "permission"),
    ),
    Case(
        "io_error_file",
        _io_error,
        says=("gp_appointments.csv", "cannot be read", "input/output error"),
    ),
    Case("fifo_for_file", _fifo, says=("gp_appointments.csv", "not a regular file")),
    Case("folder_for_file", _folder, says=("gp_appointments.csv", "is a folder")),
    Case(
        "corrupt_parquet",
        _corrupt_parquet,
        says=("gp_appointments", "gp_appointments.parquet", "damaged"),
    ),
    Case(
        "pseudonyms_read_as_nhs_numbers",
        lambda d: None,
        data="pseudo",
        says=("population.person_id", "pseudonym", "ids: pseudonym", "--ids pseudonym"),
        commands=EVERY,
    ),
    Case(
        "events_under_another_key",
        _other_key,
        data="pseudo",
        ids="pseudonym",
        says=("referrals", "gp_appointments", "ae_attendances", "admissions", "key"),
    ),
    Case(
        "one_megabyte_practice_code",
        _long_code,
        code=0,
        commands=("validate",),
        qa={"too_long": 1},
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_hostile_extract(case: Case, world: World, tmp_path: Path) -> None:
    if case.name == "unreadable_file" and os.geteuid() == 0:
        pytest.skip("running as root: chmod 000 does not stop root reading the file")
    if case.name == "io_error_file" and not Path("/proc/self/mem").exists():
        pytest.skip("no /proc/self/mem on this system")
    data = tmp_path / "data"
    shutil.copytree(world.nhs if case.data == "nhs" else world.pseudo, data)
    case.build(data)
    for cmd in case.commands:
        out_dir = tmp_path / f"out_{cmd}"
        out = cli(*_args(cmd, world, data, case.ids, out_dir))
        says = case.says if cmd == "validate" or case.code else ()
        assert_clean(out, code=case.code, identifiers=world.identifiers, says=says)
        assert len(max(out.text.splitlines(), key=len, default="")) < 5000
        if case.code:
            assert_no_partial_output(out_dir / "run")
            assert not (out_dir / "panel.parquet").exists()
    if case.same_as_baseline:
        got = pd.read_csv(tmp_path / "out_validate" / "validate" / "attrition.csv")
        pd.testing.assert_frame_equal(got, pd.read_csv(world.baseline))
    if case.qa:
        qa = pd.read_csv(tmp_path / "out_validate" / "validate" / "qa.csv")
        for rule, rows in case.qa.items():
            assert qa.loc[qa.rule == rule, "rows"].sum() == rows, qa.to_string()


# --- the pieces underneath -------------------------------------------------------------


def test_all_equal_digits_are_invalid_everywhere(tmp_path: Path) -> None:
    assert not any(is_valid_nhs_number(v) for v in ALL_EQUAL)
    assert not is_valid_nhs_number(ALL_EQUAL).any()
    assert is_valid_nhs_number(["9434765919", "1111111111"]).tolist() == [True, False]
    # the check that validation runs inside the engine agrees
    import ibis

    t = ibis.memtable({"v": [*ALL_EQUAL, "9434765919"]})
    got = ibis.duckdb.connect().execute(t.select(ok=nhs_number_valid(t.v))).ok.tolist()
    assert got == [False] * 10 + [True]
    # pseudonymise_file counts them as invalid and leaves them empty
    src = tmp_path / "in.csv"
    src.write_text("person_id\n0000000000\n9434765919\n")
    rep = pseudonymise_file(src, tmp_path / "out.csv", Key(b"k" * 32))
    assert rep.invalid == {"person_id": 1}


@pytest.mark.parametrize(
    ("cell", "shown", "value"),
    [
        ("person_id", True, False),
        ("Practice Code", True, False),
        ("gp_m1_3", True, False),
        ("attended", True, False),  # a code may be shown; the header is data anyway
        ("9998269717", False, True),
        ("999 826 9717", False, True),
        ("2021-04-18", False, True),
        ("18/04/2021", False, True),
        ("18-Apr-2021", False, True),
        ("20210418", False, True),
        ("a3f9c0d1e2b3a4f5a6b7c8d9e0f1a2b3", False, True),  # a pseudonym
        ("aZkPqLmNoRsTuVwXyZ1b2", False, False),  # a token: not shown
        ("X9998269717", False, True),
        ("área", False, False),
    ],
)
def test_header_cell_whitelist(cell: str, shown: bool, value: bool) -> None:
    assert looks_like_column_name(cell) is shown
    assert header_looks_like_data(["person_id", cell]) is value


def test_header_names_shown_only_when_they_look_like_names(tmp_path: Path) -> None:
    """A mapping that names a missing column lists the columns found, but only those
    that look like column names."""
    d = tmp_path / "d"
    generate("demo", persons=50, seed=2, out=d, format="csv", identifiers="nhs_number")
    with pytest.raises(DataError) as e:
        read_extracts(d, mapping={"gp_appointments": {"appt": "appointment_date"}})
    msg = str(e.value)
    assert "person_id, appointment_date, status, staff_role, mode" in msg
    p = d / "admissions.csv"
    p.write_text(p.read_text().replace("admission_method", "Method 2021-04-10"))
    with pytest.raises(DataError) as e:
        read_extracts(d)
    msg = str(e.value)
    assert "2021" not in msg and "'admission_method' is missing" in msg
    assert "1 column whose name is not shown" in msg


def test_world_readable_key_warns_once_without_key_material(tmp_path: Path) -> None:
    key = tmp_path / "key.txt"
    secret = secrets.token_hex(32)
    key.write_text(secret)
    key.chmod(0o644)
    d = tmp_path / "d"
    generate("demo", persons=50, seed=2, out=d, format="csv", identifiers="nhs_number")
    out = cli(*_validate_args(d, key, "nhs_number", tmp_path / "o"))
    assert_clean(out, code=0, identifiers=[secret], says=["chmod 600", str(key.name)])
    assert sum("chmod 600" in line for line in out.text.splitlines()) == 1
    key.chmod(0o600)
    out = cli(*_validate_args(d, key, "nhs_number", tmp_path / "o"))
    assert_clean(out, code=0, identifiers=[secret])
    assert "chmod" not in out.text


def test_long_codes_are_cut_from_the_clean_tables(tmp_path: Path) -> None:
    d = tmp_path / "d"
    generate("demo", persons=50, seed=2, out=d, format="csv", identifiers="pseudonym")
    p = d / "referrals.csv"
    df = pd.read_csv(p, dtype=str, keep_default_na=False)
    df.loc[0, "link_worker_id"] = "L" * 100_000  # optional: set missing, row kept
    df.to_csv(p, index=False)
    clean, qa, att = validate(read_extracts(d), start=START, end=END)
    (issue,) = qa.by_rule("too_long", "referrals")
    assert issue.rows == 1 and issue.action == "set_missing" and "L" * 20 not in issue.message
    longest = clean["referrals"].link_worker_id.length().max().execute()
    assert longest < 100
    assert att.reconciles()


@pytest.mark.parametrize(
    ("change", "code", "says"),
    [
        (_headerless("gp_appointments"), 1, ("first row looks like data", "header row")),
        (_encoded("gp_appointments", "utf-16"), 0, ("7399 rows", "Written")),
        (_delimited(";"), 0, ("7399 rows", "Written")),
    ],
    ids=["headerless", "utf16_bom", "semicolon"],
)
def test_pseudonymise_at_source(
    change: Callable[[Path], None], code: int, says: tuple[str, ...], world: World, tmp_path: Path
) -> None:
    """`spevidence pseudonymise` reads the same files as the readers, and never shows a
    header-less file's first row."""
    data = tmp_path / "data"
    shutil.copytree(world.nhs, data)
    change(data)
    dst = tmp_path / "gp.parquet"
    out = cli("pseudonymise", data / "gp_appointments.csv", dst, "--key-file", world.key)
    assert_clean(out, code=code, identifiers=world.identifiers, says=says)
    if code == 0:
        got = pq.read_table(dst).to_pandas()
        assert len(got) == 7399 and got.person_id.str.fullmatch("[0-9a-f]{64}").all()
    else:
        assert not dst.exists()
