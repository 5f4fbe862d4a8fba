"""CI gate (filled in by the check issue)."""

from __future__ import annotations


class BaselineError(ValueError):
    """A missing or malformed baseline file."""
