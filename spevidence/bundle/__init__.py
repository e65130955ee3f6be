"""The results bundle: aggregate, disclosure-controlled outputs plus a self-verifying manifest.

A bundle is the only thing that leaves the secure environment and the only input of the
report (DESIGN.md section 8; layout in ``docs/contracts.md``)::

    bundle/manifest.json          protocol hash, input hashes, row counts, versions, seed,
                                  engine, and the SHA-256 of every other bundle file
    bundle/tables/NAME.csv        every released table (also NAME.parquet)
    bundle/figures/NAME.png|.svg  figures drawn from released tables
    bundle/disclosure_log.csv     what was redacted or rounded, per table
    bundle/protocol.yaml          the frozen protocol

Writing is deterministic: the same inputs give the same bytes (sorted keys, no
timestamps, fixed PNG/SVG metadata, Parquet written with fixed options).
"""

from __future__ import annotations

import importlib.metadata
import platform
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from matplotlib.figure import Figure

from spevidence._version import __version__
from spevidence.bundle.figure_files import alt_text, save_figure
from spevidence.bundle.hashing import canonical_json, sha256_file, sha256_json
from spevidence.bundle.scan import Finding, scan_paths, scan_text, small_count_findings
from spevidence.errors import DisclosureError, ReportError, SpevidenceError

__all__ = [
    "BUNDLE_FORMAT",
    "RERUN_RTOL",
    "Finding",
    "compare_bundles",
    "read_manifest",
    "read_table",
    "result_files",
    "scan_paths",
    "scan_text",
    "small_count_findings",
    "verify_bundle",
    "write_bundle",
]

BUNDLE_FORMAT = "spevidence-bundle/1"
MANIFEST = "manifest.json"
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")

# Packages whose versions are recorded in every manifest (runtime dependencies).
_PACKAGES = (
    "numpy",
    "pandas",
    "scipy",
    "statsmodels",
    "linearmodels",
    "matplotlib",
    "seaborn",
    "ibis-framework",
    "sqlglot",
    "duckdb",
    "pyarrow",
    "pydantic",
    "PyYAML",
    "typer",
    "nbclient",
    "ipykernel",
    "pypandoc_binary",
    "typst",
    "pyspark",
)


def _versions() -> dict[str, str]:
    out: dict[str, str] = {"python": platform.python_version(), "spevidence": __version__}
    for pkg in _PACKAGES:
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def _check_name(kind: str, name: str) -> None:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ReportError(
            f"{kind} name {name!r} is not allowed in a bundle: use lower-case letters, digits "
            "and underscores, starting with a letter (at most 64 characters)."
        )


def _write_table(df: pd.DataFrame, stem: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    frame = df.reset_index(drop=True)
    frame.columns = [str(c) for c in frame.columns]
    csv = frame.to_csv(index=False, lineterminator="\n")
    stem.with_suffix(".csv").write_bytes(csv.encode("utf-8"))
    table = pa.Table.from_pandas(frame, preserve_index=False)
    pq.write_table(
        table,
        stem.with_suffix(".parquet"),
        compression="zstd",
        compression_level=3,
        use_dictionary=True,
        write_statistics=True,
        store_schema=True,
    )


def _input_entry(name: str, path: Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ReportError(
            f"input {name!r} is not a file: {path.name!r}. Pass the extract files that were "
            "read (Parquet or CSV) so their hashes can be recorded."
        )
    entry: dict[str, Any] = {
        "file": path.name,
        "bytes": path.stat().st_size,
        "sha256": sha256_file(path),
    }
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            entry["rows"] = int(pq.ParquetFile(path).metadata.num_rows)
        elif suffix == ".csv":
            with path.open("rb") as fh:
                lines = sum(1 for _ in fh)
            entry["rows"] = max(lines - 1, 0)
    except Exception:  # unreadable metadata: the hash still identifies the file
        entry["rows"] = None
    return entry


def _clear(out: Path) -> None:
    """Empty ``out`` for a new bundle: an earlier bundle, or one half-written by a killed
    run (bundle files without a manifest), is replaced; any other folder is refused."""
    from spevidence._atomic import check_bundle_folder

    if not out.exists():
        out.mkdir(parents=True)
        return
    if not out.is_dir():
        raise ReportError(f"bundle folder {out} exists and is not a folder: choose another path.")
    try:
        check_bundle_folder(out)
    except SpevidenceError:
        raise ReportError(
            f"bundle folder {out} is not empty and holds files that are not a bundle's: "
            f"refusing to overwrite it ({len(list(out.iterdir()))} entries). Choose an empty "
            "or new folder."
        ) from None
    (out / MANIFEST).unlink(missing_ok=True)  # first: a folder being cleared is not a bundle
    for p in out.iterdir():
        if p.is_dir():
            shutil.rmtree(p)
        else:
            p.unlink()


def write_bundle(
    out_dir: str | Path,
    *,
    tables: Mapping[str, pd.DataFrame],
    figures: Mapping[str, Figure],
    protocol: Mapping[str, Any],
    inputs: Mapping[str, str | Path],
    seed: int,
    engine: str,
    disclosure_log: pd.DataFrame,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write a results bundle and its manifest; return the bundle folder.

    Parameters
    ----------
    out_dir
        Folder to write. Created if missing; an earlier bundle there is replaced; a
        non-empty folder that is not a bundle is refused.
    tables
        Released tables by name (``did_estimates``, ``sroi_summary`` ...; see
        ``docs/contracts.md``), already disclosure-controlled. Written as CSV and Parquet.
    figures
        Matplotlib figures by name, drawn from released tables only. Written as PNG and SVG
        with fixed metadata; alt text (``fig.spevidence_alt`` or titles and labels) goes in
        the manifest.
    protocol
        The frozen protocol as a mapping; written as ``protocol.yaml`` and hashed.
    inputs
        Extract files read, by role; the manifest records file name, size, SHA-256 and
        row count (never the folder, which may name a person or a secure server).
    seed
        The random seed of the run.
    engine
        Backend that built the panel (``"duckdb"`` or ``"spark"``).
    disclosure_log
        What disclosure control redacted or rounded, per table
        (from :func:`spevidence.disclosure.control`).
    extra
        Further JSON-serialisable facts for the manifest (e.g. run options, titles).

    Returns
    -------
    Path
        The bundle folder.

    Raises
    ------
    ReportError
        A name is not a safe file name, an input is missing, or the folder is not a bundle.
    DisclosureError
        A table holds something shaped like an NHS number or a pseudonym.
    """
    out = Path(out_dir)
    _check_contents(tables, figures, disclosure_log)
    input_entries = {str(k): _input_entry(str(k), Path(v)) for k, v in sorted(inputs.items())}
    _clear(out)
    table_meta = _write_tables(out, tables)
    figure_meta = _write_figures(out, figures)
    proto = dict(protocol)
    _write_log_and_protocol(out, disclosure_log, proto)
    _refuse_identifiers(out)
    manifest: dict[str, Any] = {
        "format": BUNDLE_FORMAT,
        "spevidence_version": __version__,
        "protocol_sha256": sha256_json(_plain(proto)),
        "inputs": input_entries,
        "row_counts": {name: meta["rows"] for name, meta in table_meta.items()},
        "tables": table_meta,
        "figures": figure_meta,
        "seed": int(seed),
        "engine": str(engine),
        "versions": _versions(),
        "platform": {"system": platform.system(), "machine": platform.machine()},
        "disclosure_log_rows": len(disclosure_log),
        "extra": _plain(dict(extra or {})),
        "files": _file_hashes(out),
    }
    (out / MANIFEST).write_text(canonical_json(manifest, indent=2) + "\n", encoding="utf-8")
    return out


def _check_contents(
    tables: Mapping[str, pd.DataFrame], figures: Mapping[str, Figure], disclosure_log: Any
) -> None:
    """Safe file names, and data frames where frames are due (ReportError otherwise)."""
    for name in tables:
        _check_name("table", name)
    for name in figures:
        _check_name("figure", name)
    for name, df in tables.items():
        if not isinstance(df, pd.DataFrame):
            kind = type(df).__name__
            raise ReportError(f"table {name!r} must be a pandas DataFrame, got {kind}.")
    if not isinstance(disclosure_log, pd.DataFrame):
        raise ReportError("disclosure_log must be a pandas DataFrame (from disclosure.control).")


def _write_tables(out: Path, tables: Mapping[str, pd.DataFrame]) -> dict[str, Any]:
    """Write every table (CSV and Parquet); their manifest entries (rows, columns)."""
    (out / "tables").mkdir()
    table_meta: dict[str, Any] = {}
    for name in sorted(tables):
        df = tables[name]
        _write_table(df, out / "tables" / name)
        table_meta[name] = {"rows": len(df), "columns": [str(c) for c in df.columns]}
    return table_meta


def _write_figures(out: Path, figures: Mapping[str, Figure]) -> dict[str, Any]:
    """Write every figure (PNG and SVG); their manifest entries (alt text, formats)."""
    (out / "figures").mkdir()
    figure_meta: dict[str, Any] = {}
    for name in sorted(figures):
        save_figure(figures[name], out / "figures" / name)
        figure_meta[name] = {"alt": alt_text(figures[name]), "formats": ["png", "svg"]}
    return figure_meta


def _write_log_and_protocol(out: Path, disclosure_log: pd.DataFrame, proto: dict[str, Any]) -> None:
    """Write the disclosure log (CSV only) and the protocol (YAML, plain types)."""
    _write_table(disclosure_log, out / "disclosure_log")
    (out / "disclosure_log.parquet").unlink()
    (out / "protocol.yaml").write_text(
        yaml.safe_dump(_plain(proto), sort_keys=True, allow_unicode=True, width=100),
        encoding="utf-8",
    )


def _refuse_identifiers(out: Path) -> None:
    """Remove the bundle and raise DisclosureError if a released file holds something
    shaped like an NHS number or a pseudonym."""
    findings = scan_paths([out / "tables", out / "disclosure_log.csv", out / "protocol.yaml"])
    if findings:
        shutil.rmtree(out)
        raise DisclosureError(
            f"{len(findings)} value(s) in the bundle look like patient identifiers "
            f"(first: {findings[0]}). The bundle was not written: release aggregate "
            "tables only, without NHS numbers or pseudonyms."
        )


def _file_hashes(out: Path) -> dict[str, str]:
    """The SHA-256 of every bundle file but the manifest, by path in the bundle."""
    return {
        p.relative_to(out).as_posix(): sha256_file(p)
        for p in sorted(out.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }


def _plain(obj: Any) -> Any:
    """Round-trip through canonical JSON so YAML/JSON writers see plain types."""
    import json

    return json.loads(canonical_json(obj))


def read_manifest(bundle_dir: str | Path) -> dict[str, Any]:
    """Read ``manifest.json`` of a bundle (ReportError if missing or not a bundle)."""
    import json

    path = Path(bundle_dir) / MANIFEST
    if not path.is_file():
        raise ReportError(
            f"{Path(bundle_dir)} is not a spevidence bundle: {MANIFEST} is missing. "
            "Pass the folder written by 'spevidence run' (or write_bundle)."
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ReportError(f"{MANIFEST} in {Path(bundle_dir)} is not valid JSON: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
        raise ReportError(
            f"{MANIFEST} in {Path(bundle_dir)} is not a {BUNDLE_FORMAT} manifest; "
            "re-create the bundle with this version of spevidence."
        )
    return manifest


def read_table(bundle_dir: str | Path, name: str) -> pd.DataFrame | None:
    """Read a released table from the bundle's CSV; ``None`` if the bundle lacks it."""
    path = Path(bundle_dir) / "tables" / f"{name}.csv"
    if not path.is_file():
        return None
    return pd.read_csv(path)


def verify_bundle(bundle_dir: str | Path) -> list[str]:
    """Check every file of a bundle against the hashes in its manifest.

    Returns
    -------
    list of str
        One plain-English problem per file that was changed, added or removed (empty if
        the bundle is intact). Each names the file.

    Raises
    ------
    ReportError
        The folder is not a bundle (no readable manifest).
    """
    root = Path(bundle_dir)
    manifest = read_manifest(root)
    expected: dict[str, str] = manifest.get("files", {})
    problems: list[str] = []
    present = {
        p.relative_to(root).as_posix(): p
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }
    for rel, digest in sorted(expected.items()):
        if rel not in present:
            problems.append(f"{rel}: listed in the manifest but missing from the bundle")
        elif sha256_file(present[rel]) != digest:
            problems.append(f"{rel}: contents differ from the manifest (SHA-256 mismatch)")
    for rel in sorted(set(present) - set(expected)):
        problems.append(f"{rel}: not listed in the manifest (file added after the bundle was made)")
    proto = root / "protocol.yaml"
    if proto.is_file() and "protocol_sha256" in manifest:
        try:
            loaded = yaml.safe_load(proto.read_text(encoding="utf-8"))
        except yaml.YAMLError:
            loaded = None
        changed = loaded is None or sha256_json(_plain(loaded)) != manifest["protocol_sha256"]
        if changed and not any(p.startswith("protocol.yaml:") for p in problems):
            problems.append("protocol.yaml: protocol hash differs from the manifest")
    return problems


RERUN_RTOL = 1e-6
"""Relative tolerance of :func:`compare_bundles` for numbers that are not byte-identical."""


def result_files(manifest: Mapping[str, Any]) -> dict[str, str]:
    """The files of a bundle that hold results (released tables, disclosure log): hashes."""
    files: dict[str, str] = manifest.get("files", {})
    return {
        f: h
        for f, h in files.items()
        if (f.startswith("tables/") and f.endswith(".csv")) or f == "disclosure_log.csv"
    }


def compare_bundles(original: str | Path, rerun: str | Path) -> list[str]:
    """Compare a re-run bundle with the original: same protocol, inputs, seed and results.

    Released tables and the disclosure log must be identical: byte for byte, or else cell by
    cell with every number within ``RERUN_RTOL`` (one millionth) of its column's scale (the
    largest finite absolute value in the column). Text, missing and infinite cells and
    whole-number columns (counts) must be equal exactly. The tolerance is for floating-point
    noise only: with another pseudonymisation key the people are in another order, so sums
    are added in another order and differ in the last bits (about 1e-16 of the column's
    scale, and up to 1e-8 for coefficients whose estimate and standard error are both zero
    up to noise); a real difference (one person matched differently) moves a number by far
    more than a millionth. The protocol hash, the input file hashes and the seed must match.
    Figures and software versions are not compared (a different matplotlib may draw the
    same numbers differently).

    Returns
    -------
    list of str
        One problem per difference, naming the file or manifest field.
    """
    a_root, b_root = Path(original), Path(rerun)
    a, b = read_manifest(a_root), read_manifest(b_root)
    problems: list[str] = []
    for key in ("protocol_sha256", "seed"):
        if a.get(key) != b.get(key):
            problems.append(f"manifest.json: {key} differs between the original and the re-run")
    a_in, b_in = a.get("inputs", {}), b.get("inputs", {})
    for role in sorted(set(a_in) | set(b_in)):
        ha = (a_in.get(role) or {}).get("sha256")
        hb = (b_in.get(role) or {}).get("sha256")
        if ha != hb:
            problems.append(f"input {role!r}: the data file differs from the one originally used")
    a_files, b_files = result_files(a), result_files(b)
    for rel in sorted(set(a_files) | set(b_files)):
        if rel not in b_files:
            problems.append(f"{rel}: in the original bundle but not produced by the re-run")
        elif rel not in a_files:
            problems.append(f"{rel}: produced by the re-run but not in the original bundle")
        elif a_files[rel] != b_files[rel] and not _same_numbers(a_root / rel, b_root / rel):
            problems.append(f"{rel}: the re-run gives different numbers")
    return problems


def _same_numbers(a_path: Path, b_path: Path) -> bool:
    """Two CSV tables agree up to floating-point noise (see :func:`compare_bundles`)."""
    import numpy as np

    try:
        a, b = pd.read_csv(a_path), pd.read_csv(b_path)
    except (OSError, ValueError):
        return False
    if list(a.columns) != list(b.columns) or a.shape != b.shape:
        return False
    for col in a.columns:
        x, y = a[col], b[col]
        numeric = all(
            pd.api.types.is_numeric_dtype(c) and not pd.api.types.is_bool_dtype(c) for c in (x, y)
        )
        if not numeric:
            if not x.equals(y):
                return False
            continue
        u, v = x.to_numpy(dtype=float), y.to_numpy(dtype=float)
        finite = np.isfinite(u) & np.isfinite(v)
        # missing and infinite cells in the same places, with the same sign
        if not np.array_equal(u[~finite], v[~finite], equal_nan=True):
            return False
        u, v = u[finite], v[finite]
        if np.all(u == np.round(u)) and np.all(v == np.round(v)):  # counts: exactly
            if not np.array_equal(u, v):
                return False
            continue
        scale = max(np.abs(u).max(initial=0.0), np.abs(v).max(initial=0.0))
        if np.any(np.abs(u - v) > RERUN_RTOL * scale):
            return False
    return True
