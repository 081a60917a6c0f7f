"""The ``paper`` profile cannot rot unseen: every notebook runs at the paper profile's settings
(ResNet-18 and all) shrunk by ``tiny()`` — the same models (ResNet-18, ResNet-32 and ALL-CNN-C at
1/8 width: the same layers and blocks) and every step, a few hundred images,
one epoch, two noise draws — on the CPU. Each paper runs once per distinct set of paper-profile
models (MNIST and CIFAR-10 share Bansal et al.'s and IPCert's ResNet-18: one run reaches both; the
datasets' own code paths run at ``smoke``); every dataset's tiny settings are built and checked."""
import dataclasses
import os

import pytest

from conftest import needs_cifar, needs_mnist, needs_trigger
from wmlib import data, papers, runner
from wmlib.models import narrow

pytestmark = [needs_mnist, needs_cifar, needs_trigger]


def _present(dataset: str) -> bool:
    try:
        data.require(dataset)
        return True
    except data.DatasetMissing:
        return False


def _models(settings, dataset: str) -> tuple:
    """The architectures a notebook trains at ``settings`` (its ``model``/``models`` settings, through its
    ``network()`` where the settings name the paper's models and train another width of them)."""
    net = getattr(settings, "network", lambda m: m)
    found = tuple(getattr(settings, f.name) for f in dataclasses.fields(settings) if f.name in ("model", "models"))
    found = tuple(net(m) if isinstance(m, str) else tuple(net(x) for x in m) for m in found)
    return found or (dataset,)            # no model setting: the dataset decides what it trains


def _narrow(found: tuple) -> tuple:
    """The models a tiny run trains for a paper profile's (ResNet-18 at 1/8 width: the same layers)."""
    return tuple(narrow(m) if isinstance(m, str) else tuple(narrow(x) for x in m) for m in found)


def _paper_models(paper: str, dataset: str) -> tuple:
    return _models(papers.settings(paper, "paper", dataset), dataset)


ALL_PAIRS = papers.pairs(profile="paper")
PAIRS = list({(p, _paper_models(p, d)): (p, d) for p, d in reversed(ALL_PAIRS)}.values())[::-1]
"""One (paper, dataset) per paper and model set, the first dataset listed (MNIST before CIFAR)."""


def test_tiny_runs_reach_every_paper_profile_model_and_every_tiny_setting_builds():
    assert {(p, _paper_models(p, d)) for p, d in PAIRS} == {(p, _paper_models(p, d)) for p, d in ALL_PAIRS}
    assert ("tartaglione2020", "cifar10") in PAIRS and ("bansal2022", "cifar10") not in PAIRS
    for p, d in ALL_PAIRS:
        full = papers.settings(p, "paper", d)
        tiny = full.tiny()
        assert type(tiny) is type(full) and _models(tiny, d) == _narrow(_models(full, d))


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    """One kernel for every tiny run (``runner.execute(kernel=...)``: torch and the rest imported once,
    not per run), over an empty model cache of its own; the decoded datasets are shared."""
    from wmlib.files import cache_dir
    cache = tmp_path_factory.mktemp("tiny-cache")
    (cache_dir() / "tensors").mkdir(parents=True, exist_ok=True)
    (cache / "tensors").symlink_to(cache_dir() / "tensors")
    km = runner.shared_kernel({**os.environ, "WMLIB_CACHE": str(cache)})
    yield km
    km.shutdown_kernel(now=True)


def _run_in(km, code: str) -> str:
    """What ``code`` prints in kernel ``km`` (a client of its own, as papermill's)."""
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        out = []
        reply = kc.execute_interactive(code, timeout=60, output_hook=lambda m: out.append(m["content"].get("text", "")))
        assert reply["content"]["status"] == "ok", reply["content"]
        return "".join(out)
    finally:
        kc.stop_channels()


def test_a_shared_kernel_forgets_the_last_notebooks_names_not_its_modules(kernel):
    _run_in(kernel, "import wmlib; left = 1")
    runner.clear_kernel(kernel)
    assert _run_in(kernel, "import sys; print('left' in dir(), 'wmlib' in sys.modules)").split() == ["False", "True"]


@pytest.mark.parametrize("paper,dataset", PAIRS, ids=[f"{p}-{d}" for p, d in PAIRS])
def test_paper_profile_runs_tiny(paper, dataset, tmp_path, kernel):
    if not _present(dataset):
        pytest.skip(f"{dataset} is not under WMLIB_DATA (needs online data)")
    full = papers.settings(paper, "paper", dataset)
    tiny = full.tiny()
    assert _models(tiny, dataset) == _narrow(_models(full, dataset))   # the paper's own models, narrow
    out = runner.execute(paper, dataset, "paper", tmp_path, tiny=True, progress=False, kernel=kernel)
    assert out.exists()
    assert (tmp_path / "results" / f"{paper}-{dataset}-paper-seed0.json").exists()
