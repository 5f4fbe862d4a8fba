"""The CI gate: noise passes, a real regression fails with a clear row, bad baselines are named."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from bench.check import BaselineError, compare_to_baseline, run_check
from bench.suite import CheckSpec

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
    assert "PASSED" in (out / "check.md").read_text()


def test_worse_operating_point_fails_with_a_clear_row(gate, tmp_path: Path) -> None:
    suite, baseline, out = gate
    md = tmp_path / "check.md"
    # threshold 1.0: nothing leaves early, so the savings of sum-p2 vanish (the exit head even costs extra)
    res = run_check(suite, baseline=baseline, out_dir=out, overrides=["check.threshold=1.0"], markdown=md,
                    console=quiet(), progress=False)  # fmt: skip
    assert not res.passed
    worse = [r for r in res.rows if r.status == "worse"]
    assert [(r.variant, r.metric) for r in worse] == [("sum-p2", "saved_vs_base")]
    assert worse[0].diff < -20
    text = md.read_text()
    assert "FAILED" in text and "WORSE" in text and "sum-p2" in text


def test_cli_exit_codes(gate, tmp_path: Path) -> None:
    suite, baseline, out = gate
    cmd = [
        sys.executable,
        "-m",
        "bench.cli",
        "check",
        str(suite),
        "--baseline",
        str(baseline),
        "--out",
        str(out),
        "--no-progress",
    ]
    assert subprocess.run(cmd, capture_output=True, text=True).returncode == 0
    worse = subprocess.run([*cmd, "--set", "check.threshold=1.0"], capture_output=True, text=True)
    assert worse.returncode == 1 and "FAILED" in worse.stdout
    missing = subprocess.run([*cmd[:6], str(tmp_path / "none.json"), *cmd[7:]], capture_output=True, text=True)
    assert missing.returncode == 2 and "not found" in missing.stderr and "--update" in missing.stderr


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "not valid JSON"),
        ('{"schema": 1}', "expected schema 1 with a 'variants' table"),
        ('{"schema": 1, "suite": "other", "variants": {}}', "is for suite 'other', not 'gate'"),
        ('{"schema": 1, "suite": "gate", "variants": {"v": {"seeds": {"0": {"accuracy": 1}}}}}', "lacks per-seed"),
    ],
)
def test_malformed_baseline(gate, tmp_path: Path, content: str, message: str) -> None:
    suite, _, out = gate
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    with pytest.raises(BaselineError, match=message):
        run_check(suite, baseline=bad, out_dir=out, console=quiet(), progress=False)


def test_committed_baselines_are_readable() -> None:
    from bench.check import read_baseline

    for name in ("smoke", "quick_mnist"):
        data = read_baseline(REPO / "results" / "baselines" / f"{name}.json", name)
        assert data["command"].startswith("bench check suites/")
        assert json.loads((REPO / "results" / "baselines" / f"{name}.json").read_text())["threshold"] == 0.6
