"""The guards of a verdict: what refuses it (untestable, with the reason) or makes it provisional (with its numbers).

Refused (the runs cannot test the claim):

* a variant or its comparator has no runs in the folder, or the metric cannot be read on a run;
* an exit the row rests on is at chance (:func:`bench.results.record.at_chance`) in at least half the seeds;
* the compared variants trained different numbers of steps, unless the claim declares it (``equal_steps = false``);
* a budget that does not bind: the thresholds chosen for it cost well below it (``[page] budget_slack``), so the
  row is no equal-compute comparison (``accuracy_at_cost`` is);
* fewer than two paired seeds.

Provisional (the verdict stands, with a caveat):

* fewer than ``[page] min_seeds`` paired seeds;
* still learning: a compared exit's validation accuracy rose by more than ``[page] max_last_epoch_rise`` points over
  its run's last epoch (the mean over seeds; the run files record every epoch);
* trained shorter than the suite's own length (a recorded ``train.epochs`` override below the suite file's) or the
  paper's (``paper_epochs``).
"""

from __future__ import annotations

import statistics
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from bench.results.record import TWIN_TOLERANCE, RunRecord, at_chance

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

from bench.verdicts.claimsfile import Claim, Page
from bench.verdicts.readings import budget_point


def at_chance_exit(records: Sequence[RunRecord], exits: Sequence[int]) -> str:
    """The first of ``exits`` that is at chance in at least half of ``records`` ("" when none)."""
    recs = [r for r in records if r.exits is not None]
    for i in exits:
        low = [
            r
            for r in recs
            if r.exits is not None and i < len(r.exits.names) and at_chance(r.exits.test_accuracy[i], r.classes)
        ]
        if recs and 2 * len(low) >= len(recs):
            names = recs[0].exits.names if recs[0].exits else []
            name = names[i] if i < len(names) else str(i)
            mean = 100 * statistics.fmean(r.exits.test_accuracy[i] for r in low if r.exits is not None)
            seeds = f"{len(low)} of {len(recs)} seeds"
            return f"{recs[0].variant}'s exit {name} is at chance ({mean:.1f} % test accuracy in {seeds})"
    return ""


def steps(records: Sequence[RunRecord]) -> int:
    """Training steps per seed (pre-training included), the most common value over the seeds."""
    values = [r.total_steps for r in records]
    return max(set(values), key=values.count) if values else 0


def unequal_steps(claim: Claim, a: Sequence[RunRecord], b: Sequence[RunRecord]) -> str:
    """Why a variant-against-variant row is refused for unequal training ("" when equal or declared)."""
    sa, sb = steps(a), steps(b)
    if not claim.equal_steps or not sa or not sb or abs(sa - sb) <= 0.01 * max(sa, sb):
        return ""
    return (
        f"unequal training: {claim.variant} trained {sa:,} steps, {claim.against} {sb:,} (compare at equal "
        "steps, e.g. against a sum-2x reference, or declare equal_steps = false)"
    )


def last_epoch_rise(record: RunRecord, exits: Sequence[int]) -> float | None:
    """The largest rise (points) of ``exits``' validation accuracy over the run's last epoch (None: one epoch)."""
    epochs = record.training.epochs if record.training else []
    if len(epochs) < 2:
        return None
    last, before = epochs[-1].get("val_accuracy"), epochs[-2].get("val_accuracy")
    if not isinstance(last, list) or not isinstance(before, list):
        return None
    rises = [100 * (last[i] - before[i]) for i in exits if i < min(len(last), len(before))]
    return max(rises) if rises else None


def still_rising(page: Page, sides: Mapping[str, tuple[Sequence[RunRecord], Sequence[int]]]) -> str:
    """A note for every compared variant whose exits were still learning: mean over seeds of the last epoch's rise."""
    notes = []
    for variant, (records, exits) in sides.items():
        rises = [x for r in records if (x := last_epoch_rise(r, exits)) is not None]
        if rises and statistics.fmean(rises) > page.max_last_epoch_rise:
            notes.append(
                f"{variant} still rising (+{statistics.fmean(rises):.2f} points of validation accuracy "
                "over its last epoch)"
            )
        elif not rises and records:
            notes.append(f"{variant}: one epoch in its last stage, so whether it converged cannot be told")
    return "; ".join(notes)


def epochs_of(record: RunRecord) -> tuple[int, int]:
    """(epochs of the run's own stage, epochs in all, pre-training included)."""
    job = record.config.get("job", {})
    own = int(job.get("train", {}).get("epochs", 0))
    pre = job.get("pretrain") or {}
    return own, own + (int(pre.get("train", {}).get("epochs", 0)) if pre else 0)


def full_length(folder: Path) -> int | None:
    """The suite's own ``train.epochs`` as its file states it, before any ``--set`` override (None: not stated)."""
    try:
        data = tomllib.loads((folder / "suite.toml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    epochs = data.get("train", {}).get("epochs") if isinstance(data.get("train"), dict) else None
    return epochs if isinstance(epochs, int) and not isinstance(epochs, bool) else None


def short_training(page: Page, claim: Claim, records: Sequence[RunRecord], full: int | None) -> str:
    """A note when the runs trained shorter than their suite says (a ``train.epochs`` override below the suite's
    own, ``full``) or than the paper (``paper_epochs``: the paper's epochs in all, pre-training included)."""
    if not records:
        return ""
    notes = []
    shorter = [o for o in records[0].config.get("overrides", []) if str(o).replace(" ", "").startswith("train.epochs=")]
    length = shorter[0].split("=", 1)[1].strip() if shorter else None
    if length is not None and full and length.isdigit() and int(length) < full:
        notes.append(f"trained with train.epochs={length}, the suite's own length is {full} epochs per stage")
    _, total = epochs_of(records[0])
    if claim.paper_epochs and total < claim.paper_epochs:
        notes.append(f"{total} epoch(s) in all against the paper's {claim.paper_epochs}")
    return "; ".join(notes)


def few_seeds(page: Page, n: int) -> str:
    return f"n = {n} < {page.min_seeds} seeds" if 0 < n < page.min_seeds else ""


def budget_binds(page: Page, records: Sequence[RunRecord], budget: float | None) -> str:
    """Why a budget row is no equal-compute comparison ("" when the chosen points use the budget)."""
    fractions = [p.test_cost_fraction for r in records if (p := budget_point(r, budget)) is not None]
    unit = records[0].budget.unit if records and records[0].budget else "fraction"
    if budget is None or not fractions or unit != "fraction" or max(fractions) >= budget - page.budget_slack:
        return ""
    return (
        f"the budget does not bind: the thresholds chosen for {100 * budget:g} % of base MACs cost "
        f"{100 * min(fractions):.0f}-{100 * max(fractions):.0f} % (read accuracy_at_cost for an equal-compute "
        "comparison)"
    )


def noisy_timing(claim: Claim, records: Sequence[RunRecord]) -> str:
    """For a timed metric: the runs timed on a busy machine (the load monitor's flag) and the runs whose full network
    and last exit's path, one computation, timed apart in the claim's runtime and batch size
    (:meth:`bench.results.record.LatencyRecord.twin_gaps`); "" when neither."""
    timed = [r for r in records if r.latency is not None]
    busy = sorted(f"{r.variant} seed {r.seed}" for r in timed if r.latency and r.latency.busy)
    noisy = sorted(
        f"{r.variant} seed {r.seed}"
        for r in timed
        if r.latency
        and any(g["runtime"] == claim.runtime and g["batch_size"] == claim.batch for g in r.latency.twin_gaps())
    )
    notes = [f"timed on a busy machine ({', '.join(busy)}), re-time alone"] if busy else []
    if noisy:
        notes.append(
            f"noisy timing ({', '.join(noisy)}: the full network and its last exit's path, one computation, "
            f"more than {TWIN_TOLERANCE:.0%} apart), re-time alone"
        )
    return "; ".join(notes)
