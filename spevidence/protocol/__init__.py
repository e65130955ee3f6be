"""Evaluation protocols: a validated, frozen description of what is run (DESIGN.md section 2).

A protocol is a YAML file. :func:`load_protocol` validates it into a frozen
:class:`Protocol`; :func:`protocol_hash` gives the hash recorded in the bundle.
"""

from spevidence.protocol._model import (
    DidSpec,
    DisclosureSpec,
    MatchSpec,
    Protocol,
    ReportSpec,
    SroiSpec,
    StaggeredSpec,
    load_protocol,
    protocol_hash,
)

__all__ = [
    "DidSpec",
    "DisclosureSpec",
    "MatchSpec",
    "Protocol",
    "ReportSpec",
    "SroiSpec",
    "StaggeredSpec",
    "load_protocol",
    "protocol_hash",
]
