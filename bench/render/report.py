"""Reports of a results folder: statistics tables and figures.

Everything is built as data first (pandas DataFrames in :func:`build_tables`),
then rendered: rich in the terminal, markdown / CSV / LaTeX files, matplotlib
figures (PNG and PDF) and ``report.md`` embedding them.

Tables (all at the suite's headline threshold unless said otherwise):

* ``main``: per variant, mean and 95 % t-interval over seeds of accuracy,
  early exits, expected MACs / FLOPs / energy, compute saved, latency, and the
  training steps (pre-training included); ``*`` marks a Holm-significant
  paired difference in accuracy from the reference variant.
* ``vs_reference``: paired differences of each variant against the reference
  (default ``base``): accuracy and compute saved.
* ``vs_cascade_reference``: cascade variants against the ``sum`` variant at
  the same exits: accuracy and early exits.
* ``exit_costs``: deterministic per-exit cumulative MACs, params and energy.

Each comparison table is Holm-corrected over its own rows.
"""

from __future__ import annotations

import math
import re
import statistics
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from rich.markup import escape
from rich.table import Table

from bench.analyse import stats
from bench.analyse.load import Results, load_results
from bench.config.plan import build_for, expand_runs, select_runs
from bench.config.suite import load_suite
from bench.config.tables import EnergyTable, Hardware, load_energy_table, load_hardware
from bench.measure.cost import buffered_breakdown, energy_breakdown, layer_energy_rows, profile
from bench.measure.dataflow import dram_traffic, gemm_shapes
from bench.render import figures
from bench.results.files import atomic_write_bytes, atomic_write_files
from bench.results.record import MAIN_METRICS, METRICS, RunRecord, at_chance, get_metric
from bench.results.store import ResultStore, StoreError
from bench.results.store import canonical_json as canonical
from cascade.data import DATASETS, dataset_shape

# --------------------------------------------------------------------------- data


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
    metrics = [*MAIN_METRICS, *(f"latency_b{b}" for b in results.latency_batches()), "total_steps"]
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
            row = {"variants": ", ".join(variants), "exit": c.exit, "MACs": c.macs, "FLOPs": c.flops,
                   "params": c.params}  # fmt: skip
            for table, e in c.energy.items():
                row[f"energy_{table}"] = e["total"]
            rows.append(row)
    return pd.DataFrame(rows)


def exit_cost_caption(results: Results) -> str:
    caption = "Cumulative cost per exit (exact, per sample; one row set per distinct architecture)"
    rec = next((r for r in results.records if r.cost is not None), None)
    info = rec.cost.energy_tables if rec and rec.cost else {}
    buffered = [(k, v) for k, v in info.items() if v.get("model") == "buffered"]
    if buffered:
        v = buffered[0][1]
        caption += (f". energy_<table>: ideal reuse, each tensor crosses DRAM once (a lower bound), batch 1; "
                    f"energy_<table>_buffered: buffer-aware on {v.get('hardware')}, per sample at batch "
                    f"{v.get('batch')} (docs/cost.md)")  # fmt: skip
    return caption


def latency_timed_note(results: Results) -> str:
    """What the latency-model table timed, from the first timed run file ("" without one)."""
    lat = next((r.latency for r in results.records if r.latency is not None and r.latency.roofline), None)
    if lat is None:
        return ""
    layout, allocator = lat.layout or {}, lat.allocator or {}
    timed = [f"{lat.threads} thread(s) on {lat.device}"]
    if layout.get("bn_folded"):
        timed.append("batch norm folded")
    if layout.get("channels_last"):
        timed.append("NHWC")
    if layout.get("flatten_memory_order"):
        timed.append("flatten in memory order")
    timed += [f"segment {i + 1} in slices of {s['chunk']} from batch {s['from_batch']}"
              for i, s in enumerate(layout.get("segment_slices") or []) if s]  # fmt: skip
    if allocator.get("kept"):
        timed.append("freed memory kept by the allocator")
    return f"Timed: {', '.join(timed)}; the roofline model and these settings: docs/cost.md."


#: The latency-model table's last column: a ratio of speedups (how much of the predicted gain was measured),
#: not of times.
RATIO = "speedup measured ÷ speedup roofline"


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
                for p in r.latency.exit_paths:
                    if p["batch_size"] == batch and "roofline_per_sample" in p:
                        paths.setdefault(p["exit"], []).append((p["per_sample_median"], p["roofline_per_sample"]))
                for c in r.latency.cascade:
                    if c["batch_size"] != batch or "roofline_per_sample" not in c:
                        continue
                    if c["threshold"] is not None and not math.isclose(c["threshold"], results.headline):
                        continue
                    point = r.at(c["threshold"])
                    speed["measured"].append(c["speedup_vs_full"])
                    speed["MACs"].append(r.cost.per_exit[-1].macs / point.macs_expected)
                    speed["roofline"].append(c["roofline_full_per_sample"] / c["roofline_per_sample"])
                    speed["paths"].append(c["full"]["median"] / c["samples"] / c["path_predicted_per_sample"])
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
    exits = list(dict.fromkeys(c.rsplit(" ", 2)[0] for c in frame.columns if c.endswith("(µs)")))
    exits.sort(key=lambda e: e == "final")
    timed = [f"{e} {kind} (µs)" for e in exits for kind in ("measured", "roofline")]
    rest = [c for c in frame.columns if c not in timed and c not in ("variant", "batch", "n")]
    return frame[["variant", "batch", "n", *timed, *rest]]


def latency_model_display(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    for c in out.columns:
        if c.endswith("(µs)"):
            out[c] = out[c].map(lambda v: "" if math.isnan(v) else f"{v:.1f}")
        elif c.startswith("speedup") or c == RATIO:
            out[c] = out[c].map(lambda v: "" if math.isnan(v) else f"{v:.2f}")
    return out


def runtime_frame(results: Results) -> pd.DataFrame:
    """Per variant, runtime and timed batch (headline threshold, means over seeds): each exit path's time per
    sample, the dynamic cascade's, its speedup over the full network as measured and as the MACs say, what
    the exit paths predict for the cascade, and the decisions that differ from eager's. Empty unless a
    folder timed more than one runtime."""
    rows = []
    for variant in results.variants:
        recs = [r for r in results.records_of(variant) if r.latency is not None and len(r.latency.runtime_names) > 1]
        if not recs:
            continue
        for runtime in recs[0].latency.runtime_names:  # type: ignore[union-attr]
            for batch in sorted({int(c["batch_size"]) for r in recs for c in r.latency.entries(runtime)}):  # type: ignore[union-attr]
                row: dict[str, Any] = {"variant": variant, "runtime": runtime, "batch": batch, "n": len(recs)}
                cells: dict[str, list[float]] = defaultdict(list)
                for r in recs:
                    assert r.latency is not None and r.cost is not None
                    for p in r.latency.path_entries(runtime):
                        if p["batch_size"] == batch:
                            cells[f"{p['exit']} path (µs)"].append(1e6 * p["per_sample_median"])
                    c = r.latency.at(results.headline, batch, runtime)
                    if c is None:
                        continue
                    cells["cascade (µs)"].append(1e6 * c["per_sample_median"])
                    cells["speedup measured (full ÷ cascade)"].append(c["speedup_vs_full"])
                    cells["speedup by MACs"].append(r.cost.per_exit[-1].macs / r.at(c["threshold"]).macs_expected)
                    # = path-predicted time ÷ cascade time: below 1, the cascade costs more than its exit paths say
                    cells["speedup measured ÷ speedup paths"].append(
                        c["path_predicted_per_sample"] / c["per_sample_median"]
                    )
                    agree = (r.latency.runtimes or {}).get(runtime, {}).get("agreement_with_eager", {})
                    counts = agree.get(str(c["threshold"]))
                    if counts:
                        cells["decisions ≠ eager (ties)"].append(counts["differ"])
                        cells["_ties"].append(counts["ties"])
                row.update({k: statistics.fmean(v) for k, v in cells.items() if v and not k.startswith("_")})
                if "decisions ≠ eager (ties)" in row:
                    row["decisions ≠ eager (ties)"] = (
                        f"{sum(cells['decisions ≠ eager (ties)']):.0f} ({sum(cells['_ties']):.0f})"
                    )
                rows.append(row)
    return pd.DataFrame(rows)


def runtime_display(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    for c in out.columns:
        if c.endswith("(µs)"):
            out[c] = out[c].map(lambda v: "" if pd.isna(v) else f"{v:.1f}")
        elif c.startswith("speedup"):
            out[c] = out[c].map(lambda v: "" if pd.isna(v) else f"{v:.2f}")
    return out.fillna("")


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
            rows.append({"variant": variant, "exit": name, "cost_fraction": cost.per_exit[j].macs / cost.base["macs"],
                         "n": iv.n, "test_accuracy": iv.mean, "acc_low": iv.low, "acc_high": iv.high})  # fmt: skip
    return pd.DataFrame(rows, columns=["variant", "exit", "cost_fraction", "n", "test_accuracy", "acc_low", "acc_high"])


def anytime_display(frame: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "variant": frame["variant"],
            "exit": frame["exit"],
            "cost (% of base MACs)": [signed_zero_free(f"{100 * c:.1f}") for c in frame["cost_fraction"]],
            "n": frame["n"],
            "exit accuracy, all samples (%)": [
                _fmt(m, lo, hi, 100, 2, span=1.0)
                for m, lo, hi in zip(frame["test_accuracy"], frame["acc_low"], frame["acc_high"])
            ],
        }
    )


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
                out.append(f"{variant}: exit {name} is at chance level ({acc:.1%} test, {val:.1%} validation "
                           f"accuracy; chance {1 / k:.1%})")  # fmt: skip
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
    for r in results.failed:
        out.append(f"{r.variant} seed {r.seed} FAILED: {r.error_message or '?'}")
    for problem in results.problems:
        out.append(f"unreadable run file skipped: {problem}")
    return out


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
    return Tables(main_frame(results, vs_ref), vs_ref, vs_casc, exit_cost_frame(results), warnings_for(results),
                  budget_frame(results), anytime_frame(results), latency_model_frame(results))  # fmt: skip


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
            rows.append({"variant": variant, "budget": p.budget, "unit": recs[0].budget.unit if recs[0].budget else "",
                         "n": acc.n, "test_accuracy": acc.mean, "acc_low": acc.low, "acc_high": acc.high,
                         "test_cost_fraction": cost.mean, "cost_low": cost.low, "cost_high": cost.high,
                         "feasible": feasible})  # fmt: skip
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- rendering of tables


def signed_zero_free(text: str) -> str:
    """``-0.00`` -> ``0.00`` (a value that rounds to zero has no sign); other text unchanged."""
    return _NEG_ZERO.sub(r"\1", text)


_NEG_ZERO = re.compile(r"(?<![\d.])-(0(?:\.0+)?)(?![\d.])")


def _fmt(mean: float, low: float, high: float, scale: float, digits: int, span: float | None = None) -> str:
    """``mean ± half-width``; an interval wider than the metric's whole range ``span`` (raw units, e.g. 1 for
    a fraction) says so instead of printing a meaningless number."""
    if mean is None or math.isnan(mean):
        return "n/a"
    if low is None or math.isnan(low):
        return signed_zero_free(f"{mean * scale:.{digits}f}")
    if span is not None and (high - low) / 2 > span:
        return signed_zero_free(f"{mean * scale:.{digits}f} (n too small)")
    half = (high - low) / 2 * scale
    return signed_zero_free(f"{mean * scale:.{digits}f} ± {half:.{digits}f}")


def main_display(results: Results, tables: Tables) -> pd.DataFrame:
    """The main table as strings: 'mean ± CI half-width' per metric."""
    frame = tables.main
    cols: dict[str, list[str]] = {"variant": [], "loss": [], "exits": [], "n": []}
    shown = [METRICS[m] for m in MAIN_METRICS] + [get_metric(f"latency_b{b}") for b in results.latency_batches()]
    for _, row in frame.iterrows():
        cols["variant"].append(str(row["variant"]))
        cols["loss"].append(str(row["loss"]))
        cols["exits"].append(str(row["exits"]))
        cols["n"].append(str(row["n"]))
        for m in shown:
            label = m.label
            if m.name == "energy":
                label = f"energy ({results.energy_table()}, M {results.energy_unit()})"
            span = 1.0 if m.unit == "fraction" else None
            text = _fmt(row[m.name], row[f"{m.name}_low"], row[f"{m.name}_high"], m.scale, m.digits, span)
            if m.name == "accuracy" and row.get("accuracy_significant"):
                text += " *"
            cols.setdefault(label, []).append(text)
        cols.setdefault(METRICS["total_steps"].label, []).append(f"{row['total_steps']:.0f}")
    return pd.DataFrame(cols)


def comparison_display(frame: pd.DataFrame) -> pd.DataFrame:
    if frame.empty:
        return pd.DataFrame(
            columns=["variant", "reference", "steps", "metric", "n", "Δ (points)", "95% CI", "p", "p (Holm)", "sig."]
        )
    out = pd.DataFrame(
        {
            "variant": frame["variant"],
            "reference": frame["reference"],
            "steps": frame["steps"],
            "metric": frame["metric"],
            "n": frame["n"],
            "Δ (points)": [signed_zero_free(f"{d:+.2f}").replace("+0.00", "0.00") for d in frame["diff"]],
            "95% CI": [
                "n/a" if math.isnan(lo) else signed_zero_free(f"[{lo:+.2f}, {hi:+.2f}]")
                for lo, hi in zip(frame["diff_low"], frame["diff_high"])
            ],
            "p": ["exact" if x else fmt_p(p) for p, x in zip(frame["p"], frame["exact"])],
            "p (Holm)": ["exact" if x else fmt_p(p) for p, x in zip(frame["p_holm"], frame["exact"])],
            "sig.": ["*" if s else "" for s in frame["significant"]],
        }
    )
    return out


def budget_display(frame: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "variant": frame["variant"],
            f"budget ({frame['unit'].iloc[0]})": frame["budget"],
            "n": frame["n"],
            "test accuracy (%)": [
                _fmt(m, lo, hi, 100, 2, span=1.0)
                for m, lo, hi in zip(frame["test_accuracy"], frame["acc_low"], frame["acc_high"])
            ],
            "test cost (% of base MACs)": [
                _fmt(m, lo, hi, 100, 1)
                for m, lo, hi in zip(frame["test_cost_fraction"], frame["cost_low"], frame["cost_high"])
            ],
            "feasible": ["yes" if f else "no (cheapest point)" for f in frame["feasible"]],
        }
    )


def fmt_p(p: float) -> str:
    if p is None or math.isnan(p):
        return "n/a"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def markdown(frame: pd.DataFrame) -> str:
    return frame.to_markdown(index=False) if not frame.empty else "_(none)_"


def _latex(frame: pd.DataFrame, caption: str) -> str:
    if frame.empty:
        return ""
    return frame.to_latex(index=False, escape=True, caption=caption)


def rich_table(frame: pd.DataFrame, title: str) -> Table:
    table = Table(title=title, show_lines=False)
    for col in frame.columns:
        table.add_column(str(col), overflow="fold")
    for _, row in frame.iterrows():
        table.add_row(*[escape(str(v)) for v in row])  # variant names like "firm[lambda=0.2]" are not markup
    return table


MAIN_NOTE = (
    "Mean ± 95 % t-interval half-width over seeds; MACs: 1 multiply-add = 1 MAC = 2 FLOPs, expected per sample "
    "at the threshold (shares x cumulative exit cost); * = accuracy differs from the reference variant "
    "(paired t-test, Holm-corrected, p < 0.05)."
)


# --------------------------------------------------------------------------- the report


def subset_folder(out_dir: str | Path, only: Sequence[str]) -> Path:
    """Where ``bench report DIR --only ...`` writes by default: ``DIR/subsets/<patterns>``."""
    slug = "+".join("".join(c if c.isalnum() or c in "-_.=" else "_" for c in p) for p in only)
    return Path(out_dir) / "subsets" / slug


def write_report(
    out_dir: str | Path,
    log: Callable[[str], None] = print,
    *,
    only: Sequence[str] = (),
    dest: str | Path | None = None,
) -> Path:
    """Write report.md, tables (md, csv, tex) and figures (png, pdf) of the runs in ``out_dir``.

    ``only`` restricts the report to the variants those names or globs select; such a report goes to
    ``dest`` (default :func:`subset_folder`), never over the folder's full report.
    """
    results = load_results(out_dir).subset(only)
    out = Path(dest) if dest is not None else subset_folder(out_dir, only) if only else Path(out_dir)
    if not results.records:
        skipped = f" ({len(results.problems)} skipped: {results.problems[0]})" if results.problems else ""
        raise StoreError(f"{out_dir}: no finished runs to report on{skipped}")
    tables = build_tables(results)
    tdir = out / "tables"
    main = main_display(results, tables)
    displays = {
        "main": (main, tables.main, f"Main results at threshold {results.headline}"),
        "vs_reference": (
            comparison_display(tables.vs_reference),
            tables.vs_reference,
            "Paired differences vs the reference variant",
        ),
        "vs_cascade_reference": (
            comparison_display(tables.vs_cascade_reference),
            tables.vs_cascade_reference,
            "Cascade losses vs the cascade reference at the same exits",
        ),
        "exit_costs": (
            tables.exit_costs,
            tables.exit_costs,
            exit_cost_caption(results),
        ),
    }
    if not tables.latency_model.empty:
        displays["latency_model"] = (
            latency_model_display(tables.latency_model),
            tables.latency_model,
            f"Latency model: roofline prediction vs measurement (speedups at threshold {results.headline})",
        )
    runtimes = runtime_frame(results)
    if not runtimes.empty:
        displays["runtimes"] = (
            runtime_display(runtimes),
            runtimes,
            f"Latency per runtime (threshold {results.headline}; µs per sample; eager is PyTorch as timed above)",
        )
    if not tables.anytime.empty:
        displays["anytime"] = (
            anytime_display(tables.anytime),
            tables.anytime,
            "Anytime prediction: each exit alone (every test sample through it)",
        )
    if not tables.budget.empty:
        displays["budget"] = (
            budget_display(tables.budget),
            tables.budget,
            "Accuracy under compute budgets (thresholds chosen on validation)",
        )
    for name, (display, data, caption) in displays.items():  # each table's three files as one set
        atomic_write_files({tdir / f"{name}.md": (markdown(display) + "\n").encode(),
                            tdir / f"{name}.csv": data.to_csv(index=False).encode(),
                            tdir / f"{name}.tex": _latex(display, caption).encode()})  # fmt: skip
    figs = figures.write_all(results, out / "figures", budget=tables.budget)
    lines = [f"# {results.suite.name if results.suite else out.name}: report", ""]
    if only:
        lines += [f"Variants selected with --only {' '.join(only)}: {', '.join(results.variants)}.", ""]
    if results.suite and results.suite.suite.description:
        lines += [f"Suite description: {results.suite.suite.description}", ""]
    lines += _provenance_lines(results)
    if tables.warnings:
        lines += ["## Warnings", ""] + [f"- {w}" for w in tables.warnings] + [""]
    for name, (display, _, caption) in displays.items():
        lines += [f"## {caption}", ""]
        if name == "main":
            lines += [MAIN_NOTE, ""]
        if name == "latency_model" and (note := latency_timed_note(results)):
            lines += [note, ""]
        lines += [markdown(display), ""]
    if figs:
        lines += ["## Figures", ""]
        for title, path in figs:
            lines += [f"### {title}", "", f"![{title}]({path.relative_to(out).as_posix()})", ""]
    report = out / "report.md"
    atomic_write_bytes(report, "\n".join(lines).encode())
    log(f"report: {report}")
    return report


def data_lines(results: Results) -> list[str]:
    """What the runs were trained and tested on, from the run files (not from the suite's description)."""
    out = []
    seen = set()
    for r in results.records:
        ident = dict((r.config.get("job") or {}).get("dataset") or {"name": r.dataset})
        sizes = r.data_sizes or {}
        key = (canonical(ident), canonical(sizes), r.data_fingerprint)
        if key in seen:
            continue
        seen.add(key)
        name = ident.pop("name", r.dataset)
        split = " / ".join(f"{k} {v:,}" for k, v in sizes.items()) or "sizes not recorded"
        settings = ", ".join(f"{k} {v}" for k, v in ident.items())
        out.append(f"- data: **{name}** ({split}; fingerprint {r.data_fingerprint or 'n/a'}); settings: {settings}")
    return out


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
    return (f"the suite's description names {', '.join(named)} but the runs used {', '.join(sorted(used))}: "
            "the description is the suite author's text; the data line above is what ran")  # fmt: skip


def _provenance_lines(results: Results) -> list[str]:
    provs = [r.provenance for r in results.records]
    commits = sorted({f"{p.get('git_commit') or 'unknown'}{' (dirty)' if p.get('git_dirty') else ''}" for p in provs})
    devices = sorted({f"{p.get('device')} ({p.get('device_name')}), {p.get('threads')} threads" for p in provs})
    seeds = sorted({r.seed for r in results.records})
    overrides = sorted({o for r in results.records for o in r.config.get("overrides", [])})
    lines = [
        *data_lines(results),
        f"- runs: {len(results.records)} finished, {len(results.failed)} failed; seeds {seeds}",
        f"- threshold of the tables: {results.headline}",
        f"- code: {', '.join(commits)}; torch {provs[0].get('torch')}, python {provs[0].get('python')}",
        f"- device: {'; '.join(devices)}",
    ]
    if overrides:
        lines.append(f"- overrides applied (`--set`): {', '.join(f'`{o}`' for o in overrides)}")
    if note := quick_note(results):
        lines.append(f"- **{note}**")
    return [*lines, ""]


def quick_note(results: Results) -> str | None:
    """A line that says what a quick evaluation left out (so a quick run is never read as a full one)."""
    evs = [r.config.get("evaluation", {}) for r in results.records]
    parts = []
    capped = [r for r, e in zip(results.records, evs) if int(e.get("test_samples") or 0)]
    if capped:
        n = sorted({int((r.data_sizes or {}).get("test", 0)) for r in capped})
        parts.append(f"test accuracy on {', '.join(f'{k:,}' for k in n)} test samples (evaluation.test_samples: "
                     "a fixed random subset, or all where the split is smaller)")  # fmt: skip
    if any(e.get("latency") is False for e in evs):
        parts.append("latency not timed")
    if any(e.get("count_macs") == "none" for e in evs):
        parts.append("MACs of the real dynamic forward not counted (expected MACs from the exit shares only)")
    return f"Quick evaluation: {'; '.join(parts)}" if parts else None


@dataclass
class Summary:
    """The compact main table of a folder, for the terminal."""

    title: str
    frame: pd.DataFrame
    warnings: list[str]


def run_summary(out_dir: str | Path) -> Summary | None:
    """The compact main table (accuracy, early exits, MACs, latency, MACs saved); None: no finished runs."""
    results = load_results(out_dir)
    if not results.records:
        return None
    tables = build_tables(results)
    display = main_display(results, tables)
    compact = [
        c for c in display.columns if c.split(" ")[0] in ("variant", "n", "accuracy", "early", "MACs", "latency")
    ]
    compact = [c for c in compact if not c.startswith("MACs saved")] + [
        c for c in display.columns if c.startswith("MACs saved")
    ]
    title = f"{out_dir}: threshold {results.headline} (full tables: tables/main.md)"
    return Summary(title, display[compact], tables.warnings)


def runs_frame(out_dir: Path) -> pd.DataFrame:
    """Every run file of a folder and its status (superseded: an older run of the same variant and seed)."""
    if not (out_dir / "runs").is_dir():
        raise StoreError(f"{out_dir}: no runs/ folder; is this a results folder written by `bench run`?")
    store = ResultStore(out_dir)
    current = {r.key for r in store.latest_runs()}
    rows = []
    for rec in store.iter_runs():
        acc = early = ""
        if rec.ok:
            t = rec.at(rec.headline_threshold)
            acc, early = f"{t.accuracy:.2%}", f"{t.early_share:.1%}"
            status = "ok"
        else:
            status = f"{rec.status}: {rec.error_message[:60]}"
        if rec.key not in current:
            status = f"superseded ({status})"
        rows.append({"variant": rec.variant, "seed": rec.seed, "status": status, "test acc @ headline": acc,
                     "early": early, "seconds": f"{rec.seconds:.1f}", "key": rec.key})  # fmt: skip
    for path, problem in store.problems.items():
        rows.append({"variant": path.parent.name, "seed": "", "status": f"unreadable: {problem}",
                     "test acc @ headline": "", "early": "", "seconds": "", "key": path.stem})  # fmt: skip
    return pd.DataFrame(rows, columns=["variant", "seed", "status", "test acc @ headline", "early", "seconds", "key"])


# --------------------------------------------------------------------------- cost of a suite's models


@dataclass
class CostView:
    """Per-layer costs of one architecture of a suite, at batch 1, all exits run."""

    title: str
    frame: pd.DataFrame
    totals: str
    unsupported: dict[str, int]


def cost_views(
    suite_path: str,
    overrides: Sequence[str],
    *,
    variant: str | None = None,
    table: str | None,
    imports: Sequence[str] = (),
    only: Sequence[str] = (),
) -> list[CostView]:
    """``bench cost``: per-layer MACs, bytes and energy of each distinct architecture of a suite."""
    suite = load_suite(suite_path, overrides, imports)
    energy = load_energy_table(table or suite.evaluation.energy_table)
    seen = set()
    shape = dataset_shape(suite.dataset.name, suite.dataset.root, **suite.dataset.options)
    views = []
    patterns = [*only, *([variant] if variant else [])]
    for run in select_runs(expand_runs(suite, overrides), patterns):
        arch = (run.job.exits,)
        if arch in seen:
            continue
        seen.add(arch)
        model = build_for(run.job, shape).eval()
        prof = profile(model, torch.zeros(1, *shape[0]))
        frame = prof.to_frame()
        e_rows = {r["module"]: r for r in layer_energy_rows(prof, energy)}
        frame[f"energy ({energy.unit})"] = [f"{e_rows[m]['total']:.4g}" for m in frame["module"]]
        title = f"{run.variant_base}: exits {list(run.job.exits) or 'none'}, batch 1, all exits run (1 MAC = 2 FLOPs)"
        totals = prof.totals()
        breakdown = energy_breakdown(prof, energy)
        line = (
            f"total: {totals['macs']:,} MACs = {totals['flops']:,} FLOPs, {totals['params']:,} params; energy "
            + ", ".join(f"{k} {v:.4g}" for k, v in breakdown.items())
            + f" ({energy.unit})"
        )
        views.append(CostView(title, frame.astype(str), line, dict(prof.unsupported)))
        views.append(dataflow_view(model, shape[0], run.variant_base, load_hardware(suite.evaluation.hardware),
                                   suite.evaluation.energy_batch, energy))  # fmt: skip
    return views


def dataflow_view(
    model: torch.nn.Module, input_shape: Sequence[int], name: str, hw: Hardware, batch: int, energy: EnergyTable
) -> CostView:
    """Per convolution / linear layer: DRAM words per operand, ideal vs buffer-aware, and the loop order."""
    x = torch.zeros(batch, *input_shape)
    rows = []
    for layer, shape in gemm_shapes(model, x):
        t = dram_traffic(shape, hw.glb_words)
        ideal = shape.inputs + shape.weights + shape.outputs
        rows.append({"layer": layer, "order": t.order, "inputs": f"{shape.inputs:,} -> {t.inputs:,}",
                     "weights": f"{shape.weights:,} -> {t.weights:,}", "outputs": f"{t.outputs:,}",
                     "DRAM x ideal": f"{t.total / ideal:.2f}"})  # fmt: skip
    prof = profile(model, x)
    ideal_e = energy_breakdown(prof, energy)["total"]
    buffered_e = buffered_breakdown(prof, gemm_shapes(model, x), energy, hw.glb_words)["total"]
    title = (f"{name}: DRAM words per operand at batch {batch}, ideal -> buffered ({hw.name}: "
             f"{hw.glb_words:,}-word global buffer, {hw.word_bits}-bit words)")  # fmt: skip
    line = (f"energy per sample at batch {batch}: ideal {ideal_e:.4g}, buffered {buffered_e:.4g} {energy.unit} "
            f"(x {buffered_e / ideal_e:.3f}); set evaluation.hardware / evaluation.energy_batch to change")  # fmt: skip
    return CostView(title, pd.DataFrame(rows).astype(str), line, {})
