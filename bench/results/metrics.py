"""The one table of metrics every report reads (:data:`METRICS`), and a record flattened into the rows of
``summary.csv`` (:func:`record_rows`).

A metric reads one value from a run record at one operating point; reports, comparisons, the CI gate and the
study all look metrics up here by name, so a value means the same everywhere.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench.results.record import OperatingPoint, RunRecord


@dataclass(frozen=True)
class Metric:
    """One metric: how to read it from a record at an operating point, and how to show it."""

    name: str  # column / metric name
    label: str  # column label in tables
    unit: str  # unit of the raw value
    scale: float  # displayed value = raw x scale
    digits: int  # decimals displayed
    higher_is_better: bool | None  # None: neither (e.g. a cost that is a design choice)
    read: Callable[[RunRecord, OperatingPoint], float | None]
    deterministic: bool = False  # fixed by the architecture and the exit shares' definition (MACs, params)

    def value(self, record: RunRecord, point: OperatingPoint) -> float | None:
        return self.read(record, point)

    def value_at(self, record: RunRecord, threshold: float) -> float:
        """The metric at ``threshold`` as a float (NaN when the run did not measure it)."""
        v = self.read(record, record.at(threshold))
        return float(v) if v is not None else math.nan


def _energy(record: RunRecord, point: OperatingPoint) -> float:
    return point.energy_expected[record.energy_table]


def _energy_buffered(record: RunRecord, point: OperatingPoint) -> float | None:
    """The buffer-aware energy (bench.measure.dataflow) of the suite's table; None in runs made before it."""
    return point.energy_expected.get(f"{record.energy_table}_buffered")


def _params(record: RunRecord) -> int | None:
    return record.cost.per_exit[-1].params if record.cost else None


def _energy_saved(record: RunRecord, point: OperatingPoint) -> float:
    return point.energy_saved_vs_base[record.energy_table]


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("accuracy", "accuracy (%)", "fraction", 100.0, 2, True, lambda r, t: t.accuracy),
        Metric("val_accuracy", "validation accuracy (%)", "fraction", 100.0, 2, True, lambda r, t: t.val_accuracy),
        Metric("early_share", "early exits (%)", "fraction", 100.0, 1, None, lambda r, t: t.early_share),
        Metric("macs", "MACs (M)", "MACs per sample", 1e-6, 3, False, lambda r, t: t.macs_expected),
        Metric("flops", "FLOPs (M, =2×MACs)", "FLOPs per sample", 1e-6, 3, False, lambda r, t: t.flops_expected),
        Metric("energy", "energy", "energy-table units per sample", 1e-6, 2, False, _energy),
        Metric(
            "energy_buffered", "energy, buffered", "energy-table units per sample", 1e-6, 2, False, _energy_buffered
        ),
        Metric("saved_vs_base", "MACs saved vs base (%)", "fraction", 100.0, 1, True, lambda r, t: t.saved_vs_base),
        Metric("saved_vs_full", "MACs saved vs full (%)", "fraction", 100.0, 1, True, lambda r, t: t.saved_vs_full),
        Metric("energy_saved", "energy saved vs base (%)", "fraction", 100.0, 1, True, _energy_saved),
        Metric("total_steps", "train steps", "optimiser steps", 1.0, 0, None, lambda r, t: r.total_steps, True),
        Metric("params", "params", "parameters", 1.0, 0, False, lambda r, t: _params(r), True),
    )
}


#: Metrics of the main table, in column order (latency columns follow, one per timed batch size).
MAIN_METRICS = ("accuracy", "early_share", "macs", "flops", "energy", "saved_vs_base", "energy_saved")


_LATENCY = re.compile(r"latency(?:_([a-z]+))?_b(\d+)$")


def latency_metric(batch: int, runtime: str = "eager") -> Metric:
    """Median seconds per sample of the dynamic forward at batch ``batch`` in ``runtime``
    (``latency_b<N>`` for eager, ``latency_<runtime>_b<N>`` for the others)."""

    def read(record: RunRecord, point: OperatingPoint) -> float | None:
        return record.latency.per_sample(point.threshold, batch, runtime) if record.latency else math.nan

    if runtime == "eager":
        return Metric(f"latency_b{batch}", f"latency b{batch} (µs/sample)", "s per sample", 1e6, 1, False, read)
    return Metric(
        f"latency_{runtime}_b{batch}", f"latency {runtime} b{batch} (µs/sample)", "s per sample", 1e6, 1, False, read
    )


def get_metric(name: str) -> Metric:
    """The metric called ``name`` (``latency_b<N>`` for the latency at batch N)."""
    if name in METRICS:
        return METRICS[name]
    match = _LATENCY.match(name)
    if match:
        return latency_metric(int(match.group(2)), match.group(1) or "eager")
    known = [*METRICS, "latency_b<N>", "latency_<runtime>_b<N>"]
    raise KeyError(f"unknown metric {name!r}; known: {', '.join(known)}")


def by_seed(records: list[RunRecord], metric: str, threshold: float) -> dict[int, float]:
    """{seed: value} of ``metric`` at ``threshold`` over ``records``."""
    m = get_metric(metric)
    return {int(r.seed): m.value_at(r, threshold) for r in records}


def record_rows(record: RunRecord) -> list[dict[str, Any]]:
    """One row per threshold: the columns of ``summary.csv`` (the one flattening of a record)."""
    assert record.exits is not None and record.cost is not None and record.thresholds is not None
    rows = []
    names = record.exits.names
    ident = {
        "suite": record.suite,
        "variant": record.variant,
        "variant_base": record.variant_base,
        "loss": record.loss,
        "exits": "+".join(record.exits_at) or "none",
        "dataset": record.dataset,
        "policy": record.policy,
        "seed": record.seed,
    }
    for t in record.thresholds:
        row: dict[str, Any] = {**ident, "threshold": t.threshold}
        for m in ("accuracy", "val_accuracy", "early_share"):
            row[m] = METRICS[m].value(record, t)
        row.update({f"share_{n}": s for n, s in zip(names, t.exit_share)})
        row.update({f"exit_accuracy_{n}": a for n, a in zip(names, record.exits.test_accuracy)})
        row["macs"] = METRICS["macs"].value(record, t)
        row["flops"] = METRICS["flops"].value(record, t)
        row["macs_counted"] = t.macs_counted
        row.update({f"energy_{table}": v for table, v in t.energy_expected.items()})
        row["saved_vs_base"] = METRICS["saved_vs_base"].value(record, t)
        row["saved_vs_full"] = METRICS["saved_vs_full"].value(record, t)
        row.update({f"energy_saved_vs_base_{table}": v for table, v in t.energy_saved_vs_base.items()})
        if record.latency is not None:
            for item in record.latency.cascade:  # in the order timed (the summary's column order)
                if item.matches(t.threshold, item.batch_size):
                    b = item.batch_size
                    name = "latency" if item.runtime == "eager" else f"latency_{item.runtime}"  # eager's: as before
                    row[f"{name}_s_per_sample_b{b}"] = item.per_sample_median
                    if item.roofline_per_sample is not None:
                        row[f"latency_roofline_s_per_sample_b{b}"] = item.roofline_per_sample
        row["params"] = record.cost.per_exit[-1].params
        row["total_steps"] = record.training.total_steps if record.training else None
        row["key"] = record.key
        rows.append(row)
    return rows
