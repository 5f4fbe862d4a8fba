"""The consoles every command prints to (standard output, and standard error for errors)."""

from __future__ import annotations

from bench.execute.console import make_console

console = make_console()
err = make_console(stderr=True)


def cache_setting(no_cache: bool, cache_dir: str | None) -> str | bool:
    """--no-cache -> False, --cache-dir DIR -> DIR, else True (the default shared cache)."""
    return False if no_cache else cache_dir or True
