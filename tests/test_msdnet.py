"""MSDNet (cascade.models.msdnet) against the reference implementation (kalviny/MSDNet-PyTorch).

The reference's figures below were produced by running its ``models/msdnet.py`` with its ``op_counter.py``
(batch 1, every classifier) for the README's and ``args.py``'s configurations: parameters of the whole network,
and the counter's cumulative operations at each classifier (convolution and linear multiply-adds, ReLU and
pooling elements, linear biases: the counter's own convention). Ours counts MACs at the dispatch level; the two
agree within 1 % per exit, and the parameters exactly.
"""

from __future__ import annotations

import math

import pytest
import torch

from bench.measure.cost import profile
from cascade.exits import build_policy, dynamic_forward, masked_decisions
from cascade.losses import build_loss
from cascade.models import build_model
from cascade.models.msdnet import PRESETS, MSDNet, MSDNetConfig, build_blocks
from cascade.training import equilibrium_logits

#: The reference's figures: (preset, classes, input size) -> (parameters, cumulative operations per classifier).
REFERENCE = {
    # --nBlocks 7 --stepmode even --step 2 --base 4 --nChannels 16, CIFAR-100 / CIFAR-10
    ("cifar-anytime", 100, 32): (3_067_960, [15.140e6, 25.506e6, 37.096e6, 46.331e6, 57.336e6, 66.961e6, 75.938e6]),
    ("cifar-anytime", 10, 32): (2_986_690, [15.129e6, 25.483e6, 37.061e6, 46.285e6, 57.277e6, 66.891e6, 75.856e6]),
    # --nBlocks 5 --stepmode lin_grow --step 1 --base 1 --nChannels 16, CIFAR-100 (the budgeted configuration)
    ("cifar-budget", 100, 32): (2_078_924, [6.860e6, 14.350e6, 27.537e6, 41.715e6, 58.481e6]),
    # --nBlocks 5 --stepmode even --step 4 --base 4 --nChannels 32 --growthRate 16 --grFactor 1-2-4-4, ImageNet
    ("imagenet", 1000, 224): (23_958_440, [339.000e6, 684.554e6, 1007.253e6, 1253.570e6, 1359.626e6]),
}


def _all_exits(preset: str, classes: int, size: int, channels: int = 3) -> MSDNet:
    n = PRESETS[preset].n_blocks
    model = build_model(
        "msdnet",
        preset=preset,
        num_classes=classes,
        in_channels=channels,
        input_size=size,
        exits=[f"block{k}" for k in range(1, n)],
    )
    assert isinstance(model, MSDNet)
    return model.eval()


@pytest.mark.parametrize(("preset", "classes", "size"), list(REFERENCE), ids=lambda v: str(v))
def test_parameters_and_macs_equal_the_reference(preset: str, classes: int, size: int) -> None:
    params, ops = REFERENCE[(preset, classes, size)]
    model = _all_exits(preset, classes, size)
    assert sum(p.numel() for p in model.parameters()) == params
    x = torch.zeros(1, 3, size, size)
    for level, expected in enumerate(ops):
        macs = profile(model, x, forward=lambda inp, lv=level: model.forward_until(inp, lv)).macs
        assert macs == pytest.approx(expected, rel=0.01), f"exit {level + 1}: {macs:,} MACs, reference {expected:,.0f}"


def _expected_channels(cfg: MSDNetConfig) -> list[list[int]]:
    """Per block, the channels at each kept scale of its output, by the paper's rules written out by hand: each
    layer adds g * gr_factor[s], a transition (where a scale is dropped) keeps floor(reduction * c)."""
    total = sum(cfg.steps)
    interval = math.ceil(total / cfg.n_scales)
    c, layer, out = cfg.n_channels, 0, []
    for step in cfg.steps:
        for _ in range(step):
            layer += 1
            before = cfg.n_scales - math.floor(max(0, layer - 2) / interval)
            after = cfg.n_scales - math.floor((layer - 1) / interval)
            c += cfg.growth_rate
            if before > after and cfg.reduction > 0:
                c = math.floor(cfg.reduction * c)
            kept = after
        out.append([c * f for f in cfg.gr_factor[cfg.n_scales - kept :]])
    return out


@pytest.mark.parametrize("preset", ["cifar-anytime", "cifar-budget", "mnist-small"])
@pytest.mark.parametrize("step_mode", ["even", "lin_grow"])
def test_every_scale_of_every_block_has_the_expected_shape(preset: str, step_mode: str) -> None:
    cfg = PRESETS[preset]
    cfg = MSDNetConfig(**{**cfg.__dict__, "step_mode": step_mode})
    size, channels = (28, 1) if preset == "mnist-small" else (32, 3)
    blocks, widths = build_blocks(cfg, channels)
    expected = _expected_channels(cfg)
    h: object = torch.zeros(2, channels, size, size)
    for b, block in enumerate(blocks):
        h = block.eval()(h)
        assert isinstance(h, list)
        assert [t.shape[1] for t in h] == expected[b], f"block {b + 1}"
        kept = len(h)
        sizes = [size // 2**s for s in range(cfg.n_scales)][cfg.n_scales - kept :]
        assert [tuple(t.shape[2:]) for t in h] == [(s, s) for s in sizes]
        assert widths[b] * cfg.gr_factor[-1] == h[-1].shape[1]
    layers = {
        "even": [cfg.base] + [cfg.step] * (cfg.n_blocks - 1),
        "lin_grow": [cfg.base] + [cfg.step * b + 1 for b in range(1, cfg.n_blocks)],
    }[step_mode]
    assert cfg.steps == layers


def test_imagenet_stem_and_four_scales() -> None:
    blocks, _ = build_blocks(PRESETS["imagenet"], 3)
    h = blocks[0].eval()(torch.zeros(1, 3, 224, 224))
    assert [tuple(t.shape[1:]) for t in h] == [
        (32 + 4 * 16, 56, 56),
        (2 * 96, 28, 28),
        (4 * 96, 14, 14),
        (4 * 96, 7, 7),
    ]


@pytest.fixture(scope="module")
def small() -> MSDNet:
    torch.manual_seed(0)
    model = build_model(
        "msdnet",
        preset="mnist-small",
        num_classes=10,
        in_channels=1,
        input_size=28,
        exits=["block1", "block2", "block3"],
    )
    assert isinstance(model, MSDNet)
    # BN statistics that are not the identity, so that eval mode computes something non-trivial
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(32, 1, 28, 28))
    return model.eval()


@pytest.mark.parametrize("batch", [1, 7, 64])
@pytest.mark.parametrize("threshold", [0.0, 0.105, 0.11, 1.0])
def test_dynamic_forward_equals_the_masked_full_computation(small: MSDNet, batch: int, threshold: float) -> None:
    x = torch.randn(64, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    policy = build_policy("max-prob", threshold=threshold)
    want = masked_decisions(small(x).logits, policy)
    got = [dynamic_forward(small, x[i : i + batch], policy) for i in range(0, 64, batch)]
    assert torch.equal(torch.cat([g.predictions for g in got]), want.predictions)
    assert torch.equal(torch.cat([g.exit_index for g in got]), want.exit_index)


def test_exits_names_and_a_base_network_that_loads_into_the_multi_exit_one() -> None:
    base = build_model("msdnet", preset="mnist-small", in_channels=1, input_size=28)
    multi = build_model("msdnet", preset="mnist-small", in_channels=1, input_size=28, exits=["block3", "block1"])
    assert base.exit_names == ("final",) and multi.exit_names == ("block1", "block3", "final")
    result = multi.load_state_dict(base.state_dict(), strict=False)
    assert not result.unexpected_keys
    assert {k.split(".")[1] for k in result.missing_keys} == {"0", "2"}  # the two intermediate classifiers
    assert all(k.startswith(multi.exit_parameter_prefixes()) for k in result.missing_keys)
    with pytest.raises(ValueError, match=r"'block4'.*blocks 1\.\.3 and its last one"):
        build_model("msdnet", preset="mnist-small", in_channels=1, input_size=28, exits=["block4"])
    with pytest.raises(ValueError, match="unknown MSDNet preset 'cifar'; presets: cifar-anytime"):
        MSDNet.check(preset="cifar")


def test_onnx_runtime_equals_eager_on_every_exit(small: MSDNet) -> None:
    pytest.importorskip("onnxruntime")
    from cascade.agreement import check_against_eager
    from cascade.ort import OrtCascade

    x = torch.randn(33, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    ort = OrtCascade.from_model(small, x[:2])
    for level in range(small.num_exits):
        eager = small.forward_until(x, level).logits[-1].detach()
        assert torch.allclose(torch.from_numpy(ort.forward_until(x.numpy(), level)[-1]), eager, atol=1e-4)
    for batch in (1, 8):
        agree, _ = check_against_eager(
            small, lambda xb, p: ort.dynamic(xb.numpy(), p), x, build_policy("max-prob", threshold=0.105), batch
        )
        assert agree["other"] == 0


@pytest.mark.parametrize("loss", ["sum", "soft", "firm-gated", "distill"])
def test_one_training_step_per_loss(loss: str) -> None:
    torch.manual_seed(0)
    model = build_model(
        "msdnet", preset="mnist-small", num_classes=10, in_channels=1, input_size=28, exits=["block1", "block2"]
    )
    x, y = torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,))
    before = [p.detach().clone() for p in model.parameters()]
    value = build_loss(loss, num_exits=model.num_exits)(model(x).logits, y)
    assert torch.isfinite(value)
    value.backward()
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters()))


def test_gradient_equilibrium_rescales_the_coarsest_scale_only(small: MSDNet) -> None:
    seen: list[tuple[int, ...]] = []

    def rescale(t: torch.Tensor, scale: float) -> torch.Tensor:
        seen.append(tuple(t.shape[1:]))
        return t

    h = small.exit_segments[0](torch.zeros(2, 1, 28, 28))
    assert small.rescale_head_input(h, 0.5, rescale)[:-1] == h[:-1] and seen == [tuple(h[-1].shape[1:])]
    model = build_model("msdnet", preset="mnist-small", in_channels=1, input_size=28, exits=["block2"]).train()
    x = torch.randn(4, 1, 28, 28)
    plain = [z.detach() for z in model(x).logits]
    with_ge = equilibrium_logits(model, x)
    assert all(torch.allclose(a, b) for a, b in zip(plain, with_ge))  # the forward values are unchanged
