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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from bench import stats
from bench.store import ResultStore, StoreError, atomic_write_bytes, summary_frame
from bench.suite import ReportSpec, Suite, SuiteError, load_suite

# Okabe-Ito: distinguishable with the common colour-vision deficiencies.
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]


# --------------------------------------------------------------------------- data


@dataclass
class Results:
    """Finished runs of one folder plus the suite settings that shaped them."""

    out_dir: Path
    records: list[dict[str, Any]]
    frame: pd.DataFrame  # the tidy summary (run x threshold)
    suite: Suite | None
    failed: list[dict[str, Any]] = field(default_factory=list)

    @property
    def report_spec(self) -> ReportSpec:
        return self.suite.report if self.suite else ReportSpec()

    @property
    def headline(self) -> float:
        if self.suite:
            return self.suite.evaluation.headline_threshold
        return float(self.records[0]["config"]["evaluation"]["headline_threshold"]) if self.records else 0.6

    @property
    def variants(self) -> list[str]:
        seen: dict[str, None] = {}
        for r in self.records:
            seen.setdefault(r["variant"], None)
        return list(seen)

    def records_of(self, variant: str) -> list[dict[str, Any]]:
        return [r for r in self.records if r["variant"] == variant]

    def energy_table(self) -> str:
        return str(self.records[0]["config"]["evaluation"]["energy_table"]) if self.records else "eyeriss"


def load_results(out_dir: str | Path) -> Results:
    """Read a results folder written by ``bench run``."""
    out = Path(out_dir)
    if not (out / "runs").is_dir():
        raise StoreError(f"{out}: no runs/ folder; is this a results folder written by `bench run`?")
    store = ResultStore(out)
    records = store.latest_runs()
    ok = [r for r in records if r.get("status") == "ok"]
    failed = [r for r in records if r.get("status") != "ok"]
    order = {}
    suite = None
    suite_file = out / "suite.toml"
    if suite_file.is_file():
        overrides = ok[0]["config"].get("overrides", []) if ok else []
        try:
            suite = load_suite(suite_file, overrides)
            order = {v.name: i for i, v in enumerate(suite.variants)}
        except SuiteError:
            suite = None
    ok.sort(key=lambda r: (order.get(r["variant_base"], 99), r["variant"], r["seed"]))
    return Results(out, ok, summary_frame(store), suite, failed)


def _at(record: dict[str, Any], threshold: float) -> dict[str, Any]:
    """The record's operating point at ``threshold`` (the only one for threshold-free policies)."""
    rows = record["thresholds"]
    for t in rows:
        if t["threshold"] is None or math.isclose(t["threshold"], threshold):
            return t
    raise KeyError(f"run {record['key']} has no threshold {threshold}")


def _latency(record: dict[str, Any], threshold: float, batch: int) -> float:
    for item in (record.get("latency") or {}).get("cascade", []):
        if item["batch_size"] == batch and (item["threshold"] is None or math.isclose(item["threshold"], threshold)):
            return float(item["per_sample_median"])
    return math.nan


def metric_by_seed(results: Results, variant: str, metric: str, threshold: float) -> dict[int, float]:
    """{seed: value} of ``metric`` for ``variant`` at ``threshold``."""
    out = {}
    table = results.energy_table()
    for rec in results.records_of(variant):
        t = _at(rec, threshold)
        if metric == "energy":
            value = t["energy_expected"][table]
        elif metric == "energy_saved":
            value = t["energy_saved_vs_base"][table]
        elif metric.startswith("latency_b"):
            value = _latency(rec, threshold, int(metric[len("latency_b") :]))
        elif metric == "total_steps":
            value = rec["training"].get("total_steps") or 0
        elif metric == "flops":
            value = t["flops_expected"]
        elif metric == "macs":
            value = t["macs_expected"]
        else:
            value = t[metric]
        out[int(rec["seed"])] = float(value) if value is not None else math.nan
    return out


def latency_batches(results: Results) -> list[int]:
    sizes: set[int] = set()
    for rec in results.records:
        for item in (rec.get("latency") or {}).get("cascade", []):
            sizes.add(int(item["batch_size"]))
    return sorted(sizes)


MAIN_METRICS = [
    # (metric, column label, scale, digits)
    ("accuracy", "accuracy (%)", 100.0, 2),
    ("early_share", "early exits (%)", 100.0, 1),
    ("macs", "MACs (M)", 1e-6, 3),
    ("flops", "FLOPs (M, =2×MACs)", 1e-6, 3),
    ("energy", "energy", 1e-6, 2),
    ("saved_vs_base", "MACs saved vs base (%)", 100.0, 1),
    ("energy_saved", "energy saved vs base (%)", 100.0, 1),
]


def _reference_for(results: Results, variant: str) -> str | None:
    ref = results.report_spec.reference
    return ref if ref in results.variants and ref != variant else None


def _cascade_reference_for(results: Results, variant: str) -> str | None:
    recs = results.records_of(variant)
    if not recs:
        return None
    loss, exits = recs[0]["loss"], recs[0]["exits_at"]
    want = results.report_spec.cascade_reference
    if loss in (want, "base") or not exits:
        return None
    for other in results.variants:
        o = results.records_of(other)[0]
        if o["loss"] == want and o["exits_at"] == exits and not o["sweep"]:
            return other
    return None


def comparison_frame(
    results: Results, metrics: Sequence[tuple[str, float]], reference_of: Callable[[Results, str], str | None]
) -> pd.DataFrame:
    """Paired differences (variant - reference) per metric, Holm-corrected over the table."""
    rows = []
    thr = results.headline
    for variant in results.variants:
        ref = reference_of(results, variant)
        if ref is None:
            continue
        for metric, scale in metrics:
            test = stats.paired_test(
                metric_by_seed(results, variant, metric, thr), metric_by_seed(results, ref, metric, thr)
            )
            rows.append(
                {
                    "variant": variant,
                    "reference": ref,
                    "metric": metric,
                    "n": test.n,
                    "diff": test.diff.mean * scale,
                    "diff_low": test.diff.low * scale,
                    "diff_high": test.diff.high * scale,
                    "p": test.p_value,
                }
            )
    frame = pd.DataFrame(rows, columns=["variant", "reference", "metric", "n", "diff", "diff_low", "diff_high", "p"])
    frame["p_holm"] = stats.holm(frame["p"].tolist()) if len(frame) else []
    frame["significant"] = frame["p_holm"] < 0.05
    return frame


def main_frame(results: Results, vs_ref: pd.DataFrame) -> pd.DataFrame:
    """Per variant: mean, CI low, CI high of each metric (raw units), plus significance and warnings."""
    thr = results.headline
    metrics = [m for m, *_ in MAIN_METRICS] + [f"latency_b{b}" for b in latency_batches(results)] + ["total_steps"]
    rows = []
    for variant in results.variants:
        recs = results.records_of(variant)
        row: dict[str, Any] = {
            "variant": variant,
            "loss": recs[0]["loss"],
            "exits": "+".join(recs[0]["exits_at"]) or "none",
            "n": len(recs),
        }
        for metric in metrics:
            iv = stats.t_interval(list(metric_by_seed(results, variant, metric, thr).values()))
            row[metric] = iv.mean
            row[f"{metric}_low"] = iv.low
            row[f"{metric}_high"] = iv.high
        sig = vs_ref[(vs_ref["variant"] == variant) & (vs_ref["metric"] == "accuracy")]
        row["accuracy_significant"] = bool(sig["significant"].iloc[0]) if len(sig) else False
        rows.append(row)
    return pd.DataFrame(rows)


def exit_cost_frame(results: Results) -> pd.DataFrame:
    """Deterministic cumulative cost of each exit of each variant (exact, per sample)."""
    rows = []
    for variant in results.variants:
        rec = results.records_of(variant)[0]
        for c in rec["cost"]["per_exit"]:
            row = {"variant": variant, "exit": c["exit"], "MACs": c["macs"], "FLOPs": c["flops"], "params": c["params"]}
            for table, e in c["energy"].items():
                row[f"energy_{table}"] = e["total"]
            rows.append(row)
    return pd.DataFrame(rows)


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
        names = recs[0]["exits"]["names"]
        if len(names) < 2:
            continue
        k = _num_classes(recs[0])
        for i, name in enumerate(names):
            acc = stats.t_interval([r["exits"]["test_accuracy"][i] for r in recs]).mean
            if acc < 1.5 / k:
                out.append(f"{variant}: exit {name} is at chance level ({acc:.1%} test accuracy, chance {1 / k:.1%})")
        early = stats.t_interval([_at(r, thr)["early_share"] for r in recs]).mean
        if _at(recs[0], thr)["threshold"] is not None:
            if early >= 0.999:
                out.append(f"{variant}: {early:.1%} of samples leave early at t = {thr}: the last exit is never used")
            elif early <= 0.001:
                out.append(
                    f"{variant}: {early:.1%} of samples leave early at t = {thr}: the early exits are never used"
                )
    for r in results.failed:
        out.append(f"{r['variant']} seed {r['seed']} FAILED: {r.get('error', {}).get('message', '?')}")
    return out


def _num_classes(record: dict[str, Any]) -> int:
    """Classes of the run's dataset (run files before this field existed: the 10 of every shipped dataset)."""
    return int(record.get("num_classes", 10))


@dataclass
class Tables:
    main: pd.DataFrame
    vs_reference: pd.DataFrame
    vs_cascade_reference: pd.DataFrame
    exit_costs: pd.DataFrame
    warnings: list[str]


def build_tables(results: Results) -> Tables:
    vs_ref = comparison_frame(results, [("accuracy", 100.0), ("saved_vs_base", 100.0)], _reference_for)
    vs_casc = comparison_frame(results, [("accuracy", 100.0), ("early_share", 100.0)], _cascade_reference_for)
    return Tables(main_frame(results, vs_ref), vs_ref, vs_casc, exit_cost_frame(results), warnings_for(results))


# --------------------------------------------------------------------------- rendering of tables


def _fmt(mean: float, low: float, high: float, scale: float, digits: int) -> str:
    if mean is None or math.isnan(mean):
        return "n/a"
    if low is None or math.isnan(low):
        return f"{mean * scale:.{digits}f}"
    half = (high - low) / 2 * scale
    return f"{mean * scale:.{digits}f} ± {half:.{digits}f}"


def main_display(results: Results, tables: Tables) -> pd.DataFrame:
    """The main table as strings: 'mean ± CI half-width' per metric."""
    frame = tables.main
    energy_unit = results.records[0]["cost"]["energy_tables"][results.energy_table()]["unit"] if results.records else ""
    cols: dict[str, list[str]] = {"variant": [], "loss": [], "exits": [], "n": []}
    for _, row in frame.iterrows():
        cols["variant"].append(str(row["variant"]))
        cols["loss"].append(str(row["loss"]))
        cols["exits"].append(str(row["exits"]))
        cols["n"].append(str(row["n"]))
        for metric, label, scale, digits in MAIN_METRICS:
            if metric == "energy":
                label = f"energy ({results.energy_table()}, M {energy_unit})"
            text = _fmt(row[metric], row[f"{metric}_low"], row[f"{metric}_high"], scale, digits)
            if metric == "accuracy" and row.get("accuracy_significant"):
                text += " *"
            cols.setdefault(label, []).append(text)
        for b in latency_batches(results):
            m = f"latency_b{b}"
            cols.setdefault(f"latency b{b} (µs/sample)", []).append(
                _fmt(row[m], row[f"{m}_low"], row[f"{m}_high"], 1e6, 1)
            )
        cols.setdefault("train steps", []).append(f"{row['total_steps']:.0f}")
    return pd.DataFrame(cols)


def comparison_display(frame: pd.DataFrame) -> pd.DataFrame:
    if frame.empty:
        return pd.DataFrame(
            columns=["variant", "reference", "metric", "n", "Δ (points)", "95% CI", "p", "p (Holm)", "sig."]
        )
    out = pd.DataFrame(
        {
            "variant": frame["variant"],
            "reference": frame["reference"],
            "metric": frame["metric"],
            "n": frame["n"],
            "Δ (points)": [f"{d:+.2f}" for d in frame["diff"]],
            "95% CI": [
                "n/a" if math.isnan(lo) else f"[{lo:+.2f}, {hi:+.2f}]"
                for lo, hi in zip(frame["diff_low"], frame["diff_high"])
            ],
            "p": [_p(p) for p in frame["p"]],
            "p (Holm)": [_p(p) for p in frame["p_holm"]],
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
                _fmt(m, lo, hi, 100, 2)
                for m, lo, hi in zip(frame["test_accuracy"], frame["acc_low"], frame["acc_high"])
            ],
            "test cost (% of base MACs)": [
                _fmt(m, lo, hi, 100, 1)
                for m, lo, hi in zip(frame["test_cost_fraction"], frame["cost_low"], frame["cost_high"])
            ],
            "feasible": ["yes" if f else "no (cheapest point)" for f in frame["feasible"]],
        }
    )


def _p(p: float) -> str:
    if p is None or math.isnan(p):
        return "n/a"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _markdown(frame: pd.DataFrame) -> str:
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


def write_report(out_dir: str | Path, log: Callable[[str], None] = print) -> Path:
    """Write report.md, tables (md, csv, tex) and figures (png, pdf) into ``out_dir``."""
    from bench import figures

    results = load_results(out_dir)
    out = Path(out_dir)
    if not results.records:
        raise StoreError(f"{out}: no finished runs to report on")
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
        "exit_costs": (tables.exit_costs, tables.exit_costs, "Cumulative cost per exit (exact, per sample)"),
    }
    from bench.budget import budget_frame

    budget = budget_frame(results)
    if not budget.empty:
        displays["budget"] = (
            budget_display(budget),
            budget,
            "Accuracy under compute budgets (thresholds chosen on validation)",
        )
    for name, (display, data, caption) in displays.items():
        atomic_write_bytes(tdir / f"{name}.md", (_markdown(display) + "\n").encode())
        atomic_write_bytes(tdir / f"{name}.csv", data.to_csv(index=False).encode())
        atomic_write_bytes(tdir / f"{name}.tex", _latex(display, caption).encode())
    figs = figures.write_all(results, out / "figures")
    lines = [f"# {results.suite.name if results.suite else out.name}: report", ""]
    if results.suite and results.suite.suite.description:
        lines += [results.suite.suite.description, ""]
    lines += _provenance_lines(results)
    if tables.warnings:
        lines += ["## Warnings", ""] + [f"- {w}" for w in tables.warnings] + [""]
    for name, (display, _, caption) in displays.items():
        lines += [f"## {caption}", ""]
        if name == "main":
            lines += [MAIN_NOTE, ""]
        lines += [_markdown(display), ""]
    if figs:
        lines += ["## Figures", ""]
        for title, path in figs:
            lines += [f"### {title}", "", f"![{title}]({path.relative_to(out).as_posix()})", ""]
    report = out / "report.md"
    atomic_write_bytes(report, "\n".join(lines).encode())
    log(f"report: {report}")
    return report


def _provenance_lines(results: Results) -> list[str]:
    provs = [r["provenance"] for r in results.records]
    commits = sorted({f"{p.get('git_commit') or 'unknown'}{' (dirty)' if p.get('git_dirty') else ''}" for p in provs})
    devices = sorted({f"{p.get('device')} ({p.get('device_name')}), {p.get('threads')} threads" for p in provs})
    seeds = sorted({r["seed"] for r in results.records})
    overrides = sorted({o for r in results.records for o in r["config"].get("overrides", [])})
    lines = [
        f"- runs: {len(results.records)} finished, {len(results.failed)} failed; seeds {seeds}",
        f"- threshold of the tables: {results.headline}",
        f"- code: {', '.join(commits)}; torch {provs[0].get('torch')}, python {provs[0].get('python')}",
        f"- device: {'; '.join(devices)}",
    ]
    if overrides:
        lines.append(f"- overrides applied (`--set`): {', '.join(f'`{o}`' for o in overrides)}")
    return [*lines, ""]


def print_run_table(out_dir: str | Path, console: Console) -> None:
    """Print the main table of a results folder with rich."""
    results = load_results(out_dir)
    if not results.records:
        console.print("no finished runs")
        return
    tables = build_tables(results)
    display = main_display(results, tables)
    compact = [
        c for c in display.columns if c.split(" ")[0] in ("variant", "n", "accuracy", "early", "MACs", "latency")
    ]
    compact = [c for c in compact if not c.startswith("MACs saved")] + [
        c for c in display.columns if c.startswith("MACs saved")
    ]
    console.print(
        rich_table(display[compact], f"{out_dir}: threshold {results.headline} (full tables: tables/main.md)")
    )
    for w in tables.warnings:
        console.print(f"[yellow]warning[/]: {escape(w)}", highlight=False)


def list_runs(out_dir: Path, console: Console) -> None:
    """Print the runs of a folder and their status."""
    if not (out_dir / "runs").is_dir():
        raise StoreError(f"{out_dir}: no runs/ folder; is this a results folder written by `bench run`?")
    table = Table(title=f"runs in {out_dir}")
    for col in ("variant", "seed", "status", "test acc @ headline", "early", "seconds", "key"):
        table.add_column(col)
    store = ResultStore(out_dir)
    current = {r["key"] for r in store.latest_runs()}
    for rec in store.iter_runs():
        acc = early = ""
        if rec.get("status") == "ok":
            t = _at(rec, rec["config"]["evaluation"]["headline_threshold"])
            acc, early = f"{t['accuracy']:.2%}", f"{t['early_share']:.1%}"
            status = "ok"
        else:
            status = f"[red]{rec['status']}: {escape(rec.get('error', {}).get('message', '')[:60])}[/]"
        if rec["key"] not in current:
            status = f"[dim]superseded ({status})[/]"
        seconds = f"{rec.get('seconds', 0):.1f}"
        table.add_row(escape(rec["variant"]), str(rec["seed"]), status, acc, early, seconds, rec["key"])
    console.print(table)


# --------------------------------------------------------------------------- compare


def compare_frame(a: Results, b: Results) -> pd.DataFrame:
    """Variants present in both folders: means in A and B, ratio B/A, paired (or Welch) test, Holm."""
    from scipy import stats as st

    rows = []
    metrics = ["accuracy", "early_share", "macs", "energy", "saved_vs_base"] + [
        f"latency_b{x}" for x in latency_batches(a) if x in latency_batches(b)
    ]
    for variant in [v for v in a.variants if v in b.variants]:
        for metric in metrics:
            xa = metric_by_seed(a, variant, metric, a.headline)
            xb = metric_by_seed(b, variant, metric, b.headline)
            shared = sorted(set(xa) & set(xb))
            if len(shared) >= 2:
                test = stats.paired_test(xb, xa)
                p, kind = test.p_value, "paired"
            else:
                va, vb = list(xa.values()), list(xb.values())
                p = float(st.ttest_ind(vb, va, equal_var=False).pvalue) if min(len(va), len(vb)) >= 2 else math.nan
                kind = "welch"
            ma, mb = stats.t_interval(list(xa.values())).mean, stats.t_interval(list(xb.values())).mean
            rows.append(
                {
                    "variant": variant,
                    "metric": metric,
                    "A": ma,
                    "B": mb,
                    "ratio B/A": mb / ma if ma else math.nan,
                    "test": kind,
                    "p": p,
                }
            )
    frame = pd.DataFrame(rows, columns=["variant", "metric", "A", "B", "ratio B/A", "test", "p"])
    frame["p_holm"] = stats.holm(frame["p"].tolist()) if len(frame) else []
    frame["significant"] = frame["p_holm"] < 0.05
    return frame


def compare(a_dir: Path, b_dir: Path, *, console: Console, out: str | None = None) -> pd.DataFrame:
    """``bench compare A B``: print (and optionally write) the comparison table."""
    a, b = load_results(a_dir), load_results(b_dir)
    frame = compare_frame(a, b)
    if frame.empty:
        raise StoreError(f"{a_dir} and {b_dir} have no variant in common")
    display = frame.copy()
    for col in ("A", "B", "ratio B/A"):
        display[col] = [f"{v:.4g}" for v in frame[col]]
    display["p"] = [_p(p) for p in frame["p"]]
    display["p_holm"] = [_p(p) for p in frame["p_holm"]]
    display["significant"] = ["*" if s else "" for s in frame["significant"]]
    console.print(rich_table(display, f"A = {a_dir}  vs  B = {b_dir} (threshold {a.headline})"))
    if out:
        atomic_write_bytes(Path(out), (_markdown(display) + "\n").encode())
    return frame


# --------------------------------------------------------------------------- cost of a suite's models


def print_cost(
    suite_path: str, overrides: Sequence[str], *, variant: str | None, table: str | None, console: Console
) -> None:
    """``bench cost``: per-layer MACs, bytes and energy of each variant's model at batch 1."""
    import torch

    from bench.cost import energy_breakdown, layer_energy_rows, load_energy_table, profile
    from bench.runner import build_for, expand_runs
    from cascade.data import dataset_shape

    suite = load_suite(suite_path, overrides)
    energy = load_energy_table(table or suite.evaluation.energy_table)
    runs = expand_runs(suite, overrides)
    seen = set()
    shape = dataset_shape(suite.dataset.name, **suite.dataset.options)
    for run in runs:
        if variant and run.variant_base != variant:
            continue
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
        console.print(rich_table(frame.astype(str), title))
        totals = prof.totals()
        breakdown = energy_breakdown(prof, energy)
        console.print(
            f"total: {totals['macs']:,} MACs = {totals['flops']:,} FLOPs, {totals['params']:,} params; energy "
            + ", ".join(f"{k} {v:.4g}" for k, v in breakdown.items())
            + f" ({energy.unit})"
        )
        if prof.unsupported:
            console.print(f"[yellow]operators without a cost formula (not counted)[/]: {prof.unsupported}")
    if not seen:
        raise SuiteError(
            suite_path, "--variant", f"no variant {variant!r}; variants: {', '.join(v.name for v in suite.variants)}"
        )
