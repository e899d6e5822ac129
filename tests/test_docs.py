"""The course site (`make docs`) in a real browser: Debian's Chromium driven by Playwright.

By default the test builds a small site from one chapter-like notebook (a figure, a `#| slow` cell, a
`#| hide` cell) through the same docs/build.py that `make docs` runs: executed once under nbmake,
rendered by Sphinx + myst-nb. `make docs` then runs this file against the whole site it built
(TEXT_RECOGNIZER_SITE=docs/_build/html): a lab and a library chapter must show their figures, and the
API pages must document the library. A page may load nothing from off this machine.
"""

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = Path(__file__).resolve().parents[1]
FULL_SITE = os.environ.get("TEXT_RECOGNIZER_SITE")
# the pages of the full site that must show a figure: a lab and a chapter of the library
FIGURE_PAGES = ["labs/lab01_pytorch.html", "nbs/11_data.transforms.html"]

pytestmark = pytest.mark.browser


def chapter_notebook(path: Path) -> None:
    "A small chapter: a markdown intro, a matplotlib figure, a hidden cell and a slow cell."
    nbformat.write(new_notebook(cells=[
        new_markdown_cell("# A chapter\n\n> with one figure"),
        new_code_cell("#| hide\nHIDDEN_MARKER = 'this cell is not on the page'"),
        new_code_cell("import matplotlib.pyplot as plt\n\n"
                      "fig, ax = plt.subplots(figsize=(3, 2))\nax.plot([0, 1, 4, 9])\nplt.show()"),
        new_code_cell("#| slow\nprint('SLOW_MARKER: shown on the page, never run in smoke mode')"),
    ], metadata={"kernelspec": {"name": "python3", "display_name": "python3", "language": "python"}}), path)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    if FULL_SITE:
        return Path(FULL_SITE).resolve()
    work = tmp_path_factory.mktemp("docs")
    (work / "chapters").mkdir()
    chapter_notebook(work / "chapters" / "a_chapter.ipynb")
    result = subprocess.run([sys.executable, str(ROOT / "docs" / "build.py"), "--notebooks",
                             str(work / "chapters" / "a_chapter.ipynb"), "--out", str(work / "site"),
                             "--no-api", "--workers", "1"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return work / "site" / "html"


def open_page(browser, page: Path):
    "The page loaded from disk, and the list it fills with every request that left this machine."
    tab = browser.new_page()
    outside = []

    def only_files(route):
        if route.request.url.startswith(("file://", "data:")):
            return route.continue_()
        outside.append(route.request.url)
        return route.abort()

    tab.route("**/*", only_files)
    tab.goto(page.as_uri(), wait_until="load")
    return tab, outside


def loaded_figures(tab) -> list[str]:
    "The sources of the article's images that the browser decoded (naturalWidth > 0)."
    return tab.eval_on_selector_all("article img", "imgs => imgs.filter(i => i.complete && i.naturalWidth > 0)"
                                    ".map(i => i.getAttribute('src'))")


def test_the_home_page_lists_the_chapters(browser, site):
    tab, outside = open_page(browser, site / "index.html")
    links = tab.eval_on_selector_all("a.reference.internal", "as => as.map(a => a.getAttribute('href'))")
    pages = ["labs/lab00_overview.html", "nbs/00_metadata.html", "api.html"] if FULL_SITE else ["chapters/a_chapter.html"]
    assert all(any(link.startswith(p) for link in links) for p in pages), links
    assert outside == []


@pytest.mark.parametrize("page", FIGURE_PAGES if FULL_SITE else ["chapters/a_chapter.html"])
def test_a_chapter_page_shows_its_figure(browser, site, page):
    tab, outside = open_page(browser, site / page)
    figures = loaded_figures(tab)
    print(f"{page}: {len(figures)} figure(s), the first {figures[:1]}")
    assert figures, f"{page} shows no figure"
    assert outside == [], f"{page} requested resources from other hosts: {outside}"
    if not FULL_SITE:  # the flagged cell is shown unrun, the hidden cell not at all
        text = tab.inner_text("article")
        assert "SLOW_MARKER" in text and "HIDDEN_MARKER" not in text
        assert "shown on the page, never run" in text and text.count("SLOW_MARKER") == 1


@pytest.mark.skipif(not FULL_SITE, reason="the small site has no API pages")
def test_the_api_pages_document_the_library(browser, site):
    tab, outside = open_page(browser, site / "api" / "text_recognizer.predictor.html")
    assert "ParagraphTextRecognizer" in tab.inner_text("article")
    assert outside == []
