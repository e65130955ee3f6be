"""Parse a Quarto ``.qmd`` file: YAML front matter, markdown, and ``{python}`` cells."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from spevidence.errors import ReportError

_FENCE_OPEN = re.compile(r"^(?P<ticks>`{3,})\s*\{(?P<lang>[A-Za-z0-9_]+)(?P<rest>[^}]*)\}\s*$")
_OPTION = re.compile(r"^#\|\s?(.*)$")


@dataclass(frozen=True)
class Markdown:
    """A run of markdown text between code cells."""

    text: str


@dataclass(frozen=True)
class CodeCell:
    """An executable cell: its source (without ``#|`` option lines) and its options."""

    source: str
    options: dict[str, Any] = field(default_factory=dict)
    lang: str = "python"
    line: int = 0

    @property
    def tags(self) -> list[str]:
        tags = self.options.get("tags", [])
        return [str(t) for t in tags] if isinstance(tags, list) else [str(tags)]


@dataclass(frozen=True)
class QmdDocument:
    """A parsed ``.qmd``: front matter and body chunks in order."""

    front_matter: dict[str, Any]
    chunks: tuple[Markdown | CodeCell, ...]
    path: Path | None = None

    @property
    def cells(self) -> list[CodeCell]:
        return [c for c in self.chunks if isinstance(c, CodeCell)]


def _split_front_matter(text: str, name: str) -> tuple[dict[str, Any], str, int]:
    lines = text.splitlines(keepends=True)
    if not lines or lines[0].strip() != "---":
        return {}, text, 0
    for i in range(1, len(lines)):
        if lines[i].strip() in ("---", "..."):
            try:
                meta = yaml.safe_load("".join(lines[1:i])) or {}
            except yaml.YAMLError as exc:
                raise ReportError(f"{name}: the YAML header is not valid YAML: {exc}") from None
            if not isinstance(meta, dict):
                raise ReportError(f"{name}: the YAML header must be a mapping of options.")
            return meta, "".join(lines[i + 1 :]), i + 1
    raise ReportError(f"{name}: the YAML header starting on line 1 is not closed with '---'.")


def parse_qmd_text(text: str, *, name: str = "<qmd>", path: Path | None = None) -> QmdDocument:
    """Parse the text of a ``.qmd`` file.

    Cell options are the leading ``#| key: value`` lines of a cell, read as YAML (as in
    Quarto). Fences of other languages without braces (```` ```python ````) are markdown.
    """
    meta, body, offset = _split_front_matter(text, name)
    chunks: list[Markdown | CodeCell] = []
    buf: list[str] = []
    lines = body.splitlines(keepends=True)
    i = 0
    while i < len(lines):
        m = _FENCE_OPEN.match(lines[i].rstrip("\n"))
        if not m:
            buf.append(lines[i])
            i += 1
            continue
        start = i
        ticks = m.group("ticks")
        i += 1
        cell_lines: list[str] = []
        while i < len(lines) and lines[i].strip() != ticks:
            cell_lines.append(lines[i])
            i += 1
        if i >= len(lines):
            raise ReportError(
                f"{name}: the code cell opened on line {start + offset + 1} is never closed "
                f"with {ticks}."
            )
        i += 1  # closing fence
        if buf:
            chunks.append(Markdown("".join(buf)))
            buf = []
        opt_lines: list[str] = []
        j = 0
        while j < len(cell_lines):
            om = _OPTION.match(cell_lines[j].rstrip("\n"))
            if not om:
                break
            opt_lines.append(om.group(1))
            j += 1
        try:
            options = yaml.safe_load("\n".join(opt_lines)) if opt_lines else {}
        except yaml.YAMLError as exc:
            raise ReportError(
                f"{name}: the '#|' options of the cell on line {start + offset + 1} are not "
                f"valid YAML: {exc}"
            ) from None
        chunks.append(
            CodeCell(
                source="".join(cell_lines[j:]).rstrip("\n"),
                options=dict(options or {}),
                lang=m.group("lang"),
                line=start + offset + 1,
            )
        )
    if buf:
        chunks.append(Markdown("".join(buf)))
    return QmdDocument(front_matter=meta, chunks=tuple(chunks), path=path)


def parse_qmd(path: str | Path) -> QmdDocument:
    """Read and parse a ``.qmd`` file."""
    p = Path(path)
    if not p.is_file():
        raise ReportError(f"report template {p} does not exist.")
    return parse_qmd_text(p.read_text(encoding="utf-8"), name=p.name, path=p)
