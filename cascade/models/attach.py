"""Exits attached to any ``nn.Module`` by module name: :func:`attach_exits`.

The backbone's graph is captured with ``torch.fx`` symbolic tracing (the mechanism under
torchvision's feature extraction) and cut with ``torch.fx.passes.split_module`` right after the
last operation of each named module, so the segments are the real pieces of the original
network and the dynamic forward really skips the rest. A cut must pass exactly one tensor (the
named module's output) to what follows; a module inside a skip connection, or a network whose
forward has data-dependent control flow, cannot be cut this way: the error says so and points to
the manual route (subclass :class:`~cascade.models.MultiExitModel`, fill ``_segments`` and
``_heads``, register the modules under stable names; see ``docs/models.md``).

The original classifier stays the last exit. The backbone's children and root parameters are
registered on the attached model under their own names, so parameter names are unchanged (a
checkpoint of the plain network loads with ``strict=False``, only the ``exits.*`` heads missing)
and cost accounting sees every module under its own path. Childless modules are traced as leaves,
so a module that reads ``self.training`` (dropout, stochastic depth) keeps doing so.
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import attrgetter
from typing import Any

import torch
from torch import fx, nn
from torch.fx.experimental.optimization import fuse as fx_fuse
from torch.fx.passes.split_module import split_module

from cascade.heads import build_head
from cascade.models._base import MultiExitModel


class ExitAttachError(ValueError):
    """Exits cannot be attached at the requested modules (untraceable network, or not a clean cut)."""


MANUAL_ROUTE = (
    "attach exits by hand instead: subclass cascade.MultiExitModel, put the pieces in _segments and "
    "the heads in _heads, and register the modules under stable names (docs/models.md)"
)


class _LeafTracer(fx.Tracer):
    """torch.fx tracer that keeps every childless module as one call (its own forward is not traced)."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return super().is_leaf_module(m, module_qualified_name) or not any(True for _ in m.children())


def trace(backbone: nn.Module) -> fx.GraphModule:
    """Symbolically trace ``backbone``; :class:`ExitAttachError` when its forward cannot be traced."""
    try:
        graph = _LeafTracer().trace(backbone)
    except Exception as e:  # torch.fx raises TraceError, TypeError, ... on data-dependent control flow
        raise ExitAttachError(
            f"{type(backbone).__name__} cannot be traced by torch.fx ({type(e).__name__}: {e}); {MANUAL_ROUTE}"
        ) from e
    return fx.GraphModule(backbone, graph, type(backbone).__name__)


def _modules_of(node: fx.Node) -> set[str]:
    """Qualified names of the modules a node runs inside (``layer2``, ``layer2.1``, ...)."""
    stack = node.meta.get("nn_module_stack") or {}
    names = {key.split("@")[0] for key in stack}
    if node.op == "call_module":
        names.add(str(node.target))
    return names


def split_backbone(backbone: nn.Module, after: Sequence[str]) -> list[nn.Module]:
    """The backbone as ``len(after) + 1`` consecutive segments, cut after each named module."""
    known = {name for name, _ in backbone.named_modules() if name}
    for name in after:
        if name not in known:
            import difflib  # noqa: PLC0415  # only on this error path

            close = difflib.get_close_matches(name, sorted(known), n=3)
            hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
            top = ", ".join(n for n, _ in backbone.named_children())
            raise ExitAttachError(f"no module {name!r} in {type(backbone).__name__}{hint}; top-level modules: {top}")
    gm = trace(backbone)
    nodes = list(gm.graph.nodes)
    ends = []
    for name in after:
        inside = [i for i, n in enumerate(nodes) if name in _modules_of(n)]
        if not inside:
            raise ExitAttachError(f"module {name!r} never runs in {type(backbone).__name__}.forward")
        ends.append(inside[-1])
    if ends != sorted(ends) or len(set(ends)) != len(ends):
        order = [a for _, a in sorted(zip(ends, after))]
        raise ExitAttachError(f"exits must follow the order in which the modules run: {order}, got {list(after)}")

    part: dict[fx.Node, int] = {}
    for i, n in enumerate(nodes):
        part[n] = sum(i > e for e in ends)
    for n in nodes:  # a parameter fetched at the root belongs where it is first used
        if n.op == "get_attr" and n.users:
            part[n] = min(part[u] for u in n.users)
    for n in nodes:
        if n.op == "output":
            continue
        for src in n.all_input_nodes:
            if part[src] == part[n] or src.op == "get_attr":
                continue
            cut = part[n] - 1
            if part[src] != cut or src is not nodes[ends[cut]]:
                raise ExitAttachError(
                    f"cannot cut after {after[cut]!r}: {n.name} in a later segment also reads {src.name} "
                    f"(a skip connection or second input crosses the cut); choose another module, or {MANUAL_ROUTE}"
                )
    output = next(n for n in nodes if n.op == "output")
    part[output] = len(after)
    split = split_module(gm, backbone, lambda n: part[n], keep_original_order=True)
    segments: list[nn.Module] = []
    for call in split.graph.nodes:
        if call.op != "call_module" or not str(call.target).startswith("submod_"):
            continue
        # split_module passes root attributes (ViT's class token, ...) as extra inputs: fetch them here
        extras = [str(a.target) for a in call.args[1:] if isinstance(a, fx.Node) and a.op == "get_attr"]
        if len(extras) != len(call.args) - 1:
            raise ExitAttachError(f"segment {call.target} takes {len(call.args)} inputs; {MANUAL_ROUTE}")
        segments.append(_Segment(getattr(split, str(call.target)), extras, backbone))
    return segments


class _Segment(nn.Module):
    """One piece of the split graph; fetches the root attributes it reads from the (shared) backbone."""

    def __init__(self, graph: fx.GraphModule, extras: list[str], root: nn.Module) -> None:
        super().__init__()
        self.graph_module: nn.Module = graph
        self.extras = extras
        self.__dict__["_root"] = root  # a plain reference: the root's parameters are registered elsewhere

    def forward(self, x: torch.Tensor) -> Any:
        root = self.__dict__["_root"]
        return self.graph_module(x, *(attrgetter(a)(root) for a in self.extras))  # (B, ...) and root tensors


def _feature_shape(x: Any) -> tuple[int, ...]:
    if not isinstance(x, torch.Tensor):
        raise ExitAttachError(f"a cut passes {type(x).__name__}, not one tensor; {MANUAL_ROUTE}")
    return tuple(x.shape[1:])


class AttachedExits(MultiExitModel):
    """A backbone with exit heads after the named modules; its own classifier is the last exit.

    Args:
        backbone: any ``nn.Module`` mapping images to logits, traceable by ``torch.fx``.
        after: qualified module names, in the order they run (e.g. ``["layer2", "layer3"]``).
        num_classes: classes of the exit heads (the backbone's classifier must give as many).
        input_shape: one input without the batch dimension, e.g. (3, 32, 32), to size the heads.
        head: a registered exit head (:data:`cascade.heads.HEADS`).
        head_options: the head's options.
    """

    def __init__(
        self,
        backbone: nn.Module,
        after: Sequence[str],
        *,
        num_classes: int,
        input_shape: Sequence[int],
        head: str = "linear",
        head_options: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        after = [str(a) for a in after]
        if len(set(after)) != len(after):
            raise ExitAttachError(f"duplicate exit modules in {after}")
        reserved = set(dir(MultiExitModel)) | {"exits", "exit_names", "exit_modules", "feature_shapes", "num_classes"}
        for name, child in backbone.named_children():
            if name in reserved:
                raise ExitAttachError(f"the backbone's module {name!r} clashes with a MultiExitModel attribute")
            self.add_module(name, child)
        for name, p in backbone.named_parameters(recurse=False):
            self.register_parameter(name, p)
        for name, b in backbone.named_buffers(recurse=False):
            self.register_buffer(name, b)
        self.num_classes = num_classes
        self.exit_modules = tuple(after)
        self._segments = list(split_backbone(backbone, after))
        was_training = backbone.training
        backbone.eval()
        shapes = []
        with torch.no_grad():
            param = next(iter(backbone.parameters()), None)
            h: Any = torch.zeros(1, *input_shape, device=param.device if param is not None else None)
            for segment in self._segments:
                h = segment(h)
                shapes.append(_feature_shape(h))
        backbone.train(was_training)
        if shapes[-1] != (num_classes,):
            raise ExitAttachError(f"the backbone's output has shape {shapes[-1]}, expected ({num_classes},) logits")
        self.exits = nn.ModuleDict(
            {_key(a): build_head(head, s, num_classes, head_options) for a, s in zip(after, shapes)}
        )
        self._heads = [*(self.exits[_key(a)] for a in after), nn.Identity()]
        self.exit_names = (*after, "final")
        self.feature_shapes = tuple(shapes[:-1])

    def exit_parameter_prefixes(self) -> tuple[str, ...]:
        return ("exits.",)

    def fold_batch_norm(self) -> None:
        """Also fold conv + BN pairs inside the traced segments (torch.fx's fusion pass)."""
        super().fold_batch_norm()  # the exit heads
        for segment in self._segments:
            if isinstance(segment, _Segment):
                segment.graph_module = fx_fuse(segment.graph_module)


def _key(module_name: str) -> str:
    """ModuleDict keys cannot hold dots: ``layer2.1`` -> ``layer2_1``."""
    return module_name.replace(".", "_")


def infer_num_classes(model: nn.Module, input_shape: Sequence[int]) -> int:
    """The classes a network predicts: the width of its output on one zero input of ``input_shape``
    (its classifier states it; eval mode, no gradient, the model's mode restored)."""
    was_training = model.training
    try:
        param = next(model.parameters(), None)
        x = torch.zeros(1, *input_shape, device=param.device if param is not None else None)
        with torch.no_grad():
            out = model.eval()(x)
    finally:
        model.train(was_training)
    if not isinstance(out, torch.Tensor) or out.dim() != 2:
        kind = type(out).__name__ if not isinstance(out, torch.Tensor) else f"a tensor of shape {tuple(out.shape)}"
        raise ValueError(
            f"cannot infer num_classes: the network returns {kind}, not (batch, classes) logits; give num_classes"
        )
    return int(out.shape[1])


def attach_exits(
    model: nn.Module,
    after: Sequence[str],
    *,
    input_shape: Sequence[int],
    num_classes: int | None = None,
    head: str = "linear",
    head_options: dict[str, Any] | None = None,
) -> AttachedExits:
    """Attach exit heads to ``model`` after the modules named in ``after`` (see :class:`AttachedExits`).

    ``num_classes`` defaults to what the network's own classifier predicts (:func:`infer_num_classes`).

    Example::

        net = attach_exits(torchvision.models.resnet18(num_classes=10), ["layer2", "layer3"],
                           input_shape=(3, 32, 32))
        dynamic_forward(net.eval(), x, build_policy("max-prob", threshold=0.9))
    """
    if num_classes is None:
        num_classes = infer_num_classes(model, input_shape)
    return AttachedExits(
        model, after, num_classes=num_classes, input_shape=input_shape, head=head, head_options=head_options
    )
