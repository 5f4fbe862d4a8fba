from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from .tiny import tiny_suite

torch.set_num_threads(min(2, os.cpu_count() or 1))

REPO = Path(__file__).resolve().parent.parent

# Tests are hermetic: no shared checkpoint cache unless a test gives one (subprocesses inherit this).
os.environ["CASCADE_CHECKPOINT_CACHE"] = "off"
# The roofline micro-benchmark (seconds per runtime) is measured once per test session, not read from the user's
# cache; pytest-xdist's workers of one session (`make test`) share one folder, named by the session's id.
_session = os.environ.get("PYTEST_XDIST_TESTRUNUID")
if _session:
    _roofline = Path(tempfile.gettempdir()) / f"cascade-roofline-{_session}"
    _roofline.mkdir(exist_ok=True)
    os.environ["CASCADE_ROOFLINE_CACHE"] = str(_roofline)
else:
    os.environ["CASCADE_ROOFLINE_CACHE"] = tempfile.mkdtemp(prefix="cascade-roofline-")


def mnist_root() -> Path | None:
    """The MNIST folder CI points at (``$CASCADE_DATA_DIR``), if it holds the raw files."""
    env = os.environ.get("CASCADE_DATA_DIR")
    if env and (Path(env) / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file():
        return Path(env)
    return None


@pytest.fixture(scope="session")
def digits():
    from cascade import load_dataset

    return load_dataset("digits")


needs_mnist = pytest.mark.skipif(mnist_root() is None, reason="CASCADE_DATA_DIR does not hold MNIST/raw")


@pytest.fixture
def write_tiny(tmp_path: Path) -> Callable[..., Path]:
    """Writes the tiny suite with changes (:func:`tests.tiny.tiny_suite`'s keywords) and returns its path:
    ``write_tiny(suite={"seeds": [0]}, evaluation={"latency": False})``; ``name`` sets the file name."""

    def write(name: str = "tiny.toml", **changes: Any) -> Path:
        path = tmp_path / name
        path.write_text(tiny_suite(**changes))
        return path

    return write
