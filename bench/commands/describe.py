"""``bench cost``: what a suite's models cost, layer by layer, without running it."""

from __future__ import annotations

import argparse

from bench.commands._console import console
from bench.render.format import rich_table
from bench.render.views import cost_views


def cost(args: argparse.Namespace) -> int:
    only = [*args.only, *([args.variant] if args.variant else [])]
    for view in cost_views(args.suite, args.set, table=args.energy_table, imports=args.imports, only=only):
        console.print(rich_table(view.frame, view.title))
        console.print(view.totals)
        if view.unsupported:
            console.print(f"[yellow]operators without a cost formula (not counted)[/]: {view.unsupported}")
    return 0
