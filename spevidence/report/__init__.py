"""Render the evaluation report from a bundle (DESIGN.md section 8).

The report reads only the bundle. ``render`` uses the Quarto CLI when it is installed
(``engine="auto"`` or ``"quarto"``) and otherwise a built-in renderer that runs the same
``.qmd`` template with a Jupyter kernel (nbclient) and converts it with pandoc (HTML,
DOCX) and typst (PDF, A4).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import yaml

from spevidence._atomic import REPORT_STAMP, atomic_file, disk_errors, private_tmpdir
from spevidence.errors import ReportError
from spevidence.report._qmd import QmdDocument, parse_qmd
from spevidence.report._quarto import find_quarto as _find_quarto
from spevidence.report._quarto import render_quarto

__all__ = ["find_quarto", "render", "reports_not_from", "template_dir"]

Format = Literal["html", "pdf", "docx"]
Engine = Literal["auto", "quarto", "builtin"]
_FORMATS = ("html", "pdf", "docx")


def template_dir() -> Path:
    """The folder holding the report templates (``quarto/`` in a checkout, packaged otherwise)."""
    here = Path(__file__).resolve().parent.parent
    for cand in (here / "_quarto", here.parent / "quarto"):
        if (cand / "report.qmd").is_file():
            return cand
    raise ReportError(
        "the report templates (quarto/report.qmd) were not found next to the spevidence "
        "package; reinstall spevidence."
    )


def find_quarto() -> Path | None:
    """Path of the Quarto CLI if installed (``QUARTO_PATH``, ``quarto-cli`` package, PATH)."""
    return _find_quarto()


def _merge(base: Any, over: Any) -> Any:
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for k, v in over.items():
            out[k] = _merge(base.get(k), v) if k in base else v
        return out
    return over


def _with_project_options(doc: QmdDocument, tdir: Path) -> QmdDocument:
    """Apply ``_quarto.yml`` under the document's own header, as Quarto does."""
    proj = tdir / "_quarto.yml"
    if not proj.is_file():
        return doc
    try:
        base = yaml.safe_load(proj.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ReportError(f"{proj.name} is not valid YAML: {exc}") from None
    base = {k: v for k, v in base.items() if k != "project"}
    return replace(doc, front_matter=_merge(base, doc.front_matter))


def _formats(formats: Iterable[str] | str) -> tuple[str, ...]:
    items = [formats] if isinstance(formats, str) else list(formats)
    out: list[str] = []
    for item in items:
        for f in str(item).split(","):
            f = f.strip().lower()
            if not f:
                continue
            if f not in _FORMATS:
                raise ReportError(f"unknown report format {f!r}: choose from html, pdf, docx.")
            if f not in out:
                out.append(f)
    if not out:
        raise ReportError("no report format given: choose one or more of html, pdf, docx.")
    return tuple(out)


def render(
    bundle_dir: str | Path,
    out_dir: str | Path,
    *,
    formats: Iterable[Format] | str = ("html", "pdf"),
    engine: Engine = "auto",
    template: str = "report",
    timeout: int = 600,
) -> dict[str, Path]:
    """Render a report template from a bundle to HTML, PDF and/or DOCX.

    Parameters
    ----------
    bundle_dir
        A bundle written by :func:`spevidence.bundle.write_bundle`. It is verified first:
        a file that differs from the manifest stops the render.
    out_dir
        Folder for the outputs, named ``{template}.{format}``.
    formats
        Any of ``"html"`` (self-contained), ``"pdf"`` (A4, typst) and ``"docx"``.
    engine
        ``"quarto"`` runs the Quarto CLI; ``"builtin"`` the built-in renderer (Jupyter kernel
        + pandoc + typst); ``"auto"`` uses Quarto if found, else the built-in renderer.
    template
        Template name in the templates folder: ``"report"`` (full evaluation report) or
        ``"summary"`` (one-page board summary).
    timeout
        Seconds allowed for executing the template (per format with Quarto).

    Returns
    -------
    dict
        Format to output path.

    Raises
    ------
    ReportError
        The bundle is missing or was changed, the template is unknown, or a tool failed.
    """
    fmts = _formats(formats)
    bundle = _verified(Path(bundle_dir).resolve())
    tdir, qmd = _template_file(template)
    if engine not in ("auto", "quarto", "builtin"):
        raise ReportError(f"unknown engine {engine!r}: choose auto, quarto or builtin.")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    quarto = _quarto_for(engine)
    tmp = private_tmpdir("report")
    try:
        params = {"bundle": str(bundle)}
        produced = _produce(quarto, qmd, tdir, template, params, fmts, tmp=tmp, timeout=timeout)
        return _deliver(produced, out, bundle)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _verified(bundle: Path) -> Path:
    """The bundle, once every file matches its manifest (else ReportError)."""
    # imported here, as in _deliver and reports_not_from: the bundle package imports pandas,
    # matplotlib and the data readers (several seconds), which importing any report module
    # (style, narrative, this package) should not cost
    from spevidence.bundle import verify_bundle

    problems = verify_bundle(bundle)
    if problems:
        raise ReportError(
            f"the bundle does not match its manifest ({len(problems)} problem(s)); first: "
            f"{problems[0]}. Re-create the bundle or restore the original files."
        )
    return bundle


def _template_file(template: str) -> tuple[Path, Path]:
    """The templates folder and the template's ``.qmd`` in it (ReportError if unknown)."""
    tdir = template_dir()
    qmd = tdir / f"{template}.qmd"
    if not qmd.is_file():
        known = sorted(p.stem for p in tdir.glob("*.qmd"))
        raise ReportError(f"unknown report template {template!r}: choose from {known}.")
    return tdir, qmd


def _quarto_for(engine: Engine) -> Path | None:
    """The Quarto CLI to render with, or None for the built-in renderer."""
    quarto = find_quarto() if engine in ("auto", "quarto") else None
    if engine == "quarto" and quarto is None:
        raise ReportError(
            "engine 'quarto' was asked for but no quarto executable was found (QUARTO_PATH, "
            "the quarto-cli package, PATH). Install Quarto or use --engine builtin."
        )
    return quarto


def _produce(
    quarto: Path | None,
    qmd: Path,
    tdir: Path,
    template: str,
    params: dict[str, str],
    fmts: tuple[str, ...],
    *,
    tmp: Path,
    timeout: int,
) -> dict[str, Path]:
    """Render with Quarto if given, else the built-in renderer, in ``tmp/work``: format ->
    file. A full disk is reported with where the report was being assembled."""
    work = tmp / "work"
    hint = f"or set TMPDIR to a folder with space (the report is assembled in {tmp.parent})"
    with disk_errors("rendering the report", hint, out=tmp):
        if quarto is not None:
            return render_quarto(
                quarto, tdir, template, params, fmts, timeout=timeout, workdir=work
            )
        return _render_builtin(qmd, tdir, template, params, fmts, work, timeout=timeout)


def _render_builtin(
    qmd: Path,
    tdir: Path,
    template: str,
    params: dict[str, str],
    fmts: tuple[str, ...],
    work: Path,
    *,
    timeout: int,
) -> dict[str, Path]:
    """Run the template with a Jupyter kernel and convert it: format -> file in ``work``."""
    from spevidence.report import _builtin  # imported here: nbformat takes 0.8 s, Quarto needs none

    work.mkdir()
    doc = _with_project_options(parse_qmd(qmd), tdir)
    nb, cells = _builtin.execute(doc, params, work, timeout=timeout)
    md = _builtin.assemble_markdown(doc, nb, cells, work)
    md_path = work / f"{template}.md"
    md_path.write_text(md, encoding="utf-8")
    produced: dict[str, Path] = {}
    for fmt in fmts:
        produced[fmt] = _builtin.convert(doc, md_path, fmt, work / f"{template}.{fmt}", tdir)
    return produced


def _deliver(produced: dict[str, Path], out: Path, bundle: Path) -> dict[str, Path]:
    """Copy each report into ``out`` (each replaced in one rename, never half-written) and
    record in the stamp ``out/report_stamp.json`` which bundle it was made from."""
    from spevidence.bundle.hashing import canonical_json, sha256_file

    made_from = sha256_file(bundle / "manifest.json")
    stamp = _read_stamp(out)
    results: dict[str, Path] = {}
    for fmt, src in produced.items():
        dest = out / src.name
        with atomic_file(dest, stage="writing the report") as tmp:
            shutil.copyfile(src, tmp)
        stamp[dest.name] = {"bundle_manifest_sha256": made_from, "sha256": sha256_file(dest)}
        results[fmt] = dest
    with atomic_file(out / REPORT_STAMP, stage="writing the report") as tmp:
        tmp.write_text(canonical_json(stamp, indent=2) + "\n", encoding="utf-8")
    return results


def _read_stamp(folder: Path) -> dict[str, Any]:
    try:
        stamp = json.loads((folder / REPORT_STAMP).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return stamp if isinstance(stamp, dict) else {}


def reports_not_from(bundle_dir: str | Path) -> list[str]:
    """Reports beside a bundle (``report.html`` ... in its parent folder) that were not made
    from it: no stamp, a stamp naming another bundle's manifest, or a report changed after
    it was stamped. One plain-English problem per file."""
    from spevidence.bundle.hashing import sha256_file

    bundle = Path(bundle_dir)
    folder = bundle.parent
    stamp = _read_stamp(folder)
    made_from = sha256_file(bundle / "manifest.json")
    names = {f"{t}.{f}" for t in _templates() for f in _FORMATS} | set(stamp)
    problems: list[str] = []
    for name in sorted(names):
        path = folder / name
        if not path.is_file():
            continue
        entry = stamp.get(name)
        if not isinstance(entry, dict):
            problems.append(f"{name}: no stamp ties it to this bundle ({REPORT_STAMP})")
        elif entry.get("bundle_manifest_sha256") != made_from:
            problems.append(f"{name}: made from another bundle (its manifest differs)")
        elif entry.get("sha256") != sha256_file(path):
            problems.append(f"{name}: changed after it was rendered")
        elif path.suffix == ".html" and made_from not in path.read_text(errors="replace"):
            problems.append(f"{name}: its title page prints another manifest's SHA-256")
    return problems


def _templates() -> list[str]:
    try:
        return sorted(p.stem for p in template_dir().glob("*.qmd"))
    except ReportError:
        return ["report"]
