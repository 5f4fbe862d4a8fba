"""Validation of a suite's raw TOML into the frozen dataclasses of :mod:`bench.config.suite`.

Each table is checked by its own small function (``_parse_<table>``); range constraints are declared
by the dataclasses themselves (``checks()``, as :class:`cascade.training.TrainConfig` does); names are
looked up in their registries with a hint for the user's own; every sweep point of a variant is
checked as the run it becomes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bench.config.coerce import apply_checks, build_table, check_name, check_range, coerce, unknown_key
from bench.config.engines import EXECUTORS, RUNTIMES
from bench.config.modelcheck import check_model as _check_model
from bench.config.suite import (
    BudgetSpec,
    CheckSpec,
    DatasetSpec,
    EvaluationSpec,
    ExecutorSpec,
    ModelSpec,
    ReportSpec,
    Suite,
    SuiteError,
    SuiteMeta,
    TrainSpec,
    VariantSpec,
)
from bench.config.tables import load_energy_table, load_hardware
from bench.config.variants import check_train, parse_variants, validate_train_overrides
from cascade._registry import UnknownNameError
from cascade.data import DATASETS
from cascade.heads import HEADS
from cascade.losses import LOSSES
from cascade.models import MODELS


def _check_runtimes(file: Any, names: Sequence[str]) -> None:
    """Known and installed, each once, eager first (its timing is the reference the others are checked against)."""
    if not names or names[0] != "eager" or len(set(names)) != len(names):
        raise SuiteError(
            file,
            "evaluation.runtimes",
            f"{list(names)!r}: give 'eager' first, then other runtimes "
            f"once each, e.g. ['eager', 'onnxruntime']; known: {', '.join(RUNTIMES.names())}",
        )
    for i, name in enumerate(names):
        check_name(file, f"evaluation.runtimes[{i}]", RUNTIMES, name)
        try:
            RUNTIMES.get(name).load().check()
        except ImportError as e:
            raise SuiteError(file, f"evaluation.runtimes[{i}]", str(e)) from None


def _parse_executor(file: Any, raw: Any) -> ExecutorSpec:
    """``[executor]``: ``name`` and ``jobs``, plus the options the named executor declares."""
    if not isinstance(raw, dict):
        raise SuiteError(file, "executor", f"expected a table, got {raw!r}")
    name = raw.get("name", ExecutorSpec.name)
    if not isinstance(name, str):
        raise SuiteError(file, "executor.name", f"expected a string, got {name!r}")
    check_name(file, "executor.name", EXECUTORS, name)
    entry = EXECUTORS.get(name)
    jobs = coerce(raw.get("jobs", 1), int, file, "executor.jobs")
    check_range(file, "executor.jobs", jobs >= 1, "an integer >= 1", jobs)
    allowed = ["name", "jobs", *(o.name for o in entry.options)]
    values: dict[str, Any] = {}
    for k, v in raw.items():
        if k in ("name", "jobs"):
            continue
        option = entry.option(k)
        if option is None:
            raise unknown_key(file, f"executor.{k}", k, allowed)
        values[k] = coerce(v, option.type, file, f"executor.{k}")
        if option.type is int:
            low = option.minimum
            check_range(file, f"executor.{k}", values[k] >= low, f"an integer >= {low}", values[k])
    return ExecutorSpec(name, jobs, values)


TABLES = ("suite", "dataset", "model", "train", "evaluation", "report", "check", "budget", "executor", "variants")


def _parse_meta(file: Any, raw: Any) -> SuiteMeta:
    meta = build_table(SuiteMeta, raw, file, "suite")
    if not meta.name:
        raise SuiteError(file, "suite.name", "is required (it names the output folder)")
    if not meta.name.replace("-", "").replace("_", "").isalnum():
        raise SuiteError(file, "suite.name", f"{meta.name!r}: use letters, digits, '-' and '_' only")
    if not meta.seeds:
        raise SuiteError(file, "suite.seeds", "is empty; give at least one seed, e.g. [0, 1, 2]")
    if len(set(meta.seeds)) != len(meta.seeds):
        raise SuiteError(file, "suite.seeds", f"duplicate seeds in {list(meta.seeds)}")
    apply_checks(file, "suite", meta.checks())
    return meta


def _named(file: Any, table: str, raw: dict[str, Any], default: str, registry: Any) -> str:
    name = raw.get("name", default)
    if not isinstance(name, str):
        raise SuiteError(file, f"{table}.name", f"expected a string, got {name!r}")
    check_name(file, f"{table}.name", registry, name)
    return name


def _parse_dataset(file: Any, raw: Any) -> DatasetSpec:
    raw = dict(raw)
    entry = DATASETS.get(_named(file, "dataset", raw, DatasetSpec.name, DATASETS))
    dataset = build_table(DatasetSpec, raw, file, "dataset", extra_ok=entry.option_names())
    apply_checks(file, "dataset", dataset.checks())
    defaults = entry.option_defaults()
    for k, v in dataset.options.items():
        kind = type(defaults[k]) if defaults[k] is not None else float
        value = coerce(v, float if kind is int and isinstance(v, float) else kind, file, f"dataset.{k}")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            check_range(file, f"dataset.{k}", value >= 0, "a number >= 0", value)
    return dataset


def _parse_model(file: Any, raw: Any, dataset: DatasetSpec) -> tuple[ModelSpec, dict[str, Any]]:
    """The ``[model]`` table and the arguments the dataset gives every model (classes, channels, size)."""
    raw = dict(raw)
    model_cls = MODELS.get(_named(file, "model", raw, ModelSpec.name, MODELS))
    model = build_table(ModelSpec, raw, file, "model", extra_ok=model_cls.option_names())
    entry = DATASETS.get(dataset.name)
    try:
        shape = entry.shape(**dataset.options)
        classes = entry.classes(dataset.root, **dataset.options)
    except (OSError, ValueError) as e:
        raise SuiteError(file, "dataset", str(e)) from None
    model_args = {"num_classes": classes, "in_channels": shape[0], "input_size": shape[-1]}
    if "head" in model.options:  # the heads are built with the exits: a misspelt one is the model's, not an exit's
        head = model.options["head"]
        if not isinstance(head, str):
            raise SuiteError(file, "model.head", f"expected a string (a registered exit head), got {head!r}")
        check_name(file, "model.head", HEADS, head)
    try:
        _check_model(model_cls, (), {**model.options, **model_args})
    except (TypeError, ValueError, UnknownNameError) as e:  # an option naming an unknown head, say
        raise SuiteError(file, "model", str(e)) from None
    return model, model_args


def _parse_train(file: Any, raw: Any) -> TrainSpec:
    if not isinstance(raw, dict):
        raise SuiteError(file, "train", f"expected a table, got {raw!r}")
    return check_train(file, "train", validate_train_overrides(file, "train", raw))


def _parse_evaluation(file: Any, raw: Any) -> EvaluationSpec:
    evaluation = build_table(EvaluationSpec, raw, file, "evaluation")
    if not evaluation.thresholds:
        raise SuiteError(file, "evaluation.thresholds", "is empty; give at least one threshold in [0, 1]")
    apply_checks(file, "evaluation", evaluation.checks())
    if evaluation.headline_threshold not in evaluation.thresholds:
        raise SuiteError(
            file,
            "evaluation.headline_threshold",
            f"{evaluation.headline_threshold} must be one of evaluation.thresholds",
        )
    for i, t in enumerate(evaluation.latency_thresholds):
        if t not in evaluation.thresholds:
            raise SuiteError(file, f"evaluation.latency_thresholds[{i}]", f"{t} must be one of evaluation.thresholds")
    _check_runtimes(file, evaluation.runtimes)
    for key, load in (("energy_table", load_energy_table), ("hardware", load_hardware)):
        try:
            load(getattr(evaluation, key))
        except (FileNotFoundError, ValueError) as e:
            raise SuiteError(file, f"evaluation.{key}", str(e)) from None
    return evaluation


def _parse_check(file: Any, raw: Any, evaluation: EvaluationSpec) -> CheckSpec:
    check = build_table(CheckSpec, raw, file, "check")
    apply_checks(file, "check", check.checks())
    if check.latency_batch is not None and check.latency_batch not in evaluation.latency_batch_sizes:
        raise SuiteError(
            file,
            "check.latency_batch",
            f"{check.latency_batch} must be one of "
            f"evaluation.latency_batch_sizes {list(evaluation.latency_batch_sizes)}",
        )
    if check.threshold is not None and check.threshold not in evaluation.thresholds:
        raise SuiteError(file, "check.threshold", f"{check.threshold} must be one of evaluation.thresholds")
    return check


def _parse_budget(file: Any, raw: Any) -> BudgetSpec:
    budget = build_table(BudgetSpec, raw, file, "budget")
    apply_checks(file, "budget", budget.checks())
    return budget


def _parse_report(file: Any, raw: Any, variants: Sequence[VariantSpec]) -> ReportSpec:
    report = build_table(ReportSpec, raw, file, "report")
    check_name(file, "report.cascade_reference", LOSSES, report.cascade_reference)
    names = [v.name for v in variants]
    if report.reference not in names and isinstance(raw, dict) and "reference" in raw:
        raise SuiteError(file, "report.reference", f"no variant {report.reference!r}; variants: {', '.join(names)}")
    return report


def parse_suite(data: dict[str, Any], *, file: Any = None) -> Suite:
    """Validate raw TOML data into a :class:`Suite`: each table by its own function, in dependency order."""
    for k in data:
        if k not in TABLES:
            raise unknown_key(file, k, k, TABLES)
        if k != "variants" and not isinstance(data[k], dict):
            raise SuiteError(file, k, f"expected a table [{k}], got {data[k]!r}")
    meta = _parse_meta(file, data.get("suite", {}))
    dataset = _parse_dataset(file, data.get("dataset", {}))
    model, model_args = _parse_model(file, data.get("model", {}), dataset)
    train = _parse_train(file, data.get("train", {}))
    evaluation = _parse_evaluation(file, data.get("evaluation", {}))
    check = _parse_check(file, data.get("check", {}), evaluation)
    budget = _parse_budget(file, data.get("budget", {}))
    executor = _parse_executor(file, data.get("executor", {}))
    variants = parse_variants(file, data.get("variants"), train, model, model_args)
    report = _parse_report(file, data.get("report", {}), variants)
    return Suite(
        meta, dataset, model, train, evaluation, report, check, budget, variants, str(file) if file else None, executor
    )
