"""matplotlib figures of a results folder (PNG and PDF), one per study experiment plus ours.

Every curve is the mean over seeds with a 95 % t-interval band; axes carry
units; legends sit outside the data; colours follow the Okabe-Ito
colour-blind-safe palette with distinct markers.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from bench import stats

if TYPE_CHECKING:
    from bench.report import Results


def _style(i: int) -> dict[str, Any]:
    from bench.report import MARKERS, PALETTE

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


def _line(
    ax: Any, x: Sequence[float], values: Sequence[Sequence[float]], label: str, i: int, scale: float = 1.0
) -> None:
    m, lo, hi = _mean_band(values)
    st = _style(i)
    ax.plot(x, m * scale, label=label, linewidth=1.4, **st)
    ax.fill_between(x, lo * scale, hi * scale, color=st["color"], alpha=0.18, linewidth=0)


def _clip_percent(ax: Any) -> None:
    """Keep percentage axes inside [0, 100] even when a 2-seed interval is wider than that."""
    low, high = ax.get_ylim()
    ax.set_ylim(max(low, -2.0), min(high, 102.0))


def _finish(fig: Any, axes: Sequence[Any], path: Path, title: str) -> list[tuple[str, Path]]:
    for ax in axes:
        ax.grid(True, alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False, fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path.with_suffix(".png"), dpi=130, bbox_inches="tight")
    fig.savefig(path.with_suffix(".pdf"), bbox_inches="tight")
    plt.close(fig)
    return [(title, path.with_suffix(".png"))]


def loss_curves(results: Results, out: Path) -> list[tuple[str, Path]]:
    """Experiment 1: training loss over iterations (pre-training steps offset the x axis)."""
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for i, variant in enumerate(results.variants):
        recs = results.records_of(variant)
        tr = [r["training"] for r in recs]
        if not tr[0]["log_iterations"]:
            continue
        n = min(len(t["log_losses"]) for t in tr)
        offset = tr[0].get("pretrain_steps", 0) or 0
        x = [offset + it for it in tr[0]["log_iterations"][:n]]
        _line(ax, x, [[t["log_losses"][j] for t in tr] for j in range(n)], variant, i)
    ax.set_xlabel("iteration (after any pre-training)")
    ax.set_ylabel("training loss (mean over logging window)")
    ax.set_yscale("log")
    return _finish(fig, [ax], out / "loss_curves", "Training loss over iterations")


def accuracy_per_epoch(results: Results, out: Path) -> list[tuple[str, Path]]:
    """Experiment 2: final-exit validation and test accuracy per epoch."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), sharey=True)
    for i, variant in enumerate(results.variants):
        recs = results.records_of(variant)
        epochs = [r["training"]["epochs"] for r in recs]
        n = min(len(e) for e in epochs)
        if n == 0:
            continue
        x = list(range(1, n + 1))
        for ax, key in zip(axes, ("val_accuracy", "test_accuracy")):
            _line(ax, x, [[e[j][key][-1] for e in epochs] for j in range(n)], variant, i, 100)
    axes[0].set_title("validation", fontsize=9)
    axes[1].set_title("test (recorded, never used for selection)", fontsize=9)
    for ax in axes:
        ax.set_xlabel("epoch")
    axes[0].set_ylabel("final-exit accuracy (%)")
    _clip_percent(axes[0])
    return _finish(fig, list(axes), out / "accuracy_per_epoch", "Accuracy per epoch")


def _threshold_values(results: Results, variant: str, key: str) -> tuple[list[float], list[list[float]]]:
    recs = results.records_of(variant)
    ts = [t["threshold"] for t in recs[0]["thresholds"] if t["threshold"] is not None]
    vals = [[next(t[key] for t in r["thresholds"] if t["threshold"] == thr) for r in recs] for thr in ts]
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
                _line(ax, ts, vals, variant, i, 100)
        ax.set_xlabel("threshold t (max softmax probability)")
        ax.set_ylabel(label)
        _clip_percent(ax)
        figs += _finish(fig, [ax], out / name, title)
    return figs


def lambda_sweep(results: Results, out: Path) -> list[tuple[str, Path]]:
    """Experiment 5: accuracy and early predictions against the firm penalty lambda."""
    groups: dict[str, dict[float, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for r in results.records:
        lam = next((v for k, v in r["sweep"].items() if k.split(".")[-1] == "lambda"), None)
        if lam is not None:
            groups[r["variant_base"]][float(lam)].append(r)
    if not groups:
        return []
    from bench.report import _at

    thr = results.headline
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for i, (base, by_lam) in enumerate(groups.items()):
        lams = sorted(by_lam)
        for ax, key in zip(axes, ("accuracy", "early_share")):
            _line(ax, lams, [[_at(r, thr)[key] for r in by_lam[lam]] for lam in lams], base, i, 100)
    axes[0].set_ylabel(f"cascade test accuracy at t = {thr} (%)")
    axes[1].set_ylabel(f"early predictions at t = {thr} (%)")
    for ax in axes:
        ax.set_xlabel("penalty weight λ")
        _clip_percent(ax)
    return _finish(fig, list(axes), out / "lambda_sweep", f"Firm penalty λ sweep at t = {thr}")


def headline_bars(results: Results, out: Path) -> list[tuple[str, Path]]:
    """Experiment 6: all models at the headline threshold, accuracy and early predictions."""
    from bench.report import _at

    thr = results.headline
    variants = results.variants
    fig, axes = plt.subplots(1, 2, figsize=(max(7.0, 0.9 * len(variants) + 3), 3.8))
    for ax, key, label in zip(
        axes, ("accuracy", "early_share"), ("cascade test accuracy (%)", "early predictions (%)")
    ):
        for i, v in enumerate(variants):
            iv = stats.t_interval([_at(r, thr)[key] for r in results.records_of(v)])
            err = 0.0 if math.isnan(iv.low) else iv.half_width * 100
            ax.bar(i, iv.mean * 100, yerr=err, color=_style(i)["color"], capsize=3, label=v)
        ax.set_xticks(range(len(variants)))
        ax.set_xticklabels(variants, rotation=35, ha="right", fontsize=8)
        ax.set_ylabel(label)
        _clip_percent(ax)
    return _finish(fig, list(axes), out / "headline_bars", f"All models at t = {thr}")


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
            for j in range(len(recs[0]["thresholds"])):
                rows = [r["thresholds"][j] for r in recs]
                costs = [row["energy_expected"][table] if key == "energy" else row[key] for row in rows]
                cx = stats.t_interval([c / 1e6 for c in costs])
                cy = stats.t_interval([r["thresholds"][j]["accuracy"] * 100 for r in recs])
                xs.append(cx.mean)
                ys.append(cy.mean)
                xe.append(0 if math.isnan(cx.low) else cx.half_width)
                ye.append(0 if math.isnan(cy.low) else cy.half_width)
                points.append((cx.mean, cy.mean))
            st = _style(i)
            ax.errorbar(xs, ys, xerr=xe, yerr=ye, label=variant, linewidth=1, capsize=2, **st)
        front = pareto_front(points)
        if front:
            fx, fy = zip(*front)
            right = max(p[0] for p in points)
            ax.plot([*fx, right], [*fy, fy[-1]], drawstyle="steps-post", color="black", linestyle="--",
                    linewidth=1, marker="x", markevery=list(range(len(fx))), label="Pareto front")  # fmt: skip
        ax.set_xlabel(label)
        ax.set_ylabel("cascade test accuracy (%)")
        _clip_percent(ax)
        figs += _finish(fig, [ax], out / name, "Accuracy against " + ("compute" if key != "energy" else "energy"))
    return figs


def write_all(results: Results, out: Path) -> list[tuple[str, Path]]:
    """Every figure that the results support; returns (title, png path) pairs."""
    figs: list[tuple[str, Path]] = []
    for fn in (loss_curves, accuracy_per_epoch, threshold_curves, lambda_sweep, headline_bars, accuracy_vs_cost):
        figs += fn(results, out)
    if any(r.get("budget") for r in results.records):
        from bench.budget import budget_figures

        figs += budget_figures(results, out)
    return figs
