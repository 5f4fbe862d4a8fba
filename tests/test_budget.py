"""Budgeted threshold selection: validation only, budget respected, exact for L = 2, monotone."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from bench.analyse.budget import cascade_outcome, choose_thresholds, operating_point, search_two_exits


def synthetic(n: int, levels: int, seed: int, better_later: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Confidences of the intermediate exits and correctness of every exit.

    Exit l is right with probability rising with l (when ``better_later``) and, within an
    exit, more often when it is confident, as trained early-exit networks are.
    """
    rng = np.random.default_rng(seed)
    conf = rng.uniform(0.1, 1.0, size=(levels - 1, n))
    base_acc = np.linspace(0.55, 0.95, levels) if better_later else np.full(levels, 0.8)
    correct = np.empty((levels, n), dtype=bool)
    for lv in range(levels):
        p = base_acc[lv] if lv == levels - 1 else np.clip(base_acc[lv] + 0.4 * (conf[lv] - 0.55), 0, 1)
        correct[lv] = rng.uniform(size=n) < p
    return conf, correct


COSTS2 = [1.0, 4.0]
COSTS3 = [1.0, 2.5, 4.0]


def exhaustive_two_exits(conf: np.ndarray, correct: np.ndarray, costs, budget: float):
    """Independent reference: try every distinct threshold by direct simulation."""
    best = None
    for t in np.unique(np.concatenate([[0.0, 1.0], conf[0]])):
        p = operating_point(conf, correct, costs, [float(t)])
        if p["cost"] <= budget and (
            best is None or (p["accuracy"], -p["cost"]) > (best[1]["accuracy"], -best[1]["cost"])
        ):
            best = (float(t), p)
    return best


@pytest.mark.parametrize("budget", [1.5, 2.0, 2.6, 3.3, 4.0])
def test_two_exit_search_equals_exhaustive_sweep(budget: float) -> None:
    conf, correct = synthetic(400, 2, seed=3)
    (t,), feasible = search_two_exits(conf, correct, COSTS2, budget)
    ours = operating_point(conf, correct, COSTS2, [t])
    ref_t, ref = exhaustive_two_exits(conf, correct, COSTS2, budget)
    assert feasible
    assert ours["accuracy"] == pytest.approx(ref["accuracy"]) and ours["cost"] == pytest.approx(ref["cost"])
    assert np.array_equal(cascade_outcome(conf, correct, [t]), cascade_outcome(conf, correct, [ref_t]))


def test_ties_in_confidence_are_respected() -> None:
    conf = np.array([[0.9, 0.9, 0.9, 0.2]])
    correct = np.array([[True, True, False, False], [True, True, True, True]])
    (t,), _ = search_two_exits(conf, correct, COSTS2, budget=2.5)
    p = operating_point(conf, correct, COSTS2, [t])
    assert p["cost"] <= 2.5  # the three tied samples leave together or not at all
    assert p["exit_share"][0] in (0.0, 0.75, 1.0)


@pytest.mark.parametrize("levels, costs", [(2, COSTS2), (3, COSTS3)])
@pytest.mark.parametrize("budget", [1.2, 2.0, 3.0])
def test_operating_point_respects_the_budget_on_validation(levels: int, costs, budget: float) -> None:
    conf, correct = synthetic(500, levels, seed=5)
    thresholds, feasible = choose_thresholds(conf, correct, costs, budget, grid=41)
    assert feasible
    assert operating_point(conf, correct, costs, thresholds)["cost"] <= budget + 1e-9


def test_infeasible_budget_reports_the_cheapest_point() -> None:
    conf, correct = synthetic(100, 3, seed=1)
    thresholds, feasible = choose_thresholds(conf, correct, COSTS3, 0.5)
    assert not feasible and thresholds == [0.0, 0.0]


@pytest.mark.parametrize("levels, costs", [(2, COSTS2), (3, COSTS3)])
def test_selection_never_reads_test_data(levels: int, costs) -> None:
    """Thresholds depend only on validation: shuffled test labels or test outputs change nothing."""
    import torch

    from bench.analyse.budget import budget_evaluation
    from bench.config.suite import BudgetSpec

    g = torch.Generator().manual_seed(0)
    val_logits = [torch.randn(300, 10, generator=g) * (1 + lv) for lv in range(levels)]
    val_y = torch.randint(0, 10, (300,), generator=g)
    test_logits = [torch.randn(200, 10, generator=g) * (1 + lv) for lv in range(levels)]
    test_y = torch.randint(0, 10, (200,), generator=g)
    spec = BudgetSpec(unit="fraction", values=(0.4, 0.7, 1.0), grid=21)

    def chosen(tl, ty):
        res = budget_evaluation("max-prob", {}, spec, val_logits, val_y, tl, ty, costs, costs[-1] * 0.95, "MACs")
        return [p.thresholds for p in res.points], res

    reference, res = chosen(test_logits, test_y)
    perm = torch.randperm(200, generator=g)
    assert chosen(test_logits, test_y[perm])[0] == reference  # shuffled test labels
    assert chosen([z[perm] for z in test_logits], test_y)[0] == reference  # shuffled test outputs
    assert chosen([torch.randn(50, 10) for _ in range(levels)], torch.zeros(50, dtype=torch.long))[0] == reference
    assert all(p.val_cost <= p.budget_absolute + 1e-9 for p in res.points if p.feasible)


@pytest.mark.parametrize("levels, costs", [(2, COSTS2), (3, COSTS3)])
def test_budget_curve_is_monotone_when_later_exits_are_better(levels: int, costs) -> None:
    conf, correct = synthetic(2000, levels, seed=11)
    budgets = np.linspace(costs[0], costs[-1], 12)
    accs = [
        operating_point(conf, correct, costs, choose_thresholds(conf, correct, costs, b, grid=41)[0])["accuracy"]
        for b in budgets
    ]
    assert all(b >= a - 1e-12 for a, b in itertools.pairwise(accs)), accs
    assert accs[-1] > accs[0] + 0.1  # more compute buys accuracy here
