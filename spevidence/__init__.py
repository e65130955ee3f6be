"""spevidence: evaluate NHS social prescribing.

Link pseudonymised referral cohorts to NHS use, match referred people to comparators
at the moment of referral, estimate effects by difference-in-differences, value them
with SROI, and render a reproducible, disclosure-safe report.

The public API is small and re-exported here; stages are also reachable as
subpackages (``spevidence.did``, ``spevidence.match``...). Heavy modules are imported
on first use, so ``import spevidence`` stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

from spevidence._version import __version__
from spevidence.errors import (
    DataError,
    DisclosureError,
    EstimationError,
    IdentityError,
    ProtocolError,
    ReportError,
    SpevidenceError,
)

# public name -> module that defines it
_LAZY = {
    "run": "spevidence.pipeline",
    "cite": "spevidence._cite",
    "load_protocol": "spevidence.protocol",
    "Protocol": "spevidence.protocol",
    "generate": "spevidence.synthetic",
    "read_extracts": "spevidence.data",
    "validate": "spevidence.data",
    "is_valid_nhs_number": "spevidence.identity",
    "pseudonymise": "spevidence.identity",
    "build_panel": "spevidence.link",
    "nearest": "spevidence.match",
    "risk_set": "spevidence.match",
    "two_by_two": "spevidence.did",
    "twfe": "spevidence.did",
    "event_study": "spevidence.did",
    "staggered": "spevidence.did",
    "etwfe": "spevidence.did",
    "sroi_evaluate": "spevidence.sroi",
    "control": "spevidence.disclosure",
    "write_bundle": "spevidence.bundle",
    "verify_bundle": "spevidence.bundle",
    "render": "spevidence.report",
}
_RENAMED = {"sroi_evaluate": "evaluate"}
_SUBPACKAGES = {
    "activity",
    "bundle",
    "data",
    "describe",
    "did",
    "disclosure",
    "identity",
    "link",
    "match",
    "pipeline",
    "protocol",
    "report",
    "sroi",
    "synthetic",
    "wellbeing",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module = importlib.import_module(_LAZY[name])
        value = getattr(module, _RENAMED.get(name, name))
        globals()[name] = value
        return value
    if name in _SUBPACKAGES:
        return importlib.import_module(f"spevidence.{name}")
    raise AttributeError(f"module 'spevidence' has no attribute {name!r}")


__all__ = [
    "DataError",
    "DisclosureError",
    "EstimationError",
    "IdentityError",
    "ProtocolError",
    "ReportError",
    "SpevidenceError",
    "__version__",
    *sorted(_LAZY),
]
