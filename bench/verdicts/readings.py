"""What a claim's metric reads from one run: the registry of the claims engine (:mod:`bench.verdicts.engine`).

Each entry reads one number per run (a seed) at one *point* of a claim: an exit (``exit = "each"`` gives one row
per exit), a cost level or a budget, or the claim as a whole. It says which exits the number rests on (for the
at-chance and still-rising guards), how the number is shown (scale and unit), what it needs from the claim, and,
where a number cannot be read, why. Adding a metric is one entry here and its line in docs/claims.md.

Accuracies are read as the policy predicts (ZTW: its ensembles); costs as fractions of the base network's MACs;
matched-cost accuracies off each run's exact curve (``cost_curve.at_cost``: linear between its breakpoints, what a
random mix of the two neighbouring thresholds achieves at exactly that expected cost), or, in runs made before it
was recorded, between the run's recorded thresholds (said in the row).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from bench.results.record import RunRecord
from bench.verdicts.claimsfile import Claim

if TYPE_CHECKING:
    from bench.analyse.load import Results


@dataclass(frozen=True)
class Point:
    """Where one row of a claim is read."""

    label: str = ""  # "exit p1", "50 % of base MACs", "" (the claim as a whole)
    exit: int | None = None  # the exit index, for per-exit metrics
    cost: float | None = None  # the cost level or budget


@dataclass(frozen=True)
class Value:
    """One run's number at a point, or why there is none."""

    x: float | None
    why: str = ""  # why x is None (the row becomes untestable), or how it was read (a note)


class Reading:
    """Base class: a metric of the claims engine."""

    name: ClassVar[str]
    what: ClassVar[str]  # the metric in words, for the page
    unit: ClassVar[str] = "%"  # display unit of a value
    scale: ClassVar[float] = 100.0  # display value = raw x scale
    needs: ClassVar[tuple[str, ...]] = ()  # claim keys this metric needs ("exit", "cost", "reference")
    timed: ClassVar[bool] = False  # a wall-clock reading: runs timed on a busy machine or noisily are named

    def check(self, claim: Claim) -> str | None:
        """What is missing or wrong in ``claim`` for this metric (None: fine)."""
        for key in self.needs:
            if not getattr(claim, key):
                return f"metric {self.name!r} needs {key!r}"
        return None

    def points(self, claim: Claim, record: RunRecord) -> list[Point]:
        """The rows of ``claim`` (one, unless per exit or per cost level)."""
        if "cost" in self.needs:
            return [Point(f"{_level(c, record)}", cost=c) for c in claim.cost]
        if "exit" in self.needs or claim.exit:
            return [Point(f"exit {name}", exit=i) for i, name in exits_named(record, claim.exit or "final")]
        return [Point()]

    def value(self, record: RunRecord, claim: Claim, point: Point, results: Results) -> Value:
        raise NotImplementedError

    def exits(self, record: RunRecord, point: Point) -> list[int]:
        """The exits this number rests on: the point's exit, else every exit of the run."""
        if point.exit is not None:
            return [point.exit]
        return list(range(len(record.exits.names))) if record.exits else []

    def label(self, claim: Claim, point: Point, threshold: float) -> str:
        """How the row's metric reads on the page."""
        where = f", {point.label}" if point.label else ""
        return f"{self.what}{where}"


#: Exit words of a claim besides an exit's own name (names differ between backbones: p1, layer1, block1).
EXIT_WORDS = ("each", "early", "first", "final")


def exits_named(record: RunRecord, spec: str) -> list[tuple[int, str]]:
    """(index, name) of the exits ``spec`` names in ``record``: ``each`` (every exit), ``early`` (every exit but
    the last), ``first``, ``final``, or one exit's name (none: the run has no such exit)."""
    names = record.exits.names if record.exits else []
    chosen = {"each": names, "early": names[:-1], "first": names[:1], "final": names[-1:]}.get(spec)
    if chosen is None:
        chosen = [spec] if spec in names else []
    return [(names.index(n), n) for n in chosen]


def exit_index(record: RunRecord, name: str) -> int | None:
    """The index of exit ``name`` ("final": the last) in ``record``; None when the run has no such exit."""
    names = record.exits.names if record.exits else []
    if name == "final":
        return len(names) - 1 if names else None
    return names.index(name) if name in names else None


def _level(cost: float, record: RunRecord) -> str:
    unit = record.budget.unit if record.budget and record.budget.unit else "fraction"
    return f"{100 * cost:g} % of base MACs" if unit == "fraction" else f"budget {cost:,g} {unit}"


def _threshold(claim: Claim, record: RunRecord) -> float:
    return claim.threshold if claim.threshold is not None else record.headline_threshold


# --------------------------------------------------------------------------- accuracies


class ExitAccuracy(Reading):
    name = "accuracy"
    what = "test accuracy, each exit alone"
    needs = ("exit",)

    def value(self, record: RunRecord, claim: Claim, point: Point, results: Results) -> Value:
        if record.exits is None or point.exit is None:
            return Value(None, f"{record.variant} has no exit {claim.exit!r}")
        accuracies = record.exits.policy_test_accuracy or record.exits.test_accuracy
        return Value(accuracies[point.exit])


class CascadeAccuracy(Reading):
    name = "cascade_accuracy"
    what = "cascade test accuracy"

    def value(self, record: RunRecord, claim: Claim, point: Point, results: Results) -> Value:
        return Value(record.at(_threshold(claim, record)).accuracy)

    def label(self, claim: Claim, point: Point, threshold: float) -> str:
        return f"{self.what} at t = {claim.threshold if claim.threshold is not None else threshold:g}"


class ExitShare(Reading):
    name = "exit_share"
    what = "share of test samples leaving at"
    needs = ("exit",)

    def value(self, record: RunRecord, claim: Claim, point: Point, results: Results) -> Value:
        if point.exit is None:
            return Value(None, f"{record.variant} has no exit {claim.exit!r}")
        return Value(record.at(_threshold(claim, record)).exit_share[point.exit])

    def label(self, claim: Claim, point: Point, threshold: float) -> str:
        t = claim.threshold if claim.threshold is not None else threshold
        return f"{self.what} {point.label or claim.exit} at t = {t:g}"


class EarlyShare(Reading):
    name = "early_share"
    what = "share of test samples leaving early"

    def value(self, record: RunRecord, claim: Claim, point: Point, results: Results) -> Value:
        return Value(record.at(_threshold(claim, record)).early_share)

    def label(self, claim: Claim, point: Point, threshold: float) -> str:
        return f"{self.what} at t = {claim.threshold if claim.threshold is not None else threshold:g}"


class EarlyArea(Reading):
    name = "early_area"
    what = "area under accuracy against early-exit share (0-100 % early)"

    def value(self, record: RunRecord, claim: Claim, point: Point, results: Results) -> Value:
        if record.curve is not None:
            return Value(float(record.curve["area"]), "exact curve")
        return Value(_grid_area(record), "the recorded thresholds' points (no exact curve in this run)")


def _grid_area(record: RunRecord) -> float | None:
    """Trapezoids between the recorded thresholds' (early share, accuracy) points, 0 to 100 % early."""
    pts = sorted((t.early_share, t.accuracy) for t in record.thresholds or [] if t.threshold is not None)
    if len(pts) < 2 or pts[0][0] > 1e-9 or pts[-1][0] < 1 - 1e-9:
        return None
    return sum((x1 - x0) * (y0 + y1) / 2 for (x0, y0), (x1, y1) in itertools.pairwise(pts))


class CostArea(Reading):
    name = "area"
    what = "area under the exact accuracy-cost curve (mean accuracy over the expected-MACs range covered)"

    def value(self, record: RunRecord, claim: Claim, point: Point, results: Results) -> Value:
        if not record.cost_curve:
            return Value(None, f"{record.variant} seed {record.seed} recorded no accuracy-cost curve")
        return Value(float(record.cost_curve["area"]))


class AccuracyAtCost(Reading):
    name = "accuracy_at_cost"
    what = "test accuracy at matched expected MACs"
    needs = ("cost",)

    def value(self, record: RunRecord, claim: Claim, point: Point, results: Results) -> Value:
        assert point.cost is not None
        curve = record.cost_curve or {}
        exact = curve.get("at_cost")
        if isinstance(exact, dict) and f"{point.cost:g}" in exact:
            return Value(float(exact[f"{point.cost:g}"]), "exact curve")
        low, high = curve.get("range", [math.nan, math.nan])
        if exact is not None and not low <= point.cost <= high:
            return Value(None, f"{record.variant} covers {100 * low:.0f}-{100 * high:.0f} % of base MACs")
        return _between_thresholds(record, point.cost)


def _between_thresholds(record: RunRecord, cost: float) -> Value:
    """Accuracy at ``cost`` (fraction of base MACs) between the run's two recorded thresholds around it."""
    pts = sorted((1 - t.saved_vs_base, t.accuracy, t.threshold) for t in record.thresholds or [])
    for (c0, a0, t0), (c1, a1, t1) in itertools.pairwise(pts):
        if c0 <= cost <= c1:
            share = (cost - c0) / (c1 - c0) if c1 > c0 else 0.0
            return Value(a0 + share * (a1 - a0), f"between recorded thresholds {t0:g} and {t1:g} (no exact curve)")
    span = f"{100 * pts[0][0]:.0f}-{100 * pts[-1][0]:.0f} %" if pts else "nothing"
    return Value(None, f"{record.variant}'s recorded thresholds cover {span} of base MACs")


class BudgetAccuracy(Reading):
    name = "budget_accuracy"
    what = "test accuracy, thresholds chosen on validation for a MAC budget"
    needs = ("cost",)

    def value(self, record: RunRecord, claim: Claim, point: Point, results: Results) -> Value:
        found = budget_point(record, point.cost)
        if found is None:
            return Value(None, f"{record.variant} seed {record.seed} has no feasible budget {point.cost:g}")
        return Value(found.test_accuracy)


def budget_point(record: RunRecord, budget: float | None) -> Any:
    """The run's feasible budget point for ``budget`` (None: not searched, or infeasible)."""
    for p in (record.budget.points or []) if record.budget else []:
        if budget is not None and math.isclose(p.budget, budget) and p.feasible:
            return p
    return None


class BudgetExitShare(Reading):
    name = "budget_exit_share"
    what = "share of test samples leaving at an exit, thresholds chosen on validation for a budget"
    needs = ("cost", "exit")

    def points(self, claim: Claim, record: RunRecord) -> list[Point]:
        exits = exits_named(record, claim.exit or "final")
        return [Point(f"exit {name}, {_level(c, record)}", exit=i, cost=c) for i, name in exits for c in claim.cost]

    def value(self, record: RunRecord, claim: Claim, point: Point, results: Results) -> Value:
        found = budget_point(record, point.cost)
        if found is None or point.exit is None:
            return Value(None, f"{record.variant} seed {record.seed} has no feasible budget {point.cost:g}")
        return Value(found.test_exit_share[point.exit])


class BudgetThreshold(Reading):
    name = "budget_threshold"
    what = "first-exit threshold chosen on validation for a budget"
    unit = ""
    scale = 1.0
    needs = ("cost",)

    def check(self, claim: Claim) -> str | None:
        if claim.transform not in (None, "entropy_nats"):
            return f"transform {claim.transform!r} is unknown; allowed: entropy_nats"
        return super().check(claim)

    def value(self, record: RunRecord, claim: Claim, point: Point, results: Results) -> Value:
        found = budget_point(record, point.cost)
        if found is None:
            return Value(None, f"{record.variant} seed {record.seed} has no feasible budget {point.cost:g}")
        t = float(found.thresholds[0])
        return Value((1 - t) * math.log(record.classes) if claim.transform == "entropy_nats" else t)

    def label(self, claim: Claim, point: Point, threshold: float) -> str:
        unit = " (softmax entropy, nats)" if claim.transform == "entropy_nats" else ""
        return f"{self.what}{unit}, {point.label}"


# --------------------------------------------------------------------------- calibration


class Calibration(Reading):
    name = "ece"
    what = "expected calibration error (15 bins) as the policy sees the logits"

    def points(self, claim: Claim, record: RunRecord) -> list[Point]:
        if claim.exit is None:
            return [Point("mean over exits")]
        return super().points(claim, record)

    def value(self, record: RunRecord, claim: Claim, point: Point, results: Results) -> Value:
        c = record.calibration
        if c is None:
            return Value(None, f"{record.variant} seed {record.seed} recorded no calibration error")
        if record.policy == "ztw-ensemble" and c.logits != "ensemble":
            return Value(
                None,
                f"{record.variant} seed {record.seed} measured ECE on its heads, not the ensembles "
                "its policy uses (recorded before that was fixed): rerun it",
            )
        values = c.ece_test_calibrated if c.ece_test_calibrated is not None else c.ece_test
        if point.exit is not None:
            return Value(values[point.exit])
        return Value(sum(values) / len(values))


# --------------------------------------------------------------------------- costs


class MacsSaved(Reading):
    name = "macs_saved"
    what = "MACs saved against the base network"

    def value(self, record: RunRecord, claim: Claim, point: Point, results: Results) -> Value:
        return Value(record.at(_threshold(claim, record)).saved_vs_base)

    def label(self, claim: Claim, point: Point, threshold: float) -> str:
        return f"{self.what} at t = {claim.threshold if claim.threshold is not None else threshold:g}"


class ExpectedMacs(Reading):
    name = "macs"
    what = "expected MACs per sample (1 MAC = 2 FLOPs)"
    unit = "M"
    scale = 1e-6

    def value(self, record: RunRecord, claim: Claim, point: Point, results: Results) -> Value:
        return Value(record.at(_threshold(claim, record)).macs_expected)


class Energy(Reading):
    name = "energy"
    what = "expected energy per sample (the suite's table)"
    unit = ""
    scale = 1.0

    def value(self, record: RunRecord, claim: Claim, point: Point, results: Results) -> Value:
        return Value(record.at(_threshold(claim, record)).energy_expected[record.energy_table])


class MacSpeedup(Reading):
    name = "mac_speedup"
    what = "the speedup MACs allow: the reference network's MACs over the expected MACs"
    unit = "x"
    scale = 1.0
    needs = ("reference",)

    def value(self, record: RunRecord, claim: Claim, point: Point, results: Results) -> Value:
        ref = _same_seed(results, claim.reference, record)
        if ref is None or ref.cost is None:
            return Value(None, f"no run of {claim.reference!r} with seed {record.seed}")
        return Value(ref.cost.per_exit[-1].macs / record.at(_threshold(claim, record)).macs_expected)


def _timing(record: RunRecord, claim: Claim, threshold: float) -> Any:
    """The run's cascade timing for the claim (runtime, batch, device), or a :class:`Value` saying why there is none."""
    lat = record.latency
    if lat is None or str(record.provenance.get("device", "cpu")) != claim.device:
        return Value(None, f"{record.variant} seed {record.seed} was not timed on {claim.device}")
    item = lat.at(threshold, claim.batch, claim.runtime)
    if item is None:
        return Value(
            None, f"{record.variant} seed {record.seed} was not timed in {claim.runtime} at batch {claim.batch}"
        )
    return item


def _same_seed(results: Results, variant: str | None, record: RunRecord) -> RunRecord | None:
    return next((r for r in results.records_of(variant or "") if r.seed == record.seed), None)


# --------------------------------------------------------------------------- latency


class Latency(Reading):
    name = "latency"
    what = "time per sample of the real dynamic forward"
    unit = "ms"
    scale = 1e3
    timed = True

    def value(self, record: RunRecord, claim: Claim, point: Point, results: Results) -> Value:
        item = _timing(record, claim, _threshold(claim, record))
        if isinstance(item, Value):
            return item
        return Value(item.dynamic["median"] / item.samples)

    def label(self, claim: Claim, point: Point, threshold: float) -> str:
        return f"{self.what} ({claim.device}, {claim.runtime}, batch {claim.batch}, median of the repeats)"


class Speedup(Reading):
    name = "speedup"
    what = "speedup of the dynamic forward"
    unit = "x"
    scale = 1.0
    timed = True

    def value(self, record: RunRecord, claim: Claim, point: Point, results: Results) -> Value:
        t = _threshold(claim, record)
        item = _timing(record, claim, t)
        if isinstance(item, Value):
            return item
        if claim.reference is None:
            return Value(item.speedup_vs_full)
        ref = _same_seed(results, claim.reference, record)
        ref_item = ref.latency.at(t, claim.batch, claim.runtime) if ref is not None and ref.latency else None
        if ref_item is None:
            return Value(None, f"{claim.reference} seed {record.seed} was not timed in {claim.runtime}")
        return Value((ref_item.full["median"] / ref_item.samples) / (item.dynamic["median"] / item.samples))

    def label(self, claim: Claim, point: Point, threshold: float) -> str:
        over = f"{claim.reference}'s full network" if claim.reference else "the variant's own full network"
        return f"{self.what} over {over} ({claim.device}, {claim.runtime}, batch {claim.batch})"


class PathSpeedup(Reading):
    name = "path_speedup"
    what = "speedup from the exit paths timed alone, weighted by the test exit shares at the budget's thresholds"
    unit = "x"
    scale = 1.0
    timed = True
    needs = ("cost", "reference")

    def value(self, record: RunRecord, claim: Claim, point: Point, results: Results) -> Value:
        found = budget_point(record, point.cost)
        ref = _same_seed(results, claim.reference, record)
        lat, ref_lat = record.latency, ref.latency if ref is not None else None
        if found is None or lat is None or ref_lat is None or record.cost is None:
            return Value(None, f"{record.variant} seed {record.seed}: no budget point or no timing")
        paths = [lat.path_at(c.exit, claim.batch, claim.runtime) for c in record.cost.per_exit]
        ref_item = ref_lat.at(record.headline_threshold, claim.batch, claim.runtime)
        if ref_item is None or any(p is None for p in paths):
            return Value(None, f"{record.variant} seed {record.seed}: exit paths not timed in {claim.runtime}")
        predicted = sum(s * p.per_sample_median for s, p in zip(found.test_exit_share, paths) if p is not None)
        return Value((ref_item.full["median"] / ref_item.samples) / predicted)

    def label(self, claim: Claim, point: Point, threshold: float) -> str:
        return f"{self.what} over {claim.reference} ({claim.runtime}, batch {claim.batch})"


READINGS: dict[str, Reading] = {
    r.name: r
    for r in (
        ExitAccuracy(),
        CascadeAccuracy(),
        ExitShare(),
        EarlyShare(),
        EarlyArea(),
        CostArea(),
        AccuracyAtCost(),
        BudgetAccuracy(),
        BudgetExitShare(),
        BudgetThreshold(),
        Calibration(),
        MacsSaved(),
        ExpectedMacs(),
        Energy(),
        MacSpeedup(),
        Latency(),
        Speedup(),
        PathSpeedup(),
    )
}
