"""The operators the cost counter knows: ATen operator families (MAC-type, element-wise, reductions, pooling,
data movement, free) and the MAC formulas of the ones that need more than ``torch.utils.flop_counter``.

Attention, whichever kernel runs it:

* scaled dot-product attention (``_scaled_dot_product_*``, incl. the CPU flash kernel) with
  queries (B, H, Lq, d), keys (B, H, Lk, d), values (B, H, Lk, dv): B H P (d + dv) MACs, where
  P = Lq Lk pairs, or with ``is_causal`` (top-left aligned mask) P = sum_i min(i + 1, Lk);
* the fused multi-head attention of ``nn.MultiheadAttention``'s inference fast path
  (``_native_multi_head_attention``), embedding E, queries (B, Lq, E), keys/values (B, Lk, E):
  B (Lq E^2 + 2 Lk E^2 [Q, K, V projections] + 2 Lq Lk E [QK^T, AV] + Lq E^2 [output projection]).

"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

aten = torch.ops.aten

BATCH_NORM = {
    aten.native_batch_norm,
    aten._native_batch_norm_legit_no_training,
    aten._native_batch_norm_legit,
    aten.cudnn_batch_norm,
    aten.miopen_batch_norm,
}
CONV = {aten.convolution, aten._convolution, aten.cudnn_convolution, aten.convolution_overrideable}
MATMUL = {aten.mm, aten.addmm, aten.bmm, aten.baddbmm}


def _causal_pairs(lq: int, lk: int) -> int:
    """Query-key pairs a top-left-aligned causal mask keeps: sum_i min(i + 1, Lk)."""
    full = min(lq, lk)
    return full * (full + 1) // 2 + max(lq - lk, 0) * lk


def sdpa_macs(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, is_causal: bool) -> int:
    """MACs of softmax(Q K^T) V for (B, H, L, d) tensors (see the module docstring)."""
    *batch, lq, d = q.shape
    lk, dv = k.shape[-2], v.shape[-1]
    pairs = _causal_pairs(lq, lk) if is_causal else lq * lk
    n = 1
    for b in batch:
        n *= int(b)
    return n * pairs * (int(d) + int(dv))


# position of is_causal among the positional arguments of each SDPA kernel
SDPA_CAUSAL_ARG = {
    aten._scaled_dot_product_flash_attention_for_cpu: 4,
    aten._scaled_dot_product_flash_attention: 4,
    aten._scaled_dot_product_efficient_attention: 6,
    aten._scaled_dot_product_cudnn_attention: 6,
}


def sdpa_call_macs(packet: Any, args: Sequence[Any], kwargs: dict[str, Any]) -> int:
    pos = SDPA_CAUSAL_ARG[packet]
    causal = bool(args[pos]) if len(args) > pos else bool(kwargs.get("is_causal", False))
    return sdpa_macs(args[0], args[1], args[2], causal)


def mha_macs(query: torch.Tensor, key: torch.Tensor, embed_dim: int) -> int:
    """MACs of ``_native_multi_head_attention`` (projections, QK^T, AV, output projection)."""
    e = int(embed_dim)
    b = int(query.shape[0]) if query.dim() == 3 else 1
    lq, lk = int(query.shape[-2]), int(key.shape[-2])
    return b * (lq * e * e + 2 * lk * e * e + 2 * lq * lk * e + lq * e * e)


# One op per element produced (activations, arithmetic, comparisons).
ELEMENTWISE = {
    aten.native_layer_norm,
    aten.masked_fill,
    aten.masked_fill_,
    aten.tril,
    aten.triu,
    aten.relu,
    aten.relu_,
    aten.hardswish,
    aten.hardswish_,
    aten.hardsigmoid,
    aten.hardsigmoid_,
    aten.sigmoid,
    aten.sigmoid_,
    aten.tanh,
    aten.silu,
    aten.silu_,
    aten.gelu,
    aten.exp,
    aten.log,
    aten.neg,
    aten.add,
    aten.add_,
    aten.sub,
    aten.rsub,
    aten.mul,
    aten.mul_,
    aten.div,
    aten.div_,
    aten.where,
    aten.clamp,
    aten.clamp_,
    aten.clamp_min,
    aten.gt,
    aten.lt,
    aten.ge,
    aten.le,
    aten.eq,
    aten.ne,
    aten.bitwise_not,
    aten.logical_not,
    aten.hardtanh,
    aten.hardtanh_,
    aten.leaky_relu,
    aten.leaky_relu_,
}
# One op per element read (softmax, reductions).
REDUCTION = {
    aten._safe_softmax,
    aten.linalg_vector_norm,
    aten._softmax,
    aten._log_softmax,
    aten.amax,
    aten.amin,
    aten.max,
    aten.argmax,
    aten.sum,
    aten.mean,
    aten.any,
    aten.all,
    aten.adaptive_avg_pool2d,
    aten._adaptive_avg_pool2d,
}
POOL = {aten.max_pool2d_with_indices, aten.max_pool2d, aten.avg_pool2d}
# Data movement: bytes counted, no arithmetic.
MOVEMENT = {
    aten.roll,
    aten.channel_shuffle,
    aten.native_channel_shuffle,
    aten.index,
    aten.index_put_,
    aten.index_put,
    aten.index_select,
    aten.cat,
    aten.stack,
    aten.clone,
    aten.copy_,
    aten._to_copy,
    aten.nonzero,
    aten.masked_select,
    aten.gather,
    aten.scatter,
    aten.bincount,
    aten.fill_,
    aten.zero_,
    aten.constant_pad_nd,
    aten._unsafe_index,
}
# Views, allocation and metadata: nothing moved, nothing computed.
FREE = {
    aten.as_strided_,
    aten.view,
    aten._unsafe_view,
    aten.reshape,
    aten.t,
    aten.transpose,
    aten.permute,
    aten.expand,
    aten.squeeze,
    aten.unsqueeze,
    aten.slice,
    aten.select,
    aten.alias,
    aten.as_strided,
    aten.detach,
    aten.lift_fresh,
    aten.empty,
    aten.empty_like,
    aten.empty_strided,
    aten.full,
    aten.zeros,
    aten.zeros_like,
    aten.ones,
    aten.ones_like,
    aten.arange,
    aten._local_scalar_dense,
    aten.new_empty,
    aten.new_zeros,
    aten.randn,
    aten.rand,
    aten.randint,
    aten.flatten,
    aten.split,
    aten.split_with_sizes,
    aten.unbind,
    aten.contiguous,
    aten.scalar_tensor,
    aten.full_like,
    aten.sym_size,
    aten.sym_stride,
    aten.is_same_size,
}


def valid_tap_share(
    size: Sequence[int], kernel: Sequence[int], stride: Sequence[int], padding: Sequence[int], dilation: Sequence[int]
) -> float:
    """Share of a convolution's (output, kernel tap) pairs whose tap lands on the input, not on zero padding.

    Per spatial axis: outputs o = 0 .. (size + 2 pad - dil (k - 1) - 1) // stride, taps t = 0 .. k - 1,
    input index o stride - pad + t dil; the share is the product over axes. 5 x 5 taps, padding 2, on
    7 x 7 pixels: (3 + 4 + 5 + 5 + 5 + 4 + 3) / 35 per axis, 0.686 in all.
    """
    share = 1.0
    for n, k, s, p, d in zip(size, kernel, stride, padding, dilation):
        outputs = (n + 2 * p - d * (k - 1) - 1) // s + 1
        if outputs < 1:
            return 1.0
        valid = sum(1 for o in range(outputs) for t in range(k) if 0 <= o * s - p + t * d < n)
        share *= valid / (outputs * k)
    return share


def call_valid_tap_share(packet: Any, args: Sequence[Any]) -> float:
    """:func:`valid_tap_share` of an ``aten.convolution``-style call (transposed convolutions, or ops with
    another argument order such as ``cudnn_convolution``: 1)."""
    x, w = args[0], args[1]
    if packet not in (aten.convolution, aten._convolution, aten.convolution_overrideable) or len(args) < 7 or args[6]:
        return 1.0
    axes = w.dim() - 2
    stride, padding, dilation = ([int(v) for v in a] * (axes if len(a) == 1 else 1) for a in args[3:6])
    return valid_tap_share(x.shape[2:], w.shape[2:], stride, padding, dilation)
