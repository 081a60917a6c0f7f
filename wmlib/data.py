"""Datasets by name, offline roots, tensors decoded once and cached, and the owner / attacker splits.

Images are kept as ``uint8`` tensors ``[N, C, H, W]`` and labels as ``int64``; models take float
images in [0, 1] (normalisation lives inside the model, see :mod:`wmlib.models`).

Where the data comes from, in order:
1. ``$WMLIB_DATA`` (e.g. ``../shared/data``) in torchvision's own layout (``MNIST/raw``,
   ``FashionMNIST/raw``, ``cifar-10-batches-py``, ``cifar-100-python``); for CIFAR-10 also the
   pixel-exact arrays ``cifar10-lossless/{x,y}_{train,test}.npy.xz`` (preferred when present)
   and, as a last resort, the JPEG image-folder copy ``cifar10-jpeg/{train,test}/<class>/*.jpg``;
2. torchvision's ``download=True`` into that root when downloads are allowed: by default only
   when ``$WMLIB_DATA`` is unset (root ``$WMLIB_CACHE/data``); ``WMLIB_DOWNLOAD=1`` forces it.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from .files import atomic_save, cache_dir


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    channels: int
    size: int
    classes: int
    mean: tuple
    std: tuple
    augment: bool  # random crop (pad 4) + horizontal flip during training
    train_size: int  # images in the official training split


DATASETS = {
    "mnist": DatasetInfo("mnist", 1, 28, 10, (0.1307,), (0.3081,), False, 60_000),
    "fashion-mnist": DatasetInfo("fashion-mnist", 1, 28, 10, (0.2860,), (0.3530,), False, 60_000),
    "cifar10": DatasetInfo("cifar10", 3, 32, 10, (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010), True, 50_000),
    "cifar100": DatasetInfo("cifar100", 3, 32, 100, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), True, 50_000),
}

_LAYOUT = {
    "mnist": "MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte",
    "fashion-mnist": "FashionMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte",
    "cifar10": ("cifar10-lossless/{x,y}_{train,test}.npy.xz, cifar-10-batches-py/ (torchvision) "
                "or cifar10-jpeg/{train,test}/<class>/*.jpg"),
    "cifar100": "cifar-100-python/ (torchvision)",
}


class DatasetMissing(FileNotFoundError):
    pass


@dataclass
class TensorData:
    """Images ``x`` (uint8, N×C×H×W) and labels ``y`` (int64, N)."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self):
        return len(self.y)

    def subset(self, idx) -> "TensorData":
        return TensorData(self.x[idx], self.y[idx])

    @property
    def digest(self) -> str:
        return digest(self.x, self.y)

    def head(self, n: int | None) -> "TensorData":
        return self if n is None or n >= len(self) else self.subset(slice(0, n))


def digest(*tensors: torch.Tensor) -> str:
    """A short content hash of tensors (cache keys for data that is not a named split)."""
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def dataset_info(name: str) -> DatasetInfo:
    if name not in DATASETS:
        raise ValueError(f"dataset={name!r} is not known; accepted values: {sorted(DATASETS)}")
    return DATASETS[name]


def data_root() -> Path:
    """``$WMLIB_DATA`` if set, else ``$WMLIB_CACHE/data`` (where downloads go)."""
    env = os.environ.get("WMLIB_DATA")
    return Path(env).expanduser().resolve() if env else cache_dir() / "data"


def downloads_allowed() -> bool:
    flag = os.environ.get("WMLIB_DOWNLOAD")
    if flag is not None:
        return flag.lower() in ("1", "true", "yes")
    return "WMLIB_DATA" not in os.environ


def _missing(name: str, root: Path) -> DatasetMissing:
    return DatasetMissing(
        f"dataset {name!r} not found under WMLIB_DATA={root} (expected layout: {_LAYOUT[name]}). "
        "Set the environment variable WMLIB_DATA to a folder holding it (e.g. ../shared/data), "
        "or set WMLIB_DOWNLOAD=1 on a machine that is online to let torchvision download it.")


def _decode_image_folder(folder: Path) -> TensorData:
    import numpy as np
    from PIL import Image
    from torchvision.datasets import ImageFolder

    ds = ImageFolder(str(folder))
    xs = np.stack([np.asarray(Image.open(p).convert("RGB")) for p, _ in ds.samples])
    x = torch.from_numpy(xs).permute(0, 3, 1, 2).contiguous()
    return TensorData(x, torch.tensor(ds.targets, dtype=torch.int64))


SOURCES = {
    "lossless": "the official CIFAR-10 pixels (cifar10-lossless arrays)",
    "torchvision": "torchvision's files (official pixels)",
    "jpeg": "a JPEG re-encoded copy (lossy: expect a point or two less accuracy)",
}


def source(name: str) -> str:
    """Which copy of dataset ``name`` :func:`load` reads: ``lossless`` (CIFAR-10's exact arrays),
    ``torchvision`` (its own files or a download) or ``jpeg`` (CIFAR-10's lossy fallback).

    Part of every trained model's cache key, and named on every page, so a number is never
    silently mixed across copies."""
    dataset_info(name)
    root = data_root()
    if name == "cifar10":
        if (root / "cifar10-lossless" / "x_train.npy.xz").exists():
            return "lossless"
        if not (root / "cifar-10-batches-py").exists() and (root / "cifar10-jpeg" / "train").is_dir():
            return "jpeg"
    return "torchvision"


def _read_xz_array(path: Path):
    import io
    import lzma

    import numpy as np
    with open(path, "rb") as f:
        return np.load(io.BytesIO(lzma.decompress(f.read())), allow_pickle=False)


def _decode_lossless(folder: Path, train: bool) -> TensorData:
    part = "train" if train else "test"
    x = torch.from_numpy(_read_xz_array(folder / f"x_{part}.npy.xz")).permute(0, 3, 1, 2).contiguous()
    y = torch.from_numpy(_read_xz_array(folder / f"y_{part}.npy.xz").astype("int64")).reshape(-1)
    if x.dtype != torch.uint8 or x.shape[1:] != (3, 32, 32) or len(x) != len(y):
        raise ValueError(f"{folder} does not hold CIFAR-10 uint8 arrays (N, 32, 32, 3): got "
                         f"x {tuple(x.shape)} {x.dtype}, y {tuple(y.shape)}")
    return TensorData(x, y)


def _load_uncached(name: str, train: bool, root: Path) -> TensorData:
    import torchvision.datasets as tvd

    download = downloads_allowed()
    if name in ("mnist", "fashion-mnist"):
        cls = tvd.MNIST if name == "mnist" else tvd.FashionMNIST
        try:
            ds = cls(str(root), train=train, download=download)
        except RuntimeError as err:
            raise _missing(name, root) from err
        return TensorData(ds.data.unsqueeze(1).contiguous(), ds.targets.long())
    if name == "cifar10":
        if source(name) == "lossless":
            return _decode_lossless(root / "cifar10-lossless", train)
        if source(name) == "jpeg":
            return _decode_image_folder(root / "cifar10-jpeg" / ("train" if train else "test"))
    cls = tvd.CIFAR10 if name == "cifar10" else tvd.CIFAR100
    try:
        ds = cls(str(root), train=train, download=download)
    except RuntimeError as err:
        raise _missing(name, root) from err
    x = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()
    return TensorData(x, torch.tensor(ds.targets, dtype=torch.int64))


def load(name: str, split: str = "train") -> TensorData:
    """The whole ``split`` ('train' or 'test') of dataset ``name``, decoded once and cached."""
    dataset_info(name)
    if split not in ("train", "test"):
        raise ValueError(f"split={split!r} is not known; accepted values: ['test', 'train']")
    root = data_root()
    path = cache_dir() / "tensors" / f"{name}-{source(name)}-{split}.pt"
    if path.exists():
        d = torch.load(path, weights_only=True)
        return TensorData(d["x"], d["y"])
    data = _load_uncached(name, split == "train", root)
    atomic_save({"x": data.x, "y": data.y}, path)
    return data


def require(name: str) -> None:
    """Stop with the message that names what is missing when dataset ``name`` is neither under
    ``$WMLIB_DATA`` nor downloadable (checks by loading its test split, which is cached)."""
    load(name, "test")


@dataclass
class Splits:
    """Owner's training data, the attacker's data (never seen by the owner) and the evaluation set.

    The test set is split in two halves with a fixed permutation: the attacker fine-tunes on one,
    every accuracy after an attack is measured on the other (the reading of Adi et al. 2018).
    """

    train: TensorData
    attack: TensorData
    test: TensorData       # the whole test set (functionality tables)
    eval: TensorData       # the half of the test set the attacker did not see


def splits(name: str, n_train: int | None = None, n_attack: int | None = None,
           n_test: int | None = None) -> Splits:
    """Owner/attacker/eval splits; sizes (from the profile) cut each part to its first n items."""
    train, test = load(name, "train"), load(name, "test")
    g = torch.Generator().manual_seed(0)
    # cut the shuffled indices (``[:None]`` keeps all), then copy only the images kept
    train = train.subset(torch.randperm(len(train), generator=g)[:n_train])
    perm = torch.randperm(len(test), generator=g)
    half = len(test) // 2
    return Splits(train, test.subset(perm[:half][:n_attack]), test.subset(perm[:n_test]),
                  test.subset(perm[half:][:n_test]))


def to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 images → float in [0, 1]."""
    return x.float().div_(255) if x.dtype == torch.uint8 else x


def augment(x: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """CIFAR augmentation on a batch: random crop with zero padding ``pad``, horizontal flip."""
    n, c, h, w = x.shape
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    rows = (dy.view(n, 1) + torch.arange(h)).view(n, 1, h, 1).expand(n, c, h, w + 2 * pad)
    out = padded.gather(2, rows.to(x.device))
    cols = (dx.view(n, 1) + torch.arange(w)).view(n, 1, 1, w).expand(n, c, h, w)
    out = out.gather(3, cols.to(x.device))
    flip = (torch.rand(n, generator=generator) < 0.5).to(x.device)
    return torch.where(flip.view(n, 1, 1, 1), out.flip(-1), out)


TRANSFER_TASKS = {
    "fashion-mnist": "Fashion-MNIST (a new 10-class task on 28×28 grey images), from MNIST",
    "cifar10-permuted": ("the CIFAR-10 test half the owner never saw, with its 10 labels permuted "
                         "(a new head over same-kind natural images; offline stand-in for STL-10)"),
}


@dataclass
class TransferTask:
    train: TensorData
    test: TensorData
    classes: int
    description: str


def transfer_task(name: str, n_train: int | None = None, n_test: int | None = None) -> TransferTask:
    """The new task of a transfer-learning attack (Adi et al. use CIFAR-10 → STL-10, not offline)."""
    if name not in TRANSFER_TASKS:
        raise ValueError(f"transfer_dataset={name!r} is not known; accepted values: {sorted(TRANSFER_TASKS)}")
    if name == "fashion-mnist":
        s = splits("fashion-mnist", n_train=n_train, n_test=n_test)
        return TransferTask(s.train, s.test, 10, TRANSFER_TASKS[name])
    s = splits("cifar10", n_attack=n_train, n_test=n_test)
    perm = torch.randperm(10, generator=torch.Generator().manual_seed(1))
    relabel = lambda t: TensorData(t.x, perm[t.y])  # noqa: E731
    return TransferTask(relabel(s.attack), relabel(s.eval), 10, TRANSFER_TASKS[name])
