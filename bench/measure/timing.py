"""Timing primitives: a callable timed after warm-up with the device synchronised before the clock is read (CUDA
events on GPU), the raw samples kept with their median and inter-quartile range (nanoGPT's ``bench.py``,
pytest-benchmark); several callables timed in alternating rounds so that drifting load hits them alike; and the
budget that bounds a run's timing."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from bench.measure.devices import device_name


@dataclass(frozen=True)
class Timing:
    """Raw timing samples (seconds) of one measured callable and their summary."""

    samples: list[float]  # seconds per repeat
    warmup: int  # untimed runs before the samples
    threads: int  # torch.get_num_threads() during the measurement
    device: str  # device name

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def iqr(self) -> float:
        if len(self.samples) < 2:
            return 0.0
        q = statistics.quantiles(self.samples, n=4, method="inclusive")
        return q[2] - q[0]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "median": self.median, "iqr": self.iqr}


def time_fn(fn: Callable[[], Any], *, repeats: int = 5, warmup: int = 1, device: str | torch.device = "cpu") -> Timing:
    """Time ``fn`` (which should do a fixed amount of work) ``repeats`` times after ``warmup`` runs."""
    device = torch.device(device)
    cuda = device.type == "cuda"
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize(device)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize(device)
            samples.append(start.elapsed_time(end) / 1000.0)
        else:
            t0 = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - t0)
    return Timing(samples, warmup, torch.get_num_threads(), device_name(device))


def time_pair(
    fn_a: Callable[[], Any],
    fn_b: Callable[[], Any],
    *,
    repeats: int = 5,
    warmup: int = 1,
    device: str | torch.device = "cpu",
) -> tuple[Timing, Timing]:
    """Time ``fn_a`` and ``fn_b`` in alternation (A B, B A, A B, ...) so that drifting load hits both."""
    a, b = time_rounds([fn_a, fn_b], repeats=repeats, warmup=warmup, device=device)
    return a, b


def time_rounds(
    fns: Sequence[Callable[[], Any]],
    *,
    repeats: int = 5,
    warmup: int = 1,
    device: str | torch.device = "cpu",
    deadline: float | None = None,
) -> list[Timing]:
    """Time every function once per round, in order and then in reverse (A B C, C B A, ...), ``repeats``
    rounds after ``warmup`` rounds: drifting load hits all of them alike. With a ``deadline``
    (``time.perf_counter()`` value), no round starts after it (the first always runs): fewer samples, not a
    longer wait."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    out: list[list[float]] = [[] for _ in fns]
    for i in range(repeats):
        if i > 0 and deadline is not None and time.perf_counter() > deadline:
            break
        order = list(range(len(fns))) if i % 2 == 0 else list(reversed(range(len(fns))))
        for k in order:
            out[k].extend(time_fn(fns[k], repeats=1, warmup=0, device=device).samples)
    name = device_name(device)
    return [Timing(samples, warmup, torch.get_num_threads(), name) for samples in out]


@dataclass
class TimingBudget:
    """The seconds one run's latency timing may take, shared by its stages (each runtime at each batch size).

    A stage's share is what is left, split evenly over the stages left; within it, no timed round starts after
    the share is spent (:func:`time_rounds`), so a slow model or a busy machine gets fewer repeats, never an
    unbounded timing. Every stage times at least one round. ``seconds`` None: no budget."""

    seconds: float | None
    stages: int
    t0: float = field(default_factory=time.perf_counter)
    done: int = 0
    stopped: list[dict[str, Any]] = field(default_factory=list)  # stages that ran fewer rounds than asked

    def deadline(self) -> float | None:
        """When the next stage's share ends (``time.perf_counter()`` scale)."""
        if self.seconds is None:
            return None
        left = max(0.0, self.seconds - (time.perf_counter() - self.t0))
        return time.perf_counter() + left / max(1, self.stages - self.done)

    def finish(self, runtime: str, batch: int, rounds: int, asked: int) -> None:
        self.done += 1
        if rounds < asked:
            self.stopped.append({"runtime": runtime, "batch_size": batch, "rounds": rounds, "asked": asked})

    def to_dict(self) -> dict[str, Any]:
        return {"seconds": self.seconds, "spent": time.perf_counter() - self.t0, "stopped": self.stopped}


@dataclass(frozen=True)
class TimingSettings:
    """How a run's latency is timed, the same for every runtime: the batch sizes, the samples at batch 1, the
    repeats and warm-up rounds, and the budget."""

    batch_sizes: tuple[int, ...]
    samples_batch1: int
    repeats: int
    warmup: int
    budget: TimingBudget = field(default_factory=lambda: TimingBudget(None, 1))
