"""Fixtures and helpers of the suite, and how ``make test`` shares the cores (pytest-xdist,
``-n <cores + 1> --dist loadscope``): what must run in one process is one unit of work, and the longest
units are handed out first.

The units: a notebook's cells (one kernel); the smoke site (``SITE_FILES``: one smoke grid, one
book build); otherwise a test module (its module fixtures train once; the paper profile's tiny
runs share one kernel). xdist's ``loadgroup`` marks cannot say this under pytest 9, which
ignores the node ids xdist rewrites, so the scheduler splits node ids itself.

Each smoke notebook runs once: nbval executes its cells, and what they printed and drew is kept
(:class:`NbvalKeeper`) as an executed notebook with its results record; the smoke site
is built from those (it waits for the notebooks that other workers run) and executes a notebook
itself only when nbval does not run it in this session (``pytest tests`` alone).
"""
import copy
import os
import shutil
import time
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
    return file


COST = {
    "tests/test_verify.py": 220, "site": 170, "tests/test_paper_profile.py": 180, "tartaglione2020-cifar10.ipynb": 139,
    "ipcert2023-cifar10.ipynb": 135, "bansal2022-cifar10.ipynb": 120, "ipcert2023-mnist.ipynb": 118,
    "bansal2022-mnist.ipynb": 110, "tests/test_grid.py": 100, "adi2018-cifar10.ipynb": 80,
    "lemerrer2020-mnist.ipynb": 70, "tartaglione2020-mnist.ipynb": 67, "adi2018-mnist.ipynb": 59,
    "matrix-cifar10.ipynb": 44, "tests/test_align.py": 39, "tests/test_tartaglione2020_steps.py": 34,
    "tests/test_train.py": 33, "tests/test_attacks.py": 30, "matrix-mnist.ipynb": 26, "tests/test_ipcert.py": 26,
    "tests/test_certspace.py": 25, "tests/test_adi2018_steps.py": 23, "tests/test_adi.py": 21,
    "tests/test_bansal.py": 21, "tests/test_zero_cost.py": 20,
}
"""Seconds each unit took in a CI run (a 2-core machine, three workers; ``tests/timeline.py``): the
scheduler hands out the longest first, so that no worker is left with a long unit at the end."""


def _cost(u: str) -> float:
    return COST.get(Path(u).name if u.endswith(".ipynb") else u, 5.0)


def _rank(nodeid: str, notebooks: set[str]) -> tuple:
    """Sort key: the units longest first (:data:`COST`), except the site: its grid needs only the
    seed 0 of :data:`GRID_PAIRS`' notebooks, so it goes right after them, and runs while the other
    workers finish the rest (its book waits for them, leaving its core to them)."""
    u = unit(nodeid)
    if u == "site":
        grid = {f"{p}-{d}.ipynb" for p in GRID_PAIRS[0] for d in GRID_PAIRS[1]}
        needs = [n for n in notebooks if Path(n).name in grid]
        return (-min(_cost(n) for n in needs) + 0.5, u) if needs else (0.0, u)
    return (-_cost(u), u)


def pytest_collection_modifyitems(config, items):
    notebooks = {unit(it.nodeid) for it in items if unit(it.nodeid).endswith(".ipynb")}
    position = {id(it): i for i, it in enumerate(items)}
    items.sort(key=lambda it: (_rank(it.nodeid, notebooks), position[id(it)]))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """With ``WMLIB_TIMELINE=<file>``: one line per test (worker, start, end, node id), to see how the
    workers share the wall time (``python tests/timeline.py <file>``)."""
    start = time.time()
    yield
    path = os.environ.get("WMLIB_TIMELINE")
    if path:
        with open(path, "a") as f:
            f.write(f"{os.environ.get('PYTEST_XDIST_WORKER', 'main')}\t{start:.2f}\t{time.time():.2f}\t{item.nodeid}\n")


# ----------------------------------------------------------------------------- nbval's executions, kept
_CELLS: dict[str, dict] = {}
"""Per notebook run by nbval in this process: each cell's outputs, and whether a cell failed."""


def _is_cell(item) -> bool:
    return type(item).__name__ == "IPyNbCell"


def nbval_folder(config) -> Path:
    """Where this session's nbval runs leave their executed notebooks (shared by the workers)."""
    base = config._tmp_path_factory.getbasetemp()
    return (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "nbval-executed"


class NbvalKeeper:
    """Keeps what nbval's cells print and draw (a plugin, not a conftest hook: the notebooks lie
    outside ``tests/``, where this conftest's per-test hooks do not reach)."""

    @staticmethod
    def pytest_collection_finish(session):
        """The notebooks nbval runs whole in this session (every code cell selected)."""
        cells: dict[str, list] = {}
        for item in session.items:
            if _is_cell(item):
                cells.setdefault(Path(str(item.parent.fspath)).name, []).append(item)
        whole = {}
        for name, its in cells.items():
            nb = its[0].parent
            if len(its) == sum(c.cell_type == "code" for c in nb.nb.cells):
                whole[name] = max(its, key=lambda i: i.cell_num).nodeid
        session.config._wmbook_nbval = whole

    @staticmethod
    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(item, call):
        report = (yield).get_result()
        if not _is_cell(item):
            return
        name = Path(str(item.parent.fspath)).name
        state = _CELLS.setdefault(name, {"outputs": {}, "failed": False})
        state["failed"] |= report.failed
        if call.when == "call":
            state["outputs"][item.cell_num] = list(item.test_outputs or [])
        if call.when == "teardown" and getattr(item.config, "_wmbook_nbval", {}).get(name) == item.nodeid:
            _keep_executed(item.parent, state, nbval_folder(item.config))


def pytest_configure(config):
    config.pluginmanager.register(NbvalKeeper(), "wmbook-nbval-keeper")
    if config.pluginmanager.hasplugin("xdist"):     # (a hook xdist defines: unknown without it, -p no:xdist)
        config.pluginmanager.register(UnitScheduler(), "wmbook-units")


def _keep_executed(nbfile, state: dict, folder: Path) -> None:
    """The notebook as nbval ran it (outputs in place) and its results record, into ``folder``; a
    ``.failed`` marker instead when a cell failed."""
    import nbformat

    from wmlib import results
    src = Path(str(nbfile.fspath))
    folder.mkdir(parents=True, exist_ok=True)
    if state["failed"]:
        (folder / f"{src.name}.failed").touch()
        return
    nb = copy.deepcopy(nbfile.nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    for n, cell in enumerate(code):
        cell.outputs = state["outputs"].get(n, [])
        cell.execution_count = n + 1
        for out in cell.outputs:
            if out.output_type == "execute_result":
                out.execution_count = n + 1
    paper, dataset = src.stem.split("-", 1)
    record = results.results_path(paper, dataset, "smoke", src.parent / "results", 0)
    (folder / "results").mkdir(exist_ok=True)
    shutil.copy2(record, folder / "results" / record.name)
    tmp = folder / f".{src.name}.part"
    nbformat.write(nb, tmp)
    os.replace(tmp, folder / src.name)


def nbval_executed(config, names: list[str], timeout: float = 3600) -> Path | None:
    """The folder of nbval's executed ``names`` once every one of them is there (other workers may
    still be running some), or None when nbval does not run them all in this session."""
    if not set(names) <= set(getattr(config, "_wmbook_nbval", {})):
        return None
    folder = nbval_folder(config)
    deadline = time.time() + timeout
    while True:
        failed = [n for n in names if (folder / f"{n}.failed").exists()]
        if failed:
            pytest.fail(f"the smoke site needs notebooks that failed under nbval: {failed}")
        if all((folder / n).exists() for n in names):
            return folder
        if time.time() > deadline:
            pytest.fail(f"nbval did not finish {[n for n in names if not (folder / n).exists()]} in {timeout:.0f} s")
        time.sleep(2)


class UnitScheduler:
    """xdist's load-scope scheduling over our units (:func:`unit`)."""

    @staticmethod
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
def smoke_runs(request, tmp_path_factory) -> dict[str, Path]:
    """Smoke runs: every notebook once at seed 0 (nbval's runs of this session, or in this process
    when nbval does not run them), and seed 1 of :data:`GRID_PAIRS` through the grid's local
    executor (a process per job), in folders of their own: the spread over two seeds."""
    from wmlib import results, runner
    root = tmp_path_factory.mktemp("runs")
    names = [f"{p}-{d}.ipynb" for p, d in runner.pairs()]
    grid = runner.pairs(*GRID_PAIRS)
    # seed 1 of the grid needs only the grid's seed-0 records (which say that seed 1 is not a page):
    # it runs as soon as nbval has them, while the other workers finish the other notebooks
    early = nbval_executed(request.config, [f"{p}-{d}.ipynb" for p, d in grid])
    if early is None:
        outcomes = runner.run("smoke", root / "inprocess", seeds=(0,))
        assert all(o.ok for o in outcomes), [o.error for o in outcomes if not o.ok]
    seed0 = early if early is not None else root / "inprocess"
    (root / "local" / "results").mkdir(parents=True)
    for p, d in grid:
        shutil.copy2(results.results_path(p, d, "smoke", seed0 / "results", 0), root / "local" / "results")
    outcomes = runner.run("smoke", root / "local", *GRID_PAIRS, seeds=(1,), executor="local")
    assert all(o.ok for o in outcomes), [(o.job.label, o.error, o.log) for o in outcomes if not o.ok]
    if early is not None:
        kept = nbval_executed(request.config, names)
        if kept is not None:
            shutil.copytree(kept, root / "inprocess")
        else:               # nbval runs the grid's notebooks but not every one: the rest here
            outcomes = runner.run("smoke", root / "inprocess", seeds=(0,))
            assert all(o.ok for o in outcomes), [o.error for o in outcomes if not o.ok]
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


def near_tie_share(model, x: torch.Tensor, rel: float = 1e-4) -> float:
    """The share (%) of images ``x`` whose two largest logits (fp32) lie within ``rel`` of the
    largest logit's size: the only predictions an edit that keeps every output to float tolerance
    may flip in fp32, rounding deciding them (an untrained network on noise has a few)."""
    with torch.no_grad():
        z = model.eval()(D.to_float(x))
    top = z.topk(2, dim=1).values
    return 100.0 * float(((top[:, 0] - top[:, 1]) <= rel * z.abs().max()).float().mean())
