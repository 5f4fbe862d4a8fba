"""Run files of older schemas, upgraded on load: one named function per version step.

A run file records ``schema``; :func:`upgrade` applies ``MIGRATIONS[v]`` for v = schema ..
``SCHEMA_VERSION - 1`` to its JSON before it is parsed, so every reader sees the current schema
while the committed run files stay as they were written (their keys and summaries unchanged).
A file of a newer schema than this code, or of no known schema, is refused with the remedy.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from bench.results.errors import StoreError

SCHEMA_VERSION = 2


def v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    """Schema 2 names the runtime of every latency entry: schema-1 files named only the runtimes other
    than eager (``"runtime"`` absent meant eager), so each entry without one gets ``"runtime": "eager"``."""
    latency = data.get("latency")
    if isinstance(latency, dict):
        for part in ("exit_paths", "cascade"):
            for entry in latency.get(part) or []:
                if isinstance(entry, dict):
                    entry.setdefault("runtime", "eager")
    data["schema"] = 2
    return data


#: schema v -> the function that turns a schema-v run file into schema v + 1
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: v1_to_v2}


def upgrade(data: dict[str, Any], where: str = "run record") -> dict[str, Any]:
    """``data`` (a run file's JSON) upgraded to :data:`SCHEMA_VERSION` (a copy; ``data`` is not changed)."""
    version = data.get("schema")
    if version == SCHEMA_VERSION:
        return data
    if not isinstance(version, int) or version not in MIGRATIONS:
        newer = isinstance(version, int) and version > SCHEMA_VERSION
        hint = "written by a newer cascade-bench; upgrade it" if newer else "rerun to replace it"
        raise StoreError(
            f"{where}: schema {version!r} is not one this code reads "
            f"({', '.join(map(str, [*MIGRATIONS, SCHEMA_VERSION]))}); {hint}"
        )
    data = copy.deepcopy(data)
    while data["schema"] != SCHEMA_VERSION:
        data = MIGRATIONS[data["schema"]](data)
    return data
