"""protocol stage (DESIGN.md section 2)."""
