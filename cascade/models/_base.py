"""The interface every multi-exit backbone implements.

A multi-exit model is a chain of L *segments* and L *heads*: segment l maps
the features at exit point l-1 (the input for l = 0) to the features at exit
point l, and head l turns those into logits. Exits are numbered 0..L-1 in
code and 1..L in reports; the last head is the network's own classifier.
Exposing the chain (timm's ``forward_intermediates(..., stop_early=True)``
idea) lets :mod:`cascade.exits` run only the segments that samples still
need, and lets cost accounting run "everything up to exit l".
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

#: Options every model takes (applied by :func:`cascade.models.build_model` after construction).
COMMON_OPTIONS = ("cascading_heads",)


def pop_cascading_heads(options: dict[str, Any]) -> bool:
    """Remove the common option ``cascading_heads`` from ``options`` and return it (it must be a bool)."""
    value = options.pop("cascading_heads", False)
    if not isinstance(value, bool):
        raise ValueError(f"cascading_heads must be true or false, got {value!r}")
    return value


def takes_previous(head: nn.Module) -> bool:
    """Whether an exit head is cascading (reads the previous exit's logits, as ZTW's): its class says so, or the
    instance was told so. Read from the class and the instance dict, without nn.Module.__getattr__, which raises
    and catches an AttributeError for every head that lacks the flag (at batch 1, once per exit)."""
    return bool(getattr(type(head), "takes_previous", False) or head.__dict__.get("takes_previous", False))


@dataclass(frozen=True)
class ExitOutputs:
    """Logits of every exit for the whole batch, ordered from first to last exit."""

    logits: tuple[torch.Tensor, ...]  # L tensors of shape (B, K)

    @property
    def num_exits(self) -> int:
        return len(self.logits)

    @property
    def final(self) -> torch.Tensor:
        return self.logits[-1]


class MultiExitModel(nn.Module):
    """Base class: subclasses fill ``self._segments`` and ``self._heads`` (plain lists).

    The lists are *not* registered as submodules (the modules they hold are
    registered elsewhere under stable names), so a network with exits has the
    same parameter names as the one without them plus its exit heads, and a
    ``base`` checkpoint loads into it directly.
    """

    exit_names: tuple[str, ...]
    num_classes: int
    #: Exit positions that every instance accepts (documentation, and the registry-parametrised tests).
    example_exits: tuple[str, ...] = ()
    #: Constructor arguments the harness fills from the data and the variant, not the suite's [model] table.
    HARNESS_ARGS: tuple[str, ...] = ("exits", "num_classes", "in_channels", "input_size")

    @classmethod
    def option_names(cls) -> list[str]:
        """Keyword options a suite's ``[model]`` table may set."""
        params = inspect.signature(cls.__init__).parameters
        keyword_only = [p for p, v in params.items() if v.kind is inspect.Parameter.KEYWORD_ONLY]
        return [*(p for p in keyword_only if p not in cls.HARNESS_ARGS), *COMMON_OPTIONS]

    @classmethod
    def check(cls, *, exits: Sequence[Any] = (), **options: Any) -> None:
        """Raise ``ValueError``/``TypeError`` naming what is wrong with these options and exits.

        The default builds the model on the ``meta`` device (shapes only, no memory: a suite asking for
        10^9 channels is an error, not an allocation of exabytes), and builds it for real when some
        operator of a user's model has no meta implementation; a model whose construction is
        expensive overrides this with direct checks.
        """
        build: Any = cls  # subclasses take exits and their options as keywords; the base class takes none
        pop_cascading_heads(options)  # applied after construction; only its type is checked here
        try:
            try:
                with torch.device("meta"):
                    build(exits=exits, **options)
            except NotImplementedError:
                build(exits=exits, **options)
        except (RuntimeError, MemoryError, OverflowError) as e:  # sizes no tensor can have
            raise ValueError(f"the model cannot be built with these options: {str(e).splitlines()[0]}") from None

    def __init__(self) -> None:
        super().__init__()
        self._segments: list[nn.Module] = []
        self._heads: list[nn.Module] = []

    # Named exit_* (not "segments"/"heads") so that they never clash with a backbone's own modules:
    # torchvision's ViT has a child called "heads".
    @property
    def exit_segments(self) -> list[nn.Module]:
        return self._segments

    @property
    def exit_heads(self) -> list[nn.Module]:
        return self._heads

    @property
    def num_exits(self) -> int:
        return len(self._heads)

    def forward(self, x: torch.Tensor) -> ExitOutputs:
        """Every exit's logits for the whole batch (the "all exits" mode)."""
        return self.forward_until(x, self.num_exits - 1)

    def forward_until(self, x: torch.Tensor, exit_index: int) -> ExitOutputs:
        """Run segments and heads 0..``exit_index`` on the whole batch.

        This is what it costs to obtain exit ``exit_index`` in a cascade: the
        heads met on the way run too, because their outputs decide the exit.
        """
        if not 0 <= exit_index < self.num_exits:
            raise IndexError(f"exit_index {exit_index} outside 0..{self.num_exits - 1}")
        logits: list[torch.Tensor] = []
        h = x
        for level, segment in enumerate(self._segments[: exit_index + 1]):
            h = segment(h)
            logits.append(self.head_logits(level, h, logits[-1] if logits else None))
        return ExitOutputs(tuple(logits))

    def head_logits(self, level: int, features: torch.Tensor, previous: torch.Tensor | None) -> torch.Tensor:
        """Exit ``level``'s logits from its features; a cascading head (ZTW) also reads ``previous``, the
        logits of exit ``level - 1`` for the same samples."""
        head = self._heads[level]
        if takes_previous(head):
            if previous is None:
                raise ValueError(f"exit {level + 1}'s head is cascading: it needs the previous exit's logits")
            out: torch.Tensor = head(features, previous)
            return out
        out = head(features)
        return out

    def fold_batch_norm(self) -> None:
        """Fold batch norm into the layer before it, in place, for an inference copy (eval mode only).

        Inside every ``nn.Sequential``, ``Conv2d`` + ``BatchNorm2d`` (``Linear`` + ``BatchNorm1d``) becomes
        one layer (``torch.nn.utils.fusion``) and the BN slot ``Identity``. Models whose pieces are not
        Sequentials override this.
        """
        for module in self.modules():
            if not isinstance(module, nn.Sequential):
                continue
            children = list(module.named_children())
            for (name_a, a), (name_b, b) in itertools.pairwise(children):
                if isinstance(a, nn.Conv2d) and isinstance(b, nn.BatchNorm2d):
                    setattr(module, name_a, fuse_conv_bn_eval(a, b))
                    setattr(module, name_b, nn.Identity())
                elif isinstance(a, nn.Linear) and isinstance(b, nn.BatchNorm1d):
                    setattr(module, name_a, fuse_linear_bn_eval(a, b))
                    setattr(module, name_b, nn.Identity())

    def rescale_head_input(self, h: Any, scale: float, rescale: Callable[[torch.Tensor, float], torch.Tensor]) -> Any:
        """The state after a segment with its gradient rescaled for gradient equilibrium (``rescale(tensor, scale)``,
        :func:`cascade.training.scale_gradient`): the one tensor here; a model whose heads read a part of a list state
        rescales that part (MSDNet: the coarsest scale, as IMTA's ``msdnet_ge.py``)."""
        return rescale(h, scale)

    def exit_parameter_prefixes(self) -> tuple[str, ...]:
        """State-dict prefixes of the intermediate exit heads (absent from a ``base`` model)."""
        return ()
