"""The buffer-aware dataflow model: tiling arithmetic and buffered energy by hand."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bench.config.tables import EnergyTable, Hardware, load_energy_table, load_hardware
from bench.measure.cost import profile
from bench.measure.dataflow import GemmShape, dram_traffic, gemm_shapes, operand_accesses
from bench.measure.energy import buffered_breakdown, energy_breakdown, exit_costs
from cascade import StudyCNN

G = 55_296  # Eyeriss: 108 KiB of 16-bit words


def test_a_layer_that_fits_equals_the_ideal_model() -> None:
    s = GemmShape(batch=1, inputs=6_272, weights=18_432, outputs=3_136, out_channels=64, reduction=288)
    t = dram_traffic(s, G)
    assert t.order == "fits" and (t.inputs, t.weights, t.outputs) == (6_272, 18_432, 3_136)  # I + W + O


def test_alexnet_conv1_refetches_its_input_once_per_filter_tile() -> None:
    ((_, s),) = gemm_shapes(nn.Sequential(nn.Conv2d(3, 96, 11, stride=4, bias=False)), torch.zeros(1, 3, 227, 227))
    assert (s.inputs, s.weights, s.outputs, s.reduction) == (154_587, 34_848, 290_400, 363)
    t = dram_traffic(s, G)
    # 480k words do not fit 55k. Weights tiled: floor(27,648 / 363) = 76 filters per tile, ceil(96 / 76) = 2
    # tiles, inputs read twice: 2 x 154,587 + 34,848 + 290,400 = 634,422. Inputs tiled: ceil(154,587 / 27,648)
    # = 6 tiles, weights read 6 times: 154,587 + 6 x 34,848 + 290,400 = 654,075. The cheaper one wins.
    assert t.order == "weights tiled" and t.total == 634_422
    assert t.total / (s.inputs + s.weights + s.outputs) == pytest.approx(1.322, abs=1e-3)  # the factor over ideal


def test_weight_traffic_per_sample_depends_on_the_batch() -> None:
    fc = nn.Linear(1152, 256, bias=False)  # the study CNN's hidden layer: 294,912 weights > G
    one = dram_traffic(gemm_shapes(fc, torch.zeros(1, 1152))[0][1], G)
    many = dram_traffic(gemm_shapes(fc, torch.zeros(256, 1152))[0][1], G)
    # batch 1: the input (1,152 words) is one tile, weights stream past once: the ideal I + W + O
    assert one.order == "inputs tiled" and one.total == 1152 + 294_912 + 256
    # batch 256: inputs tiled would read the weights 11 times (294,912 input words = 11 tiles of 27,648);
    # outputs tiled does better: e.g. m = 108 channels x p = 256 positions of partial sums (27,648 words),
    # inputs read ceil(256 / 108) = 3 times, weights once: 3 x 294,912 + 294,912 + 65,536 = 1,245,184
    # (m = 128, p = 216 and m = 256, p = 108 tie at 2 I + 2 W and I + 3 W)
    assert many.order == "outputs tiled" and many.total == 1_245_184
    assert many.total < 294_912 + 11 * 294_912 + 65_536
    assert many.per_sample == pytest.approx(many.total / 256)
    assert one.per_sample / many.per_sample == pytest.approx(296_320 / (1_245_184 / 256))  # 61x less per sample


# --------------------------------------------------------------------------- buffered energy of a network


def _eyeriss() -> tuple[EnergyTable, Hardware]:
    return load_energy_table("eyeriss"), load_hardware("eyeriss")


def test_buffered_energy_equals_ideal_when_every_layer_fits() -> None:
    table, hw = _eyeriss()
    model = StudyCNN(exits=("p1",)).eval()
    (p1, final) = exit_costs(model, (1, 28, 28), [table], hardware=hw, batch=1)
    for cost in (p1, final):  # at batch 1 every study-CNN layer fits 55,296 words (docs/measurements.md)
        assert cost.energy["eyeriss_buffered"] == pytest.approx(cost.energy["eyeriss"])


def test_buffered_energy_adds_the_refetched_words_by_hand() -> None:
    # AlexNet conv1 alone: ideal DRAM I + W + O = 154,587 + 34,944 (weights + bias) + 290,400; tiled, the
    # input is read twice (see above): 154,587 more DRAM words, each staged once more in the GLB.
    table, hw = _eyeriss()
    conv = nn.Sequential(nn.Conv2d(3, 96, 11, stride=4)).eval()
    prof = profile(conv, torch.zeros(1, 3, 227, 227))
    ideal = energy_breakdown(prof, table)
    buffered = buffered_breakdown(prof, gemm_shapes(conv, torch.zeros(1, 3, 227, 227)), table, hw.glb_words)
    assert buffered["dram"] - ideal["dram"] == pytest.approx(154_587 * 200)
    assert buffered["glb"] - ideal["glb"] == pytest.approx(154_587 * 6)
    assert buffered["rf"] == ideal["rf"] and buffered["mac"] == ideal["mac"] and buffered["array"] == ideal["array"]
    assert buffered["total"] == pytest.approx(ideal["total"] + 154_587 * 206)


def test_per_sample_buffered_energy_falls_with_the_batch_and_fp32_words_fill_the_buffer_sooner() -> None:
    table = load_energy_table("eyeriss")
    model = StudyCNN(exits=("p1",)).eval()

    def final(hw: str, batch: int) -> dict[str, float]:
        return exit_costs(model, (1, 28, 28), [table], hardware=load_hardware(hw), batch=batch)[-1].energy

    b1, b256 = final("eyeriss", 1), final("eyeriss", 256)
    assert b256["eyeriss_buffered"]["dram"] < b1["eyeriss_buffered"]["dram"] / 4  # weights shared by the batch
    assert b256["eyeriss"] == b1["eyeriss"]  # the ideal entries stay at batch 1
    fp32 = final("eyeriss_fp32", 256)["eyeriss_buffered"]
    assert fp32["dram"] > b256["eyeriss_buffered"]["dram"]  # half the words fit: more is re-fetched
    assert load_hardware("eyeriss_fp32").glb_words == 27_648


def test_bad_hardware_is_named() -> None:
    with pytest.raises(FileNotFoundError, match="shipped: eyeriss, eyeriss_fp32"):
        load_hardware("tpu")


def test_operand_accesses_by_hand() -> None:
    # a 3 x 3 conv, 8 -> 16 channels, 10 x 10 -> 8 x 8, batch 2: fits the buffer
    ((_, s),) = gemm_shapes(nn.Sequential(nn.Conv2d(8, 16, 3, bias=False)), torch.zeros(2, 8, 10, 10))
    assert (s.inputs, s.weights, s.outputs, s.reduction, s.kernel_width) == (1_600, 1_152, 2_048, 72, 3)
    acc = operand_accesses(s, G)
    macs = 2_048 * 72  # = 147,456
    assert acc["dram"] == {"inputs": 1_600, "weights": 1_152, "psums": 2_048}
    assert acc["glb"] == {"inputs": 1_600, "weights": 1_152, "psums": 4_096}
    assert acc["array"] == dict.fromkeys(("inputs", "weights", "psums"), macs / 3)
    assert acc["rf"] == dict.fromkeys(("inputs", "weights", "psums"), macs)
    # a buffer of 2,000 words: inputs tiled in 1,000-word tiles, weights read twice
    small = operand_accesses(s, 2_000)
    assert small["dram"]["weights"] == 2 * 1_152 and small["glb"]["weights"] == 2 * 1_152
