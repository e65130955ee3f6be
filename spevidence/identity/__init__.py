"""identity stage (DESIGN.md section 2)."""
