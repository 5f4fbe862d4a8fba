"""MAC counts of every torchvision classifier against torchvision's own published ``_ops``.

Models are built on the meta device (shapes only, no arithmetic: the whole zoo takes seconds);
those whose builder computes with real tensors (RegNet) are built on the CPU when small. Counted
conv + linear + attention MACs (batch norm's scale-and-shift left out, as torchvision leaves it out)
must be within 1 % of ``_ops`` (GMACs; or its 3-decimal rounding), with no operator left uncounted. The fused attention
kernels that only run on real CPU/GPU tensors are checked on ViT-B/16 and on hand formulas.
"""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torchvision.models import get_model, get_model_weights, list_models

from bench.measure.cost import profile
from bench.measure.operators import sdpa_macs

CPU_BUILD_MAX_PARAMS = 60e6  # RegNets cannot be built on meta; build the small ones on the CPU


def _reference(name: str) -> tuple[float, tuple[int, int]] | None:
    """(_ops in GMACs, input size) of the first weights whose input size the default builder takes."""
    for w in get_model_weights(name):
        size = w.meta.get("min_size", (224, 224))
        crop = getattr(w.transforms(), "crop_size", None)
        size = tuple(crop) * (2 if len(crop) == 1 else 1) if crop else tuple(size)
        if name.startswith("vit_") and size != (224, 224):
            continue  # the default ViT builder is for 224 x 224 (vit_h_14's SWAG weights are 518 x 518)
        return float(w.meta["_ops"]), (int(size[0]), int(size[-1]))
    return None


def _build(name: str) -> torch.nn.Module | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # googlenet / inception init notices
        try:
            with torch.device("meta"):
                return get_model(name).eval()
        except NotImplementedError:  # the builder computes widths from real tensors (RegNet)
            params = get_model_weights(name).DEFAULT.meta["num_params"]
            if params > CPU_BUILD_MAX_PARAMS:
                return None
            return get_model(name).eval().to("meta")


@pytest.mark.parametrize("name", list_models(module=torchvision.models))
def test_zoo_macs_match_torchvision(name: str) -> None:
    ref = _reference(name)
    model = _build(name)
    if ref is None or model is None:
        pytest.skip(f"{name}: no reference at the builder's input size, or too large to build here")
    ops, size = ref
    prof = profile(model, torch.zeros(1, 3, *size, device="meta"))
    assert prof.unsupported == {}, prof.unsupported
    counted = (prof.macs - prof.total("norm_macs")) / 1e9
    # 1 %, or the rounding of the published value (3 decimals: shufflenet_v2_x0_5's 0.04 is 0.0405)
    assert counted == pytest.approx(ops, rel=0.01, abs=5e-4), f"{name}: counted {counted:.4f} G, torchvision {ops} G"


def test_vit_fused_attention_is_counted_on_cpu() -> None:
    """In eval mode under no_grad nn.MultiheadAttention runs the fused fast path on real tensors."""
    torch.manual_seed(0)
    model = torchvision.models.vit_b_16().eval()
    prof = profile(model, torch.zeros(1, 3, 224, 224))
    assert prof.unsupported == {}
    assert (prof.macs - prof.total("norm_macs")) / 1e9 == pytest.approx(17.564, rel=0.01)


def test_multi_head_attention_by_hand() -> None:
    mha = torch.nn.MultiheadAttention(64, 4, batch_first=True).eval()
    x = torch.randn(2, 10, 64)
    prof = profile(mha, (x, x, x))
    # B (Lq E^2 + 2 Lk E^2 + 2 Lq Lk E + Lq E^2) = 2 (4 * 10 * 64^2 + 2 * 10 * 10 * 64)
    assert prof.macs == 2 * (4 * 10 * 64 * 64 + 2 * 10 * 10 * 64) == 353280
    assert prof.unsupported == {}


def test_sdpa_formulas_by_hand() -> None:
    q, k, v = torch.randn(2, 4, 10, 16), torch.randn(2, 4, 10, 16), torch.randn(2, 4, 10, 16)
    assert sdpa_macs(q, k, v, False) == 2 * 4 * 10 * 10 * 32
    assert sdpa_macs(q, k, v, True) == 2 * 4 * 55 * 32  # 1 + 2 + ... + 10 pairs
    assert sdpa_macs(q, torch.randn(2, 4, 6, 16), torch.randn(2, 4, 6, 16), True) == 2 * 4 * (21 + 4 * 6) * 32
    flash = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    for causal, pairs in ((False, 100), (True, 55)):
        prof = profile(torch.nn.Identity(), q, forward=lambda t, c=causal: flash(t, k, v, 0.0, c))
        assert prof.macs == 2 * 4 * pairs * 32 and prof.unsupported == {}
    # whichever kernel F.scaled_dot_product_attention picks, what ran is counted
    prof = profile(torch.nn.Identity(), q, forward=lambda t: F.scaled_dot_product_attention(t, k, v))
    assert prof.macs == 2 * 4 * 100 * 32 and prof.unsupported == {}
