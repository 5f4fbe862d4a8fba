"""The source study's claims, tested on a results folder with paired statistics.

    python -m bench.study results/mnist results/noisy_mnist > results/STUDY.md

Claims (SPEC.md, "The study's experiments") and how each is tested, per dataset,
at the headline threshold t = 0.6 unless said otherwise; every comparison is paired
by seed, and the p-values of one dataset's table are Holm-corrected together:

1. *firm gives the best accuracy / early-exit trade-off, then soft, then sum.*
   The trade-off of one run is one number: the area under its curve of cascade accuracy
   against early-exit share, traced by the threshold sweep t = 0 ... 1 (t = 0 sends 100 %
   out early, t = 1 none), i.e. the mean accuracy over early-exit shares from 0 to 100 %.
   For each exit position, A vs B for (firm, soft), (soft, sum), (firm, sum): paired
   difference of that area. Firm is the study's form (pre-trained with base, lambda 0.6);
   ours (firm-gated) is compared with sum too.
2. *p2 beats p1*: accuracy at t = 0.6 of each loss with the exit at p2 minus at p1.
3. *early predictions fall as the threshold rises*: early share at t = 0.1 minus at t = 0.9.
4. *early predictions rise with the firm penalty lambda*: early share at the largest
   swept lambda minus at the smallest.
"""

from __future__ import annotations

import itertools
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import stats
from bench.record import RunRecord
from bench.results import Results, load_results, metric_by_seed


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


def tradeoff_auc(record: RunRecord) -> float:
    """Area under accuracy against early-exit share over the threshold sweep (trapezoids on [0, 1])."""
    pts = sorted((t.early_share, t.accuracy) for t in record.thresholds or [] if t.threshold is not None)
    if len(pts) < 2 or pts[0][0] > 1e-9 or pts[-1][0] < 1 - 1e-9:
        return math.nan  # the sweep must run from nobody to everybody leaving early
    return sum((x1 - x0) * (y0 + y1) / 2 for (x0, y0), (x1, y1) in itertools.pairwise(pts))


def _auc_by_seed(results: Results, variant: str) -> dict[int, float]:
    return {int(r.seed): tradeoff_auc(r) for r in results.records_of(variant)}


def _by_seed_at(results: Results, variant: str, key: str, threshold: float) -> dict[int, float]:
    return results.by_seed(variant, key, threshold)


def _claim(dataset: str, claim: str, comparison: str, metric: str, a: dict[int, float], b: dict[int, float]) -> Claim:
    t = stats.paired_test(a, b)
    return Claim(
        dataset, claim, comparison, metric, 100 * t.diff.mean, 100 * t.diff.low, 100 * t.diff.high, t.n, t.p_value
    )


def _variant(results: Results, loss: str, exits: Sequence[str], lam: float | None = None) -> str | None:
    """The variant with this loss and exits (the study's firm: pretrained with base, lambda as given)."""
    for v in results.variants:
        r = results.records_of(v)[0]
        if r.loss != loss or r.exits_at != list(exits):
            continue
        pre = r.config["job"].get("pretrain")
        if loss == "firm" and (pre is None or pre["loss"] != "base"):
            continue
        if lam is not None and float(r.config["job"]["loss_options"].get("lambda", 0.6)) != lam:
            continue
        return v
    return None


def claims_for(results: Results, dataset: str) -> list[Claim]:
    thr = results.headline
    out: list[Claim] = []
    for pos in ("p1", "p2"):
        names = {
            loss: _variant(results, loss, [pos], 0.6 if loss == "firm" else None)
            for loss in ("firm", "soft", "sum", "firm-gated")
        }
        for a, b in (("firm", "soft"), ("soft", "sum"), ("firm", "sum"), ("firm-gated", "sum")):
            va, vb = names[a], names[b]
            if va is None or vb is None:
                continue
            out.append(
                _claim(
                    dataset,
                    "1 trade-off",
                    f"{va} vs {vb}",
                    "accuracy-vs-early AUC",
                    _auc_by_seed(results, va),
                    _auc_by_seed(results, vb),
                )
            )
    for loss in ("sum", "soft", "firm"):
        v1 = _variant(results, loss, ["p1"], 0.6 if loss == "firm" else None)
        v2 = _variant(results, loss, ["p2"], 0.6 if loss == "firm" else None)
        if v1 and v2:
            out.append(
                _claim(
                    dataset,
                    "2 p2 beats p1",
                    f"{v2} vs {v1}",
                    "accuracy",
                    _by_seed_at(results, v2, "accuracy", thr),
                    _by_seed_at(results, v1, "accuracy", thr),
                )
            )
    for v in results.variants:
        if results.records_of(v)[0].exits_at and "[" not in v:
            out.append(
                _claim(
                    dataset,
                    "3 early falls with t",
                    f"{v}: t=0.1 vs t=0.9",
                    "early_share",
                    _by_seed_at(results, v, "early_share", 0.1),
                    _by_seed_at(results, v, "early_share", 0.9),
                )
            )
    sweeps: dict[str, dict[float, str]] = {}
    for v in results.variants:
        r = results.records_of(v)[0]
        lam = next((val for k, val in r.sweep.items() if k.endswith("lambda")), None)
        if lam is not None:
            sweeps.setdefault(r.variant_base, {})[float(lam)] = v
    for base, by_lam in sweeps.items():
        lo, hi = min(by_lam), max(by_lam)
        out.append(
            _claim(
                dataset,
                "4 early rises with lambda",
                f"{base}: lambda={hi:g} vs {lo:g}",
                "early_share",
                _by_seed_at(results, by_lam[hi], "early_share", thr),
                _by_seed_at(results, by_lam[lo], "early_share", thr),
            )
        )
    for c, p in zip(out, stats.holm([c.p for c in out])):
        c.p_holm = p
    _verdicts(out)
    return out


def _sig(c: Claim, sign: int) -> bool:
    return not math.isnan(c.p_holm) and c.p_holm < 0.05 and sign * c.diff > 0


def _verdicts(claims: list[Claim]) -> None:
    for c in claims:
        c.verdict = "confirmed" if _sig(c, +1) else "refuted" if _sig(c, -1) else "not significant"


def cost_rows(results: Results, dataset: str) -> list[dict[str, Any]]:
    thr = results.headline
    table = results.energy_table()
    rows = []
    for v in results.variants:
        recs = results.records_of(v)
        acc = stats.t_interval(list(metric_by_seed(results, v, "accuracy", thr).values()))
        early = stats.t_interval(list(metric_by_seed(results, v, "early_share", thr).values()))
        saved = stats.t_interval(list(metric_by_seed(results, v, "saved_vs_base", thr).values()))
        esaved = stats.t_interval(list(metric_by_seed(results, v, "energy_saved", thr).values()))
        lat: dict[int, list[float]] = {}
        for r in recs:
            for item in r.latency.cascade if r.latency else []:
                if item["threshold"] is None or math.isclose(item["threshold"], thr):
                    lat.setdefault(item["batch_size"], []).append(
                        1 - item["dynamic"]["median"] / item["full"]["median"]
                    )
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
    if math.isnan(iv.mean):
        return "n/a"
    if math.isnan(iv.low):
        return f"{iv.mean * scale:.{digits}f}"
    return f"{iv.mean * scale:.{digits}f} ± {iv.half_width * scale:.{digits}f}"


def _p(p: float) -> str:
    return "n/a" if math.isnan(p) else ("<0.001" if p < 0.001 else f"{p:.3f}")


def render(folders: Sequence[Path]) -> str:
    lines: list[str] = []
    all_claims: list[Claim] = []
    costs: list[dict[str, Any]] = []
    settings = []
    for folder in folders:
        res = load_results(folder)
        # the suite's name, or the folder's where they differ (two folders of one suite side by side)
        name = res.suite.name if res.suite and res.suite.name == folder.name else folder.name
        all_claims += claims_for(res, name)
        costs += cost_rows(res, name)
        overrides = sorted({o for r in res.records for o in r.config.get("overrides", [])})
        seeds = sorted({r.seed for r in res.records})
        settings.append(f"- `{folder}`: {len(res.records)} runs, seeds {seeds}, overrides {overrides or 'none'}")
    lines += [
        "## Claims",
        "",
        "Effect = mean paired difference over seeds (percentage points), 95 % t-interval, two-sided paired "
        "t-test, Holm-corrected over each dataset's rows.",
        "",
        "| dataset | claim | comparison | metric | effect (points) | 95 % CI | n | p | p (Holm) | verdict |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for c in all_claims:
        ci = "n/a" if math.isnan(c.low) else f"[{c.low:+.2f}, {c.high:+.2f}]"
        lines.append(
            f"| {c.dataset} | {c.claim} | {c.comparison} | {c.metric} | {c.diff:+.2f} | {ci} | {c.n} | "
            f"{_p(c.p)} | {_p(c.p_holm)} | {c.verdict} |"
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
        f"{costs[0]['energy_table'] if costs else ''}) | "
        + " | ".join(f"latency saved b{k[15:]} (%)" for k in lat_cols)
        + " |",
        "| --- " * (7 + len(lat_cols)) + "|",
    ]
    for r in costs:
        lines.append(
            f"| {r['dataset']} | {r['variant']} | {r['n']} | {_iv(r['accuracy'], digits=2)} | {_iv(r['early'])} | "
            f"{_iv(r['macs_saved'])} | {_iv(r['energy_saved'])} | "
            + " | ".join(_iv(r[k]) if k in r else "n/a" for k in lat_cols)
            + " |"
        )
    lines += ["", "## Settings", "", *settings, ""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        print("usage: python -m bench.study RESULTS_DIR [RESULTS_DIR ...]", file=sys.stderr)
        return 2
    print(render([Path(a) for a in args]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
