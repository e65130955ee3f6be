"""No NHS number, pseudonym or key in logs, console output, errors or any file written
outside the panel, for `spevidence validate`, `link` and `pseudonymise` (issue 5).

The extracts hold raw NHS numbers plus defects that make the commands talk about rows
(an invalid NHS number, a person missing from the population, an unreadable date), so
every message path that could quote a value is exercised. Everything the commands print
or log, and every file they write, is scanned for: each raw NHS number (valid or not),
each pseudonym the key gives them, and the key itself (text and hex).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest_link import END, START, tiny_world, write_extracts

from spevidence.cli import main
from spevidence.identity import Key, is_valid_nhs_number, pseudonymise

SECRET = "leak-scan-key-0123456789-abcdefghijklmnopqrstuv"
NHS = {"p1": "9434765919", "p2": "4010232137", "p3": "9990000018",
       "p4": "6541239878", "p5": "1234567881"}  # fmt: skip
INVALID = "9434765918"  # wrong check digit
GHOST = "4010232145"  # a valid number that is not in the population


def _write_world(folder: Path) -> Path:
    tables = tiny_world()
    for df in tables.values():
        df["person_id"] = df["person_id"].map(NHS)
    write_extracts(folder, tables, fmt="csv")
    with open(folder / "gp_appointments.csv", "a") as fh:  # columns as GP_COLS
        fh.write(f"{INVALID},2021-02-03,attended,gp,telephone\n")
        fh.write(f"{GHOST},2021-02-03,attended,gp,telephone\n")
        fh.write(f"{NHS['p1']},31/02/2021,attended,gp,telephone\n")  # not a calendar date
    return folder


def _forbidden(key: Key) -> list[str]:
    raw = [*NHS.values(), INVALID, GHOST]
    spaced = [f"{v[:3]} {v[3:6]} {v[6:]}" for v in raw]
    tokens = [pseudonymise(v, key) for v in raw if is_valid_nhs_number(v)]
    return [*raw, *spaced, *tokens, SECRET, SECRET.encode().hex()]


def _text(path: Path) -> str:
    if path.suffix == ".parquet":
        return pq.read_table(path).to_pandas().to_csv()
    return path.read_bytes().decode("latin-1")


def _leaks(text: str, forbidden: list[str]) -> list[str]:
    return [f for f in forbidden if f in text]


@pytest.fixture()
def run(tmp_path, monkeypatch, caplog, capsys):
    """Run the CLI entry point (as a user would) from an empty working folder,
    capturing its stdout, stderr and every log record."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SPEVIDENCE_KEY", raising=False)
    monkeypatch.setenv("COLUMNS", "200")
    caplog.set_level(logging.DEBUG)
    key_file = tmp_path / "key.txt"
    key_file.write_text(SECRET + "\n")
    data = _write_world(tmp_path / "extracts")
    inputs = {key_file, *data.iterdir()}
    outputs: list[str] = []

    def invoke(*args: str, ok: bool = True) -> str:
        monkeypatch.setattr("sys.argv", ["spevidence", *args])
        try:
            main()
            code = 0
        except SystemExit as e:
            code = int(e.code or 0)
        cap = capsys.readouterr()
        text = cap.out + cap.err
        assert (code == 0) == ok, text
        if not ok:
            assert code == 1 and "Traceback" not in text, text
        outputs.append(text)
        return text

    return invoke, tmp_path, key_file, data, inputs, outputs, caplog


def test_validate_link_and_pseudonymise_never_show_an_identifier(run):
    invoke, tmp, key_file, data, inputs, outputs, caplog = run
    forbidden = _forbidden(Key(SECRET.encode()))
    common = ["--data", str(data), "--start", str(START), "--end", str(END),
              "--ids", "nhs_number", "--key-file", str(key_file)]  # fmt: skip
    # 3 of 12 GP rows are defects here (the 5 % bar would stop): allowed, to see them
    loose = ["--max-row-loss", "0.5"]
    text = invoke("validate", *common, *loose, "--out", str(tmp / "qa"))
    # the defects were found and reported (so the message paths ran) ...
    assert "invalid NHS number" in text and "not in the population" in text
    assert "cannot be read" in text
    panel = tmp / "out" / "panel.parquet"
    invoke("link", *common, *loose, "--out", str(panel))
    pseudo = tmp / "pseudo"
    pseudo.mkdir()
    for f in sorted(data.iterdir()):
        invoke("pseudonymise", str(f), str(pseudo / f.name), "--key-file", str(key_file))
    # errors: a key that is too short, and a date format that reads nothing
    weak = tmp / "weak.txt"
    weak.write_text("short")
    inputs.add(weak)
    invoke("link", *common[:-1], str(weak), "--out", str(tmp / "x.parquet"), ok=False)
    bad = tmp / "bad"  # every GP date unreadable: validation stops with an error
    bad.mkdir()
    for f in data.iterdir():
        txt = f.read_text()
        if f.name == "gp_appointments.csv":
            txt = re.sub(r"2021-\d\d-\d\d", "31/02/2021", txt)
        (bad / f.name).write_text(txt)
        inputs.add(bad / f.name)
    err = invoke("link", *common[:1], str(bad), *common[2:], "--out", str(tmp / "y.parquet"),
                 ok=False)  # fmt: skip
    assert "cannot be read" in err
    invoke("pseudonymise", str(data / "population.csv"), str(tmp / "z.csv"), "--key-file",
           str(weak), ok=False)  # fmt: skip

    console = "\n".join(outputs)
    logs = "\n".join(r.getMessage() for r in caplog.records)
    assert _leaks(console, forbidden) == []
    assert _leaks(logs, forbidden) == []
    assert not re.search(r"\b\d{10}\b", console + logs)

    written = [p for p in tmp.rglob("*") if p.is_file() and p not in inputs]
    products = {panel, *(pseudo / f.name for f in data.iterdir())}
    assert (tmp / "qa" / "qa.csv") in written and panel in written
    for path in written:
        content = _text(path)
        if path in products:
            # the panel and the pseudonymised extracts carry pseudonyms by design, but
            # never a raw NHS number or the key
            raw_or_key = [f for f in forbidden if len(f) != 64]
            assert _leaks(content, raw_or_key) == [], path.name
        else:
            assert _leaks(content, forbidden) == [], path.name
            assert not re.search(r"\b\d{10}\b", content), path.name
    # nothing else was left behind: no spill folders, logs or warehouse directories
    assert {p.relative_to(tmp).parts[0] for p in written} == {"qa", "out", "pseudo"}
    # and the panel does hold the pseudonyms (the scan above had something to find)
    ids = set(pq.read_table(panel).column("person_id").to_pylist())
    assert ids and ids <= set(forbidden)
