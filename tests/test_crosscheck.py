"""Issue 15 (part): the energy model against ZigZag; AlexNet conv1's MAC count; the hardware file."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from torch import nn

from bench.config.tables import load_energy_table
from bench.measure.cost import profile
from bench.measure.crosscheck import load_hardware, zigzag_hardware

needs_zigzag = pytest.mark.skipif(
    importlib.util.find_spec("zigzag") is None or importlib.util.find_spec("onnx") is None,
    reason="the [crosscheck] extra (zigzag-dse, onnx) is not installed",
)


def test_alexnet_conv1_macs() -> None:
    # 96 filters of 11 x 11 x 3 at 55 x 55 output positions: 96 * 3025 * 363
    prof = profile(nn.Conv2d(3, 96, 11, stride=4), torch.zeros(1, 3, 227, 227))
    assert prof.macs == 105_415_200 == 96 * 55 * 55 * 11 * 11 * 3


def test_hardware_description_and_zigzag_document() -> None:
    hw = load_hardware("eyeriss")
    assert (hw.array_rows, hw.array_cols, hw.glb_bytes, hw.word_bits) == (12, 14, 110592, 16)
    assert hw.glb_words == 55296
    doc = zigzag_hardware(hw, load_energy_table("eyeriss"))
    mems = doc["memories"]
    assert mems["glb"]["size"] == 110592 * 8 and mems["rf_filter"]["size"] == 224 * 16
    # costs per element access: a 64-bit port word carries 4 16-bit elements at 4 x 6
    assert mems["glb"]["r_cost"] == 24.0 and mems["rf_ifmap"]["r_cost"] == 1.0 and mems["dram"]["w_cost"] == 800.0
    assert doc["operational_array"]["sizes"] == [14, 12] and doc["operational_array"]["unit_energy"] == 1.0
    with pytest.raises(FileNotFoundError, match="shipped: eyeriss"):
        load_hardware("tpu")


@needs_zigzag
def test_zigzag_agrees_on_macs_and_the_mac_energy_of_one_small_layer() -> None:
    from bench.measure.crosscheck import crosscheck

    (row,) = crosscheck(nn.Sequential(nn.Conv2d(4, 8, 3)), torch.randn(1, 4, 10, 10))
    assert row.macs_ours == row.macs_zigzag == 8 * 8 * 8 * 3 * 3 * 4
    assert row.zigzag["mac"] == row.ours["mac"] == row.macs_ours  # MAC cost 1 in both
    assert 1 / 1.5 <= row.ratio <= 1.5  # the documented agreement on a layer that fits every buffer
