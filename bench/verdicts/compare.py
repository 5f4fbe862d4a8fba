"""``bench compare A B``: two results folders, variant by variant (e.g. before and after a change).

The output says what was compared: a header with each side's folder, commits, dataset (name,
fingerprint, split sizes), threshold, seeds and training steps. Folders that differ in dataset or
threshold are refused unless ``force`` (then the differences head the table): their differences would
be read as the effect of the change under test. A variant trained for a different number of steps
may be the change under test, so it is compared, with a warning above the table and ``steps differ``
in the rows of that variant.

Per shared variant and metric: means in A and B, ratio B/A, and a paired t-test over shared seeds
(Welch's when no seed is shared). Rows where nothing varies (every value in A and B identical, or a
metric fixed by the architecture) need no test; rows where each side is constant but the sides
differ are "exact" differences. Holm's correction runs over the tested rows only, so that rows
that cannot change do not dilute it. Values are shown in the report's units (latency in µs/sample).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.markup import escape
from scipy import stats as st

from bench.analyse import stats
from bench.analyse.load import Results, load_results
from bench.config.plugins import NO_TRUST, FolderTrust
from bench.render.format import fmt_p, markdown, rich_table
from bench.results.files import atomic_write_bytes
from bench.results.metrics import MetricKey, get_metric
from bench.results.store import StoreError

#: Metrics compared (names in bench.results.metrics.METRICS); latency at every batch size both folders timed.
COMPARED = ("accuracy", "early_share", "macs", "energy", "saved_vs_base")


class CompareError(StoreError):
    """Two folders that should not be compared without ``--force``."""


@dataclass(frozen=True)
class Side:
    """What one folder holds, for the header."""

    folder: str
    commits: str
    dataset: str
    threshold: float
    seeds: str
    steps: dict[str, str]  # variant -> total training steps (per seed, distinct values)
    model: str = "?"  # backbone and its options (the suite's; variants' own options in brackets)
    overrides: str = "none"  # the --set overrides the runs were made with


def model_text(results: Results) -> str:
    """``study_cnn (channels=[16, 32, 32], hidden=64)``: the backbone(s) of a folder's runs."""
    seen: dict[str, None] = {}
    for r in results.records:
        job = r.config.get("job") or {}
        opts = ", ".join(f"{k}={v}" for k, v in sorted((job.get("model_options") or {}).items()))
        seen.setdefault(f"{job.get('model', '?')}" + (f" ({opts})" if opts else ""), None)
    return "; ".join(seen) or "?"


def overrides_text(results: Results) -> str:
    found = sorted({o for r in results.records for o in r.config.get("overrides", [])})
    return " ".join(f"--set {o}" for o in found) or "none"


def describe(results: Results) -> Side:
    recs = results.records
    commits = sorted({str(r.provenance.get("git_commit") or "unknown")[:12] for r in recs})
    datasets = sorted(
        {
            f"{r.dataset} (fingerprint {r.data_fingerprint or '?'}, sizes "
            f"{'/'.join(str(v) for v in (r.data_sizes or {}).values()) or '?'})"
            for r in recs
        }
    )
    steps = {
        v: "/".join(str(s) for s in sorted({r.total_steps for r in results.records_of(v)})) for v in results.variants
    }
    return Side(
        str(results.out_dir),
        ", ".join(commits),
        "; ".join(datasets),
        results.headline,
        ", ".join(str(s) for s in sorted({r.seed for r in recs})),
        steps,
        model_text(results),
        overrides_text(results),
    )


def mismatches(a: Side, b: Side) -> tuple[list[str], list[str]]:
    """(differences that make the folders incomparable, differences to warn about)."""
    blocking = []
    if a.dataset != b.dataset:
        blocking.append(f"datasets differ: A {a.dataset}; B {b.dataset}")
    if a.threshold != b.threshold:
        blocking.append(f"thresholds differ: A {a.threshold}, B {b.threshold}")
    warn = [
        f"training lengths differ for {v}: A {a.steps[v]} steps, B {b.steps[v]} steps"
        for v in a.steps
        if v in b.steps and a.steps[v] != b.steps[v]
    ]
    if a.model != b.model:
        warn.append(f"models differ: A {a.model}; B {b.model}")
    if a.overrides != b.overrides:
        warn.append(f"--set overrides differ: A {a.overrides}; B {b.overrides}")
    only_a = [v for v in a.steps if v not in b.steps]
    only_b = [v for v in b.steps if v not in a.steps]
    if only_a:
        warn.append(f"variants only in A (not compared): {', '.join(only_a)}")
    if only_b:
        warn.append(f"variants only in B (not compared): {', '.join(only_b)}")
    return blocking, warn


def compare_frame(a: Results, b: Results) -> pd.DataFrame:
    """Variants present in both folders: means in A and B (raw units), ratio B/A, test, Holm over tested rows."""
    rows = []
    metrics = [
        *COMPARED,
        *(MetricKey("latency", batch=x).name() for x in a.latency_batches() if x in b.latency_batches()),
    ]
    for variant in [v for v in a.variants if v in b.variants]:
        for name in metrics:
            metric = get_metric(name)
            xa = a.by_seed(variant, name, a.headline)
            xb = b.by_seed(variant, name, b.headline)
            va = [x for x in xa.values() if not math.isnan(x)]
            vb = [x for x in xb.values() if not math.isnan(x)]
            if not va or not vb:
                continue
            ma, mb = stats.t_interval(va).mean, stats.t_interval(vb).mean
            constant = len(set(va)) == 1 and len(set(vb)) == 1
            shared = sorted(set(xa) & set(xb))
            if metric.deterministic or (constant and va[0] == vb[0]):
                p, kind = math.nan, "no variation"
            elif xa == xb:
                p, kind = math.nan, "identical"
            elif constant:
                p, kind = math.nan, "exact"
            elif len(shared) >= 2:
                p, kind = stats.paired_test(xb, xa).p_value, "paired"
            elif min(len(va), len(vb)) >= 2:
                p, kind = float(st.ttest_ind(vb, va, equal_var=False).pvalue), "welch"
            else:
                p, kind = math.nan, "n = 1"
            rows.append(
                {
                    "variant": variant,
                    "metric": name,
                    "unit": metric.label,
                    "scale": metric.scale,
                    "A": ma,
                    "B": mb,
                    "ratio B/A": mb / ma if ma else math.nan,
                    "test": kind,
                    "p": p,
                }
            )
    cols = ["variant", "metric", "unit", "scale", "A", "B", "ratio B/A", "test", "p"]
    frame = pd.DataFrame(rows, columns=cols)
    tested = frame["p"].notna() if len(frame) else pd.Series(dtype=bool)
    frame["p_holm"] = math.nan
    if tested.any():
        frame.loc[tested, "p_holm"] = stats.holm(frame.loc[tested, "p"].tolist())
    frame["significant"] = (frame["p_holm"] < 0.05) | (frame["test"] == "exact")
    return frame


def header_lines(a: Side, b: Side, problems: list[str]) -> list[str]:
    lines = [
        "| | A | B |",
        "|---|---|---|",
        f"| folder | {a.folder} | {b.folder} |",
        f"| commit | {a.commits} | {b.commits} |",
        f"| model | {a.model} | {b.model} |",
        f"| dataset | {a.dataset} | {b.dataset} |",
        f"| overrides | {a.overrides} | {b.overrides} |",
        f"| threshold | {a.threshold} | {b.threshold} |",
        f"| seeds | {a.seeds} | {b.seeds} |",
    ]
    for v in sorted(set(a.steps) & set(b.steps)):
        lines.append(f"| training steps, {v} | {a.steps[v]} | {b.steps[v]} |")
    out = ["# bench compare: A vs B", "", *lines, ""]
    if problems:
        out += ["**Warning: these differ besides the change under test**", ""] + [f"- {p}" for p in problems] + [""]
    out += [
        "Tests: paired t-test over shared seeds (Welch without shared seeds); 'exact': each side constant, "
        "sides differ; 'no variation': one value throughout; 'identical': A equals B seed by seed. "
        "Holm over the tested rows only.",
        "",
    ]
    return out


def compare(
    a_dir: Path,
    b_dir: Path,
    *,
    console: Console,
    out: str | None = None,
    force: bool = False,
    trust: FolderTrust = NO_TRUST,
) -> pd.DataFrame:
    """``bench compare A B``: print (and optionally write) the comparison table."""
    a, b = load_results(a_dir, trust), load_results(b_dir, trust)
    for side in (a, b):
        if side.problems:  # a comparison that silently drops runs would read as a change
            raise StoreError(
                f"{side.out_dir}: {len(side.problems)} run file(s) cannot be used: "
                f"{'; '.join(side.problems)}; rerun that folder's suite (it replaces them) or remove "
                "them before comparing"
            )
    if not a.records or not b.records:
        raise StoreError(f"{a_dir if not a.records else b_dir}: no finished runs to compare")
    side_a, side_b = describe(a), describe(b)
    blocking, warn = mismatches(side_a, side_b)
    if blocking and not force:
        raise CompareError(
            f"{a_dir} and {b_dir} are not comparable: {'; '.join(blocking)}; "
            "a difference would mix the change under test with these. Pass --force to compare anyway"
        )
    problems = blocking + warn
    frame = compare_frame(a, b)
    frame["note"] = ["steps differ" if side_a.steps[v] != side_b.steps[v] else "" for v in frame["variant"]]
    if frame.empty:
        raise StoreError(f"{a_dir} and {b_dir} have no variant in common")
    display = pd.DataFrame(
        {
            "variant": frame["variant"],
            "metric": frame["unit"],
            "A": [f"{v * s:.4g}" for v, s in zip(frame["A"], frame["scale"])],
            "B": [f"{v * s:.4g}" for v, s in zip(frame["B"], frame["scale"])],
            "ratio B/A": [f"{v:.4g}" for v in frame["ratio B/A"]],
            "test": frame["test"],
            "p": [fmt_p(p) for p in frame["p"]],
            "p (Holm)": [fmt_p(p) for p in frame["p_holm"]],
            "sig.": ["*" if s else "" for s in frame["significant"]],
            "note": frame["note"],
        }
    )
    head = header_lines(side_a, side_b, problems)
    console.print("\n".join(escape(line) for line in head))
    console.print(rich_table(display, f"A = {a_dir}  vs  B = {b_dir}"))
    if out:
        atomic_write_bytes(Path(out), ("\n".join(head) + "\n" + markdown(display) + "\n").encode())
    return frame
