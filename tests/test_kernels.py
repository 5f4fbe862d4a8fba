"""Batch 1 in the roofline: convolution rates by output pixels per call, the cost of a module
call, and the small-call kernel table (bench.measure.kernels)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

from bench.measure import kernels, roofline
from bench.measure.cost import LayerCost, counting, profile
from bench.measure.kernelkey import SMALL_BATCH, kernel_key
from bench.measure.roofline import Machine, layer_seconds, predict

SYNTH = Machine(
    device="synthetic",
    threads=1,
    channels_last=False,
    torch_version="-",
    mac_rate={"conv": 1e9, "conv_thin": 1e8, "matmul": 2e9},
    bandwidth=1e9,
    overhead=1e-5,
)


def test_convolution_rate_follows_the_output_pixels_per_call() -> None:
    """Series 0 (large batch), 1 (batch 1, 784 pixels) and 3 (batch 1, 49 pixels), each at K = 25 and 1600:
    the rate at a layer's K, then in log pixels per call between the series (clamped)."""
    curve = [
        [25, 4e10, 1e8, 64, 50176, 0],
        [1600, 8e10, 1e9, 16, 3136, 0],
        [25, 8e9, 1e6, 1, 784, 1],
        [1600, 6e10, 1e7, 1, 196, 1],
        [25, 1e9, 1e5, 1, 49, 3],
        [1600, 2e10, 1e6, 1, 49, 3],
    ]
    m = Machine(**{**SYNTH.to_dict(), "conv_curve": curve})
    assert roofline.conv_rate(1600, m, 1.0, pixels=49) == pytest.approx(2e10)  # a 7 x 7 map: its series
    assert roofline.conv_rate(1600, m, 1.0, pixels=196) == pytest.approx(6e10)
    assert roofline.conv_rate(1600, m, 1.0, pixels=10) == pytest.approx(2e10)  # clamped
    assert roofline.conv_rate(25, m, 1.0, pixels=7 * 28) == pytest.approx((8e9 + 1e9) / 2)  # half-way in log px
    assert roofline.conv_rate(25, m) == pytest.approx(4e10)  # no call size: the large-batch rate
    # half-way in log K (200): series 1 at 3.4e10 on 490 pixels (pixels linear in log K), series 3 at 1.05e10
    assert roofline.conv_rate(200, m, 1.0, pixels=490) == pytest.approx(3.4e10)
    conv = LayerCost(
        "c",
        "Conv2d",
        macs=2_000_000,
        input_bytes=8,
        output_bytes=8,
        mac_type=True,
        ops=2,
        mac_ops=2,
        family_macs={"conv": 2_000_000},
        family_ops={"conv": 2},
        conv_reduction_macs={1600: 2_000_000},
        conv_reduction_calls={1600: 2},
        conv_reduction_pixels={1600: 98},
    )
    assert layer_seconds(conv, m)[0] == pytest.approx(2e6 / 2e10 + 2e-5)  # 49 pixels per call
    row = profile(nn.Conv2d(4, 8, 3, padding=1), torch.zeros(2, 4, 7, 7)).layers[0]
    assert row.conv_reduction_pixels == {36: 2 * 7 * 7}


def test_every_module_call_is_counted_and_priced() -> None:
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Sequential(nn.Identity(), nn.ReLU()), nn.Flatten())
    prof = profile(model, torch.zeros(1, 1, 5, 5))
    assert prof.module_calls == 6  # the outer and inner Sequential, Conv2d, Identity, ReLU, Flatten
    m = Machine(**{**SYNTH.to_dict(), "module_call": 2e-6})
    rows = predict(prof, m).layers
    assert rows[-1] == {"module": "(module calls)", "seconds": pytest.approx(6 * 2e-6), "bound": "overhead"}
    assert predict(prof, m).seconds == pytest.approx(predict(prof, SYNTH).seconds + 1.2e-5)


def test_small_calls_are_keyed_exactly_and_replayed_alike() -> None:
    conv = nn.Conv2d(3, 5, 3, padding=1).to(memory_format=torch.channels_last)
    x = torch.randn(1, 3, 9, 9).contiguous(memory_format=torch.channels_last)
    (row,) = profile(conv, x).layers
    ((key, calls),) = row.small_kernels.items()
    assert calls == 1
    name, args, _ = json.loads(key)
    assert name == "aten.convolution.default" and args[0] == {"t": [1, 3, 9, 9], "s": list(x.stride()), "d": "float32"}
    assert args[3:6] == [[1, 1], [1, 1], [1, 1]]  # stride, padding, dilation
    out = kernels.replay(key)()
    assert out.shape == (1, 5, 9, 9) and out.stride() == conv(x).stride()  # the same kernel on the same layout
    big = profile(conv, torch.randn(SMALL_BATCH + 1, 3, 9, 9)).layers[0]
    assert big.small_kernels == {}  # large calls stay on the rates
    pool = profile(nn.MaxPool2d(2), torch.zeros(1, 3, 4, 4)).layers[0]
    assert len(pool.small_kernels) == 1
    assert kernel_key(torch.ops.aten.relu.default, [torch.device("cpu")], {}) is None  # not describable


def test_a_layer_takes_its_small_calls_from_the_table() -> None:
    """Two conv calls of 100 us and a pool of 30 us from the table, the row's ReLU at 10 us dispatch + its bytes."""
    conv = nn.Sequential(nn.Conv2d(1, 4, 3), nn.MaxPool2d(2), nn.ReLU())
    x = torch.zeros(1, 1, 10, 10)
    prof = profile(conv, x)
    layers = {r.module: r for r in prof.layers}
    (ck,) = layers["0"].small_kernels
    (pk,) = layers["1"].small_kernels
    m = Machine(**{**SYNTH.to_dict(), "kernel_table": {ck: 1e-4, pk: 3e-5}})
    assert layer_seconds(layers["0"], m)[0] == pytest.approx(1e-4 + (layers["0"].ops - 1) * 1e-5)
    assert layer_seconds(layers["1"], m)[0] == pytest.approx(3e-5 + (layers["1"].ops - 1) * 1e-5)
    assert layer_seconds(layers["2"], m) == layer_seconds(layers["2"], SYNTH)  # no kernel: as before
    half = Machine(**{**SYNTH.to_dict(), "kernel_table": {pk: 3e-5}})
    assert layer_seconds(layers["0"], half) == layer_seconds(layers["0"], SYNTH)  # not in the table: the rates


def test_the_table_is_measured_once_and_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CASCADE_ROOFLINE_CACHE", str(tmp_path))
    measured: list[str] = []

    def fake(keys: list[str], device: object = "cpu") -> dict[str, float]:
        measured.extend(keys)
        return {k: 1e-4 * (i + 1) for i, k in enumerate(keys)}

    monkeypatch.setattr(kernels, "measure", fake)
    m = kernels.tabled(SYNTH, ["a", "b"])
    assert m.kernel_table == {"a": 1e-4, "b": 2e-4} and measured == ["a", "b"]
    again = kernels.tabled(SYNTH, ["b", "c"])  # b from the cache file; c measured after b, as in its path
    assert again.kernel_table == {"b": 2e-4, "c": 2e-4} and measured == ["a", "b", "b", "c"]
    ort = Machine(**{**SYNTH.to_dict(), "runtime": "onnxruntime"})
    assert kernels.tabled(ort, ["z"]) is ort  # another runtime's kernels are not aten calls


def test_the_table_times_each_call_after_the_calls_before_it_in_its_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """A path's kernels replayed one after the other in the profile's order, a repeated key as often as given and
    each time on tensors of its own (its own replay), each call timed alone: the calls alternate, never a kernel
    back to back with itself; each key's median of all its calls."""
    log: list[str] = []
    replays: list[str] = []
    clock = iter(range(10_000))
    ticks = {"conv": 1, "pool": 2, "linear": 1}

    def fake_clock() -> float:  # a call of "pool" takes 2 "seconds", every other 1; the second conv 3 (below)
        return float(next(clock))

    def replay(key: str, device: object = "cpu") -> Callable[[], None]:
        replays.append(key)
        extra = ticks[key] - 1 + (2 if key == "conv" and replays.count(key) == 2 else 0)
        return lambda: (log.append(key), [next(clock) for _ in range(extra)])

    monkeypatch.setattr(kernels.time, "perf_counter", fake_clock)
    monkeypatch.setattr(kernels, "replay", replay)
    out = kernels.measure(["conv", "pool", "conv", "linear"], rounds=4)
    assert replays == ["conv", "pool", "conv", "linear"]  # the repeated conv on tensors of its own
    assert log == ["conv", "pool", "conv", "linear"] * (3 + 4)  # three warm-up rounds, then four timed
    assert out == {"conv": 2.0, "pool": 2.0, "linear": 1.0}  # conv: the median of 1, 3, 1, 3, 1, 3, 1, 3


class _Twice(nn.Module):
    """One convolution applied twice: one layer, one kernel key, two calls a sample."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.conv(x))


def test_a_prediction_replays_a_repeated_call_as_often_as_a_sample_makes_it(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[str]] = []
    monkeypatch.setattr(kernels, "tabled", lambda m, keys, device="cpu": seen.append(list(keys)) or m)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), _Twice(), nn.Flatten(), nn.Linear(256, 10)).eval()
    x = torch.randn(3, 1, 8, 8)
    with torch.no_grad(), counting(net) as prof:
        for i in range(3):  # three samples at batch 1: the repeated call six times in the profile
            net(x[i : i + 1])
    prof.samples = 3
    kernels.Predictor(SYNTH).predict(prof)
    ((stem, twice, again, head),) = seen
    assert json.loads(stem)[0] == json.loads(twice)[0] == "aten.convolution.default"
    assert twice == again != stem and json.loads(head)[0] == "aten.addmm.default"


def test_the_table_measures_a_real_call() -> None:
    conv = nn.Conv2d(1, 4, 3)
    (key,) = profile(conv, torch.zeros(1, 1, 8, 8)).layers[0].small_kernels
    (seconds,) = kernels.measure([key]).values()
    assert 1e-8 < seconds < 1e-1
