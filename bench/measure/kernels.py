"""The small-call kernel table: each MAC-type and pooling kernel a batch-1 path calls, timed alone on this machine.

At batch 1 a kernel's time is not its work at a rate: oneDNN picks a different algorithm for a 1 -> 5
convolution than for 1 -> 32 (the first can be slower in absolute time than the second),
a 5 x 5 convolution on a 7 x 7 map blocks over 49 pixels, and a channel count that is not a multiple of
the vector width changes the kernel. No curve over K and work per call captures that (docs/cost.md, the
roofline model). So a call whose batch is at most :data:`SMALL_BATCH` is keyed by its exact aten
overload, argument shapes, strides and scalar arguments (:func:`kernel_key`, recorded by the cost
counter), and the roofline takes its time from this table: the same call replayed alone on random data
(:func:`measure`), the median of a few repeats, cached per machine like the micro-benchmark's figures.
It is a lookup-table latency model for small calls (as nn-Meter's kernel tables), composed with the
roofline's dispatch, module-call and decision costs for everything else; eager only (another runtime runs
an exported graph whose kernels are not aten calls; its small calls stay on the roofline).
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import time
from collections.abc import Callable, Iterable
from typing import Any

import torch

from bench.measure.cost import Profile
from bench.measure.microbench import cache_file
from bench.measure.roofline import Machine, Prediction, predict
from bench.results.files import atomic_write_bytes

#: part of the table's cache key: times measured by an older way are measured again (2: in their path's order;
#: 3: a repeated call replayed as often as the path makes it, on tensors of its own)
TABLE_VERSION = 3
#: rounds over a path's kernels when the table measures them (each call's median is kept)
CHAIN_ROUNDS = 200


def _tensor(spec: Any, device: torch.device, gen: torch.Generator) -> Any:
    if isinstance(spec, dict) and "t" in spec:
        dtype = getattr(torch, spec["d"])
        out = torch.empty_strided(spec["t"], spec["s"], dtype=dtype, device=device)
        if dtype.is_floating_point:
            out.copy_(torch.randn(out.shape, generator=gen).to(device=device, dtype=dtype))
        return out
    if isinstance(spec, list):
        return [_tensor(s, device, gen) for s in spec]
    return spec


def replay(key: str, device: torch.device | str = "cpu") -> Callable[[], Any]:
    """A call of the kernel ``key`` describes, on random data of the same shapes and strides."""
    name, args, kwargs = json.loads(key)
    func: Any = torch.ops
    for part in name.split("."):
        func = getattr(func, part)
    gen = torch.Generator().manual_seed(0)
    dev = torch.device(device)
    a = [_tensor(s, dev, gen) for s in args]
    kw = {k: _tensor(s, dev, gen) for k, s in kwargs.items()}
    return lambda: func(*a, **kw)


@torch.no_grad()
def measure(keys: Iterable[str], device: torch.device | str = "cpu", rounds: int = CHAIN_ROUNDS) -> dict[str, float]:
    """Median seconds per call of each kernel, replayed in the order given, one after the other, ``rounds`` times
    (after three warm-up rounds), each call timed on its own: a kernel runs after the kernels before it in its
    path, as it does in the network, not back to back with itself, where its weights, code and branch history
    stay warm (docs/measurements.md). A key given several times (a network's repeated layers) is replayed as
    often, each time on tensors of its own, as the network holds a weight per layer: replayed once, the calls
    would share weights that stay in a cache the network's own weights do not fit; its time is the median
    over all its calls."""
    keys = list(keys)
    dev = torch.device(device)
    calls = [replay(key, dev) for key in keys]
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    for _ in range(3):
        for fn in calls:
            fn()
    times: dict[str, list[float]] = {key: [] for key in keys}
    clock = time.perf_counter
    for _ in range(rounds):
        for fn, key in zip(calls, keys):
            t0 = clock()
            fn()
            sync()
            times[key].append(clock() - t0)
    return {key: statistics.median(out) for key, out in times.items()}


def tabled(machine: Machine, keys: Iterable[str], device: torch.device | str = "cpu") -> Machine:
    """``machine`` with the times of ``keys`` in its :attr:`Machine.kernel_table` (measured where neither the
    table nor the cache has them, each missing call timed after the calls before it in ``keys``, the profile's
    order; eager only: another runtime's machine is returned as it is)."""
    if machine.runtime != "eager":
        return machine
    keys = list(keys)
    wanted = set(keys) - set(machine.kernel_table)
    if not wanted:
        return machine
    path = cache_file(
        f"kernels-v{TABLE_VERSION}-{machine.device}-{os.cpu_count()}cpu-t{machine.threads}-torch{machine.torch_version}"
    )
    cached: dict[str, float] = {}
    if path is not None and path.is_file():
        try:
            cached = {k: float(v) for k, v in json.loads(path.read_text()).items()}
        except (ValueError, TypeError, AttributeError):
            cached = {}  # a damaged cache is measured again
    missing = wanted - set(cached)
    new = {k: t for k, t in measure(keys, device).items() if k in missing} if missing else {}
    if new and path is not None:
        try:
            atomic_write_bytes(path, json.dumps({**cached, **new}, indent=0).encode())
        except OSError:
            pass  # a read-only cache: measured again next time
    found = {**cached, **new}
    table = {**machine.kernel_table, **{k: found[k] for k in wanted}}
    return dataclasses.replace(machine, kernel_table=table)


class Predictor:
    """Roofline predictions that fill the kernel table as they meet small calls (:func:`tabled`); ``machine`` ends
    with every call met, as a run records it."""

    def __init__(self, machine: Machine, device: torch.device | str = "cpu") -> None:
        self.machine = machine
        self.device = device

    def predict(self, prof: Profile) -> Prediction:
        # in the order the profile met them, each as often as one sample calls it (a network's repeated layers)
        samples = max(prof.samples, 1)
        keys = [
            k
            for layer in prof.layers
            for k, n in layer.small_kernels.items()
            for _ in range(max(1, round(n / samples)))
        ]
        self.machine = tabled(self.machine, keys, self.device)
        return predict(prof, self.machine)
