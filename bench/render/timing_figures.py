"""Figures of a folder's timings: the roofline's predictions against the measurements, and exit-path time against
MACs per runtime; timings in doubt (a busy machine, twins timed apart) drawn hollow.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from bench.analyse.load import Results
from bench.config.engines import RUNTIMES
from bench.render.plotting import (
    finish,
    panels,
    style,
)
from bench.results.record import CascadeTiming, PathTiming, RunRecord
from cascade._registry import UnknownNameError


def latency_model(results: Results, out: Path) -> list[tuple[str, Path]]:
    """Roofline-predicted vs measured time per sample of every timed exit path and cascade (log-log)."""
    points: dict[int, list[tuple[float, float, bool]]] = defaultdict(list)
    for rec in results.records:
        if rec.latency is None:
            continue
        timed: list[PathTiming | CascadeTiming] = [*rec.latency.exit_paths, *rec.latency.cascade]
        for item in timed:
            pred = item.roofline_per_sample
            if pred:
                doubt = noisy_timing(rec, item.runtime, item.batch_size)
                points[item.batch_size].append((pred * 1e6, item.per_sample_median * 1e6, doubt))
    if not points:
        return []
    fig, (ax,) = panels(1)
    for i, (batch, pts) in enumerate(sorted(points.items())):
        st = style(i)
        clean = [(p, m) for p, m, doubt in pts if not doubt]
        doubtful = [(p, m) for p, m, doubt in pts if doubt]
        ax.scatter(
            [p for p, _ in clean],
            [m for _, m in clean],
            s=12,
            color=st["color"],
            marker=st["marker"],
            label=f"batch {batch}",
            alpha=0.8,
        )
        if doubtful:
            ax.scatter(
                [p for p, _ in doubtful],
                [m for _, m in doubtful],
                s=12,
                facecolors="none",
                edgecolors=st["color"],
                marker=st["marker"],
                label=f"batch {batch}, noisy timing",
            )
    every = [v for pts in points.values() for p in pts for v in p[:2]]
    lo, hi = min(every) / 1.5, max(every) * 1.5
    ax.plot([lo, hi], [lo, hi], color="black", linewidth=0.8, label="identity (prediction = measurement)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("roofline prediction (µs per sample)")
    ax.set_ylabel("measured median (µs per sample)")
    return finish(fig, [ax], out / "latency_model", "Latency: roofline vs measured")


def runtime_paths(results: Results, out: Path) -> list[tuple[str, Path]]:
    """Exit-path time per sample against the path's MACs, one colour per runtime, marker per batch (log-log);
    only when a folder timed more than one runtime."""
    points: dict[tuple[str, int], list[tuple[float, float, bool]]] = defaultdict(list)
    for rec in results.records:
        if rec.latency is None or rec.cost is None or rec.exits is None or len(rec.latency.runtime_names) < 2:
            continue
        macs = {name: c.macs for name, c in zip(rec.exits.names, rec.cost.per_exit)}
        for item in rec.latency.exit_paths:
            doubt = noisy_timing(rec, item.runtime, item.batch_size)
            points[(item.runtime, item.batch_size)].append((macs[item.exit], item.per_sample_median * 1e6, doubt))
    if not points:
        return []
    fig, (ax,) = panels(1)
    runtimes = sorted({rt for rt, _ in points}, key=lambda rt: (rt != "eager", rt))
    batches = sorted({b for _, b in points})
    for (rt, batch), pts in sorted(points.items()):
        label, colour = runtime_look(rt)
        color = colour or style(runtimes.index(rt))["color"]
        marker = style(batches.index(batch))["marker"]
        clean = [(m, t) for m, t, doubt in pts if not doubt]
        doubtful = [(m, t) for m, t, doubt in pts if doubt]
        ax.scatter(
            [m for m, _ in clean],
            [t for _, t in clean],
            s=14,
            color=color,
            marker=marker,
            alpha=0.8,
            label=f"{label}, batch {batch}",
        )
        if doubtful:
            ax.scatter(
                [m for m, _ in doubtful],
                [t for _, t in doubtful],
                s=14,
                facecolors="none",
                edgecolors=color,
                marker=marker,
                label=f"{label}, batch {batch}, noisy timing",
            )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.tick_params(axis="x", labelrotation=30)
    ax.set_xlabel("MACs of the exit path (per sample)")
    ax.set_ylabel("measured median (µs per sample)")
    return finish(fig, [ax], out / "runtime_paths", "Exit-path time against MACs, per runtime")


def runtime_look(name: str) -> tuple[str, str]:
    """(label, colour) of runtime ``name`` as its :class:`cascade.runtime.Runtime` declares them, the same in every
    figure; a runtime no longer registered here (a plugin's, not imported) shows under its name, in the palette."""
    try:
        runtime = RUNTIMES.get(name).load()
    except (UnknownNameError, ImportError, AttributeError):
        return name, ""
    return runtime.label or name, runtime.colour


def noisy_timing(rec: RunRecord, runtime: str, batch: int) -> bool:
    """Whether ``rec``'s timing in ``runtime`` at ``batch`` is in doubt: timed on a busy machine, or its full network
    and last exit's path (one computation) timed apart (:meth:`LatencyRecord.twin_gaps`)."""
    lat = rec.latency
    if lat is None:
        return False
    return lat.busy or any(g["runtime"] == runtime and g["batch_size"] == batch for g in lat.twin_gaps())
