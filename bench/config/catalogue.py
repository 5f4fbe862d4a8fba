"""Everything a suite can name, with a line each: the losses, exit policies, models, exit heads, datasets, runtimes
and executors registered now (built in, or by a plugin imported first), their descriptions and the options a suite
sets for them (``bench names``; timm's ``list_models``)."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench.config.engines import EXECUTORS, RUNTIMES
from cascade import DATASETS, HEADS, LOSSES, MODELS, POLICIES

#: what each registry holds, in the order ``bench names`` lists them
KINDS = ("loss", "policy", "model", "head", "dataset", "runtime", "executor")
#: options the harness fills in, never a suite
HARNESS_PARAMETERS = {"exits", "num_classes", "in_channels", "input_size", "shape", "root", "download"}


@dataclass(frozen=True)
class Entry:
    kind: str
    name: str
    description: str
    options: tuple[str, ...]  # "name=default" as a suite would spell it


def first_line(obj: Any, limit: int = 110) -> str:
    """The first sentence of an object's docstring, at most ``limit`` characters (a dataclass's generated signature
    does not count)."""
    doc = inspect.getdoc(obj) or ""
    line = doc.split("\n\n")[0].replace("\n", " ").strip()
    if line.startswith(getattr(obj, "__name__", "\0") + "("):
        return ""
    head, stop, _ = line.partition(". ")
    line = head.split("; ")[0] + ("." if stop and "; " not in head else "")
    return line if len(line) <= limit else line[: limit - 1].rsplit(" ", 1)[0] + "…"


def _default(value: Any) -> str:
    return repr(value) if not isinstance(value, tuple) else repr(list(value))


def _fields(cls: type, skip: tuple[str, ...] = ()) -> tuple[str, ...]:
    """A dataclass's settable fields with their defaults, under their TOML names (a loss's ``aliases``)."""
    toml = {field: name for name, field in getattr(cls, "aliases", {}).items()}
    out = []
    for f in dataclasses.fields(cls):
        if f.name in skip or not f.init:
            continue
        default = f.default if f.default is not dataclasses.MISSING else "..."
        out.append(f"{toml.get(f.name, f.name)}={_default(default)}")
    return tuple(out)


def _parameters(fn: Callable[..., Any]) -> tuple[str, ...]:
    """A builder's keyword options with their defaults (what the harness passes itself left out)."""
    out = []
    for p in inspect.signature(fn).parameters.values():
        if p.kind not in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) or p.name in HARNESS_PARAMETERS:
            continue
        default = p.default if p.default is not p.empty else "..."
        out.append(f"{p.name}={_default(default)}")
    return tuple(out)


def _losses() -> list[Entry]:
    return [Entry("loss", n, first_line(LOSSES.get(n)), _fields(LOSSES.get(n))) for n in LOSSES.names()]


def _policies() -> list[Entry]:
    out = []
    for n in POLICIES.names():
        cls = POLICIES.get(n)
        out.append(Entry("policy", n, first_line(cls), _fields(cls, cls.harness_options)))
    return out


def _models() -> list[Entry]:
    out = [Entry("model", n, first_line(MODELS.get(n)), _parameters(MODELS.get(n))) for n in MODELS.names()]
    out.append(
        Entry("model", "torchvision:<name>", "any torchvision classification model, exits after its modules", ())
    )
    return out


def _heads() -> list[Entry]:
    return [Entry("head", n, first_line(HEADS.get(n)), _parameters(HEADS.get(n))) for n in HEADS.names()]


def _datasets() -> list[Entry]:
    out = []
    for n in DATASETS.names():
        builder = DATASETS.get(n).builder
        out.append(Entry("dataset", n, first_line(builder), _parameters(builder)))
    return out


def _runtimes() -> list[Entry]:
    out = []
    for n in RUNTIMES.names():
        runtime = RUNTIMES.get(n).load()
        out.append(Entry("runtime", n, f"{runtime.label}: {runtime.description}", ()))
    return out


def _executors() -> list[Entry]:
    out = []
    for n in EXECUTORS.names():
        entry = EXECUTORS.get(n)
        options = tuple(f"{o.name}={_default(o.default)}" for o in entry.options)
        jobs = ("jobs=1",) if entry.uses_jobs else ()
        out.append(Entry("executor", n, EXECUTOR_LINES.get(n, ""), jobs + options))
    return out


EXECUTOR_LINES = {
    "local": "processes on this machine (--jobs of them; 1: in this process)",
    "slurm": "one Slurm job per run, through submitit",
    "dask": "a Dask cluster (a LocalCluster unless an address is given)",
}

LISTERS: dict[str, Callable[[], list[Entry]]] = {
    "loss": _losses,
    "policy": _policies,
    "model": _models,
    "head": _heads,
    "dataset": _datasets,
    "runtime": _runtimes,
    "executor": _executors,
}


def catalogue(kinds: tuple[str, ...] = KINDS) -> list[Entry]:
    """Every registered name of ``kinds``, in :data:`KINDS` order, names sorted within a kind."""
    unknown = [k for k in kinds if k not in LISTERS]
    if unknown:
        raise ValueError(f"unknown kind(s) {', '.join(unknown)}; known: {', '.join(KINDS)}")
    return [entry for kind in KINDS if kind in kinds for entry in LISTERS[kind]()]
