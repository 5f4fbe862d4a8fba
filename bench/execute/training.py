"""Training one checkpoint: the suite's data loaded once per process, a verified checkpoint reused (the folder's
or the shared cache's), or the job trained, its pre-training first; failed pre-trainings leave their reason for
the runs that start from them."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

import cascade
from bench.config.plan import TrainJob, build_for
from bench.config.suite import DatasetSpec
from bench.execute.evaluate import relative_exit_costs
from bench.results.files import WriteError, atomic_write_bytes
from bench.results.store import ResultStore, config_hash
from bench.results.tensors import torch_bytes
from cascade.data import DataSplits, load_dataset
from cascade.losses import LOSSES, build_loss
from cascade.training import TrainCallback, train

_DATA_CACHE: dict[str, DataSplits] = {}


def get_data(spec: DatasetSpec, device: str) -> DataSplits:
    """Load (once per process) the suite's dataset onto ``device``."""
    key = config_hash([spec.identity(), spec.root, device])
    if key not in _DATA_CACHE:
        data = load_dataset(spec.name, **spec.load_options())
        _DATA_CACHE[key] = data.to(device)
    return _DATA_CACHE[key]


def ensure_trained(
    job: TrainJob,
    data: DataSplits,
    store: ResultStore,
    device: str,
    callback: TrainCallback | None = None,
    *,
    force: bool = False,
    is_pretrain: bool = False,
    never_train: bool = False,
    val_note: str = "",
) -> tuple[cascade.MultiExitModel, dict[str, Any], bool]:
    """Return (model, history dict, trained_now) for ``job``, loading its checkpoint when present.

    ``never_train`` (``--retime``): a checkpoint that is missing or does not load is a :class:`NeverTrainError`
    naming it; nothing is moved aside or trained. ``val_note``: what the per-epoch validation accuracies are, when it
    differs from the final evaluation (said in the progress phase).
    """
    path = store.checkpoint_path(job.key)
    torch.manual_seed(job.seed)
    model = build_for(job, data).to(device)
    source = None if force else store.find_checkpoint(job.key)
    if source is None and never_train:
        raise NeverTrainError(
            f"no sound checkpoint {path} (nor in the shared cache); --retime never trains: run "
            "without --retime to train it"
        )
    if source is not None:
        try:
            ckpt = torch.load(path, map_location=device, weights_only=True)
        except Exception as e:  # digest-verified but unloadable (written before digests): moved aside, retrained
            if never_train:
                where = "from the shared cache" if source == "cache" else "in this folder"
                raise NeverTrainError(
                    f"checkpoint {path} ({where}) does not load ({type(e).__name__}); --retime "
                    "never trains: run without --retime to train it again"
                ) from None
            store.discard_checkpoint(job.key, f"does not load: {type(e).__name__}", source=source)
        else:
            if callback is not None:
                callback.on_phase(f"reused checkpoint ({'shared cache' if source == 'cache' else 'this folder'})")
            model.load_state_dict(ckpt["state_dict"])
            model.eval()
            return model, {**ckpt["history"], "checkpoint_source": source}, False
    pre_history = None
    if job.pretrain is not None:
        marker = failed_marker(store, job.pretrain.key)
        if marker.is_file():
            raise PretrainingFailedError(
                f"its pre-training ({job.pretrain.loss}, seed {job.seed}) failed: {marker.read_text().strip()}"
            )
        pre_model, pre_history, _ = ensure_trained(job.pretrain, data, store, device, callback, is_pretrain=True)
        pre_history = {k: v for k, v in pre_history.items() if k != "checkpoint_source"}
        result = model.load_state_dict(pre_model.state_dict(), strict=False)
        stray = [k for k in result.missing_keys if not k.startswith(model.exit_parameter_prefixes())]
        if stray or result.unexpected_keys:
            raise RuntimeError(f"pre-trained weights do not fit: missing {stray}, unexpected {result.unexpected_keys}")
        torch.manual_seed(job.seed)
    options = dict(job.loss_options)
    loss_cls = LOSSES.get(job.loss)
    if loss_cls.needs_harness_values(options):
        options.update(loss_cls.harness_values(relative_exit_costs=relative_exit_costs(job, data)))
    loss = build_loss(job.loss, options, num_exits=model.num_exits)
    if callback is not None:
        what = f" (pre-training for seed {job.seed})" if is_pretrain else ""
        callback.on_phase(f"training {job.loss}{what}" + (f"; {val_note}" if val_note else ""))
    history = train(model, loss, data, job.config, seed=job.seed, callback=callback)
    hist = dataclasses.asdict(history)
    hist["pretrain_steps"] = (pre_history or {}).get("total_steps", 0)
    hist["total_steps"] = history.steps + hist["pretrain_steps"]
    hist["pretrain_history"] = pre_history
    store.save_checkpoint(
        job.key, torch_bytes({"state_dict": model.state_dict(), "history": hist, "job": job.describe()})
    )
    return model, {**hist, "checkpoint_source": "trained"}, True


class NeverTrainError(RuntimeError):
    """``--retime`` met a run whose checkpoint is missing or does not load: it fails, and nothing trains."""


class PretrainingFailedError(RuntimeError):
    """The pre-training a run starts from failed earlier in this suite run."""


def failed_marker(store: ResultStore, train_key: str) -> Path:
    """Where a failed pre-training leaves its reason, so that the runs that need it fail with it."""
    return store.checkpoint_path(train_key).with_suffix(".failed")


def write_failed_marker(store: ResultStore, train_key: str, exc: BaseException) -> None:
    """Leave the reason a training failed for the runs that start from it (a marker that cannot be
    written is a write error of its own; the training's failure stands)."""
    try:
        atomic_write_bytes(failed_marker(store, train_key), f"{type(exc).__name__}: {exc}\n".encode())
    except WriteError as e:
        store.write_errors.append(str(e))


def clear_failed_pretraining_markers(store: ResultStore) -> None:
    """A new suite run retries failed pre-trainings: forget the reasons the last one left."""
    folder = store.checkpoint_path("x").parent
    for marker in folder.glob("*.failed") if folder.is_dir() else []:
        marker.unlink(missing_ok=True)


def pretrain_job(
    job: TrainJob, data_spec: DatasetSpec, device: str, out_dir: str | Path, checkpoint_cache: str | None = None
) -> dict[str, Any]:
    """Train one pre-training checkpoint (no run file); a failure is recorded for the runs that need it."""
    store = ResultStore(out_dir, checkpoint_cache)
    out: dict[str, Any] = {"status": "pretrain", "key": job.key, "label": f"{job.loss} seed {job.seed}"}
    try:
        ensure_trained(job, get_data(data_spec, device), store, device)
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:
        if isinstance(exc, WriteError):
            store.write_errors.append(str(exc))
        write_failed_marker(store, job.key, exc)
        out = {**out, "status": "failed-pretrain", "error": str(exc)}
    return {**out, "warnings": store.warnings, "write_errors": store.write_errors}
