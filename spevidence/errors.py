"""One exception family. Messages name the table/column, the count and the fix.

No message may contain a patient identifier (NHS number, pseudonym, key).
"""

from __future__ import annotations


class SpevidenceError(Exception):
    """Base class: a problem the user can fix. The CLI prints it without a traceback."""


class ProtocolError(SpevidenceError):
    """The protocol file is missing, malformed or inconsistent."""


class DataError(SpevidenceError):
    """An extract fails its data contract (schema, dates, codes, linkage)."""


class IdentityError(SpevidenceError):
    """Pseudonymisation problem: missing or weak key, invalid identifiers."""


class EstimationError(SpevidenceError):
    """An estimator cannot run on the data given (no treated units, singular design...)."""


class DisclosureError(SpevidenceError):
    """A table would release a number that breaks the disclosure rules."""


class ReportError(SpevidenceError):
    """A report or bundle cannot be rendered or verified."""


class MemoryLimitError(SpevidenceError):
    """A run would need, or reached, more memory than its limit (spevidence.memory)."""
