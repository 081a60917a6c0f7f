"""The ``paper`` profile cannot rot unseen: every notebook runs at the paper profile's settings
(ResNet-18 and all) shrunk by ``tiny()`` — the same models (ResNet-18 at 1/8 width: the same
layers and blocks) and every step, a few hundred images,
one epoch, two noise draws — on the CPU. Each paper runs once per distinct set of paper-profile
models (MNIST and CIFAR-10 share Bansal et al.'s and IPCert's ResNet-18: one run reaches both; the
datasets' own code paths run at ``smoke``); every dataset's tiny settings are built and checked."""
import dataclasses

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
    """The architectures a notebook trains at ``settings`` (its ``model``/``models`` settings)."""
    found = tuple(getattr(settings, f.name) for f in dataclasses.fields(settings) if f.name in ("model", "models"))
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


@pytest.mark.parametrize("paper,dataset", PAIRS, ids=[f"{p}-{d}" for p, d in PAIRS])
def test_paper_profile_runs_tiny(paper, dataset, tmp_path, model_cache):
    if not _present(dataset):
        pytest.skip(f"{dataset} is not under WMLIB_DATA (needs online data)")
    full = papers.settings(paper, "paper", dataset)
    tiny = full.tiny()
    assert _models(tiny, dataset) == _narrow(_models(full, dataset))   # the paper's own models (ResNet-18 narrow)
    out = runner.execute(paper, dataset, "paper", tmp_path, tiny=True, progress=False)
    assert out.exists()
    assert (tmp_path / "results" / f"{paper}-{dataset}-paper-seed0.json").exists()
