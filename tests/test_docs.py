"""The documentation site and the README that leads into it.

The site is built once from this checkout, as `make docs` builds it: Sphinx with warnings as
errors, so a broken cross-reference, a missing picture or a chapter that raises fails the
build, and every chapter runs on the real data. Then Debian's chromium (through Playwright,
as for the microscope's site) opens every page: no console error, no request that leaves the
site, every picture decoded, and the search finds "Inception". The browser is required where
the shared data is (CI, or GOINGDEEPER_REQUIRE_DATA=1): a missing one fails there.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
# [text](target) and ![alt](target), the target up to a space or the closing parenthesis
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def test_the_readme_is_a_front_page():
    lines = README.read_text().splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines; move sections into docs/guides"
    text = "\n".join(lines)
    for command in ("make demo", "make test", "make docs"):
        assert command in text, command


def test_the_readme_links_into_the_site_exist():
    targets = [t for t in LINK.findall(README.read_text()) if "://" not in t]
    into_docs = [t for t in targets if t.startswith("docs/")]
    assert len(into_docs) >= 15, into_docs  # the guides, the chapters, the picture, the API
    missing = [t for t in targets if not (REPO / t.split("#")[0]).is_file()]
    assert missing == []


@pytest.fixture(scope="module")
def site(shared_data, tmp_path_factory) -> Path:
    """The site built from a copy of docs/ (so that every chapter runs, whatever a local
    `make docs` left in docs/generated), documenting this checkout's src/."""
    work = tmp_path_factory.mktemp("docs")
    source = work / "docs"
    ignore = shutil.ignore_patterns("_build", "generated", "sg_execution_times.rst")
    shutil.copytree(REPO / "docs", source, ignore=ignore)
    path = os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path, "GOINGDEEPER_DATA": str(shared_data)}
    env["MPLBACKEND"] = "Agg"
    html = work / "html"
    command = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html"]
    done = subprocess.run(
        [*command, str(source), str(html)], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-6000:]
    return html


def _open(browser, url: str):
    """The page at `url`, and every console error, page error, failed request and request
    that leaves the site (anything but file: and inline data: URLs) while it loads."""
    page = browser.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("requestfailed", lambda r: problems.append(f"failed {r.url}"))
    local = ("file://", "data:")
    page.on("request", lambda r: None if r.url.startswith(local) else problems.append(r.url))
    page.goto(url)
    page.wait_for_load_state("load")
    return page, problems


@pytest.mark.slow
def test_the_site_has_every_part(site):
    chapters = sorted(p.stem for p in (site / "generated" / "chapters").glob("0*.html"))
    assert chapters == sorted(p.stem for p in (REPO / "docs" / "chapters").glob("0*.py"))
    guides = {p.stem for p in (site / "guides").glob("*.html")}
    assert guides >= {p.stem for p in (REPO / "docs" / "guides").glob("*.md")}
    assert (site / "generated" / "api" / "goingdeeper.models.googlenet.html").is_file()
    for chapter in chapters:  # the script itself, for the reader to download and run
        page = (site / "generated" / "chapters" / f"{chapter}.html").read_text()
        links = re.findall(rf'href="([^"]*_downloads/[^"]*/{chapter}\.py)"', page)
        assert links, chapter
        assert (site / "generated" / "chapters" / links[0]).resolve().is_file(), chapter
    googlenet = (site / "generated" / "chapters" / "05_googlenet.html").read_text()
    assert "6,998,552" in googlenet  # a number the chapter computed, on its page


@pytest.mark.slow
def test_every_page_loads_in_chromium_with_its_images(site, browser):
    pages = sorted(site.rglob("*.html"))
    assert len(pages) > 30
    pictures = 0
    for html in pages:
        page, problems = _open(browser, html.as_uri())
        broken = page.evaluate(
            "Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0))"
            ".map(i => i.src)"
        )
        pictures += page.evaluate("document.images.length")
        assert broken == [], html.relative_to(site)
        assert problems == [], html.relative_to(site)
        page.close()
    assert pictures >= 20  # the chapters' plots and the guides' figures


@pytest.mark.slow
def test_the_search_finds_inception(site, browser):
    page, problems = _open(browser, (site / "search.html").as_uri() + "?q=Inception")
    page.locator("#search-results", has_text="Search finished").wait_for(timeout=60_000)
    results = page.locator("#search-results ul.search li a")
    links = [results.nth(i).get_attribute("href") for i in range(results.count())]
    assert any("05_googlenet" in link for link in links), links
    assert any("guides/paper-tables" in link for link in links), links
    assert problems == []
