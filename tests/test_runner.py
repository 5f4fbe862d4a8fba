"""The runner: resume, reuse of pre-training, atomic files, failures, the CLI end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import bench.execute.runner as runner
import bench.execute.training as training
from bench.analyse.tables import RATIO
from bench.execute.runner import run_suite
from bench.render.report import write_report
from bench.results.store import ResultStore, atomic_write_json

from .conftest import REPO
from .tiny import TINY


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    p = tmp_path / "tiny.toml"
    p.write_text(TINY)
    return p


@pytest.fixture
def count_trainings(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real = training.train

    def counting(model, loss_fn, *a, **k):
        calls.append(type(loss_fn).__name__)
        return real(model, loss_fn, *a, **k)

    monkeypatch.setattr(training, "train", counting)
    return calls


def run(path: Path, out: Path, **kw) -> runner.RunSummary:
    return run_suite(path, out_dir=out, progress=False, log=lambda s: None, **kw)


def test_resume_skips_completed_and_firm_reuses_base(tiny: Path, tmp_path: Path, count_trainings: list[str]) -> None:
    out = tmp_path / "out"
    s1 = run(tiny, out)
    assert (s1.total, s1.done, s1.skipped, s1.failed) == (4, 4, 0, [])
    # base on 2 seeds + firm on 2 seeds; firm's base pre-training is the base run's checkpoint.
    assert sorted(count_trainings) == ["BaseLoss", "BaseLoss", "FirmCascadeLoss", "FirmCascadeLoss"]
    count_trainings.clear()
    s2 = run(tiny, out)
    assert (s2.done, s2.skipped) == (0, 4) and count_trainings == []
    s3 = run(tiny, out, force=True)
    assert s3.done == 4 and len(count_trainings) == 4
    records = list(ResultStore(out).iter_runs())
    firm = [r for r in records if r.loss == "firm"]
    base = {r.seed: r for r in records if r.loss == "base"}
    for r in firm:  # total steps count the pre-training
        assert r.training.total_steps == r.training.steps + base[r.seed].training.steps


def test_seed_selects_runs_without_changing_keys(tiny: Path, tmp_path: Path, count_trainings: list[str]) -> None:
    out = tmp_path / "out"
    s1 = run(tiny, out, seeds=[1])
    assert (s1.total, s1.done) == (2, 2) and {r.seed for r in ResultStore(out).iter_runs()} == {1}
    s2 = run(tiny, out)  # the whole suite later: seed 1 is found under the same keys
    assert (s2.total, s2.done, s2.skipped) == (4, 2, 2)
    with pytest.raises(runner.SuiteError, match=r"--seed 7 is not one of the suite's seeds \[0, 1\]"):
        run(tiny, out, seeds=[7])


def test_evaluation_change_reuses_the_checkpoint(tiny: Path, tmp_path: Path, count_trainings: list[str]) -> None:
    out = tmp_path / "out"
    run(tiny, out)
    count_trainings.clear()
    s = run(tiny, out, overrides=["evaluation.thresholds=[0.0, 0.5, 0.6, 1.0]"])
    assert s.done == 4 and count_trainings == []  # new run keys, same train keys


def test_retime_evaluates_again_from_checkpoints_and_never_trains(
    tiny: Path, tmp_path: Path, count_trainings: list[str]
) -> None:
    out = tmp_path / "out"
    with pytest.raises(runner.SuiteError, match=r"--retime: no checkpoint for base seed 0, base seed 1, firm-p2"):
        run(tiny, out, retime=True)  # nothing trained yet: an error before anything runs
    assert not (out / "runs").exists() and count_trainings == []
    run(tiny, out, seeds=[0])
    before = {r.key: r for r in ResultStore(out).iter_runs()}
    count_trainings.clear()
    s = run(tiny, out, seeds=[0], retime=True)
    assert (s.done, s.skipped) == (2, 0) and count_trainings == []  # complete runs evaluated again, untrained
    after = {r.key: r for r in ResultStore(out).iter_runs()}
    assert after.keys() == before.keys()  # the same run files, written again
    for key, r in after.items():
        assert r.training is not None and r.training.checkpoint_source == "folder"
        assert r.thresholds == before[key].thresholds and r.started != before[key].started
    with pytest.raises(runner.SuiteError, match="--force retrains, --retime never does"):
        run(tiny, out, retime=True, force=True)
    from bench.cli import main

    assert main(["run", str(tiny), "--out", str(out), "--retime", "--force", "--no-progress"]) == 2  # a usage error


def test_run_record_has_provenance_and_costs(tiny: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    run(tiny, out)
    rec = next(r for r in ResultStore(out).iter_runs() if r.variant == "firm-p2" and r.seed == 0)
    prov = rec.provenance
    for key in ("git_commit", "git_dirty", "torch", "python", "device", "threads", "results_version"):
        assert key in prov
    assert rec.schema == 2 and rec.status == "ok" and rec.started <= rec.finished
    t0, _, t1 = rec.thresholds
    assert t0.exit_share == [1.0, 0.0] and t1.exit_share == [0.0, 1.0]
    for t in rec.thresholds:
        assert t.dynamic_matches_masked
        assert t.macs_counted == pytest.approx(t.macs_expected, rel=0.005)
    assert rec.latency.threads >= 1
    assert ResultStore(out).exits_path(rec.key).is_file()
    summary = (out / "summary.csv").read_text().splitlines()
    assert len(summary) == 1 + 4 * 3  # header + runs x thresholds
    assert "share_p2" in summary[0] and "macs" in summary[0] and "latency_s_per_sample_b1" in summary[0]
    for column in ("energy_eyeriss_buffered", "energy_horowitz45_buffered", "latency_roofline_s_per_sample_b1"):
        assert column in summary[0]
    # the roofline: the machine's figures and a prediction for every timed path and cascade
    assert rec.latency.roofline and rec.latency.roofline["threads"] == rec.latency.threads
    # the timed copy and the allocator as they were, in the run file
    assert rec.latency.allocator is not None and "kept" in rec.latency.allocator
    assert rec.latency.layout and set(rec.latency.layout) >= {"flatten_memory_order", "segment_slices"}
    assert all(p.roofline_per_sample and p.roofline_per_sample > 0 for p in rec.latency.exit_paths)
    assert all(c.roofline_per_sample and c.roofline_full_per_sample for c in rec.latency.cascade)
    # buffered energy: stated with its hardware and batch; at batch 1 this tiny model fits, so it equals ideal
    info = rec.cost.energy_tables["eyeriss_buffered"]
    assert info["model"] == "buffered" and info["hardware"] == "eyeriss" and info["batch"] == "1"
    for c in rec.cost.per_exit:
        assert c.energy["eyeriss_buffered"] == pytest.approx(c.energy["eyeriss"])
    # the report's latency-model table: per variant and batch, recomputable from the run files
    write_report(out, log=lambda s: None)
    model = pd.read_csv(out / "tables" / "latency_model.csv")
    row = model[(model["variant"] == "firm-p2") & (model["batch"] == 1)].iloc[0]
    recs = [r for r in ResultStore(out).iter_runs() if r.variant == "firm-p2"]
    cascades = [c for r in recs for c in r.latency.cascade if c.matches(0.6, 1)]
    assert all(c.roofline_full_per_sample and c.roofline_per_sample for c in cascades)
    assert row["speedup roofline"] == pytest.approx(
        sum(c.roofline_full_per_sample / c.roofline_per_sample for c in cascades) / len(cascades)  # type: ignore[operator]
    )
    assert row[RATIO] == pytest.approx(row["speedup measured"] / row["speedup roofline"])
    assert {"p2 measured (µs)", "p2 roofline (µs)", "final roofline (µs)"} <= set(model.columns)
    assert (out / "figures" / "latency_model.png").is_file() and (out / "figures" / "energy_levels.png").is_file()
    # and a note under it says what was timed, from the run files
    note = next(line for line in (out / "report.md").read_text().splitlines() if line.startswith("Timed: "))
    assert f"Timed: {rec.latency.threads} thread(s)" in note and "NHWC" in note
    assert ("freed memory kept" in note) is bool(rec.latency.allocator.get("kept"))


def test_failing_run_is_recorded_and_others_go_on(tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = training.build_loss

    def broken(name, *a, **k):
        if name == "firm":
            raise RuntimeError("boom in firm")
        return real(name, *a, **k)

    monkeypatch.setattr(training, "build_loss", broken)
    out = tmp_path / "out"
    s = run(tiny, out)
    assert s.done == 2 and len(s.failed) == 2 and all("boom in firm" in f["error"] for f in s.failed)
    failed = [r for r in ResultStore(out).iter_runs() if r.status == "failed"]
    assert len(failed) == 2 and failed[0].error.type == "RuntimeError"
    monkeypatch.setattr(training, "build_loss", real)
    s2 = run(tiny, out)  # failed runs are retried, finished ones skipped
    assert s2.done == 2 and s2.skipped == 2


@pytest.mark.parametrize("exc", [OSError("disk full"), KeyboardInterrupt()])
def test_crash_between_write_and_rename_leaves_no_corrupt_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exc
) -> None:
    path = tmp_path / "runs" / "v" / "k.json"
    atomic_write_json(path, {"schema": 1, "status": "ok", "old": True})

    def crash(src, dst):
        raise exc

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(type(exc)):
        atomic_write_json(path, {"schema": 1, "status": "ok", "old": False, "big": "x" * 100000})
    monkeypatch.undo()
    assert json.loads(path.read_text())["old"] is True  # the old file is intact
    assert list(path.parent.iterdir()) == [path]  # and no temp file is left behind


def test_interrupted_suite_resumes(tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    real = runner.evaluate
    calls = {"n": 0}

    def interrupt_second(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(runner, "evaluate", interrupt_second)
    with pytest.raises(KeyboardInterrupt):
        run(tiny, out)
    monkeypatch.setattr(runner, "evaluate", real)
    files = list((out / "runs").glob("*/*.json"))
    assert len(files) == 1 and json.loads(files[0].read_text())["status"] == "ok"
    s = run(tiny, out)
    assert s.skipped == 1 and s.done == 3


def test_cli_smoke_suite_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "smoke"
    cmd = [
        sys.executable,
        "-m",
        "bench.cli",
        "run",
        str(REPO / "suites/smoke.toml"),
        "--out",
        str(out),
        "--no-progress",
        "--set",
        "suite.seeds=[0]",
        "--set",
        "train.epochs=1",
        "--set",
        "variants.firm-p2.pretrain_epochs=1",
        "--set",
        "variants.firm-p2.epochs=1",
        "--set",
        "evaluation.latency=false",
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "4 runs done" in res.stdout
    assert (out / "summary.csv").is_file() and (out / "report.md").is_file()
    listed = subprocess.run([sys.executable, "-m", "bench.cli", "list", str(out)], capture_output=True, text=True)
    assert listed.returncode == 0 and listed.stdout.count(" ok ") >= 4


def test_budget_suite_end_to_end(tmp_path: Path) -> None:
    from bench.render.report import write_report

    text = TINY.replace(
        'name = "firm-p2"\nloss = "firm"\nexits = ["p2"]', 'name = "sum-3"\nloss = "sum"\nexits = ["p1", "p2"]'
    )
    text = text.replace(
        '[[variants]]\nname = "base"', '[budget]\nvalues = [0.2, 0.5, 1.0]\n\n[[variants]]\nname = "base"'
    )
    p = tmp_path / "b.toml"
    p.write_text(text)
    out = tmp_path / "out"
    run(p, out, overrides=["evaluation.latency=false"])
    rec = next(r for r in ResultStore(out).iter_runs() if r.variant == "sum-3")
    pts = rec.budget.points
    assert [q.budget for q in pts] == [0.2, 0.5, 1.0] and rec.budget.search.startswith("coordinate")
    for q in pts:
        assert len(q.thresholds) == 2
        if q.feasible:
            assert q.val_cost <= q.budget_absolute + 1e-6
    base = next(r for r in ResultStore(out).iter_runs() if r.variant == "base")
    assert base.budget is None  # a single exit has nothing to choose
    write_report(out, log=lambda s: None)
    assert (out / "figures" / "budget_curves.png").stat().st_size > 1000
    assert (out / "figures" / "anytime.png").stat().st_size > 1000
    assert "Accuracy under compute budgets" in (out / "report.md").read_text()


def test_reports_use_the_latest_run_of_each_variant_and_seed(tiny: Path, tmp_path: Path) -> None:
    from bench.analyse.load import load_results

    out = tmp_path / "out"
    run(tiny, out, overrides=["suite.seeds=[0]", "evaluation.latency=false"])
    run(tiny, out, overrides=["suite.seeds=[0]", "evaluation.latency=false", "evaluation.thresholds=[0.0, 0.6]"])
    store = ResultStore(out)
    assert len(list(store.iter_runs())) == 4  # both generations stay on disk
    latest = store.latest_runs()
    assert len(latest) == 2 and all(len(r.thresholds) == 2 for r in latest)
    assert len(load_results(out).records) == 2
    assert (out / "summary.csv").read_text().count("\n") == 1 + 2 * 2
