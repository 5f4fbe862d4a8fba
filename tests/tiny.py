"""The tiny suite of the end-to-end tests, defined once: :data:`TINY` (digits, a 4-8-8 study CNN, one epoch; a run
takes a few seconds) and :func:`tiny_suite`, the same suite with tables changed (the ``write_tiny`` fixture of
tests/conftest.py writes it to a file)."""

from __future__ import annotations

import copy
import sys
from typing import Any

import tomli_w

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

TINY = """
[suite]
name = "tiny"
seeds = [0, 1]

[dataset]
name = "digits"
train_size = 300

[model]
channels = [4, 8, 8]
hidden = 16

[train]
epochs = 1
lr = 0.05
momentum = 0.9
log_every = 2

[evaluation]
thresholds = [0.0, 0.6, 1.0]
count_macs = "all"
latency_batch_sizes = [1, 32]
latency_samples = 4
latency_repeats = 1
latency_warmup = 0

[[variants]]
name = "base"
loss = "base"

[[variants]]
name = "firm-p2"
loss = "firm"
exits = ["p2"]
"""


#: the evaluation table's changes of a suite that times nothing and counts MACs by the default (no latency keys)
UNTIMED = {
    "latency": False,
    "count_macs": None,
    "latency_batch_sizes": None,
    "latency_samples": None,
    "latency_repeats": None,
    "latency_warmup": None,
}


def tiny_suite(*, variants: list[dict[str, Any]] | None = None, **tables: dict[str, Any] | None) -> str:
    """:data:`TINY` with changes, as TOML text: each keyword names a table whose keys it sets (a value None removes
    the key; the table None removes the table), ``variants`` replaces the variant list.

    ``tiny_suite(suite={"seeds": [0]}, evaluation={"latency": False}, variants=[{"name": "base", "loss": "base"}])``
    """
    data = copy.deepcopy(tomllib.loads(TINY))
    for table, changes in tables.items():
        if changes is None:
            data.pop(table, None)
            continue
        section = data.setdefault(table, {})
        for key, value in changes.items():
            if value is None:
                section.pop(key, None)
            else:
                section[key] = value
    if variants is not None:
        data["variants"] = variants
    return tomli_w.dumps(data)


def layered(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """Table changes on top of others (a test file's own suite on top of :data:`TINY`): per table, ``changes``'s keys
    over ``base``'s; a table given as None stays removed."""
    out = dict(base)
    for table, keys in changes.items():
        out[table] = None if keys is None else {**(out.get(table) or {}), **keys}
    return out


#: the runtime axis on the tiny suite: one variant, one seed, both runtimes timed briefly
RUNTIME_TABLES = {
    "suite": {"name": "rt", "seeds": [0]},
    "train": {"log_every": None},
    "evaluation": {
        "latency_samples": 8,
        "latency_warmup": 1,
        "count_macs": "none",
        "runtimes": ["eager", "onnxruntime"],
    },
}


def runtime_suite(**changes: Any) -> str:
    """The tiny suite with the runtime axis (:data:`RUNTIME_TABLES`) and ``changes`` on top, one variant (sum-p2)."""
    return tiny_suite(variants=[{"name": "sum-p2", "loss": "sum", "exits": ["p2"]}], **layered(RUNTIME_TABLES, changes))
