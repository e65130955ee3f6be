"""match stage (DESIGN.md section 2)."""
