"""A roofline latency model: what a layer should take on this machine, from what it computes and moves.

MACs alone are the wrong predictor of time: a layer that moves many bytes per MAC (the study CNN's
first block: a few per cent of the MACs, several times that of the time) is limited by memory bandwidth,
and small layers by the cost of dispatching each operator. The model, per layer of a
:class:`bench.measure.cost.Profile` (what actually ran, so a dynamic early exit is predicted from the
operators it really dispatched):

    time = kernels x launch[family] + (ops - kernels) x overhead
           + max(MACs / rate, kernel bytes / bandwidth(bytes per call))          MAC-type kernels
           + max(window elements / pool rate, pooling bytes / bandwidth(...))    pooling
           + other bytes / bandwidth(bytes per call)                             element-wise, movement

* ``rate[family]``: the sustained MAC rate of the layer's kernel family (``conv``: a 3 x 3
  convolution, 64 -> 64 channels; ``conv_thin``: fewer than 8 input channels per group, e.g. a 3 x 3
  stem from 3 channels; ``matmul``: a 256 x 1024 x 1024 matrix product; ``matmul_narrow``: fewer
  than 16 output columns, a classification head, measured as a 1024 -> 10 linear layer on 256 rows),
  measured by :func:`bench.measure.microbench.measure_machine` in the layout the latency runs use (NHWC on
  CPU). Convolutions
  take their rate from a curve over the reduction length K = C_in per group x R x S instead
  (:func:`conv_rate`, five convolutions from K = 25 to 1600), in MACs whose taps land on the input:
  kernels skip the zero padding, so taps in the padding are not counted as work (docs/measurements.md
  says what that changed);
* ``pool rate``: elements read per second by a 2 x 2 max-pool (64 x 32 x 28 x 28 input): pooling
  kernels compare every window element and run several times slower per byte than an
  element-wise operator, so bandwidth alone under-predicts them several times over;
* ``bandwidth`` and ``overhead``: fitted together on the same machine as the straight line
  ``t = overhead + bytes / bandwidth`` through the times of an element-wise operator (ReLU) on
  tensors of 256 to 4 M elements (least squares on relative error); ``bandwidth(bytes per call)``:
  the same operator's effective bandwidth measured from 2 KB to 134 MB per call
  (:func:`memory_seconds`);
* ``launch[family]``: the fixed cost of one MAC-type kernel call of that family (primitive
  selection, packing, thread start-up; several times an element-wise op's), the time of the family's
  benchmark kernel on a tiny input (batch 1, 4 x 4 pixels; a 1 x 16 x 16 matrix product);
* ``bytes``: activations read, parameters read and outputs written (the profile's byte counts);
  ``ops``: operators dispatched (views and allocations left out).

Batch norm and other operators without a MAC-type kernel or pooling window are memory- or
overhead-bound by this formula. A row holds every operator of a module, or of a whole traced segment,
so each class of operator gets its own roofline. The machine's figures are measured and cached by
:mod:`bench.measure.microbench` (per runtime too: another runtime's figures come from the same probes run
through it) and recorded in each run's latency section.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from bench.measure.cost import LayerCost, Profile

FAMILIES = ("conv", "conv_thin", "matmul", "matmul_narrow")
#: the family a record made before a family existed falls back to
FALLBACK = {"matmul_narrow": "matmul", "conv_thin": "conv"}


@dataclass(frozen=True)
class Machine:
    """A machine's roofline figures for one device, thread count and layout."""

    device: str
    threads: int
    channels_last: bool
    torch_version: str
    mac_rate: dict[str, float]  # kernel family -> sustained MACs per second
    bandwidth: float  # bytes per second
    overhead: float  # seconds per dispatched operator
    launch: dict[str, float] = field(default_factory=dict)  # kernel family -> seconds per MAC-type kernel call
    pool_rate: float = 0.0  # pooling-window elements read per second (0: pooling is bandwidth-bound)
    # [bytes moved per call, seconds per call] of the element-wise benchmark from cache to DRAM sizes
    memory_curve: list[list[float]] = field(default_factory=list)
    # [reduction length K, MACs per second on valid taps, MACs per call, batch, output pixels per call, series]
    # of convolutions with K = 25 .. 1600 (CONV_CURVE), in series: 0 at the batch and map of CONV_CURVE, 1, 2, 3 at
    # batch 1 on 28 x 28, 14 x 14 and 7 x 7 maps (older figures: [K, rate] large batches only, or without the
    # last two and batch 1 on CONV_CURVE's map)
    conv_curve: list[list[float]] = field(default_factory=list)
    # [pooling-window elements per call, elements per second] of the max-pool at batch 64 and at batch 1
    pool_curve: list[list[float]] = field(default_factory=list)
    # the runtime the micro-benchmark ran through (bench.measure.runtimes): "eager" (PyTorch), "onnxruntime"
    runtime: str = "eager"
    # seconds per call of the runtime's unit of execution beyond the operators in it (an ORT session's run();
    # 0 in eager, where each operator is its own call and costs ``overhead`` or ``launch``)
    call_overhead: float = 0.0
    # floats per vector the convolution and pooling kernels fill with channels (0: not measured, no factor),
    # from a 1 -> 5 convolution against the 1 -> 32 one at the same reduction length (lane_factor)
    lanes: int = 0
    # the same for the max-pool kernel (0: ``lanes``), from a 2 x 2 pool over 5 channels against 32: eager's NHWC
    # pool runs channels below its vector width in a scalar loop (far slower per element than the convolutions'
    # lanes say; docs/measurements.md); a runtime that pools in NCHW
    # does not care about channels (1)
    pool_lanes: int = 0
    # seconds of one exit decision of a batch-1 cascade, taken in Python floats (cascade.exits.exit_of_one and
    # the one-sample result): no operator the profile counts, yet paid at every exit a sample reaches
    decision: float = 0.0
    # seconds of one nn.Module call beyond its operators (Python: __call__, forward, the container's loop),
    # paid per module a profile saw called (Profile.module_calls); 0 in a runtime that runs an exported graph
    module_call: float = 0.0
    # seconds per call of small kernel calls, measured alone (bench.measure.kernels; keyed by exact call, filled
    # for the calls a prediction meets): a layer whose every kernel call is here takes their times instead of
    # the rates, launch costs and lane factor
    kernel_table: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0  # how long the micro-benchmark took
    allocator: dict[str, Any] = field(default_factory=dict)  # keep_freed_memory() as the benchmark ran
    measured_at: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Machine:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


def memory_seconds(nbytes: float, calls: int, machine: Machine) -> float:
    """Seconds to move ``nbytes`` in ``calls`` operator calls, at the bandwidth measured for that size per call.

    With a measured curve (:attr:`Machine.memory_curve`) the bandwidth is the effective one of the
    element-wise benchmark at the same traffic per call, interpolated in log size and clamped to the
    measured range: a few MB per call stream from cache, tens of MB from DRAM, several times
    slower. Without one: the fitted :attr:`Machine.bandwidth`.
    """
    if nbytes <= 0:
        return 0.0
    # sizes whose time is mostly transfer (3x the per-op overhead or more); smaller ones take the smallest's rate
    points = [(b, b / (t - machine.overhead)) for b, t in machine.memory_curve if t >= 3 * machine.overhead]
    if calls < 1 or len(points) < 2:
        return nbytes / machine.bandwidth
    sizes, bandwidths = zip(*points)
    bandwidth = float(np.interp(np.log(nbytes / calls), np.log(sizes), bandwidths))
    return nbytes / bandwidth


def _by_work(points: list[tuple[float, float]], work: float | None) -> float:
    """The rate at ``work`` per call, interpolated in log work between measured (work, rate) points."""
    points = sorted(points)
    if work is None or len(points) == 1:
        return points[-1][1]
    return float(np.interp(np.log(work), np.log([w for w, _ in points]), [r for _, r in points]))


def conv_rate(reduction: int, machine: Machine, per_call: float | None = None, pixels: float | None = None) -> float:
    """MACs per second of a convolution with reduction length ``reduction`` (= C_in per group x R x S) doing
    ``per_call`` MACs per call on ``pixels`` output pixels per call (None: the large-batch rate).

    Interpolated in log K over each measured series of :attr:`Machine.conv_curve` (the large batch; batch 1
    on 28 x 28, 14 x 14 and 7 x 7 maps), then across the series in log output pixels per call (figures without pixels:
    in log MACs per call between the large batch and batch 1), clamped to the measured ranges: a kernel
    blocks over output pixels, so a convolution on a few pixels per call (a 7 x 7 map at batch 1) runs several
    times slower per MAC than the same one at batch 64.
    """
    series: dict[float, list[list[float]]] = {}
    for point in machine.conv_curve:
        key = point[5] if len(point) >= 6 else float(len(point) >= 4 and point[3] == 1)
        series.setdefault(key, []).append(point)
    by_pixels = pixels is not None and all(len(p) >= 6 for p in machine.conv_curve)

    def at(points: list[list[float]]) -> tuple[float, float]:
        ks = np.log([p[0] for p in points])
        rate = float(np.interp(np.log(reduction), ks, [p[1] for p in points]))
        axis = 4 if by_pixels else 2
        size = float(np.interp(np.log(reduction), ks, [p[axis] if len(p) > axis else 0.0 for p in points]))
        return size, rate

    if len(series) == 1 or per_call is None:
        return at(sorted(series.get(0.0) or series[min(series)]))[1]
    return _by_work([at(sorted(points)) for points in series.values()], pixels if by_pixels else per_call)


def lane_efficiency(channels: int, lanes: int) -> float:
    """Share of vector lanes doing work when ``channels`` are spread over vectors of ``lanes`` floats."""
    if lanes <= 1 or channels <= 0:
        return 1.0
    return channels / (math.ceil(channels / lanes) * lanes)


def lane_factor(by_channels: dict[int, int], machine: Machine, lanes: int | None = None) -> float:
    """How much longer work split by channel count (``{channels: work}``) takes than at full vector use: the
    work-weighted mean of 1 / :func:`lane_efficiency` at ``lanes`` (default the machine's convolution width; 1
    without a measured width or work)."""
    width = machine.lanes if lanes is None else lanes
    total = sum(by_channels.values())
    if not width or not total:
        return 1.0
    return sum(w / lane_efficiency(c, width) for c, w in by_channels.items()) / total


def pool_rate(machine: Machine, per_call: float | None = None) -> float:
    """Pooling-window elements per second at ``per_call`` elements per call (None: the large-batch rate)."""
    if not machine.pool_curve:
        return machine.pool_rate
    return _by_work([(w, r) for w, r in machine.pool_curve], per_call)


def layer_seconds(layer: LayerCost, machine: Machine) -> tuple[float, str]:
    """Predicted seconds of one profiled layer (all its calls) and what bounds it: compute, memory or overhead.

    Each class of operator in the row gets its own roofline: MAC-type kernels max(MACs / rate, their
    bytes / bandwidth), pooling max(window elements / pool rate, its bytes / bandwidth), the rest
    (element-wise, movement) their bytes / bandwidth; the three add up, plus the dispatch costs.
    A traced backbone puts a whole segment in one row, where a single max over the row would hide
    every element-wise operator behind the convolutions.
    """
    macs, calls = layer.family_macs, layer.family_ops
    if layer.mac_type and not macs:  # a row built by hand: its MAC-type work as matmul kernels
        macs, calls = {"matmul": layer.macs - layer.norm_macs}, {"matmul": layer.mac_ops}

    def known(family: str) -> str:  # figures measured before a family existed: its fallback's
        return family if family in machine.mac_rate else FALLBACK.get(family, "matmul")

    total_bytes = layer.input_bytes + layer.weight_bytes + layer.output_bytes
    kernel_bytes, window_bytes = layer.kernel_bytes, layer.window_bytes
    if not kernel_bytes and not window_bytes:  # a row built by hand (one class of operator): all its bytes
        kernel_bytes = total_bytes if layer.mac_type else 0
        window_bytes = total_bytes if layer.window_ops and not layer.mac_type else 0
    kernels = sum(calls.values())
    windows = layer.window_calls or (1 if window_bytes else 0)
    by_reduction = layer.conv_reduction_macs if len(machine.conv_curve) >= 2 else {}
    convs = ("conv", "conv_thin")
    mac_compute = sum(n / machine.mac_rate[known(f)] for f, n in macs.items() if f not in convs)
    conv_calls = layer.conv_reduction_calls
    if by_reduction:  # the rate by reduction length and work per call
        pixels = layer.conv_reduction_pixels
        conv_compute = sum(
            n
            / conv_rate(
                k,
                machine,
                n / conv_calls[k] if conv_calls.get(k) else None,
                pixels[k] / conv_calls[k] if pixels.get(k) and conv_calls.get(k) else None,
            )
            for k, n in by_reduction.items()
        )
    else:
        conv_compute = sum(n / machine.mac_rate[known(f)] for f, n in macs.items() if f in convs)
    mac_compute += conv_compute * lane_factor(layer.conv_channel_macs, machine)
    mac_memory = memory_seconds(kernel_bytes, max(kernels, 1), machine)
    pool = pool_rate(machine, layer.window_ops / layer.window_calls if layer.window_calls else None)
    window_compute = (
        layer.window_ops / pool * lane_factor(layer.window_channels, machine, machine.pool_lanes or machine.lanes)
        if layer.window_ops and pool
        else 0.0
    )
    window_memory = memory_seconds(window_bytes, windows, machine)
    other_memory = memory_seconds(
        total_bytes - kernel_bytes - window_bytes, max(layer.ops - kernels - windows, 1), machine
    )
    roof = max(mac_compute, mac_memory) + max(window_compute, window_memory) + other_memory
    launch = sum(n * machine.launch.get(known(f), machine.overhead) for f, n in calls.items())
    dispatch = launch + (layer.ops - kernels) * machine.overhead
    tabled = _tabled_seconds(layer, machine, kernels + (layer.window_calls if layer.window_ops else 0))
    if tabled is not None:  # every kernel call measured alone: its time, the rest of the row as before
        roof = tabled + other_memory
        dispatch = (layer.ops - kernels - layer.window_calls) * machine.overhead
    compute = (mac_compute if mac_compute >= mac_memory else 0.0) + (
        window_compute if window_compute >= window_memory else 0.0
    )
    bound = "compute" if compute and compute >= roof - compute else "memory"
    if dispatch > roof:
        bound = "overhead"
    return dispatch + roof, bound


def _tabled_seconds(layer: LayerCost, machine: Machine, kernel_calls: int) -> float | None:
    """Seconds of the row's MAC-type and pooling calls from :attr:`Machine.kernel_table`, or None unless the table
    holds every one of them."""
    small = layer.small_kernels
    if not kernel_calls or sum(small.values()) != kernel_calls or any(k not in machine.kernel_table for k in small):
        return None
    return sum(n * machine.kernel_table[k] for k, n in small.items())


@dataclass(frozen=True)
class Prediction:
    """Predicted seconds of a profiled run (the whole profile: every sample of it) and per layer."""

    seconds: float
    samples: int
    layers: list[dict[str, Any]]  # module, seconds, bound

    @property
    def per_sample(self) -> float:
        return self.seconds / self.samples

    def share(self, bound: str) -> float:
        """Share of the predicted time in layers bound by ``bound``."""
        return sum(r["seconds"] for r in self.layers if r["bound"] == bound) / self.seconds if self.seconds else 0.0


def decision_seconds(exit_index: torch.Tensor, machine: Machine) -> float:
    """The batch-1 decisions of a cascade's samples that left at ``exit_index`` (one per exit reached)."""
    return float((exit_index + 1).sum()) * machine.decision


def predict(prof: Profile, machine: Machine) -> Prediction:
    """The roofline prediction of everything a profile counted."""
    rows: list[dict[str, Any]] = []
    total = 0.0
    for layer in prof.layers:
        sec, bound = layer_seconds(layer, machine)
        rows.append({"module": layer.module, "seconds": sec, "bound": bound})
        total += sec
    if prof.module_calls and machine.module_call:
        sec = prof.module_calls * machine.module_call
        rows.append({"module": "(module calls)", "seconds": sec, "bound": "overhead"})
        total += sec
    return Prediction(total, prof.samples, rows)
