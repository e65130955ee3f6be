"""Shared helpers of the hostile-input (fuzz) suite: run a command as a user would, then
assert what every hostile case must hold (issue 19):

- the exit code is the documented one (1: a problem with the input; 2: bad usage);
- no traceback and no raw exception name reaches the user;
- no identifier (NHS number, pseudonym, key) appears in stdout or stderr;
- no half-written output is left behind (no report that looks current, no truncated file).

Each `tests/test_hostile_*.py` file holds one area's table of cases and uses these.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

# What a Python traceback or an unhandled exception looks like on a terminal.
_TRACE = re.compile(
    r"Traceback \(most recent call last\)|^\s*File \".*\", line \d+|"
    r"\b(?:[A-Z]\w*Error|\w+Exception): |\x1b\[",
    re.MULTILINE,
)
# Ten digits in a row (an NHS number), alone or in 3-3-4 groups.
_NHS = re.compile(r"(?<!\d)\d{3}[ -]?\d{3}[ -]?\d{4}(?!\d)")


@dataclass(frozen=True)
class Outcome:
    """What a user saw: exit code and both streams."""

    code: int
    stdout: str
    stderr: str

    @property
    def text(self) -> str:
        return self.stdout + self.stderr


def cli(*args: str | Path, cwd: Path | None = None, timeout: float = 600) -> Outcome:
    """Run ``spevidence ARGS`` in a subprocess, its output not a terminal."""
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}
    r = subprocess.run(
        [sys.executable, "-m", "spevidence", *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
        cwd=cwd,
        env=env,
        timeout=timeout,
    )
    return Outcome(r.returncode, r.stdout, r.stderr)


def assert_clean(
    out: Outcome,
    *,
    code: int = 1,
    identifiers: Iterable[str] = (),
    says: Iterable[str] = (),
) -> None:
    """The case ended as documented: exit ``code``, no traceback, no identifier, and the
    message says each of ``says`` (case-insensitive)."""
    where = f"exit {out.code}\n--- stdout\n{out.stdout[-3000:]}\n--- stderr\n{out.stderr[-3000:]}"
    assert out.code == code, f"expected exit {code}; {where}"
    m = _TRACE.search(out.text)
    assert m is None, f"traceback or raw exception ({m.group(0) if m else ''!r}); {where}"
    for ident in identifiers:
        assert ident not in out.text, f"an identifier reached the user; {where}"
    if list(identifiers):
        assert _NHS.search(out.text) is None, f"ten digits (an NHS number?) in the output; {where}"
    low = out.text.lower()
    for s in says:
        assert s.lower() in low, f"the message does not say {s!r}; {where}"


def assert_no_partial_output(out_dir: Path) -> None:
    """A failed run leaves no report or bundle that looks current, and no temporary folder."""
    if not out_dir.exists():
        return
    names = {p.name for p in out_dir.iterdir()}
    assert not names & {"report.html", "report.pdf", "report.docx", "bundle"}, (
        f"a failed run left outputs that look current: {sorted(names)}"
    )
