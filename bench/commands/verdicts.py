"""``bench compare``, ``bench check``, ``bench claims``, ``bench study``, ``bench methods`` and ``bench reproduce``:
verdicts on results folders.

None of them imports matplotlib (they print and write text only).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.commands._console import console, folder_trust, run_options
from bench.results.files import atomic_write_bytes
from bench.verdicts import methods, page, reproduction, study
from bench.verdicts.check import run_check
from bench.verdicts.compare import compare as compare_folders
from bench.verdicts.engine import evaluate, read_claims


def compare(args: argparse.Namespace) -> int:
    compare_folders(
        Path(args.a), Path(args.b), console=console, out=args.out, force=args.force, trust=folder_trust(args)
    )
    return 0


def check(args: argparse.Namespace) -> int:
    result = run_check(
        args.suite,
        baseline=args.baseline,
        options=run_options(args),
        update=args.update,
        markdown=args.markdown,
        console=console,
        claims=args.claims,
    )
    return 0 if result.passed else 1


def _emit(text: str, out: str | None) -> None:
    """Markdown to standard output, or atomically to ``out``."""
    if out is None:
        sys.stdout.write(text.rstrip("\n") + "\n")  # what --out would write, byte for byte
    else:
        atomic_write_bytes(Path(out), (text.rstrip("\n") + "\n").encode())
        console.print(f"wrote {out}", highlight=False)


def claims(args: argparse.Namespace) -> int:
    """``bench claims``: a claims file tested on results folders (the engine), as markdown."""
    spec = read_claims(args.claims)
    tables = evaluate(spec, [Path(d) for d in args.dirs], folder_trust(args), strict=not args.skip_missing)
    _emit(page.render(spec.page, tables), args.out)
    return 0


def study_claims(args: argparse.Namespace) -> int:
    _emit(study.render([Path(d) for d in args.dirs], folder_trust(args)), args.out)
    return 0


def methods_board(args: argparse.Namespace) -> int:
    _emit(methods.render([Path(d) for d in args.dirs], folder_trust(args)), args.out)
    return 0


def reproduce(args: argparse.Namespace) -> int:
    _emit(reproduction.render(Path(args.dir), folder_trust(args)), args.out)
    return 0
