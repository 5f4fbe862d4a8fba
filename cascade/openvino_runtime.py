"""The ``openvino`` runtime: Intel's OpenVINO on the CPU running the cascade as one ONNX graph
(:mod:`cascade.onnx_graph`; OpenVINO reads its ``If`` nodes), one inference request per batch: the batch-1 chain
for one sample, the compressing body for more, each compiled once.

OpenVINO is an optional dependency (``pip install 'cascade-bench[openvino]'``).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from cascade.exits import ExitPolicy
from cascade.models._base import MultiExitModel
from cascade.ort import export_piece
from cascade.runtime import MissingRuntimeError, ProbeRunner, Runtime, Served


def require_openvino() -> Any:
    """The ``openvino`` module, or :class:`MissingRuntimeError` naming the extra."""
    try:
        import openvino  # noqa: PLC0415  (optional extra)
    except ImportError:
        raise MissingRuntimeError(
            "runtime 'openvino' needs the openvino package: pip install 'cascade-bench[openvino]'"
        ) from None
    return openvino


class Request:
    """A compiled ONNX model's inference request with ONNX Runtime's calling convention (``run(None, feed)``)."""

    def __init__(self, compiled: Any) -> None:
        self.request = compiled.create_infer_request()
        self.outputs = [port.get_any_name() for port in compiled.outputs]

    def run(self, names: Sequence[str] | None, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        values = list(self.request.infer(feed).values())
        if names is None:
            return [np.asarray(v) for v in values]
        return [np.asarray(values[self.outputs.index(n)]) for n in names]


class OpenVinoSettings:
    """How the models are compiled: on the CPU device, ``threads`` inference threads, the latency hint."""

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self.core = require_openvino().Core()

    def config(self) -> dict[str, Any]:
        return {"INFERENCE_NUM_THREADS": self.threads, "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}

    def sessions(self, models: Sequence[bytes]) -> list[Request]:
        out = []
        with tempfile.TemporaryDirectory(prefix="cascade-openvino-") as folder:
            for i, blob in enumerate(models):
                path = Path(folder) / f"model_{i}.onnx"
                path.write_bytes(blob)
                out.append(Request(self.core.compile_model(self.core.read_model(str(path)), "CPU", self.config())))
        return out


class OpenVinoRuntime(Runtime):
    """OpenVINO (CPU plugin) over the one-graph cascade."""

    label: ClassVar[str] = "OpenVINO"
    description: ClassVar[str] = "OpenVINO's CPU plugin running the cascade as one ONNX graph; the [openvino] extra"
    colour: ClassVar[str] = "#CC79A7"
    folds_batch_norm: ClassVar[bool] = True

    def check(self) -> None:
        require_openvino()

    def version(self) -> str:
        return str(require_openvino().__version__)

    def serve(
        self, model: MultiExitModel, example: torch.Tensor, threads: int, policies: tuple[ExitPolicy, ...] = ()
    ) -> Served:
        from cascade.graph_server import GraphServer  # noqa: PLC0415  (imports onnx, an optional extra)

        return GraphServer(model, example, OpenVinoSettings(threads), policies, for_onnxruntime=False)

    def convert(self, x: torch.Tensor) -> np.ndarray:
        return np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)

    def settings(self, threads: int) -> dict[str, Any]:
        return {"threads": threads, "device": "CPU", "hint": "LATENCY", "precision": "f32"}

    def probe(self, threads: int) -> ProbeRunner:
        settings = OpenVinoSettings(threads)

        def run(module: nn.Module, x: torch.Tensor) -> Callable[[], Any]:
            (request,) = settings.sessions([export_piece(module.eval(), x)])
            feed = {"x": self.convert(x)}
            return lambda: request.run(None, feed)

        return run

    def decision_probe(self, threads: int) -> Callable[[], Any]:
        from cascade.graph_server import decision_graph  # noqa: PLC0415  (imports onnx, an optional extra)

        (request,) = OpenVinoSettings(threads).sessions([decision_graph()])
        z = np.random.default_rng(0).normal(size=(1, 10)).astype(np.float32)
        feed = {"z": z, "threshold": np.asarray(0.5, dtype=np.float32)}
        return lambda: request.run(None, feed)

    def calls(self, deepest: int) -> int:
        return 1  # one inference request per batch


OPENVINO = OpenVinoRuntime()
