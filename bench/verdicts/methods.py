"""The field's early-exit methods side by side: one leaderboard per results folder (results/METHODS.md).

    bench methods results/methods_mnist results/methods_fashion --out results/METHODS.md

Per folder (one dataset and backbone), per variant (method), mean and 95 % t-interval over seeds of:

* **area**: the exact mean test accuracy over the expected-MACs range the method covers, every threshold a
  breakpoint (``cost_curve`` of the run, :func:`bench.analyse.curves.exact_cost_curve`; x = expected MACs /
  base MACs). It describes the whole trade-off; no threshold is chosen with it.
* **accuracy at 50 % and 75 % of the base network's MACs**: thresholds chosen on the validation split for
  that budget (the suite's ``[budget]``), test accuracy there.
* **energy** per sample and **MACs saved** at the suite's headline threshold, and **anytime accuracy**: each
  exit's test accuracy with every sample through it, as the method predicts there (ZTW: its ensembles).

Each method is then compared with ``sum`` (MSDNet's sum of cross-entropies, the reference every paper
trains against) on area and on both budget accuracies: paired by seed, two-sided paired t-test, Holm
correction over all of a folder's tests. The last table sets each method's paper claim beside the
direction we measure: "agrees" only when the Holm-corrected test is significant in the claimed
direction, "disagrees" when it is significant the other way, "not significant" otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.analyse import stats
from bench.analyse.load import Results, load_results
from bench.render.format import fmt_interval, fmt_p
from bench.results.record import RunRecord

REFERENCE = "sum"
BUDGETS = (0.5, 0.75)
ALPHA = 0.05


@dataclass(frozen=True)
class Method:
    """What a variant of the methods suites is, and what its paper reported."""

    what: str
    paper: str
    claim: str  # what the paper reported, in words
    metric: str  # the metric its claim is read on ("area", "acc@0.5", "acc@0.75", "ece")
    direction: int  # +1: the method should be above sum on that metric; -1: below; 0: no directional claim


METHODS: dict[str, Method] = {
    "sum": Method("sum of exit cross-entropies, all weights 1 (joint regime)", "Huang et al. 2018 (MSDNet)",
                  "the reference", "area", 0),
    "soft": Method("soft cascade: -log of the renormalised product of exit softmaxes", "the source study",
                   "soft gives a better trade-off than sum", "area", +1),
    "firm-gated": Method("exit-probability mixture with an expected-cost penalty, pre-trained with sum", "ours",
                         "none (our generalisation of the study's firm cascade)", "area", 0),
    "sdn": Method("sum with SDN's exit weights, growing over training", "Kaya et al. 2019",
                  "weighted training gives better early exits than the plain network; vs equal weights: none",
                  "area", 0),
    "distill": Method("self-distillation from the final exit, adaptive temperature", "Phuong & Lampert 2019",
                      "distillation improves the early exits over cross-entropy alone", "area", +1),
    "sum-ge": Method("sum with gradient equilibrium", "Li et al. 2019 (IMTA)",
                     "gradient equilibrium improves the classifiers' accuracy over plain joint training", "area", +1),
    "distill-ge": Method("distill with gradient equilibrium", "Li et al. 2019 + Phuong & Lampert 2019",
                         "both together improve over plain joint training", "area", +1),
    "disjoint": Method("backbone first, then the exit heads on the frozen backbone", "Kubaty et al. 2024",
                       "disjoint training gives the weakest early exits of the three regimes", "area", -1),
    "mixed": Method("backbone first, then everything together", "Kubaty et al. 2024",
                    "the mixed regime beats joint training", "area", +1),
    "sum-calibrated": Method("sum, exits temperature-scaled on validation", "Guo et al. 2017",
                             "temperature scaling lowers the calibration error (accuracy unchanged)", "ece", -1),
    "ztw": Method("cascading heads on the frozen backbone + geometric ensemble of exits", "Wolczyk et al. 2021",
                  "ZTW improves the accuracy / cost trade-off over SDN-style heads", "area", +1),
}  # fmt: skip


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
    """Mean over exits of the test ECE the policy sees (after scaling when calibrated)."""
    c = r.calibration
    if c is None:
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
TESTED = ("area", "acc@0.5", "acc@0.75")


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


@dataclass
class Comparison:
    variant: str
    metric: str
    test: stats.PairedTest
    p_holm: float = math.nan

    @property
    def verdict(self) -> str:
        if self.test.n < 2:
            return "n/a (fewer than 2 paired seeds)"
        if self.test.note.startswith("exact"):
            return "no difference (exact)" if self.test.diff.mean == 0 else "exact difference"
        if self.metric not in TESTED:  # descriptive rows: read on the 95 % interval, not tested
            d = self.test.diff
            return "lower (interval)" if d.high < 0 else "higher (interval)" if d.low > 0 else "interval includes 0"
        if math.isnan(self.p_holm) or self.p_holm >= ALPHA:
            return "not significant"
        return "higher" if self.test.diff.mean > 0 else "lower"


def compare_with_reference(results: Results) -> list[Comparison]:
    """Every method against ``sum`` on the tested metrics, Holm-corrected together."""
    if REFERENCE not in results.variants:
        return []
    out = []
    for variant in results.variants:
        records = results.records_of(variant)
        if variant == REFERENCE or all(r.exits is None or len(r.exits.names) < 2 for r in records):
            continue  # the reference itself, and networks without early exits (base)
        for metric in (*TESTED, "ece"):
            get = METRICS[metric][1]
            test = stats.paired_test(by_seed(results, variant, get), by_seed(results, REFERENCE, get))
            if test.n:
                out.append(Comparison(variant, metric, test))
    tested = [c for c in out if c.metric in TESTED and c.test.statistic_defined and not c.test.note]
    for c, p in zip(tested, stats.holm([c.test.p_value for c in tested])):
        c.p_holm = p
    return out


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


def _comparisons(comparisons: Sequence[Comparison]) -> list[str]:
    lines = ["| method | metric | difference vs sum (points) | 95 % CI | n | p | p (Holm) | result |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for c in comparisons:
        d = c.test.diff
        ci = "n/a" if math.isnan(d.low) else f"[{100 * d.low:+.2f}, {100 * d.high:+.2f}]"
        p = "exact" if c.test.note.startswith("exact") else fmt_p(c.test.p_value)
        holm = "untested" if c.metric == "ece" and math.isnan(c.p_holm) else fmt_p(c.p_holm)
        lines.append(f"| {c.variant} | {METRICS[c.metric][0]} | {100 * d.mean:+.2f} | {ci} | {c.test.n} | {p} | "
                     f"{holm} | {c.verdict} |")  # fmt: skip
    return lines


def _claims(comparisons: Sequence[Comparison], variants: Sequence[str]) -> list[str]:
    lines = ["| method | paper | what it reported | read on | what we measure vs sum | agrees? |",
             "| --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for variant in variants:
        m = METHODS.get(variant)
        if m is None or variant == REFERENCE:
            continue
        c = next((c for c in comparisons if c.variant == variant and c.metric == m.metric), None)
        if c is None:
            lines.append(f"| {variant} | {m.paper} | {m.claim} | {METRICS[m.metric][0]} | n/a | n/a |")
            continue
        measured = f"{100 * c.test.diff.mean:+.2f} points ({c.verdict})"
        if m.direction == 0:
            agrees = "no directional claim"
        elif c.test.n < 2:
            agrees = c.verdict  # nothing to read, on an interval or a test
        elif c.metric == "ece":  # calibration: read on the interval (the ECE is a description, not Holm-tested)
            high = c.test.diff.high
            agrees = "agrees" if high < 0 else ("disagrees" if c.test.diff.low > 0 else "not significant")
        elif c.verdict in ("higher", "lower"):
            agrees = "agrees" if (c.verdict == "higher") == (m.direction > 0) else "disagrees"
        else:
            agrees = c.verdict
        lines.append(f"| {variant} | {m.paper} | {m.claim} | {METRICS[m.metric][0]} | {measured} | {agrees} |")
    return lines


def _settings(results: Results, folder: Path) -> list[str]:
    overrides = sorted({o for r in results.records for o in r.config.get("overrides", [])})
    seeds = sorted({r.seed for r in results.records})
    commits = sorted({str(r.provenance.get("git_commit", "?"))[:7] for r in results.records})
    lines = [f"- `{folder}`: {len(results.records)} runs of {len(results.variants)} methods, seeds {seeds}, "
             f"overrides {', '.join(f'`{o}`' for o in overrides) or 'none'}, code {', '.join(commits)}"]  # fmt: skip
    short = [v for v in results.variants if len(results.records_of(v)) < stats.MIN_SEEDS]
    if short:
        lines.append(f"- fewer than {stats.MIN_SEEDS} seeds so far: {', '.join(short)} (runs resume; intervals are "
                     "wide and tests have little power)")  # fmt: skip
    if results.failed:
        lines.append(f"- failed runs: {', '.join(sorted({f'{r.variant} seed {r.seed}' for r in results.failed}))}")
    return lines


def render(folders: Sequence[Path]) -> str:
    """The markdown of results/METHODS.md for these results folders."""
    lines = ["# Early-exit training methods side by side", "", __doc__.split("\n\n", 2)[2].strip(), ""]
    lines += ["## Methods", "", "| method | what | paper |", "| --- | --- | --- |"]
    lines += [f"| {name} | {m.what} | {m.paper} |" for name, m in METHODS.items()]
    for folder in folders:
        results = load_results(folder)
        dataset = results.records[0].dataset if results.records else "?"
        title = results.suite.name if results.suite else folder.name
        comparisons = compare_with_reference(results)
        lines += ["", f"## {title} ({dataset})", "", *_settings(results, folder), "",
                  "### Leaderboard (by area)", "",
                  "Mean ± 95 % t-interval half-width over seeds. Area: mean test accuracy over the expected-MACs "
                  "range of the exact curve. Budget accuracies: thresholds chosen on validation. Energy and "
                  "MACs saved at the headline threshold. ECE: mean over exits, 15 bins, as the policy sees the "
                  "logits.", "", *_leaderboard(results), "",
                  "### Each method against sum", "",
                  "Paired by seed; two-sided paired t-test; Holm over the area and budget rows of this dataset "
                  "(the ECE rows are descriptive).", "", *_comparisons(comparisons), "",
                  "### What each paper reported, and what we see", "",
                  *_claims(comparisons, results.variants)]  # fmt: skip
    return "\n".join(lines) + "\n"
