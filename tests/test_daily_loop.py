"""Issue 18, the researcher's daily loop: --only, the shared checkpoint cache, progress, compare, check."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench.plan import SelectionError, expand_runs, select_variants
from bench.report import write_report
from bench.runner import run_suite
from bench.store import ResultStore
from bench.suite import load_suite

from .conftest import REPO

SWEEP = """
[suite]
name = "loop"
seeds = [0]

[dataset]
name = "digits"
train_size = 200

[model]
channels = [4, 4, 4]
hidden = 8

[train]
epochs = 1
lr = 0.05
momentum = 0.9

[evaluation]
thresholds = [0.0, 0.6, 1.0]
latency = false

[[variants]]
name = "base"
loss = "base"

[[variants]]
name = "sum-p1"
loss = "sum"
exits = ["p1"]

[[variants]]
name = "firm-p1"
loss = "firm"
exits = ["p1"]
pretrain_epochs = 1
sweep = { "loss_options.lambda" = [0.1, 0.2] }
"""


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    p = tmp_path / "loop.toml"
    p.write_text(SWEEP)
    return p


def quiet(path: Path, out: Path, **kw):
    return run_suite(path, out_dir=out, progress=False, log=lambda s: None, **kw)


def test_select_variants_by_name_sweep_point_and_glob(sweep: Path) -> None:
    runs = expand_runs(load_suite(sweep))
    names = [(r.variant, r.variant_base) for r in runs]
    labels = {r.variant for r in runs}
    assert labels == {"base", "sum-p1", "firm-p1[lambda=0.1]", "firm-p1[lambda=0.2]"}
    assert select_variants(names, []) == labels
    assert select_variants(names, ["firm-p1"]) == {"firm-p1[lambda=0.1]", "firm-p1[lambda=0.2]"}
    assert select_variants(names, ["firm-p1[lambda=0.2]"]) == {"firm-p1[lambda=0.2]"}
    assert select_variants(names, ["*-p1", "base"]) == {"base", "sum-p1", "firm-p1[lambda=0.1]", "firm-p1[lambda=0.2]"}
    assert select_variants(names, ["s*"]) == {"sum-p1"}
    with pytest.raises(
        SelectionError, match=r"--only 'sum-p2' matches no variant \(did you mean 'sum-p1'\?\); variants: base"
    ):
        select_variants(names, ["sum-p2"])


def test_run_only_runs_the_selection_and_report_only_writes_a_subset(sweep: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    s = quiet(sweep, out, only=["firm-p1[lambda=0.2]"])
    # the selected run only; its base pre-training is trained as a checkpoint, not as a run
    assert (s.total, s.done) == (1, 1)
    assert [r.variant for r in ResultStore(out).iter_runs()] == ["firm-p1[lambda=0.2]"]
    s = quiet(sweep, out, only=["base", "sum-*"])
    assert (s.total, s.done) == (2, 2)
    variants = sorted(r.variant for r in ResultStore(out).iter_runs())
    assert variants == ["base", "firm-p1[lambda=0.2]", "sum-p1"]
    report = write_report(out, log=lambda s: None, only=["sum-p1", "base"])
    assert report == out / "subsets" / "sum-p1+base" / "report.md"
    text = report.read_text()
    assert "Variants selected with --only sum-p1 base: base, sum-p1." in text
    assert "firm-p1" not in text
    main_csv = (report.parent / "tables" / "main.csv").read_text()
    assert "sum-p1" in main_csv and "firm" not in main_csv
    assert not (out / "report.md").exists()  # the full report is not overwritten by a subset


def test_cli_only_errors_name_the_pattern(sweep: Path, tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "bench.cli", "cost", str(sweep), "--only", "firm-p3"]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode == 2
    assert "--only 'firm-p3' matches no variant (did you mean 'firm-p1" in res.stderr
    ok = subprocess.run([*cmd[:-1], "sum-p1"], capture_output=True, text=True, cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "sum-p1: exits ['p1']" in ok.stdout and "base:" not in ok.stdout
    assert REPO.is_dir()
