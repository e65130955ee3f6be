"""Old path of :mod:`spevidence.data.flow`, kept until pipeline.py imports that module;
remove then."""

from spevidence.data.flow import linkage_flow

__all__ = ["linkage_flow"]
