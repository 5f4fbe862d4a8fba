"""Statistics across seeds: t-intervals, paired t-tests, Holm correction.

Runs are paired by seed: variant A on seed s and variant B on seed s share the
data split and the initial RNG state, so A - B is computed per seed and tested
with a paired t-test (``scipy.stats.ttest_rel``). The p-values of all
comparisons in one table are adjusted together with Holm's step-down method.
With fewer than 5 seeds the intervals are wide and the tests weak; results
carry a warning. Deterministic quantities (MACs of an architecture,
parameters) need no statistics and are reported exactly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as _st

MIN_SEEDS = 5  # below this, a warning accompanies every interval and test


@dataclass(frozen=True)
class Interval:
    """Mean and two-sided t-interval of a sample."""

    mean: float
    low: float
    high: float
    n: int
    std: float

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


def t_interval(values: Sequence[float], confidence: float = 0.95) -> Interval:
    """Mean and ``confidence`` t-interval; NaN bounds when n < 2; exact when the values are equal."""
    x = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    n = len(x)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0, math.nan)
    mean = float(x.mean())
    if n < 2:
        return Interval(mean, math.nan, math.nan, 1, math.nan)
    std = float(x.std(ddof=1))
    if std == 0.0:
        return Interval(mean, mean, mean, n, 0.0)
    low, high = _st.t.interval(confidence, n - 1, loc=mean, scale=std / math.sqrt(n))
    return Interval(mean, float(low), float(high), n, std)


@dataclass(frozen=True)
class PairedTest:
    """Paired comparison of ``a`` against a reference ``b`` (a - b per seed)."""

    diff: Interval  # mean difference and its t-interval
    p_value: float  # two-sided paired t-test; NaN when undefined
    n: int
    seeds: tuple[int, ...]  # the seeds present in both
    note: str = ""  # why p is what it is when no t-test was possible (equal differences)

    @property
    def statistic_defined(self) -> bool:
        return not math.isnan(self.p_value)


def paired_test(a: dict[int, float], b: dict[int, float], confidence: float = 0.95) -> PairedTest:
    """Paired t-test of a - b over the seeds both have.

    Differences that are exactly equal across seeds (two identical variants, or deterministic
    quantities) have no spread, so no t-test exists: the answer is exact. All zero gives p = 1,
    all the same non-zero value d gives p = 0; either way ``note`` says so, so that a table can
    show "exact" instead of presenting 0 as a test result.
    """
    seeds = tuple(sorted(set(a) & set(b)))
    xa = np.array([a[s] for s in seeds], dtype=float)
    xb = np.array([b[s] for s in seeds], dtype=float)
    d = xa - xb
    interval = t_interval(d.tolist(), confidence)
    if len(seeds) < 2:
        p = math.nan
    elif np.all(d == d[0]):
        p = 1.0 if d[0] == 0 else 0.0
        what = "no difference" if d[0] == 0 else f"the difference is exactly {d[0]:+.6g}"
        return PairedTest(
            interval, p, len(seeds), seeds, f"exact: all {len(seeds)} paired differences are equal ({what}); no t-test"
        )
    else:
        p = float(_st.ttest_rel(xa, xb).pvalue)
    return PairedTest(interval, p, len(seeds), seeds)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm step-down adjusted p-values; NaN entries stay NaN and do not count in m."""
    idx = [i for i, p in enumerate(p_values) if not math.isnan(p)]
    m = len(idx)
    order = sorted(idx, key=lambda i: p_values[i])
    adjusted = [math.nan] * len(p_values)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def few_seeds_warning(n: int) -> str | None:
    if n < MIN_SEEDS:
        return f"n = {n} seeds (< {MIN_SEEDS}): intervals are wide and tests have little power"
    return None
