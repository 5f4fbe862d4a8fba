"""matplotlib figures of a results folder (PNG and PDF), one per study experiment plus ours.

Every curve is the mean over seeds with a 95 % t-interval band (no band and no error bars at one
seed); the set-up (widths, colours, markers, facets) is :mod:`bench.render.plotting`'s.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.analyse import stats
from bench.analyse.load import Results
from bench.render.plotting import (
    FRONT,
    _facet_style,
    _label,
    _mean_band,
    clip_percent,
    collapsed,
    facets,
    finish,
    integer_ticks,
    line,
    panels,
    plt,
    shared_labels,
    variant_style,
)
from bench.render.timing_figures import latency_model, runtime_paths
from bench.results.record import RunRecord


def loss_curves(results: Results, out: Path) -> list[tuple[str, Path]]:
    """Experiment 1: training loss over iterations (pre-training steps offset the x axis)."""
    fig, (ax,) = panels(1)
    for variant in results.variants:
        recs = results.records_of(variant)
        tr = [r.training for r in recs if r.training]
        if not tr or not tr[0].log_iterations:
            continue
        n = min(len(t.log_losses) for t in tr)
        offset = tr[0].pretrain_steps or 0
        x = [offset + it for it in tr[0].log_iterations[:n]]
        line(ax, x, [[t.log_losses[j] for t in tr] for j in range(n)], variant, variant_style(results, variant))
    ax.set_xlabel("iteration (after any pre-training)")
    ax.set_ylabel("training loss (window mean)")
    ax.set_yscale("log")
    return finish(fig, [ax], out / "loss_curves", "Training loss over iterations")


def accuracy_per_epoch(results: Results, out: Path) -> list[tuple[str, Path]]:
    """Experiment 2: final-exit validation and test accuracy per epoch."""
    fig, axes = panels(2, sharey=True)
    for variant in results.variants:
        recs = results.records_of(variant)
        epochs = [r.training.epochs if r.training else [] for r in recs]
        n = min(len(e) for e in epochs)
        if n == 0:
            continue
        x = list(range(1, n + 1))
        for ax, key in zip(axes, ("val_accuracy", "test_accuracy")):
            line(
                ax,
                x,
                [[e[j][key][-1] for e in epochs] for j in range(n)],
                variant,
                variant_style(results, variant),
                100,
            )
    recomputed = any(r.sanity is not None and r.sanity.bn_recomputed for r in results.records)
    axes[0].set_title(
        "validation" + (" (running BN statistics; evaluation recomputed them)" if recomputed else ""), fontsize=8
    )
    axes[1].set_title("test (recorded, never used for selection)", fontsize=8)
    for ax in axes:
        ax.set_xlabel("epoch")
    axes[0].set_ylabel("final-exit accuracy (%)")
    clip_percent(axes[0])
    for ax in axes:
        integer_ticks(ax)
    return finish(fig, list(axes), out / "accuracy_per_epoch", "Accuracy per epoch")


def _threshold_values(results: Results, variant: str, key: str) -> tuple[list[float], list[list[float]]]:
    recs = results.records_of(variant)
    ts = [t.threshold for t in recs[0].thresholds or [] if t.threshold is not None]
    vals = [[getattr(r.at(thr), key) for r in recs] for thr in ts]
    return ts, vals


def threshold_curves(results: Results, out: Path) -> list[tuple[str, Path]]:
    """Experiments 3 and 4: cascade accuracy and early predictions against the threshold (faceted). Only the
    evaluated thresholds exist, so they are drawn as markers with their intervals, never joined by lines that would
    pose as the trade-offs between them; a network without early exits is left out of the early-share figure."""
    figs = []
    groups = facets(results)
    for key, label, name, title in (
        ("accuracy", "cascade test accuracy (%)", "accuracy_vs_threshold", "Cascade accuracy against threshold"),
        ("early_share", "early predictions (% of test)", "early_vs_threshold", "Early predictions against threshold"),
    ):
        fig, axes = panels(len(groups), sharex=True, sharey=True)
        drawn = False
        for ax, (facet, variants) in zip(axes, groups):
            for variant in variants:
                ts, vals = _threshold_values(results, variant, key)
                if ts and (key != "early_share" or results.records_of(variant)[0].exits_at):
                    _points(ax, ts, vals, _label(results, variant), _facet_style(results, variant, facet))
                    drawn = True
            if facet:
                ax.set_title(facet, fontsize=8)
        if not drawn:
            plt.close(fig)
            continue
        clip_percent(axes[0])  # after every facet is drawn: the panels share the y axis
        shared_labels(fig, axes, "threshold t (the evaluated values)", label)
        figs += finish(fig, axes, out / name, title)
    return figs


def _points(ax: Any, x: Sequence[float], values: Sequence[Sequence[float]], label: str, st: dict[str, Any]) -> None:
    """Means over seeds as markers, with 95 % intervals as error bars (none at one seed), in percent."""
    m, lo, hi = _mean_band(values)
    err = None if all(len(v) < 2 for v in values) else [(m - lo) * 100, (hi - m) * 100]
    ax.errorbar(x, m * 100, yerr=err, label=label, capsize=1.5, elinewidth=0.8, **{**st, "linestyle": "none"})


def lambda_sweep(results: Results, out: Path) -> list[tuple[str, Path]]:
    """Experiment 5: accuracy and early predictions against the firm penalty lambda.

    Several families on one axis are dodged sideways (a small offset, 1.5 % of the λ range per
    family) so that their points and error bars do not hide each other.
    """
    groups: dict[str, dict[float, list[RunRecord]]] = defaultdict(lambda: defaultdict(list))
    for r in results.records:
        lam = next((v for k, v in r.sweep.items() if k.split(".")[-1] == "lambda"), None)
        if lam is not None:
            groups[r.variant_base][float(lam)].append(r)
    if not groups:
        return []
    thr = results.headline
    fig, axes = panels(2)
    n = len(groups)
    all_lams = sorted({lam for by_lam in groups.values() for lam in by_lam})
    span = (all_lams[-1] - all_lams[0]) or 1.0
    for g, (base, by_lam) in enumerate(groups.items()):
        lams = sorted(by_lam)
        dodge = 0.015 * span * (g - (n - 1) / 2)
        st = variant_style(results, next(iter(by_lam.values()))[0].variant)
        for ax, key in zip(axes, ("accuracy", "early_share")):
            vals = [[getattr(r.at(thr), key) for r in by_lam[lam]] for lam in lams]
            m, lo, hi = _mean_band(vals)
            err = None if all(len(v) < 2 for v in vals) else [(m - lo) * 100, (hi - m) * 100]
            ax.errorbar([lam + dodge for lam in lams], m * 100, yerr=err, label=base, capsize=2, linewidth=1.2, **st)
    axes[0].set_ylabel(f"cascade test accuracy at t = {thr} (%)")
    axes[1].set_ylabel(f"early predictions at t = {thr} (%)")
    for ax in axes:
        ax.set_xlabel("penalty weight λ")
        ax.set_xticks(all_lams)
        clip_percent(ax)
    return finish(fig, list(axes), out / "lambda_sweep", f"Firm penalty λ sweep at t = {thr}")


def headline_bars(results: Results, out: Path) -> list[tuple[str, Path]]:
    """Experiment 6: all models at the headline threshold, accuracy and early predictions (page wide): a dot and
    its 95 % interval per variant on an axis fitted to the data (bars from 0 would hide differences of a point)."""
    thr = results.headline
    variants = results.variants
    fig, axes = panels(2, height=2.2 + 0.08 * max(len(v) for v in variants))
    for ax, key, label in zip(
        axes, ("accuracy", "early_share"), ("cascade test accuracy (%)", "early predictions (%)")
    ):
        for i, v in enumerate(variants):
            iv = stats.t_interval([getattr(r.at(thr), key) for r in results.records_of(v)])
            err = None if math.isnan(iv.low) else iv.half_width * 100  # no error bar at one seed
            st = variant_style(results, v)
            ax.errorbar(
                i,
                iv.mean * 100,
                yerr=err,
                color=st["color"],
                marker=st["marker"],
                markersize=5,
                capsize=2,
                linestyle="none",
            )
        ax.set_xticks(range(len(variants)))
        ax.set_xticklabels(variants, rotation=60, ha="right", fontsize=6)
        ax.set_ylabel(label)
        ax.set_xlim(-0.6, len(variants) - 0.4)
        clip_percent(ax)
    return finish(fig, list(axes), out / "headline_bars", f"All models at t = {thr}")  # the x axis names them


def pareto_front(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points (cost, accuracy) not dominated by a cheaper-or-equal, more-or-equally accurate point."""
    front: list[tuple[float, float]] = []
    for cost, acc in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or acc > front[-1][1]:
            front.append((cost, acc))
    return front


def accuracy_vs_cost(results: Results, out: Path) -> list[tuple[str, Path]]:
    """Accuracy against expected MACs and energy, every variant and threshold; error bars at n >= 2.

    The Pareto front (of the mean points of all variants) is drawn as a wide grey step line behind
    the points, in no variant's colour.
    """
    figs = []
    table = results.energy_table()
    groups = facets(results)
    for key, label, name in (
        ("macs_expected", "expected MACs per sample (M)", "accuracy_vs_macs"),
        ("energy", f"energy per sample ({table}, M units)", "accuracy_vs_energy"),
    ):
        fig, axes = panels(len(groups), sharex=True, sharey=True)
        points = []
        for ax, (facet, variants) in zip(axes, groups):
            for variant in variants:
                recs = results.records_of(variant)
                xs, ys, xe, ye = [], [], [], []
                for j in range(len(recs[0].thresholds or [])):
                    rows = [(r.thresholds or [])[j] for r in recs]
                    costs = [row.energy_expected[table] if key == "energy" else row.macs_expected for row in rows]
                    cx = stats.t_interval([c / 1e6 for c in costs])
                    cy = stats.t_interval([row.accuracy * 100 for row in rows])
                    xs.append(cx.mean)
                    ys.append(cy.mean)
                    xe.append(0 if math.isnan(cx.low) else cx.half_width)
                    ye.append(0 if math.isnan(cy.low) else cy.half_width)
                    points.append((cx.mean, cy.mean))
                st = dict(_facet_style(results, variant, facet))
                if collapsed(results, variant):
                    st["linestyle"] = "none"
                one_seed = len(recs) < 2
                ax.errorbar(
                    xs,
                    ys,
                    xerr=None if one_seed else xe,
                    yerr=None if one_seed else ye,
                    label=_label(results, variant),
                    linewidth=1,
                    capsize=2,
                    **st,
                )
            if facet:
                ax.set_title(facet, fontsize=8)
        shared_labels(fig, axes, label, "cascade test accuracy (%)")
        front = pareto_front(points)
        if front:
            fx, fy = zip(*front)
            right = max(p[0] for p in points)
            for ax in axes:
                ax.plot(
                    [*fx, right], [*fy, fy[-1]], drawstyle="steps-post", label="Pareto front (all variants)", **FRONT
                )
        clip_percent(axes[0])  # after every facet is drawn: the panels share the y axis
        figs += finish(fig, axes, out / name, "Accuracy against " + ("compute" if key != "energy" else "energy"))
    return figs


def budget_figures(results: Results, budget: pd.DataFrame, out: Path) -> list[tuple[str, Path]]:
    """Budget curves (accuracy vs budget; ``budget`` = the report's budget table)."""
    figs: list[tuple[str, Path]] = []
    if not budget.empty:
        fig, axes = panels(2)
        for variant in budget["variant"].unique():
            pts = [r.budget.points for r in results.records_of(variant) if r.budget and r.budget.points]
            xs = [p.budget for p in pts[0]]
            st = variant_style(results, variant)
            line(axes[0], xs, [[q[j].test_accuracy for q in pts] for j in range(len(xs))], variant, st, 100)
            line(axes[1], xs, [[q[j].test_cost_fraction for q in pts] for j in range(len(xs))], variant, st, 100)
        unit = budget["unit"].iloc[0]
        xlabel = {
            "fraction": "budget (fraction of base MACs)",
            "macs": "budget (MACs per sample)",
            "energy": "budget (energy per sample)",
        }[unit]
        axes[0].set_ylabel("test accuracy, thresholds from val. (%)")
        axes[1].set_ylabel("test cost (% of base MACs)")
        for ax in axes:
            ax.set_xlabel(xlabel)
        clip_percent(axes[0])
        figs += finish(fig, list(axes), out / "budget_curves", "Budgeted accuracy (thresholds chosen on validation)")
    return figs


def anytime(results: Results, out: Path) -> list[tuple[str, Path]]:
    """Anytime prediction: each exit's own accuracy (all samples through it) against its cumulative cost."""
    fig, (ax,) = panels(1)
    drawn = False
    for variant in results.variants:
        recs = results.records_of(variant)
        cost = recs[0].cost
        if cost is None or len(cost.per_exit) < 2:
            continue
        xs = [c.macs / cost.base["macs"] * 100 for c in cost.per_exit]
        vals = [[r.exits.test_accuracy[j] for r in recs if r.exits] for j in range(len(cost.per_exit))]
        line(ax, xs, vals, variant, variant_style(results, variant), 100)
        drawn = True
    if not drawn:
        plt.close(fig)
        return []
    ax.set_xlabel("cumulative cost of the exit (% of base MACs)")
    ax.set_ylabel("exit test accuracy, all samples (%)")
    clip_percent(ax)
    return finish(fig, [ax], out / "anytime", "Anytime prediction: each exit alone")


ENERGY_PARTS = (
    ("mac", "MAC"),
    ("rf", "register file"),
    ("array", "array (inter-PE)"),
    ("glb", "global buffer"),
    ("dram", "DRAM"),
)
LEVEL_COLOURS = {"mac": "#999999", "rf": "#56B4E9", "array": "#009E73", "glb": "#E69F00", "dram": "#D55E00"}


def _architectures(results: Results) -> list[tuple[list[str], RunRecord]]:
    """Distinct exit architectures (by per-exit MACs): the variants sharing each, and one record of them."""
    found: dict[tuple[Any, ...], tuple[list[str], RunRecord]] = {}
    for variant in results.variants:
        rec = results.records_of(variant)[0]
        if rec.cost is None:
            continue
        key = tuple((c.exit, c.macs) for c in rec.cost.per_exit)
        found.setdefault(key, ([], rec))[0].append(variant)
    return list(found.values())


def energy_levels(results: Results, out: Path) -> list[tuple[str, Path]]:
    """Energy per sample of each exit path by memory level (stacked), ideal and buffer-aware side by side."""
    table = results.energy_table()
    archs = [
        (v, r)
        for v, r in _architectures(results)
        if r.cost and r.cost.per_exit and f"{table}_buffered" in r.cost.per_exit[0].energy
    ]
    if not archs:
        return []
    archs = archs[:6]
    fig, axes = panels(len(archs))
    batch = archs[0][1].cost.energy_tables.get(f"{table}_buffered", {}).get("batch", "1")  # type: ignore[union-attr]
    for ax, (variants, rec) in zip(axes, archs):
        assert rec.cost is not None
        names = [c.exit for c in rec.cost.per_exit]
        x = np.arange(len(names))
        for offset, key, hatch in ((-0.2, table, ""), (0.2, f"{table}_buffered", "//")):
            bottom = np.zeros(len(names))
            for part, label in ENERGY_PARTS:
                vals = np.array([c.energy[key][part] for c in rec.cost.per_exit]) / 1e6
                ax.bar(
                    x + offset,
                    vals,
                    0.38,
                    bottom=bottom,
                    color=LEVEL_COLOURS[part],
                    hatch=hatch,
                    edgecolor="white",
                    linewidth=0.4,
                    label=label if offset < 0 else None,
                )
                bottom += vals
        ax.set_xticks(x, [f"{n}\nideal | buf." for n in names])
        names_shown = ", ".join(variants)
        ax.set_title(names_shown if len(names_shown) < 40 else f"{variants[0]} and {len(variants) - 1} more")
    shared_labels(fig, axes, "exit path", f"energy per sample (M {results.energy_unit()})")
    title = f"Energy by level per exit path ({table}): ideal (plain, batch 1) vs buffered (hatched, batch {batch})"
    return finish(fig, axes, out / "energy_levels", title)


def write_all(results: Results, out: Path, *, budget: pd.DataFrame | None = None) -> list[tuple[str, Path]]:
    """Every figure that the results support; returns (title, png path) pairs."""
    figs: list[tuple[str, Path]] = []
    for fn in (
        loss_curves,
        accuracy_per_epoch,
        threshold_curves,
        lambda_sweep,
        headline_bars,
        accuracy_vs_cost,
        anytime,
        energy_levels,
        latency_model,
        runtime_paths,
    ):
        figs += fn(results, out)
    if any(r.budget for r in results.records):
        figs += budget_figures(results, budget if budget is not None else pd.DataFrame(), out)
    return figs
