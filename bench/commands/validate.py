"""``bench validate``: a suite checked (every error at once) and its runs counted, without running it."""

from __future__ import annotations

import argparse

from rich.markup import escape

from bench.commands._console import console, err
from bench.config.diagnose import suite_errors
from bench.config.load import load_suite
from bench.config.plan import expand_runs


def main(args: argparse.Namespace) -> int:
    errors = suite_errors(args.suite, args.set, args.imports)
    if len(errors) > 1:  # every error at once (one alone takes the usual one-line path of bench.cli)
        for e in errors:
            err.print(f"[red]error[/]: {escape(str(e))}", highlight=False)
        err.print(f"{len(errors)} errors in {args.suite}", highlight=False)
        return 2
    suite = load_suite(args.suite, args.set, args.imports)
    runs = expand_runs(suite, args.set)
    console.print(
        f"[green]ok[/]: {args.suite}: suite {suite.name!r}, {len(suite.variants)} variant(s), "
        f"{len(suite.suite.seeds)} seed(s), {len(runs)} run(s)"
    )
    return 0
