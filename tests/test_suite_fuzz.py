"""Fuzzed suites (hypothesis): every TOML input validates, or fails with a SuiteError that names a key.

Never a traceback, never a run file. Two sources of input: mutations of every shipped suite (a key
deleted, renamed or added, a value replaced by one of another type or range) and random documents
built from the suite's own table and key names. ``CASCADE_FUZZ_EXAMPLES`` sets the number of examples
per test (default 60 here; ``CASCADE_FUZZ_EXAMPLES=10000`` for the long run the docs describe).
"""

from __future__ import annotations

import copy
import datetime as dt
import math
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

hypothesis = pytest.importorskip("hypothesis")
tomli_w = pytest.importorskip("tomli_w")

from hypothesis import HealthCheck, assume, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from bench.config.load import load_suite  # noqa: E402
from bench.config.plan import expand_runs  # noqa: E402
from bench.config.suite import SuiteError  # noqa: E402
from bench.execute.runner import run_suite  # noqa: E402

from .conftest import REPO  # noqa: E402

EXAMPLES = int(os.environ.get("CASCADE_FUZZ_EXAMPLES", "60"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=EXAMPLES <= 100,  # CI: the same inputs every time; the long run explores
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)

SHIPPED = {p.name: tomllib.loads(p.read_text()) for p in sorted((REPO / "suites").glob("*.toml"))}


def _keys(obj: Any, out: set[str]) -> set[str]:
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.add(k)
            _keys(v, out)
    elif isinstance(obj, list):
        for v in obj:
            _keys(v, out)
    return out


KNOWN_KEYS = sorted(_keys(SHIPPED, set()) - set(SHIPPED))
TABLES = ["suite", "dataset", "model", "train", "evaluation", "report", "check", "budget", "executor"]
WORDS = [
    "base",
    "sum",
    "soft",
    "firm",
    "firm-gated",
    "p1",
    "p2",
    "p3",
    "final",
    "max-prob",
    "entropy",
    "patience",
    "digits",
    "mnist",
    "noisy_mnist",
    "study_cnn",
    "lenet",
    "cifar_resnet",
    "local",
    "dask",
    "slurm",
    "cpu",
    "cuda",
    "eyeriss",
    "fraction",
    "macs",
    "",
    "0",
    "-1",
    "nan",
    "1e400",
    "../x",
    "a b",
]

scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.integers(min_value=-3, max_value=300),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-2, max_value=2),
    st.text(max_size=10),
    st.sampled_from(WORDS),
    st.dates(min_value=dt.date(1970, 1, 1)),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(KNOWN_KEYS) | st.text(min_size=1, max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
keys = st.sampled_from(KNOWN_KEYS) | st.text(min_size=1, max_size=8)


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key or index path into ``obj``."""
    out = []
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else []
    for k, v in items:
        out.append((*prefix, k))
        out += _paths(v, (*prefix, k))
    return out


def _parent(doc: Any, path: tuple[Any, ...]) -> Any:
    for k in path[:-1]:
        doc = doc[k]
    return doc


def mutate(doc: dict[str, Any], data: Any) -> None:
    """One mutation at a random place: delete, replace with another value, rename, add a key."""
    paths = _paths(doc)
    if not paths:
        doc[data.draw(keys)] = data.draw(values)
        return
    path = data.draw(st.sampled_from(paths))
    parent, last = _parent(doc, path), path[-1]
    op = data.draw(st.sampled_from(["delete", "replace", "rename", "add", "replace_scalar"]))
    if op == "delete":
        del parent[last]
    elif op in ("replace", "replace_scalar"):
        parent[last] = data.draw(values if op == "replace" else scalars)
    elif op == "rename" and isinstance(parent, dict):
        parent[data.draw(keys)] = parent.pop(last)
    elif isinstance(parent, dict):
        parent[data.draw(keys)] = data.draw(values)
    else:
        parent.append(copy.deepcopy(parent[last]))


def check(doc: dict[str, Any]) -> None:
    """The property: validate (and plan) or a SuiteError naming a key; an invalid suite writes nothing."""
    try:
        text = tomli_w.dumps(doc)
    except (TypeError, ValueError):
        assume(False)  # not representable as TOML
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.toml"
        path.write_text(text)
        try:
            suite = load_suite(path)
            expand_runs(suite, ())
        except SuiteError as e:
            assert str(e).startswith(f"{path}: ") and len(str(e)) > len(str(path)) + 4, str(e)
            out = Path(tmp) / "out"
            with pytest.raises(SuiteError):
                run_suite(path, out_dir=out, progress=False, log=lambda s: None, checkpoint_cache=False)
            assert not out.exists()  # nothing written for an invalid suite


@FUZZ
@given(data=st.data())
def test_mutated_shipped_suites_validate_or_name_the_key(data: Any) -> None:
    name = data.draw(st.sampled_from(sorted(SHIPPED)))
    doc = copy.deepcopy(SHIPPED[name])
    for _ in range(data.draw(st.integers(min_value=1, max_value=3))):
        mutate(doc, data)
    check(doc)


@FUZZ
@given(
    doc=st.dictionaries(
        st.sampled_from(TABLES) | st.text(min_size=1, max_size=6),
        st.dictionaries(keys, values, max_size=5),
        max_size=5,
    ),
    variants=st.lists(
        st.dictionaries(st.sampled_from(["name", "loss", "exits", "policy", *KNOWN_KEYS]), values, max_size=5),
        max_size=3,
    ),
)
def test_random_documents_validate_or_name_the_key(doc: dict[str, Any], variants: list[dict[str, Any]]) -> None:
    if variants:
        doc["variants"] = variants
    check(doc)


def test_the_property_can_fail() -> None:
    """The check itself: a wrong type deep in a shipped suite is a SuiteError, a sound suite plans."""
    doc = copy.deepcopy(SHIPPED["smoke.toml"])
    check(doc)
    doc["train"]["epochs"] = math.inf
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "s.toml"
        path.write_text(tomli_w.dumps(doc))
        with pytest.raises(SuiteError, match=r"train\.epochs"):
            load_suite(path)


def test_a_huge_model_is_checked_without_allocating_it() -> None:
    """Found by the long fuzz run: a mutated model size made validation build the model for real and ask
    for exabytes (a RuntimeError from the allocator). The model is now built on the meta device (shapes
    only): a large one validates at once, an impossible one is a SuiteError naming the model."""
    doc = copy.deepcopy(SHIPPED["smoke.toml"])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "s.toml"
        doc["model"]["channels"] = [10**5, 10**5, 10**5]  # 10^11 weights per layer: 400 GB if allocated
        path.write_text(tomli_w.dumps(doc))
        assert load_suite(path).model.options["channels"] == [10**5] * 3
        doc["model"]["channels"] = [10**12, 10**12, 10**12]  # more elements than an int64 counts
        path.write_text(tomli_w.dumps(doc))
        with pytest.raises(SuiteError, match=r": model: the model cannot be built with these options"):
            load_suite(path)


def test_an_unknown_head_name_is_a_suite_error() -> None:
    """Found by the long fuzz run: ``[model] head = ""`` raised the heads registry's KeyError."""
    doc = copy.deepcopy(SHIPPED["cifar10_resnet.toml"])
    doc["model"]["head"] = ""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "s.toml"
        path.write_text(tomli_w.dumps(doc))
        with pytest.raises(SuiteError, match=r"model\.head: unknown exit head ''; known: conv-linear"):
            load_suite(path)
