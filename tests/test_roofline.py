"""The roofline latency model: predictions on a synthetic machine, the fit, the cache."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

import pytest
import torch
from torch import nn

from bench.measure import allocator, microbench, roofline
from bench.measure.cost import LayerCost, counting, profile
from bench.measure.microbench import fit_overhead_bandwidth
from bench.measure.operators import valid_tap_share
from bench.measure.roofline import Machine, layer_seconds, predict
from cascade import StudyCNN, build_model
from cascade.inference import optimise_for_inference

SYNTH = Machine(
    device="synthetic",
    threads=1,
    channels_last=False,
    torch_version="-",
    mac_rate={"conv": 1e9, "conv_thin": 1e8, "matmul": 2e9},
    bandwidth=1e9,
    overhead=1e-5,
)


def test_layer_time_is_overhead_plus_the_larger_of_compute_and_memory() -> None:
    conv = LayerCost(
        "c",
        "Conv2d",
        macs=2_000_000,
        input_bytes=400_000,
        weight_bytes=100_000,
        output_bytes=500_000,
        mac_type=True,
        family_macs={"conv": 2_000_000},
        ops=1,
    )
    # compute 2e6 / 1e9 = 2 ms > memory 1e6 / 1e9 = 1 ms; plus one op's 10 us
    assert layer_seconds(conv, SYNTH) == (pytest.approx(2e-3 + 1e-5), "compute")
    thin = LayerCost(
        "t",
        "Conv2d",
        macs=2_000_000,
        input_bytes=1,
        output_bytes=1,
        mac_type=True,
        family_macs={"conv_thin": 2_000_000},
        ops=1,
    )
    assert layer_seconds(thin, SYNTH)[0] == pytest.approx(2e-2 + 1e-5)  # the thin family's rate, 10x lower
    relu = LayerCost("r", "ReLU", input_bytes=3_000_000, output_bytes=3_000_000, ops=2)
    assert layer_seconds(relu, SYNTH) == (pytest.approx(6e-3 + 2e-5), "memory")
    bn = LayerCost("b", "BatchNorm2d", macs=1000, norm_macs=1000, input_bytes=8, output_bytes=8, ops=1)
    assert layer_seconds(bn, SYNTH) == (pytest.approx(1e-5 + 16e-9), "overhead")  # BN MACs are not a kernel's


def test_kernel_calls_pay_their_family_launch_cost() -> None:
    m = Machine(**{**SYNTH.to_dict(), "launch": {"conv": 5e-5, "matmul": 2e-5}})
    conv = LayerCost(
        "c",
        "Conv2d",
        macs=1000,
        input_bytes=8,
        output_bytes=8,
        mac_type=True,
        ops=3,
        mac_ops=2,
        family_macs={"conv": 1000},
        family_ops={"conv": 2},
    )
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


def test_thin_convolutions_and_narrow_heads_are_their_own_families() -> None:
    model = StudyCNN(exits=("p1",)).eval()
    families = {r.module: r.family for r in profile(model, torch.zeros(1, 1, 28, 28)).layers if r.mac_type}
    assert families["blocks.0.0"] == "conv_thin" and families["blocks.1.0"] == "conv"
    assert families["classifier.1"] == "matmul"  # 1152 -> 256
    assert families["exits.p1.1"] == families["classifier.4"] == "matmul_narrow"  # -> 10 classes


def test_a_row_with_several_kernel_families_is_timed_per_family() -> None:
    # a traced backbone puts every operator in one row: its convolutions at the conv rate, its head at the
    # narrow-matmul rate, each call at its own family's launch cost
    m = Machine(
        **{
            **SYNTH.to_dict(),
            "mac_rate": {**SYNTH.mac_rate, "matmul_narrow": 5e8},
            "launch": {"conv": 5e-5, "matmul_narrow": 2e-5},
        }
    )
    row = LayerCost(
        "(top)",
        "",
        macs=3_001_000,
        norm_macs=1000,
        input_bytes=8,
        output_bytes=8,
        mac_type=True,
        ops=5,
        mac_ops=3,
        family_macs={"conv": 2_000_000, "matmul_narrow": 1_000_000},
        family_ops={"conv": 2, "matmul_narrow": 1},
    )
    # compute 2e6 / 1e9 + 1e6 / 5e8 = 4 ms; launches 2 x 50 us + 20 us; 2 other ops x 10 us
    assert layer_seconds(row, m) == (pytest.approx(4e-3 + 1.2e-4 + 2e-5), "compute")
    assert row.family == "conv"
    # the inference copy of ResNet-20 (traced segments, BN folded) times its whole path as one row
    fast = optimise_for_inference(build_model("resnet20", exits=["layer1"], num_classes=10).eval())
    with torch.no_grad(), counting(fast) as prof:
        fast.forward_until(torch.zeros(1, 3, 32, 32), 1)
    (top,) = [r for r in prof.layers if r.module == "(top)"]
    assert set(top.family_macs) == {"conv", "conv_thin", "matmul_narrow"}
    assert sum(top.family_ops.values()) == top.mac_ops
    assert sum(top.family_macs.values()) == top.macs - top.norm_macs


def test_pooling_is_bounded_by_its_window_rate_and_old_records_fall_back() -> None:
    m = Machine(**{**SYNTH.to_dict(), "pool_rate": 1e8})
    pool = LayerCost("p", "MaxPool2d", input_bytes=400_000, output_bytes=100_000, ops=1)
    row = profile(nn.MaxPool2d(2), torch.zeros(1, 4, 10, 10)).layers[0]
    assert row.window_ops == 400 == row.other_ops  # 4 x 5 x 5 outputs x a 2 x 2 window
    pool.window_ops = 1_000_000  # 1e6 / 1e8 = 10 ms > 5e5 / 1e9 = 0.5 ms of traffic
    assert layer_seconds(pool, m) == (pytest.approx(1e-2 + 1e-5), "compute")
    assert layer_seconds(pool, SYNTH) == (pytest.approx(5e-4 + 1e-5), "memory")  # no pool rate: bandwidth only
    head = LayerCost(
        "h",
        "Linear",
        macs=2_000_000,
        input_bytes=1,
        output_bytes=1,
        mac_type=True,
        ops=1,
        family_macs={"matmul_narrow": 2_000_000},
    )
    assert layer_seconds(head, SYNTH)[0] == pytest.approx(1e-3 + 1e-5)  # no narrow rate recorded: the matmul one
    narrow = Machine(**{**SYNTH.to_dict(), "mac_rate": {**SYNTH.mac_rate, "matmul_narrow": 5e8}})
    assert layer_seconds(head, narrow)[0] == pytest.approx(4e-3 + 1e-5)


def test_fit_recovers_a_known_line_and_refuses_a_flat_one() -> None:
    sizes = [1e3, 1e4, 1e5, 1e6, 1e7]
    overhead, bw = fit_overhead_bandwidth(sizes, [2e-6 + b / 5e9 for b in sizes])
    assert overhead == pytest.approx(2e-6, rel=1e-6) and bw == pytest.approx(5e9, rel=1e-6)
    with pytest.raises(ValueError, match="do not grow with size"):
        fit_overhead_bandwidth(sizes, [1e-3, 9e-4, 8e-4, 7e-4, 6e-4])


def _cached_in(folder: Path, monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """The roofline cache in ``folder`` and a micro-benchmark that returns SYNTH; the devices it was called for."""
    monkeypatch.setenv(microbench.CACHE_ENV, str(folder))
    calls: list[object] = []

    def fake(device: object, **kwargs: object) -> Machine:
        calls.append(device)
        return SYNTH

    monkeypatch.setattr(microbench, "measure_machine", fake)
    return calls


def test_machine_is_measured_once_and_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _cached_in(tmp_path, monkeypatch)
    assert microbench.machine("cpu") == SYNTH and microbench.machine("cpu") == SYNTH
    assert len(calls) == 1
    (cached,) = tmp_path.glob("*.json")
    assert json.loads(cached.read_text())["mac_rate"]["conv"] == 1e9 and f"t{torch.get_num_threads()}" in cached.name
    microbench.machine("cpu", refresh=True)
    assert len(calls) == 2
    monkeypatch.setenv(microbench.CACHE_ENV, "off")
    microbench.machine("cpu")
    assert len(calls) == 3 and len(list(tmp_path.glob("*.json"))) == 1


def test_fresh_roofline_measures_afresh_and_keeps_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bench.cli import build_parser
    from bench.commands.run import fresh_roofline

    calls = _cached_in(tmp_path, monkeypatch)
    microbench.machine("cpu")  # the user's cache holds figures from another hour
    (cached,) = tmp_path.glob("*.json")
    kept = cached.read_bytes()
    with fresh_roofline(True):
        folder = Path(os.environ[microbench.CACHE_ENV])
        assert folder != tmp_path and folder.is_dir()
        microbench.machine("cpu")
        microbench.machine("cpu")  # measured afresh once, then shared by every run of the command
        assert len(calls) == 2 and len(list(folder.glob("*.json"))) == 1
    assert os.environ[microbench.CACHE_ENV] == str(tmp_path) and not folder.exists()
    assert cached.read_bytes() == kept and list(tmp_path.glob("*.json")) == [cached]
    with fresh_roofline(False):
        microbench.machine("cpu")
    assert len(calls) == 2  # without the flag: the cache
    monkeypatch.delenv(microbench.CACHE_ENV)
    with fresh_roofline(True):
        assert os.environ[microbench.CACHE_ENV] != str(tmp_path)
    assert microbench.CACHE_ENV not in os.environ  # unset before, unset after
    args = build_parser().parse_args(["run", "suite.toml", "--retime", "--fresh-roofline"])
    assert args.fresh_roofline and args.retime


def test_the_micro_benchmark_measures_positive_figures() -> None:
    m = microbench.machine("cpu")  # measured once per test session (conftest's cache folder), as runs use it
    assert {p[5] for p in m.conv_curve} == {0, 1, 2, 3} and all(p[1] > 0 for p in m.conv_curve)
    assert 0 <= m.module_call < 1e-3 and m.runtime == "eager"
    assert set(m.mac_rate) == set(roofline.FAMILIES) and all(r > 1e6 for r in m.mac_rate.values())
    assert m.bandwidth > 1e8 and 0 <= m.overhead < 1e-3 and m.threads == torch.get_num_threads()
    assert set(m.launch) == set(roofline.FAMILIES) and all(0 < t < 0.1 for t in m.launch.values())
    assert m.pool_rate > 1e6


@torch.no_grad()
def test_the_module_call_probe_counts_its_calls_as_profiles_do_and_computes_what_its_functions_do() -> None:
    """The probe divides the tree's extra time by MODULE_TREE_CALLS: the number the profile counter charges
    module_call for on that tree (containers included); its function twin computes the same output, so the
    difference of the two is only the modules' Python."""
    tree, functions = microbench.module_tree(torch.device("cpu"), torch.channels_last)
    x = torch.randn(1, 1, 8, 8).contiguous(memory_format=torch.channels_last)
    with counting(tree) as prof:
        out = tree(x)
    assert prof.module_calls == microbench.MODULE_TREE_CALLS
    torch.testing.assert_close(functions(x), out)


def test_memory_time_follows_the_measured_curve_by_size_per_call() -> None:
    # a curve measured as overhead 1 us + bytes / bandwidth: 100 GB/s up to 1 MB per call, 10 GB/s at 100 MB
    m = Machine(
        **{**SYNTH.to_dict(), "overhead": 1e-6, "memory_curve": [[1e6, 1e-6 + 1e6 / 1e11], [1e8, 1e-6 + 1e8 / 1e10]]}
    )
    assert roofline.memory_seconds(1e6, 1, m) == pytest.approx(1e-5)  # at a measured point
    assert roofline.memory_seconds(1e8, 1, m) == pytest.approx(1e-2)
    assert roofline.memory_seconds(1e8, 100, m) == pytest.approx(1e-3)  # 100 calls of 1 MB: the cache rate
    assert roofline.memory_seconds(1e7, 1, m) == pytest.approx(1e7 / 5.5e10)  # half-way in log size: mean rate
    assert roofline.memory_seconds(1e9, 1, m) == pytest.approx(1e-1)  # clamped beyond the range
    assert roofline.memory_seconds(1e6, 1, SYNTH) == pytest.approx(1e-3)  # no curve: the fitted bandwidth


def test_convolution_rate_follows_the_reduction_length() -> None:
    m = Machine(**{**SYNTH.to_dict(), "conv_curve": [[27, 2e10], [2700, 6e10]]})
    assert roofline.conv_rate(270, m) == pytest.approx(4e10) and roofline.conv_rate(9, m) == pytest.approx(2e10)
    conv = LayerCost(
        "c",
        "Conv2d",
        macs=3_000_000,
        input_bytes=8,
        output_bytes=8,
        mac_type=True,
        ops=2,
        mac_ops=2,
        family_macs={"conv": 3_000_000},
        family_ops={"conv": 2},
        conv_reduction_macs={27: 1_000_000, 2700: 2_000_000},
    )
    # 1e6 / 2e10 + 2e6 / 6e10 = 50 us + 33.3 us, instead of 3e6 / 1e9 at the family rate; 2 launches of 10 us
    assert layer_seconds(conv, m)[0] == pytest.approx(5e-5 + 2e-6 / 6e-2 + 2e-5)
    assert layer_seconds(conv, SYNTH)[0] == pytest.approx(3e-3 + 2e-5)
    row = profile(nn.Conv2d(4, 8, 3, groups=2), torch.zeros(1, 4, 6, 6)).layers[0]
    assert row.conv_reduction_macs == {2 * 9: 8 * 16 * 18}  # K = 2 channels per group x 3 x 3; 8 x 4 x 4 outputs


def test_convolution_and_pooling_rates_follow_the_work_per_call() -> None:
    """Batch 1's small calls run slower per MAC: the rate is interpolated in log work per call between the
    large-batch and the batch-1 series (each interpolated in log K first), clamped to the measured range."""
    curve = [[27, 2e10, 1e8, 64], [2700, 6e10, 1e9, 32], [27, 5e9, 1e6, 1], [2700, 2e10, 1e7, 1]]
    m = Machine(**{**SYNTH.to_dict(), "conv_curve": curve, "pool_curve": [[1e7, 2e9], [1e5, 5e8]]})
    assert roofline.conv_rate(27, m, 1e6) == pytest.approx(5e9)  # a batch-1 point
    assert roofline.conv_rate(27, m, 1e8) == pytest.approx(2e10) and roofline.conv_rate(27, m) == pytest.approx(2e10)
    assert roofline.conv_rate(27, m, 1e7) == pytest.approx((5e9 + 2e10) / 2)  # half-way in log work
    assert roofline.conv_rate(27, m, 1e3) == pytest.approx(5e9)  # clamped below the batch-1 call
    # K = 270, half-way in log K: large 4e10 at 5.5e8 MACs per call, batch 1 1.25e10 at 5.5e6
    assert roofline.conv_rate(270, m, 5.5e6) == pytest.approx(1.25e10)
    assert roofline.conv_rate(270, m, 5.5e8) == pytest.approx(4e10)
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
        conv_reduction_macs={27: 2_000_000},
        conv_reduction_calls={27: 2},
    )
    assert layer_seconds(conv, m)[0] == pytest.approx(2e6 / 5e9 + 2e-5)  # 1e6 MACs per call: the batch-1 rate
    assert roofline.pool_rate(m, 1e6) == pytest.approx((2e9 + 5e8) / 2) and roofline.pool_rate(m) == 2e9
    assert roofline.pool_rate(SYNTH, 1e6) == SYNTH.pool_rate  # no curve: the one rate
    row = profile(nn.Conv2d(4, 8, 3), torch.zeros(1, 4, 6, 6)).layers[0]
    assert row.conv_reduction_calls == {36: 1}


def test_channels_below_the_vector_width_slow_convolutions_and_pools_down() -> None:
    """Kernels vectorise over channels: with 16-float vectors 5 channels use 5 of 16 lanes, 20 use 20 of 32."""
    assert roofline.lane_efficiency(5, 16) == 5 / 16 and roofline.lane_efficiency(20, 16) == 20 / 32
    assert roofline.lane_efficiency(64, 16) == 1.0 and roofline.lane_efficiency(5, 0) == 1.0
    m = Machine(**{**SYNTH.to_dict(), "lanes": 16})
    assert roofline.lane_factor({5: 100, 32: 100}, m) == pytest.approx((100 * 16 / 5 + 100) / 200)
    assert roofline.lane_factor({5: 100}, SYNTH) == 1.0  # no measured width: no factor
    conv = LayerCost(
        "c",
        "Conv2d",
        macs=2_000_000,
        input_bytes=8,
        output_bytes=8,
        mac_type=True,
        ops=1,
        mac_ops=1,
        family_macs={"conv": 2_000_000},
        family_ops={"conv": 1},
        conv_channel_macs={5: 2_000_000},
    )
    assert layer_seconds(conv, m)[0] == pytest.approx(2e6 / 1e9 * 16 / 5 + 1e-5)
    assert layer_seconds(conv, SYNTH)[0] == pytest.approx(2e6 / 1e9 + 1e-5)
    row = profile(nn.Conv2d(1, 5, 3), torch.zeros(1, 1, 6, 6)).layers[0]
    assert row.conv_channel_macs == {5: 5 * 4 * 4 * 9}
    pool = profile(nn.MaxPool2d(2), torch.zeros(1, 3, 4, 4)).layers[0]
    assert pool.window_channels == {3: 3 * 2 * 2 * 4}


def test_pools_take_their_own_lane_width_and_fall_back_to_the_convolutions() -> None:
    """A 2 x 2 pool over 5 channels on 4 x 4 (80 window elements at 1e9 per second): with the pool's own width
    of 32 floats it takes 32 / 5 as long, with none measured the convolutions' 16 (figures from before it), and
    a width of 1 (a runtime that pools in NCHW) none; the convolutions keep their 16 either way."""
    pool = profile(nn.MaxPool2d(2), torch.zeros(1, 5, 4, 4)).layers[0]
    base = {**SYNTH.to_dict(), "pool_rate": 1e9, "pool_curve": [], "lanes": 16, "bandwidth": 1e15}  # compute-bound
    compute = {w: roofline.layer_seconds(pool, Machine(**{**base, "pool_lanes": w}))[0] for w in (0, 1, 16, 32)}
    assert compute[32] - compute[1] == pytest.approx(80 / 1e9 * (32 / 5 - 1))
    assert compute[0] == pytest.approx(compute[16])  # not measured: the convolutions' width
    assert compute[16] - compute[1] == pytest.approx(80 / 1e9 * (16 / 5 - 1))
    assert roofline.lane_factor({5: 10}, Machine(**{**base, "pool_lanes": 32})) == pytest.approx(16 / 5)
    assert Machine.from_dict({k: v for k, v in base.items() if k != "pool_lanes"}).pool_lanes == 0


def test_another_runtime_is_measured_through_its_runner_and_its_call_cost_taken_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A runtime whose every call costs 300 us, each operator inside a call 1 us, ReLU 8 bytes per element at
    10 GB/s, every other probe 5 us + 1 ns per input element (a hand-made clock: the arithmetic, not the
    timer, is checked): the call cost is taken out of every operator's figure."""

    class Call:
        def __init__(self, module: nn.Module, x: torch.Tensor) -> None:
            if isinstance(module, microbench._Relus):
                extra = 2e-6 * module.n  # a relu and a subtract per step
            elif isinstance(module, nn.ReLU):
                extra = 1e-6 + 8 * x.numel() / 1e10
            else:
                extra = 5e-6 + 1e-9 * x.numel()
            self.cost = 3e-4 + extra

        def __call__(self) -> None:
            pass

    monkeypatch.setattr(microbench, "median_seconds", lambda fn, *a, **k: getattr(fn, "cost", 1e-5))
    m = microbench.measure_machine("cpu", channels_last=False, runtime="hand-made", runner=Call)
    assert m.runtime == "hand-made" and m.overhead == pytest.approx(1e-6)  # (18 - 2) us / 16 operators
    assert m.call_overhead == pytest.approx(3e-4 + 8 / 1e10)  # ReLU on one element, less its operator
    assert m.bandwidth == pytest.approx(1e10, rel=1e-6)  # the call taken out of every size of the curve
    assert m.launch["conv"] == pytest.approx(5e-6 + 1e-9 * 64 * 16 - 8 / 1e10)  # 1 x 64 x 4 x 4 input
    assert m.launch["matmul"] == pytest.approx(5e-6 + 1e-9 * 16 - 8 / 1e10)
    # a rate: the probe's time less the call and its family's launch; 64 -> 64 3 x 3 on 32 x 28 x 28, batch 32
    work = 32 * 28 * 28 * 64 * 576 * valid_tap_share((28, 28), (3, 3), (1, 1), (1, 1), (1, 1))
    assert m.mac_rate["conv"] == pytest.approx(work / (1e-9 * (32 * 64 * 28 * 28 - 64 * 16)))
    assert {p[3] for p in m.conv_curve} == {64, 32, 16, 1} and len(m.pool_curve) == 2
    assert {p[5] for p in m.conv_curve} == {0, 1, 2, 3} and {p[4] for p in m.conv_curve if p[5] == 3} == {49}
    assert m.module_call == 0.0  # a runtime that runs a graph calls no modules
    assert m.lanes in microbench.LANE_WIDTHS and m.pool_lanes in microbench.LANE_WIDTHS and m.decision == 1e-5


def test_freed_memory_stays_with_the_process_while_timing(monkeypatch: pytest.MonkeyPatch) -> None:
    psutil = pytest.importorskip("psutil")
    if platform.libc_ver()[0] != "glibc":
        assert allocator.keep_freed_memory()["kept"] is False
        return
    assert allocator.keep_freed_memory()["kept"] is True and allocator.keep_freed_memory()["mmap_max"] == 0
    proc = psutil.Process()
    big = torch.ones(50_000_000)  # 200 MB, touched: glibc's default would mmap it and unmap it on free
    touched = proc.memory_info().rss
    del big
    assert proc.memory_info().rss > touched - 50e6  # kept: the 200 MB did not go back to the OS
    monkeypatch.setattr(allocator, "_KEPT", {})
    monkeypatch.setenv(allocator.KEEP_ENV, "0")
    assert allocator.keep_freed_memory() == {"kept": False, "reason": "CASCADE_KEEP_FREED_MEMORY=0"}


def test_padding_taps_are_left_out_of_the_convolution_rate_work() -> None:
    from bench.measure.operators import valid_tap_share

    # 5 x 5 taps, padding 2, 7 pixels: valid taps per output 3, 4, 5, 5, 5, 4, 3 -> 29 of 35 per axis
    assert valid_tap_share((7, 7), (5, 5), (1, 1), (2, 2), (1, 1)) == pytest.approx((29 / 35) ** 2)
    # stride 2, padding 1, 3 taps on 5 pixels: outputs read inputs -1..1, 1..3, 3..5 -> 2 + 3 + 2 of 9
    assert valid_tap_share((5,), (3,), (2,), (1,), (1,)) == pytest.approx(7 / 9)
    assert valid_tap_share((8, 8), (3, 3), (1, 1), (0, 0), (1, 1)) == 1.0  # no padding
    row = profile(nn.Conv2d(1, 1, 5, padding=2), torch.zeros(1, 1, 7, 7)).layers[0]
    assert row.macs == 49 * 25 and row.conv_reduction_macs == {25: 29 * 29}  # MAC count itself unchanged


def test_a_noisy_element_wise_curve_is_measured_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """Times that shrink with size (a noisy spell) cannot be fitted: the curve is measured again, each size
    keeping its fastest time, and non-positive times (a runner's call cost taken out) stay out of the fit."""
    sizes = [8.0 * n for n in microbench.CURVE_SIZES]
    good = [1e-6 + b / 1e10 for b in sizes]
    curves = iter([[1.0 - 1e-9 * b for b in sizes], good, good])
    monkeypatch.setattr(microbench, "_memory_curve", lambda *a: (sizes, next(curves)))
    _, times, overhead, bandwidth = microbench._fit_memory(None, torch.randn, lambda *a: 0.0, 0.0)
    assert times == good and overhead == pytest.approx(1e-6) and bandwidth == pytest.approx(1e10)
    negative = [-1e-6, *good[1:]]
    monkeypatch.setattr(microbench, "_memory_curve", lambda *a: (sizes, negative))
    assert microbench._fit_memory(None, torch.randn, lambda *a: 0.0, 0.0)[3] == pytest.approx(1e10)
    bad = [1.0 - 1e-9 * b for b in sizes]
    monkeypatch.setattr(microbench, "_memory_curve", lambda *a: (sizes, bad))
    with pytest.raises(ValueError, match="too noisy"):
        microbench._fit_memory(None, torch.randn, lambda *a: 0.0, 0.0)
