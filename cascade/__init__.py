"""cascade: early-exit ("cascade") neural networks, their losses, exit policies and data.

The library half of cascade-bench: it knows nothing of suites, result files
or reports. See ``bench`` for the harness.
"""

from __future__ import annotations

from cascade.data import DATASETS, DataNotFoundError, DataSplits, Split, load_dataset
from cascade.exits import POLICIES, EarlyExitResult, build_policy, dynamic_forward, masked_decisions
from cascade.heads import HEADS
from cascade.losses import LOSSES, build_loss
from cascade.models import MODELS, AttachedExits, ExitOutputs, MultiExitModel, StudyCNN, attach_exits, build_model
from cascade.train import TrainConfig, TrainHistory, exit_accuracies, exit_logits, train

__version__ = "0.1.0"
#: Bump when a change alters what a run computes (training, evaluation, costs):
#: it is part of every run key, so results from older code are not reused.
RESULTS_VERSION = "1"

__all__ = [
    "DATASETS",
    "HEADS",
    "LOSSES",
    "MODELS",
    "POLICIES",
    "RESULTS_VERSION",
    "AttachedExits",
    "DataNotFoundError",
    "DataSplits",
    "EarlyExitResult",
    "ExitOutputs",
    "MultiExitModel",
    "Split",
    "StudyCNN",
    "TrainConfig",
    "TrainHistory",
    "attach_exits",
    "build_loss",
    "build_model",
    "build_policy",
    "dynamic_forward",
    "exit_accuracies",
    "exit_logits",
    "load_dataset",
    "masked_decisions",
    "train",
]
