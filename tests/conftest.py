"""Shared fixtures (owned by the integrator). Area-specific fixtures live in their test files."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
os.environ.setdefault("PYTHONHASHSEED", "0")
