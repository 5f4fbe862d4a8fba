"""The ``executorch`` runtime: PyTorch's on-device runtime, each segment and exit head a method of one ExecuTorch
program (``.pte``), lowered to the XNNPACK backend, the exit decision in host code between method calls (the one
cascade loop, :func:`cascade.exits.run_cascade`).

What did not work here, and why the program holds pieces (ExecuTorch 1.5, torch 2.14, x86 CPU): the whole cascade
as one program, its exits as ``torch.cond``, exports and runs, but the XNNPACK partitioner does not delegate inside
a ``cond`` branch (lowering fails: ``aten.max_pool2d`` "was not decomposed or delegated"); without the partitioner
the portable kernels ran B-LeNet's exit-1 path in about 1 ms against 0.15 ms delegated (docs/measurements.md,
2026-12-08). Methods are exported at batch 1 (the on-device case; a dynamic batch bound the program's buffers
below the latency batches), so the runtime times batch 1 only (:attr:`ExecuTorchRuntime.max_batch`).

ExecuTorch is an optional dependency (``pip install 'cascade-bench[executorch]'``).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from cascade.models._base import MultiExitModel, takes_previous
from cascade.runtime import MissingRuntimeError, Runtime
from cascade.state import rows


def require_executorch() -> Any:
    """The ``executorch`` package, or :class:`MissingRuntimeError` naming the extra."""
    try:
        import executorch  # noqa: PLC0415  (optional extra)
    except ImportError:
        raise MissingRuntimeError(
            "runtime 'executorch' needs the executorch package: pip install 'cascade-bench[executorch]'"
        ) from None
    return executorch


def program(model: MultiExitModel, example: torch.Tensor) -> bytes:
    """``model``'s segments and heads as the methods ``segment_<k>`` and ``head_<k>`` of one ExecuTorch program,
    XNNPACK-delegated, for batch-1 inputs shaped like ``example[:1]``; a cascading head (ZTW) takes the previous
    exit's logits as its second input."""
    require_executorch()
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner  # noqa: PLC0415
    from executorch.exir import to_edge_transform_and_lower  # noqa: PLC0415  (optional extra)

    model = model.eval()
    programs: dict[str, Any] = {}
    h: Any = example[:1]
    previous = None
    with torch.no_grad():
        for level, (segment, head) in enumerate(zip(model.exit_segments, model.exit_heads)):
            programs[f"segment_{level}"] = torch.export.export(segment, (h,))
            h = segment(h)
            reads = takes_previous(head)
            args = (h, previous) if reads else (h,)
            programs[f"head_{level}"] = torch.export.export(head, args)
            previous = model.head_logits(level, h, previous)
    lowered = to_edge_transform_and_lower(programs, partitioner=[XnnpackPartitioner()])
    return bytes(lowered.to_executorch().buffer)


class ExecuTorchPieces:
    """A loaded program's methods as :class:`cascade.exits.Pieces`."""

    def __init__(self, buffer: bytes, num_exits: int, reads_previous: list[bool]) -> None:
        from executorch.runtime import Runtime as EtRuntime  # noqa: PLC0415  (optional extra)

        # the program reads its buffer in place: both stay alive as long as the methods
        self.buffer = buffer
        self.program = loaded = EtRuntime.get().load_program(buffer)
        self.segments = [loaded.load_method(f"segment_{k}") for k in range(num_exits)]
        self.heads = [loaded.load_method(f"head_{k}") for k in range(num_exits)]
        self.reads_previous = reads_previous
        self.num_exits = num_exits
        self.device = torch.device("cpu")

    def segment(self, level: int, h: Any) -> Any:
        out = self.segments[level].execute(h if isinstance(h, list) else [h])
        return list(out) if len(out) > 1 else out[0]

    def head(self, level: int, h: Any, previous: Any) -> torch.Tensor:
        args = [*(h if isinstance(h, list) else [h]), *([previous] if self.reads_previous[level] else [])]
        out: torch.Tensor = self.heads[level].execute(args)[0]
        return out

    def logits(self, raw: torch.Tensor) -> torch.Tensor:
        return raw

    def rows(self, h: Any, keep: torch.Tensor) -> Any:
        return rows(h, keep)


class ExecuTorchRuntime(Runtime):
    """ExecuTorch with the XNNPACK backend on the CPU, batch 1."""

    label: ClassVar[str] = "ExecuTorch (XNNPACK)"
    description: ClassVar[str] = "each segment and head a method of one ExecuTorch program, XNNPACK; batch 1 only"
    colour: ClassVar[str] = "#D55E00"
    max_batch: ClassVar[int | None] = 1

    def check(self) -> None:
        require_executorch()

    def version(self) -> str:
        from importlib.metadata import version  # noqa: PLC0415

        return version("executorch")

    def build(self, model: MultiExitModel, example: torch.Tensor, threads: int) -> ExecuTorchPieces:
        reads = [takes_previous(h) for h in model.exit_heads]
        return ExecuTorchPieces(program(model, example), model.num_exits, reads)

    def convert(self, x: torch.Tensor) -> torch.Tensor:
        return x.detach().cpu().contiguous()

    def settings(self, threads: int) -> dict[str, Any]:
        return {"threads": threads, "backend": "XNNPACK", "batch": 1}

    def calls(self, deepest: int) -> int:
        return 2 * (deepest + 1)  # a segment's method and a head's per exit reached


EXECUTORCH = ExecuTorchRuntime()
