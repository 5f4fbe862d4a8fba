"""Suites: TOML files validated into frozen dataclasses at load time.

A suite declares a dataset, a backbone, training settings, a list of
variants (loss, exit positions, exit policy, options, pre-training) and what
to evaluate. Every value has a default matching the source study. Unknown
keys (with a "did you mean"), wrong types, impossible values, unknown names
and duplicate variants are :class:`SuiteError` naming the file, the key path
and what is allowed; nothing runs on an invalid suite. The format is
documented in ``suites/README.md``.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import itertools
import re
import sys
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union, cast

from bench.config import plugins
from bench.config.engines import EXECUTORS, RUNTIMES
from bench.config.tables import load_energy_table, load_hardware
from cascade._registry import UnknownNameError
from cascade.data import DATASETS
from cascade.errors import UserError
from cascade.exits import POLICIES
from cascade.keys import added_later, key_fields, unkeyed
from cascade.losses import LOSSES, build_loss, loss_option_names
from cascade.models import MODELS
from cascade.train import ConfigError, TrainConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

STUDY_THRESHOLDS = tuple(round(0.1 * i, 1) for i in range(11))


class SuiteError(ValueError, UserError):
    """An invalid suite: names the file, the key path and what is allowed."""

    def __init__(self, file: str | Path | None, key: str, message: str) -> None:
        self.file, self.key, self.message = str(file or "<suite>"), key, message
        super().__init__(f"{self.file}: {key}: {message}" if key else f"{self.file}: {message}")


# --------------------------------------------------------------------------- tables


@dataclass(frozen=True)
class SuiteMeta:
    """``[suite]``: what the suite is and what it runs on."""

    name: str = ""  # required: names the output folder results/<name>/
    description: str = ""  # free text, copied into the report
    seeds: tuple[int, ...] = (0, 1, 2)  # one run per seed; runs are paired by seed
    device: Literal["cpu", "cuda", "auto"] = "cpu"  # auto = cuda when available
    # torch CPU threads of every run, whichever executor runs it (in-process, pool, Dask, Slurm): CPU
    # kernels reduce in a thread-count-dependent order, so results are bitwise equal only at equal counts
    threads: int = 2
    # Python files (relative to the suite file) or module names imported before validation, so that the
    # models, losses, datasets, heads or executors they register are known by name (also: --import FILE)
    plugins: tuple[str, ...] = ()


@dataclass(frozen=True)
class DatasetSpec:
    """``[dataset]``: a registered dataset and its options."""

    name: str = "digits"  # a registered dataset (mnist, noisy_mnist, fashion_mnist, digits, cifar10, ...)
    root: str | None = unkeyed(None)  # data folder; default $CASCADE_DATA_DIR or the user cache
    val_fraction: float = 0.1  # share of the training data held out for validation
    split_seed: int = 0  # seed of the train/validation split (fixed across model seeds)
    download: bool = unkeyed(True)  # try to download missing files
    train_size: int = added_later(0)  # keep only this many training samples (0 = all); for quick suites
    val_size: int = added_later(0)  # keep only this many validation samples (0 = all of val_fraction); quick suites
    # standardisation fitted on the training part
    normalize: Literal["global", "per-channel", "none"] = added_later("global")
    random_crop: int = added_later(0)  # training augmentation: padding of a random crop (0 = none; CIFAR: 4)
    random_flip: bool = added_later(False)  # training augmentation: random horizontal flip
    options: dict[str, Any] = field(default_factory=dict)  # dataset-specific keys (sigma, salt_pepper, noise_seed)

    def identity(self) -> dict[str, Any]:
        """What identifies the data, as it enters a run key (:func:`cascade.keys.key_fields`; the root
        folder and the download switch do not identify it); the dataset's own options inline."""
        ident = key_fields(self)
        options = ident.pop("options")
        return {**ident, **options}

    def load_options(self) -> dict[str, Any]:
        """Keyword arguments of :func:`cascade.data.load_dataset`."""
        common = ("val_fraction", "split_seed", "download", "train_size", "val_size", "normalize", "random_crop",
                  "random_flip")  # fmt: skip
        return {"root": self.root, **{k: getattr(self, k) for k in common}, **self.options}


@dataclass(frozen=True)
class ModelSpec:
    """``[model]``: a registered backbone and its options."""

    name: str = "study_cnn"  # registered model name
    options: dict[str, Any] = field(default_factory=dict)  # e.g. channels, dropout, hidden


@dataclass(frozen=True)
class TrainSpec(TrainConfig):
    """``[train]``: the trainer's :class:`cascade.train.TrainConfig` (one definition, validated there) plus
    what only the harness knows."""

    equal_budget: bool = False  # variants with pre-training train epochs - pretrain_epochs themselves


@dataclass(frozen=True)
class EvaluationSpec:
    """``[evaluation]``: operating points, cost and latency measurements."""

    thresholds: tuple[float, ...] = STUDY_THRESHOLDS  # thresholds evaluated post hoc (study: 0, 0.1, ..., 1)
    headline_threshold: float = 0.6  # the threshold of the main tables (study: 0.6)
    energy_table: str = "eyeriss"  # energy cost table (bench/config/energy_tables/<name>.toml or a path)
    count_macs: Literal["headline", "all", "none"] = "headline"  # where to count MACs of the real dynamic forward
    latency: bool = True  # time the dynamic forward
    latency_batch_sizes: tuple[int, ...] = (1, 256)  # batch sizes timed
    latency_thresholds: tuple[float, ...] = ()  # thresholds timed; empty = the headline threshold
    latency_samples: int = 256  # test samples timed at batch 1 (all at larger batches up to 4096)
    latency_repeats: int = 5  # timed repeats (median and IQR reported)
    latency_warmup: int = 1  # untimed warm-up repeats
    latency_optimised: bool = True  # time an inference copy: BN folded, NHWC on CPU (see cascade.inference)
    # the buffer-aware energy model (bench.measure.dataflow): accelerator (bench/config/hardware/<name>.toml or a
    # path) and the batch its per-sample energy is stated at (1: the latency-critical case; weights re-read per tile
    # are shared by the batch). Left out of run keys at these defaults (runs made before them stay valid).
    hardware: str = added_later("eyeriss")
    energy_batch: int = added_later(1)
    # recompute every batch norm's running statistics on training batches before evaluating (precise BN;
    # bench.execute.sanity): the remedy for statistics that lag the weights (low momentum, few steps); the
    # checkpoint is not changed
    recompute_bn: bool = added_later(False)
    # evaluate on this many test samples (a fixed random subset; 0 = all): quick runs (bench run --quick)
    test_samples: int = added_later(0)
    # execution engines timed (bench.measure.runtimes): "eager" (PyTorch, with the roofline prediction) and
    # "onnxruntime" (each segment and exit head an ONNX Runtime session; the [onnx] extra)
    runtimes: tuple[str, ...] = added_later(("eager",))


@dataclass(frozen=True)
class ReportSpec:
    """``[report]``: which variants the statistics compare against."""

    reference: str = "base"  # variant name: reference for accuracy and cost
    cascade_reference: str = "sum"  # loss name: cascade variants are compared with this loss at the same exits


@dataclass(frozen=True)
class CheckSpec:
    """``[check]``: margins of ``bench check`` (percentage points)."""

    max_accuracy_drop: float = 0.5  # fail when accuracy falls by more than this many points
    max_savings_drop: float = 2.0  # fail when compute saved falls by more than this many points
    threshold: float | None = None  # operating point checked; default the headline threshold
    alpha: float = 0.05  # significance level of the paired one-sided tests
    hard_accuracy_drop: float = 5.0  # fail when accuracy falls by more than this, significant or not
    max_latency_ratio: float | None = None  # latency gate (off by default): fail when current/baseline
    # latency exceeds this and the slowdown is beyond the seeds' noise (asv-style); e.g. 1.25
    latency_batch: int | None = None  # batch size of the latency gate; default the largest timed


@dataclass(frozen=True)
class BudgetSpec:
    """``[budget]``: per-sample compute budgets for thresholds chosen on validation."""

    unit: Literal["fraction", "macs", "energy"] = "fraction"  # fraction of the base network's MACs, MACs, or energy
    values: tuple[float, ...] = ()  # the budgets; empty = no budgeted evaluation
    grid: int = 101  # candidate thresholds per exit searched on validation


@dataclass(frozen=True)
class ExecutorSpec:
    """``[executor]``: where runs execute by default (command-line flags override it).

    Besides ``name`` and ``jobs``, the table takes the options that the named executor declares in
    :data:`bench.config.engines.EXECUTORS` (e.g. slurm: partition, time, gpus_per_job, cpus_per_job;
    dask: address, workers).
    """

    name: str = "local"  # a registered executor: local process(es), Slurm via submitit, or Dask
    jobs: int = 1  # local: parallel processes (1 = in the driver process)
    values: dict[str, Any] = field(default_factory=dict)  # the executor's own options, as given

    def options(self) -> dict[str, Any]:
        """Keyword options of the executor: its declared defaults, overridden by the suite's values."""
        return EXECUTORS.get(self.name).resolve(self.values)


@dataclass(frozen=True)
class VariantSpec:
    """One ``[[variants]]`` entry: a model variant trained on every seed."""

    name: str = ""  # required, unique
    loss: str = "base"  # registered loss
    exits: tuple[str, ...] = ()  # intermediate exit positions, e.g. ["p1"] or ["p1", "p2"]
    policy: str = "max-prob"  # exit policy at test time
    policy_options: dict[str, Any] = field(default_factory=dict)  # e.g. patience = 2
    loss_options: dict[str, Any] = field(default_factory=dict)  # e.g. alpha, lambda, penalty_at
    pretrain: Literal["none", "base", "sum", "default"] = "default"  # default: the loss's declared default_pretrain
    pretrain_epochs: int | None = None  # epochs of pre-training; default the suite's train.epochs
    epochs: int | None = None  # this variant's own epochs; default train.epochs
    train: dict[str, Any] = field(default_factory=dict)  # overrides of [train] for this variant
    model_options: dict[str, Any] = field(default_factory=dict)  # overrides of [model] options, e.g. dropout
    sweep: dict[str, tuple[Any, ...]] = field(default_factory=dict)  # key -> values; expands into runs

    @property
    def resolved_pretrain(self) -> str:
        """The pre-training mode: the variant's own, else the loss's declared default."""
        if self.pretrain != "default":
            return self.pretrain
        return LOSSES.get(self.loss).default_pretrain


@dataclass(frozen=True)
class Suite:
    """A whole validated suite."""

    suite: SuiteMeta
    dataset: DatasetSpec
    model: ModelSpec
    train: TrainSpec
    evaluation: EvaluationSpec
    report: ReportSpec
    check: CheckSpec
    budget: BudgetSpec
    variants: tuple[VariantSpec, ...]
    path: str | None = None  # the file it came from
    executor: ExecutorSpec = field(default_factory=ExecutorSpec)

    @property
    def name(self) -> str:
        return self.suite.name

    def variant(self, name: str) -> VariantSpec:
        for v in self.variants:
            if v.name == name:
                return v
        raise KeyError(f"no variant {name!r}; variants: {', '.join(v.name for v in self.variants)}")


# --------------------------------------------------------------------------- generic coercion

# checked by their own rules
_OPEN_TABLES = {"options", "policy_options", "loss_options", "train", "sweep", "model_options"}


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin is tuple:
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    if origin is dict:
        return "a table"
    return {int: "an integer", float: "a number", bool: "true/false", str: "a string", type(None): "nothing"}.get(
        tp, str(tp)
    )


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
    if origin is tuple:
        if not isinstance(value, list):
            raise SuiteError(file, key, f"expected {_type_name(tp)}, got {value!r}")
        (item,) = typing.get_args(tp)[:1]
        return tuple(_coerce(v, item, file, f"{key}[{i}]") for i, v in enumerate(value))
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


# --------------------------------------------------------------------------- checks


def _check_range(file: Any, key: str, ok: bool, allowed: str, value: Any) -> None:
    if not ok:
        raise SuiteError(file, key, f"{value!r} is out of range; allowed: {allowed}")


def _check_threshold(file: Any, key: str, t: float) -> None:
    _check_range(file, key, 0.0 <= t <= 1.0, "a threshold in [0, 1]", t)


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


def _check_variant(file: Any, key: str, v: VariantSpec, suite_model: ModelSpec, model_args: dict[str, Any]) -> None:
    if not v.name:
        raise SuiteError(file, f"{key}.name", "every variant needs a non-empty name")
    _check_name(file, f"{key}.loss", LOSSES, v.loss)
    _check_name(file, f"{key}.policy", POLICIES, v.policy)
    allowed = loss_option_names(v.loss)
    for opt in v.loss_options:
        if opt not in allowed:
            raise _unknown_key(file, f"{key}.loss_options.{opt}", opt, allowed)
    for opt in LOSSES.get(v.loss).harness_options:
        if opt in v.loss_options:
            raise SuiteError(file, f"{key}.loss_options.{opt}", "is computed by the harness; remove it")
    policy_allowed = [f.name for f in dataclasses.fields(cast(Any, POLICIES.get(v.policy))) if f.name != "threshold"]
    for opt in v.policy_options:
        if opt not in policy_allowed:
            raise _unknown_key(file, f"{key}.policy_options.{opt}", opt, policy_allowed)
    model_allowed = MODELS.get(suite_model.name).option_names()
    for opt in v.model_options:
        if opt not in model_allowed:
            raise _unknown_key(file, f"{key}.model_options.{opt}", opt, model_allowed)
    if len(set(v.exits)) != len(v.exits):
        raise SuiteError(file, f"{key}.exits", f"duplicate exit positions in {list(v.exits)}")
    model_cls = MODELS.get(suite_model.name)
    for i in range(len(v.exits)):  # one exit more at a time, so the error names the exit that is wrong
        try:
            model_cls.check(exits=v.exits[: i + 1], **{**suite_model.options, **v.model_options}, **model_args)
        except (TypeError, ValueError, UnknownNameError) as e:  # an option naming an unknown head, say
            raise SuiteError(file, f"{key}.exits[{i}]", str(e)) from None
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


# --------------------------------------------------------------------------- loading


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``a.b.0.c`` in nested tables and lists; :class:`SuiteError` (``--set``) when the path does not fit."""
    parts = dotted.split(".")
    node: Any = data
    for i, p in enumerate(parts):
        where = ".".join(parts[: i + 1])
        last = i == len(parts) - 1
        if isinstance(node, list):
            if not p.isdigit() or int(p) >= len(node):
                raise SuiteError("--set", dotted, f"{'.'.join(parts[:i])} is a list of {len(node)}; "
                                 f"{p!r} is not an index of it (use KEY=[...] to replace the list)")  # fmt: skip
            if last:
                node[int(p)] = value
            else:
                node = node[int(p)]
        elif isinstance(node, dict):
            if last:
                node[p] = value
            else:
                node = node.setdefault(p, {})
        else:
            raise SuiteError("--set", dotted, f"{'.'.join(parts[:i])} is {node!r}, not a table; cannot set {where}")


def parse_override(text: str) -> tuple[str, Any]:
    """``"train.epochs=2"`` -> ("train.epochs", 2); the value is parsed as TOML (bare words as strings)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise SuiteError("--set", text, "expected KEY=VALUE, e.g. train.epochs=2 or suite.seeds=[0,1]")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return key.strip(), value


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``--set key=value`` overrides to raw TOML data; variants are addressed as ``variants.<name>.key``."""
    for text in overrides:
        key, value = parse_override(text)
        parts = key.split(".")
        if parts[0] == "variants" and len(parts) == 2 and not parts[1].isdigit():
            raise SuiteError("--set", key, "set a key of a variant, e.g. variants.NAME.epochs=3")
        if parts[0] == "variants" and len(parts) >= 3:
            names = [v.get("name") for v in data.get("variants", []) if isinstance(v, dict)]
            if parts[1] not in names:
                raise SuiteError("--set", key, f"no variant {parts[1]!r}; variants: {', '.join(map(str, names))}")
            variant = data["variants"][names.index(parts[1])]
            _set_dotted(variant, ".".join(parts[2:]), value)
        else:
            _set_dotted(data, key, value)
    return data


def load_suite(path: str | Path, overrides: Sequence[str] = (), imports: Sequence[str] = ()) -> Suite:
    """Read and validate a suite file; ``overrides`` are ``key=value`` strings validated like the file.

    ``imports`` (``--import``) and the suite's ``[suite] plugins`` are imported first (see
    :mod:`bench.config.plugins`); the suite records them, resolved, in ``suite.suite.plugins``.
    """
    path = Path(path)
    return parse_suite(_read_suite(path, overrides, imports), file=path)


def _read_suite(path: Path, overrides: Sequence[str], imports: Sequence[str]) -> dict[str, Any]:
    """The suite file's TOML with the overrides applied and the plugins imported (not yet validated)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SuiteError(path, "", "file not found") from None
    except IsADirectoryError:
        raise SuiteError(path, "", "is a folder; give a suite .toml file") from None
    except UnicodeDecodeError:
        raise SuiteError(path, "", "not a text file (a suite is a UTF-8 TOML file)") from None
    except OSError as e:
        raise SuiteError(path, "", f"cannot be read ({e.strerror})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SuiteError(path, "", f"not valid TOML: {e}") from None
    data = apply_overrides(data, overrides)
    suite_table = data.get("suite", {})
    if isinstance(suite_table, dict):
        listed = suite_table.get("plugins", [])
        if not isinstance(listed, list) or not all(isinstance(p, str) for p in listed):
            raise SuiteError(path, "suite.plugins", f"expected a list of file paths or module names, got {listed!r}")
        resolved = [plugins.resolve(p, path.parent) for p in listed]
        resolved += [plugins.resolve(p) for p in imports if plugins.resolve(p) not in resolved]
        for i, spec in enumerate(resolved):
            try:
                plugins.import_plugin(spec)
            except plugins.PluginError as e:
                where = f"suite.plugins[{i}]" if i < len(listed) else "--import"
                raise SuiteError(path, where, str(e)) from None
        suite_table["plugins"] = resolved
    return data


def suite_errors(path: str | Path, overrides: Sequence[str] = (), imports: Sequence[str] = (), *,
                 limit: int = 25) -> list[SuiteError]:  # fmt: skip
    """Every error of a suite, not only the first (``bench validate``): after each error the key it names
    is removed (its default applies) and validation goes on, until the suite validates, an error names no
    key that can be removed, or ``limit`` errors were found. An empty list: the suite is valid."""
    path = Path(path)
    try:
        data = _read_suite(path, overrides, imports)
    except SuiteError as e:
        return [e]
    errors: list[SuiteError] = []
    while len(errors) < limit:
        try:
            parse_suite(copy.deepcopy(data), file=path)
            return errors
        except SuiteError as e:
            errors.append(e)
            if not _remove_key(data, e.key):
                return errors
    return errors


_VARIANT = re.compile(r"^variants\[(\d+)\](?: \([^)]*\))?(?: with \{.*?\})?")
_INDEX = re.compile(r"^(.*)\[(\d+)\]$")


def _remove_key(data: dict[str, Any], key: str) -> bool:
    """Delete the entry a :class:`SuiteError` key names (``train.lr``, ``variants[1] (x).sweep.a.b``,
    ``evaluation.thresholds[2]``); False when it names nothing that can be deleted."""
    node: Any = data
    m = _VARIANT.match(key)
    if m:
        variants = data.get("variants")
        if not isinstance(variants, list) or int(m.group(1)) >= len(variants):
            return False
        node, key = variants[int(m.group(1))], key[m.end() :].lstrip(".")
        if not key:
            del variants[int(m.group(1))]
            return True
    parts = key.split(".") if key else []
    while parts and isinstance(node, dict):
        for j in range(len(parts), 0, -1):  # dotted keys inside a table ("loss_options.lambda" in a sweep)
            name = ".".join(parts[:j])
            idx = _INDEX.match(name)
            if idx and isinstance(node.get(idx.group(1)), list) and int(idx.group(2)) < len(node[idx.group(1)]):
                if j == len(parts):
                    del node[idx.group(1)][int(idx.group(2))]
                    return True
                node, parts = node[idx.group(1)][int(idx.group(2))], parts[j:]
                break
            if name in node:
                if j == len(parts):
                    del node[name]
                    return True
                node, parts = node[name], parts[j:]
                break
        else:
            return False
    return False


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


def parse_suite(data: dict[str, Any], *, file: Any = None) -> Suite:
    """Validate raw TOML data into a :class:`Suite`."""
    tables = ("suite", "dataset", "model", "train", "evaluation", "report", "check", "budget", "executor", "variants")
    for k in data:
        if k not in tables:
            raise _unknown_key(file, k, k, tables)
        if k != "variants" and not isinstance(data[k], dict):
            raise SuiteError(file, k, f"expected a table [{k}], got {data[k]!r}")

    meta = _build(SuiteMeta, data.get("suite", {}), file, "suite")
    if not meta.name:
        raise SuiteError(file, "suite.name", "is required (it names the output folder)")
    if not meta.name.replace("-", "").replace("_", "").isalnum():
        raise SuiteError(file, "suite.name", f"{meta.name!r}: use letters, digits, '-' and '_' only")
    if not meta.seeds:
        raise SuiteError(file, "suite.seeds", "is empty; give at least one seed, e.g. [0, 1, 2]")
    _check_range(file, "suite.threads", meta.threads >= 1, "an integer >= 1", meta.threads)
    if len(set(meta.seeds)) != len(meta.seeds):
        raise SuiteError(file, "suite.seeds", f"duplicate seeds in {list(meta.seeds)}")

    ds_raw = dict(data.get("dataset", {}))
    ds_name = ds_raw.get("name", DatasetSpec.name)
    if not isinstance(ds_name, str):
        raise SuiteError(file, "dataset.name", f"expected a string, got {ds_name!r}")
    _check_name(file, "dataset.name", DATASETS, ds_name)
    ds_entry = DATASETS.get(ds_name)
    dataset = _build(DatasetSpec, ds_raw, file, "dataset", extra_ok=ds_entry.option_names())
    _check_range(file, "dataset.val_fraction", 0 < dataset.val_fraction < 1, "a number in (0, 1)", dataset.val_fraction)
    _check_range(file, "dataset.train_size", dataset.train_size >= 0, "an integer >= 0 (0 = all)", dataset.train_size)
    _check_range(file, "dataset.val_size", dataset.val_size >= 0, "an integer >= 0 (0 = all)", dataset.val_size)
    _check_range(file, "dataset.random_crop", dataset.random_crop >= 0, "an integer >= 0", dataset.random_crop)
    defaults = ds_entry.option_defaults()
    for k, v in dataset.options.items():
        default = defaults[k]
        kind = type(default) if default is not None else float
        value = _coerce(v, float if kind is int and isinstance(v, float) else kind, file, f"dataset.{k}")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            _check_range(file, f"dataset.{k}", value >= 0, "a number >= 0", value)

    m_raw = dict(data.get("model", {}))
    m_name = m_raw.get("name", ModelSpec.name)
    if not isinstance(m_name, str):
        raise SuiteError(file, "model.name", f"expected a string, got {m_name!r}")
    _check_name(file, "model.name", MODELS, m_name)
    model_cls = MODELS.get(m_name)
    model = _build(ModelSpec, m_raw, file, "model", extra_ok=model_cls.option_names())
    try:
        shape = ds_entry.shape(**dataset.options)
        classes = ds_entry.classes(dataset.root, **dataset.options)
    except (OSError, ValueError) as e:
        raise SuiteError(file, "dataset", str(e)) from None
    model_args = {"num_classes": classes, "in_channels": shape[0], "input_size": shape[-1]}
    try:
        model_cls.check(exits=(), **model.options, **model_args)
    except (TypeError, ValueError, UnknownNameError) as e:  # an option naming an unknown head, say
        raise SuiteError(file, "model", str(e)) from None

    train_raw = data.get("train", {})
    if not isinstance(train_raw, dict):
        raise SuiteError(file, "train", f"expected a table, got {train_raw!r}")
    train = _check_train(file, "train", _validate_train_overrides(file, "train", train_raw))

    evaluation = _build(EvaluationSpec, data.get("evaluation", {}), file, "evaluation")
    if not evaluation.thresholds:
        raise SuiteError(file, "evaluation.thresholds", "is empty; give at least one threshold in [0, 1]")
    for i, t in enumerate(evaluation.thresholds):
        _check_threshold(file, f"evaluation.thresholds[{i}]", t)
    _check_threshold(file, "evaluation.headline_threshold", evaluation.headline_threshold)
    if evaluation.headline_threshold not in evaluation.thresholds:
        raise SuiteError(
            file,
            "evaluation.headline_threshold",
            f"{evaluation.headline_threshold} must be one of evaluation.thresholds",
        )
    for i, t in enumerate(evaluation.latency_thresholds):
        _check_threshold(file, f"evaluation.latency_thresholds[{i}]", t)
        if t not in evaluation.thresholds:
            raise SuiteError(file, f"evaluation.latency_thresholds[{i}]", f"{t} must be one of evaluation.thresholds")
    for i, b in enumerate(evaluation.latency_batch_sizes):
        _check_range(file, f"evaluation.latency_batch_sizes[{i}]", b >= 1, "an integer >= 1", b)
    for name in ("latency_samples", "latency_repeats"):
        _check_range(
            file, f"evaluation.{name}", getattr(evaluation, name) >= 1, "an integer >= 1", getattr(evaluation, name)
        )
    _check_range(
        file, "evaluation.latency_warmup", evaluation.latency_warmup >= 0, "an integer >= 0", evaluation.latency_warmup
    )
    _check_range(file, "evaluation.test_samples", evaluation.test_samples >= 0, "an integer >= 0 (0 = all)",
                 evaluation.test_samples)  # fmt: skip
    _check_runtimes(file, evaluation.runtimes)
    try:
        load_energy_table(evaluation.energy_table)
    except (FileNotFoundError, ValueError) as e:
        raise SuiteError(file, "evaluation.energy_table", str(e)) from None
    try:
        load_hardware(evaluation.hardware)
    except (FileNotFoundError, ValueError) as e:
        raise SuiteError(file, "evaluation.hardware", str(e)) from None
    _check_range(file, "evaluation.energy_batch", evaluation.energy_batch >= 1, "an integer >= 1",
                 evaluation.energy_batch)  # fmt: skip

    report = _build(ReportSpec, data.get("report", {}), file, "report")
    _check_name(file, "report.cascade_reference", LOSSES, report.cascade_reference)
    check = _build(CheckSpec, data.get("check", {}), file, "check")
    _check_range(file, "check.max_accuracy_drop", check.max_accuracy_drop >= 0, "points >= 0", check.max_accuracy_drop)
    _check_range(file, "check.max_savings_drop", check.max_savings_drop >= 0, "points >= 0", check.max_savings_drop)
    _check_range(file, "check.alpha", 0 < check.alpha < 1, "a number in (0, 1)", check.alpha)
    _check_range(file, "check.hard_accuracy_drop", check.hard_accuracy_drop >= check.max_accuracy_drop,
                 "points >= check.max_accuracy_drop", check.hard_accuracy_drop)  # fmt: skip
    if check.max_latency_ratio is not None:
        _check_range(file, "check.max_latency_ratio", check.max_latency_ratio >= 1, "a ratio >= 1",
                     check.max_latency_ratio)  # fmt: skip
    if check.latency_batch is not None and check.latency_batch not in evaluation.latency_batch_sizes:
        raise SuiteError(file, "check.latency_batch", f"{check.latency_batch} must be one of "
                         f"evaluation.latency_batch_sizes {list(evaluation.latency_batch_sizes)}")  # fmt: skip
    if check.threshold is not None and check.threshold not in evaluation.thresholds:
        raise SuiteError(file, "check.threshold", f"{check.threshold} must be one of evaluation.thresholds")
    budget = _build(BudgetSpec, data.get("budget", {}), file, "budget")
    for i, b in enumerate(budget.values):
        ok = b > 0 and (budget.unit != "fraction" or b <= 1.5)
        _check_range(file, f"budget.values[{i}]", ok, "> 0 (and <= 1.5 for unit 'fraction')", b)
    _check_range(file, "budget.grid", budget.grid >= 3, "an integer >= 3", budget.grid)
    executor = _parse_executor(file, data.get("executor", {}))

    raw_variants = data.get("variants")
    if not isinstance(raw_variants, list) or not raw_variants:
        raise SuiteError(file, "variants", "needs at least one [[variants]] entry")
    variants: list[VariantSpec] = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(raw_variants):
        key = f"variants[{i}]"
        if isinstance(raw, dict) and isinstance(raw.get("name"), str):
            key = f"variants[{i}] ({raw['name']})"
        v = _build(VariantSpec, raw, file, key)
        if v.train:
            v = dataclasses.replace(v, train=_validate_train_overrides(file, f"{key}.train", v.train))
        if v.name in seen:
            raise SuiteError(file, f"{key}.name", f"duplicate variant name {v.name!r} (also variants[{seen[v.name]}])")
        seen[v.name] = i
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
        variants.append(v)
    names = [v.name for v in variants]
    if report.reference not in names and "report" in data and "reference" in data["report"]:
        raise SuiteError(file, "report.reference", f"no variant {report.reference!r}; variants: {', '.join(names)}")
    return Suite(
        meta,
        dataset,
        model,
        train,
        evaluation,
        report,
        check,
        budget,
        tuple(variants),
        str(file) if file else None,
        executor,
    )
