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


GRID_PAIRS = (["adi2018"], ["mnist"])
"""The notebooks the site's two-seed grid runs through the engine (submitit's local executor)."""


@pytest.fixture(scope="session")
def smoke_runs(tmp_path_factory) -> dict[str, Path]:
    """Smoke runs: every notebook in this process (seed 0), and a two-seed grid of
    :data:`GRID_PAIRS` through the local executor (a process per job), in folders of their own."""
    import shutil

    from wmlib import runner
    root = tmp_path_factory.mktemp("runs")
    outcomes = runner.run("smoke", root / "inprocess", seeds=(0,))
    assert all(o.ok for o in outcomes), [o.error for o in outcomes if not o.ok]
    outcomes = runner.run("smoke", root / "local", *GRID_PAIRS, seeds=(0, 1), executor="local")
    assert all(o.ok for o in outcomes), [(o.job.label, o.error, o.log) for o in outcomes if not o.ok]
    executed = root / "executed"          # the site: every page, and seed 1 of the grid's notebooks
    shutil.copytree(root / "inprocess", executed)
    shutil.copytree(root / "local" / "seeds", executed / "seeds")
    for rec in (root / "local" / "results").glob("*-seed1.json"):
        shutil.copy2(rec, executed / "results" / rec.name)
    return {"inprocess": root / "inprocess", "local": root / "local", "executed": executed}


@pytest.fixture(scope="session")
def site(smoke_runs, tmp_path_factory) -> Path:
    """The book built strictly (warnings are errors) from freshly executed smoke notebooks."""
    from wmlib import runner
    root = tmp_path_factory.mktemp("book")
    return runner.build_book(runner.stage(root / "src", smoke_runs["executed"]), strict=True)


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
