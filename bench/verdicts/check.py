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

Two guards against a weak test (few seeds, noisy seeds):

* **hard limit**: an accuracy drop larger than ``[check] hard_accuracy_drop`` points (default 5)
  fails, significant or not ("worse: hard limit").
* **detectable drop**: each row states the smallest true drop the test finds with 80 % power at its
  n and alpha, from the seeds' spread s of d: ``m + (t(1 - alpha/k, n-1) + t(0.8, n-1)) * s / sqrt(n)``
  with k the number of tested rows (Bonferroni, the bound of Holm's first step). A drop smaller than
  that can pass unnoticed; more seeds shrink it.

Optional latency gate (``[check] max_latency_ratio``, off by default; asv-style): per variant the
ratio current / baseline of the dynamic forward's latency at ``latency_batch``; "slower" (fails) when
the geometric-mean ratio over seeds exceeds the limit *and* its 95 % interval lies above 1, so that
timing noise alone does not fail the gate. Latency baselines only mean something on the same machine.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console
from rich.markup import escape
from scipy import stats as st

from bench.analyse import stats
from bench.config.load import load_suite
from bench.config.plan import expand_runs, select_runs
from bench.config.suite import CheckSpec, Suite
from bench.execute.console import make_console
from bench.execute.options import RunOptions
from bench.execute.runner import run_suite
from bench.render.format import rich_table
from bench.results.files import atomic_write_bytes, atomic_write_json
from bench.verdicts import claimgate
from bench.verdicts.baseline import GATED, BaselineError, baseline_from_results, read_baseline
from bench.verdicts.engine import read_claims
from bench.verdicts.latency_gate import LatencyRow, latency_frame, latency_rows


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
    detectable: float = math.nan  # smallest true drop (points) found with 80 % power; see the module docstring

    @property
    def fails(self) -> bool:
        return self.status.startswith("worse") or self.status == "missing"

    @property
    def exact(self) -> bool:
        """Every seed's difference is the same: reported exactly, not tested."""
        return self.n >= 2 and self.low == self.high


def _one_sided(d: np.ndarray, margin: float) -> tuple[float, float]:
    """p-values of H1: mean(d) < -margin and H1: mean(d) > +margin."""
    if len(d) < 2 or np.all(d == d[0]):  # one seed, or an exact difference: nothing to test
        return math.nan, math.nan
    worse = float(st.ttest_1samp(d, -margin, alternative="less").pvalue)
    better = float(st.ttest_1samp(d, margin, alternative="greater").pvalue)
    return worse, better


def detectable_drop(margin: float, spread: float, n: int, alpha: float, power: float = 0.8) -> float:
    """Smallest true drop (points) a one-sided paired t-test at level ``alpha`` detects with ``power``,
    with ``n`` seeds whose differences have standard deviation ``spread``; NaN for n < 2."""
    if n < 2 or math.isnan(spread):
        return math.nan
    return margin + (float(st.t.ppf(1 - alpha, n - 1)) + float(st.t.ppf(power, n - 1))) * spread / math.sqrt(n)


def compare_to_baseline(current: dict[str, Any], baseline: dict[str, Any], spec: CheckSpec) -> list[CheckRow]:
    """Classify every (variant, metric) of the baseline; see the module docstring."""
    rows: list[CheckRow] = []
    spreads: list[float] = []
    for variant, base in baseline["variants"].items():
        cur = current["variants"].get(variant)
        for metric, margin_key in GATED:
            margin = float(getattr(spec, margin_key))
            b = {s: 100 * v[metric] for s, v in base["seeds"].items()}
            if cur is None:
                rows.append(
                    CheckRow(
                        variant,
                        metric,
                        float(np.mean(list(b.values()))),
                        math.nan,
                        math.nan,
                        math.nan,
                        math.nan,
                        0,
                        margin,
                        math.nan,
                        math.nan,
                        "missing",
                    )
                )
                spreads.append(math.nan)
                continue
            c = {s: 100 * v[metric] for s, v in cur["seeds"].items()}
            shared = sorted(set(b) & set(c))
            d = np.array([c[s] - b[s] for s in shared])
            iv = stats.t_interval(d.tolist())
            pw, pb = _one_sided(d, margin)
            rows.append(
                CheckRow(
                    variant,
                    metric,
                    float(np.mean([b[s] for s in shared])) if shared else math.nan,
                    float(np.mean([c[s] for s in shared])) if shared else math.nan,
                    iv.mean,
                    iv.low,
                    iv.high,
                    len(shared),
                    margin,
                    pw,
                    pb,
                )
            )
            spreads.append(float(d.std(ddof=1)) if len(d) >= 2 else math.nan)
    tested = sum(1 for r in rows if r.n >= 2)
    for r, spread in zip(rows, spreads):
        r.detectable = detectable_drop(r.margin, spread, r.n, spec.alpha / max(tested, 1))
    adj_worse = stats.holm([r.p_worse for r in rows])
    adj_better = stats.holm([r.p_better for r in rows])
    for r, pw, pb in zip(rows, adj_worse, adj_better):
        if r.status:
            continue
        if r.n == 0:
            r.status = "missing"
        elif r.n == 1 or r.exact:  # no test: the difference itself against the margin
            r.status = "worse" if r.diff < -r.margin else "better" if r.diff > r.margin else "unchanged"
        elif pw < spec.alpha:
            r.status = "worse"
        elif pb < spec.alpha:
            r.status = "better"
        elif (r.diff == 0 and r.low == r.high) or (-r.margin <= r.low and r.high <= r.margin):
            r.status = "unchanged"
        else:
            r.status = "not significant"
        if r.metric == "accuracy" and r.diff < -spec.hard_accuracy_drop and r.status != "worse":
            r.status = "worse: hard limit"
        r.p_worse, r.p_better = pw, pb
    return rows


SPAN = 100.0


def rows_frame(rows: Sequence[CheckRow]) -> pd.DataFrame:
    def f(x: float, fmt: str = "{:.2f}") -> str:
        return "n/a" if x is None or math.isnan(x) else fmt.format(x)

    def ci(r: CheckRow) -> str:
        if math.isnan(r.low):
            return "n/a"
        return "n too small" if (r.high - r.low) / 2 > SPAN else f"[{r.low:+.2f}, {r.high:+.2f}]"

    return pd.DataFrame(
        {
            "variant": [r.variant for r in rows],
            "metric": [r.metric for r in rows],
            "baseline (%)": [f(r.baseline) for r in rows],
            "current (%)": [f(r.current) for r in rows],
            "Δ (points)": [f(r.diff, "{:+.2f}") for r in rows],
            "95% CI": [ci(r) for r in rows],
            "n": [r.n for r in rows],
            "margin": [f"±{r.margin:g}" for r in rows],
            "p(worse) Holm": ["exact" if r.exact else f(r.p_worse, "{:.3g}") for r in rows],
            "detectable drop": ["n too small" if r.detectable > SPAN else f(r.detectable) for r in rows],
            "status": [r.status.upper() if r.fails else r.status for r in rows],
        }
    )


@dataclass
class CheckResult:
    passed: bool
    rows: list[CheckRow]
    markdown: str
    updated: bool = False
    latency: list[LatencyRow] = field(default_factory=list)
    claims: list[claimgate.ClaimCheck] = field(default_factory=list)


def run_check(
    suite_path: str | Path,
    *,
    baseline: str | Path,
    options: RunOptions | None = None,
    update: bool = False,
    markdown: str | Path | None = None,
    console: Console | None = None,
    claims: str | None = None,
    **changes: Any,
) -> CheckResult:
    """Run (or reuse) the suite, then compare it with the baseline; ``update`` rewrites the baseline.

    ``options``: how the suite runs (:class:`bench.execute.options.RunOptions`; ``changes`` change single ones by
    name). Its ``only`` runs and checks only the variants those names or globs select (the baseline's other
    variants are not "missing"; ``--update`` with ``only`` is refused, as it would drop them).
    ``claims``: a claims file (path or shipped name) whose rows that agreed in the baseline must still agree
    (:mod:`bench.verdicts.claimgate`); ``update`` records its verdicts.
    """
    o = (options or RunOptions()).but(**changes)
    overrides, only = o.overrides, o.only
    console = console or make_console()
    suite = load_suite(suite_path, overrides, o.imports)
    threshold = suite.check.threshold if suite.check.threshold is not None else suite.evaluation.headline_threshold
    base_path = Path(baseline)
    if update and only:
        raise BaselineError("--update rewrites the whole baseline; run it without --only")
    if claims is not None:
        read_claims(claims)  # a bad claims file fails before any run
    base, not_checked = ({}, []) if update else _checked_baseline(suite_path, base_path, suite, overrides, only, claims)
    summary = run_suite(suite_path, o, log=console.print)
    command = " ".join(
        ["bench check", str(suite_path), "--baseline", str(base_path), "--update", *(f"--set {ov}" for ov in overrides)]
    )
    current = baseline_from_results(summary.out_dir, threshold, command)
    if claims is not None:
        current["claims"] = claimgate.record(claims, summary.out_dir)
    if summary.failed:
        console.print(f"[red]{len(summary.failed)} run(s) failed[/]; the check uses the runs that finished")
    if update:
        atomic_write_json(base_path, current)
        console.print(f"baseline written: {base_path} ({len(current['variants'])} variants, threshold {threshold})")
        return CheckResult(True, [], "", updated=True)
    new_only = [v for v in current["variants"] if v not in base["variants"]]
    if only:
        current["variants"] = {k: v for k, v in current["variants"].items() if k in base["variants"]}
    context = context_lines(current, base, not_checked, new_only)
    result = _judge(suite, current, base, claims, failed=bool(summary.failed))
    md = _markdown(suite, threshold, base, result, context, claims)
    md_path = Path(markdown) if markdown else summary.out_dir / "check.md"
    atomic_write_bytes(md_path, md.encode())
    _print(console, suite, base_path, result, context, claims, md_path)
    return dataclasses.replace(result, markdown=md)


def _checked_baseline(
    suite_path: str | Path,
    base_path: Path,
    suite: Suite,
    overrides: Sequence[str],
    only: Sequence[str],
    claims: str | None,
) -> tuple[dict[str, Any], list[str]]:
    """The baseline a check compares with (its variants narrowed by ``only``) and the variants ``only`` left out;
    read before any run, so that a bad baseline fails first."""
    base = read_baseline(base_path, suite.name)
    if claims is not None and (base.get("claims") or {}).get("file") != claims:
        update_cmd = f"bench check {suite_path} --baseline {base_path} --claims {claims} --update"
        raise BaselineError(
            f"baseline {base_path} holds no verdicts of claims {claims!r}; record them on purpose with: {update_cmd}"
        )
    if not only:
        return base, []
    keep = {r.variant for r in select_runs(expand_runs(suite, overrides), only)}
    not_checked = [k for k in base["variants"] if k not in keep]
    return {**base, "variants": {k: v for k, v in base["variants"].items() if k in keep}}, not_checked


def _judge(
    suite: Suite, current: dict[str, Any], base: dict[str, Any], claims: str | None, *, failed: bool
) -> CheckResult:
    """Every gated row against the baseline: metrics, latency and claims; passed when none fails (nor any run)."""
    spec = suite.check
    rows = compare_to_baseline(current, base, spec)
    lat_rows = latency_rows(current, base, spec)
    claim_checks = claimgate.compare(base["claims"], current["claims"]) if claims is not None else []
    passed = not any(r.fails for r in rows) and not any(r.fails for r in lat_rows)
    passed = passed and not any(c.fails for c in claim_checks) and not failed
    return CheckResult(passed, rows, "", latency=lat_rows, claims=claim_checks)


def _markdown(
    suite: Suite, threshold: float, base: dict[str, Any], result: CheckResult, context: list[str], claims: str | None
) -> str:
    spec = suite.check
    verdict = "PASSED" if result.passed else "FAILED"
    header = (
        f"### bench check {suite.name}: {verdict}\n\n"
        f"Threshold {threshold} (baseline: {base['threshold']}); "
        f"margins: accuracy {spec.max_accuracy_drop} points, "
        f"savings {spec.max_savings_drop} points; one-sided paired t-tests over seeds, Holm-corrected, "
        f"alpha {spec.alpha}; any accuracy drop over {spec.hard_accuracy_drop} points fails (hard limit). "
        f"Baseline made by `{base.get('command', '?')}`.\n\n{strength_line(result.rows, spec)}\n\n"
        + "\n".join(context)
        + "\n\n"
    )
    md = header + rows_frame(result.rows).to_markdown(index=False) + "\n"
    if result.latency:
        md += (
            f"\nLatency gate: fails when current/baseline > {spec.max_latency_ratio} and the ratio's 95 % "
            "interval lies above 1 (same machine only).\n\n"
            + latency_frame(result.latency).to_markdown(index=False)
            + "\n"
        )
    if claims is not None:
        md += "\n" + claimgate.markdown(result.claims, claims)
    return md


def _print(
    console: Console,
    suite: Suite,
    base_path: Path,
    result: CheckResult,
    context: list[str],
    claims: str | None,
    md_path: Path,
) -> None:
    verdict = "PASSED" if result.passed else "FAILED"
    console.print(rich_table(rows_frame(result.rows), f"bench check {suite.name} vs {base_path}: {verdict}"))
    if result.latency:
        console.print(
            rich_table(latency_frame(result.latency), f"latency gate (limit {suite.check.max_latency_ratio})")
        )
    console.print(escape(strength_line(result.rows, suite.check)))
    if claims is not None:
        console.print(escape(claimgate.markdown(result.claims, claims)), highlight=False)
    console.print("\n".join(escape(line) for line in context), highlight=False)
    console.print(f"{'[green]' if result.passed else '[red]'}{verdict}[/]: table written to {md_path}")


def context_lines(
    current: dict[str, Any], base: dict[str, Any], not_checked: Sequence[str], new_only: Sequence[str]
) -> list[str]:
    """What both sides were made with (model, dataset, overrides, training steps) and what was not checked."""
    cur, old = current.get("context") or {}, base.get("context")
    lines = ["| | current | baseline |", "|---|---|---|"]
    for key in ("model", "dataset", "overrides"):
        lines.append(f"| {key} | {cur.get(key, '?')} | {old.get(key, '?') if old else 'not recorded'} |")
    for v, steps in (cur.get("steps") or {}).items():
        theirs = (old.get("steps") or {}).get(v, "?") if old else "not recorded"
        lines.append(f"| training steps, {v} | {steps} | {theirs} |")
    if old is None:
        lines.append("\nThe baseline predates recorded context (model, dataset, overrides, steps): `--update` adds it.")
    if not_checked:
        lines.append(f"\nBaseline variants not checked (--only): {', '.join(not_checked)}.")
    if new_only:
        lines.append(f"\nVariants not in the baseline (not checked): {', '.join(new_only)}.")
    return lines


def strength_line(rows: Sequence[CheckRow], spec: CheckSpec) -> str:
    """How strong the gate is at this run's n and alpha (the worst row per metric)."""
    parts = []
    for metric, _ in GATED:
        ds = [r for r in rows if r.metric == metric and not math.isnan(r.detectable)]
        if ds:
            worst = max(ds, key=lambda r: r.detectable)
            if worst.detectable > SPAN:
                parts.append(
                    f"no {metric} drop within its 0-100 point range ({worst.variant}: n = {worst.n} is too small)"
                )
            else:
                parts.append(f"{metric} drops of {worst.detectable:.2f} points ({worst.variant}, n = {worst.n})")
    if not parts:
        return "Gate strength: with one seed per variant no test is possible; a drop beyond the margin fails."
    return (
        f"Gate strength (80 % power, alpha {spec.alpha} split over the tested rows): the test detects "
        f"{'; '.join(parts)}; smaller drops can pass unnoticed; more seeds shrink this."
    )
