"""Planning: a validated suite -> training jobs, runs, their keys, and waves of tasks.

Runs = variants x sweep points x seeds. Each run has two keys:

* ``train_key``: hash of what training depends on (dataset identity, model
  and exits, loss and options, training settings, seed, the pre-training job's
  key, and ``cascade.RESULTS_VERSION``). It names the checkpoint, so the same
  training is never done twice: a ``firm`` variant that pre-trains with
  ``base`` for as many epochs as the suite's ``base`` variant reuses that run's
  weights instead of training again.
* ``key``: hash of the train key plus everything evaluation depends on
  (policy, thresholds, latency and budget settings). It names the run file; a
  rerun skips runs whose file says ``"status": "ok"``.

The git commit is recorded in each run's provenance but is deliberately not
part of the keys: a commit that does not change results must not invalidate
finished runs. Changes that do change results bump ``RESULTS_VERSION``.

Nothing here trains or evaluates: execution is :mod:`bench.execute.runner`.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

import cascade
from bench.config.suite import BudgetSpec, DatasetSpec, EvaluationSpec, Suite, SuiteError, SuiteMeta
from bench.config.variants import expand_variant
from bench.results.store import ResultStore, config_hash
from cascade.data import DataSplits
from cascade.errors import UserError
from cascade.keys import added_later, key_fields
from cascade.models import build_model
from cascade.training import TrainConfig

#: TrainConfig fields that decide what is trained (loop-only settings stay out of the run keys).
TRAIN_FIELDS = TrainConfig.run_fields()
DEFAULT_THREADS = SuiteMeta.threads


@dataclass(frozen=True)
class TrainJob:
    """Everything a trained checkpoint depends on."""

    dataset: dict[str, Any]  # DatasetSpec.identity()
    model: str
    model_options: dict[str, Any]
    exits: tuple[str, ...]
    loss: str
    loss_options: dict[str, Any]
    train: dict[str, Any]  # TrainConfig fields
    seed: int
    pretrain: TrainJob | None = None
    threads: int = added_later(DEFAULT_THREADS)  # torch CPU threads (the suite's [suite] threads)

    @property
    def key(self) -> str:
        """Hash of what the trained weights depend on (logging and evaluation settings at their defaults)."""
        return self._key(legacy=False)

    @property
    def legacy_key(self) -> str:
        """The key before logging settings left it (equal to :attr:`key` at the default settings): run
        files made with other logging settings before that change are found under it."""
        return self._key(legacy=True)

    def _key(self, *, legacy: bool) -> str:
        return config_hash({**self._identity(legacy=legacy), "results_version": cascade.RESULTS_VERSION})

    def describe(self) -> dict[str, Any]:
        """The job as the run file and the checkpoint record it (actual settings)."""
        return self._identity(legacy=True, record=True)

    def _identity(self, *, legacy: bool, record: bool = False) -> dict[str, Any]:
        d = key_fields(self)
        if not legacy:
            d["train"] = TrainConfig.pin_untrained(self.train)
        if self.pretrain is not None:
            key = self.pretrain.key if record else self.pretrain._key(legacy=legacy)
            d["pretrain"] = {"key": key, **self.pretrain._identity(legacy=legacy, record=record)}
        return d

    @property
    def total_epochs(self) -> int:
        own = int(self.train["epochs"])
        return own + (self.pretrain.total_epochs if self.pretrain else 0)

    @property
    def config(self) -> TrainConfig:
        return TrainConfig(**self.train)


@dataclass(frozen=True)
class RunSpec:
    """One run: a training job on one seed plus how to evaluate it."""

    suite: str
    variant: str  # display name (with sweep values)
    variant_base: str  # the [[variants]] name
    sweep: dict[str, Any]
    seed: int
    job: TrainJob
    policy: str
    policy_options: dict[str, Any]
    evaluation: EvaluationSpec
    budget: BudgetSpec
    data: DatasetSpec
    device: str
    overrides: tuple[str, ...] = ()
    plugins: tuple[str, ...] = ()  # imported by every process that runs this (see bench.config.plugins)

    @property
    def key(self) -> str:
        return self._key(self.job.key)

    @property
    def legacy_key(self) -> str:
        """The run key before logging settings left the train key (see :attr:`TrainJob.legacy_key`)."""
        return self._key(self.job.legacy_key)

    def _key(self, train_key: str) -> str:
        return config_hash(
            {
                "train_key": train_key,
                "policy": self.policy,
                "policy_options": self.policy_options,
                "evaluation": key_fields(self.evaluation),
                "budget": dataclasses.asdict(self.budget),
            }
        )

    def describe(self) -> dict[str, Any]:
        """The run as its run file records it (``config``): the resolved settings, actual values."""
        return {
            "suite": self.suite,
            "variant": self.variant,
            "sweep": self.sweep,
            "seed": self.seed,
            "job": self.job.describe(),
            "policy": self.policy,
            "policy_options": self.policy_options,
            "evaluation": dataclasses.asdict(self.evaluation),
            "budget": dataclasses.asdict(self.budget),
            "dataset_root": self.data.root,
            "overrides": list(self.overrides),
            **({"plugins": list(self.plugins)} if self.plugins else {}),
        }


@dataclass(frozen=True)
class Task:
    """A unit of work for an executor: a run, or a pre-training checkpoint that later runs reuse."""

    run: RunSpec | None = None
    job: TrainJob | None = None  # pre-training only
    data: DatasetSpec | None = None
    device: str = "cpu"
    plugins: tuple[str, ...] = ()  # pre-training only (a run carries its own)
    checkpoint_cache: str | None = None  # the shared checkpoint cache folder (None: not used)
    never_train: bool = False  # --retime: a run whose checkpoint is missing or does not load fails, never trains

    @property
    def threads(self) -> int:
        """torch CPU threads the task runs with (the suite's setting)."""
        job = self.run.job if self.run is not None else self.job
        return job.threads if job is not None else DEFAULT_THREADS

    @property
    def label(self) -> str:
        if self.run is not None:
            return f"{self.run.variant} seed {self.run.seed}"
        assert self.job is not None
        return f"pretrain {self.job.loss} seed {self.job.seed}"


def sweep_label(name: str, point: dict[str, Any]) -> str:
    """``firm-p1`` + {loss_options.lambda: 0.2} -> ``firm-p1[lambda=0.2]``."""
    if not point:
        return name
    parts = [f"{k.split('.')[-1]}={v}" for k, v in point.items()]
    return f"{name}[{','.join(parts)}]"


def resolve_device(device: str, file: Any = None) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise SuiteError(file, "suite.device", "'cuda' requested but torch sees no CUDA device; use 'cpu' or 'auto'")
    return device


def _pretrain_model_options(options: dict[str, Any], mode: str) -> dict[str, Any]:
    """The pre-training's model options: a ``base`` pre-training has no exits, so no cascading heads either (and
    then it is the suite's own base run, reused)."""
    return {k: v for k, v in options.items() if not (mode == "base" and k == "cascading_heads")}


def expand_runs(suite: Suite, overrides: Sequence[str] = ()) -> list[RunSpec]:
    """variants x sweep points x seeds, in suite order."""
    device = resolve_device(suite.suite.device, suite.path)
    base_train = TrainConfig(**{k: getattr(suite.train, k) for k in TRAIN_FIELDS}).key_fields()
    data_id = suite.dataset.identity()
    runs = []
    for variant in suite.variants:
        for resolved, point in expand_variant(variant, suite.path):
            train_cfg = TrainConfig(
                **{**base_train, **{k: v for k, v in resolved.train.items() if k in TRAIN_FIELDS}}
            ).key_fields()
            equal_budget = resolved.train.get("equal_budget", suite.train.equal_budget)
            epochs = resolved.epochs if resolved.epochs is not None else train_cfg["epochs"] * resolved.epochs_factor
            mode = resolved.resolved_pretrain
            pretrain = None
            if mode in ("base", "sum") and resolved.exits:
                pre_epochs = resolved.pretrain_epochs if resolved.pretrain_epochs is not None else base_train["epochs"]
                pretrain = TrainJob(
                    dataset=data_id,
                    model=suite.model.name,
                    model_options=_pretrain_model_options({**suite.model.options, **resolved.model_options}, mode),
                    exits=() if mode == "base" else tuple(resolved.exits),
                    loss=mode,
                    loss_options={},
                    # the pre-training trains the whole network, whatever freeze_backbone says for the variant
                    train={**{k: v for k, v in base_train.items() if k != "freeze_backbone"}, "epochs": pre_epochs},
                    seed=0,  # replaced per seed below
                    threads=suite.suite.threads,
                )
                if equal_budget:
                    epochs -= pre_epochs
                    if epochs < 0:
                        raise SuiteError(
                            suite.path,
                            f"variants ({variant.name}).pretrain_epochs",
                            f"equal_budget leaves {epochs} epochs after {pre_epochs} pre-training epochs; "
                            f"use pretrain_epochs <= {epochs + pre_epochs}",
                        )
            train_cfg["epochs"] = epochs
            for seed in suite.suite.seeds:
                job = TrainJob(
                    dataset=data_id,
                    model=suite.model.name,
                    model_options={**suite.model.options, **resolved.model_options},
                    exits=tuple(resolved.exits),
                    loss=resolved.loss,
                    loss_options=dict(resolved.loss_options),
                    train=dict(train_cfg),
                    seed=seed,
                    pretrain=None if pretrain is None else dataclasses.replace(pretrain, seed=seed),
                    threads=suite.suite.threads,
                )
                runs.append(
                    RunSpec(
                        suite=suite.name,
                        variant=sweep_label(variant.name, point),
                        variant_base=variant.name,
                        sweep=point,
                        seed=seed,
                        job=job,
                        policy=resolved.policy,
                        policy_options=dict(resolved.policy_options),
                        evaluation=suite.evaluation,
                        budget=suite.budget,
                        data=suite.dataset,
                        device=device,
                        overrides=tuple(overrides),
                        plugins=suite.suite.plugins,
                    )
                )
    return runs


def pending(store: ResultStore, runs: Sequence[RunSpec], force: bool) -> tuple[list[RunSpec], list[RunSpec]]:
    """(runs to do, runs already complete)."""
    todo: list[RunSpec] = []
    done: list[RunSpec] = []
    for r in runs:
        found = not force and (
            store.completed(r.variant, r.key) or (r.legacy_key != r.key and store.completed(r.variant, r.legacy_key))
        )
        (done if found else todo).append(r)
    return todo, done


def _flat(obj: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: obj}


#: Config entries that are consequences or records, not settings (left out of "what differs").
_NOT_SETTINGS = ("overrides", "job.pretrain.key", "variant", "suite")


def _defaults() -> dict[str, Any]:
    """Dotted config keys -> default values (a field absent from an older run file had its default)."""
    as_json = json.loads(
        json.dumps(
            {"evaluation": dataclasses.asdict(EvaluationSpec()), "budget": dataclasses.asdict(BudgetSpec())},
            default=str,
        )
    )
    return _flat(as_json)


def config_diff(old: dict[str, Any], new: dict[str, Any], limit: int = 6) -> list[str]:
    """``key: old -> new`` for each setting that differs between two run configs (dotted keys); a setting
    absent from the older file that has its default in the newer is not a difference."""
    a, b, defaults = _flat(old), _flat(new), _defaults()
    keys = [
        k
        for k in dict.fromkeys([*b, *a])
        if not k.startswith(_NOT_SETTINGS)
        and a.get(k) != b.get(k)
        and not (k not in a and k in defaults and defaults[k] == b.get(k))
    ]
    lines = [f"{k}: {a.get(k, '(absent)')} -> {b.get(k, '(absent)')}" for k in keys[:limit]]
    return lines + ([f"... {len(keys) - limit} more"] if len(keys) > limit else [])


def why_not_reused(store: ResultStore, todo: Sequence[RunSpec]) -> list[str]:
    """One line per run to do whose variant and seed already have a finished run in the folder: which
    settings differ (the reason it runs again rather than being reused)."""
    latest = {(r.variant, r.seed): r for r in store.latest_runs() if r.ok}
    out = []
    for spec in todo:
        old = latest.get((spec.variant, spec.seed))
        if old is None:
            continue
        diff = config_diff(old.config, json.loads(json.dumps(spec.describe(), default=str)))  # as a run file has it
        what = "; ".join(diff) if diff else "no setting differs (a new code version, RESULTS_VERSION)"
        out.append(
            f"{spec.variant} seed {spec.seed}: runs again; settings differ from "
            f"{store.run_path(old.variant, old.key).relative_to(store.root)}: {what}"
        )
    return out


def make_waves(todo: Sequence[RunSpec], store: ResultStore) -> list[list[Task]]:
    """[pre-training-only tasks, runs without pre-training, runs that reuse a pre-training checkpoint].

    A pre-training job that a first-wave run produces anyway (the suite's own
    ``base`` variant, same seed and epochs) is not trained separately, nor one that the folder or the
    shared checkpoint cache already holds.
    """
    cache = str(store.cache.root) if store.cache is not None else None
    first = [r for r in todo if r.job.pretrain is None]
    second = [r for r in todo if r.job.pretrain is not None]
    produced = {r.job.key for r in first}
    pre: dict[str, Task] = {}
    for r in second:
        job = r.job.pretrain
        assert job is not None
        if job.key not in produced and not store.has_checkpoint(job.key):
            pre[job.key] = Task(job=job, data=r.data, device=r.device, plugins=r.plugins, checkpoint_cache=cache)
    return [
        list(pre.values()),
        [Task(run=r, checkpoint_cache=cache) for r in first],
        [Task(run=r, checkpoint_cache=cache) for r in second],
    ]


def build_for(job: TrainJob, data: DataSplits | tuple[tuple[int, ...], int]) -> cascade.MultiExitModel:
    """The job's model for ``data`` (loaded splits, or (input shape, number of classes))."""
    shape, classes = (data.input_shape, data.num_classes) if isinstance(data, DataSplits) else data
    return build_model(
        job.model,
        **job.model_options,
        exits=list(job.exits),
        num_classes=classes,
        in_channels=shape[0],
        input_size=shape[-1],
    )


# --------------------------------------------------------------------------- --only


class SelectionError(ValueError, UserError):
    """An ``--only`` pattern that matches no variant."""


def select_variants(names: Sequence[tuple[str, str]], patterns: Sequence[str]) -> set[str]:
    """The variant labels that ``--only`` patterns select, from ``(label, base name)`` pairs.

    A pattern selects a label when it equals the label (a sweep point, ``firm-p1[lambda=0.2]``), equals
    its base name (every sweep point of ``firm-p1``), or matches the label or the base name as a
    shell glob (``firm-*``; ``fnmatch`` rules, so ``[`` starts a character class there: name a sweep
    point exactly).
    No patterns select everything. A pattern that selects nothing raises :class:`SelectionError`
    listing the variants (and the closest one).
    """
    if not patterns:
        return {label for label, _ in names}
    chosen: set[str] = set()
    for pattern in patterns:
        hits = {
            label
            for label, base in names
            if pattern in (label, base) or fnmatch.fnmatchcase(label, pattern) or fnmatch.fnmatchcase(base, pattern)
        }
        if not hits:
            labels = list(dict.fromkeys(label for label, _ in names))
            close = difflib.get_close_matches(pattern, list(dict.fromkeys([*labels, *(b for _, b in names)])), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise SelectionError(f"--only {pattern!r} matches no variant{hint}; variants: {', '.join(labels)}")
        chosen |= hits
    return chosen


def select_runs(runs: Sequence[RunSpec], patterns: Sequence[str]) -> list[RunSpec]:
    """The runs of the variants ``patterns`` select (see :func:`select_variants`), in suite order."""
    chosen = select_variants([(r.variant, r.variant_base) for r in runs], patterns)
    return [r for r in runs if r.variant in chosen]
