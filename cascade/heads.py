"""Exit heads attached to any backbone, registered by name (options in TOML under ``head_options``).

Each builder takes the shape of the features it reads (without the batch dimension: (C, H, W)
for convolutional features, (N, D) for token sequences, (D,) for vectors) and the number of
classes, and returns a module mapping (B, *shape) -> (B, K) logits.

* ``linear``: global average pooling over the spatial (or token) positions, then ``Linear`` --
  the "IC" head of most early-exit work on ResNets.
* ``conv-linear``: an optional ``MaxPool2 -> ReLU`` first (BranchyNet's B-LeNet branch), one
  ``Conv -> [BN] -> MaxPool -> ReLU`` block, then global average pooling (or ``flatten = true``:
  the flattened map, as BranchyNet) and ``Linear`` (BranchyNet, Teerapittayanon et al. 2016; the
  SDN-style convolutional internal classifiers, Kaya et al. 2019).
* ``mlp``: global average pooling, ``Linear -> ReLU -> Linear``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from cascade._registry import Registry

HeadBuilder = Callable[..., nn.Module]
HEADS: Registry[HeadBuilder] = Registry("exit head")


class GlobalPool(nn.Module):
    """Mean over every position: (B, C, H, W) -> (B, C), (B, N, D) -> (B, D), (B, D) unchanged."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:
            return x.mean(dim=(2, 3))  # (B, C)
        if x.dim() == 3:
            return x.mean(dim=1)  # (B, D): tokens averaged
        return x.flatten(1)


def _channels(shape: Sequence[int]) -> int:
    """Feature width after :class:`GlobalPool`."""
    return int(shape[0]) if len(shape) == 3 else int(shape[-1])


@HEADS.register("linear")
def linear_head(shape: Sequence[int], num_classes: int) -> nn.Module:
    """Global average pooling, then one linear layer to the classes."""
    return nn.Sequential(GlobalPool(), nn.Linear(_channels(shape), num_classes))


@HEADS.register("mlp")
def mlp_head(shape: Sequence[int], num_classes: int, *, hidden: int = 256) -> nn.Module:
    """Global average pooling, then a hidden layer of ``hidden`` units with ReLU, then the classes."""
    if hidden < 1:
        raise ValueError(f"head 'mlp': hidden must be >= 1, got {hidden}")
    return nn.Sequential(GlobalPool(), nn.Linear(_channels(shape), hidden), nn.ReLU(), nn.Linear(hidden, num_classes))


@HEADS.register("conv-linear")
def conv_linear_head(
    shape: Sequence[int],
    num_classes: int,
    *,
    channels: int = 0,
    kernel_size: int = 3,
    pre_pool: bool = False,
    pool: int = 2,
    batch_norm: bool = True,
    flatten: bool = False,
) -> nn.Module:
    """A convolution (optionally pooled before and after), then pooling or flattening and a linear layer.

    Args (TOML ``head_options``): channels (0 = as many as the input), kernel_size (odd),
    pre_pool (MaxPool2 + ReLU before the conv), pool (max-pool size after it; 1 = none),
    batch_norm, flatten (flatten the map instead of global average pooling)."""
    if len(shape) != 3:
        raise ValueError(f"head 'conv-linear' needs (C, H, W) features, got shape {tuple(shape)}")
    if kernel_size < 1 or kernel_size % 2 == 0 or pool < 1 or channels < 0:
        raise ValueError("head 'conv-linear': kernel_size must be odd and >= 1, pool >= 1, channels >= 0")
    c, h, w = (int(s) for s in shape)
    out = channels or c
    layers: list[nn.Module] = []
    if pre_pool:
        layers += [nn.MaxPool2d(2, ceil_mode=True), nn.ReLU()]
        h, w = math.ceil(h / 2), math.ceil(w / 2)
    layers.append(nn.Conv2d(c, out, kernel_size, padding=kernel_size // 2))
    if batch_norm:
        layers.append(nn.BatchNorm2d(out))
    if pool > 1:
        layers.append(nn.MaxPool2d(pool, ceil_mode=True))
        h, w = math.ceil(h / pool), math.ceil(w / pool)
    layers.append(nn.ReLU())
    if flatten:
        layers += [nn.Flatten(), nn.Linear(out * h * w, num_classes)]
    else:
        layers += [GlobalPool(), nn.Linear(out, num_classes)]
    return nn.Sequential(*layers)


def build_head(name: str, shape: Sequence[int], num_classes: int, options: dict[str, Any] | None = None) -> nn.Module:
    """Build head ``name`` for features of ``shape``; unknown options name the allowed ones."""
    builder = HEADS.get(name)
    try:
        return builder(tuple(shape), num_classes, **(options or {}))
    except TypeError as e:
        raise ValueError(f"exit head {name!r}: {e}") from None


class CascadingHead(nn.Module):
    """Zero-Time-Waste's cascading exit head (Wolczyk et al., NeurIPS 2021; gmum/Zero-Time-Waste,
    ``ztw_cv/architectures/early_exits/heads.py``, ``ConvCascadingHead``): head k also reads head k-1's
    logits, detached and layer-normalised, as an extra input of its last linear layer.

    Their head concatenates [features, LayerNorm(previous logits)] before one ``Linear``; that equals
    ``Linear_f(features) + Linear_p(LayerNorm(previous))``, which is what this wrapper computes around any
    head of the registry (or a model's own head) ending in a linear layer: ``link`` is ``Linear_p``
    (no bias: the wrapped head's bias is the concatenated layer's). One difference: their concatenated
    layer is initialised with fan-in features + K, ours as two layers.
    """

    takes_previous = True

    def __init__(self, head: nn.Module, num_classes: int, *, layer_norm: bool = True) -> None:
        super().__init__()
        self.head = head
        self.norm: nn.Module = nn.LayerNorm(num_classes) if layer_norm else nn.Identity()
        self.link = nn.Linear(num_classes, num_classes, bias=False)

    def forward(self, x: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(x) + self.link(self.norm(previous.detach()))
        return out


def make_cascading(model: Any) -> Any:
    """Wrap every intermediate exit head of ``model`` after the first in a :class:`CascadingHead`, in place.

    The wrapped head keeps its place in the module tree (``exits.p2`` -> ``exits.p2.head``); the final
    exit (the network's own classifier) stays as it is, as in ZTW. A network without intermediate exits is
    returned as it is; one with a single intermediate exit is an error (nothing would read its logits).
    Returns ``model``.
    """
    if model.num_exits == 1:  # the network without intermediate exits (a base run, the base cost): nothing to do
        return model
    if model.num_exits < 3:
        raise ValueError(
            f"cascading_heads needs at least two intermediate exits (the second reads the first's "
            f"logits); the model has {model.num_exits - 1}"
        )
    names = {id(m): n for n, m in model.named_modules()}
    for k in range(1, model.num_exits - 1):
        inner = model.exit_heads[k]
        wrapped = CascadingHead(inner, model.num_classes)
        parent_name, _, attr = names[id(inner)].rpartition(".")
        setattr(model.get_submodule(parent_name), attr, wrapped)
        model.exit_heads[k] = wrapped
    return model
