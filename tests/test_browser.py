"""The built blog in a real browser: Debian's Chromium driven by Playwright."""

from __future__ import annotations

from pathlib import Path

import pytest

from chronicle.cli import main
from tests.support import chromium, serve_folder

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"


@pytest.fixture
def served_site(tmp_path):
    """The repository's own blog, built into tmp_path and served on 127.0.0.1."""
    out = tmp_path / "site"
    assert main(["build", "--root", str(REPO), "--out", str(out)]) == 0
    with serve_folder(out) as url:
        yield url


@pytest.fixture
def browser():
    with chromium() as browser:
        yield browser


def test_reader_opens_a_post_and_returns_with_no_console_errors(served_site, browser):
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
            if m.type == "error" else None)
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))

    page.goto(served_site)
    assert page.title() == "Chronicle"
    first_post = page.locator(".post-list h2 a").first
    title = first_post.inner_text()
    first_post.click()
    page.wait_for_load_state()
    assert page.locator("h1").inner_text() == title
    backs = page.get_by_role("link", name="← Chronicle", exact=True)
    assert backs.count() == 2
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "post.png"), full_page=True)

    backs.last.click()
    page.wait_for_load_state()
    assert page.url == served_site
    page.screenshot(path=str(ARTIFACTS / "index.png"), full_page=True)
    assert problems == []


def test_post_reads_well_on_a_phone_in_dark_mode(served_site, browser):
    context = browser.new_context(viewport={"width": 390, "height": 844}, color_scheme="dark")
    page = context.new_page()
    page.goto(served_site)
    page.locator(".post-list h2 a").last.click()
    page.wait_for_load_state()
    # no sideways scrolling on a narrow screen: code blocks and tables scroll inside themselves
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background != "rgb(251, 250, 247)"  # the dark palette, not the light one
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "post-phone-dark.png"), full_page=True)
    context.close()
