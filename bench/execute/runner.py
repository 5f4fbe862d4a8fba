"""Execution: train (or reuse) and evaluate each run, write one record per run.

:func:`run_suite` plans the suite (:mod:`bench.config.plan`), hands the tasks to an
executor (:mod:`bench.execute.executors`) and writes ``summary.csv``; it never renders
a report (the CLI does that after the run). :func:`execute_task` is the one
function every executor runs, in this process or elsewhere.
"""

from __future__ import annotations

import dataclasses
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from bench.analyse.curves import curve_from_outputs, summarise
from bench.config.load import load_suite
from bench.config.plan import (
    RunSpec,
    Task,
    expand_runs,
    make_waves,
    pending,
    select_runs,
    why_not_reused,
)
from bench.config.plugins import import_plugins
from bench.config.suite import Suite, SuiteError
from bench.execute.console import is_live
from bench.execute.evaluate import evaluate, timing_budget
from bench.execute.executors import build_executor
from bench.execute.options import RunOptions
from bench.execute.sanity import as_evaluated, diagnose
from bench.execute.training import (
    clear_failed_pretraining_markers,
    ensure_trained,
    get_data,
    pretrain_job,
    write_failed_marker,
)
from bench.measure.devices import provenance
from bench.results.files import WriteError, atomic_write_bytes, sha256_file
from bench.results.migrate import SCHEMA_VERSION
from bench.results.provenance import now
from bench.results.record import ErrorInfo, RunRecord, TrainingRecord, from_json, twin_warning
from bench.results.store import (
    FolderLock,
    ResultStore,
    default_checkpoint_cache,
    prepare_folder,
)
from bench.results.summary import write_summary
from bench.results.tensors import save_exit_outputs
from bench.results.words import plural
from cascade.training import TrainCallback


def _identity(spec: RunSpec) -> dict[str, Any]:
    """The run record's fields that say which run it is and how it was configured."""
    return {
        "schema": SCHEMA_VERSION,
        "key": spec.key,
        "train_key": spec.job.key,
        "suite": spec.suite,
        "variant": spec.variant,
        "variant_base": spec.variant_base,
        "sweep": spec.sweep,
        "seed": spec.seed,
        "loss": spec.job.loss,
        "exits_at": list(spec.job.exits),
        "dataset": spec.job.dataset["name"],
        "policy": spec.policy,
        "config": spec.describe(),
        "started": now(),
    }


def _train_and_evaluate(
    spec: RunSpec,
    store: ResultStore,
    fields: dict[str, Any],
    t0: float,
    callback: TrainCallback | None,
    force: bool,
    never_train: bool = False,
) -> None:
    """Fill ``fields`` with what the run measured (raises for a failing run)."""
    torch.manual_seed(spec.seed)
    full = get_data(spec.data, spec.device)
    data = full.test_subset(spec.evaluation.test_samples)  # quick evaluation: a fixed subset of the test split
    fields["data_fingerprint"] = data.identity.get("fingerprint")
    fields["data_sizes"] = {**data.identity.get("sizes", {}), "test": len(data.test)}
    fields["num_classes"] = data.num_classes
    t_train = time.perf_counter()
    model, history, trained_now = _trained(spec, data, store, callback, force, never_train)
    fields["training"] = from_json(TrainingRecord, {**history, "reused_checkpoint": not trained_now})
    t_eval = time.perf_counter()
    if spec.evaluation.recompute_bn and callback is not None:
        callback.on_phase("recomputing batch-norm statistics")
    as_evaluated(model, spec, data)
    train_s = float(history.get("train_seconds") or 0) + float(
        (history.get("pretrain_history") or {}).get("train_seconds") or 0
    )
    result, logits = evaluate(
        spec,
        model,
        data,
        phase=callback.on_phase if callback is not None else None,
        timing_budget_s=timing_budget(spec.evaluation, train_s),
    )
    fields["sanity"] = diagnose(
        model,
        data.train,
        steps=int(history.get("total_steps") or history.get("steps") or 0),
        recomputed=spec.evaluation.recompute_bn,
        classes=data.num_classes,
        exit_names=result.exits.names,
        val_accuracy=result.exits.val_accuracy,
        test_accuracy=result.exits.test_accuracy,
        label=f"{spec.variant} seed {spec.seed}",
    )
    store.warnings += fields["sanity"].warnings
    fields["phase_seconds"] = {
        "data": t_train - t0,
        "training": t_eval - t_train,
        "evaluation": time.perf_counter() - t_eval,
        "latency": result.latency.seconds if result.latency and result.latency.seconds else 0.0,
    }
    _save_outputs(spec, store, data, result, logits, fields)
    fields.update(
        exits=result.exits,
        cost=result.cost,
        thresholds=result.thresholds,
        latency=result.latency,
        budget=result.budget,
        calibration=result.calibration,
        policy_fit=result.policy_fit,
        cost_curve=result.cost_curve,
        status="ok",
    )


def _trained(
    spec: RunSpec,
    data: Any,
    store: ResultStore,
    callback: TrainCallback | None,
    force: bool,
    never_train: bool,
) -> tuple[Any, dict[str, Any], bool]:
    """(model, history, trained now) of the run's training job; a failure leaves a marker that the runs
    pre-trained from this one fail with, instead of retraining."""
    note = (
        "val with running batch-norm statistics (recomputed before evaluation)" if spec.evaluation.recompute_bn else ""
    )
    try:
        return ensure_trained(
            spec.job, data, store, spec.device, callback, force=force, never_train=never_train, val_note=note
        )
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:
        write_failed_marker(store, spec.job.key, exc)
        raise


def _save_outputs(
    spec: RunSpec, store: ResultStore, data: Any, result: Any, logits: Any, fields: dict[str, Any]
) -> None:
    """Every exit's outputs on validation and test saved beside the run (their digests and the checkpoint's in
    ``fields["artefacts"]``), and the exact curve computed from them where the policy allows one."""
    exits_file, ckpt_file = store.exits_path(spec.key), store.checkpoint_path(spec.job.key)
    saved, exits_digest = save_exit_outputs(exits_file, logits.val, data.val.y, logits.test, data.test.y)
    fields["artefacts"] = {
        ckpt_file.relative_to(store.root).as_posix(): sha256_file(ckpt_file),
        exits_file.relative_to(store.root).as_posix(): exits_digest,
    }
    calibrated = result.calibration is not None and result.calibration.temperatures is not None
    if spec.policy == "max-prob" and len(logits.test) > 1 and not calibrated:  # the exact curve from the outputs
        curve = curve_from_outputs(saved["test_maxprob"], saved["test_pred"], saved["test_y"])
        fields["curve"] = summarise(curve)


def execute_run(
    spec: RunSpec,
    out_dir: str | Path,
    *,
    callback: TrainCallback | None = None,
    force: bool = False,
    checkpoint_cache: str | Path | None = None,
    never_train: bool = False,
) -> dict[str, Any]:
    """Train (or reuse) and evaluate one run; write its record; never raise for a failing run.

    ``checkpoint_cache``: the shared checkpoint cache folder (a finished training of another
    results folder is reused from there; a new one is put there), or None. ``never_train`` (``--retime``): a
    missing or unloadable checkpoint fails the run instead of training it.
    """
    store = ResultStore(out_dir, checkpoint_cache)
    fields = _identity(spec)
    t0 = time.perf_counter()
    try:
        _train_and_evaluate(spec, store, fields, t0, callback, force, never_train)
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:
        fields["status"] = "failed"
        fields["error"] = ErrorInfo(type(exc).__name__, str(exc), traceback.format_exc())
        if isinstance(exc, WriteError):
            store.write_errors.append(str(exc))
    fields["finished"] = now()
    fields["seconds"] = time.perf_counter() - t0
    fields["provenance"] = provenance(spec.device)
    record = RunRecord(**fields)
    try:
        store.write_run(record)
    except WriteError as e:  # the run is not recorded: it counts as failed, and runs again next time
        record = dataclasses.replace(record, status="failed", error=ErrorInfo("WriteError", str(e), ""))
        store.write_errors.append(str(e))
    return {
        "key": record.key,
        "variant": record.variant,
        "seed": record.seed,
        "status": record.status,
        "seconds": record.seconds,
        "error": record.error_message or None,
        "busy": bool(record.latency and record.latency.busy),
        "twin_gaps": record.latency.twin_gaps() if record.latency else [],
        "checkpoint_source": record.training.checkpoint_source if record.training else None,
        "warnings": store.warnings,
        "write_errors": store.write_errors,
        "accuracy": record.at(record.headline_threshold).accuracy if record.ok else None,
        "threshold": record.headline_threshold if record.ok else None,
        "timing_seconds": (record.phase_seconds or {}).get("latency"),
    }


def execute_task(task: Task, out_dir: str, force: bool = False, callback: Any = None) -> dict[str, Any]:
    """Run one task (top-level so every engine can pickle it).

    Every task runs with the suite's ``[suite] threads`` torch threads, whichever executor runs it,
    so a run's numbers do not depend on where it ran.
    """
    torch.set_num_threads(task.threads)
    import_plugins(task.run.plugins if task.run is not None else task.plugins)  # a spawned worker starts bare
    if task.run is not None:
        return execute_run(
            task.run,
            out_dir,
            callback=callback,
            force=force,
            checkpoint_cache=task.checkpoint_cache,
            never_train=task.never_train,
        )
    assert task.job is not None and task.data is not None
    return pretrain_job(task.job, task.data, task.device, out_dir, task.checkpoint_cache)


# --------------------------------------------------------------------------- the whole suite


@dataclass
class RunSummary:
    out_dir: Path
    total: int
    skipped: int = 0  # runs already complete in the folder
    from_cache: int = 0  # runs done now whose training came from the shared checkpoint cache
    done: int = 0
    failed: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)  # unreadable or stale run files found (replaced by reruns)
    warnings: list[str] = field(default_factory=list)  # damaged checkpoints moved aside, foreign training code
    write_errors: list[str] = field(default_factory=list)  # every write that failed, one line each
    plugins: tuple[str, ...] = ()  # the plugins the suite (and --import) named, resolved and imported

    def closing_line(self) -> str:
        """The last line of ``bench run``: what was done, and every failure counted."""
        errors = f", {len(self.write_errors)} write error(s)" if self.write_errors else ""
        return (
            f"{plural(self.done, 'run')} done ({self.from_cache} with a training from the shared cache), "
            f"{self.skipped} already complete, {len(self.failed)} failed{errors} "
            f"in {self.seconds:.1f} s -> {self.out_dir}"
        )

    @property
    def ok(self) -> bool:
        return not self.failed and not self.write_errors


def _chosen(runs: list[RunSpec], seeds: Sequence[int], suite: Suite, path: str | Path) -> list[RunSpec]:
    """The runs of ``seeds`` (all when empty); a seed the suite does not have is an error."""
    stray = sorted(set(seeds) - set(suite.suite.seeds))
    if stray:
        raise SuiteError(
            path,
            "suite.seeds",
            f"--seed {stray[0]} is not one of the suite's seeds "
            f"{list(suite.suite.seeds)}; add it with --set 'suite.seeds=[...]'",
        )
    return [r for r in runs if r.seed in seeds] if seeds else runs


def run_suite(
    path: str | Path,
    options: RunOptions | None = None,
    *,
    log: Callable[[str], None] = print,
    **changes: Any,
) -> RunSummary:
    """Validate the suite, run what is not done yet, write ``summary.csv``.

    Args:
        path: the suite TOML file.
        options: how to run it (:class:`bench.execute.options.RunOptions`; default: the command line's defaults).
        log: where progress lines go.
        changes: single options changed from ``options`` by name (``run_suite(path, out_dir=..., seeds=[0])``).
    """
    o = (options or RunOptions()).but(**changes)
    force, retime, only, seeds, overrides = o.force, o.retime, o.only, o.seeds, o.overrides
    if force and retime:
        raise SuiteError(path, "--retime", "--force retrains, --retime never does: give one of them")
    suite = load_suite(path, overrides, o.imports)
    out = Path(o.out_dir) if o.out_dir is not None else Path("results") / suite.name
    try:
        ex = build_executor(
            suite.executor.name,
            suite.executor.options(),
            suite.executor.jobs,
            name=o.executor,
            jobs=o.jobs,
            flags=o.executor_options,
        )
    except ValueError as e:
        raise SuiteError(path, "executor", str(e)) from None
    all_runs = expand_runs(suite, overrides)
    runs = _chosen(select_runs(all_runs, only), seeds, suite, path)
    prepare_folder(out)
    cache = default_checkpoint_cache() if o.checkpoint_cache is True else o.checkpoint_cache or None
    store = ResultStore(out, cache)
    with FolderLock(out):
        clear_failed_pretraining_markers(store)
        todo, done = _todo(store, runs, force=force, retime=retime, path=path)
        summary = RunSummary(out, total=len(runs), skipped=len(done), plugins=suite.suite.plugins)
        if todo:  # read (and check) the data once, before any run file is written
            _read_data_once(suite, runs[0].device, log)
        _write_suite_copy(suite, path, overrides, out)
        t0 = time.perf_counter()
        chosen = f" (--only/--seed: {len(runs)} of {len(all_runs)})" if only or seeds else ""
        waves = make_waves(todo, store) if todo else []
        pre = len(waves[0]) if waves and not retime else 0
        also = f", and {plural(pre, 'pre-training')} they start from" if pre else ""
        log(
            f"suite {suite.name}: {plural(len(runs), 'run')}{chosen} ({len(done)} already complete, "
            f"{len(todo)} to do{also}) -> {out}"
        )
        summary.problems = _log_reruns(store, todo, force or retime, log)
        if todo:
            _execute(ex, waves, summary, force=force, retime=retime, progress=o.progress, log=log)
        try:
            write_summary(store)
        except WriteError as e:
            summary.write_errors.append(str(e))
            log(f"write error: {e}")
    summary.seconds = time.perf_counter() - t0
    if is_live(o.progress):  # without live bars each run's line already gave its failure
        for f in summary.failed:
            log(f"FAILED {f['variant']} seed {f['seed']}: {f['error']}")
    return summary


def _execute(
    ex: Any,
    waves: list[list[Task]],
    summary: RunSummary,
    *,
    force: bool,
    retime: bool,
    progress: bool,
    log: Callable[[str], None],
) -> None:
    """Run the waves on the executor, counting every finished task in ``summary``; re-timed runs have their
    checkpoints (no pre-training wave) and never train."""
    if retime:
        waves = [[dataclasses.replace(t, never_train=True) for t in wave] for wave in waves[1:]]
    for results in ex.run_waves(waves, execute_task, summary.out_dir, force=force, progress=progress, log=log):
        for res in results:
            _collect(summary, res, log)


def _todo(
    store: ResultStore, runs: Sequence[RunSpec], *, force: bool, retime: bool, path: str | Path
) -> tuple[list[RunSpec], list[RunSpec]]:
    """(runs to do, runs already complete); to re-time, every chosen run, each with its trained checkpoint (in the
    folder, or copied in from the shared cache): a SuiteError names those without one."""
    todo, done = pending(store, runs, force or retime)
    missing = [f"{r.variant} seed {r.seed}" for r in todo if store.find_checkpoint(r.job.key) is None] if retime else []
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise SuiteError(
            path,
            "--retime",
            f"no checkpoint for {shown} in {store.root / 'checkpoints'} or the shared "
            "cache; --retime never trains (run without it to train them)",
        )
    return todo, done


def _log_reruns(store: ResultStore, todo: Sequence[RunSpec], asked: bool, log: Callable[[str], None]) -> list[str]:
    """Say why runs run again (damaged files; settings that differ, unless the user asked for reruns); the problems."""
    for problem in store.problems.values():
        log(f"rerunning: {problem}")
    for line in why_not_reused(store, todo) if not asked else []:
        log(line)
    return list(store.problems.values())


def _read_data_once(suite: Suite, device: str, log: Callable[[str], None]) -> None:
    """Load (and so check) the suite's data before any run; hint when validation outgrows training."""
    sizes = get_data(suite.dataset, device).identity.get("sizes", {})
    if suite.dataset.train_size and sizes.get("val", 0) > sizes.get("train", 0):
        log(
            f"hint: the validation split ({sizes['val']:,} samples) is larger than the training split "
            f"({sizes['train']:,}, dataset.train_size); dataset.val_size caps it (bench run --quick: "
            "suites/README.md, 'Quick runs')"
        )


def _collect(summary: RunSummary, res: dict[str, Any], log: Callable[[str], None]) -> None:
    """Count a finished task (done, from the cache, failed); log its warnings and the write errors that
    did not fail its run; count every write error."""
    if res.get("busy"):
        log(
            f"warning: {res['variant']} seed {res['seed']}: latency timed on a busy machine "
            "(other processes took CPU); see the report's warnings"
        )
    if res.get("twin_gaps"):
        log("warning: " + twin_warning(res["variant"], res["seed"], res["twin_gaps"]))
    if res.get("status") == "ok":
        summary.done += 1
        summary.from_cache += res.get("checkpoint_source") == "cache"
    elif res.get("status") == "failed":
        summary.failed.append(res)
    for w in res.get("warnings") or []:
        if w not in summary.warnings:
            summary.warnings.append(w)
            log(f"warning: {w}")
    failed_by = res.get("error") if res.get("status") == "failed" else None
    for e in res.get("write_errors") or []:
        if e not in summary.write_errors:
            summary.write_errors.append(e)
            if e != failed_by:
                log(f"write error: {e}")


def _write_suite_copy(suite: Suite, path: str | Path, overrides: Sequence[str], out: Path) -> None:
    text = Path(path).read_text()
    if overrides:
        text += "\n# --set overrides applied to this run:\n" + "".join(f"#   {o}\n" for o in overrides)
    atomic_write_bytes(out / "suite.toml", text.encode())
