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
from typing import Any, ClassVar

import torch
from torch import nn

from cascade.exits import EagerPieces, Pieces
from cascade.models._base import MultiExitModel

#: how a runtime runs one micro-benchmark probe: (module, example input) -> a call to time
ProbeRunner = Callable[[nn.Module, torch.Tensor], Callable[[], Any]]


class MissingRuntimeError(ImportError):
    """A runtime was asked for whose package is not installed."""


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

    def check(self) -> None:
        """Raise :class:`MissingRuntimeError` naming the install command when the runtime cannot run here."""

    def version(self) -> str:
        """The runtime's version, recorded with every timing and keyed into its roofline cache."""
        return torch.__version__

    def build(self, model: MultiExitModel, example: torch.Tensor, threads: int) -> Pieces:
        """``model`` (eval mode) made ready to run here on batches like ``example``, with ``threads`` threads."""
        raise NotImplementedError

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
