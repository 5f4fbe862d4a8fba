"""Reading a suite file: TOML, ``--set`` overrides, plugins, and every error at once (``bench validate``)."""

from __future__ import annotations

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
                raise SuiteError(
                    "--set",
                    dotted,
                    f"{'.'.join(parts[:i])} is a list of {len(node)}; "
                    f"{p!r} is not an index of it (use KEY=[...] to replace the list)",
                )
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
    return parse_suite(read_suite_data(path, overrides, imports), file=path)


def read_suite_data(path: Path, overrides: Sequence[str], imports: Sequence[str]) -> dict[str, Any]:
    """The suite file's TOML with the overrides applied and the plugins imported (not yet validated)."""
    data = apply_overrides(_read_toml(path), overrides)
    listed = _listed_plugins(path, data)
    resolved = [plugins.resolve(p, path.parent) for p in listed]
    resolved += [plugins.resolve(p) for p in imports if plugins.resolve(p) not in resolved]
    for i, spec in enumerate(resolved):
        try:
            plugins.import_plugin(spec)
        except plugins.PluginError as e:
            where = f"suite.plugins[{i}]" if i < len(listed) else "--import"
            raise SuiteError(path, where, str(e)) from None
    if isinstance(data.get("suite"), dict):
        data["suite"]["plugins"] = resolved
    return data


def _listed_plugins(path: Path, data: dict[str, Any]) -> list[str]:
    """The ``[suite] plugins`` list (empty without one)."""
    suite_table = data.get("suite", {})
    if not isinstance(suite_table, dict):
        return []
    listed = suite_table.get("plugins", [])
    if not isinstance(listed, list) or not all(isinstance(p, str) for p in listed):
        raise SuiteError(path, "suite.plugins", f"expected a list of file paths or module names, got {listed!r}")
    return listed


class FolderCodeError(SuiteError):
    """A results folder whose suite needs code the user has not allowed (or whose allowed code fails to import)."""


def load_folder_suite(
    folder: Path,
    overrides: Sequence[str] = (),
    trust: plugins.FolderTrust = plugins.NO_TRUST,
    recorded: Sequence[str] = (),
) -> Suite:
    """The suite a results folder was run with (``folder/suite.toml`` and the overrides its runs recorded), read
    as data: no plugin it or its run files name is imported unless ``trust`` allows it (see
    :mod:`bench.config.plugins`). ``recorded``: the plugin paths its run files recorded (resolved against the
    suite file that named them when the runs were made).

    Raises:
        FolderCodeError: the suite names plugins and the user passed neither ``--import`` nor ``--trust-plugins``,
            or an allowed plugin fails to import.
        SuiteError: the suite does not validate.
    """
    path = folder / "suite.toml"
    data = apply_overrides(_read_toml(path), overrides)
    listed = _listed_plugins(path, data)
    wanted = list(recorded) or listed
    try:
        imported = trust.import_user_code()
        if listed and trust.trust_plugins:
            imported += trust.import_folder_plugins(wanted, folder)
    except plugins.PluginError as e:
        raise FolderCodeError(path, "suite.plugins", str(e)) from None
    if listed and not imported:
        raise FolderCodeError(
            path,
            "suite.plugins",
            f"the folder's suite names plugin(s) {', '.join(map(repr, wanted))}; commands "
            "that read a results folder import no code from it: read that code, then pass it with --import PATH "
            "(or --trust-plugins to import what the folder names; each import is printed)",
        )
    if isinstance(data.get("suite"), dict):
        data["suite"]["plugins"] = imported
    return parse_suite(data, file=path)


def _read_toml(path: Path) -> dict[str, Any]:
    """A TOML file's data; :class:`SuiteError` naming the file when it cannot be read or parsed."""
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
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SuiteError(path, "", f"not valid TOML: {e}") from None
