"""The roofline latency model (issue 15, item 3): predictions on a synthetic machine, the fit, the cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from bench import roofline
from bench.cost import LayerCost, profile
from bench.roofline import Machine, fit_overhead_bandwidth, layer_seconds, predict
from cascade import StudyCNN

SYNTH = Machine(device="synthetic", threads=1, channels_last=False, torch_version="-",
                mac_rate={"conv": 1e9, "conv_thin": 1e8, "matmul": 2e9}, bandwidth=1e9, overhead=1e-5)  # fmt: skip


def test_layer_time_is_overhead_plus_the_larger_of_compute_and_memory() -> None:
    conv = LayerCost("c", "Conv2d", macs=2_000_000, input_bytes=400_000, weight_bytes=100_000, output_bytes=500_000,
                     mac_type=True, family="conv", ops=1)  # fmt: skip
    # compute 2e6 / 1e9 = 2 ms > memory 1e6 / 1e9 = 1 ms; plus one op's 10 us
    assert layer_seconds(conv, SYNTH) == (pytest.approx(2e-3 + 1e-5), "compute")
    thin = LayerCost("t", "Conv2d", macs=2_000_000, input_bytes=1, output_bytes=1, mac_type=True, family="conv_thin",
                     ops=1)  # fmt: skip
    assert layer_seconds(thin, SYNTH)[0] == pytest.approx(2e-2 + 1e-5)  # the thin family's rate, 10x lower
    relu = LayerCost("r", "ReLU", input_bytes=3_000_000, output_bytes=3_000_000, ops=2)
    assert layer_seconds(relu, SYNTH) == (pytest.approx(6e-3 + 2e-5), "memory")
    bn = LayerCost("b", "BatchNorm2d", macs=1000, norm_macs=1000, input_bytes=8, output_bytes=8, ops=1)
    assert layer_seconds(bn, SYNTH) == (pytest.approx(1e-5 + 16e-9), "overhead")  # BN MACs are not a kernel's


def test_kernel_calls_pay_their_family_launch_cost() -> None:
    m = Machine(**{**SYNTH.to_dict(), "launch": {"conv": 5e-5, "matmul": 2e-5}})
    conv = LayerCost("c", "Conv2d", macs=1000, input_bytes=8, output_bytes=8, mac_type=True, family="conv", ops=3,
                     mac_ops=2)  # fmt: skip
    # 2 kernel calls x 50 us + 1 other op x 10 us + max(1e-6 compute, 16e-9 memory)
    assert layer_seconds(conv, m) == (pytest.approx(2 * 5e-5 + 1e-5 + 1e-6), "overhead")


def test_prediction_of_a_profiled_linear_layer_by_hand() -> None:
    lin = nn.Linear(100, 50, bias=False)
    prof = profile(lin, torch.zeros(8, 100))
    (row,) = prof.layers
    assert row.family == "matmul" and row.macs == 8 * 100 * 50 and row.ops == row.mac_ops == 1
    # bytes: 800 inputs + 5,000 weights + 400 outputs, x 4 = 24,800 B -> 24.8 us > 40,000 MACs / 2e9 = 20 us
    pred = predict(prof, SYNTH)
    assert pred.seconds == pytest.approx(1e-5 + 24_800 / 1e9)
    assert pred.per_sample == pytest.approx(pred.seconds / 8) and pred.share("memory") == 1.0


def test_thin_convolutions_are_their_own_family() -> None:
    model = StudyCNN(exits=()).eval()
    families = {r.module: r.family for r in profile(model, torch.zeros(1, 1, 28, 28)).layers if r.mac_type}
    assert families["blocks.0.0"] == "conv_thin" and families["blocks.1.0"] == "conv"
    assert families["classifier.1"] == "matmul"


def test_fit_recovers_a_known_line_and_refuses_a_flat_one() -> None:
    sizes = [1e3, 1e4, 1e5, 1e6, 1e7]
    overhead, bw = fit_overhead_bandwidth(sizes, [2e-6 + b / 5e9 for b in sizes])
    assert overhead == pytest.approx(2e-6, rel=1e-6) and bw == pytest.approx(5e9, rel=1e-6)
    with pytest.raises(ValueError, match="do not grow with size"):
        fit_overhead_bandwidth(sizes, [1e-3, 9e-4, 8e-4, 7e-4, 6e-4])


def test_machine_is_measured_once_and_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(roofline.CACHE_ENV, str(tmp_path))
    calls = []

    def fake(device: object, *, channels_last: bool | None = None) -> Machine:
        calls.append(device)
        return SYNTH

    monkeypatch.setattr(roofline, "measure_machine", fake)
    assert roofline.machine("cpu") == SYNTH and roofline.machine("cpu") == SYNTH
    assert len(calls) == 1
    (cached,) = tmp_path.glob("*.json")
    assert json.loads(cached.read_text())["mac_rate"]["conv"] == 1e9 and f"t{torch.get_num_threads()}" in cached.name
    roofline.machine("cpu", refresh=True)
    assert len(calls) == 2
    monkeypatch.setenv(roofline.CACHE_ENV, "off")
    roofline.machine("cpu")
    assert len(calls) == 3 and len(list(tmp_path.glob("*.json"))) == 1


def test_the_micro_benchmark_measures_positive_figures() -> None:
    m = roofline.measure_machine("cpu")
    assert set(m.mac_rate) == set(roofline.FAMILIES) and all(r > 1e6 for r in m.mac_rate.values())
    assert m.bandwidth > 1e8 and 0 <= m.overhead < 1e-3 and m.threads == torch.get_num_threads()
    assert set(m.launch) == set(roofline.FAMILIES) and all(0 < t < 0.1 for t in m.launch.values())
