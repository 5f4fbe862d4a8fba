"""The state a multi-exit model passes from one segment to the next: one tensor (most backbones), or a list of
tensors (MSDNet's feature maps, one per scale). Every consumer that slices, joins or exports the state goes
through these helpers, so a list of maps is treated as one tensor is: row ``i`` of the state is row ``i`` of every
map, and the batch axis is the first of each.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeAlias, TypeVar

import torch

#: A segment's output: one tensor or a list of tensors sharing the batch axis (numpy arrays in ONNX Runtime).
State: TypeAlias = Any
T = TypeVar("T")


def parts(state: State) -> list[Any]:
    """The tensors of a state, in order (one for a plain tensor)."""
    return list(state) if isinstance(state, (list, tuple)) else [state]


def like(state: State, tensors: Sequence[Any]) -> State:
    """``tensors`` in the form of ``state``: a list for a list, the one tensor otherwise."""
    return list(tensors) if isinstance(state, (list, tuple)) else tensors[0]


def apply(state: State, fn: Callable[[Any], Any]) -> State:
    """``fn`` applied to every tensor of the state, in the state's form."""
    return like(state, [fn(t) for t in parts(state)])


def rows(state: State, index: Any) -> State:
    """The samples ``index`` selects (a mask, positions or a slice) of every tensor."""
    return apply(state, lambda t: t[index])


def batch_size(state: State) -> int:
    return int(parts(state)[0].shape[0])


def concat(states: Sequence[State]) -> State:
    """States of consecutive slices of a batch joined along the batch axis."""
    first = states[0]
    return like(first, [torch.cat([parts(s)[i] for s in states]) for i in range(len(parts(first)))])


def names(state: State, prefix: str) -> list[str]:
    """ONNX input or output names of a state: ``x`` for one tensor, ``x0``, ``x1``, ... for a list."""
    return [prefix] if not isinstance(state, (list, tuple)) else [f"{prefix}{i}" for i in range(len(state))]
