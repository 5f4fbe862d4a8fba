"""Multi-exit backbones, one family per file, registered by name.

An entry is a :class:`MultiExitModel` subclass: its keyword-only constructor options are what a
suite's ``[model]`` table may set (:meth:`MultiExitModel.option_names`), and its
:meth:`MultiExitModel.check` validates options and exit positions, so the harness knows no model.
"""

from __future__ import annotations

from typing import Any

from cascade._registry import Registry
from cascade.heads import make_cascading
from cascade.models._base import ExitOutputs, MultiExitModel, pop_cascading_heads
from cascade.models.attach import AttachedExits, ExitAttachError, attach_exits
from cascade.models.cifar_resnet import CifarResNet, ResNet20, ResNet56
from cascade.models.lenet import BranchyLeNet, LeNet
from cascade.models.msdnet import MSDNet
from cascade.models.study_cnn import StudyCNN
from cascade.models.torchvision_models import torchvision_model

MODELS: Registry[type[MultiExitModel]] = Registry("model")
MODELS.register("study_cnn")(StudyCNN)
MODELS.register("resnet20")(ResNet20)
MODELS.register("resnet56")(ResNet56)
MODELS.register("branchynet_lenet")(BranchyLeNet)
MODELS.register("msdnet")(MSDNet)
MODELS.register_prefix("torchvision:", torchvision_model)


def build_model(name: str, **options: Any) -> MultiExitModel:
    """Build the registered model ``name`` with keyword options.

    ``cascading_heads = true`` (every model) wraps the intermediate exit heads after the first in Zero-Time-Waste's
    cascading head (:func:`cascade.heads.make_cascading`).
    """
    cascading = pop_cascading_heads(options)
    model = MODELS.get(name)(**options)
    return make_cascading(model) if cascading else model


__all__ = [
    "MODELS",
    "AttachedExits",
    "BranchyLeNet",
    "CifarResNet",
    "ExitAttachError",
    "ExitOutputs",
    "LeNet",
    "MSDNet",
    "MultiExitModel",
    "StudyCNN",
    "attach_exits",
    "build_model",
]
