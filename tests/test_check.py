"""The CI gate: noise passes, a real regression fails with a clear row, bad baselines are named."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from rich.console import Console

from bench.config.suite import CheckSpec
from bench.verdicts.check import BaselineError, compare_to_baseline, run_check

from .conftest import REPO


def doc(values: dict[str, list[tuple[float, float]]]) -> dict:
    """{variant: [(accuracy, saved) per seed]} -> baseline-shaped document."""
    return {
        "variants": {
            v: {"seeds": {str(i): {"accuracy": a, "saved_vs_base": s} for i, (a, s) in enumerate(rows)}}
            for v, rows in values.items()
        }
    }


SPEC = CheckSpec(max_accuracy_drop=0.5, max_savings_drop=2.0)


def status(rows, variant: str, metric: str) -> str:
    return next(r.status for r in rows if r.variant == variant and r.metric == metric)


def test_identical_results_are_unchanged() -> None:
    base = doc({"v": [(0.95, 0.30), (0.96, 0.31), (0.94, 0.29)]})
    rows = compare_to_baseline(base, base, SPEC)
    assert {r.status for r in rows} == {"unchanged"}


def test_noise_within_margin_does_not_fail() -> None:
    base = doc({"v": [(0.950, 0.300), (0.960, 0.310), (0.940, 0.290)]})
    cur = doc({"v": [(0.947, 0.305), (0.962, 0.296), (0.938, 0.299)]})  # +-0.3 points of accuracy
    rows = compare_to_baseline(cur, base, SPEC)
    assert not any(r.status == "worse" for r in rows)


def test_consistent_drop_beyond_margin_fails() -> None:
    base = doc({"v": [(0.95, 0.30), (0.96, 0.31), (0.94, 0.29)], "w": [(0.9, 0.2)] * 3})
    cur = doc({"v": [(0.95, 0.20), (0.96, 0.215), (0.94, 0.19)], "w": [(0.9, 0.2)] * 3})  # savings -10 points
    rows = compare_to_baseline(cur, base, SPEC)
    assert status(rows, "v", "saved_vs_base") == "worse"
    assert status(rows, "v", "accuracy") == "unchanged" and status(rows, "w", "accuracy") == "unchanged"


def test_drop_inside_margin_is_not_a_failure_even_if_consistent() -> None:
    base = doc({"v": [(0.95, 0.30), (0.96, 0.31), (0.94, 0.29)]})
    cur = doc({"v": [(0.948, 0.30), (0.958, 0.31), (0.938, 0.29)]})  # -0.2 points, every seed
    assert status(compare_to_baseline(cur, base, SPEC), "v", "accuracy") == "unchanged"


def test_missing_variant_fails_and_single_seed_rule() -> None:
    base = doc({"v": [(0.95, 0.30)], "gone": [(0.9, 0.1)]})
    cur = doc({"v": [(0.94, 0.30)]})  # -1 point with one seed: beyond the 0.5 margin
    rows = compare_to_baseline(cur, base, SPEC)
    assert status(rows, "gone", "accuracy") == "missing"
    assert status(rows, "v", "accuracy") == "worse" and status(rows, "v", "saved_vs_base") == "unchanged"


GATE_SUITE = """
[suite]
name = "gate"
seeds = [0, 1, 2]

[dataset]
name = "digits"

[model]
channels = [8, 16, 16]
hidden = 32

[train]
epochs = 3
lr = 0.05
momentum = 0.9

[evaluation]
latency = false

[check]
max_accuracy_drop = 2.0
max_savings_drop = 2.0

[[variants]]
name = "base"
loss = "base"

[[variants]]
name = "sum-p2"
loss = "sum"
exits = ["p2"]
"""


@pytest.fixture(scope="module")
def gate(tmp_path_factory) -> tuple[Path, Path, Path]:
    d = tmp_path_factory.mktemp("gate")
    suite = d / "gate.toml"
    suite.write_text(GATE_SUITE)
    baseline = d / "baselines" / "gate.json"
    res = run_check(suite, baseline=baseline, out_dir=d / "out", update=True, console=quiet(), progress=False)
    assert res.updated and baseline.is_file()
    return suite, baseline, d / "out"


def quiet() -> Console:
    return Console(file=open("/dev/null", "w"))


def test_unchanged_rerun_passes(gate) -> None:
    suite, baseline, out = gate
    res = run_check(suite, baseline=baseline, out_dir=out, console=quiet(), progress=False)
    assert res.passed and {r.status for r in res.rows} == {"unchanged"}
    text = (out / "check.md").read_text()
    assert "PASSED" in text and "detectable drop" in text
    # identical reruns: zero spread, so the detectable drop is the margin itself (2 points here)
    assert (
        "Gate strength (80 % power, alpha 0.05 split over the tested rows): the test detects accuracy drops of 2.00"
        in text
    )


def test_worse_operating_point_fails_with_a_clear_row(gate, tmp_path: Path) -> None:
    suite, baseline, out = gate
    md = tmp_path / "check.md"
    # threshold 1.0: nothing leaves early, so the savings of sum-p2 vanish (the exit head even costs extra)
    res = run_check(
        suite,
        baseline=baseline,
        out_dir=out,
        overrides=["check.threshold=1.0"],
        markdown=md,
        console=quiet(),
        progress=False,
    )
    assert not res.passed
    worse = [r for r in res.rows if r.status == "worse"]
    assert [(r.variant, r.metric) for r in worse] == [("sum-p2", "saved_vs_base")]
    assert worse[0].diff < -20
    text = md.read_text()
    assert "FAILED" in text and "WORSE" in text and "sum-p2" in text


def test_cli_exit_codes(gate, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """bench check's exit codes through bench.cli.main in-process: 0 pass, 1 a gate failed, 2 a usage error."""
    from bench.cli import main

    suite, baseline, out = gate
    args = ["check", str(suite), "--baseline", str(baseline), "--out", str(out), "--no-progress"]
    assert main(args) == 0
    capsys.readouterr()
    assert main([*args, "--set", "check.threshold=1.0"]) == 1
    assert "FAILED" in capsys.readouterr().out
    assert main([*args[:3], str(tmp_path / "none.json"), *args[4:]]) == 2
    err = capsys.readouterr().err
    assert "not found" in err and "--update" in err


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "not valid JSON"),
        ('{"schema": 2}', "expected schema 1 with a 'variants' table"),
        ('{"schema": 1}', r"bad\.json: suite: missing"),
        ('{"schema": 1, "suite": "other", "threshold": 0.6, "variants": {}}', "is for suite 'other', not 'gate'"),
        (
            '{"schema": 1, "suite": "gate", "threshold": 0.6, "variants": {"v": {"seeds": {"0": {"accuracy": 1}}}}}',
            r"variants\.v\.seeds\.0: lacks the number\(s\) saved_vs_base",
        ),
        ('{"schema": 1, "suite": "gate", "threshold": NaN, "variants": {}}', "threshold: expected a finite number"),
    ],
)
def test_malformed_baseline(gate, tmp_path: Path, content: str, message: str) -> None:
    suite, _, out = gate
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    with pytest.raises(BaselineError, match=message):
        run_check(suite, baseline=bad, out_dir=out, console=quiet(), progress=False)


def test_committed_baselines_are_readable() -> None:
    from bench.verdicts.baseline import read_baseline

    for name in ("smoke", "quick_mnist"):
        data = read_baseline(REPO / "results" / "baselines" / f"{name}.json", name)
        assert data["command"].startswith("bench check suites/")
        assert json.loads((REPO / "results" / "baselines" / f"{name}.json").read_text())["threshold"] == 0.6


def test_detectable_drop_by_hand() -> None:
    from scipy import stats as st

    from bench.verdicts.check import detectable_drop

    # m + (t(0.95, 3) + t(0.8, 3)) * s / sqrt(4) with s = 1: 0.5 + (2.3534 + 0.9785) / 2
    assert detectable_drop(0.5, 1.0, 4, 0.05) == pytest.approx(0.5 + (2.353363 + 0.978472) / 2, abs=1e-5)
    assert detectable_drop(0.5, 1.0, 4, 0.05) == pytest.approx(0.5 + (st.t.ppf(0.95, 3) + st.t.ppf(0.8, 3)) / 2)
    assert detectable_drop(0.5, 0.0, 3, 0.05) == 0.5  # no spread: the margin itself
    assert math.isnan(detectable_drop(0.5, 1.0, 1, 0.05))


def test_hard_limit_fails_a_large_drop_that_two_noisy_seeds_cannot_prove() -> None:
    # issue 18's case: n = 2, base accuracy -16.4 points on average, too noisy for the t-test
    base = doc({"base": [(0.95, 0.0), (0.96, 0.0)]})
    cur = doc({"base": [(0.95 - 0.300, 0.0), (0.96 - 0.028, 0.0)]})
    rows = compare_to_baseline(cur, base, SPEC)
    row = next(r for r in rows if r.metric == "accuracy")
    assert row.diff == pytest.approx(-16.4) and row.p_worse > 0.05  # not significant ...
    assert row.status == "worse: hard limit" and row.fails  # ... but beyond 5 points: fails anyway
    assert row.detectable > 16.4  # and the row says the test could not have found it
    lenient = CheckSpec(max_accuracy_drop=0.5, max_savings_drop=2.0, hard_accuracy_drop=20.0)
    assert (
        next(r for r in compare_to_baseline(cur, base, lenient) if r.metric == "accuracy").status == "not significant"
    )


def test_latency_gate_is_noise_aware() -> None:
    from bench.verdicts.latency_gate import latency_rows

    def with_latency(values: dict[str, list[float]]) -> dict:
        d = doc({v: [(0.9, 0.3)] * len(lat) for v, lat in values.items()})
        for v, lat in values.items():
            for i, x in enumerate(lat):
                d["variants"][v]["seeds"][str(i)]["latency_s_per_sample"] = {"1": 2 * x, "256": x}
        return d

    base = with_latency({"slow": [1e-4, 1.1e-4, 0.9e-4], "noisy": [1e-4, 1e-4, 1e-4], "fine": [1e-4] * 3})
    cur = with_latency(
        {"slow": [1.5e-4, 1.62e-4, 1.38e-4], "noisy": [2e-4, 0.7e-4, 1.4e-4], "fine": [1.1e-4, 1.05e-4, 1.12e-4]}
    )
    spec = CheckSpec(max_latency_ratio=1.25)
    rows = {r.variant: r for r in latency_rows(cur, base, spec)}
    assert rows["slow"].batch == 256 and rows["slow"].ratio == pytest.approx(1.5, rel=0.01)
    assert rows["slow"].status == "slower" and rows["slow"].fails
    assert rows["noisy"].ratio > 1.25 and rows["noisy"].low < 1 and rows["noisy"].status == "ok"  # within noise
    assert rows["fine"].status == "ok"
    assert latency_rows(cur, base, SPEC) == []  # off by default
    # a second runtime is gated on its own
    for d, scale in ((base, 1.0), (cur, 3.0)):
        for v in d["variants"].values():
            for entry in v["seeds"].values():
                entry["latency_onnxruntime_s_per_sample"] = {"256": scale * 1e-5}
    both = latency_rows(cur, base, spec)
    ort = {r.variant: r for r in both if r.runtime == "onnxruntime"}
    assert {r.runtime for r in both} == {"eager", "onnxruntime"} and ort["fine"].ratio == pytest.approx(3.0)
    assert ort["fine"].status == "slower"


def test_exact_differences_are_not_tested() -> None:
    """A difference that is the same on every seed has no spread: it is compared with the margin as it is,
    shown as 'exact' and kept out of Holm (it was a p of 0, 'significant', for a -0.03 point change)."""
    from bench.verdicts.check import rows_frame

    exact = doc({"e": [(0.5, 0.25), (0.75, 0.25), (0.25, 0.25)]})
    minus = doc({"e": [(0.5 - 0.0625, 0.25), (0.75 - 0.0625, 0.25), (0.25 - 0.0625, 0.25)]})  # -6.25 points
    (acc, saved) = compare_to_baseline(minus, exact, SPEC)
    assert acc.exact and math.isnan(acc.p_worse) and acc.status == "worse" and acc.fails
    assert saved.exact and saved.status == "unchanged"
    frame = rows_frame([acc, saved])
    assert list(frame["p(worse) Holm"]) == ["exact", "exact"]


GATE_CLAIM = """
[page]
title = "gate"

[[claims]]
id = "exit-saves-macs"
source = { paper = "ours" }
statement = "the exit at p2 saves MACs against the base network"
variant = "sum-p2"
against = "base"
metric = "macs_saved"
threshold = THRESHOLD
"""


def test_a_claim_that_held_must_still_hold(gate, tmp_path: Path) -> None:
    """--claims: the baseline records each row's verdict; a row that agreed and no longer does fails the gate (here
    the same claim read where nothing leaves early: at t = 1 the exit head only adds MACs)."""
    suite, _, out = gate
    baseline = tmp_path / "b.json"
    claims = tmp_path / "claims.toml"
    claims.write_text(GATE_CLAIM.replace("THRESHOLD", "0.6"))
    kw = {"out_dir": out, "console": quiet(), "progress": False, "claims": str(claims)}
    assert run_check(suite, baseline=baseline, update=True, **kw).updated
    recorded = json.loads(baseline.read_text())["claims"]
    assert recorded["file"] == str(claims) and recorded["verdicts"]["exit-saves-macs"]["verdict"] == "agrees"
    res = run_check(suite, baseline=baseline, **kw)
    assert res.passed and [c.current for c in res.claims] == ["agrees"]
    claims.write_text(GATE_CLAIM.replace("THRESHOLD", "1.0"))
    res = run_check(suite, baseline=baseline, **kw)
    assert not res.passed and [(c.key, c.baseline, c.current) for c in res.claims] == [
        ("exit-saves-macs", "agrees", "disagrees")
    ]
    assert "| exit-saves-macs | agrees | disagrees |" in res.markdown and "FAILS" in res.markdown
    with pytest.raises(BaselineError, match="holds no verdicts of claims"):
        run_check(suite, baseline=gate[1], **kw)
