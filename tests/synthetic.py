"""Small synthetic datasets in the published on-disk formats, written by the tests (no network)."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
from PIL import Image


def write_idx(path: Path, array: np.ndarray, *, gz: bool = False) -> Path:
    """An IDX file (MNIST's format) of a uint8 array; ``gz`` writes ``path.gz`` instead."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


def write_mnist(root: Path, *, n_train: int = 60, n_test: int = 20, gz: bool = False, folder: str = "MNIST") -> None:
    rng = np.random.default_rng(0)
    raw = root / folder / "raw"
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = np.arange(n) % 10
        images = rng.integers(0, 40, (n, 28, 28)) + (labels[:, None, None] * 20)  # class-dependent brightness
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images, gz=gz)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels, gz=gz)


def write_cifar10(root: Path, *, per_batch: int = 20, n_test: int = 20, classes: int = 10) -> Path:
    """``cifar-10-batches-py`` with five training batches and a test batch of class-coloured noise."""
    rng = np.random.default_rng(0)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)

    def batch(n: int, offset: int) -> dict:
        labels = [(offset + i) % classes for i in range(n)]
        images = rng.integers(0, 60, (n, 3, 32, 32)) + np.array(labels)[:, None, None, None] * 19
        return {"data": images.reshape(n, -1).astype(np.uint8), "labels": labels}

    for i in range(1, 6):
        (folder / f"data_batch_{i}").write_bytes(pickle.dumps(batch(per_batch, i)))
    (folder / "test_batch").write_bytes(pickle.dumps(batch(n_test, 0)))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [str(c) for c in range(classes)]}))
    return folder


def write_imagefolder(root: Path, *, classes: int = 3, per_class: int = 8, size: int = 12, split: bool = True) -> Path:
    """PNG images in ``root/{train,test}/<class>/`` (or ``root/<class>/`` without ``split``)."""
    rng = np.random.default_rng(0)
    for part, n in (("train", per_class), ("test", per_class // 2)) if split else (("", per_class),):
        for c in range(classes):
            folder = root / part / f"class_{c}" if part else root / f"class_{c}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                pixels = (rng.integers(0, 50, (size, size, 3)) + c * 80).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return root
