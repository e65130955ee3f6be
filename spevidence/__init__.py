"""spevidence: evaluate NHS social prescribing.

Link pseudonymised referral cohorts to NHS use, match referred people to comparators
at the moment of referral, estimate effects by difference-in-differences, value them
with SROI, and render a reproducible, disclosure-safe report.
"""

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

__all__ = [
    "DataError",
    "DisclosureError",
    "EstimationError",
    "IdentityError",
    "ProtocolError",
    "ReportError",
    "SpevidenceError",
    "__version__",
]
