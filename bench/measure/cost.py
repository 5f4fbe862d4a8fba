"""What a network costs: MACs, FLOPs, bytes moved and modelled energy, per layer.

Counting convention, stated once and used everywhere: **one multiply-add is
one MAC and two FLOPs** (fvcore counts "one fused multiply-add" as one flop;
we call that a MAC and report FLOPs = 2 x MACs). MAC-type operators are
convolutions and matrix products (formulas from ``torch.utils.flop_counter``,
halved), attention (below) and inference batch norm (a per-channel scale and
shift, one MAC per element; kept apart as ``norm_macs`` too, since reference
counts such as torchvision's ``_ops`` leave it out). Element-wise and reduction
operators (ReLU, GELU, layer norm, max-pool compares, softmax, the exit
decision) are counted separately as ``other_ops`` (one per element produced or
read), never as MACs.

Attention is counted by the formulas of :mod:`bench.measure.operators`, whichever kernel runs it.

Counting happens at the dispatch level (a ``TorchDispatchMode``): what counts
is what actually ran, so a data-dependent early exit is counted correctly
(fvcore's jit tracing drops an exit head whose output only feeds a Python
``if``). Each operator is attributed to the innermost module running it
(forward hooks keep a module stack). Operators with no formula are listed in
``Profile.unsupported`` with their call counts, never silently counted as 0.

Energy (Eyeriss-style). For a layer with M MACs, I input elements, W weight
elements, O output elements and kernel width S (1 for non-convolutions):

* MAC-type layers (convolution, matrix product):
  - MAC:   M operations
  - RF:    3 M accesses (each MAC reads its input and weight and updates a partial sum)
  - array: 3 M / S (operands enter a PE's register file once and are reused along a
    filter row of width S, row-stationary; partial sums hop once per S MACs)
  - GLB:   I + W + 2 O (inputs and weights staged once, outputs written and read back once)
  - DRAM:  I + W + O (each tensor crosses off-chip once: the layer's working set is
    assumed to fit in the global buffer)
* Other layers (batch norm, pooling, activations, exit decisions) are assumed fused on
  chip with the layer before them: MAC energy for their MACs (batch norm) and GLB
  accesses I + W + O; no DRAM, array or RF accesses.

Energy = sum over levels of accesses x the table's cost per access, plus MACs x
the MAC cost. Tables are TOML data files (``bench/config/energy_tables/``): ``eyeriss``
(normalised: DRAM 200, GLB 6, array 2, RF 1, MAC 1) and ``horowitz45`` (pJ).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import flop_registry

from bench.measure import operators as ops
from bench.measure.kernelkey import SMALL_BATCH, kernel_key
from bench.measure.operators import aten

THIN_CONV_CHANNELS = 8  # convolutions with fewer input channels per group run far below the MAC peak
NARROW_MATMUL_FEATURES = 16  # matrix products with fewer output columns (a 10-class head) run far below it too
BUFFERED_SUFFIX = "_buffered"  # energy-table key suffix of the buffer-aware model (bench.measure.dataflow)
#: Tables every run reports besides the suite's ``energy_table``: the SPEC's absolute-pJ table.
ALWAYS_REPORTED_TABLES = ("horowitz45",)
TOP = "(top)"  # operators that ran outside any module (e.g. the exit decision)


@dataclass
class LayerCost:
    """Cost of one module (summed over its calls) or of the operators outside any module."""

    module: str  # qualified module path ("(top)" for operators outside modules)
    op_type: str  # module class name
    calls: int = 0  # forward calls seen
    macs: int = 0  # multiply-accumulates (1 MAC = 2 FLOPs), batch norm included
    norm_macs: int = 0  # the part of macs that is inference batch norm (scale and shift)
    other_ops: int = 0  # element-wise / reduction / comparison operations (not MACs)
    params: int = 0  # parameters owned directly by the module
    input_bytes: int = 0  # bytes of activations read
    weight_bytes: int = 0  # bytes of parameters and buffers read
    output_bytes: int = 0  # bytes written
    input_elems: int = 0
    weight_elems: int = 0
    output_elems: int = 0
    kernel_width: int = 1  # S of the energy model (1 for non-convolutions)
    mac_type: bool = False  # convolution / matrix product (full memory-hierarchy model)
    ops: int = 0  # operators dispatched (views and allocation left out): the roofline's per-op overhead
    mac_ops: int = 0  # of which convolution / matrix-product / attention kernels
    # MACs and kernel calls per kernel family of its MAC-type operators: "conv", "conv_thin" (< 8 input
    # channels per group: stems, depthwise), "matmul" (linear layers, attention) or "matmul_narrow" (< 16
    # output columns: classification heads). A traced backbone's operators all land in one row, so a row
    # can hold several families.
    family_macs: dict[str, int] = field(default_factory=dict)
    family_ops: dict[str, int] = field(default_factory=dict)
    # convolution MACs by reduction length K = input channels per group x kernel area (what a convolution
    # kernel's MAC rate depends on most), counting only the taps that land on the input, not on its zero
    # padding (kernels skip those: a 5 x 5 convolution on 7 x 7 pixels has 31 % of its taps in the padding)
    conv_reduction_macs: dict[int, int] = field(default_factory=dict)
    conv_reduction_calls: dict[int, int] = field(default_factory=dict)  # convolution calls by reduction length
    # output pixels (batch x height x width) of those calls: a convolution on few pixels per call (a 7 x 7 map at
    # batch 1) leaves the kernel little to block over and runs several times slower per MAC (roofline.conv_rate)
    conv_reduction_pixels: dict[int, int] = field(default_factory=dict)
    # convolution MACs (valid taps) by output channels, and pooling-window elements by channels: kernels
    # vectorise over channels, so fewer channels than the vector width waste lanes (roofline.lane_factor)
    conv_channel_macs: dict[int, int] = field(default_factory=dict)
    window_channels: dict[int, int] = field(default_factory=dict)
    # MAC-type and pooling calls on at most kernels.SMALL_BATCH samples, by exact call (bench.measure.kernels:
    # the roofline takes their time from the machine's kernel table)
    small_kernels: dict[str, int] = field(default_factory=dict)
    window_ops: int = 0  # elements read by pooling windows (output elements x window size; also in other_ops)
    window_calls: int = 0  # pooling operators
    # of input + weight + output bytes: those of the MAC-type kernels and of the pooling operators (the
    # roofline bounds each class of operator by its own rate; the rest are element-wise and movement)
    kernel_bytes: int = 0
    window_bytes: int = 0

    @property
    def family(self) -> str:
        """The kernel family with the most MACs ("" without MAC-type operators)."""
        return max(self.family_macs, key=self.family_macs.__getitem__) if self.family_macs else ""

    def add_kernel(self, family: str, macs: int) -> None:
        """Count one MAC-type kernel call of ``family`` doing ``macs`` multiply-accumulates."""
        self.macs += macs
        self.mac_type = True
        self.mac_ops += 1
        self.family_macs[family] = self.family_macs.get(family, 0) + macs
        self.family_ops[family] = self.family_ops.get(family, 0) + 1

    @property
    def flops(self) -> int:
        return 2 * self.macs


@dataclass
class Profile:
    """Per-layer costs of one counted run, plus operators the counter does not know."""

    layers: list[LayerCost]
    unsupported: dict[str, int] = field(default_factory=dict)  # aten op -> calls
    samples: int = 1  # batch size of the counted run(s); per-sample figures divide by it
    # nn.Module calls (containers and parameter-free modules too): eager pays each one in Python beyond its
    # operators (roofline.Machine.module_call); a runtime that runs an exported graph pays none
    module_calls: int = 0

    def total(self, name: str) -> int:
        return sum(getattr(layer, name) for layer in self.layers)

    @property
    def macs(self) -> int:
        return self.total("macs")

    @property
    def flops(self) -> int:
        return 2 * self.macs

    @property
    def params(self) -> int:
        return self.total("params")

    def rows(self) -> list[dict[str, Any]]:
        """Per-layer rows as plain dicts (for DataFrames and JSON)."""
        out = []
        for layer in self.layers:
            row = asdict(layer)
            row["flops"] = layer.flops
            out.append(row)
        return out

    def to_frame(self) -> pd.DataFrame:
        cols = [
            "module",
            "op_type",
            "calls",
            "macs",
            "flops",
            "other_ops",
            "params",
            "input_bytes",
            "weight_bytes",
            "output_bytes",
        ]
        return pd.DataFrame(self.rows(), columns=cols)

    def totals(self) -> dict[str, int]:
        keys = ("macs", "norm_macs", "other_ops", "params", "input_bytes", "weight_bytes", "output_bytes")
        out = {k: self.total(k) for k in keys}
        out["flops"] = 2 * out["macs"]
        return out


def _numel_bytes(tensors: Sequence[torch.Tensor]) -> tuple[int, int]:
    return sum(t.numel() for t in tensors), sum(t.numel() * t.element_size() for t in tensors)


class _CostMode(TorchDispatchMode):
    def __init__(self, weights: set[int], stack: list[str], layers: dict[str, LayerCost]) -> None:
        super().__init__()
        self.weights = weights
        self.stack = stack
        self.layers = layers
        self.unsupported: Counter[str] = Counter()

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        packet = func.overloadpacket
        if packet in ops.FREE:
            return out
        layer = self.layers[self.stack[-1] if self.stack else TOP]
        layer.ops += 1
        inputs = [a for a in tree_flatten((args, kwargs))[0] if isinstance(a, torch.Tensor)]
        outputs = [o for o in tree_flatten(out)[0] if isinstance(o, torch.Tensor)]
        weights = [t for t in inputs if t.untyped_storage().data_ptr() in self.weights]
        acts = [t for t in inputs if t.untyped_storage().data_ptr() not in self.weights]
        if packet in (aten.index_put_, aten.copy_, aten.fill_, aten.zero_):
            acts = acts[1:] if packet in (aten.index_put_, aten.copy_) else []  # the destination is written, not read
            outputs = [args[0]] if packet is aten.index_put_ else outputs
        n_in, b_in = _numel_bytes(acts)
        n_w, b_w = _numel_bytes(weights)
        n_out, b_out = _numel_bytes(outputs)
        if (packet in ops.CONV or packet in ops.MATMUL or packet in ops.POOL) and outputs and outputs[0].dim() >= 1:
            key = kernel_key(func, args, kwargs) if int(outputs[0].shape[0]) <= SMALL_BATCH else None
            if key is not None:
                layer.small_kernels[key] = layer.small_kernels.get(key, 0) + 1
        if packet in ops.CONV or packet in ops.MATMUL:
            if packet in ops.CONV:
                layer.kernel_width = int(args[1].shape[-1])
                family = "conv_thin" if int(args[1].shape[1]) < THIN_CONV_CHANNELS else "conv"
            else:
                family = "matmul_narrow" if int(out.shape[-1]) < NARROW_MATMUL_FEATURES else "matmul"
            macs = flop_registry[packet](*args, **kwargs, out_val=out) // 2
            layer.add_kernel(family, macs)
            if packet in ops.CONV:
                reduction = math.prod(int(d) for d in args[1].shape[1:])
                valid = round(macs * ops.call_valid_tap_share(packet, args))
                layer.conv_reduction_macs[reduction] = layer.conv_reduction_macs.get(reduction, 0) + valid
                layer.conv_reduction_calls[reduction] = layer.conv_reduction_calls.get(reduction, 0) + 1
                pixels = math.prod(int(d) for d in out.shape) // int(out.shape[1])
                layer.conv_reduction_pixels[reduction] = layer.conv_reduction_pixels.get(reduction, 0) + pixels
                channels = int(args[1].shape[0])
                layer.conv_channel_macs[channels] = layer.conv_channel_macs.get(channels, 0) + valid
            layer.kernel_bytes += b_in + b_w + b_out
        elif packet in ops.SDPA_CAUSAL_ARG:
            layer.add_kernel("matmul", ops.sdpa_call_macs(packet, args, kwargs))
            n_out, b_out = _numel_bytes(outputs[:1])  # log-sum-exp and RNG state are bookkeeping
            layer.kernel_bytes += b_in + b_w + b_out
        elif packet is aten._native_multi_head_attention:
            layer.add_kernel("matmul", ops.mha_macs(args[0], args[1], args[3]))
            layer.kernel_bytes += b_in + b_w + b_out
        elif packet in ops.BATCH_NORM:
            layer.macs += args[0].numel()
            layer.norm_macs += args[0].numel()
            n_out, b_out = _numel_bytes(outputs[:1])  # saved mean/invstd are bookkeeping, not outputs
        elif packet in ops.ELEMENTWISE:
            layer.other_ops += max([n_out, *(t.numel() for t in inputs)])
        elif packet in ops.REDUCTION:
            layer.other_ops += max(t.numel() for t in inputs)
        elif packet in ops.POOL:
            kernel = args[1] if len(args) > 1 else kwargs.get("kernel_size")
            k = list(kernel) if isinstance(kernel, (list, tuple)) else [kernel]
            k = k * 2 if len(k) == 1 else k
            layer.other_ops += outputs[0].numel() * k[0] * k[1]
            layer.window_ops += outputs[0].numel() * k[0] * k[1]
            layer.window_calls += 1
            channels = int(outputs[0].shape[1]) if outputs[0].dim() >= 3 else 1
            layer.window_channels[channels] = layer.window_channels.get(channels, 0) + outputs[0].numel() * k[0] * k[1]
            n_out, b_out = _numel_bytes(outputs[:1])  # max-pool indices are bookkeeping
            layer.window_bytes += b_in + b_w + b_out
        elif packet not in ops.MOVEMENT:
            self.unsupported[str(packet)] += 1
            return out
        layer.input_elems += n_in
        layer.input_bytes += b_in
        layer.weight_elems += n_w
        layer.weight_bytes += b_w
        layer.output_elems += n_out
        layer.output_bytes += b_out
        return out


@contextmanager
def counting(root: nn.Module | None = None) -> Iterator[Profile]:
    """Count everything that runs inside the block; modules are named from ``root``.

    Example::

        with counting(model) as prof:
            dynamic_forward(model, x, policy)
        prof.macs
    """
    names: dict[int, str] = {}
    params: dict[str, int] = {}
    weights: set[int] = set()
    if root is not None:
        for name, mod in root.named_modules():
            names[id(mod)] = name or type(root).__name__
            params[names[id(mod)]] = sum(p.numel() for p in mod.parameters(recurse=False))
        weights = {t.untyped_storage().data_ptr() for t in [*root.parameters(), *root.buffers()]}
    stack: list[str] = []
    order: list[str] = []
    types: dict[str, str] = {}
    layers: dict[str, LayerCost] = defaultdict(lambda: LayerCost("", ""))
    profile = Profile(layers=[])

    def pre(mod: nn.Module, args: Any) -> None:
        profile.module_calls += 1
        name = names.get(id(mod))
        if name is None:
            return
        stack.append(name)
        if name not in types:
            types[name] = type(mod).__name__
            order.append(name)
        layers[name].calls += 1

    def post(mod: nn.Module, args: Any, out: Any) -> None:
        if names.get(id(mod)) is not None and stack:
            stack.pop()

    h1 = nn.modules.module.register_module_forward_pre_hook(pre)
    h2 = nn.modules.module.register_module_forward_hook(post)
    mode = _CostMode(weights, stack, layers)
    try:
        with mode:
            yield profile
    finally:
        h1.remove()
        h2.remove()
    rows = []
    for name in [*order, TOP]:
        if name not in layers:
            continue
        layer = layers[name]
        if name != TOP and (layer.macs or layer.other_ops or layer.input_bytes or layer.output_bytes):
            layer.module, layer.op_type, layer.params = name, types[name], params.get(name, 0)
            rows.append(layer)
        elif name == TOP and (layer.other_ops or layer.input_bytes or layer.output_bytes):
            layer.module, layer.op_type = TOP, "exit decision / glue"
            rows.append(layer)
    profile.layers = rows
    profile.unsupported = dict(mode.unsupported)


@torch.no_grad()
def profile(module: nn.Module, example_input: Any, *, forward: Callable[..., Any] | None = None) -> Profile:
    """Profile any ``nn.Module`` on an example input: per-layer rows and totals.

    Args:
        module: the network (put it in eval mode first for inference figures).
        example_input: a tensor, or a tuple of positional arguments.
        forward: what to run instead of ``module(*inputs)`` (e.g. ``model.forward_until``).

    Returns:
        A :class:`Profile` whose ``samples`` is the example's batch size.
    """
    args = example_input if isinstance(example_input, tuple) else (example_input,)
    fn = forward or module
    with counting(module) as prof:
        fn(*args)
    first = args[0]
    prof.samples = int(first.shape[0]) if isinstance(first, torch.Tensor) and first.dim() > 0 else 1
    return prof


# --------------------------------------------------------------------------- energy


# --------------------------------------------------------------------------- multi-exit models
