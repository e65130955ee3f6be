"""Extract schemas, readers and validation (DESIGN.md section 4)."""

from spevidence.data._read import Extracts, SourceInfo, read_extracts
from spevidence.data._results import Attrition, AttritionEntry, QAIssue, QAReport
from spevidence.data._validate import validate
from spevidence.data.schema import TABLES, Column, Table

__all__ = [
    "TABLES",
    "Attrition",
    "AttritionEntry",
    "Column",
    "Extracts",
    "QAIssue",
    "QAReport",
    "SourceInfo",
    "Table",
    "read_extracts",
    "validate",
]
