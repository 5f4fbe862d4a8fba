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

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from bench.config.engines import EXECUTORS
from cascade.errors import UserError
from cascade.keys import added_later, key_fields, unkeyed
from cascade.losses import LOSSES
from cascade.training import TrainConfig

if sys.version_info >= (3, 11):
    pass
else:  # pragma: no cover - exercised on Python 3.10 only
    pass

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

    def checks(self) -> list[tuple[str, bool, str, Any]]:
        """(key, holds, what is allowed, value) for every range constraint of the table."""
        return [("threads", self.threads >= 1, "an integer >= 1", self.threads)]


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
        common = (
            "val_fraction",
            "split_seed",
            "download",
            "train_size",
            "val_size",
            "normalize",
            "random_crop",
            "random_flip",
        )
        return {"root": self.root, **{k: getattr(self, k) for k in common}, **self.options}

    def checks(self) -> list[tuple[str, bool, str, Any]]:
        """(key, holds, what is allowed, value) for every range constraint of the table."""
        return [
            ("val_fraction", 0 < self.val_fraction < 1, "a number in (0, 1)", self.val_fraction),
            ("train_size", self.train_size >= 0, "an integer >= 0 (0 = all)", self.train_size),
            ("val_size", self.val_size >= 0, "an integer >= 0 (0 = all)", self.val_size),
            ("random_crop", self.random_crop >= 0, "an integer >= 0", self.random_crop),
        ]


@dataclass(frozen=True)
class ModelSpec:
    """``[model]``: a registered backbone and its options."""

    name: str = "study_cnn"  # registered model name
    options: dict[str, Any] = field(default_factory=dict)  # e.g. channels, dropout, hidden


@dataclass(frozen=True)
class TrainSpec(TrainConfig):
    """``[train]``: the trainer's :class:`cascade.training.TrainConfig` (one definition, validated there) plus
    what only the harness knows."""

    equal_budget: bool = False  # variants with pre-training train epochs - pretrain_epochs themselves

    def checks(self) -> list[tuple[str, bool, str]]:
        """The trainer's constraints, with one more: a suite trains at least one epoch (a variant may set its own
        ``epochs = 0``, e.g. to evaluate pre-trained weights)."""
        rules = [rule for rule in super().checks() if rule[0] != "epochs"]
        return [("epochs", self.epochs >= 1, "an integer >= 1"), *rules]


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
    # seconds latency timing may take per run, shared by every runtime and batch size: no timed round starts once a
    # stage's share is spent (fewer repeats, said in the run and the report); 0 = a third of the run's training
    # time, so that timing is at most a quarter of a run
    latency_budget_s: float = added_later(0.0)

    def checks(self) -> list[tuple[str, bool, str, Any]]:
        """(key, holds, what is allowed, value) for every range constraint of the table."""
        unit = "a threshold in [0, 1]"
        return [
            *((f"thresholds[{i}]", 0 <= t <= 1, unit, t) for i, t in enumerate(self.thresholds)),
            ("headline_threshold", 0 <= self.headline_threshold <= 1, unit, self.headline_threshold),
            *((f"latency_thresholds[{i}]", 0 <= t <= 1, unit, t) for i, t in enumerate(self.latency_thresholds)),
            *(
                (f"latency_batch_sizes[{i}]", b >= 1, "an integer >= 1", b)
                for i, b in enumerate(self.latency_batch_sizes)
            ),
            ("latency_samples", self.latency_samples >= 1, "an integer >= 1", self.latency_samples),
            ("latency_repeats", self.latency_repeats >= 1, "an integer >= 1", self.latency_repeats),
            ("latency_warmup", self.latency_warmup >= 0, "an integer >= 0", self.latency_warmup),
            ("test_samples", self.test_samples >= 0, "an integer >= 0 (0 = all)", self.test_samples),
            ("energy_batch", self.energy_batch >= 1, "an integer >= 1", self.energy_batch),
            (
                "latency_budget_s",
                self.latency_budget_s >= 0,
                "seconds >= 0 (0 = a third of the run's training time)",
                self.latency_budget_s,
            ),
        ]


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

    def checks(self) -> list[tuple[str, bool, str, Any]]:
        """(key, holds, what is allowed, value) for every range constraint of the table."""
        ratio = self.max_latency_ratio
        return [
            ("max_accuracy_drop", self.max_accuracy_drop >= 0, "points >= 0", self.max_accuracy_drop),
            ("max_savings_drop", self.max_savings_drop >= 0, "points >= 0", self.max_savings_drop),
            ("alpha", 0 < self.alpha < 1, "a number in (0, 1)", self.alpha),
            (
                "hard_accuracy_drop",
                self.hard_accuracy_drop >= self.max_accuracy_drop,
                "points >= check.max_accuracy_drop",
                self.hard_accuracy_drop,
            ),
            ("max_latency_ratio", ratio is None or ratio >= 1, "a ratio >= 1", ratio),
        ]


@dataclass(frozen=True)
class BudgetSpec:
    """``[budget]``: per-sample compute budgets for thresholds chosen on validation."""

    unit: Literal["fraction", "macs", "energy"] = "fraction"  # fraction of the base network's MACs, MACs, or energy
    values: tuple[float, ...] = ()  # the budgets; empty = no budgeted evaluation
    grid: int = 101  # candidate thresholds per exit searched on validation

    def checks(self) -> list[tuple[str, bool, str, Any]]:
        """(key, holds, what is allowed, value) for every range constraint of the table."""
        allowed = "> 0 (and <= 1.5 for unit 'fraction')"
        return [
            *(
                (f"values[{i}]", b > 0 and (self.unit != "fraction" or b <= 1.5), allowed, b)
                for i, b in enumerate(self.values)
            ),
            ("grid", self.grid >= 3, "an integer >= 3", self.grid),
        ]


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
    # train epochs_factor x train.epochs (not with epochs): a one-stage reference trained for the total steps of
    # a two-stage method (``sum-2x``), which stays equal when the suite's length is overridden (--set train.epochs)
    epochs_factor: int = 1
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


# --------------------------------------------------------------------------- checks


# --------------------------------------------------------------------------- loading
