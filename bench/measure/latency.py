"""Wall-clock of the real dynamic forward, and measured energy where a counter exists.

Timing follows nanoGPT's ``bench.py`` and pytest-benchmark: warm up, then time
``repeats`` runs, synchronising the device before reading the clock (CUDA
events on GPU), keep the raw samples and report the median and the
inter-quartile range. The thread count is recorded with every timing
(``torch.utils.benchmark.Timer`` defaults to one thread; we use whatever
``torch.get_num_threads()`` says and write it down).

Load: a latency measured while other processes compete for the CPU is not the model's latency.
:class:`LoadMonitor` records the 1-minute load average and the CPU time other processes used (psutil:
machine-wide CPU time minus this process's) in a short idle window before timing and over the whole
timing; the run is marked ``busy`` when they used more than ``max(0.25, (cores - threads) / 2)`` cores,
and the report warns. The exit paths, the full network and the dynamic forward at every threshold are
timed in the same rounds, in order and then reversed (:func:`time_side_by_side`), and the speedup is the
median of the per-round ratios, so a load that comes and goes affects both sides of each ratio alike.

Measured energy: NVML's total-energy counter on NVIDIA GPUs (nvidia-ml-py),
RAPL (``/sys/class/powercap/intel-rapl:*/energy_uj``) on CPUs that expose it.
Where neither is readable the result is ``None`` with a reason, never 0.
"""

from __future__ import annotations

import contextlib
import functools
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil
import torch
from torch import nn

from bench.measure import kernels, microbench, roofline
from bench.measure.allocator import keep_freed_memory
from bench.measure.cost import counting
from bench.measure.devices import device_name
from bench.measure.timing import Timing, TimingSettings, time_rounds
from cascade.exits import ExitPolicy, dynamic_forward
from cascade.inference import ChunkedSegment, FlattenChannelsLast, optimise_for_inference
from cascade.models._base import MultiExitModel


class LoadMonitor:
    """Other processes' CPU use before timing (an idle window) and during it; see the module docstring."""

    def __init__(self, threads: int | None = None) -> None:
        self.cores = psutil.cpu_count() or 1
        self.threads = threads or torch.get_num_threads()
        self.limit = max(0.25, (self.cores - self.threads) / 2)  # other processes' cores that make it "busy"
        self.proc = psutil.Process()

    def _others_cores(self, machine_percent: float, own_percent: float) -> float:
        # machine-wide percent is over all cores; a process's percent is of one core
        return max(0.0, machine_percent / 100 * self.cores - own_percent / 100)

    def before(self, window: float = 0.5) -> dict[str, Any]:
        """Sleep ``window`` seconds and report what other processes used meanwhile."""
        self.start()
        time.sleep(window)
        return {**self.during(), "window_s": window}

    def start(self) -> None:
        psutil.cpu_percent(None)
        self.proc.cpu_percent(None)

    def during(self) -> dict[str, Any]:
        """What other processes used since :meth:`start`."""
        return {
            "others_cores": round(self._others_cores(psutil.cpu_percent(None), self.proc.cpu_percent(None)), 3),
            "loadavg_1min": round(psutil.getloadavg()[0], 2),
        }

    def summary(self, before: dict[str, Any], during: dict[str, Any]) -> dict[str, Any]:
        worst = max(before["others_cores"], during["others_cores"])
        return {
            "cores": self.cores,
            "threads": self.threads,
            "busy_limit_cores": self.limit,
            "before": before,
            "during": during,
            "busy": worst > self.limit,
        }


# --------------------------------------------------------------------------- energy counters


@dataclass
class EnergyReading:
    """Joules measured around a block, or why it could not be measured."""

    joules: float | None = None
    source: str = "unavailable"  # nvml | rapl | unavailable
    reason: str = ""  # why it is unavailable

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Rapl:
    def __init__(self) -> None:
        base = Path("/sys/class/powercap")
        self.files = sorted(
            p / "energy_uj" for p in base.glob("intel-rapl:*") if ":" in p.name and p.name.count(":") == 1
        )
        self.files = [f for f in self.files if f.is_file()]
        if not self.files:
            raise OSError("no RAPL domain under /sys/class/powercap")
        self.read()  # raises PermissionError when not readable

    def read(self) -> float:
        return sum(int(f.read_text()) for f in self.files) / 1e6


class _Nvml:
    def __init__(self, index: int) -> None:
        import pynvml  # noqa: PLC0415  # optional extra [nvml]

        pynvml.nvmlInit()
        self.pynvml = pynvml
        self.handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        self.read()

    def read(self) -> float:
        return self.pynvml.nvmlDeviceGetTotalEnergyConsumption(self.handle) / 1000.0  # mJ -> J


@dataclass
class EnergyMeter:
    """Measures energy of a block with NVML (CUDA) or RAPL (CPU) where available."""

    device: str = "cpu"
    _counter: Any = field(default=None, init=False, repr=False)
    source: str = field(default="unavailable", init=False)
    reason: str = field(default="", init=False)

    def __post_init__(self) -> None:
        dev = torch.device(self.device)
        try:
            if dev.type == "cuda":
                self._counter = _Nvml(dev.index or 0)
                self.source = "nvml"
            else:
                self._counter = _Rapl()
                self.source = "rapl"
        except ImportError:
            self.reason = "nvidia-ml-py is not installed (pip install cascade-bench[nvml])"
        except Exception as e:  # no counter, no permission, driver without the call
            self.reason = f"{type(e).__name__}: {e}"

    @property
    def available(self) -> bool:
        return self._counter is not None

    def measure(self, fn: Callable[[], Any], repeats: int = 1, min_seconds: float = 0.0) -> EnergyReading:
        """Joules per call of ``fn``: at least ``repeats`` calls, and more until ``min_seconds`` have passed.

        Energy counters advance in steps (NVML's every few tens of milliseconds, RAPL's every
        millisecond or so), so a short block is repeated until the clock says enough time has passed
        for the reading to mean something. A counter that did not advance gives ``None`` with the
        reason, never 0 J. The reading is the device's whole energy (idle power included) while
        ``fn`` ran, divided by the number of calls.
        """
        if self._counter is None:
            return EnergyReading(None, "unavailable", self.reason)
        cuda = torch.device(self.device).type == "cuda"
        if cuda:
            torch.cuda.synchronize()
        e0 = self._counter.read()
        t0 = time.perf_counter()
        calls = 0
        while calls < repeats or time.perf_counter() - t0 < min_seconds:
            fn()
            calls += 1
            if cuda and calls >= repeats:
                torch.cuda.synchronize()  # the clock (and the counter read below) must see the work finish
        delta = self._counter.read() - e0
        if delta <= 0:
            return EnergyReading(
                None, self.source, f"the {self.source} counter did not advance in {calls} calls; lengthen the block"
            )
        return EnergyReading(delta / calls, self.source)


# --------------------------------------------------------------------------- multi-exit latency


def _batches(x: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    return [x[i : i + batch_size] for i in range(0, len(x), batch_size)]


def each(fn: Callable[..., Any], batches: Sequence[Any], *args: Any) -> None:
    """``fn(batch, *args)`` for every batch (one timed pass)."""
    for xb in batches:
        fn(xb, *args)


def time_side_by_side(
    path: Callable[[Any, int], Any],
    full: Callable[[Any], Any],
    dynamic: Callable[[Any, ExitPolicy], Any],
    batches: Sequence[Any],
    policies: Sequence[tuple[float | None, ExitPolicy]],
    exit_names: Sequence[str],
    *,
    repeats: int,
    warmup: int,
    device: str | torch.device = "cpu",
    deadline: float | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(exit-path entries, cascade entries): every exit path (``path(batch, level)``), the full network and the
    cascade at every threshold, each a pass over all ``batches``, timed in the same rounds (:func:`time_rounds`).

    Drifting load hits them alike, so the cascade is compared with its own paths (``path_predicted_per_sample``,
    filled in by the caller from the exit shares) and with the full network (``speedup_vs_full``: the median of
    the per-round ratios) measured side by side: on a machine whose speed drifts, paths and cascade timed
    minutes apart differ with nothing changed (docs/measurements.md)."""
    n = sum(len(b) for b in batches)
    fns = [functools.partial(each, path, batches, level) for level in range(len(exit_names))]
    fns.append(functools.partial(each, full, batches))
    fns += [functools.partial(each, dynamic, batches, policy) for _, policy in policies]
    timings = time_rounds(fns, repeats=repeats, warmup=warmup, device=device, deadline=deadline)
    k = len(exit_names)
    t_full = timings[k]
    paths = [path_entry(name, t, batches) for name, t in zip(exit_names, timings[:k])]
    cascades = [
        {
            "threshold": threshold,
            "batch_size": len(batches[0]),
            "samples": n,
            "dynamic": t.to_dict(),
            "full": t_full.to_dict(),
            "per_sample_median": t.median / n,
            # median of the paired per-round ratios, robust to load that comes and goes
            "speedup_vs_full": statistics.median(f / d for f, d in zip(t_full.samples, t.samples)),
        }
        for (threshold, _), t in zip(policies, timings[k + 1 :])
    ]
    return paths, cascades


def path_entry(exit_name: str, t: Timing, batches: Sequence[Any]) -> dict[str, Any]:
    """One exit path's record: its timing per batch (each repeat's pass over ``batches`` divided by their number)
    and the median per sample."""
    n = sum(len(b) for b in batches)
    per_batch = Timing([s / len(batches) for s in t.samples], t.warmup, t.threads, t.device)
    return {
        "exit": exit_name,
        "batch_size": len(batches[0]),
        "per_batch": per_batch.to_dict(),
        "per_sample_median": t.median / n,
    }


@torch.no_grad()
def predicted_per_sample(
    model: nn.Module,
    x: torch.Tensor,
    predictor: kernels.Predictor,
    fn: Callable[[torch.Tensor], Any],
    batch_size: int | None = None,
) -> float:
    """Roofline seconds per sample of ``fn`` over ``x`` in batches (what it dispatches is counted, not assumed)."""
    with counting(model) as prof:
        for xb in _batches(x, batch_size or len(x)):
            fn(xb)
    prof.samples = len(x)
    return predictor.predict(prof).per_sample


def _slicing(model: MultiExitModel) -> dict[str, Any]:
    """What :func:`optimise_for_inference` did beyond folding: memory-order flattens, sliced segments."""
    return {
        "flatten_memory_order": any(isinstance(m, FlattenChannelsLast) for m in model.modules()),
        # per segment: slice size and the batch from which it slices (None: never sliced)
        "segment_slices": [
            {"chunk": s.chunk, "from_batch": s.from_batch} if isinstance(s, ChunkedSegment) else None
            for s in model.exit_segments
        ],
    }


@torch.no_grad()
def _time_batch_size(
    model: MultiExitModel,
    xs: torch.Tensor,
    bs: int,
    policies: Sequence[tuple[float | None, ExitPolicy]],
    roof: kernels.Predictor | None,
    meter: EnergyMeter,
    settings: TimingSettings,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """:func:`latency_report` at one batch size: paths and cascades timed side by side, then counted (exit shares,
    roofline predictions) and, where a counter exists, the energy of each cascade."""
    model.eval()
    batches = _batches(xs, bs)
    run = functools.partial(dynamic_forward, model)
    paths, cascades = time_side_by_side(
        model.forward_until,
        model,
        run,
        batches,
        policies,
        model.exit_names,
        repeats=settings.repeats,
        warmup=settings.warmup,
        device=xs.device,
        deadline=settings.budget.deadline(),
    )
    settings.budget.finish("eager", bs, len(cascades[0]["dynamic"]["samples"]) if cascades else 0, settings.repeats)
    if roof is not None:
        for level, item in enumerate(paths):
            item["roofline_per_sample"] = predicted_per_sample(
                model, xs[:bs], roof, functools.partial(model.forward_until, exit_index=level)
            )
    times = {p["exit"]: p["per_sample_median"] for p in paths}
    for (_, policy), res in zip(policies, cascades):
        # what the per-exit path latencies predict for this mix of exits (implementation overhead check);
        # the same pass, counted, is what the roofline predicts the dynamic forward from
        counted = counting(model) if roof is not None else contextlib.nullcontext()
        with counted as prof:
            counts = torch.zeros(model.num_exits)
            for xb in batches:
                counts += dynamic_forward(model, xb, policy).counts.float().cpu()
        shares = (counts / counts.sum()).tolist()
        res["exit_share"] = shares
        res["path_predicted_per_sample"] = sum(s * times[name] for s, name in zip(shares, model.exit_names))
        if roof is not None and prof is not None:
            prof.samples = len(xs)
            # batch 1 decides in Python floats, outside the profile: one decision per exit a sample reaches
            reached = torch.repeat_interleave(torch.arange(model.num_exits), counts.long()) if bs == 1 else None
            decisions = roofline.decision_seconds(reached, roof.machine) / len(xs) if reached is not None else 0.0
            res["roofline_per_sample"] = roof.predict(prof).per_sample + decisions
            res["roofline_full_per_sample"] = predicted_per_sample(model, xs, roof, model, bs)
        reading = meter.measure(functools.partial(each, run, batches, policy), min_seconds=0.5)
        res["measured_energy_joules_per_sample"] = None if reading.joules is None else reading.joules / len(xs)
        res["measured_energy"] = reading.to_dict()
    return paths, cascades


def timed_samples(total: int, batch: int, samples_batch1: int) -> int:
    """How many test samples are timed at ``batch``: ``samples_batch1`` at batch 1, else all of them up to
    4096 (at least one batch): the one rule, for every runtime."""
    return min(total, samples_batch1 if batch == 1 else max(batch, min(total, 4096)))


def latency_report(
    model: MultiExitModel,
    x: torch.Tensor,
    policies: Sequence[tuple[float | None, ExitPolicy]],
    settings: TimingSettings,
    *,
    optimised: bool = True,
    predict: bool = True,
) -> dict[str, Any]:
    """Per-exit-path and per-threshold latency at every batch size, with provenance.

    With ``predict`` each timed path and cascade also gets its roofline prediction
    (:mod:`bench.measure.roofline`, ``roofline_per_sample``; the machine's figures under ``roofline``).

    With ``optimised`` the timed model is :func:`cascade.inference.optimise_for_inference` of ``model``
    (batch norm folded; NHWC on CPU, with the input converted once, outside the timed region;
    flatten-before-linear in memory order; on CPU, cache-sized batch slices for segments with large
    feature maps), for the full network and the dynamic forward alike; ``layout`` records which. On CPU
    glibc keeps freed memory from here on (:func:`bench.measure.allocator.keep_freed_memory`, ``allocator``).
    """
    allocator = keep_freed_memory() if x.device.type == "cpu" else {}
    meter = EnergyMeter(str(x.device))
    monitor = LoadMonitor() if x.device.type == "cpu" else None
    load_before = monitor.before() if monitor else None
    if monitor:
        monitor.start()
    channels_last = optimised and x.device.type == "cpu" and x.dim() == 4
    if optimised:
        model = optimise_for_inference(model, channels_last=channels_last, example=x[:1])
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
    report: dict[str, Any] = {
        "threads": torch.get_num_threads(),
        "device": device_name(x.device),
        "layout": {"bn_folded": optimised, "channels_last": channels_last, **_slicing(model)},
        "allocator": allocator,
        "measured_energy_source": meter.source,
        "measured_energy_reason": meter.reason,
        "exit_paths": [],
        "cascade": [],
    }
    roof = kernels.Predictor(microbench.machine(x.device, channels_last=channels_last), x.device) if predict else None
    for bs in settings.batch_sizes:
        xs = x[: timed_samples(len(x), bs, settings.samples_batch1)]
        paths, cascades = _time_batch_size(model, xs, bs, policies, roof, meter, settings)
        report["exit_paths"] += paths
        report["cascade"] += cascades
    if roof is not None:  # the figures with every small kernel call the predictions met
        report["roofline"] = roof.machine.to_dict()
    if monitor and load_before is not None:
        report["load"] = monitor.summary(load_before, monitor.during())
    return report
