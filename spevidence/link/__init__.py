"""link stage (DESIGN.md section 2)."""
