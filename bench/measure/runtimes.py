"""Runtimes as an evaluation axis: the same trained network timed in another execution engine.

``[evaluation] runtimes = ["eager", "onnxruntime"]``. ``eager`` is PyTorch as :mod:`bench.measure.latency`
times it (with its roofline prediction). Every other runtime is a registry entry here: how to check
that it is installed (before anything runs), how to prepare the model for it, and what to record.
Each is timed with the eager discipline (warm-up, repeats, full network and dynamic forward in
alternation, medians of per-repeat ratios): every exit path and the real dynamic cascade at every
latency batch size. Its decisions are compared with eager's on every evaluated test sample
(:func:`cascade.ort.agreement`: differing decisions are counted, ties within 1e-6 among them).

Entries of the run record's ``latency.exit_paths`` and ``latency.cascade`` name their runtime
(:class:`bench.results.record.PathTiming`, :class:`~bench.results.record.CascadeTiming`);
``latency.runtimes`` holds each runtime's settings and its agreement with eager.
"""

from __future__ import annotations

import functools
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from bench.config.engines import RUNTIMES
from bench.measure.latency import time_fn, time_pair, timed_samples
from cascade.exits import EarlyExitResult, ExitPolicy
from cascade.models._base import MultiExitModel


@dataclass(frozen=True)
class Prepared:
    """A model made ready in one runtime: the three calls that are timed, on inputs already converted."""

    path: Callable[[Any, int], Any]  # (batch, exit index): every segment and head up to that exit
    full: Callable[[Any], Any]  # the network without early exit
    dynamic: Callable[[Any, ExitPolicy], Any]  # the real early-exit cascade -> EarlyExitResult
    convert: Callable[[torch.Tensor], Any]  # a torch batch -> this runtime's input (outside the timing)
    settings: dict[str, Any]  # what the run file records of the runtime


def _ort_prepare(model: MultiExitModel, x: torch.Tensor) -> Prepared:
    from cascade.ort import OPSET, OrtCascade, SessionSettings, require_ort  # noqa: PLC0415  (optional extra)

    settings = SessionSettings(threads=torch.get_num_threads())
    cascade = OrtCascade.from_model(model, x[:2], settings)
    return Prepared(
        path=cascade.forward_until,
        full=cascade.full,
        dynamic=cascade.dynamic,
        convert=lambda t: np.ascontiguousarray(t.detach().cpu().numpy(), dtype=np.float32),
        settings={
            "onnxruntime": require_ort().__version__,
            "opset": OPSET,
            "threads": settings.threads,
            "graph_optimization": settings.optimization,
            "spinning": settings.spinning,
            "provider": "CPUExecutionProvider",
        },
    )


#: how each built-in runtime of :data:`bench.config.engines.RUNTIMES` other than eager prepares a model
#: (eager is timed by :mod:`bench.measure.latency`; a plugin's entry carries its own ``prepare``)
PREPARE: dict[str, Callable[[MultiExitModel, torch.Tensor], Prepared]] = {"onnxruntime": _ort_prepare}


def check_available(names: Sequence[str]) -> None:
    """Every named runtime is registered and installed (``UnknownNameError`` / ``ImportError`` otherwise)."""
    for name in names:
        RUNTIMES.get(name).check()


def _each(fn: Callable[..., Any], batches: Sequence[Any], *args: Any) -> None:
    for xb in batches:
        fn(xb, *args)


def _time_batches(name: str, prep: Prepared, model: MultiExitModel, batches: Sequence[Any],
                  policies: Sequence[tuple[float | None, ExitPolicy]], *, repeats: int,
                  warmup: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:  # fmt: skip
    """Exit paths on the first batch, then the cascade against the full network over all ``batches``."""
    size, n = len(batches[0]), sum(len(b) for b in batches)
    paths, cascades, times = [], [], {}
    for level, exit_name in enumerate(model.exit_names):
        t = time_fn(functools.partial(prep.path, batches[0], level), repeats=repeats, warmup=warmup)
        times[exit_name] = t.median / size
        paths.append({"runtime": name, "exit": exit_name, "batch_size": size, "per_batch": t.to_dict(),
                      "per_sample_median": t.median / size})  # fmt: skip
    for threshold, policy in policies:
        run = functools.partial(_each, prep.dynamic, batches, policy)
        t, t_full = time_pair(run, functools.partial(_each, prep.full, batches), repeats=repeats, warmup=warmup)
        taken = torch.cat([prep.dynamic(xb, policy).exit_index for xb in batches])
        shares = (torch.bincount(taken, minlength=model.num_exits).float() / len(taken)).tolist()
        cascades.append({
            "runtime": name, "threshold": threshold, "batch_size": size, "samples": n,
            "dynamic": t.to_dict(), "full": t_full.to_dict(), "per_sample_median": t.median / n,
            "speedup_vs_full": statistics.median(f / d for f, d in zip(t_full.samples, t.samples)),
            "exit_share": shares,
            "path_predicted_per_sample": sum(s * times[e] for s, e in zip(shares, model.exit_names)),
        })  # fmt: skip
    return paths, cascades


def _run_converted(prep: Prepared, xb: torch.Tensor, policy: ExitPolicy) -> EarlyExitResult:
    out: EarlyExitResult = prep.dynamic(prep.convert(xb), policy)
    return out


@torch.no_grad()
def runtime_latency(
    name: str,
    model: MultiExitModel,
    x: torch.Tensor,
    policies: Sequence[tuple[float | None, ExitPolicy]],
    *,
    batch_sizes: Sequence[int],
    samples_batch1: int,
    repeats: int,
    warmup: int,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """(exit-path entries, cascade entries, settings with the agreement) of runtime ``name`` on ``x``."""
    from cascade.ort import check_against_eager  # noqa: PLC0415  (optional extra)

    model = model.eval()
    prepare = RUNTIMES.get(name).prepare or PREPARE.get(name)
    if prepare is None:
        raise ValueError(f"runtime {name!r} is timed by bench.measure.latency.latency_report")
    prep = prepare(model, x)
    paths: list[dict[str, Any]] = []
    cascades: list[dict[str, Any]] = []
    for bs in batch_sizes:
        n = timed_samples(len(x), bs, samples_batch1)
        batches = [prep.convert(x[i : i + bs]) for i in range(0, n, bs)]
        timed = _time_batches(name, prep, model, batches, policies, repeats=repeats, warmup=warmup)
        paths += timed[0]
        cascades += timed[1]
    checks = {}
    eager_logits = model(x).logits
    for threshold, policy in policies:  # every evaluated test sample, at the largest batch
        run = functools.partial(_run_converted, prep)
        checks[str(threshold)] = check_against_eager(model, run, x, policy, max(batch_sizes), eager_logits)[0]
    return paths, cascades, {**prep.settings, "agreement_with_eager": checks}
