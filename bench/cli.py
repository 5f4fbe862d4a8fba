"""``bench``: the command line. Argument parsing and a command table; each command is a module of
:mod:`bench.commands`, imported only when that command runs (``bench --help`` imports neither torch
nor matplotlib)."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rich.markup import escape

import cascade
from bench.commands._console import err
from bench.config.engines import EXECUTORS, executor_flags
from cascade.errors import UserError

AddArguments = Callable[[argparse.ArgumentParser], None]


@dataclass(frozen=True)
class Command:
    """A subcommand: its help line, its arguments, and ``module:function`` that runs it (resolved on use)."""

    help: str
    arguments: AddArguments
    target: str

    def run(self, args: argparse.Namespace) -> int:
        module, _, function = self.target.partition(":")
        fn: Callable[[argparse.Namespace], int] = getattr(importlib.import_module(module), function)
        return int(fn(args))


# --------------------------------------------------------------------------- shared arguments


def _suite_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a suite value, e.g. train.epochs=2, suite.seeds=[0,1], variants.firm-p2.epochs=3",
    )
    _import(p, "import your own code first, so the models, losses or datasets it registers are known by name")


def _import(p: argparse.ArgumentParser, help_text: str) -> None:
    p.add_argument("--import", dest="imports", action="append", default=[], metavar="FILE_OR_MODULE", help=help_text)


def _folder_code(p: argparse.ArgumentParser) -> None:
    """A command that reads results folders imports no code they name; the user passes it, or allows it."""
    _import(
        p,
        "import this code first (a plugin the folder's suite needs); a folder's own plugins are never imported "
        "without it or --trust-plugins",
    )
    p.add_argument(
        "--trust-plugins",
        action="store_true",
        help="import the plugins the folder's suite names (each import is printed); read them first",
    )


def _only(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAME|GLOB",
        help="only these variants (repeatable): a name, a sweep point like 'firm-p1[lambda=0.2]', or a glob",
    )


def _cache(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--cache-dir",
        default=None,
        help="shared checkpoint cache (default $CASCADE_CHECKPOINT_CACHE, else ~/.cache/cascade-bench/checkpoints)",
    )
    p.add_argument("--no-cache", action="store_true", help="reuse only this folder's checkpoints")


def _executor(p: argparse.ArgumentParser) -> None:
    """``--executor`` and one flag per executor option, generated from :data:`bench.config.engines.EXECUTORS`."""
    p.add_argument(
        "--executor",
        choices=EXECUTORS.names(),
        default=None,
        help="where runs execute (default: the suite's [executor] name, else local)",
    )
    for flag, users in executor_flags().items():
        help_text = "; ".join(f"{name}: {option.help}" for name, option in users)
        p.add_argument(
            f"--{flag.replace('_', '-')}",
            dest=f"executor_flag_{flag}",
            type=users[0][1].type,
            default=None,
            metavar=flag.upper(),
            help=help_text,
        )


def executor_flag_values(args: argparse.Namespace) -> dict[str, object]:
    """The executor flags that were given (flag name -> value); the suite's [executor] table supplies the rest."""
    prefix = "executor_flag_"
    return {k[len(prefix) :]: v for k, v in vars(args).items() if k.startswith(prefix) and v is not None}


# --------------------------------------------------------------------------- each command's arguments


def _run(p: argparse.ArgumentParser) -> None:
    p.add_argument("suite", help="suite TOML file")
    p.add_argument("--out", default=None, help="output folder (default results/<suite name>)")
    _suite_options(p)
    _only(p)
    p.add_argument(
        "--seed",
        type=int,
        action="append",
        default=[],
        metavar="N",
        help="only this seed of the suite (repeatable): e.g. seed 0 of every variant first",
    )
    _cache(p)
    p.add_argument("--jobs", type=int, default=None, help="parallel local processes (default: the suite's, else 1)")
    p.add_argument("--force", action="store_true", help="rerun (and retrain) completed runs")
    p.add_argument(
        "--retime",
        action="store_true",
        help="evaluate and time the chosen runs again from their checkpoints, never training (e.g. on a "
        "quieter machine, or with another runtime: --set evaluation.runtimes=...)",
    )
    p.add_argument(
        "--fresh-roofline",
        action="store_true",
        help="measure the roofline's machine figures and kernel table afresh at the start of this run "
        "instead of reading the per-machine cache (which may date from a faster or slower hour of a "
        "shared machine); every run of this command uses them; the cache is kept",
    )
    _executor(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--no-report", action="store_true", help="do not write the report at the end")
    p.add_argument(
        "--quick",
        action="store_true",
        help="quick evaluation: no latency, no MAC counting of the dynamic forward, 1,000 test samples "
        "(recorded in the runs and the report; the trained checkpoints are the same)",
    )


def _validate(p: argparse.ArgumentParser) -> None:
    p.add_argument("suite")
    _suite_options(p)


def _folder(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", help="results folder")


def _export(p: argparse.ArgumentParser) -> None:
    _folder(p)
    p.add_argument("--variant", required=True, help="the variant to export")
    p.add_argument("--seed", type=int, default=None, help="its seed (default: the lowest)")
    p.add_argument("--threshold", type=float, default=None, help="exit threshold (default: the suite's headline)")
    p.add_argument(
        "--format",
        choices=["onnx", "onnx-graph", "executorch"],
        default="onnx",
        help="onnx: a file per segment and head (the decision in your code); onnx-graph: the whole cascade and its "
        "policy as one ONNX graph (one call per batch); executorch: an ExecuTorch program, XNNPACK, batch 1",
    )
    p.add_argument("--out", required=True, help="folder to write the files into")
    _cache(p)
    _folder_code(p)


def _cost(p: argparse.ArgumentParser) -> None:
    p.add_argument("suite")
    p.add_argument("--variant", default=None, help="only this variant (the same as --only NAME)")
    _only(p)
    p.add_argument("--energy-table", default=None, help="energy table (default: the suite's)")
    _suite_options(p)


def _report(p: argparse.ArgumentParser) -> None:
    _folder(p)
    _only(p)
    p.add_argument("--out", default=None, help="with --only: folder of the subset's report (default DIR/subsets/...)")
    _folder_code(p)


def _compare(p: argparse.ArgumentParser) -> None:
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--out", default=None, help="also write the comparison as markdown to this file")
    p.add_argument("--force", action="store_true", help="compare folders whose dataset, threshold or training differ")
    _folder_code(p)


def _check(p: argparse.ArgumentParser) -> None:
    p.add_argument("suite")
    p.add_argument("--baseline", required=True, help="baseline JSON (results/baselines/<suite>.json)")
    p.add_argument("--out", default=None, help="results folder (default results/<suite name>)")
    p.add_argument("--update", action="store_true", help="rewrite the baseline from this run, on purpose")
    p.add_argument("--markdown", default=None, help="write the table as markdown here (for CI logs)")
    p.add_argument(
        "--claims",
        default=None,
        metavar="FILE",
        help="also gate on a claims file: a row that agreed in the baseline must still agree "
        "(--update records its verdicts)",
    )
    p.add_argument("--jobs", type=int, default=None, help="parallel local processes (default: the suite's, else 1)")
    p.add_argument("--no-progress", action="store_true")
    _suite_options(p)
    _only(p)
    _cache(p)


def _markdown_out(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default=None, help="write the markdown here (default: standard output)")
    _folder_code(p)


def _claims(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "claims", help="a claims file (TOML; docs/claims.md), or a shipped one: study, methods, branchynet, msdnet"
    )
    p.add_argument("dirs", nargs="+", metavar="DIR", help="results folders to test the claims on")
    p.add_argument(
        "--skip-missing",
        action="store_true",
        help="a variant or exit no folder has makes its rows untestable (default: a named error, as for a typo)",
    )
    _markdown_out(p)


def _study(p: argparse.ArgumentParser) -> None:
    p.add_argument("dirs", nargs="+", metavar="DIR", help="results folders of the study's suites (mnist, noisy_mnist)")
    _markdown_out(p)


def _methods(p: argparse.ArgumentParser) -> None:
    p.add_argument("dirs", nargs="+", metavar="DIR", help="results folders of the methods suites")
    _markdown_out(p)


def _reproduce(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", help="results folder of suites/branchynet_lenet.toml")
    _markdown_out(p)


def _nothing(p: argparse.ArgumentParser) -> None:
    return None


def _names(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "kind",
        nargs="*",
        choices=["loss", "policy", "model", "head", "dataset", "runtime", "executor", []],
        help="only these kinds (default: every kind)",
    )
    _import(p, "import this plugin first, so that its names are listed too")


COMMANDS: dict[str, Command] = {
    "run": Command("train and evaluate every run of a suite (skips completed runs)", _run, "bench.commands.run:main"),
    "validate": Command("check a suite file without running it", _validate, "bench.commands.validate:main"),
    "verify": Command(
        "check every checkpoint and exit-output file against its recorded SHA-256",
        _folder,
        "bench.commands.folder:verify",
    ),
    "export": Command(
        "a trained run as ONNX segments and heads plus cascade.json, for deployment",
        _export,
        "bench.commands.export:main",
    ),
    "list": Command("runs in a results folder and their status", _folder, "bench.commands.folder:list_runs"),
    "cost": Command("per-layer MACs, bytes and energy of a suite's models", _cost, "bench.commands.describe:cost"),
    "report": Command("statistics, tables and figures of a results folder", _report, "bench.commands.run:report"),
    "compare": Command(
        "compare two results folders (e.g. before/after a change)", _compare, "bench.commands.verdicts:compare"
    ),
    "check": Command(
        "CI gate: fail when savings or accuracy regress against a baseline", _check, "bench.commands.verdicts:check"
    ),
    "claims": Command(
        "a claims file (a paper's claims as data) tested on results folders, each against its own comparator",
        _claims,
        "bench.commands.verdicts:claims",
    ),
    "study": Command(
        "the source study's claims tested on results folders (markdown, as in results/STUDY.md)",
        _study,
        "bench.commands.verdicts:study_claims",
    ),
    "methods": Command(
        "the early-exit training methods side by side: leaderboards and tests vs sum (results/METHODS.md)",
        _methods,
        "bench.commands.verdicts:methods_board",
    ),
    "reproduce": Command(
        "BranchyNet's Table I against a branchynet_lenet results folder (markdown)",
        _reproduce,
        "bench.commands.verdicts:reproduce",
    ),
    "names": Command(
        "every registered loss, policy, model, head, dataset, runtime and executor, with its options",
        _names,
        "bench.commands.names:main",
    ),
    "crosscheck": Command(
        "our energy model against ZigZag (the [crosscheck] extra)", _nothing, "bench.commands.crosscheck:main"
    ),
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench", description="Benchmark early-exit (cascade) networks.")
    p.add_argument("--version", action="version", version=f"bench (cascade-bench) {cascade.__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    for name, command in COMMANDS.items():
        sp = sub.add_parser(name, help=command.help, description=command.help)
        command.arguments(sp)
        sp.set_defaults(command_entry=command)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.executor_flags = executor_flag_values(args)
    try:
        return args.command_entry.run(args)
    except UserError as e:  # a suite, a folder, a data file or a name the user gave: one line, exit 2
        err.print(f"[red]error[/]: {escape(str(e))}", highlight=False)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished runs are saved; rerun the same command to continue", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
