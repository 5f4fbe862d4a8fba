"""Every module of cascade/ and bench/ has its tests named in tests/modules.toml, and the map stays honest: each
module is listed once, each listed test file exists and loads the module (imports it, or imports what imports it,
``"module:attr"`` registrations included), and no entry names a module that is gone."""

from __future__ import annotations

import ast
import re
import sys
from functools import cache
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("cascade", "bench")
MAP = REPO / "tests" / "modules.toml"
#: a lazy registration ("bench.commands.run:main", "cascade.ort:ONNX_RUNTIME") loads its module on use
LAZY = re.compile(r"^((?:bench|cascade)(?:\.\w+)+):\w+$")


def project_modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((REPO / pkg).rglob("*.py")):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imports_of(path: Path, name: str, known: set[str]) -> set[str]:
    """The project modules ``path`` (module ``name``) loads directly: its imports (in functions too), their parent
    packages, and the modules its lazy registrations name."""
    found: set[str] = set()
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = ".".join([*package[: len(package) - node.level + 1], node.module or ""]) if node.level else ""
            module = (base.strip(".") if node.level else node.module) or ""
            found.add(module)
            found.update(f"{module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and (m := LAZY.match(node.value)):
            found.add(m.group(1))
    loaded = set()
    for module in found:
        parts = module.split(".")
        loaded.update(".".join(parts[:i]) for i in range(1, len(parts) + 1) if ".".join(parts[:i]) in known)
    return loaded


@cache
def graph() -> dict[str, frozenset[str]]:
    modules = project_modules()
    known = set(modules)
    return {name: frozenset(imports_of(path, name, known)) for name, path in modules.items()}


def reached(test: Path) -> set[str]:
    """Every project module a test file loads, directly or through the modules it loads."""
    edges = graph()
    todo = list(imports_of(test, "tests." + test.stem, set(edges)))
    seen: set[str] = set()
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo.extend(edges[module])
    return seen


def test_every_module_has_tests_that_load_it() -> None:
    entries = tomllib.loads(MAP.read_text())["modules"]
    modules = project_modules()
    assert sorted(set(modules) - set(entries)) == [], "modules without an entry in tests/modules.toml"
    assert sorted(set(entries) - set(modules)) == [], "entries for modules that are gone"
    wrong = []
    for module, tests in entries.items():
        assert tests, f"{module}: name its tests"
        for test in tests:
            path = REPO / "tests" / test
            assert path.is_file(), f"{module}: {test} does not exist"
            if module not in reached(path):
                wrong.append(f"{module}: {test} does not load it")
    assert wrong == []


def test_the_closure_follows_imports_and_registrations() -> None:
    """By hand: bench.cli names its commands as "module:attr" strings; the closure follows them."""
    edges = graph()
    assert "bench.commands.folder" in edges["bench.cli"]
    assert "cascade.ort" in edges["bench.config.engines"]  # the runtime registered as "cascade.ort:ONNX_RUNTIME"
    assert "cascade" in edges["cascade.exits"]  # a module loads its parent package
