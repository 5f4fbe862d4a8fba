"""Cost accounting against hand formulas, fvcore, and the real dynamic forward."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from bench.config.tables import EnergyTable, load_energy_table
from bench.measure.cost import counting, profile
from bench.measure.energy import energy_breakdown, exit_costs, expected_cost
from cascade import StudyCNN, build_policy, dynamic_forward


def rows_by_type(prof) -> dict[str, object]:
    return {layer.op_type: layer for layer in prof.layers}


def test_hand_formulas_conv_linear_bn_pool() -> None:
    # Conv 3->8, 3x3, padding 1 on 10x10: out 8x10x10, MACs = 800 * 3 * 9 = 21,600 per sample.
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.MaxPool2d(2), nn.ReLU(), nn.Flatten(), nn.Linear(200, 5)
    ).eval()
    prof = profile(net, torch.zeros(2, 3, 10, 10))
    by = rows_by_type(prof)
    assert by["Conv2d"].macs == 2 * 800 * 27
    assert by["BatchNorm2d"].macs == 2 * 800  # one scale-and-shift per element
    assert by["MaxPool2d"].macs == 0 and by["MaxPool2d"].other_ops == 2 * 200 * 4  # 2x2 window compares
    assert by["ReLU"].other_ops == 2 * 200
    assert by["Linear"].macs == 2 * 200 * 5
    assert prof.flops == 2 * prof.macs
    assert prof.params == sum(p.numel() for p in net.parameters())
    assert prof.unsupported == {}
    assert prof.samples == 2


def test_bytes_of_a_linear_layer_by_hand() -> None:
    lin = nn.Linear(3, 2)
    prof = profile(lin, torch.zeros(4, 3))
    (row,) = prof.layers
    assert row.input_bytes == 4 * 3 * 4  # batch 4 x 3 features x fp32
    assert row.weight_bytes == (3 * 2 + 2) * 4  # weight + bias
    assert row.output_bytes == 4 * 2 * 4
    assert row.macs == 4 * 3 * 2


def test_energy_of_one_linear_layer_by_hand() -> None:
    lin = nn.Linear(4, 3, bias=False)
    prof = profile(lin, torch.zeros(1, 4))
    table = load_energy_table("eyeriss")
    m, i, w, o = 12, 4, 12, 3  # MACs, input, weight, output elements
    expected = {
        "mac": m * 1.0,
        "rf": 3 * m * 1.0,
        "array": 3 * m / 1 * 2.0,  # kernel width 1 for a linear layer
        "glb": (i + w + 2 * o) * 6.0,
        "dram": (i + w + o) * 200.0,
    }
    got = energy_breakdown(prof, table)
    for k, v in expected.items():
        assert got[k] == pytest.approx(v), k
    assert got["total"] == pytest.approx(sum(expected.values()))  # 12 + 36 + 72 + 132 + 3800 = 4052
    assert got["total"] == pytest.approx(4052.0)


def test_custom_energy_table_file(tmp_path) -> None:
    p = tmp_path / "mine.toml"
    p.write_text('unit = "pJ"\nmac = 2.0\n[access]\ndram = 100.0\nglb = 1.0\narray = 0.5\nrf = 0.25\n')
    t = load_energy_table(p)
    assert isinstance(t, EnergyTable) and t.access["dram"] == 100.0
    p.write_text('unit = "pJ"\nmac = 2.0\n[access]\ndram = 100.0\n')
    with pytest.raises(ValueError, match="lacks levels"):
        load_energy_table(p)


def test_unknown_operators_are_listed_not_counted() -> None:
    class Odd(nn.Module):
        def forward(self, x):
            return torch.erf(x).cumsum(1)

    prof = profile(Odd(), torch.zeros(2, 3))
    assert set(prof.unsupported) == {"aten.erf", "aten.cumsum"}


def fvcore_macs(model: nn.Module, x: torch.Tensor) -> dict[str, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fvcore.nn import FlopCountAnalysis

        analysis = FlopCountAnalysis(model, x)
        analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        return dict(analysis.by_operator())  # fvcore: one fused multiply-add = one "flop" = our MAC


def ours_by_kind(prof) -> dict[str, int]:
    out = {"conv": 0, "linear": 0}
    for layer in prof.layers:
        if layer.op_type.startswith("Conv"):
            out["conv"] += layer.macs
        elif layer.op_type == "Linear":
            out["linear"] += layer.macs
    return out


@pytest.mark.parametrize("name", ["study_cnn", "resnet18", "mobilenet_v3_small"])
def test_agrees_with_fvcore_on_conv_and_linear(name: str) -> None:
    import torchvision

    if name == "study_cnn":
        model, x = StudyCNN(exits=("p1", "p2")).eval(), torch.zeros(1, 1, 28, 28)

        # fvcore traces the all-exits forward, which returns a dataclass; trace a tuple instead
        class Tuple(nn.Module):
            def __init__(self, m):
                super().__init__()
                self.m = m

            def forward(self, x):
                return self.m(x).logits

        traced_model = Tuple(model)
    else:
        model = getattr(torchvision.models, name)().eval()
        x = torch.zeros(1, 3, 224, 224)
        traced_model = model
    ours = ours_by_kind(profile(model, x))
    ref = fvcore_macs(traced_model, x)
    ref_linear = ref.get("linear", 0) + ref.get("addmm", 0) + ref.get("matmul", 0)
    assert ours["conv"] == pytest.approx(ref["conv"], rel=0.01)
    assert ours["linear"] == pytest.approx(ref_linear, rel=0.01)


def test_agrees_with_torch_flop_counter() -> None:
    from torch.utils.flop_counter import FlopCounterMode

    model = StudyCNN(exits=("p1",)).eval()
    x = torch.randn(3, 1, 28, 28)
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        model(x)
    prof = profile(model, x)
    mac_layers = sum(layer.macs for layer in prof.layers if layer.op_type in ("Conv2d", "Linear"))
    assert 2 * mac_layers == fc.get_total_flops()


def test_exit_head_that_only_feeds_the_decision_is_counted() -> None:
    torch.manual_seed(0)
    model = StudyCNN(exits=("p1",)).eval()
    x = torch.randn(16, 1, 28, 28)
    never = build_policy("max-prob", threshold=1.0)  # nobody leaves early, but head p1 must still run
    with counting(model) as prof:
        res = dynamic_forward(model, x, never)
    assert res.counts.tolist() == [0, 16]
    costs = exit_costs(model, (1, 28, 28), [])
    base = exit_costs(StudyCNN().eval(), (1, 28, 28), [])[0].macs
    head = 32 * 14 * 14 * 10
    assert costs[-1].macs == base + head
    assert prof.macs == 16 * costs[-1].macs
    assert "exits.p1.1" in {layer.module for layer in prof.layers}


def test_per_exit_cost_is_cumulative() -> None:
    model = StudyCNN(exits=("p1", "p2")).eval()
    c = exit_costs(model, (1, 28, 28), [load_energy_table("eyeriss")])
    conv1 = 28 * 28 * 32 * 25
    bn1 = 32 * 28 * 28
    head1 = 32 * 14 * 14 * 10
    assert c[0].macs == conv1 + bn1 + head1
    conv2, bn2, head2 = 14 * 14 * 64 * 32 * 25, 64 * 14 * 14, 64 * 7 * 7 * 10
    assert c[1].macs == c[0].macs + conv2 + bn2 + head2
    assert c[0].macs < c[1].macs < c[2].macs
    assert c[0].energy["eyeriss"]["total"] < c[2].energy["eyeriss"]["total"]


@pytest.mark.parametrize("exits", [("p1",), ("p1", "p2")])
def test_expected_cost_matches_counted_dynamic_forward(exits) -> None:
    torch.manual_seed(0)
    model = StudyCNN(channels=(8, 16, 16), hidden=32, exits=exits).eval()
    x = torch.randn(500, 1, 28, 28)
    per_exit = [c.macs for c in exit_costs(model, (1, 28, 28), [])]
    with torch.no_grad():
        conf = torch.softmax(model.forward_until(x, 0).logits[0], 1).amax(1)
    policy = build_policy("max-prob", threshold=float(conf.median()))
    with counting(model) as prof:
        res = dynamic_forward(model, x, policy)
    shares = (res.counts.float() / len(x)).tolist()
    assert 0.3 < shares[0] < 0.7
    assert prof.macs / len(x) == pytest.approx(expected_cost(shares, per_exit), rel=0.005)


def test_cli_cost_needs_no_data(tmp_path, monkeypatch, capsys) -> None:
    from bench.cli import main

    from .conftest import REPO

    monkeypatch.setenv("CASCADE_DATA_DIR", str(tmp_path))  # empty: MNIST is not there
    monkeypatch.setenv("COLUMNS", "200")
    args = ["cost", str(REPO / "suites/mnist.toml"), "--variant", "firm-p1", "--energy-table", "horowitz45"]
    assert main(args) == 0
    out = capsys.readouterr().out
    # backbone + classifier 21,039,232 MACs, plus exit head p1: 32 x 14 x 14 x 10 = 62,720
    assert "exits.p1.1" in out
    assert "21,101,952 MACs = 42,203,904 FLOPs" in out
