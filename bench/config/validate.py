"""Validation of a suite's raw TOML into the frozen dataclasses of :mod:`bench.config.suite`.

Each table is checked by its own small function (``_parse_<table>``); range constraints are declared
by the dataclasses themselves (``checks()``, as :class:`cascade.train.TrainConfig` does); names are
looked up in their registries with a hint for the user's own; every sweep point of a variant is
checked as the run it becomes.
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import sys
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, Literal, Union, cast

from bench.config.engines import EXECUTORS, RUNTIMES
from bench.config.tables import load_energy_table, load_hardware
from bench.results.store import safe_name
from bench.results.typed import type_name
from cascade._registry import UnknownNameError
from cascade.data import DATASETS
from cascade.exits import POLICIES
from cascade.heads import HEADS
from cascade.losses import LOSSES, build_loss, loss_option_names
from cascade.models import MODELS
from cascade.train import ConfigError, TrainConfig

if sys.version_info >= (3, 11):
    pass
else:  # pragma: no cover - exercised on Python 3.10 only
    pass

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

# checked by their own rules
_OPEN_TABLES = {"options", "policy_options", "loss_options", "train", "sweep", "model_options"}


def _type_name(tp: Any) -> str:
    return type_name(tp, mapping="a table")


def _coerce(value: Any, tp: Any, file: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        for a in args:
            try:
                return _coerce(value, a, file, key)
            except SuiteError:
                continue  # try the next member of the union; the message below names them all
        raise SuiteError(file, key, f"expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise SuiteError(file, key, f"{value!r} is not allowed; allowed: {', '.join(map(repr, allowed))}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, list):
            raise SuiteError(file, key, f"expected {_type_name(tp)}, got {value!r}")
        (item,) = typing.get_args(tp)[:1]
        items = [_coerce(v, item, file, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise SuiteError(file, key, f"expected a table, got {value!r}")
        return dict(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SuiteError(file, key, f"expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise SuiteError(file, key, f"expected an integer, got {value!r}")
        return value
    if tp in (bool, str):
        if not isinstance(value, tp):
            raise SuiteError(file, key, f"expected {_type_name(tp)}, got {value!r}")
        return value
    raise TypeError(f"unsupported type {tp}")  # pragma: no cover - programming error


def _unknown_key(file: Any, key: str, name: str, allowed: Sequence[str]) -> SuiteError:
    close = difflib.get_close_matches(name, list(allowed), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return SuiteError(file, key, f"unknown key{hint}; allowed: {', '.join(allowed)}")


def _build(cls: type, data: Any, file: Any, prefix: str, *, extra_ok: Sequence[str] = ()) -> Any:
    """Build dataclass ``cls`` from a TOML table; unknown keys (not in ``extra_ok``) are errors."""
    if not isinstance(data, dict):
        raise SuiteError(file, prefix, f"expected a table, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init and f.name not in ("options",)]
    kwargs: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for k, v in data.items():
        key = f"{prefix}.{k}" if prefix else k
        if k in names:
            kwargs[k] = _coerce(v, hints[k], file, key)
        elif k in extra_ok:
            extra[k] = v
        else:
            raise _unknown_key(file, key, k, [*names, *extra_ok])
    if extra:
        kwargs["options"] = extra
    return cls(**kwargs)


def _check_range(file: Any, key: str, ok: bool, allowed: str, value: Any) -> None:
    if not ok:
        raise SuiteError(file, key, f"{value!r} is out of range; allowed: {allowed}")


#: Appended to an unknown loss, policy, model or dataset name: how a user's own one becomes known.
PLUGIN_HINT = "your own: register it in a Python file and pass --import FILE, or list the file in [suite] plugins"


def _check_runtimes(file: Any, names: Sequence[str]) -> None:
    """Known and installed, each once, eager first (its timing is the reference the others are checked against)."""
    if not names or names[0] != "eager" or len(set(names)) != len(names):
        raise SuiteError(file, "evaluation.runtimes", f"{list(names)!r}: give 'eager' first, then other runtimes "
                         f"once each, e.g. ['eager', 'onnxruntime']; known: {', '.join(RUNTIMES.names())}")  # fmt: skip
    for i, name in enumerate(names):
        _check_name(file, f"evaluation.runtimes[{i}]", RUNTIMES, name)
        try:
            RUNTIMES.get(name).check()
        except ImportError as e:
            raise SuiteError(file, f"evaluation.runtimes[{i}]", str(e)) from None


def _check_name(file: Any, key: str, registry: Any, name: str) -> None:
    try:
        registry.get(name)
    except UnknownNameError as e:
        hint = f"; {PLUGIN_HINT}" if registry not in (EXECUTORS, RUNTIMES) else ""
        raise SuiteError(file, key, f"{e}{hint}") from None


def _validate_train_overrides(file: Any, key: str, overrides: Mapping[str, Any]) -> dict[str, Any]:
    hints = typing.get_type_hints(TrainSpec)
    out = {}
    names = _train_keys()
    for k, v in overrides.items():
        if k not in names:
            raise _unknown_key(file, f"{key}.{k}", k, names)
        out[k] = _coerce(v, hints[k], file, f"{key}.{k}")
    _check_train(file, key, out)
    return out


def _train_keys() -> list[str]:
    return [*TrainConfig.run_fields(), "equal_budget"]


def _check_train(file: Any, key: str, values: Mapping[str, Any]) -> TrainSpec:
    """Build a :class:`TrainSpec` from coerced values; the trainer's own checks name the key."""
    try:
        return TrainSpec(**values)
    except ConfigError as e:
        raise SuiteError(file, f"{key}.{e.field}", e.message) from None


def _check_frozen_backbone(file: Any, where: str, v: VariantSpec, train: TrainSpec, model: ModelSpec) -> None:
    """freeze_backbone trains only exit heads, so it needs exits and a pre-trained backbone."""
    if not v.train.get("freeze_backbone", train.freeze_backbone):
        return
    key = f"{where}.train.freeze_backbone" if "freeze_backbone" in v.train else "train.freeze_backbone"
    if not v.exits:
        raise SuiteError(file, key, f"variant {v.name!r} has no intermediate exits, so nothing would train; "
                         "set freeze_backbone in the [variants.train] of the variants with exits instead")  # fmt: skip
    if v.resolved_pretrain == "none" and not model.options.get("weights"):
        raise SuiteError(file, key, f"variant {v.name!r} would freeze a randomly initialised backbone; give it "
                         "pretrain = 'base' (or 'sum'), or a model with pre-trained weights "
                         "(model.options.weights)")  # fmt: skip


def _check_option_types(file: Any, key: str, cls: Any, options: Mapping[str, Any]) -> None:
    """Each option's value has the type its dataclass field declares (a string is not a bool); checked only: the
    values enter run keys as written, so an integer given for a number keeps its key."""
    hints = typing.get_type_hints(cls)
    aliases = getattr(cls, "aliases", {})
    for opt, value in options.items():
        name = aliases.get(opt, opt)
        if name in hints:
            _coerce(value, hints[name], file, f"{key}.{opt}")


def _check_variant(file: Any, key: str, v: VariantSpec, suite_model: ModelSpec, model_args: dict[str, Any]) -> None:
    if not v.name or v.name.startswith(".") or safe_name(v.name) != v.name:
        raise SuiteError(file, f"{key}.name", f"{v.name!r}: a variant name names its folder runs/<name>/: use letters, "
                         "digits and '-_.=', not starting with '.'")  # fmt: skip
    _check_name(file, f"{key}.loss", LOSSES, v.loss)
    _check_name(file, f"{key}.policy", POLICIES, v.policy)
    allowed = loss_option_names(v.loss)
    for opt in v.loss_options:
        if opt not in allowed:
            raise _unknown_key(file, f"{key}.loss_options.{opt}", opt, allowed)
    for opt in LOSSES.get(v.loss).harness_options:
        if opt in v.loss_options:
            raise SuiteError(file, f"{key}.loss_options.{opt}", "is computed by the harness; remove it")
    _check_option_types(file, f"{key}.loss_options", LOSSES.get(v.loss), v.loss_options)
    policy_cls = POLICIES.get(v.policy)
    policy_allowed = [f.name for f in dataclasses.fields(cast(Any, policy_cls))
                      if f.name != "threshold" and f.name not in policy_cls.harness_options]  # fmt: skip
    for opt in v.policy_options:
        if opt in policy_cls.harness_options:
            raise SuiteError(file, f"{key}.policy_options.{opt}", "is computed by the harness; remove it")
        if opt not in policy_allowed:
            raise _unknown_key(file, f"{key}.policy_options.{opt}", opt, policy_allowed)
    _check_option_types(file, f"{key}.policy_options", policy_cls, v.policy_options)
    model_allowed = MODELS.get(suite_model.name).option_names()
    for opt in v.model_options:
        if opt not in model_allowed:
            raise _unknown_key(file, f"{key}.model_options.{opt}", opt, model_allowed)
    if len(set(v.exits)) != len(v.exits):
        raise SuiteError(file, f"{key}.exits", f"duplicate exit positions in {list(v.exits)}")
    model_cls = MODELS.get(suite_model.name)
    for i in range(len(v.exits)):  # one exit more at a time, so the error names the exit that is wrong
        try:
            _check_model(model_cls, v.exits[: i + 1], {**suite_model.options, **v.model_options, **model_args})
        except (TypeError, ValueError, UnknownNameError) as e:  # an option naming an unknown head, say
            raise SuiteError(file, f"{key}.exits[{i}]", str(e)) from None
    if {**suite_model.options, **v.model_options}.get("cascading_heads") and len(v.exits) < 2:
        raise SuiteError(file, f"{key}.exits", "cascading_heads needs at least two intermediate exits (the second "
                         f"reads the first's logits); got {list(v.exits)}")  # fmt: skip
    min_exits = LOSSES.get(v.loss).min_exits
    if len(v.exits) + 1 < min_exits:
        example = list(model_cls.example_exits[: min_exits - 1]) or [
            "<a module name of the backbone: bench cost SUITE lists them>"
        ]
        raise SuiteError(
            file, f"{key}.exits", f"loss {v.loss!r} needs at least {min_exits - 1} intermediate exit(s), e.g. {example}"
        )
    if v.pretrain in ("base", "sum") and not v.exits:
        raise SuiteError(file, f"{key}.pretrain", "pre-training only applies to variants with intermediate exits")
    for name, val in (("pretrain_epochs", v.pretrain_epochs), ("epochs", v.epochs)):
        if val is not None:
            _check_range(file, f"{key}.{name}", val >= 0, "an integer >= 0", val)
    _check_range(file, f"{key}.epochs_factor", v.epochs_factor >= 1, "an integer >= 1", v.epochs_factor)
    if v.epochs is not None and v.epochs_factor != 1:
        raise SuiteError(file, f"{key}.epochs_factor", "give either epochs or epochs_factor, not both")
    for skey, values in v.sweep.items():
        if not isinstance(values, list) or not values:
            raise SuiteError(file, f"{key}.sweep.{skey}", f"needs at least one value: a non-empty list, got {values!r}")


SWEEPABLE = ("epochs", "pretrain_epochs", "exits", "policy", "pretrain")


def _apply(variant: VariantSpec, key: str, value: Any, file: Any, where: str) -> VariantSpec:
    """Set dotted ``key`` (``loss_options.lambda``, ``train.lr``, ``epochs``) on a variant."""
    head, _, tail = key.partition(".")
    if head in ("loss_options", "policy_options", "train", "model_options") and tail:
        table = dict(getattr(variant, head))
        table[tail] = value
        changes: dict[str, Any] = {head: table}
        return dataclasses.replace(variant, **changes)
    if head in SWEEPABLE and not tail:
        hints = typing.get_type_hints(VariantSpec)
        return dataclasses.replace(variant, **{head: _coerce(value, hints[head], file, where)})
    allowed = [*SWEEPABLE, "loss_options.<option>", "policy_options.<option>", "train.<field>",
               "model_options.<option>"]  # fmt: skip
    raise SuiteError(file, where, f"cannot sweep or set {key!r}; allowed: {', '.join(allowed)}")


def sweep_points(variant: VariantSpec) -> list[dict[str, Any]]:
    """The cartesian product of a variant's sweep (one empty point when there is none)."""
    keys = list(variant.sweep)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(variant.sweep[k] for k in keys))]


def expand_variant(variant: VariantSpec, file: Any = None) -> list[tuple[VariantSpec, dict[str, Any]]]:
    """(resolved variant without sweep, its sweep values) for each sweep point."""
    out = []
    for point in sweep_points(variant):
        v = dataclasses.replace(variant, sweep={})
        for k, val in point.items():
            v = _apply(v, k, val, file, f"sweep.{k}")
        out.append((v, point))
    return out


def _parse_executor(file: Any, raw: Any) -> ExecutorSpec:
    """``[executor]``: ``name`` and ``jobs``, plus the options the named executor declares."""
    if not isinstance(raw, dict):
        raise SuiteError(file, "executor", f"expected a table, got {raw!r}")
    name = raw.get("name", ExecutorSpec.name)
    if not isinstance(name, str):
        raise SuiteError(file, "executor.name", f"expected a string, got {name!r}")
    _check_name(file, "executor.name", EXECUTORS, name)
    entry = EXECUTORS.get(name)
    jobs = _coerce(raw.get("jobs", 1), int, file, "executor.jobs")
    _check_range(file, "executor.jobs", jobs >= 1, "an integer >= 1", jobs)
    allowed = ["name", "jobs", *(o.name for o in entry.options)]
    values: dict[str, Any] = {}
    for k, v in raw.items():
        if k in ("name", "jobs"):
            continue
        option = entry.option(k)
        if option is None:
            raise _unknown_key(file, f"executor.{k}", k, allowed)
        values[k] = _coerce(v, option.type, file, f"executor.{k}")
        if option.type is int:
            low = option.minimum
            _check_range(file, f"executor.{k}", values[k] >= low, f"an integer >= {low}", values[k])
    return ExecutorSpec(name, jobs, values)


TABLES = ("suite", "dataset", "model", "train", "evaluation", "report", "check", "budget", "executor", "variants")


def _apply_checks(file: Any, table: str, checks: Sequence[tuple[str, bool, str, Any]]) -> None:
    """Raise for the first declared check that fails: (key within ``table``, holds, what is allowed, value)."""
    for key, ok, allowed, value in checks:
        _check_range(file, f"{table}.{key}", ok, allowed, value)


def _parse_meta(file: Any, raw: Any) -> SuiteMeta:
    meta = _build(SuiteMeta, raw, file, "suite")
    if not meta.name:
        raise SuiteError(file, "suite.name", "is required (it names the output folder)")
    if not meta.name.replace("-", "").replace("_", "").isalnum():
        raise SuiteError(file, "suite.name", f"{meta.name!r}: use letters, digits, '-' and '_' only")
    if not meta.seeds:
        raise SuiteError(file, "suite.seeds", "is empty; give at least one seed, e.g. [0, 1, 2]")
    if len(set(meta.seeds)) != len(meta.seeds):
        raise SuiteError(file, "suite.seeds", f"duplicate seeds in {list(meta.seeds)}")
    _apply_checks(file, "suite", meta.checks())
    return meta


def _named(file: Any, table: str, raw: dict[str, Any], default: str, registry: Any) -> str:
    name = raw.get("name", default)
    if not isinstance(name, str):
        raise SuiteError(file, f"{table}.name", f"expected a string, got {name!r}")
    _check_name(file, f"{table}.name", registry, name)
    return name


def _parse_dataset(file: Any, raw: Any) -> DatasetSpec:
    raw = dict(raw)
    entry = DATASETS.get(_named(file, "dataset", raw, DatasetSpec.name, DATASETS))
    dataset = _build(DatasetSpec, raw, file, "dataset", extra_ok=entry.option_names())
    _apply_checks(file, "dataset", dataset.checks())
    defaults = entry.option_defaults()
    for k, v in dataset.options.items():
        kind = type(defaults[k]) if defaults[k] is not None else float
        value = _coerce(v, float if kind is int and isinstance(v, float) else kind, file, f"dataset.{k}")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            _check_range(file, f"dataset.{k}", value >= 0, "a number >= 0", value)
    return dataset


def _parse_model(file: Any, raw: Any, dataset: DatasetSpec) -> tuple[ModelSpec, dict[str, Any]]:
    """The ``[model]`` table and the arguments the dataset gives every model (classes, channels, size)."""
    raw = dict(raw)
    model_cls = MODELS.get(_named(file, "model", raw, ModelSpec.name, MODELS))
    model = _build(ModelSpec, raw, file, "model", extra_ok=model_cls.option_names())
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
        _check_name(file, "model.head", HEADS, head)
    try:
        _check_model(model_cls, (), {**model.options, **model_args})
    except (TypeError, ValueError, UnknownNameError) as e:  # an option naming an unknown head, say
        raise SuiteError(file, "model", str(e)) from None
    return model, model_args


def _parse_train(file: Any, raw: Any) -> TrainSpec:
    if not isinstance(raw, dict):
        raise SuiteError(file, "train", f"expected a table, got {raw!r}")
    return _check_train(file, "train", _validate_train_overrides(file, "train", raw))


def _parse_evaluation(file: Any, raw: Any) -> EvaluationSpec:
    evaluation = _build(EvaluationSpec, raw, file, "evaluation")
    if not evaluation.thresholds:
        raise SuiteError(file, "evaluation.thresholds", "is empty; give at least one threshold in [0, 1]")
    _apply_checks(file, "evaluation", evaluation.checks())
    if evaluation.headline_threshold not in evaluation.thresholds:
        raise SuiteError(file, "evaluation.headline_threshold",
                         f"{evaluation.headline_threshold} must be one of evaluation.thresholds")  # fmt: skip
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
    check = _build(CheckSpec, raw, file, "check")
    _apply_checks(file, "check", check.checks())
    if check.latency_batch is not None and check.latency_batch not in evaluation.latency_batch_sizes:
        raise SuiteError(file, "check.latency_batch", f"{check.latency_batch} must be one of "
                         f"evaluation.latency_batch_sizes {list(evaluation.latency_batch_sizes)}")  # fmt: skip
    if check.threshold is not None and check.threshold not in evaluation.thresholds:
        raise SuiteError(file, "check.threshold", f"{check.threshold} must be one of evaluation.thresholds")
    return check


def _parse_budget(file: Any, raw: Any) -> BudgetSpec:
    budget = _build(BudgetSpec, raw, file, "budget")
    _apply_checks(file, "budget", budget.checks())
    return budget


def _parse_variant(file: Any, i: int, raw: Any, train: TrainSpec, model: ModelSpec,
                   model_args: dict[str, Any]) -> VariantSpec:  # fmt: skip
    """One ``[[variants]]`` entry, with every point of its sweep checked as the run it becomes."""
    key = f"variants[{i}]"
    if isinstance(raw, dict) and isinstance(raw.get("name"), str):
        key = f"variants[{i}] ({raw['name']})"
    v = _build(VariantSpec, raw, file, key)
    if v.train:
        v = dataclasses.replace(v, train=_validate_train_overrides(file, f"{key}.train", v.train))
    _check_variant(file, key, v, model, model_args)
    for resolved, point in expand_variant(v, file):
        where = f"{key} with {point}" if point else key
        _check_variant(file, where, resolved, model, model_args)
        if resolved.train:
            _validate_train_overrides(file, f"{where}.train", resolved.train)
        _check_frozen_backbone(file, where, resolved, train, model)
        try:
            build_loss(resolved.loss, dict(resolved.loss_options), num_exits=len(resolved.exits) + 1)
        except (TypeError, ValueError) as e:
            raise SuiteError(file, f"{where}.loss_options", str(e)) from None
        try:
            POLICIES.get(resolved.policy)(**resolved.policy_options)
        except (TypeError, ValueError) as e:
            raise SuiteError(file, f"{where}.policy_options", str(e)) from None
    return v


def _parse_variants(file: Any, raw_variants: Any, train: TrainSpec, model: ModelSpec,
                    model_args: dict[str, Any]) -> tuple[VariantSpec, ...]:  # fmt: skip
    if not isinstance(raw_variants, list) or not raw_variants:
        raise SuiteError(file, "variants", "needs at least one [[variants]] entry")
    variants: list[VariantSpec] = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(raw_variants):
        v = _parse_variant(file, i, raw, train, model, model_args)
        if v.name in seen:
            raise SuiteError(file, f"variants[{i}] ({v.name}).name",
                             f"duplicate variant name {v.name!r} (also variants[{seen[v.name]}])")  # fmt: skip
        seen[v.name] = i
        variants.append(v)
    return tuple(variants)


def _parse_report(file: Any, raw: Any, variants: Sequence[VariantSpec]) -> ReportSpec:
    report = _build(ReportSpec, raw, file, "report")
    _check_name(file, "report.cascade_reference", LOSSES, report.cascade_reference)
    names = [v.name for v in variants]
    if report.reference not in names and isinstance(raw, dict) and "reference" in raw:
        raise SuiteError(file, "report.reference", f"no variant {report.reference!r}; variants: {', '.join(names)}")
    return report


def parse_suite(data: dict[str, Any], *, file: Any = None) -> Suite:
    """Validate raw TOML data into a :class:`Suite`: each table by its own function, in dependency order."""
    for k in data:
        if k not in TABLES:
            raise _unknown_key(file, k, k, TABLES)
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
    variants = _parse_variants(file, data.get("variants"), train, model, model_args)
    report = _parse_report(file, data.get("report", {}), variants)
    return Suite(meta, dataset, model, train, evaluation, report, check, budget, variants,
                 str(file) if file else None, executor)  # fmt: skip
