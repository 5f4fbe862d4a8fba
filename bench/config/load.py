"""Reading a suite file: TOML, ``--set`` overrides, plugins, and every error at once (``bench validate``)."""

from __future__ import annotations

import copy
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.config import plugins

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

from bench.config.suite import Suite, SuiteError
from bench.config.validate import parse_suite


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``a.b.0.c`` in nested tables and lists; :class:`SuiteError` (``--set``) when the path does not fit."""
    parts = dotted.split(".")
    node: Any = data
    for i, p in enumerate(parts):
        where = ".".join(parts[: i + 1])
        last = i == len(parts) - 1
        if isinstance(node, list):
            if not p.isdigit() or int(p) >= len(node):
                raise SuiteError("--set", dotted, f"{'.'.join(parts[:i])} is a list of {len(node)}; "
                                 f"{p!r} is not an index of it (use KEY=[...] to replace the list)")  # fmt: skip
            if last:
                node[int(p)] = value
            else:
                node = node[int(p)]
        elif isinstance(node, dict):
            if last:
                node[p] = value
            else:
                node = node.setdefault(p, {})
        else:
            raise SuiteError("--set", dotted, f"{'.'.join(parts[:i])} is {node!r}, not a table; cannot set {where}")


def parse_override(text: str) -> tuple[str, Any]:
    """``"train.epochs=2"`` -> ("train.epochs", 2); the value is parsed as TOML (bare words as strings)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise SuiteError("--set", text, "expected KEY=VALUE, e.g. train.epochs=2 or suite.seeds=[0,1]")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return key.strip(), value


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``--set key=value`` overrides to raw TOML data; variants are addressed as ``variants.<name>.key``."""
    for text in overrides:
        key, value = parse_override(text)
        parts = key.split(".")
        if parts[0] == "variants" and len(parts) == 2 and not parts[1].isdigit():
            raise SuiteError("--set", key, "set a key of a variant, e.g. variants.NAME.epochs=3")
        if parts[0] == "variants" and len(parts) >= 3:
            names = [v.get("name") for v in data.get("variants", []) if isinstance(v, dict)]
            if parts[1] not in names:
                raise SuiteError("--set", key, f"no variant {parts[1]!r}; variants: {', '.join(map(str, names))}")
            variant = data["variants"][names.index(parts[1])]
            _set_dotted(variant, ".".join(parts[2:]), value)
        else:
            _set_dotted(data, key, value)
    return data


def load_suite(path: str | Path, overrides: Sequence[str] = (), imports: Sequence[str] = ()) -> Suite:
    """Read and validate a suite file; ``overrides`` are ``key=value`` strings validated like the file.

    ``imports`` (``--import``) and the suite's ``[suite] plugins`` are imported first (see
    :mod:`bench.config.plugins`); the suite records them, resolved, in ``suite.suite.plugins``.
    """
    path = Path(path)
    return parse_suite(_read_suite(path, overrides, imports), file=path)


def _read_suite(path: Path, overrides: Sequence[str], imports: Sequence[str]) -> dict[str, Any]:
    """The suite file's TOML with the overrides applied and the plugins imported (not yet validated)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SuiteError(path, "", "file not found") from None
    except IsADirectoryError:
        raise SuiteError(path, "", "is a folder; give a suite .toml file") from None
    except UnicodeDecodeError:
        raise SuiteError(path, "", "not a text file (a suite is a UTF-8 TOML file)") from None
    except OSError as e:
        raise SuiteError(path, "", f"cannot be read ({e.strerror})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SuiteError(path, "", f"not valid TOML: {e}") from None
    data = apply_overrides(data, overrides)
    suite_table = data.get("suite", {})
    if isinstance(suite_table, dict):
        listed = suite_table.get("plugins", [])
        if not isinstance(listed, list) or not all(isinstance(p, str) for p in listed):
            raise SuiteError(path, "suite.plugins", f"expected a list of file paths or module names, got {listed!r}")
        resolved = [plugins.resolve(p, path.parent) for p in listed]
        resolved += [plugins.resolve(p) for p in imports if plugins.resolve(p) not in resolved]
        for i, spec in enumerate(resolved):
            try:
                plugins.import_plugin(spec)
            except plugins.PluginError as e:
                where = f"suite.plugins[{i}]" if i < len(listed) else "--import"
                raise SuiteError(path, where, str(e)) from None
        suite_table["plugins"] = resolved
    return data


def suite_errors(path: str | Path, overrides: Sequence[str] = (), imports: Sequence[str] = (), *,
                 limit: int = 25) -> list[SuiteError]:  # fmt: skip
    """Every error of a suite, not only the first (``bench validate``): after each error the key it names
    is removed (its default applies) and validation goes on, until the suite validates, an error names no
    key that can be removed, or ``limit`` errors were found. An empty list: the suite is valid."""
    path = Path(path)
    try:
        data = _read_suite(path, overrides, imports)
    except SuiteError as e:
        return [e]
    errors: list[SuiteError] = []
    while len(errors) < limit:
        try:
            parse_suite(copy.deepcopy(data), file=path)
            return errors
        except SuiteError as e:
            errors.append(e)
            if not _remove_key(data, e.key):
                return errors
    return errors


_VARIANT = re.compile(r"^variants\[(\d+)\](?: \([^)]*\))?(?: with \{.*?\})?")


_INDEX = re.compile(r"^(.*)\[(\d+)\]$")


def _remove_key(data: dict[str, Any], key: str) -> bool:
    """Delete the entry a :class:`SuiteError` key names (``train.lr``, ``variants[1] (x).sweep.a.b``,
    ``evaluation.thresholds[2]``); False when it names nothing that can be deleted."""
    node: Any = data
    m = _VARIANT.match(key)
    if m:
        variants = data.get("variants")
        if not isinstance(variants, list) or int(m.group(1)) >= len(variants):
            return False
        node, key = variants[int(m.group(1))], key[m.end() :].lstrip(".")
        if not key:
            del variants[int(m.group(1))]
            return True
    parts = key.split(".") if key else []
    while parts and isinstance(node, dict):
        for j in range(len(parts), 0, -1):  # dotted keys inside a table ("loss_options.lambda" in a sweep)
            name = ".".join(parts[:j])
            idx = _INDEX.match(name)
            if idx and isinstance(node.get(idx.group(1)), list) and int(idx.group(2)) < len(node[idx.group(1)]):
                if j == len(parts):
                    del node[idx.group(1)][int(idx.group(2))]
                    return True
                node, parts = node[idx.group(1)][int(idx.group(2))], parts[j:]
                break
            if name in node:
                if j == len(parts):
                    del node[name]
                    return True
                node, parts = node[name], parts[j:]
                break
        else:
            return False
    return False
