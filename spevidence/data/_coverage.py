"""Old path of :mod:`spevidence.data.coverage`, kept until cli.py and report/narrative.py
import that module; remove then."""

from spevidence.data.coverage import MAX_ROW_LOSS, pct

__all__ = ["MAX_ROW_LOSS", "pct"]
