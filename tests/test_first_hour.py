"""A researcher's first hour (issue 29): sanity warnings with a cause, keys that hold only what trains,
progress without a terminal, quick evaluation, comparisons that say what differs, honest small-n stats."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import bench.runner as runner
from bench.plan import config_diff, expand_runs
from bench.record import at_chance
from bench.runner import run_suite
from bench.sanity import GAP, diagnose, mode_accuracies, recompute_bn
from bench.store import ResultStore
from bench.suite import load_suite
from cascade import StudyCNN
from cascade.losses import build_loss
from cascade.models import MODELS
from cascade.train import TrainConfig, train

from .test_runner import TINY

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
    rec = diagnose(model, digits.train, steps=history.steps, recomputed=False, classes=10, exit_names=["final"],
                   val_accuracy=[test_acc], test_accuracy=[test_acc], label="base seed 0")  # fmt: skip
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
        s = run_suite(suite, out_dir=tmp_path / "a", progress=False, log=log.append, imports=[str(plugin)],
                      checkpoint_cache=False)  # fmt: skip
        assert s.ok
        (bn,) = [w for w in log if "batch-norm running statistics" in w]
        assert bn.startswith("warning: base seed 0: in train mode") and "momentum 0.01" in bn
        (rec,) = ResultStore(tmp_path / "a").latest_runs()
        assert rec.sanity is not None and not rec.sanity.bn_recomputed and rec.sanity.warnings
        from bench.report import write_report

        report = write_report(tmp_path / "a", log=lambda s: None).read_text()
        assert "batch-norm running statistics" in report
        log.clear()
        s = run_suite(suite, out_dir=tmp_path / "a", progress=False, log=log.append, imports=[str(plugin)],
                      overrides=["evaluation.recompute_bn=true"], checkpoint_cache=False)  # fmt: skip
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
    assert all(r.config()["job"]["train"]["log_every"] == 10 for r in logged)
    assert all(r.legacy_key != r.key for r in logged) and all(r.legacy_key == r.key for r in plain)


def test_committed_branchynet_runs_are_found_under_their_legacy_keys() -> None:
    from .conftest import REPO

    folder = REPO / "results" / "branchynet_lenet"
    recs = list(ResultStore(folder).iter_runs())
    overrides = recs[0].config["overrides"]
    runs = expand_runs(load_suite(folder / "suite.toml", overrides), overrides)
    assert {r.legacy_key for r in runs} == {r.key for r in recs}  # log_every = 20: old keys, still found


def test_a_logging_change_reuses_and_a_training_change_says_what_differs(tmp_path: Path, monkeypatch) -> None:
    suite = tmp_path / "t.toml"
    suite.write_text(TINY.replace("seeds = [0, 1]", "seeds = [0]"))
    trained: list[int] = []
    real = runner.train
    monkeypatch.setattr(runner, "train", lambda *a, **k: trained.append(1) or real(*a, **k))
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
    new = {"job": {"train": {"epochs": 2, "lr": 0.1}, "pretrain": {"key": "b"}}, "overrides": [], "seed": 0,
           "policy": "entropy"}  # fmt: skip
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
