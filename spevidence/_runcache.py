"""Stage cache for ``spevidence run``: reuse finished stages when nothing they read changed.

Where it lives
--------------
``OUT/.spevidence-cache/`` inside the run's output folder, one sub-folder per stage
(``panel``, ``matching``, ``estimates``) holding Arrow IPC files and a
``manifest.json``. The panel and the matched data hold **pseudonyms**, so the cache is
as sensitive as the linked data: it stays in the output folder of the secure
environment (folder mode 0700, files 0600), it is never written anywhere else, and
:func:`spevidence.bundle.write_bundle` writes ``OUT/bundle/`` only, so the cache
never enters the bundle. Delete the folder (or run with ``--no-cache``) to drop it.

Keys
----
Each stage's key is the SHA-256 of: the package version, the stage name, the
previous stage's key (so any change upstream invalidates every later stage) and
what the stage reads. The panel reads the SHA-256 of every input file, the
protocol (all of it except the sections only later stages read: ``match`` other
than its covariates, ``outcomes``, ``did``, ``sroi``, ``disclosure``, ``report``
and the free text), the engine and a fingerprint of the pseudonymisation key (an HMAC of a
fixed message: it identifies the key without revealing it). Matching adds the
protocol's ``match`` section and the seed; estimates add ``outcomes`` and ``did``.
SROI, disclosure control, the bundle and the report are always recomputed (they
are cheap), so changing SROI or report options reuses all three stages.

A stored stage is used only when its manifest's key matches and every file's
SHA-256 matches the manifest; otherwise it is recomputed and overwritten (one slot
per stage). Frames are written with their index and their dtypes recorded, and
read back with the same dtypes, so outputs with and without the cache are
byte-identical (tests/test_runcache.py checks this end to end).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.feather as feather

from spevidence._atomic import CACHE_DIR, disk_errors
from spevidence._version import __version__

STAGES = ("panel", "matching", "estimates")
_PARTIAL = ".partial-"  # a stage being written: .partial-STAGE-PID-XXXX
_SAVING = ("saving the run cache", "or run with --no-cache")
_KEY_MESSAGE = b"spevidence run-cache key fingerprint v1"
# protocol sections read only after the panel is built (by later stages or cheap steps)
_NOT_PANEL = ("name", "title", "description", "outcomes", "did", "sroi", "disclosure", "report")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def stage_inputs(
    protocol: Mapping[str, Any],
    *,
    input_hashes: Mapping[str, str | None],
    engine: str,
    key_fingerprint: str | None,
) -> dict[str, dict[str, Any]]:
    """What each stage reads, from the protocol dict (``Protocol.to_dict()``).

    Returns ``{"panel": {...}, "matching": {...}, "estimates": {...}}``; each value
    is hashed (with the previous stage's key) into that stage's key.
    """
    proto = dict(protocol)
    match = dict(proto.get("match") or {})
    panel_proto = {k: v for k, v in proto.items() if k not in (*_NOT_PANEL, "match", "seed")}
    panel_proto["match.covariates"] = match.get("covariates")  # the risk score is added by them
    return {
        "panel": {
            "inputs": dict(sorted(input_hashes.items())),
            "protocol": panel_proto,
            "engine": engine,
            "key": key_fingerprint,
        },
        "matching": {"match": match, "seed": proto.get("seed")},
        "estimates": {"outcomes": proto.get("outcomes"), "did": proto.get("did")},
    }


def key_fingerprint(key: Any) -> str | None:
    """Identify a pseudonymisation key without revealing it (HMAC of a fixed message)."""
    if key is None:
        return None
    return str(key.digest(_KEY_MESSAGE))


@dataclass
class Hit:
    """A reused stage: its frames and metadata."""

    frames: dict[str, pd.DataFrame]
    meta: dict[str, Any] = field(default_factory=dict)


class RunCache:
    """The stage cache of one output folder (see the module docstring).

    Parameters
    ----------
    out
        The run's output folder; the cache is ``out/.spevidence-cache``.
    reads
        :func:`stage_inputs` for this run.
    enabled
        ``False`` (``--no-cache``): nothing is read or written.
    """

    def __init__(self, out: Path, reads: Mapping[str, Mapping[str, Any]], *, enabled: bool = True):
        self.root = Path(out) / CACHE_DIR
        self.enabled = enabled
        self.keys: dict[str, str] = {}
        parent = ""
        for stage in STAGES:
            blob = {"version": __version__, "stage": stage, "parent": parent, **reads[stage]}
            parent = self.keys[stage] = _sha256(_canonical(blob))
        self.reused: list[str] = []

    def load(self, stage: str) -> Hit | None:
        """The stored stage if its key and every file's hash match, else ``None``."""
        if not self.enabled:
            return None
        folder = self.root / stage
        try:
            manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if manifest.get("key") != self.keys[stage]:
            return None
        frames: dict[str, pd.DataFrame] = {}
        try:
            for name, info in manifest["frames"].items():
                path = folder / f"{name}.arrow"
                if _file_sha256(path) != info["sha256"]:
                    return None
                df = feather.read_table(path, memory_map=False).to_pandas()
                frames[name] = _restore_dtypes(df, info["dtypes"])
        except (OSError, KeyError, ValueError, pa.ArrowException):
            return None
        self.reused.append(stage)
        return Hit(frames=frames, meta=dict(manifest.get("meta") or {}))

    def save(
        self, stage: str, frames: Mapping[str, pd.DataFrame], meta: Mapping[str, Any] | None = None
    ) -> None:
        """Store a finished stage (replacing what was there), atomically."""
        if not self.enabled:
            return
        with disk_errors(*_SAVING, out=self.root):
            self.root.mkdir(parents=True, exist_ok=True)
            os.chmod(self.root, 0o700)
            tag = self.root / "CACHEDIR.TAG"
            if not tag.exists():
                tag.write_text(
                    "Signature: 8a477f597d28d172789f06886806bc55\n"
                    "# spevidence run cache: holds pseudonymised linked data. Do not share.\n",
                    encoding="utf-8",
                )
            tmp = Path(tempfile.mkdtemp(prefix=f"{_PARTIAL}{stage}-{os.getpid()}-", dir=self.root))
        try:
            with disk_errors(*_SAVING, out=self.root):
                self._write_stage(stage, tmp, frames, meta)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)  # renamed into place unless it failed

    def _write_stage(
        self,
        stage: str,
        tmp: Path,
        frames: Mapping[str, pd.DataFrame],
        meta: Mapping[str, Any] | None,
    ) -> None:
        info: dict[str, Any] = {}
        for name, df in frames.items():
            path = tmp / f"{name}.arrow"
            feather.write_feather(
                pa.Table.from_pandas(df, preserve_index=True), path, compression="uncompressed"
            )
            os.chmod(path, 0o600)
            info[name] = {
                "sha256": _file_sha256(path),
                "dtypes": {str(c): str(t) for c, t in df.dtypes.items()},
            }
        manifest = {
            "stage": stage,
            "key": self.keys[stage],
            "version": __version__,
            "frames": info,
            "meta": dict(meta or {}),
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")
        final = self.root / stage
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
        os.chmod(final, 0o700)


def _restore_dtypes(df: pd.DataFrame, dtypes: Mapping[str, str]) -> pd.DataFrame:
    """Give every column back the dtype it was saved with (e.g. datetime64[s])."""
    fix = {
        c: t
        for c, t in dtypes.items()
        if c in df.columns and str(df[c].dtype) != t and t != "category"
    }
    return df.astype(fix) if fix else df
