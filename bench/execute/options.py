"""The options of a suite run (``bench run``, ``bench check``): one value, made once from the command line or by a
caller, and passed through to :func:`bench.execute.runner.run_suite` unchanged."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class RunOptions:
    """How a suite is run; every field has the command line's default.

    Attributes:
        out_dir: output folder; None: ``results/<suite name>``.
        overrides: ``key=value`` strings applied to the suite before validation (``--set``).
        imports: plugin files or modules to import first (``--import``; see :mod:`bench.config.plugins`).
        jobs: parallel processes of the local executor (1 = in this process); None: the suite's.
        force: rerun runs that are already complete (and retrain their checkpoints).
        executor: a registered executor (``local``, ``slurm``, ``dask``); None: the suite's ``[executor] name``.
        executor_options: executor flags (``partition``, ``cluster``, ...), checked against the executor's declared
            options; they override the suite's ``[executor]`` table.
        progress: show rich progress bars.
        only: run only the variants these names or globs select (``--only``; see
            :func:`bench.config.plan.select_variants`); the other runs of the folder are left as they are.
        checkpoint_cache: True: the shared cache of :func:`bench.results.store.default_checkpoint_cache`; a folder:
            that cache; False or None: no cache (only the folder's own checkpoints are reused).
        seeds: run only these of the suite's seeds (``--seed``); not an override: the runs and their keys are the
            suite's.
        retime: evaluate and time the chosen runs again from their checkpoints (``--retime``); never trains.
    """

    out_dir: str | Path | None = None
    overrides: Sequence[str] = ()
    imports: Sequence[str] = ()
    jobs: int | None = None
    force: bool = False
    executor: str | None = None
    executor_options: dict[str, Any] | None = None
    progress: bool = True
    only: Sequence[str] = ()
    checkpoint_cache: str | Path | bool | None = True
    seeds: Sequence[int] = ()
    retime: bool = False

    def but(self, **changes: Any) -> RunOptions:
        """A copy with ``changes``; an unknown option is a ``TypeError`` naming the known ones."""
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            known = ", ".join(f.name for f in dataclasses.fields(self))
            raise TypeError(f"unknown run option(s) {', '.join(unknown)}; known: {known}")
        return dataclasses.replace(self, **changes)
