"""Modelled energy from counted accesses: per level of an energy table, per layer, and per exit of a
multi-exit model (cumulative cost of each exit, expected cost at exit shares). The counting convention
and the energy model are described in :mod:`bench.measure.cost`.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from bench.config.tables import LEVELS, EnergyTable, Hardware
from bench.measure.cost import BUFFERED_SUFFIX, LayerCost, Profile, profile
from bench.measure.dataflow import GemmShape, extra_accesses, gemm_shapes


def layer_accesses(layer: LayerCost) -> dict[str, float]:
    """Accesses per memory level for one layer under the documented dataflow model."""
    m, i, w, o = layer.macs, layer.input_elems, layer.weight_elems, layer.output_elems
    if layer.mac_type:
        return {"dram": i + w + o, "glb": i + w + 2 * o, "array": 3 * m / layer.kernel_width, "rf": 3 * m}
    return {"dram": 0, "glb": i + w + o, "array": 0, "rf": 0}


def energy_breakdown(prof: Profile, table: EnergyTable) -> dict[str, float]:
    """Energy of a profile by component (``mac`` and each level) and ``total``, per sample."""
    parts = {"mac": 0.0, **dict.fromkeys(LEVELS, 0.0)}
    for layer in prof.layers:
        parts["mac"] += layer.macs * table.mac
        for level, count in layer_accesses(layer).items():
            parts[level] += count * table.access[level]
    parts = {k: v / prof.samples for k, v in parts.items()}
    parts["total"] = sum(parts.values())
    return parts


def buffered_breakdown(
    prof: Profile, shapes: list[tuple[str, GemmShape]], table: EnergyTable, buffer_words: int
) -> dict[str, float]:
    """Energy per sample of a profile under the buffer-aware model (:mod:`bench.measure.dataflow`): the ideal
    breakdown at the profile's batch plus the re-fetched DRAM words and their GLB staging."""
    parts = energy_breakdown(prof, table)
    for level, words in extra_accesses(shapes, buffer_words).items():
        parts[level] += words * table.access[level] / prof.samples
    parts["total"] = sum(v for k, v in parts.items() if k != "total")
    return parts


def layer_energy_rows(prof: Profile, table: EnergyTable) -> list[dict[str, Any]]:
    """Per-layer energy breakdown (compute vs each level)."""
    rows = []
    for layer in prof.layers:
        acc = layer_accesses(layer)
        row: dict[str, Any] = {"module": layer.module, "mac": layer.macs * table.mac}
        row.update({lv: acc[lv] * table.access[lv] for lv in LEVELS})
        row["total"] = sum(v for k, v in row.items() if k != "module")
        rows.append(row)
    return rows


@dataclass(frozen=True)
class ExitCost:
    """Cumulative cost per sample of producing one exit (heads met on the way included)."""

    exit: str
    macs: int
    params: int
    bytes: int  # input + weight + output bytes of every operator that ran
    energy: dict[str, dict[str, float]]  # table name -> breakdown (mac, levels, total)
    unsupported: dict[str, int] = field(default_factory=dict)  # operators without a formula -> calls

    @property
    def flops(self) -> int:
        return 2 * self.macs


def buffered_name(table: str) -> str:
    """The key of a table's buffer-aware energy next to its ideal one (``eyeriss`` -> ``eyeriss_buffered``)."""
    return f"{table}{BUFFERED_SUFFIX}"


def exit_costs(
    model: Any,
    input_shape: Sequence[int],
    tables: Sequence[EnergyTable],
    *,
    hardware: Hardware | None = None,
    batch: int = 1,
) -> list[ExitCost]:
    """Per-exit cumulative costs of a multi-exit model at batch 1.

    Exit l costs segments 0..l and heads 0..l: in a cascade the earlier heads
    must run to decide that the sample goes on. With ``hardware``, each table's energy
    also has a buffer-aware entry (:func:`buffered_name`) for that accelerator's global
    buffer, per sample at ``batch`` (the ideal entries stay at batch 1).
    """
    model.eval()
    registered = {id(p) for p in model.parameters()}
    for part in (*model.exit_segments, *model.exit_heads):
        stray = [n for n, p in part.named_parameters() if id(p) not in registered]
        if stray:
            raise ValueError(
                f"{type(model).__name__}: parameters {stray[:3]} of a segment or head are not registered on the "
                "model; register its modules under stable names (docs/models.md), or every cost row collapses "
                "to the root and weights count as activations"
            )
    param = next(iter(model.parameters()), None)
    x = torch.zeros(1, *input_shape, device=param.device if param is not None else None)
    out = []
    for level, name in enumerate(model.exit_names):
        prof = profile(model, x, forward=lambda inp, lv=level: model.forward_until(inp, lv))
        total_bytes = prof.total("input_bytes") + prof.total("weight_bytes") + prof.total("output_bytes")
        out.append(
            ExitCost(
                exit=name,
                macs=prof.macs,
                params=prof.params,
                bytes=total_bytes,
                energy={t.name: energy_breakdown(prof, t) for t in tables},
                unsupported=dict(prof.unsupported),
            )
        )
    if hardware is not None and tables:
        xb = torch.zeros(batch, *input_shape, device=x.device)
        for level, cost in enumerate(out):
            fwd = functools.partial(model.forward_until, exit_index=level)
            prof = profile(model, xb, forward=fwd)
            shapes = gemm_shapes(model, xb, fwd)
            for t in tables:
                cost.energy[buffered_name(t.name)] = buffered_breakdown(prof, shapes, t, hardware.glb_words)
    return out


def expected_cost(shares: Sequence[float], per_exit: Sequence[float]) -> float:
    """Cascade cost at a threshold: sum_l share_l x cumulative cost of exit l."""
    if len(shares) != len(per_exit):
        raise ValueError(f"{len(shares)} exit shares for {len(per_exit)} exits")
    return float(sum(s * c for s, c in zip(shares, per_exit)))
