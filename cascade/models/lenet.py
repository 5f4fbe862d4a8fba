"""BranchyNet's LeNet (Teerapittayanon, McDanel, Kung, "BranchyNet: Fast Inference via Early Exiting
from Deep Neural Networks", ICPR 2016, arXiv 1709.01686; the network of their code, kunglab/branchynet).

Main path, for 1 x 28 x 28 inputs (chainer's ``cover_all=True`` pooling is ``ceil_mode=True``)::

    conv1 Conv(1, 5, k5, pad 3) -> pool1 MaxPool2 -> relu1      (5, 30, 30) -> (5, 15, 15)
    conv2 Conv(5, 10, k5, pad 3) -> pool2 MaxPool2 -> relu2     (10, 17, 17) -> (10, 9, 9)
    conv3 Conv(10, 20, k5, pad 3) -> pool3 MaxPool2 -> relu3    (20, 11, 11) -> (20, 6, 6) = 720
    fc1 Linear(720, 84) -> fc2 Linear(84, 10)                   (no activation between them, as listed)

B-LeNet's branch sits after ``conv1``: ``MaxPool2 -> ReLU -> Conv(5, 10, k3, pad 1) -> MaxPool2 ->
ReLU -> Linear(640, 10)``, i.e. the ``conv-linear`` exit head with ``channels = 10, pre_pool = true,
batch_norm = false, flatten = true`` (the defaults of this model's ``head_options``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from cascade.models.attach import AttachedExits

BRANCHYNET_HEAD = {"channels": 10, "pre_pool": True, "batch_norm": False, "flatten": True}


class LeNet(nn.Module):
    """The plain BranchyNet LeNet: (B, C, H, W) -> (B, K)."""

    def __init__(self, *, num_classes: int = 10, in_channels: int = 1, input_size: int = 28) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 5, 5, padding=3)
        self.pool1, self.relu1 = nn.MaxPool2d(2, ceil_mode=True), nn.ReLU()
        self.conv2 = nn.Conv2d(5, 10, 5, padding=3)
        self.pool2, self.relu2 = nn.MaxPool2d(2, ceil_mode=True), nn.ReLU()
        self.conv3 = nn.Conv2d(10, 20, 5, padding=3)
        self.pool3, self.relu3 = nn.MaxPool2d(2, ceil_mode=True), nn.ReLU()
        size = input_size
        for _ in range(3):
            size = -(-(size + 2) // 2)  # conv k5 pad 3 adds 2, ceil-mode pooling halves
        self.fc1 = nn.Linear(20 * size * size, 84)
        self.fc2 = nn.Linear(84, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.pool1(self.conv1(x)))  # (B, 5, 15, 15)
        x = self.relu2(self.pool2(self.conv2(x)))  # (B, 10, 9, 9)
        x = self.relu3(self.pool3(self.conv3(x)))  # (B, 20, 6, 6)
        return self.fc2(self.fc1(torch.flatten(x, 1)))  # (B, K)


class BranchyLeNet(AttachedExits):
    """LeNet with exits after the named modules; ``exits = ["conv1"]`` with the default head is B-LeNet."""

    example_exits = ("conv1",)

    def __init__(
        self,
        *,
        exits: Sequence[str] = (),
        num_classes: int = 10,
        in_channels: int = 1,
        input_size: int = 28,
        head: str = "conv-linear",
        head_options: dict[str, Any] | None = None,
    ) -> None:
        backbone = LeNet(num_classes=num_classes, in_channels=in_channels, input_size=input_size)
        options = dict(BRANCHYNET_HEAD) if head == "conv-linear" and head_options is None else head_options
        super().__init__(
            backbone,
            list(exits),
            num_classes=num_classes,
            input_shape=(in_channels, input_size, input_size),
            head=head,
            head_options=options,
        )
