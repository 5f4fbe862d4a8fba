"""A runtime: an execution engine that serves a trained multi-exit network (eager PyTorch, ONNX Runtime, one a
plugin adds). Everything the harness needs of one is this object:

* whether it is installed (:meth:`Runtime.check`, raising :class:`MissingRuntimeError` with the install command);
* how it builds the pieces of a multi-exit model (:meth:`Runtime.build` -> :class:`cascade.exits.Pieces`) and turns
  a torch batch into its input (:meth:`Runtime.convert`); the cascade itself is :func:`cascade.exits.run_cascade`,
  the one loop every runtime shares, so every runtime decides by the policy's own code;
* its label and colour in reports, and what a run file records of it (:meth:`Runtime.settings`);
* what its roofline needs to know: how it runs a micro-benchmark probe (:meth:`Runtime.probe`, for the machine
  figures measured through it) and how many runtime calls a pass through the first exits makes
  (:meth:`Runtime.calls`, each paying the measured per-call overhead).

Runtimes are registered by name in :data:`bench.config.engines.RUNTIMES` as ``"module:attr"`` of such an object,
loaded on first use; docs/runtimes.md shows a plugin adding one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Protocol

import torch
from torch import nn

from cascade.exits import EagerPieces, EarlyExitResult, ExitPolicy, Pieces, run_cascade, run_until
from cascade.models._base import MultiExitModel

#: how a runtime runs one micro-benchmark probe: (module, example input) -> a call to time
ProbeRunner = Callable[[nn.Module, torch.Tensor], Callable[[], Any]]


class MissingRuntimeError(ImportError):
    """A runtime was asked for whose package is not installed."""


class Served(Protocol):
    """A model ready in one runtime: the three calls the harness times, on inputs the runtime converted.

    :class:`ServedPieces` serves a runtime's :class:`~cascade.exits.Pieces` with the one cascade loop; a runtime
    that runs the whole cascade in one call of its own (one ONNX graph) serves it its own way.
    """

    num_exits: int

    def path(self, x: Any, level: int) -> Any:
        """Every segment and head up to exit ``level`` on the whole batch (what obtaining that exit costs)."""
        ...

    def full(self, x: Any) -> Any:
        """The network without early exit."""
        ...

    def dynamic(self, x: Any, policy: ExitPolicy) -> EarlyExitResult:
        """The real early-exit cascade."""
        ...


class ServedPieces:
    """A runtime's pieces served with the one cascade loop (:func:`cascade.exits.run_cascade`)."""

    def __init__(self, pieces: Pieces) -> None:
        self.pieces = pieces
        self.num_exits = pieces.num_exits

    def path(self, x: Any, level: int) -> Any:
        """Every segment and head up to exit ``level`` on the whole batch (what obtaining that exit costs)."""
        return run_until(self.pieces, x, level)

    def full(self, x: Any) -> Any:
        """The network without early exit."""
        return self.path(x, self.num_exits - 1)

    def dynamic(self, x: Any, policy: ExitPolicy) -> EarlyExitResult:
        """The real early-exit cascade (:func:`cascade.exits.run_cascade`)."""
        return run_cascade(self.pieces, x, policy)


class Runtime:
    """One execution engine; subclass it and override what differs from eager PyTorch.

    Attributes:
        label: the runtime's name in reports and figures ("ONNX Runtime").
        description: one line for ``bench names``.
        colour: its colour in every figure (a matplotlib colour; empty: the palette's next).
        folds_batch_norm: the runtime folds batch norm into the layer before it (ONNX export does).
    """

    label: ClassVar[str] = ""
    description: ClassVar[str] = ""
    colour: ClassVar[str] = ""
    #: whether the runtime folds batch norm into the layer before it (its roofline then counts the folded model)
    folds_batch_norm: ClassVar[bool] = False
    #: the largest batch the runtime serves (None: any); larger latency batch sizes are skipped, and said so
    max_batch: ClassVar[int | None] = None

    def check(self) -> None:
        """Raise :class:`MissingRuntimeError` naming the install command when the runtime cannot run here."""

    def version(self) -> str:
        """The runtime's version, recorded with every timing and keyed into its roofline cache."""
        return torch.__version__

    def build(self, model: MultiExitModel, example: torch.Tensor, threads: int) -> Pieces:
        """``model`` (eval mode) made ready to run here on batches like ``example``, with ``threads`` threads."""
        raise NotImplementedError

    def serve(
        self, model: MultiExitModel, example: torch.Tensor, threads: int, policies: tuple[ExitPolicy, ...] = ()
    ) -> Served:
        """``model`` served here: by default its pieces (:meth:`build`) and the one cascade loop. ``policies``: the
        policies the caller will run, for a runtime that prepares something per policy before it is timed."""
        return ServedPieces(self.build(model.eval(), example, threads))

    def decision_probe(self, threads: int) -> Callable[[], Any] | None:
        """One batch-1 exit decision as this runtime takes it, for the roofline's ``decision`` figure (the call's
        overhead is taken out); None: the decision in Python floats between calls
        (:func:`cascade.exits.exit_of_one`)."""
        return None

    def convert(self, x: torch.Tensor) -> Any:
        """A torch batch as this runtime's input (done outside the timing)."""
        return x

    def settings(self, threads: int) -> dict[str, Any]:
        """What a run file records of the runtime besides its version."""
        return {"threads": threads}

    def probe(self, threads: int) -> ProbeRunner | None:
        """How this runtime runs a roofline micro-benchmark probe; None: no roofline of its own (no prediction)."""
        return None

    def calls(self, deepest: int) -> int:
        """Runtime calls a pass through exits ``0..deepest`` makes (each adds the roofline's per-call overhead
        on top of the operators it runs); 0 where the operators' own dispatch is all there is (eager)."""
        return 0


class EagerRuntime(Runtime):
    """PyTorch as it is: the model's own modules, dispatched operator by operator (timed by
    :func:`bench.measure.latency.latency_report` with its inference copy and its own roofline)."""

    label: ClassVar[str] = "eager PyTorch"
    description: ClassVar[str] = "PyTorch, module by module (the reference every runtime is checked against)"
    colour: ClassVar[str] = "#0072B2"

    def build(self, model: MultiExitModel, example: torch.Tensor, threads: int) -> Pieces:
        return EagerPieces(model.eval(), example.device)


EAGER = EagerRuntime()
