"""A buffer-aware DRAM traffic model: what re-fetches when a layer does not fit the global buffer.

The energy model of :mod:`bench.measure.cost` charges DRAM each tensor once (``I + W + O`` words), which
holds only when a layer's inputs, weights and outputs fit in the global buffer together: it is a
lower bound (``ideal``). This module tiles a convolution or linear layer against a buffer of G words
(:class:`bench.config.tables.Hardware`: 108 KB of 16-bit words = 55,296 for Eyeriss) and counts the
DRAM words per operand. A layer is seen as a matrix product of M output channels by K = C R S / groups
reduction terms per output, over the batch's output positions:

* **fits** (I + W + O <= G): every tensor crosses once, as the ideal model says.
* otherwise the cheapest of three loop orders, each keeping half the buffer for one operand's tile
  and half for the data streaming past it:

  - **weights tiled**: m = min(M, floor(G/2 / K)) filters stay in the buffer while every input
    streams past them; inputs are read ceil(M / m) times, weights and outputs once. Impossible when
    one filter (K words) does not fit in G/2.
  - **inputs tiled**: G/2 input words stay while every weight streams past them; weights are read
    ceil(I / (G/2)) times, inputs and outputs once.
  - **outputs tiled**: a tile of p output positions x m output channels (p m <= G/2 partial sums)
    stays while the reduction streams past it; inputs are read ceil(M / m) times, weights
    ceil(P / p) times (P = O / M output positions of the batch), outputs once; m is the best of 1..M.

  Outputs are complete within a tile in every order (each filter sees its whole reduction), so
  they are written once. Halo rows that two input tiles of a convolution share are not counted.

Per-sample traffic divides by the batch: weights re-read per tile are shared by the batch, so a
layer's per-sample DRAM traffic depends on the batch it runs at; report it at a stated batch.

The **buffered energy** of a network (:func:`extra_accesses`, used by ``bench.measure.energy.exit_costs``)
is the ideal model's accesses at the same batch with each convolution's and linear layer's DRAM
traffic replaced by the tiled traffic above, per operand, and every extra word fetched from DRAM
also staged once more in the global buffer (one more GLB access). The array and register-file
levels are those of the ideal model: row-stationary reuse inside the PE array does not depend on
the global buffer's size. When every layer fits, buffered == ideal at that batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class GemmShape:
    """A convolution or linear layer at a batch: words of each operand and the reduction length."""

    batch: int
    inputs: int  # I: input words of the batch
    weights: int  # W
    outputs: int  # O: output words of the batch
    out_channels: int  # M
    reduction: int  # K: weights per output channel (C R S / groups)
    kernel_width: int = 1  # S: filter-row reuse in the array (row-stationary); 1 for linear layers

    @property
    def macs(self) -> int:
        return self.outputs * self.reduction


@dataclass(frozen=True)
class Traffic:
    """DRAM words per operand of one layer at its batch, and the loop order that gave them."""

    order: str  # "fits", "weights tiled" or "inputs tiled"
    inputs: int
    weights: int
    outputs: int
    batch: int

    @property
    def total(self) -> int:
        return self.inputs + self.weights + self.outputs

    @property
    def per_sample(self) -> float:
        return self.total / self.batch


def dram_traffic(shape: GemmShape, buffer_words: int) -> Traffic:
    """DRAM words of one layer with a global buffer of ``buffer_words`` (see the module docstring)."""
    i, w, o, b = shape.inputs, shape.weights, shape.outputs, shape.batch
    if i + w + o <= buffer_words:
        return Traffic("fits", i, w, o, b)
    half = buffer_words // 2
    candidates = [Traffic("inputs tiled", i, w * math.ceil(i / half), o, b)]
    big_m = shape.out_channels
    if shape.reduction <= half:
        m = min(big_m, half // shape.reduction)
        candidates.append(Traffic("weights tiled", i * math.ceil(big_m / m), w, o, b))
    positions = o // big_m
    for m in range(1, big_m + 1):
        p = min(positions, half // m)
        if p < 1:
            break
        candidates.append(Traffic("outputs tiled", i * math.ceil(big_m / m), w * math.ceil(positions / p), o, b))
    return min(candidates, key=lambda t: t.total)


@dataclass(frozen=True)
class MacLayer:
    """A Conv2d or Linear as it ran: its name, the module, and its input and output shapes."""

    name: str
    module: nn.Module
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]


def mac_layers(
    model: nn.Module, example: torch.Tensor, forward: Callable[[torch.Tensor], Any] | None = None
) -> list[MacLayer]:
    """Every Conv2d and Linear that runs when ``model`` (in eval mode) sees ``example``, in order
    (``forward``: what to run instead of ``model(example)``, e.g. ``model.forward_until``)."""
    found: list[MacLayer] = []

    def hook(name: str):  # type: ignore[no-untyped-def]
        def run(mod: nn.Module, args: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
            found.append(MacLayer(name, mod, tuple(args[0].shape), tuple(out.shape)))

        return run

    handles = [
        mod.register_forward_hook(hook(n))
        for n, mod in model.named_modules()
        if isinstance(mod, (nn.Conv2d, nn.Linear))
    ]
    try:
        with torch.no_grad():
            model.eval()
            (forward or model)(example)
    finally:
        for h in handles:
            h.remove()
    return found


def gemm_shapes(
    model: nn.Module, example: torch.Tensor, forward: Callable[[torch.Tensor], Any] | None = None
) -> list[tuple[str, GemmShape]]:
    """(name, shape) of every Conv2d and Linear that runs on ``example`` (its batch is the layers' batch)."""
    out = []
    for layer in mac_layers(model, example, forward):
        weight = layer.module.weight
        assert isinstance(weight, torch.Tensor)
        m = int(weight.shape[0])
        batch = layer.input_shape[0] if len(layer.input_shape) > 1 else 1
        width = int(weight.shape[-1]) if isinstance(layer.module, nn.Conv2d) else 1
        out.append(
            (
                layer.name,
                GemmShape(
                    batch,
                    math.prod(layer.input_shape),
                    weight.numel(),
                    math.prod(layer.output_shape),
                    m,
                    weight.numel() // m,
                    width,
                ),
            )
        )
    return out


OPERANDS = ("inputs", "weights", "psums")


def operand_accesses(shape: GemmShape, buffer_words: int) -> dict[str, dict[str, float]]:
    """Accesses of one layer (its whole batch) per level and operand under the buffer-aware model.

    DRAM: the tiled traffic (:func:`dram_traffic`; partial sums leave as finished outputs, O words).
    GLB: every word fetched from DRAM is staged once (inputs, weights); partial sums 2 O (written,
    read back on their way out). Array: M / S per operand (row-stationary: an operand enters a PE
    once and is reused along a filter row of width S). RF: M per operand (each MAC reads an input and
    a weight and updates a partial sum). M = MACs. Summed over operands, the levels are the ideal
    model's ``layer_accesses`` plus the re-fetched words at DRAM and GLB.
    """
    t = dram_traffic(shape, buffer_words)
    m, s = shape.macs, shape.kernel_width
    return {
        "dram": {"inputs": t.inputs, "weights": t.weights, "psums": t.outputs},
        "glb": {"inputs": t.inputs, "weights": t.weights, "psums": 2 * shape.outputs},
        "array": dict.fromkeys(OPERANDS, m / s),
        "rf": dict.fromkeys(OPERANDS, m),
    }


def extra_accesses(shapes: list[tuple[str, GemmShape]], buffer_words: int) -> dict[str, float]:
    """What the tiled DRAM traffic adds to the ideal model's accesses, per level, for the whole batch:
    DRAM words beyond I + W + O and as many more GLB accesses (each re-fetched word is staged again)."""
    extra = 0
    for _, shape in shapes:
        extra += dram_traffic(shape, buffer_words).total - (shape.inputs + shape.weights + shape.outputs)
    return {"dram": float(extra), "glb": float(extra)}
