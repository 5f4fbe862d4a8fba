"""The "AlexNet-like" CNN of the source study, with early exits after any block.

Backbone: ``n`` blocks ``Conv5x5 -> BN -> Dropout -> MaxPool2 -> ReLU``
(channels and dropout per block), then ``Linear -> BN1d -> ReLU -> Linear``.
An intermediate exit ``Flatten -> Linear`` can be placed after block ``k``
(position ``p<k>``, 1-based); the study uses ``p1`` or ``p2`` alone, we allow
any set. With no intermediate exit this is the study's ``base`` network.

For 28x28 inputs and the default 32/64/128 channels the feature maps are
(32, 14, 14) after block 1, (64, 7, 7) after block 2 and (128, 3, 3) after
block 3.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from torch import nn

from cascade.layers import Classifier, ConvBlock, ExitHead, flat_features
from cascade.models._base import MultiExitModel


def parse_position(position: str | int, num_blocks: int) -> int:
    """``"p2"`` or ``2`` -> 2 (the exit sits after block 2); validates the range."""
    if isinstance(position, str):
        if not (position.startswith("p") and position[1:].isdigit()):
            raise ValueError(f"exit position {position!r}: expected 'p<k>' with k in 1..{num_blocks}")
        k = int(position[1:])
    else:
        k = int(position)
    if not 1 <= k <= num_blocks:
        raise ValueError(f"exit position p{k}: this network has blocks 1..{num_blocks}")
    return k


class StudyCNN(MultiExitModel):
    """The study CNN with intermediate exits at ``exits``.

    Args:
        channels: output channels of each block (its length is the number of blocks).
        dropout: dropout probability per block (0 = off); one value is broadcast.
        hidden: units of the hidden fully connected layer.
        num_classes: number of classes K.
        in_channels: input channels (1 for grey images).
        input_size: input height = width.
        exits: positions of the intermediate exits, e.g. ``("p1",)``; empty = ``base``.
    """

    example_exits = ("p1", "p2")

    def __init__(
        self,
        *,
        channels: Sequence[int] = (32, 64, 128),
        dropout: float | Sequence[float] = 0.0,
        hidden: int = 256,
        num_classes: int = 10,
        in_channels: int = 1,
        input_size: int = 28,
        exits: Sequence[str | int] = (),
    ) -> None:
        super().__init__()
        if isinstance(channels, (str, bytes)) or not all(
            isinstance(c, int) and not isinstance(c, bool) for c in channels
        ):
            raise ValueError(f"channels must be a list of positive integers, e.g. [32, 64, 128]; got {channels!r}")
        channels = tuple(channels)
        if not channels or any(c <= 0 for c in channels):
            raise ValueError(f"channels must be a non-empty list of positive integers, got {channels}")
        if isinstance(hidden, bool) or not isinstance(hidden, int) or hidden < 1:
            raise ValueError(f"hidden must be an integer >= 1, got {hidden!r}")
        drops = (float(dropout),) * len(channels) if isinstance(dropout, (int, float)) else tuple(dropout)
        if len(drops) != len(channels) or any(not 0.0 <= p < 1.0 for p in drops):
            raise ValueError(f"dropout must be one value or one per block in [0, 1), got {dropout}")
        positions = sorted({parse_position(p, len(channels)) for p in exits})
        if len(positions) != len(tuple(exits)):
            raise ValueError(f"duplicate exit positions in {tuple(exits)}")

        self.num_classes = num_classes
        self.exit_positions = tuple(positions)
        self.blocks = nn.ModuleList()
        c_in = in_channels
        for c_out, p in zip(channels, drops):
            self.blocks.append(ConvBlock(c_in, c_out, dropout=p))
            c_in = c_out

        shape: tuple[int, ...] = (in_channels, input_size, input_size)
        block_shapes = []
        for block in self.blocks:
            shape = flat_features(block, shape)
            block_shapes.append(shape)
        if min(block_shapes[-1][1:]) < 1:
            raise ValueError(f"input_size {input_size} is too small for {len(channels)} pooling blocks")

        def numel(s: tuple[int, ...]) -> int:
            n = 1
            for d in s:
                n *= d
            return n

        self.exits = nn.ModuleDict({f"p{k}": ExitHead(numel(block_shapes[k - 1]), num_classes) for k in positions})
        self.classifier = Classifier(numel(block_shapes[-1]), hidden, num_classes)

        bounds = [0, *positions, len(channels)]
        for a, b in itertools.pairwise(bounds):
            self._segments.append(nn.Sequential(*self.blocks[a:b]))
        self._heads = [*(self.exits[f"p{k}"] for k in positions), self.classifier]
        self.exit_names = (*(f"p{k}" for k in positions), "final")

    def exit_parameter_prefixes(self) -> tuple[str, ...]:
        return ("exits.",)
