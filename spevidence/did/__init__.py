"""did stage (DESIGN.md section 2)."""
