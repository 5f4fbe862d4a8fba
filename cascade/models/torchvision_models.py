"""Every torchvision classification model as a multi-exit backbone: ``torchvision:<name>``.

``[model] name = "torchvision:resnet18"`` builds ``torchvision.models.get_model("resnet18")``
with the data's number of classes and attaches exit heads after the modules named in a
variant's ``exits`` (:func:`cascade.models.attach.attach_exits`). Options:

* ``weights``: a torchvision weights name (``"DEFAULT"``, ``"IMAGENET1K_V1"``); used only when the
  file is already in torch hub's cache (``torch.hub.get_dir()/checkpoints``) -- nothing is downloaded.
  With pre-trained weights and a different number of classes, the last ``Linear`` is replaced.
* ``head``, ``head_options``: the exit heads (:data:`cascade.heads.HEADS`).
* ``kwargs``: further keyword arguments of the torchvision builder (e.g. ``{ image_size = 32 }`` for ViT).

Grey images (one input channel) get the first convolution rebuilt for one channel.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from cascade.models.attach import AttachedExits


class WeightsNotAvailableError(FileNotFoundError):
    """Pre-trained weights were asked for but are not in the local torch hub cache."""


def _replace(root: nn.Module, path: str, new: nn.Module) -> None:
    parent, _, leaf = path.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, leaf, new)


def _last_linear(model: nn.Module) -> tuple[str, nn.Linear]:
    found = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not found:
        raise ValueError(f"{type(model).__name__} has no Linear classifier to resize")
    return found[-1]


def _first_conv(model: nn.Module) -> tuple[str, nn.Conv2d]:
    found = next(((n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)), None)
    if found is None:
        raise ValueError(f"{type(model).__name__} has no Conv2d to adapt to the input channels")
    return found


def build_backbone(
    arch: str, *, num_classes: int, in_channels: int, weights: str | None, kwargs: dict[str, Any]
) -> nn.Module:
    """The torchvision model ``arch`` for ``num_classes`` classes and ``in_channels`` input channels."""
    import torchvision  # noqa: PLC0415  # torchvision costs 1.5 s to import (torch._dynamo); only where it is used

    if weights:
        enum = torchvision.models.get_model_weights(arch)
        try:
            w = enum[weights] if weights != "DEFAULT" else enum.DEFAULT
        except KeyError:
            raise ValueError(
                f"weights {weights!r} unknown for {arch}; known: DEFAULT, {', '.join(m for m in enum.__members__)}"
            ) from None
        file = Path(torch.hub.get_dir()) / "checkpoints" / Path(w.url).name
        if not file.is_file():
            raise WeightsNotAvailableError(
                f"{arch} weights {w} are not in the local cache {file}; download them where there is internet "
                f'(python -c \'import torchvision; torchvision.models.get_model("{arch}", weights="{weights}")\') '
                f"and copy the file there, or set TORCH_HOME"
            )
        model = torchvision.models.get_model(arch, weights=w, **kwargs)
        name, fc = _last_linear(model)
        if fc.out_features != num_classes:
            _replace(model, name, nn.Linear(fc.in_features, num_classes))
    else:
        model = torchvision.models.get_model(arch, num_classes=num_classes, **kwargs)
    if in_channels != 3:
        name, first = _first_conv(model)
        conv: Any = first  # torchvision stores kernel_size etc. as tuples; Conv2d takes them back
        _replace(
            model,
            name,
            nn.Conv2d(
                in_channels,
                conv.out_channels,
                conv.kernel_size,
                conv.stride,
                conv.padding,
                conv.dilation,
                conv.groups,
                conv.bias is not None,
            ),
        )
    return model


class TorchvisionExits(AttachedExits):
    """A torchvision classifier with exits after the named modules (``arch`` set per registered name)."""

    arch: ClassVar[str] = ""

    def __init__(
        self,
        *,
        exits: Sequence[str] = (),
        num_classes: int = 1000,
        in_channels: int = 3,
        input_size: int = 224,
        weights: str | None = None,
        head: str = "linear",
        head_options: dict[str, Any] | None = None,
        kwargs: dict[str, Any] | None = None,
    ) -> None:
        backbone = build_backbone(
            self.arch, num_classes=num_classes, in_channels=in_channels, weights=weights, kwargs=dict(kwargs or {})
        )
        super().__init__(
            backbone,
            list(exits),
            num_classes=num_classes,
            input_shape=(in_channels, input_size, input_size),
            head=head,
            head_options=head_options,
        )


@functools.cache
def torchvision_model(arch: str) -> type[TorchvisionExits]:
    """The registry entry for ``torchvision:<arch>`` (one class per architecture)."""
    import torchvision  # noqa: PLC0415  # torchvision costs 1.5 s to import (torch._dynamo); only where it is used

    known = torchvision.models.list_models(module=torchvision.models)
    if arch not in known:
        import difflib  # noqa: PLC0415  # only on this error path

        close = difflib.get_close_matches(arch, known, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise KeyError(f"{hint}torchvision has no classification model {arch!r} ({len(known)} known, e.g. resnet18)")
    return type(f"Torchvision_{arch}", (TorchvisionExits,), {"arch": arch, "__module__": __name__})
