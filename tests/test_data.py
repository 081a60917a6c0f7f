import os
from pathlib import Path

import pytest
import torch

from wmlib import data as D
from conftest import needs_cifar, needs_mnist


@needs_mnist
def test_mnist_shapes():
    train, test = D.load("mnist", "train"), D.load("mnist", "test")
    assert train.x.shape == (60000, 1, 28, 28) and train.x.dtype == torch.uint8
    assert test.x.shape == (10000, 1, 28, 28) and test.y.dtype == torch.int64
    assert sorted(train.y.unique().tolist()) == list(range(10))
    # the first MNIST test labels are public knowledge
    assert test.y[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]


@needs_cifar
def test_cifar10_shapes_and_balance():
    train, test = D.load("cifar10", "train"), D.load("cifar10", "test")
    assert train.x.shape == (50000, 3, 32, 32) and test.x.shape == (10000, 3, 32, 32)
    assert train.y.bincount().tolist() == [5000] * 10
    assert test.y.bincount().tolist() == [1000] * 10


@needs_mnist
def test_splits_attacker_and_eval_halves_are_disjoint_and_fixed():
    s = D.splits("mnist", n_train=1000)
    assert len(s.train) == 1000 and len(s.attack) == len(s.eval) == 5000
    test = D.load("mnist", "test")
    keys = lambda t: {hash(row.numpy().tobytes()) for row in t.x}  # noqa: E731
    assert not keys(s.attack) & keys(s.eval)
    assert keys(s.attack) | keys(s.eval) == keys(test)
    again = D.splits("mnist", n_train=1000)
    assert torch.equal(again.train.x, s.train.x) and torch.equal(again.attack.y, s.attack.y)


def test_missing_dataset_names_the_variable_and_layout(tmp_path, monkeypatch):
    monkeypatch.setenv("WMLIB_DATA", str(tmp_path / "empty"))
    monkeypatch.setenv("WMLIB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("WMLIB_DOWNLOAD", "0")
    with pytest.raises(D.DatasetMissing, match="WMLIB_DATA") as err:
        D.load("fashion-mnist", "train")
    assert "FashionMNIST/raw" in str(err.value)
    with pytest.raises(D.DatasetMissing, match="cifar10-jpeg"):
        D.load("cifar10", "test")
    assert not (tmp_path / "cache" / "tensors").exists() or not any((tmp_path / "cache" / "tensors").iterdir())


def test_unknown_names():
    with pytest.raises(ValueError, match="accepted values.*cifar10"):
        D.load("imagenet")
    with pytest.raises(ValueError, match="split="):
        D.load("mnist", "validation")


def test_augment_crops_and_flips_within_the_padded_image():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, 3, 32, 32)
    out = D.augment(x, g)
    assert out.shape == x.shape
    # each output is a shifted (and maybe flipped) window: its non-zero values come from its input
    for i in range(8):
        vals = set(out[i][out[i] != 0].tolist())
        assert vals <= set(x[i].flatten().tolist())
    assert not torch.equal(out, x)
    assert torch.equal(D.augment(x, torch.Generator().manual_seed(0)), out)


@pytest.mark.skipif(not (Path(os.environ.get("WMLIB_DATA", "/nonexistent")) / "cifar10-lossless").exists(),
                    reason="WMLIB_DATA with cifar10-lossless not set")
def test_cifar10_lossless_is_read_when_present():
    """The official pixels, in the official order (SOURCE.md of the shared copy)."""
    assert D.source("cifar10") == "lossless"
    train, test = D.load("cifar10", "train"), D.load("cifar10", "test")
    assert train.x.shape == (50000, 3, 32, 32) and train.x.dtype == torch.uint8
    assert test.x.shape == (10000, 3, 32, 32)
    assert train.y[:10].tolist() == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]
    assert test.y[:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]
    mean = train.x.float().mean((0, 2, 3)) / 255
    assert torch.allclose(mean, torch.tensor([0.4914, 0.4822, 0.4465]), atol=1e-4)


@needs_mnist
def test_train_size_is_the_official_split():
    assert len(D.splits("mnist").train) == D.dataset_info("mnist").train_size == 60_000
