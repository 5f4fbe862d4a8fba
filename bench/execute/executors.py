"""Executors: where the runs of a suite execute. One interface, several engines.

* ``local`` (default): in this process (``--jobs 1``) or a local process pool
  (``--jobs N``). Pool workers are started with ``spawn`` (forking a process
  that has started OpenMP threads can deadlock) and exit when the driver dies.

Every task runs with the suite's ``[suite] threads`` torch threads whatever the engine
(CPU results are bitwise equal only at equal thread counts); choose ``--jobs`` x threads
<= cores to avoid oversubscription.
* ``slurm``: submitit job arrays on a Slurm cluster (``pip install cascade-bench[slurm]``);
  ``--set``-free options: partition, time (minutes), gpus per job, cpus per job.
  ``cluster="local"`` uses submitit's local executor (for tests and laptops).
* ``dask``: a Dask cluster (``pip install cascade-bench[dask]``); ``address``
  of a running scheduler, or a ``LocalCluster`` when none is given.

Every engine executes the same :func:`execute_task` and every run writes its own
atomic result file, so a restarted driver skips what any engine finished.
Tasks come in waves (pre-training, independent runs, runs that reuse a
pre-training checkpoint); a wave starts when the previous one is done.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import ctypes
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from bench.config.engines import EXECUTORS
from bench.execute.console import is_live
from bench.execute.progress import RichProgress

#: ``fn(task, out_dir, force, callback=None)`` -> result dict: ``bench.execute.runner.execute_task``.
TaskFn = Callable[..., dict[str, Any]]


class Executor:
    """Runs waves of tasks; yields each wave's results when the wave is done."""

    name = "base"

    def run_waves(
        self,
        waves: Sequence[Sequence[Any]],
        fn: TaskFn,
        out_dir: str | Path,
        *,
        force: bool = False,
        progress: bool = True,
        log: Callable[[str], None] | None = None,
    ) -> Iterator[list[dict[str, Any]]]:
        """Run ``fn`` on every task, wave after wave; yield each wave's results.

        ``progress``: live bars where standard error is a terminal; otherwise (or with ``progress``
        False) one line per finished task goes to ``log`` (nothing when ``log`` is None).
        """
        total = sum(len(w) for w in waves)
        live = is_live(progress)
        with self.session(), RichProgress(total, enabled=live, line=None if live else log) as bar:
            for wave in waves:
                if wave:
                    yield self.run_wave(list(wave), fn, str(out_dir), force, bar)

    def session(self) -> contextlib.AbstractContextManager[Any]:
        """What the engine holds open while waves run (a cluster connection); nothing by default."""
        return contextlib.nullcontext()

    def run_wave(self, tasks: list[Any], fn: TaskFn, out_dir: str, force: bool, bar: Any) -> list[dict[str, Any]]:
        raise NotImplementedError


class InProcessExecutor(Executor):
    name = "in-process"

    def run_wave(self, tasks: list[Any], fn: TaskFn, out_dir: str, force: bool, bar: Any) -> list[dict[str, Any]]:
        results = []
        for task in tasks:
            bar.start_run(task.label)
            results.append(fn(task, out_dir, force, callback=bar))
            bar.end_run(results[-1])
        return results


class LocalPoolExecutor(Executor):
    """A pool of ``jobs`` spawned worker processes, started once for all the waves of a suite (a worker's
    start imports torch: seconds each, so a pool per wave would pay it again for every wave)."""

    name = "local-pool"
    pool: cf.ProcessPoolExecutor  # while a session is open (run_waves), as DaskExecutor's client

    def __init__(self, jobs: int) -> None:
        self.jobs = jobs

    @contextlib.contextmanager
    def session(self) -> Iterator[None]:
        ctx = mp.get_context("spawn")
        with cf.ProcessPoolExecutor(
            max_workers=self.jobs, mp_context=ctx, initializer=die_with_parent, initargs=(os.getpid(),)
        ) as self.pool:
            yield

    def run_wave(self, tasks: list[Any], fn: TaskFn, out_dir: str, force: bool, bar: Any) -> list[dict[str, Any]]:
        results = []
        futures = {self.pool.submit(fn, t, out_dir, force): t for t in tasks}
        for fut in cf.as_completed(futures):
            bar.start_run(futures[fut].label)
            results.append(fut.result())
            bar.end_run(results[-1])
        return results


def die_with_parent(parent: int) -> None:
    """Pool-worker initializer: exit when the driver process dies, however it dies.

    On Linux the kernel sends SIGKILL when the parent ends (``PR_SET_PDEATHSIG``); elsewhere, and as
    a second guard, a daemon thread checks every second whether the worker has been re-parented.
    Without this, workers of a driver killed with SIGKILL finish their task and then block forever
    on the pool's pipe. A killed worker leaves nothing half-written: every result file is atomic.
    """
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
        except OSError:
            pass  # no libc by that name: the watchdog below still works
    if os.getppid() != parent:  # the parent died before we got here
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


class MissingExtraError(ImportError):
    """An optional engine was requested but its extra is not installed."""


class SubmititExecutor(Executor):
    """Slurm job arrays through submitit (``cluster="local"``: submitit's local executor)."""

    name = "slurm"

    def __init__(
        self,
        *,
        time: int,
        gpus_per_job: int,
        cpus_per_job: int,
        cluster: str | None = None,
        partition: str | None = None,
        max_requeue: int = 3,
        folder: str | None = None,
        array_parallelism: int = 64,
    ) -> None:
        try:
            import submitit  # noqa: PLC0415  # optional extra [slurm]
        except ImportError as e:
            raise MissingExtraError("the slurm executor needs submitit: pip install 'cascade-bench[slurm]'") from e
        self.submitit = submitit
        self.cluster, self.partition, self.time = cluster, partition, time
        self.gpus, self.cpus, self.max_requeue = gpus_per_job, cpus_per_job, max_requeue
        self.folder, self.array_parallelism = folder, array_parallelism

    def run_wave(self, tasks: list[Any], fn: TaskFn, out_dir: str, force: bool, bar: Any) -> list[dict[str, Any]]:
        folder = self.folder or str(Path(out_dir) / "submitit" / "%j")
        ex = self.submitit.AutoExecutor(folder=folder, cluster=self.cluster)
        params: dict[str, Any] = {
            "timeout_min": self.time,
            "cpus_per_task": self.cpus,
            "tasks_per_node": 1,
            "nodes": 1,
        }
        if self.cluster != "local":
            params.update(slurm_array_parallelism=self.array_parallelism, slurm_max_num_timeout=self.max_requeue)
            if self.partition:
                params["slurm_partition"] = self.partition
            if self.gpus:
                params["gpus_per_node"] = self.gpus
        ex.update_parameters(**params)
        # A checkpointable callable: on preemption/timeout submitit requeues it; the run
        # restarts from its checkpoints (training results are atomic files).
        task = _requeueable_task(fn)
        with ex.batch():
            jobs = [ex.submit(task, t, out_dir, force) for t in tasks]
        results = []
        for job, t in zip(jobs, tasks):
            bar.start_run(t.label)
            try:
                results.append(job.result())
            except Exception as e:  # the job itself died (not a failing run, which returns normally)
                results.append(
                    {"status": "failed", "variant": t.label, "seed": None, "error": f"job {job.job_id}: {e}"}
                )
            bar.end_run(results[-1])
        return results


def _requeueable_task(fn: TaskFn) -> Any:
    """A ``submitit.helpers.Checkpointable`` that reruns the same task when Slurm preempts or times it out.

    submitit calls ``checkpoint`` on preemption/timeout and requeues the returned submission (up to
    ``slurm_max_num_timeout`` times). The requeued task starts over, but ``execute_task`` skips nothing
    it must redo: finished pre-training checkpoints are reused and each run file is written atomically.
    """
    import submitit  # noqa: PLC0415  # optional extra [slurm]

    class RequeueableTask(submitit.helpers.Checkpointable):
        def __init__(self, fn: TaskFn) -> None:
            self.fn = fn

        def __call__(self, task: Any, out_dir: str, force: bool) -> dict[str, Any]:
            return self.fn(task, out_dir, force)

    return RequeueableTask(fn)


class DaskExecutor(Executor):
    """Tasks on a Dask cluster: ``address`` of a scheduler, else a LocalCluster."""

    name = "dask"

    def __init__(self, *, workers: int, address: str | None = None) -> None:
        try:
            import distributed  # noqa: PLC0415  # optional extra [dask]
        except ImportError as e:
            raise MissingExtraError(
                "the dask executor needs dask.distributed: pip install 'cascade-bench[dask]'"
            ) from e
        self.distributed = distributed
        self.address, self.workers = address, workers

    @contextlib.contextmanager
    def session(self) -> Iterator[None]:
        """A client of the given scheduler, or of a LocalCluster started (and stopped) here."""
        d = self.distributed
        cluster = None
        if self.address:
            client = d.Client(self.address)
        else:
            cluster = d.LocalCluster(
                n_workers=self.workers, threads_per_worker=1, processes=True, dashboard_address=None
            )
            client = d.Client(cluster)
        self.client = client
        try:
            yield
        finally:
            client.close()
            if cluster is not None:
                cluster.close()

    def run_wave(self, tasks: list[Any], fn: TaskFn, out_dir: str, force: bool, bar: Any) -> list[dict[str, Any]]:
        futures = [self.client.submit(fn, t, out_dir, force, pure=False) for t in tasks]
        labels = {f.key: t.label for f, t in zip(futures, tasks)}
        results = []
        for fut in self.distributed.as_completed(futures):
            bar.start_run(labels[fut.key])
            results.append(fut.result())
            bar.end_run(results[-1])
        return results


# --------------------------------------------------------------------------- the registry


#: how each built-in executor of :data:`bench.config.engines.EXECUTORS` is built (a plugin's entry carries its own)
BUILDERS: dict[str, Callable[..., Executor]] = {
    "local": lambda *, jobs=1: InProcessExecutor() if jobs == 1 else LocalPoolExecutor(jobs),
    "slurm": lambda *, jobs=1, **o: SubmititExecutor(**o),
    "dask": lambda *, jobs=1, **o: DaskExecutor(**o),
}


def _builder(name: str) -> Callable[..., Executor]:
    entry = EXECUTORS.get(name)
    return entry.build if entry.build is not None else BUILDERS[name]


def engine_options(engine: str, flags: dict[str, Any]) -> dict[str, Any]:
    """Map command-line executor flags to the options of ``engine``; a flag it does not take is an error."""
    entry = EXECUTORS.get(engine)
    table = {o.cli: o.name for o in entry.options}
    wrong = sorted(set(flags) - set(table))
    if wrong:
        allowed = ", ".join(f"--{k.replace('_', '-')}" for k in table) or "none"
        raise ValueError(
            f"--{wrong[0].replace('_', '-')} does not apply to the {engine} executor (it takes: {allowed})"
        )
    return {table[k]: v for k, v in flags.items()}


def make_executor(name: str, *, jobs: int = 1, **options: Any) -> Executor:
    """Build a registered executor by name with its options (declared defaults fill the rest)."""
    if jobs < 1:
        raise ValueError(f"--jobs must be >= 1, got {jobs}")
    entry = EXECUTORS.get(name)
    unknown = sorted(k for k in options if entry.option(k) is None)
    if unknown:
        takes = ", ".join(o.name for o in entry.options) or "no options"
        raise ValueError(f"the {name} executor has no option {unknown[0]!r}; it takes {takes}")
    return _builder(name)(jobs=jobs, **entry.resolve(options))


def build_executor(
    suite_name: str,
    suite_options: dict[str, Any],
    suite_jobs: int,
    *,
    name: str | None = None,
    jobs: int | None = None,
    flags: dict[str, Any] | None = None,
) -> Executor:
    """The executor a run uses: the suite's ``[executor]`` table, overridden by command-line flags.

    The suite's options apply only when the flags do not switch to another engine.
    """
    engine = name or suite_name
    options = dict(suite_options) if engine == suite_name else {}
    options.update(engine_options(engine, flags or {}))
    return make_executor(engine, jobs=jobs if jobs is not None else suite_jobs, **options)
