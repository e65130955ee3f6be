"""Progress of a long command on standard error: a bar on a terminal, plain lines in a log.

On a terminal (or a notebook) :class:`Steps` draws one rich bar over a command's stages.
When standard error is a pipe or a file (a batch job, ``2> run.log``) a redrawn bar shows
nothing useful, so it prints one plain line as each stage starts and ends instead, with
the time since the command started, the stage's own time, the resident memory of the
process and its children, and, where the caller knows it cheaply, the size worked on
(``"48,000 people × 48 months"``: counts only, never an identifier). Each line is flushed
at once, so ``tail -f`` of the log shows where the run is.

Progress goes to standard error only: it never enters an output file, so outputs stay
byte-identical whatever the terminal.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

import psutil
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from spevidence.memory import checkpoint, gib, tree_rss

PREFIX = "spevidence:"  # every plain progress line starts with it (easy to grep in a log)
_STARTED = psutil.Process().create_time()  # seconds since the epoch


def on_terminal(stream: TextIO | None = None) -> bool:
    """Whether ``stream`` (standard error by default) is shown live: a terminal or a
    notebook, where a redrawn bar reads well. Otherwise progress is printed as lines."""
    console = Console(file=stream or sys.stderr)
    return bool(console.is_terminal or console.is_jupyter)


class Lines:
    """Plain progress lines on ``stream`` (standard error by default), each flushed."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream

    def say(self, text: str) -> None:
        """One line: the time since the process started (its imports included), then
        ``text``."""
        stream = self.stream or sys.stderr
        print(f"{PREFIX} [{_clock(time.time() - _STARTED)}] {text}", file=stream, flush=True)


class Steps:
    """The progress over a command's stages (``labels``), on standard error.

    ``step(done)`` marks ``done`` stages finished and starts the next; ``note(text)``
    prints a line. Nothing is shown with ``enabled=False``. :attr:`current` names the
    stage running (for error messages, e.g. :mod:`spevidence.memory`).
    """

    def __init__(self, enabled: bool, labels: tuple[str, ...]) -> None:
        self.enabled = enabled
        self.labels = labels
        self.done = 0
        self._progress: Progress | None = None
        self._task: Any = None
        self._lines: Lines | None = None
        self._started = time.monotonic()

    @property
    def current(self) -> str:
        """The stage running (the last one once all are done)."""
        return self.labels[min(self.done, len(self.labels) - 1)]

    @contextmanager
    def run(self) -> Iterator[Steps]:
        """Show the progress while the block runs: a bar on a terminal, else lines."""
        self._started = time.monotonic()
        if not self.enabled:
            yield self
        elif on_terminal():
            with _bar() as progress:
                self._progress = progress
                self._task = progress.add_task(self.labels[0], total=len(self.labels))
                yield self
        else:
            self._lines = Lines()
            self._start_line()
            yield self

    def note(self, text: str) -> None:
        """Print a line (above the bar on a terminal)."""
        if self._progress is not None:
            self._progress.console.print(text)
        elif self._lines is not None:
            self._lines.say(text)

    def step(self, done: int, size: str = "") -> None:
        """Mark ``done`` stages finished and name the next; ``size`` says what the stage
        just finished worked on (counts only). A stage boundary is a safe point to stop a
        run past its memory limit (:func:`spevidence.memory.checkpoint`); the end is not."""
        if done < len(self.labels):
            checkpoint()
        if self._lines is not None and done > self.done:
            took = _clock(time.monotonic() - self._started)
            what = f"; {size}" if size else ""
            self._lines.say(f"done  {self._numbered()} ({took}{what}; resident {gib(tree_rss())})")
        self.done = max(self.done, done)
        self._started = time.monotonic()
        if self._lines is not None and done < len(self.labels):
            self._start_line()
        if self._progress is not None:
            label = self.labels[done] if done < len(self.labels) else "Done"
            self._progress.update(self._task, completed=done, description=label)

    def _numbered(self) -> str:
        return f"{min(self.done, len(self.labels) - 1) + 1}/{len(self.labels)} {self.current}"

    def _start_line(self) -> None:
        assert self._lines is not None
        self._lines.say(f"start {self._numbered()}")


def _bar() -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
    )


def _clock(seconds: float) -> str:
    """``h:mm:ss.s`` of a duration."""
    m, s = divmod(seconds, 60)
    h, m = divmod(int(m), 60)
    return f"{h}:{m:02d}:{s:04.1f}"
