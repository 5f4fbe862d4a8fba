"""``bench list``, ``bench cost`` and ``bench verify``: what a folder or a suite holds, without running it."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.markup import escape

from bench.commands._console import console
from bench.render.format import rich_table
from bench.render.views import cost_views, runs_frame
from bench.results.verify import verify_folder


def list_runs(args: argparse.Namespace) -> int:
    console.print(rich_table(runs_frame(Path(args.dir)), f"runs in {args.dir}"))
    return 0


def cost(args: argparse.Namespace) -> int:
    only = [*args.only, *([args.variant] if args.variant else [])]
    for view in cost_views(args.suite, args.set, table=args.energy_table, imports=args.imports, only=only):
        console.print(rich_table(view.frame, view.title))
        console.print(view.totals)
        if view.unsupported:
            console.print(f"[yellow]operators without a cost formula (not counted)[/]: {view.unsupported}")
    return 0


def verify(args: argparse.Namespace) -> int:
    result = verify_folder(args.dir)
    for line in result.lines():
        console.print(escape(line), highlight=False)
    return 0 if result.ok else 1
