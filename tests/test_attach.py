"""Exits attached to any backbone by module name: real skipping, costs per module, checkpoints,
errors that say what to do, suites with torchvision and CIFAR ResNets on synthetic data."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from bench.config.load import load_suite
from bench.config.suite import SuiteError
from bench.execute.runner import run_suite
from bench.measure.cost import profile
from bench.measure.energy import exit_costs
from bench.results.store import ResultStore
from cascade import build_policy, dynamic_forward, masked_decisions
from cascade.heads import HEADS, build_head
from cascade.models import MODELS, ExitAttachError, attach_exits

from .conftest import REPO
from .synthetic import write_cifar10, write_imagefolder


def _randomise_bn(model: nn.Module) -> nn.Module:
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.3, 0.3)
            m.running_var.uniform_(0.5, 1.5)
    return model.eval()


CASES = {
    "resnet18-2": ("resnet18", ["layer2", "layer3"]),
    "resnet18-3": ("resnet18", ["layer1", "layer2", "layer3"]),
    "mobilenet-2": ("mobilenet_v3_small", ["features.3", "features.8"]),
    "mobilenet-3": ("mobilenet_v3_small", ["features.2", "features.5", "features.9"]),
}


@pytest.fixture(scope="module", params=list(CASES))
def attached(request):
    arch, after = CASES[request.param]
    torch.manual_seed(0)
    plain = _randomise_bn(torchvision.models.get_model(arch, num_classes=10))
    net = attach_exits(plain, after, num_classes=10, input_shape=(3, 32, 32)).eval()
    return plain, net, after


@pytest.mark.parametrize("batch", [1, 7, 257])
def test_dynamic_equals_masked_on_attached_backbones(attached, batch: int) -> None:
    _, net, after = attached
    torch.manual_seed(batch)
    x = torch.randn(batch, 3, 32, 32)
    with torch.no_grad():
        logits = net(x).logits
    assert len(logits) == len(after) + 1
    conf = torch.cat([F.softmax(z, 1).amax(1) for z in logits[:-1]])
    for t in (0.0, float(conf.median()), 1.0):
        policy = build_policy("max-prob", threshold=t)
        dyn, ref = dynamic_forward(net, x, policy), masked_decisions(logits, policy)
        assert torch.equal(dyn.exit_index, ref.exit_index) and torch.equal(dyn.predictions, ref.predictions)


def test_attached_final_exit_is_the_plain_network(attached) -> None:
    plain, net, _ = attached
    x = torch.randn(5, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(net(x).final, plain(x))


def test_plain_checkpoint_loads_into_the_attached_model(attached) -> None:
    plain, _, after = attached
    other = torchvision.models.get_model(_arch(plain), num_classes=10)  # fresh weights
    fresh = attach_exits(other, after, num_classes=10, input_shape=(3, 32, 32))
    result = fresh.load_state_dict(plain.state_dict(), strict=False)
    assert result.unexpected_keys == [] and result.missing_keys
    assert all(k.startswith("exits.") for k in result.missing_keys)
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(fresh.eval()(x).final, plain(x))


def _arch(plain: nn.Module) -> str:
    return "resnet18" if isinstance(plain, torchvision.models.ResNet) else "mobilenet_v3_small"


def test_cost_rows_keep_module_paths_and_parameters() -> None:
    torch.manual_seed(0)
    net = attach_exits(
        torchvision.models.resnet18(num_classes=10), ["layer2"], num_classes=10, input_shape=(3, 32, 32)
    ).eval()
    prof = profile(net, torch.zeros(1, 3, 32, 32))
    rows = {r["module"]: r for r in prof.rows()}
    assert rows["layer1.0.conv1"]["params"] == 64 * 64 * 9 and rows["layer1.0.conv1"]["macs"] == 64 * 64 * 9 * 8 * 8
    assert rows["fc"]["params"] == 512 * 10 + 10 and rows["exits.layer2.1"]["params"] == 128 * 10 + 10
    assert prof.params == sum(p.numel() for p in net.parameters())  # every parameter sits in its own row
    assert rows["layer1.0.conv1"]["weight_bytes"] == 64 * 64 * 9 * 4  # weights read as weights
    costs = exit_costs(net, (3, 32, 32), [])
    plain = profile(torchvision.models.resnet18(num_classes=10).eval(), torch.zeros(1, 3, 32, 32))
    assert costs[-1].macs == plain.macs + 128 * 10  # the full net plus the exit head (pooling is not MACs)
    assert costs[0].macs < costs[-1].macs


def test_errors_say_what_to_do() -> None:
    with pytest.raises(ExitAttachError, match=r"no module 'layer9'.*did you mean.*top-level modules: conv1"):
        attach_exits(torchvision.models.resnet18(), ["layer9"], num_classes=1000, input_shape=(3, 32, 32))
    with pytest.raises(ExitAttachError, match=r"cannot cut after 'layer2.0.conv1'.*skip connection"):
        attach_exits(torchvision.models.resnet18(), ["layer2.0.conv1"], num_classes=1000, input_shape=(3, 32, 32))
    with pytest.raises(ExitAttachError, match="order in which the modules run"):
        attach_exits(torchvision.models.resnet18(), ["layer3", "layer2"], num_classes=1000, input_shape=(3, 32, 32))

    class Branchy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.a(x)
            if h.sum() > 0:  # data-dependent control flow: not traceable
                h = h * 2
            return self.b(h)

    with pytest.raises(ExitAttachError, match="cannot be traced by torch.fx.*MultiExitModel"):
        attach_exits(Branchy(), ["a"], num_classes=2, input_shape=(4,))


@pytest.mark.parametrize("name", HEADS.names())
@pytest.mark.parametrize("shape", [(16, 8, 8), (16, 7, 7)])
def test_every_head_maps_features_to_logits(name: str, shape: tuple[int, ...]) -> None:
    head = build_head(name, shape, 5)
    assert head(torch.randn(3, *shape)).shape == (3, 5)
    with pytest.raises(ValueError, match=f"exit head '{name}'"):
        build_head(name, shape, 5, {"no_such_option": 1})


def test_conv_linear_head_as_branchynet() -> None:
    """B-LeNet's branch on conv1's (5, 30, 30) output: MaxPool -> ReLU -> Conv(5, 10, 3) -> MaxPool -> ReLU -> 640."""
    head = build_head(
        "conv-linear", (5, 30, 30), 10, {"channels": 10, "pre_pool": True, "batch_norm": False, "flatten": True}
    )
    assert head[-1].in_features == 640 and head(torch.randn(2, 5, 30, 30)).shape == (2, 10)


# --------------------------------------------------------------------------- suites


def test_torchvision_suite_runs_on_synthetic_images(tmp_path: Path) -> None:
    data = write_imagefolder(tmp_path / "images", classes=3, per_class=8, size=32)
    suite = tmp_path / "tv.toml"
    suite.write_text(f"""
[suite]
name = "tv"
seeds = [0]
[dataset]
name = "imagefolder"
root = "{data}"
image_size = 32
random_crop = 4
random_flip = true
normalize = "per-channel"
[model]
name = "torchvision:resnet18"
head = "mlp"
head_options = {{ hidden = 16 }}
[train]
epochs = 1
batch_size = 8
lr = 0.01
[evaluation]
thresholds = [0.0, 0.5, 1.0]
headline_threshold = 0.5
latency = false
[[variants]]
name = "base"
loss = "base"
[[variants]]
name = "sum"
loss = "sum"
exits = ["layer2", "layer3"]
""")
    spec = load_suite(suite)
    assert spec.model.options["head_options"] == {"hidden": 16}
    s = run_suite(suite, out_dir=tmp_path / "out", progress=False, log=lambda s: None)
    assert s.done == 2 and not s.failed, s.failed
    rec = next(r for r in ResultStore(tmp_path / "out").iter_runs() if r.variant == "sum")
    assert rec.exits.names == ["layer2", "layer3", "final"] and rec.num_classes == 3
    assert rec.cost.unsupported == {} and rec.cost.per_exit[0].macs < rec.cost.per_exit[-1].macs
    assert rec.at(0.5).dynamic_matches_masked
    assert rec.config["job"]["dataset"]["random_crop"] == 4  # augmentation is part of the run's identity
    bad = tmp_path / "bad.toml"
    bad.write_text(suite.read_text().replace('exits = ["layer2", "layer3"]', 'exits = ["layer2", "layr3"]'))
    with pytest.raises(SuiteError, match=r"exits\[1\]: no module 'layr3' in ResNet \(did you mean 'layer3'"):
        load_suite(bad)
    bad.write_text(suite.read_text().replace("torchvision:resnet18", "torchvision:resnet19"))
    with pytest.raises(SuiteError, match="model.name: unknown model 'torchvision:resnet19': did you mean 'resnet18'"):
        load_suite(bad)


def test_cifar10_suite_validates_and_runs_on_synthetic_cifar(tmp_path: Path) -> None:
    write_cifar10(tmp_path / "data", per_batch=12, n_test=20)
    suite = tmp_path / "cifar10_resnet.toml"
    shutil.copy(REPO / "suites" / "cifar10_resnet.toml", suite)
    # ResNet-20 (layer2 has blocks 0..2) keeps the test quick; the suite's ResNet-56 is validated below
    exits = '["layer1", "layer2.1", "layer2"]'
    overrides = [
        f"dataset.root='{tmp_path / 'data'}'",
        "suite.seeds=[0]",
        "train.epochs=1",
        "model.name='resnet20'",
        "evaluation.latency=false",
        "train.eval_batch_size=64",
        *(f"variants.{v}.exits={exits}" for v in ("sum-3", "soft-3", "firm-gated-3")),
    ]
    spec = load_suite(suite, overrides)
    assert [v.name for v in spec.variants] == ["base", "sum-3", "soft-3", "firm-gated-3"]
    s = run_suite(suite, out_dir=tmp_path / "out", overrides=overrides, progress=False, log=lambda s: None)
    assert s.done == 4 and not s.failed, s.failed
    firm = next(r for r in ResultStore(tmp_path / "out").iter_runs() if r.variant == "firm-gated-3")
    assert firm.exits.names == ["layer1", "layer2.1", "layer2", "final"]
    assert firm.budget is not None and len(firm.budget.points) == 6
    assert MODELS.get("resnet56").depth == 56  # the suite's own network, validated above with its exits
    load_suite(REPO / "suites" / "cifar10_resnet.toml", [f"dataset.root='{tmp_path / 'data'}'"])


def test_docs_examples_run() -> None:
    """docs/models.md's examples (attach_exits and the manual MultiExitModel route) run as written."""
    import re

    from cascade.models import MODELS as registry

    text = (REPO / "docs" / "models.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) == 2
    try:
        for block in blocks:
            exec(compile(block, "docs/models.md", "exec"), {})
        assert "two_stage" in registry
    finally:
        if "two_stage" in registry:
            registry.unregister("two_stage")


def test_unregistered_segments_are_refused_by_exit_costs() -> None:
    from cascade import MultiExitModel

    class Hidden(MultiExitModel):
        def __init__(self) -> None:
            super().__init__()
            self._segments = [nn.Linear(4, 4), nn.Identity()]  # held only in the plain lists
            self._heads = [nn.Linear(4, 2), nn.Linear(4, 2)]
            self.exit_names = ("a", "final")

    with pytest.raises(ValueError, match="not registered on the model"):
        exit_costs(Hidden(), (4,), [])


def test_attach_exits_infers_num_classes_from_the_classifier() -> None:
    import torchvision

    from cascade.models.attach import infer_num_classes

    net = torchvision.models.resnet18(num_classes=7)
    net.train()
    attached = attach_exits(net, ["layer2"], input_shape=(3, 32, 32))
    assert attached.num_classes == 7 and net.training  # the mode is restored
    x = torch.randn(2, 3, 32, 32)
    assert [z.shape[1] for z in attached.eval()(x).logits] == [7, 7]
    with pytest.raises(ValueError, match="give num_classes"):
        infer_num_classes(torch.nn.Conv2d(3, 4, 3), (3, 8, 8))
