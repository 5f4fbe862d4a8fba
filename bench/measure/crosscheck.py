"""Cross-check of the energy model against ZigZag (optional extra ``[crosscheck]``: zigzag-dse, onnx).

ZigZag (KU Leuven; ``pip install zigzag-dse``) searches the temporal and spatial mappings of one layer
on a described accelerator and counts every memory access of the best mapping it finds. Here each
convolution and linear layer of a model is exported alone to ONNX and evaluated on the accelerator of
:data:`bench/config/hardware/eyeriss.toml` written as a ZigZag hardware file with **our** per-access costs
(an energy table's rf / glb / dram costs, its MAC cost as ZigZag's ``unit_energy``), optimising
energy. The inter-PE network (our ``array`` level) has no counterpart in ZigZag, so it is compared
without it. Nothing here runs in a suite; ``bench crosscheck`` prints the comparison table
of docs/cost.md.
"""

from __future__ import annotations

import logging
import math
import sys
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bench.config.tables import EnergyTable, Hardware, load_energy_table, load_hardware
from bench.measure.cost import profile
from bench.measure.dataflow import dram_traffic, gemm_shapes, mac_layers
from bench.measure.energy import layer_accesses


def zigzag_hardware(hw: Hardware, table: EnergyTable) -> dict[str, Any]:
    """The accelerator as a ZigZag hardware document (costs per element access from ``table``).

    ZigZag charges per port word; a port of ``bw`` bits moves ``bw / word_bits`` elements, so a word
    costs that many times the element cost.
    """
    b = hw.word_bits
    rf, glb, dram = table.access["rf"], table.access["glb"], table.access["dram"]
    all_o = ["O, fh", "O, tl", "O, fl", "O, th"]
    shared = ["I1, fh", "I1, tl", "I2, fh", "I2, tl", *all_o]

    def mem(bits: int, cost: float, ops: list[str], ports: list[dict[str, Any]], wide: bool) -> dict[str, Any]:
        bw = 4 * b if wide else b
        for port in ports:
            port["bandwidth_min"] = port["bandwidth_max"] = bw
        return {
            "size": bits,
            "r_cost": cost * bw / b,
            "w_cost": cost * bw / b,
            "area": 0,
            "latency": 1,
            "operands": ops,
            "ports": ports,
            "served_dimensions": ["D1", "D2"] if wide else [],
        }

    def rd(alloc: list[str]) -> dict[str, Any]:
        return {"name": "r_port_1", "type": "read", "allocation": alloc}

    def wr(alloc: list[str]) -> dict[str, Any]:
        return {"name": "w_port_1", "type": "write", "allocation": alloc}

    rw = {"name": "rw_port_1", "type": "read_write", "allocation": shared}
    return {
        "name": f"{hw.name}_ours",
        "memories": {
            "rf_ifmap": mem(hw.rf_words["ifmap"] * b, rf, ["I1"], [rd(["I1, tl"]), wr(["I1, fh"])], False),
            "rf_filter": mem(hw.rf_words["filter"] * b, rf, ["I2"], [rd(["I2, tl"]), wr(["I2, fh"])], False),
            "rf_psum": mem(hw.rf_words["psum"] * b, rf, ["O"], [rd(["O, tl", "O, th"]), wr(["O, fh", "O, fl"])], False),
            "glb": mem(hw.glb_bytes * 8, glb, ["I1", "I2", "O"], [dict(rw)], True),
            "dram": mem(10**10, dram, ["I1", "I2", "O"], [dict(rw)], True),
        },
        "operational_array": {
            "unit_energy": table.mac,
            "unit_area": 0,
            "dimensions": ["D1", "D2"],
            "sizes": [hw.array_cols, hw.array_rows],
        },
    }


MAPPING = [
    {
        "name": "default",
        # row stationary in spirit: output rows across one array dimension, filter rows (and
        # output channels) across the other; ZigZag picks the unrolling from these hints
        "spatial_mapping_hint": {"D1": ["OY", "K"], "D2": ["FY", "C"]},
        "memory_operand_links": {"O": "O", "W": "I2", "I": "I1"},
    }
]


@dataclass
class LayerCheck:
    layer: str
    macs_ours: int
    macs_zigzag: int
    ours: dict[str, float]  # energy per level (mac, rf, glb, dram) and total, without the array level
    zigzag: dict[str, float]
    accesses_ours: dict[str, float]  # words per level
    accesses_zigzag: dict[str, float]
    dram_buffered: float = math.nan  # DRAM energy of the buffer-aware model (bench.measure.dataflow)
    order: str = ""  # its loop order

    @property
    def ratio(self) -> float:
        return self.zigzag["total"] / self.ours["total"] if self.ours["total"] else math.nan


def zigzag_layer(
    module: nn.Module, shape: tuple[int, ...], hw_yaml: Path, map_yaml: Path, work: Path, word_bits: int = 16
) -> Any:
    """ZigZag's minimal-energy cost model evaluation of one layer.

    ZigZag reads ONNX operands as 8-bit unless a node says otherwise: every node gets ``word_bits``
    for weights, activations and partial sums (``weight_size``, ``act_size``, ``output_size``), the
    word our model counts in.
    """
    import onnx  # noqa: PLC0415  # optional extra [crosscheck]
    from zigzag.api import get_hardware_performance_zigzag  # noqa: PLC0415  # optional extra [crosscheck]

    onnx_path = work / "layer.onnx"
    with warnings.catch_warnings():  # the TorchScript exporter is deprecated; ZigZag parses its output
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(module.eval(), (torch.randn(*shape),), str(onnx_path), opset_version=13, dynamo=False)
    graph = onnx.load(str(onnx_path))
    for node in graph.graph.node:
        for attr in ("weight_size", "act_size", "output_size"):
            node.attribute.append(onnx.helper.make_attribute(attr, word_bits))
    onnx.save(graph, str(onnx_path))
    logging.disable(logging.CRITICAL)
    try:
        result: Any = get_hardware_performance_zigzag(
            str(onnx_path),
            str(hw_yaml),
            str(map_yaml),
            opt="energy",
            dump_folder=str(work / "out"),
            loma_show_progress_bar=False,
        )
    finally:
        logging.disable(logging.NOTSET)
    return result[2][0][1][0][0]  # [(cumulative CME, [(this layer's CME, extra)])]


def _zigzag_levels(cme: Any, table: EnergyTable) -> tuple[dict[str, float], dict[str, float], int]:
    """Energy per level from a ZigZag evaluation (memories named as in :func:`zigzag_hardware`), and the
    element accesses it implies (energy / our cost per element access, the cost ZigZag was given)."""
    energy = {"mac": float(cme.mac_energy), "rf": 0.0, "glb": 0.0, "dram": 0.0}
    hierarchy = cme.accelerator.memory_hierarchy
    for layer_op, per_level in cme.mem_energy_breakdown.items():
        mem_op = cme.memory_operand_links.layer_to_mem_op(layer_op)
        for level, e in zip(hierarchy.get_memory_levels(mem_op=mem_op), per_level):
            name = level.name
            energy["rf" if name.startswith("rf") else name] += float(e)
    energy["total"] = sum(energy.values())
    elements = {lv: energy[lv] / table.access[lv] for lv in ("rf", "glb", "dram")}
    return energy, elements, int(cme.layer.total_mac_count)


def crosscheck(model: nn.Module, example: torch.Tensor, hw: Hardware | None = None) -> list[LayerCheck]:
    """Every Conv2d / Linear layer of ``model`` (batch of ``example``): our model vs ZigZag's best mapping."""
    import yaml  # noqa: PLC0415  # comes with zigzag-dse

    hw = hw or load_hardware()
    table = load_energy_table(hw.energy_table)
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        hw_yaml, map_yaml = work / "hw.yaml", work / "map.yaml"
        hw_yaml.write_text(yaml.safe_dump(zigzag_hardware(hw, table), sort_keys=False))
        map_yaml.write_text(yaml.safe_dump(MAPPING, sort_keys=False))
        buffered = {name: dram_traffic(s, hw.glb_words) for name, s in gemm_shapes(model, example)}
        for layer_run in mac_layers(model, example):
            name, mod, shape = layer_run.name, layer_run.module, layer_run.input_shape
            prof = profile(mod, torch.randn(*shape))
            layer = next(lc for lc in prof.layers if lc.mac_type)
            acc = layer_accesses(layer)
            ours = {"mac": layer.macs * table.mac, **{lv: acc[lv] * table.access[lv] for lv in ("rf", "glb", "dram")}}
            ours["total"] = sum(ours.values())
            cme = zigzag_layer(mod, shape, hw_yaml, map_yaml, work, hw.word_bits)
            zz, words, macs = _zigzag_levels(cme, table)
            t = buffered[name]
            out.append(
                LayerCheck(
                    name,
                    layer.macs,
                    macs,
                    ours,
                    zz,
                    {lv: acc[lv] for lv in ("rf", "glb", "dram")},
                    words,
                    t.total * table.access["dram"],
                    t.order,
                )
            )
    return out


def markdown_table(title: str, rows: list[LayerCheck]) -> str:
    """The comparison as a markdown table (energies in the table's units, M = 10^6)."""
    lines = [
        f"**{title}**",
        "",
        "| layer | MACs ours | MACs ZigZag | RF ours / ZZ (M) | GLB ours / ZZ (M) | DRAM ours / ZZ (M) | "
        "DRAM buffered (M), order | total ours / ZZ (M) | ZZ / ours |",
        "| --- " * 9 + "|",
    ]

    def pair(r: LayerCheck, k: str) -> str:
        return f"{r.ours[k] / 1e6:.3g} / {r.zigzag[k] / 1e6:.3g}"

    for r in rows:
        lines.append(
            f"| {r.layer} | {r.macs_ours:,} | {r.macs_zigzag:,} | {pair(r, 'rf')} | {pair(r, 'glb')} | "
            f"{pair(r, 'dram')} | {r.dram_buffered / 1e6:.3g}, {r.order} | {pair(r, 'total')} | "
            f"{r.ratio:.2f} |"
        )
    return "\n".join(lines)


def main() -> int:
    from cascade import StudyCNN  # noqa: PLC0415  # the study's network, only for this report

    torch.manual_seed(0)
    alex = nn.Sequential(nn.Conv2d(3, 96, 11, stride=4))
    print(
        markdown_table(
            "AlexNet conv1 (227 x 227 x 3 -> 55 x 55 x 96), batch 1", crosscheck(alex, torch.randn(1, 3, 227, 227))
        )
    )
    print()
    study = StudyCNN(channels=(32, 64, 128), hidden=256, exits=("p1", "p2"))
    print(
        markdown_table(
            "Study CNN with exits p1 and p2 (1 x 28 x 28), batch 1", crosscheck(study, torch.randn(1, 1, 28, 28))
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
