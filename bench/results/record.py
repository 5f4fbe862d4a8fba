"""The typed run record: what one run computed, and the one table of metrics every report reads.

A run file (``runs/<variant>/<key>.json``) is the JSON of a :class:`RunRecord`.
:meth:`RunRecord.to_json` writes the fields in declaration order and leaves out
optional parts that a run did not produce (a failed run has no costs, a run
without ``[budget]`` no budget); :meth:`RunRecord.from_json` checks the schema
version and raises :class:`StoreError` naming the file on an old or corrupt one.

Every metric that a summary column, a report table, a figure, ``bench check``,
``bench compare`` or the study reads is declared once in :data:`METRICS` (name,
column label, scale and digits for display, unit, whether higher is better,
and how to read it from a record at a threshold). A new metric is one field of
the record plus one row there.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from typing import Any

from bench.results.errors import StoreError
from bench.results.migrate import upgrade
from bench.results.typed import load_typed

# --------------------------------------------------------------------------- generic (de)serialisation


#: Field metadata: the field is left out of the JSON when it is ``None`` (a part the run did not produce).
OMIT = {"omit_none": True}


def to_json(obj: Any) -> Any:
    """Dataclasses -> JSON-ready dicts in field order; ``None`` parts marked optional are left out."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out = {}
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if value is None and f.metadata.get("omit_none"):
                continue
            out[f.name] = to_json(value)
        return out
    if isinstance(obj, (list, tuple)):
        return [to_json(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_json(v) for k, v in obj.items()}
    return obj


def from_json(cls: type, data: Any, where: str = "") -> Any:
    """Build dataclass ``cls`` (recursively) from :func:`to_json` output, every field typed
    (:func:`bench.results.typed.load_typed`; ``where`` names the source in errors); unknown keys are kept out."""
    return load_typed(cls, data, where or cls.__name__)


# --------------------------------------------------------------------------- the record's parts


@dataclass(frozen=True)
class ExitInfo:
    """Per-exit accuracy when every sample goes through every exit."""

    names: list[str]  # exit names, first to last ("p1", ..., "final")
    val_accuracy: list[float]  # in [0, 1]
    test_accuracy: list[float]  # in [0, 1]
    # each exit's accuracy as the policy predicts there, where that differs from the head's own argmax (ZTW's
    # ensembles): the anytime accuracy of the method
    policy_val_accuracy: list[float] | None = field(default=None, metadata=OMIT)
    policy_test_accuracy: list[float] | None = field(default=None, metadata=OMIT)


@dataclass(frozen=True)
class ExitCostRecord:
    """Cumulative cost per sample of producing one exit (heads met on the way included)."""

    exit: str
    macs: int
    params: int
    bytes: int
    energy: dict[str, dict[str, float]]  # energy table -> breakdown (mac, dram, glb, array, rf, total)
    flops: int  # 2 x macs


@dataclass(frozen=True)
class CostRecord:
    """What the network costs: per exit, the base network, the full multi-exit network."""

    convention: str
    energy_tables: dict[str, dict[str, str]]  # table name -> unit, description
    per_exit: list[ExitCostRecord]
    base: dict[str, Any]  # macs, flops, params, bytes, energy of the network without intermediate exits
    full: dict[str, Any]  # macs, energy totals of the last exit
    unsupported: dict[str, int] | None = field(
        default=None, metadata=OMIT
    )  # operators without a cost formula (not counted) -> calls


@dataclass(frozen=True)
class OperatingPoint:
    """The cascade at one threshold (or the only point of a threshold-free policy)."""

    threshold: float | None
    accuracy: float  # test, in [0, 1]
    val_accuracy: float
    early_share: float  # share of test samples that left before the last exit
    exit_share: list[float]
    val_exit_share: list[float]
    exit_accuracy: list[float | None]  # accuracy of the samples that left at each exit (None: nobody)
    macs_expected: float  # per sample: shares x cumulative exit MACs
    flops_expected: float
    energy_expected: dict[str, float]  # energy table -> expected energy per sample
    saved_vs_base: float  # 1 - expected MACs / base MACs
    saved_vs_full: float
    energy_saved_vs_base: dict[str, float]
    macs_counted: float | None = field(
        default=None, metadata=OMIT
    )  # MACs counted while running the real dynamic forward
    dynamic_matches_masked: bool | None = field(default=None, metadata=OMIT)


@dataclass(frozen=True)
class PathTiming:
    """One exit path (every segment and head up to that exit, on every sample) timed at one batch size."""

    exit: str
    batch_size: int
    per_batch: dict[str, Any]  # the timing: samples, median, iqr, warmup, threads, device (bench.measure.latency)
    per_sample_median: float  # seconds
    runtime: str = "eager"  # bench.measure.runtimes
    roofline_per_sample: float | None = field(default=None, metadata=OMIT)  # the runtime's own roofline


@dataclass(frozen=True)
class CascadeTiming:
    """The real dynamic cascade at one threshold and batch size, timed against the full network."""

    threshold: float | None
    batch_size: int
    samples: int  # test samples timed
    dynamic: dict[str, Any]  # timing of the dynamic forward over all batches
    full: dict[str, Any]  # timing of the full network over the same batches
    per_sample_median: float  # seconds per sample of the dynamic forward
    speedup_vs_full: float  # median of the per-repeat full / dynamic ratios
    exit_share: list[float] | None = field(default=None, metadata=OMIT)  # absent from the oldest files
    path_predicted_per_sample: float | None = field(default=None, metadata=OMIT)  # shares x each path's time
    runtime: str = "eager"
    measured_energy_joules_per_sample: float | None = None  # eager: None where no energy counter exists
    measured_energy: dict[str, Any] | None = None
    roofline_per_sample: float | None = field(default=None, metadata=OMIT)  # the runtime's own roofline
    roofline_full_per_sample: float | None = field(default=None, metadata=OMIT)

    def matches(self, threshold: float | None, batch: int) -> bool:
        """Whether this is the timing at ``threshold`` (None: any; a threshold-free policy's matches any)
        and ``batch``: the one rule every reader uses."""
        t = self.threshold
        return self.batch_size == batch and (t is None or threshold is None or math.isclose(t, threshold))


# The full network and its last exit's path are one computation timed in the same rounds: apart by more than
# this share, the timing was noisy (LatencyRecord.twin_gaps)
TWIN_TOLERANCE = 0.10


@dataclass(frozen=True)
class LatencyRecord:
    """Wall-clock of the exit paths and of the dynamic forward (see :mod:`bench.measure.latency`)."""

    threads: int
    device: str
    # bn_folded, channels_last, flatten_memory_order, segment_slices (what cascade.inference.optimise_for_inference
    # did); absent from run files written before the timed copy was optimised
    layout: dict[str, Any] | None = field(default=None, metadata=OMIT)
    measured_energy_source: str | None = None
    measured_energy_reason: str | None = None
    exit_paths: list[PathTiming] = field(default_factory=list)
    cascade: list[CascadeTiming] = field(default_factory=list)
    seconds: float | None = field(default=None, metadata=OMIT)
    # the machine's load before and during timing (bench.measure.latency.LoadMonitor); absent from older files
    load: dict[str, Any] | None = field(default=None, metadata=OMIT)
    # the machine's roofline figures (bench.measure.roofline.Machine); absent from older files
    roofline: dict[str, Any] | None = field(default=None, metadata=OMIT)
    # what bench.measure.allocator.keep_freed_memory did to the allocator before timing; absent from older files
    allocator: dict[str, Any] | None = field(default=None, metadata=OMIT)
    # runtimes other than eager (bench.measure.runtimes): name -> settings and agreement with eager
    runtimes: dict[str, Any] | None = field(default=None, metadata=OMIT)
    # the timing budget (bench.measure.timing.TimingBudget): seconds, spent, stages stopped short (older files: none)
    budget: dict[str, Any] | None = field(default=None, metadata=OMIT)

    @property
    def busy(self) -> bool:
        """Whether other processes took a notable share of the CPU before or during timing."""
        return bool(self.load and self.load.get("busy"))

    def twin_gaps(self, tolerance: float = TWIN_TOLERANCE) -> list[dict[str, Any]]:
        """Where the full network and its last exit's path, the same computation timed in the same rounds,
        differ per sample by more than ``tolerance`` (relative to the path): the machine's speed changed within
        the rounds, so every ratio of that runtime and batch size is in doubt. One entry per runtime and batch
        size: runtime, batch_size, exit, full and path seconds per sample, ratio (full / path)."""
        gaps = []
        for runtime in self.runtime_names:
            for batch in sorted({c.batch_size for c in self.entries(runtime)}):
                paths = [p for p in self.path_entries(runtime) if p.batch_size == batch]
                cascade = next(c for c in self.entries(runtime) if c.batch_size == batch)
                if not paths or not cascade.samples or not paths[-1].per_sample_median or "median" not in cascade.full:
                    continue  # nothing to compare
                last, full = paths[-1], cascade.full["median"] / cascade.samples
                ratio = full / last.per_sample_median
                if abs(ratio - 1) > tolerance:
                    gaps.append(
                        {
                            "runtime": runtime,
                            "batch_size": batch,
                            "exit": last.exit,
                            "ratio": ratio,
                            "full_per_sample": full,
                            "path_per_sample": last.per_sample_median,
                        }
                    )
        return gaps

    def entries(self, runtime: str = "eager") -> list[CascadeTiming]:
        """The cascade timings of one runtime."""
        return [item for item in self.cascade if item.runtime == runtime]

    def path_entries(self, runtime: str = "eager") -> list[PathTiming]:
        """The exit-path timings of one runtime."""
        return [item for item in self.exit_paths if item.runtime == runtime]

    def at(self, threshold: float | None, batch: int, runtime: str = "eager") -> CascadeTiming | None:
        """The cascade timing at ``threshold`` and ``batch`` in ``runtime`` (None: not timed): the one lookup."""
        return next((item for item in self.entries(runtime) if item.matches(threshold, batch)), None)

    def path_at(self, exit_name: str, batch: int, runtime: str = "eager") -> PathTiming | None:
        """The timing of exit ``exit_name``'s path at ``batch`` in ``runtime`` (None: not timed)."""
        return next((p for p in self.path_entries(runtime) if p.exit == exit_name and p.batch_size == batch), None)

    def per_sample(self, threshold: float | None, batch: int, runtime: str = "eager") -> float:
        """Median seconds per sample of the dynamic forward at ``threshold`` and ``batch`` (NaN: not timed)."""
        item = self.at(threshold, batch, runtime)
        return float(item.per_sample_median) if item is not None else math.nan

    @property
    def batch_sizes(self) -> list[int]:
        """Batch sizes timed in eager."""
        return sorted({item.batch_size for item in self.entries()})

    @property
    def runtime_names(self) -> list[str]:
        """``eager`` and every other runtime timed."""
        return ["eager", *(self.runtimes or {})]


def twin_warning(variant: str, seed: int, gaps: list[dict[str, Any]]) -> str:
    """The warning for a run whose full network and last exit's path, one computation, timed apart
    (:meth:`LatencyRecord.twin_gaps`)."""
    return (
        f"{variant} seed {seed}: the full network and its last exit's path, the same computation, timed "
        f"more than {TWIN_TOLERANCE:.0%} apart ({twin_where(gaps)}): the machine's speed changed while it "
        "was timed, so those latencies and speedups are in doubt: rerun it alone"
    )


def twin_where(gaps: list[dict[str, Any]]) -> str:
    """Each gap as "runtime batch B: full against path µs per sample (+x.x %)"."""
    return "; ".join(
        f"{g['runtime']} batch {g['batch_size']}: {g['full_per_sample'] * 1e6:,.1f} against "
        f"{g['path_per_sample'] * 1e6:,.1f} µs per sample ({g['ratio'] - 1:+.1%})"
        for g in gaps
    )


@dataclass(frozen=True)
class BudgetPoint:
    budget: float
    budget_absolute: float
    feasible: bool
    thresholds: list[float]
    val_accuracy: float
    val_cost: float
    test_accuracy: float
    test_cost: float
    test_cost_fraction: float
    test_exit_share: list[float]


@dataclass(frozen=True)
class CalibrationRecord:
    """Each exit's expected calibration error (equal-width bins) on validation and test, and, for a policy with
    ``calibrate = "temperature"``, the temperatures fitted on validation and the ECE after scaling."""

    bins: int
    ece_val: list[float]  # per exit, softmax of the logits `logits` names
    ece_test: list[float]
    method: str = "none"  # the policy's calibrate option
    temperatures: list[float] | None = field(default=None, metadata=OMIT)  # T_l per exit (fitted on validation)
    ece_val_calibrated: list[float] | None = field(default=None, metadata=OMIT)  # softmax(z_l / T_l)
    ece_test_calibrated: list[float] | None = field(default=None, metadata=OMIT)
    # whose logits ece_val / ece_test are: "heads" (each exit head's own), "ensemble" (ZTW's ensembles, as its
    # policy sees them); absent from run files written before it was recorded, where they are the heads'
    logits: str | None = field(default=None, metadata=OMIT)


@dataclass(frozen=True)
class BudgetRecord:
    """Thresholds chosen on validation for compute budgets (see :mod:`bench.analyse.budget`)."""

    unit: str | None = field(default=None, metadata=OMIT)
    cost_unit: str | None = field(default=None, metadata=OMIT)
    base_cost: float | None = field(default=None, metadata=OMIT)
    exit_costs: list[float] | None = field(default=None, metadata=OMIT)
    search: str | None = field(default=None, metadata=OMIT)
    points: list[BudgetPoint] | None = field(default=None, metadata=OMIT)
    skipped: str | None = field(
        default=None, metadata=OMIT
    )  # why no budget was searched (e.g. a threshold-free policy)


@dataclass(frozen=True)
class TrainingRecord:
    """The training history of the run's checkpoint (pre-training included in the step counts)."""

    log_iterations: list[int]
    log_losses: list[float]
    epochs: list[dict[str, Any]]  # epoch, train_loss, val_accuracy, test_accuracy, seconds
    steps: int
    samples: int
    train_seconds: float
    pretrain_steps: int = 0
    total_steps: int = 0
    pretrain_history: dict[str, Any] | None = None
    loss_state: dict[str, Any] | None = field(default=None, metadata=OMIT)  # e.g. distill's final temperature
    reused_checkpoint: bool | None = field(default=None, metadata=OMIT)
    # where the checkpoint came from: "trained" (now), "folder" (this results folder) or "cache"
    # (the shared checkpoint cache, trained for another folder)
    checkpoint_source: str | None = field(default=None, metadata=OMIT)


#: A run key or train key: the first 16 hex digits of a SHA-256 (:func:`bench.results.store.config_hash`).
_KEY = re.compile(r"[0-9a-f]{16}")

#: A classifier below this many times chance accuracy (1 / classes) is "at chance" (the one rule).
CHANCE_FACTOR = 1.5


def at_chance(accuracy: float, classes: int) -> bool:
    """Whether ``accuracy`` (in [0, 1]) is at chance for ``classes`` classes (NaN: not measured, not at chance)."""
    return accuracy < CHANCE_FACTOR / classes


@dataclass(frozen=True)
class SanityRecord:
    """What bench.execute.sanity found after training (see there)."""

    train_mode_accuracy: float  # final exit, first 512 training samples, batch statistics, dropout off
    eval_mode_accuracy: float  # the same samples in eval mode (running statistics)
    bn_momentum: list[float]  # distinct momentum values of the batch norms (empty: none)
    bn_recomputed: bool  # evaluation.recompute_bn was applied before evaluating
    warnings: list[str]  # at-chance exits, batch-norm statistics that do not describe the data


@dataclass(frozen=True)
class ErrorInfo:
    type: str
    message: str
    traceback: str


@dataclass(frozen=True)
class RunRecord:
    """One run: identity, configuration, what it measured, provenance."""

    schema: int
    key: str
    train_key: str
    suite: str
    variant: str  # display name, with sweep values
    variant_base: str  # the [[variants]] name
    sweep: dict[str, Any]
    seed: int
    loss: str
    exits_at: list[str]
    dataset: str
    policy: str
    config: dict[str, Any]  # the resolved configuration (RunSpec.describe())
    started: str
    data_fingerprint: str | None = field(default=None, metadata=OMIT)
    data_sizes: dict[str, int] | None = field(default=None, metadata=OMIT)
    num_classes: int | None = field(default=None, metadata=OMIT)
    training: TrainingRecord | None = field(default=None, metadata=OMIT)
    phase_seconds: dict[str, float] | None = field(default=None, metadata=OMIT)
    exits: ExitInfo | None = field(default=None, metadata=OMIT)
    cost: CostRecord | None = field(default=None, metadata=OMIT)
    thresholds: list[OperatingPoint] | None = field(default=None, metadata=OMIT)
    latency: LatencyRecord | None = field(default=None, metadata=OMIT)
    budget: BudgetRecord | None = field(default=None, metadata=OMIT)
    calibration: CalibrationRecord | None = field(default=None, metadata=OMIT)
    policy_fit: dict[str, Any] | None = field(default=None, metadata=OMIT)  # what the policy fitted, on which split
    # exact accuracy vs expected MACs / base MACs over every threshold (bench.analyse.curves.exact_cost_curve)
    cost_curve: dict[str, Any] | None = field(default=None, metadata=OMIT)
    # exact accuracy against early share on the test split (bench.analyse.curves.summarise); max-prob only
    curve: dict[str, Any] | None = field(default=None, metadata=OMIT)
    # SHA-256 of the run's checkpoint and exit outputs, by path relative to the results folder
    # (bench.results.artefacts); absent from run files written before digests
    artefacts: dict[str, str] | None = field(default=None, metadata=OMIT)
    # sanity checks after training (bench.execute.sanity); absent from older run files
    sanity: SanityRecord | None = field(default=None, metadata=OMIT)
    status: str = "failed"  # "ok" or "failed"
    error: ErrorInfo | None = field(default=None, metadata=OMIT)
    finished: str = ""
    seconds: float = 0.0
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("key", "train_key"):
            if not _KEY.fullmatch(getattr(self, name)):
                raise ValueError(f"{name}: expected 16 hexadecimal digits, got {getattr(self, name)[:40]!r}")
        if self.status not in ("ok", "failed"):
            raise ValueError(f"status: expected 'ok' or 'failed', got {self.status[:40]!r}")

    # ------------------------------------------------------------------ (de)serialisation

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = to_json(self)
        return out

    @classmethod
    def from_json(cls, data: Any, where: str = "run record") -> RunRecord:
        """Parse a run file's JSON; raises :class:`StoreError` for another schema or a malformed file."""
        if not isinstance(data, dict):
            raise StoreError(f"{where}: expected a JSON object")
        data = upgrade(data, where)
        record = load_typed(cls, data, where)
        if record.ok and (record.exits is None or record.cost is None or not record.thresholds):
            raise StoreError(f"{where}: status 'ok' but exits, cost or thresholds are missing")
        return record

    # ------------------------------------------------------------------ reading

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def headline_threshold(self) -> float:
        return float(self.config["evaluation"]["headline_threshold"])

    @property
    def energy_table(self) -> str:
        return str(self.config["evaluation"]["energy_table"])

    @property
    def classes(self) -> int:
        """Classes of the run's dataset (run files before this field existed: the 10 of every shipped dataset)."""
        return int(self.num_classes or 10)

    @property
    def total_steps(self) -> int:
        return int(self.training.total_steps or 0) if self.training else 0

    @property
    def error_message(self) -> str:
        return self.error.message if self.error else ""

    def at(self, threshold: float | None) -> OperatingPoint:
        """The operating point at ``threshold`` (the only one for threshold-free policies)."""
        for t in self.thresholds or []:
            if t.threshold is None or threshold is None or math.isclose(t.threshold, threshold):
                return t
        raise KeyError(f"run {self.key} has no threshold {threshold}")


# --------------------------------------------------------------------------- the metrics
