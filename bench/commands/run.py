"""``bench run``: train (or reuse) and evaluate every run of a suite, then write its report."""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from rich.markup import escape

from bench.commands._console import console, folder_trust, run_options
from bench.config.plugins import NO_TRUST, FolderTrust
from bench.execute.runner import run_suite
from bench.measure.microbench import CACHE_ENV as ROOFLINE_CACHE_ENV
from bench.render.format import rich_table
from bench.render.report import write_report
from bench.render.views import run_summary
from bench.results.files import WriteError

#: ``bench run --quick``: the switches that make a run quick (see suites/README.md, "Quick runs").
QUICK = ("evaluation.latency=false", "evaluation.count_macs=none", "evaluation.test_samples=1000")


def print_summary(out_dir: Path, trust: FolderTrust = NO_TRUST) -> None:
    """The compact main table of a results folder, and its warnings."""
    summary = run_summary(out_dir, trust)
    if summary is None:
        console.print("no finished runs")
        return
    console.print(rich_table(summary.frame, summary.title))
    for w in summary.warnings:
        console.print(f"[yellow]warning[/]: {escape(w)}", highlight=False)


@contextlib.contextmanager
def fresh_roofline(on: bool) -> Iterator[None]:
    """With ``on``: the roofline's cache (``$CASCADE_ROOFLINE_CACHE``) is an empty folder while the block runs, so the
    machine figures and the kernel table are measured afresh, once per runtime and thread count, and shared by every
    run of the command (worker processes inherit the variable); the variable and the user's cache are restored."""
    if not on:
        yield
        return
    before = os.environ.get(ROOFLINE_CACHE_ENV)
    with tempfile.TemporaryDirectory(prefix="cascade-roofline-fresh-") as folder:
        os.environ[ROOFLINE_CACHE_ENV] = folder
        try:
            yield
        finally:
            if before is None:
                os.environ.pop(ROOFLINE_CACHE_ENV, None)
            else:
                os.environ[ROOFLINE_CACHE_ENV] = before


def main(args: argparse.Namespace) -> int:
    with fresh_roofline(args.fresh_roofline):
        return _run_and_report(args)


def _run_and_report(args: argparse.Namespace) -> int:
    overrides = [*(QUICK if args.quick else ()), *args.set]
    summary = run_suite(args.suite, run_options(args, overrides), log=lambda s: console.print(escape(s)))
    own = FolderTrust(summary.plugins, log=lambda line: None)  # the suite's own plugins, imported already
    if not args.no_report:
        try:
            write_report(summary.out_dir, log=console.print, trust=own)
        except WriteError as e:  # counted: a folder without its report must not look finished
            summary.write_errors.append(str(e))
            console.print(f"write error: report not written: {escape(str(e))}", highlight=False)
        except Exception as e:  # a report problem must not lose the runs
            console.print(f"report not written: {type(e).__name__}: {escape(str(e))}")
    print_summary(summary.out_dir, own)
    console.print(escape(summary.closing_line()))
    return 0 if summary.ok else 1


def report(args: argparse.Namespace) -> int:
    """``bench report``: statistics, tables and figures of a results folder."""
    trust = folder_trust(args)
    write_report(Path(args.dir), log=console.print, only=args.only, dest=args.out, trust=trust)
    if not args.only:
        print_summary(Path(args.dir), trust)
    return 0
