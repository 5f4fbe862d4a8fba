"""``bench names``: every name a suite can use, with its description and options."""

from __future__ import annotations

import argparse

from rich.markup import escape
from rich.table import Table

from bench.commands._console import console
from bench.config.catalogue import KINDS, catalogue
from bench.config.plugins import import_plugins


def main(args: argparse.Namespace) -> int:
    import_plugins(args.imports)  # a plugin's own names are listed too
    entries = catalogue(tuple(args.kind) if args.kind else KINDS)
    for kind in KINDS:
        rows = [e for e in entries if e.kind == kind]
        if not rows:
            continue
        table = Table(title=f"{kind} ({len(rows)})", title_justify="left", show_lines=False)
        for column in ("name", "description", "options"):
            table.add_column(column, overflow="fold")
        for e in rows:
            table.add_row(escape(e.name), escape(e.description), escape(", ".join(e.options)))
        console.print(table)
    return 0
