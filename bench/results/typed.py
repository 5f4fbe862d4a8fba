"""Typed reading of data that comes from elsewhere: run files, baselines, claims files, export manifests.

Every such file is read through :func:`load_typed` into a dataclass, field by field, against the field's type
hint. A value of the wrong type is a :class:`TypedDataError` that names the file, the field path and what was
expected (``runs/base/ab12.json: thresholds[0].accuracy: expected a number, got 'high'``), never a traceback
deeper in the code and never a NaN passing as a number. The rules:

* ``float``: an int or a float, finite (NaN and infinities are refused; JSON writes them as bare words);
* ``int``: an integer (``true`` is not 1); ``bool``: ``true`` or ``false`` (a string is not a bool);
* ``str``: a string; ``Literal[...]``: one of its values;
* ``list[T]`` and ``tuple[T, ...]``: a list, each item a ``T``; ``dict[str, T]``: an object, each value a ``T``;
* ``X | None``: null or an ``X``; a dataclass: an object (keys the class does not declare are ignored, so a
  newer writer's additions do not break an older reader); ``Any``: anything JSON holds.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import types
import typing
from typing import Any, Literal, TypeVar, Union

from bench.results.errors import StoreError

T = TypeVar("T")


class TypedDataError(StoreError):
    """A value of the wrong type or range in a file read from elsewhere: the file, the field path, what is wrong."""

    def __init__(self, file: str, path: str, message: str) -> None:
        self.file, self.path, self.message = file, path, message
        super().__init__(f"{file}: {path}: {message}" if path else f"{file}: {message}")


def describe(value: Any) -> str:
    """A short, safe rendering of a bad value for an error message."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def load_typed(cls: type[T], data: Any, file: str, path: str = "") -> T:
    """Build dataclass ``cls`` from JSON-like ``data``, every field checked against its type hint.

    Raises:
        TypedDataError: a missing required field, or a value of the wrong type, naming ``file`` and the field path.
    """
    if not isinstance(data, dict):
        raise TypedDataError(file, path, f"expected an object, got {describe(data)}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]  # cls is a dataclass by contract
        where = _join(path, f.name)
        if f.name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise TypedDataError(file, where, "missing")
            continue
        kwargs[f.name] = convert(hints[f.name], data[f.name], file, where)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:  # a dataclass's own __post_init__ check
        raise TypedDataError(file, path, str(e)) from None


def convert(tp: Any, value: Any, file: str, path: str) -> Any:
    """``value`` checked (and, for dataclasses, built) as type ``tp``; :class:`TypedDataError` otherwise."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        return _union(tp, value, file, path)
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed or isinstance(value, bool) != any(isinstance(a, bool) for a in allowed):
            raise TypedDataError(file, path, f"expected one of {', '.join(map(repr, allowed))}, got {describe(value)}")
        return value
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return load_typed(tp, value, file, path)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise TypedDataError(file, path, f"expected a list, got {describe(value)}")
        item = typing.get_args(tp)[0] if typing.get_args(tp) else Any
        items = [convert(item, v, file, f"{path}[{i}]") for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict:
        if not isinstance(value, dict):
            raise TypedDataError(file, path, f"expected an object, got {describe(value)}")
        key_t, value_t = typing.get_args(tp) or (str, Any)
        if key_t is str and not all(isinstance(k, str) for k in value):
            raise TypedDataError(file, path, "expected an object with string keys")
        return {k: convert(value_t, v, file, _join(path, str(k))) for k, v in value.items()}
    return _scalar(tp, value, file, path)


def _union(tp: Any, value: Any, file: str, path: str) -> Any:
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if value is None:
        if len(args) < len(typing.get_args(tp)):
            return None
        raise TypedDataError(file, path, f"expected {type_name(tp)}, got null")
    errors = []
    for a in args:
        try:
            return convert(a, value, file, path)
        except TypedDataError as e:
            errors.append((a, e))
    same_kind = [e for a, e in errors if _kind(a) == _kind_of(value)]
    if len(same_kind) == 1:  # a number that is not finite, say: that member's own message is the precise one
        raise same_kind[0]
    raise TypedDataError(file, path, f"expected {type_name(tp)}, got {describe(value)}")


def _kind(tp: Any) -> str:
    """The JSON kind a type hint takes: number, string, bool, list, object or other."""
    origin = typing.get_origin(tp)
    if tp in (int, float):
        return "number"
    if tp is str or origin is Literal:
        return "string"
    if tp is bool:
        return "bool"
    if origin in (list, tuple):
        return "list"
    if origin is dict or (isinstance(tp, type) and dataclasses.is_dataclass(tp)):
        return "object"
    return "other"


def _kind_of(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, numbers.Real):
        return "number"
    kinds: dict[type, str] = {str: "string", list: "list", tuple: "list", dict: "object"}
    return kinds.get(type(value), "other")


def _scalar(tp: Any, value: Any, file: str, path: str) -> Any:
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypedDataError(file, path, f"expected a number, got {describe(value)}")
        if not math.isfinite(value):
            raise TypedDataError(file, path, f"expected a finite number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise TypedDataError(file, path, f"expected an integer, got {describe(value)}")
        return int(value)
    if tp is bool or tp is str:
        if not isinstance(value, tp):
            raise TypedDataError(file, path, f"expected {type_name(tp)}, got {describe(value)}")
        return value
    raise TypeError(f"{path}: no typed reading for {tp!r}")  # pragma: no cover - a programming error


def type_name(tp: Any, mapping: str = "an object") -> str:
    """How a type hint reads in an error message (``mapping``: what a dict is called, "a table" in TOML)."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(type_name(a, mapping) for a in typing.get_args(tp))
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (list, tuple):
        args = typing.get_args(tp)
        return f"a list of {type_name(args[0], mapping) if args else 'values'}"
    if origin is dict or tp is dict or (isinstance(tp, type) and dataclasses.is_dataclass(tp)):
        return mapping
    names = {int: "an integer", float: "a number", bool: "true/false", str: "a string", type(None): "null"}
    return names.get(tp, str(tp))
