"""The ``paper`` profile cannot rot unseen: every notebook runs at the paper profile's settings
(ResNet-18 and all) shrunk by ``tiny()`` — the same models and every step, a few hundred images,
one epoch, two noise draws — on the CPU, for every dataset of that profile whose data is here."""
import pytest

from conftest import needs_cifar, needs_mnist, needs_trigger
from wmlib import data, papers, runner

pytestmark = [needs_mnist, needs_cifar, needs_trigger]


def _present(dataset: str) -> bool:
    try:
        data.require(dataset)
        return True
    except data.DatasetMissing:
        return False


PAIRS = [(p, d) for p, d in papers.pairs(profile="paper")]


@pytest.mark.parametrize("paper,dataset", PAIRS, ids=[f"{p}-{d}" for p, d in PAIRS])
def test_paper_profile_runs_tiny(paper, dataset, tmp_path, model_cache):
    if not _present(dataset):
        pytest.skip(f"{dataset} is not under WMLIB_DATA (needs online data)")
    full = papers.settings(paper, "paper", dataset)
    tiny = full.tiny()
    assert getattr(tiny, "model", None) == getattr(full, "model", None)   # the paper's own models
    out = runner.execute(paper, dataset, "paper", tmp_path, tiny=True, progress=False)
    assert out.exists()
    assert (tmp_path / "results" / f"{paper}-{dataset}-paper-seed0.json").exists()
