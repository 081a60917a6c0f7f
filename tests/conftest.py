"""Fixtures and helpers of the suite, and how ``make test`` shares the cores (pytest-xdist,
``-n auto --dist loadscope``): what must run in one process is one unit of work, and the longest
units are handed out first.

The units: a notebook's cells (one kernel); the smoke site (``SITE_FILES``: one smoke grid, one
book build); each paper-profile run alone (long and independent); otherwise a test module (its
module fixtures train once). xdist's ``loadgroup`` marks cannot say this under pytest 9, which
ignores the node ids xdist rewrites, so the scheduler splits node ids itself.
"""
import os
from pathlib import Path

import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):
    # each worker gets its share of the cores, and so do the notebook kernels and jobs it starts
    # (they inherit the environment): no worker's threads wait on another's
    _share = max(1, (os.cpu_count() or 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    os.environ.setdefault("OMP_NUM_THREADS", str(_share))
    os.environ.setdefault("MKL_NUM_THREADS", str(_share))

import torch  # noqa: E402  (after the thread count is set)

from wmlib import data as D  # noqa: E402

SITE_FILES = ("test_book.py", "test_browser.py")
"""The tests on the smoke site (the ``smoke_runs`` and ``site`` fixtures): one unit, one build."""


def unit(nodeid: str) -> str:
    """The unit of work ``nodeid`` belongs to."""
    file = nodeid.partition("::")[0]
    name = Path(file).name
    if name in SITE_FILES:
        return "site"
    if name == "test_paper_profile.py" and "[" in nodeid:
        return nodeid
    return file


def _rank(nodeid: str, order: list[str]) -> tuple:
    """Sort key: the notebooks first (in the reverse of the site's order: the smoke models they
    train are in the cache when the site's runs ask, and the two meet in the middle where they
    overlap), then the site, the paper-profile runs, and the modules."""
    u = unit(nodeid)
    name = Path(u).name
    if name.endswith(".ipynb"):
        return (0, order.index(name) if name in order else len(order), u)
    return ({"site": 1}.get(u, 2 if "test_paper_profile.py" in u else 3), 0, u)


def pytest_collection_modifyitems(config, items):
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    from wmlib import papers
    order = [f"{p}-{d}.ipynb" for p, d in reversed(papers.pairs())]
    position = {id(it): i for i, it in enumerate(items)}
    items.sort(key=lambda it: (_rank(it.nodeid, order), position[id(it)]))


def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class Units(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return unit(nodeid)

    return Units(config, log)


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
    from wmlib.files import cache_dir
    shared = cache_dir()
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
