"""Moved to :mod:`spevidence.reproduce`; kept until ``cli.py`` imports it from there."""

from spevidence.reproduce import Reproduction, Runner, reproduce

__all__ = ["Reproduction", "Runner", "reproduce"]
