"""The one-graph cascade served by ONNX Runtime (the ``onnxruntime-graph`` runtime, :mod:`cascade.graph_runtime`):
the sessions it times, and the roofline's decision probe."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper

from cascade.exits import EarlyExitResult, ExitPolicy, ThresholdPolicy, one_result
from cascade.models._base import MultiExitModel
from cascade.onnx_graph import (
    OPSET,
    GraphBuilder,
    cascade_graph,
    export_pieces,
    model_bytes,
    optimised_for_onnxruntime,
    path_graph,
)


def decision_graph(classes: int = 10, *, opset: int = OPSET) -> bytes:
    """One batch-1 max-prob decision as the cascade graph takes it (softmax, max, compare, an ``If``): the
    roofline's ``decision`` figure for the one-graph runtime."""
    b = GraphBuilder()
    nodes: list[onnx.NodeProto] = []
    probs = b.node(nodes, "Softmax", ["z"], "probs", axis=1)
    confidence = b.node(nodes, "ReduceMax", [probs], "confidence", axes=[1], keepdims=0)
    leave = b.node(nodes, "Greater", [confidence, "threshold"], "leave")
    one = b.const([1], "one", np.int64)
    branch = helper.make_graph(
        [helper.make_node("Identity", [one], [f"{one}_out"])],
        "branch",
        [],
        [helper.make_tensor_value_info(f"{one}_out", TensorProto.INT64, None)],
    )
    nodes.append(helper.make_node("If", [leave], ["exit"], then_branch=branch, else_branch=branch))
    z = helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, classes])
    t = helper.make_tensor_value_info("threshold", TensorProto.FLOAT, [])
    return model_bytes(b, nodes, [z, t], [helper.make_tensor_value_info("exit", TensorProto.INT64, None)], opset)


#: the outputs a cascade result needs
DECIDED = ["class", "exit"]


class GraphServer:
    """A model served as one ONNX graph per call: a session per exit path (segments and heads up to that exit), and
    per policy a cascade session for batch 1 (the ``If`` chain alone) and one for larger batches (the compressing
    body alone): the exported file holds both behind an ``If`` on the batch size, which costs a batch-1 call a few
    microseconds more (docs/measurements.md). A policy's threshold is an input; its temperatures or ensemble, part of
    the graph, make sessions of their own. The pieces are optimised for ONNX Runtime first
    (:func:`cascade.onnx_graph.optimised_for_onnxruntime`)."""

    def __init__(
        self,
        model: MultiExitModel,
        example: torch.Tensor,
        settings: Any,
        policies: Sequence[ExitPolicy] = (),
        *,
        for_onnxruntime: bool = True,
    ) -> None:
        """``settings``: makes the sessions (``sessions(models) -> [session]``, each ``run(None, feed)``);
        ``for_onnxruntime``: optimise the pieces for ONNX Runtime first (another engine reads the plain ONNX)."""
        self.model, self.example, self.settings = model.eval(), example[:2], settings
        self.num_exits = model.num_exits
        pieces = export_pieces(self.model, self.example, OPSET)
        self.pieces = optimised_for_onnxruntime(pieces, settings) if for_onnxruntime else pieces
        shape = list(self.example.shape)
        self.paths = settings.sessions([path_graph(self.pieces, k, shape) for k in range(self.num_exits)])
        self.cascades: dict[str, Any] = {}
        self.device = torch.device("cpu")
        self._last: tuple[Any, ...] = (None,)
        for policy in policies:
            self._session(policy)

    @staticmethod
    def _key(policy: ExitPolicy) -> str:
        return repr(dataclasses.replace(policy, threshold=0.0)) if isinstance(policy, ThresholdPolicy) else repr(policy)

    def _session(self, policy: ExitPolicy, one: bool = False) -> Any:
        key = self._key(policy)
        if key not in self.cascades:
            one_sample = cascade_graph(self.model, self.example, policy, body="one", pieces=self.pieces)
            batch = cascade_graph(self.model, self.example, policy, body="batch", pieces=self.pieces)
            self.cascades[key] = self.settings.sessions([one_sample, batch])
        return self.cascades[key][0 if one else 1]

    def path(self, x: np.ndarray, level: int) -> list[np.ndarray]:
        return list(self.paths[level].run(None, {"x": x}))

    def full(self, x: np.ndarray) -> list[np.ndarray]:
        return self.path(x, self.num_exits - 1)

    def dynamic(self, x: np.ndarray, policy: ExitPolicy) -> EarlyExitResult:
        if self._last[0] is not policy:  # the same policy object call after call: no lookup on the hot path
            threshold = np.asarray(getattr(policy, "threshold", 0.0), dtype=np.float32)
            self._last = (policy, self._session(policy, one=True), self._session(policy), threshold)
        _, one, many, threshold = self._last
        if x.shape[0] == 1:  # fetching only what the result holds saves a copy per output left out
            classes, exits = one.run(DECIDED, {"x": x, "threshold": threshold})
            return one_result(int(classes[0]), int(exits[0]), self.num_exits, self.device)
        classes, exits = many.run(DECIDED, {"x": x, "threshold": threshold})
        return EarlyExitResult(torch.from_numpy(classes), torch.from_numpy(exits), self.num_exits)
