"""report.html and the galleries in a real browser: Debian's headless Chromium
(``/usr/bin/chromium``, package ``chromium``) driven by Playwright, opened from disk.

Each page is screenshot into the test's ``tmp_path``; every ``img`` must load, the page must
log no console error, and the galleries' filters must change the number of cards shown.

``.ci/run`` installs Chromium when it is missing; so does this module's set-up where it can
(root and apt-get). Where it cannot be installed the tests print why and skip, except under
``CI=true``, where they fail. Playwright never downloads a browser here: it is given
``executable_path``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.evaluation.gallery_fixtures import browse_gallery, detection_report, segmentation_report

CHROMIUM = Path("/usr/bin/chromium")
# This machine's network is closed: without the background-networking flags Chromium keeps
# trying Google's hosts. Headless is Playwright's; the profile is a new empty one per launch.
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


def _install_chromium() -> str | None:
    """Install Debian's chromium when it is missing; the reason it cannot be, or None."""
    if CHROMIUM.exists():
        return None
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        return f"{CHROMIUM} is missing and cannot be installed here (needs root and apt-get: apt-get install chromium)"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
        done = subprocess.run(command, capture_output=True, text=True, env=env, check=False, timeout=900)
        if done.returncode != 0:
            return f"{' '.join(command)} failed: {(done.stderr or done.stdout).strip()[-300:]}"
    return None if CHROMIUM.exists() else f"apt-get installed chromium, but {CHROMIUM} is not there"


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: the browser test must run; .ci/run installs chromium)")
    print(f"skipping the browser test: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser():
    reason = _install_chromium()
    if reason:
        _skip_or_fail(reason)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _skip_or_fail("the playwright package is missing (pip install -e '.[dev]')")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def pages(tmp_path_factory) -> dict[str, Path]:
    """The detection and segmentation reports with their galleries, and tools/browse.py's."""
    root = tmp_path_factory.mktemp("pages")
    detection = detection_report(root / "detection")
    segmentation = segmentation_report(root / "segmentation")
    browsed = browse_gallery(root / "browse")
    assert browsed.returncode == 0, browsed.stderr
    return {"detection_report": detection, "detection_gallery": detection.parent / "gallery.html",
            "segmentation_report": segmentation, "segmentation_gallery": segmentation.parent / "gallery.html",
            "browse_gallery": root / "browse" / "gallery.html"}


class Opened:
    """A page opened from disk, with what it logged."""

    def __init__(self, browser, path: Path) -> None:
        self.page = browser.new_page(viewport={"width": 1280, "height": 900})
        self.problems: list[str] = []
        self.page.on("console", lambda m: self.problems.append(f"console {m.type}: {m.text}")
                     if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        self.page.on("requestfailed", lambda r: self.problems.append(f"request failed: {r.url} {r.failure}"))
        self.page.goto(path.as_uri(), wait_until="load")

    def broken_images(self) -> list[str]:
        return self.page.evaluate(
            "Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)")

    def visible_cards(self) -> int:
        return self.page.locator(".card:not([hidden])").count()

    def options(self, select: str) -> list[str]:
        return [v for v in self.page.eval_on_selector_all(f"#{select} option", "os => os.map(o => o.value)") if v]


@pytest.mark.parametrize("name", ["detection_report", "detection_gallery", "segmentation_report",
                                  "segmentation_gallery", "browse_gallery"])
def test_page_loads_every_image_without_console_errors(browser, pages, tmp_path, name):
    opened = Opened(browser, pages[name])
    opened.page.screenshot(path=str(tmp_path / f"{name}.png"), full_page=True)
    assert (tmp_path / f"{name}.png").stat().st_size > 0
    count = opened.page.evaluate("document.images.length")
    assert count > 0
    assert opened.broken_images() == []
    if name.endswith("report"):
        assert opened.page.locator('a[href="gallery.html"]').count() == 1
    opened.page.close()
    assert opened.problems == []


def test_a_broken_image_and_a_script_error_are_caught(browser, tmp_path):
    """The checks above can fail: a missing PNG is broken, a throwing script is an error."""
    page = tmp_path / "bad.html"
    page.write_text('<!DOCTYPE html><html><head><link rel="icon" href="data:,"></head><body>'
                    '<img src="missing.png"><script>undefinedFunction()</script></body></html>')
    opened = Opened(browser, page)
    assert len(opened.broken_images()) == 1
    assert any("undefinedFunction" in p for p in opened.problems)
    opened.page.close()


def _filter_changes(opened: Opened, select: str) -> list[tuple[str, int]]:
    """``(option, cards shown)`` of every option of filter ``select`` (the other on "all")."""
    counts = []
    for value in opened.options(select):
        opened.page.select_option(f"#{select}", value)
        counts.append((value, opened.visible_cards()))
    opened.page.select_option(f"#{select}", "")
    return counts


@pytest.mark.parametrize("name", ["detection_gallery", "segmentation_gallery", "browse_gallery"])
def test_filters_change_the_number_of_cards_shown(browser, pages, tmp_path, name):
    opened = Opened(browser, pages[name])
    total = opened.page.locator(".card").count()
    assert total > 1 and opened.visible_cards() == total
    by_class = _filter_changes(opened, "class-filter")
    assert any(0 < shown < total for _, shown in by_class), by_class
    by_kind = _filter_changes(opened, "kind-filter")
    if name != "browse_gallery":  # the mini set has no findings, crowds or empty images
        assert any(0 < shown < total for _, shown in by_kind), by_kind
    assert opened.visible_cards() == total
    if name == "detection_gallery":  # images 2 and 7 of the mini set lose an object (gallery_fixtures)
        opened.page.select_option("#kind-filter", "missed")
        assert opened.visible_cards() == 2
        assert opened.page.inner_text("#shown") == f"2 of {total} images shown"
        titles = opened.page.locator(".card:not([hidden]) h3").all_inner_texts()
        assert titles == ["000002.jpg", "000007.jpg"]
        opened.page.screenshot(path=str(tmp_path / "filtered.png"), full_page=True)
    opened.page.close()
    assert opened.problems == []
