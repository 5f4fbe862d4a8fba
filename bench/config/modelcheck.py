"""A model check remembered per class, exits and options within a process (suite validation)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cascade._registry import UnknownNameError

#: what MultiExitModel.check said of a model class, exits and options already checked in this process (None: fine):
#: a suite checks every variant's exits one prefix at a time and its variants share models, so the same model
#: was built on the meta device dozens of times per validation (methods_fashion: 45 ResNet-20s, 3 s)
_CHECKED: dict[tuple[Any, ...], Exception | None] = {}


def check_model(model_cls: Any, exits: Sequence[Any], options: dict[str, Any]) -> None:
    """``model_cls.check(exits=..., **options)``, remembered per class, exits and options (their repr)."""
    key = (model_cls, tuple(map(repr, exits)), repr(sorted(options.items(), key=lambda kv: kv[0])))
    if key not in _CHECKED:
        if len(_CHECKED) > 4096:  # a long fuzzing session
            _CHECKED.clear()
        try:
            model_cls.check(exits=exits, **options)
            _CHECKED[key] = None
        except (TypeError, ValueError, UnknownNameError) as e:
            _CHECKED[key] = e
    failure = _CHECKED[key]
    if failure is not None:
        raise failure.with_traceback(None)
