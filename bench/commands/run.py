"""``bench run``: train (or reuse) and evaluate every run of a suite, then write its report."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.markup import escape

from bench.commands._console import cache_setting, console
from bench.execute.runner import run_suite
from bench.render.format import rich_table
from bench.render.report import write_report
from bench.render.views import run_summary
from bench.results.files import WriteError

#: ``bench run --quick``: the switches that make a run quick (see suites/README.md, "Quick runs").
QUICK = ("evaluation.latency=false", "evaluation.count_macs=none", "evaluation.test_samples=1000")


def print_summary(out_dir: Path) -> None:
    """The compact main table of a results folder, and its warnings."""
    summary = run_summary(out_dir)
    if summary is None:
        console.print("no finished runs")
        return
    console.print(rich_table(summary.frame, summary.title))
    for w in summary.warnings:
        console.print(f"[yellow]warning[/]: {escape(w)}", highlight=False)


def main(args: argparse.Namespace) -> int:
    summary = run_suite(
        args.suite,
        out_dir=args.out,
        overrides=[*(QUICK if args.quick else ()), *args.set],
        imports=args.imports,
        jobs=args.jobs,
        force=args.force,
        executor=args.executor,
        executor_options=args.executor_flags,
        progress=not args.no_progress,
        log=lambda s: console.print(escape(s)),
        only=args.only,
        checkpoint_cache=cache_setting(args.no_cache, args.cache_dir),
        seeds=args.seed,
        retime=args.retime,
    )
    if not args.no_report:
        try:
            write_report(summary.out_dir, log=console.print)
        except WriteError as e:  # counted: a folder without its report must not look finished
            summary.write_errors.append(str(e))
            console.print(f"write error: report not written: {escape(str(e))}", highlight=False)
        except Exception as e:  # a report problem must not lose the runs
            console.print(f"report not written: {type(e).__name__}: {escape(str(e))}")
    print_summary(summary.out_dir)
    console.print(escape(summary.closing_line()))
    return 0 if summary.ok else 1


def report(args: argparse.Namespace) -> int:
    """``bench report``: statistics, tables and figures of a results folder."""
    write_report(Path(args.dir), log=console.print, only=args.only, dest=args.out)
    if not args.only:
        print_summary(Path(args.dir))
    return 0
