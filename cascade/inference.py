"""Inference engineering: an eval-mode copy of a multi-exit model made fast to time on a CPU.

What is done, and why (the measurements behind each choice: docs/measurements.md):

* **Batch norm folded** into the convolution or linear layer before it (the standard inference
  transformation; the function is the same up to float rounding).
* **Channels-last (NHWC) activations** on a CPU: pooling and small-channel convolutions run several
  times faster in oneDNN than in NCHW.
* **A memory-order flatten** (:class:`FlattenChannelsLast`) before a linear layer on a feature map,
  with the layer's weight columns permuted to match: the standard flatten copies a channels-last map
  into channel-major order first.
* **Cache-sized slices** of the batch (:class:`ChunkedSegment`) for a segment whose largest feature
  map would otherwise stream through DRAM between operators.

The timed copies of :mod:`bench.measure.latency` are made here; MAC counts are always taken on the
unfused model.
"""

from __future__ import annotations

import copy
import itertools

import torch
from torch import fx, nn

from cascade.models._base import MultiExitModel
from cascade.state import State, batch_size, concat, rows


class FlattenChannelsLast(nn.Module):
    """(B, C, H, W) -> (B, H * W * C): flattens in (H, W, C) order, a view of a channels-last map (no copy).

    :func:`optimise_for_inference` puts it in place of ``nn.Flatten`` before a linear
    layer whose weight columns it permutes to (H, W, C) order, so the pair computes the same function.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 2, 3, 1).flatten(1)


class ChunkedSegment(nn.Module):
    """Runs a segment on slices of the batch when its largest feature map would not stay in cache.

    On a CPU, a segment whose feature maps run to tens of MB at the batch size streams each of them
    through DRAM between operators; on slices of :attr:`chunk` samples they stay in cache. The
    function is the same (every operator of an eval-mode segment works per sample), the output one
    state (a tensor, or a list of tensors joined per position).

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

    def forward(self, x: State) -> State:
        batch = batch_size(x)
        # batch < from_batch, unfolded so that batch 1 pays one multiplication, not the properties' Python
        if batch * self.map_bytes < self.above or batch <= (chunk := self.chunk):
            return self.segment(x)
        return concat([self.segment(rows(x, slice(i, i + chunk))) for i in range(0, batch, chunk)])

    def extra_repr(self) -> str:
        return f"map_bytes={self.map_bytes}, above={self.above}, chunk_bytes={self.chunk_bytes} per thread"


#: A segment's batch is sliced when its largest feature map reaches CHUNK_ABOVE bytes: below it the maps
#: stay in the last-level cache anyway and slicing only adds calls.
#: Each slice's largest map fits CHUNK_BYTES per intra-op thread: about a core's L2 cache, where a map
#: written by one operator is still there when the next reads it. Both were chosen with
#: benchmarks/bench_chunking.py (docs/measurements.md).
CHUNK_ABOVE = 16 * 2**20
CHUNK_BYTES = 2 * 2**20


def optimise_for_inference(
    model: MultiExitModel,
    *,
    channels_last: bool | None = None,
    example: torch.Tensor | None = None,
    chunk: bool = True,
) -> MultiExitModel:
    """An eval-mode copy for timing: batch norm folded into the layer before it, optional NHWC layout.

    :meth:`MultiExitModel.fold_batch_norm` folds each ``Conv2d`` followed by ``BatchNorm2d`` (or
    ``Linear`` followed by ``BatchNorm1d``) into one layer, the standard inference transformation.
    The function is the same up to float rounding. ``channels_last`` (default: on CPU) stores
    activations NHWC, which makes pooling and small-channel convolutions several times faster
    on CPUs. With ``channels_last`` and an ``example`` input (one sample or a batch), every
    ``Flatten -> Linear`` that flattens a feature map with more than one pixel flattens it in memory
    order instead (:class:`FlattenChannelsLast`, a view, where the standard flatten
    copies the whole map into channel-major order) and the linear layer's columns are permuted to
    match: the study CNN's p1 exit head loses a copy of 6,272 floats per sample. With an ``example``
    on a CPU and ``chunk``, every segment runs in cache-sized slices of the batch
    (:class:`ChunkedSegment`) when its largest feature map reaches ``CHUNK_ABOVE``
    bytes at the batch it is given (16 MiB: the study CNN's first block from batch 168, ResNet-20's
    stem and layer1 from batch 256), in slices whose largest map fits ``CHUNK_BYTES`` per intra-op
    thread (2 MiB: 20 and 32 samples on one thread, 41 and 64 on two). MAC counts are always taken on
    the unfused model.
    """
    fused = copy.deepcopy(model).eval()
    fused.fold_batch_norm()
    _drop_identities(fused)
    if channels_last is None:
        channels_last = next(fused.parameters()).device.type == "cpu"
    if channels_last:
        fused = fused.to(memory_format=torch.channels_last)
        for part in (*fused.exit_segments, *fused.exit_heads):  # pieces not registered as submodules
            part.to(memory_format=torch.channels_last)
        if example is not None:
            _flatten_in_memory_order(fused, example)
    if example is not None and chunk and next(fused.parameters()).device.type == "cpu":
        _chunk_segments(fused, example)
    return fused


def _drop_identities(model: MultiExitModel) -> None:
    """Remove every ``nn.Identity`` child of an ``nn.Sequential`` (the slots folding left where batch norm was) and
    every call of one in a traced graph (ResNet's identity shortcuts): at batch 1 each is a module call that
    computes nothing but costs a module call's Python (docs/measurements.md). The other
    children keep their names, so profiles and state dicts name the same layers. A Sequential subclass with a
    forward of its own (which may index its children) is left as it is."""
    parts = {id(m): m for part in (model, *model.exit_segments, *model.exit_heads) for m in part.modules()}
    for module in parts.values():
        if isinstance(module, nn.Sequential) and type(module).forward is nn.Sequential.forward:
            for name in [n for n, child in module.named_children() if type(child) is nn.Identity]:
                del module._modules[name]
        elif isinstance(module, fx.GraphModule):
            calls = [
                n
                for n in module.graph.nodes
                if n.op == "call_module" and type(module.get_submodule(str(n.target))) is nn.Identity
            ]
            for node in calls:
                node.replace_all_uses_with(node.args[0])
                module.graph.erase_node(node)
            if calls:
                module.recompile()


@torch.no_grad()
def _chunk_segments(model: MultiExitModel, example: torch.Tensor) -> None:
    """Wrap each segment in a :class:`ChunkedSegment` sized by its largest feature map per sample."""
    h = example[:1] if example.dim() == 4 else example[None]
    for level, segment in enumerate(model.exit_segments):
        largest: list[int] = [0]

        def record(module: nn.Module, args: object, out: object, sizes: list[int] = largest) -> None:
            if isinstance(out, torch.Tensor):
                sizes.append(out.numel() * out.element_size())

        hooks = [m.register_forward_hook(record) for m in segment.modules() if not list(m.children())]
        try:
            h = segment(h)
        finally:
            for hook in hooks:
                hook.remove()
        model.exit_segments[level] = ChunkedSegment(segment, max(largest), above=CHUNK_ABOVE, chunk_bytes=CHUNK_BYTES)


@torch.no_grad()
def _flatten_in_memory_order(model: MultiExitModel, example: torch.Tensor) -> None:
    """Replace each ``Flatten -> Linear`` on a (C, H, W) map by a memory-order flatten and permuted weights."""
    pairs = []
    for module in model.modules():
        if isinstance(module, nn.Sequential):
            children = list(module.named_children())
            for (name, a), (_, b) in itertools.pairwise(children):
                if isinstance(a, nn.Flatten) and (a.start_dim, a.end_dim) == (1, -1) and isinstance(b, nn.Linear):
                    pairs.append((module, name, a, b))
    shapes: dict[int, tuple[int, ...]] = {}
    hooks = [
        flat.register_forward_pre_hook(lambda m, args: shapes.setdefault(id(m), tuple(args[0].shape[1:])) and None)
        for _, _, flat, _ in pairs
    ]
    try:
        model(example if example.dim() == 4 else example[None])
    finally:
        for hook in hooks:
            hook.remove()
    for parent, name, flat, linear in pairs:
        shape = shapes.get(id(flat), ())
        if len(shape) != 3 or shape[1] * shape[2] == 1:  # not run, not a feature map, or nothing to reorder
            continue
        c, h, w = shape
        weight = linear.weight.reshape(linear.out_features, c, h, w).permute(0, 2, 3, 1)
        linear.weight.copy_(weight.reshape(linear.out_features, -1).contiguous())
        setattr(parent, name, FlattenChannelsLast())
