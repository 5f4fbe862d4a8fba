"""What ``bench list`` and ``bench cost`` show: a results folder's runs and a suite's per-layer costs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from bench.analyse.load import load_results
from bench.analyse.tables import build_tables
from bench.config.load import load_suite
from bench.config.plan import build_for, expand_runs, select_runs
from bench.config.plugins import NO_TRUST, FolderTrust
from bench.config.tables import EnergyTable, Hardware, load_energy_table, load_hardware
from bench.measure.cost import profile
from bench.measure.dataflow import dram_traffic, gemm_shapes
from bench.measure.energy import buffered_breakdown, energy_breakdown, layer_energy_rows
from bench.render.format import main_display
from cascade.data import dataset_shape


@dataclass
class Summary:
    """The compact main table of a folder, for the terminal."""

    title: str
    frame: pd.DataFrame
    warnings: list[str]


def run_summary(out_dir: str | Path, trust: FolderTrust = NO_TRUST) -> Summary | None:
    """The compact main table (accuracy, early exits, MACs, latency, MACs saved); None: no finished runs."""
    results = load_results(out_dir, trust)
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
        views.append(
            dataflow_view(
                model,
                shape[0],
                run.variant_base,
                load_hardware(suite.evaluation.hardware),
                suite.evaluation.energy_batch,
                energy,
            )
        )
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
        rows.append(
            {
                "layer": layer,
                "order": t.order,
                "inputs": f"{shape.inputs:,} -> {t.inputs:,}",
                "weights": f"{shape.weights:,} -> {t.weights:,}",
                "outputs": f"{t.outputs:,}",
                "DRAM x ideal": f"{t.total / ideal:.2f}",
            }
        )
    prof = profile(model, x)
    ideal_e = energy_breakdown(prof, energy)["total"]
    buffered_e = buffered_breakdown(prof, gemm_shapes(model, x), energy, hw.glb_words)["total"]
    title = (
        f"{name}: DRAM words per operand at batch {batch}, ideal -> buffered ({hw.name}: "
        f"{hw.glb_words:,}-word global buffer, {hw.word_bits}-bit words)"
    )
    line = (
        f"energy per sample at batch {batch}: ideal {ideal_e:.4g}, buffered {buffered_e:.4g} {energy.unit} "
        f"(x {buffered_e / ideal_e:.3f}); set evaluation.hardware / evaluation.energy_batch to change"
    )
    return CostView(title, pd.DataFrame(rows).astype(str), line, {})
