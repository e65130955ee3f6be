"""The memory of a whole run: its limit, the estimate before the heavy stages, a watchdog.

``--memory-limit`` (or ``SPEVIDENCE_MEMORY_LIMIT``, :data:`LIMIT_ENV`) caps the resident
memory of the whole run, this process and its children (a Spark JVM, the report's
kernel), not only DuckDB's (which reads the same variable as its own limit). Two layers
keep a run that cannot fit from being killed by the operating system (exit 137, nothing
said):

1. :func:`check_fits`, after the extracts are read: the memory the design needs is
   estimated from people × periods (:data:`MODELS`, measured) and the run stops with one
   paragraph (stage, people, periods, need, limit, fix) if it exceeds the limit, or,
   with no limit given, if it clearly exceeds the memory the machine has available.
2. :func:`guard`, around the run: a :class:`Watchdog` thread samples the resident memory
   of the process tree and, past the limit, stops the run at once (a signal to the main
   thread, which Python and DuckDB check between steps) or at the next stage boundary
   (:func:`checkpoint`), raising :class:`~spevidence.errors.MemoryLimitError` naming the
   stage and the peak. Runs are atomic (:mod:`spevidence._atomic`): nothing half-written
   is left; the one step that must not be interrupted (moving the outputs into place) is
   run under :func:`held`.
"""

from __future__ import annotations

import os
import re
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psutil

from spevidence.errors import MemoryLimitError, SpevidenceError

LIMIT_ENV = "SPEVIDENCE_MEMORY_LIMIT"  # also DuckDB's limit (spevidence.data duckdb_connect)
GIB = 2**30
_UNITS = {"k": 1000, "m": 1000**2, "g": 1000**3, "t": 1000**4}  # DuckDB's: KB = 1000 B
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt])(i?)b", re.I)
SAMPLE_SECONDS = 0.25  # how often the watchdog samples the resident memory
# with no limit given, stop only when the estimate exceeds the available memory this much
CLEARLY = 1.25


@dataclass(frozen=True)
class MemoryModel:
    """Peak resident memory of a design's run: ``fixed + per_period × people × periods``.

    ``in_engine``: the person-level data stay in the engine (DuckDB spills to disk beyond
    its limit, Spark runs in its own processes), so the estimate does not bound the run
    and is not checked (the watchdog still is). ``measured`` says where the constants
    come from.
    """

    per_period: float  # bytes per person-period
    fixed: float  # bytes: libraries, DuckDB, report rendering
    in_engine: bool
    measured: str

    def need(self, people: int, periods: int) -> float:
        return self.fixed + self.per_period * people * periods


# The per-design constants, in one place. Update them when a design's memory changes
# (benchmarks/bench_run.py measures the peak of the whole process tree).
MODELS = {
    "matched": MemoryModel(
        per_period=740,
        fixed=2 * GIB,
        in_engine=False,
        measured="kent-ae at 100k and 300k people x 48 months: +5.9 GiB for +8.5 M "
        "person-months; about 2 GiB at 50k (benchmarks/notes/run_memory_2026-12.md)",
    ),
    "staggered": MemoryModel(
        per_period=600,
        fixed=2 * GIB,
        in_engine=True,
        measured="national-staggered at 1 M people x 24 quarters: 15.5 GiB with DuckDB's "
        "default limit (issue 21); 4.8 GiB at 300k (benchmarks/notes/run_memory_2026-12.md)",
    ),
}


def parse_size(text: str) -> int:
    """Bytes of a size such as ``4GB`` (10^9), ``4GiB`` (2^30) or ``500MB``, as DuckDB
    reads them."""
    m = _SIZE.fullmatch(text.strip())
    if m is None:
        raise SpevidenceError(
            f"{LIMIT_ENV} / --memory-limit must be a size such as 4GB or 500MB, not {text!r}."
        )
    unit = m.group(2).lower()
    base = 1024 ** ("kmgt".index(unit) + 1) if m.group(3) else _UNITS[unit]
    return int(float(m.group(1)) * base)


def run_limit() -> int | None:
    """The run's memory limit in bytes (``--memory-limit`` / :data:`LIMIT_ENV`), if set."""
    text = os.environ.get(LIMIT_ENV, "").strip()
    return parse_size(text) if text else None


def gib(n: float) -> str:
    """``n`` bytes in GiB, to two decimals below 10 GiB."""
    return f"{n / GIB:.{2 if n < 10 * GIB else 1}f} GiB"


def shown(limit: int) -> str:
    """The limit as the user gave it, and in GiB: ``4GB (3.73 GiB)``."""
    return f"{os.environ.get(LIMIT_ENV, '').strip() or limit} ({gib(limit)})"


def tree_rss(proc: psutil.Process | None = None) -> int:
    """Resident bytes of ``proc`` (this process by default) and all its children."""
    proc = proc or psutil.Process()
    total = 0
    for p in (proc, *proc.children(recursive=True)):
        try:
            total += p.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue  # a child that just ended
    return total


def check_fits(
    design: str, *, people: int, periods: int, period: str, stage: str, limit: int | None
) -> None:
    """Stop before ``stage`` when the design's estimated need exceeds ``limit`` (or, with
    no limit, clearly exceeds the memory available): one paragraph, before anything is
    killed."""
    model = MODELS[design]
    if model.in_engine:
        return
    need = model.need(people, periods)
    if limit is not None:
        if need <= limit:
            return
        against = f"more than the --memory-limit of {shown(limit)}"
    else:
        available = psutil.virtual_memory().available + tree_rss()
        if need <= CLEARLY * available:
            return
        against = f"more than the {gib(available)} this machine has available"
    raise MemoryLimitError(
        f"This run would need about {gib(need)} of memory, {against}, so it stopped before "
        f"the stage '{stage}' instead of being killed part-way: {people:,} people x "
        f"{periods} {period}s, at about {model.per_period:.0f} bytes per person-{period} "
        f"plus {gib(model.fixed)} for the {design} design (measured: {model.measured}). "
        "No report or bundle was written. Fix: give a larger --memory-limit (at least "
        f"{gib(need)}), run on a machine with more memory, or evaluate fewer {period}s (a "
        "later start or an earlier end in the protocol)."
    )


class _Stop(BaseException):
    """Raised in the main thread when the watchdog trips (a BaseException, so that no
    ``except Exception`` on the way swallows it); :func:`guard` turns it into a
    MemoryLimitError."""


class Watchdog:
    """Samples the resident memory of this process tree every :data:`SAMPLE_SECONDS`;
    past ``limit`` it records the stage (``where()``) and stops the main thread."""

    def __init__(self, limit: int, where: Callable[[], str]) -> None:
        self.limit = limit
        self.where = where
        self.peak = 0
        self.stage: str | None = None  # set when tripped
        self.armed = True  # False while a step that must not be interrupted runs
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="spevidence-memory", daemon=True)
        self._proc = psutil.Process()

    @property
    def tripped(self) -> bool:
        return self.stage is not None

    def _watch(self) -> None:
        while not self._done.wait(SAMPLE_SECONDS):
            self.peak = max(self.peak, tree_rss(self._proc))
            if self.peak > self.limit and not self.tripped:
                self.stage = self.where()
                if self.armed:
                    self.interrupt()

    def interrupt(self) -> None:
        """Stop the main thread at its next check (a signal: see :func:`guard`)."""
        import _thread

        _thread.interrupt_main(_SIGNAL)

    def error(self) -> MemoryLimitError:
        return MemoryLimitError(
            f"The run stopped in the stage '{self.stage}': the resident memory of spevidence "
            f"and its child processes reached {gib(self.peak)}, above the --memory-limit of "
            f"{shown(self.limit)}. No report or bundle was written (the outputs are written "
            "together at the end). Fix: give a larger --memory-limit, run on a machine with "
            "more memory, or evaluate fewer periods (a later start or an earlier end in the "
            "protocol)."
        )


_SIGNAL = getattr(signal, "SIGUSR1", signal.SIGINT)
_current: Watchdog | None = None


def _on_signal(signum: int, frame: Any) -> None:
    if _current is not None and _current.tripped and _current.armed:
        raise _Stop


@contextmanager
def guard(limit: int | None, where: Callable[[], str]) -> Iterator[Watchdog | None]:
    """Watch the memory of the block against ``limit`` (nothing when ``None``); a run
    past it ends with a MemoryLimitError naming the stage (``where()``) and the peak."""
    global _current
    if limit is None:
        yield None
        return
    dog = Watchdog(limit, where)
    main = threading.current_thread() is threading.main_thread()
    old = signal.signal(_SIGNAL, _on_signal) if main else None
    dog.armed = main  # elsewhere no signal can reach us: stage boundaries only
    _current = dog
    dog._thread.start()
    try:
        yield dog
    except BaseException:
        if dog.tripped:
            raise dog.error() from None
        raise
    finally:
        _current = None
        dog._done.set()
        dog._thread.join()
        if old is not None:
            signal.signal(_SIGNAL, old)


def checkpoint() -> None:
    """A safe point: stop here if the watchdog has tripped."""
    if _current is not None and _current.tripped:
        raise _Stop


@contextmanager
def held() -> Iterator[None]:
    """Run the block uninterrupted by the watchdog (e.g. moving the outputs into place)."""
    dog = _current
    if dog is None:
        yield
        return
    armed, dog.armed = dog.armed, False
    try:
        yield
    finally:
        dog.armed = armed
