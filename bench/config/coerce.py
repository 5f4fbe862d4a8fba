"""Typed values of a suite's TOML: each value checked against its dataclass field's type, unknown keys with a
"did you mean", ranges and registered names, every error a :class:`SuiteError` naming the file, the key and what
is allowed."""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Sequence
from typing import Any, Literal, Union

from bench.config.engines import EXECUTORS, RUNTIMES
from bench.config.suite import SuiteError
from bench.results.typed import type_name
from cascade._registry import UnknownNameError


def type_name_toml(tp: Any) -> str:
    return type_name(tp, mapping="a table")


def coerce(value: Any, tp: Any, file: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        for a in args:
            try:
                return coerce(value, a, file, key)
            except SuiteError:
                continue  # try the next member of the union; the message below names them all
        raise SuiteError(file, key, f"expected {type_name_toml(tp)}, got {value!r}")
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise SuiteError(file, key, f"{value!r} is not allowed; allowed: {', '.join(map(repr, allowed))}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, list):
            raise SuiteError(file, key, f"expected {type_name_toml(tp)}, got {value!r}")
        (item,) = typing.get_args(tp)[:1]
        items = [coerce(v, item, file, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise SuiteError(file, key, f"expected a table, got {value!r}")
        return dict(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SuiteError(file, key, f"expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise SuiteError(file, key, f"expected an integer, got {value!r}")
        return value
    if tp in (bool, str):
        if not isinstance(value, tp):
            raise SuiteError(file, key, f"expected {type_name_toml(tp)}, got {value!r}")
        return value
    raise TypeError(f"unsupported type {tp}")  # pragma: no cover - programming error


def unknown_key(file: Any, key: str, name: str, allowed: Sequence[str]) -> SuiteError:
    close = difflib.get_close_matches(name, list(allowed), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return SuiteError(file, key, f"unknown key{hint}; allowed: {', '.join(allowed)}")


def build_table(cls: type, data: Any, file: Any, prefix: str, *, extra_ok: Sequence[str] = ()) -> Any:
    """Build dataclass ``cls`` from a TOML table; unknown keys (not in ``extra_ok``) are errors."""
    if not isinstance(data, dict):
        raise SuiteError(file, prefix, f"expected a table, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init and f.name not in ("options",)]
    kwargs: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for k, v in data.items():
        key = f"{prefix}.{k}" if prefix else k
        if k in names:
            kwargs[k] = coerce(v, hints[k], file, key)
        elif k in extra_ok:
            extra[k] = v
        else:
            raise unknown_key(file, key, k, [*names, *extra_ok])
    if extra:
        kwargs["options"] = extra
    return cls(**kwargs)


def check_range(file: Any, key: str, ok: bool, allowed: str, value: Any) -> None:
    if not ok:
        raise SuiteError(file, key, f"{value!r} is out of range; allowed: {allowed}")


def apply_checks(file: Any, table: str, checks: Sequence[tuple[str, bool, str, Any]]) -> None:
    """Raise for the first declared check that fails: (key within ``table``, holds, what is allowed, value)."""
    for key, ok, allowed, value in checks:
        check_range(file, f"{table}.{key}", ok, allowed, value)


#: Appended to an unknown loss, policy, model or dataset name: how a user's own one becomes known.
PLUGIN_HINT = "your own: register it in a Python file and pass --import FILE, or list the file in [suite] plugins"


def check_name(file: Any, key: str, registry: Any, name: str) -> None:
    try:
        registry.get(name)
    except UnknownNameError as e:
        hint = f"; {PLUGIN_HINT}" if registry not in (EXECUTORS, RUNTIMES) else ""
        raise SuiteError(file, key, f"{e}{hint}") from None
