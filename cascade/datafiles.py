"""Dataset files on disk: where they live (the user cache), the formats read without torchvision (IDX,
CIFAR's pickled batches, image folders), downloads through torchvision, and the errors that say which
file is missing or malformed and how to get it.
"""

from __future__ import annotations

import gzip
import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cascade.cache import user_cache
from cascade.errors import UserError


@dataclass(frozen=True)
class RawData:
    """What a dataset builder returns: images in [0, 1] as (N, C, H, W) float32."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    class_names: tuple[str, ...] = ()  # the label of each class index, where the format names them (else "0", "1", ...)


_IDX_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


class DataNotFoundError(FileNotFoundError, UserError):
    """The dataset's files are missing and could not be downloaded."""


def default_root() -> Path:
    """``$CASCADE_DATA_DIR``, else the user cache folder."""
    env = os.environ.get("CASCADE_DATA_DIR")
    if env:
        return Path(env).expanduser()
    root = user_cache()
    assert root is not None  # no variable can switch the root off
    return root


class DataFormatError(ValueError, UserError):
    """A data file exists but is not what its format says (truncated, wrong header)."""


def read_idx(path: Path) -> torch.Tensor:
    """Read an IDX file (LeCun's MNIST format), uncompressed or ``.gz``; check header and size.

    Raises:
        DataFormatError: naming the file and what is wrong with it.
    """
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_TYPES:
        raise DataFormatError(f"{path}: not an IDX file (bad magic number {data[:4].hex() or 'empty'})")
    ndim = data[3]
    if len(data) < 4 + 4 * ndim:
        raise DataFormatError(f"{path}: truncated IDX header")
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    dtype = _IDX_TYPES[data[2]]
    expected = 4 + 4 * ndim + int(np.prod(dims)) * dtype.itemsize
    if len(data) != expected:
        raise DataFormatError(f"{path}: {len(data)} bytes, the header {dims} says {expected}; the file is damaged")
    array = np.frombuffer(data, dtype=dtype, offset=4 + 4 * ndim).reshape(dims)
    return torch.from_numpy(array.astype(array.dtype.newbyteorder("="), copy=True))


def _idx_file(raw: Path, name: str) -> Path | None:
    for candidate in (raw / name, raw / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _torchvision_download(cls_name: str, root: Path, splits: tuple[bool, ...]) -> None:
    """Download ``torchvision.datasets.<cls_name>`` into ``root``, one call per ``train`` flag in ``splits``."""
    import torchvision  # noqa: PLC0415  # torchvision costs 1.5 s to import (torch._dynamo); only where it is used

    cls = getattr(torchvision.datasets, cls_name)
    for train in splits:
        cls(str(root), train=train, download=True)


#: The class names of the IDX datasets (torchvision's ``classes``; MNIST's digits are their own names).
IDX_CLASSES = {
    "MNIST": tuple(str(d) for d in range(10)),
    "FashionMNIST": (
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
}
#: CIFAR-10's class names (the archive's batches.meta holds the same).
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def _torchvision_idx(cls_name: str, folder: str, root: Path | None, download: bool) -> RawData:
    root = Path(root) if root is not None else default_root()
    raw = root / folder / "raw"
    _ensure_files(
        lambda: [f for f in MNIST_FILES if _idx_file(raw, f) is None],
        (lambda: _torchvision_download(cls_name, root, (True, False))) if download else None,
        _new_folders(raw, root),
        lambda missing, why: _missing_message(folder, raw, missing, why),
    )
    files = [_idx_file(raw, f) for f in MNIST_FILES]
    tr_x, tr_y, te_x, te_y = (read_idx(f) for f in files if f is not None)
    for xs, ys, name in ((tr_x, tr_y, MNIST_FILES[0]), (te_x, te_y, MNIST_FILES[2])):
        if xs.dim() != 3 or ys.dim() != 1 or len(xs) != len(ys):
            raise DataFormatError(f"{raw / name}: {tuple(xs.shape)} images for {tuple(ys.shape)} labels")

    def images(x: torch.Tensor) -> torch.Tensor:
        return x.unsqueeze(1).float().div_(255.0)  # (N, 1, 28, 28) in [0, 1]

    return RawData(images(tr_x), tr_y.long(), images(te_x), te_y.long(), 10, IDX_CLASSES.get(cls_name, ()))


def _ensure_files(
    missing: Callable[[], list[str]],
    fetch: Callable[[], Any] | None,
    new_folders: list[Path],
    message: Callable[[list[str], str], str],
) -> None:
    """Download what ``missing()`` lists when ``fetch`` is given; else, or when it fails, a
    :class:`DataNotFoundError` from ``message(missing files, why)``; a failed download leaves no
    empty folders behind."""
    if missing() and fetch is not None:
        try:
            fetch()
        except Exception as exc:  # offline, proxy, checksum: all end in the same advice
            _remove_empty(new_folders)
            raise DataNotFoundError(message(missing(), f"download failed: {exc}")) from exc
    if missing():
        raise DataNotFoundError(message(missing(), "download disabled" if fetch is None else "not in the download"))


def _new_folders(leaf: Path, top: Path) -> list[Path]:
    """The folders from ``top`` down to ``leaf`` that do not exist yet (a download would create them)."""
    chain = [leaf, *leaf.parents]
    return [p for p in chain[: chain.index(top) + 1] if not p.exists()] if top in chain else []


def _remove_empty(folders: list[Path]) -> None:
    """Remove the folders a failed download created, deepest first, if they stayed empty."""
    for folder in folders:
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


def _missing_message(folder: str, raw: Path, missing: list[str], why: str) -> str:
    return (
        f"{folder} data not found ({why}). Missing in {raw}: {', '.join(missing)}. "
        f"Put the four IDX files ({', '.join(MNIST_FILES)}; uncompressed or .gz) in {raw}, "
        f"or point CASCADE_DATA_DIR (or the suite's dataset.root) at the folder that holds {folder}/raw."
    )


CIFAR_FILES = {
    "cifar10": ("CIFAR10", "cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], "labels"),
    "cifar100": ("CIFAR100", "cifar-100-python", ["train"], ["test"], "fine_labels"),
}


#: What a CIFAR batch pickle may reference: numpy's array rebuilders (the published archives' protocol 2 and
#: newer protocols' forms) and the codec protocol 2 writes bytes with. Nothing else is ever looked up.
_CIFAR_GLOBALS = frozenset(
    {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
        ("codecs", "encode"),
    }
)


class _CifarUnpickler(pickle.Unpickler):
    """An unpickler that builds only dicts, lists, strings, numbers and numpy arrays (safetensors' rule for data
    read from elsewhere: a data file never runs code); any other global is refused before it is imported."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _CIFAR_GLOBALS:
            raise pickle.UnpicklingError(f"it references {module}.{name}, which a CIFAR batch never holds")
        return super().find_class(module, name)


def _load_cifar_pickle(path: Path) -> Any:
    """One CIFAR batch file, unpickled with :class:`_CifarUnpickler`; :class:`DataFormatError` naming the file."""
    try:
        with open(path, "rb") as f:
            return _CifarUnpickler(f, encoding="latin1").load()  # latin1: the published archives' Python 2 strings
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as e:
        raise DataFormatError(f"{path}: not a CIFAR batch; refused ({type(e).__name__}: {e})") from None


def _read_cifar_batches(folder: Path, names: list[str], label_key: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The python-pickle batches of the published CIFAR archives -> images (N, 3, 32, 32) in [0, 1], labels."""
    xs, ys = [], []
    for name in names:
        batch = _load_cifar_pickle(folder / name)
        if not isinstance(batch, dict) or "data" not in batch or label_key not in batch:
            raise DataFormatError(f"{folder / name}: not a CIFAR batch (needs 'data' and {label_key!r})")
        data = np.asarray(batch["data"], dtype=np.uint8)
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(batch[label_key]) != len(data):
            raise DataFormatError(f"{folder / name}: data {data.shape} for {len(batch[label_key])} labels")
        xs.append(torch.from_numpy(data.reshape(-1, 3, 32, 32).copy()))
        ys.append(torch.tensor(batch[label_key], dtype=torch.long))
    return torch.cat(xs).float().div_(255.0), torch.cat(ys)


def _cifar_message(name: str, folder: Path, missing: list[str], why: str) -> str:
    return (
        f"{name} data not found ({why}). Missing in {folder}: {', '.join(missing)}. Unpack the python version "
        f"of the dataset (the archive holding {folder.name}/) into {folder.parent}, or point CASCADE_DATA_DIR "
        f"(or the suite's dataset.root) at the folder that holds {folder.name}/."
    )


def _image_folders(root: Path | None) -> tuple[Path, Path | None]:
    """(train folder, test folder or None) of an ``imagefolder`` root."""
    if root is None:
        raise DataNotFoundError("dataset imagefolder needs dataset.root: a folder of class sub-folders")
    root = Path(root)
    if not root.is_dir():
        raise DataNotFoundError(f"imagefolder root {root} is not a folder")
    if (root / "train").is_dir():
        test = next((root / t for t in ("test", "val") if (root / t).is_dir()), None)
        return root / "train", test
    return root, None


def _class_names(folder: Path) -> list[str]:
    names = sorted(p.name for p in folder.iterdir() if p.is_dir())
    if not names:
        raise DataNotFoundError(f"imagefolder: {folder} holds no class sub-folders (expected {folder}/<class>/*.png)")
    return names
