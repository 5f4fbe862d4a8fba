"""The per-user cache folder of cascade-bench: the one rule for where data, checkpoints and the
roofline's machine figures live when nothing else is said.

``$XDG_CACHE_HOME/cascade-bench/<folder>``, else ``~/.cache/cascade-bench/<folder>``; an environment
variable named by the caller overrides it (``off``, ``none``, ``0``, ``false`` or empty disable it).
"""

from __future__ import annotations

import os
from pathlib import Path

_OFF = ("", "off", "none", "0", "false")


def user_cache(folder: str = "", env_var: str | None = None) -> Path | None:
    """The cache folder ``folder`` (the cache root when empty); ``$env_var`` overrides it, and None means
    that variable switched the cache off."""
    if env_var is not None:
        env = os.environ.get(env_var)
        if env is not None:
            return None if env.strip().lower() in _OFF else Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "cascade-bench" / folder
