"""The site as a reader meets it: every page opened in headless Chromium.

Fails if an image is broken, an output shows a Python traceback, the summary table is empty, or
a page asks for anything that is not on this machine. Screenshots go to ``build/screenshots/``
(the first screen of each page; the whole page with ``WMBOOK_FULL_SCREENSHOTS=1``: slow on the
long pages).
Needs Debian's ``chromium`` (installed by ``.ci/run``); skipped without it, except under CI.
"""
import json
import os
import re
import shutil
from pathlib import Path

import pytest

from conftest import needs_cifar, needs_mnist, needs_trigger
from wmlib import papers, runner

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
HEIGHT_BUDGET = 8000
"""px at 1280 px wide with every dropdown closed: a page a reader can take in (issue 28)."""
SCREENSHOTS = runner.ROOT / "build" / "screenshots"
PAGES = [f"book/{p.stem}.html" for p in sorted((runner.ROOT / "book").glob("*.md"))] + \
    [f"build/executed/{p}-{d}.html" for p, d in runner.pairs()]

pytestmark = [needs_mnist, needs_cifar, needs_trigger, pytest.mark.skipif(
    not Path(CHROMIUM).exists() and not os.environ.get("CI"),
    reason="Debian's chromium is not installed (CI installs it)")]


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        yield b
        b.close()


def visit(browser, page_file: Path, screenshot: Path | None = None) -> dict:
    """Open a page; report broken images, requests leaving the machine, and the visible text."""
    page = browser.new_page(viewport={"width": 1280, "height": 1600})
    page.set_default_timeout(120_000)     # the other worker may be training: 30 s was exceeded once
    external = []

    def route(r):
        if r.request.url.startswith(("file://", "data:", "blob:")):
            r.continue_()
        else:
            external.append(r.request.url)
            r.abort()
    page.route("**/*", route)
    page.goto(page_file.as_uri())
    page.wait_for_load_state("networkidle")
    broken = page.evaluate(
        "Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src)")
    too_wide = page.evaluate("""() => {
        const col = document.querySelector('article.bd-article') || document.querySelector('main') || document.body;
        const limit = col.getBoundingClientRect().width + 2;
        return Array.from(col.querySelectorAll('table, img')).filter(e => e.offsetParent !== null
            && e.getBoundingClientRect().width > limit)
          .map(e => `${e.tagName} ${Math.round(e.getBoundingClientRect().width)} > ${Math.round(limit)}: `
                    + (e.tagName === 'IMG' ? e.src.split('/').pop() : (e.innerText || '').slice(0, 60)));
    }""")
    out = {"broken": broken, "external": external, "too_wide": too_wide,
           "images": page.evaluate("document.images.length"),
           "text": page.inner_text("body"),
           "summary_rows": page.evaluate(
               "document.querySelectorAll('#results-at-a-glance table tbody tr').length"),
           # with every dropdown closed, as a reader meets the page
           "height": page.evaluate("document.documentElement.scrollHeight"),
           "first_table_in": page.evaluate("""() => {
               const col = document.querySelector('article.bd-article') || document.body;
               const t = col.querySelector('table');
               const box = t && t.closest('.admonition');
               return box ? (box.querySelector('.admonition-title') || {}).innerText || '' : '';
           }""")}
    if screenshot is not None:
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(screenshot), full_page=os.environ.get("WMBOOK_FULL_SCREENSHOTS") == "1")
    page.close()
    return out


@pytest.mark.parametrize("page", PAGES)
def test_page_renders_offline_without_broken_images_or_tracebacks(site, browser, page):
    seen = visit(browser, site / page, SCREENSHOTS / (page.replace("/", "_") + ".png"))
    heights = SCREENSHOTS / "heights.json"          # for the record: each page's height, dropdowns closed
    known = json.loads(heights.read_text()) if heights.exists() else {}
    heights.write_text(json.dumps({**known, page: seen["height"]}, indent=1, sort_keys=True))
    assert seen["external"] == [], f"{page} requests the network: {seen['external'][:5]}"
    assert seen["broken"] == [], f"{page} has broken images: {seen['broken']}"
    if page.startswith("book/"):     # the paper pages a reader reads: nothing wider than the text column
        assert seen["too_wide"] == [], f"{page}: wider than the text column: {seen['too_wide']}"
    assert "Traceback (most recent call last)" not in seen["text"], page
    assert "Exception encountered at" not in seen["text"], page      # papermill's error banner
    if page.startswith("book/"):
        assert seen["height"] <= HEIGHT_BUDGET, \
            f"{page} is {seen['height']} px tall at 1280 px with dropdowns closed (budget {HEIGHT_BUDGET})"
    if page.removeprefix("book/").removesuffix(".html") in papers.PAPERS:
        assert seen["first_table_in"].startswith("Verdicts"), \
            f"{page}: the first table is not the verdict box ({seen['first_table_in']!r})"
    if page == "book/adi2018.html":
        assert seen["images"] >= 6          # 3 figures per dataset tab
    if page == "book/index.html":
        assert seen["summary_rows"] >= 3, "the per-paper overview is empty"
        assert "no executed notebook yet" not in seen["text"]
        assert seen["images"] >= 1, "the landing figure is missing"


def test_a_removed_figure_is_caught(site, browser, tmp_path):
    copy = tmp_path / "html"
    shutil.copytree(site, copy)
    html = (copy / "book" / "adi2018.html").read_text()
    first = re.search(r'<img[^>]+src="([^"]+)"', html).group(1)
    (copy / "book" / first).resolve().unlink()
    seen = visit(browser, copy / "book" / "adi2018.html")
    assert len(seen["broken"]) == 1 and seen["broken"][0].endswith(Path(first).name)
