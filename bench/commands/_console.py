"""The consoles every command prints to (standard output, and standard error for errors)."""

from __future__ import annotations

import argparse

from rich.markup import escape

from bench.config.plugins import FolderTrust
from bench.execute.console import make_console

console = make_console()
err = make_console(stderr=True)


def folder_trust(args: argparse.Namespace) -> FolderTrust:
    """What code a command that reads results folders may import: ``--import`` and ``--trust-plugins``."""
    return FolderTrust(
        tuple(args.imports), args.trust_plugins, log=lambda line: err.print(escape(line), highlight=False)
    )


def cache_setting(no_cache: bool, cache_dir: str | None) -> str | bool:
    """--no-cache -> False, --cache-dir DIR -> DIR, else True (the default shared cache)."""
    return False if no_cache else cache_dir or True
