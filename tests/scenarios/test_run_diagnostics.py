"""Running a suite and reading what it says: sanity warnings with a cause, keys that hold only what trains,
progress without a terminal, quick evaluation, comparisons that say what differs, honest small-n stats."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

import bench.execute.training as training
from bench.config.load import load_suite
from bench.config.plan import config_diff, expand_runs
from bench.execute.runner import run_suite
from bench.execute.sanity import GAP, diagnose, mode_accuracies, recompute_bn
from bench.results.record import at_chance
from bench.results.store import ResultStore
from cascade import StudyCNN, load_dataset
from cascade.losses import build_loss
from cascade.models import MODELS
from cascade.training import TrainConfig, train

from ..tiny import TINY

# --------------------------------------------------------------------------- sanity warnings


class SlowBNCNN(StudyCNN):
    """The study CNN with torchvision MobileNetV3's batch-norm momentum (0.01)."""

    def __init__(self, **kw):
        super().__init__(**kw)
        for m in self.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.momentum = 0.01


@pytest.fixture(scope="module")
def slow_bn_model(digits):
    torch.manual_seed(0)
    model = SlowBNCNN(channels=(8, 16, 16), hidden=32)
    cfg = TrainConfig(epochs=1, lr=0.05, momentum=0.9, batch_size=32)
    history = train(model, build_loss("base", {}, num_exits=1), digits, cfg, seed=0)
    return model, history


def test_at_chance_rule() -> None:
    assert at_chance(0.149, 10) and not at_chance(0.15, 10) and at_chance(0.8, 2) is False
    assert not at_chance(float("nan"), 10)


def test_low_momentum_batch_norm_is_diagnosed_and_fixed_by_recompute(slow_bn_model, digits) -> None:
    """The MobileNetV3 case on synthetic-sized data: momentum 0.01, a few dozen steps."""
    model, history = slow_bn_model
    train_acc, eval_acc = mode_accuracies(model, digits.train)
    assert train_acc - eval_acc > GAP  # running statistics lag: eval mode is far worse
    test_acc = float((model.eval()(digits.test.x).logits[-1].argmax(1) == digits.test.y).float().mean())
    rec = diagnose(
        model,
        digits.train,
        steps=history.steps,
        recomputed=False,
        classes=10,
        exit_names=["final"],
        val_accuracy=[test_acc],
        test_accuracy=[test_acc],
        label="base seed 0",
    )
    (bn,) = [w for w in rec.warnings if "batch-norm" in w]
    stuck = 0.99**history.steps
    assert "momentum 0.01" in bn and f"after {history.steps} steps {stuck:.0%}" in bn and "recompute_bn" in bn
    assert rec.bn_momentum == [0.01] and rec.train_mode_accuracy == pytest.approx(train_acc)
    fixed = SlowBNCNN(channels=(8, 16, 16), hidden=32)
    fixed.load_state_dict(model.state_dict())
    used = recompute_bn(fixed, digits.train, 32)
    assert used == min(len(digits.train), 200 * 32) - (len(digits.train) % 32 == 1)
    new_train, new_eval = mode_accuracies(fixed, digits.train)
    assert new_train - new_eval < GAP / 2 and new_eval > eval_acc + GAP
    assert fixed.training is False and next(m.momentum for m in fixed.modules() if hasattr(m, "momentum")) == 0.01


def test_recompute_bn_equals_the_plain_average_of_batch_statistics(digits) -> None:
    torch.manual_seed(0)
    model = StudyCNN(channels=(4, 4, 4), hidden=8)
    recompute_bn(model, digits.train, 64, seed=3)
    order = torch.randperm(len(digits.train), generator=torch.Generator().manual_seed(3))[: 200 * 64]
    feats = model.blocks[0][0](digits.train.x[order])  # the first conv's output, fed to the first batch norm
    # update_bn averages batch means with equal weight per batch (cumulative moving average)
    means = [feats[i : i + 64].mean((0, 2, 3)) for i in range(0, len(order), 64)]
    means = [m for m, i in zip(means, range(0, len(order), 64)) if len(order[i : i + 64]) > 1]
    expected = torch.stack(means).mean(0)
    assert torch.allclose(model.blocks[0][1].running_mean, expected, atol=1e-5)


PLUGIN = """
import torch
from cascade.models import MODELS, StudyCNN


@MODELS.register("slow_bn_cnn")
class SlowBNCNN(StudyCNN):
    def __init__(self, *, channels=(32, 64, 128), hidden=256, exits=(), num_classes=10, in_channels=1,
                 input_size=28):
        super().__init__(channels=channels, hidden=hidden, exits=exits, num_classes=num_classes,
                         in_channels=in_channels, input_size=input_size)
        for m in self.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.momentum = 0.01
"""


def test_a_network_at_chance_is_warned_with_its_cause_and_the_option_fixes_it(tmp_path: Path) -> None:
    plugin = tmp_path / "slowbn.py"
    plugin.write_text(PLUGIN)
    suite = tmp_path / "s.toml"
    suite.write_text(
        TINY.replace("seeds = [0, 1]", "seeds = [0]")
        .replace("train_size = 300", "train_size = 600")
        .replace("[model]\n", '[model]\nname = "slow_bn_cnn"\n')
        .replace("latency_batch_sizes = [1, 32]", "latency = false")
        .split("[[variants]]")[0]
        + '[[variants]]\nname = "base"\nloss = "base"\n'
    )
    log: list[str] = []
    try:
        s = run_suite(
            suite, out_dir=tmp_path / "a", progress=False, log=log.append, imports=[str(plugin)], checkpoint_cache=False
        )
        assert s.ok
        (bn,) = [w for w in log if "batch-norm running statistics" in w]
        assert bn.startswith("warning: base seed 0: in train mode") and "momentum 0.01" in bn
        (rec,) = ResultStore(tmp_path / "a").latest_runs()
        assert rec.sanity is not None and not rec.sanity.bn_recomputed and rec.sanity.warnings
        from bench.render.report import write_report

        report = write_report(tmp_path / "a", log=lambda s: None).read_text()
        assert "batch-norm running statistics" in report
        log.clear()
        s = run_suite(
            suite,
            out_dir=tmp_path / "a",
            progress=False,
            log=log.append,
            imports=[str(plugin)],
            overrides=["evaluation.recompute_bn=true"],
            checkpoint_cache=False,
        )
        assert s.ok and s.from_cache == 0 and not [w for w in log if "batch-norm running statistics" in w]
        fixed = max(ResultStore(tmp_path / "a").iter_runs(), key=lambda r: r.finished)
        assert fixed.config["evaluation"]["recompute_bn"] and fixed.sanity.bn_recomputed
        assert fixed.train_key == rec.train_key  # out of the train key: the same checkpoint, re-evaluated
        assert fixed.exits.test_accuracy[-1] > rec.exits.test_accuracy[-1] + GAP
    finally:
        MODELS._items.pop("slow_bn_cnn", None)


# --------------------------------------------------------------------------- keys


def test_logging_settings_are_out_of_the_train_key(tmp_path: Path) -> None:
    suite = tmp_path / "t.toml"
    suite.write_text(TINY.replace("log_every = 2\n", ""))  # at the default, 100
    plain = expand_runs(load_suite(suite))
    logged = expand_runs(load_suite(suite, ["train.log_every=10", "train.eval_batch_size=7"]))
    longer = expand_runs(load_suite(suite, ["train.epochs=2"]))
    assert [r.key for r in plain] == [r.key for r in logged]
    assert [r.job.key for r in plain] == [r.job.key for r in logged]
    assert all(r.job.key != o.job.key for r, o in zip(plain, longer))
    # the record keeps the actual settings, and the run files made before this rule are still found
    assert all(r.describe()["job"]["train"]["log_every"] == 10 for r in logged)
    assert all(r.legacy_key != r.key for r in logged) and all(r.legacy_key == r.key for r in plain)


def test_committed_branchynet_runs_are_found_under_their_legacy_keys() -> None:
    """The 10 + 20-epoch BranchyNet runs once committed in results/branchynet_lenet (kept as a fixture since the
    full-length runs replaced them): files written before log_every left the key are still found."""
    from ..conftest import REPO

    folder = REPO / "tests" / "fixtures" / "legacy_branchynet"
    recs = list(ResultStore(folder).iter_runs())
    overrides = recs[0].config["overrides"]
    runs = expand_runs(load_suite(folder / "suite.toml", overrides), overrides)
    assert {r.legacy_key for r in runs} == {r.key for r in recs}  # log_every = 20: old keys, still found


def test_a_logging_change_reuses_and_a_training_change_says_what_differs(tmp_path: Path, monkeypatch) -> None:
    suite = tmp_path / "t.toml"
    suite.write_text(TINY.replace("seeds = [0, 1]", "seeds = [0]"))
    trained: list[int] = []
    real = training.train
    monkeypatch.setattr(training, "train", lambda *a, **k: trained.append(1) or real(*a, **k))
    out = tmp_path / "a"
    assert run_suite(suite, out_dir=out, progress=False, log=lambda s: None, overrides=["train.log_every=10"]).ok
    n = len(trained)
    log: list[str] = []
    s = run_suite(suite, out_dir=out, progress=False, log=log.append)
    assert s.done == 0 and s.skipped == 2 and len(trained) == n
    log.clear()
    s = run_suite(suite, out_dir=out, progress=False, log=log.append, overrides=["evaluation.thresholds=[0.0, 0.6]"])
    assert s.done == 2 and len(trained) == n  # evaluation only: re-evaluated from the checkpoint
    lines = [s for s in log if "runs again" in s]
    assert len(lines) == 2 and all("evaluation.thresholds: [0.0, 0.6, 1.0] -> [0.0, 0.6]" in s for s in lines)


def test_config_diff_by_hand() -> None:
    old = {"job": {"train": {"epochs": 1, "lr": 0.1}, "pretrain": {"key": "a"}}, "overrides": ["x"], "seed": 0}
    new = {
        "job": {"train": {"epochs": 2, "lr": 0.1}, "pretrain": {"key": "b"}},
        "overrides": [],
        "seed": 0,
        "policy": "entropy",
    }
    assert config_diff(old, new) == ["job.train.epochs: 1 -> 2", "policy: (absent) -> entropy"]
    assert config_diff(old, old) == []


def test_run_file_json_keeps_the_sanity_section(tmp_path: Path) -> None:
    suite = tmp_path / "t.toml"
    suite.write_text(TINY.replace("seeds = [0, 1]", "seeds = [0]"))
    assert run_suite(suite, out_dir=tmp_path / "a", progress=False, log=lambda s: None, only=["base"]).ok
    (path,) = (tmp_path / "a" / "runs").rglob("*.json")
    sanity = json.loads(path.read_text())["sanity"]
    assert set(sanity) == {"train_mode_accuracy", "eval_mode_accuracy", "bn_momentum", "bn_recomputed", "warnings"}
    assert sanity["bn_momentum"] == [0.1]


# --------------------------------------------------------------------------- progress without a terminal


def test_one_line_per_finished_run_without_a_terminal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    suite = tmp_path / "t.toml"
    suite.write_text(TINY.replace("seeds = [0, 1]", "seeds = [0]"))
    log: list[str] = []
    monkeypatch.setattr("bench.execute.progress.HEARTBEAT_SECONDS", 0.0)  # a heartbeat after every epoch
    assert run_suite(suite, out_dir=tmp_path / "a", progress=True, log=log.append).ok  # stderr is not a TTY here
    beats = [s for s in log if s.startswith("    ")]  # one epoch each: base, then firm-p2 on base's weights
    assert [b.split(", loss")[0] for b in beats] == [
        "    base seed 0: training base, epoch 1",
        "    firm-p2 seed 0: training firm, epoch 1",
    ], beats
    lines = [s for s in log if s.startswith("[")]
    assert len(lines) == 2  # firm-p2's base pre-training is the base variant's own run
    import re

    # each run's share of latency timing follows its seconds (TINY times its runs)
    pattern = (
        r"^\[(\d)/2\] (base|firm-p2) seed 0: ok, accuracy \d+\.\d\d % at t = 0\.6, \d+\.\d s \(\d+ % timing\), "
        r"ETA \d:\d\d:\d\d$"
    )
    assert all(re.match(pattern, s) for s in lines), lines
    assert lines[-1].startswith("[2/2]") and lines[-1].endswith("ETA 0:00:00")


def test_finished_line_by_hand() -> None:
    from bench.execute.progress import RichProgress

    now = [0.0]
    bar = RichProgress(4, enabled=False, clock=lambda: now[0], line=lambda s: None)
    now[0] = 30.0
    bar.finished = 1
    failed = {"variant": "sum-p1", "seed": 2, "status": "failed", "error": "loss is nan", "seconds": 12.25}
    assert bar.finished_line(failed) == "[1/4] sum-p1 seed 2: FAILED (loss is nan), 12.2 s, ETA 0:01:30"
    pre = {"status": "pretrain", "key": "abc", "label": "base seed 0"}
    assert bar.finished_line(pre) == "[1/4] pre-training base seed 0: pre-trained, ETA 0:01:30"


def test_heartbeat_lines_while_a_run_trains_without_a_terminal() -> None:
    from bench.execute.progress import HEARTBEAT_SECONDS, RichProgress
    from cascade.training import EpochRecord

    now, lines = [100.0], []
    bar = RichProgress(2, enabled=False, clock=lambda: now[0], line=lines.append)
    bar.start_run("lenet seed 0")
    bar.on_phase("training base")
    for epoch in range(1, 6):  # 25 s an epoch: one line after epoch 3 (75 s); epoch 5 is only 50 s later
        now[0] += 25.0
        bar.on_epoch_end(EpochRecord(epoch, 0.5 / epoch, [0.9, 0.987654], [], 25.0))
    assert HEARTBEAT_SECONDS == 60.0
    assert lines == ["    lenet seed 0: training base, epoch 3, loss 0.1667, val 90.00/98.77 %, 0:01:15 into the run"]
    now[0] += 10.0  # epoch 6 ends 60 s after the last line
    bar.on_epoch_end(EpochRecord(6, 0.05, [], [], 10.0))
    assert lines[-1] == "    lenet seed 0: training base, epoch 6, loss 0.05, 0:02:15 into the run"
    bar.start_run("b-lenet seed 0")  # a new run starts its own clock and phase
    now[0] += 59.0
    bar.on_epoch_end(EpochRecord(1, 1.0, [0.5], [], 59.0))
    assert len(lines) == 2
    live = RichProgress(1, enabled=True, clock=lambda: now[0], line=lines.append)  # live bars: no lines
    live.start_run("x")
    now[0] += 600.0
    live.on_epoch_end(EpochRecord(1, 1.0, [0.5], [], 600.0))
    assert len(lines) == 2


def test_piped_tables_never_split_a_number(capsys: pytest.CaptureFixture[str]) -> None:
    from bench.cli import main

    from ..conftest import REPO

    assert main(["cost", str(REPO / "suites" / "smoke.toml"), "--variant", "base"]) == 0
    out = capsys.readouterr().out.splitlines()
    header = next(s for s in out if "module" in s and "macs" in s)
    assert "input_bytes" in header and "output_bytes" in header  # one header line, not wrapped at 80 columns
    row = next(s for s in out if "blocks.0.0" in s)
    assert "313600" in row and "627200" in row  # 16 x 784 x 25 MACs, whole


# --------------------------------------------------------------------------- quick evaluation


def test_val_size_caps_validation_and_keeps_the_training_samples(digits) -> None:
    small = load_dataset("digits", val_size=50)
    assert len(small.val) == 50 and torch.equal(small.train.x, digits.train.x)
    assert torch.equal(small.val.y, digits.val.y[:50]) and small.identity["val_size"] == 50
    assert "val_size" not in digits.identity  # at 0 the identity (and every key) is unchanged


def test_test_subset_is_fixed_and_ordered(digits) -> None:
    a, b = digits.test_subset(100), digits.test_subset(100)
    assert len(a.test) == 100 and torch.equal(a.test.x, b.test.x)
    assert digits.test_subset(0) is digits and digits.test_subset(10**6) is digits
    idx = [int((digits.test.x == a.test.x[i]).flatten(1).all(1).nonzero()[0]) for i in range(5)]
    assert idx == sorted(idx)


def test_quick_run_is_recorded_and_named_in_the_report(tmp_path: Path, capsys) -> None:
    from bench.cli import main

    suite = tmp_path / "t.toml"
    suite.write_text(TINY.replace("seeds = [0, 1]", "seeds = [0]").replace("train_size = 300", "train_size = 100"))
    rc = main(
        [
            "run",
            str(suite),
            "--out",
            str(tmp_path / "q"),
            "--quick",
            "--only",
            "base",
            "--no-progress",
            "--set",
            "evaluation.test_samples=100",
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0 and "hint: the validation split (144 samples) is larger than the training split (100" in out
    (rec,) = ResultStore(tmp_path / "q").latest_runs()
    ev = rec.config["evaluation"]
    assert ev["latency"] is False and ev["count_macs"] == "none" and ev["test_samples"] == 100
    assert rec.latency is None and rec.data_sizes["test"] == 100
    report = (tmp_path / "q" / "report.md").read_text()
    assert "**Quick evaluation: test accuracy on 100 test samples" in report and "latency not timed" in report
    # the same checkpoint, evaluated in full without --quick
    full = run_suite(suite, out_dir=tmp_path / "q", progress=False, log=lambda s: None, only=["base"])
    assert full.done == 1 and full.from_cache == 0
    latest = ResultStore(tmp_path / "q").latest_runs()[0]
    assert latest.train_key == rec.train_key and latest.data_sizes["test"] == 359


# --------------------------------------------------------------------------- comparisons that say what differs


def test_compare_names_models_overrides_and_one_sided_variants(tmp_path: Path) -> None:
    import shutil

    from rich.console import Console

    from bench.verdicts.compare import compare

    from ..conftest import REPO

    fix = REPO / "tests" / "fixtures"
    a, b = tmp_path / "a", tmp_path / "b"
    shutil.copytree(fix / "results_a", a)
    shutil.copytree(fix / "results_b", b)
    shutil.rmtree(b / "runs" / "base")
    md = tmp_path / "c.md"
    compare(a, b, console=Console(file=open(os.devnull, "w")), out=str(md))
    text = md.read_text()
    assert (
        "| model | study_cnn (channels=[8, 16, 16], hidden=32) | study_cnn (channels=[8, 16, 16], hidden=32) |" in text
    )
    assert "| overrides | none | --set variants.soft-p2.epochs=6 |" in text
    assert "- --set overrides differ: A none; B --set variants.soft-p2.epochs=6" in text
    assert "- variants only in A (not compared): base" in text


def test_check_context_lines_by_hand() -> None:
    from bench.verdicts.check import context_lines

    cur = {"context": {"model": "m", "dataset": "d", "overrides": "none", "steps": {"base": "54"}}}
    old = {"context": {"model": "m2", "dataset": "d", "overrides": "--set x=1", "steps": {"base": "108"}}}
    lines = context_lines(cur, old, ["sum-p1"], ["new"])
    assert "| model | m | m2 |" in lines and "| training steps, base | 54 | 108 |" in lines
    assert "\nBaseline variants not checked (--only): sum-p1." in lines
    assert "\nVariants not in the baseline (not checked): new." in lines
    legacy = context_lines(cur, {}, [], [])
    assert "| model | m | not recorded |" in legacy and any("predates recorded context" in s for s in legacy)


# --------------------------------------------------------------------------- statistics at small n


def test_intervals_wider_than_the_range_say_n_too_small() -> None:
    from bench.render.format import fmt_interval as _fmt

    assert _fmt(0.5469, -2.56, 3.65, 100, 2, span=1.0) == "54.69 (n too small)"
    assert _fmt(0.5469, 0.50, 0.59, 100, 2, span=1.0) == "54.69 ± 4.50"
    assert _fmt(5e5, -1e9, 1e9, 1e-6, 3) == "0.500 ± 1000.000"  # MACs: no natural range


def test_check_says_n_too_small_instead_of_a_detectable_drop() -> None:
    from bench.config.suite import CheckSpec
    from bench.verdicts.check import CheckRow, rows_frame, strength_line

    row = CheckRow(
        "base", "accuracy", 90.0, 89.0, -1.0, -300.0, 298.0, 2, 5.0, 0.4, 0.6, "not significant", detectable=359.86
    )
    frame = rows_frame([row])
    assert frame["detectable drop"][0] == "n too small" and frame["95% CI"][0] == "n too small"
    line = strength_line([row], CheckSpec())
    assert "359" not in line and "no accuracy drop within its 0-100 point range" in line


def test_zero_variance_differences_are_exact_not_tested() -> None:
    from bench.analyse.load import Results
    from bench.analyse.tables import comparison_frame
    from bench.render.format import comparison_display

    class R:  # the two methods comparison_frame reads
        headline = 0.6
        variants = ("a", "ref")

        def by_seed(self, v, metric, thr):
            ref = {0: 0.5, 1: 0.75, 2: 0.25}  # a constant difference of -0.125, exact in binary
            return ref if v == "ref" else {k: x - 0.125 for k, x in ref.items()}

        def steps(self, v):
            return "10"

    frame = comparison_frame(R(), [("accuracy", 100.0)], lambda r, v: "ref" if v == "a" else None)  # type: ignore[arg-type]
    assert frame["exact"][0] and frame["p"].isna()[0] and not frame["significant"][0]
    shown = comparison_display(frame)
    assert shown["p"][0] == "exact" and shown["sig."][0] == "" and shown["Δ (points)"][0] == "-12.50"
    assert Results is not None


# --------------------------------------------------------------------------- hints


def test_exit_hint_uses_the_models_own_exits(tmp_path: Path) -> None:
    from bench.config.suite import SuiteError

    suite = tmp_path / "s.toml"
    suite.write_text(
        TINY.replace("[model]\nchannels = [4, 8, 8]\nhidden = 16\n", '[model]\nname = "resnet20"\n').replace(
            'exits = ["p2"]', "exits = []"
        )
    )
    with pytest.raises(SuiteError, match=r"needs at least 1 intermediate exit\(s\), e\.g\. \['layer1'\]"):
        load_suite(suite)


def test_unknown_names_point_at_plugins(tmp_path: Path) -> None:
    from bench.config.suite import SuiteError

    suite = tmp_path / "s.toml"
    suite.write_text(TINY.replace('loss = "firm"', 'loss = "wsum"'))
    with pytest.raises(SuiteError, match=r"unknown loss 'wsum'.*--import FILE, or list the file in \[suite\] plugins"):
        load_suite(suite)


def test_validate_reports_every_error_at_once(tmp_path: Path, capsys) -> None:
    from bench.cli import main

    suite = tmp_path / "s.toml"
    suite.write_text(
        TINY.replace("train_size = 300", "train_size = 300\nval_fractoin = 0.2")
        .replace("epochs = 1", "epochs = -1")
        .replace("thresholds = [0.0, 0.6, 1.0]", "thresholds = [0.0, 0.6, 1.5]")
        .replace('loss = "firm"', 'loss = "wsum"')
    )
    assert main(["validate", str(suite)]) == 2
    err = capsys.readouterr().err
    for key in ("dataset.val_fractoin", "train.epochs", "evaluation.thresholds[2]", "variants[1] (firm-p2).loss"):
        assert f": {key}: " in err, err
    assert "4 errors in" in err
    suite.write_text(TINY)
    assert main(["validate", str(suite)]) == 0  # a valid suite: no error at all


def test_config_diff_ignores_fields_older_files_lack_at_their_default() -> None:
    old = {"evaluation": {"thresholds": [0.6]}}
    new = {
        "evaluation": {
            "thresholds": [0.6],
            "recompute_bn": False,
            "test_samples": 0,
            "runtimes": ["eager", "onnxruntime"],
        }
    }
    assert config_diff(old, new) == ["evaluation.runtimes: (absent) -> ['eager', 'onnxruntime']"]


def test_report_warns_when_base_is_at_chance(tmp_path: Path) -> None:
    """Base has one exit; it used to be skipped by the at-chance warning."""
    import shutil

    from bench.analyse.load import load_results
    from bench.analyse.tables import warnings_for

    from ..conftest import REPO

    out = tmp_path / "a"
    shutil.copytree(REPO / "tests" / "fixtures" / "results_a", out)
    for path in (out / "runs" / "base").glob("*.json"):
        data = json.loads(path.read_text())
        data["exits"]["val_accuracy"] = [0.1]  # validation at chance, test not
        path.write_text(json.dumps(data))
    lines = [w for w in warnings_for(load_results(out)) if w.startswith("base: exit final is at chance level")]
    assert len(lines) == 1 and "validation accuracy; chance 10.0%" in lines[0]
