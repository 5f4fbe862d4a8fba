"""BranchyNet's Table I (LeNet row) against a results folder of ``suites/branchynet_lenet.toml``.

    bench reproduce results/branchynet_lenet --out results/branchynet_lenet/REPRODUCTION.md

Their numbers (Teerapittayanon, McDanel, Kung, ICPR 2016, Table I): LeNet 99.20 %, 3.37 ms per
sample on CPU, 1.58 ms on GPU; B-LeNet 99.25 % with 94.3 % / 5.63 % of samples leaving at the
branch / the final exit at entropy threshold 0.025 nats, 0.62 ms on CPU (5.4x), 0.34 ms on GPU
(4.7x). Ours: mean and 95 % t-interval over seeds, at their fixed threshold (their rule, which they
screened on the test set) and at the threshold chosen on validation for their early-exit share
(our rule, the suite's ``[budget]``). Times are medians of repeated passes at batch 1 (and 256),
per sample, with the interquartile range of the repeats, in every runtime the runs were timed in
(PyTorch eager and ONNX Runtime: the suite's ``runtimes``); the speedup at our threshold is predicted
from B-LeNet's exit paths timed alone, weighted by the test exit shares there.
"""

from __future__ import annotations

import math
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.analyse import stats
from bench.analyse.load import Results, load_results
from bench.render.format import fmt_interval
from bench.results.record import TWIN_TOLERANCE, RunRecord

THEIRS = {
    "lenet_accuracy": 99.20,
    "blenet_accuracy": 99.25,
    "branch_share": 94.3,
    "final_share": 5.63,
    "entropy_threshold_nats": 0.025,
    "lenet_cpu_ms": 3.37,
    "blenet_cpu_ms": 0.62,
    "cpu_speedup": 5.4,
    "lenet_gpu_ms": 1.58,
    "blenet_gpu_ms": 0.34,
    "gpu_speedup": 4.7,
}
LN10 = math.log(10)


@dataclass
class Row:
    quantity: str
    theirs: float | None
    ours: stats.Interval | None
    unit: str
    verdict: str
    note: str = ""


def _iv(values: Sequence[float]) -> stats.Interval | None:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    return stats.t_interval(vals) if vals else None


def _verdict(theirs: float, ours: stats.Interval | None, close: float) -> str:
    if ours is None:
        return "not measured"
    inside = not math.isnan(ours.low) and ours.low <= theirs <= ours.high
    if abs(ours.mean - theirs) <= close:
        return "reproduced"
    return "within CI" if inside else "not reproduced"


RUNTIME_LABELS = {"eager": "PyTorch eager", "onnxruntime": "ONNX Runtime"}


def _latency(rec: RunRecord, batch: int, which: str, runtime: str) -> tuple[float, float] | None:
    """(median, IQR) seconds per sample of the full or dynamic pass at ``batch`` at the headline threshold."""
    if rec.latency is None:
        return None
    item = rec.latency.at(rec.headline_threshold, batch, runtime)
    if item is None:
        return None
    t = item.full if which == "full" else item.dynamic
    return t["median"] / item.samples, t["iqr"] / item.samples


def _path_predicted(rec: RunRecord, shares: Sequence[float], batch: int, runtime: str) -> float | None:
    """Seconds per sample of B-LeNet at exit ``shares`` from its exit paths' own times (None: not timed)."""
    if rec.latency is None or rec.cost is None:
        return None
    paths = [rec.latency.path_at(c.exit, batch, runtime) for c in rec.cost.per_exit]
    if any(p is None for p in paths):
        return None
    return sum(s * p.per_sample_median for s, p in zip(shares, paths) if p is not None)


def runtimes(results: Results) -> list[str]:
    """The runtimes every run of the folder was timed in, eager first."""
    names = [set(r.latency.runtime_names) if r.latency else set() for r in results.records]
    common = set.intersection(*names) if names else set()
    return sorted(common, key=lambda n: (n != "eager", n))


def _mac_speedup(results: Results, shares: Sequence[float]) -> float:
    """LeNet's MACs over B-LeNet's expected MACs at exit ``shares``: the most a cost proportional to MACs allows."""
    lenet, blenet = results.records_of("lenet")[0].cost, results.records_of("b-lenet")[0].cost
    assert lenet is not None and blenet is not None
    return lenet.per_exit[-1].macs / sum(s * c.macs for s, c in zip(shares, blenet.per_exit))


def _timing_cautions(records: Sequence[RunRecord], runtime: str, batch: int) -> str:
    """What to know before trusting these timings: runs timed on a busy machine (the load monitor's flag) and runs
    whose full network and last exit's path, one computation, timed apart in ``runtime`` at ``batch``
    (:meth:`bench.results.record.LatencyRecord.twin_gaps`); "" when neither."""
    timed = [r for r in records if r.latency is not None]
    busy = sorted(f"{r.variant} seed {r.seed}" for r in timed if r.latency and r.latency.busy)
    noisy = sorted(f"{r.variant} seed {r.seed}" for r in timed if r.latency and any(
        g["runtime"] == runtime and g["batch_size"] == batch for g in r.latency.twin_gaps()))  # fmt: skip
    out = f"timed on a busy machine ({', '.join(busy)}: the load monitor's flag), re-time alone; " if busy else ""
    if noisy:
        out += (f"noisy timing ({', '.join(noisy)}: the full network and its last exit's path, one computation, "
                f"more than {TWIN_TOLERANCE:.0%} apart), re-time alone; ")  # fmt: skip
    return out


def _runtime_rows(results: Results, runtime: str, batch: int) -> list[Row]:
    """LeNet, B-LeNet and the speedup at their threshold in ``runtime``, plus the speedup at ours from path times."""
    lenet, blenet = results.records_of("lenet"), results.records_of("b-lenet")
    full = [_latency(r, batch, "full", runtime) for r in lenet]
    dyn = [_latency(r, batch, "dynamic", runtime) for r in blenet]
    if not all(full) or not all(dyn):
        return []
    label = f"CPU, {RUNTIME_LABELS.get(runtime, runtime)}" + ("" if batch == 1 else f", batch {batch}")
    caution = _timing_cautions((*lenet, *blenet), runtime, batch)
    theirs = batch == 1
    f_ms = [1e3 * t[0] for t in full if t]
    d_ms = [1e3 * t[0] for t in dyn if t]
    iqr = f"IQR of the repeats: LeNet {statistics.median(1e3 * t[1] for t in full if t):.3f} ms, "
    iqr += f"B-LeNet {statistics.median(1e3 * t[1] for t in dyn if t):.3f} ms"
    lenet_s = {r.seed: t[0] for r, t in zip(lenet, full) if t}
    speed = [lenet_s[r.seed] / t[0] for r, t in zip(blenet, dyn) if t and r.seed in lenet_s]
    thr = results.headline
    shares = statistics.fmean(r.at(thr).exit_share[0] for r in blenet)
    why = (f"by MACs alone {_mac_speedup(results, [shares, 1 - shares]):.2f}x at our exit shares at their threshold, "
           f"{_mac_speedup(results, [0.943, 0.057]):.2f}x at theirs (94.3 %); a time above or below that is per-call "
           "cost (dispatch, Python, small kernels) that MACs do not count")  # fmt: skip
    out = [
        Row(f"LeNet time per sample ({label})", THEIRS["lenet_cpu_ms"] if theirs else None, _iv(f_ms), "ms", "",
            caution + iqr),
        Row(f"B-LeNet time per sample ({label})", THEIRS["blenet_cpu_ms"] if theirs else None, _iv(d_ms), "ms", ""),
        Row(f"speedup LeNet / B-LeNet ({label})", THEIRS["cpu_speedup"] if theirs else None, _iv(speed), "x", "",
            why),
    ]  # fmt: skip
    points = {r.seed: r.budget.points[0] for r in blenet if r.budget and r.budget.points}
    ours = []
    for r in blenet:
        predicted = _path_predicted(r, points[r.seed].test_exit_share, batch, runtime) if r.seed in points else None
        if predicted and r.seed in lenet_s:
            ours.append(lenet_s[r.seed] / predicted)
    if ours:
        note = "B-LeNet's exit paths timed alone, weighted by the test exit shares at our threshold"
        out.append(Row(f"speedup LeNet / B-LeNet ({label}), threshold chosen on validation, from path times",
                       THEIRS["cpu_speedup"] if theirs else None, _iv(ours), "x", "", note))  # fmt: skip
    return out


def rows(results: Results) -> list[Row]:
    lenet = results.records_of("lenet")
    blenet = results.records_of("b-lenet")
    thr = results.headline
    out = [
        Row("LeNet accuracy", THEIRS["lenet_accuracy"], _iv([100 * r.at(thr).accuracy for r in lenet]), "%", ""),
        Row("B-LeNet accuracy, their threshold", THEIRS["blenet_accuracy"],
            _iv([100 * r.at(thr).accuracy for r in blenet]), "%", ""),
        Row("exits at the branch, their threshold", THEIRS["branch_share"],
            _iv([100 * r.at(thr).exit_share[0] for r in blenet]), "%", ""),
        Row("exits at the final layer, their threshold", THEIRS["final_share"],
            _iv([100 * r.at(thr).exit_share[-1] for r in blenet]), "%", ""),
    ]  # fmt: skip
    points = [r.budget.points[0] for r in blenet if r.budget and r.budget.points]
    if points:
        out += [
            Row("B-LeNet accuracy, threshold chosen on validation", THEIRS["blenet_accuracy"],
                _iv([100 * p.test_accuracy for p in points]), "%", ""),
            Row("exits at the branch, threshold chosen on validation", THEIRS["branch_share"],
                _iv([100 * p.test_exit_share[0] for p in points]), "%", "matched by construction",
                "on validation; the test share follows"),
            Row("entropy threshold chosen on validation", THEIRS["entropy_threshold_nats"],
                _iv([(1 - p.thresholds[0]) * LN10 for p in points]), "nats", ""),
        ]  # fmt: skip
    for runtime in runtimes(results):
        for batch in (1, 256):
            out += _runtime_rows(results, runtime, batch)
    out += [
        Row("LeNet time per sample (GPU)", THEIRS["lenet_gpu_ms"], None, "ms", "not measured",
            "no GPU machine was lent to the session that made these runs"),
        Row("B-LeNet time per sample (GPU)", THEIRS["blenet_gpu_ms"], None, "ms", "not measured"),
    ]  # fmt: skip
    epochs = _epochs(results)
    for row in out:
        if row.unit in ("%", "nats") and not row.note and epochs:
            row.note = epochs
        elif row.unit in ("ms", "x") and row.theirs is not None and row.ours is not None:
            where = "theirs: chainer, Python-level wall-clock on 2016 hardware; ours: this CPU"
            row.note = f"{where}; {row.note}" if row.note else where
    close = {"%": 0.15, "nats": 0.005, "ms": 0.0, "x": 0.0}
    for row in out:
        if not row.verdict and row.theirs is not None:
            row.verdict = _verdict(row.theirs, row.ours, close[row.unit])
        elif not row.verdict:
            row.verdict = "(not in the paper)"
    return out


def _epochs(results: Results) -> str:
    """A note when the runs trained shorter than the paper's 50 + 100 epochs."""
    blenet = results.records_of("b-lenet")
    if not blenet:
        return ""
    job = blenet[0].config["job"]
    pre = job["pretrain"]["train"]["epochs"] if job.get("pretrain") else 0
    joint = job["train"]["epochs"]
    return "" if (pre, joint) == (50, 100) else f"trained {pre} + {joint} epochs, not 50 + 100 (override recorded)"


def cost_lines(results: Results) -> list[str]:
    lenet, blenet = results.records_of("lenet")[0], results.records_of("b-lenet")[0]
    thr = results.headline
    table = results.energy_table()
    assert lenet.cost is not None and blenet.cost is not None
    lines = [
        f"| network | MACs per sample (1 MAC = 2 FLOPs) | energy ({table}, MAC-equivalents) |",
        "| --- | --- | --- |",
        f"| LeNet | {lenet.cost.per_exit[-1].macs:,} | {lenet.cost.per_exit[-1].energy[table]['total']:,.0f} |",
    ]
    for c in blenet.cost.per_exit:
        lines.append(f"| B-LeNet, up to exit {c.exit} | {c.macs:,} | {c.energy[table]['total']:,.0f} |")
    macs = _iv([r.at(thr).macs_expected for r in results.records_of("b-lenet")])
    energy = _iv([r.at(thr).energy_expected[table] for r in results.records_of("b-lenet")])
    if macs and energy:
        lines.append(f"| B-LeNet at their threshold (expected) | {macs.mean:,.0f} | {energy.mean:,.0f} |")
    return lines


def _fmt(iv: stats.Interval | None, unit: str) -> str:
    if iv is None:
        return "n/a"
    return fmt_interval(iv.mean, iv.low, iv.high, digits=2 if unit in ("%", "x") else 3, brackets=True)


def render(folder: Path) -> str:
    results = load_results(folder)
    table = ["| quantity | theirs | ours: mean [95 % CI] | difference | verdict | note |",
             "| --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for r in rows(results):
        diff = "" if r.theirs is None or r.ours is None else f"{r.ours.mean - r.theirs:+.3g} {r.unit}"
        theirs = "-" if r.theirs is None else f"{r.theirs:g} {r.unit}"
        table.append(f"| {r.quantity} | {theirs} | {_fmt(r.ours, r.unit)} {r.unit} | {diff} | {r.verdict} | {r.note} |")
    seeds = sorted({r.seed for r in results.records})
    overrides = sorted({o for r in results.records for o in r.config.get("overrides", [])})
    prov = results.records[0].provenance
    lines = [
        "# BranchyNet Table I, LeNet row: theirs vs ours",
        "",
        f"Runs: `{folder}`, seeds {seeds}; device {prov.get('device')} ({prov.get('device_name')}), "
        f"{prov.get('threads')} threads, torch {prov.get('torch')}, commit {prov.get('git_commit')}.",
        f"Overrides: {', '.join(f'`{o}`' for o in overrides) or 'none'}.",
        "Written by `bench reproduce " + str(folder) + "`.",
        "",
        *table,
        "",
        "Their threshold is 0.025 nats of softmax entropy (our entropy confidence t = 1 - H / ln 10 = 0.98914264);",
        "they screened it on the test set. Ours, chosen on validation only, is the most accurate threshold whose",
        "validation early-exit share is at least their 94.3 %.",
        "",
        "## Cost (not reported in the paper)",
        "",
        *cost_lines(results),
        "",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m bench.verdicts.reproduction RESULTS_DIR", file=sys.stderr)
        return 2
    print(render(Path(args[0])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
