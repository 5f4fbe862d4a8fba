"""Evaluation of one trained model: per-exit accuracy, every threshold's operating point, costs,
latency and budgets. Returns the record's parts; writing them is the runner's job.

Thresholds and budgets are applied post hoc to every exit's logits (``masked_decisions``); at the
headline threshold (or every threshold, ``count_macs = "all"``) the real dynamic forward runs too,
its MACs are counted at dispatch level and its decisions checked equal to the masked ones.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

import cascade
from bench.analyse.budget import budget_evaluation
from bench.analyse.curves import accuracy_at_costs, cost_area, exact_cost_curve
from bench.config.plan import RunSpec, TrainJob, build_for
from bench.config.tables import EnergyTable, Hardware, load_energy_table, load_hardware
from bench.measure.cost import ALWAYS_REPORTED_TABLES, counting
from bench.measure.energy import ExitCost, buffered_name, exit_costs, expected_cost
from bench.measure.latency import latency_report
from bench.measure.runtimes import runtime_latency
from bench.measure.timing import TimingBudget, TimingSettings
from bench.results.record import (
    BudgetRecord,
    CalibrationRecord,
    CostRecord,
    ExitCostRecord,
    ExitInfo,
    LatencyRecord,
    OperatingPoint,
    from_json,
)
from cascade.calibration import ECE_BINS, expected_calibration_error, fit_temperatures
from cascade.data import DataSplits
from cascade.exits import (
    POLICIES,
    ExitPolicy,
    build_policy,
    dynamic_forward,
    masked_decisions,
    transformed_logits,
)
from cascade.training import exit_logits
from cascade.ztw import fit_ensemble


@dataclass(frozen=True)
class Evaluation:
    """The parts of a run record that evaluation produces."""

    exits: ExitInfo
    cost: CostRecord
    thresholds: list[OperatingPoint]
    latency: LatencyRecord | None
    budget: BudgetRecord | None
    calibration: CalibrationRecord | None = None
    policy_fit: dict[str, Any] | None = None  # what the policy fitted (split, method, values)
    cost_curve: dict[str, Any] | None = None  # exact accuracy vs expected MACs (threshold policies)


@dataclass(frozen=True)
class Logits:
    """Every exit's logits on the validation and test splits (saved for re-analysis, never in the record)."""

    val: tuple[torch.Tensor, ...]
    test: tuple[torch.Tensor, ...]


def policies_for(spec: RunSpec, fitted: dict[str, Any] | None = None) -> list[tuple[float | None, ExitPolicy]]:
    """(threshold, policy) of each operating point; one point (threshold None) for threshold-free policies.
    ``fitted``: the policy's harness options (:func:`fit_policy`)."""
    options = {**spec.policy_options, **(fitted or {})}
    if not POLICIES.get(spec.policy).has_threshold:
        return [(None, build_policy(spec.policy, **options))]
    return [(t, build_policy(spec.policy, threshold=t, **options)) for t in spec.evaluation.thresholds]


def fit_policy(
    spec: RunSpec, model: cascade.MultiExitModel, logits: Logits, data: DataSplits
) -> tuple[dict[str, Any], CalibrationRecord, dict[str, Any] | None]:
    """The policy's harness options fitted on held-out or training data, never on test: the temperatures of
    ``calibrate = "temperature"`` (validation split), ZTW's ensemble (training split, the network frozen);
    every exit's calibration error before and after; what was fitted, for the run record."""
    y_val, y_test = data.val.y, data.test.y
    ece = expected_calibration_error
    method = str(spec.policy_options.get("calibrate", "none"))
    record = CalibrationRecord(
        bins=ECE_BINS,
        method=method,
        ece_val=[ece(z, y_val) for z in logits.val],
        ece_test=[ece(z, y_test) for z in logits.test],
        logits="heads",
    )
    if spec.policy == "ztw-ensemble" and model.num_exits > 1:
        t0 = time.perf_counter()
        weights, biases = fit_ensemble(exit_logits(model, data.train.x, spec.job.config.eval_batch_size), data.train.y)
        fit = {
            "split": "train",
            "method": "ZTW geometric ensemble, L-BFGS",
            "ensemble_weights": weights,
            "ensemble_biases": biases,
            "seconds": time.perf_counter() - t0,
        }
        fitted = fitted_options(spec.policy, fit)
        policy = build_policy(spec.policy, **{**spec.policy_options, **fitted})
        val, test = transformed_logits(logits.val, policy), transformed_logits(logits.test, policy)
        record = dataclasses.replace(
            record, logits="ensemble", ece_val=[ece(z, y_val) for z in val], ece_test=[ece(z, y_test) for z in test]
        )
        return fitted, record, fit
    if method == "none":
        return {}, record, None
    temps = fit_temperatures(logits.val, y_val)
    record = dataclasses.replace(
        record,
        temperatures=temps,
        ece_val_calibrated=[ece(z / t, y_val) for z, t in zip(logits.val, temps)],
        ece_test_calibrated=[ece(z / t, y_test) for z, t in zip(logits.test, temps)],
    )
    fit = {"split": "val", "method": "temperature scaling", "temperatures": temps}
    return fitted_options(spec.policy, fit), record, fit


def fitted_options(policy: str, policy_fit: dict[str, Any] | None) -> dict[str, Any]:
    """The policy's harness options (temperatures, ZTW's ensemble) from what it fitted, as recorded in a run's
    ``policy_fit``, in the form the policy takes them (lists as tuples)."""
    names = POLICIES.get(policy).harness_options
    return {k: _frozen(v) for k, v in (policy_fit or {}).items() if k in names}


def _frozen(value: Any) -> Any:
    return tuple(_frozen(v) for v in value) if isinstance(value, list) else value


def exit_info(names: Sequence[str], logits: Logits, data: DataSplits, policy: ExitPolicy) -> ExitInfo:
    """Each exit's accuracy on validation and test, and as the policy predicts there when that differs (ZTW)."""
    val, test = transformed_logits(logits.val, policy), transformed_logits(logits.test, policy)
    changed = any(a is not b for a, b in zip(val, logits.val))
    return ExitInfo(
        names=list(names),
        val_accuracy=[_accuracy(z.argmax(1), data.val.y) for z in logits.val],
        test_accuracy=[_accuracy(z.argmax(1), data.test.y) for z in logits.test],
        policy_val_accuracy=[_accuracy(z.argmax(1), data.val.y) for z in val] if changed else None,
        policy_test_accuracy=[_accuracy(z.argmax(1), data.test.y) for z in test] if changed else None,
    )


def cost_curve(
    policy: ExitPolicy, logits: Sequence[torch.Tensor], y: torch.Tensor, macs: Sequence[float], base_macs: float
) -> dict[str, Any] | None:
    """The exact accuracy against expected MACs (as a fraction of the base network's) of a threshold policy over
    every threshold, on test (a description, never a selection): its mean accuracy over the cost range it
    covers (``area``), that range, the number of breakpoints, and the accuracy at every cost level of
    :data:`bench.analyse.curves.COST_LEVELS` inside the range (``at_cost``; matched-cost comparisons read it)."""
    if not policy.has_threshold or len(logits) < 2 or len(y) == 0:
        return None
    z = transformed_logits(logits, policy)
    conf = torch.stack([policy.confidence(t) for t in z[:-1]], dim=1).cpu().numpy()
    correct = torch.stack([t.argmax(1) == y for t in z], dim=1).cpu().numpy()
    cost, accuracy = exact_cost_curve(conf, correct, [m / base_macs for m in macs])
    return {
        "method": "exact",
        "x": "expected MACs / base MACs",
        "range": [float(cost[0]), float(cost[-1])],
        "area": cost_area(cost, accuracy),
        "points": len(cost),
        "at_cost": accuracy_at_costs(cost, accuracy),
    }


def with_policy_macs(costs: Sequence[ExitCost], policy: ExitPolicy, num_classes: int) -> list[ExitCost]:
    """Each exit's cumulative cost plus what the policy computes on the way (ZTW's ensembles)."""
    out, extra = [], 0
    for level, c in enumerate(costs):
        extra += policy.extra_macs(level, num_classes)
        out.append(dataclasses.replace(c, macs=c.macs + extra))
    return out


def _accuracy(pred: torch.Tensor, y: torch.Tensor) -> float:
    return float((pred == y).float().mean()) if len(y) else float("nan")


def _shares(counts: torch.Tensor) -> list[float]:
    total = float(counts.sum())
    return [float(c) / total if total else float("nan") for c in counts]


def base_cost(
    job: TrainJob, data: DataSplits, tables: Sequence[EnergyTable], hardware: Hardware | None = None, batch: int = 1
) -> dict[str, Any]:
    """Cost of the same backbone without intermediate exits (the ``base`` network)."""
    model = build_for(dataclasses.replace(job, exits=()), data)
    (c,) = exit_costs(model, data.input_shape, tables, hardware=hardware, batch=batch)
    return {"macs": c.macs, "flops": c.flops, "params": c.params, "bytes": c.bytes, "energy": c.energy}


def relative_exit_costs(job: TrainJob, data: DataSplits) -> list[float]:
    """C_l / C_L (MACs) of the job's architecture, for losses that penalise expected compute."""
    model = build_for(job, data)
    macs = [c.macs for c in exit_costs(model, data.input_shape, [])]
    return [m / macs[-1] for m in macs]


def cost_record(
    costs: Sequence[ExitCost],
    base: dict[str, Any],
    tables: Sequence[EnergyTable],
    hardware: Hardware | None = None,
    batch: int = 1,
) -> CostRecord:
    unsupported: dict[str, int] = {}
    for c in costs:
        for op, calls in c.unsupported.items():
            unsupported[op] = max(unsupported.get(op, 0), calls)
    return CostRecord(
        convention="1 MAC = 1 multiply-add = 2 FLOPs; per sample",
        energy_tables=energy_table_info(tables, hardware, batch),
        per_exit=[ExitCostRecord(c.exit, c.macs, c.params, c.bytes, c.energy, c.flops) for c in costs],
        base=base,
        full={"macs": costs[-1].macs, "energy": {t: costs[-1].energy[t]["total"] for t in costs[-1].energy}},
        unsupported=unsupported,
    )


def energy_table_info(
    tables: Sequence[EnergyTable], hardware: Hardware | None, batch: int
) -> dict[str, dict[str, str]]:
    """Unit and description of every energy entry of a run: each table (ideal model, batch 1) and,
    with ``hardware``, its buffer-aware entry (``<table>_buffered``, at ``batch``)."""
    out = {}
    for t in tables:
        out[t.name] = {"unit": t.unit, "description": t.description, "model": "ideal", "batch": "1"}
        if hardware is not None:
            out[buffered_name(t.name)] = {
                "unit": t.unit,
                "description": f"{t.description}; buffer-aware on {hardware.name} "
                f"({hardware.glb_bytes // 1024} KiB global buffer, {hardware.word_bits}-bit words)",
                "model": "buffered",
                "hardware": hardware.name,
                "batch": str(batch),
            }
    return out


@torch.no_grad()
def timing_budget(evaluation: Any, train_seconds: float) -> float:
    """The seconds a run's latency timing may take: ``[evaluation] latency_budget_s``, else (0) a third of the
    run's training time, so that timing is at most a quarter of a run (at least one round of each stage runs)."""
    return float(evaluation.latency_budget_s) if evaluation.latency_budget_s > 0 else train_seconds / 3


@torch.no_grad()
def _time_latency(
    spec: RunSpec,
    model: cascade.MultiExitModel,
    data: DataSplits,
    say: Callable[[str], None],
    fitted: dict[str, Any],
    budget_s: float | None,
) -> LatencyRecord:
    """Every exit path and the dynamic cascade timed in eager, then in each other runtime of the suite, within the
    run's timing budget (:class:`bench.measure.timing.TimingBudget`)."""
    ev = spec.evaluation
    say("timing latency")
    t_lat = time.perf_counter()
    chosen = ev.latency_thresholds or (ev.headline_threshold,)
    timed = [(t, p) for t, p in policies_for(spec, fitted) if t is None or t in chosen]
    budget = TimingBudget(budget_s, stages=len(ev.runtimes) * len(ev.latency_batch_sizes))
    settings = TimingSettings(
        tuple(ev.latency_batch_sizes), ev.latency_samples, ev.latency_repeats, ev.latency_warmup, budget
    )
    report = latency_report(model, data.test.x, timed, settings, optimised=ev.latency_optimised)
    for name in ev.runtimes[1:]:  # eager first (above); then each other runtime, same samples and settings
        say(f"timing latency in {name}")
        paths, cascades, runtime = runtime_latency(name, model, data.test.x, timed, settings)
        report["exit_paths"] += paths
        report["cascade"] += cascades
        report.setdefault("runtimes", {})[name] = runtime
    report["budget"] = budget.to_dict()
    latency: LatencyRecord = from_json(LatencyRecord, {**report, "seconds": time.perf_counter() - t_lat})
    return latency


def _budget(
    spec: RunSpec,
    logits: Logits,
    data: DataSplits,
    table: str,
    energy: dict[str, list[float]],
    macs: Sequence[float],
    base: dict[str, Any],
    fitted: dict[str, Any],
) -> BudgetRecord:
    """Thresholds chosen on validation for each compute budget of the suite, scored on test."""
    by_energy = spec.budget.unit == "energy"
    return budget_evaluation(
        spec.policy,
        {**spec.policy_options, **fitted},
        spec.budget,
        logits.val,
        data.val.y,
        logits.test,
        data.test.y,
        energy[table] if by_energy else [float(m) for m in macs],
        base["energy"][table]["total"] if by_energy else float(base["macs"]),
        table if by_energy else "MACs",
    )


def evaluate(
    spec: RunSpec,
    model: cascade.MultiExitModel,
    data: DataSplits,
    *,
    phase: Callable[[str], None] | None = None,
    timing_budget_s: float | None = None,
) -> tuple[Evaluation, Logits]:
    """Per-exit accuracy, every threshold's operating point, costs, latency, budget.

    ``phase`` is told what is being done ("evaluating", "counting MACs", "timing latency", ...);
    ``timing_budget_s``: the seconds latency timing may take (None: no limit; :func:`timing_budget`).
    """
    say = phase or (lambda s: None)
    ev = spec.evaluation
    say("evaluating: costs and exit outputs")
    model.eval()
    tables = [load_energy_table(ev.energy_table)]
    tables += [load_energy_table(name) for name in ALWAYS_REPORTED_TABLES if name != tables[0].name]
    hardware = load_hardware(ev.hardware)
    costs = exit_costs(model, data.input_shape, tables, hardware=hardware, batch=ev.energy_batch)
    base = base_cost(spec.job, data, tables, hardware, ev.energy_batch)
    energy = {name: [c.energy[name]["total"] for c in costs] for name in costs[0].energy}
    batch = spec.job.config.eval_batch_size
    logits = Logits(exit_logits(model, data.val.x, batch), exit_logits(model, data.test.x, batch))
    fitted, calibration, policy_fit = fit_policy(spec, model, logits, data)  # never on test
    first_policy = policies_for(spec, fitted)[0][1]
    costs = with_policy_macs(costs, first_policy, data.num_classes)
    macs = [c.macs for c in costs]
    exits = exit_info(model.exit_names, logits, data, first_policy)
    points = []
    for threshold, policy in policies_for(spec, fitted):
        test = masked_decisions(logits.test, policy)
        val = masked_decisions(logits.val, policy)
        shares = _shares(test.counts)
        exp_macs = expected_cost(shares, macs)
        exp_energy = {name: expected_cost(shares, per_exit) for name, per_exit in energy.items()}
        counted: dict[str, Any] = {}
        if ev.count_macs == "all" or (ev.count_macs == "headline" and threshold in (None, ev.headline_threshold)):
            say(f"counting MACs of the dynamic forward (threshold {threshold})")
            counted = _count_dynamic(model, data, logits.test, policy, batch)
        points.append(
            OperatingPoint(
                threshold=threshold,
                accuracy=_accuracy(test.predictions, data.test.y),
                val_accuracy=_accuracy(val.predictions, data.val.y),
                early_share=test.early_share,
                exit_share=shares,
                val_exit_share=_shares(val.counts),
                exit_accuracy=[
                    _accuracy(test.predictions[test.exit_index == i], data.test.y[test.exit_index == i])
                    if int(test.counts[i])
                    else None
                    for i in range(model.num_exits)
                ],
                macs_expected=exp_macs,
                flops_expected=2 * exp_macs,
                energy_expected=exp_energy,
                saved_vs_base=1 - exp_macs / base["macs"],
                saved_vs_full=1 - exp_macs / macs[-1],
                energy_saved_vs_base={name: 1 - e / base["energy"][name]["total"] for name, e in exp_energy.items()},
                **counted,
            )
        )
    latency = _time_latency(spec, model, data, say, fitted, timing_budget_s) if ev.latency else None
    budget = None
    if spec.budget.values and model.num_exits > 1:
        say("budget search on validation")
        budget = _budget(spec, logits, data, tables[0].name, energy, macs, base, fitted)
    cost = cost_record(costs, base, tables, hardware, ev.energy_batch)
    curve = cost_curve(first_policy, logits.test, data.test.y, macs, float(base["macs"]))
    return Evaluation(exits, cost, points, latency, budget, calibration, policy_fit, curve), logits


def _count_dynamic(
    model: cascade.MultiExitModel,
    data: DataSplits,
    test_logits: Sequence[torch.Tensor],
    policy: ExitPolicy,
    batch: int,
) -> dict[str, Any]:
    """MACs per sample counted while the real dynamic forward runs, and whether it equals the masked one."""
    counted = 0
    match = True
    for i in range(0, len(data.test), batch):
        xb = data.test.x[i : i + batch]
        with counting(model) as prof:
            dyn = dynamic_forward(model, xb, policy)
        counted += prof.macs
        ref = masked_decisions(tuple(z[i : i + batch] for z in test_logits), policy)
        match &= bool(torch.equal(dyn.exit_index, ref.exit_index) and torch.equal(dyn.predictions, ref.predictions))
    return {"macs_counted": counted / len(data.test), "dynamic_matches_masked": match}
