from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from cascade import StudyCNN, TrainConfig, build_loss, train
from cascade.data import DataSplits, Split
from cascade.training import ConfigError, NonFiniteLossError, TrainCallback

CFG = TrainConfig(epochs=2, batch_size=32, log_every=10, lr=0.05, momentum=0.9)


def small(digits) -> DataSplits:
    return dataclasses.replace(digits, train=Split(digits.train.x[:400], digits.train.y[:400]))


def run(digits, seed: int):
    torch.manual_seed(seed)
    model = StudyCNN(channels=(8, 16, 16), hidden=32, exits=("p2",))
    return train(model, build_loss("sum"), small(digits), CFG, seed=seed), model


def test_same_seed_identical_metrics(digits) -> None:
    (h1, m1), (h2, m2) = run(digits, 0), run(digits, 0)
    assert h1.log_losses == h2.log_losses
    assert [e.val_accuracy for e in h1.epochs] == [e.val_accuracy for e in h2.epochs]
    assert all(torch.equal(a, b) for a, b in zip(m1.state_dict().values(), m2.state_dict().values()))
    h3, _ = run(digits, 1)
    assert h3.log_losses != h1.log_losses


def test_history_counts_and_logging(digits) -> None:
    h, _ = run(digits, 0)
    assert h.steps == 2 * 13 and h.samples == 800  # 400 samples / 32 = 12.5 -> 13 batches
    assert h.log_iterations == [10, 20]
    assert len(h.epochs) == 2 and len(h.epochs[0].val_accuracy) == 2 and len(h.epochs[0].test_accuracy) == 2
    assert h.epochs[-1].val_accuracy[1] > 0.5  # it learns


def test_nan_loss_stops_with_clear_error(digits) -> None:
    class Exploding:
        calls = 0

        def check_exits(self, n: int) -> None: ...
        def set_epoch(self, e: int) -> None: ...

        def __call__(self, logits, y):
            self.calls += 1
            loss = torch.nn.functional.cross_entropy(logits[-1], y)
            return loss * float("nan") if self.calls == 3 else loss

    model = StudyCNN(channels=(4, 4, 4), hidden=8)
    with pytest.raises(NonFiniteLossError, match="loss is nan at epoch 1, iteration 3"):
        train(model, Exploding(), small(digits), CFG, seed=0)  # type: ignore[arg-type]
    # Deferred check (the GPU default): still the first bad iteration, found at the next check.
    loss = Exploding()
    with pytest.raises(NonFiniteLossError, match="loss is nan at epoch 1, iteration 3"):
        train(
            StudyCNN(channels=(4, 4, 4), hidden=8),
            loss,
            small(digits),
            dataclasses.replace(CFG, finite_check_every=5),
            seed=0,
        )  # type: ignore[arg-type]
    assert loss.calls == 5
    # A check interval longer than the epoch: caught at the epoch's end.
    loss = Exploding()
    steps = len(range(0, len(small(digits).train), CFG.batch_size))
    with pytest.raises(NonFiniteLossError, match="loss is nan at epoch 1, iteration 3"):
        train(
            StudyCNN(channels=(4, 4, 4), hidden=8),
            loss,
            small(digits),
            dataclasses.replace(CFG, finite_check_every=10_000),
            seed=0,
        )  # type: ignore[arg-type]
    assert loss.calls == steps


def test_callbacks_and_base_leaves_exit_heads_untouched(digits) -> None:
    seen: list[int] = []

    class Cb(TrainCallback):
        def on_epoch_end(self, record) -> None:
            seen.append(record.epoch)

    torch.manual_seed(0)
    model = StudyCNN(channels=(4, 4, 4), hidden=8, exits=("p1",))
    head_before = model.exits["p1"][1].weight.clone()
    train(model, build_loss("base"), small(digits), CFG, seed=0, callback=Cb())
    assert seen == [1, 2]
    assert torch.equal(model.exits["p1"][1].weight, head_before)


def test_config_validation() -> None:
    from cascade.training import ConfigError

    with pytest.raises(ValueError, match="epochs: -1 is out of range; allowed: an integer >= 0"):
        TrainConfig(epochs=-1)
    with pytest.raises(ConfigError, match="lr: 0 is out of range; allowed: a finite number > 0") as info:
        TrainConfig(lr=0)
    assert info.value.field == "lr"
    with pytest.raises(ConfigError, match="batch_size"):
        TrainConfig(batch_size=1)  # one definition with the suite: a batch of one breaks BatchNorm
    assert "finite_check_every" not in TrainConfig.run_fields()


def test_lr_schedule_factors_by_hand() -> None:
    # 4 steps per epoch; a 1-epoch warm-up ramps 1/4, 2/4, 3/4, 4/4
    warm = TrainConfig(epochs=3, warmup_epochs=1)
    assert [warm.lr_factor(s, 4) for s in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]
    step = TrainConfig(epochs=4, lr_schedule="step", lr_step_epochs=1, lr_gamma=0.5)
    assert [step.lr_factor(s, 4) for s in (0, 3, 4, 7, 8, 12)] == [1.0, 1.0, 0.5, 0.5, 0.25, 0.125]
    cos = TrainConfig(epochs=3, lr_schedule="cosine", warmup_epochs=1)  # 8 steps after the warm-up
    assert cos.lr_factor(3, 4) == 1.0 and cos.lr_factor(4, 4) == 1.0
    assert cos.lr_factor(8, 4) == pytest.approx(0.5)  # half-way: (1 + cos(pi/2)) / 2
    assert cos.lr_factor(10, 4) == pytest.approx((1 + math.cos(math.pi * 6 / 8)) / 2)
    assert TrainConfig().lr_factor(10**6, 4) == 1.0  # the study's constant rate


def test_lr_schedule_reaches_the_optimiser(digits) -> None:
    """A step schedule with gamma ~0 after epoch 1 freezes the weights: 2 epochs == 1 epoch."""

    def trained(cfg: TrainConfig) -> dict[str, torch.Tensor]:
        torch.manual_seed(0)
        model = StudyCNN(channels=(4, 4, 4), hidden=8)
        train(model, build_loss("base"), small(digits), cfg, seed=0, evaluate=False)
        return {k: p.detach() for k, p in model.named_parameters()}  # (batch-norm statistics still move)

    one = trained(dataclasses.replace(CFG, epochs=1))
    two = trained(dataclasses.replace(CFG, epochs=2, lr_schedule="step", lr_step_epochs=1, lr_gamma=1e-12))
    two_const = trained(dataclasses.replace(CFG, epochs=2))
    for k in one:
        assert torch.allclose(one[k], two[k], atol=1e-6), k
    assert not all(torch.allclose(one[k], two_const[k]) for k in one)


def test_freeze_backbone_trains_only_the_exit_heads(digits) -> None:
    torch.manual_seed(0)
    model = StudyCNN(channels=(4, 4, 4), hidden=8, exits=("p1",))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = dataclasses.replace(CFG, epochs=1, freeze_backbone=True)
    train(model, build_loss("sum"), small(digits), cfg, seed=0, evaluate=False)
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("exits.") for k in changed), changed
    assert any("running_mean" in k for k in before)  # batch-norm statistics exist and stayed frozen
    assert all(p.requires_grad for p in model.parameters())  # restored afterwards
    with pytest.raises(ConfigError, match="freeze_backbone: the model has no intermediate exit heads"):
        train(StudyCNN(channels=(4, 4, 4), hidden=8), build_loss("base"), small(digits), cfg, seed=0)


def test_channels_last_trains_the_same_function_in_nhwc_and_returns_the_default_layout(digits, monkeypatch) -> None:
    """Two SGD steps in NHWC against NCHW from the same seed: the same weights up to float rounding (one step's
    gradients agree to 1e-6; over an epoch at lr 0.05 and momentum 0.9 the rounding grows to 1e-2, hence few
    steps), the convolutions really fed NHWC, the model handed back contiguous; a key only away from the
    default; non-image inputs refused by name."""
    seen: list[tuple[bool, bool]] = []  # per convolution call: input NHWC, input NCHW
    conv_forward = torch.nn.Conv2d.forward
    data = dataclasses.replace(digits, train=Split(digits.train.x[:64], digits.train.y[:64]))
    cfg = TrainConfig(epochs=1, batch_size=32, lr=0.01, momentum=0.0)

    def spy(self, x):  # type: ignore[no-untyped-def]
        seen.append((x.is_contiguous(memory_format=torch.channels_last), x.is_contiguous()))
        return conv_forward(self, x)

    def trained(channels_last: bool) -> dict[str, torch.Tensor]:
        torch.manual_seed(0)
        model = StudyCNN(channels=(8, 16, 16), hidden=32, exits=("p1",))
        before = {k: v.clone() for k, v in model.state_dict().items()}
        train(model, build_loss("sum"), data, dataclasses.replace(cfg, channels_last=channels_last), evaluate=False)
        assert all(p.is_contiguous() for p in model.parameters())
        assert not torch.equal(before["blocks.0.0.weight"], model.state_dict()["blocks.0.0.weight"])  # it trained
        return {k: v.clone() for k, v in model.state_dict().items()}

    nchw = trained(False)
    monkeypatch.setattr(torch.nn.Conv2d, "forward", spy)
    nhwc = trained(True)
    # both steps' convolutions (3 per step, after the model's shape probe at construction) fed NHWC; the 8- and
    # 16-channel maps are NCHW in no way (a 1-channel image is both)
    steps = seen[-3 * 2 :]
    assert len(seen) == 3 * 3 and all(nhwc for nhwc, _ in steps) and sum(nchw for _, nchw in steps) == 2
    for k in nchw:
        torch.testing.assert_close(nhwc[k], nchw[k], atol=1e-5, rtol=1e-5, msg=k)
    assert "channels_last" not in TrainConfig().key_fields()
    assert TrainConfig(channels_last=True).key_fields()["channels_last"] is True
    flat = dataclasses.replace(digits, train=Split(digits.train.x[:64].flatten(1), digits.train.y[:64]))
    with pytest.raises(ConfigError, match=r"channels_last: needs image inputs \(N, C, H, W\); this dataset's are"):
        train(StudyCNN(), build_loss("base"), flat, dataclasses.replace(cfg, channels_last=True), evaluate=False)


def test_schedule_validation() -> None:
    with pytest.raises(ConfigError, match="lr_schedule: 'linear' is out of range; allowed: one of constant, step"):
        TrainConfig(lr_schedule="linear")
    with pytest.raises(ConfigError, match=r"warmup_epochs: 5 is out of range; allowed: an integer in \[0, epochs\]"):
        TrainConfig(epochs=2, warmup_epochs=5)
    with pytest.raises(ConfigError, match="lr_gamma"):
        TrainConfig(lr_gamma=0)
    # new fields stay out of the run keys at their defaults (keys of existing results unchanged)
    assert TrainConfig().key_fields() == {
        k: v
        for k, v in TrainConfig().key_fields().items()
        if k not in ("lr_schedule", "warmup_epochs", "lr_step_epochs", "lr_gamma", "freeze_backbone")
    }
    assert TrainConfig(lr_schedule="cosine").key_fields()["lr_schedule"] == "cosine"
    assert TrainConfig(freeze_backbone=True).key_fields()["freeze_backbone"] is True
