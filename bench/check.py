"""``bench check``: a CI gate on compute savings and accuracy against a committed baseline.

The baseline (``results/baselines/<suite>.json``) stores, per variant and seed,
accuracy and compute saved (MACs saved vs the base network) at the checked
threshold. A check run computes the same numbers and, per variant and metric,
the per-seed paired differences d = current - baseline (percentage points).

Each row is classified with the suite's ``[check]`` margin m and level alpha:

* **worse** (fails the gate): the drop is larger than the margin with
  confidence, i.e. the one-sided paired t-test of H0: mean(d) >= -m against
  H1: mean(d) < -m rejects at level alpha after Holm correction over all rows
  of the table. Noise alone does not fail the gate.
* **better**: likewise, mean(d) > +m with confidence.
* **unchanged**: the 95 % t-interval of d lies within [-m, +m] (or every d is 0).
* **not significant**: none of the above (too few seeds or too much noise to say).

With a single seed no test is possible: a row is worse when d < -m.
A variant in the baseline but not in the run fails the gate too ("missing").
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console
from scipy import stats as st

from bench import stats
from bench.plan import expand_runs, select_runs
from bench.record import METRICS as ALL_METRICS
from bench.report import rich_table
from bench.results import load_results
from bench.runner import run_suite
from bench.store import atomic_write_bytes, atomic_write_json, code_version, now
from bench.suite import CheckSpec, load_suite

BASELINE_SCHEMA = 1
#: (metric in bench.record.METRICS, the [check] margin that applies to it)
METRICS = (("accuracy", "max_accuracy_drop"), ("saved_vs_base", "max_savings_drop"))


class BaselineError(ValueError):
    """A missing or malformed baseline file."""


def baseline_from_results(out_dir: Path, threshold: float, command: str) -> dict[str, Any]:
    """The baseline document of a results folder."""
    results = load_results(out_dir)
    variants: dict[str, Any] = {}
    for variant in results.variants:
        seeds = {}
        for rec in results.records_of(variant):
            seeds[str(rec.seed)] = {m: ALL_METRICS[m].value_at(rec, threshold) for m, _ in METRICS}
        variants[variant] = {"seeds": seeds}
    return {
        "schema": BASELINE_SCHEMA,
        "suite": results.suite.name if results.suite else out_dir.name,
        "threshold": threshold,
        "created": now(),
        "command": command,
        "code": code_version(),
        "variants": variants,
    }


def read_baseline(path: Path, suite_name: str) -> dict[str, Any]:
    if not path.is_file():
        raise BaselineError(
            f"baseline {path} not found; create it on purpose with: bench check SUITE --baseline {path} --update"
        )
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise BaselineError(f"baseline {path} is not valid JSON ({e}); regenerate it with --update") from None
    if (
        not isinstance(data, dict)
        or data.get("schema") != BASELINE_SCHEMA
        or not isinstance(data.get("variants"), dict)
    ):
        raise BaselineError(
            f"baseline {path}: expected schema {BASELINE_SCHEMA} with a 'variants' table; regenerate it with --update"
        )
    if data.get("suite") != suite_name:
        raise BaselineError(f"baseline {path} is for suite {data.get('suite')!r}, not {suite_name!r}")
    for name, v in data["variants"].items():
        seeds = v.get("seeds") if isinstance(v, dict) else None
        if not isinstance(seeds, dict) or not all(
            isinstance(s, dict) and all(isinstance(s.get(m), (int, float)) for m, _ in METRICS) for s in seeds.values()
        ):
            raise BaselineError(f"baseline {path}: variant {name!r} lacks per-seed {', '.join(m for m, _ in METRICS)}")
    return data


@dataclass
class CheckRow:
    variant: str
    metric: str
    baseline: float  # mean, points
    current: float  # mean, points
    diff: float  # mean of paired differences, points
    low: float
    high: float
    n: int
    margin: float
    p_worse: float  # one-sided, before Holm
    p_better: float
    status: str = ""


def _one_sided(d: np.ndarray, margin: float) -> tuple[float, float]:
    """p-values of H1: mean(d) < -margin and H1: mean(d) > +margin."""
    if len(d) < 2:
        return math.nan, math.nan
    if np.all(d == d[0]):
        return (0.0 if d[0] < -margin else 1.0), (0.0 if d[0] > margin else 1.0)
    worse = float(st.ttest_1samp(d, -margin, alternative="less").pvalue)
    better = float(st.ttest_1samp(d, margin, alternative="greater").pvalue)
    return worse, better


def compare_to_baseline(current: dict[str, Any], baseline: dict[str, Any], spec: CheckSpec) -> list[CheckRow]:
    """Classify every (variant, metric) of the baseline; see the module docstring."""
    rows: list[CheckRow] = []
    for variant, base in baseline["variants"].items():
        cur = current["variants"].get(variant)
        for metric, margin_key in METRICS:
            margin = float(getattr(spec, margin_key))
            b = {s: 100 * v[metric] for s, v in base["seeds"].items()}
            if cur is None:
                rows.append(CheckRow(variant, metric, float(np.mean(list(b.values()))), math.nan, math.nan,
                                     math.nan, math.nan, 0, margin, math.nan, math.nan, "missing"))  # fmt: skip
                continue
            c = {s: 100 * v[metric] for s, v in cur["seeds"].items()}
            shared = sorted(set(b) & set(c))
            d = np.array([c[s] - b[s] for s in shared])
            iv = stats.t_interval(d.tolist())
            pw, pb = _one_sided(d, margin)
            rows.append(CheckRow(variant, metric, float(np.mean([b[s] for s in shared])) if shared else math.nan,
                                 float(np.mean([c[s] for s in shared])) if shared else math.nan,
                                 iv.mean, iv.low, iv.high, len(shared), margin, pw, pb))  # fmt: skip
    adj_worse = stats.holm([r.p_worse for r in rows])
    adj_better = stats.holm([r.p_better for r in rows])
    for r, pw, pb in zip(rows, adj_worse, adj_better):
        if r.status:
            continue
        if r.n == 0:
            r.status = "missing"
        elif r.n == 1:
            r.status = "worse" if r.diff < -r.margin else "better" if r.diff > r.margin else "unchanged"
        elif pw < spec.alpha:
            r.status = "worse"
        elif pb < spec.alpha:
            r.status = "better"
        elif (r.diff == 0 and r.low == r.high) or (-r.margin <= r.low and r.high <= r.margin):
            r.status = "unchanged"
        else:
            r.status = "not significant"
        r.p_worse, r.p_better = pw, pb
    return rows


def rows_frame(rows: Sequence[CheckRow]) -> pd.DataFrame:
    def f(x: float, fmt: str = "{:.2f}") -> str:
        return "n/a" if x is None or math.isnan(x) else fmt.format(x)

    return pd.DataFrame(
        {
            "variant": [r.variant for r in rows],
            "metric": [r.metric for r in rows],
            "baseline (%)": [f(r.baseline) for r in rows],
            "current (%)": [f(r.current) for r in rows],
            "Δ (points)": [f(r.diff, "{:+.2f}") for r in rows],
            "95% CI": ["n/a" if math.isnan(r.low) else f"[{r.low:+.2f}, {r.high:+.2f}]" for r in rows],
            "n": [r.n for r in rows],
            "margin": [f"±{r.margin:g}" for r in rows],
            "p(worse) Holm": [f(r.p_worse, "{:.3g}") for r in rows],
            "status": [r.status.upper() if r.status in ("worse", "missing") else r.status for r in rows],
        }
    )


@dataclass
class CheckResult:
    passed: bool
    rows: list[CheckRow]
    markdown: str
    updated: bool = False


def run_check(
    suite_path: str | Path,
    *,
    baseline: str | Path,
    out_dir: str | Path | None = None,
    overrides: Sequence[str] = (),
    imports: Sequence[str] = (),
    update: bool = False,
    jobs: int | None = None,
    markdown: str | Path | None = None,
    console: Console | None = None,
    progress: bool = True,
    only: Sequence[str] = (),
    checkpoint_cache: str | Path | bool | None = True,
) -> CheckResult:
    """Run (or reuse) the suite, then compare it with the baseline; ``update`` rewrites the baseline.

    ``only`` runs and checks only the variants those names or globs select (the baseline's other
    variants are not "missing"; ``--update`` with ``only`` is refused, as it would drop them).
    """
    console = console or Console()
    suite = load_suite(suite_path, overrides, imports)
    threshold = suite.check.threshold if suite.check.threshold is not None else suite.evaluation.headline_threshold
    base_path = Path(baseline)
    if update and only:
        raise BaselineError("--update rewrites the whole baseline; run it without --only")
    if not update:
        base = read_baseline(base_path, suite.name)  # fail before spending time on runs
        if only:
            chosen = select_runs(expand_runs(suite, overrides), only)
            keep = {r.variant for r in chosen}
            base = {**base, "variants": {k: v for k, v in base["variants"].items() if k in keep}}
    summary = run_suite(suite_path, out_dir=out_dir, overrides=overrides, jobs=jobs, progress=progress,
                        log=console.print, imports=imports, only=only,
                        checkpoint_cache=checkpoint_cache)  # fmt: skip
    command = " ".join(["bench check", str(suite_path), "--baseline", str(base_path), "--update",
                        *(f"--set {o}" for o in overrides)])  # fmt: skip
    current = baseline_from_results(summary.out_dir, threshold, command)
    if only:
        current["variants"] = {k: v for k, v in current["variants"].items() if k in base["variants"]}
    if summary.failed:
        console.print(f"[red]{len(summary.failed)} run(s) failed[/]; the check uses the runs that finished")
    if update:
        atomic_write_json(base_path, current)
        console.print(f"baseline written: {base_path} ({len(current['variants'])} variants, threshold {threshold})")
        return CheckResult(True, [], "", updated=True)
    rows = compare_to_baseline(current, base, suite.check)
    frame = rows_frame(rows)
    passed = not any(r.status in ("worse", "missing") for r in rows) and not summary.failed
    verdict = "PASSED" if passed else "FAILED"
    header = (
        f"### bench check {suite.name}: {verdict}\n\n"
        f"Threshold {threshold} (baseline: {base['threshold']}); "
        f"margins: accuracy {suite.check.max_accuracy_drop} points, "
        f"savings {suite.check.max_savings_drop} points; one-sided paired t-tests over seeds, Holm-corrected, "
        f"alpha {suite.check.alpha}. Baseline made by `{base.get('command', '?')}`.\n\n"
    )
    md = header + frame.to_markdown(index=False) + "\n"
    md_path = Path(markdown) if markdown else summary.out_dir / "check.md"
    atomic_write_bytes(md_path, md.encode())
    console.print(rich_table(frame, f"bench check {suite.name} vs {base_path}: {verdict}"))
    console.print(f"{'[green]' if passed else '[red]'}{verdict}[/]: table written to {md_path}")
    return CheckResult(passed, rows, md)
