from __future__ import annotations

import pytest
import torch

from cascade import DataNotFoundError, load_dataset
from cascade.data import DATASETS, add_noise
from cascade.datafiles import MNIST_FILES

from .conftest import mnist_root, needs_mnist


def test_digits_splits(digits) -> None:
    assert digits.input_shape == (1, 28, 28)
    sizes = digits.identity["sizes"]
    assert sizes == {"train": len(digits.train), "val": len(digits.val), "test": len(digits.test)}
    assert sizes["train"] + sizes["val"] + sizes["test"] == 1797
    # standardised with the training part's statistics
    assert abs(float(digits.train.x.mean())) < 1e-4 and abs(float(digits.train.x.std()) - 1) < 1e-3


def test_validation_is_held_out_from_training(digits) -> None:
    train = {tuple(r.tolist()) for r in digits.train.x.flatten(1)[:, ::7]}
    val = {tuple(r.tolist()) for r in digits.val.x.flatten(1)[:, ::7]}
    assert not train & val


def test_same_split_seed_same_data_other_seed_other_split() -> None:
    a = load_dataset("digits", split_seed=3)
    b = load_dataset("digits", split_seed=3)
    c = load_dataset("digits", split_seed=4)
    assert torch.equal(a.val.y, b.val.y) and torch.equal(a.val.x, b.val.x)
    assert not torch.equal(a.val.x, c.val.x)


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "noisy_mnist"])
def test_missing_offline_data_names_files_and_folder(tmp_path, name: str) -> None:
    with pytest.raises(DataNotFoundError) as info:
        load_dataset(name, root=tmp_path, download=False)
    msg = str(info.value)
    folder = "FashionMNIST" if name == "fashion_mnist" else "MNIST"
    assert str(tmp_path / folder / "raw") in msg
    for f in MNIST_FILES:
        assert f in msg
    assert "CASCADE_DATA_DIR" in msg


def test_failed_download_gives_the_same_advice(tmp_path, monkeypatch) -> None:
    import torchvision

    def offline(self, *a, **k):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torchvision.datasets.MNIST, "download", offline)
    with pytest.raises(DataNotFoundError, match="download failed: network is unreachable.*train-images-idx3-ubyte"):
        load_dataset("mnist", root=tmp_path, download=True)


def test_root_falls_back_to_env(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("CASCADE_DATA_DIR", str(tmp_path))
    with pytest.raises(DataNotFoundError, match=str(tmp_path)):
        load_dataset("mnist", download=False)


def test_noise_is_seeded_clipped_and_has_the_salt_pepper_share() -> None:
    x = torch.full((200, 1, 28, 28), 0.5)
    a = add_noise(x, sigma=0.0, salt_pepper=0.2, seed=7)
    b = add_noise(x, sigma=0.0, salt_pepper=0.2, seed=7)
    assert torch.equal(a, b)
    zeros, ones = float((a == 0).float().mean()), float((a == 1).float().mean())
    assert zeros == pytest.approx(0.1, abs=0.005) and ones == pytest.approx(0.1, abs=0.005)
    g = add_noise(x, sigma=0.5, salt_pepper=0.0, seed=1)
    assert g.min() >= 0 and g.max() <= 1
    # std of clipped N(0.5, 0.5) is below 0.5 but well above 0
    assert 0.3 < float(g.std()) < 0.5
    assert not torch.equal(g, add_noise(x, sigma=0.5, salt_pepper=0.0, seed=2))


def test_unknown_dataset_lists_known() -> None:
    with pytest.raises(KeyError, match="known: " + ", ".join(DATASETS.names())):
        load_dataset("cifar")


@needs_mnist
def test_real_mnist_sizes() -> None:
    data = load_dataset("mnist", root=mnist_root(), download=False)
    assert data.identity["sizes"] == {"train": 54000, "val": 6000, "test": 10000}
    assert torch.bincount(data.test.y).tolist()[:3] == [980, 1135, 1032]


# --------------------------------------------------------------------------- formats written by the tests


@pytest.mark.parametrize("gz", [False, True])
def test_idx_files_read_plain_or_gzipped(tmp_path, gz: bool) -> None:
    from .synthetic import write_mnist

    write_mnist(tmp_path, n_train=50, n_test=20, gz=gz)
    data = load_dataset("mnist", root=tmp_path, download=False, val_fraction=0.2)
    assert data.input_shape == (1, 28, 28) and data.num_classes == 10
    assert (len(data.train), len(data.val), len(data.test)) == (40, 10, 20)
    assert sorted(set(data.test.y.tolist())) == list(range(10))


def test_damaged_idx_file_is_named(tmp_path) -> None:
    from cascade.datafiles import DataFormatError

    from .synthetic import write_mnist

    write_mnist(tmp_path)
    images = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:-16])  # truncated
    with pytest.raises(DataFormatError, match=r"train-images-idx3-ubyte: .* bytes, the header \[60, 28, 28\] says"):
        load_dataset("mnist", root=tmp_path, download=False)
    images.write_bytes(b"\x12\x34" + images.read_bytes()[2:])
    with pytest.raises(DataFormatError, match="bad magic number"):
        load_dataset("mnist", root=tmp_path, download=False)


def test_cifar10_loader_on_synthetic_batches(tmp_path) -> None:
    from .synthetic import write_cifar10

    write_cifar10(tmp_path, per_batch=20, n_test=30)
    data = load_dataset("cifar10", root=tmp_path, download=False, val_fraction=0.1, normalize="per-channel")
    assert data.input_shape == (3, 32, 32) and data.num_classes == 10
    assert (len(data.train), len(data.val), len(data.test)) == (90, 10, 30)
    # per-channel standardisation with the training part's statistics
    assert data.train.x.mean(dim=(0, 2, 3)).abs().max() < 1e-4
    assert (data.train.x.std(dim=(0, 2, 3)) - 1).abs().max() < 1e-3
    assert data.test.y.tolist()[:12] == [i % 10 for i in range(12)]
    with pytest.raises(DataNotFoundError, match=r"cifar-100-python: train, test"):
        load_dataset("cifar100", root=tmp_path, download=False)


@pytest.mark.parametrize("split", [True, False])
def test_imagefolder_loader(tmp_path, split: bool) -> None:
    from .synthetic import write_imagefolder

    write_imagefolder(tmp_path, classes=3, per_class=8, size=12, split=split)
    data = load_dataset("imagefolder", root=tmp_path, image_size=16, val_fraction=0.25, test_fraction=0.25)
    assert data.input_shape == (3, 16, 16) and data.num_classes == 3
    total = len(data.train) + len(data.val) + len(data.test)
    assert total == (3 * 8 + 3 * 4 if split else 3 * 8)
    assert sorted(set(data.test.y.tolist())) == [0, 1, 2]
    grey = load_dataset("imagefolder", root=tmp_path, image_size=8, channels=1)
    assert grey.input_shape == (1, 8, 8)


def test_augmentation_is_a_crop_of_the_padded_batch_and_a_flip() -> None:
    from cascade.data import Augment

    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).reshape(2, 1, 4, 4) + 1
    out = Augment(crop_padding=1)(x, torch.Generator().manual_seed(0))
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1))
    for b in range(2):  # each sample is one of the 9 windows of its padded image
        windows = [padded[b, :, i : i + 4, j : j + 4] for i in range(3) for j in range(3)]
        assert any(torch.equal(out[b], w) for w in windows)
    flipped = Augment(flip=True)(x, torch.Generator().manual_seed(1))
    for b in range(2):
        assert torch.equal(flipped[b], x[b]) or torch.equal(flipped[b], x[b].flip(-1))
    many = Augment(flip=True)(x.repeat(50, 1, 1, 1), torch.Generator().manual_seed(2))
    n_flipped = sum(not torch.equal(m, x[i % 2]) for i, m in enumerate(many))
    assert 25 <= n_flipped <= 75  # about half
    assert not Augment()  # nothing to do: the trainer skips it
