"""Sanity checks after training: a network at chance, and the batch-norm statistics that often cause it.

A network can learn and still score at chance in eval mode: batch norm then normalises with running
statistics that do not describe the data. With momentum m the running estimate after s optimiser steps
carries a weight of ``(1 - m) ** s`` on its initial value (mean 0, variance 1): torchvision's
MobileNetV3 uses m = 0.01, so after 63 steps 53 % of the estimate is still the initial value. The check
compares the final exit's accuracy on a training batch in train mode (batch statistics, dropout off)
with eval mode (running statistics); a gap of more than :data:`GAP` names that cause. The standard remedy
is precise BN (Wu & Johnson 2021; fvcore's ``update_bn_stats``): recompute the statistics as a plain
average over training batches before evaluating, here with ``torch.optim.swa_utils.update_bn``
(``[evaluation] recompute_bn = true``; the checkpoint is not changed, the run records it).
"""

from __future__ import annotations

import copy
from typing import Any, TypeVar

import torch
from torch import nn
from torch.optim.swa_utils import update_bn

from bench.results.record import SanityRecord, at_chance
from cascade.data import DataSplits, Split

M = TypeVar("M", bound=nn.Module)

GAP = 0.2  # train-mode accuracy this far above eval-mode accuracy points at batch-norm statistics
SAMPLES = 512  # training samples of the train / eval mode comparison
RECOMPUTE_BATCHES = 200  # training batches averaged by recompute_bn (fvcore's precise-BN default)


def batch_norms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def recompute_bn(model: nn.Module, split: Split, batch_size: int, *, seed: int = 0) -> int:
    """Recompute every batch norm's running statistics as the average over up to :data:`RECOMPUTE_BATCHES`
    random training batches (``momentum=None``); returns the number of samples used (0: no batch norm)."""
    if not batch_norms(model):
        return 0
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(split), generator=gen)[: RECOMPUTE_BATCHES * batch_size].to(split.x.device)
    batches = [split.x[order[i : i + batch_size]] for i in range(0, len(order), batch_size)]
    batches = [b for b in batches if len(b) > 1]  # a batch of one has no variance
    update_bn(batches, model)
    model.eval()
    return sum(len(b) for b in batches)


def as_evaluated(model: M, spec: Any, data: DataSplits) -> M:
    """What evaluation does to a trained model before measuring it, in place (the one rule, for the run and for
    ``bench export``): eval mode, and the batch-norm statistics recomputed when ``[evaluation] recompute_bn``."""
    if spec.evaluation.recompute_bn:
        recompute_bn(model, data.train, spec.job.config.batch_size, seed=spec.seed)
    return model.eval()


def mode_accuracies(model: nn.Module, split: Split) -> tuple[float, float]:
    """Final-exit accuracy on the first :data:`SAMPLES` training samples in train mode (batch statistics,
    dropout off; the model itself is not touched) and in eval mode."""
    x, y = split.x[:SAMPLES], split.y[:SAMPLES]
    probe = copy.deepcopy(model).train()
    for m in probe.modules():
        if isinstance(m, nn.modules.dropout._DropoutNd):
            m.eval()
    was_training = model.training
    with torch.no_grad():
        train_acc = float((probe(x).logits[-1].argmax(1) == y).float().mean())
        model.eval()
        eval_acc = float((model(x).logits[-1].argmax(1) == y).float().mean())
    model.train(was_training)
    return train_acc, eval_acc


def diagnose(
    model: nn.Module,
    train: Split,
    *,
    steps: int,
    recomputed: bool,
    classes: int,
    exit_names: list[str],
    val_accuracy: list[float],
    test_accuracy: list[float],
    label: str,
) -> SanityRecord:
    """What the run log and the report should say about a trained network (``label``: "variant seed S")."""
    train_acc, eval_acc = mode_accuracies(model, train) if len(train) else (float("nan"), float("nan"))
    momenta = sorted({m.momentum for m in batch_norms(model) if m.momentum is not None})
    warnings = []
    for name, val, test in zip(exit_names, val_accuracy, test_accuracy):
        if at_chance(test, classes) or at_chance(val, classes):
            warnings.append(
                f"{label}: exit {name} is at chance ({test:.1%} test, {val:.1%} validation accuracy; "
                f"chance {1 / classes:.1%})"
            )
    if momenta and train_acc - eval_acc > GAP:
        stuck = max((1 - m) ** steps for m in momenta)
        remedy = (
            "even after recompute_bn"
            if recomputed
            else "set evaluation.recompute_bn = true to recompute them on training batches before evaluating"
        )
        warnings.append(
            f"{label}: in train mode (batch statistics) the final exit scores {train_acc:.1%} on {SAMPLES} training "
            f"images but {eval_acc:.1%} in eval mode (running statistics): the batch-norm running statistics do not "
            f"describe the data (momentum {', '.join(f'{m:g}' for m in momenta)}: after {steps} steps {stuck:.0%} of "
            f"the estimate is still its initial value); {remedy}, or train longer"
        )
    return SanityRecord(
        train_mode_accuracy=train_acc,
        eval_mode_accuracy=eval_acc,
        bn_momentum=list(momenta),
        bn_recomputed=recomputed,
        warnings=warnings,
    )
