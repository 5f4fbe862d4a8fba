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

from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from bench.analyse.load import Results, load_results
from bench.analyse.tables import Tables, build_tables, runtime_frame
from bench.config.plugins import NO_TRUST, FolderTrust
from bench.render import figures
from bench.render.format import (
    anytime_display,
    budget_display,
    comparison_display,
    latency_model_display,
    latex,
    main_display,
    markdown,
    runtime_display,
)
from bench.results.files import atomic_write_bytes, atomic_write_files
from bench.results.store import StoreError
from bench.results.store import canonical_json as canonical

# --------------------------------------------------------------------------- data


def exit_cost_caption(results: Results) -> str:
    caption = "Cumulative cost per exit (exact, per sample; one row set per distinct architecture)"
    rec = next((r for r in results.records if r.cost is not None), None)
    info = rec.cost.energy_tables if rec and rec.cost else {}
    buffered = [(k, v) for k, v in info.items() if v.get("model") == "buffered"]
    if buffered:
        v = buffered[0][1]
        caption += (
            f". energy_<table>: ideal reuse, each tensor crosses DRAM once (a lower bound), batch 1; "
            f"energy_<table>_buffered: buffer-aware on {v.get('hardware')}, per sample at batch "
            f"{v.get('batch')} (docs/cost.md)"
        )
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
    timed += [
        f"segment {i + 1} in slices of {s['chunk']} from batch {s['from_batch']}"
        for i, s in enumerate(layout.get("segment_slices") or [])
        if s
    ]
    if allocator.get("kept"):
        timed.append("freed memory kept by the allocator")
    return f"Timed: {', '.join(timed)}; the roofline model and these settings: docs/cost.md."


# --------------------------------------------------------------------------- rendering of tables


MAIN_NOTE = (
    "Mean ± 95 % t-interval half-width over seeds; MACs: 1 multiply-add = 1 MAC = 2 FLOPs, expected per sample "
    "at the threshold (shares x cumulative exit cost); * = accuracy differs from the reference variant "
    "(paired t-test, Holm-corrected, p < 0.05)."
)


# --------------------------------------------------------------------------- the report


def subset_folder(out_dir: str | Path, only: Sequence[str]) -> Path:
    """Where ``bench report DIR --only ...`` writes by default: ``DIR/subsets/<patterns>``."""
    words = {"*": "any", "?": "one"}
    slug = "+".join("".join(c if c.isalnum() or c in "-_.=" else words.get(c, "_") for c in p) for p in only)
    return Path(out_dir) / "subsets" / slug


Display = tuple[pd.DataFrame, pd.DataFrame, str]  # (as shown, as data, caption)


def _displays(results: Results, tables: Tables) -> dict[str, Display]:
    """Every table the report shows, by file name: its display strings, its data and its caption."""
    displays = {
        "main": (main_display(results, tables), tables.main, f"Main results at threshold {results.headline}"),
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
    return displays


def _report_lines(
    results: Results,
    tables: Tables,
    displays: dict[str, Display],
    figs: list[tuple[str, Path]],
    out: Path,
    only: Sequence[str],
) -> list[str]:
    """report.md as lines: provenance, warnings, each table with its caption and notes, the figures."""
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
    return lines


def write_report(
    out_dir: str | Path,
    log: Callable[[str], None] = print,
    *,
    only: Sequence[str] = (),
    dest: str | Path | None = None,
    trust: FolderTrust = NO_TRUST,
) -> Path:
    """Write report.md, tables (md, csv, tex) and figures (png, pdf) of the runs in ``out_dir``.

    ``only`` restricts the report to the variants those names or globs select; such a report goes to
    ``dest`` (default :func:`subset_folder`), never over the folder's full report.
    """
    results = load_results(out_dir, trust).subset(only)
    out = Path(dest) if dest is not None else subset_folder(out_dir, only) if only else Path(out_dir)
    if not results.records:
        skipped = f" ({len(results.problems)} skipped: {results.problems[0]})" if results.problems else ""
        raise StoreError(f"{out_dir}: no finished runs to report on{skipped}")
    tables = build_tables(results)
    tdir = out / "tables"
    displays = _displays(results, tables)
    for name, (display, data, caption) in displays.items():  # each table's three files as one set
        atomic_write_files(
            {
                tdir / f"{name}.md": (markdown(display) + "\n").encode(),
                tdir / f"{name}.csv": data.to_csv(index=False).encode(),
                tdir / f"{name}.tex": latex(display, caption).encode(),
            }
        )
    figs = figures.write_all(results, out / "figures", budget=tables.budget)
    lines = _report_lines(results, tables, displays, figs, out, only)
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
        parts.append(
            f"test accuracy on {', '.join(f'{k:,}' for k in n)} test samples (evaluation.test_samples: "
            "a fixed random subset, or all where the split is smaller)"
        )
    if any(e.get("latency") is False for e in evs):
        parts.append("latency not timed")
    if any(e.get("count_macs") == "none" for e in evs):
        parts.append("MACs of the real dynamic forward not counted (expected MACs from the exit shares only)")
    return f"Quick evaluation: {'; '.join(parts)}" if parts else None


# --------------------------------------------------------------------------- cost of a suite's models
