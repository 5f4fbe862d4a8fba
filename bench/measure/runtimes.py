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

Each runtime has its own roofline (:mod:`bench.measure.roofline`): the same micro-benchmark run through
the runtime (:func:`ort_runner`: each probe exported and run as an ORT session), cached per machine,
thread count and runtime version. A timed path or cascade is predicted from what the eager pass on a
batch-norm-folded copy dispatches (the same layers, samples and exits) at that runtime's rates, plus
``call_overhead`` per runtime call (ORT: one session run per segment and per head reached).
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from bench.config.engines import RUNTIMES
from bench.measure import microbench, roofline
from bench.measure.cost import counting
from bench.measure.latency import time_side_by_side, timed_samples
from bench.measure.timing import TimingSettings
from cascade.exits import EarlyExitResult, ExitPolicy, dynamic_forward
from cascade.models._base import MultiExitModel


@dataclass(frozen=True)
class Prepared:
    """A model made ready in one runtime: the three calls that are timed, on inputs already converted."""

    path: Callable[[Any, int], Any]  # (batch, exit index): every segment and head up to that exit
    full: Callable[[Any], Any]  # the network without early exit
    dynamic: Callable[[Any, ExitPolicy], Any]  # the real early-exit cascade -> EarlyExitResult
    convert: Callable[[torch.Tensor], Any]  # a torch batch -> this runtime's input (outside the timing)
    settings: dict[str, Any]  # what the run file records of the runtime
    # this machine's roofline figures measured through the runtime (None: no prediction)
    machine: Callable[[], roofline.Machine] | None = None


def ort_runner(threads: int) -> microbench.Runner:
    """How ONNX Runtime runs a micro-benchmark probe: the module exported once and run as an inference session
    with the harness's settings (:class:`cascade.ort.SessionSettings`), on the input as a numpy array."""
    from cascade.ort import SessionSettings, export_piece  # noqa: PLC0415  (optional extra)

    settings = SessionSettings(threads=threads)

    def run(module: torch.nn.Module, x: torch.Tensor) -> Callable[[], Any]:
        (session,) = settings.sessions([export_piece(module.eval(), x)])
        return functools.partial(session.run, None, {"x": np.ascontiguousarray(x.cpu().numpy(), dtype=np.float32)})

    return run


def _ort_prepare(model: MultiExitModel, x: torch.Tensor) -> Prepared:
    from cascade.ort import OPSET, PROVIDER, OrtCascade, SessionSettings, require_ort  # noqa: PLC0415  (optional)

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
            "provider": PROVIDER,
        },
        machine=lambda: microbench.machine(
            "cpu",
            channels_last=False,
            runtime="onnxruntime",
            version=require_ort().__version__,
            runner=ort_runner(settings.threads),
        ),
    )


#: how each built-in runtime of :data:`bench.config.engines.RUNTIMES` other than eager prepares a model
#: (eager is timed by :mod:`bench.measure.latency`; a plugin's entry carries its own ``prepare``)
PREPARE: dict[str, Callable[[MultiExitModel, torch.Tensor], Prepared]] = {"onnxruntime": _ort_prepare}


def check_available(names: Sequence[str]) -> None:
    """Every named runtime is registered and installed (``UnknownNameError`` / ``ImportError`` otherwise)."""
    for name in names:
        RUNTIMES.get(name).check()


def _time_batches(
    name: str,
    prep: Prepared,
    model: MultiExitModel,
    batches: Sequence[Any],
    policies: Sequence[tuple[float | None, ExitPolicy]],
    settings: TimingSettings,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Exit paths, the full network and the cascades over all ``batches``, side by side as eager's
    (:func:`bench.measure.latency.time_side_by_side`), then each cascade's exit shares."""
    paths, cascades = time_side_by_side(
        prep.path,
        prep.full,
        prep.dynamic,
        batches,
        policies,
        model.exit_names,
        repeats=settings.repeats,
        warmup=settings.warmup,
        deadline=settings.budget.deadline(),
    )
    rounds = len(cascades[0]["dynamic"]["samples"]) if cascades else 0
    settings.budget.finish(name, len(batches[0]) if batches else 0, rounds, settings.repeats)
    times = {p["exit"]: p["per_sample_median"] for p in paths}
    for (_, policy), entry in zip(policies, cascades):
        taken = torch.cat([prep.dynamic(xb, policy).exit_index for xb in batches])
        shares = (torch.bincount(taken, minlength=model.num_exits).float() / len(taken)).tolist()
        entry["exit_share"] = shares
        entry["path_predicted_per_sample"] = sum(s * times[e] for s, e in zip(shares, model.exit_names))
    return [{"runtime": name, **p} for p in paths], [{"runtime": name, **c} for c in cascades]


class _Predictor:
    """Roofline seconds of a runtime's paths and cascades, from what an eager pass on a batch-norm-folded copy of
    the model dispatches, at the runtime's figures, plus its per-call overhead: one call per segment and per
    head reached (both exported pieces of each exit run as calls of their own)."""

    def __init__(self, model: MultiExitModel, machine: roofline.Machine) -> None:
        self.model = copy.deepcopy(model).eval()
        self.model.fold_batch_norm()  # the exporter folds batch norm into the convolutions
        self.machine = machine

    def _seconds(self, run: Callable[[], Sequence[int | torch.Tensor]], samples: int) -> float:
        """Per sample: ``run`` does the eager pass and returns, per batch, the exit (0-based) it ran to or the exit
        index of each sample, reduced after counting (the runtime runs a segment and a head per exit up to the
        deepest)."""
        with counting(self.model) as prof:
            reached = run()
        deepest = [int(r.max()) if isinstance(r, torch.Tensor) else r for r in reached]
        calls = sum(2 * (level + 1) for level in deepest)
        # a batch of one decides in Python floats, outside the profile (roofline.Machine.decision)
        decisions = sum(
            roofline.decision_seconds(r, self.machine) for r in reached if isinstance(r, torch.Tensor) and len(r) == 1
        )
        seconds = roofline.predict(prof, self.machine).seconds + calls * self.machine.call_overhead + decisions
        return seconds / samples

    def _path_pass(self, x: torch.Tensor, level: int) -> int:
        self.model.forward_until(x, level)
        return level

    def path(self, x: torch.Tensor, level: int) -> float:
        return self._seconds(lambda: [self._path_pass(x, level)], len(x))

    def full(self, batches: Sequence[torch.Tensor]) -> float:
        last = self.model.num_exits - 1
        return self._seconds(lambda: [self._path_pass(b, last) for b in batches], sum(len(b) for b in batches))

    def cascade(self, batches: Sequence[torch.Tensor], policy: ExitPolicy) -> float:
        def run() -> list[int | torch.Tensor]:
            return [dynamic_forward(self.model, b, policy).exit_index for b in batches]

        return self._seconds(run, sum(len(b) for b in batches))


def _run_converted(prep: Prepared, xb: torch.Tensor, policy: ExitPolicy) -> EarlyExitResult:
    out: EarlyExitResult = prep.dynamic(prep.convert(xb), policy)
    return out


@torch.no_grad()
def runtime_latency(
    name: str,
    model: MultiExitModel,
    x: torch.Tensor,
    policies: Sequence[tuple[float | None, ExitPolicy]],
    settings: TimingSettings,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """(exit-path entries, cascade entries, settings with the agreement) of runtime ``name`` on ``x``."""
    from cascade.ort import check_against_eager  # noqa: PLC0415  (optional extra)

    model = model.eval()
    prepare = RUNTIMES.get(name).prepare or PREPARE.get(name)
    if prepare is None:
        raise ValueError(f"runtime {name!r} is timed by bench.measure.latency.latency_report")
    prep = prepare(model, x)
    machine = prep.machine() if prep.machine else None  # measured (or read from the cache) before timing
    predictor = _Predictor(model, machine) if machine else None
    paths: list[dict[str, Any]] = []
    cascades: list[dict[str, Any]] = []
    for bs in settings.batch_sizes:
        n = timed_samples(len(x), bs, settings.samples_batch1)
        chunks = [x[i : i + bs] for i in range(0, n, bs)]
        timed = _time_batches(name, prep, model, [prep.convert(c) for c in chunks], policies, settings)
        if predictor:
            for level, entry in enumerate(timed[0]):
                entry["roofline_per_sample"] = predictor.path(chunks[0], level)
            full = predictor.full(chunks)
            for (_, policy), entry in zip(policies, timed[1]):
                entry["roofline_per_sample"] = predictor.cascade(chunks, policy)
                entry["roofline_full_per_sample"] = full
        paths += timed[0]
        cascades += timed[1]
    checks = {}
    eager_logits = model(x).logits
    for threshold, policy in policies:  # every evaluated test sample, at the largest batch
        run = functools.partial(_run_converted, prep)
        checks[str(threshold)] = check_against_eager(model, run, x, policy, max(settings.batch_sizes), eager_logits)[0]
    figures = {"roofline": machine.to_dict()} if machine else {}
    return paths, cascades, {**prep.settings, **figures, "agreement_with_eager": checks}
