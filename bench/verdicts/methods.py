"""The field's early-exit methods side by side (results/METHODS.md): the claims of ``claims/methods.toml``, each
read against its paper's own comparator by the claims engine (:mod:`bench.verdicts.engine`), then one descriptive
leaderboard per results folder.

    bench methods results/methods_mnist results/methods_fashion --out results/METHODS.md

The leaderboard, per variant, mean and 95 % t-interval over seeds of: the **area** (the exact mean test accuracy
over the expected-MACs range the method covers), **accuracy at 50 % and 75 % of the base network's MACs**
(thresholds chosen on validation for that budget), **accuracy at the headline threshold**, **MACs saved** and
**energy** there, **anytime accuracy** (each exit alone, as the method predicts there: ZTW's ensembles) and the
**ECE** as the policy sees the logits. It describes; the claims test.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

from bench.analyse import stats
from bench.analyse.load import Results
from bench.config.plugins import NO_TRUST, FolderTrust
from bench.render.format import fmt_interval
from bench.results.record import RunRecord
from bench.verdicts import page
from bench.verdicts.engine import evaluate, read_claims


def _area(r: RunRecord) -> float:
    return float(r.cost_curve["area"]) if r.cost_curve else math.nan


def _budget_accuracy(value: float) -> Callable[[RunRecord], float]:
    def get(r: RunRecord) -> float:
        if r.budget is None:
            return math.nan
        for p in r.budget.points or []:
            if abs(p.budget - value) < 1e-9:
                return float(p.test_accuracy) if p.feasible else math.nan
        return math.nan

    return get


def _ece_mean(r: RunRecord) -> float:
    """Mean over exits of the test ECE the policy sees (after scaling when calibrated; NaN where a ZTW run measured
    it on its heads rather than the ensembles its policy decides on)."""
    c = r.calibration
    if c is None or (r.policy == "ztw-ensemble" and c.logits != "ensemble"):
        return math.nan
    values = c.ece_test_calibrated if c.ece_test_calibrated is not None else c.ece_test
    return float(sum(values) / len(values))


def _at_headline(field: str) -> Callable[[RunRecord], float]:
    def get(r: RunRecord) -> float:
        point = r.at(r.headline_threshold)
        if field == "energy":
            return float(point.energy_expected[r.energy_table])
        return float(getattr(point, field))

    return get


METRICS: dict[str, tuple[str, Callable[[RunRecord], float]]] = {
    "area": ("area (%)", _area),
    "acc@0.5": ("acc. at 50 % MACs (%)", _budget_accuracy(0.5)),
    "acc@0.75": ("acc. at 75 % MACs (%)", _budget_accuracy(0.75)),
    "ece": ("mean ECE (%)", _ece_mean),
}


def by_seed(results: Results, variant: str, get: Callable[[RunRecord], float]) -> dict[int, float]:
    values = {r.seed: get(r) for r in results.records_of(variant)}
    return {s: v for s, v in values.items() if not math.isnan(v)}


def _iv(values: dict[int, float], scale: float = 100, digits: int = 2) -> str:
    if not values:
        return "n/a"
    iv = stats.t_interval(list(values.values()))
    return fmt_interval(iv.mean, iv.low, iv.high, scale, digits)


def _anytime(results: Results, variant: str) -> str:
    recs = [r for r in results.records_of(variant) if r.exits is not None]
    if not recs:
        return "n/a"
    rows = [r.exits.policy_test_accuracy or r.exits.test_accuracy for r in recs if r.exits is not None]
    means = [100 * sum(col) / len(col) for col in zip(*rows)]
    return " / ".join(f"{m:.2f}" for m in means)


def _leaderboard(results: Results) -> list[str]:
    lines = [
        "| method | n | area (%) | acc. at 50 % MACs (%) | acc. at 75 % MACs (%) | acc. at t = "
        f"{results.headline:g} (%) | MACs saved (%) | energy ({results.energy_table()}, {results.energy_unit()}) | "
        "anytime acc. per exit (%) | mean ECE (%) |",
        "| --- " * 10 + "|",
    ]
    rows = []
    for variant in results.variants:
        area = by_seed(results, variant, _area)
        rows.append((-(sum(area.values()) / len(area)) if area else math.inf, variant, area))
    for _, variant, area in sorted(rows, key=lambda r: r[0]):
        n = len(results.records_of(variant))
        energy = by_seed(results, variant, _at_headline("energy"))
        lines.append(
            f"| {variant} | {n} | {_iv(area)} | {_iv(by_seed(results, variant, _budget_accuracy(0.5)))} | "
            f"{_iv(by_seed(results, variant, _budget_accuracy(0.75)))} | "
            f"{_iv(by_seed(results, variant, _at_headline('accuracy')))} | "
            f"{_iv(by_seed(results, variant, _at_headline('saved_vs_base')), digits=1)} | "
            f"{_iv(energy, scale=1, digits=0) if energy else 'n/a'} | {_anytime(results, variant)} | "
            f"{_iv(by_seed(results, variant, _ece_mean))} |"
        )
    return lines


def render(folders: Sequence[Path], trust: FolderTrust = NO_TRUST) -> str:
    """The markdown of results/METHODS.md: the claims of claims/methods.toml on these folders (the engine), what
    each variant is, and each folder's leaderboard."""
    claims = read_claims("methods")
    tables = evaluate(claims, list(folders), trust, strict=False)
    lines = [page.render(claims.page, tables).rstrip()]
    for table in tables:
        results = table.results
        dataset = results.records[0].dataset if results.records else "?"
        lines += [
            "",
            f"## Leaderboard: {table.folder.name} ({dataset})",
            "",
            LEADERBOARD_CAPTION,
            "",
            *_leaderboard(results),
        ]
    return "\n".join(lines) + "\n"


LEADERBOARD_CAPTION = (
    "Descriptive, not tested: mean ± 95 % t-interval half-width over seeds, sorted by area. Area: mean test accuracy "
    "over the expected-MACs range of the exact curve. Budget accuracies: thresholds chosen on validation for 50 / 75 "
    "% of base MACs (where the chosen points cost far less, these two columns are equal and are no equal-compute "
    "comparison: the claims above say so). Energy and MACs saved at the headline threshold. ECE: mean over exits, 15 "
    "bins, as the policy sees the logits (n/a where a run measured it on other logits)."
)
