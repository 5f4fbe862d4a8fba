"""Multi-exit backbones, one family per file, registered by name.

An entry is a :class:`MultiExitModel` subclass: its keyword-only constructor options are what a
suite's ``[model]`` table may set (:meth:`MultiExitModel.option_names`), and its
:meth:`MultiExitModel.check` validates options and exit positions, so the harness knows no model.
"""

from __future__ import annotations

from typing import Any

from cascade._registry import Registry
from cascade.models._base import ExitOutputs, MultiExitModel
from cascade.models.study_cnn import StudyCNN

MODELS: Registry[type[MultiExitModel]] = Registry("model")
MODELS.register("study_cnn")(StudyCNN)


def build_model(name: str, **options: Any) -> MultiExitModel:
    """Build the registered model ``name`` with keyword options."""
    return MODELS.get(name)(**options)


__all__ = ["MODELS", "ExitOutputs", "MultiExitModel", "StudyCNN", "build_model"]
