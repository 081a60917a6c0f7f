"""One shape for every paper: claims as data, typed settings, one verdict, one registry."""
import re
from dataclasses import dataclass

import pytest
import yaml

from wmlib import claims, papers, results, runner, settings
from wmlib.verdict import Verdict

ROOT = runner.ROOT


# ----------------------------------------------------------------------------- claims
def test_every_paper_has_a_valid_claims_file():
    for p in papers.PAPERS:
        cl = claims.load(p)
        assert len(cl) >= 5, p
        numbers = [c for c in cl.values() if c.value is not None]
        # a poster whose numbers did not survive (Tartaglione et al.) is read as statements
        assert numbers or all(c.statement for c in cl.values()), f"{p} publishes no number and no statement?"
        for c in cl.values():
            assert c.where, (p, c.id)


def test_unknown_claim_and_bad_entries_are_refused(tmp_path):
    with pytest.raises(claims.UnknownClaim, match="known ids"):
        claims.get("adi2018", "no-such-claim")
    bad = tmp_path / "x.yaml"
    bad.write_text(yaml.safe_dump({"paper": "x", "claims": [
        {"id": "a", "where": "p. 1", "dataset": "mnist", "quantity": "q", "unit": "%", "value": 1.0,
         "tolernce": 1}]}))
    with pytest.raises(ValueError, match="unknown fields.*tolernce"):
        claims._parse("x", bad)
    bad.write_text(yaml.safe_dump({"paper": "x", "claims": [
        {"id": "a", "where": "p. 1", "dataset": "mnist", "quantity": "q", "unit": "furlongs",
         "value": 1.0, "tolerance": 1}]}))
    with pytest.raises(ValueError, match="unit="):
        claims._parse("x", bad)


def _claim_ids_in(source: str) -> set[tuple[str, str]]:
    return set(re.findall(r'claimed\(\s*"(\w+)",\s*"([^"{}]+)"', source))


def test_every_claim_a_notebook_names_exists():
    """A notebook (or a paper module) that refers to an unknown claim fails here, before it runs."""
    found = set()
    for path in list((ROOT / "notebooks").glob("*.py")) + list((ROOT / "wmlib" / "papers").glob("*.py")):
        for paper, cid in _claim_ids_in(path.read_text()):
            claims.get(paper, cid)
            found.add((paper, cid))
    assert found, "no notebook refers to a claim by id"


def test_results_refuse_an_unknown_claim_and_guard_smoke(tmp_path):
    cid = next(c.id for c in claims.load("adi2018").values() if c.value is not None and c.attempted)
    c = claims.get("adi2018", cid)
    row = results.claimed("adi2018", cid, c.value, holds=True, profile="cpu")
    assert row.paper == c.value and row.status == "reproduced" and row.claim == cid
    assert results.claimed("adi2018", cid, c.value, holds=True, profile="smoke").status == \
        "not claimed at smoke"
    far = c.value + 10 * (c.tolerance or 1) + 1
    assert results.claimed("adi2018", cid, far, holds=True, profile="cpu").status == "qualitatively"
    assert results.claimed("adi2018", cid, far, holds=False, profile="cpu").status == "not yet"
    with pytest.raises(claims.UnknownClaim):
        results.write("adi2018", "mnist", "cpu", [results.Row("q", 1.0, claim="nope")], folder=tmp_path)
    assert not list(tmp_path.glob("*.json"))        # nothing half written


# ----------------------------------------------------------------------------- settings
def test_every_paper_has_typed_settings_for_every_profile():
    for p in [*papers.PAPERS.values(), *papers.STUDIES.values()]:
        for profile in settings.PROFILES:
            assert p.datasets(profile), (p.id, profile)
            for d in p.datasets(profile):
                s = p.settings(profile, d)
                assert isinstance(s, settings.Settings), (p.id, profile, d)
                assert s.table().shape[0] > 3
                with pytest.raises(ValueError, match="unknown setting.*accepted"):
                    s.replace(no_such_setting=1)
                assert hasattr(s, "tiny") and isinstance(s.tiny(), type(s))


def test_settings_reject_unknown_names_and_targets_name_their_fields():
    @dataclass(frozen=True)
    class T(settings.Targets):
        min_acc: float = 0.9

    @dataclass(frozen=True)
    class S(settings.Settings):
        lr: float = 0.1
        targets: T = T()

    with pytest.raises(ValueError, match=r"unknown setting\(s\) \['lrr'\]; accepted: \['lr', 'targets'\]"):
        S.make(lrr=0.2)
    assert S.make(lr=0.2).replace(lr=0.3).lr == 0.3
    with pytest.raises(ValueError, match="min_ac"):
        T(shown_only=("min_ac",))
    checks = settings.Checks("cpu", T(shown_only=("min_acc",)))
    checks.add("accuracy", False, "0.5", target="min_acc")     # shown only: does not fail
    checks.add("always", True, "1")
    checks.assert_all()
    checks.add("floor", False, "0.1", target=None)
    with pytest.raises(AssertionError, match="floor"):
        checks.assert_all()
    assert checks["accuracy"] is False and list(checks.table()["asserted"]) == ["shown only", "yes", "yes"]


def test_verdict():
    v = Verdict("adi", score=0.93, threshold=0.2, p_value=1e-40, n=100)
    assert v.passed and v.matches == 93 and "claimed" in v.describe()
    assert not Verdict("frontier", 0.5, 0.59, n=100).passed


# ----------------------------------------------------------------------------- registry
def test_registry_drives_the_runner_and_the_table_of_contents():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    chapters = {c["file"]: c for c in toc["chapters"]}
    for p in [*papers.PAPERS.values(), *papers.STUDIES.values()]:
        assert p.notebook.exists(), p.notebook
        assert (ROOT / f"{p.page}.md").exists()
        assert p.page in chapters, f"{p.page} is not in _toc.yml"
        listed = [s["file"] for s in chapters[p.page].get("sections", [])]
        assert listed[:len(p.parts)] == list(p.part_pages), p.id       # the chapter's pages, then its notebooks
        assert set(listed[len(p.parts):]) == {f"build/executed/{p.id}-{d}" for d in p.book_datasets}, p.id
        for part in p.part_pages:
            assert (ROOT / f"{part}.md").exists(), part
        page = (ROOT / f"{p.page}.md").read_text()
        for d in p.book_datasets:
            assert f"{p.id}-{d}.ipynb" in page, (p.id, d)
        assert p.id in papers.STUDIES or p.bibkey in (ROOT / "references.bib").read_text()
    assert runner.pairs() == papers.pairs()


def test_a_dataset_of_the_paper_profile_that_is_not_here_stops_with_its_name(monkeypatch, tmp_path):
    from wmlib import data
    monkeypatch.setenv("WMLIB_CACHE", str(tmp_path))
    if "cifar100" not in papers.get("adi2018").datasets("paper"):
        pytest.skip("no CIFAR-100 at the paper profile")
    assert ("adi2018", "cifar100") in papers.pairs(["adi2018"], ["cifar100"], "paper")
    with pytest.raises(SystemExit) as err:
        runner.main(["run", "--profile", "paper", "--paper", "adi2018", "--dataset", "cifar100",
                     "--out", str(tmp_path / "out")])
    assert err.value.code == 2
    assert not (tmp_path / "out" / "adi2018-cifar100.ipynb").exists()
    with pytest.raises(data.DatasetMissing, match="cifar100.*WMLIB_DATA"):
        data.require("cifar100")


def test_every_paper_has_headline_claims_covering_its_claims():
    """The verdict box's rows: each pattern matches a claim and every claim lies under a headline (the
    loader refuses otherwise); a bad pattern is refused with its name."""
    for pid in papers.PAPERS:
        heads = claims.headlines(pid)
        assert len(heads) >= 3, pid
        assert {c.id for h in heads for c in h.members()} == set(claims.load(pid)), pid


def test_headline_status_applies_one_meaning_per_word():
    from wmlib.report import HEADLINE_STATUSES, headline_status
    assert headline_status(["reproduced", "reproduced"], []) == "reproduced"
    assert headline_status(["reproduced", "qualitatively"], []) == "qualitatively"
    assert headline_status(["reproduced", "qualitatively", "not yet"], []) == "not reproduced"
    assert headline_status(["needs GPU", "reproduced"], []) == "reproduced"       # what ran decides
    assert headline_status([], ["needs a GPU: ResNet-18 for 100 epochs"]) == "needs GPU"
    assert headline_status([], ["needs online data: STL-10"]) == "needs online data"
    assert headline_status([], []) == "not attempted"
    assert headline_status(["not claimed at smoke"] * 2, []) == "not claimed at smoke"
    for word in ("reproduced", "qualitatively", "not reproduced", "needs GPU", "not attempted"):
        assert word in HEADLINE_STATUSES


def test_verdict_box_is_computed_from_the_records():
    """A record whose fine-tuning rows miss: that headline reads "not reproduced" on CIFAR-10 with its count,
    linked to the notebook; a dataset the notebook runs that the paper has no claim on says so."""
    from wmlib import report
    ids = [c.id for c in claims.load("adi2018").values() if c.dataset == "cifar10" and c.attempted]
    kept = [i for i in ids if i.endswith("watermark-kept")]
    rows = [{"quantity": i, "ours": 1.0, "paper": claims.get("adi2018", i).value, "unit": "%", "note": "",
             "status": "not yet" if i == kept[0] else "reproduced", "claim": i} for i in ids]
    rec = {"paper": "adi2018", "dataset": "cifar10", "profile": "cpu", "seed": 0, "rows": rows}
    nbs = {"mnist": "/build/executed/adi2018-mnist", "cifar10": "/build/executed/adi2018-cifar10"}
    box = report.verdict_box("adi2018", [rec], nbs)
    ft = box.loc[[i for i in box.index if "fine-tuning" in i][0]]
    assert ft["CIFAR-10"].startswith("{doc}`not reproduced </build/executed/adi2018-cifar10>`")
    func = box.loc[[i for i in box.index if "functionality" in i][0]]
    assert func["CIFAR-10"].startswith("{doc}`reproduced") and "at cpu" in func["CIFAR-10"]
    assert func["MNIST"] == "— (not in the paper)" and func["CIFAR-100"] == "not attempted"   # paper profile only
    assert "Verdicts" in report.verdict_markdown("adi2018", [rec], nbs)
