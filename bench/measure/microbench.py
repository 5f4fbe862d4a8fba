"""The roofline's micro-benchmark: this machine's figures (:class:`bench.measure.roofline.Machine`), measured
in a few seconds, per runtime, and cached.

Each kernel family's MAC rate (convolutions over reduction length K at their batch and at batch 1, the
matrix products), the pooling rate at two sizes, the element-wise bandwidth by size and the per-operator
overhead, each family's launch cost, the vector width that channel counts fill (``lanes``) and the cost of
a batch-1 exit decision; docs/cost.md says what each probe is. With a ``runner`` the probes run through
another runtime (``bench.measure.runtimes.ort_runner``: each probe an ONNX Runtime session), which also
measures that runtime's cost per call. Figures are cached per device, thread count, layout, torch version,
runtime (and its version) and :data:`MODEL_VERSION` (``$CASCADE_ROOFLINE_CACHE``, default
``~/.cache/cascade-bench/roofline``; ``off`` measures every time).
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
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from bench.measure.allocator import keep_freed_memory
from bench.measure.devices import device_name
from bench.measure.operators import valid_tap_share
from bench.measure.roofline import Machine, lane_efficiency
from bench.results.files import atomic_write_bytes
from cascade.cache import user_cache
from cascade.exits import MaxProbPolicy, exit_of_one, one_result

CACHE_ENV = "CASCADE_ROOFLINE_CACHE"
MODEL_VERSION = 15  # part of the cache key: figures measured by an older micro-benchmark are measured again
#: element counts of the bandwidth / overhead fit (ReLU, float32: 8 bytes moved per element)
FIT_SIZES = tuple(4**k for k in range(4, 12))  # 256 .. 4,194,304
#: convolutions of the MAC-rate curve over reduction length K = C_in x R x S: (C_in, C_out, kernel, pixels,
#: batch); K = 25 (a 1-channel 5 x 5 stem: grey images, where nothing vectorises over input channels),
#: 27 (a 3-channel stem, the ``conv_thin`` rate), 144, 576 (the ``conv`` rate), 1600
CONV_CURVE = ((1, 32, 5, 28, 64), (3, 32, 3, 32, 64), (16, 16, 3, 32, 32), (64, 64, 3, 28, 32), (64, 64, 5, 14, 16))
#: and of the bandwidth-by-size curve, which goes on to DRAM-sized tensors (134 MB moved per call)
CURVE_SIZES = (*FIT_SIZES, 4**12)
#: map sides of the curve's batch-1 series (a 28 x 28 input halved twice; 32 x 32 ones come close)
BATCH1_MAPS = (28, 14, 7)
FIT_ATTEMPTS = 3  # element-wise curves measured at most to get one whose times grow with size
RATE_ROUNDS = 2  # rounds over the rate benchmarks; each rate is the fastest round's
LANE_WIDTHS = (1, 2, 4, 8, 16, 32)  # the vector widths (floats) a measured lane efficiency is matched to


def median_seconds(fn: Callable[[], Any], device: torch.device, min_seconds: float = 0.05, repeats: int = 5) -> float:
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


def _conv_sizes(reduction: int, batch: int, side: int) -> list[tuple[str, int, int]]:
    """(probe name, batch, map side) of one convolution of CONV_CURVE in each series of the curve: its own batch
    and map, then batch 1 on each of BATCH1_MAPS (the rate falls with the output pixels per call)."""
    return [(f"conv{reduction}_b{batch}", batch, side), *((f"conv{reduction}_b1s{m}", 1, m) for m in BATCH1_MAPS)]


def _probes(
    rnd: Callable[..., torch.Tensor], fmt: torch.memory_format, device: torch.device
) -> tuple[list[Probe], dict[str, tuple[nn.Module, torch.Tensor]]]:
    """(rate probes: name, module, input, work per call; launch probes: family -> module on a tiny input)."""
    probes: list[Probe] = []
    launch: dict[str, tuple[nn.Module, torch.Tensor]] = {}
    for cin, cout, k, hw, batch in CONV_CURVE:
        conv = nn.Conv2d(cin, cout, k, padding=k // 2).to(device).eval().to(memory_format=fmt)
        for name, n, side in _conv_sizes(cin * k * k, batch, hw):  # at batch 1 and on a small map the call is small
            x = rnd(n, cin, side, side).contiguous(memory_format=fmt)
            share = valid_tap_share((side, side), (k, k), (1, 1), (k // 2, k // 2), (1, 1))  # MACs on real input
            probes.append((name, conv, x, n * side * side * cout * cin * k * k * share))
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
    fmap = rnd(64, 5, 28, 28).contiguous(memory_format=fmt)  # pool lanes: 5 channels against pool_b64's 32
    probes.append(("pool_narrow", nn.MaxPool2d(2), fmap, fmap.numel()))
    return probes, launch


def _call_costs(run: Runner, rnd: Callable[..., torch.Tensor], seconds: Callable[..., float]) -> tuple[float, float]:
    """(seconds per call, per operator inside a call) of a runtime that runs many operators per call: an operator
    costs the slope of 1 -> 9 chained (relu, subtract) pairs; the call, a one-operator graph on one element
    less that operator."""
    one, nine = seconds(run(_Relus(1), rnd(16)), 0.02), seconds(run(_Relus(9), rnd(16)), 0.02)
    node = max((nine - one) / 16, 0.0)
    return max(seconds(run(nn.ReLU(), rnd(1)), 0.02) - node, 0.0), node


#: the module-call probe: a tree of nn.Modules as networks nest them (a Sequential of two Sequentials: convolution,
#: ReLU and max-pool, then flatten and linear: 8 module calls per sample) and how many different samples it runs
MODULE_TREE_CALLS, MODULE_TREE_SAMPLES, MODULE_TREE_ROUNDS = 8, 32, 9


def module_tree(device: torch.device, fmt: torch.memory_format) -> tuple[nn.Module, Callable[[torch.Tensor], Any]]:
    """The module-call probe's tree (:data:`MODULE_TREE_CALLS` module calls per sample) and the same operators
    called as torch functions (the same result on a 1 x 1 x 8 x 8 input)."""
    conv, lin = nn.Conv2d(1, 4, 3, padding=1), nn.Linear(64, 10)
    tree = nn.Sequential(nn.Sequential(conv, nn.ReLU(), nn.MaxPool2d(2)), nn.Sequential(nn.Flatten(), lin))
    tree = tree.eval().to(device).to(memory_format=fmt)

    def functions(x: torch.Tensor) -> torch.Tensor:
        h = torch.max_pool2d(torch.relu(torch.conv2d(x, conv.weight, conv.bias, 1, 1)), 2)
        return nn.functional.linear(h.flatten(1), lin.weight, lin.bias)

    return tree, functions


def _module_call(rnd: Callable[..., torch.Tensor], fmt: torch.memory_format) -> float:
    """Seconds of one nn.Module call beyond its operators, as a network pays it: a small tree of modules
    (:func:`module_tree`) run over :data:`MODULE_TREE_SAMPLES` different 1 x 1 x 8 x 8 inputs less the same
    operators called as torch functions, the two timed in alternating rounds, the median of the rounds'
    differences per module call. A module called in a tight loop on one input costs less than in a network's
    stream of different inputs (docs/measurements.md)."""
    xs = [rnd(1, 1, 8, 8).contiguous(memory_format=fmt) for _ in range(MODULE_TREE_SAMPLES)]
    tree, functions = module_tree(xs[0].device, fmt)

    def modules() -> None:
        for x in xs:
            tree(x)

    def calls() -> None:
        for x in xs:
            functions(x)

    def once(fn: Callable[[], None]) -> float:
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0

    modules()  # first calls: primitive creation, allocations
    calls()
    diffs = []
    for r in range(MODULE_TREE_ROUNDS):
        pair = (modules, calls) if r % 2 == 0 else (calls, modules)
        t = {fn: once(fn) for fn in pair}
        diffs.append((t[modules] - t[calls]) / (MODULE_TREE_CALLS * MODULE_TREE_SAMPLES))
    return max(statistics.median(diffs), 0.0)


def _memory_curve(
    run: Runner | None, rnd: Callable[..., torch.Tensor], seconds: Callable[..., float], call: float
) -> tuple[list[float], list[float]]:
    """(bytes moved, seconds) of ReLU over CURVE_SIZES (eager: ``torch.relu`` itself; a runner: a one-operator
    graph, its call cost taken out)."""
    sizes, times = [], []
    for n in CURVE_SIZES:
        x = rnd(n)
        fn = run(nn.ReLU(), x) if run else functools.partial(torch.relu, x)
        times.append(seconds(fn, 0.02) - call)  # the runtime's call is not the operator's
        sizes.append(8.0 * n)  # 4 bytes read, 4 written
        del x, fn
    return sizes, times


def _fit_memory(
    run: Runner | None, rnd: Callable[..., torch.Tensor], seconds: Callable[..., float], call: float
) -> tuple[list[float], list[float], float, float]:
    """(sizes, seconds, overhead, bandwidth) of the element-wise curve and its fit. A noisy spell can leave the
    small sizes' times out of order (a runner's, after its call cost is taken out, even at or below 0): the
    curve is measured again, up to FIT_ATTEMPTS times, each size keeping its fastest time, and the fit uses
    the sizes with a positive time; ValueError if no attempt fits."""
    sizes, times = _memory_curve(run, rnd, seconds, call)
    fit = len(FIT_SIZES)
    for attempt in range(FIT_ATTEMPTS):
        kept = [(b, t) for b, t in zip(sizes[:fit], times[:fit]) if t > 0]
        try:
            overhead, bandwidth = fit_overhead_bandwidth([b for b, _ in kept], [t for _, t in kept])
            return sizes, times, overhead, bandwidth
        except ValueError:
            if attempt == FIT_ATTEMPTS - 1:
                raise
        times = [min(a, b) for a, b in zip(times, _memory_curve(run, rnd, seconds, call)[1])]
    raise AssertionError("unreachable")


def _width(efficiency: float) -> int:
    """The vector width (floats, of :data:`LANE_WIDTHS`) whose lane efficiency over 5 channels is closest to the
    measured ``efficiency`` (a 5-channel probe's rate over its 32-channel twin's)."""
    return min(LANE_WIDTHS, key=lambda w: abs(lane_efficiency(5, w) - efficiency))


def _rates(
    best: dict[str, float], work: dict[str, float], call: float, launch: dict[str, float], overhead: float
) -> dict[str, Any]:
    """The Machine's rate figures from the probes' best times: MAC rates, the convolution and pooling curves,
    the vector lanes."""

    def rate(name: str, fixed: float) -> float:
        """Work per second of the probe, its fixed cost per call (as the roofline charges it) taken out; at
        least a tenth of its time is left as the work's, so a noisy fixed cost cannot make a rate infinite."""
        t = best[name] - call
        return work[name] / max(t - fixed, t / 10)

    curve = []
    for cin, _, k, hw, batch in CONV_CURVE:
        family = "conv_thin" if cin < 8 else "conv"
        for series, (name, n, side) in enumerate(_conv_sizes(cin * k * k, batch, hw)):
            curve.append([cin * k * k, rate(name, launch[family]), work[name], n, n * side * side, series])
    large = {int(p[0]): p[1] for p in curve if p[5] == 0}
    efficiency = rate("conv25_narrow", launch["conv_thin"]) / large[25]
    pools = [[work[f"pool_b{n}"], rate(f"pool_b{n}", overhead)] for n in (64, 1)]
    pool_efficiency = rate("pool_narrow", overhead) / pools[0][1]
    return {
        "mac_rate": {
            "conv_thin": large[27],
            "conv": large[576],
            "matmul": rate("matmul", launch["matmul"]),
            "matmul_narrow": rate("matmul_narrow", launch["matmul_narrow"]),
        },
        "conv_curve": curve,
        "pool_rate": pools[0][1],
        "pool_curve": pools,
        "lanes": _width(efficiency),
        "pool_lanes": _width(pool_efficiency),
    }


@torch.no_grad()
def measure_machine(
    device: str | torch.device = "cpu",
    *,
    channels_last: bool | None = None,
    runtime: str = "eager",
    runner: Runner | None = None,
    decision: Callable[[], Any] | None = None,
) -> Machine:
    """The micro-benchmark: MAC rate per kernel family, bandwidth and per-op overhead (a few seconds).

    ``runner`` runs every probe through another runtime (``runtime`` names it; its
    :meth:`cascade.runtime.Runtime.probe`): the element-wise curve is then a one-operator graph per
    size, ``overhead`` the time per operator inside a call (from 1 against 9 chained operator pairs),
    ``call_overhead`` the one-operator graph on one element less ``overhead``, ``launch`` each family's tiny
    kernel less ``call_overhead``. ``decision``: one batch-1 exit decision as the runtime takes it
    (:meth:`cascade.runtime.Runtime.decision_probe`; its call overhead taken out), instead of the decision in Python
    floats between calls.
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
        return median_seconds(fn, device, min_seconds=min_seconds)

    probes, tiny = _probes(rnd, fmt, device)
    # every MAC-type and pooling rate, timed in RATE_ROUNDS interleaved rounds and the fastest kept: noise
    # only ever slows a kernel down (docs/measurements.md)
    timed = [(name, run(module, x)) for name, module, x, _ in probes]
    best: dict[str, float] = {}
    for _ in range(RATE_ROUNDS):
        for name, fn in timed:
            for _ in range(3):  # primitive creation and the first touch of its buffers are not the rate
                fn()
            best[name] = min(best.get(name, math.inf), seconds(fn))
    call, node = _call_costs(run, rnd, seconds) if runner else (0.0, 0.0)
    launch = {family: max(seconds(run(module, x), 0.02) - call, 0.0) for family, (module, x) in tiny.items()}
    sizes, times, overhead, bandwidth = _fit_memory(run if runner else None, rnd, seconds, call)
    overhead = node if runner else overhead

    logits, policy = rnd(1, 10), MaxProbPolicy(threshold=0.5)
    if decision is None:
        one = seconds(lambda: one_result(exit_of_one(policy, logits, {}, last=False)[0] or 0, 0, 2, device), 0.02)
    else:
        one = max(seconds(decision, 0.02) - call, 0.0)
    module_call = 0.0 if runner else _module_call(rnd, fmt)

    figures = _rates(best, {name: w for name, _, _, w in probes}, call, launch, overhead)
    return Machine(
        device=device_name(device),
        threads=torch.get_num_threads(),
        channels_last=nhwc,
        torch_version=torch.__version__,
        bandwidth=bandwidth,
        overhead=overhead,
        launch=launch,
        memory_curve=[[b, t] for b, t in zip(sizes, times)],
        runtime=runtime,
        call_overhead=call,
        decision=one,
        module_call=module_call,
        **figures,
        allocator=allocator,
        seconds=time.perf_counter() - start,
        measured_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    )


def default_cache() -> Path | None:
    return user_cache("roofline", CACHE_ENV)


def cache_file(ident: str) -> Path | None:
    """The cache file named ``ident`` (characters outside ``A-Za-z0-9_.+-`` as ``_``), or None without a cache."""
    cache = default_cache()
    return cache / (re.sub(r"[^A-Za-z0-9_.+-]+", "_", ident) + ".json") if cache else None


def machine(
    device: str | torch.device = "cpu",
    *,
    channels_last: bool | None = None,
    refresh: bool = False,
    runtime: str = "eager",
    runner: Runner | None = None,
    version: str = "",
    decision: Callable[[], Any] | None = None,
) -> Machine:
    """This machine's figures for the current thread count: from the cache, or measured and cached.

    ``runtime`` / ``runner`` / ``version`` / ``decision``: another runtime's figures (:func:`measure_machine`),
    cached apart under its name and version."""
    device = torch.device(device)
    nhwc = device.type == "cpu" if channels_last is None else channels_last
    layout = "nhwc" if nhwc else "nchw"
    kept = "" if device.type != "cpu" or keep_freed_memory().get("kept") else "-trimming"
    engine = "" if runtime == "eager" else f"{runtime}{version}-"
    ident = (
        f"{engine}{device_name(device)}-{os.cpu_count()}cpu-t{torch.get_num_threads()}-{layout}"
        f"-torch{torch.__version__}-v{MODEL_VERSION}{kept}"
    )
    path = cache_file(ident)
    if path is not None and path.is_file() and not refresh:
        try:
            return Machine.from_dict(json.loads(path.read_text()))
        except (ValueError, TypeError, KeyError):
            pass  # a damaged cache entry is measured again
    m = measure_machine(device, channels_last=nhwc, runtime=runtime, runner=runner, decision=decision)
    if path is not None:
        try:
            atomic_write_bytes(path, json.dumps(m.to_dict(), indent=1).encode())
        except OSError:
            pass  # a read-only cache: measured again next time
    return m
