"""Counting words in messages: "1 run", "2 runs" (one rule for every line the harness prints)."""

from __future__ import annotations


def plural(n: int, word: str, many: str | None = None) -> str:
    """``plural(1, "run")`` -> "1 run"; ``plural(3, "run")`` -> "3 runs"; ``many`` for irregular plurals."""
    return f"{n:,} {word if n == 1 else (many or word + 's')}"
