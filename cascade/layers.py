"""Building blocks of the study CNN and its exit heads.

The block follows the source study: ``Conv(5x5, stride 1, same padding) ->
BatchNorm -> Dropout -> MaxPool(2) -> ReLU``. An intermediate exit is
``Flatten -> Linear`` (softmax is applied by losses and exit policies, never
inside the model, so that every consumer can work in log space).
"""

from __future__ import annotations

import torch
from torch import nn


class ConvBlock(nn.Sequential):
    """``Conv5x5 -> BN -> Dropout -> MaxPool2 -> ReLU``; (B, C_in, H, W) -> (B, C_out, H//2, W//2).

    Args:
        in_channels: input channels.
        out_channels: output channels.
        dropout: dropout probability; 0 switches dropout off (no module is added).
        kernel_size: odd kernel size; padding keeps the spatial size ("same").
    """

    def __init__(self, in_channels: int, out_channels: int, *, dropout: float = 0.0, kernel_size: int = 5) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, out_channels, kernel_size, stride=1, padding=kernel_size // 2),
            nn.BatchNorm2d(out_channels),
        ]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        layers += [nn.MaxPool2d(2), nn.ReLU()]
        super().__init__(*layers)


class ExitHead(nn.Sequential):
    """An intermediate exit: ``Flatten -> Linear``; (B, C, H, W) -> (B, K) logits."""

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__(nn.Flatten(), nn.Linear(in_features, num_classes))


class Classifier(nn.Sequential):
    """The final exit of the study CNN: ``Flatten -> Linear -> BN1d -> ReLU -> Linear``."""

    def __init__(self, in_features: int, hidden: int, num_classes: int) -> None:
        super().__init__(
            nn.Flatten(),
            nn.Linear(in_features, hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(),
            nn.Linear(hidden, num_classes),
        )


def flat_features(module: nn.Module, input_shape: tuple[int, ...]) -> tuple[int, ...]:
    """Shape (without batch) of ``module``'s output for one input of ``input_shape``."""
    was_training = module.training
    module.eval()
    with torch.no_grad():
        out = module(torch.zeros(1, *input_shape))
    module.train(was_training)
    return tuple(out.shape[1:])
