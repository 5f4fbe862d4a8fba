"""The study-claims table: verdict rules and a run on the committed fixtures."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from bench.analyse.load import load_results
from bench.analyse.stats import holm
from bench.verdicts.study import Claim, _verdicts, claims_for, matched_rows, render, tradeoff_auc

from .conftest import REPO


def claim(claim: str, comparison: str, metric: str, diff: float, p_holm: float) -> Claim:
    return Claim("d", claim, comparison, metric, diff, diff - 1, diff + 1, 3, p_holm, p_holm)


def test_verdicts() -> None:
    rows = [
        claim("1 trade-off", "a vs b", "accuracy-vs-early AUC", +2.0, 0.01),
        claim("1 trade-off", "c vs d", "accuracy-vs-early AUC", -3.0, 0.01),
        claim("2 p2 beats p1", "x", "accuracy", +1.0, 0.2),
        claim("4 early rises with lambda", "z", "early_share", -5.0, 0.01),
    ]
    _verdicts(rows)
    assert [r.verdict for r in rows] == ["confirmed", "refuted", "not significant", "refuted"]


def test_tradeoff_auc_by_hand() -> None:
    # early share 0 -> accuracy 0.9, 0.5 -> 0.8, 1 -> 0.4: trapezoids 0.5 * 0.85 + 0.5 * 0.6 = 0.725
    points = [SimpleNamespace(threshold=t, early_share=e, accuracy=a)
              for t, e, a in ((1.0, 0.0, 0.9), (0.5, 0.5, 0.8), (0.0, 1.0, 0.4))]  # fmt: skip
    assert tradeoff_auc(SimpleNamespace(thresholds=points)) == pytest.approx(0.725)
    # the sweep does not reach 100 % early
    assert math.isnan(tradeoff_auc(SimpleNamespace(thresholds=points[:2])))


def test_claims_on_fixture_results() -> None:
    res = load_results(REPO / "tests" / "fixtures" / "results_a")
    claims = claims_for(res, "fixture")
    kinds = {c.claim for c in claims}
    assert {"1 trade-off", "3 early falls with t", "4 early rises with lambda"} <= kinds
    early = [c for c in claims if c.claim.startswith("3")]
    assert all(c.diff >= 0 for c in early)  # early exits can only fall as t rises (max-prob)
    text = render([REPO / "tests" / "fixtures" / "results_a"])
    assert "## Claims" in text and "## Cost view at t = 0.6" in text and "firm-gated-p2" in text


def test_two_folders_of_one_suite_are_told_apart_by_folder_name(tmp_path) -> None:
    import shutil

    src = REPO / "tests" / "fixtures" / "results_a"
    suite = load_results(src).suite
    assert suite is not None
    same = tmp_path / suite.name
    other = tmp_path / f"{suite.name}_2ep"
    shutil.copytree(src, same)
    shutil.copytree(src, other)
    text = render([same, other])
    claims = [line for line in text.splitlines() if "| 1 trade-off |" in line]
    assert {line.split("|")[1].strip() for line in claims} == {suite.name, f"{suite.name}_2ep"}


def test_study_rows_state_steps_and_leave_construction_out_of_holm() -> None:
    res = load_results(REPO / "tests" / "fixtures" / "results_a")
    claims = claims_for(res, "fixture")
    by = {c.comparison: c for c in claims}
    gated = next(c for c in claims if c.comparison.startswith("firm-gated-p2") and c.claim.startswith("1"))
    assert gated.steps == "108 vs 54"  # pre-training + fine-tuning vs sum, stated in the row
    early = [c for c in claims if c.claim.startswith("3")]
    assert early and all(not c.tested and math.isnan(c.p_holm) for c in early)
    assert {c.verdict for c in early} == {"true by construction (max-prob)"}
    tested = [c for c in claims if c.tested]
    assert [c.p_holm for c in tested] == pytest.approx(holm([c.p for c in tested]))
    assert "sum-p2 vs base" in by and by["sum-p2 vs base"].claim == "5 cascade vs base"
    assert by["sum-p2 vs base"].metric == "accuracy"


def test_at_chance_rows_are_not_verdicts_on_the_claim() -> None:
    rows = [
        claim("1 trade-off", "firm vs sum", "area", -40.0, 0.001),
        claim("4 early rises with lambda", "firm: 1 vs 0.2", "early_share", +1.0, 0.5),
    ]
    for r in rows:
        r.at_chance = "firm-p1[lambda=0.6]"
    _verdicts(rows)
    assert rows[0].verdict == "not reproduced: firm-p1[lambda=0.6]'s exit at chance"
    assert rows[1].verdict == "untestable: firm-p1[lambda=0.6]'s exit at chance"


def test_exact_area_replaces_the_grid_when_runs_recorded_curves(tmp_path) -> None:
    import dataclasses

    res = load_results(REPO / "tests" / "fixtures" / "results_a")
    for i, r in enumerate(res.records):  # pretend every run recorded its exact curve
        area = 0.5 + 0.01 * r.seed + (0.1 if r.variant == "sum-p2" else 0.0)
        curve = {"method": "exact", "points": 10, "area_range": [0.0, 1.0], "area": area,
                 "matched": {"0.5": area, "0.8": area - 0.1, "0.9": area - 0.2}}  # fmt: skip
        res.records[i] = dataclasses.replace(r, curve=curve)
    claims = claims_for(res, "fixture")
    soft_sum = next(c for c in claims if c.comparison == "soft-p2 vs sum-p2")
    assert soft_sum.metric == "exact area, early 0-100 %"
    assert soft_sum.diff == pytest.approx(-10.0) and soft_sum.note.startswith("exact")  # equal differences
    rows = {r["variant"]: r for r in matched_rows(res, "fixture")}
    assert rows["sum-p2"]["at_0.8"].mean == pytest.approx(0.51)  # seeds 0, 1, 2: 0.6 + 0.01 * seed - 0.1
