"""Selecting runs (--only, globs, sweep points), the shared checkpoint cache, progress and phases, compare, check."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.config.load import load_suite
from bench.config.plan import SelectionError, expand_runs, select_variants
from bench.execute.runner import run_suite
from bench.render.report import subset_folder, write_report
from bench.results.store import ResultStore

from ..conftest import REPO
from ..tiny import UNTIMED, tiny_suite

SWEEP = tiny_suite(
    suite={"name": "loop", "seeds": [0]},
    dataset={"train_size": 200},
    model={"channels": [4, 4, 4], "hidden": 8},
    train={"log_every": None},
    evaluation=UNTIMED,
    variants=[
        {"name": "base", "loss": "base"},
        {"name": "sum-p1", "loss": "sum", "exits": ["p1"]},
        {
            "name": "firm-p1",
            "loss": "firm",
            "exits": ["p1"],
            "pretrain_epochs": 1,
            "sweep": {"loss_options.lambda": [0.1, 0.2]},
        },
    ],
)


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
    said: list[str] = []
    s = run_suite(
        sweep, out_dir=out, progress=False, log=said.append, only=["firm-p1[lambda=0.2]"], checkpoint_cache=False
    )
    assert "1 run (--only/--seed: 1 of" in said[0] and "1 to do, and 1 pre-training they start from)" in said[0]
    # the selected run only; its base pre-training is trained as a checkpoint, not as a run
    assert (s.total, s.done) == (1, 1)
    assert [r.variant for r in ResultStore(out).iter_runs()] == ["firm-p1[lambda=0.2]"]
    s = quiet(sweep, out, only=["base", "sum-*"])
    assert (s.total, s.done) == (2, 2)
    variants = sorted(r.variant for r in ResultStore(out).iter_runs())
    assert variants == ["base", "firm-p1[lambda=0.2]", "sum-p1"]
    report = write_report(out, log=lambda s: None, only=["sum-p1", "base"])
    assert report == out / "subsets" / "sum-p1+base" / "report.md"
    assert subset_folder(out, ["sum-*", "firm-p?"]) == out / "subsets" / "sum-any+firm-pone"
    text = report.read_text()
    assert "Variants selected with --only sum-p1 base: base, sum-p1." in text
    assert "firm-p1" not in text
    main_csv = (report.parent / "tables" / "main.csv").read_text()
    assert "sum-p1" in main_csv and "firm" not in main_csv
    assert not (out / "report.md").exists()  # the full report is not overwritten by a subset


def test_cli_only_errors_name_the_pattern(
    sweep: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from bench.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["cost", str(sweep), "--only", "firm-p3"]) == 2
    assert "--only 'firm-p3' matches no variant (did you mean 'firm-p1" in capsys.readouterr().err
    assert main(["cost", str(sweep), "--only", "sum-p1"]) == 0
    out = capsys.readouterr().out
    assert "sum-p1: exits ['p1']" in out and "base:" not in out
    assert REPO.is_dir()


def test_checkpoint_cache_is_shared_across_output_folders(
    sweep: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import bench.execute.training as training

    trained: list[str] = []
    real = training.train
    monkeypatch.setattr(
        training, "train", lambda m, loss, *a, **k: trained.append(type(loss).__name__) or real(m, loss, *a, **k)
    )
    cache = tmp_path / "cache"
    quiet(sweep, tmp_path / "a", only=["base", "sum-p1"], checkpoint_cache=cache)
    assert sorted(trained) == ["BaseLoss", "SumLoss"] and len(list(cache.glob("*.pt"))) == 2
    trained.clear()
    s = quiet(sweep, tmp_path / "b", only=["base", "sum-p1"], checkpoint_cache=cache)  # a new folder
    assert s.done == 2 and s.from_cache == 2 and trained == []  # nothing retrained
    recs = {r.variant: r for r in ResultStore(tmp_path / "b").iter_runs()}
    assert {r.training.checkpoint_source for r in recs.values()} == {"cache"}
    assert all(r.training.reused_checkpoint for r in recs.values())
    a = {r.variant: r for r in ResultStore(tmp_path / "a").iter_runs()}
    assert recs["sum-p1"].at(0.6).accuracy == a["sum-p1"].at(0.6).accuracy  # the same weights
    assert a["base"].training.checkpoint_source == "trained"
    # firm's base pre-training comes from the cache too: only the firm fine-tuning trains
    quiet(sweep, tmp_path / "c", only=["firm-p1[lambda=0.1]"], checkpoint_cache=cache)
    assert trained == ["FirmCascadeLoss"]
    # without the cache a new folder retrains
    trained.clear()
    quiet(sweep, tmp_path / "d", only=["base"], checkpoint_cache=False)
    assert trained == ["BaseLoss"]


def test_default_cache_location(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from bench.results.store import default_checkpoint_cache

    monkeypatch.setenv("CASCADE_CHECKPOINT_CACHE", "off")
    assert default_checkpoint_cache() is None
    monkeypatch.setenv("CASCADE_CHECKPOINT_CACHE", str(tmp_path / "c"))
    assert default_checkpoint_cache() == tmp_path / "c"
    monkeypatch.delenv("CASCADE_CHECKPOINT_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_checkpoint_cache() == tmp_path / "cascade-bench" / "checkpoints"


def test_progress_shows_this_runs_accuracy_phase_and_eta() -> None:
    from bench.execute.progress import RichProgress, format_eta
    from cascade.training import EpochRecord

    now = [0.0]
    bar = RichProgress(3, enabled=False, clock=lambda: now[0])
    assert bar.progress.tasks[bar.runs].fields["eta"] == "ETA after the first run"
    bar.start_run("base seed 0")
    bar.on_phase("training base")
    bar.on_batch(0, 20, 40)
    bar.on_epoch_end(EpochRecord(1, 0.5, [0.813], [0.8], 1.0))
    bar.on_batch(1, 20, 40)
    assert bar.phase_text() == "epoch 2 (val 81.3%)"
    bar.on_phase("timing latency")
    assert bar.phase_text() == "timing latency"
    now[0] = 100.0
    bar.end_run()
    assert bar.eta_seconds() == 200.0  # 100 s per finished run, 2 runs left
    assert bar.progress.tasks[bar.runs].fields["eta"] == "ETA 0:03:20"
    bar.start_run("sum-p1 seed 0")  # the next run must not show base's 81.3 %
    bar.on_batch(0, 1, 40)
    assert bar.phase_text() == "epoch 1"
    bar.on_phase("reused checkpoint (shared cache)")
    assert bar.phase_text() == "reused checkpoint (shared cache)"
    assert format_eta(3725.4) == "ETA 1:02:05"


def test_runner_reports_phases(sweep: Path, tmp_path: Path) -> None:
    from cascade.training import TrainCallback

    seen: list[str] = []

    class Phases(TrainCallback):
        def on_phase(self, phase: str) -> None:
            seen.append(phase)

    from bench.execute.runner import execute_run

    run = next(r for r in expand_runs(load_suite(sweep)) if r.variant == "sum-p1")
    execute_run(run, tmp_path / "o", callback=Phases())
    assert seen[0] == "training sum"
    assert "evaluating: costs and exit outputs" in seen and any(p.startswith("counting MACs") for p in seen)
    seen.clear()
    execute_run(run, tmp_path / "o", callback=Phases())
    assert seen[0] == "reused checkpoint (this folder)"
