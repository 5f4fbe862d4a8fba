"""A multi-exit model served by ONNX Runtime: each segment and each exit head exported once, the exit
decision taken between inference sessions, the batch shrunk between segments.

This is :func:`cascade.exits.dynamic_forward` with ONNX Runtime executing the pieces: segment k runs
only on the samples that did not leave at exits 0..k-1. The pieces are exported with
``torch.onnx.export(..., dynamo=False)`` (TorchScript-based exporter; it exports the study CNN, LeNet,
B-LeNet and ResNet-20 pieces as they are) with a dynamic batch axis, so one session serves every
batch size. The policy's decision is the same code as in eager mode (the ORT logits are wrapped as
torch tensors without a copy), so both runtimes apply one rule.

ONNX Runtime is an optional dependency (``pip install cascade-bench[onnx]``); :func:`require_ort`
raises :class:`MissingRuntimeError` naming the extra when it is not installed.
"""

from __future__ import annotations

import functools
import io
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from cascade.exits import EarlyExitResult, ExitPolicy, dynamic_forward, exit_of_one, one_result, transformed_logits
from cascade.models._base import MultiExitModel, takes_previous
from cascade.state import State
from cascade.state import apply as state_apply
from cascade.state import names as state_names

#: ONNX opset of the exported pieces (recorded with every export and timing).
OPSET = 17
#: the execution provider every session runs on (recorded with every timing)
PROVIDER = "CPUExecutionProvider"


class MissingRuntimeError(ImportError):
    """A runtime was asked for whose package is not installed."""


def require_ort() -> Any:
    """The ``onnxruntime`` module, or :class:`MissingRuntimeError` saying how to install it."""
    try:
        import onnxruntime  # noqa: PLC0415  (optional extra)
    except ImportError:
        raise MissingRuntimeError(
            "runtime 'onnxruntime' needs the onnx and onnxruntime packages: pip install 'cascade-bench[onnx]'"
        ) from None
    return onnxruntime


def export_piece(
    piece: nn.Module, example: State, *, opset: int = OPSET, previous: torch.Tensor | None = None
) -> bytes:
    """One segment or head as ONNX bytes, batch axis dynamic: input ``x`` and output ``y``, or ``x0``, ``x1``, ... and
    ``y0``, ``y1``, ... for a list state (MSDNet's scales; :func:`cascade.state.names`); a cascading head (ZTW) has a
    second input ``prev``, the previous exit's logits (``previous``: an example of them)."""
    buf = io.BytesIO()
    args = (example,) if previous is None else (example, previous)
    names = state_names(example, "x") + ([] if previous is None else ["prev"])
    with torch.no_grad():
        outputs = state_names(piece.eval()(*args), "y")
    with warnings.catch_warnings():  # the TorchScript exporter announces its own deprecation
        warnings.simplefilter("ignore", category=DeprecationWarning)
        warnings.simplefilter("ignore", category=FutureWarning)
        torch.onnx.export(
            piece.eval(),
            args,
            buf,  # type: ignore[arg-type]  # the TorchScript exporter writes to file objects; the stub says paths
            input_names=names,
            output_names=outputs,
            dynamic_axes={n: {0: "batch"} for n in [*names, *outputs]},
            opset_version=opset,
            dynamo=False,
        )
    return buf.getvalue()


@torch.no_grad()
def export_model(
    model: MultiExitModel, example: torch.Tensor, *, opset: int = OPSET
) -> tuple[list[bytes], list[bytes]]:
    """(segments, heads) of ``model`` as ONNX bytes; ``example`` is one input batch (its values do not matter)."""
    model.eval()
    segments, heads = [], []
    h, previous = example, None
    for level, (segment, head) in enumerate(zip(model.exit_segments, model.exit_heads)):
        segments.append(export_piece(segment, h, opset=opset))
        h = segment(h)
        heads.append(export_piece(head, h, opset=opset, previous=previous if takes_previous(head) else None))
        previous = model.head_logits(level, h, previous)
    return segments, heads


@dataclass(frozen=True)
class SessionSettings:
    """How the inference sessions run (recorded with every ORT timing)."""

    threads: int = 1  # intra-op threads of each session
    optimization: str = "all"  # graph optimisation level: basic | extended | all
    # Worker threads that spin while waiting for work. Off: a cascade runs several sessions (and torch)
    # in turn, and each session's spinning pool took the cores from the others (study CNN at 2 threads,
    # batch 256: full network 289 -> 110 µs per sample with spinning off; docs/cost.md).
    spinning: bool = False

    def options(self) -> Any:
        ort = require_ort()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        level = {"basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}
        opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level[self.optimization])
        opts.log_severity_level = 3  # warnings about unused initialisers are noise here
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if self.spinning else "0")
        return opts

    def sessions(self, models: Sequence[bytes | str]) -> list[Any]:
        """An inference session per ONNX model (bytes or a file path), on the CPU provider, with these options."""
        ort, opts = require_ort(), self.options()
        return [ort.InferenceSession(m, opts, providers=[PROVIDER]) for m in models]


class OrtCascade:
    """A multi-exit network as ONNX Runtime sessions: ``segments[k]`` then ``heads[k]`` for exit k.

    Args:
        segments: each segment as ONNX bytes or a file path.
        heads: each exit head (same count), as ONNX bytes or a file path.
        settings: threads and graph optimisation of the sessions.
    """

    def __init__(
        self, segments: Sequence[bytes | str], heads: Sequence[bytes | str], settings: SessionSettings | None = None
    ) -> None:
        if len(segments) != len(heads) or not segments:
            raise ValueError(f"need as many segments as heads (at least one), got {len(segments)} and {len(heads)}")
        self.settings = settings or SessionSettings()
        self.segments = self.settings.sessions(segments)
        self.heads = self.settings.sessions(heads)
        self.num_exits = len(self.heads)
        # a cascading head (ZTW) has an input "prev"; a list state (MSDNet) inputs x0, x1, ... and outputs y0, ...:
        # looked up once, not on every call of the hot path
        self._reads_previous = [any(i.name == "prev" for i in h.get_inputs()) for h in self.heads]
        self._inputs = {id(s): {i.name for i in s.get_inputs()} for s in [*self.segments, *self.heads]}
        self._lists = {id(s): s.get_outputs()[0].name != "y" for s in self.segments}

    @classmethod
    def from_model(
        cls,
        model: MultiExitModel,
        example: torch.Tensor,
        settings: SessionSettings | None = None,
        *,
        opset: int = OPSET,
    ) -> OrtCascade:
        segments, heads = export_model(model, example, opset=opset)
        return cls(segments, heads, settings)

    def _feed(self, session: Any, h: State) -> dict[str, np.ndarray]:
        """The inputs of ``session`` from a state (an input the exporter dropped as unused is not fed)."""
        if not isinstance(h, list):
            return {"x": h}
        wanted = self._inputs[id(session)]
        return {name: a for name, a in zip(state_names(h, "x"), h) if name in wanted}

    def _run(self, session: Any, h: State) -> State:
        if not isinstance(h, list):
            out = session.run(None, {"x": h})
        else:
            out = session.run(None, self._feed(session, h))
        return list(out) if self._lists[id(session)] else out[0]

    def _head(self, level: int, h: State, previous: np.ndarray | None) -> np.ndarray:
        """Exit ``level``'s logits; a cascading head also gets the previous exit's logits."""
        head = self.heads[level]
        feed = self._feed(head, h)
        if self._reads_previous[level]:
            feed["prev"] = previous  # type: ignore[assignment]  # checked: a cascading head always gets it
        out: np.ndarray = head.run(None, feed)[0]
        return out

    def forward_until(self, x: np.ndarray, exit_index: int) -> list[np.ndarray]:
        """Every exit's logits up to ``exit_index`` on the whole batch (what obtaining that exit costs)."""
        logits: list[np.ndarray] = []
        h = x
        for level, segment in enumerate(self.segments[: exit_index + 1]):
            h = self._run(segment, h)
            logits.append(self._head(level, h, logits[-1] if logits else None))
        return logits

    def full(self, x: np.ndarray) -> list[np.ndarray]:
        """Every exit's logits on the whole batch (the network without early exit)."""
        return self.forward_until(x, self.num_exits - 1)

    def dynamic(self, x: np.ndarray, policy: ExitPolicy) -> EarlyExitResult:
        """The real early-exit cascade: samples that left are removed before the next segment runs."""
        batch = x.shape[0]
        if batch == 1:
            return self._dynamic_one(x, policy)
        predictions = np.empty(batch, dtype=np.int64)
        exit_index = np.empty(batch, dtype=np.int64)
        remaining = np.arange(batch)
        state = policy.init_state(batch, torch.device("cpu"))
        h, raw = x, None
        for level, segment in enumerate(self.segments):
            h = self._run(segment, h)
            raw = self._head(level, h, raw)  # (b, K) for the b samples still running
            logits_t, state = policy.transform(torch.from_numpy(raw), level, state)  # the eager rule
            logits = logits_t.numpy()
            if level == self.num_exits - 1:
                predictions[remaining] = logits.argmax(1)
                exit_index[remaining] = level
                break
            leave_t, state = policy.decide(logits_t, state)
            leave = leave_t.numpy()
            if not leave.any():
                continue
            if leave.all():
                predictions[remaining] = logits.argmax(1)
                exit_index[remaining] = level
                break
            predictions[remaining[leave]] = logits[leave].argmax(1)
            exit_index[remaining[leave]] = level
            stay = ~leave
            h = state_apply(h, functools.partial(_contiguous_rows, stay))
            remaining, raw = remaining[stay], np.ascontiguousarray(raw[stay])
            state = {k: v[torch.from_numpy(stay)] for k, v in state.items()}
        return EarlyExitResult(torch.from_numpy(predictions), torch.from_numpy(exit_index), self.num_exits)

    def _dynamic_one(self, x: np.ndarray, policy: ExitPolicy) -> EarlyExitResult:
        """:meth:`dynamic` for one sample: the first exit that says "leave" answers, no index bookkeeping."""
        state = policy.init_state(1, torch.device("cpu"))
        h, raw = x, None
        last = self.num_exits - 1
        for level, segment in enumerate(self.segments):
            h = self._run(segment, h)
            raw = self._head(level, h, raw)
            logits: np.ndarray | torch.Tensor = raw  # kept: no tensor between sessions, numpy decides
            if not policy.keeps_logits(level):
                logits, state = policy.transform(torch.from_numpy(raw), level, state)  # (1, K)
            predicted, state = exit_of_one(policy, logits, state, level == last)  # the eager rule
            if predicted is not None:
                return one_result(predicted, level, self.num_exits, torch.device("cpu"))
        raise AssertionError("unreachable: the last exit always answers")


def _contiguous_rows(index: np.ndarray, a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a[index])


def agreement(
    a: EarlyExitResult, b: EarlyExitResult, logits: Sequence[torch.Tensor], policy: ExitPolicy, *, tie: float = 1e-6
) -> dict[str, int]:
    """How two runtimes' cascades on the same samples compare; ``logits``: every exit's logits (one runtime).

    A sample on which they differ is a *tie* when, at the first exit where their decisions part, the
    policy's confidence is within ``tie`` of the threshold, or the two top class probabilities are within
    ``tie`` of each other (rounding can then tip either way); every other difference is ``other``.
    """
    differ = (a.exit_index != b.exit_index) | (a.predictions != b.predictions)
    logits = transformed_logits(logits, policy)  # as the policy judges them (calibrated, ...)
    ties = 0
    threshold = getattr(policy, "threshold", None)
    for i in differ.nonzero().flatten().tolist():
        level = int(min(a.exit_index[i], b.exit_index[i]))
        z = logits[level][i : i + 1].double()
        p = torch.softmax(z, 1)[0].sort(descending=True).values
        close_top = float(p[0] - p[1]) <= tie
        close_threshold = threshold is not None and abs(float(policy.confidence(z)[0]) - threshold) <= tie
        ties += bool(close_top or close_threshold)
    n_differ = int(differ.sum())
    return {"samples": len(differ), "differ": n_differ, "ties": ties, "other": n_differ - ties}


@torch.no_grad()
def check_against_eager(
    model: MultiExitModel,
    run: Callable[[torch.Tensor, ExitPolicy], EarlyExitResult],
    x: torch.Tensor,
    policy: ExitPolicy,
    batch: int,
    logits: Sequence[torch.Tensor] | None = None,
) -> tuple[dict[str, int], EarlyExitResult]:
    """Another runtime's cascade (``run`` on torch batches) against eager :func:`dynamic_forward` over ``x`` in
    batches of ``batch``: their :func:`agreement` and the other runtime's result. ``logits``: every exit's
    eager logits on ``x``, when the caller has them already."""
    starts = range(0, len(x), batch)
    eager = EarlyExitResult.concat([dynamic_forward(model, x[i : i + batch], policy) for i in starts])
    other = EarlyExitResult.concat([run(x[i : i + batch], policy) for i in starts])
    return agreement(eager, other, logits if logits is not None else model(x).logits, policy), other
