"""User code that registers models, losses, datasets, heads or executors: ``bench run --import FILE``
or ``[suite] plugins = ["mymodels.py"]``.

A plugin is a Python file (a path, relative to the suite file when given in the suite) or an
importable module name. It is imported once per process before the suite is validated, so what
it registers is known by name in TOML; every run imports it again in its own process (pool,
Dask or Slurm workers), so remote executors see the same registries.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path


class PluginError(ImportError):
    """A plugin that cannot be found or imported."""


def resolve(spec: str, base: Path | None = None) -> str:
    """A plugin's canonical form: the absolute path of a ``.py`` file, or the module name as given."""
    if spec.endswith(".py") or "/" in spec:
        path = Path(spec).expanduser()
        if not path.is_absolute() and base is not None:
            path = base / path
        return str(path.resolve())
    return spec


def import_plugin(spec: str) -> None:
    """Import one plugin (a resolved path or a module name); a second import is a no-op."""
    if not spec.endswith(".py"):
        try:
            importlib.import_module(spec)
        except ImportError as e:
            raise PluginError(f"plugin {spec!r}: cannot import it ({e})") from None
        return
    path = Path(spec)
    name = f"cascade_plugin_{path.stem}_{hashlib.sha256(spec.encode()).hexdigest()[:8]}"
    if name in sys.modules:
        return
    if not path.is_file():
        raise PluginError(f"plugin {spec}: no such file")
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise PluginError(f"plugin {spec}: not a Python file")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    try:
        module_spec.loader.exec_module(module)
    except Exception as e:
        del sys.modules[name]
        raise PluginError(f"plugin {spec}: importing it failed ({type(e).__name__}: {e})") from e


def import_plugins(specs: Sequence[str]) -> None:
    for spec in specs:
        import_plugin(spec)
