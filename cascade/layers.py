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


class FlattenChannelsLast(nn.Module):
    """(B, C, H, W) -> (B, H * W * C): flattens in (H, W, C) order, a view of a channels-last map (no copy).

    :func:`cascade.exits.optimise_for_inference` puts it in place of ``nn.Flatten`` before a linear
    layer whose weight columns it permutes to (H, W, C) order, so the pair computes the same function.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 2, 3, 1).flatten(1)


class ChunkedSegment(nn.Module):
    """Runs a segment on slices of the batch when its largest feature map would not stay in cache.

    On a CPU, a segment whose feature maps run to tens of MB at the batch size streams each of them
    through DRAM between operators; on slices of :attr:`chunk` samples they stay in cache. The
    function is the same (every operator of an eval-mode segment works per sample), the output one
    tensor.

    Args:
        segment: the segment.
        map_bytes: bytes of its largest feature map per sample.
        above: slice only batches whose largest map reaches this many bytes.
        chunk_bytes: each intra-op thread's share of a slice's largest map stays within this many
            bytes (one thread: slices of ``chunk_bytes // map_bytes`` samples; two: twice that).
    """

    def __init__(self, segment: nn.Module, map_bytes: int, *, above: int, chunk_bytes: int) -> None:
        super().__init__()
        self.segment = segment
        self.map_bytes, self.above, self.chunk_bytes = max(map_bytes, 1), above, chunk_bytes

    @property
    def chunk(self) -> int:
        """Samples per slice at the current intra-op thread count."""
        return max(1, self.chunk_bytes * torch.get_num_threads() // self.map_bytes)

    @property
    def from_batch(self) -> int:
        """The smallest batch that is sliced: its largest map reaches ``above`` and it exceeds one slice."""
        return max(-(-self.above // self.map_bytes), self.chunk + 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, chunk = x.shape[0], self.chunk
        if batch < self.from_batch:
            return self.segment(x)
        return torch.cat([self.segment(x[i : i + chunk]) for i in range(0, batch, chunk)])

    def extra_repr(self) -> str:
        return f"map_bytes={self.map_bytes}, above={self.above}, chunk_bytes={self.chunk_bytes} per thread"


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
