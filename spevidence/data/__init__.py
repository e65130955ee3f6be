"""Extract schemas, readers and validation (DESIGN.md section 4)."""

from spevidence.data.schema import TABLES, Column, Table

__all__ = ["TABLES", "Column", "Table"]
