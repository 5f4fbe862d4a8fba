"""Run keys that survive new settings: the one rule for which settings dataclass fields enter a key.

A run key is a hash of the settings that decide a result. When a setting is added after results
exist, the results made before it must keep their keys, so a field declared with :func:`added_later`
enters a key only when it differs from its default (the default is stated once, in the field).
A field declared with :func:`unkeyed` never enters a key (where the data lives, how often to log).

``key_fields(spec)`` applies both; the train settings (:class:`cascade.training.TrainConfig`), the
dataset (``bench.config.schema.DatasetSpec``) and the evaluation settings use it alike.
"""

from __future__ import annotations

import dataclasses
from typing import Any

_KEY = "key"  # field metadata: "later" (left out at its default) or "never"


def added_later(default: Any, **metadata: Any) -> Any:
    """A dataclass field added after results existed: it enters a run key only when not ``default``."""
    return dataclasses.field(default=default, metadata={_KEY: "later", **metadata})


def unkeyed(default: Any, **metadata: Any) -> Any:
    """A dataclass field that never enters a run key."""
    return dataclasses.field(default=default, metadata={_KEY: "never", **metadata})


def is_unkeyed(f: dataclasses.Field[Any]) -> bool:
    return f.metadata.get(_KEY) == "never"


def field_default(f: dataclasses.Field[Any]) -> Any:
    """A field's default value (from ``default_factory`` when it has one)."""
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def key_fields(spec: Any, names: list[str] | None = None) -> dict[str, Any]:
    """The fields of the dataclass instance ``spec`` as they enter a run key: unkeyed fields left out,
    fields added later left out at their default. ``names`` restricts the result to those fields."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(spec):
        if is_unkeyed(f) or (names is not None and f.name not in names):
            continue
        value = getattr(spec, f.name)
        if f.metadata.get(_KEY) == "later" and value == field_default(f):
            continue
        is_instance = dataclasses.is_dataclass(value) and not isinstance(value, type)
        out[f.name] = dataclasses.asdict(value) if is_instance else value
    return out
