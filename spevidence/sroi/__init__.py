"""sroi stage (DESIGN.md section 2)."""
