"""The study's page (bench study): the claims of claims/study.toml through the engine, and its descriptive tables."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from bench.analyse.load import load_results
from bench.verdicts.engine import evaluate_loaded, read_claims
from bench.verdicts.study import matched_rows, render

from .conftest import REPO

FIXTURE = REPO / "tests" / "fixtures" / "results_a"


def test_the_page_has_the_claims_and_the_descriptions() -> None:
    text = render([FIXTURE])
    assert text.startswith("# The source study, reproduced with statistics\n")
    assert "## results_a (digits, study_cnn)" in text and "| soft-beats-sum-p2 |" in text
    assert "## Cost view at t = 0.6" in text  # (no matched-share table: the fixture predates exact curves)
    # the fixture has no p1 variants: those rows are refused, not dropped
    line = next(x for x in text.splitlines() if x.startswith("| soft-beats-sum-p1 |"))
    assert "| untestable | no runs of soft-p1 in this folder |" in line


def test_two_folders_of_one_suite_are_told_apart_by_folder_name(tmp_path: Path) -> None:
    same, other = tmp_path / "a", tmp_path / "a_2ep"
    shutil.copytree(FIXTURE, same)
    shutil.copytree(FIXTURE, other)
    text = render([same, other])
    assert "## a (digits, study_cnn)" in text and "## a_2ep (digits, study_cnn)" in text


def test_construction_rows_stay_out_of_the_holm_family() -> None:
    results = load_results(FIXTURE)
    claims = dataclasses.replace(read_claims("study"))
    (table,) = evaluate_loaded(claims, [(FIXTURE, results)], strict=False)
    tested = [r for r in table.rows if r.tested]
    assert tested and all(not r.claim.kind == "construction" for r in tested)
    soft_sum = next(r for r in table.rows if r.claim.id == "soft-beats-sum-p2")
    assert soft_sum.steps == "54 vs 54" and soft_sum.compared.startswith("soft-p2 vs sum-p2")


def test_matched_shares_read_the_exact_curves() -> None:
    res = load_results(FIXTURE)
    for i, r in enumerate(res.records):  # pretend every run recorded its exact curve
        area = 0.5 + 0.01 * r.seed + (0.1 if r.variant == "sum-p2" else 0.0)
        curve = {
            "method": "exact",
            "points": 10,
            "area_range": [0.0, 1.0],
            "area": area,
            "matched": {"0.5": area, "0.8": area - 0.1, "0.9": area - 0.2},
        }
        res.records[i] = dataclasses.replace(r, curve=curve)
    rows = {r["variant"]: r for r in matched_rows(res, "fixture")}
    assert rows["sum-p2"]["at_0.8"].mean == pytest.approx(0.51)  # seeds 0, 1, 2: 0.6 + 0.01 * seed - 0.1
    (table,) = evaluate_loaded(read_claims("study"), [(FIXTURE, res)], strict=False)
    soft_sum = next(r for r in table.rows if r.claim.id == "soft-beats-sum-p2")
    assert soft_sum.estimate.mean == pytest.approx(-10.0) and soft_sum.exact  # equal differences: no t-test
    assert "exact curve" in soft_sum.notes
