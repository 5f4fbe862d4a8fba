"""Expand a suite into runs, train and evaluate each, and store one JSON per run.

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
"""

from __future__ import annotations

import dataclasses
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

import cascade
from bench.cost import counting, exit_costs, expected_cost, load_energy_table
from bench.latency import latency_report
from bench.store import SCHEMA_VERSION, ResultStore, atomic_torch_save, config_hash, now, provenance
from bench.suite import (
    BudgetSpec,
    DatasetSpec,
    EvaluationSpec,
    Suite,
    SuiteError,
    expand_variant,
    load_suite,
)
from cascade.data import DataSplits, load_dataset
from cascade.exits import ExitPolicy, build_policy, dynamic_forward, masked_decisions
from cascade.losses import build_loss
from cascade.models import build_model
from cascade.train import TrainCallback, TrainConfig, TrainHistory, exit_logits, train

# TrainConfig fields a suite sets; finite_check_every only decides when a NaN is noticed (not
# what is trained), so it stays out of the suite format and of the run keys.
TRAIN_FIELDS = [f.name for f in dataclasses.fields(TrainConfig) if f.name != "finite_check_every"]


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

    @property
    def key(self) -> str:
        return config_hash({**self.describe(), "results_version": cascade.RESULTS_VERSION})

    def describe(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["pretrain"] = None if self.pretrain is None else {"key": self.pretrain.key, **self.pretrain.describe()}
        return d

    @property
    def total_epochs(self) -> int:
        own = int(self.train["epochs"])
        return own + (self.pretrain.total_epochs if self.pretrain else 0)


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

    @property
    def key(self) -> str:
        return config_hash(
            {
                "train_key": self.job.key,
                "policy": self.policy,
                "policy_options": self.policy_options,
                "evaluation": dataclasses.asdict(self.evaluation),
                "budget": dataclasses.asdict(self.budget),
            }
        )

    def config(self) -> dict[str, Any]:
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
        }


def _sweep_label(name: str, point: dict[str, Any]) -> str:
    if not point:
        return name
    parts = [f"{k.split('.')[-1]}={v}" for k, v in point.items()]
    return f"{name}[{','.join(parts)}]"


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise SuiteError(None, "suite.device", "'cuda' requested but torch sees no CUDA device; use 'cpu' or 'auto'")
    return device


def expand_runs(suite: Suite, overrides: Sequence[str] = ()) -> list[RunSpec]:
    """variants x sweep points x seeds, in suite order."""
    device = resolve_device(suite.suite.device)
    base_train = {k: getattr(suite.train, k) for k in TRAIN_FIELDS}
    data_id = suite.dataset.identity()
    runs = []
    for variant in suite.variants:
        for resolved, point in expand_variant(variant, suite.path):
            train_cfg = {**base_train, **{k: v for k, v in resolved.train.items() if k in TRAIN_FIELDS}}
            equal_budget = resolved.train.get("equal_budget", suite.train.equal_budget)
            epochs = resolved.epochs if resolved.epochs is not None else train_cfg["epochs"]
            mode = resolved.resolved_pretrain
            pretrain = None
            if mode in ("base", "sum") and resolved.exits:
                pre_epochs = resolved.pretrain_epochs if resolved.pretrain_epochs is not None else base_train["epochs"]
                pretrain = TrainJob(
                    dataset=data_id,
                    model=suite.model.name,
                    model_options=dict(suite.model.options),
                    exits=() if mode == "base" else tuple(resolved.exits),
                    loss=mode,
                    loss_options={},
                    train={**base_train, "epochs": pre_epochs},
                    seed=0,  # replaced per seed below
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
                    model_options=dict(suite.model.options),
                    exits=tuple(resolved.exits),
                    loss=resolved.loss,
                    loss_options=dict(resolved.loss_options),
                    train=dict(train_cfg),
                    seed=seed,
                    pretrain=None if pretrain is None else dataclasses.replace(pretrain, seed=seed),
                )
                runs.append(
                    RunSpec(
                        suite=suite.name,
                        variant=_sweep_label(variant.name, point),
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
                    )
                )
    return runs


# --------------------------------------------------------------------------- execution of one run

_DATA_CACHE: dict[str, DataSplits] = {}


def get_data(spec: DatasetSpec, device: str) -> DataSplits:
    """Load (once per process) the suite's dataset onto ``device``."""
    key = config_hash([spec.identity(), spec.root, device])
    if key not in _DATA_CACHE:
        data = load_dataset(
            spec.name,
            root=spec.root,
            val_fraction=spec.val_fraction,
            split_seed=spec.split_seed,
            download=spec.download,
            train_size=spec.train_size,
            **spec.options,
        )
        _DATA_CACHE[key] = data.to(device)
    return _DATA_CACHE[key]


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


def relative_exit_costs(job: TrainJob, data: DataSplits) -> list[float]:
    """C_l / C_L (MACs) of the job's architecture, for the ``firm-gated`` penalty."""
    model = build_for(job, data)
    macs = [c.macs for c in exit_costs(model, data.input_shape, [])]
    return [m / macs[-1] for m in macs]


def _history_dict(h: TrainHistory) -> dict[str, Any]:
    return dataclasses.asdict(h)


def ensure_trained(
    job: TrainJob,
    data: DataSplits,
    store: ResultStore,
    device: str,
    callback: TrainCallback | None = None,
    *,
    force: bool = False,
) -> tuple[cascade.MultiExitModel, dict[str, Any], bool]:
    """Return (model, history dict, trained_now) for ``job``, loading its checkpoint when present."""
    path = store.checkpoint_path(job.key)
    torch.manual_seed(job.seed)
    model = build_for(job, data).to(device)
    if path.is_file() and not force:
        ckpt = torch.load(path, map_location=device, weights_only=True)
        model.load_state_dict(ckpt["state_dict"])
        model.eval()
        return model, ckpt["history"], False
    pre_history = None
    if job.pretrain is not None:
        pre_model, pre_history, _ = ensure_trained(job.pretrain, data, store, device, callback)
        result = model.load_state_dict(pre_model.state_dict(), strict=False)
        stray = [k for k in result.missing_keys if not k.startswith(model.exit_parameter_prefixes())]
        if stray or result.unexpected_keys:
            raise RuntimeError(f"pre-trained weights do not fit: missing {stray}, unexpected {result.unexpected_keys}")
        torch.manual_seed(job.seed)
    options = dict(job.loss_options)
    if job.loss == "firm-gated":
        options["exit_costs"] = relative_exit_costs(job, data)
    loss = build_loss(job.loss, options, num_exits=model.num_exits)
    history = train(model, loss, data, TrainConfig(**job.train), seed=job.seed, callback=callback)
    hist = _history_dict(history)
    hist["pretrain_steps"] = (pre_history or {}).get("total_steps", 0)
    hist["total_steps"] = history.steps + hist["pretrain_steps"]
    hist["pretrain_history"] = pre_history
    atomic_torch_save(path, {"state_dict": model.state_dict(), "history": hist, "job": job.describe()})
    return model, hist, True


def _policies(spec: RunSpec) -> list[tuple[float | None, ExitPolicy]]:
    from cascade.exits import POLICIES

    if not POLICIES.get(spec.policy).has_threshold:
        return [(None, build_policy(spec.policy, **spec.policy_options))]
    return [(t, build_policy(spec.policy, threshold=t, **spec.policy_options)) for t in spec.evaluation.thresholds]


def _accuracy(pred: torch.Tensor, y: torch.Tensor) -> float:
    return float((pred == y).float().mean()) if len(y) else float("nan")


def _shares(counts: torch.Tensor) -> list[float]:
    total = float(counts.sum())
    return [float(c) / total if total else float("nan") for c in counts]


def base_cost(job: TrainJob, data: DataSplits, tables: Sequence[Any]) -> dict[str, Any]:
    """Cost of the same backbone without intermediate exits (the ``base`` network)."""
    model = build_for(dataclasses.replace(job, exits=()), data)
    (c,) = exit_costs(model, data.input_shape, tables)
    return {"macs": c.macs, "flops": c.flops, "params": c.params, "bytes": c.bytes, "energy": c.energy}


@torch.no_grad()
def evaluate(spec: RunSpec, model: cascade.MultiExitModel, data: DataSplits) -> dict[str, Any]:
    """Per-exit accuracy, every threshold's operating point, costs, latency, budget."""
    ev = spec.evaluation
    model.eval()
    tables = [load_energy_table(ev.energy_table)]
    if tables[0].name != "horowitz45":
        tables.append(load_energy_table("horowitz45"))
    costs = exit_costs(model, data.input_shape, tables)
    base = base_cost(spec.job, data, tables)
    macs = [c.macs for c in costs]
    val_logits = exit_logits(model, data.val.x, 1000)
    test_logits = exit_logits(model, data.test.x, 1000)
    out: dict[str, Any] = {
        "exits": {
            "names": list(model.exit_names),
            "val_accuracy": [_accuracy(z.argmax(1), data.val.y) for z in val_logits],
            "test_accuracy": [_accuracy(z.argmax(1), data.test.y) for z in test_logits],
        },
        "cost": {
            "convention": "1 MAC = 1 multiply-add = 2 FLOPs; per sample",
            "energy_tables": {t.name: {"unit": t.unit, "description": t.description} for t in tables},
            "per_exit": [dataclasses.asdict(c) | {"flops": c.flops} for c in costs],
            "base": base,
            "full": {"macs": macs[-1], "energy": {t: costs[-1].energy[t]["total"] for t in costs[-1].energy}},
        },
        "thresholds": [],
    }
    for threshold, policy in _policies(spec):
        test = masked_decisions(test_logits, policy)
        val = masked_decisions(val_logits, policy)
        shares = _shares(test.counts)
        exp_macs = expected_cost(shares, macs)
        row: dict[str, Any] = {
            "threshold": threshold,
            "accuracy": _accuracy(test.predictions, data.test.y),
            "val_accuracy": _accuracy(val.predictions, data.val.y),
            "early_share": test.early_share,
            "exit_share": shares,
            "val_exit_share": _shares(val.counts),
            "exit_accuracy": [
                _accuracy(test.predictions[test.exit_index == i], data.test.y[test.exit_index == i])
                if int(test.counts[i])
                else None
                for i in range(model.num_exits)
            ],
            "macs_expected": exp_macs,
            "flops_expected": 2 * exp_macs,
            "energy_expected": {
                t.name: expected_cost(shares, [c.energy[t.name]["total"] for c in costs]) for t in tables
            },
            "saved_vs_base": 1 - exp_macs / base["macs"],
            "saved_vs_full": 1 - exp_macs / macs[-1],
            "energy_saved_vs_base": {
                t.name: 1
                - expected_cost(shares, [c.energy[t.name]["total"] for c in costs]) / base["energy"][t.name]["total"]
                for t in tables
            },
        }
        if ev.count_macs == "all" or (ev.count_macs == "headline" and threshold in (None, ev.headline_threshold)):
            counted = 0
            match = True
            for i in range(0, len(data.test), 1000):
                xb = data.test.x[i : i + 1000]
                with counting(model) as prof:
                    dyn = dynamic_forward(model, xb, policy)
                counted += prof.macs
                ref = masked_decisions(tuple(z[i : i + 1000] for z in test_logits), policy)
                match &= bool(
                    torch.equal(dyn.exit_index, ref.exit_index) and torch.equal(dyn.predictions, ref.predictions)
                )
            row["macs_counted"] = counted / len(data.test)
            row["dynamic_matches_masked"] = match
        out["thresholds"].append(row)
    if ev.latency:
        t_lat = time.perf_counter()
        chosen = ev.latency_thresholds or (ev.headline_threshold,)
        pols = [(t, p) for t, p in _policies(spec) if t is None or t in chosen]
        out["latency"] = latency_report(
            model,
            data.test.x,
            pols,
            batch_sizes=ev.latency_batch_sizes,
            samples_batch1=ev.latency_samples,
            repeats=ev.latency_repeats,
            warmup=ev.latency_warmup,
            optimised=ev.latency_optimised,
        )
        out["latency"]["seconds"] = time.perf_counter() - t_lat
    if spec.budget.values and model.num_exits > 1:
        from bench.budget import budget_evaluation

        out["budget"] = budget_evaluation(
            spec, val_logits, data.val.y, test_logits, data.test.y, costs, base, tables[0].name
        )
    out["_logits"] = (val_logits, test_logits)
    return out


def save_exit_outputs(path: Path, val_logits: Sequence[torch.Tensor], val_y: torch.Tensor,
                      test_logits: Sequence[torch.Tensor], test_y: torch.Tensor) -> None:  # fmt: skip
    """Per-sample, per-exit predictions and confidences for re-analysis (not committed)."""
    import io

    from bench.store import atomic_write_bytes

    arrays: dict[str, np.ndarray] = {}
    for split, logits, y in (("val", val_logits, val_y), ("test", test_logits, test_y)):
        probs = [torch.softmax(z.float(), 1) for z in logits]
        arrays[f"{split}_y"] = y.cpu().numpy().astype(np.int16)
        arrays[f"{split}_pred"] = torch.stack([p.argmax(1) for p in probs], 1).cpu().numpy().astype(np.int16)
        arrays[f"{split}_maxprob"] = torch.stack([p.amax(1) for p in probs], 1).cpu().numpy().astype(np.float32)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds like allow_pickle
    atomic_write_bytes(path, buf.getvalue())


def execute_run(
    spec: RunSpec, out_dir: str | Path, *, callback: TrainCallback | None = None, force: bool = False
) -> dict[str, Any]:
    """Train (or reuse) and evaluate one run; write its JSON; never raise for a failing run."""
    store = ResultStore(out_dir)
    record: dict[str, Any] = {
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
        "config": spec.config(),
        "started": now(),
    }
    t0 = time.perf_counter()
    try:
        torch.manual_seed(spec.seed)
        data = get_data(spec.data, spec.device)
        record["data_fingerprint"] = data.identity.get("fingerprint")
        record["data_sizes"] = data.identity.get("sizes")
        record["num_classes"] = data.num_classes
        t_train = time.perf_counter()
        model, history, trained_now = ensure_trained(spec.job, data, store, spec.device, callback, force=force)
        record["training"] = {**history, "reused_checkpoint": not trained_now}
        t_eval = time.perf_counter()
        result = evaluate(spec, model, data)
        record["phase_seconds"] = {
            "data": t_train - t0,
            "training": t_eval - t_train,
            "evaluation": time.perf_counter() - t_eval,
            "latency": result.get("latency", {}).get("seconds", 0.0),
        }
        val_logits, test_logits = result.pop("_logits")
        save_exit_outputs(store.exits_path(spec.key), val_logits, data.val.y, test_logits, data.test.y)
        record.update(result)
        record["status"] = "ok"
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:
        record["status"] = "failed"
        record["error"] = {"type": type(exc).__name__, "message": str(exc), "traceback": traceback.format_exc()}
    record["finished"] = now()
    record["seconds"] = time.perf_counter() - t0
    record["provenance"] = provenance(spec.device)
    store.write_run(record)
    return {k: record.get(k) for k in ("key", "variant", "seed", "status", "seconds")} | {
        "error": (record.get("error") or {}).get("message")
    }


# --------------------------------------------------------------------------- the whole suite


@dataclass
class RunSummary:
    out_dir: Path
    total: int
    skipped: int = 0
    done: int = 0
    failed: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


def plan(suite: Suite, store: ResultStore, runs: Sequence[RunSpec], force: bool) -> tuple[list[RunSpec], list[RunSpec]]:
    """(runs to do, runs already complete)."""
    todo: list[RunSpec] = []
    done: list[RunSpec] = []
    for r in runs:
        (done if (not force and store.completed(r.variant, r.key)) else todo).append(r)
    return todo, done


def run_suite(
    path: str | Path,
    *,
    out_dir: str | Path | None = None,
    overrides: Sequence[str] = (),
    jobs: int | None = None,
    force: bool = False,
    executor: str | None = None,
    executor_options: dict[str, Any] | None = None,
    progress: bool = True,
    report: bool = True,
    log: Callable[[str], None] = print,
) -> RunSummary:
    """Validate the suite, run what is not done yet, write ``summary.csv`` (and the report).

    Args:
        path: the suite TOML file.
        out_dir: output folder; default ``results/<suite name>``.
        overrides: ``key=value`` strings applied to the suite before validation.
        jobs: parallel processes of the local executor (1 = in this process); default the suite's.
        force: rerun runs that are already complete (and retrain their checkpoints).
        executor: ``local``, ``slurm`` or ``dask``; default the suite's ``[executor] name``.
        executor_options: executor flags (``partition``, ``time``, ``gpus_per_job``, ``cpus_per_job``,
            ``cluster``, ``workers``), mapped to the engine by :func:`bench.executors.engine_options`;
            they override the suite's ``[executor]`` table.
        progress: show rich progress bars.
        report: write the report when done.
    """
    from bench.executors import make_executor

    suite = load_suite(path, overrides)
    out = Path(out_dir) if out_dir is not None else Path("results") / suite.name
    store = ResultStore(out)
    runs = expand_runs(suite, overrides)
    todo, done = plan(suite, store, runs, force)
    summary = RunSummary(out, total=len(runs), skipped=len(done))
    out.mkdir(parents=True, exist_ok=True)
    _write_suite_copy(suite, path, overrides, out)
    t0 = time.perf_counter()
    log(f"suite {suite.name}: {len(runs)} runs ({len(done)} already complete, {len(todo)} to do) -> {out}")
    if todo:
        from bench.executors import engine_options

        name = executor or suite.executor.name
        options = suite.executor.options() if name == suite.executor.name else {}
        options.update(engine_options(name, executor_options or {}))
        ex = make_executor(name, jobs=jobs if jobs is not None else suite.executor.jobs, **options)
        waves = make_waves(todo, store)
        for results in ex.run_waves(waves, out, force=force, progress=progress):
            for res in results:
                if res.get("status") == "ok":
                    summary.done += 1
                elif res.get("status") == "failed":
                    summary.failed.append(res)
    from bench.store import write_summary

    write_summary(store)
    summary.seconds = time.perf_counter() - t0
    if summary.failed:
        for f in summary.failed:
            log(f"FAILED {f['variant']} seed {f['seed']}: {f['error']}")
    if report:
        from bench.report import write_report

        try:
            write_report(out, log=log)
        except Exception as e:  # a report problem must not lose the runs
            log(f"report not written: {type(e).__name__}: {e}")
    return summary


def make_waves(todo: Sequence[RunSpec], store: ResultStore) -> list[list[Any]]:
    """[pre-training-only tasks, runs without pre-training, runs that reuse a pre-training checkpoint].

    A pre-training job that a first-wave run produces anyway (the suite's own
    ``base`` variant, same seed and epochs) is not trained separately.
    """
    from bench.executors import Task

    first = [r for r in todo if r.job.pretrain is None]
    second = [r for r in todo if r.job.pretrain is not None]
    produced = {r.job.key for r in first}
    pre: dict[str, Task] = {}
    for r in second:
        job = r.job.pretrain
        assert job is not None
        if job.key not in produced and not store.checkpoint_path(job.key).is_file():
            pre[job.key] = Task(job=job, data=r.data, device=r.device)
    return [list(pre.values()), [Task(run=r) for r in first], [Task(run=r) for r in second]]


def pretrain_job(job: TrainJob, data_spec: DatasetSpec, device: str, out_dir: str | Path) -> dict[str, Any]:
    """Train one pre-training checkpoint (no run file)."""
    data = get_data(data_spec, device)
    ensure_trained(job, data, ResultStore(out_dir), device)
    return {"status": "pretrain", "key": job.key}


def _write_suite_copy(suite: Suite, path: str | Path, overrides: Sequence[str], out: Path) -> None:
    from bench.store import atomic_write_bytes

    text = Path(path).read_text()
    if overrides:
        text += "\n# --set overrides applied to this run:\n" + "".join(f"#   {o}\n" for o in overrides)
    atomic_write_bytes(out / "suite.toml", text.encode())
