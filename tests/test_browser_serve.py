"""``chronicle serve`` in a real browser: edits show up without a manual reload."""

import pytest

from chronicle.build import BuildOptions
from chronicle.serve import PreviewServer
from tests.support import chromium
from tests.test_check import make_site, post

pytestmark = pytest.mark.browser

# The issue asks for "within a second"; the browser assertions allow a margin for a
# loaded CI machine, and the edit-to-page time is asserted separately below.
WAIT_MS = 5000


@pytest.fixture
def page():
    with chromium() as browser:
        yield browser.new_page()


@pytest.fixture
def preview(tmp_path):
    root = make_site(tmp_path / "site", {"2025-03-01-boot.md": post("Boot time", "Version one.")})
    server = PreviewServer(BuildOptions(root=root), port=0, log=lambda line: None)
    server.start()
    yield server
    server.close()


def test_edited_post_shows_in_the_open_page_without_reload(preview, page, tmp_path):
    import time

    source = preview.paths.posts / "2025-03-01-boot.md"
    page.goto(preview.url + "2025/03/boot/")
    page.get_by_text("Version one.").wait_for(timeout=WAIT_MS)
    edited = time.monotonic()
    source.write_text(post("Boot time", "Version two, edited live."))
    page.get_by_text("Version two, edited live.").wait_for(timeout=WAIT_MS)
    seconds = time.monotonic() - edited
    page.screenshot(path=tmp_path / "edited.png")
    print(f"edit reached the page in {seconds:.2f} s")
    assert seconds < 2.5, f"the edit took {seconds:.2f} s to reach the page"


def test_broken_post_shows_the_error_and_fixing_it_recovers(preview, page, tmp_path):
    source = preview.paths.posts / "2025-03-01-boot.md"
    page.goto(preview.url + "2025/03/boot/")
    page.get_by_text("Version one.").wait_for(timeout=WAIT_MS)

    source.write_text("---\ntitle: [unclosed\ndate: 2025-03-01\n---\nBroken.\n")
    error = page.locator("pre.build-error")
    error.wait_for(timeout=WAIT_MS)
    assert "2025-03-01-boot.md:" in error.inner_text()
    assert "YAML error" in error.inner_text()
    page.screenshot(path=tmp_path / "broken.png")

    source.write_text(post("Boot time", "Repaired."))
    page.get_by_text("Repaired.").wait_for(timeout=WAIT_MS)
    assert page.locator("pre.build-error").count() == 0


def test_traversal_is_refused_to_the_browser(preview, page, tmp_path):
    (tmp_path / "secret.txt").write_text("private")
    response = page.goto(preview.url + "%2e%2e/%2e%2e/%2e%2e/secret.txt")
    assert response.status in (403, 404)
    assert "private" not in page.content()


@pytest.fixture
def searchable(tmp_path):
    from dataclasses import replace

    from chronicle.search import search_files

    root = make_site(tmp_path / "site", {
        "2025-03-01-boot.md": post("Boot time", "Qemu boots a microVM."),
        "2025-03-02-memory.md": post("Memory footprint", "Incus containers use little.",
                                     date="2025-03-02"),
    })
    server = PreviewServer(BuildOptions(root=root), port=0, log=lambda line: None,
                           prepare=lambda o: replace(o, extra_pages=(search_files,)))
    server.start(watch=False)
    yield server
    server.close()


def test_search_box_finds_posts_when_scripts_run(searchable, page, tmp_path):
    page.goto(searchable.url)
    box = page.get_by_role("searchbox", name="Search posts")
    box.fill("incus")
    result = page.locator(".search-results a")
    result.first.wait_for(timeout=WAIT_MS)
    assert result.all_inner_texts() == ["Memory footprint"]
    page.screenshot(path=tmp_path / "search.png")
    result.first.click()
    page.wait_for_url("**/2025/03/memory/")


def test_site_works_without_javascript(searchable, tmp_path):
    with chromium() as browser:
        page = browser.new_context(java_script_enabled=False).new_page()
        page.goto(searchable.url)
        assert page.locator("form.search").count() == 0
        page.get_by_role("link", name="Memory footprint").click()
        page.get_by_text("Incus containers use little.").wait_for(timeout=WAIT_MS)
