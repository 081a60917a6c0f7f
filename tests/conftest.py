import os
from pathlib import Path

import pytest
import torch

from wmlib import data as D


def _has(path: str) -> bool:
    root = os.environ.get("WMLIB_DATA")
    return bool(root) and (Path(root) / path).exists()


needs_mnist = pytest.mark.skipif(not _has("MNIST/raw"), reason="WMLIB_DATA with MNIST/raw not set")
needs_cifar = pytest.mark.skipif(not (_has("cifar10-lossless") or _has("cifar10-jpeg") or _has("cifar-10-batches-py")),
                                 reason="WMLIB_DATA with CIFAR-10 not set")
needs_trigger = pytest.mark.skipif(not _has("adi-trigger"), reason="WMLIB_DATA with adi-trigger not set")


@pytest.fixture
def model_cache(tmp_path, monkeypatch):
    """An empty cache for trained models; the decoded dataset tensors stay shared (they are slow)."""
    from wmlib import cache
    shared = cache.cache_dir()
    monkeypatch.setenv("WMLIB_CACHE", str(tmp_path / "cache"))
    (tmp_path / "cache").mkdir()
    if (shared / "tensors").exists():
        (tmp_path / "cache" / "tensors").symlink_to(shared / "tensors")
    return tmp_path / "cache"


def random_data(dataset: str, n: int, seed: int = 0) -> D.TensorData:
    info = D.dataset_info(dataset)
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, info.channels, info.size, info.size), generator=g, dtype=torch.uint8)
    return D.TensorData(x, torch.randint(0, info.classes, (n,), generator=g))


@pytest.fixture(scope="session")
def site(tmp_path_factory) -> Path:
    """The book built strictly (warnings are errors) from freshly executed smoke notebooks."""
    from wmlib import runner
    root = tmp_path_factory.mktemp("book")
    executed = root / "executed"
    for paper, dataset in runner.pairs():
        runner.execute(paper, dataset, "smoke", executed, progress=False)
    return runner.build_book(runner.stage(root / "src", executed), strict=True)


class LookupModel(torch.nn.Module):
    """A 'model' that answers a fixed label for each of the given images (0 for any other)."""

    def __init__(self, x, labels, classes=10):
        super().__init__()
        self.keys = {row.numpy().tobytes(): int(l) for row, l in zip(D.to_float(x), labels)}
        self.classes = classes

    def forward(self, x):
        out = torch.zeros(len(x), self.classes)
        for i, row in enumerate(x):
            out[i, self.keys.get(row.numpy().tobytes(), 0)] = 1
        return out


def template_task(n: int, seed: int) -> D.TensorData:
    """MNIST-shaped images: one fixed random template per class, blended with noise."""
    templates = torch.rand(10, 1, 28, 28, generator=torch.Generator().manual_seed(123))
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 10, (n,), generator=g)
    x = 0.6 * templates[y] + 0.4 * torch.rand(n, 1, 28, 28, generator=g)
    return D.TensorData((x * 255).round().to(torch.uint8), y)
