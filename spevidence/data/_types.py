"""Portable (DuckDB and Spark) Ibis expressions that coerce raw extract columns.

Every coercion returns ``NULL`` for a value it cannot read instead of failing, so
validation can count and report bad rows.
"""

from __future__ import annotations

import re

import ibis
import ibis.expr.types as ir

from spevidence.errors import DataError
from spevidence.identity.nhs import ALL_EQUAL

ISO = "%Y-%m-%d"
UK = "%d/%m/%Y"
_TOKENS = {"%Y": r"(\d{4})", "%m": r"(\d{1,2})", "%d": r"(\d{1,2})"}
_TIME_TAIL = r"(?:[ T]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?"


def describe_format(fmt: str) -> str:
    return fmt.replace("%Y", "YYYY").replace("%m", "MM").replace("%d", "DD")


def _compile(fmt: str) -> tuple[str, tuple[int, int, int]]:
    """strftime-like format with %Y, %m, %d -> (regex, group index of y, m, d)."""
    parts: list[str] = []
    order: list[str] = []
    i = 0
    while i < len(fmt):
        tok = fmt[i : i + 2]
        if tok in _TOKENS:
            parts.append(_TOKENS[tok])
            order.append(tok)
            i += 2
        elif fmt[i] == "%":
            raise DataError(
                f"date_format {fmt!r}: only %Y, %m and %d are supported. "
                "Fix: e.g. date_format='%d/%m/%Y'."
            )
        else:
            parts.append(re.escape(fmt[i]))
            i += 1
    if sorted(order) != ["%Y", "%d", "%m"]:
        raise DataError(
            f"date_format {fmt!r} must contain %Y, %m and %d once each. "
            "Fix: e.g. date_format='%d/%m/%Y'."
        )
    regex = r"^\s*" + "".join(parts) + _TIME_TAIL + r"\s*$"
    return regex, (order.index("%Y") + 1, order.index("%m") + 1, order.index("%d") + 1)


def date_parts(s: ir.StringValue, fmt: str) -> tuple[ir.Value, ir.Value, ir.Value]:
    """Year, month, day (int or NULL) of text in format ``fmt``."""
    regex, groups = _compile(fmt)
    y, m, d = (s.re_extract(regex, g).nullif("").try_cast("int32") for g in groups)
    return y, m, d


def date_from_parts(y: ir.IntegerValue, m: ir.IntegerValue, d: ir.IntegerValue) -> ir.Value:
    """A date, or NULL when the parts are not a real calendar date (e.g. 30 February)."""
    leap = ((y % 4 == 0) & (y % 100 != 0)) | (y % 400 == 0)
    dim = ibis.cases(
        (m == 2, ibis.cases((leap, 29), else_=28)),
        (m.isin([4, 6, 9, 11]), 30),
        else_=31,
    )
    ok = y.between(1850, 2200) & m.between(1, 12) & d.between(1, dim)
    return ibis.cases((ok, ibis.date(y, m, d)), else_=ibis.null("date"))


def date_formats(date_format: str | None) -> tuple[str, ...]:
    """Formats tried in order: ISO always, then the given format (default DD/MM/YYYY)."""
    other = date_format or UK
    return (ISO,) if other == ISO else (ISO, other)


def clean_str(col: ir.Value) -> ir.StringValue:
    """Text, trimmed; empty -> NULL.

    Trimming copies every string, which dominated validation time on tens of millions
    of rows; only values whose first or last character is whitespace (or that are
    empty) are trimmed. ASCII whitespace sorts below the space character.
    """
    s = col.cast("string")
    edge = (s.substr(0, 1) <= " ") | (s.right(1) <= " ")
    return ibis.cases((edge, s.strip()), else_=s).nullif("")


def parse_int(col: ir.Value) -> ir.IntegerValue:
    dt = col.type()
    if dt.is_integer():
        return col.cast("int64")
    if dt.is_floating() or dt.is_decimal():
        c = col.cast("float64")
        return ibis.cases((c == c.floor(), c.cast("int64")), else_=ibis.null("int64"))
    s = clean_str(col)
    ok = s.re_search(r"^[+-]?\d{1,15}(\.0+)?$")
    return ibis.cases(
        (ok, s.re_extract(r"^([+-]?\d{1,15})", 1).try_cast("int64")), else_=ibis.null("int64")
    )


def parse_float(col: ir.Value) -> ir.FloatingValue:
    dt = col.type()
    if dt.is_numeric():
        return col.cast("float64")
    s = clean_str(col)
    ok = s.re_search(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
    return ibis.cases((ok, s.try_cast("float64")), else_=ibis.null("float64"))


def parse_bool(col: ir.Value) -> ir.BooleanValue:
    dt = col.type()
    if dt.is_boolean():
        return col
    if dt.is_numeric():
        return ibis.cases((col == 1, True), (col == 0, False), else_=ibis.null("boolean"))
    s = clean_str(col).lower()
    return ibis.cases(
        (s.isin(["true", "t", "yes", "y", "1"]), True),
        (s.isin(["false", "f", "no", "n", "0"]), False),
        else_=ibis.null("boolean"),
    )


def nhs_number_valid(s: ir.StringValue) -> ir.BooleanValue:
    """Modulus-11 check of a normalised (no separators) string, in the engine; ten equal
    digits (placeholders such as 0000000000) are invalid."""
    ok = s.re_search(r"^\d{10}$") & ~s.isin(list(ALL_EQUAL))
    digits = [s.substr(i, 1).try_cast("int64") for i in range(10)]
    total = sum((digits[i] * (10 - i) for i in range(9)), ibis.literal(0, "int64"))
    check = 11 - total % 11
    check = ibis.cases((check == 11, 0), else_=check)
    return ibis.cases((ok, (check != 10) & (check == digits[9])), else_=False)


def normalise_id(col: ir.Value, *, nhs: bool) -> ir.StringValue:
    s = clean_str(col)
    if nhs:
        s = s.re_replace(r"[\s-]", "").nullif("")
    return s
