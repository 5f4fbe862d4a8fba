"""The source study's claims, tested on a results folder with paired statistics.

    bench study results/mnist results/noisy_mnist --out results/STUDY.md

Claims (the source study's experiments, listed in results/STUDY.md) and how each is tested, per dataset,
at the headline threshold t = 0.6 unless said otherwise; every comparison is paired
by seed, and the p-values of one dataset's tested rows are Holm-corrected together:

1. *firm gives the best accuracy / early-exit trade-off, then soft, then sum.*
   The trade-off of one run is one number: the area under its curve of cascade accuracy
   against early-exit share, i.e. the mean accuracy over early-exit shares from 0 to 100 %.
   Runs that recorded the exact curve (:mod:`bench.analyse.curves`: every distinct exit confidence a
   breakpoint) use it; older runs fall back to the 0.1 threshold grid (the metric column says
   which). For each exit position, A vs B for (firm, soft), (soft, sum), (firm, sum),
   (firm-gated, sum), and at equal training steps (firm, sum-2x), (firm-gated, sum-2x), where
   sum-2x is sum trained for as many steps as the pre-trained variants. Firm is the study's form
   (pre-trained with base, lambda 0.6). A table of accuracy at matched early shares (50 / 80 /
   90 % early) follows, the more readable comparison.
2. *p2 beats p1*: accuracy at t = 0.6 of each loss with the exit at p2 minus at p1.
3. *early predictions fall as the threshold rises*: early share at t = 0.1 minus at t = 0.9.
   True by construction for max-prob (a higher threshold keeps every sample a lower one kept),
   so shown, not tested, and left out of the Holm correction.
4. *early predictions rise with the firm penalty lambda*: early share at the largest
   swept lambda minus at the smallest.
5. (ours) *a cascade against the base network*: accuracy at t = 0.6 of sum at p1 / p2 minus base.

A variant whose early exit stays at chance (test accuracy below 1.5 / classes,
bench.results.record.at_chance, in at least half of its seeds) cannot show a trade-off: rows that
rest on it read "not reproduced: exit at chance" (claims 1, 2) or "untestable: exit at chance"
(claim 4) instead of a verdict on the claim.
Every row states both sides' training steps.
"""

from __future__ import annotations

import itertools
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.analyse import stats
from bench.analyse.curves import MATCHED_SHARES
from bench.analyse.load import Results, load_results
from bench.render.format import fmt_interval, fmt_p
from bench.results import record
from bench.results.record import RunRecord


@dataclass
class Claim:
    dataset: str
    claim: str
    comparison: str
    metric: str
    diff: float  # points
    low: float
    high: float
    n: int
    p: float
    p_holm: float = math.nan
    verdict: str = ""
    steps: str = ""  # training steps per seed of A and B
    note: str = ""  # e.g. an exact (no-spread) difference
    tested: bool = True  # False: shown only (true by construction); not in the Holm correction
    at_chance: str = ""  # the variant of the row whose early exit is at chance, if any


def tradeoff_auc(record: RunRecord) -> float:
    """Area under accuracy against early-exit share over the threshold sweep (trapezoids on [0, 1])."""
    pts = sorted((t.early_share, t.accuracy) for t in record.thresholds or [] if t.threshold is not None)
    if len(pts) < 2 or pts[0][0] > 1e-9 or pts[-1][0] < 1 - 1e-9:
        return math.nan  # the sweep must run from nobody to everybody leaving early
    return sum((x1 - x0) * (y0 + y1) / 2 for (x0, y0), (x1, y1) in itertools.pairwise(pts))


def has_curves(results: Results, *variants: str) -> bool:
    return all(r.curve is not None for v in variants for r in results.records_of(v))


def _area_by_seed(results: Results, variant: str, exact: bool) -> dict[int, float]:
    recs = results.records_of(variant)
    if exact:
        return {int(r.seed): float(r.curve["area"]) for r in recs if r.curve is not None}
    return {int(r.seed): tradeoff_auc(r) for r in recs}


def variant_at_chance(results: Results, variant: str) -> bool:
    """Whether the variant's first early exit is at chance (:func:`bench.results.record.at_chance`) in at least half
    its seeds."""
    recs = [r for r in results.records_of(variant) if r.exits is not None and len(r.exits.names) > 1]
    if not recs:
        return False
    low = sum(1 for r in recs if r.exits is not None and record.at_chance(r.exits.test_accuracy[0], r.classes))
    return 2 * low >= len(recs)


def _claim(results: Results, dataset: str, claim: str, va: str, vb: str, comparison: str, metric: str,
           a: dict[int, float], b: dict[int, float], *, tested: bool = True) -> Claim:  # fmt: skip
    t = stats.paired_test(a, b)
    chance = next((v for v in (va, vb) if variant_at_chance(results, v)), "")
    return Claim(dataset, claim, comparison, metric, 100 * t.diff.mean, 100 * t.diff.low, 100 * t.diff.high, t.n,
                 t.p_value if tested else math.nan, steps=f"{results.steps(va)} vs {results.steps(vb)}",
                 note=t.note, tested=tested, at_chance=chance)  # fmt: skip


def _variant(
    results: Results, loss: str, exits: Sequence[str], lam: float | None = None, *, steps_factor: int = 1
) -> str | None:
    """The variant with this loss and exits (the study's firm: pretrained with base, lambda as given);
    where several match (sum and sum-2x), the one whose steps are closest to ``steps_factor`` x base's."""
    found = []
    for v in results.variants:
        r = results.records_of(v)[0]
        if r.loss != loss or r.exits_at != list(exits):
            continue
        pre = r.config["job"].get("pretrain")
        if loss == "firm" and (pre is None or pre["loss"] != "base"):
            continue
        if lam is not None and float(r.config["job"]["loss_options"].get("lambda", 0.6)) != lam:
            continue
        if any(k.split(".")[0] == "model_options" for k in r.sweep):
            continue
        found.append(v)
    if not found:
        return None
    base = _variant(results, "base", []) if loss != "base" else None
    unit = results.steps(base) if base else 0
    if len(found) == 1 or not unit:
        return found[0] if steps_factor == 1 or len(found) > 1 else None
    return min(found, key=lambda v: abs(results.steps(v) / unit - steps_factor))


def claims_for(results: Results, dataset: str) -> list[Claim]:
    thr = results.headline
    out: list[Claim] = []
    for pos in ("p1", "p2"):
        names = {loss: _variant(results, loss, [pos], 0.6 if loss == "firm" else None)
                 for loss in ("firm", "soft", "sum", "firm-gated")}  # fmt: skip
        names["sum-2x"] = _variant(results, "sum", [pos], steps_factor=2)
        if names["sum-2x"] == names["sum"]:
            names["sum-2x"] = None
        pairs = [("firm", "soft"), ("soft", "sum"), ("firm", "sum"), ("firm-gated", "sum"), ("firm", "sum-2x"),
                 ("firm-gated", "sum-2x")]  # fmt: skip
        for a, b in pairs:
            va, vb = names[a], names[b]
            if va is None or vb is None:
                continue
            exact = has_curves(results, va, vb)
            metric = "exact area, early 0-100 %" if exact else "grid AUC (t step 0.1)"
            out.append(_claim(results, dataset, "1 trade-off", va, vb, f"{va} vs {vb}", metric,
                              _area_by_seed(results, va, exact), _area_by_seed(results, vb, exact)))  # fmt: skip
    for loss in ("sum", "soft", "firm"):
        v1 = _variant(results, loss, ["p1"], 0.6 if loss == "firm" else None)
        v2 = _variant(results, loss, ["p2"], 0.6 if loss == "firm" else None)
        if v1 and v2:
            acc2, acc1 = results.by_seed(v2, "accuracy", thr), results.by_seed(v1, "accuracy", thr)
            out.append(_claim(results, dataset, "2 p2 beats p1", v2, v1, f"{v2} vs {v1}", "accuracy", acc2, acc1))
    for v in results.variants:
        if results.records_of(v)[0].exits_at and "[" not in v:
            out.append(_claim(results, dataset, "3 early falls with t", v, v, f"{v}: t=0.1 vs t=0.9", "early_share",
                              results.by_seed(v, "early_share", 0.1), results.by_seed(v, "early_share", 0.9),
                              tested=False))  # fmt: skip
    sweeps: dict[str, dict[float, str]] = {}
    for v in results.variants:
        r = results.records_of(v)[0]
        lam = next((val for k, val in r.sweep.items() if k.endswith("lambda")), None)
        if lam is not None:
            sweeps.setdefault(r.variant_base, {})[float(lam)] = v
    for base, by_lam in sweeps.items():
        lo, hi = min(by_lam), max(by_lam)
        out.append(_claim(results, dataset, "4 early rises with lambda", by_lam[hi], by_lam[lo],
                          f"{base}: lambda={hi:g} vs {lo:g}", "early_share",
                          results.by_seed(by_lam[hi], "early_share", thr),
                          results.by_seed(by_lam[lo], "early_share", thr)))  # fmt: skip
    base_v = _variant(results, "base", [])
    for pos in ("p1", "p2"):
        cascade = _variant(results, "sum", [pos])
        if base_v and cascade:
            acc_c, acc_b = results.by_seed(cascade, "accuracy", thr), results.by_seed(base_v, "accuracy", thr)
            out.append(_claim(results, dataset, "5 cascade vs base", cascade, base_v, f"{cascade} vs {base_v}",
                              "accuracy", acc_c, acc_b))  # fmt: skip
    tested = [c for c in out if c.tested]
    for c, p in zip(tested, stats.holm([c.p for c in tested])):
        c.p_holm = p
    _verdicts(out)
    return out


def _sig(c: Claim, sign: int) -> bool:
    return not math.isnan(c.p_holm) and c.p_holm < 0.05 and sign * c.diff > 0


def _verdicts(claims: list[Claim]) -> None:
    for c in claims:
        if not c.tested:
            c.verdict = "true by construction (max-prob)" if c.diff >= 0 else "violated (a bug)"
        elif c.at_chance and c.claim.startswith("4"):
            c.verdict = f"untestable: {c.at_chance}'s exit at chance"
        elif c.at_chance and c.claim.startswith(("1", "2")):
            c.verdict = f"not reproduced: {c.at_chance}'s exit at chance"
        else:
            c.verdict = "confirmed" if _sig(c, +1) else "refuted" if _sig(c, -1) else "not significant"


def matched_rows(results: Results, dataset: str) -> list[dict[str, Any]]:
    """Per variant with recorded curves: exact area and accuracy at matched early shares (mean, CI)."""
    rows = []
    for v in results.variants:
        recs = results.records_of(v)
        if not recs[0].exits_at or not has_curves(results, v):
            continue
        row: dict[str, Any] = {"dataset": dataset, "variant": v, "n": len(recs), "steps": results.steps(v),
                               "area": stats.t_interval([float(r.curve["area"]) for r in recs if r.curve])}  # fmt: skip
        row["final_exit"] = stats.t_interval([r.exits.test_accuracy[-1] for r in recs if r.exits])
        for share in MATCHED_SHARES:
            row[f"at_{share:g}"] = stats.t_interval([float(r.curve["matched"][f"{share:g}"]) for r in recs if r.curve])
        rows.append(row)
    return rows


def cost_rows(results: Results, dataset: str) -> list[dict[str, Any]]:
    thr = results.headline
    table = results.energy_table()
    rows = []
    for v in results.variants:
        recs = results.records_of(v)
        acc = stats.t_interval(list(results.by_seed(v, "accuracy", thr).values()))
        early = stats.t_interval(list(results.by_seed(v, "early_share", thr).values()))
        saved = stats.t_interval(list(results.by_seed(v, "saved_vs_base", thr).values()))
        esaved = stats.t_interval(list(results.by_seed(v, "energy_saved", thr).values()))
        lat: dict[int, list[float]] = {}
        for r in recs:
            for batch in r.latency.batch_sizes if r.latency else []:
                item = r.latency.at(thr, batch) if r.latency else None
                if item is not None:
                    lat.setdefault(batch, []).append(1 - item.dynamic["median"] / item.full["median"])
        row = {
            "dataset": dataset,
            "variant": v,
            "n": len(recs),
            "accuracy": acc,
            "early": early,
            "macs_saved": saved,
            "energy_saved": esaved,
            "energy_table": table,
        }
        for b, vals in sorted(lat.items()):
            row[f"latency_saved_b{b}"] = stats.t_interval(vals)
        rows.append(row)
    return rows


def _iv(iv: stats.Interval, scale: float = 100, digits: int = 1) -> str:
    return fmt_interval(iv.mean, iv.low, iv.high, scale, digits)


def render(folders: Sequence[Path]) -> str:
    lines: list[str] = []
    all_claims: list[Claim] = []
    matched: list[dict[str, Any]] = []
    costs: list[dict[str, Any]] = []
    settings = []
    for folder in folders:
        res = load_results(folder)
        # the suite's name, or the folder's where they differ (two folders of one suite side by side)
        name = res.suite.name if res.suite and res.suite.name == folder.name else folder.name
        all_claims += claims_for(res, name)
        matched += matched_rows(res, name)
        costs += cost_rows(res, name)
        overrides = sorted({o for r in res.records for o in r.config.get("overrides", [])})
        seeds = sorted({r.seed for r in res.records})
        settings.append(f"- `{folder}`: {len(res.records)} runs, seeds {seeds}, overrides {overrides or 'none'}")
    lines += [
        "## Claims",
        "",
        "Effect = mean paired difference over seeds (percentage points), 95 % t-interval, two-sided paired "
        "t-test, Holm-corrected over each dataset's tested rows. Steps: optimiser steps per seed of A vs B "
        "(pre-training included).",
        "",
        "| dataset | claim | comparison | metric | steps | effect (points) | 95 % CI | n | p | p (Holm) | verdict |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for c in all_claims:
        ci = "n/a" if math.isnan(c.low) else f"[{c.low:+.2f}, {c.high:+.2f}]"
        p = "exact" if c.note.startswith("exact") and c.tested else fmt_p(c.p)
        lines.append(
            f"| {c.dataset} | {c.claim} | {c.comparison} | {c.metric} | {c.steps} | {c.diff:+.2f} | {ci} | {c.n} | "
            f"{p} | {fmt_p(c.p_holm)} | {c.verdict} |"
        )
    few = sorted({c.dataset for c in all_claims if 0 < c.n < stats.MIN_SEEDS})
    if few:
        lines += ["", f"**Warning**: fewer than {stats.MIN_SEEDS} seeds in {', '.join(few)}: intervals are wide and "
                  "the tests have little power; a 'not significant' there is weak evidence of no effect."]  # fmt: skip
    if matched:
        shares = [f"at_{s:g}" for s in MATCHED_SHARES]
        lines += [
            "",
            "## Accuracy at matched early-exit shares (exact curves)",
            "",
            "Cascade test accuracy (%) when the threshold is set so that the stated share of test samples "
            "leaves early (linear between the exact curve's points), and the exact area (mean accuracy "
            "over early shares 0-100 %), and the final exit's own accuracy (every sample through it). "
            "Mean ± 95 % t-interval half-width over seeds.",
            "",
            "| dataset | variant | n | steps | final exit (%) | area (%) | "
            + " | ".join(f"{100 * s:g} % early" for s in MATCHED_SHARES)
            + " |",
            "| --- " * (6 + len(shares)) + "|",
        ]
        for r in matched:
            lines.append(
                f"| {r['dataset']} | {r['variant']} | {r['n']} | {r['steps']} | {_iv(r['final_exit'], digits=2)} | "
                f"{_iv(r['area'], digits=2)} | " + " | ".join(_iv(r[k], digits=2) for k in shares) + " |"
            )
    lat_cols = sorted({k for r in costs for k in r if k.startswith("latency_saved_b")}, key=lambda k: int(k[15:]))
    lines += [
        "",
        "## Cost view at t = 0.6 (what the study did not measure)",
        "",
        "Mean ± 95 % t-interval half-width over seeds. MACs and energy saved are against the base network "
        "(same backbone, no exit heads); latency saved is measured: 1 - time(dynamic forward) / time(full "
        "network) on the test set, same model, same machine.",
        "",
        "| dataset | variant | n | accuracy (%) | early (%) | MACs saved (%) | energy saved (%, "
        f"{costs[0]['energy_table'] if costs else ''}) |"
        + "".join(f" latency saved b{k[15:]} (%) |" for k in lat_cols),
        "| --- " * (7 + len(lat_cols)) + "|",
    ]
    for r in costs:
        lines.append(
            f"| {r['dataset']} | {r['variant']} | {r['n']} | {_iv(r['accuracy'], digits=2)} | {_iv(r['early'])} | "
            f"{_iv(r['macs_saved'])} | {_iv(r['energy_saved'])} |"
            + "".join(f" {_iv(r[k]) if k in r else 'n/a'} |" for k in lat_cols)
        )
    lines += ["", "## Settings", "", *settings, ""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        print("usage: python -m bench.verdicts.study RESULTS_DIR [RESULTS_DIR ...]", file=sys.stderr)
        return 2
    print(render([Path(a) for a in args]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
