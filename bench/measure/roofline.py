"""A roofline latency model: what a layer should take on this machine, from what it computes and moves.

MACs alone are the wrong predictor of time: a layer that moves many bytes per MAC (the study CNN's
first block: 3 % of the MACs, 13 % of the time on the 2-core CPU) is limited by memory bandwidth,
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
  measured by :func:`measure_machine` in the layout the latency runs use (NHWC on CPU). Convolutions
  take their rate from a curve over the reduction length K = C_in per group x R x S instead
  (:func:`conv_rate`, five convolutions from K = 25 to 1600), in MACs whose taps land on the input:
  kernels skip the zero padding, so taps in the padding are not counted as work (docs/cost.md,
  "Measurement history", says what that changed);
* ``pool rate``: elements read per second by a 2 x 2 max-pool (64 x 32 x 28 x 28 input): pooling
  kernels compare every window element and run several times slower per byte than an
  element-wise operator, so bandwidth alone under-predicts them (the study CNN's first max-pool:
  about 10x on the 2-core CPU);
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
so each class of operator gets its own roofline. The machine's figures are cached per device, thread
count, layout, torch version and :data:`MODEL_VERSION`
(``$CASCADE_ROOFLINE_CACHE``, default ``~/.cache/cascade-bench/roofline``; ``off`` measures every
time) and recorded in each run's latency section.
"""

from __future__ import annotations

import datetime
import functools
import json
import math
import os
import re
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from bench.measure.cost import LayerCost, Profile, valid_tap_share
from bench.measure.machine import keep_freed_memory
from bench.results.files import atomic_write_bytes
from bench.results.provenance import device_name
from cascade.cache import user_cache
from cascade.exits import MaxProbPolicy, exit_of_one, one_result

CACHE_ENV = "CASCADE_ROOFLINE_CACHE"
FAMILIES = ("conv", "conv_thin", "matmul", "matmul_narrow")
#: the family a record made before a family existed falls back to
FALLBACK = {"matmul_narrow": "matmul", "conv_thin": "conv"}
MODEL_VERSION = 11  # part of the cache key: figures measured by an older micro-benchmark are measured again
#: element counts of the bandwidth / overhead fit (ReLU, float32: 8 bytes moved per element)
FIT_SIZES = tuple(4**k for k in range(4, 12))  # 256 .. 4,194,304
#: convolutions of the MAC-rate curve over reduction length K = C_in x R x S: (C_in, C_out, kernel, pixels,
#: batch); K = 25 (a 1-channel 5 x 5 stem: grey images, where nothing vectorises over input channels),
#: 27 (a 3-channel stem, the ``conv_thin`` rate), 144, 576 (the ``conv`` rate), 1600
CONV_CURVE = ((1, 32, 5, 28, 64), (3, 32, 3, 32, 64), (16, 16, 3, 32, 32), (64, 64, 3, 28, 32), (64, 64, 5, 14, 16))
#: and of the bandwidth-by-size curve, which goes on to DRAM-sized tensors (134 MB moved per call)
CURVE_SIZES = (*FIT_SIZES, 4**12)
RATE_ROUNDS = 2  # rounds over the rate benchmarks; each rate is the fastest round's


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
    # [reduction length K, MACs per second on valid taps, MACs per call, batch] of convolutions with K = 25 ..
    # 1600 (CONV_CURVE), at the batch of CONV_CURVE and at batch 1 (older figures: [K, rate], large batches only)
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
    # seconds of one exit decision of a batch-1 cascade, taken in Python floats (cascade.exits.exit_of_one and
    # the one-sample result): no operator the profile counts, yet paid at every exit a sample reaches
    decision: float = 0.0
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
    measured range: a few MB per call stream from cache, tens of MB from DRAM, three to four times
    slower on the 2-core CPU. Without one: the fitted :attr:`Machine.bandwidth`.
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


def conv_rate(reduction: int, machine: Machine, per_call: float | None = None) -> float:
    """MACs per second of a convolution with reduction length ``reduction`` (= C_in per group x R x S) doing
    ``per_call`` MACs per call (None: the large-batch rate).

    Interpolated in log K over each measured series of :attr:`Machine.conv_curve` (the large batch and
    batch 1), then in log MACs per call between the two, clamped to the measured ranges: a small
    convolution at batch 1 runs several times slower per MAC than the same one at batch 64.
    """
    series: dict[bool, list[list[float]]] = {}
    for point in machine.conv_curve:
        series.setdefault(len(point) == 4 and point[3] == 1, []).append(point)  # batch 1 / larger batches

    def at(points: list[list[float]]) -> tuple[float, float]:
        ks = np.log([p[0] for p in points])
        rate = float(np.interp(np.log(reduction), ks, [p[1] for p in points]))
        work = float(np.interp(np.log(reduction), ks, [p[2] if len(p) == 4 else 0.0 for p in points]))
        return work, rate

    if len(series) == 1 or per_call is None:
        return at(sorted(series.get(False) or series[True]))[1]
    return _by_work([at(sorted(points)) for points in series.values()], per_call)


LANE_WIDTHS = (1, 2, 4, 8, 16, 32)  # the vector widths (floats) a measured lane efficiency is matched to


def lane_efficiency(channels: int, lanes: int) -> float:
    """Share of vector lanes doing work when ``channels`` are spread over vectors of ``lanes`` floats."""
    if lanes <= 1 or channels <= 0:
        return 1.0
    return channels / (math.ceil(channels / lanes) * lanes)


def lane_factor(by_channels: dict[int, int], machine: Machine) -> float:
    """How much longer work split by channel count (``{channels: work}``) takes than at full vector use: the
    work-weighted mean of 1 / :func:`lane_efficiency` (1 without a measured width or work)."""
    total = sum(by_channels.values())
    if not machine.lanes or not total:
        return 1.0
    return sum(w / lane_efficiency(c, machine.lanes) for c, w in by_channels.items()) / total


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
        conv_compute = sum(n / conv_rate(k, machine, n / conv_calls[k] if conv_calls.get(k) else None)
                           for k, n in by_reduction.items())  # fmt: skip
    else:
        conv_compute = sum(n / machine.mac_rate[known(f)] for f, n in macs.items() if f in convs)
    mac_compute += conv_compute * lane_factor(layer.conv_channel_macs, machine)
    mac_memory = memory_seconds(kernel_bytes, max(kernels, 1), machine)
    pool = pool_rate(machine, layer.window_ops / layer.window_calls if layer.window_calls else None)
    window_compute = (
        layer.window_ops / pool * lane_factor(layer.window_channels, machine) if layer.window_ops and pool else 0.0
    )
    window_memory = memory_seconds(window_bytes, windows, machine)
    other_memory = memory_seconds(total_bytes - kernel_bytes - window_bytes,
                                  max(layer.ops - kernels - windows, 1), machine)  # fmt: skip
    roof = max(mac_compute, mac_memory) + max(window_compute, window_memory) + other_memory
    launch = sum(n * machine.launch.get(known(f), machine.overhead) for f, n in calls.items())
    dispatch = launch + (layer.ops - kernels) * machine.overhead
    compute = (mac_compute if mac_compute >= mac_memory else 0.0) + (
        window_compute if window_compute >= window_memory else 0.0
    )
    bound = "compute" if compute and compute >= roof - compute else "memory"
    if dispatch > roof:
        bound = "overhead"
    return dispatch + roof, bound


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
    return Prediction(total, prof.samples, rows)


# --------------------------------------------------------------------------- measuring the machine


def _median_seconds(fn: Callable[[], Any], device: torch.device, min_seconds: float = 0.05, repeats: int = 5) -> float:
    """Median over ``repeats`` of the mean time of ``fn`` over a loop of at least ``min_seconds``."""
    cuda = device.type == "cuda"

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(device)

    fn()
    sync()
    t0 = time.perf_counter()
    fn()
    sync()
    once = max(time.perf_counter() - t0, 1e-7)
    loops = max(1, int(min_seconds / once))
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(loops):
            fn()
        sync()
        out.append((time.perf_counter() - t0) / loops)
    return statistics.median(out)


def fit_overhead_bandwidth(nbytes: list[float], seconds: list[float]) -> tuple[float, float]:
    """(overhead s, bandwidth bytes/s) of ``t = overhead + bytes / bandwidth``, least squares on relative error."""
    b, t = np.asarray(nbytes, float), np.asarray(seconds, float)
    if len(b) < 2 or np.ptp(b) == 0:
        raise ValueError("the fit needs times at two or more different sizes")
    a = np.stack([np.ones_like(b), b], axis=1) / t[:, None]
    (overhead, inv_bw), *_ = np.linalg.lstsq(a, np.ones_like(t), rcond=None)
    if inv_bw <= 0:
        raise ValueError(f"times do not grow with size (slope {inv_bw:.3g} s/byte); the machine is too noisy to fit")
    return max(float(overhead), 0.0), float(1.0 / inv_bw)


#: a runtime's way of timing a module: (module, input) -> a call that runs it once on that input
Runner = Callable[[nn.Module, torch.Tensor], Callable[[], Any]]


def _eager(module: nn.Module, x: torch.Tensor) -> Callable[[], Any]:
    return functools.partial(module, x)


class _MatMul(nn.Module):
    """x @ w as a module (so every runtime can run it)."""

    def __init__(self, w: torch.Tensor) -> None:
        super().__init__()
        self.w = nn.Parameter(w, requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.w


class _Relus(nn.Module):
    """``n`` ReLUs in a row, each on its own copy (a runtime cannot merge them): per-operator cost."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(self.n):
            x = torch.relu(x) - 1.0
        return x


Probe = tuple[str, nn.Module, torch.Tensor, float]  # name, module, input, work per call


def _probes(rnd: Callable[..., torch.Tensor], fmt: torch.memory_format, device: torch.device
            ) -> tuple[list[Probe], dict[str, tuple[nn.Module, torch.Tensor]]]:  # fmt: skip
    """(rate probes: name, module, input, work per call; launch probes: family -> module on a tiny input)."""
    probes: list[Probe] = []
    launch: dict[str, tuple[nn.Module, torch.Tensor]] = {}
    for cin, cout, k, hw, batch in CONV_CURVE:
        conv = nn.Conv2d(cin, cout, k, padding=k // 2).to(device).eval().to(memory_format=fmt)
        valid = valid_tap_share((hw, hw), (k, k), (1, 1), (k // 2, k // 2), (1, 1))  # MACs on real input
        for n in (batch, 1):  # the same convolution at batch 1, where the work per call is small
            x = rnd(n, cin, hw, hw).contiguous(memory_format=fmt)
            probes.append((f"conv{cin * k * k}_b{n}", conv, x, n * hw * hw * cout * cin * k * k * valid))
        family = {(3, 3): "conv_thin", (64, 3): "conv"}.get((cin, k))
        if family:
            launch[family] = (conv, rnd(1, cin, 4, 4).contiguous(memory_format=fmt))
    narrow = nn.Conv2d(1, 5, 5, padding=2).to(device).eval().to(memory_format=fmt)  # lanes: 5 of a vector's floats
    x = rnd(64, 1, 28, 28).contiguous(memory_format=fmt)
    probes.append(
        ("conv25_narrow", narrow, x, 64 * 28 * 28 * 5 * 25 * valid_tap_share((28, 28), (5, 5), (1, 1), (2, 2), (1, 1)))
    )
    a = rnd(256, 1024)
    probes.append(("matmul", _MatMul(rnd(1024, 1024)).to(device), a, 256 * 1024 * 1024))
    launch["matmul"] = (nn.Linear(16, 16).to(device).eval(), rnd(1, 16))
    probes.append(("matmul_narrow", nn.Linear(1024, 10).to(device).eval(), a, 256 * 1024 * 10))
    launch["matmul_narrow"] = (nn.Linear(16, 10).to(device).eval(), rnd(1, 16))
    for n in (64, 1):
        fmap = rnd(n, 32, 28, 28).contiguous(memory_format=fmt)
        probes.append((f"pool_b{n}", nn.MaxPool2d(2), fmap, fmap.numel()))
    return probes, launch


@torch.no_grad()
def measure_machine(device: str | torch.device = "cpu", *, channels_last: bool | None = None,
                    runtime: str = "eager", runner: Runner | None = None) -> Machine:  # fmt: skip
    """The micro-benchmark: MAC rate per kernel family, bandwidth and per-op overhead (a few seconds).

    ``runner`` runs every probe through another runtime (``runtime`` names it; e.g.
    :func:`bench.measure.runtimes.ort_runner`): the element-wise curve is then a one-operator graph per
    size, ``overhead`` the time per operator inside a call (from 1 against 9 chained operator pairs),
    ``call_overhead`` the one-operator graph on one element less ``overhead``, ``launch`` each family's tiny
    kernel less ``call_overhead``.
    """
    device = torch.device(device)
    nhwc = device.type == "cpu" if channels_last is None else channels_last
    fmt = torch.channels_last if nhwc else torch.contiguous_format
    allocator = keep_freed_memory() if device.type == "cpu" else {}
    start = time.perf_counter()
    gen = torch.Generator().manual_seed(0)
    run = runner or _eager

    def rnd(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen).to(device)

    def seconds(fn: Callable[[], Any], min_seconds: float = 0.05) -> float:
        return _median_seconds(fn, device, min_seconds=min_seconds)

    probes, tiny = _probes(rnd, fmt, device)
    # every MAC-type and pooling rate, timed in RATE_ROUNDS interleaved rounds and the fastest kept: noise
    # only ever slows a kernel down (docs/cost.md, "Measurement history")
    timed = [(name, run(module, x)) for name, module, x, _ in probes]
    best: dict[str, float] = {}
    for _ in range(RATE_ROUNDS):
        for name, fn in timed:
            for _ in range(3):  # primitive creation and the first touch of its buffers are not the rate
                fn()
            best[name] = min(best.get(name, math.inf), seconds(fn))
    call = node = 0.0
    if runner:  # inside one call an operator costs the slope of 1 -> 9 chained (relu, subtract) pairs; the call
        # itself, a one-operator graph on one element less that operator
        one, nine = seconds(run(_Relus(1), rnd(16)), 0.02), seconds(run(_Relus(9), rnd(16)), 0.02)
        node = max((nine - one) / 16, 0.0)
        call = max(seconds(run(nn.ReLU(), rnd(1)), 0.02) - node, 0.0)
    launch = {family: max(seconds(run(module, x), 0.02) - call, 0.0) for family, (module, x) in tiny.items()}
    sizes, times = [], []
    for n in CURVE_SIZES:
        x = rnd(n)
        fn = run(nn.ReLU(), x) if runner else functools.partial(torch.relu, x)
        times.append(seconds(fn, 0.02) - call)  # the runtime's call is not the operator's
        sizes.append(8.0 * n)  # 4 bytes read, 4 written
        del x, fn
    fit = len(FIT_SIZES)
    overhead, bandwidth = fit_overhead_bandwidth(sizes[:fit], times[:fit])
    overhead = node if runner else overhead

    logits, policy = rnd(1, 10), MaxProbPolicy(threshold=0.5)
    decision = seconds(lambda: one_result(exit_of_one(policy, logits, {}, last=False)[0] or 0, 0, 2, device), 0.02)

    def rate(name: str, work: float, fixed: float) -> float:
        """Work per second of the probe, its fixed cost per call (as the roofline charges it) taken out; at
        least a tenth of its time is left as the work's, so a noisy fixed cost cannot make a rate infinite."""
        t = best[name] - call
        return work / max(t - fixed, t / 10)

    work = {name: w for name, _, _, w in probes}
    curve = []
    for cin, _, k, _, batch in CONV_CURVE:
        family = "conv_thin" if cin < 8 else "conv"
        for n in (batch, 1):
            name = f"conv{cin * k * k}_b{n}"
            curve.append([cin * k * k, rate(name, work[name], launch[family]), work[name], n])
    large = {int(p[0]): p[1] for p in curve if p[3] > 1}
    efficiency = rate("conv25_narrow", work["conv25_narrow"], launch["conv_thin"]) / large[25]
    lanes = min(LANE_WIDTHS, key=lambda w: abs(lane_efficiency(5, w) - efficiency))
    pools = [[work[f"pool_b{n}"], rate(f"pool_b{n}", work[f"pool_b{n}"], overhead)] for n in (64, 1)]
    return Machine(
        device=device_name(device),
        threads=torch.get_num_threads(),
        channels_last=nhwc,
        torch_version=torch.__version__,
        mac_rate={
            "conv_thin": large[27],
            "conv": large[576],
            "matmul": rate("matmul", work["matmul"], launch["matmul"]),
            "matmul_narrow": rate("matmul_narrow", work["matmul_narrow"], launch["matmul_narrow"]),
        },
        bandwidth=bandwidth,
        overhead=overhead,
        launch=launch,
        pool_rate=pools[0][1],
        pool_curve=pools,
        memory_curve=[[b, t] for b, t in zip(sizes, times)],
        conv_curve=curve,
        runtime=runtime,
        call_overhead=call,
        decision=decision,
        lanes=lanes,
        allocator=allocator,
        seconds=time.perf_counter() - start,
        measured_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    )


def default_cache() -> Path | None:
    return user_cache("roofline", CACHE_ENV)


def machine(device: str | torch.device = "cpu", *, channels_last: bool | None = None, refresh: bool = False,
            runtime: str = "eager", runner: Runner | None = None, version: str = "") -> Machine:  # fmt: skip
    """This machine's figures for the current thread count: from the cache, or measured and cached.

    ``runtime`` / ``runner`` / ``version``: another runtime's figures (:func:`measure_machine`), cached apart
    under its name and version."""
    device = torch.device(device)
    nhwc = device.type == "cpu" if channels_last is None else channels_last
    layout = "nhwc" if nhwc else "nchw"
    kept = "" if device.type != "cpu" or keep_freed_memory().get("kept") else "-trimming"
    engine = "" if runtime == "eager" else f"{runtime}{version}-"
    ident = (f"{engine}{device_name(device)}-{os.cpu_count()}cpu-t{torch.get_num_threads()}-{layout}"
             f"-torch{torch.__version__}-v{MODEL_VERSION}{kept}")  # fmt: skip
    cache = default_cache()
    path = cache / (re.sub(r"[^A-Za-z0-9_.+-]+", "_", ident) + ".json") if cache else None
    if path is not None and path.is_file() and not refresh:
        try:
            return Machine.from_dict(json.loads(path.read_text()))
        except (ValueError, TypeError, KeyError):
            pass  # a damaged cache entry is measured again
    m = measure_machine(device, channels_last=nhwc, runtime=runtime, runner=runner)
    if path is not None:
        try:
            atomic_write_bytes(path, json.dumps(m.to_dict(), indent=1).encode())
        except OSError:
            pass  # a read-only cache: measured again next time
    return m
