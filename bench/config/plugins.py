"""User code that registers models, losses, datasets, heads or executors: ``bench run --import FILE``
or ``[suite] plugins = ["mymodels.py"]``.

A plugin is a Python file (a path, relative to the suite file when given in the suite) or an
importable module name. It is imported once per process before the suite is validated, so what
it registers is known by name in TOML; every run imports it again in its own process (pool,
Dask or Slurm workers), so remote executors see the same registries.

A results folder is data, never code: commands that read one (``report``, ``compare``, ``export``, ``claims``,
...) never import a plugin its ``suite.toml`` or its run files name. The user passes the code with ``--import
PATH``, or allows the folder's own list with ``--trust-plugins``; either is printed (:class:`FolderTrust`).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cascade._registry import rollback_on_error


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
            with rollback_on_error():
                importlib.import_module(spec)
        except KeyboardInterrupt:
            raise
        except ImportError as e:
            raise PluginError(f"plugin {spec!r}: cannot import it ({e})") from None
        except BaseException as e:  # SystemExit and any error while the module runs
            raise PluginError(f"plugin {spec!r}: importing it failed ({type(e).__name__}: {e})") from None
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
        with rollback_on_error():
            module_spec.loader.exec_module(module)
    except KeyboardInterrupt:
        del sys.modules[name]
        raise
    except BaseException as e:  # SystemExit too: a plugin that calls sys.exit() is named, not obeyed
        del sys.modules[name]
        raise PluginError(f"plugin {spec}: importing it failed ({type(e).__name__}: {e})") from None


def import_plugins(specs: Sequence[str]) -> None:
    for spec in specs:
        import_plugin(spec)


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)


@dataclass(frozen=True)
class FolderTrust:
    """What code a command that reads a results folder may import (the folder itself never decides)."""

    imports: tuple[str, ...] = ()  # --import: files or modules the user named, imported as given
    trust_plugins: bool = False  # --trust-plugins: import the plugins the folder's suite names
    log: Callable[[str], None] = _stderr  # where each import is announced

    def import_user_code(self) -> list[str]:
        """Import the ``--import`` files and modules (resolved against the working folder); announced."""
        done = []
        for spec in self.imports:
            resolved = resolve(spec)
            import_plugin(resolved)
            self.log(f"imported {resolved} (--import)")
            done.append(resolved)
        return done

    def import_folder_plugins(self, specs: Sequence[str], folder: Path) -> list[str]:
        """Import a folder's own plugins (``specs``: the paths its run files recorded, or its suite's list
        resolved against ``folder``), each announced; only under ``--trust-plugins``."""
        assert self.trust_plugins
        done = []
        for spec in specs:
            resolved = resolve(spec, folder)
            import_plugin(resolved)
            self.log(f"imported {resolved}, named by {folder} (--trust-plugins)")
            done.append(resolved)
        return done


#: The default of every command that reads a folder: no code from it.
NO_TRUST = FolderTrust()
