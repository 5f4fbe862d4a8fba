"""Suite validation: every error names the file, the key path and what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.config.load import load_suite
from bench.config.suite import SuiteError
from bench.execute.runner import expand_runs

from .conftest import REPO

MINIMAL = """
[suite]
name = "t"
seeds = [0, 1]

[[variants]]
name = "base"
loss = "base"
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "s.toml"
    p.write_text(text)
    return p


def error_of(tmp_path: Path, text: str, overrides: tuple[str, ...] = ()) -> str:
    path = write(tmp_path, text)
    with pytest.raises(SuiteError) as info:
        load_suite(path, overrides)
    msg = str(info.value)
    assert msg.startswith(str(path))  # names the file
    return msg


@pytest.mark.parametrize("suite", sorted((REPO / "suites").glob("*.toml")), ids=lambda p: p.name)
def test_shipped_suites_are_valid(suite: Path) -> None:
    s = load_suite(suite)
    assert expand_runs(s)


def test_defaults_match_the_study(tmp_path: Path) -> None:
    s = load_suite(write(tmp_path, MINIMAL))
    t = s.train
    assert (t.epochs, t.lr, t.momentum, t.batch_size, t.log_every) == (20, 0.001, 0.5, 64, 100)
    assert s.evaluation.headline_threshold == 0.6
    assert s.evaluation.thresholds == (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


@pytest.mark.parametrize(
    "extra, key, message",
    [
        ("[train]\nepochz = 3\n", "train.epochz", "did you mean 'epochs'"),
        ("[train]\nepochs = -1\n", "train.epochs", "allowed: an integer >= 1"),
        ("[train]\nepochs = 0\n", "train.epochs", "allowed: an integer >= 1"),
        ("[train]\nepochs = 'ten'\n", "train.epochs", "expected an integer"),
        ("[train]\nlr = 0\n", "train.lr", "a finite number > 0"),
        ("[train]\nlr = inf\n", "train.lr", "a finite number > 0"),
        ("[train]\nbatch_size = 1\n", "train.batch_size", "an integer >= 2"),
        (
            "[evaluation]\nthresholds = [0.5, 1.2]\nheadline_threshold = 0.5\n",
            "evaluation.thresholds[1]",
            "threshold in [0, 1]",
        ),
        ("[evaluation]\nheadline_threshold = 0.65\n", "evaluation.headline_threshold", "must be one of"),
        ("[dataset]\nname = 'cifar'\n", "dataset.name", "did you mean 'cifar10'?); known: cifar10, cifar100, digits"),
        ("[dataset]\nname = 'noisy_mnist'\nsigmaa = 0.3\n", "dataset.sigmaa", "did you mean 'sigma'"),
        ("[model]\nchanels = [8, 8]\n", "model.chanels", "did you mean 'channels'"),
        ("[wat]\nx = 1\n", "wat", "allowed: suite, dataset"),
        ("[evaluation]\nenergy_table = 'nope'\n", "evaluation.energy_table", "shipped: eyeriss, horowitz45"),
        ("[evaluation]\nhardware = 'tpu'\n", "evaluation.hardware", "shipped: eyeriss, eyeriss_fp32"),
        ("[evaluation]\nenergy_batch = 0\n", "evaluation.energy_batch", "an integer >= 1"),
    ],
)
def test_table_errors(tmp_path: Path, extra: str, key: str, message: str) -> None:
    msg = error_of(tmp_path, MINIMAL + extra)
    assert f": {key}: " in msg and message in msg, msg


@pytest.mark.parametrize(
    "variant, key, message",
    [
        (
            'name = "x"\nloss = "firn"',
            "variants[1] (x).loss",
            "unknown loss 'firn' (did you mean 'firm'?); known: base, distill, firm, firm-gated, soft, sum",
        ),
        ('name = "x"\nloss = "soft"', "variants[1] (x).exits", "needs at least 1 intermediate exit"),
        ('name = "x"\nloss = "sum"\nexits = ["p9"]', "variants[1] (x).exits[0]", "blocks 1..3"),
        (
            'name = "x"\nloss = "firm"\nexits = ["p1"]\nloss_options = { lamda = 1 }',
            "variants[1] (x).loss_options.lamda",
            "did you mean 'lambda'",
        ),
        (
            'name = "x"\nloss = "sum"\nexits = ["p1"]\npolicy = "greedy"',
            "variants[1] (x).policy",
            "known: entropy, max-prob, patience",
        ),
        ('name = "base"\nloss = "sum"\nexits = ["p1"]', "variants[1] (base).name", "duplicate variant name 'base'"),
        (
            'name = "x"\nloss = "firm"\nexits = ["p1"]\nsweep = { "loss_options.alpha" = [] }',
            "sweep.loss_options.alpha",
            "at least one value",
        ),
        (
            'name = "x"\nloss = "firm"\nexits = ["p1"]\nsweep = { "suite.seeds" = [1] }',
            "sweep.suite.seeds",
            "cannot sweep",
        ),
        (
            'name = "x"\nloss = "firm"\nexits = ["p1"]\nsweep = { "loss_options.lambda" = [0.5, -1.0] }',
            "loss_options",
            "lambda must be >= 0",
        ),
        (
            'name = "x"\nloss = "sum"\nexits = ["p1"]\ntrain = { momentum = 1.5 }',
            "variants[1] (x).train.momentum",
            "[0, 1)",
        ),
    ],
)
def test_variant_errors(tmp_path: Path, variant: str, key: str, message: str) -> None:
    msg = error_of(tmp_path, MINIMAL + "\n[[variants]]\n" + variant + "\n")
    assert key in msg and message in msg, msg


def test_empty_seed_list(tmp_path: Path) -> None:
    msg = error_of(tmp_path, MINIMAL.replace("seeds = [0, 1]", "seeds = []"))
    assert "suite.seeds: is empty" in msg


def test_overrides_are_validated_like_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)
    assert load_suite(path, ["train.epochs=3"]).train.epochs == 3
    with pytest.raises(SuiteError, match="train.epochs: -2 is out of range"):
        load_suite(path, ["train.epochs=-2"])
    with pytest.raises(SuiteError, match="did you mean 'epochs'"):
        load_suite(path, ["train.epoch=2"])
    with pytest.raises(SuiteError, match="no variant 'nope'"):
        load_suite(path, ["variants.nope.epochs=2"])
    assert load_suite(path, ["variants.base.epochs=7"]).variant("base").epochs == 7


def test_sweep_expands_to_runs(tmp_path: Path) -> None:
    text = (
        MINIMAL
        + """
[[variants]]
name = "firm"
loss = "firm"
exits = ["p1"]
sweep = { "loss_options.lambda" = [0.2, 0.6, 1.0] }
"""
    )
    runs = [r for r in expand_runs(load_suite(write(tmp_path, text))) if r.variant_base == "firm"]
    assert [(r.variant, r.seed) for r in runs] == [
        ("firm[lambda=0.2]", 0),
        ("firm[lambda=0.2]", 1),
        ("firm[lambda=0.6]", 0),
        ("firm[lambda=0.6]", 1),
        ("firm[lambda=1.0]", 0),
        ("firm[lambda=1.0]", 1),
    ]
    assert [r.job.loss_options["lambda"] for r in runs] == [0.2, 0.2, 0.6, 0.6, 1.0, 1.0]
    assert len({r.key for r in runs}) == 6
    # firm pre-trains with base by default: the same job as the base variant's run of that seed
    base_runs = {r.seed: r for r in expand_runs(load_suite(write(tmp_path, text))) if r.variant == "base"}
    assert all(r.job.pretrain is not None and r.job.pretrain.key == base_runs[r.seed].job.key for r in runs)


def test_equal_budget_splits_epochs(tmp_path: Path) -> None:
    text = (
        MINIMAL.replace("seeds = [0, 1]", "seeds = [0]")
        + """
[train]
epochs = 4
equal_budget = true

[[variants]]
name = "g"
loss = "firm-gated"
exits = ["p1"]
pretrain_epochs = 1
"""
    )
    (run,) = [r for r in expand_runs(load_suite(write(tmp_path, text))) if r.variant == "g"]
    assert run.job.train["epochs"] == 3 and run.job.pretrain.train["epochs"] == 1 and run.job.total_epochs == 4


def test_cli_validate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from bench.cli import main

    assert main(["validate", str(REPO / "suites/smoke.toml")]) == 0
    assert "8 run(s)" in capsys.readouterr().out
    assert main(["validate", str(write(tmp_path, MINIMAL + "[train]\nepochs = -1\n"))]) == 2
    assert "train.epochs" in capsys.readouterr().err


FROZEN = (
    MINIMAL
    + """
[[variants]]
name = "ic-only"
loss = "sum"
exits = ["p1"]
pretrain = "PRE"
train = { freeze_backbone = true, lr_schedule = "cosine" }
"""
)


def test_freeze_backbone_needs_a_pretrained_backbone_and_exits(tmp_path: Path) -> None:
    runs = expand_runs(load_suite(write(tmp_path, FROZEN.replace("PRE", "base"))))
    frozen = [r for r in runs if r.variant == "ic-only"]
    assert frozen[0].job.train["freeze_backbone"] is True and frozen[0].job.train["lr_schedule"] == "cosine"
    assert "freeze_backbone" not in frozen[0].job.pretrain.train  # the pre-training trains everything
    base = next(r for r in runs if r.variant == "base")
    assert frozen[0].job.pretrain.key == base.job.key  # so it reuses the base run's checkpoint
    msg = error_of(tmp_path, FROZEN.replace("PRE", "none"))
    assert "train.freeze_backbone" in msg and "randomly initialised backbone" in msg
    msg = error_of(tmp_path, MINIMAL + "\n[train]\nfreeze_backbone = true\n")
    assert "train.freeze_backbone" in msg and "no intermediate exits" in msg


DROPOUT = (
    MINIMAL
    + """
[[variants]]
name = "sum-p1"
loss = "sum"
exits = ["p1"]

[[variants]]
name = "firm-p1"
loss = "firm"
exits = ["p1"]
pretrain = "base"

[[variants]]
name = "base-drop"
loss = "base"
model_options = { dropout = [0.0, 0.2, 0.2] }

[[variants]]
name = "firm-drop"
loss = "firm"
exits = ["p1"]
pretrain = "base"
sweep = { "model_options.dropout" = [0.0, [0.0, 0.2, 0.2]] }

[model]
dropout = 0.0
"""
)


def test_model_options_per_variant_and_as_a_sweep(tmp_path: Path) -> None:
    runs = expand_runs(load_suite(write(tmp_path, DROPOUT)))
    by = {(r.variant, r.seed): r for r in runs}
    assert by[("base", 0)].job.model_options == {"dropout": 0.0}
    drop = by[("base-drop", 0)].job
    assert drop.model_options == {"dropout": [0.0, 0.2, 0.2]} and drop.key != by[("base", 0)].job.key
    # the firm sweep point with dropout pre-trains the base network with the same dropout (shared checkpoint)
    point = by[("firm-drop[dropout=[0.0, 0.2, 0.2]]", 0)].job
    assert point.pretrain.key == drop.key
    assert by[("firm-drop[dropout=0.0]", 0)].job.key == by[("firm-p1", 0)].job.key  # 0.0 == the suite's value
    msg = error_of(tmp_path, DROPOUT.replace("model_options = { dropout", "model_options = { dropuot"))
    assert "model_options.dropuot" in msg and "did you mean 'dropout'" in msg


def test_buffered_energy_settings_stay_out_of_run_keys_at_their_defaults(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(MINIMAL)
    plain = expand_runs(load_suite(path))
    explicit = expand_runs(load_suite(path, ["evaluation.hardware=eyeriss", "evaluation.energy_batch=1"]))
    fp32 = expand_runs(load_suite(path, ["evaluation.hardware=eyeriss_fp32"]))
    assert [r.key for r in plain] == [r.key for r in explicit]  # runs made before these settings keep their keys
    assert [r.key for r in plain] != [r.key for r in fp32] and [r.job.key for r in plain] == [r.job.key for r in fp32]


def test_epochs_factor_trains_a_multiple_of_the_suites_length(tmp_path: Path) -> None:
    """``sum-2x``: twice the suite's epochs, also when the length is overridden; its key is that of epochs = 2n."""
    text = MINIMAL + '\n[[variants]]\nname = "sum-2x"\nloss = "sum"\nexits = ["p1"]\nepochs_factor = 2\n'
    text += '\n[[variants]]\nname = "sum-4"\nloss = "sum"\nexits = ["p1"]\nepochs = 4\n'
    path = write(tmp_path, text)
    for overrides, want in (((), 40), (("train.epochs=2",), 4)):
        runs = {r.variant: r for r in expand_runs(load_suite(path, overrides), overrides)}
        assert runs["sum-2x"].job.train["epochs"] == want and runs["base"].job.train["epochs"] == want // 2
    runs = {r.variant: r for r in expand_runs(load_suite(path, ("train.epochs=2",)), ("train.epochs=2",))}
    assert runs["sum-2x"].job.key == runs["sum-4"].job.key
    msg = error_of(tmp_path, text.replace("epochs_factor = 2", "epochs_factor = 2\nepochs = 3"))
    assert "variants[1] (sum-2x).epochs_factor: give either epochs or epochs_factor, not both" in msg
    assert "an integer >= 1" in error_of(tmp_path, text.replace("epochs_factor = 2", "epochs_factor = 0"))
