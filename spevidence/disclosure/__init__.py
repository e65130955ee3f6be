"""disclosure stage (DESIGN.md section 2)."""
