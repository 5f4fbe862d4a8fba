"""Training loop for multi-exit models with the study's defaults.

SGD (lr 0.001, momentum 0.5), batch 64, 20 epochs; training loss logged every
``log_every`` iterations (mean over those iterations); per-exit validation and
test accuracy after each epoch. Test accuracy is *recorded* (the study plots
it per epoch) but nothing here selects anything with it.

Seeded and deterministic on CPU: the global RNG (initialisation, dropout) is
seeded with ``seed`` and the shuffling uses its own generator seeded with it.
A non-finite loss stops training with :class:`NonFiniteLossError` naming the
epoch and iteration.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from cascade.data import DataSplits, Split
from cascade.keys import added_later, is_unkeyed, key_fields, unkeyed
from cascade.losses import Loss
from cascade.models._base import MultiExitModel

OPTIMIZERS = ("sgd", "adam", "adamw")
LR_SCHEDULES = ("constant", "step", "cosine")


class ConfigError(ValueError):
    """An impossible training setting; ``field`` names it (the suite reports it under ``train.<field>``)."""

    def __init__(self, field_name: str, message: str) -> None:
        self.field, self.message = field_name, message
        super().__init__(f"{field_name}: {message}")


@dataclass(frozen=True)
class TrainConfig:
    """Optimiser and loop settings (defaults = the study's).

    This is the one definition of the training settings: the suite's ``[train]`` table is this
    dataclass (plus the harness's ``equal_budget``), validated here. Fields declared ``unkeyed``
    decide only *when* something is noticed, not what is trained; they stay out of the suite format
    and of the run keys. Fields declared ``added_later`` enter a run key only away from their default
    (:mod:`cascade.keys`).
    """

    epochs: int = 20  # passes over the training split
    lr: float = 0.001  # SGD learning rate
    momentum: float = 0.5  # SGD momentum
    batch_size: int = 64  # training mini-batch size (>= 2: a batch of one breaks BatchNorm's statistics)
    weight_decay: float = 0.0  # L2 penalty of SGD
    # Settings that change what is logged or how fast evaluation runs, not the trained weights: a run
    # key holds them at their defaults, so changing them reuses the checkpoint (see key_fields).
    log_every: int = field(default=100, metadata={"untrained": True})  # log the mean training loss every N iterations
    eval_batch_size: int = field(default=1000, metadata={"untrained": True})  # batch size for validation / test passes
    # torch.optim optimiser: "sgd" (the study's, with momentum), "adam" or "adamw" (momentum unused).
    # Added after results existed: left out of the run keys while at its default (cascade.keys).
    optimizer: str = added_later("sgd")
    # Learning-rate schedule over optimiser steps (torch.optim.lr_scheduler.LambdaLR): "constant"
    # (the study's), "step" (multiply by lr_gamma every lr_step_epochs epochs) or "cosine" (from lr
    # towards 0, reached just after the last step). warmup_epochs ramps the rate linearly from lr/warm-up steps up to
    # lr first; the schedule starts after it. All left out of the run keys at their defaults.
    lr_schedule: str = added_later("constant")
    warmup_epochs: int = added_later(0)
    lr_step_epochs: int = added_later(10)
    lr_gamma: float = added_later(0.1)
    # Train only the intermediate exit heads; every other parameter keeps its (pre-trained) value and
    # the backbone's batch-norm statistics stay frozen (SDN's "IC-only" setting). Needs a pre-trained
    # network: a variant's pre-training, or a model's pre-trained weights.
    freeze_backbone: bool = added_later(False)
    # Gradient equilibrium (Li et al., ICCV 2019; kalviny/IMTA, models/msdnet_ge.py): at the output of
    # segment k of n, the gradient from exit head k is scaled by 1/(n - k) and the gradient from the
    # deeper segments by (n - k - 1)/(n - k). Works with every loss; the forward values are unchanged.
    gradient_equilibrium: bool = added_later(False)
    # Train with images and convolution weights in NHWC memory order (torch.channels_last): the same function,
    # computed with other kernels (faster for convolutions on a CPU; benchmarks/bench_train.py measures it).
    # Their sums round differently, so the trained weights differ in the last bits: keyed like threads.
    # The trained model is returned in the default order. Image inputs (N, C, H, W) only.
    channels_last: bool = added_later(False)
    # Check the loss for NaN/inf every this many iterations (0 = every iteration on CPU, every
    # log_every on GPU, where a per-step check would stall the launch queue with a host sync).
    # The error names the first bad iteration either way.
    finite_check_every: int = unkeyed(0)

    def __post_init__(self) -> None:
        for name, ok, allowed in self.checks():
            if not ok:
                raise ConfigError(name, f"{getattr(self, name)!r} is out of range; allowed: {allowed}")

    def checks(self) -> list[tuple[str, bool, str]]:
        """(field, holds, what is allowed) for every constraint."""
        finite = math.isfinite
        return [
            ("epochs", self.epochs >= 0, "an integer >= 0"),
            ("lr", finite(self.lr) and self.lr > 0, "a finite number > 0"),
            ("momentum", 0 <= self.momentum < 1, "a number in [0, 1)"),
            ("batch_size", self.batch_size >= 2, "an integer >= 2"),
            ("weight_decay", finite(self.weight_decay) and self.weight_decay >= 0, "a finite number >= 0"),
            ("log_every", self.log_every >= 1, "an integer >= 1"),
            ("eval_batch_size", self.eval_batch_size >= 1, "an integer >= 1"),
            ("finite_check_every", self.finite_check_every >= 0, "an integer >= 0"),
            ("optimizer", self.optimizer in OPTIMIZERS, f"one of {', '.join(OPTIMIZERS)}"),
            ("lr_schedule", self.lr_schedule in LR_SCHEDULES, f"one of {', '.join(LR_SCHEDULES)}"),
            ("warmup_epochs", 0 <= self.warmup_epochs <= max(self.epochs, 0), "an integer in [0, epochs]"),
            ("lr_step_epochs", self.lr_step_epochs >= 1, "an integer >= 1"),
            ("lr_gamma", finite(self.lr_gamma) and 0 < self.lr_gamma <= 1, "a number in (0, 1]"),
            ("freeze_backbone", isinstance(self.freeze_backbone, bool), "true or false"),
            ("gradient_equilibrium", isinstance(self.gradient_equilibrium, bool), "true or false"),
        ]

    def lr_factor(self, step: int, steps_per_epoch: int) -> float:
        """Multiplier of ``lr`` at optimiser step ``step`` (0-based) with ``steps_per_epoch`` steps per epoch.

        Warm-up: (step + 1) / warm-up steps for the first ``warmup_epochs`` epochs. Then "constant": 1;
        "step": lr_gamma ** (whole lr_step_epochs periods since the warm-up); "cosine":
        (1 + cos(pi * t)) / 2 with t the fraction of the post-warm-up steps already taken.
        """
        warm = self.warmup_epochs * steps_per_epoch
        if step < warm:
            return (step + 1) / warm
        s = step - warm
        if self.lr_schedule == "step":
            return float(self.lr_gamma ** (s // (self.lr_step_epochs * steps_per_epoch)))
        if self.lr_schedule == "cosine":
            total = max(self.epochs * steps_per_epoch - warm, 1)
            return 0.5 * (1.0 + math.cos(math.pi * min(s / total, 1.0)))
        return 1.0

    def key_fields(self) -> dict[str, Any]:
        """The run fields as they enter a run key (:func:`cascade.keys.key_fields`)."""
        return key_fields(self)

    def make_optimizer(self, params: Any) -> torch.optim.Optimizer:
        """The configured torch.optim optimiser over ``params``."""
        if self.optimizer == "adam":
            return torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay)
        if self.optimizer == "adamw":
            return torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)
        return torch.optim.SGD(params, lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay)

    @classmethod
    def pin_untrained(cls, train: dict[str, Any]) -> dict[str, Any]:
        """``train`` (key fields) with the settings that do not change the trained weights at their defaults:
        what a train key holds, so that a logging setting never retrains (keys of runs at the defaults are
        those of run files made before this rule)."""
        pinned = {f.name: f.default for f in dataclasses.fields(cls) if f.metadata.get("untrained")}
        return {k: pinned.get(k, v) for k, v in train.items()}

    @classmethod
    def run_fields(cls) -> list[str]:
        """The fields that decide what is trained (part of the suite format and of the run keys)."""
        return [f.name for f in dataclasses.fields(cls) if not is_unkeyed(f)]


@dataclass
class EpochRecord:
    epoch: int  # 1-based
    train_loss: float  # mean training loss over the epoch
    val_accuracy: list[float]  # per exit, in [0, 1]
    test_accuracy: list[float]  # per exit, in [0, 1]
    seconds: float  # wall-clock of the epoch's training steps


@dataclass
class TrainHistory:
    log_iterations: list[int] = field(default_factory=list)  # global iteration of each logged loss
    log_losses: list[float] = field(default_factory=list)  # mean loss over the preceding log_every iterations
    epochs: list[EpochRecord] = field(default_factory=list)
    steps: int = 0  # optimiser steps taken
    samples: int = 0  # training samples seen
    train_seconds: float = 0.0  # wall-clock of training steps only (no evaluation)
    loss_state: dict[str, Any] | None = None  # what the loss adapted (e.g. distill's final temperature)


class _ScaleGradient(torch.autograd.Function):
    """Identity forward; the backward multiplies the gradient by ``scale`` (IMTA's ``gradient_rescale``)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad * ctx.scale, None


def scale_gradient(x: torch.Tensor, scale: float) -> torch.Tensor:
    """``x`` unchanged, its gradient multiplied by ``scale`` on the way back."""
    out: torch.Tensor = _ScaleGradient.apply(x, scale)
    return out


def equilibrium_logits(model: MultiExitModel, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Every exit's logits with gradient equilibrium (:attr:`TrainConfig.gradient_equilibrium`).

    As IMTA's ``MSDNet.forward``: after segment k of n the features are rescaled by 1/(n - k) for head k,
    and that head's input rescaled by (n - k - 1) again for the next segment, so the deeper segments'
    gradient arrives scaled by (n - k - 1)/(n - k) in total. What is rescaled is the model's choice
    (:meth:`MultiExitModel.rescale_head_input`): the features, or on MSDNet the coarsest scale, as IMTA does.
    """
    n = model.num_exits
    logits: list[torch.Tensor] = []
    h = x
    for k, segment in enumerate(model.exit_segments):
        h = model.rescale_head_input(segment(h), 1.0 / (n - k), scale_gradient)
        logits.append(model.head_logits(k, h, logits[-1] if logits else None))
        if k < n - 1:
            h = model.rescale_head_input(h, float(n - k - 1), scale_gradient)
    return tuple(logits)


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""


class TrainCallback:
    """Hooks for progress display; the default does nothing."""

    def on_log(self, iteration: int, loss: float) -> None:
        """After every ``log_every`` iterations."""

    def on_batch(self, epoch: int, batch: int, num_batches: int) -> None:
        """After each optimiser step."""

    def on_epoch_end(self, record: EpochRecord) -> None:
        """After each epoch's evaluation."""

    def on_phase(self, phase: str) -> None:
        """When a run moves to another phase (``"training"``, ``"evaluating"``, ``"timing latency"``, ...)."""


@torch.no_grad()
def exit_logits(model: MultiExitModel, x: torch.Tensor, batch_size: int = 1000) -> tuple[torch.Tensor, ...]:
    """Every exit's logits for all of ``x`` (eval mode, in batches); L tensors (N, K)."""
    was_training = model.training
    model.eval()
    chunks = [model(x[i : i + batch_size]).logits for i in range(0, len(x), batch_size)]
    model.train(was_training)
    return tuple(torch.cat([c[level] for c in chunks]) for level in range(model.num_exits))


def exit_accuracies(model: MultiExitModel, split: Split, batch_size: int = 1000) -> list[float]:
    """Accuracy of each exit on ``split`` (every sample goes through every exit)."""
    if len(split) == 0:
        return [float("nan")] * model.num_exits
    return [float((z.argmax(1) == split.y).float().mean()) for z in exit_logits(model, split.x, batch_size)]


def _raise_nonfinite(value: float, step: int, steps_per_epoch: int, loss_fn: Loss) -> None:
    """``step`` is 0-based and global; the message gives 1-based epoch and iteration."""
    raise NonFiniteLossError(
        f"training loss is {value} at epoch {step // steps_per_epoch + 1}, iteration {step + 1} "
        f"(loss {type(loss_fn).__name__}); lower the learning rate or alpha, or check the data"
    )


class _FiniteWatch:
    """The first non-finite loss, recorded on the device at every step and looked at (a host sync) every
    ``every`` steps and at the end of each epoch: the error names the first bad step either way."""

    def __init__(self, device: torch.device, every: int, steps_per_epoch: int, loss_fn: Loss) -> None:
        self.first_bad = torch.full((), -1, dtype=torch.long, device=device)  # 0-based step of the first bad loss
        self.bad_value = torch.zeros((), device=device)
        self.every, self.steps_per_epoch, self.loss_fn = every, steps_per_epoch, loss_fn

    def note(self, loss: torch.Tensor, step: int) -> None:
        new_bad = (self.first_bad < 0) & ~torch.isfinite(loss.detach())
        self.first_bad = torch.where(new_bad, step, self.first_bad)
        self.bad_value = torch.where(new_bad, loss.detach(), self.bad_value)
        if (step + 1) % self.every == 0:
            self.check()

    def check(self) -> None:
        if int(self.first_bad) >= 0:
            _raise_nonfinite(float(self.bad_value), int(self.first_bad), self.steps_per_epoch, self.loss_fn)


class _LossLog:
    """The mean training loss over each window of ``every`` steps (logged) and over each epoch, summed on the
    device (no host sync per step)."""

    def __init__(self, device: torch.device, every: int, history: TrainHistory, callback: TrainCallback) -> None:
        self.window = torch.zeros((), device=device)
        self.epoch_sum = torch.zeros((), device=device)
        self.count, self.every, self.history, self.callback = 0, every, history, callback

    def add(self, loss: torch.Tensor) -> None:
        self.window += loss
        self.epoch_sum += loss
        self.count += 1
        if self.count == self.every:
            mean = float(self.window) / self.count
            self.history.log_iterations.append(self.history.steps)
            self.history.log_losses.append(mean)
            self.callback.on_log(self.history.steps, mean)
            self.window.zero_()
            self.count = 0

    def end_epoch(self) -> float:
        """The epoch's loss sum (and a fresh sum for the next epoch)."""
        total = float(self.epoch_sum)
        self.epoch_sum = torch.zeros((), device=self.epoch_sum.device)
        return total


def train(
    model: MultiExitModel,
    loss_fn: Loss,
    data: DataSplits,
    config: TrainConfig = TrainConfig(),
    *,
    seed: int = 0,
    callback: TrainCallback | None = None,
    evaluate: bool = True,
) -> TrainHistory:
    """Train ``model`` in place with ``loss_fn`` on ``data.train``.

    Args:
        model: the multi-exit model (already on the data's device).
        loss_fn: a loss from :mod:`cascade.losses`.
        data: splits; val and test are evaluated after each epoch when ``evaluate``.
        config: optimiser and loop settings.
        seed: seeds dropout and shuffling.
        callback: progress hooks.
        evaluate: evaluate per-exit accuracy on val and test after each epoch.

    Returns:
        The training history (logged losses, per-epoch accuracies, step counts).
    """
    loss_fn.check_exits(model.num_exits)
    if hasattr(loss_fn, "start"):  # losses that do not subclass Loss may lack the optional hooks
        loss_fn.start(config.epochs)
    callback = callback or TrainCallback()
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    x, n, bs = data.train.x, len(data.train.y), config.batch_size
    history = TrainHistory()
    starts = [s for s in range(0, n, bs) if n - s > 1]  # a batch of one breaks BatchNorm's statistics
    frozen = _freeze_backbone(model) if config.freeze_backbone else []
    layout = _memory_format(model, x, config.channels_last)
    opt = config.make_optimizer([p for p in model.parameters() if p.requires_grad])
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: config.lr_factor(step, max(len(starts), 1)))
    watch = _FiniteWatch(
        x.device, config.finite_check_every or (1 if x.device.type == "cpu" else config.log_every), len(starts), loss_fn
    )
    log = _LossLog(x.device, config.log_every, history, callback)
    for epoch in range(config.epochs):
        loss_fn.set_epoch(epoch)
        model.train()
        for m in frozen:  # the backbone's batch-norm statistics and dropout stay as pre-trained (eval mode)
            m.eval()
        perm = torch.randperm(n, generator=gen).to(x.device)
        t0 = time.perf_counter()
        for b, start in enumerate(starts):
            idx = perm[start : start + bs]
            xb = data.augment(x[idx], gen) if data.augment else x[idx]  # random crops/flips from the seeded generator
            if config.channels_last:
                xb = xb.contiguous(memory_format=layout)
            out = equilibrium_logits(model, xb) if config.gradient_equilibrium else model(xb).logits
            loss = loss_fn(out, data.train.y[idx])
            watch.note(loss, history.steps)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            history.steps += 1
            history.samples += len(idx)
            log.add(loss.detach())
            callback.on_batch(epoch, b + 1, len(starts))
        watch.check()  # a bad step after the last look of the epoch
        seconds = time.perf_counter() - t0
        history.train_seconds += seconds
        record = EpochRecord(
            epoch=epoch + 1,
            train_loss=log.end_epoch() / max(len(starts), 1),
            val_accuracy=exit_accuracies(model, data.val, config.eval_batch_size) if evaluate else [],
            test_accuracy=exit_accuracies(model, data.test, config.eval_batch_size) if evaluate else [],
            seconds=seconds,
        )
        history.epochs.append(record)
        callback.on_epoch_end(record)
    _hand_back(model, config.channels_last)
    history.loss_state = (loss_fn.state() if hasattr(loss_fn, "state") else {}) or None
    return history


def _memory_format(model: MultiExitModel, x: torch.Tensor, channels_last: bool) -> torch.memory_format:
    """The batches' memory order: NHWC with ``channels_last`` (the model converted in place; image inputs only),
    else the default."""
    if not channels_last:
        return torch.contiguous_format
    if x.dim() != 4:
        raise ConfigError("channels_last", f"needs image inputs (N, C, H, W); this dataset's are {tuple(x.shape)}")
    model.to(memory_format=torch.channels_last)
    return torch.channels_last


def _hand_back(model: MultiExitModel, channels_last: bool) -> None:
    """The trained model as callers expect it: eval mode, every parameter trainable again (a frozen backbone's
    too), weights in the default memory order."""
    model.eval()
    if channels_last:
        model.to(memory_format=torch.contiguous_format)
    for p in model.parameters():
        p.requires_grad_(True)


def _freeze_backbone(model: MultiExitModel) -> list[torch.nn.Module]:
    """Stop gradients to every parameter outside the intermediate exit heads; return the backbone's leaf
    modules (kept in eval mode while training). Raises :class:`ConfigError` when nothing is left to train."""
    prefixes = model.exit_parameter_prefixes()
    trainable = 0
    for name, p in model.named_parameters():
        keep = bool(prefixes) and name.startswith(prefixes)
        p.requires_grad_(keep)
        trainable += int(keep)
    if not trainable:
        raise ConfigError("freeze_backbone", "the model has no intermediate exit heads to train; add exits or unset it")
    return [m for name, m in model.named_modules() if not list(m.children()) and not name.startswith(prefixes)]
