"""Scan released text for anything shaped like a patient identifier.

The bundle and the report must carry aggregates only (DESIGN.md section 2). This module
finds, in text, sequences shaped like an NHS number (ten digits, optionally grouped
3-3-4, that pass the modulus-11 check) and long opaque tokens shaped like a pseudonym
(hex or base64url strings of 20 or more characters that mix letters and digits). Hashes
the bundle itself records (its manifest) can be allowed explicitly.

Findings report the file and the kind of problem, never the matched value.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from spevidence.identity import is_valid_nhs_number

_NHS = re.compile(r"(?<![0-9A-Za-z.+/])(\d{3})[ -]?(\d{3})[ -]?(\d{4})(?![0-9A-Za-z]|\.\d)")
_TOKEN = re.compile(r"(?<![0-9A-Za-z_\-])[0-9A-Za-z_\-]{20,}(?![0-9A-Za-z_\-])")
_DATA_URI = re.compile(r"data:[a-z]+/[a-z0-9.+\-]+;base64,[A-Za-z0-9+/=]+")
# SVG geometry (path data, point lists, transforms) is numbers, not text
_SVG_GEOMETRY = re.compile(r"""\s(?:d|points|transform|viewBox)\s*=\s*("[^"]*"|'[^']*')""", re.S)
_TEXT_SUFFIXES = {".csv", ".json", ".yaml", ".yml", ".md", ".html", ".txt", ".typ", ".svg", ".qmd"}


def _looks_like_token(tok: str) -> bool:
    """A pseudonym: a segment of 16+ characters mixing at least 3 digits and 3 letters."""
    for part in re.split(r"[_\-]", tok):
        if len(part) < 16:
            continue
        digits = sum(c.isdigit() for c in part)
        if digits >= 3 and len(part) - digits >= 3:
            return True
    return False


@dataclass(frozen=True)
class Finding:
    """One suspicious string: where it is and what it looks like (never its value)."""

    file: str
    line: int
    kind: str

    def __str__(self) -> str:
        return f"{self.file}, line {self.line}: {self.kind}"


def scan_text(text: str, *, name: str = "<text>", allow: Iterable[str] = ()) -> list[Finding]:
    """Return findings for NHS-number-shaped or pseudonym-shaped strings in ``text``."""
    allowed = set(allow)
    findings: list[Finding] = []
    text = _DATA_URI.sub("data:", text)
    text = _SVG_GEOMETRY.sub(lambda m: " " + "\n" * m.group(0).count("\n"), text)
    for lineno, line in enumerate(text.splitlines(), start=1):
        for m in _NHS.finditer(line):
            if is_valid_nhs_number("".join(m.groups())):
                findings.append(Finding(name, lineno, "NHS-number-shaped string"))
        for m in _TOKEN.finditer(line):
            tok = m.group(0)
            if tok in allowed or (len(tok) >= 16 and any(a.startswith(tok) for a in allowed)):
                continue
            if _looks_like_token(tok):
                findings.append(Finding(name, lineno, "pseudonym-shaped token"))
    return findings


def scan_paths(paths: Iterable[Path], *, allow: Iterable[str] = ()) -> list[Finding]:
    """Scan every text file (CSV, JSON, YAML, HTML, SVG, Markdown) under ``paths``."""
    allowed = set(allow)
    findings: list[Finding] = []
    for root in paths:
        files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
        for f in files:
            if f.suffix.lower() not in _TEXT_SUFFIXES:
                continue
            text = f.read_text(encoding="utf-8", errors="replace")
            findings.extend(scan_text(text, name=f.name, allow=allowed))
    return findings


def small_count_findings(
    table: object, *, name: str, count_columns: Iterable[str], threshold: int = 7, rounding: int = 5
) -> list[Finding]:
    """Cells of ``count_columns`` that break the rule: 1..threshold, or not a multiple of
    ``rounding``. Missing (redacted) cells and zeros pass. ``table`` is a pandas DataFrame.
    """
    import pandas as pd

    if not isinstance(table, pd.DataFrame):
        raise TypeError("table must be a pandas DataFrame")
    findings: list[Finding] = []
    for col in count_columns:
        if col not in table.columns:
            continue
        values = pd.to_numeric(table[col], errors="coerce")
        for row, v in enumerate(values, start=1):
            if pd.isna(v) or v == 0:
                continue
            if 0 < abs(v) <= threshold:
                findings.append(Finding(name, row, f"small count in column {col!r}"))
            elif rounding > 1 and float(v) % rounding != 0:
                findings.append(Finding(name, row, f"unrounded count in column {col!r}"))
    return findings
