"""The statistics of a results folder as data: one pandas DataFrame per table (means and t-intervals
over seeds, paired differences with Holm correction, latency per runtime and against the roofline).

Rendering them (strings, markdown, figures) is :mod:`bench.render`'s job.
"""

from __future__ import annotations

import math
import re
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from bench.analyse import stats
from bench.analyse.load import Results
from bench.results.metrics import MAIN_METRICS, METRICS, MetricKey
from bench.results.record import TWIN_TOLERANCE, RunRecord, at_chance, twin_where
from cascade.data import DATASETS


def _reference_for(results: Results, variant: str) -> str | None:
    ref = results.report_spec.reference
    return ref if ref in results.variants and ref != variant else None


def _cascade_reference_for(results: Results, variant: str) -> str | None:
    recs = results.records_of(variant)
    if not recs:
        return None
    loss, exits = recs[0].loss, recs[0].exits_at
    want = results.report_spec.cascade_reference
    if loss in (want, "base") or not exits:
        return None
    for other in results.variants:
        o = results.records_of(other)[0]
        if o.loss == want and o.exits_at == exits and not o.sweep:
            return other
    return None


def comparison_frame(
    results: Results, metrics: Sequence[tuple[str, float]], reference_of: Callable[[Results, str], str | None]
) -> pd.DataFrame:
    """Paired differences (variant - reference) per metric, Holm-corrected over the table; each row
    states both sides' training steps per seed (pre-training included), so that an unequal training
    budget is visible next to the difference it may explain."""
    rows = []
    thr = results.headline

    for variant in results.variants:
        ref = reference_of(results, variant)
        if ref is None:
            continue
        for metric, scale in metrics:
            test = stats.paired_test(results.by_seed(variant, metric, thr), results.by_seed(ref, metric, thr))
            exact = test.note.startswith("exact")  # zero-variance differences: exact, not tested
            rows.append(
                {
                    "variant": variant,
                    "reference": ref,
                    "steps": f"{results.steps(variant)} vs {results.steps(ref)}",
                    "metric": metric,
                    "n": test.n,
                    "diff": test.diff.mean * scale,
                    "diff_low": test.diff.low * scale,
                    "diff_high": test.diff.high * scale,
                    "p": math.nan if exact else test.p_value,
                    "exact": exact,
                }
            )
    cols = ["variant", "reference", "steps", "metric", "n", "diff", "diff_low", "diff_high", "p", "exact"]
    frame = pd.DataFrame(rows, columns=cols)
    frame["p_holm"] = stats.holm(frame["p"].tolist()) if len(frame) else []
    frame["significant"] = frame["p_holm"] < 0.05
    return frame


def main_frame(results: Results, vs_ref: pd.DataFrame) -> pd.DataFrame:
    """Per variant: mean, CI low, CI high of each metric (raw units), plus significance and warnings."""
    thr = results.headline
    metrics = [*MAIN_METRICS, *(MetricKey("latency", batch=b).name() for b in results.latency_batches()), "total_steps"]
    rows = []
    for variant in results.variants:
        recs = results.records_of(variant)
        row: dict[str, Any] = {
            "variant": variant,
            "loss": recs[0].loss,
            "exits": "+".join(recs[0].exits_at) or "none",
            "n": len(recs),
        }
        for metric in metrics:
            iv = stats.t_interval(list(results.by_seed(variant, metric, thr).values()))
            row[metric] = iv.mean
            row[f"{metric}_low"] = iv.low
            row[f"{metric}_high"] = iv.high
        sig = vs_ref[(vs_ref["variant"] == variant) & (vs_ref["metric"] == "accuracy")]
        row["accuracy_significant"] = bool(sig["significant"].iloc[0]) if len(sig) else False
        rows.append(row)
    return pd.DataFrame(rows)


def exit_cost_frame(results: Results) -> pd.DataFrame:
    """Deterministic cumulative cost of each exit (exact, per sample), once per distinct architecture;
    ``variants`` lists the variants that share it."""
    archs: dict[tuple[Any, ...], list[str]] = {}
    first: dict[tuple[Any, ...], RunRecord] = {}
    for variant in results.variants:
        rec = results.records_of(variant)[0]
        assert rec.cost is not None
        arch = tuple((c.exit, c.macs, c.params) for c in rec.cost.per_exit)
        archs.setdefault(arch, []).append(variant)
        first.setdefault(arch, rec)
    rows = []
    for arch, variants in archs.items():
        cost = first[arch].cost
        assert cost is not None
        for c in cost.per_exit:
            row = {
                "variants": ", ".join(variants),
                "exit": c.exit,
                "MACs": c.macs,
                "FLOPs": c.flops,
                "params": c.params,
            }
            for table, e in c.energy.items():
                row[f"energy_{table}"] = e["total"]
            rows.append(row)
    return pd.DataFrame(rows)


#: The latency-model table's last column: a ratio of speedups (how much of the predicted gain was measured),
#: not of times.
RATIO = "speedup measured ÷ speedup roofline"


def _exits_of(columns: Iterable[str], suffix: str) -> list[str]:
    """The exits named by the columns ``<exit><suffix>``, in order of first appearance, the final exit last."""
    exits = dict.fromkeys(c.removesuffix(suffix) for c in columns if c.endswith(suffix))
    return sorted(exits, key=lambda e: e == "final")


def latency_model_frame(results: Results) -> pd.DataFrame:
    """Per variant and timed batch: each exit path's measured and roofline-predicted time per sample,
    and the dynamic forward's speedup over the full network at the headline threshold as measured
    and as predicted by MACs, by the roofline and by the timed exit paths (means over seeds)."""
    rows = []
    for variant in results.variants:
        recs = [r for r in results.records_of(variant) if r.latency is not None and r.latency.roofline]
        for batch in sorted({b for r in recs for b in r.latency.batch_sizes}):  # type: ignore[union-attr]
            paths: dict[str, list[tuple[float, float]]] = {}
            speed: dict[str, list[float]] = {"measured": [], "MACs": [], "roofline": [], "paths": []}
            for r in recs:
                assert r.latency is not None and r.cost is not None
                for p in r.latency.path_entries():
                    if p.batch_size == batch and p.roofline_per_sample is not None:
                        paths.setdefault(p.exit, []).append((p.per_sample_median, p.roofline_per_sample))
                c = r.latency.at(results.headline, batch)
                if c is None or c.roofline_per_sample is None or c.roofline_full_per_sample is None:
                    continue
                speed["measured"].append(c.speedup_vs_full)
                speed["MACs"].append(r.cost.per_exit[-1].macs / r.at(c.threshold).macs_expected)
                speed["roofline"].append(c.roofline_full_per_sample / c.roofline_per_sample)
                if c.path_predicted_per_sample:
                    speed["paths"].append(c.full["median"] / c.samples / c.path_predicted_per_sample)
            if not paths:
                continue
            row: dict[str, Any] = {"variant": variant, "batch": batch, "n": len(recs)}
            for name, pairs in paths.items():
                row[f"{name} measured (µs)"] = 1e6 * statistics.fmean(m for m, _ in pairs)
                row[f"{name} roofline (µs)"] = 1e6 * statistics.fmean(p for _, p in pairs)
            for k, v in speed.items():
                row[f"speedup {k}"] = statistics.fmean(v) if v else math.nan
            row[RATIO] = row["speedup measured"] / row["speedup roofline"]
            rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    exits = _exits_of(frame.columns, " measured (µs)")
    timed = [f"{e} {kind} (µs)" for e in exits for kind in ("measured", "roofline")]
    rest = [c for c in frame.columns if c not in timed and c not in ("variant", "batch", "n")]
    return frame[["variant", "batch", "n", *timed, *rest]]


def runtime_frame(results: Results) -> pd.DataFrame:
    """Per variant, runtime and timed batch (headline threshold, means over seeds): each exit path's time per
    sample, the dynamic cascade's, its speedup over the full network as measured and as the MACs say, what
    the exit paths predict for the cascade, the runtime's own roofline (cascade time, speedup, measured ÷
    predicted speedup, and each path's and the cascade's measured ÷ predicted time: the absolute error, which
    the speedup ratio divides out) where it was predicted, and the decisions that differ from eager's. Empty unless a
    folder timed more than one runtime."""
    rows = []
    for variant in results.variants:
        recs = [r for r in results.records_of(variant) if r.latency is not None and len(r.latency.runtime_names) > 1]
        if not recs:
            continue
        for runtime in recs[0].latency.runtime_names:  # type: ignore[union-attr]
            for batch in sorted({c.batch_size for r in recs for c in r.latency.entries(runtime)}):  # type: ignore[union-attr]
                row: dict[str, Any] = {"variant": variant, "runtime": runtime, "batch": batch, "n": len(recs)}
                cells: dict[str, list[float]] = defaultdict(list)
                for r in recs:
                    assert r.latency is not None and r.cost is not None
                    for p in r.latency.path_entries(runtime):
                        if p.batch_size == batch:
                            cells[f"{p.exit} path (µs)"].append(1e6 * p.per_sample_median)
                            if p.roofline_per_sample:
                                ratio = p.per_sample_median / p.roofline_per_sample
                                cells[f"{p.exit} path ÷ roofline"].append(ratio)  # the absolute error
                    c = r.latency.at(results.headline, batch, runtime)
                    if c is None:
                        continue
                    cells["cascade (µs)"].append(1e6 * c.per_sample_median)
                    cells["speedup measured (full ÷ cascade)"].append(c.speedup_vs_full)
                    cells["speedup by MACs"].append(r.cost.per_exit[-1].macs / r.at(c.threshold).macs_expected)
                    # = path-predicted time ÷ cascade time: below 1, the cascade costs more than its exit paths say
                    if c.path_predicted_per_sample:
                        ratio = c.path_predicted_per_sample / c.per_sample_median
                        cells["speedup measured ÷ speedup paths"].append(ratio)
                    if c.roofline_per_sample and c.roofline_full_per_sample:  # the runtime's own roofline
                        cells["cascade roofline (µs)"].append(1e6 * c.roofline_per_sample)
                        cells["cascade ÷ roofline"].append(c.per_sample_median / c.roofline_per_sample)
                        cells["speedup roofline"].append(c.roofline_full_per_sample / c.roofline_per_sample)
                        cells[RATIO].append(c.speedup_vs_full * c.roofline_per_sample / c.roofline_full_per_sample)
                    agree = (r.latency.runtimes or {}).get(runtime, {}).get("agreement_with_eager", {})
                    counts = agree.get(str(c.threshold))
                    if counts:
                        cells["decisions ≠ eager (ties)"].append(counts["differ"])
                        cells["_ties"].append(counts["ties"])
                row.update({k: statistics.fmean(v) for k, v in cells.items() if v and not k.startswith("_")})
                if "decisions ≠ eager (ties)" in row:
                    row["decisions ≠ eager (ties)"] = (
                        f"{sum(cells['decisions ≠ eager (ties)']):.0f} ({sum(cells['_ties']):.0f})"
                    )
                rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    exits = _exits_of(frame.columns, " path (µs)")
    tail = [*(f"{e} path ÷ roofline" for e in exits), "cascade ÷ roofline", "decisions ≠ eager (ties)"]
    first = ["variant", "runtime", "batch", "n", *(f"{e} path (µs)" for e in exits)]
    last = [c for c in tail if c in frame.columns]
    rest = [c for c in frame.columns if c not in first and c not in last]
    return frame[[*first, *rest, *last]]


def anytime_frame(results: Results) -> pd.DataFrame:
    """Anytime prediction: each exit's own test accuracy (every sample through it), mean and 95 % CI,
    against its cumulative cost as a share of the base network's MACs."""
    rows = []
    for variant in results.variants:
        recs = [r for r in results.records_of(variant) if r.exits is not None and r.cost is not None]
        if not recs or len(recs[0].exits_at) == 0:
            continue
        cost = recs[0].cost
        assert cost is not None and recs[0].exits is not None
        for j, name in enumerate(recs[0].exits.names):
            iv = stats.t_interval([r.exits.test_accuracy[j] for r in recs if r.exits])
            rows.append(
                {
                    "variant": variant,
                    "exit": name,
                    "cost_fraction": cost.per_exit[j].macs / cost.base["macs"],
                    "n": iv.n,
                    "test_accuracy": iv.mean,
                    "acc_low": iv.low,
                    "acc_high": iv.high,
                }
            )
    return pd.DataFrame(rows, columns=["variant", "exit", "cost_fraction", "n", "test_accuracy", "acc_low", "acc_high"])


def warnings_for(results: Results) -> list[str]:
    """Degenerate cases made visible (exit at chance, 0 % / 100 % early) and statistical caveats."""
    out = []
    thr = results.headline
    n_seeds = min((len(results.records_of(v)) for v in results.variants), default=0)
    w = stats.few_seeds_warning(n_seeds)
    if w:
        out.append(w)
    for variant in results.variants:
        recs = results.records_of(variant)
        assert recs[0].exits is not None
        names = recs[0].exits.names
        k = recs[0].classes
        for i, name in enumerate(names):  # every variant, base included; test or validation at chance
            acc = stats.t_interval([r.exits.test_accuracy[i] for r in recs if r.exits]).mean
            val = stats.t_interval([r.exits.val_accuracy[i] for r in recs if r.exits]).mean
            if at_chance(acc, k) or at_chance(val, k):
                out.append(
                    f"{variant}: exit {name} is at chance level ({acc:.1%} test, {val:.1%} validation "
                    f"accuracy; chance {1 / k:.1%})"
                )
        for w in dict.fromkeys(w for r in recs if r.sanity for w in r.sanity.warnings if "batch-norm" in w):
            out.append(w)  # the cause, per seed (at-chance lines per seed would repeat the one above)
        if len(names) < 2:
            continue
        early = stats.t_interval([r.at(thr).early_share for r in recs]).mean
        if recs[0].at(thr).threshold is not None:
            if early >= 0.999:
                out.append(f"{variant}: {early:.1%} of samples leave early at t = {thr}: the last exit is never used")
            elif early <= 0.001:
                out.append(
                    f"{variant}: {early:.1%} of samples leave early at t = {thr}: the early exits are never used"
                )
    mismatch = description_warning(results)
    if mismatch:
        out.append(mismatch)
    busy = [r for r in results.records if r.latency is not None and r.latency.busy]
    for r in busy:
        assert r.latency is not None and r.latency.load is not None
        ld = r.latency.load
        out.append(
            f"{r.variant} seed {r.seed}: latency timed on a busy machine (other processes used "
            f"{ld['before']['others_cores']:.2f} cores before and {ld['during']['others_cores']:.2f} during timing, "
            f"limit {ld['busy_limit_cores']:.2f}; load average {ld['during']['loadavg_1min']}); "
            "its latency and speedup are not the model's: rerun it on a quiet machine"
        )
    twins = twin_summary(results)
    if twins:
        out.append(twins)
    out += timing_notes(results)
    for r in results.failed:
        out.append(f"{r.variant} seed {r.seed} FAILED: {r.error_message or '?'}")
    for problem in results.problems:
        out.append(f"unreadable run file skipped: {problem}")
    return out


def timing_notes(results: Results) -> list[str]:
    """Runs whose latency timing stopped at its budget (fewer repeats than asked), and the share of the runs' time
    that timing took (a warning above a quarter)."""
    out = []
    for r in results.records:
        budget = (r.latency.budget if r.latency else None) or {}
        for stop in budget.get("stopped", []):
            out.append(
                f"{r.variant} seed {r.seed}: latency timing stopped at its budget ({budget['seconds']:.0f} s) "
                f"after {stop['rounds']} of {stop['asked']} repeats ({stop['runtime']}, batch "
                f"{stop['batch_size']}): fewer samples, wider intervals; evaluation.latency_budget_s gives it "
                "more time"
            )
    shares = [r.phase_seconds["latency"] / r.seconds for r in results.records if r.phase_seconds and r.seconds]
    if shares and statistics.median(shares) > 0.25:
        out.append(
            f"latency timing took {statistics.median(shares):.0%} of a run (median over the runs; "
            f"{max(shares):.0%} at most): more than the quarter the default budget aims at"
        )
    return out


def twin_summary(results: Results) -> str | None:
    """One warning for every timing of the folder whose full network and last exit's path, one computation timed
    in the same rounds, differ by more than ``TWIN_TOLERANCE`` (:meth:`LatencyRecord.twin_gaps`); None: none."""
    timed = [r for r in results.records if r.latency is not None]
    total = sum(len({(c.runtime, c.batch_size) for c in r.latency.cascade}) for r in timed if r.latency)
    gaps = [(r, g) for r in timed if r.latency for g in r.latency.twin_gaps()]
    if not gaps:
        return None
    where = "; ".join(f"{r.variant} seed {r.seed} {twin_where([g])}" for r, g in gaps)
    return (
        f"latency noise: in {len(gaps)} of {total} timings (run x runtime x batch size) the full network and its "
        f"last exit's path, the same computation, differ by more than {TWIN_TOLERANCE:.0%} ({where}): the "
        "machine's speed changed while they were timed, so those latencies and speedups are in doubt: "
        "rerun them alone"
    )


@dataclass
class Tables:
    main: pd.DataFrame
    vs_reference: pd.DataFrame
    vs_cascade_reference: pd.DataFrame
    exit_costs: pd.DataFrame
    warnings: list[str]
    budget: pd.DataFrame
    anytime: pd.DataFrame
    latency_model: pd.DataFrame


def _scaled(*names: str) -> list[tuple[str, float]]:
    return [(n, METRICS[n].scale) for n in names]


def build_tables(results: Results) -> Tables:
    vs_ref = comparison_frame(results, _scaled("accuracy", "saved_vs_base"), _reference_for)
    vs_casc = comparison_frame(results, _scaled("accuracy", "early_share"), _cascade_reference_for)
    return Tables(
        main_frame(results, vs_ref),
        vs_ref,
        vs_casc,
        exit_cost_frame(results),
        warnings_for(results),
        budget_frame(results),
        anytime_frame(results),
        latency_model_frame(results),
    )


def budget_frame(results: Results) -> pd.DataFrame:
    """Per variant and budget: mean and CI of test accuracy and test cost (fraction of base)."""
    rows = []
    for variant in results.variants:
        recs = [r for r in results.records_of(variant) if r.budget and r.budget.points]
        if not recs:
            continue
        pts = [r.budget.points for r in recs if r.budget and r.budget.points]
        for j, p in enumerate(pts[0]):
            acc = stats.t_interval([q[j].test_accuracy for q in pts])
            cost = stats.t_interval([q[j].test_cost_fraction for q in pts])
            feasible = all(q[j].feasible for q in pts)
            rows.append(
                {
                    "variant": variant,
                    "budget": p.budget,
                    "unit": recs[0].budget.unit if recs[0].budget else "",
                    "n": acc.n,
                    "test_accuracy": acc.mean,
                    "acc_low": acc.low,
                    "acc_high": acc.high,
                    "test_cost_fraction": cost.mean,
                    "cost_low": cost.low,
                    "cost_high": cost.high,
                    "feasible": feasible,
                }
            )
    return pd.DataFrame(rows)


def description_warning(results: Results) -> str | None:
    """A warning when the suite's description names another dataset than the one the runs used
    (a suite copied for Fashion-MNIST that still says "on MNIST")."""
    if not results.suite or not results.suite.suite.description or not results.records:
        return None
    text = results.suite.suite.description
    used = {r.dataset for r in results.records}

    def pattern(name: str) -> re.Pattern[str]:
        # fashion_mnist ~ "Fashion-MNIST", cifar10 ~ "CIFAR-10"
        return re.compile(r"\b" + r"[-_ ]?".join(re.findall(r"[a-z]+|\d+", name.lower())) + r"\b", re.I)

    if any(pattern(u).search(text) for u in used):
        return None
    named = sorted(d for d in DATASETS.names() if d not in used and pattern(d).search(text))
    if not named:
        return None
    return (
        f"the suite's description names {', '.join(named)} but the runs used {', '.join(sorted(used))}: "
        "the description is the suite author's text; the data line above is what ran"
    )
