"""The buffer-aware DRAM model (issue 15, item 1, DRAM level): tiling arithmetic by hand."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bench.dataflow import GemmShape, dram_traffic, gemm_shapes

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
