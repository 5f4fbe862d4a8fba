"""``bench compare``, ``bench check``, ``bench study`` and ``bench reproduce``: verdicts on results folders.

None of them imports matplotlib (they print and write text only).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.commands._console import cache_setting, console, folder_trust
from bench.results.files import atomic_write_bytes
from bench.verdicts import methods, reproduction, study
from bench.verdicts.check import run_check
from bench.verdicts.compare import compare as compare_folders


def compare(args: argparse.Namespace) -> int:
    compare_folders(Path(args.a), Path(args.b), console=console, out=args.out, force=args.force,
                    trust=folder_trust(args))  # fmt: skip
    return 0


def check(args: argparse.Namespace) -> int:
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
        checkpoint_cache=cache_setting(args.no_cache, args.cache_dir),
    )
    return 0 if result.passed else 1


def _emit(text: str, out: str | None) -> None:
    """Markdown to standard output, or atomically to ``out``."""
    if out is None:
        print(text)
    else:
        atomic_write_bytes(Path(out), (text.rstrip("\n") + "\n").encode())
        console.print(f"wrote {out}", highlight=False)


def study_claims(args: argparse.Namespace) -> int:
    _emit(study.render([Path(d) for d in args.dirs]), args.out)
    return 0


def methods_board(args: argparse.Namespace) -> int:
    _emit(methods.render([Path(d) for d in args.dirs]), args.out)
    return 0


def reproduce(args: argparse.Namespace) -> int:
    _emit(reproduction.render(Path(args.dir)), args.out)
    return 0
