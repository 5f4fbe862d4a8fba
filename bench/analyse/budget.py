"""Budgeted evaluation: per-exit thresholds chosen on validation for a compute budget.

Given a budget B per sample (a fraction of the base network's MACs, MACs, or
energy in the suite's table units), we choose the thresholds t_1..t_{L-1} of a
threshold policy so that the expected cost *on the validation split* is <= B
and validation accuracy is highest; then we report test accuracy and test cost
at those thresholds. Test data is never read while choosing (MSDNet's public
code falls back to the test set when no validation split is given; we never do).

Search:

* L = 2: exact. Sorting the validation confidences of exit 1 in decreasing
  order, every distinct threshold corresponds to "the k most confident samples
  leave early"; cost and accuracy of all k come from cumulative sums, and the
  best feasible k is taken (ties: the cheaper one).
* L > 2: coordinate search. Start from the cheapest operating point (every
  threshold 0: all samples leave at exit 1), then repeatedly optimise one
  threshold at a time over a grid of ``grid`` validation-confidence quantiles
  (plus 0 and 1), keeping the others fixed and the budget satisfied, until a
  full pass improves nothing (at most 10 passes). This is a local search: it
  returns a feasible point at least as good as every single-exit change of it.

A budget below the cheapest operating point (everything at exit 1) is
infeasible: that point is reported with ``feasible = false``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from bench.config.suite import BudgetSpec
from bench.results.record import BudgetPoint, BudgetRecord
from cascade.exits import POLICIES, build_policy, transformed_logits


def cascade_outcome(conf: np.ndarray, correct: np.ndarray, thresholds: Sequence[float]) -> np.ndarray:
    """Exit index of each sample: the first exit l < L-1 with conf[l] > t_l, else the last.

    Args:
        conf: (L-1, N) confidences of the intermediate exits.
        correct: (L, N) whether each exit's prediction is right (only its shape is used here).
        thresholds: L-1 thresholds.
    """
    num_exits, n = correct.shape
    exit_index = np.full(n, num_exits - 1)
    undecided = np.ones(n, dtype=bool)
    for level, t in enumerate(thresholds):
        leave = undecided & (conf[level] > t)
        exit_index[leave] = level
        undecided &= ~leave
    return exit_index


def operating_point(
    conf: np.ndarray, correct: np.ndarray, costs: Sequence[float], thresholds: Sequence[float]
) -> dict[str, Any]:
    """Accuracy, expected cost and exit shares of the cascade at ``thresholds``."""
    idx = cascade_outcome(conf, correct, thresholds)
    n = correct.shape[1]
    shares = np.bincount(idx, minlength=correct.shape[0]) / n
    return {
        "accuracy": float(correct[idx, np.arange(n)].mean()),
        "cost": float(np.dot(shares, costs)),
        "exit_share": shares.tolist(),
    }


def search_two_exits(
    conf: np.ndarray, correct: np.ndarray, costs: Sequence[float], budget: float
) -> tuple[list[float], bool]:
    """Exact best threshold for L = 2 under ``budget`` on the given (validation) data."""
    c1, c2 = conf[0], correct
    n = len(c1)
    order = np.argsort(-c1, kind="stable")
    sorted_conf = c1[order]
    right1 = np.concatenate([[0], np.cumsum(c2[0][order])])  # correct at exit 1 among the top k
    right2_rest = np.concatenate([np.cumsum(c2[1][order][::-1])[::-1], [0]])  # correct at exit 2 among the rest
    k = np.arange(n + 1)
    # k samples can leave only if the k-th and (k+1)-th confidences differ (a threshold separates them)
    valid = np.ones(n + 1, dtype=bool)
    valid[1:n] = sorted_conf[:-1] > sorted_conf[1:]
    valid[0] = True
    cost = (k * costs[0] + (n - k) * costs[1]) / n
    acc = (right1 + right2_rest) / n
    feasible = valid & (cost <= budget + 1e-9 * abs(budget))
    if not feasible.any():
        return [0.0], False  # cheapest point: everything leaves at exit 1
    cand = np.flatnonzero(feasible)
    best = cand[np.lexsort((cost[cand], -acc[cand]))[0]]
    if best == 0:
        return [1.0], True  # nobody leaves early
    if best == n:
        return [0.0], True  # everybody leaves early (conf > 0 always holds)
    return [float(sorted_conf[best])], True  # leave when conf > the (k+1)-th largest confidence


def search_coordinate(
    conf: np.ndarray, correct: np.ndarray, costs: Sequence[float], budget: float, grid: int
) -> tuple[list[float], bool]:
    """Coordinate search over per-exit thresholds (L > 2); see the module docstring."""
    levels = conf.shape[0]
    candidates = [
        np.unique(np.concatenate([[0.0, 1.0], np.quantile(conf[lv], np.linspace(0, 1, grid))])) for lv in range(levels)
    ]
    current = [0.0] * levels
    point = operating_point(conf, correct, costs, current)
    if point["cost"] > budget + 1e-9 * abs(budget):
        return current, False
    for _ in range(10):
        improved = False
        for lv in range(levels):
            for t in candidates[lv]:
                trial = list(current)
                trial[lv] = float(t)
                p = operating_point(conf, correct, costs, trial)
                if p["cost"] <= budget + 1e-9 * abs(budget) and (
                    p["accuracy"] > point["accuracy"] + 1e-12
                    or (abs(p["accuracy"] - point["accuracy"]) <= 1e-12 and p["cost"] < point["cost"] - 1e-12)
                ):
                    current, point, improved = trial, p, True
        if not improved:
            break
    return current, True


def choose_thresholds(
    conf: np.ndarray, correct: np.ndarray, costs: Sequence[float], budget: float, grid: int = 101
) -> tuple[list[float], bool]:
    """Per-exit thresholds maximising accuracy on the given data subject to expected cost <= budget."""
    if conf.shape[0] == 1:
        return search_two_exits(conf, correct, costs, budget)
    return search_coordinate(conf, correct, costs, budget, grid)


def _arrays(policy: Any, logits: Sequence[torch.Tensor], y: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    logits = transformed_logits(logits, policy)  # as the policy judges them (calibrated, ...)
    conf = torch.stack([policy.confidence(z) for z in logits[:-1]]).cpu().numpy()
    correct = torch.stack([z.argmax(1) == y for z in logits]).cpu().numpy()
    return conf.astype(np.float64), correct


def budget_evaluation(
    policy_name: str,
    policy_options: dict[str, Any],
    spec: BudgetSpec,
    val_logits: Sequence[torch.Tensor],
    val_y: torch.Tensor,
    test_logits: Sequence[torch.Tensor],
    test_y: torch.Tensor,
    costs: Sequence[float],
    base_cost: float,
    cost_unit: str,
) -> BudgetRecord:
    """Thresholds chosen on validation for every budget of ``spec``; test accuracy and cost at them.

    Args:
        costs: cumulative cost of each exit in the budget's unit (MACs, or energy for unit "energy").
        base_cost: cost of the base network in the same unit.
        cost_unit: what ``costs`` are in ("MACs" or the energy table's name).
    """
    if not POLICIES.get(policy_name).has_threshold:
        return BudgetRecord(skipped=f"policy {policy_name!r} has no threshold to choose")
    policy = build_policy(policy_name, **policy_options)
    v_conf, v_correct = _arrays(policy, val_logits, val_y)
    t_conf, t_correct = _arrays(policy, test_logits, test_y)
    points = []
    for value in spec.values:
        absolute = value * base_cost if spec.unit == "fraction" else value
        thresholds, feasible = choose_thresholds(v_conf, v_correct, costs, absolute, spec.grid)
        val = operating_point(v_conf, v_correct, costs, thresholds)
        test = operating_point(t_conf, t_correct, costs, thresholds)
        points.append(
            BudgetPoint(
                budget=value,
                budget_absolute=absolute,
                feasible=feasible,
                thresholds=thresholds,
                val_accuracy=val["accuracy"],
                val_cost=val["cost"],
                test_accuracy=test["accuracy"],
                test_cost=test["cost"],
                test_cost_fraction=test["cost"] / base_cost,
                test_exit_share=test["exit_share"],
            )
        )
    return BudgetRecord(
        unit=spec.unit,
        cost_unit=cost_unit,
        base_cost=base_cost,
        exit_costs=list(costs),
        search="exact 1-D" if len(costs) == 2 else f"coordinate search, grid {spec.grid}",
        points=points,
    )
