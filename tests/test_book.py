"""The smoke site: its grid through the engine, and the book built from its notebooks strictly
(warnings are errors): a broken page fails."""
import json
import re

import pytest

from wmlib import papers, results, runner
from conftest import needs_cifar, needs_mnist, needs_trigger

pytestmark = [needs_mnist, needs_cifar, needs_trigger]


def _pages(site):
    return {p.relative_to(site).as_posix(): p.read_text() for p in site.rglob("*.html")}


def test_every_page_is_built(site):
    pages = _pages(site)
    for page in ["index.html", "book/index.html", "book/reproduce.html", "book/references.html", "book/verify.html",
                 "book/matrix.html"] + \
            [f"book/{p}.html" for p in papers.PAPERS] + \
            [f"{part}.html" for p in papers.PAPERS.values() for part in p.part_pages] + \
            [f"build/executed/{p}-{d}.html" for p, d in runner.pairs()]:
        assert page in pages, page


def test_paper_page_pastes_figures_and_tables_for_each_dataset(site):
    html = (site / "book" / "adi2018.html").read_text()
    assert html.count("ours at profile smoke") >= 2 * 3  # functionality, transfer, fine-tuning, per tab
    imgs = re.findall(r'<img[^>]+src="([^"]+)"', html)
    assert len(imgs) >= 2 * 3
    for src in imgs:
        assert (site / "book" / src).resolve().exists(), f"broken image {src}"
    assert "Produced at profile" in html


def test_frontier_page_pastes_every_table_and_figure(site):
    html = (site / "book" / "lemerrer2020.html").read_text()
    assert "Produced at profile smoke" in html
    for heading in ("Table 1: magnitude pruning", "Table 2: SVD compression", "Table 3: overwriting"):
        assert heading.lower() in html.lower(), heading
    for n in (1, 2, 3):                                    # Tables 1-3: the paper's beside ours
        assert f"the paper (Table {n})" in html
    imgs = re.findall(r'<img[^>]+src="([^"]+)"', html)
    assert len(imgs) >= 4                                  # Fig. 4, 5, 6 and the robustness plot
    for src in imgs:
        assert (site / "book" / src).resolve().exists(), f"broken image {src}"


def test_ipcert_chapter_pastes_every_table_and_figure_for_each_dataset(site):
    """The chapter: the reproduction's page and its three studies, each with one tab per dataset."""
    pages = ["ipcert2023"] + [part.removeprefix("book/") for part in papers.PAPERS["ipcert2023"].part_pages]
    assert pages == ["ipcert2023", "ipcert2023-file", "ipcert2023-voting", "ipcert2023-fingerprints"]
    for page in pages:
        assert (site / "book" / f"{page}.html").read_text().count("Produced at profile smoke") == 2, page
    main = (site / "book" / "ipcert2023.html").read_text()
    for part in pages[1:]:
        assert f'href="{part}.html' in main, part                        # the chapter's page links its studies
    html = "".join((site / "book" / f"{page}.html").read_text() for page in pages)
    assert html.count("paper ℓ2") >= 2                                   # Table 2, paper beside ours
    assert html.count("ours at profile smoke") >= 2 * 2                  # Tables 1 and 3 per tab
    for label in ("IPCert", "MS", "largest R/σ with CMR = 1", "ℓ2, whole file", "after (buffers only)",
                  "CMR promised there, parameter-only certificate", "PGD ≤ R", "median after", "log-statistics"):
        assert label in html, label
    assert "What the paper&#8217;s certificate does not cover" in html or "What the paper’s certificate" in html
    imgs = re.findall(r'<img[^>]+src="([^"]+)"', html)
    assert len(imgs) >= 2 * 7                  # Figs. 1, 2/5, 3, 4, 6/7, the soundness one and the votes' study
    for src in imgs:
        assert (site / "book" / src).resolve().exists(), f"broken image {src}"


def test_tartaglione_page_pastes_every_panel_for_each_dataset(site):
    html = (site / "book" / "tartaglione2020.html").read_text()
    assert html.count("Produced at profile smoke") == 2                  # one banner per tab
    for label in ("Fine-tuning (panels e, g, i)", "quantisation", "set to 0", "fraction reset",
                  "accuracy lost", "naive", "robust", "claimed, repaired"):
        assert label in html, label
    imgs = re.findall(r'<img[^>]+src="([^"]+)"', html)
    assert len(imgs) >= 2 * 3                              # panels e-j, the valley, per tab
    for src in imgs:
        assert (site / "book" / src).resolve().exists(), f"broken image {src}"


def test_bansal_page_pastes_every_table_and_figure_for_each_dataset(site):
    html = (site / "book" / "bansal2022.html").read_text()
    assert html.count("Produced at profile smoke") == 2                  # one banner per tab
    for label in ("0.2σ paper", "0.2σ ours", "baseline paper", "white-box ours", "drop from baseline",
                  "largest R/σ ≥ 50 %", "certified at that distance", "white-box (median)",
                  "ℓ2 whole file", "CIFAR-100 runs at the paper profile", "embedded content", "unrelated"):
        assert label in html, label
    imgs = re.findall(r'<img[^>]+src="([^"]+)"', html)
    assert len(imgs) >= 2 * 3                              # triggers, certified curves, adversary, per tab
    for src in imgs:
        assert (site / "book" / src).resolve().exists(), f"broken image {src}"


def test_verify_page_shows_each_schemes_terminal_session(site, smoke_runs):
    """The worked example of ``wmbook verify``: per scheme the three commands, each with its printed line and
    its exit status, and the finding computed from them; the keys and files lie where the page says."""
    html = (site / "book" / "verify.html").read_text()
    for suspect in ("owner", "stolen", "independent"):
        assert html.count(f"--model {suspect}.safetensors") == 5, suspect
    assert len(re.findall(r"exit [01]", html)) == 3 * 5
    assert len(re.findall(r"(as it should|wrong for)", html)) == 5
    # beside the results the notebook wrote: nbval's runs write under build/smoke, in-process runs under the site's
    roots = [smoke_runs["executed"] / "keys", runner.ROOT / "build" / "smoke" / "keys"]
    for paper in papers.PAPERS:
        found = [r / f"{paper}-mnist-smoke-seed0" for r in roots if (r / f"{paper}-mnist-smoke-seed0").is_dir()]
        assert found, (paper, roots)
        assert (found[0] / "key" / "manifest.json").is_file() and (found[0] / "stolen.safetensors").is_file(), paper


def test_matrix_page_and_landing_show_the_schemes_against_the_attacks(site):
    """The tiny smoke matrix (two schemes × three attacks) through the runner into the book: its figure and its
    generated paragraph on the landing page and on its own page, with every cell's table folded."""
    for page in ("book/index.html", "book/matrix.html"):
        html = (site / page).read_text()
        assert html.count("survives the most attacks") == 2, page          # one paragraph per dataset tab
        assert "False claims measured on 4 never-watermarked hosts" in html, page
        imgs = [src for src in re.findall(r'<img[^>]+src="([^"]+)"', html)]
        assert imgs and all((site / "book" / src).resolve().exists() for src in imgs), page
    html = (site / "book" / "matrix.html").read_text()
    assert "Every cell: verdict" in html and "zero-cost edits, aligned" in html and "Tartaglione et al. (weights)" in html


def test_summary_table_is_filled_from_results(site):
    html = (site / "book" / "index.html").read_text()
    rows = re.findall(r"<tr[^>]*>\s*<td[^>]*>\s*(?:<p>)?adi2018", html)
    assert len(rows) >= 2 * 6, "summary table should list the headline rows of both datasets"
    assert "no executed notebook yet" not in html
    for p in papers.PAPERS.values():                   # the per-paper overview, one row each
        assert p.cite in html, p.cite
    assert "landing.png" in html                       # the paper-against-ours figure


def test_pages_and_landing_show_the_spread_over_seeds(site, smoke_runs):
    from wmlib import results, seeds
    recs = results.read_all(smoke_runs["executed"] / "results")
    two = seeds.spread(recs).query("n == 2")
    assert set(two["paper"]) == {"adi2018"} and len(two) >= 5
    for paper in ("adi2018",):
        html = (site / "book" / f"{paper}.html").read_text()
        assert "Over seeds" in html and "0, 1" in html and "min–max" in html, paper
        q = two[two["paper"] == paper].iloc[0]
        assert f"{q['quantity']} ({q['unit']})" in html.replace("&amp;", "&")
    assert "one seed ran (0)" in (site / "book" / "ipcert2023.html").read_text()
    landing = (site / "book" / "index.html").read_text()
    assert "Over seeds" in landing and "adi2018, mnist (smoke)" in landing
    assert not list(site.rglob("*seed1.html"))                # a further seed's notebook is not a page
    reproduce = (site / "book" / "reproduce.html").read_text()
    assert "Seeds, and the grid on a cluster" in reproduce
    assert "No plan was made for this build" in reproduce or "device-hours here" in reproduce


def test_citations_resolve_to_the_bibliography(site):
    html = (site / "book" / "references.html").read_text()
    for author in ("Adi", "Le Merrer", "Jiang", "Cohen", "Cao"):
        assert author in html, author
    page = (site / "book" / "ipcert2023.html").read_text()
    assert 'href="references.html#id' in page or "references.html#" in page   # {cite} links there


def test_no_traceback_and_nothing_fetched_from_the_network(site):
    for name, html in _pages(site).items():
        assert "Traceback (most recent call last)" not in html, name
        assert not re.search(r'<script[^>]+src="https?://', html), name
    assert (site / "mathjax" / "tex-chtml.js").exists()


def test_missing_notebook_fails_the_build(tmp_path):
    src = tmp_path / "src"
    (tmp_path / "executed").mkdir()
    runner.stage(src, tmp_path / "executed")
    with pytest.raises(FileNotFoundError, match="executed notebooks missing"):
        runner.build_book(src)


def test_a_further_seed_through_the_engine_is_recorded_beside_the_page_seed(smoke_runs):
    """Seed 1 of the grid through submitit's local executor (a process per job), beside seed 0 run in this
    session: recorded with what it ran on and took, written as a further seed (not a page), other numbers."""
    from conftest import GRID_PAIRS
    local = {(r["paper"], r["dataset"], r["seed"]): r for r in results.read_all(smoke_runs["local"] / "results")}
    assert sorted(local) == [(p, d, s) for p in sorted(GRID_PAIRS[0]) for d in GRID_PAIRS[1] for s in (0, 1)]
    rec = local[("adi2018", "mnist", 1)]
    assert rec["ran_on"]["device"] and rec["ran_on"]["precision"] in ("bf16", "fp32") and rec["ran_on"]["torch"]
    assert 0 < rec["wall_minutes"] < 30                            # each record keeps what its run took
    assert (smoke_runs["local"] / "seeds" / "adi2018-mnist-seed1.ipynb").exists()
    assert not (smoke_runs["local"] / "adi2018-mnist.ipynb").exists()   # seed 0 is the page, run elsewhere
    seed0 = {r["quantity"]: r["ours"] for r in local[("adi2018", "mnist", 0)]["rows"]}
    seed1 = {r["quantity"]: r["ours"] for r in rec["rows"]}
    assert seed0.keys() == seed1.keys() and seed0 != seed1          # another seed, other numbers
    timings = json.loads((smoke_runs["local"] / "timings.json").read_text())
    assert set(timings) == {"adi2018-mnist-seed1"}
