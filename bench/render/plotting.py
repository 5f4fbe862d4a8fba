"""matplotlib set-up and helpers shared by every figure of a report (PNG and PDF).

Every curve is the mean over seeds with a 95 % t-interval band (no band and no error bars at one
seed); axes carry units; legends sit below the axes so that a figure keeps its width. Widths are
a journal's: :data:`COLUMN` (3.5 in) for one panel, :data:`PAGE` (7 in) for two or more. Each
variant keeps one colour + marker pair in every figure, unique for up to 56 variants (7 Okabe-Ito
colours, colour-blind safe, x 8 markers; black is left to the Pareto front). With many variants the
threshold and cost figures are faceted by loss family (base, drawn grey, stays in every facet as the
reference). Variants whose exits collapsed (0 % or 100 % early at every threshold) are drawn as
markers only: their thresholds do not trace a curve of operating points.
"""

from __future__ import annotations

import hashlib
import io
import math
import textwrap
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after choosing the headless backend
import numpy as np
from matplotlib.ticker import MaxNLocator

from bench.analyse import stats
from bench.analyse.load import Results
from bench.results.files import atomic_write_files

# Okabe-Ito without black (distinguishable with the common colour-vision deficiencies).
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442"]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]
FRONT = {"color": "black", "linewidth": 2.2, "alpha": 0.35, "linestyle": "-", "zorder": 0}  # the Pareto front
COLUMN, PAGE = 3.5, 7.0  # figure widths, inches
FACET_ABOVE = 6  # more variants than this: facet the threshold and cost figures by loss family
REFERENCE_GREY = "#7f7f7f"
LEGEND_PT = 6.5  # legend font size, points
plt.rcParams.update(
    {"font.size": 7, "axes.labelsize": 8, "axes.titlesize": 8, "xtick.labelsize": 7, "ytick.labelsize": 7}
)  # sizes for a 3.5 in column


def style(i: int) -> dict[str, Any]:
    """Colour, marker and line style of series ``i``: a (colour, marker) pair unique for i < 56."""
    c, cycle = i % len(PALETTE), i // len(PALETTE)
    return {
        "color": PALETTE[c],
        "marker": MARKERS[(c + cycle) % len(MARKERS)],
        "markersize": 4,
        "linestyle": ["-", "--", ":", "-."][cycle % 4],
    }


def variant_style(results: Results, variant: str) -> dict[str, Any]:
    """The style of ``variant``: chosen by its name, so the same variant looks the same in every figure of every
    report (``sum`` keeps its colour whatever else a folder holds); two names of one folder that would share a style
    go to the next free one, in the folder's variant order."""
    return style(stable_slots(results.variants)[variant])


SLOTS = len(PALETTE) * len(MARKERS)  # distinct (colour, marker) pairs


def stable_slots(variants: Sequence[str]) -> dict[str, int]:
    """A style index per variant (colour c, marker cycle k: index = k * colours + c, as :func:`style` reads it)
    from a hash of its name, so it is stable across processes and reports; within one folder every variant gets
    a colour of its own while colours last (yellow, the faintest, last), then the next free pair."""
    taken: set[int] = set()
    used_colours: set[int] = set()
    out = {}
    for v in variants:
        h = int(hashlib.sha256(v.encode()).hexdigest(), 16)
        colour = h % (len(PALETTE) - 1)  # the palette's last colour (yellow) only once the others are used
        while colour in used_colours and len(used_colours) < len(PALETTE):
            colour = (colour + 1) % len(PALETTE)
        slot = colour  # solid line, the colour's own marker; another marker and dash only once colours run out
        while slot in taken and len(taken) < SLOTS:
            slot = (slot + len(PALETTE)) % SLOTS
        taken.add(slot)
        used_colours.add(colour)
        out[v] = slot
    return out


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
    ax: Any,
    x: Sequence[float],
    values: Sequence[Sequence[float]],
    label: str,
    i: int | dict[str, Any],
    scale: float = 1.0,
    *,
    markers_only: bool = False,
) -> None:
    """Mean over seeds with a 95 % band (none at one seed); ``i``: a series index or a style."""
    m, lo, hi = _mean_band(values)
    st = dict(style(i) if isinstance(i, int) else i)
    if markers_only:
        st["linestyle"] = "none"
    ax.plot(x, m * scale, label=label, linewidth=1.4, **st)
    if any(len(v) > 1 for v in values) and not markers_only:
        ax.fill_between(x, lo * scale, hi * scale, color=st["color"], alpha=0.18, linewidth=0)


def clip_percent(ax: Any, *, min_span: float = 2.0) -> None:
    """Fit a percentage axis to the data, inside [0, 100] even when a 2-seed interval is wider than that, and at
    least ``min_span`` points tall (a flat line is not blown up to fill the panel)."""
    low, high = ax.get_ylim()
    low, high = max(low, -2.0), min(high, 102.0)
    if high - low < min_span:
        mid = (low + high) / 2
        low, high = max(-2.0, mid - min_span / 2), min(102.0, mid + min_span / 2)
    ax.set_ylim(low, high)


def finish(fig: Any, axes: Sequence[Any], path: Path, title: str) -> list[tuple[str, Path]]:
    """Grid, one legend below the axes (every panel's entries, once), title; PNG and PDF, atomically.

    The figure keeps its width (column or page); it grows in height by the legend's rows.
    """
    for ax in axes:
        ax.grid(True, alpha=0.3)
    seen: dict[str, Any] = {}
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(lab, h)
    width, height = fig.get_size_inches()
    if seen:
        longest = max(len(lab) for lab in seen)
        ncol = max(1, min(len(seen), int(width * 72 / (LEGEND_PT * (longest * 0.6 + 4)))))
        rows = math.ceil(len(seen) / ncol)
        fig.legend(
            list(seen.values()), list(seen), loc="outside lower center", ncol=ncol, frameon=False, fontsize=LEGEND_PT
        )
        fig.set_size_inches(width, height + rows * LEGEND_PT * 1.5 / 72 + 0.1)
    fig.suptitle(_wrapped(title, width), fontsize=9)
    files = {}
    for suffix, options in ((".png", {"dpi": 200}), (".pdf", {})):  # through temp-and-rename, like run files
        buf = io.BytesIO()
        fig.savefig(buf, format=suffix[1:], **options)
        files[path.with_suffix(suffix)] = buf.getvalue()
    plt.close(fig)
    atomic_write_files(files)  # the PNG and the PDF as one set
    return [(title, path.with_suffix(".png"))]


def _wrapped(title: str, width: float) -> str:
    """The title broken into lines that fit the figure's width (a one-column figure clips a page-wide title)."""
    per_line = max(20, int(width * 72 / (9 * 0.55)))
    return "\n".join(textwrap.wrap(title, per_line)) or title


def integer_ticks(ax: Any) -> None:
    """Integer ticks on the x axis (epochs)."""
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def shared_labels(fig: Any, axes: Sequence[Any], xlabel: str, ylabel: str) -> None:
    """Axis labels: on the axes of a single panel, once for the figure when panels share their axes."""
    cols = axes[0].get_gridspec().ncols
    for k, ax in enumerate(axes):
        ax.set_xlabel(xlabel)
        if k % cols == 0:
            ax.set_ylabel(ylabel)


def panels(n: int, height: float = 2.6, **kw: Any) -> tuple[Any, list[Any]]:
    """A figure of ``n`` panels: one column wide for one panel, a page wide (up to 3 per row) for more."""
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(COLUMN if n == 1 else PAGE, height * rows), squeeze=False, layout="constrained", **kw
    )
    flat = list(axes.flat)
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def loss_family(results: Results, variant: str) -> str:
    return results.records_of(variant)[0].loss


def facets(results: Results) -> list[tuple[str, list[str]]]:
    """(title, variants) per panel: all in one up to :data:`FACET_ABOVE` variants, else one per loss family."""
    if len(results.variants) <= FACET_ABOVE:
        return [("", list(results.variants))]
    groups: dict[str, list[str]] = defaultdict(list)
    for v in results.variants:
        groups[loss_family(results, v)].append(v)
    ref = results.report_spec.reference
    return [
        (f"loss: {loss}", ([ref] if ref in results.variants and ref not in vs else []) + vs)
        for loss, vs in groups.items()
        if loss != "base" or len(groups) == 1
    ]


def collapsed(results: Results, variant: str) -> bool:
    """Whether the variant's exits collapsed: 0 % or 100 % early at every threshold (all seeds).

    A network without intermediate exits (base) has no exits to collapse: False."""
    recs = results.records_of(variant)
    if not recs[0].exits_at:
        return False
    shares = [t.early_share for r in recs for t in (r.thresholds or []) if t.threshold is not None]
    return bool(shares) and (all(s <= 0.001 for s in shares) or all(s >= 0.999 for s in shares))


def _label(results: Results, variant: str) -> str:
    return f"{variant} (collapsed)" if collapsed(results, variant) else variant


def _facet_style(results: Results, variant: str, title: str) -> dict[str, Any]:
    """A variant's own style; the reference drawn grey in a facet of another family."""
    st = variant_style(results, variant)
    if title and variant == results.report_spec.reference and not title.endswith(loss_family(results, variant)):
        st = {**st, "color": REFERENCE_GREY}
    return st
