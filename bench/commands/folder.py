"""``bench list`` and ``bench verify``: what a results folder holds, read as data (neither torch nor pandas is
imported: these answer as fast as the folder's files are read)."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.markup import escape

from bench.commands._console import console
from bench.render.runlist import run_rows, runs_table
from bench.results.verify import verify_folder


def list_runs(args: argparse.Namespace) -> int:
    console.print(runs_table(run_rows(Path(args.dir)), f"runs in {args.dir}"))
    return 0


def verify(args: argparse.Namespace) -> int:
    result = verify_folder(args.dir)
    for line in result.lines():
        console.print(escape(line), highlight=False)
    return 0 if result.ok else 1
