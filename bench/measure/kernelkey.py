"""How the cost counter names one small kernel call for the kernel table (:mod:`bench.measure.kernels`): its aten
overload, argument shapes, strides and dtypes, and scalar arguments, as one JSON string."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import torch

SMALL_BATCH = 4  # calls with at most this many samples (output's first dimension) are tabled
_SCALARS = (bool, int, float, str, type(None))


def _spec(value: Any) -> Any:
    """A JSON-able description of one argument: a tensor by shape, strides and dtype; scalars as they are."""
    if isinstance(value, torch.Tensor):
        return {"t": list(value.shape), "s": list(value.stride()), "d": str(value.dtype).removeprefix("torch.")}
    if isinstance(value, (list, tuple)):
        return [_spec(v) for v in value]
    if isinstance(value, _SCALARS):
        return value
    raise TypeError(type(value).__name__)


def kernel_key(func: Any, args: Sequence[Any], kwargs: dict[str, Any]) -> str | None:
    """The table key of one aten call (None when an argument cannot be described: such a call stays on the
    roofline)."""
    try:
        return json.dumps([str(func), _spec(list(args)), {k: _spec(v) for k, v in kwargs.items()}])
    except TypeError:
        return None
