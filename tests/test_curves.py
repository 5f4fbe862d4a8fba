"""Exact accuracy-vs-early-share curves: hand-computed areas and matched-share accuracies."""

from __future__ import annotations

import numpy as np
import pytest

from bench.analyse.curves import curve_from_outputs, exact_curve, grid_curve, summarise

# 4 samples; early-exit confidence, whether the early exit and the final exit are right
CONF = np.array([0.9, 0.8, 0.8, 0.3])
EARLY = np.array([1, 1, 0, 0])
FINAL = np.array([0, 1, 1, 1])


def test_exact_curve_by_hand() -> None:
    c = exact_curve(CONF, EARLY, FINAL)
    # k = 0: final only 3/4; k = 1: 1 + 3 -> 4/4; k = 3 (the two 0.8s leave together): 2 + 1 -> 3/4; k = 4: 2/4
    assert c.shares.tolist() == [0.0, 0.25, 0.75, 1.0]
    assert c.accuracy.tolist() == [0.75, 1.0, 0.75, 0.5]
    # trapezoids: (0.75 + 1)/2 * 0.25 + (1 + 0.75)/2 * 0.5 + (0.75 + 0.5)/2 * 0.25 = 0.8125
    assert c.area() == pytest.approx(0.8125)
    # [0.5, 1]: acc(0.5) = 0.875; (0.875 + 0.75)/2 * 0.25 + 0.15625 = 0.359375, / 0.5
    assert c.area(0.5, 1.0) == pytest.approx(0.71875)
    assert c.at(0.5) == pytest.approx(0.875) and c.at(0.9) == pytest.approx(0.6) and c.at(0.8) == pytest.approx(0.7)
    with pytest.raises(ValueError, match=r"early-share range \[0.6, 0.2\]"):
        c.area(0.6, 0.2)


def test_grid_curve_equals_the_exact_one_for_two_exits_and_outputs_route() -> None:
    exact = exact_curve(CONF, EARLY, FINAL)
    grid = grid_curve(np.stack([CONF, np.ones(4)], 1), np.stack([EARLY, FINAL], 1).astype(bool))
    assert grid.shares.tolist() == exact.shares.tolist() and grid.accuracy.tolist() == exact.accuracy.tolist()
    y = np.array([3, 3, 3, 3])
    pred = np.where(np.stack([EARLY, FINAL], 1) == 1, 3, 0)
    rec = summarise(curve_from_outputs(np.stack([CONF, np.ones(4)], 1), pred, y))
    assert rec["method"] == "exact" and rec["area"] == pytest.approx(0.8125)
    assert rec["matched"] == {"0.5": pytest.approx(0.875), "0.8": pytest.approx(0.7), "0.9": pytest.approx(0.6)}


def test_three_exits_use_the_grid() -> None:
    conf = np.array([[0.95, 0.99, 1.0], [0.2, 0.97, 1.0], [0.1, 0.2, 1.0]])
    pred = np.array([[1, 1, 1], [0, 1, 1], [0, 0, 1]])
    c = curve_from_outputs(conf, pred, np.array([1, 1, 1]))
    assert c.method == "grid"
    assert c.shares[0] == 0.0 and c.accuracy[0] == 1.0  # nobody early: all final exits right
    assert c.shares[-1] == 1.0 and c.accuracy[-1] == pytest.approx(1 / 3)  # t = 0: all leave at exit 1
    assert c.at(2 / 3) == pytest.approx(1.0)  # t in [0.2, 0.95): samples 1 and 2 leave early, both right


def test_run_record_carries_the_exact_curve_of_its_saved_outputs(tmp_path) -> None:
    from bench.config.load import load_suite
    from bench.config.plan import expand_runs
    from bench.execute.runner import execute_run
    from bench.results.store import ResultStore

    from .scenarios.test_selection_cache_and_phases import SWEEP

    path = tmp_path / "s.toml"
    path.write_text(SWEEP)
    run = next(r for r in expand_runs(load_suite(path)) if r.variant == "sum-p1")
    execute_run(run, tmp_path / "o")
    rec = next(ResultStore(tmp_path / "o").iter_runs())
    saved = np.load(ResultStore(tmp_path / "o").exits_path(rec.key))
    again = summarise(curve_from_outputs(saved["test_maxprob"], saved["test_pred"], saved["test_y"]))
    assert rec.curve is not None and rec.curve["method"] == "exact"
    assert rec.curve["area"] == pytest.approx(again["area"], abs=1e-6)  # float32 saved vs float in the run
    # the exact curve passes through the grid's operating points: t = 0 sends everybody out early
    assert rec.curve["points"] >= 3
    t0 = rec.at(0.0)
    assert t0.early_share == 1.0


def test_accuracy_at_cost_levels_by_hand() -> None:
    """Between two breakpoints the accuracy is linear in cost (a random mix of the two thresholds); levels outside the
    curve are left out; breakpoints sharing a cost give their mean."""
    from bench.analyse.curves import accuracy_at_costs

    cost = np.array([0.2, 0.4, 0.4, 1.0])
    accuracy = np.array([0.5, 0.7, 0.9, 1.0])
    got = accuracy_at_costs(cost, accuracy, levels=(0.1, 0.3, 0.4, 0.7, 1.0, 1.2))
    assert got == pytest.approx({"0.3": 0.65, "0.4": 0.8, "0.7": 0.9, "1": 1.0})
