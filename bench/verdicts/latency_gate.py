"""The optional latency gate of ``bench check`` (``[check] max_latency_ratio``, off by default; asv-style): per variant
the ratio current / baseline of the dynamic forward's latency at ``latency_batch``; "slower" (fails) when the
geometric-mean ratio over seeds exceeds the limit *and* its 95 % interval lies above 1, so that timing noise alone
does not fail the gate. Latency baselines only mean something on the same machine.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from bench.analyse import stats
from bench.config.suite import CheckSpec
from bench.results.metrics import MetricKey


@dataclass
class LatencyRow:
    variant: str
    batch: int
    baseline_us: float  # mean over seeds, µs per sample
    current_us: float
    ratio: float  # geometric mean of the per-seed ratios current / baseline
    low: float  # 95 % interval of that ratio
    high: float
    n: int
    limit: float
    status: str
    runtime: str = "eager"

    @property
    def fails(self) -> bool:
        return self.status == "slower"


def latency_rows(current: dict[str, Any], baseline: dict[str, Any], spec: CheckSpec) -> list[LatencyRow]:
    """The latency gate (``[check] max_latency_ratio``); empty when it is off or nothing was timed."""
    if spec.max_latency_ratio is None:
        return []
    rows = []
    for variant, base in baseline["variants"].items():
        cur = current["variants"].get(variant)
        if cur is None:
            continue
        fields = sorted({k for v in [*base["seeds"].values(), *cur["seeds"].values()] for k in v if _timed(k)})
        for key in fields:  # latency_s_per_sample (eager), latency_<runtime>_s_per_sample
            row = _latency_row(
                variant,
                MetricKey.parse(key).runtime,
                {s: v.get(key, {}) for s, v in base["seeds"].items()},
                {s: v.get(key, {}) for s, v in cur["seeds"].items()},
                spec,
            )
            if row is not None:
                rows.append(row)
    return rows


def _timed(field: str) -> bool:
    """Whether a baseline field holds a runtime's latency per batch size (:meth:`MetricKey.baseline_field`)."""
    try:
        key = MetricKey.parse(field)
    except KeyError:
        return False
    return key.metric == "latency" and key.batch is None


def _latency_row(
    variant: str, runtime: str, b_lat: dict[str, dict[str, float]], c_lat: dict[str, dict[str, float]], spec: CheckSpec
) -> LatencyRow | None:
    """One variant and runtime: current / baseline at the gate's batch, geometric mean over shared seeds."""
    limit = spec.max_latency_ratio
    assert limit is not None
    batches = sorted({int(k) for v in [*b_lat.values(), *c_lat.values()] for k in v})
    batch = spec.latency_batch if spec.latency_batch is not None else (batches[-1] if batches else None)
    if batch is None:
        return None
    shared = [s for s in sorted(set(b_lat) & set(c_lat)) if str(batch) in b_lat[s] and str(batch) in c_lat[s]]
    if not shared:
        return None
    logs = np.log([c_lat[s][str(batch)] / b_lat[s][str(batch)] for s in shared])
    iv = stats.t_interval(logs.tolist())
    ratio = float(np.exp(iv.mean))
    low, high = (math.exp(iv.low), math.exp(iv.high)) if len(shared) >= 2 else (math.nan, math.nan)
    beyond_noise = low > 1 if len(shared) >= 2 else True
    status = "slower" if ratio > limit and beyond_noise else "faster" if ratio < 1 else "ok"
    return LatencyRow(
        variant,
        batch,
        1e6 * float(np.mean([b_lat[s][str(batch)] for s in shared])),
        1e6 * float(np.mean([c_lat[s][str(batch)] for s in shared])),
        ratio,
        low,
        high,
        len(shared),
        limit,
        status,
        runtime,
    )


def latency_frame(rows: Sequence[LatencyRow]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "variant": [r.variant for r in rows],
            "runtime": [r.runtime for r in rows],
            "batch": [r.batch for r in rows],
            "baseline (µs/sample)": [f"{r.baseline_us:.1f}" for r in rows],
            "current (µs/sample)": [f"{r.current_us:.1f}" for r in rows],
            "ratio": [f"{r.ratio:.3f}" for r in rows],
            "95% CI": ["n/a" if math.isnan(r.low) else f"[{r.low:.3f}, {r.high:.3f}]" for r in rows],
            "n": [r.n for r in rows],
            "limit": [f"{r.limit:g}" for r in rows],
            "status": [r.status.upper() if r.fails else r.status for r in rows],
        }
    )


#: The range of the checked metrics, in points (accuracy and savings are percentages).
