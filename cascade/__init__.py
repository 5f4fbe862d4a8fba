"""cascade: early-exit ("cascade") neural networks, their losses, exit policies and data.

The library half of cascade-bench: it knows nothing of suites, result files
or reports. See ``bench`` for the harness.

The names below are imported on first use (PEP 562), so that ``import cascade.keys`` or the
command line's ``--help`` does not pay for torch and torchvision. ``cascade.train`` is the training function;
its module is :mod:`cascade.training` (CHANGELOG.md: the module was ``cascade/train.py`` before 0.2).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"
#: Bump when a change alters what a run computes (training, evaluation, costs):
#: it is part of every run key, so results from older code are not reused.
RESULTS_VERSION = "1"

#: public name -> the module that defines it
_EXPORTS = {
    **dict.fromkeys(["DATASETS", "DataSplits", "Split", "load_dataset"], "cascade.data"),
    **dict.fromkeys(
        ["POLICIES", "EarlyExitResult", "build_policy", "dynamic_forward", "masked_decisions"], "cascade.exits"
    ),
    "HEADS": "cascade.heads",
    **dict.fromkeys(["LOSSES", "build_loss"], "cascade.losses"),
    **dict.fromkeys(
        ["MODELS", "AttachedExits", "ExitOutputs", "MultiExitModel", "StudyCNN", "attach_exits", "build_model"],
        "cascade.models",
    ),
    **dict.fromkeys(["TrainConfig", "TrainHistory", "exit_accuracies", "exit_logits", "train"], "cascade.training"),
    "optimise_for_inference": "cascade.inference",
    "DataNotFoundError": "cascade.datafiles",
}

__all__ = ["RESULTS_VERSION", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'cascade' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


if TYPE_CHECKING:
    from cascade.data import DATASETS, DataSplits, Split, load_dataset
    from cascade.datafiles import DataNotFoundError
    from cascade.exits import POLICIES, EarlyExitResult, build_policy, dynamic_forward, masked_decisions
    from cascade.heads import HEADS
    from cascade.inference import optimise_for_inference
    from cascade.losses import LOSSES, build_loss
    from cascade.models import (
        MODELS,
        AttachedExits,
        ExitOutputs,
        MultiExitModel,
        StudyCNN,
        attach_exits,
        build_model,
    )
    from cascade.training import TrainConfig, TrainHistory, exit_accuracies, exit_logits, train
