from __future__ import annotations

import pytest
import torch

from cascade import DataNotFoundError, load_dataset
from cascade.data import DATASETS, MNIST_FILES, add_noise

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
