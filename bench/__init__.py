"""cascade-bench's harness: suites in, trained early-exit variants, costs, latency and statistics out.

The documented library functions are exported here and imported on first use (PEP 562), so that
``bench.run_suite`` stays the name to use whichever stage module defines it. The stages, in the
order the data flows (each imports only the ones before it; tests/test_architecture.py checks it):
``results`` (run records, the store), ``config`` (suites, the plan), ``measure`` (counting, energy,
latency), ``analyse`` (statistics), ``execute`` (the runner), ``render`` (reports, figures),
``verdicts`` (study, reproduction, compare, the CI gate), ``commands`` and ``cli``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

#: public name -> the module that defines it
_EXPORTS = {
    "run_suite": "bench.execute.runner",
    "RunOptions": "bench.execute.options",
    "export_run": "bench.execute.export",
    "read_export": "bench.execute.export",
    "load_suite": "bench.config.load",
    "suite_errors": "bench.config.diagnose",
    "expand_runs": "bench.config.plan",
    "load_results": "bench.analyse.load",
    "write_report": "bench.render.report",
    "compare": "bench.verdicts.compare",
    "run_check": "bench.verdicts.check",
    "verify_folder": "bench.results.verify",
    "profile": "bench.measure.cost",
    "counting": "bench.measure.cost",
    "exit_costs": "bench.measure.energy",
    "measure_machine": "bench.measure.microbench",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'bench' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


if TYPE_CHECKING:
    from bench.analyse.load import load_results
    from bench.config.diagnose import suite_errors
    from bench.config.load import load_suite
    from bench.config.plan import expand_runs
    from bench.execute.export import export_run, read_export
    from bench.execute.options import RunOptions
    from bench.execute.runner import run_suite
    from bench.measure.cost import counting, profile
    from bench.measure.energy import exit_costs
    from bench.measure.microbench import measure_machine
    from bench.render.report import write_report
    from bench.results.verify import verify_folder
    from bench.verdicts.check import run_check
    from bench.verdicts.compare import compare
