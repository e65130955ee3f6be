"""bundle stage (DESIGN.md section 2)."""
