"""Render with the real Quarto CLI (``QUARTO_PATH``, the ``quarto-cli`` package, or PATH)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

from spevidence.errors import ReportError

_TO = {"html": "html", "pdf": "typst", "docx": "docx"}


def find_quarto() -> Path | None:
    """Locate the ``quarto`` executable, or ``None``.

    Order: the ``QUARTO_PATH`` environment variable; the binary shipped inside the
    ``quarto-cli`` Python package; ``quarto`` on ``PATH``.
    """
    env = os.environ.get("QUARTO_PATH")
    if env:
        p = Path(env)
        if p.is_dir():
            for cand in (p / "quarto", p / "bin" / "quarto"):
                if cand.is_file() and os.access(cand, os.X_OK):
                    return cand
        elif p.is_file() and os.access(p, os.X_OK):
            return p
    spec = importlib.util.find_spec("quarto_cli")
    if spec is not None and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            for cand in (Path(loc) / "bin" / "quarto", Path(loc) / "quarto"):
                if cand.is_file() and os.access(cand, os.X_OK):
                    return cand
    found = shutil.which("quarto")
    return Path(found) if found else None


def render_quarto(
    quarto: Path,
    template_dir: Path,
    template: str,
    params: dict[str, str],
    formats: tuple[str, ...],
    *,
    timeout: int,
    workdir: Path,
) -> dict[str, Path]:
    """Run ``quarto render`` once per format in a copy of the template folder; returns
    format -> the file produced in ``workdir`` (the caller copies it out)."""
    shutil.copytree(template_dir, workdir, dirs_exist_ok=True)
    package_root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env["QUARTO_PYTHON"] = sys.executable
    old = env.get("PYTHONPATH")
    env["PYTHONPATH"] = package_root if not old else package_root + os.pathsep + old
    env["SOURCE_DATE_EPOCH"] = "946684800"
    env["MPLBACKEND"] = "Agg"
    out: dict[str, Path] = {}
    for fmt in formats:
        target = f"{template}.{fmt}"
        cmd = [str(quarto), "render", f"{template}.qmd", "--to", _TO[fmt], "--output", target]
        for k, v in params.items():
            cmd += ["-P", f"{k}:{v}"]
        try:
            proc = subprocess.run(
                cmd,
                cwd=workdir,
                env=env,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise ReportError(
                f"quarto render {template}.qmd --to {_TO[fmt]} did not finish in {timeout} s."
            ) from None
        if proc.returncode != 0:
            raise ReportError(
                f"quarto render {template}.qmd --to {_TO[fmt]} failed (exit {proc.returncode}): "
                f"{proc.stderr.strip()[-800:]} Use --engine builtin to render without Quarto."
            )
        produced = workdir / target
        if not produced.is_file():
            raise ReportError(
                f"quarto finished but wrote no {target}; check the quarto version (1.4 or later)."
            )
        out[fmt] = produced
    return out
