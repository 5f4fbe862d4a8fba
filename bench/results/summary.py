"""``summary.csv``: every finished run of a folder as one tidy table (one row per run x threshold), built from the
run records' one flattening (:func:`bench.results.metrics.record_rows`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from bench.results.files import atomic_write_bytes
from bench.results.metrics import record_rows
from bench.results.record import RunRecord
from bench.results.store import ResultStore

SUMMARY_FIRST = [
    "suite",
    "variant",
    "variant_base",
    "loss",
    "exits",
    "dataset",
    "policy",
    "seed",
    "threshold",
    "accuracy",
    "val_accuracy",
    "early_share",
]


def summary_frame(records: Sequence[RunRecord]) -> pd.DataFrame:
    """Finished runs as one tidy DataFrame (one row per run x threshold): ``RunRecord.rows`` stacked."""
    rows = [row for rec in records if rec.ok for row in record_rows(rec)]
    frame = pd.DataFrame(rows)
    if frame.empty:
        return pd.DataFrame(columns=SUMMARY_FIRST)
    rest = [c for c in frame.columns if c not in SUMMARY_FIRST]
    return frame[SUMMARY_FIRST + rest].sort_values(["variant", "seed", "threshold"], kind="stable")


def write_summary(store: ResultStore) -> Path:
    """Write ``summary.csv`` atomically and return its path."""
    frame = summary_frame(store.latest_runs())
    path = store.root / "summary.csv"
    atomic_write_bytes(path, frame.to_csv(index=False).encode())
    return path
