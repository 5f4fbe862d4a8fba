"""The wheel installs the harness: every data file the code reads is in it, and an installed copy (not this
checkout) reads its energy tables, hardware descriptions and shipped claims files and answers ``--version``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import cascade

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("cascade", "bench")


def data_files() -> list[str]:
    """Every file of the packages that is not Python source (the files the code reads at run time)."""
    out = []
    for pkg in PACKAGES:
        for path in sorted((REPO / pkg).rglob("*")):
            if path.is_file() and path.suffix not in (".py", ".pyc") and "__pycache__" not in path.parts:
                out.append(path.relative_to(REPO).as_posix())
    return out


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("setuptools", reason="the [dev] extra installs setuptools to build the wheel offline")
    source, out = tmp_path_factory.mktemp("source"), tmp_path_factory.mktemp("wheel")
    for name in ("pyproject.toml", "README.md"):  # built from a copy: the build leaves nothing in the checkout
        shutil.copy(REPO / name, source / name)
    for pkg in PACKAGES:
        shutil.copytree(REPO / pkg, source / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation", "-q", "-w", str(out)],
        check=True,
        capture_output=True,
        cwd=out,
    )
    (built,) = out.glob("cascade_bench-*.whl")
    return built


def test_the_wheel_holds_every_data_file(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = data_files()
    assert "bench/config/energy_tables/horowitz45.toml" in expected and "bench/verdicts/claims/study.toml" in expected
    assert [f for f in expected if f not in names] == []
    assert wheel.name.startswith(f"cascade_bench-{cascade.__version__}-")


def test_an_installed_wheel_reads_its_data_and_names_its_version(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
    )
    code = (
        "import bench, bench.config.tables as t, bench.verdicts.claimsfile as c;"
        f"assert bench.__file__.startswith({str(target)!r}), bench.__file__;"
        "print(sorted(p.stem for p in t.TABLE_DIR.glob('*.toml')), t.load_hardware('eyeriss').name,"
        " c.resolve('study').name)"
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["['eyeriss',", "'horowitz45']", "eyeriss", "study.toml"]
    version = subprocess.run(
        [sys.executable, "-m", "bench.cli", "--version"], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert version.stdout.strip() == f"bench (cascade-bench) {cascade.__version__}"
