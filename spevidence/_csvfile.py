"""CSV files as exported in practice: encoding, delimiter and a header that may be data.

No ibis here: used by the readers (``spevidence.data``) and by
``spevidence.identity.pseudonymise_file``; it sits at the root so that identity, which
data builds on, need not import data.
"""

from __future__ import annotations

import codecs
import csv
import re
from dataclasses import dataclass
from pathlib import Path

from spevidence.errors import DataError

# A header cell is shown in a message only when it looks like a column name: ASCII
# letters, digits, "_", " ", "." or "-", starting with a letter or "_", at most 40
# characters, at most 4 digits and no three in a row (so no NHS number, date, year or
# hexadecimal pseudonym), and not one word of over 20 characters (a token). Anything
# else may be a value from a data row.
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_ .\-]{0,39}")
# A cell that looks like a value: a number or date (also 10-Apr-2021), a run of six
# digits, or a long hexadecimal token (a pseudonym).
_VALUE = re.compile(
    r"[\d\s/.:+\-]+|.*\d{6}.*|(?=.*\d)[0-9a-fA-F]{16,}|\d{1,2}[-/ ]?[A-Za-z]{3,9}[-/ ]?\d{2,4}"
)


def looks_like_column_name(name: str) -> bool:
    """``True`` when a header cell may be shown in a message (never a data value)."""
    s = name.strip()
    digits = sum(ch.isdigit() for ch in s)
    token = len(s) > 20 and not re.search(r"[_ .\-]", s)  # one long word: a token?
    return bool(_NAME.fullmatch(s)) and digits <= 4 and not re.search(r"\d{3}", s) and not token


def header_looks_like_data(names: list[str]) -> bool:
    """``True`` when a header row holds values (a number, date or identifier)."""
    return any(_VALUE.fullmatch(n.strip()) for n in names if n.strip())


def columns_text(names: list[str]) -> str:
    """The columns of a header for a message: names that look like names, and a count
    of the others (whose text is never shown)."""
    shown = [n for n in names if looks_like_column_name(n)]
    hidden = len(names) - len(shown)
    parts = [", ".join(shown)] if shown else []
    if hidden:
        parts.append(f"{hidden} column{'s' if hidden > 1 else ''} whose name is not shown")
    return " and ".join(parts) or "none"


@dataclass(frozen=True)
class Dialect:
    encoding: str  # for Python's open() and pyarrow
    delimiter: str


_DELIMITERS = (";", "\t", "|")


def sniff(path: Path) -> Dialect:
    """Encoding and delimiter of a CSV file from its first 64 KiB.

    UTF-8 (with or without a byte-order mark) and UTF-16 with a byte-order mark are read
    as such; text that is not UTF-8 is read as Windows-1252 (Latin-1 where that fails).
    A header row without commas but with semicolons, tabs or bars gives the delimiter.
    """
    with open(path, "rb") as fh:
        head = fh.read(1 << 16)
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        enc = "utf-16"
    elif head.startswith(codecs.BOM_UTF8):
        enc = "utf-8-sig"
    elif b"\x00" in head:
        raise DataError(
            f"{path.name}: the file looks like UTF-16 text without a byte-order mark (or is "
            "not text). Fix: export it as UTF-8 CSV (or UTF-16 with a byte-order mark)."
        )
    else:
        enc = "utf-8"
        try:
            head.decode("utf-8")
        except UnicodeDecodeError as exc:
            if exc.start < len(head) - 3:  # not just a character cut at the sample's end
                enc = "cp1252" if _decodes(head, "cp1252") else "latin-1"
    first = head.decode(enc, errors="replace").lstrip("\ufeff").split("\n", 1)[0]
    delimiter = ","
    if "," not in first:
        delimiter = max(_DELIMITERS, key=first.count)
        delimiter = delimiter if first.count(delimiter) else ","
    return Dialect(enc, delimiter)


def _decodes(data: bytes, encoding: str) -> bool:
    try:
        data.decode(encoding)
    except UnicodeDecodeError:
        return False
    return True


def csv_header(path: Path, dialect: Dialect) -> list[str]:
    with open(path, newline="", encoding=dialect.encoding) as fh:
        row = next(csv.reader(fh, delimiter=dialect.delimiter), None)
    if not row:
        raise DataError(f"{path.name}: the file is empty (no header row). Fix: re-export it.")
    return [c.strip().lstrip("\ufeff") for c in row]
