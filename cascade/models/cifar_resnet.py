"""CIFAR-style ResNets (He et al., "Deep Residual Learning for Image Recognition", CVPR 2016, Sec. 4.2).

For 32x32 inputs: a 3x3 conv with 16 channels, then three stages (``layer1..layer3``) of n basic
blocks with 16, 32 and 64 channels (stride 2 at the start of stages 2 and 3), global average
pooling and a linear classifier: depth = 6n + 2 (resnet20: n = 3, resnet56: n = 9). Shortcuts
that change shape use a 1x1 convolution + BN (the paper's option B; SDN's public ResNet-56 does
the same). Exits attach by module name (``layer1``, ``layer2``, ``layer2.4``, ...) through
:func:`cascade.models.attach.attach_exits`; ``layer3`` is followed only by the classifier.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from cascade.models.attach import AttachedExits


class BasicBlock(nn.Module):
    """``conv3x3 -> BN -> ReLU -> conv3x3 -> BN``, plus the shortcut, then ReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """The plain network (no exits): (B, C, H, W) -> (B, K) logits."""

    def __init__(self, depth: int = 20, *, num_classes: int = 10, in_channels: int = 3, width: int = 16) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"depth must be 6n + 2 with n >= 1 (20, 32, 44, 56, 110), got {depth}")
        if width < 1:
            raise ValueError(f"width must be >= 1, got {width}")
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_channels, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU()
        stages = []
        c_in = width
        for i, c in enumerate((width, 2 * width, 4 * width)):
            blocks = [BasicBlock(c_in if j == 0 else c, c, 2 if (i > 0 and j == 0) else 1) for j in range(n)]
            stages.append(nn.Sequential(*blocks))
            c_in = c
        self.layer1, self.layer2, self.layer3 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4 * width, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))  # (B, 16, H, W)
        x = self.layer3(self.layer2(self.layer1(x)))  # (B, 64, H/4, W/4)
        return self.fc(torch.flatten(self.avgpool(x), 1))  # (B, K)


class CifarResNetExits(AttachedExits):
    """A CIFAR ResNet of ``depth`` with exits after the named modules (``layer1``, ``layer2.4``, ...).

    Args:
        exits: module names after which an exit head sits, in the order they run.
        head: a registered exit head (``linear``, ``conv-linear``, ``mlp``); ``head_options`` its options.
        width: channels of the first stage (16 in the paper).
    """

    depth: ClassVar[int] = 20
    example_exits = ("layer1", "layer2")

    def __init__(
        self,
        *,
        exits: Sequence[str] = (),
        num_classes: int = 10,
        in_channels: int = 3,
        input_size: int = 32,
        head: str = "linear",
        head_options: dict[str, Any] | None = None,
        width: int = 16,
    ) -> None:
        backbone = CifarResNet(self.depth, num_classes=num_classes, in_channels=in_channels, width=width)
        super().__init__(
            backbone,
            list(exits),
            num_classes=num_classes,
            input_shape=(in_channels, input_size, input_size),
            head=head,
            head_options=head_options,
        )


class ResNet20(CifarResNetExits):
    depth = 20


class ResNet56(CifarResNetExits):
    depth = 56
