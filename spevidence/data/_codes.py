"""Coded columns: how their text is normalised, local codings recoded, and the one
paragraph that stops validation when a column holds values outside its allowed list.

Values of coded columns (staff roles, statuses, methods) are not identifiers and are
named in messages, but only when they look like codes: short, without long digit runs
(an NHS number, a date) and not token-like (a pseudonym); the others are counted only.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

import ibis
import ibis.expr.types as ir

from spevidence.data._types import clean_str
from spevidence.data.schema import Column

MAX_LISTED = 10  # unknown values named in one message; the rest are counted
_MAX_NAMED_LENGTH = 40
_CODE_TEXT = re.compile(r"[A-Za-z0-9 _&/().,'+-]+")
_DIGIT_RUN = re.compile(r"\d{4}")


def codes_norm(col: ir.StringValue, c: Column) -> ir.StringValue:
    """Normalise coded text: sex words, upper-case admission methods, '01' -> '1', and
    any other case matched to the allowed values' case ('GP' -> 'gp')."""
    allowed = c.allowed or ()
    if c.name == "sex":
        return col.upper().substitute({"FEMALE": "F", "MALE": "M", "2": "F", "1": "M"})
    if c.name == "admission_method":
        return col.upper()
    if all(a.isdigit() and not a.startswith("0") for a in allowed):
        return col.substitute({"0" + a: a for a in allowed})
    if all(a == a.lower() for a in allowed):
        return col.lower()
    return col.lower().substitute({a.lower(): a for a in allowed})


def recoded(t: ir.Table, values: Mapping[str, Mapping[str, str]]) -> ir.Table:
    """``t`` with local codes replaced by canonical ones, column by column (the local
    value as written in the extract, spaces around it ignored)."""
    if not values:
        return t
    cols = [c for c in values if c in t.columns]
    return t.mutate(**{c: clean_str(t[c]).substitute(dict(values[c])) for c in cols})


def _nameable(value: str) -> bool:
    """A value that looks like a code and may be named in a message."""
    if len(value) > _MAX_NAMED_LENGTH or not _CODE_TEXT.fullmatch(value):
        return False
    if _DIGIT_RUN.search(value):
        return False
    token_like = len(value) >= 12 and " " not in value and re.search(r"\d", value) is not None
    return not token_like


def unknown_values_error(table: str, raw: ir.Table, c: Column) -> str | None:
    """The paragraph that stops validation: ``table.column``, each unknown value with its
    row count, and the protocol line that recodes them (``None``: all values allowed)."""
    text = clean_str(raw[c.name])
    norm = codes_norm(text, c)
    bad = raw.filter(norm.notnull() & ~norm.isin(list(c.allowed or ())))
    counts = bad.group_by(value=clean_str(bad[c.name])).aggregate(n=ibis._.count())
    found = counts.order_by([ibis.desc("n"), "value"]).to_pyarrow().to_pylist()
    if not found:
        return None
    named = [(str(r["value"]), int(r["n"])) for r in found if _nameable(str(r["value"]))]
    listed = named[:MAX_LISTED]
    rest = len(found) - len(listed)
    total = sum(int(r["n"]) for r in found)
    allowed = ", ".join(c.allowed or ())
    parts = [f"{json.dumps(v)} ({n} rows)" for v, n in listed]
    if rest:
        parts.append(f"{rest} other value{'s' if rest > 1 else ''} (not shown)")
    first = listed[0][0] if listed else "your code"
    example = (
        f"extracts: {{{table}: {{values: {{{c.name}: "
        f"{{{json.dumps(first)}: {json.dumps((c.allowed or ('',))[0])}}}}}}}}}"
    )
    return (
        f"{table}.{c.name}: {total} rows hold values outside the allowed values ({allowed}): "
        f"{'; '.join(parts)}. The run stops, because rows it cannot classify would be "
        f"silently miscounted. Fix: recode each local value to one of {allowed} in the "
        f"protocol, one line per value, e.g. {example} (see docs/guide.md, 'Local codings'), "
        "or correct the extract at source."
    )
