"""The showcase post in a real browser: charts drawn, comparison side by side, then stacked.

Builds the repository's own site (its posts and committed results, in a copy so the
working tree's output is untouched), serves it on 127.0.0.1 from a thread and opens the
showcase post in Debian's Chromium at 1280 px and 390 px. Screenshots of each width, in
light and dark mode, land in ``test-artifacts/`` for a person to look at.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from chronicle.build import BuildOptions, build
from chronicle.hooks import standard_hooks
from tests.support import chromium, serve_folder

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"
WIDE, NARROW = 1280, 390


def showcase_source() -> Path:
    # the slug exactly: the Rails post's name ends the same way
    found = sorted(p for p in (REPO / "posts").glob("*-microvm-vs-incus.md")
                   if p.stem[11:] == "microvm-vs-incus")
    assert found, "the showcase post posts/<date>-microvm-vs-incus.md is missing"
    return found[-1]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[str]:
    """The built site served on 127.0.0.1; yields the showcase post's URL."""
    root = tmp_path_factory.mktemp("site")
    # src/ too: experiments list lab code among their inputs, so without it every
    # result would (rightly) be called stale.
    for folder in ("site", "posts", "experiments", "src"):
        shutil.copytree(REPO / folder, root / folder,
                        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    build(standard_hooks(BuildOptions(root=root)))
    date, slug = showcase_source().stem[:10], showcase_source().stem[11:]
    with serve_folder(root / "output") as url:
        yield f"{url}{date[:4]}/{date[5:7]}/{slug}/"


@pytest.fixture(scope="module")
def browser():
    with chromium() as browser:
        yield browser


def open_page(browser, url: str, width: int, scheme: str = "light"):
    page = browser.new_page(viewport={"width": width, "height": 900}, color_scheme=scheme)
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("requestfailed", lambda r: problems.append(f"failed: {r.url}"))
    page.on("response", lambda r: problems.append(f"{r.status}: {r.url}")
            if r.status >= 400 else None)
    page.goto(url, wait_until="load")
    return page, problems


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=path, full_page=True)
    return path


@pytest.mark.parametrize("width", [WIDE, NARROW])
def test_every_chart_is_visible_with_a_size(site, browser, width):
    page, _ = open_page(browser, site, width)
    charts = page.locator("figure.embed .chart svg")
    assert charts.count() >= 3
    for index in range(charts.count()):
        chart = charts.nth(index)
        chart.scroll_into_view_if_needed()
        box = chart.bounding_box()
        assert chart.is_visible() and box and box["width"] > 50 and box["height"] > 20, index
    page.close()


def comparison_columns(page) -> tuple[dict, dict]:
    """The bounding boxes of the first comparison's left and right columns."""
    compare = page.locator("figure.embed-compare .compare").first
    return (compare.locator(".compare-left").bounding_box(),
            compare.locator(".compare-right").bounding_box())


def test_comparison_columns_sit_side_by_side_when_wide(site, browser):
    page, _ = open_page(browser, site, WIDE)
    left, right = comparison_columns(page)
    assert abs(left["y"] - right["y"]) < 2
    assert left["x"] + left["width"] <= right["x"]
    page.close()


def test_comparison_columns_stack_when_narrow(site, browser):
    page, _ = open_page(browser, site, NARROW)
    left, right = comparison_columns(page)
    assert right["y"] >= left["y"] + left["height"]
    assert abs(left["x"] - right["x"]) < 2
    assert left["x"] + left["width"] <= NARROW
    page.close()


@pytest.mark.parametrize(("width", "scheme"), [(WIDE, "light"), (NARROW, "light"),
                                               (WIDE, "dark"), (NARROW, "dark")])
def test_no_console_errors_and_a_screenshot_of_each_width(site, browser, width, scheme):
    page, problems = open_page(browser, site, width, scheme)
    assert screenshot(page, f"showcase-{width}-{scheme}.png").stat().st_size > 10_000
    assert problems == []
    page.close()


def test_the_page_does_not_scroll_sideways_when_narrow(site, browser):
    page, _ = open_page(browser, site, NARROW)
    assert page.evaluate("document.documentElement.scrollWidth") <= NARROW
    page.close()


def test_the_committed_results_are_fresh(site, browser):
    page, _ = open_page(browser, site, WIDE)
    assert page.locator(".badge-stale").count() == 0
    assert page.locator(".badge-emulated").count() >= 1  # this lab has no hardware KVM
    page.close()


def test_the_lab_page_linked_from_a_caption_opens(site, browser):
    page, problems = open_page(browser, site, WIDE)
    link = page.locator("figcaption.provenance a").first
    link.click()
    page.wait_for_load_state("load")
    assert "/lab/" in page.url and page.locator("table.stats").count() == 1
    screenshot(page, "showcase-lab-page-1280.png")
    assert problems == []
    page.close()
