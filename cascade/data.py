"""Datasets as in-memory tensors with a validation split held out from training.

Registered datasets:

* ``mnist``, ``fashion_mnist``: torchvision's readers over the four IDX files.
* ``noisy_mnist``: MNIST plus Gaussian noise (std ``sigma``) and
  salt-and-pepper noise (a fraction ``salt_pepper`` of pixels, half set to 0,
  half to 1), clipped to [0, 1], drawn once from ``noise_seed`` so every model
  sees the same noisy images. Defaults sigma = 0.5, p = 0.2 on the [0, 1] scale.
* ``digits``: scikit-learn's bundled 8x8 digits, bilinearly upsampled to 28x28,
  with a fixed test split (20 %). Works offline.
* ``cifar10``, ``cifar100``: torchvision's readers over the python pickles
  (``<root>/cifar-10-batches-py``, ``<root>/cifar-100-python``), 3 x 32 x 32.
* ``imagefolder``: a folder of class sub-folders (torchvision's ``ImageFolder`` convention),
  ``<root>/train/<class>/*`` and ``<root>/test/<class>/*``, or one ``<root>/<class>/*`` tree split
  with a fixed seed (``test_fraction``); images resized to ``image_size`` once, at load time.

The IDX readers read the four files uncompressed or gzipped as published (``*.gz``), and check
each file's header and size against the IDX format before using it.

The data root is the ``root`` argument, else ``$CASCADE_DATA_DIR``, else
``$XDG_CACHE_HOME/cascade-bench`` (``~/.cache/cascade-bench``). Missing files
are downloaded when ``download`` is true; when that fails (offline) a
:class:`DataNotFoundError` names the files and the folder to put them in.

Images are standardised with the mean and standard deviation of the training
part (after the validation split is removed): one global mean and std
(``normalize = "global"``, the default), per channel (``"per-channel"``, the
CIFAR convention) or not at all (``"none"``). Training batches can be
augmented (``random_crop`` = padding of a random crop, ``random_flip`` = random
horizontal flip), drawn from the trainer's shuffling generator. All transforms
are batched tensor operations; nothing runs per sample in Python.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from cascade._registry import Registry
from cascade.datafiles import (
    CIFAR10_CLASSES,
    CIFAR_FILES,
    DataFormatError,
    RawData,
    _cifar_message,
    _class_names,
    _ensure_files,
    _image_folders,
    _new_folders,
    _read_cifar_batches,
    _torchvision_download,
    _torchvision_idx,
    default_root,
)


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
    class_names: tuple[str, ...] = ()  # the label of each class index ("0", "1", ... where the data names none)
    identity: dict[str, Any] = field(default_factory=dict)  # name, options, fingerprint of the tensors
    augment: Augment | None = None  # applied by the trainer to each training batch
    # how raw images in [0, 1] became the model's input: x' = (x - mean) / std, per channel or global
    # ({"kind", "mean": [...], "std": [...]}); what a deployment must apply too (bench export)
    normalization: dict[str, Any] = field(default_factory=dict)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train.x.shape[1:])

    def to(self, device: str | torch.device) -> DataSplits:
        return dataclasses.replace(
            self, train=self.train.to(device), val=self.val.to(device), test=self.test.to(device)
        )

    def test_subset(self, n: int, seed: int = 0) -> DataSplits:
        """The same splits with a fixed random subset of ``n`` test samples, in their original order (all of
        them when ``n`` is 0 or not smaller than the test split): quick evaluation."""
        if not n or n >= len(self.test):
            return self
        idx = torch.randperm(len(self.test), generator=torch.Generator().manual_seed(seed))[:n].sort().values
        idx = idx.to(self.test.y.device)
        return dataclasses.replace(self, test=Split(self.test.x[idx], self.test.y[idx]))


DatasetBuilder = Callable[..., RawData]


@dataclass(frozen=True)
class DatasetEntry:
    """A registered dataset: its builder and what is known about it without loading it."""

    builder: DatasetBuilder  # (root=..., download=..., **options) -> RawData
    input_shape: tuple[int, ...] | Callable[..., tuple[int, ...]]  # (C, H, W), or a function of the options
    num_classes: int | Callable[..., int]  # or a function of (root, **options), e.g. counting class folders

    def shape(self, **options: Any) -> tuple[int, ...]:
        """Input shape (C, H, W) for these dataset options."""
        return tuple(self.input_shape(**options)) if callable(self.input_shape) else tuple(self.input_shape)

    def classes(self, root: str | Path | None = None, **options: Any) -> int:
        """Number of classes for these options (and data folder, where it depends on it)."""
        return int(self.num_classes(root, **options)) if callable(self.num_classes) else self.num_classes

    def option_defaults(self) -> dict[str, Any]:
        """The builder's own keyword options and their defaults (what a suite may set besides the common keys)."""
        params = inspect.signature(self.builder).parameters
        return {p: v.default for p, v in params.items() if p not in ("root", "download")}

    def option_names(self) -> list[str]:
        return list(self.option_defaults())


DATASETS: Registry[DatasetEntry] = Registry("dataset")


def register_dataset(
    name: str,
    *,
    input_shape: tuple[int, ...] | Callable[..., tuple[int, ...]],
    num_classes: int | Callable[..., int],
) -> Callable[[DatasetBuilder], DatasetBuilder]:
    """Decorator: register a builder under ``name`` with its input shape and number of classes."""

    def deco(builder: DatasetBuilder) -> DatasetBuilder:
        DATASETS.register(name)(DatasetEntry(builder, input_shape, num_classes))
        return builder

    return deco


@register_dataset("mnist", input_shape=(1, 28, 28), num_classes=10)
def mnist(*, root: Path | None = None, download: bool = True) -> RawData:
    """MNIST handwritten digits, 28 x 28 grey, 60,000 training and 10,000 test images (torchvision's files)."""
    return _torchvision_idx("MNIST", "MNIST", root, download)


@register_dataset("fashion_mnist", input_shape=(1, 28, 28), num_classes=10)
def fashion_mnist(*, root: Path | None = None, download: bool = True) -> RawData:
    """Fashion-MNIST clothing images, 28 x 28 grey, 10 classes, MNIST's sizes (torchvision's files)."""
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
    """MNIST with Gaussian (``sigma``) and salt-and-pepper (``salt_pepper``) noise, fixed by ``noise_seed``."""
    clean = mnist(root=root, download=download)
    return RawData(
        add_noise(clean.train_x, sigma=sigma, salt_pepper=salt_pepper, seed=noise_seed),
        clean.train_y,
        add_noise(clean.test_x, sigma=sigma, salt_pepper=salt_pepper, seed=noise_seed + 1),
        clean.test_y,
        10,
        clean.class_names,
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


def _cifar(name: str, root: Path | None, download: bool) -> RawData:
    cls_name, folder_name, train_files, test_files, label_key = CIFAR_FILES[name]
    root = Path(root) if root is not None else default_root()
    folder = root / folder_name
    files = [*train_files, *test_files]
    _ensure_files(
        lambda: [f for f in files if not (folder / f).is_file()],
        (lambda: _torchvision_download(cls_name, root, (True,))) if download else None,
        _new_folders(folder, root),
        lambda missing, why: _cifar_message(name, folder, missing, why),
    )
    train_x, train_y = _read_cifar_batches(folder, train_files, label_key)
    test_x, test_y = _read_cifar_batches(folder, test_files, label_key)
    names = CIFAR10_CLASSES if name == "cifar10" else ()
    return RawData(train_x, train_y, test_x, test_y, 10 if name == "cifar10" else 100, names)


@register_dataset("cifar10", input_shape=(3, 32, 32), num_classes=10)
def cifar10(*, root: Path | None = None, download: bool = True) -> RawData:
    """CIFAR-10, 32 x 32 colour, 50,000 training and 10,000 test images (the python pickles)."""
    return _cifar("cifar10", root, download)


@register_dataset("cifar100", input_shape=(3, 32, 32), num_classes=100)
def cifar100(*, root: Path | None = None, download: bool = True) -> RawData:
    """CIFAR-100 (fine labels), 32 x 32 colour, CIFAR-10's sizes (the python pickles)."""
    return _cifar("cifar100", root, download)


def _imagefolder_classes(root: Path | None, **_: Any) -> int:
    return len(_class_names(_image_folders(root)[0]))


@register_dataset(
    "imagefolder",
    input_shape=lambda image_size=32, channels=3, **_: (channels, image_size, image_size),
    num_classes=_imagefolder_classes,
)
def imagefolder(
    *,
    root: Path | None = None,
    download: bool = True,
    image_size: int = 32,
    channels: int = 3,
    test_fraction: float = 0.2,
) -> RawData:
    """Images in class sub-folders, resized to ``image_size`` once at load time (``channels``: 1 or 3).

    With ``<root>/train`` (and ``<root>/test`` or ``<root>/val``) those are the splits; otherwise
    ``test_fraction`` of ``<root>`` is held out as the test split with a fixed seed.
    """
    if channels not in (1, 3) or image_size < 1 or not 0.0 < test_fraction < 1.0:
        raise ValueError("imagefolder: channels must be 1 or 3, image_size >= 1, test_fraction in (0, 1)")
    train_dir, test_dir = _image_folders(root)
    import torchvision  # noqa: PLC0415  # torchvision costs 1.5 s to import (torch._dynamo); only where it is used

    classes = _class_names(train_dir)
    steps = [torchvision.transforms.Resize((image_size, image_size))]
    if channels == 1:
        steps.append(torchvision.transforms.Grayscale(1))
    transform = torchvision.transforms.Compose([*steps, torchvision.transforms.ToTensor()])

    def load(folder: Path) -> tuple[torch.Tensor, torch.Tensor]:
        ds = torchvision.datasets.ImageFolder(str(folder), transform=transform)
        if ds.classes != classes:
            raise DataFormatError(f"imagefolder: {folder} has classes {ds.classes}, the training folder {classes}")
        xs, ys = zip(*(ds[i] for i in range(len(ds))))  # once, at load time; training reads the tensors
        return torch.stack(xs).float(), torch.tensor(ys)

    x, y = load(train_dir)
    if test_dir is not None:
        tx, ty = load(test_dir)
        return RawData(x, y, tx, ty, len(classes), tuple(classes))
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(20240601))
    n_test = max(1, round(len(y) * test_fraction))
    test, train = perm[:n_test], perm[n_test:]
    return RawData(x[train], y[train], x[test], y[test], len(classes), tuple(classes))


@dataclass(frozen=True)
class Augment:
    """Batched training augmentation: random crop with ``crop_padding`` zero padding, random horizontal flip."""

    crop_padding: int = 0  # 0 = no random crop
    flip: bool = False

    def __bool__(self) -> bool:
        return self.crop_padding > 0 or self.flip

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Augment a batch (B, C, H, W); the random draws come from ``gen`` (CPU) for reproducibility."""
        b, _, h, w = x.shape
        if self.crop_padding:
            p = self.crop_padding
            padded = F.pad(x, (p, p, p, p))  # (B, C, H + 2p, W + 2p)
            dy = torch.randint(0, 2 * p + 1, (b,), generator=gen).to(x.device)
            dx = torch.randint(0, 2 * p + 1, (b,), generator=gen).to(x.device)
            rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]  # (B, 1, H, 1)
            cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]  # (B, 1, 1, W)
            batch = torch.arange(b, device=x.device)[:, None, None, None]
            chan = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
            x = padded[batch, chan, rows, cols]  # (B, C, H, W)
        if self.flip:
            mask = (torch.rand(b, generator=gen) < 0.5).to(x.device)[:, None, None, None]
            x = torch.where(mask, x.flip(3), x)
        return x


def dataset_shape(name: str, root: str | Path | None = None, **options: Any) -> tuple[tuple[int, ...], int]:
    """(input shape, number of classes) of dataset ``name`` without loading it."""
    entry = DATASETS.get(name)  # unknown names raise with the list of known ones
    return entry.shape(**options), entry.classes(root, **options)


def fingerprint(*tensors: torch.Tensor) -> str:
    """Short sha256 of the tensors' bytes: identifies the exact data a run saw."""
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _split(
    n: int, val_fraction: float, split_seed: int, train_size: int, val_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(training, validation) indices of ``n`` training samples: a seeded permutation, the first
    ``val_fraction`` held out; ``train_size`` / ``val_size`` (0 = all) keep only the first ones of each."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(split_seed))
    n_val = round(n * val_fraction)
    val_idx, train_idx = perm[:n_val], perm[n_val:]
    if train_size < 0:
        raise ValueError(f"train_size must be >= 0, got {train_size}")
    if val_size < 0:
        raise ValueError(f"val_size must be >= 0, got {val_size}")
    return (train_idx[:train_size] if train_size else train_idx), (val_idx[:val_size] if val_size else val_idx)


def _normalisation(train_x: torch.Tensor, normalize: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, std) fitted on the training part: one of each (global), per channel, or none."""
    if normalize == "global":
        return train_x.mean(), train_x.std()
    if normalize == "per-channel":
        return train_x.mean(dim=(0, 2, 3), keepdim=True)[0], train_x.std(dim=(0, 2, 3), keepdim=True)[0]  # (C, 1, 1)
    if normalize == "none":
        return torch.zeros(()), torch.ones(())
    raise ValueError(f"normalize must be 'global', 'per-channel' or 'none', got {normalize!r}")


def load_dataset(
    name: str,
    *,
    root: str | Path | None = None,
    val_fraction: float = 0.1,
    split_seed: int = 0,
    download: bool = True,
    train_size: int = 0,
    val_size: int = 0,
    normalize: str = "global",
    random_crop: int = 0,
    random_flip: bool = False,
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
        val_size: keep only this many validation samples (0 = the whole ``val_fraction`` share);
            the training samples are the same as without it. With ``train_size``, a validation
            split larger than the training one mostly costs evaluation time.
        normalize: ``global`` (one mean and std of the training part), ``per-channel`` or ``none``.
        random_crop: padding of the random crop applied to training batches (0 = none).
        random_flip: random horizontal flip of training batches.
        **options: dataset options (e.g. ``sigma``, ``salt_pepper``, ``noise_seed``).
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    builder = DATASETS.get(name).builder
    raw = builder(root=Path(root) if root is not None else None, download=download, **options)
    train_idx, val_idx = _split(len(raw.train_y), val_fraction, split_seed, train_size, val_size)
    n_val = len(val_idx)
    train_x = raw.train_x[train_idx]
    mean, std = _normalisation(train_x, normalize)
    if random_crop < 0:
        raise ValueError(f"random_crop must be >= 0, got {random_crop}")

    def norm(x: torch.Tensor) -> torch.Tensor:
        return (x - mean) / std

    identity = {
        "name": name,
        "options": {k: v for k, v in sorted(options.items())},
        "val_fraction": val_fraction,
        "split_seed": split_seed,
        "train_size": train_size,
        **({"val_size": val_size} if val_size else {}),
        "fingerprint": fingerprint(raw.train_x, raw.train_y, raw.test_x, raw.test_y),
        "sizes": {"train": len(train_idx), "val": n_val, "test": len(raw.test_y)},
    }
    transforms = {"normalize": normalize, "random_crop": random_crop, "random_flip": random_flip}
    defaults = inspect.signature(load_dataset).parameters  # each default stated once, in the signature
    identity.update({k: v for k, v in transforms.items() if v != defaults[k].default})
    return DataSplits(
        name=name,
        train=Split(norm(train_x), raw.train_y[train_idx]),
        val=Split(norm(raw.train_x[val_idx]), raw.train_y[val_idx]),
        test=Split(norm(raw.test_x), raw.test_y),
        num_classes=raw.num_classes,
        class_names=raw.class_names or tuple(str(k) for k in range(raw.num_classes)),
        identity=identity,
        augment=Augment(random_crop, random_flip) or None,
        normalization={"kind": normalize, "mean": mean.flatten().tolist(), "std": std.flatten().tolist()},
    )
