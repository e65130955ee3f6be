"""Deterministic serialisation and hashing of the bundle's files (also used by the report
to stamp what it was made from)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    """Return the hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return obj.as_posix()
    if isinstance(obj, set | frozenset):
        return sorted(obj, key=str)
    if hasattr(obj, "isoformat"):
        return obj.isoformat()
    if hasattr(obj, "item"):  # numpy scalars
        return obj.item()
    if hasattr(obj, "model_dump"):  # pydantic models
        return obj.model_dump(mode="json")
    return str(obj)


def canonical_json(obj: Any, *, indent: int | None = None) -> str:
    """JSON with sorted keys and a fixed layout, so equal objects give equal bytes."""
    return json.dumps(
        obj,
        sort_keys=True,
        indent=indent,
        ensure_ascii=False,
        separators=(",", ": ") if indent is not None else (",", ":"),
        default=_default,
        allow_nan=True,
    )


def sha256_json(obj: Any) -> str:
    """SHA-256 of the canonical JSON form of ``obj``."""
    return hashlib.sha256(canonical_json(obj).encode("utf-8")).hexdigest()
