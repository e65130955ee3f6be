"""The built-in renderer: run a ``.qmd`` with a Jupyter kernel, convert with pandoc + typst.

Used when the Quarto CLI is not installed (DESIGN.md section 8). It follows Quarto's
conventions closely enough that one template serves both engines: a cell tagged
``parameters`` receives the parameters (``-P name:value`` in Quarto), ``#|`` options
``echo``, ``output`` (``true``/``false``/``asis``), ``include``, ``label``,
``fig-cap`` and ``fig-alt`` are honoured, and Markdown displayed by a cell becomes part
of the document.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import yaml

from spevidence._atomic import tool_disk_error
from spevidence.errors import ReportError
from spevidence.report._qmd import CodeCell, Markdown, QmdDocument

# Fixed dates so that two renders give the same bytes (2000-01-01T00:00:00Z).
FIXED_EPOCH = 946684800
_KERNEL_NAME = "spevidence-python"
_DROP_META = {
    "format",
    "execute",
    "params",
    "jupyter",
    "engine",
    "editor",
    "crossref",
    "filters",
}


def _pandoc() -> str:
    try:
        import pypandoc
    except ImportError:  # pragma: no cover - pypandoc_binary is a dependency
        found = shutil.which("pandoc")
        if found:
            return found
        raise ReportError(
            "pandoc is needed for the built-in renderer: install pypandoc_binary."
        ) from None
    try:
        return str(pypandoc.get_pandoc_path())
    except OSError:
        found = shutil.which("pandoc")
        if found:
            return found
        raise ReportError(
            "pandoc is needed for the built-in renderer: install pypandoc_binary."
        ) from None


def _package_root() -> Path:
    import spevidence

    return Path(spevidence.__file__).resolve().parent.parent


def _kernel_env() -> dict[str, str]:
    env = dict(os.environ)
    root = str(_package_root())
    old = env.get("PYTHONPATH")
    env["PYTHONPATH"] = root if not old else root + os.pathsep + old
    env["MPLBACKEND"] = "Agg"
    env["PYTHONHASHSEED"] = "0"
    env["SOURCE_DATE_EPOCH"] = str(FIXED_EPOCH)
    env["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"
    return env


def _write_kernelspec(workdir: Path) -> Path:
    """A kernel spec that runs ipykernel with this very Python (the venv's)."""
    kdir = workdir / ".kernels" / _KERNEL_NAME
    kdir.mkdir(parents=True, exist_ok=True)
    spec = {
        "argv": [
            sys.executable,
            "-m",
            "ipykernel_launcher",
            "-f",
            "{connection_file}",
            "--IPKernelApp.log_level=ERROR",
            # no IPython history: nothing of the report's cells written under the
            # user's home, and no sqlite error when writing is refused (disk full)
            "--HistoryManager.enabled=False",
        ],
        "display_name": "spevidence (Python)",
        "language": "python",
        "env": {},
    }
    (kdir / "kernel.json").write_text(json.dumps(spec), encoding="utf-8")
    return kdir.parent


def _param_source(params: dict[str, Any]) -> str:
    return "\n".join(f"{k} = {v!r}" for k, v in params.items())


def build_notebook(doc: QmdDocument, params: dict[str, Any]) -> tuple[Any, list[CodeCell]]:
    """Notebook of the document's python cells, with a parameters cell injected."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": _KERNEL_NAME, "display_name": "spevidence (Python)"}
    cells: list[CodeCell] = []
    injected = False
    for cell in doc.cells:
        if cell.lang != "python":
            raise ReportError(
                f"{doc.path.name if doc.path else 'template'}: cell on line {cell.line} is "
                f"{{{cell.lang}}}; the built-in renderer runs python cells only."
            )
        nb.cells.append(nbformat.v4.new_code_cell(cell.source))
        cells.append(cell)
        if "parameters" in cell.tags and params and not injected:
            nb.cells.append(nbformat.v4.new_code_cell(_param_source(params)))
            cells.append(CodeCell(source="", options={"include": False}))
            injected = True
    if params and not injected:
        nb.cells.insert(0, nbformat.v4.new_code_cell(_param_source(params)))
        cells.insert(0, CodeCell(source="", options={"include": False}))
    # deterministic cell ids (nbformat draws random ones)
    for i, c in enumerate(nb.cells):
        c["id"] = f"cell-{i:04d}"
    return nb, cells


def execute(doc: QmdDocument, params: dict[str, Any], workdir: Path, *, timeout: int) -> Any:
    """Execute the document's cells in a fresh python kernel; return the executed notebook."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    nb, cells = build_notebook(doc, params)
    ksm = KernelSpecManager(kernel_dirs=[str(_write_kernelspec(workdir))])
    ksm.ensure_native_kernel = False
    km = KernelManager(kernel_name=_KERNEL_NAME, kernel_spec_manager=ksm)
    client = NotebookClient(
        nb,
        km=km,
        timeout=timeout,
        kernel_name=_KERNEL_NAME,
        allow_errors=False,
        record_timing=False,
        resources={"metadata": {"path": str(workdir)}},
    )
    name = doc.path.name if doc.path else "template"
    try:
        client.execute(env=_kernel_env(), cwd=str(workdir))
    except CellExecutionError as exc:
        lines = str(exc).strip().splitlines()
        last = lines[-1] if lines else "unknown error"
        raise ReportError(
            f"{name}: a cell failed while rendering ({last}). Check that the bundle is "
            "complete and was written by this version of spevidence."
        ) from None
    except (CellTimeoutError, DeadKernelError) as exc:
        raise ReportError(f"{name}: the Python kernel stopped or timed out: {exc}") from None
    return nb, cells


def _truthy(value: Any, default: bool) -> bool:
    if value is None:
        return default
    if isinstance(value, str):
        return value.lower() not in ("false", "no", "0")
    return bool(value)


def _attr(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")


def assemble_markdown(doc: QmdDocument, nb: Any, cells: list[CodeCell], workdir: Path) -> str:
    """Turn executed cells and markdown chunks into one pandoc-markdown document."""
    defaults = doc.front_matter.get("execute", {}) or {}
    echo_default = _truthy(defaults.get("echo"), True)
    out_default = defaults.get("output", True)
    fig_dir = workdir / "_figures"
    fig_dir.mkdir(exist_ok=True)
    executed = iter(zip(nb.cells, cells, strict=True))
    parts: list[str] = []
    fig_no = 0
    for chunk in doc.chunks:
        if isinstance(chunk, Markdown):
            parts.append(chunk.text)
            continue
        # advance past injected parameter cells
        nb_cell, cell = next(executed)
        while cell is not chunk:
            nb_cell, cell = next(executed)
        opts = cell.options
        if not _truthy(opts.get("include"), True):
            continue
        if _truthy(opts.get("echo"), echo_default) and cell.source.strip():
            parts.append(f"\n```python\n{cell.source}\n```\n")
        output = opts.get("output", out_default)
        if output is False or (isinstance(output, str) and output.lower() == "false"):
            continue
        asis = isinstance(output, str) and output.lower() == "asis"
        label = str(opts.get("label", "")) or None
        cap = opts.get("fig-cap")
        alt = opts.get("fig-alt")
        for o in nb_cell.get("outputs", []):
            otype = o.get("output_type")
            if otype == "stream":
                if o.get("name") != "stdout":
                    continue
                text = o.get("text", "")
                parts.append(text if asis else f"\n```\n{text.rstrip()}\n```\n")
                continue
            if otype not in ("display_data", "execute_result"):
                continue
            data = o.get("data", {})
            if "text/markdown" in data:
                parts.append("\n" + data["text/markdown"].rstrip() + "\n")
            elif "image/png" in data:
                fig_no += 1
                fname = f"fig-{fig_no:03d}.png"
                (fig_dir / fname).write_bytes(base64.b64decode(data["image/png"]))
                attrs = []
                if label and fig_no:
                    attrs.append(f"#{label}")
                if alt:
                    attrs.append(f'fig-alt="{_attr(str(alt))}"')
                attr = "{" + " ".join(attrs) + "}" if attrs else ""
                parts.append(f"\n![{cap or ''}](_figures/{fname}){attr}\n")
            elif "text/plain" in data and otype == "execute_result":
                text = data["text/plain"]
                parts.append(text if asis else f"\n```\n{text.rstrip()}\n```\n")
    meta = {k: v for k, v in doc.front_matter.items() if k not in _DROP_META}
    header = "---\n" + yaml.safe_dump(meta, sort_keys=True, allow_unicode=True) + "---\n"
    body = "".join(p if p.endswith("\n") else p + "\n" for p in parts)
    return header + "\n" + body


def _run_pandoc(args: list[str], cwd: Path) -> None:
    env = dict(os.environ)
    env["SOURCE_DATE_EPOCH"] = str(FIXED_EPOCH)
    proc = subprocess.run(
        [_pandoc(), *args], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        if disk := tool_disk_error("pandoc", proc.stderr, proc.returncode):
            raise disk
        raise ReportError(f"pandoc failed (exit {proc.returncode}): {proc.stderr.strip()[:800]}")


def _format_options(doc: QmdDocument, fmt: str) -> dict[str, Any]:
    formats = doc.front_matter.get("format", {}) or {}
    if not isinstance(formats, dict):
        return {}
    key = "typst" if fmt == "pdf" else fmt
    opts = formats.get(key, {})
    return opts if isinstance(opts, dict) else {}


def convert(doc: QmdDocument, md_path: Path, fmt: str, out_path: Path, template_dir: Path) -> Path:
    """Convert the assembled markdown to html, docx or pdf (via typst)."""
    workdir = md_path.parent
    opts = _format_options(doc, fmt)
    resource = os.pathsep.join([str(workdir), str(template_dir)])
    common = ["-f", "markdown-citations", "--resource-path", resource, str(md_path.name)]
    for flt in _as_list(doc.front_matter.get("filters")):
        common += ["--lua-filter", str((template_dir / flt).resolve())]
    toc = _truthy(opts.get("toc"), False)
    if fmt == "html":
        args = [*common, "-t", "html5", "--standalone", "--embed-resources", "--wrap=none"]
        args += ["--section-divs", "--metadata", "lang=en-GB"]
        for css in _as_list(opts.get("css")):
            args += ["--css", str((template_dir / css).resolve())]
        tpl = opts.get("template")
        if tpl:
            args += ["--template", str((template_dir / tpl).resolve())]
        if toc:
            args += ["--toc", "--toc-depth", str(opts.get("toc-depth", 2))]
        if _truthy(opts.get("number-sections"), False):
            args += ["--number-sections"]
        args += ["-o", str(out_path)]
        _run_pandoc(args, workdir)
    elif fmt == "docx":
        args = [*common, "-t", "docx", "--wrap=none"]
        ref = opts.get("reference-doc")
        if ref:
            args += ["--reference-doc", str((template_dir / ref).resolve())]
        if toc:
            args += ["--toc", "--toc-depth", str(opts.get("toc-depth", 2))]
        if _truthy(opts.get("number-sections"), False):
            args += ["--number-sections"]
        args += ["-o", str(out_path)]
        _run_pandoc(args, workdir)
    elif fmt == "pdf":
        typ = workdir / (md_path.stem + ".typ")
        args = [*common, "-t", "typst", "--standalone", "--wrap=none"]
        tpl = opts.get("template")
        if tpl:
            args += ["--template", str((template_dir / tpl).resolve())]
        for key in ("papersize", "fontsize", "mainfont", "section-numbering", "page-numbering"):
            if opts.get(key) is not None:
                args += ["-V", f"{key}={opts[key]}"]
        for inc in _as_list(opts.get("include-in-header")):
            args += ["-H", str((template_dir / inc).resolve())]
        lang = doc.front_matter.get("lang")
        if isinstance(lang, str) and "-" in lang:
            args += ["-V", f"lang={lang.split('-')[0]}", "-V", f"region={lang.split('-')[1]}"]
        if toc:
            args += ["--toc", "--toc-depth", str(opts.get("toc-depth", 2))]
        args += ["-o", str(typ)]
        _run_pandoc(args, workdir)
        compile_typst(typ, out_path, root=workdir)
    else:
        raise ReportError(f"unknown format {fmt!r}: use html, pdf or docx.")
    return out_path


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    return [str(value)]


def compile_typst(typ: Path, out_path: Path, *, root: Path, fmt: str = "pdf") -> Any:
    """Compile typst markup with the ``typst`` wheel, embedded fonts only, fixed date."""
    import typst

    try:
        if fmt == "pdf":
            typst.compile(
                str(typ),
                output=str(out_path),
                root=str(root),
                format="pdf",
                ignore_system_fonts=True,
                timestamp=FIXED_EPOCH,
            )
            result: Any = None
        else:
            result = typst.compile(
                str(typ),
                root=str(root),
                format="png",
                ppi=60.0,
                ignore_system_fonts=True,
                timestamp=FIXED_EPOCH,
            )
    except Exception as exc:  # typst raises its own error type with the diagnostic
        if disk := tool_disk_error("typst", str(exc)):
            raise disk from None
        raise ReportError(f"typst could not compile {typ.name}: {str(exc)[:800]}") from None
    return result
