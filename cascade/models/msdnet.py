"""Multi-Scale Dense Networks (Huang, Chen, Li, Wu, van der Maaten, Weinberger, "Multi-Scale Dense Networks for
Resource Efficient Image Classification", ICLR 2018), as the reference implementation builds them
(kalviny/MSDNet-PyTorch, ``models/msdnet.py``; its ``args.py`` defaults and README commands give the presets).

The network keeps a feature map at every scale s = 1..S (``n_scales = len(gr_factor)``), each scale half the
resolution of the one before. Notation of the reference: ``n_channels`` (C), ``growth_rate`` (g), the scale
factors ``gr_factor`` (channels at scale s are multiplied by gr_factor[s]) and ``bn_factor`` (bottleneck width
factor), ``n_blocks`` blocks of ``steps`` MSDN layers each:

* **First layer**: scale 1 is ``Conv3x3 -> BN -> ReLU`` (CIFAR; ImageNet: ``Conv7x7/2 -> BN -> ReLU -> MaxPool3/2``)
  with C * gr_factor[1] channels; scale s > 1 is a strided ``Conv3x3/2 -> BN -> ReLU`` of scale s - 1.
* **MSDN layer** with c input channels per unit: scale s concatenates its own input x_s, a "down" convolution of
  x_{s-1} (``[Conv1x1 ->] Conv3x3/2``, g * gr_factor[s] / 2 channels) and a "normal" convolution of x_s
  (``[Conv1x1 ->] Conv3x3``, the other half); the finest scale has only the normal one (g * gr_factor[1]
  channels). The 1x1 bottleneck has min(c_in, bn_factor[s] * c_out) channels. Every convolution is followed by
  BN and ReLU, without bias.
* **Scale pruning** (``prune = "max"``, the reference's default): of L layers in all, layer l keeps
  S - floor((l - 1) / ceil(L / S)) scales; where a layer drops a scale (its input had one more), a **transition**
  (``Conv1x1 -> BN -> ReLU`` per kept scale) compresses the c channels per unit to floor(reduction * c).
  ``prune = "min"`` keeps min(S, L - l + 1) scales and puts transitions after layers floor(L/3) and floor(2L/3).
* **Steps**: block 1 has ``base`` layers; block b > 1 has ``step`` (``step_mode = "even"``) or step * (b - 1) + 1
  (``"lin_grow"``) layers.
* **Classifier** after every block, on the coarsest scale: two ``Conv3x3/2 -> BN -> ReLU`` (``head_channels``
  each; 128 for CIFAR, the input's own channels for ImageNet), ``AvgPool2d(2)``, ``Linear``.

Each block's classifier is an exit: intermediate exits are named ``block1`` .. ``block<n_blocks - 1>``; the last
block's classifier is ``final``. A variant without exits is the last classifier alone (``base``); the blocks
between two chosen exits form one segment. The state passed between segments is the list of feature maps, one per
scale still kept (finest first).

Presets (:data:`PRESETS`, option ``preset``) hold the reference's arguments; any option given beside a preset
overrides it. Initialisation is PyTorch's default, which is what the reference trains with: its ``_init_weights``
visits only each block's direct children (first layer, MSDN layers, transitions) and each classifier module as a
whole, none of which is a convolution, batch norm or linear layer itself, so it changes nothing.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Literal

import torch
from torch import nn

from cascade.models._base import MultiExitModel


@dataclass(frozen=True)
class MSDNetConfig:
    """The reference's architecture arguments (``args.py`` names in the comments)."""

    n_blocks: int = 5  # nBlocks: classifiers
    n_channels: int = 16  # nChannels: channels of the first layer at scale 1
    base: int = 4  # base: MSDN layers of block 1
    step: int = 2  # step
    step_mode: Literal["even", "lin_grow"] = "even"  # stepmode
    growth_rate: int = 6  # growthRate
    gr_factor: tuple[int, ...] = (1, 2, 4)  # grFactor: channel factor per scale (its length is the number of scales)
    bn_factor: tuple[int, ...] = (1, 2, 4)  # bnFactor: bottleneck width factor per scale
    bottleneck: bool = True  # bottleneck: a 1x1 convolution before each 3x3
    prune: Literal["max", "min"] = "max"  # prune: how scales are dropped in the last layers
    reduction: float = 0.5  # reduction: a transition keeps floor(reduction * c) channels per unit (0: none)
    first_layer: Literal["cifar", "imagenet"] = "cifar"  # the first layer's scale-1 convolution
    head_channels: int | None = 128  # channels of the classifiers' two convolutions; None: their input's (ImageNet)

    @property
    def n_scales(self) -> int:
        return len(self.gr_factor)

    @property
    def steps(self) -> list[int]:
        """MSDN layers per block."""
        grow = [self.step if self.step_mode == "even" else self.step * b + 1 for b in range(1, self.n_blocks)]
        return [self.base, *grow]

    def check(self) -> None:
        """Raise ``ValueError`` naming the first impossible value."""
        ints = ("n_blocks", "n_channels", "base", "step", "growth_rate")
        for name in ints:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        for name in ("gr_factor", "bn_factor"):
            value = getattr(self, name)
            if not value or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value):
                raise ValueError(f"{name} must be a non-empty list of integers >= 1, got {list(value)!r}")
        if len(self.bn_factor) != len(self.gr_factor):
            raise ValueError(f"bn_factor has {len(self.bn_factor)} entries, gr_factor {len(self.gr_factor)}")
        if self.step_mode not in ("even", "lin_grow") or self.prune not in ("max", "min"):
            raise ValueError(f"step_mode must be 'even' or 'lin_grow' and prune 'max' or 'min'; got {self!r}")
        if self.first_layer not in ("cifar", "imagenet"):
            raise ValueError(f"first_layer must be 'cifar' or 'imagenet', got {self.first_layer!r}")
        if not 0 <= self.reduction <= 1:
            raise ValueError(f"reduction must be in [0, 1], got {self.reduction!r}")
        if self.head_channels is not None and self.head_channels < 1:
            raise ValueError(f"head_channels must be >= 1 (or absent: the input's), got {self.head_channels}")


#: The reference's configurations (README commands and ``args.py`` defaults), plus one for 28 x 28 grey images.
PRESETS: dict[str, MSDNetConfig] = {
    # CIFAR, anytime prediction: --nBlocks 7 --stepmode even --step 2 --base 4 --nChannels 16 (growthRate 6,
    # grFactor 1-2-4, bnFactor 1-2-4)
    "cifar-anytime": MSDNetConfig(n_blocks=7, step=2, base=4, step_mode="even"),
    # CIFAR, budgeted batch classification: --nBlocks 5 --stepmode lin_grow --step 1 --base 1 --nChannels 16
    "cifar-budget": MSDNetConfig(n_blocks=5, step=1, base=1, step_mode="lin_grow"),
    # ImageNet: --nBlocks 5 --stepmode even --step 4 --base 4 --nChannels 32 --growthRate 16 --grFactor 1-2-4-4
    # --bnFactor 1-2-4-4
    "imagenet": MSDNetConfig(
        n_blocks=5,
        step=4,
        base=4,
        step_mode="even",
        n_channels=32,
        growth_rate=16,
        gr_factor=(1, 2, 4, 4),
        bn_factor=(1, 2, 4, 4),
        first_layer="imagenet",
        head_channels=None,
    ),
    # 28 x 28 grey images on a CPU (ours): four blocks, thinner (scales 28, 14, 7), 32-channel classifiers
    "mnist-small": MSDNetConfig(
        n_blocks=4, step=1, base=2, step_mode="even", n_channels=8, growth_rate=4, head_channels=32
    ),
}


def conv_bn_relu(c_in: int, c_out: int, kernel: int, stride: int, padding: int) -> nn.Sequential:
    """``Conv (no bias) -> BN -> ReLU``: the reference's ``ConvBasic``."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class ScaleConv(nn.Sequential):
    """``[Conv1x1 -> BN -> ReLU ->] Conv3x3 (stride 1 "normal" or 2 "down") -> BN -> ReLU`` (the reference's
    ``ConvBN``); the bottleneck has min(c_in, width * c_out) channels."""

    def __init__(self, c_in: int, c_out: int, *, down: bool, bottleneck: bool, width: int) -> None:
        layers: list[nn.Module] = []
        inner = c_in
        if bottleneck:
            inner = min(c_in, width * c_out)
            layers += list(conv_bn_relu(c_in, inner, 1, 1, 0))
        layers += list(conv_bn_relu(inner, c_out, 3, 2 if down else 1, 1))
        super().__init__(*layers)


class ScaleUnit(nn.Module):
    """One scale of an MSDN layer: ``[x_s, down(x_{s-1}), normal(x_s)]`` concatenated along channels, or
    ``[x_s, normal(x_s)]`` at a layer's finest kept scale with no finer input."""

    def __init__(
        self, c_coarse: int, c_fine: int | None, c_out: int, bottleneck: bool, width_fine: int | None, width: int
    ) -> None:
        super().__init__()
        if c_fine is None:
            self.down = None
            self.normal = ScaleConv(c_coarse, c_out, down=False, bottleneck=bottleneck, width=width)
        else:
            assert width_fine is not None
            self.down = ScaleConv(c_fine, c_out // 2, down=True, bottleneck=bottleneck, width=width_fine)
            self.normal = ScaleConv(c_coarse, c_out // 2, down=False, bottleneck=bottleneck, width=width)

    def forward(self, x: torch.Tensor, finer: torch.Tensor | None = None) -> torch.Tensor:
        if self.down is None:
            return torch.cat([x, self.normal(x)], dim=1)
        assert finer is not None
        return torch.cat([x, self.down(finer), self.normal(x)], dim=1)


class FirstLayer(nn.Module):
    """The input at every scale: scale 1 from the image, scale s from scale s - 1 (stride 2)."""

    def __init__(self, in_channels: int, cfg: MSDNetConfig) -> None:
        super().__init__()
        c1 = cfg.n_channels * cfg.gr_factor[0]
        if cfg.first_layer == "imagenet":  # 7x7/2 with bias, as the reference's ImageNet stem
            stem = nn.Sequential(
                nn.Conv2d(in_channels, c1, 7, 2, 3), nn.BatchNorm2d(c1), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)
            )
        else:
            stem = conv_bn_relu(in_channels, c1, 3, 1, 1)
        self.layers = nn.ModuleList([stem])
        c = c1
        for s in range(1, cfg.n_scales):
            self.layers.append(conv_bn_relu(c, cfg.n_channels * cfg.gr_factor[s], 3, 2, 1))
            c = cfg.n_channels * cfg.gr_factor[s]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        maps = []
        for layer in self.layers:
            x = layer(x)
            maps.append(x)  # scale s: (B, C * gr_factor[s], H / 2^s, W / 2^s)
        return maps


class MSDNLayer(nn.Module):
    """One MSDN layer from ``in_scales`` to ``out_scales`` scales (the coarsest ones are kept)."""

    def __init__(self, c: int, growth: int, cfg: MSDNetConfig, in_scales: int, out_scales: int) -> None:
        super().__init__()
        self.discard = in_scales - out_scales
        offset = cfg.n_scales - out_scales
        self.units = nn.ModuleList()
        gr, bn = cfg.gr_factor, cfg.bn_factor
        for s in range(offset, cfg.n_scales):
            finer = s > offset or self.discard > 0  # a finer input exists for this scale
            self.units.append(
                ScaleUnit(
                    c * gr[s],
                    c * gr[s - 1] if finer else None,
                    growth * gr[s],
                    cfg.bottleneck,
                    bn[s - 1] if finer else None,
                    bn[s],
                )
            )

    def forward(self, maps: list[torch.Tensor]) -> list[torch.Tensor]:
        # maps holds the in_scales coarsest scales; when one is dropped, the first (finest) only feeds "down"
        start = 1 if self.discard > 0 else 0
        out = []
        for i, unit in enumerate(self.units):
            j = start + i
            out.append(unit(maps[j], maps[j - 1] if j > 0 else None))
        return out


class Transition(nn.Module):
    """``Conv1x1 -> BN -> ReLU`` at every kept scale: c * gr_factor[s] -> c' * gr_factor[s] channels."""

    def __init__(self, c_in: int, c_out: int, cfg: MSDNetConfig, out_scales: int) -> None:
        super().__init__()
        offset = cfg.n_scales - out_scales
        self.convs = nn.ModuleList(
            conv_bn_relu(c_in * cfg.gr_factor[s], c_out * cfg.gr_factor[s], 1, 1, 0)
            for s in range(offset, cfg.n_scales)
        )

    def forward(self, maps: list[torch.Tensor]) -> list[torch.Tensor]:
        return [conv(x) for conv, x in zip(self.convs, maps)]


class Block(nn.Sequential):
    """The layers between two classifiers: a list of scale maps in, a list out (the first block takes the image)."""


class Classifier(nn.Module):
    """A block's classifier on the coarsest scale: two ``Conv3x3/2 -> BN -> ReLU``, ``AvgPool2d(2)``, ``Linear``."""

    def __init__(self, c_in: int, inner: int | None, num_classes: int) -> None:
        super().__init__()
        c = c_in if inner is None else inner
        self.convs = nn.Sequential(conv_bn_relu(c_in, c, 3, 2, 1), conv_bn_relu(c, c, 3, 2, 1), nn.AvgPool2d(2))
        self.linear = nn.Linear(c, num_classes)

    def forward(self, maps: list[torch.Tensor]) -> torch.Tensor:
        h = self.convs(maps[-1])  # (B, c, 1, 1) for the presets' input sizes
        return self.linear(torch.flatten(h, 1))  # (B, K)


def build_blocks(cfg: MSDNetConfig, in_channels: int) -> tuple[list[Block], list[int]]:
    """The blocks and, per block, the channels per unit c of its output (the classifier reads c * gr_factor[-1])."""
    steps = cfg.steps
    total = sum(steps)
    blocks, widths = [], []
    c, done = cfg.n_channels, 0
    for b, step in enumerate(steps):
        layers: list[nn.Module] = [FirstLayer(in_channels, cfg)] if b == 0 else []
        for _ in range(step):
            done += 1
            in_scales, out_scales = _scales(cfg, done, total)
            layers.append(MSDNLayer(c, cfg.growth_rate, cfg, in_scales, out_scales))
            c += cfg.growth_rate
            if cfg.reduction > 0 and _transition_after(cfg, done, total, in_scales, out_scales):
                layers.append(Transition(c, math.floor(cfg.reduction * c), cfg, out_scales))
                c = math.floor(cfg.reduction * c)
        blocks.append(Block(*layers))
        widths.append(c)
    return blocks, widths


def _scales(cfg: MSDNetConfig, layer: int, total: int) -> tuple[int, int]:
    """(input scales, output scales) of MSDN layer ``layer`` (1-based) of ``total``."""
    s = cfg.n_scales
    if cfg.prune == "min":
        return min(s, total - layer + 2), min(s, total - layer + 1)
    interval = math.ceil(total / s)
    return s - math.floor(max(0, layer - 2) / interval), s - math.floor((layer - 1) / interval)


def _transition_after(cfg: MSDNetConfig, layer: int, total: int, in_scales: int, out_scales: int) -> bool:
    if cfg.prune == "max":
        return in_scales > out_scales
    return layer in (math.floor(total / 3), math.floor(2 * total / 3))


def parse_exit(position: str, n_blocks: int) -> int:
    """``"block2"`` -> 2 (the classifier after block 2); block 1 .. n_blocks - 1 (the last block's is final)."""
    if not (isinstance(position, str) and position.startswith("block") and position[5:].isdigit()):
        raise ValueError(f"exit position {position!r}: expected 'block<k>' with k in 1..{n_blocks - 1}")
    k = int(position[5:])
    if not 1 <= k < n_blocks:
        raise ValueError(
            f"exit position {position!r}: this MSDNet has classifiers after blocks 1..{n_blocks - 1} "
            f"and its last one (block {n_blocks}) is the final exit"
        )
    return k


def resolve_config(preset: str | None, overrides: dict[str, Any]) -> MSDNetConfig:
    """A preset (default: cifar-anytime's arguments) with ``overrides`` (lists become tuples); checked."""
    if preset is not None and preset not in PRESETS:
        raise ValueError(f"unknown MSDNet preset {preset!r}; presets: {', '.join(PRESETS)}")
    cfg = PRESETS[preset or "cifar-anytime"]
    known = {f.name for f in fields(MSDNetConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown MSDNet option {unknown[0]!r}; options: preset, {', '.join(sorted(known))}")
    values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
    cfg = replace(cfg, **values)
    cfg.check()
    return cfg


class MSDNet(MultiExitModel):
    """MSDNet with classifiers after the blocks named in ``exits`` (``block1`` ...) and after the last block.

    Args:
        preset: one of :data:`PRESETS` (default ``cifar-anytime``'s arguments); the other options override it.
        n_blocks, n_channels, base, step, step_mode, growth_rate, gr_factor, bn_factor, bottleneck, prune,
            reduction, first_layer, head_channels: :class:`MSDNetConfig`.
        num_classes, in_channels, input_size: from the data.
        exits: the intermediate classifiers, ``block<k>``.
    """

    example_exits = ("block1", "block2", "block3")

    def __init__(
        self,
        *,
        preset: str | None = None,
        n_blocks: int | None = None,
        n_channels: int | None = None,
        base: int | None = None,
        step: int | None = None,
        step_mode: str | None = None,
        growth_rate: int | None = None,
        gr_factor: Sequence[int] | None = None,
        bn_factor: Sequence[int] | None = None,
        bottleneck: bool | None = None,
        prune: str | None = None,
        reduction: float | None = None,
        first_layer: str | None = None,
        head_channels: int | None = None,
        num_classes: int = 10,
        in_channels: int = 3,
        input_size: int = 32,
        exits: Sequence[str] = (),
    ) -> None:
        super().__init__()
        given = dict(
            n_blocks=n_blocks,
            n_channels=n_channels,
            base=base,
            step=step,
            step_mode=step_mode,
            growth_rate=growth_rate,
            gr_factor=gr_factor,
            bn_factor=bn_factor,
            bottleneck=bottleneck,
            prune=prune,
            reduction=reduction,
            first_layer=first_layer,
            head_channels=head_channels,
        )
        self.config = cfg = resolve_config(preset, {k: v for k, v in given.items() if v is not None})
        positions = sorted({parse_exit(p, cfg.n_blocks) for p in exits})
        if len(positions) != len(tuple(exits)):
            raise ValueError(f"duplicate exit positions in {tuple(exits)}")
        coarsest = input_size // 2 ** (cfg.n_scales - 1 + (2 if cfg.first_layer == "imagenet" else 0))
        if coarsest < 1:
            raise ValueError(f"input_size {input_size} is too small for {cfg.n_scales} scales")
        self.num_classes = num_classes
        blocks, widths = build_blocks(cfg, in_channels)
        self.blocks = nn.ModuleList(blocks)
        kept = sorted({*(k - 1 for k in positions), cfg.n_blocks - 1})
        self.classifiers = nn.ModuleDict(
            {str(b): Classifier(widths[b] * cfg.gr_factor[-1], cfg.head_channels, num_classes) for b in kept}
        )
        bounds = [0, *(k for k in positions), cfg.n_blocks]
        self._segments = [nn.Sequential(*self.blocks[a:b]) for a, b in itertools.pairwise(bounds)]
        self._heads = [self.classifiers[str(b)] for b in kept]
        self.exit_names = (*(f"block{k}" for k in positions), "final")

    @classmethod
    def check(cls, *, exits: Sequence[Any] = (), **options: Any) -> None:
        """Options and exits checked without building the network (its configuration and the exit names)."""
        preset = options.pop("preset", None)
        for harness in cls.HARNESS_ARGS:
            options.pop(harness, None)
        options.pop("cascading_heads", None)
        cfg = resolve_config(preset, {k: v for k, v in options.items() if v is not None})
        positions = [parse_exit(p, cfg.n_blocks) for p in exits]
        if len(set(positions)) != len(positions):
            raise ValueError(f"duplicate exit positions in {list(exits)}")

    def exit_parameter_prefixes(self) -> tuple[str, ...]:
        last = str(self.config.n_blocks - 1)
        return tuple(f"classifiers.{b}." for b in self.classifiers if b != last)

    def rescale_head_input(self, h: Any, scale: float, rescale: Any) -> Any:
        """Gradient equilibrium on MSDNet (IMTA's ``msdnet_ge.py``): only the coarsest scale, which the classifier
        reads, is rescaled."""
        return [*h[:-1], rescale(h[-1], scale)]

    def describe(self) -> dict[str, Any]:
        """The resolved configuration and the layers per block (for reports and tests)."""
        return {**asdict(self.config), "steps": self.config.steps, "n_scales": self.config.n_scales}
