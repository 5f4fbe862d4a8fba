"""Errors of a results folder's files."""

from __future__ import annotations

from cascade.errors import UserError


class StoreError(ValueError, UserError):
    """A results folder or one of its files is unusable (unknown schema, malformed, damaged)."""
