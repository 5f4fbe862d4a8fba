"""Runtimes as an evaluation axis: the same trained network timed in another execution engine.

``[evaluation] runtimes = ["eager", "onnxruntime"]``. ``eager`` is PyTorch as :mod:`bench.measure.latency`
times it (its inference copy, its roofline). Every other runtime, built in or a plugin's, takes one path here:
the :class:`cascade.runtime.Runtime` registered under its name builds the model's pieces, and the cascade is
:func:`cascade.exits.run_cascade`, the loop eager runs too. Each is timed with the eager discipline (warm-up,
repeats, full network and dynamic forward in alternation, medians of per-repeat ratios): every exit path and the
real dynamic cascade at every latency batch size. Its decisions are compared with eager's on every evaluated test
sample (:func:`cascade.agreement.agreement`: differing decisions are counted, ties within 1e-6 among them).

Entries of the run record's ``latency.exit_paths`` and ``latency.cascade`` name their runtime
(:class:`bench.results.record.PathTiming`, :class:`~bench.results.record.CascadeTiming`);
``latency.runtimes`` holds each runtime's settings and its agreement with eager.

A runtime with a probe runner (:meth:`cascade.runtime.Runtime.probe`) has its own roofline
(:mod:`bench.measure.roofline`): the same micro-benchmark run through the runtime, cached per machine, thread count
and runtime version. A timed path or cascade is predicted from what an eager pass on a copy of the model
dispatches (batch norm folded where the runtime folds it; the same layers, samples and exits) at that runtime's
rates, plus ``call_overhead`` per runtime call (:meth:`cascade.runtime.Runtime.calls`; ONNX Runtime: one session
run per segment and per head reached).
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from bench.config.engines import RUNTIMES
from bench.measure import microbench, roofline
from bench.measure.cost import counting
from bench.measure.latency import time_side_by_side, timed_samples
from bench.measure.timing import TimingSettings
from cascade.agreement import check_against_eager
from cascade.exits import EarlyExitResult, ExitPolicy, dynamic_forward
from cascade.models._base import MultiExitModel
from cascade.runtime import Runtime, Served


@dataclass(frozen=True)
class Prepared:
    """A model made ready in one runtime: the three calls that are timed, on inputs already converted."""

    name: str  # the registered name
    runtime: Runtime
    served: Served
    threads: int

    def path(self, x: Any, level: int) -> Any:
        """Every segment and head up to exit ``level`` (what obtaining that exit costs)."""
        return self.served.path(x, level)

    def full(self, x: Any) -> Any:
        """The network without early exit."""
        return self.served.full(x)

    def dynamic(self, x: Any, policy: ExitPolicy) -> EarlyExitResult:
        """The real early-exit cascade (the runtime's own, or the one loop every piecewise runtime shares)."""
        return self.served.dynamic(x, policy)

    def machine(self) -> roofline.Machine | None:
        """This machine's roofline figures measured through the runtime (None: it has no probe runner)."""
        runner = self.runtime.probe(self.threads)
        if runner is None:
            return None
        return microbench.machine(
            "cpu",
            channels_last=False,
            runtime=self.name,
            version=self.runtime.version(),
            runner=runner,
            decision=self.runtime.decision_probe(self.threads),
        )

    def convert(self, x: torch.Tensor) -> Any:
        return self.runtime.convert(x)

    @property
    def settings(self) -> dict[str, Any]:
        """What the run file records of the runtime: its version under its name, then its own settings."""
        return {self.name: self.runtime.version(), **self.runtime.settings(self.threads)}


def load_runtime(name: str) -> Runtime:
    """The runtime object registered as ``name`` (``UnknownNameError`` listing the known ones otherwise)."""
    runtime: Runtime = RUNTIMES.get(name).load()
    return runtime


def check_available(names: Sequence[str]) -> None:
    """Every named runtime is registered and installed (``UnknownNameError`` / ``MissingRuntimeError`` otherwise)."""
    for name in names:
        load_runtime(name).check()


def prepare(name: str, model: MultiExitModel, x: torch.Tensor, policies: Sequence[ExitPolicy] = ()) -> Prepared:
    """``model`` served in runtime ``name`` for batches like ``x`` and ``policies``, with this process's threads."""
    runtime = load_runtime(name)
    runtime.check()
    threads = torch.get_num_threads()
    return Prepared(name, runtime, runtime.serve(model.eval(), x[:2], threads, tuple(policies)), threads)


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
    """Roofline seconds of a runtime's paths and cascades, from what an eager pass on a copy of the model dispatches
    (batch norm folded where the runtime folds it), at the runtime's figures, plus its per-call overhead for the
    calls the runtime makes (:meth:`cascade.runtime.Runtime.calls`)."""

    def __init__(self, model: MultiExitModel, machine: roofline.Machine, runtime: Runtime) -> None:
        self.model = copy.deepcopy(model).eval()
        if runtime.folds_batch_norm:
            self.model.fold_batch_norm()
        self.machine, self.runtime = machine, runtime

    def _seconds(self, run: Callable[[], Sequence[int | torch.Tensor]], samples: int) -> float:
        """Per sample: ``run`` does the eager pass and returns, per batch, the exit (0-based) it ran to or the exit
        index of each sample, reduced after counting (the runtime runs every exit up to the deepest)."""
        with counting(self.model) as prof:
            reached = run()
        deepest = [int(r.max()) if isinstance(r, torch.Tensor) else r for r in reached]
        calls = sum(self.runtime.calls(level) for level in deepest)
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
    model = model.eval()
    prep = prepare(name, model, x, [policy for _, policy in policies])
    machine = prep.machine()  # measured (or read from the cache) before timing
    predictor = _Predictor(model, machine, prep.runtime) if machine else None
    paths: list[dict[str, Any]] = []
    cascades: list[dict[str, Any]] = []
    largest = prep.runtime.max_batch
    served = [b for b in settings.batch_sizes if largest is None or b <= largest]
    skipped = [b for b in settings.batch_sizes if b not in served]
    for bs in served:
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
    check_batch = max(settings.batch_sizes) if largest is None else min(max(settings.batch_sizes), largest)
    for threshold, policy in policies:  # every evaluated test sample, at the largest batch the runtime serves
        run = functools.partial(_run_converted, prep)
        checks[str(threshold)] = check_against_eager(model, run, x, policy, check_batch, eager_logits)[0]
    figures = {"roofline": machine.to_dict()} if machine else {}
    limits = {"skipped_batch_sizes": skipped, "max_batch": largest} if skipped else {}
    return paths, cascades, {**prep.settings, **figures, **limits, "agreement_with_eager": checks}
