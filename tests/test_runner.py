from pathlib import Path

import pytest

from wmlib import profiles, results, runner
from wmlib.results import Row


def test_pairs_and_errors():
    assert ("adi2018", "cifar10") in runner.pairs()
    assert runner.pairs(["adi2018"], ["mnist"]) == [("adi2018", "mnist")]
    with pytest.raises(ValueError, match="paper=.*accepted values"):
        runner.pairs(["nope2020"])
    with pytest.raises(ValueError, match="profile=.*smoke"):
        profiles.get("adi2018", "fast", "mnist")
    with pytest.raises(ValueError, match="dataset=.*accepted values"):
        profiles.get("adi2018", "cpu", "svhn")


def test_every_pair_has_every_profile():
    for paper, dataset in runner.pairs() + runner.draft_pairs():
        for profile in profiles.PROFILE_NAMES:
            p = profiles.get(paper, profile, dataset)
            assert p["expect"], (paper, dataset, profile)     # each profile states its targets


def test_summary_is_generated_from_records(tmp_path):
    results.write("adi2018", "mnist", "cpu",
                  [Row("FROMSCRATCH trigger acc", 99.0, None, note="x", status="not in paper"),
                   Row("NO-WM test acc", 98.9, 93.42, status="qualitatively")],
                  folder=tmp_path / "results")
    text = runner.write_summary(tmp_path).read_text()
    assert "| adi2018 | mnist | FROMSCRATCH trigger acc | — | 99.0 | cpu | not in paper | x |" in text
    assert "| adi2018 | mnist | NO-WM test acc | 93.4 | 98.9 | cpu | qualitatively |  |" in text
    assert (tmp_path / "timings.md").exists()


def test_smoke_notebooks_are_parametrised_not_executed(tmp_path):
    import nbformat
    paths = runner.prepare_smoke(tmp_path)
    assert len(paths) == len(runner.pairs()) + len(runner.draft_pairs())   # drafts are smoke-tested too
    nb = nbformat.read(paths[0], as_version=4)
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert injected and 'profile = "smoke"' in injected[0].source
    assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code")


def test_status_of_a_number():
    assert results.status(99.0, 100.0, tolerance=2, holds=True) == "reproduced"
    assert results.status(81.0, 93.4, tolerance=2, holds=True) == "qualitatively"
    assert results.status(60.0, 93.4, tolerance=2, holds=False) == "not yet"
    assert results.status(98.9, None, tolerance=2, holds=True) == "not in paper"
    with pytest.raises(ValueError, match="status="):
        Row("x", 1.0, status="done")


def test_failed_notebook_is_kept_aside_not_published(tmp_path, monkeypatch):
    import papermill

    def fail_midway(nb, path, **kw):
        Path(path).write_text("{}")                 # papermill writes as it goes, then a cell raises
        raise RuntimeError("cell 12 raised")

    monkeypatch.setattr(papermill, "execute_notebook", fail_midway)
    with pytest.raises(RuntimeError, match="cell 12"):
        runner.execute("adi2018", "mnist", "smoke", tmp_path)
    assert (tmp_path / "adi2018-mnist.failed.ipynb").exists()
    assert not (tmp_path / "adi2018-mnist.ipynb").exists()              # nothing for the book
    assert not list(tmp_path.glob(".*part*"))
