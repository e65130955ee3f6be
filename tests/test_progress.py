"""Progress on standard error (issue 21): plain lines, one per stage start and end, when it
is not a terminal (a batch job's log); a bar on a terminal. And the memory watchdog
(spevidence.memory) that stops the main thread of a run past its limit.

The commands run in real subprocesses, their standard error a pipe (tests/hostile.py:cli)
or a pseudo-terminal.
"""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hostile import assert_clean, cli

from spevidence.errors import MemoryLimitError
from spevidence.memory import guard, held, parse_size, tree_rss
from spevidence.pipeline.shared import STAGES

ROOT = Path(__file__).resolve().parents[1]
LINE = re.compile(r"^spevidence: \[\d+:\d\d:\d\d\.\d\] (start|done ) (\d+)/(\d+) (.*)$")


def _stage_lines(stderr: str) -> list[tuple[str, int, str]]:
    """(start|done, stage number, rest of the line) of every plain progress line."""
    found = (LINE.match(line) for line in stderr.splitlines())
    return [(m.group(1).strip(), int(m.group(2)), m.group(4)) for m in found if m]


@pytest.fixture(scope="module")
def staggered_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A small synthetic population for the staggered protocol, and synth's stderr."""
    data = tmp_path_factory.mktemp("progress") / "data"
    args = ["--scenario", "staggered-national", "--persons", "1500", "--seed", "5"]
    done = cli("synth", *args, "--out", data)
    assert done.code == 0, done.text
    return data, done.stderr


@pytest.mark.slow
def test_run_prints_a_line_per_stage_start_and_end_when_stderr_is_a_pipe(
    staggered_data: tuple[Path, str], tmp_path: Path
) -> None:
    data, _ = staggered_data
    proto = ROOT / "protocols" / "national-staggered.yaml"
    out = cli("run", proto, "--data", data, "--out", tmp_path / "out", "--format", "html")
    ids = pd.read_parquet(data / "population.parquet", columns=["person_id"])["person_id"]
    assert_clean(out, code=0, identifiers=ids.head(50).tolist())
    labels = STAGES["staggered"]
    expected = [(kind, i + 1) for i in range(len(labels)) for kind in ("start", "done")]
    lines = _stage_lines(out.stderr)
    assert [(k, n) for k, n, _ in lines] == expected
    # the staggered design's own stage names, not the matched design's
    for (_, n, rest), label in zip(lines[::2], labels, strict=True):
        assert rest == label, (n, rest)
    assert "Match comparators" not in out.stderr
    done = {n: rest for k, n, rest in lines if k == "done"}
    assert re.search(r"1,500 people x 24 quarters", done[1]), done[1]
    assert re.search(r"1,500 people in the cohort panel", done[3]), done[3]
    assert all("resident" in rest for rest in done.values())
    assert "\r" not in out.stderr and "━" not in out.stderr  # no redrawn bar in a log
    assert (tmp_path / "out" / "report.html").is_file()


def test_synth_link_and_activity_print_plain_lines_when_stderr_is_a_pipe(
    staggered_data: tuple[Path, str], tmp_path: Path
) -> None:
    data, synth_err = staggered_data
    assert re.search(r"^spevidence: \[.*\] start synth staggered-national: 1,500 people$",
                     synth_err, re.M)  # fmt: skip
    assert re.search(r"^spevidence: \[.*\] done  synth staggered-national: 1,500 people$",
                     synth_err, re.M)  # fmt: skip
    link = cli("link", "--data", data, "--start", "2018-04-01", "--end", "2024-03-31",
               "--out", tmp_path / "panel.parquet", "--period", "quarter")  # fmt: skip
    assert_clean(link, code=0)
    assert [(k, n) for k, n, _ in _stage_lines(link.stderr)] == [
        (k, n) for n in (1, 2, 3) for k in ("start", "done")
    ]
    act = cli("activity", "--data", data, "--out", tmp_path / "act")
    assert_clean(act, code=0)
    assert [(k, n) for k, n, _ in _stage_lines(act.stderr)][-1] == ("done", 3)


def test_a_terminal_gets_the_bar_not_lines(tmp_path: Path) -> None:
    main, sub = pty.openpty()
    env = {**os.environ, "COLUMNS": "120", "TERM": "xterm"}
    args = ["synth", "--scenario", "demo", "--persons", "3000", "--out", str(tmp_path / "d")]
    proc = subprocess.Popen(
        [sys.executable, "-m", "spevidence", *args],
        stdout=subprocess.DEVNULL,
        stderr=sub,
        env=env,
    )
    seen = b""
    try:  # read while it runs (a full terminal buffer would block it)
        while proc.poll() is None or select.select([main], [], [], 0)[0]:
            if select.select([main], [], [], 0.1)[0]:
                seen += os.read(main, 65536)
    finally:
        os.close(sub)
        os.close(main)
    assert proc.returncode == 0
    assert b"synth demo" in seen  # the bar's label
    assert b"spevidence: [" not in seen  # no plain lines on a terminal


def test_watchdog_stops_the_main_thread_part_way_through_a_stage() -> None:
    limit = tree_rss() + 150 * 2**20
    chunks: list[np.ndarray] = []
    with pytest.raises(MemoryLimitError) as err, guard(limit, lambda: "Allocating"):
        for _ in range(200):  # 200 x 16 MiB if never stopped
            chunks.append(np.ones(2 * 2**20))
            time.sleep(0.02)
    assert len(chunks) < 200  # stopped inside the loop, not at its end
    assert "stopped in the stage 'Allocating'" in str(err.value)
    chunks.clear()


def test_watchdog_interrupts_a_duckdb_query_part_way() -> None:
    import duckdb

    con = duckdb.connect()
    limit = tree_rss() + 300 * 2**20
    sql = "CREATE TABLE t AS SELECT range::VARCHAR || repeat('x', 30) AS s FROM range(100000000)"
    stopped = pytest.raises(MemoryLimitError, match="stopped in the stage 'Query'")
    with stopped, guard(limit, lambda: "Query"):
        con.execute(sql)  # about 4 GiB if it ran to the end
    tables = con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 't'")
    assert tables.fetchone() == (0,)  # the query was stopped, not finished


def test_watchdog_does_not_interrupt_a_held_step() -> None:
    limit = tree_rss() + 100 * 2**20
    with guard(limit, lambda: "Moving the outputs into place") as dog:
        with held():
            block = np.ones(40 * 2**20)  # 320 MiB
            time.sleep(1.0)  # several samples past the limit
        assert dog is not None and dog.tripped
        del block
    # the held step finished and the block ended normally: nothing was raised


@pytest.mark.parametrize(
    ("text", "size"),
    [("4GB", 4 * 10**9), ("500MB", 5 * 10**8), ("1.5 GiB", 3 * 2**29), ("2kib", 2048)],
)
def test_memory_limit_sizes_read_as_duckdb_reads_them(text: str, size: int) -> None:
    assert parse_size(text) == size
