"""The one table of metrics every report reads (:data:`METRICS`), and a record flattened into the rows of
``summary.csv`` (:func:`record_rows`).

A metric reads one value from a run record at one operating point; reports, comparisons, the CI gate and the
study all look metrics up here by name, so a value means the same everywhere.
"""

from __future__ import annotations

import dataclasses
import math
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


@dataclass(frozen=True)
class MetricKey:
    """A metric at a place: which metric, and where it applies the runtime, batch size, exit and threshold.

    The one place column names are made from (:meth:`name`: a metric's name in reports, comparisons and claims;
    :meth:`column`: its ``summary.csv`` column; :meth:`baseline_field`: a baseline file's per-batch field) and parsed
    back into (:meth:`parse`), for any runtime name (digits, ``_`` and ``-`` included): the batch is the last part
    and a runtime is whatever stands between the metric and it.

    ======================  =========================================  ==========================================
    key                     name / column                              note
    ======================  =========================================  ==========================================
    latency, eager, b 256   ``latency_b256`` /                         eager's names are the original ones
                            ``latency_s_per_sample_b256``
    latency, ort, b 256     ``latency_ort_b256`` /                     any other runtime between the two
                            ``latency_ort_s_per_sample_b256``
    latency_roofline, ...   ``latency_roofline_s_per_sample_b256`` /   the runtime's own roofline prediction
                            ``latency_ort_roofline_s_per_sample_b256``
    share, exit p1          ``share_p1``                               per-exit columns
    ======================  =========================================  ==========================================
    """

    metric: str
    runtime: str = "eager"
    batch: int | None = None
    exit: str | None = None
    threshold: float | None = None

    def name(self) -> str:
        """The metric's name (``get_metric`` reads it back)."""
        if self.metric in TIMED:
            return f"{self._timed()}_b{self._batch()}"
        return f"{self.metric}_{self.exit}" if self.exit is not None else self.metric

    def column(self) -> str:
        """The ``summary.csv`` column."""
        if self.metric in TIMED:
            return f"{self._timed()}_s_per_sample_b{self._batch()}"
        return self.name()

    def baseline_field(self) -> str:
        """A baseline file's field, one value per batch size (``latency_s_per_sample``, ``latency_x_s_per_sample``)."""
        return f"{self._timed()}_s_per_sample"

    def _timed(self) -> str:
        """latency[_<runtime>][_roofline]"""
        runtime = "" if self.runtime == "eager" else f"_{self.runtime}"
        return f"latency{runtime}{'_roofline' if self.metric == 'latency_roofline' else ''}"

    def _batch(self) -> int:
        if self.batch is None:
            raise ValueError(f"metric {self.metric!r} in {self.runtime} needs a batch size")
        return self.batch

    @classmethod
    def parse(cls, text: str) -> MetricKey:
        """The key of a metric name, ``summary.csv`` column or baseline field; ``KeyError`` naming the forms."""
        if text in METRICS:
            return cls(text)
        if text.startswith("latency"):
            key = _parse_latency(text.removeprefix("latency"))
            if key is not None:
                return key
        for per_exit in PER_EXIT:
            if text.startswith(f"{per_exit}_") and len(text) > len(per_exit) + 1:
                return cls(per_exit, exit=text[len(per_exit) + 1 :])
        known = [*METRICS, "latency_b<N>", "latency_<runtime>_b<N>", *(f"{m}_<exit>" for m in PER_EXIT)]
        raise KeyError(f"unknown metric {text!r}; known: {', '.join(known)}")

    def metric_spec(self) -> Metric:
        """How to read and show this metric (:class:`Metric`)."""
        if self.metric in METRICS:
            return METRICS[self.metric]
        if self.metric == "latency" and self.batch is not None:
            return latency_metric(self.batch, self.runtime)
        raise KeyError(f"metric {self.name()!r} has no reading of its own (a summary column)")

    def read(self, record: RunRecord, point: OperatingPoint) -> float | None:
        return self.metric_spec().read(record, point)


#: metrics measured per runtime and batch size; and those with a column per exit
TIMED = ("latency", "latency_roofline")
#: how no runtime's name may end (bench.config.engines.register_runtime refuses it): a key that ends so is the roofline
#: or the per-sample column, never a runtime
RESERVED_ENDINGS = ("roofline", "_s_per_sample")
PER_EXIT = ("share", "exit_accuracy")


def _parse_latency(rest: str) -> MetricKey | None:
    """``rest`` after "latency": ``[_<runtime>][_roofline][_s_per_sample](_b<N>)``, or a baseline field without the
    batch; None when it is none of these."""
    head, sep, batch = rest.rpartition("_b")
    if not sep or not batch.isdigit():
        head, batch = rest, ""
        if not head.endswith("_s_per_sample"):
            return None
    head = head.removesuffix("_s_per_sample")
    metric = "latency"
    if head == "_roofline" or head.endswith("_roofline"):  # a runtime's name never ends so (RESERVED_ENDINGS)
        metric, head = "latency_roofline", head.removesuffix("_roofline")
    if head and not head.startswith("_"):
        return None
    runtime = head[1:] or "eager"
    return MetricKey(metric, runtime=runtime, batch=int(batch) if batch else None)


def latency_metric(batch: int, runtime: str = "eager") -> Metric:
    """Median seconds per sample of the dynamic forward at batch ``batch`` in ``runtime``
    (its name: :meth:`MetricKey.name`)."""

    def read(record: RunRecord, point: OperatingPoint) -> float | None:
        return record.latency.per_sample(point.threshold, batch, runtime) if record.latency else math.nan

    name = MetricKey("latency", runtime=runtime, batch=batch).name()
    where = f"b{batch}" if runtime == "eager" else f"{runtime} b{batch}"
    return Metric(name, f"latency {where} (µs/sample)", "s per sample", 1e6, 1, False, read)


def get_metric(name: str) -> Metric:
    """The metric called ``name`` (``latency_b<N>``, ``latency_<runtime>_b<N>``: the latency at batch N)."""
    return MetricKey.parse(name).metric_spec()


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
        row.update({MetricKey("share", exit=n).column(): s for n, s in zip(names, t.exit_share)})
        row.update({MetricKey("exit_accuracy", exit=n).column(): a for n, a in zip(names, record.exits.test_accuracy)})
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
                    key = MetricKey("latency", runtime=item.runtime, batch=item.batch_size)
                    row[key.column()] = item.per_sample_median
                    if item.roofline_per_sample is not None:
                        roofline = dataclasses.replace(key, metric="latency_roofline")
                        row[roofline.column()] = item.roofline_per_sample
        row["params"] = record.cost.per_exit[-1].params
        row["total_steps"] = record.training.total_steps if record.training else None
        row["key"] = record.key
        rows.append(row)
    return rows
