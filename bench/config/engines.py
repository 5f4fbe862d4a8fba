"""The engines a suite may name: executors (``[executor]``) and runtimes (``[evaluation] runtimes``).

Declared here, in the configuration layer, with what a suite may set for each (an executor's
options, a runtime's availability check), so that a suite is validated and the command line's
flags are generated without importing the engines themselves. The engines live above:
:mod:`bench.execute.executors` builds an executor for a name, :mod:`bench.measure.runtimes`
times a runtime. A plugin that registers its own gives the builder (executor) or the runtime object
(:class:`cascade.runtime.Runtime`) in the entry.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench.results.metrics import RESERVED_ENDINGS
from cascade._registry import Registry


@dataclass(frozen=True)
class ExecutorOption:
    """One option an executor takes, settable in the suite's ``[executor]`` table and by a CLI flag."""

    name: str  # key in [executor] and keyword of the executor's constructor
    type: type  # int or str
    default: Any  # None: not passed unless set
    help: str
    flag: str = ""  # CLI flag name (without --, underscores) when it differs from ``name``
    minimum: int = 1  # smallest allowed value of an integer option

    @property
    def cli(self) -> str:
        return self.flag or self.name


@dataclass(frozen=True)
class ExecutorEntry:
    """A registered executor: the options it declares and, for a plugin's, how to build it
    (``(jobs=..., **options) -> Executor``; the built-in ones are built by bench.execute.executors)."""

    options: tuple[ExecutorOption, ...] = ()
    uses_jobs: bool = False  # takes --jobs (parallel local processes)
    build: Callable[..., Any] | None = None

    def option(self, name: str) -> ExecutorOption | None:
        return next((o for o in self.options if o.name == name), None)

    def resolve(self, values: dict[str, Any]) -> dict[str, Any]:
        """Declared defaults, overridden by ``values``; options left at None are not passed."""
        out = {o.name: values.get(o.name, o.default) for o in self.options}
        return {k: v for k, v in out.items() if v is not None}


EXECUTORS: Registry[ExecutorEntry] = Registry("executor")
EXECUTORS.register("local")(ExecutorEntry((), uses_jobs=True))
EXECUTORS.register("slurm")(
    ExecutorEntry(
        (
            ExecutorOption("partition", str, None, "Slurm partition"),
            ExecutorOption("time", int, 60, "time limit per job, minutes"),
            ExecutorOption("gpus_per_job", int, 0, "GPUs per job", minimum=0),
            ExecutorOption("cpus_per_job", int, 2, "CPUs per job (give at least the suite's threads)"),
            ExecutorOption("cluster", str, None, "'local' for submitit's local executor (tests, laptops)"),
        )
    )
)
EXECUTORS.register("dask")(
    ExecutorEntry(
        (
            ExecutorOption("address", str, None, "scheduler address tcp://host:port (none: a LocalCluster)", "cluster"),
            ExecutorOption("workers", int, 2, "workers of the LocalCluster"),
        )
    )
)


def executor_flags() -> dict[str, list[tuple[str, ExecutorOption]]]:
    """CLI flag (underscores) -> the (executor, option) pairs it sets: one flag may serve several executors."""
    flags: dict[str, list[tuple[str, ExecutorOption]]] = {}
    for name in EXECUTORS.names():
        for option in EXECUTORS.get(name).options:
            flags.setdefault(option.cli, []).append((name, option))
    return flags


@dataclass(frozen=True)
class RuntimeEntry:
    """A registered runtime: its :class:`cascade.runtime.Runtime` object, given as ``"module:attr"`` and imported on
    first use (as the commands are: a suite is validated without importing every engine), or the object itself."""

    target: Any  # "module:attr" or a cascade.runtime.Runtime

    def load(self) -> Any:
        """The runtime object (a ``cascade.runtime.Runtime``)."""
        if not isinstance(self.target, str):
            return self.target
        module, _, attr = self.target.partition(":")
        return getattr(importlib.import_module(module), attr)


def register_runtime(name: str, target: Any) -> None:
    """Register a runtime under ``name``: ``target`` is ``"module:attr"`` of a ``cascade.runtime.Runtime`` or the
    object itself (docs/runtimes.md); a suite then names it in ``[evaluation] runtimes``. Any name does that a
    metric key can carry (:class:`bench.results.metrics.MetricKey`): not empty, not ending in a reserved word."""
    if not name or name.endswith(RESERVED_ENDINGS) or name != name.strip():
        raise ValueError(f"runtime name {name!r}: give a non-empty name that does not end in {RESERVED_ENDINGS}")
    RUNTIMES.register(name)(RuntimeEntry(target))


RUNTIMES: Registry[RuntimeEntry] = Registry("runtime")
register_runtime("eager", "cascade.runtime:EAGER")
register_runtime("onnxruntime", "cascade.ort:ONNX_RUNTIME")
register_runtime("onnxruntime-graph", "cascade.graph_runtime:ONNX_GRAPH")
register_runtime("openvino", "cascade.openvino_runtime:OPENVINO")
register_runtime("executorch", "cascade.executorch_runtime:EXECUTORCH")
