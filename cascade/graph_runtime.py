"""The ``onnxruntime-graph`` runtime: the whole cascade as one ONNX graph (:mod:`cascade.onnx_graph`), one
inference-session call per batch, the exit decisions and the skipped segments inside the graph.

Kept apart from :mod:`cascade.onnx_graph` so that a suite naming the runtime is checked (and told how to install
the ``[onnx]`` extra) before the ``onnx`` package is imported.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import torch

from cascade.exits import ExitPolicy
from cascade.models._base import MultiExitModel
from cascade.ort import ONNX_RUNTIME, SessionSettings, require_ort
from cascade.runtime import MissingRuntimeError, ProbeRunner, Runtime, Served


def require_onnx() -> Any:
    """The ``onnx`` module (graph building), or :class:`MissingRuntimeError` naming the extra."""
    try:
        import onnx  # noqa: PLC0415  (optional extra)
    except ImportError:
        raise MissingRuntimeError(
            "runtime 'onnxruntime-graph' needs the onnx and onnxruntime packages: pip install 'cascade-bench[onnx]'"
        ) from None
    return onnx


class OnnxGraphRuntime(Runtime):
    """ONNX Runtime on the CPU running the cascade as one graph: one session call per batch (the decision, its
    ``If`` and the compression of the undecided samples in the graph)."""

    label: ClassVar[str] = "ONNX Runtime, one graph"
    description: ClassVar[str] = "the whole cascade as one ONNX graph, an If per exit, one session call per batch"
    colour: ClassVar[str] = "#009E73"
    folds_batch_norm: ClassVar[bool] = True

    def check(self) -> None:
        require_ort()
        require_onnx()

    def version(self) -> str:
        return ONNX_RUNTIME.version()

    def serve(
        self, model: MultiExitModel, example: torch.Tensor, threads: int, policies: tuple[ExitPolicy, ...] = ()
    ) -> Served:
        from cascade.graph_server import GraphServer  # noqa: PLC0415  (imports onnx, an optional extra)

        return GraphServer(model, example, SessionSettings(threads=threads), policies)

    def convert(self, x: torch.Tensor) -> np.ndarray:
        return ONNX_RUNTIME.convert(x)

    def settings(self, threads: int) -> dict[str, Any]:
        return ONNX_RUNTIME.settings(threads)

    def probe(self, threads: int) -> ProbeRunner:
        return ONNX_RUNTIME.probe(threads)

    def decision_probe(self, threads: int) -> Callable[[], Any]:
        from cascade.graph_server import decision_graph  # noqa: PLC0415  (optional extra)

        (session,) = SessionSettings(threads=threads).sessions([decision_graph()])
        z = np.random.default_rng(0).normal(size=(1, 10)).astype(np.float32)
        feed = {"z": z, "threshold": np.asarray(0.5, dtype=np.float32)}
        return lambda: session.run(None, feed)

    def calls(self, deepest: int) -> int:
        return 1  # one session call per batch, however deep it goes


ONNX_GRAPH = OnnxGraphRuntime()
