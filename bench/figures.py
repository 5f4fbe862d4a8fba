"""matplotlib figures of a results folder (PNG and PDF), one per study experiment plus ours.

Every curve is the mean over seeds with a 95 % t-interval band; axes carry
units; legends sit outside the data; colours follow the Okabe-Ito
colour-blind-safe palette with distinct markers.
"""

from __future__ import annotations

import io
import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after choosing the headless backend
import numpy as np
import pandas as pd

from bench import stats
from bench.record import RunRecord
from bench.results import Results
from bench.store import atomic_write_bytes

# Okabe-Ito: distinguishable with the common colour-vision deficiencies.
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]


def style(i: int) -> dict[str, Any]:
    """Colour, marker and line style of series ``i``."""
    # colours and markers cycle every 8; each cycle gets its own line style, so 32 series stay distinct
    linestyle = ["-", "--", ":", "-."][(i // len(PALETTE)) % 4]
    return {
        "color": PALETTE[i % len(PALETTE)],
        "marker": MARKERS[i % len(MARKERS)],
        "markersize": 4,
        "linestyle": linestyle,
    }


def _mean_band(values: Sequence[Sequence[float]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """values[i] = the seeds' values at point i -> mean, low, high (low = high = mean when n < 2)."""
    means, lows, highs = [], [], []
    for v in values:
        iv = stats.t_interval(list(v))
        means.append(iv.mean)
        lows.append(iv.mean if math.isnan(iv.low) else iv.low)
        highs.append(iv.mean if math.isnan(iv.high) else iv.high)
    return np.array(means), np.array(lows), np.array(highs)


def line(
    ax: Any, x: Sequence[float], values: Sequence[Sequence[float]], label: str, i: int, scale: float = 1.0
) -> None:
    m, lo, hi = _mean_band(values)
    st = style(i)
    ax.plot(x, m * scale, label=label, linewidth=1.4, **st)
    ax.fill_between(x, lo * scale, hi * scale, color=st["color"], alpha=0.18, linewidth=0)


def clip_percent(ax: Any) -> None:
    """Keep percentage axes inside [0, 100] even when a 2-seed interval is wider than that."""
    low, high = ax.get_ylim()
    ax.set_ylim(max(low, -2.0), min(high, 102.0))


def finish(fig: Any, axes: Sequence[Any], path: Path, title: str) -> list[tuple[str, Path]]:
    for ax in axes:
        ax.grid(True, alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False, fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    for suffix, options in ((".png", {"dpi": 130}), (".pdf", {})):  # through temp-and-rename, like run files
        buf = io.BytesIO()
        fig.savefig(buf, format=suffix[1:], bbox_inches="tight", **options)
        atomic_write_bytes(path.with_suffix(suffix), buf.getvalue())
    plt.close(fig)
    return [(title, path.with_suffix(".png"))]


def loss_curves(results: Results, out: Path) -> list[tuple[str, Path]]:
    """Experiment 1: training loss over iterations (pre-training steps offset the x axis)."""
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for i, variant in enumerate(results.variants):
        recs = results.records_of(variant)
        tr = [r.training for r in recs if r.training]
        if not tr or not tr[0].log_iterations:
            continue
        n = min(len(t.log_losses) for t in tr)
        offset = tr[0].pretrain_steps or 0
        x = [offset + it for it in tr[0].log_iterations[:n]]
        line(ax, x, [[t.log_losses[j] for t in tr] for j in range(n)], variant, i)
    ax.set_xlabel("iteration (after any pre-training)")
    ax.set_ylabel("training loss (mean over logging window)")
    ax.set_yscale("log")
    return finish(fig, [ax], out / "loss_curves", "Training loss over iterations")


def accuracy_per_epoch(results: Results, out: Path) -> list[tuple[str, Path]]:
    """Experiment 2: final-exit validation and test accuracy per epoch."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), sharey=True)
    for i, variant in enumerate(results.variants):
        recs = results.records_of(variant)
        epochs = [r.training.epochs if r.training else [] for r in recs]
        n = min(len(e) for e in epochs)
        if n == 0:
            continue
        x = list(range(1, n + 1))
        for ax, key in zip(axes, ("val_accuracy", "test_accuracy")):
            line(ax, x, [[e[j][key][-1] for e in epochs] for j in range(n)], variant, i, 100)
    axes[0].set_title("validation", fontsize=9)
    axes[1].set_title("test (recorded, never used for selection)", fontsize=9)
    for ax in axes:
        ax.set_xlabel("epoch")
    axes[0].set_ylabel("final-exit accuracy (%)")
    clip_percent(axes[0])
    return finish(fig, list(axes), out / "accuracy_per_epoch", "Accuracy per epoch")


def _threshold_values(results: Results, variant: str, key: str) -> tuple[list[float], list[list[float]]]:
    recs = results.records_of(variant)
    ts = [t.threshold for t in recs[0].thresholds or [] if t.threshold is not None]
    vals = [[getattr(r.at(thr), key) for r in recs] for thr in ts]
    return ts, vals


def threshold_curves(results: Results, out: Path) -> list[tuple[str, Path]]:
    """Experiments 3 and 4: cascade accuracy and early predictions against the threshold."""
    figs = []
    for key, label, name, title in (
        ("accuracy", "cascade test accuracy (%)", "accuracy_vs_threshold", "Cascade accuracy against threshold"),
        (
            "early_share",
            "early predictions (% of test samples)",
            "early_vs_threshold",
            "Early predictions against threshold",
        ),
    ):
        fig, ax = plt.subplots(figsize=(6.4, 3.6))
        for i, variant in enumerate(results.variants):
            ts, vals = _threshold_values(results, variant, key)
            if ts:
                line(ax, ts, vals, variant, i, 100)
        ax.set_xlabel("threshold t (max softmax probability)")
        ax.set_ylabel(label)
        clip_percent(ax)
        figs += finish(fig, [ax], out / name, title)
    return figs


def lambda_sweep(results: Results, out: Path) -> list[tuple[str, Path]]:
    """Experiment 5: accuracy and early predictions against the firm penalty lambda."""
    groups: dict[str, dict[float, list[RunRecord]]] = defaultdict(lambda: defaultdict(list))
    for r in results.records:
        lam = next((v for k, v in r.sweep.items() if k.split(".")[-1] == "lambda"), None)
        if lam is not None:
            groups[r.variant_base][float(lam)].append(r)
    if not groups:
        return []
    thr = results.headline
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for i, (base, by_lam) in enumerate(groups.items()):
        lams = sorted(by_lam)
        for ax, key in zip(axes, ("accuracy", "early_share")):
            line(ax, lams, [[getattr(r.at(thr), key) for r in by_lam[lam]] for lam in lams], base, i, 100)
    axes[0].set_ylabel(f"cascade test accuracy at t = {thr} (%)")
    axes[1].set_ylabel(f"early predictions at t = {thr} (%)")
    for ax in axes:
        ax.set_xlabel("penalty weight λ")
        clip_percent(ax)
    return finish(fig, list(axes), out / "lambda_sweep", f"Firm penalty λ sweep at t = {thr}")


def headline_bars(results: Results, out: Path) -> list[tuple[str, Path]]:
    """Experiment 6: all models at the headline threshold, accuracy and early predictions."""
    thr = results.headline
    variants = results.variants
    fig, axes = plt.subplots(1, 2, figsize=(max(7.0, 0.9 * len(variants) + 3), 3.8))
    for ax, key, label in zip(
        axes, ("accuracy", "early_share"), ("cascade test accuracy (%)", "early predictions (%)")
    ):
        for i, v in enumerate(variants):
            iv = stats.t_interval([getattr(r.at(thr), key) for r in results.records_of(v)])
            err = 0.0 if math.isnan(iv.low) else iv.half_width * 100
            ax.bar(i, iv.mean * 100, yerr=err, color=style(i)["color"], capsize=3, label=v)
        ax.set_xticks(range(len(variants)))
        ax.set_xticklabels(variants, rotation=35, ha="right", fontsize=8)
        ax.set_ylabel(label)
        clip_percent(ax)
    return finish(fig, list(axes), out / "headline_bars", f"All models at t = {thr}")


def pareto_front(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points (cost, accuracy) not dominated by a cheaper-or-equal, more-or-equally accurate point."""
    front: list[tuple[float, float]] = []
    for cost, acc in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or acc > front[-1][1]:
            front.append((cost, acc))
    return front


def accuracy_vs_cost(results: Results, out: Path) -> list[tuple[str, Path]]:
    """Accuracy against expected MACs and energy, every variant and threshold, error bars on both axes."""
    figs = []
    table = results.energy_table()
    for key, label, name in (
        ("macs_expected", "expected MACs per sample (M; 1 MAC = 2 FLOPs)", "accuracy_vs_macs"),
        ("energy", f"expected energy per sample ({table} table, M units)", "accuracy_vs_energy"),
    ):
        fig, ax = plt.subplots(figsize=(6.8, 4.0))
        points = []
        for i, variant in enumerate(results.variants):
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
            st = style(i)
            ax.errorbar(xs, ys, xerr=xe, yerr=ye, label=variant, linewidth=1, capsize=2, **st)
        front = pareto_front(points)
        if front:
            fx, fy = zip(*front)
            right = max(p[0] for p in points)
            ax.plot([*fx, right], [*fy, fy[-1]], drawstyle="steps-post", color="black", linestyle="--",
                    linewidth=1, marker="x", markevery=list(range(len(fx))), label="Pareto front")  # fmt: skip
        ax.set_xlabel(label)
        ax.set_ylabel("cascade test accuracy (%)")
        clip_percent(ax)
        figs += finish(fig, [ax], out / name, "Accuracy against " + ("compute" if key != "energy" else "energy"))
    return figs


def budget_figures(results: Results, budget: pd.DataFrame, out: Path) -> list[tuple[str, Path]]:
    """Budget curves (accuracy vs budget; ``budget`` = the report's budget table) and anytime accuracy."""
    figs: list[tuple[str, Path]] = []
    if not budget.empty:
        fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.8))
        for i, variant in enumerate(budget["variant"].unique()):
            pts = [r.budget.points for r in results.records_of(variant) if r.budget and r.budget.points]
            xs = [p.budget for p in pts[0]]
            line(axes[0], xs, [[q[j].test_accuracy for q in pts] for j in range(len(xs))], variant, i, 100)
            line(axes[1], xs, [[q[j].test_cost_fraction for q in pts] for j in range(len(xs))], variant, i, 100)
        unit = budget["unit"].iloc[0]
        xlabel = {"fraction": "budget (fraction of the base network's MACs)", "macs": "budget (MACs per sample)",
                  "energy": "budget (energy per sample)"}[unit]  # fmt: skip
        axes[0].set_ylabel("test accuracy at thresholds chosen on validation (%)")
        axes[1].set_ylabel("test cost (% of base network MACs)")
        for ax in axes:
            ax.set_xlabel(xlabel)
        clip_percent(axes[0])
        figs += finish(fig, list(axes), out / "budget_curves", "Budgeted accuracy (thresholds chosen on validation)")
    fig, ax = plt.subplots(figsize=(6.8, 3.8))
    for i, variant in enumerate(results.variants):
        recs = results.records_of(variant)
        cost = recs[0].cost
        if cost is None or len(cost.per_exit) < 2:
            continue
        xs = [c.macs / cost.base["macs"] * 100 for c in cost.per_exit]
        vals = [[r.exits.test_accuracy[j] for r in recs if r.exits] for j in range(len(cost.per_exit))]
        line(ax, xs, vals, variant, i, 100)
    ax.set_xlabel("cumulative cost of the exit (% of base network MACs)")
    ax.set_ylabel("exit test accuracy, all samples (%)")
    clip_percent(ax)
    figs += finish(fig, [ax], out / "anytime", "Anytime prediction: each exit's accuracy against its cost")
    return figs


def write_all(results: Results, out: Path, *, budget: pd.DataFrame | None = None) -> list[tuple[str, Path]]:
    """Every figure that the results support; returns (title, png path) pairs."""
    figs: list[tuple[str, Path]] = []
    for fn in (loss_curves, accuracy_per_epoch, threshold_curves, lambda_sweep, headline_bars, accuracy_vs_cost):
        figs += fn(results, out)
    if any(r.budget for r in results.records):
        figs += budget_figures(results, budget if budget is not None else pd.DataFrame(), out)
    return figs
