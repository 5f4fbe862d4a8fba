"""``bench``: the command line. Argument parsing only; each subcommand calls one plain function."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.markup import escape

from bench.config.plan import SelectionError, expand_runs
from bench.config.suite import SuiteError, load_suite, suite_errors
from bench.execute.executors import EXECUTORS
from bench.execute.export import export_run
from bench.execute.progress import make_console
from bench.execute.runner import run_suite
from bench.render.report import cost_views, rich_table, run_summary, runs_frame, write_report
from bench.results.files import WriteError
from bench.results.record import StoreError
from bench.results.verify import verify_folder
from bench.verdicts.check import BaselineError, run_check
from bench.verdicts.compare import compare
from cascade._registry import UnknownNameError
from cascade.data import DataFormatError, DataNotFoundError

console = make_console()
err = make_console(stderr=True)


def _executor_flags(args: argparse.Namespace) -> dict[str, object]:
    """Executor flags that were given; the suite's [executor] table supplies the rest."""
    names = ("partition", "time", "gpus_per_job", "cpus_per_job", "cluster", "workers")
    return {n: getattr(args, n) for n in names if getattr(args, n) is not None}


def _cache(args: argparse.Namespace) -> str | bool:
    """--no-cache -> False, --cache-dir DIR -> DIR, else True (the default shared cache)."""
    return False if args.no_cache else args.cache_dir or True


def print_summary(out_dir: Path) -> None:
    """The compact main table of a results folder, and its warnings."""
    summary = run_summary(out_dir)
    if summary is None:
        console.print("no finished runs")
        return
    console.print(rich_table(summary.frame, summary.title))
    for w in summary.warnings:
        console.print(f"[yellow]warning[/]: {escape(w)}", highlight=False)


#: ``bench run --quick``: the switches that make a run quick (see suites/README.md, "Quick runs").
QUICK = ("evaluation.latency=false", "evaluation.count_macs=none", "evaluation.test_samples=1000")


def cmd_run(args: argparse.Namespace) -> int:
    summary = run_suite(
        args.suite,
        out_dir=args.out,
        overrides=[*(QUICK if args.quick else ()), *args.set],
        imports=args.imports,
        jobs=args.jobs,
        force=args.force,
        executor=args.executor,
        executor_options=_executor_flags(args),
        progress=not args.no_progress,
        log=lambda s: console.print(escape(s)),
        only=args.only,
        checkpoint_cache=_cache(args),
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


def cmd_validate(args: argparse.Namespace) -> int:
    errors = suite_errors(args.suite, args.set, args.imports)
    if len(errors) > 1:  # every error at once (one alone takes the usual one-line path below)
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


def cmd_verify(args: argparse.Namespace) -> int:
    result = verify_folder(args.dir)
    for line in result.lines():
        console.print(escape(line), highlight=False)
    return 0 if result.ok else 1


def cmd_export(args: argparse.Namespace) -> int:
    summary = export_run(args.dir, variant=args.variant, seed=args.seed, out=args.out, threshold=args.threshold,
                         checkpoint_cache=_cache(args))  # fmt: skip
    a = summary.agreement
    console.print(escape(
        f"exported {summary.record.variant} seed {summary.record.seed} -> {summary.out}: {', '.join(summary.files)}\n"
        f"check on {a['samples']:,} test samples with ONNX Runtime: {a['differ']} decision(s) differ from eager "
        f"({a['ties']} of them ties within 1e-6); test accuracy {100 * summary.test_accuracy:.2f} %; "
        "serve it as docs/deploy.md shows"
    ), highlight=False)  # fmt: skip
    return 0 if a["other"] == 0 else 1


def cmd_list(args: argparse.Namespace) -> int:
    console.print(rich_table(runs_frame(Path(args.dir)), f"runs in {args.dir}"))
    return 0


def cmd_cost(args: argparse.Namespace) -> int:
    only = [*args.only, *([args.variant] if args.variant else [])]
    for view in cost_views(args.suite, args.set, table=args.energy_table, imports=args.imports, only=only):
        console.print(rich_table(view.frame, view.title))
        console.print(view.totals)
        if view.unsupported:
            console.print(f"[yellow]operators without a cost formula (not counted)[/]: {view.unsupported}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    write_report(Path(args.dir), log=console.print, only=args.only, dest=args.out)
    if not args.only:
        print_summary(Path(args.dir))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    compare(Path(args.a), Path(args.b), console=console, out=args.out, force=args.force)
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    result = run_check(
        args.suite,
        baseline=args.baseline,
        out_dir=args.out,
        overrides=args.set,
        imports=args.imports,
        update=args.update,
        jobs=args.jobs,
        markdown=args.markdown,
        console=console,
        progress=not args.no_progress,
        only=args.only,
        checkpoint_cache=_cache(args),
    )
    return 0 if result.passed else 1


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench", description="Benchmark early-exit (cascade) networks.")
    sub = p.add_subparsers(dest="command", required=True)

    def add_set(sp: argparse.ArgumentParser) -> None:
        sp.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="override a suite value, e.g. train.epochs=2, suite.seeds=[0,1], variants.firm-p2.epochs=3",
        )
        sp.add_argument(
            "--import",
            dest="imports",
            action="append",
            default=[],
            metavar="FILE_OR_MODULE",
            help="import your own code first, so the models, losses or datasets it registers are known by name",
        )

    def add_only(sp: argparse.ArgumentParser) -> None:
        sp.add_argument(
            "--only",
            action="append",
            default=[],
            metavar="NAME|GLOB",
            help="only these variants (repeatable): a name, a sweep point like 'firm-p1[lambda=0.2]', or a glob",
        )

    def add_cache(sp: argparse.ArgumentParser) -> None:
        sp.add_argument(
            "--cache-dir",
            default=None,
            help="shared checkpoint cache (default $CASCADE_CHECKPOINT_CACHE, else ~/.cache/cascade-bench/checkpoints)",
        )
        sp.add_argument("--no-cache", action="store_true", help="reuse only this folder's checkpoints")

    r = sub.add_parser("run", help="train and evaluate every run of a suite (skips completed runs)")
    r.add_argument("suite", help="suite TOML file")
    r.add_argument("--out", default=None, help="output folder (default results/<suite name>)")
    add_set(r)
    add_only(r)
    add_cache(r)
    r.add_argument("--jobs", type=int, default=None, help="parallel local processes (default: the suite's, else 1)")
    r.add_argument("--force", action="store_true", help="rerun (and retrain) completed runs")
    r.add_argument(
        "--executor",
        choices=EXECUTORS.names(),
        default=None,
        help="where runs execute (default: the suite's [executor] name, else local)",
    )
    r.add_argument(
        "--cluster",
        default=None,
        help="dask: scheduler address tcp://host:port; slurm: 'local' for submitit's local executor",
    )
    r.add_argument("--partition", default=None, help="slurm partition")
    r.add_argument("--time", type=int, default=None, help="slurm time limit per job, minutes")
    r.add_argument("--gpus-per-job", type=int, default=None, help="slurm GPUs per job")
    r.add_argument("--cpus-per-job", type=int, default=None, help="slurm CPUs per job")
    r.add_argument("--workers", type=int, default=None, help="dask: workers of the local cluster")
    r.add_argument("--no-progress", action="store_true", help="no progress bars")
    r.add_argument("--no-report", action="store_true", help="do not write the report at the end")
    r.add_argument(
        "--quick",
        action="store_true",
        help="quick evaluation: no latency, no MAC counting of the dynamic forward, 1,000 test samples "
        "(recorded in the runs and the report; the trained checkpoints are the same)",
    )
    r.set_defaults(fn=cmd_run)

    v = sub.add_parser("validate", help="check a suite file without running it")
    v.add_argument("suite")
    add_set(v)
    v.set_defaults(fn=cmd_validate)

    vf = sub.add_parser("verify", help="check every checkpoint and exit-output file against its recorded SHA-256")
    vf.add_argument("dir")
    vf.set_defaults(fn=cmd_verify)

    ex = sub.add_parser("export", help="a trained run as ONNX segments and heads plus cascade.json, for deployment")
    ex.add_argument("dir", help="results folder")
    ex.add_argument("--variant", required=True, help="the variant to export")
    ex.add_argument("--seed", type=int, default=None, help="its seed (default: the lowest)")
    ex.add_argument("--threshold", type=float, default=None, help="exit threshold (default: the suite's headline)")
    ex.add_argument("--runtime", choices=["onnx"], default="onnx", help="export format (ONNX, for ONNX Runtime)")
    ex.add_argument("--out", required=True, help="folder to write the files into")
    add_cache(ex)
    ex.set_defaults(fn=cmd_export)

    ls = sub.add_parser("list", help="runs in a results folder and their status")
    ls.add_argument("dir")
    ls.set_defaults(fn=cmd_list)

    c = sub.add_parser("cost", help="per-layer MACs, bytes and energy of a suite's models")
    c.add_argument("suite")
    c.add_argument("--variant", default=None, help="only this variant (the same as --only NAME)")
    add_only(c)
    c.add_argument("--energy-table", default=None, help="energy table (default: the suite's)")
    add_set(c)
    c.set_defaults(fn=cmd_cost)

    rp = sub.add_parser("report", help="statistics, tables and figures of a results folder")
    rp.add_argument("dir")
    add_only(rp)
    rp.add_argument("--out", default=None, help="with --only: folder of the subset's report (default DIR/subsets/...)")
    rp.set_defaults(fn=cmd_report)

    cp = sub.add_parser("compare", help="compare two results folders (e.g. before/after a change)")
    cp.add_argument("a")
    cp.add_argument("b")
    cp.add_argument("--out", default=None, help="also write the comparison as markdown to this file")
    cp.add_argument("--force", action="store_true", help="compare folders whose dataset, threshold or training differ")
    cp.set_defaults(fn=cmd_compare)

    ck = sub.add_parser("check", help="CI gate: fail when savings or accuracy regress against a baseline")
    ck.add_argument("suite")
    ck.add_argument("--baseline", required=True, help="baseline JSON (results/baselines/<suite>.json)")
    ck.add_argument("--out", default=None, help="results folder (default results/<suite name>)")
    ck.add_argument("--update", action="store_true", help="rewrite the baseline from this run, on purpose")
    ck.add_argument("--markdown", default=None, help="write the table as markdown here (for CI logs)")
    ck.add_argument("--jobs", type=int, default=None, help="parallel local processes (default: the suite's, else 1)")
    ck.add_argument("--no-progress", action="store_true")
    add_set(ck)
    add_only(ck)
    add_cache(ck)
    ck.set_defaults(fn=cmd_check)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.fn(args))
    except (SuiteError, StoreError, BaselineError, DataNotFoundError, DataFormatError, UnknownNameError,
            SelectionError) as e:  # fmt: skip
        err.print(f"[red]error[/]: {escape(str(e))}", highlight=False)
        return 2
    except KeyboardInterrupt:
        err.print("interrupted: finished runs are saved; rerun the same command to continue")
        return 130


if __name__ == "__main__":
    sys.exit(main())
