"""Hostile inputs, coverage and row loss (issue 19, cases 4, 6, 7, 10): data that would make
a run silently wrong stops `validate`, `link` and `run` with a message naming the table, the
count and the fix; no traceback, no identifier, no half-written output.

One small synthetic ICB (pseudonymised, 2021-04 to 2024-03) is written once; each case
copies it, breaks it the way an extract goes wrong, and runs the command as a user would.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
import yaml
from hostile import assert_clean, assert_no_partial_output, cli

ROOT = Path(__file__).resolve().parents[1]
START, END = "2021-04-01", "2024-03-31"
EVENTS = ("referrals", "gp_appointments", "ae_attendances", "admissions", "wellbeing")
pytestmark = pytest.mark.xdist_group("hostile_coverage")


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from spevidence.synthetic import generate

    out = tmp_path_factory.mktemp("icb") / "data"
    generate("demo", persons=800, seed=5, out=out, identifiers="pseudonym")
    (out / "truth.json").unlink()  # a real extract folder: no answers beside it
    return out


def _read(folder: Path, table: str) -> pd.DataFrame:
    return pd.read_parquet(folder / f"{table}.parquet")


def _write(folder: Path, table: str, df: pd.DataFrame) -> None:
    df.to_parquet(folder / f"{table}.parquet", index=False)


def _other_key(ids: pd.Series) -> pd.Series:
    """The same people pseudonymised under another key (tokens of the same shape)."""
    return ids.map(lambda v: hashlib.sha256(f"other key:{v}".encode()).hexdigest()[:32])


def _rekey(table: str, every: int = 1) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        df = _read(folder, table)
        rows = df.index[::every]
        df.loc[rows, "person_id"] = _other_key(df.loc[rows, "person_id"])
        _write(folder, table, df)

    return edit


def _rekey_all(folder: Path) -> None:
    for t in EVENTS:
        _rekey(t)(folder)


def _empty_referrals(folder: Path) -> None:
    _write(folder, "referrals", _read(folder, "referrals").iloc[:0])


def _ae_codes(folder: Path) -> None:
    df = _read(folder, "ae_attendances")
    df["department_type"] = "X"  # every code unknown: every row excluded
    _write(folder, "ae_attendances", df)


def _gp_month_missing(folder: Path) -> None:
    df = _read(folder, "gp_appointments")
    d = pd.to_datetime(df["appointment_date"])
    _write(folder, "gp_appointments", df[~((d.dt.year == 2022) & (d.dt.month == 6))])


def _gp_years_early(folder: Path) -> None:
    """The GP extract of the wrong years: every row before the study window."""
    df = _read(folder, "gp_appointments")
    df["appointment_date"] = (
        pd.to_datetime(df["appointment_date"]) - pd.DateOffset(years=6)
    ).dt.date
    _write(folder, "gp_appointments", df)


def _born_after(folder: Path) -> None:
    """Three people with GP appointments in 2021-22 and no referral, born in 2023."""
    gp = _read(folder, "gp_appointments")
    early = gp.loc[pd.to_datetime(gp["appointment_date"]).dt.year <= 2022, "person_id"]
    referred = set(_read(folder, "referrals")["person_id"])
    who = sorted(set(early) - referred)[:3]
    pop = _read(folder, "population")
    pop.loc[pop["person_id"].isin(who), "year_of_birth"] = 2023
    _write(folder, "population", pop)


def _none_accepted(folder: Path) -> None:
    df = _read(folder, "referrals")
    df["outcome"] = "declined"
    _write(folder, "referrals", df)


def _nothing(folder: Path) -> None:
    return None


# id, edit, extra arguments (validate), expected exit code, what the message must say
CASES: list[tuple[str, Callable[[Path], None], tuple[str, ...], int, tuple[str, ...]]] = [
    ("clean", _nothing, (), 0, ("no problems found",)),
    (
        "window-ends-past-data",
        _nothing,
        ("--end", "2026-03-31"),
        1,
        (
            "gp_appointments: no rows after 2024-03; the study window ends 2026-03 "
            "(24 months missing)",
            "ae_attendances: no rows after 2024-03",
            "admissions: no rows after 2024-03",
            "shorten `end`",
        ),
    ),
    (
        "window-starts-before-data",
        _nothing,
        ("--start", "2020-04-01"),
        1,
        ("gp_appointments: no rows before 2021-04", "(12 months missing)", "move `start` later"),
    ),
    (
        "gp-month-missing",
        _gp_month_missing,
        (),
        1,
        ("gp_appointments: no rows in 2022-06 (1 month)", "supply the missing months"),
    ),
    (
        "gp-extract-of-other-years",
        _gp_years_early,
        (),
        1,
        (
            "gp_appointments: none of the rows kept falls in the study window",
            "outside the study window or the registration spells",
        ),
    ),
    (
        "born-after-events",
        _born_after,
        (),
        0,
        ("dated before the year the person was born", "born_after_event (appointment_date)"),
    ),
    (
        "referrals-header-only",
        _empty_referrals,
        (),
        1,
        ("referrals: the extract has a header but no rows",),
    ),
    (
        "all-ae-codes-unknown",
        _ae_codes,
        (),
        1,
        (
            "ae_attendances.department_type: 828 rows hold values outside the allowed values",
            '"X" (828 rows)',
        ),
    ),
    (
        "all-admissions-other-key",
        _rekey("admissions"),
        (),
        1,
        ("admissions: no row links to a person in the population (281 rows", "different keys"),
    ),
    (
        "half-gp-other-key",
        _rekey("gp_appointments", every=2),
        (),
        1,
        ("gp_appointments: 10407 of 20813 usable rows (50%)", "not in the population extract"),
    ),
    (
        "all-extracts-other-key",
        _rekey_all,
        (),
        1,
        (
            "no row links to a person in the population",
            "71 rows in referrals",
            "20813 rows in gp_appointments",
            "828 rows in ae_attendances",
            "281 rows in admissions",
            "pseudonymised under different keys",
        ),
    ),
    (
        "one-in-fifty-gp-other-key",
        _rekey("gp_appointments", every=50),
        (),
        0,
        ("not_in_population",),
    ),
    (
        "half-gp-other-key-bar-raised",
        _rekey("gp_appointments", every=2),
        ("--max-row-loss", "0.6"),
        0,
        ("more than the default 5%", "within the 60% allowed"),
    ),
    (
        "no-referral-accepted",
        _none_accepted,
        (),
        1,
        ("referrals: none of the 71 referrals kept has the outcome 'accepted'",),
    ),
]


def _case_data(base: Path, tmp: Path, edit: Callable[[Path], None]) -> Path:
    data = tmp / "data"
    shutil.copytree(base, data)
    edit(data)
    return data


def _identifiers(base: Path) -> list[str]:
    ids = _read(base, "population")["person_id"].head(20)
    return [*ids, *_other_key(ids)]


@pytest.mark.parametrize(("edit", "args", "code", "says"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])  # fmt: skip
def test_validate(base: Path, tmp_path: Path, edit, args, code, says) -> None:
    data = _case_data(base, tmp_path, edit)
    window = {"--start": START, "--end": END}
    window.update(dict(zip(args[::2], args[1::2], strict=True)))
    flat = [x for kv in window.items() for x in kv]
    out = cli("validate", "--data", data, *flat, "--out", tmp_path / "qa")
    assert_clean(out, code=code, identifiers=_identifiers(base), says=says)
    assert (tmp_path / "qa").exists() == (code == 0)  # no QA files from a stopped check


def _protocol(tmp: Path, **changes: object) -> Path:
    p = yaml.safe_load((ROOT / "protocols" / "demo.yaml").read_text())
    p.update(ids="pseudonym", report={"formats": ["html"], "engine": "builtin"})
    p["sroi"]["n_sims"] = 50
    p.update(changes)
    path = tmp / "protocol.yaml"
    path.write_text(yaml.safe_dump(p))
    return path


RUN_CASES = [c for c in CASES if c[0] in {
    "window-ends-past-data", "referrals-header-only", "half-gp-other-key",
    "all-extracts-other-key"}]  # fmt: skip


@pytest.mark.parametrize(("edit", "args", "says"), [(c[1], c[2], c[4]) for c in RUN_CASES],
                         ids=[c[0] for c in RUN_CASES])  # fmt: skip
def test_run_stops(base: Path, tmp_path: Path, edit, args, says) -> None:
    """`run` stops where `validate` does, with the same message, and writes no outputs."""
    data = _case_data(base, tmp_path, edit)
    changes = {"end": args[1]} if args else {}
    proto = _protocol(tmp_path, **changes)
    out_dir = tmp_path / "out"
    out = cli("run", proto, "--data", data, "--out", out_dir, "--no-progress")
    assert_clean(out, code=1, identifiers=_identifiers(base), says=says)
    assert "risk_set" not in out.text and "Evaluation finished" not in out.text
    assert_no_partial_output(out_dir)


def test_link_stops_like_validate(base: Path, tmp_path: Path) -> None:
    data = _case_data(base, tmp_path, _rekey("gp_appointments", every=2))
    panel = tmp_path / "out" / "panel.parquet"
    out = cli("link", "--data", data, "--start", START, "--end", END, "--out", panel,
              "--no-progress")  # fmt: skip
    assert_clean(out, code=1, identifiers=_identifiers(base), says=["gp_appointments: 10407"])
    assert not panel.exists()


def test_raised_bar_runs_and_the_summary_says_so(base: Path, tmp_path: Path) -> None:
    """Half the GP file under another key, and the protocol allows 60 %: the run finishes
    and the report's summary states the loss beyond the default bar."""
    data = _case_data(base, tmp_path, _rekey("gp_appointments", every=2))
    proto = _protocol(tmp_path, qa={"max_row_loss": 0.6})
    out_dir = tmp_path / "out"
    out = cli("run", proto, "--data", data, "--out", out_dir, "--no-progress")
    assert_clean(out, code=0, identifiers=_identifiers(base), says=["Evaluation finished"])
    html = (out_dir / "report.html").read_text(encoding="utf-8")
    assert "more than 5% of the usable rows of gp appointments" in html
    assert "raised to 60% (qa.max_row_loss)" in html
    qa = pd.read_csv(out_dir / "bundle" / "tables" / "qa.csv")
    assert qa.loc[qa["rule"] == "row_loss_above_default", "table"].tolist() == ["gp_appointments"]


def test_protocol_default_is_the_validation_default() -> None:
    from spevidence.data.coverage import MAX_ROW_LOSS
    from spevidence.protocol import load_protocol

    proto = load_protocol(ROOT / "protocols" / "demo.yaml")
    assert proto.qa.max_row_loss == MAX_ROW_LOSS == 0.05
    assert "qa" not in proto.to_dict()  # protocols with the default keep their hash
    raised = proto.model_copy(update={"qa": proto.qa.model_copy(update={"max_row_loss": 0.2})})
    assert raised.to_dict()["qa"] == {"max_row_loss": 0.2}
