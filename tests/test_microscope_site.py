"""The microscope site: built by the command from real photos with the BVLC weights, resumed,
and driven in a real browser (Debian's chromium through Playwright). The browser is required
where the shared data is (CI, or GOINGDEEPER_REQUIRE_DATA=1): a missing one fails there."""

from __future__ import annotations

from pathlib import Path

import pytest

from goingdeeper.cli import main

PHOTOS = ("n01440764_tench.JPEG", "n02102040_English_springer.JPEG", "n03417042_garbage_truck.JPEG")


def _argv(shared: Path, photos: Path, out: Path) -> list[str]:
    return [
        "microscope",
        "--weights",
        str(shared / "bvlc-googlenet"),
        "--data",
        str(photos),
        "--out",
        str(out),
        "--layers",
        "conv1,mixed3a",  # a Lucid name among ours
        "--channels",
        "0-2",
        "--photos",
        "2",
        "--square",
        "112",
        "--stride",
        "112",
        "--fv-size",
        "48",
        "--fv-steps",
        "3",
    ]


@pytest.fixture(scope="module")
def site(shared_data, tmp_path_factory):
    photos = tmp_path_factory.mktemp("photos")
    for name in PHOTOS:
        (photos / name).symlink_to(shared_data / "imagenet-sample" / name)
    out = tmp_path_factory.mktemp("site") / "microscope"
    assert main(_argv(shared_data, photos, out)) == 0
    return out, photos


@pytest.mark.slow
def test_site_is_resumed_not_rebuilt(site, shared_data, capsys):
    out, photos = site
    fv = out / "img" / "inception3a" / "fv_1.png"
    stamp = fv.stat().st_mtime_ns
    (out / "img" / "conv1" / "fv_2.png").unlink()  # a run stopped before this piece
    capsys.readouterr()
    assert main(_argv(shared_data, photos, out)) == 0
    printed = capsys.readouterr().out
    assert "feature visualisation: 1 made, 5 already there" in printed
    assert "top-9 layers: 0 made, 2 already there" in printed
    assert "photos: 0 made, 2 already there" in printed
    assert fv.stat().st_mtime_ns == stamp
    assert (out / "img" / "conv1" / "fv_2.png").is_file()
    assert not list(out.rglob("*.tmp"))


def _open(browser, url: str):
    page = browser.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("requestfailed", lambda r: problems.append(f"failed {r.url}"))
    page.on("request", lambda r: None if r.url.startswith("file://") else problems.append(r.url))
    page.goto(url)
    page.wait_for_load_state("load")
    return page, problems


def _broken_images(page) -> list[str]:
    return page.evaluate(
        "Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0))"
        ".map(i => i.src)"
    )


@pytest.mark.slow
def test_every_page_loads_in_chromium_with_its_images(site, browser):
    out, _ = site
    pages = sorted(out.glob("*.html"))
    assert {p.name for p in pages} >= {
        "index.html",
        "layer-conv1.html",
        "layer-inception3a.html",
        "image-n01440764_tench.html",
    }
    for html in pages:
        page, problems = _open(browser, html.as_uri())
        images = page.evaluate("document.images.length")
        assert images > 0, html.name
        assert _broken_images(page) == [], html.name
        assert problems == [], html.name
        page.close()


@pytest.mark.slow
def test_layers_link_in_order_and_the_search_finds_channels_and_classes(site, browser):
    out, _ = site
    page, problems = _open(browser, (out / "index.html").as_uri())
    assert "inception3a" in page.inner_text("table") and "mixed3a" in page.inner_text("table")
    assert "256x28x28" in page.inner_text("table")  # Table 1: inception (3a) 28x28x256
    page.click("text=conv1")
    assert page.url.endswith("layer-conv1.html")
    page.click("#next")
    assert page.url.endswith("layer-inception3a.html")
    assert page.locator(".card").count() == 3
    page.click("#prev")
    assert page.url.endswith("layer-conv1.html")
    page.fill("#search", "mixed3a:2")
    assert page.locator("#results a").first.inner_text().startswith("inception3a:2")
    page.press("#search", "Enter")
    page.wait_for_url("**/layer-inception3a.html#ch-2")
    assert page.locator("#ch-2").is_visible()
    page.fill("#search", "tench")
    page.locator("#results a").first.click()
    page.wait_for_url("**/image-n01440764_tench.html")
    assert page.locator(".card").count() == 6  # the photo and its top-5 classes
    assert "occlusion: p 0." in page.inner_text("body")  # each map's range of p, stated
    assert _broken_images(page) == []
    page.fill("#search", "no such unit")
    assert page.locator("#results a").count() == 0
    assert problems == []


def test_mistakes_are_one_line_before_any_work(shared_data, tmp_path, capsys):
    photos = shared_data / "imagenet-sample"
    base = ["microscope", "--weights", str(shared_data / "bvlc-googlenet"), "--data", str(photos)]
    cases = [
        (["--out", str(tmp_path / "a"), "--layers", "mixed9z"], "unknown layer 'mixed9z'"),
        (["--out", str(tmp_path / "b"), "--layers", "conv1", "--channels", "64"], "0-63, got 64"),
        (["--out", str(tmp_path / "f.txt")], "is not a folder"),
        (["--out", str(tmp_path / "c"), "--fv-steps", "0"], "--fv-steps must be at least 1"),
    ]
    (tmp_path / "f.txt").write_text("a file")
    for extra, message in cases:
        capsys.readouterr()
        assert main([*base, *extra]) == 2
        err = capsys.readouterr().err
        assert err.startswith("goingdeeper: error:") and message in err, err
        assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    capsys.readouterr()
    assert main([*base[:-1], str(tmp_path / "nothing-here"), "--out", str(tmp_path / "d")]) == 2
    assert "no such folder" in capsys.readouterr().err
