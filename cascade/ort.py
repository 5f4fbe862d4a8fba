"""A multi-exit model served by ONNX Runtime: each segment and each exit head exported once, the exit
decision taken between inference sessions, the batch shrunk between segments.

:class:`OrtCascade` is the model's :class:`cascade.exits.Pieces` in ONNX Runtime, so the cascade is
:func:`cascade.exits.run_cascade`, the loop eager PyTorch runs too: segment k runs only on the samples that did not
leave at exits 0..k-1. :data:`ONNX_RUNTIME` is the runtime the harness registers as ``onnxruntime``.
The pieces are exported with ``torch.onnx.export(..., dynamo=False)`` (TorchScript-based exporter; it
exports the study CNN, LeNet, B-LeNet, ResNet-20 and MSDNet pieces as they are) with a dynamic batch axis, so one
session serves every batch size. The policy's decision is the same code as in eager mode (the ORT logits are
wrapped as torch tensors without a copy), so both runtimes apply one rule.

ONNX Runtime is an optional dependency (``pip install cascade-bench[onnx]``); :func:`require_ort`
raises :class:`MissingRuntimeError` naming the extra when it is not installed.
"""

from __future__ import annotations

import functools
import io
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from cascade.exits import EarlyExitResult, ExitPolicy, run_cascade, run_until
from cascade.models._base import MultiExitModel, takes_previous
from cascade.runtime import MissingRuntimeError, ProbeRunner, Runtime
from cascade.state import State
from cascade.state import apply as state_apply
from cascade.state import names as state_names

#: ONNX opset of the exported pieces (recorded with every export and timing).
OPSET = 17
#: the execution provider every session runs on (recorded with every timing)
PROVIDER = "CPUExecutionProvider"


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
    # in turn, and each session's spinning pool takes the cores from the others (docs/measurements.md).
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
    """A multi-exit network as ONNX Runtime sessions: ``segments[k]`` then ``heads[k]`` for exit k (the model's
    :class:`cascade.exits.Pieces` in ONNX Runtime).

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
        self.device = torch.device("cpu")  # the decisions run on torch views of the sessions' outputs
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

    # ------------------------------------------------------------------ cascade.exits.Pieces
    def segment(self, level: int, h: State) -> State:
        return self._run(self.segments[level], h)

    def head(self, level: int, h: State, previous: np.ndarray | None) -> np.ndarray:
        return self._head(level, h, previous)

    def logits(self, raw: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(raw)  # a view: the policy decides on ORT's own output

    def rows(self, h: State, keep: torch.Tensor) -> State:
        return state_apply(h, functools.partial(_contiguous_rows, keep.numpy()))

    # ------------------------------------------------------------------ the three timed calls
    def forward_until(self, x: np.ndarray, exit_index: int) -> list[np.ndarray]:
        """Every exit's logits up to ``exit_index`` on the whole batch (what obtaining that exit costs)."""
        return run_until(self, x, exit_index)

    def full(self, x: np.ndarray) -> list[np.ndarray]:
        """Every exit's logits on the whole batch (the network without early exit)."""
        return run_until(self, x, self.num_exits - 1)

    def dynamic(self, x: np.ndarray, policy: ExitPolicy) -> EarlyExitResult:
        """The real early-exit cascade (:func:`cascade.exits.run_cascade`, the loop every runtime shares)."""
        return run_cascade(self, x, policy)


def _contiguous_rows(index: np.ndarray, a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a[index])


class OnnxRuntime(Runtime):
    """ONNX Runtime on the CPU: each segment and each exit head exported once and run as an inference session, the
    exit decisions taken between sessions (two runtime calls per exit reached)."""

    label: ClassVar[str] = "ONNX Runtime"
    description: ClassVar[str] = "each segment and exit head an ONNX Runtime session (CPU); the [onnx] extra"
    colour: ClassVar[str] = "#E69F00"
    folds_batch_norm: ClassVar[bool] = True  # the exporter folds batch norm into the convolutions

    def check(self) -> None:
        require_ort()

    def version(self) -> str:
        return str(require_ort().__version__)

    def build(self, model: MultiExitModel, example: torch.Tensor, threads: int) -> OrtCascade:
        return OrtCascade.from_model(model, example[:2], SessionSettings(threads=threads))

    def convert(self, x: torch.Tensor) -> np.ndarray:
        return np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)

    def settings(self, threads: int) -> dict[str, Any]:
        session = SessionSettings(threads=threads)
        return {
            "opset": OPSET,
            "threads": threads,
            "graph_optimization": session.optimization,
            "spinning": session.spinning,
            "provider": PROVIDER,
        }

    def probe(self, threads: int) -> ProbeRunner:
        settings = SessionSettings(threads=threads)

        def run(module: nn.Module, x: torch.Tensor) -> Callable[[], Any]:
            (session,) = settings.sessions([export_piece(module.eval(), x)])
            return functools.partial(session.run, None, {"x": self.convert(x)})

        return run

    def calls(self, deepest: int) -> int:
        return 2 * (deepest + 1)  # a segment's session and a head's per exit reached


ONNX_RUNTIME = OnnxRuntime()
