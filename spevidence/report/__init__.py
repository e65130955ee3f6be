"""report stage (DESIGN.md section 2)."""
