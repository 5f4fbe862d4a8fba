"""The consoles every command prints to (standard output, and standard error for errors)."""

from __future__ import annotations

import argparse

from rich.markup import escape

from bench.config.plugins import FolderTrust
from bench.execute.console import make_console
from bench.execute.options import RunOptions

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


def run_options(args: argparse.Namespace, overrides: list[str] | None = None) -> RunOptions:
    """The run options of ``bench run`` and ``bench check`` from their shared flags (``overrides``: when the
    command adds its own to ``--set``)."""
    return RunOptions(
        out_dir=args.out,
        overrides=args.set if overrides is None else overrides,
        imports=args.imports,
        jobs=args.jobs,
        force=getattr(args, "force", False),
        executor=getattr(args, "executor", None),
        executor_options=getattr(args, "executor_flags", None),
        progress=not args.no_progress,
        only=args.only,
        checkpoint_cache=cache_setting(args.no_cache, args.cache_dir),
        seeds=getattr(args, "seed", ()),
        retime=getattr(args, "retime", False),
    )
