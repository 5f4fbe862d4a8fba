"""Adversarial use: killed drivers, diverging pre-training, broken input, two runs on one folder."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.cli import main
from bench.config.load import load_suite
from bench.config.suite import SuiteError
from bench.execute.runner import run_suite
from bench.render.report import write_report
from bench.results.store import FolderLock, ResultStore, StoreError

from ..conftest import REPO
from ..synthetic import write_mnist
from ..tiny import TINY

QUIET = {"progress": False, "log": lambda s: None}


def _children(pid: int) -> set[int]:
    """All descendants of ``pid`` (from /proc)."""
    out: set[int] = set()
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            kids = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            continue
        for k in map(int, kids):
            out.add(k)
            todo.append(k)
    return out


def _alive(pid: int) -> bool:
    try:
        state = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("State"))
    except (OSError, StopIteration):
        return False
    return "Z" not in state.split()[1]  # a zombie has exited


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads /proc")
def test_pool_workers_die_with_a_killed_driver(tmp_path: Path) -> None:
    suite = tmp_path / "t.toml"
    suite.write_text(TINY.replace("epochs = 1", "epochs = 30").replace("train_size = 300", "train_size = 1200"))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.cli",
            "run",
            str(suite),
            "--out",
            str(tmp_path / "out"),
            "--jobs",
            "2",
            "--no-progress",
            "--set",
            "evaluation.latency=false",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 60
        workers: set[int] = set()
        while time.time() < deadline and len(workers) < 2:
            time.sleep(0.5)
            workers = {p for p in _children(proc.pid) if "spawn_main" in Path(f"/proc/{p}/cmdline").read_text()}
        assert len(workers) >= 2, "the pool did not start"
        time.sleep(3)  # the workers are training now
        everything = _children(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        deadline = time.time() + 15
        while time.time() < deadline and any(_alive(p) for p in everything):
            time.sleep(0.5)
        assert not [p for p in everything if _alive(p)], "orphaned workers still running"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def test_a_diverging_pretraining_fails_its_runs_and_the_others_go_on(tmp_path: Path) -> None:
    suite = tmp_path / "t.toml"
    suite.write_text(TINY)
    overrides = ["train.lr=1e6", "variants.base.train.lr=0.05", "suite.seeds=[0]", "evaluation.latency=false"]
    s = run_suite(suite, out_dir=tmp_path / "out", overrides=overrides, **QUIET)
    assert s.done == 1 and len(s.failed) == 1
    assert "pre-training (base, seed 0) failed" in s.failed[0]["error"] and "NonFiniteLossError" in s.failed[0]["error"]
    recs = {r.variant: r for r in ResultStore(tmp_path / "out").iter_runs()}
    assert recs["base"].ok and recs["firm-p2"].error.type == "PretrainingFailedError"


def test_broken_input_gives_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    suite = tmp_path / "t.toml"
    suite.write_text(TINY)
    binary = tmp_path / "b.toml"
    binary.write_bytes(bytes(range(256)))
    a_file = tmp_path / "file"
    a_file.write_text("x")
    cases = [
        (["validate", str(binary)], "not a text file"),
        (["validate", str(tmp_path)], "is a folder"),
        (["validate", str(suite), "--set", "variants.base=3"], "set a key of a variant"),
        (["validate", str(suite), "--set", "suite.name.x=1"], "suite.name is 'tiny', not a table"),
        (["validate", str(suite), "--set", "suite.seeds.5=1"], "suite.seeds is a list of 2; '5' is not an index"),
        (["run", str(suite), "--out", str(a_file), "--no-progress"], "a file of that name exists"),
        (["run", str(suite), "--out", str(a_file / "below"), "--no-progress"], "a part of the path is a file"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and err.count("\n") <= 2, (argv, err)
    assert a_file.read_text() == "x"  # nothing written


@pytest.mark.parametrize(
    "override, key, message",
    [
        ("model.hidden=0", "model", "hidden must be an integer >= 1"),
        ('model.channels="32,64"', "model", "channels must be a list of positive integers"),
        ("evaluation.latency_thresholds=[0.5]", "evaluation.latency_thresholds[0]", "one of evaluation.thresholds"),
        ("suite.device=cuda", "suite.device", "torch sees no CUDA device"),
        ("variants.firm-p2.loss_options={ lambda = inf }", "loss_options", "lambda must be finite"),
    ],
)
def test_invalid_suites_fail_at_validate(tmp_path: Path, override: str, key: str, message: str) -> None:
    import torch

    from bench.config.plan import expand_runs

    if "cuda" in override and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    suite = tmp_path / "s.toml"
    suite.write_text(TINY)
    with pytest.raises(SuiteError) as info:
        expand_runs(load_suite(suite, [override]))
    assert f"{suite}: " in str(info.value) and f"{key}: " in str(info.value) and message in str(info.value)


def test_damaged_data_stops_the_suite_before_any_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_mnist(tmp_path / "data")
    images = tmp_path / "data" / "MNIST" / "raw" / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:1000])
    suite = tmp_path / "m.toml"
    suite.write_text(
        TINY.replace('name = "digits"', f'name = "mnist"\nroot = "{tmp_path / "data"}"\ndownload = false').replace(
            "train_size = 300", "train_size = 0"
        )
    )
    out = tmp_path / "out"
    assert main(["run", str(suite), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "train-images-idx3-ubyte" in err and "damaged" in err
    assert not (out / "runs").exists()


def test_offline_download_leaves_no_empty_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision

    from cascade import DataNotFoundError, load_dataset

    def offline(root, **kw):  # what torchvision does offline: make the folders, then fail
        (Path(root) / "MNIST" / "raw").mkdir(parents=True, exist_ok=True)
        raise OSError("network unreachable")

    monkeypatch.setattr(torchvision.datasets, "MNIST", offline)
    with pytest.raises(DataNotFoundError, match="download failed: network unreachable"):
        load_dataset("mnist", root=tmp_path / "cache", download=True)
    assert not (tmp_path / "cache").exists()


def test_report_artefacts_are_replaced_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "a"
    shutil.copytree(REPO / "tests" / "fixtures" / "results_a", out)
    write_report(out, log=lambda s: None)
    before = {p: p.read_bytes() for p in (out / "figures").iterdir()}
    import bench.results.files

    def crash(src, dst):
        raise OSError("killed")

    monkeypatch.setattr(bench.results.files.os, "replace", crash)
    with pytest.raises(OSError, match="killed"):
        write_report(out, log=lambda s: None)
    monkeypatch.undo()
    assert {p: p.read_bytes() for p in (out / "figures").iterdir()} == before  # old figures intact, no temp files


def test_one_run_per_folder(tmp_path: Path) -> None:
    suite = tmp_path / "t.toml"
    suite.write_text(TINY)
    out = tmp_path / "out"
    out.mkdir()
    with FolderLock(out):
        with pytest.raises(StoreError, match=f"in use by a running bench run \\(pid {os.getpid()} on host"):
            FolderLock(out).acquire()
        r = subprocess.run(
            [sys.executable, "-m", "bench.cli", "run", str(suite), "--out", str(out), "--no-progress"],
            capture_output=True,
            text=True,
        )
        assert r.returncode == 2 and f"pid {os.getpid()}" in r.stderr and "Traceback" not in r.stderr
    FolderLock(out).acquire()  # released when the holder lets go (or dies)
