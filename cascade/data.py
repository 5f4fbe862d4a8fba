"""Datasets as in-memory tensors with a validation split held out from training.

Registered datasets:

* ``mnist``, ``fashion_mnist``: torchvision's readers over the four IDX files.
* ``noisy_mnist``: MNIST plus Gaussian noise (std ``sigma``) and
  salt-and-pepper noise (a fraction ``salt_pepper`` of pixels, half set to 0,
  half to 1), clipped to [0, 1], drawn once from ``noise_seed`` so every model
  sees the same noisy images. Defaults sigma = 0.5, p = 0.2 on the [0, 1] scale.
* ``digits``: scikit-learn's bundled 8x8 digits, bilinearly upsampled to 28x28,
  with a fixed test split (20 %). Works offline.

The data root is the ``root`` argument, else ``$CASCADE_DATA_DIR``, else
``$XDG_CACHE_HOME/cascade-bench`` (``~/.cache/cascade-bench``). Missing files
are downloaded when ``download`` is true; when that fails (offline) a
:class:`DataNotFoundError` names the files and the folder to put them in.

Images are standardised with the mean and standard deviation of the training
part (after the validation split is removed). All transforms are batched
tensor operations; nothing runs per sample in Python.
"""

from __future__ import annotations

import hashlib
import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import torchvision

from cascade._registry import Registry

MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


class DataNotFoundError(FileNotFoundError):
    """The dataset's files are missing and could not be downloaded."""


@dataclass(frozen=True)
class Split:
    """One split: images (N, C, H, W) float32 standardised, labels (N,) int64."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def to(self, device: str | torch.device) -> Split:
        return Split(self.x.to(device), self.y.to(device))


@dataclass(frozen=True)
class DataSplits:
    """Train / validation / test splits of one dataset, plus what identifies it."""

    name: str
    train: Split
    val: Split
    test: Split
    num_classes: int
    identity: dict[str, Any] = field(default_factory=dict)  # name, options, fingerprint of the tensors

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train.x.shape[1:])

    def to(self, device: str | torch.device) -> DataSplits:
        return DataSplits(
            self.name, self.train.to(device), self.val.to(device), self.test.to(device), self.num_classes, self.identity
        )


@dataclass(frozen=True)
class RawData:
    """What a dataset builder returns: images in [0, 1] as (N, 1, H, W) float32."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int


DatasetBuilder = Callable[..., RawData]


@dataclass(frozen=True)
class DatasetEntry:
    """A registered dataset: its builder and what is known about it without loading it."""

    builder: DatasetBuilder  # (root=..., download=..., **options) -> RawData
    input_shape: tuple[int, ...] | Callable[..., tuple[int, ...]]  # (C, H, W), or a function of the options
    num_classes: int

    def shape(self, **options: Any) -> tuple[int, ...]:
        """Input shape (C, H, W) for these dataset options."""
        return tuple(self.input_shape(**options)) if callable(self.input_shape) else tuple(self.input_shape)

    def option_names(self) -> list[str]:
        """The builder's own keyword options (what a suite may set besides the common keys)."""
        return [p for p in inspect.signature(self.builder).parameters if p not in ("root", "download")]


DATASETS: Registry[DatasetEntry] = Registry("dataset")


def register_dataset(
    name: str, *, input_shape: tuple[int, ...] | Callable[..., tuple[int, ...]], num_classes: int
) -> Callable[[DatasetBuilder], DatasetBuilder]:
    """Decorator: register a builder under ``name`` with its input shape and number of classes."""

    def deco(builder: DatasetBuilder) -> DatasetBuilder:
        DATASETS.register(name)(DatasetEntry(builder, input_shape, num_classes))
        return builder

    return deco


def default_root() -> Path:
    """``$CASCADE_DATA_DIR``, else the user cache folder."""
    env = os.environ.get("CASCADE_DATA_DIR")
    if env:
        return Path(env).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "cascade-bench"


def _torchvision_idx(cls_name: str, folder: str, root: Path | None, download: bool) -> RawData:

    root = Path(root) if root is not None else default_root()
    raw = root / folder / "raw"
    missing = [f for f in MNIST_FILES if not (raw / f).is_file()]
    cls = getattr(torchvision.datasets, cls_name)
    if missing and download:
        try:
            cls(str(root), train=True, download=True)
            cls(str(root), train=False, download=True)
        except Exception as exc:  # offline, proxy, checksum: all end in the same advice
            raise DataNotFoundError(_missing_message(folder, raw, missing, f"download failed: {exc}")) from exc
        missing = [f for f in MNIST_FILES if not (raw / f).is_file()]
    if missing:
        raise DataNotFoundError(_missing_message(folder, raw, missing, "download disabled"))
    train = cls(str(root), train=True, download=False)
    test = cls(str(root), train=False, download=False)

    def images(ds: Any) -> torch.Tensor:
        return ds.data.unsqueeze(1).float().div_(255.0)  # (N, 1, 28, 28) in [0, 1]

    return RawData(images(train), train.targets.long(), images(test), test.targets.long(), 10)


def _missing_message(folder: str, raw: Path, missing: list[str], why: str) -> str:
    return (
        f"{folder} data not found ({why}). Missing in {raw}: {', '.join(missing)}. "
        f"Put the four uncompressed IDX files ({', '.join(MNIST_FILES)}) in {raw}, "
        f"or point CASCADE_DATA_DIR (or the suite's dataset.root) at the folder that holds {folder}/raw."
    )


@register_dataset("mnist", input_shape=(1, 28, 28), num_classes=10)
def mnist(*, root: Path | None = None, download: bool = True) -> RawData:
    return _torchvision_idx("MNIST", "MNIST", root, download)


@register_dataset("fashion_mnist", input_shape=(1, 28, 28), num_classes=10)
def fashion_mnist(*, root: Path | None = None, download: bool = True) -> RawData:
    return _torchvision_idx("FashionMNIST", "FashionMNIST", root, download)


def add_noise(x: torch.Tensor, *, sigma: float, salt_pepper: float, seed: int) -> torch.Tensor:
    """Gaussian (std ``sigma``) then salt-and-pepper (fraction ``salt_pepper``) noise, clipped to [0, 1]."""
    if sigma < 0 or not 0.0 <= salt_pepper <= 1.0:
        raise ValueError(f"need sigma >= 0 and salt_pepper in [0, 1], got {sigma}, {salt_pepper}")
    gen = torch.Generator().manual_seed(seed)
    noisy = x + sigma * torch.randn(x.shape, generator=gen)
    u = torch.rand(x.shape, generator=gen)
    noisy = torch.where(u < salt_pepper / 2, torch.zeros_like(noisy), noisy)  # pepper
    noisy = torch.where((u >= salt_pepper / 2) & (u < salt_pepper), torch.ones_like(noisy), noisy)  # salt
    return noisy.clamp_(0.0, 1.0)


@register_dataset("noisy_mnist", input_shape=(1, 28, 28), num_classes=10)
def noisy_mnist(
    *,
    root: Path | None = None,
    download: bool = True,
    sigma: float = 0.5,
    salt_pepper: float = 0.2,
    noise_seed: int = 0,
) -> RawData:
    clean = mnist(root=root, download=download)
    return RawData(
        add_noise(clean.train_x, sigma=sigma, salt_pepper=salt_pepper, seed=noise_seed),
        clean.train_y,
        add_noise(clean.test_x, sigma=sigma, salt_pepper=salt_pepper, seed=noise_seed + 1),
        clean.test_y,
        10,
    )


@register_dataset("digits", input_shape=lambda size=28, **_: (1, size, size), num_classes=10)
def digits(*, root: Path | None = None, download: bool = True, size: int = 28) -> RawData:
    """scikit-learn's 1,797 8x8 digits (values 0..16), upsampled; fixed 20 % test split."""
    from sklearn.datasets import load_digits  # noqa: PLC0415  # heavy (~1 s); only the digits dataset needs it

    bunch = load_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32).div_(16.0).unsqueeze(1)  # (N, 1, 8, 8)
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp_(0.0, 1.0)
    y = torch.tensor(bunch.target, dtype=torch.long)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(20240601))
    n_test = len(y) // 5
    test, train = perm[:n_test], perm[n_test:]
    return RawData(x[train], y[train], x[test], y[test], 10)


def dataset_shape(name: str, **options: Any) -> tuple[tuple[int, ...], int]:
    """(input shape, number of classes) of dataset ``name`` without loading it."""
    entry = DATASETS.get(name)  # unknown names raise with the list of known ones
    return entry.shape(**options), entry.num_classes


def fingerprint(*tensors: torch.Tensor) -> str:
    """Short sha256 of the tensors' bytes: identifies the exact data a run saw."""
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def load_dataset(
    name: str,
    *,
    root: str | Path | None = None,
    val_fraction: float = 0.1,
    split_seed: int = 0,
    download: bool = True,
    train_size: int = 0,
    **options: Any,
) -> DataSplits:
    """Load dataset ``name`` into memory with a validation split held out from training.

    Args:
        name: a registered dataset (``mnist``, ``noisy_mnist``, ``fashion_mnist``, ``digits``).
        root: data folder; default ``$CASCADE_DATA_DIR`` or the user cache.
        val_fraction: share of the training set held out for validation, in [0, 1).
        split_seed: seed of the train/validation split (fixed across model seeds).
        download: try to download missing files.
        train_size: keep only this many training samples (after the validation split; 0 = all),
            for quick runs. The validation and test splits are unchanged.
        **options: dataset options (e.g. ``sigma``, ``salt_pepper``, ``noise_seed``).
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    builder = DATASETS.get(name).builder
    raw = builder(root=Path(root) if root is not None else None, download=download, **options)
    n = len(raw.train_y)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(split_seed))
    n_val = round(n * val_fraction)
    val_idx, train_idx = perm[:n_val], perm[n_val:]
    if train_size < 0:
        raise ValueError(f"train_size must be >= 0, got {train_size}")
    if train_size:
        train_idx = train_idx[:train_size]
    train_x = raw.train_x[train_idx]
    mean, std = train_x.mean(), train_x.std()

    def norm(x: torch.Tensor) -> torch.Tensor:
        return (x - mean) / std

    identity = {
        "name": name,
        "options": {k: v for k, v in sorted(options.items())},
        "val_fraction": val_fraction,
        "split_seed": split_seed,
        "train_size": train_size,
        "fingerprint": fingerprint(raw.train_x, raw.train_y, raw.test_x, raw.test_y),
        "sizes": {"train": len(train_idx), "val": n_val, "test": len(raw.test_y)},
    }
    return DataSplits(
        name=name,
        train=Split(norm(train_x), raw.train_y[train_idx]),
        val=Split(norm(raw.train_x[val_idx]), raw.train_y[val_idx]),
        test=Split(norm(raw.test_x), raw.test_y),
        num_classes=raw.num_classes,
        identity=identity,
    )
