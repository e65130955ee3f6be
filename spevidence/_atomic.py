"""Atomic outputs: a run's bundle and reports appear together, complete, or not at all.

``spevidence run`` holds a lock on ``OUT/.spevidence.lock`` (``fcntl.flock``) for the whole
run, so a second run into the same folder stops at once and names the first one's process.
The bundle and the reports are written into a staging folder inside ``OUT``
(``OUT/.spevidence-staging-PID``: the same file system, so moving them into place cannot
run out of space) and moved into place only when everything is written (:func:`commit`):
the old reports go first, then the old bundle is moved aside, the new bundle and reports
are renamed in and the old bundle is deleted. Killed at any moment, ``OUT`` never holds a
report beside a bundle it was not made from. The next run, holding the lock (so no run
that wrote there is alive), removes what a killed run left: staging and set-aside folders
(:func:`locked_output`) and partial stages of the run cache.

Temporary folders outside ``OUT`` (the report's working folder, DuckDB's spill folder) are
named ``spevidence-KIND-PID-…`` (:func:`private_tmpdir`); one whose process is gone is
removed when the next one of its kind is made.

A write that fails because of the disk, not the data (full, over quota, file too large,
read-only, permission denied), becomes one :class:`~spevidence.errors.SpevidenceError`
naming the file, the stage and the fix (:func:`disk_errors`).
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from spevidence.errors import SpevidenceError

try:  # POSIX; elsewhere runs are not locked
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

LOCK = ".spevidence.lock"
STAGING = ".spevidence-staging-"
ASIDE = ".spevidence-old-"
CACHE_DIR = ".spevidence-cache"  # the run cache (spevidence._runcache)
REPORT_STAMP = "report_stamp.json"  # written by spevidence.report.render
REPORT_NAMES = tuple(f"report.{f}" for f in ("html", "pdf", "docx"))
# what a bundle folder may hold (spevidence.bundle); anything else is not ours to replace
BUNDLE_ENTRIES = frozenset(
    {"manifest.json", "tables", "figures", "protocol.yaml", "disclosure_log.csv"}
    | {"disclosure_log.parquet"}
)
_TMP_NAME = re.compile(r"^spevidence-([a-z]+)-(\d+)-")

_DISK = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is used up",
    errno.EFBIG: "the file is larger than this process may write (file-size limit, ulimit -f)",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission was denied",
    errno.EPERM: "permission was denied",
}
_FIX = {
    errno.ENOSPC: "free space on that disk or choose an --out folder on another disk",
    errno.EDQUOT: "free space within your quota or choose an --out folder on another disk",
    errno.EFBIG: "raise the file-size limit (ulimit -f) or run where it is unlimited",
    errno.EROFS: "choose an --out folder on a writable disk",
    errno.EACCES: "choose an --out folder you may write to, or fix its permissions",
    errno.EPERM: "choose an --out folder you may write to, or fix its permissions",
}


def disk_errno(exc: BaseException) -> int | None:
    """The errno of a write that failed because of the disk, else ``None``.

    ``OSError`` carries it; pyarrow's and DuckDB's IO errors only say it in their message
    ("[Errno 28]", "No space left on device")."""
    if isinstance(exc, SpevidenceError):
        return None
    code = exc.errno if isinstance(exc, OSError) else None
    return code if code in _DISK else disk_errno_in(str(exc))


def disk_errno_in(text: str) -> int | None:
    """The disk errno a tool's message reports ("[Errno 28]", "File too large"), or ``None``."""
    m = re.search(r"errno (\d+)", text, re.IGNORECASE)
    if m and int(m.group(1)) in _DISK:
        return int(m.group(1))
    return next((c for c in _DISK if os.strerror(c).lower() in text.lower()), None)


def tool_disk_error(tool: str, text: str, returncode: int = 1) -> SpevidenceError | None:
    """A clear error when ``tool`` (pandoc, typst) failed because a disk is full or a file
    was over the size limit (killed by SIGXFSZ), else ``None``. Tools write in the report's
    temporary folder, so the fix names it."""
    code = errno.EFBIG if returncode == -getattr(signal, "SIGXFSZ", 0) else disk_errno_in(text)
    if code is None or code in (errno.EACCES, errno.EPERM):
        return None
    where = Path(tempfile.gettempdir())
    return disk_error(
        code,
        stage=f"rendering the report with {tool}",
        shown=where,
        hint=f"or set TMPDIR to a folder with space ({tool} works in {where})",
    )


def disk_error(
    code: int, *, stage: str, shown: Path | None, hint: str = "", atomic: bool = True
) -> SpevidenceError:
    """One paragraph: what could not be written, why, what is left, and the fix."""
    what = f"{shown}" if shown is not None else "a file"
    left = (
        "No partial output was kept: the previous outputs, if any, are unchanged."
        if atomic
        else "Files this command wrote may be incomplete: delete them."
    )
    return SpevidenceError(
        f"Could not write {what} while {stage}: {_DISK[code]} ({os.strerror(code)}). {left} "
        f"Fix: {_FIX[code]}{', ' + hint if hint else ''}, then run again."
    )


@contextmanager
def disk_errors(
    stage: str, hint: str = "", *, staging: Path | None = None, out: Path | None = None
) -> Iterator[None]:
    """Turn a disk failure inside the block into a clear error naming the file.

    With ``out`` given, only failures on files under ``out`` (or unnamed ones) are turned;
    a file inside ``staging`` is shown under its final place in ``out``."""
    try:
        yield
    except Exception as exc:
        code = disk_errno(exc)
        name = getattr(exc, "filename", None)
        shown = Path(name) if isinstance(name, str | os.PathLike) else out
        if code is None or (out is not None and shown is not None and not _under(shown, out)):
            raise
        if shown is not None and staging is not None and out is not None and _under(shown, staging):
            shown = out / shown.relative_to(staging)
        raise disk_error(code, stage=stage, shown=shown, hint=hint) from None


def _under(path: Path, folder: Path) -> bool:
    return path == folder or path.is_relative_to(folder)


def _holder(lock: Path) -> str:
    try:
        pid = lock.read_text(encoding="ascii").strip()
    except OSError:
        return ""
    return f" (process {pid})" if pid.isdigit() else ""


@contextmanager
def locked_output(out: Path) -> Iterator[Path]:
    """Lock the output folder ``out`` for this process and clear what killed runs left.

    Raises a clear error at once when another run holds the folder, when ``out`` is a file,
    or when ``out/bundle`` is a folder that is not a bundle (so not ours to replace).
    """
    out = Path(out)
    with disk_errors("creating the output folder", out=out):
        if out.exists() and not out.is_dir():
            raise SpevidenceError(f"--out {out} is a file, not a folder: choose a folder.")
        out.mkdir(parents=True, exist_ok=True)
        check_bundle_folder(out / "bundle")
        lock = out / LOCK
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise SpevidenceError(
                    f"Another spevidence run is writing to {out}{_holder(lock)}. Wait for it to "
                    "finish, or give this run another --out folder; two runs must not share one."
                ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode("ascii"))
        _sweep_output(out)
        yield out
    finally:
        os.close(fd)  # releases the lock


def check_bundle_folder(bundle: Path) -> None:
    """``bundle`` is absent, a bundle, or a half-written one (bundle files without a
    manifest, left by a killed run); anything else is refused."""
    if not bundle.exists() or (bundle / "manifest.json").is_file():
        return
    if not bundle.is_dir() or any(p.name not in BUNDLE_ENTRIES for p in bundle.iterdir()):
        raise SpevidenceError(
            f"{bundle} exists and is not a spevidence bundle (it holds other files): refusing "
            "to replace it. Move it away or choose another --out folder."
        )


def _sweep_output(out: Path) -> None:
    """Remove staging and set-aside folders of killed runs (the lock is held: none is alive)."""
    for p in out.iterdir():
        if p.name.startswith((STAGING, ASIDE)) and p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        elif p.name.startswith(".") and ".partial-" in p.name and p.is_file():  # atomic_file
            p.unlink(missing_ok=True)
    sweep_partial(out)


def sweep_partial(out: Path) -> None:
    """Remove half-written stages that a killed run left in ``out``'s run cache (call with
    the output folder locked, :func:`locked_output`: then none is being written). They hold
    pseudonyms."""
    root = Path(out) / CACHE_DIR
    if not root.is_dir():
        return
    for p in root.iterdir():
        # this version's prefix, and the ".STAGE-" of earlier versions
        if p.is_dir() and p.name.startswith("."):
            shutil.rmtree(p, ignore_errors=True)


@contextmanager
def staging(out: Path) -> Iterator[Path]:
    """A fresh staging folder inside ``out``, removed when the block ends (moved-out
    outputs stay where :func:`commit` put them)."""
    stage = out / f"{STAGING}{os.getpid()}"
    shutil.rmtree(stage, ignore_errors=True)
    try:
        with disk_errors("preparing the outputs", staging=stage, out=out):
            stage.mkdir(mode=0o700)
        yield stage
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _stamped(folder: Path) -> list[str]:
    """Files a report stamp in ``folder`` lists (reports made from its bundle)."""
    import json

    try:
        stamp = json.loads((folder / REPORT_STAMP).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [n for n in stamp if isinstance(n, str) and "/" not in n and n != REPORT_STAMP]


def commit(stage: Path, out: Path, reports: dict[str, Path]) -> tuple[Path, dict[str, Path]]:
    """Move ``stage/bundle`` and the reports into ``out``, replacing the old ones.

    Order: old reports (and their stamp) are removed, the old bundle is moved aside, the new
    bundle renamed in, then the stamp and the reports, and the old bundle deleted. Every
    step is a rename or an unlink in one file system: no space is needed, and a kill
    between steps leaves a bundle with its own reports or none. Returns the final paths.
    """
    old = out / f"{ASIDE}{os.getpid()}"
    for name in {*REPORT_NAMES, *_stamped(out), REPORT_STAMP}:
        (out / name).unlink(missing_ok=True)
    if (out / "bundle").exists():
        shutil.rmtree(old, ignore_errors=True)
        (out / "bundle").rename(old)
    (stage / "bundle").rename(out / "bundle")
    if (stage / REPORT_STAMP).exists():
        (stage / REPORT_STAMP).rename(out / REPORT_STAMP)
    final = {}
    for fmt, path in reports.items():
        path.rename(out / path.name)
        final[fmt] = out / path.name
    shutil.rmtree(old, ignore_errors=True)
    return out / "bundle", final


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def sweep_tmp(kind: str) -> None:
    """Remove ``spevidence-KIND-PID-…`` temporary folders whose process is gone."""
    root = Path(tempfile.gettempdir())
    try:
        entries = list(root.iterdir())
    except OSError:
        return
    for p in entries:
        m = _TMP_NAME.match(p.name)
        if m and m.group(1) == kind and not _alive(int(m.group(2))) and p.is_dir():
            shutil.rmtree(p, ignore_errors=True)


def private_tmpdir(kind: str) -> Path:
    """A new temporary folder (mode 0700) named after this process, after sweeping the
    ones of its kind that killed processes left. The caller removes it."""
    sweep_tmp(kind)
    with disk_errors(f"creating a temporary folder in {tempfile.gettempdir()}"):
        return Path(tempfile.mkdtemp(prefix=f"spevidence-{kind}-{os.getpid()}-"))


@contextmanager
def atomic_file(dest: Path, *, stage: str) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; on success it replaces ``dest`` in one
    rename, on failure it is removed (``dest`` is never left half-written)."""
    dest = Path(dest)
    tmp = dest.with_name(f".{dest.name}.partial-{os.getpid()}")
    try:
        try:
            yield tmp
            os.replace(tmp, dest)
        except Exception as exc:
            if (code := disk_errno(exc)) is None:
                raise
            raise disk_error(code, stage=stage, shown=dest) from None
    finally:
        tmp.unlink(missing_ok=True)
