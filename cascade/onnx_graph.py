"""The whole cascade as one ONNX graph: every segment and head, the exit policy in graph operators, an ``If`` per
exit that skips the rest of the network when the samples have left, in one file served by one session call.

Inputs: ``x`` (the image batch, NCHW float32) and ``threshold`` (a float32 scalar). Outputs: ``logits`` (each
sample's logits at the exit it took, as the policy judges them: temperature-scaled, or ZTW's ensemble), ``class``
(their argmax), ``exit`` (the 0-based exit taken) and ``confidence`` (the policy's score there).

Two bodies share the weights (the pieces' initializers live in the main graph and the branches read them from the
outer scope): at batch 1 a chain of ``If`` nodes, exit k's ``then`` branch answering and its ``else`` branch
holding the rest of the network; at any other batch the undecided samples are compressed before each segment,
the answers scattered back into the outputs, and a segment is skipped when no sample remains. A top-level ``If``
on the batch size picks the body.

The policy in graph operators, as :mod:`cascade.exits` computes it (tests hold the two equal):

* ``max-prob``: ``ReduceMax(Softmax(z))``; ``entropy``: ``1 - H(Softmax(z)) / log K``;
* ``calibrate = "temperature"``: exit k's logits divided by its temperature first;
* ``ztw-ensemble``: at intermediate exit k, ``sum_i exp(w_i) / (k + 1) LogSoftmax(z_i) + b`` over exits 0..k
  (:func:`cascade.ztw.ensemble_logits`), the log-probabilities of the exits before carried with the samples;
  the last exit is the network's own.

A sample leaves where the confidence is greater than ``threshold``. Patience carries a per-sample count whose
decision differs in kind; it is not exported as a graph (:class:`GraphExportError`).
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from cascade.errors import UserError
from cascade.exits import (
    EntropyPolicy,
    ExitPolicy,
    MaxProbPolicy,
    ThresholdPolicy,
    ZTWEnsemblePolicy,
)
from cascade.models._base import MultiExitModel, takes_previous
from cascade.ort import OPSET, PROVIDER, export_piece, require_ort
from cascade.state import names as state_names

#: the graph's inputs and outputs (docs/deploy.md)
INPUTS = ("x", "threshold")
OUTPUTS = ("logits", "class", "exit", "confidence")


class GraphExportError(ValueError, UserError):
    """A policy or model the one-graph export cannot express."""


@dataclass
class _Piece:
    """An exported segment or head: its nodes (inputs renamed to the values they read), initializers and outputs."""

    nodes: list[onnx.NodeProto]
    initializers: list[onnx.TensorProto]
    outputs: list[str]


def _inline(blob: bytes, prefix: str, state: list[str], previous: str | None = None) -> _Piece:
    """One exported piece with every name prefixed; its inputs read the outer values: ``x`` (or ``x0``, ``x1``, ...
    for a list state) the state, ``prev`` the previous exit's logits. Its outputs in order (``y`` or ``y0``, ...)."""
    model = onnx.compose.add_prefix(onnx.load_from_string(blob), prefix)
    rename = {f"{prefix}x": state[0], **{f"{prefix}x{i}": v for i, v in enumerate(state)}}
    if previous is not None:
        rename[f"{prefix}prev"] = previous
    nodes = []
    for node in model.graph.node:
        copy = onnx.NodeProto()
        copy.CopyFrom(node)
        copy.input[:] = [rename.get(i, i) for i in node.input]
        nodes.append(copy)
    return _Piece(nodes, list(model.graph.initializer), [o.name for o in model.graph.output])


@dataclass
class GraphBuilder:
    """Names and constants of one graph under construction."""

    initializers: list[onnx.TensorProto] = field(default_factory=list)
    count: int = 0

    def name(self, hint: str) -> str:
        self.count += 1
        return f"{hint}_{self.count}"

    def const(self, value: Any, hint: str, dtype: Any = np.float32) -> str:
        name = self.name(hint)
        self.initializers.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def node(self, nodes: list[onnx.NodeProto], op: str, inputs: Sequence[str], hint: str, **attrs: Any) -> str:
        out = self.name(hint)
        nodes.append(helper.make_node(op, list(inputs), [out], **attrs))
        return out


@dataclass(frozen=True)
class GraphPieces:
    """A model's segments and heads as ONNX models, the material of every graph built here."""

    segments: list[bytes]
    heads: list[bytes]
    reads_previous: list[bool]
    state_out: list[int]  # how many tensors each segment outputs (a list state: MSDNet's scales)
    #: operator sets beyond the default one that the pieces use (ONNX Runtime's own, once optimised for it)
    domains: tuple[tuple[str, int], ...] = ()


def optimised_for_onnxruntime(pieces: GraphPieces, settings: Any) -> GraphPieces:
    """The pieces as ONNX Runtime optimises them at load time (``settings``: a :class:`cascade.ort.SessionSettings`),
    saved back as ONNX. ONNX Runtime's layout optimisations (NCHWc convolutions) apply to a main graph, not inside
    an ``If`` branch, so a cascade graph built from unoptimised pieces runs its later exits slower than the same
    path as one model; built from these, it does not. The result holds ONNX Runtime's own operators, for this
    machine's instruction set: fit for the ``onnxruntime-graph`` runtime, not for a file to ship elsewhere."""
    ort = require_ort()
    domains: dict[str, int] = {}

    def optimise(blob: bytes) -> bytes:
        with tempfile.TemporaryDirectory(prefix="cascade-ort-opt-") as folder:
            path = Path(folder) / "piece.onnx"
            options = settings.options()
            options.optimized_model_filepath = str(path)
            options.log_severity_level = 3  # the "hardware specific" warning is the point here
            ort.InferenceSession(blob, options, providers=[PROVIDER])
            out = path.read_bytes()
        for opset in onnx.load_from_string(out).opset_import:
            if opset.domain not in ("", "ai.onnx"):
                domains[opset.domain] = max(domains.get(opset.domain, 0), opset.version)
        return out

    segments = [optimise(b) for b in pieces.segments]
    heads = [optimise(b) for b in pieces.heads]
    return dataclasses.replace(pieces, segments=segments, heads=heads, domains=tuple(sorted(domains.items())))


def export_pieces(model: MultiExitModel, example: torch.Tensor, opset: int = OPSET) -> GraphPieces:
    """Every segment and head of ``model`` (eval mode) exported on an example batch like ``example``."""
    segments, heads, previous_flags, outs = [], [], [], []
    h: Any = example
    previous = None
    with torch.no_grad():
        for level, (segment, head) in enumerate(zip(model.exit_segments, model.exit_heads)):
            segments.append(export_piece(segment, h, opset=opset))
            h = segment(h)
            outs.append(len(state_names(h, "y")))
            reads = takes_previous(head)
            heads.append(export_piece(head, h, opset=opset, previous=previous if reads else None))
            previous_flags.append(reads)
            previous = model.head_logits(level, h, previous)
    return GraphPieces(segments, heads, previous_flags, outs)


@dataclass(frozen=True)
class _Rule:
    """The policy as graph operators (see the module docstring)."""

    kind: str  # "max-prob" | "entropy"
    temperatures: tuple[float, ...] = ()
    weights: tuple[tuple[float, ...], ...] = ()  # ZTW: per intermediate exit, k + 1 log-weights
    biases: tuple[tuple[float, ...], ...] = ()

    @classmethod
    def of(cls, policy: ExitPolicy, num_exits: int) -> _Rule:
        if not isinstance(policy, ThresholdPolicy):
            raise GraphExportError(
                f"policy {policy.name!r} cannot be exported as one graph (its decision is not a threshold on a "
                "confidence); export it with --format onnx (segments and heads, the decision in code)"
            )
        kind = "entropy" if isinstance(policy, EntropyPolicy) else "max-prob"
        if not isinstance(policy, (MaxProbPolicy, EntropyPolicy)):
            raise GraphExportError(f"policy {policy.name!r} has no graph form; known: max-prob, entropy, ztw-ensemble")
        temperatures = tuple(policy.temperatures) if policy.calibrate == "temperature" else ()
        if temperatures and len(temperatures) < num_exits:
            raise GraphExportError(f"{len(temperatures)} temperatures for {num_exits} exits: fit them first")
        if isinstance(policy, ZTWEnsemblePolicy):
            if not policy.ensemble_weights:
                raise GraphExportError("policy 'ztw-ensemble' has no fitted ensemble (ensemble_weights): fit it first")
            return cls(kind, temperatures, tuple(policy.ensemble_weights), tuple(policy.ensemble_biases))
        return cls(kind, temperatures)

    def ensembled(self, level: int) -> bool:
        return level < len(self.weights)


@dataclass
class _Values:
    """The values one level reads: the state, the previous exit's raw logits, ZTW's log-probabilities so far."""

    state: list[str]
    previous: str | None
    log_probs: list[str]


class _Cascade:
    """Builds the graph (see the module docstring)."""

    def __init__(self, pieces: GraphPieces, rule: _Rule, classes: int) -> None:
        self.pieces, self.rule, self.classes = pieces, rule, classes
        self.num_exits = len(pieces.heads)
        self.b = GraphBuilder()
        self.copies = 0

    # ------------------------------------------------------------------ one exit
    def _segment_and_head(self, nodes: list[onnx.NodeProto], level: int, values: _Values) -> tuple[list[str], str]:
        """Nodes of segment ``level`` and head ``level`` (a fresh copy per use: every name is unique in the model);
        returns the new state and the raw logits."""
        self.copies += 1
        seg = _inline(self.pieces.segments[level], f"c{self.copies}s{level}_", values.state)
        previous = values.previous if self.pieces.reads_previous[level] else None
        head = _inline(self.pieces.heads[level], f"c{self.copies}h{level}_", seg.outputs, previous)
        nodes += [*seg.nodes, *head.nodes]
        self.b.initializers += [*seg.initializers, *head.initializers]
        return seg.outputs, head.outputs[0]

    def _judged(
        self, nodes: list[onnx.NodeProto], level: int, raw: str, values: _Values
    ) -> tuple[str, str, str | None]:
        """(logits as the policy judges them, confidence, this exit's log-probabilities for ZTW or None)."""
        b, rule = self.b, self.rule
        z = raw
        if rule.temperatures:
            z = b.node(nodes, "Div", [z, b.const(rule.temperatures[level], "temperature")], "calibrated")
        log_probs = None
        if rule.ensembled(level):
            log_probs = b.node(nodes, "LogSoftmax", [z], "log_probs", axis=1)
            members = [*values.log_probs, log_probs]
            scale = np.exp(np.asarray(rule.weights[level], dtype=np.float64)) / len(members)
            terms = [b.node(nodes, "Mul", [m, b.const(s, "weight")], "term") for m, s in zip(members, scale)]
            summed = terms[0] if len(terms) == 1 else b.node(nodes, "Sum", terms, "ensemble")
            z = b.node(nodes, "Add", [summed, b.const(np.asarray(rule.biases[level]), "bias")], "ensembled")
        probs = b.node(nodes, "Softmax", [z], "probs", axis=1)
        if rule.kind == "max-prob":
            confidence = b.node(nodes, "ReduceMax", [probs], "confidence", axes=[1], keepdims=0)
        else:
            lp = b.node(nodes, "LogSoftmax", [z], "log_p", axis=1)
            plogp = b.node(nodes, "Mul", [probs, lp], "p_log_p")
            axes = b.const([1], "axes", np.int64)
            neg_h = b.node(nodes, "ReduceSum", [plogp, axes], "neg_entropy", keepdims=0)
            scaled = b.node(nodes, "Div", [neg_h, b.const(math.log(self.classes), "log_k")], "neg_h_norm")
            confidence = b.node(nodes, "Add", [b.const(1.0, "one"), scaled], "confidence")
        return z, confidence, log_probs

    # ------------------------------------------------------------------ batch 1: a chain of If nodes
    def chain(self, level: int, values: _Values, threshold: str) -> tuple[list[onnx.NodeProto], list[str]]:
        """Nodes computing exits ``level``.. for one sample; returns them and the names of (logits, exit,
        confidence)."""
        b, nodes = self.b, list[onnx.NodeProto]()
        state, raw = self._segment_and_head(nodes, level, values)
        z, confidence, log_probs = self._judged(nodes, level, raw, values)
        exit_k = b.const([level], "exit", np.int64)
        if level == self.num_exits - 1:
            return nodes, [z, exit_k, confidence]
        leave = b.node(nodes, "Greater", [confidence, threshold], "leave")
        answer = _branch(b, [], [z, exit_k, confidence], "answer")
        rest = _Values(state, raw, [*values.log_probs, *([log_probs] if log_probs else [])])
        inner, outs = self.chain(level + 1, rest, threshold)
        results = [b.name(n) for n in ("logits", "exit", "confidence")]
        otherwise = _branch(b, inner, outs, "continue")
        nodes.append(helper.make_node("If", [leave], results, then_branch=answer, else_branch=otherwise))
        return nodes, results

    # ------------------------------------------------------------------ any batch: compress, scatter back
    def batched(
        self, level: int, values: _Values, index: str, outputs: list[str], threshold: str
    ) -> tuple[list[onnx.NodeProto], list[str]]:
        """Nodes computing exits ``level``.. for the samples still running (their positions: ``index``), writing
        each answer into ``outputs`` (logits, exit, confidence over the whole batch); returns the nodes and the
        outputs as they are after the last exit."""
        b, nodes = self.b, list[onnx.NodeProto]()
        state, raw = self._segment_and_head(nodes, level, values)
        z, confidence, log_probs = self._judged(nodes, level, raw, values)
        n = b.node(nodes, "Shape", [index], "running")
        exits = b.node(nodes, "Expand", [b.const(level, "exit", np.int64), n], "exits")
        if level == self.num_exits - 1:
            return nodes, self._scatter(nodes, outputs, index, [z, exits, confidence])
        leave = b.node(nodes, "Greater", [confidence, threshold], "leave")
        left = b.node(nodes, "Compress", [index, leave], "left", axis=0)
        answered = [b.node(nodes, "Compress", [v, leave], "answered", axis=0) for v in (z, exits, confidence)]
        written = self._scatter(nodes, outputs, left, answered)
        stay = b.node(nodes, "Not", [leave], "stay")
        stay_int = b.node(nodes, "Cast", [stay], "stay_int", to=TensorProto.INT64)
        anyone = b.node(nodes, "ReduceMax", [stay_int], "n", keepdims=0)
        more = b.node(nodes, "Greater", [anyone, b.const(0, "zero", np.int64)], "more")
        inner: list[onnx.NodeProto] = []
        kept = [b.node(inner, "Compress", [v, stay], "kept", axis=0) for v in [*state, raw, index, *values.log_probs]]
        kept_log = [b.node(inner, "Compress", [log_probs, stay], "kept", axis=0)] if log_probs else []
        k_state, k_raw, k_index = kept[: len(state)], kept[len(state)], kept[len(state) + 1]
        rest = _Values(k_state, k_raw, [*kept[len(state) + 2 :], *kept_log])
        deeper, outs = self.batched(level + 1, rest, k_index, written, threshold)
        results = [b.name(n) for n in ("logits", "exit", "confidence")]
        go_on = _branch(b, [*inner, *deeper], outs, "continue")
        done = _branch(b, [], written, "done")
        nodes.append(helper.make_node("If", [more], results, then_branch=go_on, else_branch=done))
        return nodes, results

    def _scatter(self, nodes: list[onnx.NodeProto], outputs: list[str], index: str, values: list[str]) -> list[str]:
        at = self.b.node(nodes, "Unsqueeze", [index, self.b.const([1], "axes", np.int64)], "at")
        return [self.b.node(nodes, "ScatterND", [o, at, v], "written") for o, v in zip(outputs, values)]


_TYPES = {"logits": TensorProto.FLOAT, "exit": TensorProto.INT64, "confidence": TensorProto.FLOAT}


def _branch(b: GraphBuilder, nodes: list[onnx.NodeProto], outs: list[str], hint: str) -> onnx.GraphProto:
    """A subgraph of ``nodes`` whose outputs are copies of ``outs`` (logits, exit, confidence), typed."""
    copies = [b.name(f"{o}_out") for o in outs]
    body = [*nodes, *(helper.make_node("Identity", [o], [c]) for o, c in zip(outs, copies))]
    typed = [helper.make_tensor_value_info(c, t, None) for c, t in zip(copies, _TYPES.values())]
    return helper.make_graph(body, b.name(hint), [], typed)


#: the graph's bodies: both behind an If on the batch size, or one of them alone (``one``: batch 1 only)
BODIES = ("auto", "one", "batch")


def cascade_graph(
    model: MultiExitModel,
    example: torch.Tensor,
    policy: ExitPolicy,
    *,
    body: str = "auto",
    opset: int = OPSET,
    pieces: GraphPieces | None = None,
) -> bytes:
    """``model`` (eval mode) and ``policy`` as one ONNX model (see the module docstring); ``example``: one input batch
    of the right shape (its values do not matter). The policy's threshold is the graph's ``threshold`` input.
    ``body``: ``auto`` (both bodies, picked by the batch size), ``one`` (the If chain alone: batch 1 only) or
    ``batch`` (the compressing body alone, at any batch). ``pieces``: the model's pieces exported already (or
    optimised, :func:`optimised_for_onnxruntime`)."""
    if body not in BODIES:
        raise ValueError(f"body {body!r}; known: {', '.join(BODIES)}")
    pieces = pieces or export_pieces(model.eval(), example[:2], opset)
    with torch.no_grad():
        classes = int(model(example[:1]).logits[-1].shape[1])
    cascade = _Cascade(pieces, _Rule.of(policy, len(pieces.heads)), classes)
    b, start = cascade.b, _Values(["x"], None, [])
    outs = ["logits", "exit", "confidence"]
    top: list[onnx.NodeProto] = []
    if body == "one":
        one_nodes, one_outs = cascade.chain(0, start, "threshold")
        top += [*one_nodes, *(helper.make_node("Identity", [v], [o]) for v, o in zip(one_outs, outs))]
    elif body == "batch":
        many_nodes, many_outs = _batched_body(cascade, start, classes)
        top += [*many_nodes, *(helper.make_node("Identity", [v], [o]) for v, o in zip(many_outs, outs))]
    else:
        one_nodes, one_outs = cascade.chain(0, start, "threshold")
        many_nodes, many_outs = _batched_body(cascade, start, classes)
        size = b.node(top, "Shape", ["x"], "size", start=0, end=1)
        is_one = b.node(top, "Equal", [size, b.const([1], "one", np.int64)], "is_one")
        one, many = _branch(b, one_nodes, one_outs, "one_sample"), _branch(b, many_nodes, many_outs, "batch")
        top.append(helper.make_node("If", [is_one], outs, then_branch=one, else_branch=many))
    top.append(helper.make_node("ArgMax", ["logits"], ["class"], axis=1, keepdims=0))
    inputs = [
        helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", *example.shape[1:]]),
        helper.make_tensor_value_info("threshold", TensorProto.FLOAT, []),
    ]
    outputs = [
        helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes]),
        helper.make_tensor_value_info("class", TensorProto.INT64, ["batch"]),
        helper.make_tensor_value_info("exit", TensorProto.INT64, ["batch"]),
        helper.make_tensor_value_info("confidence", TensorProto.FLOAT, ["batch"]),
    ]
    return model_bytes(b, top, inputs, outputs, opset, pieces.domains)


def _batched_body(cascade: _Cascade, start: _Values, classes: int) -> tuple[list[onnx.NodeProto], list[str]]:
    """The compressing body: the outputs allocated over the whole batch, every position still running."""
    b, many = cascade.b, list[onnx.NodeProto]()
    batch = b.node(many, "Shape", ["x"], "batch", start=0, end=1)
    size_scalar = b.node(many, "Squeeze", [batch], "b")
    index = b.node(many, "Range", [b.const(0, "zero", np.int64), size_scalar, b.const(1, "step", np.int64)], "index")
    shape = b.node(many, "Concat", [batch, b.const([classes], "k", np.int64)], "shape", axis=0)
    zeros = [
        b.node(many, "ConstantOfShape", [shape], "logits0", value=numpy_helper.from_array(np.zeros(1, np.float32))),
        b.node(many, "ConstantOfShape", [batch], "exit0", value=numpy_helper.from_array(np.zeros(1, np.int64))),
        b.node(many, "ConstantOfShape", [batch], "confidence0", value=numpy_helper.from_array(np.zeros(1, np.float32))),
    ]
    nodes, outs = cascade.batched(0, start, index, zeros, "threshold")
    return [*many, *nodes], outs


def model_bytes(
    b: GraphBuilder,
    nodes: list[onnx.NodeProto],
    inputs: list[onnx.ValueInfoProto],
    outputs: list[onnx.ValueInfoProto],
    opset: int,
    domains: tuple[tuple[str, int], ...] = (),
) -> bytes:
    graph = helper.make_graph(nodes, "cascade", inputs, outputs, initializer=b.initializers)
    imports = [helper.make_opsetid("", opset), *(helper.make_opsetid(d, v) for d, v in domains)]
    model = helper.make_model(graph, opset_imports=imports, producer_name="cascade-bench")
    return bytes(model.SerializeToString())


def path_graph(pieces: GraphPieces, level: int, example_shape: Sequence[int], *, opset: int = OPSET) -> bytes:
    """Segments and heads ``0..level`` as one ONNX model (what obtaining exit ``level`` costs in one call): input
    ``x``, outputs ``logits_0`` .. ``logits_<level>``."""
    cascade = _Cascade(pieces, _Rule("max-prob"), 0)
    nodes: list[onnx.NodeProto] = []
    values = _Values(["x"], None, [])
    outs = []
    for k in range(level + 1):
        state, raw = cascade._segment_and_head(nodes, k, values)
        outs.append(raw)
        values = _Values(state, raw, [])
    named = [helper.make_node("Identity", [o], [f"logits_{k}"]) for k, o in enumerate(outs)]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", *example_shape[1:]])
    ys = [helper.make_tensor_value_info(f"logits_{k}", TensorProto.FLOAT, None) for k in range(level + 1)]
    return model_bytes(cascade.b, [*nodes, *named], [x], ys, opset, pieces.domains)
