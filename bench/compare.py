"""``bench compare A B``: two results folders, variant by variant (e.g. before and after a change)."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
from rich.console import Console
from scipy import stats as st

from bench import stats
from bench.report import fmt_p, markdown, rich_table
from bench.results import Results, load_results
from bench.store import StoreError, atomic_write_bytes

#: Metrics compared (names in bench.record.METRICS); latency at every batch size both folders timed.
COMPARED = ("accuracy", "early_share", "macs", "energy", "saved_vs_base")


def compare_frame(a: Results, b: Results) -> pd.DataFrame:
    """Variants present in both folders: means in A and B, ratio B/A, paired (or Welch) test, Holm."""
    rows = []
    metrics = [*COMPARED, *(f"latency_b{x}" for x in a.latency_batches() if x in b.latency_batches())]
    for variant in [v for v in a.variants if v in b.variants]:
        for metric in metrics:
            xa = a.by_seed(variant, metric, a.headline)
            xb = b.by_seed(variant, metric, b.headline)
            shared = sorted(set(xa) & set(xb))
            if len(shared) >= 2:
                test = stats.paired_test(xb, xa)
                p, kind = test.p_value, "paired"
            else:
                va, vb = list(xa.values()), list(xb.values())
                p = float(st.ttest_ind(vb, va, equal_var=False).pvalue) if min(len(va), len(vb)) >= 2 else math.nan
                kind = "welch"
            ma, mb = stats.t_interval(list(xa.values())).mean, stats.t_interval(list(xb.values())).mean
            rows.append(
                {
                    "variant": variant,
                    "metric": metric,
                    "A": ma,
                    "B": mb,
                    "ratio B/A": mb / ma if ma else math.nan,
                    "test": kind,
                    "p": p,
                }
            )
    frame = pd.DataFrame(rows, columns=["variant", "metric", "A", "B", "ratio B/A", "test", "p"])
    frame["p_holm"] = stats.holm(frame["p"].tolist()) if len(frame) else []
    frame["significant"] = frame["p_holm"] < 0.05
    return frame


def compare(a_dir: Path, b_dir: Path, *, console: Console, out: str | None = None) -> pd.DataFrame:
    """``bench compare A B``: print (and optionally write) the comparison table."""
    a, b = load_results(a_dir), load_results(b_dir)
    frame = compare_frame(a, b)
    if frame.empty:
        raise StoreError(f"{a_dir} and {b_dir} have no variant in common")
    display = frame.copy()
    for col in ("A", "B", "ratio B/A"):
        display[col] = [f"{v:.4g}" for v in frame[col]]
    display["p"] = [fmt_p(p) for p in frame["p"]]
    display["p_holm"] = [fmt_p(p) for p in frame["p_holm"]]
    display["significant"] = ["*" if s else "" for s in frame["significant"]]
    console.print(rich_table(display, f"A = {a_dir}  vs  B = {b_dir} (threshold {a.headline})"))
    if out:
        atomic_write_bytes(Path(out), (markdown(display) + "\n").encode())
    return frame
