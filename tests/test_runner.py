import re
from pathlib import Path

import pytest

from wmlib import papers, report, results, runner
from wmlib.results import Row


def test_pairs_and_errors():
    assert ("adi2018", "cifar10") in runner.pairs()
    assert runner.pairs(["adi2018"], ["mnist"]) == [("adi2018", "mnist")]
    with pytest.raises(ValueError, match="paper=.*accepted values"):
        runner.pairs(["nope2020"])
    with pytest.raises(ValueError, match="profile=.*smoke"):
        papers.settings("adi2018", "fast", "mnist")
    with pytest.raises(ValueError, match="dataset=.*accepted values"):
        papers.settings("adi2018", "cpu", "svhn")


def test_every_pair_has_every_profile():
    for paper, dataset in runner.pairs():
        for profile in papers.PROFILES:
            if paper in papers.STUDIES:          # a study states no paper's targets: it measures
                assert papers.settings(paper, profile, dataset).table().shape[0] > 3
                continue
            s = papers.settings(paper, profile, dataset)
            assert s.targets, (paper, dataset, profile)      # each profile states its targets


def test_bad_command_line_input_is_one_line_not_a_traceback(capsys):
    with pytest.raises(SystemExit) as err:
        runner.main(["run", "--profile", "smoke", "--paper", "nope2020"])
    assert err.value.code == 2
    msg = capsys.readouterr().err.strip().splitlines()
    assert len(msg) == 1 and "paper='nope2020'" in msg[0] and "accepted values" in msg[0]


def test_summary_is_generated_from_records(tmp_path):
    from wmlib import claims
    cid, claim = next((c.id, c) for c in claims.load("adi2018").values()
                      if c.value is not None and c.attempted and c.unit == "%")
    results.write("adi2018", "cifar10", "cpu",
                  [results.ours_only("FROMSCRATCH trigger acc, our extra", 99.0, "%", note="x"),
                   results.claimed("adi2018", cid, claim.value - 20, holds=True, profile="cpu")],
                  folder=tmp_path / "results")
    text = re.sub(r" +", " ", runner.write_summary(tmp_path).read_text())
    assert "| adi2018, cifar10 | FROMSCRATCH trigger acc, our extra (%) | — | 99.0 | not in paper | cpu |" in text
    assert f"| {claim.value:.1f} | {claim.value - 20:.1f} | qualitatively | cpu |" in text
    overview = report.paper_overview(results.read_all(tmp_path / "results"), papers.PAPERS)
    overview.index = overview.index.str.extract(r"`(.+) <", expand=False)     # each paper links to its page
    assert "{doc}`Adi et al. 2018 </book/adi2018>`" in text
    assert overview.loc["Adi et al. 2018", "regenerated"] == 1
    assert overview.loc["Adi et al. 2018", "how they compare"] == "1 qualitatively"
    numbers = sum(c.value is not None for c in claims.load("adi2018").values())
    assert overview.loc["Adi et al. 2018", "published"].startswith(f"{numbers} numbers")
    assert overview.loc["Tartaglione et al. 2020", "published"].startswith(
        "qualitative only: the poster gives no numbers")
    assert (tmp_path / "landing.png").stat().st_size > 5000        # the figure was drawn
    assert "../build/executed/landing.png" in text
    assert (tmp_path / "timings.md").exists()


def test_smoke_notebooks_are_parametrised_not_executed(tmp_path):
    import nbformat
    paths = runner.prepare_smoke(tmp_path)
    assert len(paths) == len(runner.pairs())
    nb = nbformat.read(paths[0], as_version=4)
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert injected and 'profile = "smoke"' in injected[0].source
    assert f'results_dir = "{(tmp_path / "results").resolve()}"' in injected[0].source   # nbval's records
    assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code")


def test_status_of_a_number():
    assert results.status(99.0, 100.0, tolerance=2, holds=True) == "reproduced"
    assert results.status(81.0, 93.4, tolerance=2, holds=True) == "qualitatively"
    assert results.status(60.0, 93.4, tolerance=2, holds=False) == "not yet"
    assert results.status(99.0, 100.0, tolerance=2, holds=True, profile="smoke") == "not claimed at smoke"
    assert report.format_value(20.0, "ℓ2") == "20" and report.format_value(15.76, "ℓ2") == "15.8" and report.format_value(float("nan"), "%") == "—"
    assert report.format_value(0.123456, "MR") == "0.12" and report.format_value(1234, "count") == "1,234"
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
