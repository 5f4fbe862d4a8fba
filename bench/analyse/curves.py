"""Exact accuracy against early-exit share, from per-sample exit confidences (issue 16).

A threshold sweep on a 0.1 grid samples the curve of cascade accuracy against the share of samples
that leave early at 11 points; with confident exits most of the share axis lies between t = 0.9
and t = 1.0, where the grid draws one straight line. Here the curve is exact:

* **two exits** (one early exit, the max-prob policy: leave when the exit's confidence > t):
  sort the samples by the early exit's confidence; every distinct confidence is a breakpoint.
  At breakpoint k (the k most confident leave early, ties together) the accuracy is
  (correct early among the k + correct final among the rest) / N, at early share k / N.
* **more exits**: the curve is traced on a fine grid of thresholds (the same t at every exit),
  :data:`GRID` points, and its points are sorted by early share.

From the curve: the **area** over a stated early-share range [lo, hi], i.e. the mean accuracy
over early shares in that range (trapezoids between the curve's points, linear interpolation at
the ends); and the **accuracy at matched early shares** (default 50 / 80 / 90 % early, linear
interpolation between the curve's points), the more readable comparison of two losses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

GRID = 1001  # thresholds of the fine grid for three or more exits
MATCHED_SHARES = (0.5, 0.8, 0.9)  # early shares at which accuracies are compared
AREA_RANGE = (0.0, 1.0)  # the early-share range of the reported area


@dataclass(frozen=True)
class Curve:
    """Accuracy against early share: points sorted by share, from 0 (nobody early) to 1 (everybody)."""

    shares: np.ndarray
    accuracy: np.ndarray
    method: str  # "exact" or "grid"

    def area(self, lo: float = AREA_RANGE[0], hi: float = AREA_RANGE[1]) -> float:
        """Mean accuracy over early shares in [lo, hi] (the area divided by hi - lo)."""
        if not 0.0 <= lo < hi <= 1.0:
            raise ValueError(f"early-share range [{lo}, {hi}] must satisfy 0 <= lo < hi <= 1")
        inside = (self.shares > lo) & (self.shares < hi)
        xs = np.concatenate([[lo], self.shares[inside], [hi]])
        ys = np.concatenate([[self.at(lo)], self.accuracy[inside], [self.at(hi)]])
        return float(np.sum((xs[1:] - xs[:-1]) * (ys[1:] + ys[:-1]) / 2) / (hi - lo))

    def at(self, share: float) -> float:
        """Accuracy at early share ``share`` (linear between the curve's points)."""
        return float(np.interp(share, self.shares, self.accuracy))


def exact_curve(confidence: np.ndarray, early_correct: np.ndarray, final_correct: np.ndarray) -> Curve:
    """The exact curve of a two-exit cascade from per-sample early-exit confidence and correctness."""
    conf = np.asarray(confidence, dtype=np.float64)
    n = len(conf)
    if n == 0:
        raise ValueError("no samples")
    order = np.argsort(-conf, kind="stable")
    c_sorted = conf[order]
    early = np.asarray(early_correct, dtype=np.float64)[order]
    final = np.asarray(final_correct, dtype=np.float64)[order]
    # k early = the k most confident; a breakpoint only where the next confidence differs (ties leave together)
    ends = np.flatnonzero(np.r_[c_sorted[1:] != c_sorted[:-1], True]) + 1
    k = np.r_[0, ends]
    cum_early = np.r_[0.0, np.cumsum(early)]
    cum_final = np.r_[0.0, np.cumsum(final)]
    acc = (cum_early[k] + (cum_final[-1] - cum_final[k])) / n
    return Curve(k / n, acc, "exact")


def grid_curve(confidences: np.ndarray, correct: np.ndarray, grid: int = GRID) -> Curve:
    """L >= 2 exits: (N, L) confidences and correctness; the same threshold at every early exit."""
    conf = np.asarray(confidences, dtype=np.float64)
    corr = np.asarray(correct, dtype=np.float64)
    n, exits = conf.shape
    points = []
    for t in np.linspace(0.0, 1.0, grid):
        leave = conf[:, :-1] > t
        first = np.where(leave.any(axis=1), leave.argmax(axis=1), exits - 1)
        share = float(np.mean(first < exits - 1))
        points.append((share, float(corr[np.arange(n), first].mean())))
    points.append((0.0, float(corr[:, -1].mean())))  # nobody early: the final exit (t above every confidence)
    points.sort()
    shares = np.array([p[0] for p in points])
    accs = np.array([p[1] for p in points])
    # one accuracy per share (the mean where several thresholds reach the same share)
    uniq, inv = np.unique(shares, return_inverse=True)
    mean_acc = np.bincount(inv, weights=accs) / np.bincount(inv)
    return Curve(uniq, mean_acc, "grid")


def curve_from_outputs(maxprob: np.ndarray, pred: np.ndarray, y: np.ndarray) -> Curve:
    """The curve from saved exit outputs ((N, L) max probabilities and predictions, labels (N,))."""
    correct = np.asarray(pred) == np.asarray(y)[:, None]
    if maxprob.shape[1] < 2:
        raise ValueError("a curve needs at least one early exit")
    if maxprob.shape[1] == 2:
        return exact_curve(maxprob[:, 0], correct[:, 0], correct[:, 1])
    return grid_curve(maxprob, correct)


def summarise(curve: Curve, shares: Sequence[float] = MATCHED_SHARES) -> dict[str, object]:
    """The record of a curve: method, area over :data:`AREA_RANGE`, accuracy at matched early shares."""
    return {
        "method": curve.method,
        "points": len(curve.shares),
        "area_range": list(AREA_RANGE),
        "area": curve.area(*AREA_RANGE),
        "matched": {f"{s:g}": curve.at(s) for s in shares},
    }


def exact_cost_curve(
    confidence: np.ndarray, correct: np.ndarray, costs: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    """Exact accuracy against expected cost of a threshold policy (one t at every exit), any number of exits.

    Args:
        confidence: (N, L - 1) the policy's confidence at each intermediate exit (calibrated, ensembled, ...).
        correct: (N, L) whether each exit's prediction (as the policy predicts there) is right.
        costs: (L,) cumulative cost of each exit.

    Sample i leaves at the first exit l with confidence > t, i.e. at the first l whose prefix maximum
    m_il = max_{j <= l} conf_ij exceeds t. Sweeping t down from 1, sample i moves to exit l when t passes
    below m_il; every distinct m is a breakpoint. Returns (cost, accuracy) per breakpoint, from t = 1
    (every sample at the last exit) to t = 0, sorted by cost.
    """
    conf = np.asarray(confidence, dtype=np.float64)
    corr = np.asarray(correct, dtype=np.float64)
    cost = np.asarray(costs, dtype=np.float64)
    n, early = conf.shape
    prefix = np.maximum.accumulate(conf, axis=1)
    values = prefix.ravel()
    sample = np.repeat(np.arange(n), early)
    level = np.tile(np.arange(early), n)
    order = np.lexsort((level, -values))  # by value, descending
    current = np.full(n, early)  # everybody at the last exit (t >= every confidence)
    acc_sum, cost_sum = corr[np.arange(n), current].sum(), cost[-1] * n
    points = [(cost_sum / n, acc_sum / n)]
    v_sorted = values[order]
    for pos, k in enumerate(order):
        i, lv = sample[k], level[k]
        if lv < current[i]:
            acc_sum += corr[i, lv] - corr[i, current[i]]
            cost_sum += cost[lv] - cost[current[i]]
            current[i] = lv
        if pos + 1 == len(order) or v_sorted[pos + 1] != v_sorted[pos]:  # the end of a group of equal values
            points.append((cost_sum / n, acc_sum / n))
    pts = np.array(points)
    by_cost = np.argsort(pts[:, 0], kind="stable")
    return pts[by_cost, 0], pts[by_cost, 1]


#: Cost levels (expected MACs / base MACs) at which a run records its exact curve's accuracy: 1 % steps.
COST_LEVELS = tuple(round(0.01 * i, 2) for i in range(1, 151))


def accuracy_at_costs(
    cost: np.ndarray, accuracy: np.ndarray, levels: Sequence[float] = COST_LEVELS
) -> dict[str, float]:
    """The curve's accuracy at each cost level it covers (``"0.5"`` -> accuracy), linear between its breakpoints:
    what a policy mixing the two neighbouring thresholds at random achieves at exactly that expected cost. Where
    several breakpoints share a cost, their mean accuracy."""
    uniq, inv = np.unique(np.asarray(cost, dtype=np.float64), return_inverse=True)
    acc = np.bincount(inv, weights=np.asarray(accuracy, dtype=np.float64)) / np.bincount(inv)
    return {f"{c:g}": float(np.interp(c, uniq, acc)) for c in levels if uniq[0] <= c <= uniq[-1]}


def cost_area(cost: np.ndarray, accuracy: np.ndarray) -> float:
    """Mean accuracy over the cost range the curve covers (trapezoids over cost, divided by its width)."""
    lo, hi = float(cost[0]), float(cost[-1])
    if hi <= lo:
        return float(accuracy.mean())
    return float(np.sum((cost[1:] - cost[:-1]) * (accuracy[1:] + accuracy[:-1]) / 2) / (hi - lo))
