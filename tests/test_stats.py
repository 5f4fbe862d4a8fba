"""Statistics against scipy on fixed numbers and Holm against a hand-worked example."""

from __future__ import annotations

import math

import pytest
from scipy import stats as st

from bench.analyse.stats import few_seeds_warning, holm, paired_test, t_interval

X = [0.912, 0.934, 0.925, 0.941, 0.919]
Y = [0.901, 0.930, 0.915, 0.925, 0.917]


def test_t_interval_against_scipy() -> None:
    iv = t_interval(X)
    lo, hi = st.t.interval(0.95, 4, loc=sum(X) / 5, scale=st.sem(X))
    assert iv.mean == pytest.approx(0.9262) and iv.n == 5
    assert (iv.low, iv.high) == pytest.approx((lo, hi))
    # by hand: t_{0.975, 4} = 2.776445
    assert iv.half_width == pytest.approx(2.776445 * st.sem(X), rel=1e-6)


def test_t_interval_edge_cases() -> None:
    assert math.isnan(t_interval([0.5]).low) and t_interval([0.5]).mean == 0.5
    same = t_interval([0.3, 0.3, 0.3])
    assert (same.low, same.high) == (0.3, 0.3)
    assert t_interval([]).n == 0


def test_paired_test_against_scipy() -> None:
    a = dict(enumerate(X))
    b = dict(enumerate(Y))
    res = paired_test(a, b)
    assert res.p_value == pytest.approx(st.ttest_rel(X, Y).pvalue)
    assert res.diff.mean == pytest.approx(sum(x - y for x, y in zip(X, Y)) / 5)
    assert res.n == 5
    # pairing follows the seeds, not the order
    shuffled = {4 - k: v for k, v in a.items()}
    assert paired_test(shuffled, {4 - k: v for k, v in b.items()}).p_value == pytest.approx(res.p_value)
    # only shared seeds count
    assert paired_test({0: 1.0, 1: 2.0, 9: 5.0}, {0: 0.5, 1: 1.0}).n == 2


def test_paired_test_degenerate_differences() -> None:
    assert paired_test({0: 1.0, 1: 2.0}, {0: 1.0, 1: 2.0}).p_value == 1.0
    assert paired_test({0: 2.0, 1: 3.0}, {0: 1.0, 1: 2.0}).p_value == 0.0
    same = paired_test({0: 2.0, 1: 3.0, 2: 4.5}, {0: 1.0, 1: 2.0, 2: 3.5})  # identical differences of +1
    assert same.note == "exact: all 3 paired differences are equal (the difference is exactly +1); no t-test"
    assert same.diff.mean == 1.0 and same.diff.low == same.diff.high == 1.0
    assert paired_test({0: 1.0, 1: 2.0}, {0: 1.0, 1: 2.0}).note.endswith("(no difference); no t-test")
    assert paired_test({0: 1.0, 1: 2.5}, {0: 0.0, 1: 2.0}).note == ""  # a real t-test
    assert math.isnan(paired_test({0: 1.0}, {0: 2.0}).p_value)


def test_holm_hand_worked() -> None:
    # sorted: 0.005 x 4 = 0.02; 0.01 x 3 = 0.03; 0.03 x 2 = 0.06; 0.04 x 1 = 0.04 -> max(0.06, 0.04) = 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    adj = holm([0.01, math.nan, 0.02])  # NaN does not count in m
    assert adj[0] == pytest.approx(0.02) and math.isnan(adj[1]) and adj[2] == pytest.approx(0.02)


def test_few_seeds_warning() -> None:
    assert "n = 3" in (few_seeds_warning(3) or "")
    assert few_seeds_warning(5) is None
